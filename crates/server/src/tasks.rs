//! The tasks of one server: their stored rows, the running ones' engine handles, and the
//! state each is in. A task's state is kept in the store as it changes, so a restarted server
//! knows which tasks were running and starts them again (each continues from its checkpoint in
//! the target).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferry_engine::config::TaskConfig;
use ferry_engine::spec::{SpecSecrets, TaskId, TaskSpec};
use ferry_engine::status::Phase;
use ferry_engine::status::events::{Event, EventKind};
use ferry_engine::task::{PauseReport, Task, TaskHandle};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::store::{ReportRow, Store, TaskRow};

/// Every state a task can be in (`ferry_task_state` has a series for each).
pub const STATES: [&str; 11] = [
    "created",
    "prechecking",
    "precheck_failed",
    "ready",
    "full_sync",
    "incremental",
    "paused",
    "retrying",
    "failed",
    "stopped",
    "finished",
];

/// States in which a task runs in the engine (and is started again after a server restart).
pub const RUNNING: [&str; 4] = ["full_sync", "incremental", "paused", "retrying"];

/// One event as sent to live subscribers: the task, its place in the history, its JSON.
#[derive(Clone, Debug)]
pub struct Live {
    pub task: String,
    pub seq: i64,
    pub json: Arc<str>,
}

struct Running {
    handle: Arc<TaskHandle>,
    /// Stopped through the API (not by a server shutdown): its state becomes `stopped`.
    stopping: Arc<AtomicBool>,
    /// Cancelled once the task has ended and its final state is stored.
    recorded: CancellationToken,
}

pub struct Tasks {
    pub store: Store,
    data_dir: PathBuf,
    running: Mutex<HashMap<String, Running>>,
    live: broadcast::Sender<Live>,
    /// The server is shutting down: tasks ending now keep their stored state, to be started
    /// again by the next server.
    shutting_down: AtomicBool,
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A fresh random id or token, as hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    // The OS's generator failing leaves nothing safe to make a token from.
    getrandom::fill(&mut buf).expect("the operating system's random source failed");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

impl Tasks {
    pub fn new(store: Store, data_dir: PathBuf) -> Tasks {
        Tasks {
            store,
            data_dir,
            running: Mutex::new(HashMap::new()),
            live: broadcast::channel(1024).0,
            shutting_down: AtomicBool::new(false),
        }
    }

    fn running(&self) -> std::sync::MutexGuard<'_, HashMap<String, Running>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn handle(&self, id: &str) -> Option<Arc<TaskHandle>> {
        self.running().get(id).map(|r| r.handle.clone())
    }

