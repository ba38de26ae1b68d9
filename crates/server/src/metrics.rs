//! `GET /metrics`: every task's figures in the Prometheus text format (version 0.0.4).
//!
//! Two sources, one response:
//! - gauges and progress counters read at scrape time from each task: its stored state (every
//!   task) and, while it runs, its engine status (`TaskHandle::status`);
//! - counters of the engine's typed events (errors, retries, warnings by code, phase changes,
//!   continuous verification), which the engine counts through the `metrics` facade: this
//!   module installs the process's recorder, a plain map of counters, so a deleted task's
//!   series can be forgotten with it.
//!
//! Labels are a small fixed set: `task` on every series, and only where a family needs it
//! `state`, `shard`, `target`, `code` or `phase` (each from a closed set, or a server named in
//! the task's settings). Never a message or a key.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use ferry_engine::status::Phase;
use ferry_engine::task::TaskStatus;
use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::tasks::STATES;

/// Prometheus's text format, as its scrapers ask for it.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A family's Prometheus type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        }
    }
}

/// Every family `/metrics` can show: name, type, help. The README's list and the Grafana
/// dashboard (`deploy/grafana/ferry.json`, checked by a test below) use only these.
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "ferry_task_state",
        Kind::Gauge,
        "1 for the state the task is in (label state), 0 for the others",
    ),
    (
        "ferry_full_copy_keys_total",
        Kind::Counter,
        "Keys of the full copy written to the target and confirmed by it, since the task started",
    ),
    (
        "ferry_full_copy_bytes_total",
        Kind::Counter,
        "Snapshot bytes received from the source, since the task started",
    ),
    (
        "ferry_full_copy_size_bytes",
        Kind::Gauge,
        "Snapshot size the source announced; 0 when it streams without one (diskless)",
    ),
    (
        "ferry_full_copy_progress_ratio",
        Kind::Gauge,
        "Share of the snapshot received, 0 to 1 (1 once the task follows the stream); absent while unknown",
    ),
    (
        "ferry_ops_applied_total",
        Kind::Counter,
        "Commands of the replication stream applied on the target and confirmed, since the task started",
    ),
    (
        "ferry_source_offset_bytes",
        Kind::Gauge,
        "Latest replication offset received from the source",
    ),
    (
        "ferry_applied_offset_bytes",
        Kind::Gauge,
        "Replication offset whose effects the target has confirmed",
    ),
    (
        "ferry_lag_bytes",
        Kind::Gauge,
        "Bytes of the replication stream received but not yet confirmed by the target",
    ),
    (
        "ferry_lag_seconds",
        Kind::Gauge,
        "Age of the oldest heartbeat write the target has not applied, else the latency of the last one it applied; absent while unknown",
    ),
    (
        "ferry_latency_p50_seconds",
        Kind::Gauge,
        "Median time from a write on the source to its application on the target, over the last minute",
    ),
    (
        "ferry_latency_p99_seconds",
        Kind::Gauge,
        "99th percentile of the time from a write on the source to its application on the target, over the last minute",
    ),
    (
        "ferry_latency_samples",
        Kind::Gauge,
        "Latency samples (heartbeats) in the last minute",
    ),
    (
        "ferry_retry_left_seconds",
        Kind::Gauge,
        "While retrying: seconds before the task gives up",
    ),
    (
        "ferry_spool_bytes",
        Kind::Gauge,
        "Bytes of the command stream held in the task's local spool",
    ),
    (
        "ferry_spool_limit_bytes",
        Kind::Gauge,
        "The spool's size limit (0: no spool)",
    ),
    (
        "ferry_spool_full",
        Kind::Gauge,
        "1 while the spool is full and the source is not read",
    ),
    (
        "ferry_throttled",
        Kind::Gauge,
        "1 while a writer waits for the task's limits (tasks with limits only)",
    ),
    (
        "ferry_throttled_seconds_total",
        Kind::Counter,
        "Time during which the task's limits held its writers back (tasks with limits only)",
    ),
    (
        "ferry_skipped_writes_total",
        Kind::Counter,
        "Writes the target refused and that on_error skipped",
    ),
    (
        "ferry_dropped_total",
        Kind::Counter,
        "Things the target cannot hold that were left out, each with a warning",
    ),
    (
        "ferry_filtered_keys_total",
        Kind::Counter,
        "Snapshot keys the filter rules left out",
    ),
    (
        "ferry_filtered_commands_total",
        Kind::Counter,
        "Stream commands the filter rules left out",
    ),
    (
        "ferry_shard_lag_bytes",
        Kind::Gauge,
        "A cluster source: each shard's lag in bytes of its own stream",
    ),
    (
        "ferry_target_lag_bytes",
        Kind::Gauge,
        "Several targets: each target's lag in bytes",
    ),
    // Counted by the engine as its events happen (`ferry_engine::status::events`).
    (
        "ferry_errors_total",
        Kind::Counter,
        "Failures that stopped the task, by error code",
    ),
    (
        "ferry_retries_total",
        Kind::Counter,
        "Failures retried, by error code",
    ),
    (
        "ferry_warnings_total",
        Kind::Counter,
        "Warnings (the task goes on), by code",
    ),
    (
        "ferry_phase_changes_total",
        Kind::Counter,
        "Phase changes, by the phase entered",
    ),
    (
        "ferry_verify_compared_total",
        Kind::Counter,
        "Keys compared by continuous verification",
    ),
    (
        "ferry_verify_differing_total",
        Kind::Counter,
        "Keys continuous verification found different on the target, after checking again",
    ),
];

