//! One sync task: target first (so a bad target fails before the source forks a snapshot), then
//! the source as a replica, joined by a bounded channel that carries backpressure end to end.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::path::Path;
use std::time::{Duration, Instant};

use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result};
use crate::sink::checkpoint::Checkpoint;
use std::sync::atomic::Ordering::Relaxed;

use crate::error::Role;
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::Topology;
use crate::pipeline::entry::Entry;
use crate::pipeline::fanout;
use crate::pipeline::pause::Pause;
use crate::sink::lease::Fence;
use crate::sink::{Target, conflict};
use crate::source::psync::{self, PsyncSource};
use crate::source::snapshot;
use crate::spec::{ReadFrom, SourceMode, TargetMode};
use crate::status::events::EventKind;
use crate::status::{Phase, Status};

pub mod cleanup;
pub mod cutover;
mod handle;
pub mod local;

pub use handle::{PauseReport, Task, TaskHandle, TaskStatus};

/// Batches between source and target; with the batch limits this bounds memory to a few MiB.
const CHANNEL_BATCHES: usize = 8;

/// Runs the task until it fails, the source ends (full-only), or `cancel` fires. A lost
/// connection is retried for `retry.connection`, a retryable refusal for `retry.other`, each
/// attempt starting again from the checkpoint in the target (with exponential backoff and
/// jitter); a window starts again once the sync makes progress. Until a source has taken the
/// login and the replica handshake, failures end the task at once: a wrong address or password
/// is the user's to fix. After it, a link dropped even before the source answered PSYNC (a
/// replica killed while a diskless source waits out its delay) is a lost connection.
/// On return the status holds the final phase and, on failure, the error. The precheck
/// (`check`) runs first and stops the task on a failed item.
pub(crate) async fn run(
    mut config: TaskConfig,
    status: Arc<Status>,
    cancel: CancellationToken,
    pause: Pause,
) -> Result<()> {
    if let Some(throttle) = &config.writer.throttle {
        status.show_limits(throttle.clone());
    }
    // The spool is this task's alone: held for as long as the task runs.
    let replica = config.target_mode == TargetMode::Replica;
    status.set_target_mode(if replica { "replica" } else { "commands" });
    let spooled = matches!(config.source, Source::Redis(_))
        && !replica
        && config.checkpoint
        && config.spool.limit > 0
        && !config.full_only;
    let _local = match spooled.then(|| local::LocalLock::take(&config)) {
        Some(Err(e)) => return failed(&status, e),
        held => held.and_then(Result::ok),
    };
    // One writer per task: a lease and a fence beside the checkpoint in each target. (A
    // replica takes writes from its master only: nothing to fence.)
    let fence = match (&config.source, config.checkpoint && !replica) {
        (Source::Redis(_), true) => Some(Arc::new(Fence::new(&config.name))),
        _ => None,
    };
    config.writer.fence = fence.clone();
    let targets: Vec<Endpoint> = std::iter::once(&config.target)
        .chain(&config.more_targets)
        .cloned()
        .collect();
    let keeper = fence.clone().map(|fence| {
        let stop = CancellationToken::new();
        let (task, targets, done) = (cancel.clone(), targets.clone(), stop.clone());
        let handle = tokio::spawn(async move { fence.keep(targets, task, done).await });
        (handle, stop)
    });
    let result = run_task(&config, &status, &cancel, &pause).await;
    if let Some((handle, stop)) = keeper {
        stop.cancel();
        let _ = handle.await;
    }
    if let Some(fence) = &fence {
        fence.release(&targets).await;
    }
    // A copy that was taken over ends with that, whatever interrupted it.
    match (result, fence.as_ref().map(|f| f.check())) {
        (_, Some(Err(lost))) => failed(&status, lost),
        (result, _) => result,
    }
}

