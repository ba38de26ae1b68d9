//! What a running task shows the world: phase, counters, offsets and the last error. Written by
//! the engine with atomics (no lock on the hot path), read by the status API and the terminal UI.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering::Relaxed};

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
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
    pub keys_written: AtomicU64,
    /// Of those, keys too big for one command, written in chunks.
    pub big_keys: AtomicU64,
    /// Of those, keys rewritten as plain commands because the target cannot read their
    /// encoding (an older version) or RESTORE is turned off.
    pub rewritten_keys: AtomicU64,
    /// Things the target cannot hold and that were left out, each logged as a warning (function
    /// libraries on targets before 7.0, hash field TTLs before 7.4, idle stream consumers before 6.2).
    pub dropped: AtomicU64,
    /// Writes the target refused and that `on_error` skipped.
    pub skipped_errors: AtomicU64,
    /// While retrying: unix time (s) at which the task gives up.
    pub retry_until: AtomicU64,
    /// Times the task has retried after a failure.
    pub retries: AtomicU64,
    /// Snapshot bytes received from the source.
    pub bytes_read: AtomicU64,
    /// Snapshot size announced by the source; 0 when it streams without a length (diskless).
    pub snapshot_size: AtomicU64,
    /// Replication offset at which the snapshot was taken.
    pub snapshot_offset: AtomicU64,
    /// Latest replication offset received from the source.
    pub source_offset: AtomicU64,
    /// Replication offset whose effects the target has confirmed.
    pub applied_offset: AtomicU64,
    /// Commands from the replication stream confirmed by the target.
    pub ops_applied: AtomicU64,
    last_error: Mutex<Option<String>>,
    replid: Mutex<Option<String>>,
}

/// A point-in-time copy, as served by `GET /status`.
#[derive(Clone, Debug, Serialize)]
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
    pub source_replid: Option<String>,
    pub source_offset: u64,
    pub applied_offset: u64,
    pub lag_bytes: u64,
    pub ops_applied: u64,
    pub last_error: Option<String>,
}

impl Status {
    pub fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Relaxed))
    }

    pub fn set_phase(&self, phase: Phase) {
        self.phase.store(phase as u8, Relaxed);
    }

    pub fn set_error(&self, msg: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg);
    }

    /// Whether a source has accepted PSYNC in this process: before that, failures are the
    /// user's to fix (wrong address, password), not to retry.
    pub fn has_synced(&self) -> bool {
        self.replid
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    pub fn set_replid(&self, replid: String) {
        *self.replid.lock().unwrap_or_else(|e| e.into_inner()) = Some(replid);
    }

    /// Raises the applied offset; never moves it back.
    pub fn applied(&self, offset: u64) {
        self.applied_offset.fetch_max(offset, Relaxed);
    }

    pub fn snapshot(&self) -> Snapshot {
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
            source_replid: self
                .replid
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
            source_offset,
            applied_offset,
            // Before the snapshot is applied nothing counts as caught up.
            lag_bytes: source_offset.saturating_sub(applied_offset),
            ops_applied: self.ops_applied.load(Relaxed),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
