//! Cutover: the end of a migration. With the task running, the source's writes are paused
//! (optionally, for a bounded time), the target is waited for until it has applied everything
//! the source had written, a verification compares them, the task stops and ferry's own keys
//! leave the target. Only when all of that holds is the cutover a success; otherwise the pause
//! is lifted at once and the task keeps running.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::TaskHandle;
use super::cleanup::remove_own_keys;
use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::info::info;
use crate::net::topology::{self, Topology};
use crate::status::Phase;

/// How to cut over.
#[derive(Clone, Debug)]
pub struct CutoverOptions {
    /// Pause the source's writes (`CLIENT PAUSE ... WRITE`, Redis 6.2 and later) for at most
    /// this long; `None`: the operator has stopped the writers.
    pub pause_writes: Option<Duration>,
    /// How long to wait for the full copy to end and for the target to catch up.
    pub timeout: Duration,
}

/// What a cutover found and did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CutoverReport {
    /// Everything went as it should: the target holds exactly the source's data, the task is
    /// stopped and its keys are gone.
    pub ok: bool,
    /// Unix ms until which the source's writes stay paused (the pause is left in place on
    /// success, for the applications to move to the target; lifted at once on a failure).
    pub paused_until_ms: Option<u64>,
    /// Each source server's replication offset once writes had stopped, all applied.
    pub offsets: BTreeMap<String, u64>,
    /// How long the target took to apply them, in ms.
    pub caught_up_ms: u64,
    /// Per target: keys compared, and the differences found.
    pub verify: Vec<VerifiedTarget>,
    /// ferry's keys removed, per server.
    pub removed: BTreeMap<String, u64>,
    /// The target made a master again (`REPLICAOF NO ONE`), in target mode "replica".
    pub promoted: Option<String>,
    /// Why it is not ok, when it is not.
    pub problem: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct VerifiedTarget {
    pub target: String,
    pub source_keys: u64,
    pub differences: usize,
    /// The first differing keys, as `ferry verify` prints them.
    pub examples: Vec<String>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Cuts the running task `handle` (built from `config`) over. Errors are the steps that could
/// not be taken (a server unreachable, the task not catching up in time, a source too old to
/// pause writes); a verification that finds differences is a report with `ok: false`.
pub async fn cutover(
    handle: &TaskHandle,
    config: &TaskConfig,
    opts: &CutoverOptions,
) -> Result<CutoverReport> {
    let Source::Redis(source) = &config.source else {
        return Err(Error::Config(
            "a cutover needs a live source server, not a snapshot file".into(),
        ));
    };
    if handle.is_paused() {
        return Err(Error::Config(
            "the task is paused: resume it first, so the target can catch up".into(),
        ));
    }
    let deadline = Instant::now() + opts.timeout;
    wait_for(deadline, "the full copy to end", || {
        let phase = handle.status().status.phase;
        match phase {
            Phase::Incremental => Ok(true),
            Phase::Failed | Phase::Stopped => Err(Error::Config(format!(
                "the task is {phase:?}, not running: nothing to cut over"
            ))),
            _ => Ok(false),
        }
    })
    .await?;
    let mut sources = source_masters(source).await?;
    let mut report = CutoverReport::default();
    if let Some(pause) = opts.pause_writes {
        for (conn, _) in &mut sources {
            let (a, b, c) = conn.version().await?;
            if (a, b) < (6, 2) {
                return Err(Error::Config(format!(
                    "source {} is Redis {a}.{b}.{c}, which cannot pause writes alone (CLIENT PAUSE WRITE came in 6.2): stop the writers yourself and cut over without pausing",
                    conn.addr
                )));
            }
        }
        let ms = pause.as_millis().max(1).to_string();
        let from = unix_ms();
        for (conn, _) in &mut sources {
            conn.request_ok(&[&b"CLIENT"[..], b"PAUSE", ms.as_bytes(), b"WRITE"])
                .await?;
        }
        report.paused_until_ms = Some(from + pause.as_millis() as u64);
    }
    let result = finish(handle, config, deadline, &mut sources, &mut report).await;
    let ok = matches!(result, Ok(true));
    if !ok && report.paused_until_ms.is_some() {
        // The task keeps running: the applications must not wait on a failed cutover.
        for (conn, _) in &mut sources {
            let _ = conn.request(&[&b"CLIENT"[..], b"UNPAUSE"]).await;
        }
        report.paused_until_ms = None;
    }
    report.ok = ok;
    result.map(|_| report)
}

/// Waits for the target, verifies, stops and cleans up; true when all went well.
async fn finish(
    handle: &TaskHandle,
    config: &TaskConfig,
    deadline: Instant,
    sources: &mut [(Conn, Option<u16>)],
    report: &mut CutoverReport,
) -> Result<bool> {
    if handle.status().status.source_mode.as_deref() == Some("scan") {
        let started = Instant::now();
        settle(handle, deadline).await?;
        report.caught_up_ms = started.elapsed().as_millis() as u64;
        return verify_and_stop(handle, config, report).await;
    }
    // Each stream's name: the task's, or `<task>@<first slot>` for a shard of a cluster.
    let mut wanted = Vec::new();
    for (conn, first_slot) in sources.iter_mut() {
        let offset: u64 = info(conn, "replication")
            .await?
            .get("master_repl_offset")
            .and_then(|o| o.parse().ok())
            .unwrap_or(0);
        report.offsets.insert(conn.addr.clone(), offset);
        wanted.push((first_slot.map(|s| format!("{}@{s}", config.name)), offset));
    }
    let started = Instant::now();
    // Every stream (the source, or each shard of a cluster source) has applied at least the
    // offset its server had once writes stopped.
    wait_for(
        deadline,
        "the target to apply the source's last writes",
        || {
            let status = running(handle)?;
            Ok(wanted.iter().all(|(stream, offset)| {
                let applied = match stream {
                    None => Some(status.applied_offset),
                    Some(name) => status
                        .shards
                        .iter()
                        .find(|p| &p.name == name)
                        .map(|p| p.status.applied_offset),
                };
                applied.is_some_and(|a| a >= *offset)
            }))
        },
    )
    .await?;
    report.caught_up_ms = started.elapsed().as_millis() as u64;
    verify_and_stop(handle, config, report).await
}

/// A source read by scanning has no offset to wait for: once its writes stopped, one more
/// full pass reads what no notification named, and the target has everything when no notified
/// key waits to be read and every write ferry made is confirmed, for a second on end (the last
/// notifications may still be on their way).
/// The verification after it is what proves the copy equal.
async fn settle(handle: &TaskHandle, deadline: Instant) -> Result<()> {
    // Some changes are notified by nothing (a consumer group's reads and acks): one more full
    // pass, now that writes have stopped, reads them.
    let before = handle.live_status().ask_rescan();
    wait_for(deadline, "a last full pass over the source", || {
        running(handle)?;
        Ok(handle.live_status().rescans_done() > before)
    })
    .await?;
    let mut since: Option<Instant> = None;
    wait_for(
        deadline,
        "the target to apply the source's last changes",
        || {
            let status = running(handle)?;
            let streams: Vec<&crate::status::Snapshot> = match status.shards.is_empty() {
                true => vec![&status],
                false => status.shards.iter().map(|p| &p.status).collect(),
            };
            let idle = streams
                .iter()
                .all(|s| s.pending_keys == Some(0) && s.applied_offset >= s.source_offset);
            if !idle {
                since = None;
                return Ok(false);
            }
            let first = *since.get_or_insert_with(Instant::now);
            Ok(first.elapsed() >= Duration::from_secs(1))
        },
    )
    .await
}

/// Verifies the targets against the (paused) source, then stops the task and removes ferry's
/// keys; true when all went well.
async fn verify_and_stop(
    handle: &TaskHandle,
    config: &TaskConfig,
    report: &mut CutoverReport,
) -> Result<bool> {
    let verify = crate::verify::Options::from_task(config)?;
    let summaries = crate::verify::run(&verify).await?;
    let mut equal = true;
    for s in &summaries {
        equal &= s.differences.is_empty();
        report.verify.push(VerifiedTarget {
            target: s.target.clone(),
            source_keys: s.source_keys,
            differences: s.differences.len(),
            examples: s
                .differences
                .iter()
                .take(10)
                .map(|d| d.to_json(None).to_string())
                .collect(),
        });
    }
    if !equal {
        report.problem = Some(
            "the target differs from the source (see verify): the task keeps running; find the cause before cutting over again".into(),
        );
        return Ok(false);
    }
    handle.stop();
    handle.ended().await;
    let end = handle.status().status;
    if end.phase == Phase::Failed {
        report.problem = Some(format!(
            "the task failed as it stopped: {}",
            end.last_error.unwrap_or_default()
        ));
        return Ok(false);
    }
    // A target in replica mode stops following (ferry no longer relays) and takes writes.
    if config.target_mode == crate::spec::TargetMode::Replica {
        let mut target = Conn::connect(Role::Target, &config.target).await?;
        target
            .request_ok(&[&b"REPLICAOF"[..], b"NO", b"ONE"])
            .await?;
        report.promoted = Some(target.addr.clone());
    }
    // The source's heartbeat keys expire by themselves 10 s after the last beat; deleting
    // them now would wait on the paused writes.
    let removed = remove_own_keys(config, report.paused_until_ms.is_none()).await?;
    report.removed = removed.removed;
    Ok(true)
}

/// The source's servers holding data, each with the first slot of its shard on a cluster.
async fn source_masters(endpoint: &Endpoint) -> Result<Vec<(Conn, Option<u16>)>> {
    let mut conn = Conn::connect(Role::Source, endpoint).await?;
    if !topology::is_cluster(&mut conn).await? {
        return Ok(vec![(conn, None)]);
    }
    let topology = Topology::discover(&mut conn, endpoint).await?;
    let mut out = Vec::new();
    for shard in &topology.shards {
        let conn = Conn::connect_direct(Role::Source, &shard.master).await?;
        out.push((conn, Some(shard.first_slot())));
    }
    Ok(out)
}

/// The task's status, or why it is not running any more.
fn running(handle: &TaskHandle) -> Result<crate::status::Snapshot> {
    let status = handle.status().status;
    if matches!(status.phase, Phase::Failed | Phase::Stopped) {
        return Err(Error::Config(format!(
            "the task stopped while waiting: {}",
            status.last_error.unwrap_or_default()
        )));
    }
    Ok(status)
}

async fn wait_for(
    deadline: Instant,
    what: &str,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(Error::Config(format!(
                "gave up waiting for {what}: raise the cutover's timeout, or look at the task's status"
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
