//! The keys the stream wrote most recently (a bounded ring the source fills as it reads
//! commands), for continuous verification (`verify::live`) to sample, and what its checks found.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, Weak};

use bytes::Bytes;
use ferry_keyspace::Keys;
use serde::Serialize;

use super::Status;
use crate::spec::LiveVerify;

/// Recently written keys, and what the checks found. Shared with the source (which fills it)
/// through the task's status.
pub struct RecentWrites {
    /// (db, key, stream, offset just after the write in that stream): the newest at the back.
    recent: Mutex<VecDeque<(u32, Bytes, usize, u64)>>,
    /// The status of each stream feeding the ring (one, or one per shard of a cluster
    /// source), to know when the target has confirmed a write. Weak: the statuses hold this.
    streams: Mutex<Vec<Weak<Status>>>,
    capacity: usize,
    /// What the checks found, updated as a whole so the status never shows half a check.
    found: Mutex<VerifyReport>,
}

/// `GET /status`'s `verify` object.
#[derive(Clone, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    /// Keys compared since the start.
    pub compared: u64,
    /// Of those, keys that still differed when compared again.
    pub mismatched: u64,
    /// The share of differing keys in the last check (null before the first).
    pub mismatch_ratio: Option<f64>,
}

impl RecentWrites {
    pub fn new(settings: LiveVerify) -> RecentWrites {
        // Room for a few samples' worth: the same key written over and over counts once.
        let capacity = settings.sample.saturating_mul(4).max(16);
        RecentWrites {
            recent: Mutex::new(VecDeque::with_capacity(capacity)),
            streams: Mutex::new(Vec::new()),
            capacity,
            found: Mutex::new(VerifyReport {
                compared: 0,
                mismatched: 0,
                mismatch_ratio: None,
            }),
        }
    }

    /// Registers the status of a stream that feeds the ring; returns its number.
    pub fn add_stream(&self, status: &Arc<Status>) -> usize {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        streams.push(Arc::downgrade(status));
        streams.len() - 1
    }

    /// Stream `stream` carried `args` in `db`, ending at `offset`: the first key it writes
    /// is remembered.
    pub fn wrote(&self, stream: usize, db: u32, args: &[Bytes], offset: u64) {
        let Keys::Keyed(keys) = ferry_keyspace::keys(args) else {
            return;
        };
        let Some(key) = keys.written().next().and_then(|p| args.get(p)) else {
            return;
        };
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        if recent.len() == self.capacity {
            recent.pop_front();
        }
        recent.push_back((db, key.clone(), stream, offset));
    }

    /// Up to `n` distinct keys, the most recent first, and per stream the offset that covers
    /// them all.
    pub(crate) fn take(&self, n: usize) -> (Vec<(u32, Bytes)>, BTreeMap<usize, u64>) {
        let recent = std::mem::take(&mut *self.recent.lock().unwrap_or_else(|e| e.into_inner()));
        let mut seen = HashSet::new();
        let mut out = Vec::new();
        let mut offsets = BTreeMap::new();
        for (db, key, stream, at) in recent.into_iter().rev() {
            if out.len() < n && seen.insert((db, key.clone())) {
                out.push((db, key));
                let o = offsets.entry(stream).or_insert(0);
                *o = at.max(*o);
            }
        }
        (out, offsets)
    }

    /// Whether the target has confirmed every stream up to `offsets`.
    pub(crate) fn confirmed(&self, offsets: &BTreeMap<usize, u64>) -> bool {
        let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        offsets.iter().all(|(&i, &offset)| {
            streams
                .get(i)
                .and_then(Weak::upgrade)
                .is_some_and(|s| s.applied_offset.load(Relaxed) >= offset)
        })
    }

    pub fn report(&self) -> VerifyReport {
        self.found.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    pub(crate) fn checked(&self, compared: u64, mismatched: u64) {
        let mut found = self.found.lock().unwrap_or_else(|e| e.into_inner());
        found.compared += compared;
        found.mismatched += mismatched;
        found.mismatch_ratio = Some(match compared {
            0 => 0.0,
            n => mismatched as f64 / n as f64,
        });
    }
}
