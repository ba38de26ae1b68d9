//! What a running task shows the world: phase, counters, offsets and the last error. Written by
//! the engine with atomics (no lock on the hot path) that only the engine sees; a program reads
//! a [`Snapshot`] (`Status::snapshot`, `TaskHandle::status`). What the task tells the world
//! as it happens goes through [`events`].

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering::Relaxed, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use serde::Serialize;

pub mod events;
pub mod latency;
pub mod recent;
pub mod throttle;

use self::events::{EventKind, Events};
use self::latency::Latency;
use crate::status::throttle::{LimitStatus, Throttle};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[repr(u8)]
pub enum Phase {
    Connecting = 0,
    Full = 1,
    Incremental = 2,
    Stopped = 3,
    Failed = 4,
    Retrying = 5,
}

impl Phase {
    /// As in the status JSON.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Connecting => "connecting",
            Phase::Full => "full",
            Phase::Incremental => "incremental",
            Phase::Stopped => "stopped",
            Phase::Failed => "failed",
            Phase::Retrying => "retrying",
        }
    }

    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Connecting,
            1 => Phase::Full,
            2 => Phase::Incremental,
            3 => Phase::Stopped,
            5 => Phase::Retrying,
            _ => Phase::Failed,
        }
    }
}

#[derive(Default)]
pub struct Status {
    phase: AtomicU8,
    /// Keys written to the target from the snapshot (confirmed by the target).
    pub(crate) keys_written: AtomicU64,
    /// Of those, keys too big for one command, written in chunks.
    pub(crate) big_keys: AtomicU64,
    /// Of those, keys rewritten as plain commands because the target cannot read their
    /// encoding (an older version) or RESTORE is turned off.
    pub(crate) rewritten_keys: AtomicU64,
    /// Things the target cannot hold and that were left out, each logged as a warning (function
    /// libraries on targets before 7.0, hash field TTLs before 7.4, idle stream consumers before 6.2).
    pub(crate) dropped: AtomicU64,
    /// Writes the target refused and that `on_error` skipped.
    pub(crate) skipped_errors: AtomicU64,
    /// While retrying: unix time (s) at which the task gives up.
    pub(crate) retry_until: AtomicU64,
    /// Times the task has retried after a failure.
    pub(crate) retries: AtomicU64,
    /// Snapshot bytes received from the source.
    pub(crate) bytes_read: AtomicU64,
    /// Snapshot size announced by the source; 0 when it streams without a length (diskless).
    pub(crate) snapshot_size: AtomicU64,
    /// Replication offset at which the snapshot was taken.
    pub(crate) snapshot_offset: AtomicU64,
    /// Keys the source held as the copy began (`INFO keyspace`, over the synced dbs).
    source_keys: Mutex<Option<u64>>,
    /// While waiting for a diskless source to start its snapshot: its
    /// `repl-diskless-sync-delay` in seconds (0: not waiting, or no delay).
    pub(crate) diskless_wait_s: AtomicU64,
    /// Latest replication offset received from the source.
    pub(crate) source_offset: AtomicU64,
    /// Replication offset whose effects the target has confirmed.
    pub(crate) applied_offset: AtomicU64,
    /// Commands from the replication stream confirmed by the target.
    pub(crate) ops_applied: AtomicU64,
    /// Source transactions that spanned slots of a cluster target, applied as one transaction
    /// per slot: atomic per slot, not as a whole.
    pub(crate) relaxed_transactions: AtomicU64,
    /// Commands whose keys span slots of a cluster target, applied by computing the result
    /// from the target's own data (see the README).
    pub(crate) cross_slot_commands: AtomicU64,
    /// Bytes of the command stream kept in the local spool now.
    pub(crate) spool_bytes: AtomicU64,
    /// The spool's size limit (0: no spool).
    pub(crate) spool_limit: AtomicU64,
    /// The spool is full of writes the target has not confirmed: the source is not read.
    pub(crate) spool_full: AtomicBool,
    /// Snapshot keys the `[filter]` rules left out.
    pub(crate) filtered_keys: AtomicU64,
    /// Stream commands the `[filter]` rules left out (their position still counts as applied).
    pub(crate) filtered_commands: AtomicU64,
    /// Stream commands cut down to the keys the filter allows (DEL, MSET... over allowed and
    /// blocked keys).
    pub(crate) split_commands: AtomicU64,
    /// Stream commands over allowed and blocked keys that cannot be cut per key (RENAME,
    /// SUNIONSTORE...): left out, each with a warning.
    pub(crate) unsplittable_commands: AtomicU64,
    /// End-to-end latency of this stream (source write → applied on the target).
    pub(crate) latency: Latency,
    last_error: Mutex<Option<String>>,
    replid: Mutex<Option<String>>,
    /// How the source is read, once decided ("psync" or "scan").
    source_mode: Mutex<Option<&'static str>>,
    /// How the target is written ("commands" or "replica"), once the task runs.
    target_mode: Mutex<Option<&'static str>>,
    /// Scan mode: changed keys waiting to be read again.
    pub(crate) pending_keys: AtomicU64,
    /// Scan mode: a full pass is asked for (a cutover: changes Redis notifies nothing for,
    /// such as a consumer group's progress, are read then).
    pub(crate) rescan_asked: AtomicBool,
    /// Scan mode: full passes finished after the first.
    pub(crate) rescans: AtomicU64,
    /// A source accepted ferry's login and replica handshake in this process: a link lost
    /// after that is a lost connection to retry, not a wrong address or password.
    source_accepted: std::sync::atomic::AtomicBool,
    /// A cluster source: one status per shard, by name.
    parts: Mutex<Vec<(String, Arc<Status>)>>,
    /// Several targets fed from one stream: one status per target, by address.
    targets: Mutex<Vec<(String, Arc<Status>)>>,
    /// The task's limits, when it has any (shared with its writers).
    throttle: std::sync::OnceLock<Arc<Throttle>>,
    /// Continuous verification, when on: fed the keys the stream writes.
    live_verify: std::sync::OnceLock<(Arc<recent::RecentWrites>, usize)>,
    /// Where this task's (or shard's) events go.
    events: Events,
}

