//! End-to-end latency: how long a write on the source takes to be applied on the target.
//!
//! A probe is a stream position and the instant it started: the heartbeat's own write (its send
//! time, see `heartbeat`) or, when the source refuses that write, the moment a position was
//! first read from the replication stream (an estimate that misses the source→ferry leg). The
//! probe waits until the target confirms its position, then becomes one sample. Samples are
//! kept for the last minute in a bounded ring and reported as percentiles.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;

/// How far back the percentiles look.
pub const WINDOW: Duration = Duration::from_secs(60);
/// At most this many samples are held: one a second over the window, with room to spare.
const MAX_SAMPLES: usize = 128;
/// At most this many probes wait for the target. A stalled target keeps the oldest ones, which
/// tell the longest wait; later ones are not taken until there is room.
const MAX_WAITING: usize = 128;
/// Heartbeat send instants remembered, for a precise clock; older ones fall back to the
/// millisecond wall clock in the key's value.
const MAX_SENT: usize = 16;
/// What every heartbeat key starts with (`heartbeat::key`).
pub const HEARTBEAT_PREFIX: &[u8] = b"__ferry:heartbeat:";
/// Estimated probes are taken at most this often.
const ESTIMATE_EVERY: Duration = Duration::from_secs(1);

/// One measured latency.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sample {
    /// When the target confirmed it.
    pub at: Instant,
    pub latency: Duration,
    /// Measured from when ferry read the position, not from the source's write.
    pub estimated: bool,
}

/// The samples of the last `WINDOW`, oldest first, at most `MAX_SAMPLES`.
#[derive(Debug, Default)]
pub struct Window {
    samples: VecDeque<Sample>,
}

impl Window {
    pub fn record(&mut self, sample: Sample) {
        if self.samples.len() == MAX_SAMPLES {
            self.samples.pop_front();
        }
        self.samples.push_back(sample);
    }

    /// The samples confirmed within `WINDOW` before `now`.
    pub fn recent(&self, now: Instant) -> impl Iterator<Item = &Sample> {
        self.samples
            .iter()
            .filter(move |s| now.saturating_duration_since(s.at) <= WINDOW)
    }

    fn prune(&mut self, now: Instant) {
        while self
            .samples
            .front()
            .is_some_and(|s| now.saturating_duration_since(s.at) > WINDOW)
        {
            self.samples.pop_front();
        }
    }
}

/// Percentiles of a set of samples, as `GET /status` shows them (milliseconds).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub p50: f64,
    pub p99: f64,
    pub samples: usize,
    /// Some of the samples are estimates (the source refused the heartbeat's write).
    pub estimated: bool,
}

impl Report {
    /// None for no samples.
    pub fn of<'a>(samples: impl IntoIterator<Item = &'a Sample>) -> Option<Report> {
        let mut estimated = false;
        let mut micros: Vec<u64> = samples
            .into_iter()
            .map(|s| {
                estimated |= s.estimated;
                u64::try_from(s.latency.as_micros()).unwrap_or(u64::MAX)
            })
            .collect();
        if micros.is_empty() {
            return None;
        }
        micros.sort_unstable();
        let ms = |us: u64| us as f64 / 1000.0;
        Some(Report {
            p50: ms(percentile(&micros, 50)),
            p99: ms(percentile(&micros, 99)),
            samples: micros.len(),
            estimated,
        })
    }
}

/// Nearest rank: the smallest value with at least `p` percent of the values at or below it.
/// `sorted` is non-empty and ascending.
fn percentile(sorted: &[u64], p: usize) -> u64 {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank.min(sorted.len()) - 1]
}

/// A position in the stream waiting for the target, and when it started.
#[derive(Debug)]
struct Probe {
    offset: u64,
    since: Instant,
    estimated: bool,
}

#[derive(Debug, Default)]
struct Inner {
    /// Counts the streams begun, to tell a late heartbeat of an earlier one.
    stream: u64,
    /// This task's heartbeat key, while the heartbeat runs.
    key: Option<Bytes>,
    /// Heartbeat values (ms since the epoch) written, and the instant each was sent.
    sent: VecDeque<(u64, Instant)>,
    waiting: VecDeque<Probe>,
    last_estimate: Option<Instant>,
    window: Window,
}

/// One replication stream's latency: probes waiting for the target, and the samples.
#[derive(Debug)]
pub struct Latency {
    /// The position the oldest waiting probe needs; `u64::MAX` when none waits, so the
    /// writer's path (every confirmation) costs one atomic load.
    due: AtomicU64,
    /// The source refused the heartbeat's write: take estimated probes from the stream.
    estimating: AtomicBool,
    /// Why the source refuses has been logged (once per task).
    pub refusal_logged: AtomicBool,
    inner: Mutex<Inner>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency {
            due: AtomicU64::new(u64::MAX),
            estimating: AtomicBool::new(false),
            refusal_logged: AtomicBool::new(false),
            inner: Mutex::default(),
        }
    }
}

