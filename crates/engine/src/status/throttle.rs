//! Limits on the load ferry puts on the target: keys and bytes per second while copying the
//! snapshot, commands and bytes per second while following the stream.
//!
//! Each limit is a token bucket that refills continuously and holds at most a tenth of a
//! second of its rate, so the target sees a steady flow rather than bursts and pauses. A
//! writer asks before it writes out what it has gathered and is told how long to wait: the
//! bucket may go into debt, so a single write bigger than the bucket still passes, after the
//! time its size takes at the rate, and nothing waits longer than that. One `Throttle` is
//! shared by every writer of a task (each master of a cluster target, each shard of a
//! cluster source), so the limits hold for the task as a whole.

use std::sync::Mutex;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use serde::Serialize;

/// How much of a second of its rate a bucket holds: the largest burst the target sees.
const BURST: Duration = Duration::from_millis(100);

/// Bytes in the MB of the `*_mb_per_sec` limits.
pub const MB: f64 = 1_000_000.0;

/// A token bucket: `rate` tokens per second, at most `burst` saved up, debt allowed.
#[derive(Debug)]
pub struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    /// A full bucket of `rate` per second (`rate` > 0).
    pub fn new(rate: f64, now: Instant) -> Bucket {
        let burst = (rate * BURST.as_secs_f64()).max(1.0);
        Bucket {
            rate,
            burst,
            tokens: burst,
            at: now,
        }
    }

    /// The most this bucket lets through at once without a wait.
    pub fn burst(&self) -> f64 {
        self.burst
    }

    /// Takes `n` tokens at `now` and says how long the caller must wait before using them:
    /// zero while the bucket holds enough, else the time the rate takes to pay the debt.
    pub fn take(&mut self, n: f64, now: Instant) -> Duration {
        // A caller that comes back late must not find the clock running backwards.
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.at = self.at.max(now);
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens -= n;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

/// The configured limits; `None` is no limit.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Limits {
    pub full_keys_per_sec: Option<f64>,
    pub full_mb_per_sec: Option<f64>,
    pub incremental_ops_per_sec: Option<f64>,
    pub incremental_mb_per_sec: Option<f64>,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// Which limits a write counts against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Snapshot keys: `full_*`.
    Full,
    /// Commands from the stream: `incremental_*`.
    Incremental,
}

/// What `GET /status` shows under `limit`.
#[derive(Clone, Copy, Debug, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LimitStatus {
    #[serde(flatten)]
    pub limits: Limits,
    /// A writer is waiting for the limit right now.
    pub throttled: bool,
    /// Time during which a writer was held back by the limits, in total (ms of the clock,
    /// however many writers waited at once).
    pub throttled_ms: u64,
}

/// The task's limits, shared by all its writers. They can change while the task runs
/// (`set_limits`): writers read them on each write, so a new limit holds from the next one.
#[derive(Debug)]
pub struct Throttle {
    /// Any limit set: without one, writers neither gather in bucket-sized pieces nor ask.
    limited: AtomicBool,
    /// Per stage (full, incremental): one bucket's worth of units and bytes.
    write_sizes: [(AtomicU64, AtomicU64); 2],
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    limits: Limits,
    /// Units (keys or commands) and bytes, per stage.
    full: [Option<Bucket>; 2],
    incremental: [Option<Bucket>; 2],
    /// Until when the last wait handed out lasts.
    held_until: Option<Instant>,
    held: Duration,
}

impl Throttle {
    /// A throttle holding `limits` (none set: writers never wait until some are).
    pub fn new(limits: Limits) -> Throttle {
        let throttle = Throttle {
            limited: AtomicBool::new(false),
            write_sizes: Default::default(),
            state: Mutex::new(State {
                limits: Limits::default(),
                full: [None, None],
                incremental: [None, None],
                held_until: None,
                held: Duration::ZERO,
            }),
        };
        throttle.set_limits(limits);
        throttle
    }

    /// Replaces the limits. Buckets start full at the new rates; the time writers were held
    /// back so far is kept.
    pub fn set_limits(&self, limits: Limits) {
        let now = Instant::now();
        let bucket = |rate: Option<f64>| rate.map(|r| Bucket::new(r, now));
        let bytes = |mb: Option<f64>| bucket(mb.map(|m| m * MB));
        let full = [
            bucket(limits.full_keys_per_sec),
            bytes(limits.full_mb_per_sec),
        ];
        let incremental = [
            bucket(limits.incremental_ops_per_sec),
            bytes(limits.incremental_mb_per_sec),
        ];
        let size = |[units, bytes]: &[Option<Bucket>; 2]| {
            (
                units.as_ref().map_or(u64::MAX, |b| b.burst() as u64),
                bytes.as_ref().map_or(u64::MAX, |b| b.burst() as u64),
            )
        };
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        for (slot, (units, bytes)) in self
            .write_sizes
            .iter()
            .zip([size(&full), size(&incremental)])
        {
            slot.0.store(units, Relaxed);
            slot.1.store(bytes, Relaxed);
        }
        state.limits = limits;
        state.full = full;
        state.incremental = incremental;
        self.limited.store(!limits.is_empty(), Relaxed);
    }

