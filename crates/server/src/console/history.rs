//! The last hour of each running task's lag and latency, sampled by the server every few
//! seconds, so a chart opened now shows what happened before it was opened. Kept in memory:
//! a restarted server starts a new hour.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::tasks::{Tasks, now_ms};

/// How often a running task is sampled.
pub const INTERVAL: Duration = Duration::from_secs(2);
/// How long a sample is kept.
pub const KEEP: Duration = Duration::from_secs(3600);

/// One sample of a running task.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Sample {
    /// Unix time in ms.
    pub at_ms: u64,
    /// The task's state then (full_sync, incremental, paused, retrying).
    pub state: String,
    /// Seconds the target was behind the source (absent before the first measure).
    pub lag_s: Option<f64>,
    /// Replication bytes received and not yet applied.
    pub lag_bytes: u64,
    /// End-to-end latency (source write to applied on the target) over the recent writes, in
    /// ms (absent without heartbeats).
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Counters then, for rates: snapshot keys written, snapshot bytes read, stream commands
    /// applied.
    pub keys_written: u64,
    pub bytes_read: u64,
    pub snapshot_size: u64,
    pub ops_applied: u64,
}

/// A task's kept samples.
#[derive(Debug, Serialize, ToSchema)]
pub struct HistoryView {
    /// Time between two samples, in ms.
    pub interval_ms: u64,
    /// Oldest first, at most an hour's.
    pub samples: Vec<Sample>,
}

#[derive(Default)]
pub struct History {
    by_task: Mutex<HashMap<String, VecDeque<Sample>>>,
}

impl History {
    fn by_task(&self) -> std::sync::MutexGuard<'_, HashMap<String, VecDeque<Sample>>> {
        self.by_task.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn of(&self, task: &str) -> Vec<Sample> {
        self.by_task()
            .get(task)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Takes a sample of every running task, and forgets what is older than an hour (and the
    /// tasks deleted since).
    fn sample(&self, tasks: &Tasks) {
        let rows = match tasks.store.list() {
            Ok(rows) => rows,
            Err(e) => {
                tracing::warn!("history: cannot list the tasks: {e}");
                return;
            }
        };
        let now = now_ms();
        let oldest = now.saturating_sub(KEEP.as_millis() as u64);
        let mut by_task = self.by_task();
        by_task.retain(|id, _| rows.iter().any(|r| &r.id == id));
        for row in rows {
            if let Some(handle) = tasks.handle(&row.id) {
                let s = handle.status().status;
                by_task.entry(row.id).or_default().push_back(Sample {
                    at_ms: now,
                    state: row.state,
                    lag_s: s.lag_s,
                    lag_bytes: s.lag_bytes,
                    latency_p50_ms: s.latency_ms.as_ref().map(|l| l.p50),
                    latency_p99_ms: s.latency_ms.as_ref().map(|l| l.p99),
                    keys_written: s.keys_written,
                    bytes_read: s.bytes_read,
                    snapshot_size: s.snapshot_size,
                    ops_applied: s.ops_applied,
                });
            }
        }
        for samples in by_task.values_mut() {
            while samples.front().is_some_and(|s| s.at_ms < oldest) {
                samples.pop_front();
            }
        }
        by_task.retain(|_, s| !s.is_empty());
    }
}

/// Samples the running tasks every [`INTERVAL`] until `stop`.
pub fn start(state: Arc<AppState>, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    let state = state.clone();
                    // SQLite and the status locks are blocking work.
                    let _ = tokio::task::spawn_blocking(move || {
                        state.console.history.sample(&state.tasks)
                    })
                    .await;
                }
                () = stop.cancelled() => break,
            }
        }
    })
}

/// The last hour of a task's lag and latency, sampled by the server every 2 seconds while the
/// task runs (kept in memory: a restarted server starts a new hour).
#[utoipa::path(
    get, path = "/tasks/{id}/history", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The samples, oldest first", body = HistoryView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn task_history(
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<HistoryView>, ApiError> {
    state.tasks.get(&id)?;
    Ok(Json(HistoryView {
        interval_ms: INTERVAL.as_millis() as u64,
        samples: state.console.history.of(&id),
    }))
}

/// A kept report as the console reads it back.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeptReport {
    /// Unix time in ms at which it was made.
    pub at: u64,
    pub failed: bool,
    /// As the precheck or verify call answered it (`report`).
    #[schema(value_type = Vec<Object>)]
    pub report: serde_json::Value,
}

/// The task's last precheck (`kind` = precheck) or verification (`kind` = verify) report, as
/// kept with the task.
#[utoipa::path(
    get, path = "/tasks/{id}/reports/{kind}", tag = "tasks",
    params(("id" = String, Path, description = "The task id"), ("kind" = String, Path, description = "precheck or verify")),
    responses(
        (status = 200, description = "The last report", body = KeptReport),
        (status = 400, description = "kind is neither precheck nor verify", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task, or no such report yet", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn task_report(
    State(state): State<Arc<AppState>>,
    Path((id, kind)): Path<(String, String)>,
) -> Result<Json<KeptReport>, ApiError> {
    if kind != "precheck" && kind != "verify" {
        return Err(ApiError::BadRequest(format!(
            "report kind {kind:?}: ask for precheck or verify"
        )));
    }
    state.tasks.get(&id)?;
    let row = state.tasks.store.report(&id, &kind)?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "task {id} has no {kind} report yet: POST /api/v1/tasks/{id}/{kind} makes one"
        ))
    })?;
    Ok(Json(KeptReport {
        at: row.at_ms,
        failed: row.failed,
        report: serde_json::from_str(&row.json).unwrap_or(serde_json::Value::Null),
    }))
}
