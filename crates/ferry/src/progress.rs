//! What a person at a terminal sees: while a diskless source holds its snapshot back, a line
//! that says so; during the full copy a bar of keys applied out of the source's key count
//! (bytes beside it, the ETA from the apply rate); after the copy, a status line with the lag
//! in seconds and bytes. A resume that skips the copy shows no bar. Without a terminal, a log
//! line every 10 s instead.

use std::collections::VecDeque;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use ferry_engine::status::{Phase, Snapshot, Status};

/// The bar being drawn now, if any: log lines are written above it, not into it.
static DRAWN: Mutex<Option<ProgressBar>> = Mutex::new(None);

fn drawn(bar: Option<&ProgressBar>) {
    *DRAWN.lock().unwrap_or_else(|e| e.into_inner()) = bar.cloned();
}

/// Where log lines go: stderr, with the bar on screen (if any) lifted while a line is written
/// and drawn again below it.
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = DRAWN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        match bar {
            // A log line comes whole (one formatted event): written whole, under the bar's lock.
            Some(bar) => bar
                .suspend(|| std::io::stderr().write_all(buf))
                .map(|()| buf.len()),
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

pub fn spawn(status: Arc<Status>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    if std::io::stderr().is_terminal() {
        tokio::spawn(terminal(status, cancel))
    } else {
        tokio::spawn(log_lines(status, cancel))
    }
}

/// The bars of one run, each made when its stage begins (a bar drawn at all is a promise the
/// stage happens).
#[derive(Default)]
struct Screen {
    waiting: Option<ProgressBar>,
    copy: Option<ProgressBar>,
    /// The copy counts keys (the source's key count is known), not bytes.
    copy_in_keys: bool,
    /// How fast the copy goes: keys applied (or bytes read, for a bar of bytes).
    copy_rate: Rate,
    line: Option<ProgressBar>,
}

impl Screen {
    fn end_waiting(&mut self) {
        if let Some(w) = self.waiting.take() {
            drawn(None);
            w.finish_and_clear();
        }
    }

    fn end_copy(&mut self, s: &Snapshot) {
        if let Some(bar) = &self.copy
            && !bar.is_finished()
        {
            if self.copy_in_keys {
                bar.set_length(s.keys_written.max(bar.length().unwrap_or(0)));
                bar.set_position(s.keys_written);
            }
            bar.set_style(
                ProgressStyle::with_template("  full copy [{elapsed_precise}] {wide_bar} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            drawn(None);
            bar.finish_with_message(format!(
                "copied: {} keys, {}{}",
                s.keys_written,
                HumanBytes(s.bytes_read),
                left_out(s)
            ));
            // The bar stays as it ended; what follows starts on a line of its own.
            eprintln!();
        }
    }

    fn line(&mut self) -> &ProgressBar {
        self.line.get_or_insert_with(|| {
            let line = ProgressBar::new_spinner();
            line.set_style(
                ProgressStyle::with_template("{spinner} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            drawn(Some(&line));
            line
        })
    }
}

async fn terminal(status: Arc<Status>, cancel: CancellationToken) {
    let mut screen = Screen::default();
    let mut clock = OffsetClock::default();
    let mut last = (Instant::now(), 0u64);
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break,
        }
        let s = status.snapshot();
        let now = Instant::now();
        clock.saw(now, s.source_offset);
        if s.phase != Phase::Connecting {
            screen.end_waiting();
        }
        match s.phase {
            Phase::Connecting => {
                if let Some(delay) = s.diskless_wait_s {
                    let waiting = screen.waiting.get_or_insert_with(|| {
                        let w = ProgressBar::new_spinner();
                        w.set_style(
                            ProgressStyle::with_template("{spinner} {msg} [{elapsed}]")
                                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                        );
                        drawn(Some(&w));
                        w
                    });
                    waiting.set_message(waiting_text(delay));
                    waiting.tick();
                }
            }
            Phase::Full => copy_progress(&mut screen, &s, now),
            Phase::Incremental => {
                screen.end_copy(&s);
                let elapsed = now.duration_since(last.0);
                if elapsed >= Duration::from_secs(1) || screen.line.is_none() {
                    let rate = s.ops_applied.saturating_sub(last.1) as f64
                        / elapsed.as_secs_f64().max(0.001);
                    last = (now, s.ops_applied);
                    let lag = lag_text(&s, &clock, now);
                    let text = format!(
                        "incremental: {rate:.0} ops/s · {lag} · latency {} · applied offset {} · {} ops{}",
                        latency_text(s.latency_ms.as_ref()),
                        s.applied_offset,
                        s.ops_applied,
                        held(&s)
                    );
                    let line = screen.line();
                    line.set_message(text);
                    line.tick();
                }
            }
            Phase::Retrying => {
                let text = format!(
                    "retrying ({} s left): {}",
                    s.retry_left_s.unwrap_or(0),
                    s.last_error.as_deref().unwrap_or("")
                );
                let line = screen.line();
                line.set_message(text);
                line.tick();
            }
            Phase::Stopped | Phase::Failed => break,
        }
    }
    screen.end_waiting();
    drawn(None);
    if let Some(bar) = &screen.copy
        && !bar.is_finished()
    {
        bar.abandon();
    }
    if let Some(line) = &screen.line {
        line.finish();
    }
}

/// The copy bar: keys applied out of the source's key count when it is known, else bytes
/// read out of the snapshot's size (an RDB file; a source that may not run INFO). The ETA
/// is what is left at the rate of the last few seconds.
fn copy_progress(screen: &mut Screen, s: &Snapshot, now: Instant) {
    let in_keys = s.source_keys.is_some();
    let rate = &mut screen.copy_rate;
    let bar = screen.copy.get_or_insert_with(|| {
        let template = match in_keys {
            true => "{spinner} full copy [{elapsed_precise}] {wide_bar} {pos}/{len} keys · {msg}",
            false => {
                "{spinner} full copy [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} · {msg}"
            }
        };
        // Hidden until its length and figures are set: no `0/0` frame.
        let bar = ProgressBar::hidden();
        bar.set_style(
            ProgressStyle::with_template(template).unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        bar
    });
    screen.copy_in_keys = in_keys;
    let bytes = match s.snapshot_size {
        0 => format!("{} read", HumanBytes(s.bytes_read)),
        size => format!("{} of {}", HumanBytes(s.bytes_read), HumanBytes(size)),
    };
    match s.source_keys {
        Some(total) => {
            // Keys written while the source was counted can take the copy past its count.
            let total = total.max(s.keys_written);
            rate.add(now, s.keys_written);
            let speed = rate.per_sec().map_or("-".into(), |r| format!("{r:.0}"));
            bar.set_message(format!(
                "{bytes} · {speed} keys/s · ETA {}{}{}",
                eta_text(rate.eta(total - s.keys_written)),
                left_out(s),
                held(s)
            ));
            bar.set_length(total);
            bar.set_position(s.keys_written);
        }
        None => {
            let total = s.snapshot_size.max(s.bytes_read);
            rate.add(now, s.bytes_read);
            // A diskless snapshot has no size: no end to count down to.
            let eta = match s.snapshot_size {
                0 => None,
                _ => rate.eta(total - s.bytes_read),
            };
            bar.set_message(format!(
                "{} keys · ETA {}{}{}",
                s.keys_written,
                eta_text(eta),
                left_out(s),
                held(s)
            ));
            bar.set_length(total.max(1));
            bar.set_position(s.bytes_read);
        }
    }
    if bar.is_hidden() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        drawn(Some(bar));
    }
}

/// `42 s`, `3 min 5 s`, `2 h 10 min`; `?` before the rate is known.
fn eta_text(eta: Option<Duration>) -> String {
    let Some(eta) = eta else {
        return "?".into();
    };
    let s = eta.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

/// Progress per second over the last few seconds.
#[derive(Default)]
struct Rate {
    /// (when, done so far), oldest first, spanning about `WINDOW`.
    samples: VecDeque<(Instant, u64)>,
}

impl Rate {
    const WINDOW: Duration = Duration::from_secs(5);

    fn add(&mut self, at: Instant, done: u64) {
        self.samples.push_back((at, done));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|&(t, _)| at.saturating_duration_since(t) >= Self::WINDOW)
        {
            self.samples.pop_front();
        }
    }

    fn per_sec(&self) -> Option<f64> {
        let (&(t0, v0), &(t1, v1)) = (self.samples.front()?, self.samples.back()?);
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        (secs > 0.0).then(|| v1.saturating_sub(v0) as f64 / secs)
    }

    /// How long `remaining` takes at this rate; None while it is unknown or nothing moves.
    fn eta(&self, remaining: u64) -> Option<Duration> {
        let rate = self.per_sec().filter(|&r| r > 0.0)?;
        Some(Duration::from_secs_f64(remaining as f64 / rate))
    }
}

fn waiting_text(delay_s: u64) -> String {
    format!("waiting for the source's diskless delay (repl-diskless-sync-delay {delay_s} s)")
}

/// ` · N left out by the filter` when the `[filter]` rules skipped keys.
fn left_out(s: &Snapshot) -> String {
    match s.filtered_keys {
        0 => String::new(),
        n => format!(" · {n} left out by the filter"),
    }
}

/// Says so while a `[limit]` holds the writers back.
fn held(s: &Snapshot) -> &'static str {
    match s.limit {
        Some(l) if l.throttled => " · throttled",
        _ => "",
    }
}

/// `lag 0.4 s, 120 B`: seconds from the heartbeat, else estimated (`~`) from when the source
/// reached the offset the target has applied; `lag ? s` before either can tell.
fn lag_text(s: &Snapshot, clock: &OffsetClock, now: Instant) -> String {
    let bytes = HumanBytes(s.lag_bytes);
    match (s.lag_s, clock.lag(s.applied_offset, now)) {
        (Some(secs), _) => format!("lag {secs:.1} s, {bytes}"),
        (None, Some(d)) => format!("lag ~{:.1} s, {bytes}", d.as_secs_f64()),
        (None, None) => format!("lag ? s, {bytes}"),
    }
}

/// When the source's stream reached each offset, as this process saw it: how long ago the
/// source was where the target is now is the lag in time, heartbeat or not.
#[derive(Default)]
struct OffsetClock {
    /// (first seen, offset), offsets rising; the oldest dropped past `KEEP`.
    seen: VecDeque<(Instant, u64)>,
}

impl OffsetClock {
    /// Ten minutes of samples five times a second.
    const KEEP: usize = 3000;

    fn saw(&mut self, at: Instant, offset: u64) {
        if self.seen.back().is_none_or(|&(_, last)| offset > last) {
            self.seen.push_back((at, offset));
            if self.seen.len() > Self::KEEP {
                self.seen.pop_front();
            }
        }
    }

    /// How long the stream has been past `applied`: zero when the target has all of it; None
    /// before any sample.
    fn lag(&self, applied: u64, now: Instant) -> Option<Duration> {
        let &(_, newest) = self.seen.back()?;
        if applied >= newest {
            return Some(Duration::ZERO);
        }
        // The first sample beyond what is applied (the oldest kept when all are beyond: the
        // lag is at least that old).
        let at = self
            .seen
            .iter()
            .find(|&&(_, offset)| offset > applied)
            .map(|&(at, _)| at)?;
        Some(now.saturating_duration_since(at))
    }
}

async fn log_lines(status: Arc<Status>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(10));
    tick.tick().await;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => return,
        }
        let s = status.snapshot();
        match s.phase {
            Phase::Connecting => {
                if let Some(delay) = s.diskless_wait_s {
                    tracing::info!("{}", waiting_text(delay));
                }
            }
            Phase::Full => tracing::info!(
                keys = s.keys_written,
                source_keys = s.source_keys,
                bytes = s.bytes_read,
                total = s.snapshot_size,
                throttled_ms = s.limit.map(|l| l.throttled_ms),
                "full sync"
            ),
            Phase::Incremental => tracing::info!(
                ops = s.ops_applied,
                lag_s = s.lag_s,
                lag_bytes = s.lag_bytes,
                applied_offset = s.applied_offset,
                throttled_ms = s.limit.map(|l| l.throttled_ms),
                latency = %latency_text(s.latency_ms.as_ref()),
                "incremental sync"
            ),
            _ => {}
        }
    }
}