    pub fn limits(&self) -> Limits {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).limits
    }

    /// Whether any limit is set now.
    pub fn is_limited(&self) -> bool {
        self.limited.load(Relaxed)
    }

    /// How much a writer should gather at most before it asks and writes out (units, bytes),
    /// so the target gets small, steady writes: one bucket's worth.
    pub fn write_size(&self, stage: Stage) -> (u64, usize) {
        let (units, bytes) = match stage {
            Stage::Full => &self.write_sizes[0],
            Stage::Incremental => &self.write_sizes[1],
        };
        (
            units.load(Relaxed),
            usize::try_from(bytes.load(Relaxed)).unwrap_or(usize::MAX),
        )
    }

    /// Counts `units` (keys or commands) and `bytes` about to be written and says how long to
    /// wait first.
    pub fn charge(&self, stage: Stage, units: u64, bytes: u64) -> Duration {
        if !self.is_limited() {
            return Duration::ZERO;
        }
        self.charge_at(stage, units, bytes, Instant::now())
    }

    fn charge_at(&self, stage: Stage, units: u64, bytes: u64, now: Instant) -> Duration {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let [by_units, by_bytes] = match stage {
            Stage::Full => &mut state.full,
            Stage::Incremental => &mut state.incremental,
        };
        let wait = [(by_units, units), (by_bytes, bytes)]
            .into_iter()
            .filter_map(|(bucket, n)| Some(bucket.as_mut()?.take(n as f64, now)))
            .max()
            .unwrap_or(Duration::ZERO);
        if !wait.is_zero() {
            // Writers waiting side by side overlap: count the clock, not the sum.
            let until = now + wait;
            let from = state.held_until.map_or(now, |h| h.max(now));
            state.held += until.saturating_duration_since(from);
            state.held_until = Some(state.held_until.map_or(until, |h| h.max(until)));
        }
        wait
    }

    /// Waits as long as `charge` says.
    pub async fn wait(&self, stage: Stage, units: u64, bytes: u64) {
        let wait = self.charge(stage, units, bytes);
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    pub fn status(&self) -> LimitStatus {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // A wait handed out but not over yet counts only up to now.
        let ahead = state
            .held_until
            .map_or(Duration::ZERO, |h| h.saturating_duration_since(now));
        LimitStatus {
            limits: state.limits,
            throttled: !ahead.is_zero(),
            throttled_ms: state.held.saturating_sub(ahead).as_millis() as u64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_full_bucket_lets_its_burst_through_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, t0);
        assert_eq!(b.burst(), 100.0);
        assert_eq!(b.take(100.0, t0), Duration::ZERO);
        // Empty: 10 more take 10 ms at 1000/s.
        assert_eq!(b.take(10.0, t0), ms(10));
        // After that wait the debt is paid; 5 ms later 5 tokens are back.
        assert_eq!(b.take(5.0, t0 + ms(15)), Duration::ZERO);
        assert_eq!(b.take(1.0, t0 + ms(15)), ms(1));
    }

    #[test]
    fn refills_continuously_up_to_the_burst_only() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, t0);
        assert_eq!(b.take(100.0, t0), Duration::ZERO);
        // An idle minute saves up one burst, not a minute's worth.
        let later = t0 + Duration::from_secs(60);
        assert_eq!(b.take(100.0, later), Duration::ZERO);
        assert_eq!(b.take(50.0, later), ms(50));
        // Half a burst after 50 ms.
        assert_eq!(b.take(0.0, later + ms(50)), Duration::ZERO);
    }

    #[test]
    fn a_take_bigger_than_the_burst_passes_after_its_time() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1_000_000.0, t0);
        // 3 MB at 1 MB/s, with 0.1 MB saved: 2.9 s, then the next caller queues behind it.
        assert_eq!(b.take(3_000_000.0, t0), ms(2900));
        assert_eq!(b.take(100_000.0, t0 + ms(2900)), ms(100));
    }

    #[test]
    fn a_small_rate_still_lets_one_unit_through() {
        let t0 = Instant::now();
        let mut b = Bucket::new(2.0, t0);
        assert_eq!(b.burst(), 1.0);
        assert_eq!(b.take(1.0, t0), Duration::ZERO);
        assert_eq!(b.take(1.0, t0), ms(500));
    }

    #[test]
    fn what_passes_never_exceeds_rate_times_time_plus_burst() {
        // Writers of random sizes asking as soon as they are let through.
        let t0 = Instant::now();
        let mut b = Bucket::new(5000.0, t0);
        let mut now = t0;
        let mut passed = 0.0;
        let mut seed = 7u64;
        for _ in 0..10_000 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let n = (seed >> 33) % 2000;
            now += b.take(n as f64, now);
            passed += n as f64;
            let allowed = 5000.0 * (now - t0).as_secs_f64() + b.burst();
            assert!(passed <= allowed + 1e-6, "{passed} > {allowed}");
        }
        // And it is not slower than the rate either (within one request).
        let floor = 5000.0 * (now - t0).as_secs_f64() - 2000.0;
        assert!(passed >= floor, "{passed} < {floor}");
    }

    #[test]
    fn a_late_clock_does_not_run_backwards() {
        let t0 = Instant::now();
        let mut b = Bucket::new(1000.0, t0 + ms(50));
        assert_eq!(b.take(100.0, t0), Duration::ZERO);
        assert_eq!(b.take(10.0, t0), ms(10));
    }

    #[test]
    fn stages_count_against_their_own_limits() {
        let t = Throttle::new(Limits {
            full_keys_per_sec: Some(1000.0),
            incremental_mb_per_sec: Some(1.0),
            ..Limits::default()
        });
        assert_eq!(t.write_size(Stage::Full), (100, usize::MAX));
        assert_eq!(t.write_size(Stage::Incremental), (u64::MAX, 100_000));
        let now = Instant::now();
        // Full: keys count, bytes are free; incremental: the other way round.
        assert_eq!(
            t.charge_at(Stage::Full, 100, 10_000_000, now),
            Duration::ZERO
        );
        assert_eq!(t.charge_at(Stage::Full, 50, 0, now), ms(50));
        assert_eq!(
            t.charge_at(Stage::Incremental, 1_000_000, 50_000, now),
            Duration::ZERO
        );
        assert_eq!(t.charge_at(Stage::Incremental, 0, 150_000, now), ms(100));
        assert!(!Throttle::new(Limits::default()).is_limited());
    }

    #[test]
    fn overlapping_waits_count_the_clock_once() {
        let t = Throttle::new(Limits {
            incremental_ops_per_sec: Some(1000.0),
            ..Limits::default()
        });
        let now = Instant::now();
        t.charge_at(Stage::Incremental, 100, 0, now);
        // Two writers at once: 20 ms, then 20 more behind it; the clock is held 40 ms.
        assert_eq!(t.charge_at(Stage::Incremental, 20, 0, now), ms(20));
        assert_eq!(t.charge_at(Stage::Incremental, 20, 0, now), ms(40));
        let state = t.state.lock().unwrap();
        assert_eq!(state.held, ms(40));
    }

    #[test]
    fn limits_change_while_writers_run() {
        let t = Throttle::new(Limits::default());
        assert_eq!(t.charge(Stage::Incremental, 1_000_000, 0), Duration::ZERO);
        assert_eq!(t.write_size(Stage::Incremental), (u64::MAX, usize::MAX));
        t.set_limits(Limits {
            incremental_ops_per_sec: Some(1000.0),
            ..Limits::default()
        });
        assert!(t.is_limited());
        assert_eq!(t.write_size(Stage::Incremental), (100, usize::MAX));
        let now = Instant::now();
        assert_eq!(t.charge_at(Stage::Incremental, 100, 0, now), Duration::ZERO);
        assert_eq!(t.charge_at(Stage::Incremental, 50, 0, now), ms(50));
        // Faster: a full bucket at the new rate; the time held so far is kept.
        t.set_limits(Limits {
            incremental_ops_per_sec: Some(10_000.0),
            ..Limits::default()
        });
        assert_eq!(t.write_size(Stage::Incremental), (1000, usize::MAX));
        assert_eq!(
            t.charge_at(Stage::Incremental, 1000, 0, now),
            Duration::ZERO
        );
        assert_eq!(t.status().limits.incremental_ops_per_sec, Some(10_000.0));
        // Removed: nothing waits, nothing is gathered in pieces.
        t.set_limits(Limits::default());
        assert!(!t.is_limited());
        assert_eq!(t.charge(Stage::Incremental, 1_000_000, 0), Duration::ZERO);
        assert_eq!(t.write_size(Stage::Incremental), (u64::MAX, usize::MAX));
        assert_eq!(t.state.lock().unwrap().held, ms(50));
    }
}