fn family(name: &str) -> (Kind, &'static str) {
    FAMILIES.iter().find(|(n, ..)| *n == name).map_or(
        (Kind::Counter, "Counted by the ferry engine"),
        |(_, k, h)| (*k, h),
    )
}

/// Samples grouped by family, in the order families first appear (the text format wants
/// each family's samples together, after its HELP and TYPE).
#[derive(Default)]
struct Exposition {
    families: Vec<(String, Vec<(Labels, f64)>)>,
}

impl Exposition {
    fn add(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        if !value.is_finite() {
            return;
        }
        let labels = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.add_owned(name, labels, value);
    }

    fn add_owned(&mut self, name: &str, labels: Labels, value: f64) {
        let at = match self.families.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.families.push((name.to_string(), Vec::new()));
                self.families.len() - 1
            }
        };
        self.families[at].1.push((labels, value));
    }

    fn render(&self) -> String {
        let mut out = String::new();
        for (name, samples) in &self.families {
            let (kind, help) = family(name);
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {}", kind.name());
            for (labels, value) in samples {
                out.push_str(name);
                // An empty label is no label to Prometheus: left out.
                let mut labels = labels.iter().filter(|(_, v)| !v.is_empty()).peekable();
                if labels.peek().is_some() {
                    out.push('{');
                    for (i, (k, v)) in labels.enumerate() {
                        if i > 0 {
                            out.push(',');
                        }
                        let _ = write!(out, "{k}=\"{}\"", escape(v));
                    }
                    out.push('}');
                }
                let _ = writeln!(out, " {value}");
            }
        }
        out
    }
}

/// A label value as the text format writes it.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// One task's stored state, as one series per state.
fn state_series(out: &mut Exposition, task: &str, state: &str) {
    for s in STATES {
        out.add(
            "ferry_task_state",
            &[("task", task), ("state", s)],
            flag(s == state),
        );
    }
    // A state this list does not know yet still shows.
    if !STATES.contains(&state) {
        out.add("ferry_task_state", &[("task", task), ("state", state)], 1.0);
    }
}