/// `p50 1.2 ms p99 3.4 ms` (`~` when estimated), or `-` without samples.
fn latency_text(report: Option<&ferry_engine::status::latency::Report>) -> String {
    match report {
        None => "-".to_string(),
        Some(r) => {
            let about = if r.estimated { "~" } else { "" };
            format!("p50 {about}{:.1} ms p99 {about}{:.1} ms", r.p50, r.p99)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::status::latency::Report;

    #[test]
    fn latency_line_marks_estimates() {
        assert_eq!(latency_text(None), "-");
        let mut r = Report {
            p50: 1.234,
            p99: 12.0,
            samples: 60,
            estimated: false,
        };
        assert_eq!(latency_text(Some(&r)), "p50 1.2 ms p99 12.0 ms");
        r.estimated = true;
        assert_eq!(latency_text(Some(&r)), "p50 ~1.2 ms p99 ~12.0 ms");
    }

    #[test]
    fn lag_in_time_is_how_long_ago_the_source_passed_the_applied_offset() {
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut clock = OffsetClock::default();
        assert_eq!(clock.lag(0, t0), None);
        clock.saw(at(0), 100);
        clock.saw(at(1), 100);
        clock.saw(at(2), 250);
        clock.saw(at(3), 400);
        // All applied: no lag.
        assert_eq!(clock.lag(400, at(5)), Some(Duration::ZERO));
        // Applied up to 100: the source went past it at 2 s.
        assert_eq!(clock.lag(100, at(5)), Some(Duration::from_secs(3)));
        assert_eq!(clock.lag(300, at(5)), Some(Duration::from_secs(2)));
        // Behind every sample kept: at least as old as the oldest.
        assert_eq!(clock.lag(50, at(5)), Some(Duration::from_secs(5)));
    }

    #[test]
    fn eta_is_what_is_left_at_the_recent_rate() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut rate = Rate::default();
        rate.add(at(0), 0);
        assert_eq!(rate.eta(100), None);
        rate.add(at(1000), 1000);
        rate.add(at(2000), 2000);
        assert_eq!(rate.per_sec(), Some(1000.0));
        assert_eq!(rate.eta(18_000), Some(Duration::from_secs(18)));
        // Old samples leave the window: a slower recent rate counts.
        for s in 3..=10 {
            rate.add(at(s * 1000), 2000 + (s - 2) * 100);
        }
        assert_eq!(rate.per_sec(), Some(100.0));
        assert_eq!(eta_text(rate.eta(200)), "2 s");
        assert_eq!(eta_text(Some(Duration::from_secs(185))), "3 min 5 s");
        assert_eq!(eta_text(Some(Duration::from_secs(7800))), "2 h 10 min");
        assert_eq!(eta_text(None), "?");
        let mut still = Rate::default();
        still.add(at(0), 5);
        still.add(at(1000), 5);
        assert_eq!(still.eta(10), None);
    }

    #[test]
    fn the_clock_keeps_a_bounded_window() {
        let t0 = Instant::now();
        let mut clock = OffsetClock::default();
        for i in 0..(OffsetClock::KEEP as u64 + 10) {
            clock.saw(t0 + Duration::from_millis(i), i + 1);
        }
        assert_eq!(clock.seen.len(), OffsetClock::KEEP);
    }
}
