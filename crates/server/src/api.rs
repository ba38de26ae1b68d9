//! The HTTP API under `/api/v1`, with `/healthz`, `/readyz`, `/metrics` and `/openapi.json`. Every route
//! is registered through `utoipa_axum::routes!`, which also puts its operation in the OpenAPI
//! document: the router and the document are made by the same calls and cannot drift.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{IntoParams, Modify, OpenApi, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::{ApiError, ErrorBody};
use crate::store::TaskRow;
use crate::tasks::Tasks;

pub struct AppState {
    pub tasks: Arc<Tasks>,
    pub token: String,
    /// Tasks that were running before a restart have been started again.
    pub ready: AtomicBool,
    /// The web console's sessions and the tasks' sampled history.
    pub console: crate::console::Console,
}

type St = State<Arc<AppState>>;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "ferry server",
        description = "Sync tasks (one Redis kept in one-way sync with another) as a service. Every /api/ request, and /metrics, needs `Authorization: Bearer <token>` (the token is in DATA_DIR/api-token), or the web console's session cookie (from signing in at /), which changes nothing without its `X-CSRF-Token` header (else 403)."
    ),
    modifiers(&BearerAuth),
    components(schemas(crate::alerts::AlertPayload, ferry_engine::status::Part)),
    tags((name = "tasks", description = "Sync tasks and their lifecycle"), (name = "connections", description = "Saved servers (URL, login, TLS) that task specs name"), (name = "server", description = "The server itself"), (name = "alerts", description = "Alert rules and their webhook deliveries (the body POSTed is an AlertPayload)"))
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The router (with its state) and the OpenAPI document of exactly its routes.
pub fn router(state: Arc<AppState>) -> (axum::Router, utoipa::openapi::OpenApi) {
    let api = OpenApiRouter::new()
        .routes(routes!(create_task, list_tasks))
        .routes(routes!(get_task, patch_task, delete_task))
        .routes(routes!(precheck_task))
        .routes(routes!(start_task))
        .routes(routes!(pause_task))
        .routes(routes!(resume_task))
        .routes(routes!(stop_task))
        .routes(routes!(verify_task))
        .routes(routes!(cutover_task))
        .routes(routes!(task_events))
        .routes(routes!(crate::console::history::task_history))
        .routes(routes!(crate::console::history::task_report))
        .routes(routes!(
            crate::connections::create_connection,
            crate::connections::list_connections
        ))
        .routes(routes!(
            crate::connections::get_connection,
            crate::connections::replace_connection,
            crate::connections::delete_connection
        ))
        .routes(routes!(crate::connections::test_connection))
        .routes(routes!(
            crate::alerts::routes::create_alert,
            crate::alerts::routes::list_alerts
        ))
        .routes(routes!(crate::alerts::routes::delete_alert))
        .routes(routes!(crate::alerts::routes::alert_deliveries))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    // Prometheus sends the same token (`authorization` in its scrape config).
    let metrics = OpenApiRouter::new()
        .routes(routes!(crate::metrics::metrics))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_token,
        ));
    let (router, doc) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .nest("/api/v1", api)
        .merge(metrics)
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(openapi_json))
        .with_state(state.clone())
        .split_for_parts();
    let served = Arc::new(doc.clone());
    let router = router
        .merge(crate::console::routes(state.clone()))
        .layer(axum::Extension(served));
    (router, doc)
}

/// Every `/api/` request carries the token (compared in constant time), or the console's
/// session cookie; with the cookie, a request that changes something also carries the session's
/// CSRF token, or is refused with 403.
pub(crate) async fn require_token(
    State(state): St,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !crate::console::session::same(given, &state.token) {
        use crate::console::session::Verdict;
        match state.console.sessions.check(req.method(), req.headers()) {
            Verdict::Allowed => return Ok(next.run(req).await),
            Verdict::NoCsrf => {
                return Ok((
                    StatusCode::FORBIDDEN,
                    Json(ErrorBody {
                        error: "forbidden".into(),
                        message: "a console session changes nothing without its X-CSRF-Token header: reload the console page".into(),
                    }),
                )
                    .into_response());
            }
            Verdict::None => {}
        }
        return Err(ApiError::Unauthorized(
            "missing or wrong API token: send Authorization: Bearer <token>, the token being in the server's DATA_DIR/api-token".into(),
        ));
    }
    Ok(next.run(req).await)
}