/// A running task's figures, from its engine status.
fn status_series(out: &mut Exposition, task: &str, status: &TaskStatus) {
    let s = &status.status;
    let t = [("task", task)];
    out.add("ferry_full_copy_keys_total", &t, s.keys_written as f64);
    out.add("ferry_full_copy_bytes_total", &t, s.bytes_read as f64);
    out.add("ferry_full_copy_size_bytes", &t, s.snapshot_size as f64);
    let progress = match (s.phase, s.snapshot_size) {
        (Phase::Incremental, _) => Some(1.0),
        (_, 0) => None,
        (_, size) => Some((s.bytes_read as f64 / size as f64).min(1.0)),
    };
    if let Some(p) = progress {
        out.add("ferry_full_copy_progress_ratio", &t, p);
    }
    out.add("ferry_ops_applied_total", &t, s.ops_applied as f64);
    out.add("ferry_source_offset_bytes", &t, s.source_offset as f64);
    out.add("ferry_applied_offset_bytes", &t, s.applied_offset as f64);
    out.add("ferry_lag_bytes", &t, s.lag_bytes as f64);
    if let Some(lag) = s.lag_s {
        out.add("ferry_lag_seconds", &t, lag);
    }
    if let Some(l) = &s.latency_ms {
        out.add("ferry_latency_p50_seconds", &t, l.p50 / 1000.0);
        out.add("ferry_latency_p99_seconds", &t, l.p99 / 1000.0);
        out.add("ferry_latency_samples", &t, l.samples as f64);
    }
    if let Some(left) = s.retry_left_s {
        out.add("ferry_retry_left_seconds", &t, left as f64);
    }
    out.add("ferry_spool_bytes", &t, s.spool_bytes as f64);
    out.add("ferry_spool_limit_bytes", &t, s.spool_limit as f64);
    out.add("ferry_spool_full", &t, flag(s.spool_full));
    if let Some(limit) = &s.limit {
        out.add("ferry_throttled", &t, flag(limit.throttled));
        out.add(
            "ferry_throttled_seconds_total",
            &t,
            limit.throttled_ms as f64 / 1000.0,
        );
    }
    out.add("ferry_skipped_writes_total", &t, s.skipped_errors as f64);
    out.add("ferry_dropped_total", &t, s.dropped as f64);
    out.add("ferry_filtered_keys_total", &t, s.filtered_keys as f64);
    out.add(
        "ferry_filtered_commands_total",
        &t,
        s.filtered_commands as f64,
    );
    for part in &s.shards {
        out.add(
            "ferry_shard_lag_bytes",
            &[("task", task), ("shard", &part.name)],
            part.status.lag_bytes as f64,
        );
    }
    for part in &s.targets {
        out.add(
            "ferry_target_lag_bytes",
            &[("task", task), ("target", &part.name)],
            part.status.lag_bytes as f64,
        );
    }
}

/// The whole response: every stored task's state, running tasks' status, the engine's
/// counters.
pub fn render(state: &AppState) -> Result<String, ApiError> {
    let mut out = Exposition::default();
    let rows = state.tasks.store.list()?;
    for row in &rows {
        state_series(&mut out, &row.id, &row.state);
    }
    for row in &rows {
        if let Some(handle) = state.tasks.handle(&row.id) {
            status_series(&mut out, &row.id, &handle.status());
        }
    }
    for (name, labels, value) in counters().snapshot() {
        out.add_owned(&name, labels, value as f64);
    }
    Ok(out.render())
}

