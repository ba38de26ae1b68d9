//! The targets of one replication stream: one, or several fed from the same PSYNC (one-to-many).
//! Each target has its own writer, checkpoint, spool and status; the stream starts from the
//! least advanced target's checkpoint, and a target ahead of it skips what it already holds.
//! A slow or absent target does not hold up the others until its spool is full; a target that
//! fails for good is marked failed and the others go on.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TaskConfig;
use crate::error::{Error, Result};
use crate::net::endpoint::Endpoint;
use crate::pipeline::entry::Batch;
use crate::pipeline::pause::Pause;
use crate::pipeline::relay::Relay;
use crate::pipeline::spool;
use crate::sink::Target;
use crate::sink::checkpoint::Checkpoint;
use crate::source::psync::INTERRUPTED;
use crate::spec::FullResync;
use crate::status::{Phase, Status};

/// Batches waiting for each target's relay.
const RELAY_BATCHES: usize = 8;

/// A connected target and what its checkpoint says.
pub struct Connected {
    pub endpoint: Endpoint,
    pub target: Target,
    pub checkpoint: Option<Checkpoint>,
}

/// Where the shared stream starts, and what each target skips of it.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    /// The checkpoint to ask the source to continue from (None: a full copy).
    pub resume: Option<Checkpoint>,
    /// Why a full copy is needed over targets that hold data (see `full_resync`).
    pub resync_why: Option<String>,
    /// Per target: the offset it holds already, beyond the stream's start (0: none).
    pub skips: Vec<u64>,
}

/// Connects to every target of the task and reads its checkpoint.
pub async fn connect_all(config: &TaskConfig) -> Result<Vec<Connected>> {
    let mut out = Vec::new();
    for endpoint in std::iter::once(&config.target).chain(&config.more_targets) {
        let mut target = Target::connect(endpoint).await?;
        // Before anything is read or written for the task there: one writer per task.
        if let Some(fence) = &config.writer.fence {
            fence.claim(&mut target, &endpoint.addr()).await?;
        }
        tracing::info!(
            target = target.addr(),
            version = ?target.caps().version,
            rdb_version = target.caps().rdb_version,
            "target ready"
        );
        let checkpoint = match config.checkpoint {
            true => target.read_checkpoint(&config.name).await?,
            false => None,
        };
        match &checkpoint {
            Some(c) => {
                tracing::info!(target = target.addr(), checkpoint = %c, "the target holds a checkpoint")
            }
            None => tracing::info!(target = target.addr(), "no checkpoint on the target"),
        }
        out.push(Connected {
            endpoint: endpoint.clone(),
            target,
            checkpoint,
        });
    }
    Ok(out)
}

/// Decides where the stream starts: the one decision for `sync` (which acts on it) and
/// `ferry check` (which reports it). A new copy when no target holds a checkpoint; else the
/// least advanced checkpoint, if one stream can continue every target from it; else a full
/// resync, which `full_resync` either refuses (the error `sync` stops with) or allows (the
/// targets are emptied first). Whether the source can still continue from the checkpoint is
/// the source's to say, at `PSYNC` (`psync::can_continue` predicts it from `INFO`).
/// `synced`: this process has synced before, so a target without a checkpoint lost its data.
/// `source` names the source in errors.
pub fn plan(
    targets: &[(String, Option<Checkpoint>)],
    config: &TaskConfig,
    synced: bool,
    source: &str,
) -> Result<Plan> {
    let plan = plan_start(targets, config, synced, source)?;
    // A full-only run copies once: going on from a checkpoint it would follow the stream and
    // never end.
    if config.full_only && !synced && matches!(plan.resume, Some(Checkpoint::Applied { .. })) {
        return Err(copied_once(config));
    }
    Ok(plan)
}

/// A full-only run over a target that holds this task's finished copy.
pub fn copied_once(config: &TaskConfig) -> Error {
    let key = String::from_utf8_lossy(&Checkpoint::key(&config.name)).into_owned();
    Error::Config(format!(
        "[sync] full_only: the target already holds this task's copy (its checkpoint {key}), and a full-only run copies once; to copy again, remove ferry's keys first (ferry cleanup with the same settings; [sync] on_conflict then decides about the keys there), or leave full_only out to go on following the source's writes"
    ))
}