/// A task as the API shows it. Passwords are never in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct TaskView {
    #[schema(example = "t-3f9a1c2b7d4e")]
    pub id: String,
    pub name: String,
    pub labels: BTreeMap<String, String>,
    /// created, prechecking, precheck_failed, ready, full_sync, incremental, paused, retrying,
    /// failed, stopped or finished.
    #[schema(example = "incremental")]
    pub state: String,
    /// Unix time in ms at which the task entered its state.
    pub since: u64,
    /// Unix time in ms at which the task was created.
    pub created: u64,
    /// The error that failed the task, while failed (or the last one).
    pub last_error: Option<String>,
    /// The task's settings (the same as `ferry sync --config`, as JSON), passwords left out.
    #[schema(value_type = Object)]
    pub spec: Value,
    /// While running: the engine's status (phase, keys, offsets, lag, latency, shards,
    /// targets), as `ferry sync`'s `GET /status`.
    pub status: Option<ferry_engine::task::TaskStatus>,
    pub last_precheck: Option<ReportSummary>,
    pub last_verify: Option<ReportSummary>,
}

/// When a kept report was made and whether it failed.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportSummary {
    /// Unix time in ms.
    pub at: u64,
    pub failed: bool,
}

impl AppState {
    fn view(&self, row: TaskRow) -> Result<TaskView, ApiError> {
        let status = self.tasks.handle(&row.id).map(|h| h.status());
        let summary = |kind: &str| -> Result<Option<ReportSummary>, ApiError> {
            Ok(self
                .tasks
                .store
                .report(&row.id, kind)?
                .map(|r| ReportSummary {
                    at: r.at_ms,
                    failed: r.failed,
                }))
        };
        let mut spec = serde_json::from_str(&row.spec).unwrap_or(Value::Null);
        crate::connections::show_links(&mut spec, &row.connections);
        Ok(TaskView {
            last_precheck: summary("precheck")?,
            last_verify: summary("verify")?,
            spec,
            id: row.id,
            name: row.name,
            labels: row.labels,
            state: row.state,
            since: row.since_ms,
            created: row.created_ms,
            last_error: row.last_error,
            status,
        })
    }