/// Every task's figures in the Prometheus text format: its state (every task), its progress,
/// lag and latency (while it runs), and the engine's counters of errors, retries and warnings
/// by code. Needs the API token, as `Authorization: Bearer <token>` (Prometheus:
/// `authorization: {credentials_file: DATA_DIR/api-token}` in the scrape config).
#[utoipa::path(
    get, path = "/metrics", tag = "server",
    responses(
        (status = 200, description = "The metrics, in Prometheus's text format 0.0.4", content_type = "text/plain; version=0.0.4; charset=utf-8", body = String),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn metrics(State(state): State<Arc<AppState>>) -> Result<impl IntoResponse, ApiError> {
    let text = render(&state)?;
    Ok(([(header::CONTENT_TYPE, CONTENT_TYPE)], text))
}

type Labels = Vec<(String, String)>;

/// The engine's counters by name and labels. The engine only counts (no gauges or
/// histograms), so that is all this recorder keeps.
#[derive(Default)]
pub struct Counters {
    series: Mutex<BTreeMap<(String, Labels), Arc<AtomicU64>>>,
}

impl Counters {
    fn series(&self) -> std::sync::MutexGuard<'_, BTreeMap<(String, Labels), Arc<AtomicU64>>> {
        self.series.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn counter(&self, key: &Key) -> Arc<AtomicU64> {
        let labels = key
            .labels()
            .map(|l| (l.key().to_string(), l.value().to_string()))
            .collect();
        self.series()
            .entry((key.name().to_string(), labels))
            .or_default()
            .clone()
    }

    /// Every counter now, by name then labels.
    fn snapshot(&self) -> Vec<(String, Labels, u64)> {
        self.series()
            .iter()
            .map(|((name, labels), v)| (name.clone(), labels.clone(), v.load(Ordering::Relaxed)))
            .collect()
    }

    /// Forgets a deleted task's counters: its series leave `/metrics`.
    pub fn forget(&self, task: &str) {
        self.series()
            .retain(|(_, labels), _| !labels.iter().any(|(k, v)| k == "task" && v == task));
    }
}

struct CountersRecorder(Arc<Counters>);

impl Recorder for CountersRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.0.counter(key))
    }

    fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::noop()
    }

    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