    pub fn is_running(&self, id: &str) -> bool {
        self.running().contains_key(id)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Live> {
        self.live.subscribe()
    }

    pub fn get(&self, id: &str) -> Result<TaskRow, ApiError> {
        self.store.get(id)?.ok_or_else(|| ApiError::no_task(id))
    }

    /// Records an event in the task's history and sends it to live subscribers.
    fn record(&self, task: &str, json: Value) {
        let text = json.to_string();
        match self.store.add_event(task, &text) {
            Ok(seq) => {
                let _ = self.live.send(Live {
                    task: task.to_string(),
                    seq,
                    json: text.into(),
                });
            }
            Err(e) => tracing::error!(task, "cannot record an event: {e}"),
        }
    }

    /// Moves a task to `state`, in the store and in its history.
    pub fn set_state(&self, id: &str, state: &str, error: Option<&str>) -> Result<(), ApiError> {
        let from = self.store.get(id)?.map(|r| r.state);
        if from.as_deref() == Some(state) && error.is_none() {
            return Ok(());
        }
        self.store.set_state(id, state, now_ms(), error)?;
        tracing::info!(
            task = id,
            "state {} -> {state}",
            from.as_deref().unwrap_or("-")
        );
        self.record(
            id,
            json!({"at_ms": now_ms(), "task": id, "type": "state", "from": from, "to": state}),
        );
        Ok(())
    }

    /// Stores a new task. `spec` has its passwords; they go to their own table. `links`: the
    /// servers it names by a saved connection (section -> name).
    pub fn create(
        &self,
        mut spec: TaskSpec,
        labels: BTreeMap<String, String>,
        links: BTreeMap<String, String>,
    ) -> Result<TaskRow, ApiError> {
        let id = match &spec.sync.id {
            Some(id) => id.to_string(),
            None => format!("t-{}", random_hex(6)),
        };
        self.complete(&mut spec, &id)?;
        spec.validate()?;
        let now = now_ms();
        let row = TaskRow {
            id: id.clone(),
            name: spec.sync.name.clone().unwrap_or_else(|| id.clone()),
            labels,
            spec: spec_json(&spec),
            state: "created".into(),
            since_ms: now,
            created_ms: now,
            last_error: None,
            connections: links,
        };
        self.store.insert(&row, &spec.secrets().expose_json())?;
        self.record(
            &id,
            json!({"at_ms": now, "task": id, "type": "state", "from": null, "to": "created"}),
        );
        Ok(row)
    }

    /// What the server sets in every spec: the task id (its local files are keyed by it), a
    /// name (its checkpoint in the target; by default the id, so two tasks of one source
    /// never share one) and the data dir (the server's).
    fn complete(&self, spec: &mut TaskSpec, id: &str) -> Result<(), ApiError> {
        spec.sync.id = Some(TaskId::new(id)?);
        if spec.sync.name.is_none() {
            spec.sync.name = Some(id.to_string());
        }
        if spec.sync.data_dir.is_none() {
            spec.sync.data_dir = Some(self.data_dir.clone());
        }
        Ok(())
    }

    /// The stored spec with its passwords put back.
    pub fn spec(&self, row: &TaskRow) -> Result<TaskSpec, ApiError> {
        let mut spec: TaskSpec = serde_json::from_str(&row.spec)
            .map_err(|e| ApiError::Store(format!("task {}'s stored spec: {e}", row.id)))?;
        let secrets = self.store.secrets(&row.id)?.unwrap_or_else(|| "{}".into());
        let secrets = SpecSecrets::from_json(&secrets)
            .map_err(|e| ApiError::Store(format!("task {}'s stored passwords: {e}", row.id)))?;
        spec.set_secrets(secrets)?;
        crate::connections::apply(&self.store, &mut spec, &row.connections)?;
        Ok(spec)
    }

    /// Replaces a stopped task's settings. `patch` is a JSON merge patch (RFC 7386) over its
    /// spec: a server whose URL is given takes that URL's password (or none); the others keep
    /// theirs.
    /// `links`: what the patch says of saved connections, per server section it gives (a name,
    /// or `None` for a server given by its URL or removed).
    pub fn update(
        &self,
        id: &str,
        patch: Value,
        labels: Option<BTreeMap<String, String>>,
        links: BTreeMap<String, Option<String>>,
    ) -> Result<TaskRow, ApiError> {
        let mut row = self.get(id)?;
        let changes_spec = patch.as_object().is_some_and(|o| !o.is_empty());
        if changes_spec && let Some(handle) = self.handle(id) {
            let sections: Vec<&str> = patch
                .as_object()
                .map(|o| o.keys().map(String::as_str).collect())
                .unwrap_or_default();
            if sections == ["limit"] {
                return self.update_limits(row, &handle, patch, labels);
            }
            let named: Vec<String> = sections
                .iter()
                .filter(|s| **s != "limit")
                .map(|s| format!("[{s}]"))
                .collect();
            return Err(ApiError::Conflict(format!(
                "task {id} is {}: {} can only change on a stopped task; POST /api/v1/tasks/{id}/stop first ([limit] and labels can change while it runs)",
                row.state,
                named.join(", ")
            )));
        }
        if let Some(labels) = labels {
            row.labels = labels;
        }
        if !changes_spec {
            self.store.set_labels(id, &row.labels)?;
            return Ok(row);
        }
        let old = self.spec(&row)?;
        let mut merged: Value = serde_json::from_str(&row.spec)
            .map_err(|e| ApiError::Store(format!("task {id}'s stored spec: {e}")))?;
        merge(&mut merged, patch.clone());
        let mut spec: TaskSpec = serde_json::from_value(merged)
            .map_err(|e| ApiError::BadRequest(format!("the changed spec: {e}")))?;
        if spec.sync.id.as_ref().is_some_and(|new| new.as_str() != id) {
            return Err(ApiError::BadRequest(format!(
                "[sync] id cannot change (it is the task's id {id:?}): create a new task instead"
            )));
        }
        // Patched URLs bring their own password (or none); untouched ones keep theirs.
        let kept = old.secrets();
        let secrets = SpecSecrets {
            source: match patched_url(&patch, "source") {
                true => password_of(&patch, "source"),
                false => kept.source,
            },
            target: match patched_url(&patch, "target") {
                true => password_of(&patch, "target"),
                false => kept.target,
            },
            more_targets: match patch.get("more_targets") {
                Some(more) => serde_json::from_value::<TaskSpec>(json!({"more_targets": more}))
                    .map(|s| s.secrets().more_targets)
                    .unwrap_or_default(),
                None => kept.more_targets,
            },
        };
        spec.set_secrets(secrets)?;
        self.complete(&mut spec, id)?;
        spec.validate()?;
        // A patch's more_targets replaces the whole list, links and all.
        if patch.get("more_targets").is_some() {
            row.connections
                .retain(|section, _| !section.starts_with("more_targets."));
        }
        for (section, link) in links {
            match link {
                Some(name) => row.connections.insert(section, name),
                None => row.connections.remove(&section),
            };
        }
        row.name = spec.sync.name.clone().unwrap_or_else(|| id.to_string());
        row.spec = spec_json(&spec);
        row.state = "created".into();
        row.since_ms = now_ms();
        self.store
            .update_spec(&row, &spec.secrets().expose_json())?;
        self.record(
            id,
            json!({"at_ms": row.since_ms, "task": id, "type": "state", "from": null, "to": "created", "note": "settings changed"}),
        );
        Ok(row)
    }

    /// A running task's `[limit]` changed: checked as a whole spec, handed to the engine (its
    /// writers hold to it from their next write), then stored. Its state and last precheck
    /// stay: nothing else changed.
    fn update_limits(
        &self,
        mut row: TaskRow,
        handle: &TaskHandle,
        patch: Value,
        labels: Option<BTreeMap<String, String>>,
    ) -> Result<TaskRow, ApiError> {
        let mut merged: Value = serde_json::from_str(&row.spec)
            .map_err(|e| ApiError::Store(format!("task {}'s stored spec: {e}", row.id)))?;
        merge(&mut merged, patch);
        let mut spec: TaskSpec = serde_json::from_value(merged)
            .map_err(|e| ApiError::BadRequest(format!("the changed spec: {e}")))?;
        spec.set_secrets(self.spec(&row)?.secrets())?;
        spec.validate()?;
        handle.set_limits(&spec.limit)?;
        if let Some(labels) = labels {
            row.labels = labels;
        }
        row.spec = spec_json(&spec);
        self.store.set_spec(&row.id, &row.spec, &row.labels)?;
        Ok(row)
    }

    /// Deletes a task that is not running. With `cleanup`, its own keys go first (checkpoints,
    /// fences, lease, held-TTL lists in the targets, heartbeats in the source): a cleanup that
    /// fails deletes nothing, so it can be tried again.
    pub async fn delete(
        &self,
        id: &str,
        cleanup: bool,
    ) -> Result<Option<ferry_engine::task::cleanup::Cleanup>, ApiError> {
        let row = self.get(id)?;
        if self.is_running(id) || row.state == "prechecking" {
            return Err(ApiError::Conflict(format!(
                "task {id} is {}: POST /api/v1/tasks/{id}/stop first, then delete it",
                row.state
            )));
        }
        let cleaned = match cleanup {
            true => {
                let config = TaskConfig::build(self.spec(&row)?)?;
                let cleaned = ferry_engine::task::cleanup::remove_own_keys(&config, true).await?;
                tracing::info!(
                    task = id,
                    removed = cleaned.total(),
                    "removed the task's own keys"
                );
                Some(cleaned)
            }
            false => None,
        };
        self.store.delete(id)?;
        crate::metrics::counters().forget(id);
        // Its spool and lock: nobody else's (the directory is keyed by the task id).
        let local = self.data_dir.join("tasks").join(id);
        if local.exists()
            && let Err(e) = std::fs::remove_dir_all(&local)
        {
            tracing::warn!(task = id, "cannot remove {}: {e}", local.display());
        }
        Ok(cleaned)
    }

    /// Runs the precheck and keeps its report. Returns the report's JSON and whether it failed.
    pub async fn precheck(&self, id: &str) -> Result<(Value, bool), ApiError> {
        let row = self.get(id)?;
        if self.is_running(id) {
            return Err(ApiError::Conflict(format!(
                "task {id} is {}: the precheck is for a task before it starts; it ran when the task started",
                row.state
            )));
        }
        let config = TaskConfig::build(self.spec(&row)?)?;
        self.set_state(id, "prechecking", None)?;
        let result = ferry_engine::check::run(&config, ferry_engine::check::Mode::Check).await;
        let report = match result {
            Ok(report) => report,
            Err(e) => {
                self.set_state(id, "precheck_failed", Some(&e.to_string()))?;
                return Err(e.into());
            }
        };
        let mut text = Vec::new();
        report
            .write_json(&mut text)
            .map_err(|e| ApiError::Store(e.to_string()))?;
        let findings: Value = serde_json::from_slice(&text).unwrap_or(Value::Null);
        let failed = report.failed();
        let at = now_ms();
        self.store.put_report(
            id,
            "precheck",
            &ReportRow {
                at_ms: at,
                failed,
                json: findings.to_string(),
            },
        )?;
        self.record(
            id,
            json!({"at_ms": at, "task": id, "type": "precheck_report", "failed": failed}),
        );
        self.set_state(id, if failed { "precheck_failed" } else { "ready" }, None)?;
        Ok((findings, failed))
    }

    /// Starts a task that is not running. `resume_state` is the running state it had before a
    /// server restart (a `paused` task starts paused).
    pub fn start(self: &Arc<Self>, id: &str, resume_state: Option<&str>) -> Result<(), ApiError> {
        let row = self.get(id)?;
        if self.is_running(id) || row.state == "prechecking" {
            return Err(ApiError::Conflict(format!(
                "task {id} is already {}",
                row.state
            )));
        }
        let spec = self.spec(&row)?;
        if resume_state.is_none()
            && let Some(report) = self.store.report(id, "precheck")?
        {
            let failing = failing_items(&report.json, &spec);
            if !failing.is_empty() {
                return Err(ApiError::Conflict(format!(
                    "task {id}'s last precheck failed on {}: fix it and POST /api/v1/tasks/{id}/precheck again, or name the item in the spec's [check] ignore",
                    failing.join(", ")
                )));
            }
        }
        let live_verify = spec.verify.live()?;
        let config = TaskConfig::build(spec)?;
        let handle = Arc::new(Task::start(config, live_verify)?);
        let events = handle.subscribe();
        let paused = resume_state == Some("paused");
        if paused {
            handle.pause();
        }
        let stopping = Arc::new(AtomicBool::new(false));
        let recorded = CancellationToken::new();
        self.running().insert(
            id.to_string(),
            Running {
                handle: handle.clone(),
                stopping: stopping.clone(),
                recorded: recorded.clone(),
            },
        );
        let state = match resume_state {
            Some(state) => state,
            None if row.state == "incremental" => "incremental",
            None => "full_sync",
        };
        self.set_state(id, state, None)?;
        let tasks = self.clone();
        let id = id.to_string();
        tokio::spawn(async move {
            tasks.follow(id, handle, events, stopping).await;
            recorded.cancel();
        });
        Ok(())
    }

    /// Follows a running task's events until it ends: each is kept in its history, phase
    /// changes move its state; its end decides its final state.
    async fn follow(
        self: Arc<Self>,
        id: String,
        handle: Arc<TaskHandle>,
        mut events: broadcast::Receiver<Event>,
        stopping: Arc<AtomicBool>,
    ) {
        loop {
            tokio::select! {
                event = events.recv() => match event {
                    Ok(event) => self.on_event(&id, &handle, event),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(task = %id, "{n} events were not kept (the store was slower than the task)");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
                () = handle.ended() => {
                    while let Ok(event) = events.try_recv() {
                        self.on_event(&id, &handle, event);
                    }
                    break;
                }
            }
        }
        handle.ended().await;
        let snapshot = handle.status().status;
        // The final state is stored before the task leaves the running ones: nobody sees it
        // ended in its old state.
        if !self.shutting_down.load(Ordering::SeqCst) || stopping.load(Ordering::SeqCst) {
            let stopped = stopping.load(Ordering::SeqCst);
            let result = match snapshot.phase {
                Phase::Failed => self.set_state(&id, "failed", snapshot.last_error.as_deref()),
                _ if stopped => self.set_state(&id, "stopped", None),
                // Ended by itself: a full-only task (or a snapshot file) copied.
                _ => self.set_state(&id, "finished", None),
            };
            if let Err(e) = result {
                tracing::error!(task = %id, "cannot keep the task's state: {e}");
            }
        }
        self.running().remove(&id);
    }

    fn on_event(&self, id: &str, handle: &TaskHandle, event: Event) {
        let state = match (&event.kind, event.shard.is_some()) {
            (EventKind::Phase { to, .. }, false) if !handle.is_paused() => phase_state(*to),
            (EventKind::Paused, _) => Some("paused"),
            (EventKind::Resumed, _) => phase_state(handle.status().status.phase),
            _ => None,
        };
        match serde_json::to_value(&event) {
            Ok(json) => self.record(id, json),
            Err(e) => tracing::error!(task = id, "cannot encode an event: {e}"),
        }
        if let Some(state) = state
            && let Err(e) = self.set_state(id, state, None)
        {
            tracing::error!(task = id, "cannot keep the task's state: {e}");
        }
    }

    pub fn pause(&self, id: &str) -> Result<PauseReport, ApiError> {
        let handle = self.running_handle(id)?;
        let report = handle.pause();
        self.set_state(id, "paused", None)?;
        Ok(report)
    }

    pub fn resume(&self, id: &str) -> Result<(), ApiError> {
        let handle = self.running_handle(id)?;
        handle.resume();
        let state = phase_state(handle.status().status.phase).unwrap_or("full_sync");
        self.set_state(id, state, None)
    }

    /// Stops a running task and waits until it has ended (its writes in flight finished, with
    /// their checkpoint).
    pub async fn stop(&self, id: &str) -> Result<(), ApiError> {
        let (handle, stopping, recorded) = {
            let running = self.running();
            let Some(r) = running.get(id) else {
                let row = self.get(id)?;
                return Err(ApiError::Conflict(format!(
                    "task {id} is {}, not running",
                    row.state
                )));
            };
            (r.handle.clone(), r.stopping.clone(), r.recorded.clone())
        };
        stopping.store(true, Ordering::SeqCst);
        handle.stop();
        // The follower stores the final state: the answer shows it.
        recorded.cancelled().await;
        Ok(())
    }

    fn running_handle(&self, id: &str) -> Result<Arc<TaskHandle>, ApiError> {
        match self.handle(id) {
            Some(h) => Ok(h),
            None => {
                let row = self.get(id)?;
                Err(ApiError::Conflict(format!(
                    "task {id} is {}, not running: POST /api/v1/tasks/{id}/start first",
                    row.state
                )))
            }
        }
    }

    /// Cuts a running task over (see `ferry_engine::task::cutover`) and keeps the report. On
    /// success the task is `stopped` with its keys gone; otherwise it runs on.
    pub async fn cutover(
        &self,
        id: &str,
        opts: ferry_engine::task::cutover::CutoverOptions,
    ) -> Result<(Value, bool), ApiError> {
        let row = self.get(id)?;
        let (handle, stopping, recorded) = {
            let running = self.running();
            let Some(r) = running.get(id) else {
                return Err(ApiError::Conflict(format!(
                    "task {id} is {}, not running: a cutover finishes a running task; POST /api/v1/tasks/{id}/start first",
                    row.state
                )));
            };
            (r.handle.clone(), r.stopping.clone(), r.recorded.clone())
        };
        let config = TaskConfig::build(self.spec(&row)?)?;
        // The end the cutover brings is a stop, not a finish.
        stopping.store(true, Ordering::SeqCst);
        // Its verification's future is not `Send` (it may hold the Lua transform): run on a
        // blocking thread, driven by this runtime.
        let runtime = tokio::runtime::Handle::current();
        let result = tokio::task::spawn_blocking(move || {
            runtime.block_on(ferry_engine::task::cutover::cutover(
                &handle, &config, &opts,
            ))
        })
        .await
        .map_err(|e| ApiError::Store(format!("the cutover stopped: {e}")));
        let ok = matches!(&result, Ok(Ok(r)) if r.ok);
        if !ok {
            stopping.store(false, Ordering::SeqCst);
        }
        let report = result??;
        if ok {
            recorded.cancelled().await;
        }
        let json = serde_json::to_value(&report).unwrap_or(Value::Null);
        let at = now_ms();
        self.store.put_report(
            id,
            "cutover",
            &ReportRow {
                at_ms: at,
                failed: !ok,
                json: json.to_string(),
            },
        )?;
        self.record(
            id,
            json!({"at_ms": at, "task": id, "type": "cutover_report", "ok": ok}),
        );
        Ok((json, !ok))
    }

    /// Runs a verification of the task's target(s) against its source and keeps its report.
    pub async fn verify(&self, id: &str) -> Result<(Value, bool), ApiError> {
        let row = self.get(id)?;
        let spec = self.spec(&row)?;
        // The verification's future is not `Send` (it holds the Lua transform): it runs on a
        // blocking thread of its own, driven by this runtime.
        let runtime = tokio::runtime::Handle::current();
        let summaries = tokio::task::spawn_blocking(move || {
            let config = TaskConfig::build(spec)?;
            let opts = ferry_engine::verify::Options::from_task(&config)?;
            runtime.block_on(ferry_engine::verify::run(&opts))
        })
        .await
        .map_err(|e| ApiError::Store(format!("the verification stopped: {e}")))??;
        let differing = summaries.iter().any(|s| !s.differences.is_empty());
        let report: Vec<Value> = summaries
            .iter()
            .map(|s| {
                json!({
                    "target": s.target,
                    "source_keys": s.source_keys,
                    "target_keys": s.target_keys,
                    "filtered": s.filtered,
                    "rounds": s.rounds,
                    "first_round": s.first_round,
                    "differences": s.differences.len(),
                    "stopped_early": s.stopped_early,
                    "examples": s.differences.iter().take(20).map(|d| d.to_json(None)).collect::<Vec<_>>(),
                })
            })
            .collect();
        let report = Value::Array(report);
        let at = now_ms();
        self.store.put_report(
            id,
            "verify",
            &ReportRow {
                at_ms: at,
                failed: differing,
                json: report.to_string(),
            },
        )?;
        self.record(
            id,
            json!({"at_ms": at, "task": id, "type": "verify_report", "differing": differing}),
        );
        Ok((report, differing))
    }

    /// After a restart: tasks that were running start again (from their checkpoints); a
    /// precheck that was cut short is forgotten.
    pub fn boot(self: &Arc<Self>) -> Result<(), ApiError> {
        for row in self.store.list()? {
            if row.state == "prechecking" {
                self.set_state(&row.id, "created", None)?;
            } else if RUNNING.contains(&row.state.as_str()) {
                tracing::info!(task = %row.id, state = %row.state, "starting the task again");
                if let Err(e) = self.start(&row.id, Some(&row.state)) {
                    tracing::error!(task = %row.id, "cannot start the task again: {e}");
                    self.set_state(&row.id, "failed", Some(&e.to_string()))?;
                }
            }
        }
        Ok(())
    }

    /// Stops every running task, keeping their stored states for the next server.
    pub async fn shutdown(&self) {
        self.shutting_down.store(true, Ordering::SeqCst);
        let handles: Vec<Arc<TaskHandle>> =
            self.running().values().map(|r| r.handle.clone()).collect();
        for h in &handles {
            h.stop();
        }
        for h in &handles {
            let _ = tokio::time::timeout(Duration::from_secs(30), h.ended()).await;
        }
    }
}

/// A task's state while the engine is in `phase`; `None`: no change (connecting keeps what
/// the task was: a resumed task is not a new full copy).
fn phase_state(phase: Phase) -> Option<&'static str> {
    match phase {
        Phase::Connecting => None,
        Phase::Full => Some("full_sync"),
        Phase::Incremental => Some("incremental"),
        Phase::Retrying => Some("retrying"),
        // The end is recorded once the task has ended, with its error.
        Phase::Stopped | Phase::Failed => None,
    }
}

/// The items of a kept precheck that failed and that the spec does not ignore.
fn failing_items(findings: &str, spec: &TaskSpec) -> Vec<String> {
    let ignored: Vec<&str> = spec.check.ignore.iter().map(|i| i.name()).collect();
    let findings: Vec<Value> = serde_json::from_str(findings).unwrap_or_default();
    let mut items: Vec<String> = findings
        .iter()
        .filter(|f| f["result"] == "fail")
        .filter_map(|f| f["item"].as_str())
        .filter(|item| !ignored.contains(item))
        .map(str::to_string)
        .collect();
    items.dedup();
    items
}

/// The spec as stored and shown: JSON, passwords left out.
pub fn spec_json(spec: &TaskSpec) -> String {
    serde_json::to_string(spec).unwrap_or_else(|_| "{}".into())
}

/// RFC 7386: objects merge key by key, `null` removes, anything else replaces.
fn merge(target: &mut Value, patch: Value) {
    match patch {
        Value::Object(patch) => {
            if !target.is_object() {
                *target = Value::Object(Default::default());
            }
            let Value::Object(map) = target else { return };
            for (k, v) in patch {
                if v.is_null() {
                    map.remove(&k);
                } else {
                    merge(map.entry(k).or_insert(Value::Null), v);
                }
            }
        }
        other => *target = other,
    }
}

/// Whether the patch gives (or removes) this server's URL.
fn patched_url(patch: &Value, section: &str) -> bool {
    patch
        .get(section)
        .is_some_and(|v| v.is_null() || v.get("url").is_some())
}

fn password_of(patch: &Value, section: &str) -> Option<ferry_engine::spec::Secret> {
    let url = patch.get(section)?.get("url")?.as_str()?;
    ferry_engine::spec::ServerUrl::new(url).password().cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tasks(dir: &std::path::Path) -> Tasks {
        Tasks::new(
            Store::open(&dir.join("ferry.db")).unwrap(),
            dir.to_path_buf(),
        )
    }

    fn spec(value: Value) -> TaskSpec {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn passwords_are_kept_apart_and_survive_a_reopen_and_a_patch() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let tasks = tasks(dir.path());
            let row = tasks
                .create(
                    spec(json!({
                        "source": {"url": "redis://app:pw-src@127.0.0.1:7000"},
                        "target": {"url": "redis://:pw-dst@127.0.0.1:7001"},
                    })),
                    BTreeMap::from([("env".into(), "test".into())]),
                    BTreeMap::new(),
                )
                .unwrap();
            assert!(!row.spec.contains("pw-"), "{}", row.spec);
            assert_eq!(row.name, row.id);
            row.id
        };
        let tasks = tasks(dir.path());
        let row = tasks.get(&id).unwrap();
        assert_eq!(row.state, "created");
        assert_eq!(row.labels["env"], "test");
        let back = tasks.spec(&row).unwrap();
        assert_eq!(
            back.source.url.unwrap().expose(),
            "redis://app:pw-src@127.0.0.1:7000"
        );
        assert_eq!(back.sync.id.unwrap().as_str(), id);

        // A patch that does not give a URL keeps its password; one that does brings its own.
        let row = tasks
            .update(
                &id,
                json!({"limit": {"full_keys_per_sec": 100.0}, "target": {"url": "redis://127.0.0.1:7002"}}),
                None,
                BTreeMap::new(),
            )
            .unwrap();
        let patched = tasks.spec(&row).unwrap();
        assert_eq!(patched.limit.full_keys_per_sec, Some(100.0));
        assert_eq!(
            patched.source.url.unwrap().expose(),
            "redis://app:pw-src@127.0.0.1:7000"
        );
        assert_eq!(
            patched.target.url.unwrap().expose(),
            "redis://127.0.0.1:7002"
        );
        let err = tasks
            .update(&id, json!({"sync": {"id": "other"}}), None, BTreeMap::new())
            .unwrap_err();
        assert!(err.to_string().contains("cannot change"), "{err}");
        let err = tasks
            .update(&id, json!({"limit": {"nope": 1}}), None, BTreeMap::new())
            .unwrap_err();
        assert!(matches!(err, ApiError::BadRequest(_)), "{err}");

        // A taken id is refused with what to do.
        let err = tasks
            .create(
                spec(json!({"source": {"url": "redis://127.0.0.1:7000"}, "target": {"url": "redis://127.0.0.1:7001"}, "sync": {"id": id}})),
                BTreeMap::new(),
                BTreeMap::new(),
            )
            .unwrap_err();
        assert!(matches!(err, ApiError::Conflict(_)), "{err}");
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(tasks.delete(&id, false))
            .unwrap();
        assert!(tasks.store.get(&id).unwrap().is_none());
        assert!(tasks.store.secrets(&id).unwrap().is_none());
        assert!(tasks.store.events(&id, 0, 10).unwrap().is_empty());
    }

    #[test]
    fn a_merge_patch_replaces_merges_and_removes() {
        let mut doc = json!({"a": {"b": 1, "c": 2}, "d": [1], "e": "x"});
        merge(
            &mut doc,
            json!({"a": {"b": null, "f": 3}, "d": [2], "e": null}),
        );
        assert_eq!(doc, json!({"a": {"c": 2, "f": 3}, "d": [2]}));
    }

    #[test]
    fn only_failures_the_spec_does_not_ignore_block_a_start() {
        let findings = json!([
            {"item": "eviction_policy", "result": "fail"},
            {"item": "backlog", "result": "warn"},
            {"item": "target_keys", "result": "fail"},
        ])
        .to_string();
        let mut s = spec(json!({"check": {"ignore": ["eviction_policy"]}}));
        assert_eq!(failing_items(&findings, &s), vec!["target_keys"]);
        s.check.ignore.push(ferry_engine::spec::Item::TargetKeys);
        assert!(failing_items(&findings, &s).is_empty());
    }
}