fn plan_start(
    targets: &[(String, Option<Checkpoint>)],
    config: &TaskConfig,
    synced: bool,
    source: &str,
) -> Result<Plan> {
    let none_skipped = || vec![0; targets.len()];
    let needs_resync = |why: String| -> Result<Plan> {
        if config.full_resync == FullResync::Stop {
            return Err(Error::ResyncNeeded {
                addr: source.to_string(),
                why,
            });
        }
        tracing::warn!("{why}; copying the snapshot again, as configured");
        Ok(Plan {
            resume: None,
            resync_why: Some(why),
            skips: none_skipped(),
        })
    };
    if !config.checkpoint {
        return Ok(Plan {
            resume: None,
            resync_why: None,
            skips: none_skipped(),
        });
    }
    let key = String::from_utf8_lossy(&Checkpoint::key(&config.name)).into_owned();
    if synced && let Some((addr, _)) = targets.iter().find(|(_, c)| c.is_none()) {
        // This process wrote one before: the target lost it, and its data with it.
        return needs_resync(format!(
            "target {addr} no longer holds the checkpoint {key} that this task wrote: it lost its data (restarted without persistence, or flushed)"
        ));
    }
    // Part of a snapshot cannot be continued, whatever the other targets hold.
    if let Some((addr, _)) = targets
        .iter()
        .find(|(_, c)| matches!(c, Some(Checkpoint::Loading { .. })))
    {
        return needs_resync(match targets.len() {
            1 => INTERRUPTED.to_string(),
            _ => format!("the previous full copy into target {addr} was interrupted"),
        });
    }
    if targets.len() == 1 {
        return Ok(Plan {
            resume: targets[0].1.clone(),
            resync_why: None,
            skips: none_skipped(),
        });
    }
    if targets.iter().all(|(_, c)| c.is_none()) {
        return Ok(Plan {
            resume: None,
            resync_why: None,
            skips: none_skipped(),
        });
    }
    let applied: Vec<(&String, u64)> = targets
        .iter()
        .filter_map(|(_, c)| match c {
            Some(Checkpoint::Applied { replid, offset, .. }) => Some((replid, *offset)),
            _ => None,
        })
        .collect();
    let one_history =
        applied.len() == targets.len() && applied.iter().all(|(r, _)| *r == applied[0].0);
    if !one_history {
        let found: Vec<String> = targets
            .iter()
            .map(|(addr, c)| match c {
                Some(c) => format!("{addr} holds {c}"),
                None => format!("{addr} holds none"),
            })
            .collect();
        return needs_resync(format!(
            "the targets are at places in the source's history that one stream cannot continue together ({})",
            found.join(", ")
        ));
    }
    let low = applied.iter().map(|(_, o)| *o).min().unwrap_or(0);
    let start = targets.iter().find_map(|(_, c)| match c {
        Some(c @ Checkpoint::Applied { offset, .. }) if *offset == low => Some(c.clone()),
        _ => None,
    });
    Ok(Plan {
        resume: start,
        resync_why: None,
        skips: applied
            .iter()
            .map(|(_, o)| if *o > low { *o } else { 0 })
            .collect(),
    })
}

