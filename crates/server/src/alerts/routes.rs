//! `/api/v1/alerts`: create, list and delete rules, and read a rule's deliveries. Registered
//! in `api::router` through `routes!`, like every route.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use super::rules::{Kind, NewRule, Rule};
use super::store::DeliveryRow;
use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::tasks::{now_ms, random_hex};

type St = State<Arc<AppState>>;

/// A rule as the API shows it (its secret never).
#[derive(Debug, Serialize, ToSchema)]
pub struct RuleView {
    #[schema(example = "a-5e0c1d2a9b3f")]
    pub id: String,
    /// The task watched; null: every task.
    pub task: Option<String>,
    pub kind: Kind,
    pub threshold: Option<f64>,
    pub for_seconds: u64,
    pub webhook_url: String,
    /// Unix time in ms.
    pub created: u64,
    /// The tasks for which it fires now.
    pub firing: Vec<FiringView>,
}

/// A task for which a rule fires.
#[derive(Debug, Serialize, ToSchema)]
pub struct FiringView {
    pub task: String,
    /// Since when the condition held (Unix ms).
    pub since: u64,
    /// The value seen when it fired.
    pub value: Option<f64>,
}

/// One delivery of a rule's webhook.
#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryView {
    /// Also the `X-Ferry-Delivery` header and the payload's `delivery`.
    pub id: i64,
    /// `firing` or `resolved`.
    #[schema(example = "firing")]
    pub state: String,
    pub task: String,
    /// The value seen.
    pub value: Option<f64>,
    /// When it fired or resolved (Unix ms).
    pub at: u64,
    /// POSTs made so far.
    pub attempts: u32,
    /// The last answer's HTTP status (none: no answer yet, or none came).
    pub http_status: Option<u16>,
    /// Why the last attempt failed, while not delivered.
    pub last_error: Option<String>,
    /// When the receiver took it (Unix ms); null while pending.
    pub delivered: Option<u64>,
    /// While pending: when the next attempt is due (Unix ms).
    pub next_attempt: Option<u64>,
}

impl From<DeliveryRow> for DeliveryView {
    fn from(d: DeliveryRow) -> DeliveryView {
        DeliveryView {
            id: d.id,
            state: d.state,
            task: d.task,
            value: d.value,
            at: d.at_ms,
            attempts: d.attempts,
            http_status: d.http_status,
            last_error: d.last_error,
            next_attempt: d.delivered_ms.is_none().then_some(d.next_at_ms),
            delivered: d.delivered_ms,
        }
    }
}

fn view(state: &AppState, rule: Rule) -> Result<RuleView, ApiError> {
    let firing = state
        .tasks
        .store
        .firing()?
        .into_iter()
        .filter(|f| f.rule == rule.id)
        .map(|f| FiringView {
            task: f.task,
            since: f.since_ms,
            value: f.value,
        })
        .collect();
    Ok(RuleView {
        id: rule.id,
        task: rule.task,
        kind: rule.kind,
        threshold: rule.threshold,
        for_seconds: rule.for_seconds,
        webhook_url: rule.webhook_url,
        created: rule.created_ms,
        firing,
    })
}

fn no_rule(id: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no alert rule with id {id:?}: GET /api/v1/alerts lists them"
    ))
}

/// Create an alert rule: on one task or every task, fired once when its condition has held
/// for `for_seconds` and resolved once when it has been gone as long; each is POSTed to the
/// webhook as an `AlertPayload`, signed with the secret.
#[utoipa::path(
    post, path = "/alerts", tag = "alerts",
    request_body = NewRule,
    responses(
        (status = 201, description = "Created", body = RuleView),
        (status = 400, description = "A field is wrong (the message names it), or the task does not exist", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_alert(
    State(state): St,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<RuleView>), ApiError> {
    let Json(body) = body.map_err(|e| {
        ApiError::BadRequest(format!("the body must be a JSON object: {}", e.body_text()))
    })?;
    let new: NewRule = serde_json::from_value(body)
        .map_err(|e| ApiError::BadRequest(format!("the alert rule: {e}")))?;
    new.validate()?;
    if let Some(task) = &new.task
        && state.tasks.store.get(task)?.is_none()
    {
        return Err(ApiError::BadRequest(format!(
            "task: no task with id {task:?} (GET /api/v1/tasks lists them; leave task out for a rule on every task)"
        )));
    }
    let rule = Rule {
        id: format!("a-{}", random_hex(6)),
        task: new.task,
        kind: new.kind,
        threshold: new.threshold,
        for_seconds: new.for_seconds,
        webhook_url: new.webhook_url,
        created_ms: now_ms(),
    };
    state.tasks.store.insert_rule(&rule, &new.secret)?;
    tracing::info!(rule = %rule.id, kind = rule.kind.name(), "alert rule created");
    Ok((StatusCode::CREATED, Json(view(&state, rule)?)))
}

/// List the alert rules, oldest first, each with the tasks it fires for now.
#[utoipa::path(
    get, path = "/alerts", tag = "alerts",
    responses(
        (status = 200, description = "The rules", body = Vec<RuleView>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_alerts(State(state): St) -> Result<Json<Vec<RuleView>>, ApiError> {
    let rules = state.tasks.store.rules()?;
    let views = rules
        .into_iter()
        .map(|r| view(&state, r))
        .collect::<Result<_, _>>()?;
    Ok(Json(views))
}

/// Delete an alert rule, with its deliveries (those not yet made are dropped).
#[utoipa::path(
    delete, path = "/alerts/{id}", tag = "alerts",
    params(("id" = String, Path, description = "The rule id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such rule", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_alert(
    State(state): St,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    match state.tasks.store.delete_rule(&id)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(no_rule(&id)),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct DeliveryParams {
    /// How many of the last deliveries, at most 1000 (default 100).
    pub limit: Option<u32>,
}

/// A rule's last deliveries, oldest first: each firing and resolution, for which task, and
/// how its POSTs went.
#[utoipa::path(
    get, path = "/alerts/{id}/deliveries", tag = "alerts",
    params(("id" = String, Path, description = "The rule id"), DeliveryParams),
    responses(
        (status = 200, description = "The deliveries", body = Vec<DeliveryView>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such rule", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn alert_deliveries(
    State(state): St,
    Path(id): Path<String>,
    Query(params): Query<DeliveryParams>,
) -> Result<Json<Vec<DeliveryView>>, ApiError> {
    if state.tasks.store.rule(&id)?.is_none() {
        return Err(no_rule(&id));
    }
    let limit = params.limit.unwrap_or(100).clamp(1, 1000);
    let rows = state.tasks.store.deliveries(&id, limit)?;
    Ok(Json(rows.into_iter().map(DeliveryView::from).collect()))
}