/// Milliseconds since the epoch, as the heartbeat writes them.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Latency {
    fn inner(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A stream starts: probes of an earlier one are void (its positions may not be this
    /// one's). Returns the stream's number, which the heartbeat passes back, so a heartbeat
    /// of an earlier stream still winding down changes nothing.
    pub fn begin(&self) -> u64 {
        let mut inner = self.inner();
        inner.stream += 1;
        inner.key = None;
        inner.sent.clear();
        inner.waiting.clear();
        self.due.store(u64::MAX, SeqCst);
        self.estimating.store(false, SeqCst);
        inner.stream
    }

    /// The stream `stream` has ended: no more probes from it.
    pub fn end(&self, stream: u64) {
        let mut inner = self.inner();
        if inner.stream == stream {
            inner.key = None;
            inner.waiting.clear();
            self.due.store(u64::MAX, SeqCst);
            self.estimating.store(false, SeqCst);
        }
    }

    /// The heartbeat of `stream` writes `key`.
    pub fn set_key(&self, stream: u64, key: Bytes) {
        let mut inner = self.inner();
        if inner.stream == stream {
            inner.key = Some(key);
        }
    }

    /// Switches `stream` between heartbeat probes and estimated ones; true when it changed.
    pub fn set_estimating(&self, stream: u64, on: bool) -> bool {
        let inner = self.inner();
        inner.stream == stream && self.estimating.swap(on, SeqCst) != on
    }

    /// Whether a probe waits for the target.
    pub fn waiting(&self) -> bool {
        self.due.load(SeqCst) != u64::MAX
    }

    /// The heartbeat is about to write `value` (ms since the epoch).
    pub fn sent(&self, value: u64, at: Instant) {
        let mut inner = self.inner();
        if inner.sent.len() == MAX_SENT {
            inner.sent.pop_front();
        }
        inner.sent.push_back((value, at));
    }

    /// A write to one of ferry's own keys came through the stream, ending at `offset`: when it
    /// is this task's heartbeat, a probe from its send time. True when one was taken.
    pub fn own_key_seen(&self, args: &[Bytes], offset: u64) -> bool {
        let [name, key, value, ..] = args else {
            return false;
        };
        // Cheap tests first: in a cascade every transaction carries another ferry's checkpoint.
        if !name.eq_ignore_ascii_case(b"SET") || !key.starts_with(HEARTBEAT_PREFIX) {
            return false;
        }
        let mut inner = self.inner();
        if inner.key.as_ref() != Some(key) {
            return false;
        }
        let Some(value) = std::str::from_utf8(value)
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return false;
        };
        let now = Instant::now();
        let since = match inner.sent.iter().find(|(v, _)| *v == value) {
            Some((_, at)) => *at,
            // Sent before this process remembers (an earlier run): its wall clock says when.
            None => {
                let ago = Duration::from_millis(unix_ms().saturating_sub(value));
                now.checked_sub(ago).unwrap_or(now)
            }
        };
        self.wait(&mut inner, offset, since, false)
    }

    /// A scan source's changes, noticed first at `since`, are in the stream up to `offset`:
    /// a probe from then. True when one was taken.
    pub fn changed_since(&self, offset: u64, since: Instant) -> bool {
        let mut inner = self.inner();
        self.wait(&mut inner, offset, since, false)
    }

    /// The stream has been read up to `offset`; while estimating, a probe from now (at most
    /// one a second). True when one was taken.
    pub fn received(&self, offset: u64) -> bool {
        if !self.estimating.load(SeqCst) {
            return false;
        }
        let mut inner = self.inner();
        let now = Instant::now();
        if inner
            .last_estimate
            .is_some_and(|t| now.saturating_duration_since(t) < ESTIMATE_EVERY)
        {
            return false;
        }
        let taken = self.wait(&mut inner, offset, now, true);
        if taken {
            inner.last_estimate = Some(now);
        }
        taken
    }

    fn wait(&self, inner: &mut Inner, offset: u64, since: Instant, estimated: bool) -> bool {
        if inner.waiting.len() >= MAX_WAITING
            || inner.waiting.back().is_some_and(|p| p.offset >= offset)
        {
            return false;
        }
        inner.waiting.push_back(Probe {
            offset,
            since,
            estimated,
        });
        if inner.waiting.len() == 1 {
            self.due.store(offset, SeqCst);
        }
        true
    }

    /// The target has confirmed the stream up to `offset`: the probes it covers become samples.
    /// Called with every confirmation, so the common case is one load.
    pub fn confirmed(&self, offset: u64) {
        if offset < self.due.load(SeqCst) {
            return;
        }
        let now = Instant::now();
        let mut inner = self.inner();
        while let Some(probe) = inner.waiting.front() {
            if probe.offset > offset {
                break;
            }
            let sample = Sample {
                at: now,
                latency: now.saturating_duration_since(probe.since),
                estimated: probe.estimated,
            };
            inner.waiting.pop_front();
            inner.window.record(sample);
        }
        let due = inner.waiting.front().map_or(u64::MAX, |p| p.offset);
        self.due.store(due, SeqCst);
        inner.window.prune(now);
    }

    /// How far behind the target may be now: the age of the oldest probe it has not
    /// confirmed, or the longest latency of the last minute if that is more. None before
    /// any probe.
    pub fn lag_bound(&self, now: Instant) -> Option<Duration> {
        let inner = self.inner();
        let waiting = inner
            .waiting
            .front()
            .map(|p| now.saturating_duration_since(p.since));
        let recent = inner.window.recent(now).map(|s| s.latency).max();
        waiting.max(recent)
    }

    /// How far behind the target is now, in time: the age of the oldest probe it has not
    /// confirmed or, when none waits, the latency of the last one it confirmed (within the
    /// window). None when neither is known (no probe yet, or none for a minute).
    pub fn behind(&self, now: Instant) -> Option<Duration> {
        let inner = self.inner();
        match inner.waiting.front() {
            Some(p) => Some(now.saturating_duration_since(p.since)),
            None => inner.window.recent(now).last().map(|s| s.latency),
        }
    }

    /// The samples of the last minute.
    pub fn samples(&self, now: Instant) -> Vec<Sample> {
        self.inner().window.recent(now).copied().collect()
    }

    pub fn report(&self, now: Instant) -> Option<Report> {
        Report::of(&self.samples(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(at: Instant, ms: u64) -> Sample {
        Sample {
            at,
            latency: Duration::from_millis(ms),
            estimated: false,
        }
    }

    #[test]
    fn percentiles_by_nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(percentile(&v, 50), 50);
        assert_eq!(percentile(&v, 99), 99);
        assert_eq!(percentile(&[7], 50), 7);
        assert_eq!(percentile(&[7], 99), 7);
        // Of 60 samples, p99 is the largest: one slow write in a minute shows.
        let v: Vec<u64> = (1..=60).collect();
        assert_eq!(percentile(&v, 99), 60);
        assert_eq!(percentile(&v, 50), 30);
        assert_eq!(percentile(&[1, 2], 50), 1);
    }

    #[test]
    fn report_is_in_milliseconds_and_says_when_estimated() {
        let now = Instant::now();
        assert_eq!(Report::of(&[]), None);
        let mut samples: Vec<Sample> = [5, 1, 3, 2, 4].iter().map(|&ms| sample(now, ms)).collect();
        let r = Report::of(&samples).unwrap();
        assert_eq!((r.p50, r.p99, r.samples, r.estimated), (3.0, 5.0, 5, false));
        samples[0].latency = Duration::from_micros(1500);
        samples[0].estimated = true;
        let r = Report::of(&samples).unwrap();
        assert_eq!((r.p50, r.p99, r.estimated), (2.0, 4.0, true));
    }

    #[test]
    fn window_keeps_the_last_minute_and_a_bounded_number() {
        let start = Instant::now();
        let mut w = Window::default();
        for s in 0..200u64 {
            w.record(sample(start + Duration::from_secs(s), s));
        }
        assert_eq!(w.samples.len(), MAX_SAMPLES);
        let now = start + Duration::from_secs(199);
        let recent: Vec<u64> = w
            .recent(now)
            .map(|s| s.latency.as_millis() as u64)
            .collect();
        assert_eq!(recent, (139..200).collect::<Vec<u64>>());
        w.prune(now);
        assert_eq!(w.samples.len(), 61);
        // Nothing for a minute: nothing to report.
        assert_eq!(w.recent(now + Duration::from_secs(120)).count(), 0);
    }

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn only_this_tasks_heartbeat_becomes_a_sample_once_confirmed() {
        let l = Latency::default();
        let sent = unix_ms();
        let value = sent.to_string();
        // Before the heartbeat starts, no key is ours.
        assert!(!l.own_key_seen(&args(&["SET", "__ferry:heartbeat:a", &value]), 10));
        let stream = l.begin();
        l.set_key(stream, Bytes::from_static(b"__ferry:heartbeat:a"));
        l.sent(sent, Instant::now());
        assert!(!l.own_key_seen(&args(&["SET", "__ferry:heartbeat:ab", &value]), 10));
        assert!(!l.own_key_seen(&args(&["DEL", "__ferry:heartbeat:a"]), 10));
        assert!(!l.own_key_seen(&args(&["SET", "__ferry:heartbeat:a", "x"]), 10));
        assert!(!l.waiting());
        assert!(l.own_key_seen(
            &args(&["set", "__ferry:heartbeat:a", &value, "PXAT", "1"]),
            20
        ));
        assert!(l.waiting());
        l.confirmed(19);
        assert!(l.samples(Instant::now()).is_empty());
        l.confirmed(20);
        assert!(!l.waiting());
        let samples = l.samples(Instant::now());
        assert_eq!(samples.len(), 1);
        assert!(!samples[0].estimated);
        // A heartbeat from an earlier run, a minute old by its value.
        let old = (sent - 60_000).to_string();
        assert!(l.own_key_seen(&args(&["SET", "__ferry:heartbeat:a", &old]), 30));
        l.confirmed(31);
        let r = l.report(Instant::now()).unwrap();
        assert_eq!(r.samples, 2);
        assert!(r.p99 >= 60_000.0, "{r:?}");
    }

    #[test]
    fn behind_is_the_oldest_waiting_probe_else_the_last_sample() {
        let l = Latency::default();
        let now = Instant::now();
        assert_eq!(l.behind(now), None);
        let stream = l.begin();
        l.set_key(stream, Bytes::from_static(b"__ferry:heartbeat:b"));
        // Heartbeats from an earlier run, 10 min and 2 s old by their values.
        for (ms, offset) in [(600_000, 10), (2_000, 20)] {
            let value = (unix_ms() - ms).to_string();
            assert!(l.own_key_seen(&args(&["SET", "__ferry:heartbeat:b", &value]), offset));
        }
        let later = Instant::now();
        assert!(l.behind(later).unwrap() >= Duration::from_secs(600));
        l.confirmed(10);
        let lag = l.behind(Instant::now()).unwrap();
        assert!(lag >= Duration::from_secs(2), "{lag:?}");
        assert!(lag < Duration::from_secs(600), "{lag:?}");
        l.confirmed(20);
        // Caught up: the last sample's latency, which no longer grows.
        let last = l.samples(Instant::now()).last().unwrap().latency;
        assert_eq!(l.behind(Instant::now()), Some(last));
    }

    #[test]
    fn estimates_only_when_asked_and_at_most_once_a_second() {
        let l = Latency::default();
        assert!(!l.received(10));
        let stream = l.begin();
        assert!(
            !l.set_estimating(stream - 1, true),
            "an earlier stream's heartbeat"
        );
        assert!(!l.received(10));
        assert!(l.set_estimating(stream, true));
        assert!(!l.set_estimating(stream, true));
        assert!(l.received(10));
        assert!(!l.received(20), "a second probe within a second");
        l.confirmed(15);
        let samples = l.samples(Instant::now());
        assert_eq!(samples.len(), 1);
        assert!(samples[0].estimated);
        assert!(l.report(Instant::now()).unwrap().estimated);
    }

    #[test]
    fn waiting_probes_are_bounded_and_cleared_by_a_new_stream() {
        let l = Latency::default();
        let stream = l.begin();
        l.set_key(stream, Bytes::from_static(b"__ferry:heartbeat:k"));
        let value = unix_ms().to_string();
        for offset in 1..=(MAX_WAITING as u64 + 10) {
            l.own_key_seen(&args(&["SET", "__ferry:heartbeat:k", &value]), offset);
        }
        assert_eq!(l.inner().waiting.len(), MAX_WAITING);
        // Positions must grow: a repeat is not a second probe.
        let next = l.begin();
        assert!(!l.waiting());
        assert!(
            !l.own_key_seen(&args(&["SET", "__ferry:heartbeat:k", &value]), 5),
            "no key yet"
        );
        l.set_key(stream, Bytes::from_static(b"__ferry:heartbeat:k"));
        assert!(
            !l.own_key_seen(&args(&["SET", "__ferry:heartbeat:k", &value]), 5),
            "an earlier stream's key"
        );
        l.set_key(next, Bytes::from_static(b"__ferry:heartbeat:k"));
        assert!(l.own_key_seen(&args(&["SET", "__ferry:heartbeat:k", &value]), 5));
        assert!(!l.own_key_seen(&args(&["SET", "__ferry:heartbeat:k", &value]), 5));
        l.end(stream);
        assert!(l.waiting(), "an earlier stream's end changes nothing");
        l.end(next);
        assert!(!l.waiting());
        assert!(!l.own_key_seen(&args(&["SET", "__ferry:heartbeat:k", &value]), 6));
    }
}