/// Feeds the stream from `rx` to every target until the source ends, the task stops, or every
/// target has failed. With one target its status is the task's; with several each has its own
/// under `targets` and the task's shows the least advanced.
pub async fn relay_all(
    config: &TaskConfig,
    targets: Vec<Connected>,
    skips: Vec<u64>,
    mut rx: mpsc::Receiver<Batch>,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    // Held TTLs wait for the stream's lag, measured on the stream's status (each target's
    // own has no latency probes).
    let mut config = config.clone();
    if let Some(setup) = &mut config.writer.ttl_hold {
        setup.clock = Some(status.clone());
    }
    let config = &config;
    if targets.len() == 1 {
        let Connected {
            endpoint, target, ..
        } = targets.into_iter().next().expect("one target");
        let dir = spool::dir_for(&config.local_dir(), &config.name);
        return Relay::new(
            config.clone(),
            endpoint,
            dir,
            status.clone(),
            cancel.clone(),
            pause.clone(),
        )
        .skipping_until(skips.first().copied().unwrap_or(0))
        .run(rx, target)
        .await;
    }
    let mut relays = tokio::task::JoinSet::new();
    let mut outputs = Vec::new();
    let mut names = Vec::new();
    for (i, (connected, skip)) in targets.into_iter().zip(skips).enumerate() {
        let name = connected.target.addr();
        let own = status.target(&name);
        let (tx, relay_rx) = mpsc::channel(RELAY_BATCHES);
        let dir = spool::dir_for(&config.local_dir(), &format!("{}@{name}", config.name));
        let relay = Relay::new(
            config.clone(),
            connected.endpoint,
            dir,
            own.clone(),
            cancel.clone(),
            pause.clone(),
        )
        .skipping_until(skip);
        let target = connected.target;
        relays.spawn(async move { (i, relay.run(relay_rx, target).await) });
        outputs.push(Some(tx));
        names.push((name, own));
    }
    let mut first: Option<Error> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        if outputs.iter().all(Option::is_none) {
            break;
        }
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { break };
                // Every relay reads as fast as it can spool: a send waits only on one that is
                // in the snapshot (all copy at the pace of the slowest) or has a full spool.
                for out in outputs.iter_mut() {
                    if let Some(tx) = out
                        && tx.send(batch.clone()).await.is_err()
                    {
                        *out = None;
                    }
                }
            }
            Some(done) = relays.join_next() => {
                let (i, result) = done.unwrap_or_else(|join| {
                    (usize::MAX, Err(Error::Internal { what: "a target's relay", why: join.to_string() }))
                });
                if let Some(out) = outputs.get_mut(i) {
                    *out = None;
                }
                settle(names.get(i), result, cancel, &mut first);
            }
            _ = tick.tick() => status.fold_targets(),
        }
    }
    drop(rx);
    outputs.clear();
    while let Some(done) = relays.join_next().await {
        match done {
            Ok((i, result)) => settle(names.get(i), result, cancel, &mut first),
            Err(join) => {
                first.get_or_insert(Error::Internal {
                    what: "a target's relay",
                    why: join.to_string(),
                });
            }
        }
    }
    status.fold_targets();
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// One target's relay has ended: a failure marks that target failed (the others go on) and is
/// kept to end the task with once the stream ends.
fn settle(
    target: Option<&(String, Arc<Status>)>,
    result: Result<()>,
    cancel: &CancellationToken,
    first: &mut Option<Error>,
) {
    let Err(e) = result else { return };
    if cancel.is_cancelled() {
        return;
    }
    if let Some((name, own)) = target {
        tracing::error!("target {name} failed: {e}; the other targets go on");
        own.set_error(e.to_string());
        own.set_phase(Phase::Failed);
    }
    first.get_or_insert(e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskSpec;

    fn config(full_resync: &str) -> TaskConfig {
        let file: TaskSpec = toml::from_str(&format!(
            "[source]\nurl = \"redis://127.0.0.1:1\"\n[target]\nurl = \"redis://127.0.0.1:2\"\n[[more_targets]]\nurl = \"redis://127.0.0.1:3\"\n[sync]\nfull_resync = \"{full_resync}\"\n"
        ))
        .unwrap();
        TaskConfig::build(file).unwrap()
    }

    fn at(offset: u64) -> Option<Checkpoint> {
        Some(Checkpoint::Applied {
            replid: "a".repeat(40),
            offset,
            db: 0,
            last_write: None,
        })
    }

    #[test]
    fn the_stream_starts_at_the_least_advanced_target() {
        let targets = vec![("t1".to_string(), at(500)), ("t2".to_string(), at(300))];
        let plan = plan(&targets, &config("stop"), true, "src").unwrap();
        assert_eq!(plan.resume, at(300));
        assert_eq!(plan.skips, vec![500, 0]);
        assert_eq!(plan.resync_why, None);
    }

    #[test]
    fn fresh_targets_get_a_full_copy() {
        let targets = vec![("t1".to_string(), None), ("t2".to_string(), None)];
        let plan = plan(&targets, &config("stop"), false, "src").unwrap();
        assert_eq!(plan.resume, None);
        assert_eq!(plan.resync_why, None);
    }

    #[test]
    fn targets_one_stream_cannot_continue_follow_full_resync() {
        let targets = vec![("t1".to_string(), at(500)), ("t2".to_string(), None)];
        let err = plan(&targets, &config("stop"), false, "src")
            .unwrap_err()
            .to_string();
        assert!(err.contains("t1 holds"), "{err}");
        assert!(err.contains("t2 holds none"), "{err}");
        assert!(err.contains("full_resync = \"flush\""), "{err}");
        let plan = plan(&targets, &config("flush"), false, "src").unwrap();
        assert_eq!(plan.resume, None);
        assert!(plan.resync_why.is_some());
    }

    #[test]
    fn an_interrupted_copy_needs_a_full_resync_by_full_resync() {
        let loading = Some(Checkpoint::Loading {
            replid: "a".repeat(40),
        });
        let one = vec![("t1".to_string(), loading.clone())];
        let err = plan(&one, &config("stop"), false, "src").unwrap_err();
        assert!(
            matches!(err, Error::ResyncNeeded { ref why, .. } if why == INTERRUPTED),
            "{err}"
        );
        let flush = plan(&one, &config("flush"), false, "src").unwrap();
        assert_eq!(flush.resume, None);
        assert_eq!(flush.resync_why.as_deref(), Some(INTERRUPTED));
        let two = vec![("t1".to_string(), at(500)), ("t2".to_string(), loading)];
        let err = plan(&two, &config("stop"), false, "src").unwrap_err();
        assert!(
            err.to_string()
                .contains("full copy into target t2 was interrupted"),
            "{err}"
        );
    }

    #[test]
    fn a_target_that_lost_its_checkpoint_is_named() {
        let targets = vec![("t1".to_string(), at(500)), ("t2".to_string(), None)];
        let err = plan(&targets, &config("stop"), true, "src")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("target t2 no longer holds the checkpoint"),
            "{err}"
        );
    }
}