/// One shard of a cluster source, as `GET /status` shows it.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Part {
    pub name: String,
    #[serde(flatten)]
    pub status: Snapshot,
}

/// A point-in-time copy, as served by `GET /status`.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Snapshot {
    pub phase: Phase,
    pub keys_written: u64,
    pub big_keys: u64,
    pub rewritten_keys: u64,
    pub dropped: u64,
    pub skipped_errors: u64,
    pub retries: u64,
    /// While retrying: seconds left before the task gives up.
    pub retry_left_s: Option<u64>,
    pub bytes_read: u64,
    pub snapshot_size: u64,
    /// Keys the source held when the sync began (its `INFO keyspace`, over the synced dbs):
    /// what the full copy's progress counts towards. Null when unknown (an RDB file, or a
    /// source user that may not run INFO). A cluster source: the sum over its shards.
    pub source_keys: Option<u64>,
    /// While ferry waits for a diskless source to start sending its snapshot (the source
    /// holds it back `repl-diskless-sync-delay` seconds so more replicas can share it): that
    /// delay in seconds; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diskless_wait_s: Option<u64>,
    /// How the source is read: "psync" (as a replica) or "scan" (SCAN, then keyspace
    /// notifications); null until the task has connected and decided.
    pub source_mode: Option<String>,
    /// What the target's copy promises in that mode: "exactly_once" (psync: every write
    /// applied once, in the source's order) or "converges" (scan: once writes stop, the target
    /// equals the source; writes between are not replayed one by one, nor in order across keys).
    pub guarantee: Option<String>,
    /// Scan mode: keys the source notified as changed that wait to be read again (with
    /// `lag_bytes` 0 and this 0, the target holds everything ferry has heard of); absent in
    /// psync mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pending_keys: Option<u64>,
    /// How the target is written: "commands" (as a client, with a checkpoint key) or
    /// "replica" (it replicates from ferry; its own offset is the checkpoint, and
    /// `ops_applied` is not counted: the stream is relayed as bytes).
    pub target_mode: Option<String>,
    pub source_replid: Option<String>,
    pub source_offset: u64,
    pub applied_offset: u64,
    pub lag_bytes: u64,
    /// How far behind the target is in time: the age of the oldest heartbeat write it has not
    /// applied, else the latency of the last one it applied; null when unknown. A cluster
    /// source: the shard furthest behind.
    pub lag_s: Option<f64>,
    pub ops_applied: u64,
    pub relaxed_transactions: u64,
    pub cross_slot_commands: u64,
    pub spool_bytes: u64,
    pub spool_limit: u64,
    pub spool_full: bool,
    pub filtered_keys: u64,
    pub filtered_commands: u64,
    pub split_commands: u64,
    pub unsplittable_commands: u64,
    /// Source write → applied on the target over the last minute; null without samples. A
    /// cluster source: every shard's samples together.
    pub latency_ms: Option<latency::Report>,
    pub last_error: Option<String>,
    /// A cluster source: each shard's own status (offsets are in each shard's own stream).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub shards: Vec<Part>,
    /// Several targets: each target's own status (`name` is its address); the top-level
    /// figures are the least advanced target's.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub targets: Vec<Part>,
    /// The configured limits and whether they hold the writers back, when any is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<LimitStatus>,
    /// Continuous verification of recently written keys, when on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verify: Option<recent::VerifyReport>,
}