    fn view_id(&self, id: &str) -> Result<TaskView, ApiError> {
        self.view(self.tasks.get(id)?)
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct CreateParams {
    /// Run the precheck and, when it passes, start the task.
    #[serde(default)]
    pub start: bool,
}

/// `labels` taken out of a body whose other fields are a task spec.
fn take_labels(body: &mut Value) -> Result<Option<BTreeMap<String, String>>, ApiError> {
    match body.as_object_mut().and_then(|o| o.remove("labels")) {
        None => Ok(None),
        Some(labels) => serde_json::from_value(labels).map(Some).map_err(|_| {
            ApiError::BadRequest(
                "labels must be an object of strings, e.g. {\"env\": \"prod\"}".into(),
            )
        }),
    }
}

fn json_body(
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Value, ApiError> {
    body.map(|Json(v)| v).map_err(|e| {
        ApiError::BadRequest(format!("the body must be a JSON object: {}", e.body_text()))
    })
}

/// What the create and start calls answer with when they also prechecked.
#[derive(Debug, Serialize, ToSchema)]
pub struct Created {
    pub task: TaskView,
    /// The precheck's findings when `?start=true` ran it.
    #[schema(value_type = Option<Vec<Object>>)]
    pub precheck: Option<Value>,
}

/// Create a task from a spec (the settings of `ferry sync --config`, as JSON), with optional
/// `labels`. `[sync] id` is the task's id (generated when absent).
#[utoipa::path(
    post, path = "/tasks", tag = "tasks", params(CreateParams),
    request_body(content = Object, description = "A task spec as JSON (sections source, target, sync, limit, filter, ...), plus an optional `labels` object of strings. Passwords in URLs are kept apart and never returned."),
    responses(
        (status = 201, description = "Created (and started, with ?start=true and a passing precheck)", body = Created),
        (status = 400, description = "The spec is not valid", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 409, description = "The id is taken, or ?start=true and the precheck failed (the task is kept)", body = ErrorBody),
        (status = 422, description = "The engine refused the settings", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn create_task(
    State(state): St,
    Query(params): Query<CreateParams>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let mut body = json_body(body)?;
    let labels = take_labels(&mut body)?.unwrap_or_default();
    let links = crate::connections::resolve(&state.tasks.store, &mut body)?
        .into_iter()
        .filter_map(|(section, name)| Some((section, name?)))
        .collect();
    let spec: ferry_engine::spec::TaskSpec = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("the task spec: {e}")))?;
    let row = state.tasks.create(spec, labels, links)?;
    let id = row.id.clone();
    let mut precheck = None;
    if params.start {
        let (findings, failed) = state.tasks.precheck(&id).await?;
        if failed {
            return Err(ApiError::Conflict(format!(
                "task {id} was created, but its precheck failed, so it was not started: GET /api/v1/tasks/{id} and POST /api/v1/tasks/{id}/precheck after fixing it"
            )));
        }
        precheck = Some(findings);
        state.tasks.start(&id, None)?;
    }
    Ok((
        StatusCode::CREATED,
        Json(Created {
            task: state.view_id(&id)?,
            precheck,
        }),
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ListParams {
    /// Only tasks with this label, as `key=value`.
    pub label: Option<String>,
}

/// List tasks, optionally those with a label.
#[utoipa::path(
    get, path = "/tasks", tag = "tasks", params(ListParams),
    responses(
        (status = 200, description = "The tasks, oldest first", body = Vec<TaskView>),
        (status = 400, description = "The label filter is not key=value", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn list_tasks(
    State(state): St,
    Query(params): Query<ListParams>,
) -> Result<Json<Vec<TaskView>>, ApiError> {
    let filter = match &params.label {
        None => None,
        Some(l) => Some(l.split_once('=').ok_or_else(|| {
            ApiError::BadRequest(format!(
                "label filter {l:?} must be key=value, e.g. label=env=prod"
            ))
        })?),
    };
    let mut out = Vec::new();
    for row in state.tasks.store.list()? {
        if let Some((k, v)) = filter
            && row.labels.get(k).map(String::as_str) != Some(v)
        {
            continue;
        }
        out.push(state.view(row)?);
    }
    Ok(Json(out))
}

/// One task: its state, settings, live status and last reports.
#[utoipa::path(
    get, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The task", body = TaskView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn get_task(State(state): St, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    Ok(Json(state.view_id(&id)?))
}

/// Change a task: `labels` at any time; `limit` at any time too (a running task's writers
/// hold to the new limits from their next write; its state and last precheck stay); the rest
/// of the spec (a JSON merge patch over it) only while the task is not running. A server whose
/// `url` is given takes that URL's password (or none). After such a change the last precheck
/// is forgotten and the task is `created` again.
#[utoipa::path(
    patch, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    request_body(content = Object, description = "A JSON merge patch over the spec, plus an optional `labels` object that replaces the labels"),
    responses(
        (status = 200, description = "The changed task", body = TaskView),
        (status = 400, description = "The changed spec is not valid", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task runs: the settings named need a stop first", body = ErrorBody),
        (status = 422, description = "The engine refused the settings (e.g. a limit that is not a number above 0)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn patch_task(
    State(state): St,
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<TaskView>, ApiError> {
    let mut body = json_body(body)?;
    let labels = take_labels(&mut body)?;
    let links = crate::connections::resolve(&state.tasks.store, &mut body)?;
    let row = state.tasks.update(&id, body, labels, links)?;
    Ok(Json(state.view(row)?))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeleteParams {
    /// Also remove ferry's own keys of this task: its checkpoints, fences, lease and held-TTL
    /// lists from the targets, its heartbeat keys from the source. The servers must be
    /// reachable; if they are not, nothing is deleted.
    #[serde(default)]
    pub cleanup: bool,
}

/// What a delete with `?cleanup=true` removed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Deleted {
    pub id: String,
    /// Keys removed, per server (`target 127.0.0.1:6380`, `source 127.0.0.1:6379`; a
    /// cluster's masters each by address). Servers where none was found are left out.
    pub removed: BTreeMap<String, u64>,
}

/// Delete a task that is not running, with its history, reports and local files (its spool);
/// with `?cleanup=true` also ferry's keys of it in the servers.
#[utoipa::path(
    delete, path = "/tasks/{id}", tag = "tasks",
    params(("id" = String, Path, description = "The task id"), DeleteParams),
    responses(
        (status = 200, description = "Deleted, with ?cleanup=true: the keys removed", body = Deleted),
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task runs: stop it first", body = ErrorBody),
        (status = 422, description = "?cleanup=true could not run (a server unreachable, a copy of the task still holds its lease): nothing was deleted", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn delete_task(
    State(state): St,
    Path(id): Path<String>,
    Query(params): Query<DeleteParams>,
) -> Result<Response, ApiError> {
    match state.tasks.delete(&id, params.cleanup).await? {
        Some(cleanup) => Ok(Json(Deleted {
            id,
            removed: cleanup.removed,
        })
        .into_response()),
        None => Ok(StatusCode::NO_CONTENT.into_response()),
    }
}

/// A precheck's or verification's report, kept with the task.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReportView {
    pub task: TaskView,
    pub failed: bool,
    /// Precheck: the findings (`item`, `result` pass/warn/fail, `found`, `fix`), as
    /// `ferry check --json`. Verify: one entry per target with its counts and up to 20
    /// differences.
    #[schema(value_type = Vec<Object>)]
    pub report: Value,
}

/// Run the precheck (the items of `ferry check`) and keep its report with the task: `ready`
/// when nothing failed, else `precheck_failed`.
#[utoipa::path(
    post, path = "/tasks/{id}/precheck", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The findings (look at `failed`)", body = ReportView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task runs", body = ErrorBody),
        (status = 422, description = "The settings cannot be built (a file they name cannot be read, ...)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn precheck_task(
    State(state): St,
    Path(id): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    let (report, failed) = state.tasks.precheck(&id).await?;
    Ok(Json(ReportView {
        task: state.view_id(&id)?,
        failed,
        report,
    }))
}

/// Start a task. Refused while its last precheck has a failure that the spec's
/// `[check] ignore` does not name. The engine runs the precheck items again as it starts.
#[utoipa::path(
    post, path = "/tasks/{id}/start", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Started", body = TaskView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "Already running, or the last precheck failed", body = ErrorBody),
        (status = 422, description = "The settings cannot be built", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn start_task(State(state): St, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    state.tasks.start(&id, None)?;
    Ok(Json(state.view_id(&id)?))
}

/// What pausing means for the task now.
#[derive(Debug, Serialize, ToSchema)]
pub struct Paused {
    pub task: TaskView,
    /// `paused`, `phase`, `spool_room_bytes`, `source_bytes_per_s`, `spool_full_in_s` and a
    /// `note` saying how long the task can stay paused.
    #[schema(value_type = Object)]
    pub pause: Value,
}

/// Pause a running task: nothing more is written to its targets; the source link is kept and
/// the command stream goes into the spool.
#[utoipa::path(
    post, path = "/tasks/{id}/pause", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Paused", body = Paused),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not running", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn pause_task(State(state): St, Path(id): Path<String>) -> Result<Json<Paused>, ApiError> {
    let report = state.tasks.pause(&id)?;
    Ok(Json(Paused {
        task: state.view_id(&id)?,
        pause: serde_json::to_value(report).unwrap_or(Value::Null),
    }))
}

/// Resume a paused task: it writes what the spool kept, then follows the stream again.
#[utoipa::path(
    post, path = "/tasks/{id}/resume", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Resumed", body = TaskView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not running", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn resume_task(State(state): St, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    state.tasks.resume(&id)?;
    Ok(Json(state.view_id(&id)?))
}

/// Stop a running task: it finishes the writes in flight with their checkpoint and ends;
/// answered once it has. A later start continues from the checkpoint.
#[utoipa::path(
    post, path = "/tasks/{id}/stop", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "Stopped", body = TaskView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not running", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn stop_task(State(state): St, Path(id): Path<String>) -> Result<Json<TaskView>, ApiError> {
    state.tasks.stop(&id).await?;
    Ok(Json(state.view_id(&id)?))
}

/// Compare the task's targets with its source key by key (as `ferry verify`) and keep the
/// report; `failed` when differences remain after every round.
#[utoipa::path(
    post, path = "/tasks/{id}/verify", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    responses(
        (status = 200, description = "The verification's report", body = ReportView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 422, description = "The verification could not run (a server unreachable, a file source)", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn verify_task(
    State(state): St,
    Path(id): Path<String>,
) -> Result<Json<ReportView>, ApiError> {
    let (report, failed) = state.tasks.verify(&id).await?;
    Ok(Json(ReportView {
        task: state.view_id(&id)?,
        failed,
        report,
    }))
}

/// A cutover's report, kept with the task.
#[derive(Debug, Serialize, ToSchema)]
pub struct CutoverView {
    pub task: TaskView,
    pub failed: bool,
    /// `ok`, `paused_until_ms`, `offsets` (each source server's offset, applied), `caught_up_ms`,
    /// `verify` (per target: `source_keys`, `differences`, `examples`), `removed` (ferry's keys,
    /// per server), `problem` (why not ok).
    #[schema(value_type = Object)]
    pub report: Value,
}

/// How to cut a task over.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CutoverBody {
    /// Pause the source's writes (`CLIENT PAUSE ... WRITE`, Redis 6.2+) for at most this many
    /// seconds while the target catches up and is verified; left in place on success (move
    /// the applications to the target meanwhile), lifted at once on a failure. Absent: the
    /// writers were stopped by other means.
    pub pause_writes_s: Option<u64>,
    /// How long to wait for the full copy to end and the target to catch up (default 600).
    pub timeout_s: Option<u64>,
}

/// End a migration: optionally pause the source's writes, wait until the target applied the
/// source's last write, verify, stop the task and remove ferry's keys from the target. On
/// success the task is `stopped`; otherwise it keeps running and the report says why.
#[utoipa::path(
    post, path = "/tasks/{id}/cutover", tag = "tasks",
    params(("id" = String, Path, description = "The task id")),
    request_body(content = CutoverBody, description = "Optional; `{}` waits without pausing"),
    responses(
        (status = 200, description = "The cutover's report: `failed` false when everything held (offsets applied, verify equal, keys removed)", body = CutoverView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 409, description = "The task is not running", body = ErrorBody),
        (status = 422, description = "A step could not be taken (a source too old to pause writes, the target not caught up in time, a server unreachable); the task keeps running", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn cutover_task(
    State(state): St,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<CutoverView>, ApiError> {
    // No body is the defaults.
    let body: CutoverBody = match body.iter().all(u8::is_ascii_whitespace) {
        true => CutoverBody::default(),
        false => serde_json::from_slice(&body).map_err(|e| {
            ApiError::BadRequest(format!(
                "the cutover's body: {e} (e.g. {{\"pause_writes_s\": 30}}, or none)"
            ))
        })?,
    };
    let opts = ferry_engine::task::cutover::CutoverOptions {
        pause_writes: body.pause_writes_s.map(std::time::Duration::from_secs),
        timeout: std::time::Duration::from_secs(body.timeout_s.unwrap_or(600)),
    };
    let (report, failed) = state.tasks.cutover(&id, opts).await?;
    Ok(Json(CutoverView {
        task: state.view_id(&id)?,
        failed,
        report,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct EventParams {
    /// Only events after this `seq` (0: from the first).
    #[serde(default)]
    pub after: i64,
    /// Events per page, at most 1000 (default 100).
    pub limit: Option<u32>,
}

/// One page of a task's history.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    /// Each: `seq` (its place in the history), `at_ms`, `task`, `type` (state, phase, failed,
    /// retrying, warning, precheck, precheck_report, verified, verify_report, paused, resumed)
    /// and that type's fields.
    #[schema(value_type = Vec<Object>)]
    pub events: Vec<Value>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<i64>,
}

/// A task's events, oldest first, paged with `after`. With `Accept: text/event-stream`,
/// Server-Sent Events instead: those after `after` (or `Last-Event-ID`), then each new one as
/// it happens (the SSE id is the event's `seq`).
#[utoipa::path(
    get, path = "/tasks/{id}/events", tag = "tasks", params(("id" = String, Path, description = "The task id"), EventParams),
    responses(
        (status = 200, description = "A page of events, or an SSE stream", content(
            (EventPage = "application/json"),
            (String = "text/event-stream"),
        )),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such task", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
async fn task_events(
    State(state): St,
    Path(id): Path<String>,
    Query(params): Query<EventParams>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    state.tasks.get(&id)?;
    let sse = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.contains("text/event-stream"));
    if !sse {
        let limit = params.limit.unwrap_or(100).clamp(1, 1000);
        let rows = state.tasks.store.events(&id, params.after, limit)?;
        let next_after = (rows.len() as u32 == limit)
            .then(|| rows.last().map(|r| r.seq))
            .flatten();
        let events = rows.into_iter().map(|r| with_seq(r.seq, &r.json)).collect();
        return Ok(Json(EventPage { events, next_after }).into_response());
    }
    let after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(params.after);
    // Subscribed before reading the history: nothing falls between the two.
    let live = state.tasks.subscribe();
    let mut kept = Vec::new();
    let mut last = after;
    loop {
        let page = state.tasks.store.events(&id, last, 1000)?;
        let Some(end) = page.last().map(|r| r.seq) else {
            break;
        };
        last = end;
        kept.extend(page);
    }
    let past = futures_util::stream::iter(
        kept.into_iter()
            .map(|r| Ok::<_, Infallible>(sse_event(r.seq, &r.json))),
    );
    let task = id.clone();
    let new = tokio_stream::wrappers::BroadcastStream::new(live).filter_map(move |item| {
        let keep = match item {
            Ok(e) if e.task == task && e.seq > last => Some(Ok(sse_event(e.seq, &e.json))),
            _ => None,
        };
        std::future::ready(keep)
    });
    Ok(Sse::new(past.chain(new))
        .keep_alive(KeepAlive::default())
        .into_response())
}

fn with_seq(seq: i64, json: &str) -> Value {
    let mut v: Value = serde_json::from_str(json).unwrap_or(Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.insert("seq".into(), seq.into());
    }
    v
}

fn sse_event(seq: i64, json: &str) -> SseEvent {
    SseEvent::default()
        .id(seq.to_string())
        .data(with_seq(seq, json).to_string())
}

/// Health of the server and its store.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    pub ok: bool,
    pub message: String,
}

/// 200 when the server and its store work (no token needed).
#[utoipa::path(
    get, path = "/healthz", tag = "server",
    responses(
        (status = 200, description = "Working", body = Health),
        (status = 503, description = "The store does not answer", body = Health),
    )
)]
async fn healthz(State(state): St) -> (StatusCode, Json<Health>) {
    match state.tasks.store.ping() {
        Ok(()) => (
            StatusCode::OK,
            Json(Health {
                ok: true,
                message: "ok".into(),
            }),
        ),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                ok: false,
                message: e.to_string(),
            }),
        ),
    }
}

/// 200 once the tasks that were running before a restart have been started again (no token
/// needed).
#[utoipa::path(
    get, path = "/readyz", tag = "server",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "Still starting", body = Health),
    )
)]
async fn readyz(State(state): St) -> (StatusCode, Json<Health>) {
    match state.ready.load(Ordering::SeqCst) {
        true => (
            StatusCode::OK,
            Json(Health {
                ok: true,
                message: "ready".into(),
            }),
        ),
        false => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                ok: false,
                message: "starting the tasks that were running".into(),
            }),
        ),
    }
}

/// This document: OpenAPI 3.1, made from the handlers themselves (no token needed).
#[utoipa::path(
    get, path = "/openapi.json", tag = "server",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json", body = Object))
)]
async fn openapi_json(
    axum::Extension(doc): axum::Extension<Arc<utoipa::openapi::OpenApi>>,
) -> Json<utoipa::openapi::OpenApi> {
    Json((*doc).clone())
}
