//! What a person at a terminal sees: a progress bar during the full sync (keys, bytes, rate, ETA
//! when the snapshot size is known), then one status line for the incremental phase. Without a
//! terminal, a log line every 10 s instead.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use ferry_engine::status::{Phase, Status};

pub fn spawn(status: Arc<Status>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
    if std::io::stderr().is_terminal() {
        tokio::spawn(terminal(status, cancel))
    } else {
        tokio::spawn(log_lines(status, cancel))
    }
}

async fn terminal(status: Arc<Status>, cancel: CancellationToken) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} full sync [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta} · {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let line = ProgressBar::new_spinner();
    let mut last = (Instant::now(), 0u64);
    let mut full_started: Option<Instant> = None;
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break,
        }
        let s = status.snapshot();
        match s.phase {
            Phase::Connecting => {}
            Phase::Full => {
                if s.snapshot_size > 0 {
                    bar.set_length(s.snapshot_size);
                } else {
                    bar.set_length(s.bytes_read.max(1));
                }
                bar.set_position(s.bytes_read);
                let since = *full_started.get_or_insert_with(Instant::now);
                let rate = s.keys_written as f64 / since.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} keys, {rate:.0} keys/s{}",
                    s.keys_written,
                    held(&s)
                ));
            }
            Phase::Incremental => {
                if !bar.is_finished() {
                    bar.finish_with_message(format!("{} keys", s.keys_written));
                }
                let now = Instant::now();
                let rate = (s.ops_applied - last.1) as f64
                    / now.duration_since(last.0).as_secs_f64().max(0.001);
                if now.duration_since(last.0) >= Duration::from_secs(1) {
                    last = (now, s.ops_applied);
                    line.set_message(format!(
                        "incremental: {rate:.0} ops/s · lag {} bytes · latency {} · applied offset {} · {} ops{}",
                        s.lag_bytes,
                        latency_text(s.latency_ms.as_ref()),
                        s.applied_offset,
                        s.ops_applied,
                        held(&s)
                    ));
                    line.tick();
                }
            }
            Phase::Retrying => {
                line.set_message(format!(
                    "retrying ({} s left): {}",
                    s.retry_left_s.unwrap_or(0),
                    s.last_error.as_deref().unwrap_or("")
                ));
                line.tick();
            }
            Phase::Stopped | Phase::Failed => break,
        }
    }
    if !bar.is_finished() && bar.length().unwrap_or(0) > 0 {
        bar.abandon();
    }
    line.finish();
}

/// Says so while a `[limit]` holds the writers back.
fn held(s: &ferry_engine::status::Snapshot) -> &'static str {
    match s.limit {
        Some(l) if l.throttled => " · throttled",
        _ => "",
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
            Phase::Full => tracing::info!(
                keys = s.keys_written,
                bytes = s.bytes_read,
                total = s.snapshot_size,
                throttled_ms = s.limit.map(|l| l.throttled_ms),
                "full sync"
            ),
            Phase::Incremental => tracing::info!(
                ops = s.ops_applied,
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
}