impl Status {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    pub fn set_phase(&self, phase: Phase) {
        let from = Phase::from_u8(self.phase.swap(phase as u8, Relaxed));
        if from != phase {
            self.events.emit(EventKind::Phase { from, to: phase });
        }
    }

    /// A status whose events go to `events`.
    pub fn new(events: Events) -> Status {
        Status {
            events,
            ..Status::default()
        }
    }

    /// Where this status's events go: the one place to log, count and publish them.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// Something the user should know that does not stop the task (logged, counted, sent).
    pub fn warn(&self, code: &'static str, message: String) {
        self.events.emit(EventKind::Warning { code, message });
    }

    pub fn set_error(&self, msg: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }

    /// Shows the task's limits (and how much they held the writers back) from now on.
    pub fn show_limits(&self, throttle: Arc<Throttle>) {
        let _ = self.throttle.set(throttle);
    }

    /// Whether a source has accepted PSYNC in this process: before that, failures are the
    /// user's to fix (wrong address, password), not to retry.
    pub fn has_synced(&self) -> bool {
        self.replid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// The source took the login and the replica handshake (REPLCONF).
    pub fn accept_source(&self) {
        self.source_accepted.store(true, Relaxed);
    }

    /// Whether a source (this one, or a shard's) took the login and the replica handshake in
    /// this process.
    pub fn source_accepted(&self) -> bool {
        self.source_accepted.load(Relaxed)
            || self
                .parts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|(_, s)| s.source_accepted())
    }

    /// The source's key count as the sync begins, over the synced dbs.
    pub fn set_source_keys(&self, keys: u64) {
        *self.source_keys.lock().unwrap_or_else(|e| e.into_inner()) = Some(keys);
    }