/// The process's counters: installed as the `metrics` recorder on first use (a process has
/// one recorder; several servers in one process share it).
pub fn counters() -> &'static Arc<Counters> {
    static COUNTERS: OnceLock<Arc<Counters>> = OnceLock::new();
    COUNTERS.get_or_init(|| {
        let counters = Arc::new(Counters::default());
        if metrics::set_global_recorder(CountersRecorder(counters.clone())).is_err() {
            tracing::warn!(
                "another metrics recorder is installed: /metrics will not show the engine's counters"
            );
        }
        counters
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ferry_engine::status::Status;
    use ferry_engine::status::latency::Report;
    use ferry_engine::status::throttle::{LimitStatus, Limits};

    fn names_in(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .map(|l| l.split(['{', ' ']).next().unwrap_or_default().to_string())
            .collect()
    }

    fn full_status() -> TaskStatus {
        let mut s = Status::default().snapshot();
        s.phase = Phase::Full;
        s.keys_written = 7;
        s.bytes_read = 50;
        s.snapshot_size = 200;
        s.source_offset = 1000;
        s.applied_offset = 900;
        s.lag_bytes = 100;
        s.lag_s = Some(0.25);
        s.latency_ms = Some(Report {
            p50: 2.0,
            p99: 40.0,
            samples: 3,
            estimated: false,
        });
        s.retry_left_s = Some(30);
        s.limit = Some(LimitStatus {
            limits: Limits::default(),
            throttled: true,
            throttled_ms: 1500,
        });
        let part = |name: &str| ferry_engine::status::Part {
            name: name.into(),
            status: Status::default().snapshot(),
        };
        s.shards = vec![part("127.0.0.1:7000")];
        s.targets = vec![part("127.0.0.1:7001")];
        TaskStatus {
            id: "t1".into(),
            paused: false,
            status: s,
        }
    }

    #[test]
    fn the_text_format_groups_families_and_escapes_labels() {
        let mut out = Exposition::default();
        state_series(&mut out, "a\"b\\c\nd", "incremental");
        status_series(&mut out, "t1", &full_status());
        out.add(
            "ferry_errors_total",
            &[("task", "t1"), ("shard", ""), ("code", "auth")],
            2.0,
        );
        let text = out.render();
        assert!(
            text.contains("ferry_task_state{task=\"a\\\"b\\\\c\\nd\",state=\"incremental\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("ferry_task_state{task=\"a\\\"b\\\\c\\nd\",state=\"paused\"} 0\n"));
        assert_eq!(text.matches("# TYPE ferry_task_state gauge").count(), 1);
        assert!(text.contains("# TYPE ferry_full_copy_keys_total counter\n"));
        assert!(text.contains("ferry_full_copy_keys_total{task=\"t1\"} 7\n"));
        assert!(text.contains("ferry_full_copy_progress_ratio{task=\"t1\"} 0.25\n"));
        assert!(text.contains("ferry_lag_bytes{task=\"t1\"} 100\n"));
        assert!(text.contains("ferry_lag_seconds{task=\"t1\"} 0.25\n"));
        assert!(text.contains("ferry_latency_p99_seconds{task=\"t1\"} 0.04\n"));
        assert!(text.contains("ferry_throttled_seconds_total{task=\"t1\"} 1.5\n"));
        assert!(text.contains("ferry_target_lag_bytes{task=\"t1\",target=\"127.0.0.1:7001\"} 0\n"));
        // An empty shard label is left out, as Prometheus would read it.
        assert!(
            text.contains("ferry_errors_total{task=\"t1\",code=\"auth\"} 2\n"),
            "{text}"
        );
        // Each family's samples come right after its HELP and TYPE.
        let mut seen = Vec::new();
        for name in names_in(&text) {
            if seen.last() != Some(&name) {
                assert!(!seen.contains(&name), "{name} comes in two places");
                seen.push(name);
            }
        }
    }

    #[test]
    fn every_family_shown_is_listed() {
        let mut out = Exposition::default();
        state_series(&mut out, "t1", "full_sync");
        status_series(&mut out, "t1", &full_status());
        let listed: Vec<&str> = FAMILIES.iter().map(|(n, ..)| *n).collect();
        for name in names_in(&out.render()) {
            assert!(listed.contains(&name.as_str()), "{name} is not in FAMILIES");
        }
    }

    #[test]
    fn a_forgotten_task_has_no_series_left() {
        let counters = Counters::default();
        let key = |task: &str| {
            Key::from_parts(
                "ferry_retries_total",
                vec![
                    metrics::Label::new("task", task.to_string()),
                    metrics::Label::new("code", "io"),
                ],
            )
        };
        counters.counter(&key("a")).fetch_add(3, Ordering::Relaxed);
        counters.counter(&key("a")).fetch_add(1, Ordering::Relaxed);
        counters.counter(&key("b")).fetch_add(1, Ordering::Relaxed);
        let all = counters.snapshot();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].2, 4);
        counters.forget("a");
        let left = counters.snapshot();
        assert_eq!(left.len(), 1);
        assert!(left[0].1.contains(&("task".into(), "b".into())));
    }

    /// The dashboard in deploy/ asks only for what `/metrics` shows.
    #[test]
    fn the_grafana_dashboard_uses_only_these_metrics() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../deploy/grafana/ferry.json"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let doc: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
        let mut exprs = Vec::new();
        collect_exprs(&doc, &mut exprs);
        assert!(exprs.len() >= 10, "{exprs:?}");
        let listed: Vec<&str> = FAMILIES.iter().map(|(n, ..)| *n).collect();
        for expr in &exprs {
            let mut used = 0;
            let mut rest = expr.as_str();
            while let Some(at) = rest.find("ferry_") {
                let name: String = rest[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    listed.contains(&name.as_str()),
                    "{name} (in {expr}) is not shown by /metrics"
                );
                used += 1;
                rest = &rest[at + name.len()..];
            }
            assert!(used > 0, "{expr} asks for no ferry metric");
        }
    }

    fn collect_exprs(v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("expr" | "definition", serde_json::Value::String(s)) => {
                            out.push(s.clone())
                        }
                        _ => collect_exprs(v, out),
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter().for_each(|v| collect_exprs(v, out)),
            _ => {}
        }
    }
}