async fn run_task(
    config: &TaskConfig,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    // The precheck, once: a failure here is the user's to fix, not a break to retry.
    status.set_phase(Phase::Connecting);
    tokio::select! {
        checked = crate::check::before_sync(config, status.events()) => {
            if let Err(e) = checked {
                return failed(status, e);
            }
        }
        _ = cancel.cancelled() => return stopped(status),
    }
    let mut window: Option<(Instant, String)> = None;
    let mut attempt: u32 = 0;
    loop {
        let before = progress(status);
        let err = match run_inner(config, status, cancel, pause).await {
            Ok(()) => return stopped(status),
            // Stopping may break a link mid-way: that is the stop, not a failure.
            Err(_) if cancel.is_cancelled() => return stopped(status),
            Err(e) => crate::check::with_acl_line(e, config),
        };
        if progress(status) != before {
            window = None;
            attempt = 0;
        }
        let limit =
            retry_limit(&err, config).filter(|_| status.has_synced() || status.source_accepted());
        let Some(limit) = limit else {
            let err = match (err, window) {
                // Our own interrupted copy cannot be continued: say what interrupted it.
                (Error::ResyncNeeded { why, .. }, Some((_, first)))
                    if !why.contains("no longer holds the checkpoint") =>
                {
                    Error::Config(format!(
                        "{first}; retrying is not possible: {why}; set [sync] full_resync = \"flush\" to copy again from scratch"
                    ))
                }
                (e, _) => e,
            };
            return failed(status, err);
        };
        let (started, _) = window.get_or_insert_with(|| (Instant::now(), err.to_string()));
        let elapsed = started.elapsed();
        if elapsed >= limit {
            return failed(
                status,
                Error::GaveUp {
                    minutes: limit.as_secs() / 60,
                    last: Box::new(err),
                },
            );
        }
        let delay = crate::error::backoff(attempt).min(limit - elapsed);
        let until = std::time::SystemTime::now() + (limit - elapsed);
        let until = until
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        status.retry_until.store(until, Relaxed);
        status.retries.fetch_add(1, Relaxed);
        status.set_error(err.to_string());
        status.set_phase(Phase::Retrying);
        status.events().emit(EventKind::Retrying {
            code: err.code(),
            message: err.to_string(),
            attempt,
            delay_ms: delay.as_millis() as u64,
            gives_up_in_s: (limit - elapsed).as_secs(),
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return stopped(status),
        }
        attempt = attempt.saturating_add(1);
    }
}

fn stopped(status: &Status) -> Result<()> {
    status.set_phase(Phase::Stopped);
    Ok(())
}

fn failed(status: &Status, err: Error) -> Result<()> {
    status.set_error(err.to_string());
    status.events().emit(EventKind::Failed {
        code: err.code(),
        message: err.to_string(),
    });
    status.set_phase(Phase::Failed);
    Err(err)
}

/// What shows the sync moved forward: a new window of retries starts after it.
fn progress(status: &Status) -> (u64, u64) {
    (
        status.applied_offset.load(Relaxed),
        status.keys_written.load(Relaxed),
    )
}

/// How long an error may be retried, or None when retrying cannot help.
fn retry_limit(err: &Error, config: &TaskConfig) -> Option<Duration> {
    match err.retry() {
        crate::error::Retry::Connection => Some(config.retry.connection),
        crate::error::Retry::Other => Some(config.retry.other),
        crate::error::Retry::Never => None,
    }
}

async fn run_inner(
    config: &TaskConfig,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    status.set_phase(Phase::Connecting);
    let path = match &config.source {
        Source::Redis(endpoint) => {
            // A cluster source is one replication stream per shard; asking forks nothing.
            let mut probe = Conn::connect(Role::Source, endpoint).await?;
            if crate::net::topology::is_cluster(&mut probe).await? {
                if config.target_mode == TargetMode::Replica {
                    return Err(Error::Config(format!(
                        "source {} is a cluster: its shards are several replication streams, which one target cannot replicate as one; use [target] mode = \"commands\"",
                        probe.addr
                    )));
                }
                let topology = Topology::discover(&mut probe, endpoint).await?;
                drop(probe);
                return run_cluster_source(config, topology, status, cancel, pause).await;
            }
            drop(probe);
            return run_source(config, endpoint, None, status, cancel, pause).await;
        }
        Source::RdbFile(path) => path,
    };
    let mut target = Target::connect(&config.target).await?;
    tracing::info!(target = target.addr(), "target ready");
    conflict::before_copy(&mut target, config, status).await?;
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let writer = tokio::spawn(target.run(rx, status.clone(), config.writer.clone(), None));
    let read = load_file(path, config.rdb.clone(), tx, status, cancel, pause).await;
    join_writer(writer).await?;
    read
}

/// One replication stream from `endpoint` into the target; or, where the source is read by
/// scanning, that. `slots`: a cluster source's shard serves these.
async fn run_source(
    config: &TaskConfig,
    endpoint: &Endpoint,
    slots: Option<&[(u16, u16)]>,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    status.set_phase(Phase::Connecting);
    let scan_why = match config.source_mode {
        SourceMode::Psync => None,
        SourceMode::Scan => Some("[source] mode = \"scan\"".to_string()),
        SourceMode::Auto => crate::source::psync::refusal(endpoint).await?,
    };
    if let Some(why) = scan_why {
        if status.mode_unknown() {
            let message = format!(
                "reading source {} by SCAN and keyspace notifications ({why}): the target converges to the source, writes are not replayed one by one",
                endpoint.addr()
            );
            match config.source_mode {
                SourceMode::Auto => status.warn("scan_mode", message),
                _ => tracing::info!("{message}"),
            }
        }
        return run_scan_source(config, endpoint, slots, status, cancel, pause).await;
    }
    // Behind Sentinel: replicate from the master it names now, and start again when it names
    // another (a demoted master may keep its replicas' links open).
    let (endpoint, watch) = match &endpoint.sentinel {
        Some(sentinels) => {
            let (host, port) = sentinels.master_addr(Role::Source, endpoint).await?;
            let stop = cancel.child_token();
            let watch = tokio::spawn(watch_sentinels(
                endpoint.clone(),
                (host.clone(), port),
                stop.clone(),
                status.clone(),
            ));
            (endpoint.at(&host, port), Some((watch, stop)))
        }
        None => (endpoint.clone(), None),
    };
    let endpoint = &endpoint;
    let cancel = &match &watch {
        Some((_, stop)) => stop.clone(),
        None => cancel.clone(),
    };
    // Whatever ends this attempt (a target that cannot be reached, a refusal), the watch of
    // the sentinels ends with it: the next attempt starts its own.
    let _watch_ends = watch.as_ref().map(|(_, stop)| stop.clone().drop_guard());
    if config.target_mode == TargetMode::Replica {
        let relayed = crate::sink::replica::run(config, endpoint, status, cancel).await;
        // A new master named ends the relay (its cancel): that is what to report.
        return end_watch(watch, endpoint).await.and(relayed);
    }
    let mut targets = fanout::connect_all(config).await?;
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let found: Vec<(String, Option<Checkpoint>)> = targets
        .iter()
        .map(|t| (t.target.addr(), t.checkpoint.clone()))
        .collect();
    let plan = fanout::plan(&found, config, status.has_synced(), &endpoint.addr())?;
    if plan.resume.is_none() && plan.resync_why.is_none() {
        tracing::info!("full sync");
        // A new task: what the targets already hold is settled by `on_conflict` first.
        for t in targets.iter_mut() {
            conflict::before_copy(&mut t.target, config, status).await?;
        }
    }
    let mut source = PsyncSource::connect(endpoint).await?;
    if config.checkpoint {
        // Each target says this task copies into it (read by a later task's loop check).
        // A source user that may not run INFO leaves the loop check without it.
        match source.identity().await {
            Ok((replid, run_id)) => {
                for t in targets.iter_mut() {
                    let conns = t.target.conns();
                    crate::check::distinct::register(conns, &config.name, &replid, &run_id).await?;
                }
            }
            Err(Error::Server { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    // A huge RESTORE goes in pieces only where every target reads the source's payloads
    // as they are; else it is read whole, to be rewritten as commands for an older one.
    // A source user that may not run INFO leaves it unknown: read whole.
    let source_rdb = source.rdb_version().await.ok();
    let min_target_rdb = targets
        .iter()
        .map(|t| t.target.caps().rdb_version)
        .min()
        .unwrap_or(0);
    let split_restore = source_rdb
        .filter(|&v| !config.writer.rewrite_values && min_target_rdb >= v)
        .map(|_| min_target_rdb);
    status.accept_source();
    status.set_mode("psync");
    tracing::info!(source = %endpoint, "source accepted the replica handshake");
    // What the copy's progress counts towards, taken before ferry's heartbeat key adds one.
    // A source user that may not run INFO leaves it unknown.
    let filter = config.writer.filter.clone();
    if let Ok(keys) = source
        .key_count(|db| filter.as_ref().is_none_or(|f| f.db_passes(db)))
        .await
    {
        status.set_source_keys(keys);
    }
    let _heartbeat = crate::source::heartbeat::start(config, endpoint, status, cancel);
    let options = psync::Options {
        rdb: config.rdb.clone(),
        full_only: config.full_only,
        resync_why: plan.resync_why,
        resume: plan.resume,
        full_resync: config.full_resync,
        stream: psync::StreamSettings {
            idle_timeout: config.source_timeout,
            forward_publish: config.forward_publish,
            split_any: config.writer.transform.is_none(),
            split_restore,
        },
    };
    let reader = tokio::spawn(source.run(options, tx, status.clone(), cancel.clone()));
    let relayed = fanout::relay_all(config, targets, plan.skips, rx, status, cancel, pause).await;
    // The relay has let go of the channel: the reader stops at its next batch if not before.
    let read = reader.await.unwrap_or_else(|join| {
        Err(Error::Internal {
            what: "the source reader",
            why: join.to_string(),
        })
    });
    relayed?;
    end_watch(watch, endpoint).await?;
    read
}

/// Stops the watch of the sentinels (if any): an error when they named another master
/// meanwhile, so the next attempt replicates from it.
async fn end_watch(
    watch: Option<(tokio::task::JoinHandle<Option<String>>, CancellationToken)>,
    endpoint: &Endpoint,
) -> Result<()> {
    let Some((watch, stop)) = watch else {
        return Ok(());
    };
    stop.cancel();
    match watch.await {
        Ok(Some(moved)) => Err(Error::Closed {
            role: Role::Source,
            addr: endpoint.addr(),
            context: format!(": the sentinels now name {moved} as the master"),
        }),
        _ => Ok(()),
    }
}

/// A source read by scanning (see `source::scan`) into the targets. Its copies cannot be
/// continued: a new run reads every key again and then deletes from the targets what the
/// source no longer holds. The targets' checkpoints still say a copy of this task is there,
/// and the lease keeps a second copy of the task out.
async fn run_scan_source(
    config: &TaskConfig,
    endpoint: &Endpoint,
    slots: Option<&[(u16, u16)]>,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    // Behind Sentinel each connection asks the sentinels for the master: after a failover the
    // links to the old one break (or it is read as a replica, which sees the same writes), and
    // the retry starts over on the new master with a full pass.
    let mut config = config.clone();
    // The stream is ferry's own making, new at every run: nothing to keep on disk for a
    // restart, and a pause holds the reading back instead (the names of changed keys wait).
    config.spool.limit = 0;
    // Values are written whole with their expiry and re-read when they change: a key the
    // target expires itself is what the source did too. (The hold keeps a replica's keys
    // until the stream's DEL, which scan mode's DEL need not wait for.)
    config.writer.ttl_hold = None;
    let config = &config;
    let mut targets = fanout::connect_all(config).await?;
    let earlier = targets.iter().any(|t| t.checkpoint.is_some());
    if config.full_only
        && !status.has_synced()
        && targets
            .iter()
            .any(|t| matches!(t.checkpoint, Some(Checkpoint::Applied { .. })))
    {
        return Err(fanout::copied_once(config));
    }
    if !earlier && !status.has_synced() {
        tracing::info!("full sync");
        for t in targets.iter_mut() {
            conflict::before_copy(&mut t.target, config, status).await?;
        }
    }
    let filter = config.writer.filter.clone();
    let dbs = {
        let filter = filter.clone();
        Arc::new(move |db: u32| filter.as_ref().is_none_or(|f| f.db_passes(db)))
    };
    let prune = match config.writer.transform.is_some() {
        true => {
            if status.mode_unknown() {
                status.warn(
                    "no_prune",
                    "a Lua transform may rename keys, so ferry cannot tell which target keys are the source's: keys deleted from the source while ferry could not hear of it (stopped, or its subscription dropped) stay on the target".into(),
                );
            }
            None
        }
        false => {
            let db_map = config.writer.db_map.clone();
            let passes = dbs.clone();
            Some(crate::source::scan::Prune {
                targets: std::iter::once(&config.target)
                    .chain(&config.more_targets)
                    .cloned()
                    .collect(),
                source_db: Arc::new(move |target_db| {
                    let mut sources = (0..=target_db.max(255))
                        .filter(|&s| passes(s) && db_map.target(s) == target_db);
                    match (sources.next(), sources.next()) {
                        (Some(s), None) => Some(s),
                        _ => None,
                    }
                }),
                filter: filter.clone(),
                slots: slots.map(<[_]>::to_vec),
            })
        }
    };
    let mut probe = Conn::connect(Role::Source, endpoint).await?;
    if let Ok(fields) = crate::net::info::info(&mut probe, "keyspace").await {
        status.set_source_keys(crate::source::psync::keyspace_keys(&fields, |db| dbs(db)));
    }
    drop(probe);
    let options = crate::source::scan::Options {
        full_only: config.full_only,
        prune,
        prune_first: earlier || status.has_synced(),
        rdb: config.rdb.clone(),
        abs_ttl: targets.iter().all(|t| t.target.caps().restore_abs_ttl()),
        dbs,
        cluster_node: slots.is_some(),
        first_slot: slots.and_then(|s| s.first()).map(|r| r.0),
    };
    let skips = vec![0; targets.len()];
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let reader = {
        let (endpoint, status, cancel) = (endpoint.clone(), status.clone(), cancel.clone());
        tokio::spawn(async move {
            crate::source::scan::run(&endpoint, options, tx, status, cancel).await
        })
    };
    let relayed = fanout::relay_all(config, targets, skips, rx, status, cancel, pause).await;
    let read = reader.await.unwrap_or_else(|join| {
        Err(Error::Internal {
            what: "the scan source",
            why: join.to_string(),
        })
    });
    relayed?;
    read?;
    if config.full_only && !cancel.is_cancelled() {
        verify_copy(config, endpoint).await?;
    }
    Ok(())
}

/// A full-only scan copy is compared with the source key by key once it is on the targets:
/// what changed during the copy may be missing, and this says so instead of exiting 0.
async fn verify_copy(config: &TaskConfig, endpoint: &Endpoint) -> Result<()> {
    let mut options = crate::verify::Options::from_task(config)?;
    options.source = endpoint.clone();
    tracing::info!("verifying the copy key by key");
    // A Lua step lives on one thread: the walk runs on the shared workers.
    let (tx, rx) = tokio::sync::oneshot::channel();
    let spawned = crate::workers::shared().spawn(move || async move {
        let _ = tx.send(crate::verify::run(&options).await);
    });
    let summaries = match spawned {
        true => rx.await.unwrap_or_else(|_| {
            Err(Error::Internal {
                what: "the verification of the copy",
                why: "its worker ended early".into(),
            })
        })?,
        false => {
            return Err(Error::Internal {
                what: "the verification of the copy",
                why: "no worker thread could take it".into(),
            });
        }
    };
    for summary in summaries {
        if let Some(first) = summary.differences.first() {
            return Err(Error::Diverged {
                target: summary.target.clone(),
                keys: summary.differences.len(),
                first: first.to_json(None).to_string(),
            });
        }
        tracing::info!(
            target = summary.target,
            keys = summary.source_keys,
            "the copy equals the source"
        );
    }
    Ok(())
}

/// Asks the sentinels every second which server is the master; when it is no longer
/// `current`, stops the stream (`stop`) and returns the new address.
async fn watch_sentinels(
    endpoint: Endpoint,
    current: (String, u16),
    stop: CancellationToken,
    status: Arc<Status>,
) -> Option<String> {
    let sentinels = endpoint.sentinel.clone()?;
    loop {
        tokio::select! {
            _ = stop.cancelled() => return None,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        // A sentinel that cannot be asked is no news: the link itself tells of a dead master.
        if let Ok(now) = sentinels.master_addr(Role::Source, &endpoint).await
            && now != current
        {
            status.warn(
                "failover",
                format!(
                    "the sentinels name {}:{} as the master of {} now; reconnecting",
                    now.0, now.1, sentinels.master
                ),
            );
            stop.cancel();
            return Some(format!("{}:{}", now.0, now.1));
        }
    }
}

/// A cluster source: one stream per shard, run side by side, each with its own checkpoint
/// (`<task>@<first slot>`) and status; the first failure stops them all, and the retry loop
/// starts them all again, each from its checkpoint.
async fn run_cluster_source(
    config: &TaskConfig,
    topology: Topology,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    let stop = cancel.child_token();
    let mut streams = tokio::task::JoinSet::new();
    tracing::info!(
        shards = topology.shards.len(),
        "source is a cluster: one stream per shard"
    );
    let names: Vec<String> = topology
        .shards
        .iter()
        .map(|shard| format!("{}@{}", config.name, shard.first_slot()))
        .collect();
    conflict::before_shards(config, &names, status).await?;
    for (shard, name) in topology.shards.iter().zip(names) {
        let node = match config.read_from {
            ReadFrom::Master => shard.master.clone(),
            ReadFrom::Replica => shard.replicas.first().cloned().ok_or_else(|| {
                Error::Config(format!(
                    "source shard of {} (slots from {}) has no replica online to read from; add one or set [source] read_from = \"master\"",
                    shard.master,
                    shard.first_slot()
                ))
            })?,
        };
        let mut part = config.clone();
        part.name = name;
        part.on_conflict = None;
        part.source = Source::Redis(node.clone());
        part.writer.shared_target = true;
        // Every shard's stream writes to every target master: they share the window of
        // commands awaiting replies, so a target master has `max_in_flight` in flight from
        // the task, not that many per shard (the TTL hold's rounds do not follow it). Each
        // window's commands keep their source buffers alive until answered (a 3 -> 3 task
        // peaked at 54-63 MiB with a whole window per stream, 47-52 MiB with a third).
        part.writer.max_in_flight = (config.writer.max_in_flight / topology.shards.len()).max(1);
        let part_status = status.part(&part.name);
        let ranges = shard.ranges.clone();
        let stop = stop.clone();
        let pause = pause.clone();
        streams.spawn(async move {
            let result = run_source(&part, &node, Some(&ranges), &part_status, &stop, &pause).await;
            if result.is_err() {
                stop.cancel();
            }
            result
        });
    }
    let mut first: Option<Error> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            done = streams.join_next() => {
                let Some(done) = done else { break };
                let result = done.unwrap_or_else(|join| {
                    Err(Error::Internal {
                        what: "a shard's stream",
                        why: join.to_string(),
                    })
                });
                if let Err(e) = result
                    && first.is_none()
                    && !cancel.is_cancelled()
                {
                    first = Some(e);
                }
            }
            _ = tick.tick() => status.fold_parts(),
        }
    }
    status.fold_parts();
    match first {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The writer drains what the source sent, then ends; its error is the more precise one.
async fn join_writer(writer: tokio::task::JoinHandle<Result<()>>) -> Result<()> {
    writer.await.unwrap_or_else(|join| {
        Err(Error::Internal {
            what: "the target writer",
            why: join.to_string(),
        })
    })
}

/// Reads a snapshot file into the channel, then marks its end.
async fn load_file(
    path: &Path,
    rdb: ferry_rdb::Options,
    tx: mpsc::Sender<crate::pipeline::entry::Batch>,
    status: &Arc<Status>,
    cancel: &CancellationToken,
    pause: &Pause,
) -> Result<()> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Local(format!("cannot open source file {name}: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    status.snapshot_size.store(size, Relaxed);
    status.set_phase(Phase::Full);
    tracing::info!(file = %name, bytes = size, "loading snapshot file");
    let reader = FileReader {
        inner: std::io::BufReader::with_capacity(256 * 1024, file),
        status: status.clone(),
        cancel: cancel.clone(),
        pause: pause.clone(),
        read: 0,
    };
    let parser_tx = tx.clone();
    let parsed = tokio::task::spawn_blocking(move || snapshot::parse_into(reader, rdb, &parser_tx))
        .await
        .map_err(|join| Error::Internal {
            what: "the snapshot parser",
            why: join.to_string(),
        })?;
    match parsed {
        Ok(snapshot::Outcome::Done { rdb_version }) => {
            tracing::info!(rdb_version, "snapshot file read to its end");
            let _ = tx.send(vec![Entry::SnapshotEnd { offset: 0 }]).await;
            Ok(())
        }
        Ok(snapshot::Outcome::Abandoned) => Ok(()),
        Err(_) if cancel.is_cancelled() => Ok(()),
        Err(source) => Err(Error::Snapshot { addr: name, source }),
    }
}

/// A file reader that reports progress and stops when the task is cancelled.
struct FileReader {
    inner: std::io::BufReader<std::fs::File>,
    status: Arc<Status>,
    cancel: CancellationToken,
    pause: Pause,
    read: u64,
}

impl std::io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        // Paused: the file waits (this runs on a blocking thread of its own).
        while self.pause.is_paused() && !self.cancel.is_cancelled() {
            std::thread::sleep(Duration::from_millis(100));
        }
        if self.cancel.is_cancelled() {
            // Not `Interrupted`: readers retry on that.
            return Err(std::io::Error::other("stopped"));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.status.bytes_read.store(self.read, Relaxed);
        Ok(n)
    }
}