    fn source_keys(&self) -> Option<u64> {
        *self.source_keys.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn set_replid(&self, replid: String) {
        *self.replid.lock().unwrap_or_else(|e| e.into_inner()) = Some(replid);
    }

    /// What the source may be told is applied (its `REPLCONF ACK`): with several targets fed
    /// from this stream, what the slowest has confirmed now (not as of the last fold).
    pub(crate) fn confirmed_offset(&self) -> u64 {
        let targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        match targets
            .iter()
            .map(|(_, t)| t.applied_offset.load(SeqCst))
            .min()
        {
            Some(low) => low,
            None => self.applied_offset.load(SeqCst),
        }
    }

    /// Raises the applied offset; never moves it back.
    pub fn applied(&self, offset: u64) {
        // SeqCst pairs with `probe_taken`: a probe taken as the offset passes it is not missed.
        self.applied_offset.fetch_max(offset, SeqCst);
        self.latency.confirmed(offset);
    }

    /// A write to one of ferry's own keys came through the stream, ending at `offset` (this
    /// task's heartbeat is a latency probe).
    pub fn own_key_seen(&self, args: &[Bytes], offset: u64) {
        if self.latency.own_key_seen(args, offset) {
            self.probe_taken();
        }
    }

    /// Continuous verification is on: the keys this status's stream (number `stream` of
    /// `live`'s) writes go to `live`.
    pub fn watch_writes(&self, live: Arc<recent::RecentWrites>, stream: usize) {
        let _ = self.live_verify.set((live, stream));
    }

    /// The stream carried a command for the target, ending at `offset`.
    pub fn wrote(&self, db: u32, args: &[Bytes], offset: u64) {
        if let Some((live, stream)) = self.live_verify.get() {
            live.wrote(*stream, db, args, offset);
        }
    }

    /// Keys a scan source was told of at `since` at the earliest are read and in the stream up
    /// to `offset`: their latency is a probe.
    pub(crate) fn changed_since(&self, offset: u64, since: Instant) {
        if self.latency.changed_since(offset, since) {
            self.probe_taken();
        }
    }

    /// The stream has been read up to `offset` (a latency probe while estimating).
    pub fn received(&self, offset: u64) {
        if self.latency.received(offset) {
            self.probe_taken();
        }
    }

    /// The target may have confirmed a probe's position before it was taken.
    fn probe_taken(&self) {
        self.latency.confirmed(self.applied_offset.load(SeqCst));
    }

    /// Folds what the writers of a cluster target's masters confirmed into this task status:
    /// counters add up (by what changed since `seen`), the applied offset is the lowest of
    /// theirs, and the copy is applied once every writer has applied it.
    pub fn fold_writers(&self, writers: &[Arc<Status>], seen: &mut Vec<[u64; 6]>) {
        seen.resize(writers.len(), [0; 6]);
        for (w, seen) in writers.iter().zip(seen.iter_mut()) {
            let counters = [
                (&w.keys_written, &self.keys_written),
                (&w.big_keys, &self.big_keys),
                (&w.rewritten_keys, &self.rewritten_keys),
                (&w.dropped, &self.dropped),
                (&w.skipped_errors, &self.skipped_errors),
                (&w.ops_applied, &self.ops_applied),
            ];
            for (i, (from, to)) in counters.into_iter().enumerate() {
                let now = from.load(Relaxed);
                to.fetch_add(now.saturating_sub(seen[i]), Relaxed);
                seen[i] = now;
            }
        }
        if let Some(low) = writers.iter().map(|w| w.applied_offset.load(Relaxed)).min() {
            self.applied(low);
        }
        if !writers.is_empty()
            && self.phase() == Phase::Full
            && writers.iter().all(|w| w.phase() == Phase::Incremental)
        {
            self.set_phase(Phase::Incremental);
        }
    }

    /// The status of one shard of a cluster source, kept across retries.
    pub fn part(&self, name: &str) -> Arc<Status> {
        let mut parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = parts.iter().find(|(n, _)| n == name) {
            return s.clone();
        }
        let s = Arc::new(Status::new(self.events.for_shard(name)));
        // Each shard's stream feeds the continuous checks too.
        if let Some((live, _)) = self.live_verify.get() {
            s.watch_writes(live.clone(), live.add_stream(&s));
        }
        parts.push((name.to_string(), s.clone()));
        s
    }

    /// The status of one of several targets fed from this stream, kept across retries.
    pub fn target(&self, name: &str) -> Arc<Status> {
        let mut targets = self.targets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, s)) = targets.iter().find(|(n, _)| n == name) {
            return s.clone();
        }
        let s = Arc::new(Status::new(self.events.for_shard(name)));
        targets.push((name.to_string(), s.clone()));
        s
    }

    /// Folds the targets fed from this stream into it: progress (applied offset, keys and
    /// commands written) is the least advanced target's, so the source is acknowledged only
    /// what every target holds; refusals, drops and spools add up. Each target is shown the
    /// stream's position, for its own lag.
    pub fn fold_targets(&self) {
        let targets: Vec<Arc<Status>> = self
            .targets
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        if targets.is_empty() {
            return;
        }
        // Through `applied`: this stream's latency probes are settled as it moves.
        if let Some(low) = targets.iter().map(|t| t.applied_offset.load(Relaxed)).min() {
            self.applied(low);
        }
        let least: [fn(&Status) -> &AtomicU64; 4] = [
            |s| &s.keys_written,
            |s| &s.big_keys,
            |s| &s.rewritten_keys,
            |s| &s.ops_applied,
        ];
        for f in least {
            let low = targets
                .iter()
                .map(|t| f(t).load(Relaxed))
                .min()
                .unwrap_or(0);
            f(self).store(low, Relaxed);
        }
        let summed: [fn(&Status) -> &AtomicU64; 4] = [
            |s| &s.dropped,
            |s| &s.skipped_errors,
            |s| &s.spool_bytes,
            |s| &s.spool_limit,
        ];
        for f in summed {
            f(self).store(targets.iter().map(|t| f(t).load(Relaxed)).sum(), Relaxed);
        }
        self.spool_full
            .store(targets.iter().any(|t| t.spool_full.load(Relaxed)), Relaxed);
        let replid = self
            .replid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for t in &targets {
            if t.phase() == Phase::Connecting && self.phase() == Phase::Full {
                t.set_phase(Phase::Full);
            }
            t.source_offset
                .store(self.source_offset.load(Relaxed), Relaxed);
            t.snapshot_size
                .store(self.snapshot_size.load(Relaxed), Relaxed);
            t.bytes_read.store(self.bytes_read.load(Relaxed), Relaxed);
            if let Some(keys) = self.source_keys() {
                t.set_source_keys(keys);
            }
            if let Some(r) = &replid {
                t.set_replid(r.clone());
            }
        }
        if self.phase() == Phase::Full
            && targets
                .iter()
                .all(|t| matches!(t.phase(), Phase::Incremental | Phase::Failed))
        {
            self.set_phase(Phase::Incremental);
        }
    }

    /// Folds the shards of a cluster source into this task status: counters, offsets and lags
    /// add up (each shard has its own stream), the phase is the least advanced one's.
    pub fn fold_parts(&self) {
        let parts: Vec<Arc<Status>> = self
            .parts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|(_, s)| s.clone())
            .collect();
        if parts.is_empty() {
            return;
        }
        let sum =
            |f: fn(&Status) -> &AtomicU64| parts.iter().map(|p| f(p).load(Relaxed)).sum::<u64>();
        let fields: [fn(&Status) -> &AtomicU64; 19] = [
            |s| &s.keys_written,
            |s| &s.big_keys,
            |s| &s.rewritten_keys,
            |s| &s.dropped,
            |s| &s.skipped_errors,
            |s| &s.bytes_read,
            |s| &s.snapshot_size,
            |s| &s.snapshot_offset,
            |s| &s.source_offset,
            |s| &s.applied_offset,
            |s| &s.ops_applied,
            |s| &s.relaxed_transactions,
            |s| &s.cross_slot_commands,
            |s| &s.spool_bytes,
            |s| &s.spool_limit,
            |s| &s.filtered_keys,
            |s| &s.filtered_commands,
            |s| &s.split_commands,
            |s| &s.unsplittable_commands,
        ];
        for f in fields {
            f(self).store(sum(f), Relaxed);
        }
        self.spool_full
            .store(parts.iter().any(|p| p.spool_full.load(Relaxed)), Relaxed);
        // Shards that could not be counted add nothing; none counted: unknown.
        if let Some(keys) = parts
            .iter()
            .filter_map(|p| p.source_keys())
            .reduce(|a, b| a + b)
        {
            self.set_source_keys(keys);
        }
        self.diskless_wait_s.store(
            parts
                .iter()
                .map(|p| p.diskless_wait_s.load(Relaxed))
                .max()
                .unwrap_or(0),
            Relaxed,
        );
        let phases: Vec<Phase> = parts.iter().map(|p| p.phase()).collect();
        let phase = if phases.contains(&Phase::Connecting) {
            Phase::Connecting
        } else if phases.contains(&Phase::Full) {
            Phase::Full
        } else {
            Phase::Incremental
        };
        if matches!(
            self.phase(),
            Phase::Connecting | Phase::Full | Phase::Incremental
        ) {
            self.set_phase(phase);
        }
        let replid = parts
            .iter()
            .find_map(|p| p.replid.lock().unwrap_or_else(|e| e.into_inner()).clone());
        if let Some(r) = replid {
            self.set_replid(r);
        }
    }

    /// Records how the source is read ("psync" or "scan").
    pub(crate) fn set_mode(&self, mode: &'static str) {
        *self.source_mode.lock().unwrap_or_else(|e| e.into_inner()) = Some(mode);
    }

    /// Records how the target is written ("commands" or "replica").
    pub(crate) fn set_target_mode(&self, mode: &'static str) {
        *self.target_mode.lock().unwrap_or_else(|e| e.into_inner()) = Some(mode);
    }

    /// Asks a scan source (each shard's) for a full pass; returns the passes finished so far,
    /// to be compared with `rescans_done` later.
    pub(crate) fn ask_rescan(&self) -> u64 {
        let done = self.rescans_done();
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        for (_, p) in parts.iter() {
            p.rescan_asked.store(true, SeqCst);
        }
        self.rescan_asked.store(true, SeqCst);
        done
    }

    /// Full passes finished after the first: the fewest of any shard.
    pub(crate) fn rescans_done(&self) -> u64 {
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
        match parts.is_empty() {
            true => self.rescans.load(SeqCst),
            false => parts
                .iter()
                .map(|(_, p)| p.rescans.load(SeqCst))
                .min()
                .unwrap_or(0),
        }
    }

    /// Nothing has said yet how the source is read: what is said once is said now.
    pub(crate) fn mode_unknown(&self) -> bool {
        self.mode().is_none()
    }

    /// How the source is read; a cluster source's shards all read one way.
    fn mode(&self) -> Option<&'static str> {
        let own = *self.source_mode.lock().unwrap_or_else(|e| e.into_inner());
        own.or_else(|| {
            let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner());
            parts.iter().find_map(|(_, p)| p.mode())
        })
    }

    pub fn snapshot(&self) -> Snapshot {
        let now = Instant::now();
        let parts = self.parts.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let latency_ms = match parts.is_empty() {
            true => self.latency.report(now),
            false => latency::Report::of(
                &parts
                    .iter()
                    .flat_map(|(_, p)| p.latency.samples(now))
                    .collect::<Vec<_>>(),
            ),
        };
        let lag_s = match parts.is_empty() {
            true => self.latency.behind(now),
            false => parts
                .iter()
                .filter_map(|(_, p)| p.latency.behind(now))
                .max(),
        }
        .map(|d| d.as_secs_f64());
        let source_offset = self.source_offset.load(Relaxed);
        let applied_offset = self.applied_offset.load(Relaxed);
        let phase = self.phase();
        Snapshot {
            phase,
            keys_written: self.keys_written.load(Relaxed),
            big_keys: self.big_keys.load(Relaxed),
            rewritten_keys: self.rewritten_keys.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            skipped_errors: self.skipped_errors.load(Relaxed),
            retries: self.retries.load(Relaxed),
            retry_left_s: (phase == Phase::Retrying).then(|| {
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                self.retry_until.load(Relaxed).saturating_sub(now)
            }),
            bytes_read: self.bytes_read.load(Relaxed),
            snapshot_size: self.snapshot_size.load(Relaxed),
            source_keys: self.source_keys(),
            diskless_wait_s: Some(self.diskless_wait_s.load(Relaxed)).filter(|&s| s > 0),
            source_mode: self.mode().map(str::to_string),
            target_mode: self
                .target_mode
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .map(str::to_string),
            pending_keys: (self.mode() == Some("scan")).then(|| match parts.is_empty() {
                true => self.pending_keys.load(Relaxed),
                false => parts
                    .iter()
                    .map(|(_, p)| p.pending_keys.load(Relaxed))
                    .sum(),
            }),
            guarantee: self.mode().map(|m| match m {
                "scan" => "converges".to_string(),
                _ => "exactly_once".to_string(),
            }),
            source_replid: self
                .replid
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            source_offset,
            applied_offset,
            // Before the snapshot is applied nothing counts as caught up.
            lag_bytes: source_offset.saturating_sub(applied_offset),
            lag_s,
            ops_applied: self.ops_applied.load(Relaxed),
            relaxed_transactions: self.relaxed_transactions.load(Relaxed),
            cross_slot_commands: self.cross_slot_commands.load(Relaxed),
            spool_bytes: self.spool_bytes.load(Relaxed),
            spool_limit: self.spool_limit.load(Relaxed),
            spool_full: self.spool_full.load(Relaxed),
            filtered_keys: self.filtered_keys.load(Relaxed),
            filtered_commands: self.filtered_commands.load(Relaxed),
            split_commands: self.split_commands.load(Relaxed),
            unsplittable_commands: self.unsplittable_commands.load(Relaxed),
            latency_ms,
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            shards: parts
                .iter()
                .map(|(name, s)| Part {
                    name: name.clone(),
                    status: s.snapshot(),
                })
                .collect(),
            targets: self
                .targets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(name, s)| Part {
                    name: name.clone(),
                    status: s.snapshot(),
                })
                .collect(),
            limit: self
                .throttle
                .get()
                .map(|t| t.status())
                .filter(|l| !l.limits.is_empty() || l.throttled_ms > 0),
            // Once, at the top (a shard's status would repeat the same figures).
            verify: self
                .live_verify
                .get()
                .filter(|(_, stream)| *stream == 0)
                .map(|(l, _)| l.report()),
        }
    }
}
