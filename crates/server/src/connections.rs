//! Saved connections: a server's URL, login and TLS settings kept once under a name, which task
//! specs name instead of repeating them (`"source": {"connection": "prod-eu"}`), as the managed
//! consoles' "select an existing connection". A task keeps the link, not a copy: it is built
//! with the connection as it is when the task starts, so a changed password reaches every task
//! that names it on its next start. Passwords are write-only, as a task's are.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use ferry_engine::error::Role;
use ferry_engine::net::tls::TlsSection;
use ferry_engine::spec::{Secret, ServerUrl, TaskSpec};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};
use crate::store::{ConnectionRow, Store};
use crate::tasks::now_ms;

type St = State<Arc<AppState>>;

/// A connection as given to `POST` and `PUT`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectionInput {
    /// Letters, digits, `.`, `_` and `-`, at most 64 (ignored by `PUT`: the path names it).
    #[schema(example = "prod-eu")]
    pub name: Option<String>,
    /// `redis://[user:password@]host:port`, `rediss://` for TLS, `redis+sentinel://...`. The
    /// password is kept apart and never shown again.
    #[schema(value_type = String, example = "redis://app:secret@127.0.0.1:6379")]
    pub url: ServerUrl,
    /// TLS settings for a `rediss://` URL, as a task's `[source.tls]`: `ca_file`,
    /// `cert_file`, `key_file`, `server_name`, ...
    #[schema(value_type = Option<Object>)]
    pub tls: Option<TlsSection>,
    pub description: Option<String>,
}

/// A saved connection as the API shows it. Its password is never in it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConnectionView {
    pub name: String,
    /// The URL without its password.
    pub url: String,
    /// Whether a password is kept for it.
    pub has_password: bool,
    #[schema(value_type = Option<Object>)]
    pub tls: Option<Value>,
    pub description: Option<String>,
    /// Unix time in ms.
    pub created: u64,
    /// The tasks whose spec names it.
    pub used_by: Vec<String>,
}

/// What a connection test found.
#[derive(Debug, Serialize, ToSchema)]
pub struct TestResult {
    /// Reached and logged in to (every master, for a cluster).
    pub ok: bool,
    /// On success: the address, user, version, cluster masters, TLS.
    #[schema(value_type = Option<Object>)]
    pub server: Option<Value>,
    /// On failure: what failed (address, TLS handshake, login) and what to do.
    pub error: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct TestParams {
    /// Log in as a task's `source` (default) or `target` would: errors name that side.
    #[serde(default, rename = "as")]
    #[param(inline)]
    pub side: Side,
}

#[derive(Clone, Copy, Debug, Default, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    #[default]
    Source,
    Target,
}

fn check_name(name: &str) -> Result<(), ApiError> {
    let fine = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    match fine {
        true => Ok(()),
        false => Err(ApiError::BadRequest(format!(
            "connection name {name:?}: use 1 to 64 letters, digits, '.', '_' or '-'"
        ))),
    }
}

/// The row and password to store for `input`, its URL and TLS settings checked (TLS files are
/// read when a task using it is built, or by a test).
fn to_row(
    name: &str,
    input: ConnectionInput,
    created_ms: u64,
) -> Result<(ConnectionRow, Option<Secret>), ApiError> {
    check_name(name)?;
    let tls = input.tls.unwrap_or_default();
    ferry_engine::net::endpoint::Endpoint::parse_unloaded("connection", &input.url.expose(), &tls)?;
    let tls_json = match tls == TlsSection::default() {
        true => None,
        false => Some(
            serde_json::to_string(&tls).map_err(|e| ApiError::BadRequest(format!("tls: {e}")))?,
        ),
    };
    let password = input.url.password().cloned();
    let row = ConnectionRow {
        name: name.to_string(),
        url: input.url.shown(),
        tls: tls_json,
        description: input.description,
        created_ms,
    };
    Ok((row, password))
}

fn view(store: &Store, row: ConnectionRow, has_password: bool) -> Result<ConnectionView, ApiError> {
    Ok(ConnectionView {
        used_by: store.connection_users(&row.name)?,
        tls: row
            .tls
            .as_deref()
            .and_then(|t| serde_json::from_str(t).ok()),
        name: row.name,
        url: row.url,
        has_password,
        description: row.description,
        created: row.created_ms,
    })
}

fn no_connection(name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "no connection named {name:?}: GET /api/v1/connections lists them, POST /api/v1/connections saves one"
    ))
}

/// The connection's URL (with its password) and TLS settings.
pub fn load(store: &Store, name: &str) -> Result<(ServerUrl, Option<TlsSection>), ApiError> {
    let (row, password) = store.connection(name)?.ok_or_else(|| no_connection(name))?;
    let mut url = ServerUrl::new(&row.url);
    if !url.set_password(password.map(Secret::new)) {
        return Err(ApiError::Store(format!(
            "connection {name}'s stored URL has no place for its password"
        )));
    }
    let tls = match row.tls {
        Some(t) => Some(serde_json::from_str(&t).map_err(|e| {
            ApiError::Store(format!("connection {name}'s stored TLS settings: {e}"))
        })?),
        None => None,
    };
    Ok((url, tls))
}

/// The server sections of a spec body, by the names links use: `source`, `target`,
/// `more_targets.0`, ...
fn sections(body: &mut Value) -> Vec<(String, &mut Value)> {
    let Some(obj) = body.as_object_mut() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for (key, value) in obj.iter_mut() {
        match key.as_str() {
            "source" | "target" => out.push((key.clone(), value)),
            "more_targets" => {
                if let Some(list) = value.as_array_mut() {
                    for (i, v) in list.iter_mut().enumerate() {
                        out.push((format!("more_targets.{i}"), v));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// Replaces each `"connection": NAME` in a spec body (or a patch over one) by that
/// connection's URL (with its password) and TLS settings. Returns, for each server section the
/// body gives, the connection it names (`None`: it gives its own URL, or removes the server).
pub fn resolve(
    store: &Store,
    body: &mut Value,
) -> Result<BTreeMap<String, Option<String>>, ApiError> {
    let mut out = BTreeMap::new();
    for (section, value) in sections(body) {
        let Some(obj) = value.as_object_mut() else {
            out.insert(section, None);
            continue;
        };
        let Some(name) = obj.remove("connection") else {
            if obj.contains_key("url") {
                out.insert(section, None);
            }
            continue;
        };
        let Some(name) = name.as_str().map(str::to_string) else {
            return Err(ApiError::BadRequest(format!(
                "[{section}] connection must be a connection's name, e.g. \"prod-eu\""
            )));
        };
        for own in ["url", "tls"] {
            if obj.contains_key(own) {
                return Err(ApiError::BadRequest(format!(
                    "[{section}] names connection {name:?} and gives its own {own}: give one or the other"
                )));
            }
        }
        let (url, tls) = load(store, &name).map_err(|e| match e {
            ApiError::NotFound(m) => ApiError::BadRequest(format!("[{section}] {m}")),
            other => other,
        })?;
        obj.insert("url".into(), Value::String(url.expose()));
        if let Some(tls) = tls {
            obj.insert(
                "tls".into(),
                serde_json::to_value(tls).map_err(|e| ApiError::Store(e.to_string()))?,
            );
        }
        out.insert(section, Some(name));
    }
    Ok(out)
}

/// Puts each linked connection as it is now into the spec (URL, password, TLS settings).
pub fn apply(
    store: &Store,
    spec: &mut TaskSpec,
    links: &BTreeMap<String, String>,
) -> Result<(), ApiError> {
    for (section, name) in links {
        let server = match section.as_str() {
            "source" => &mut spec.source,
            "target" => &mut spec.target,
            other => match other
                .strip_prefix("more_targets.")
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| spec.more_targets.get_mut(i))
            {
                Some(server) => server,
                None => continue,
            },
        };
        let (url, tls) = load(store, name)?;
        server.url = Some(url);
        server.tls = tls;
    }
    Ok(())
}

/// The spec as shown, with `"connection": NAME` in each linked server section.
pub fn show_links(spec: &mut Value, links: &BTreeMap<String, String>) {
    for (section, value) in sections(spec) {
        if let (Some(name), Some(obj)) = (links.get(&section), value.as_object_mut()) {
            obj.insert("connection".into(), Value::String(name.clone()));
        }
    }
}

/// Save a connection (URL, login, TLS settings) under a name that task specs can use:
/// `"source": {"connection": "NAME"}`.
#[utoipa::path(
    post, path = "/connections", tag = "connections",
    request_body = ConnectionInput,
    responses(
        (status = 201, description = "Saved", body = ConnectionView),
        (status = 400, description = "The name, URL or TLS settings are not valid", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "The URL or TLS settings were refused", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn create_connection(
    State(state): St,
    body: Result<Json<ConnectionInput>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<ConnectionView>), ApiError> {
    let Json(input) =
        body.map_err(|e| ApiError::BadRequest(format!("the connection: {}", e.body_text())))?;
    let name = input.name.clone().ok_or_else(|| {
        ApiError::BadRequest("the connection needs a name, e.g. \"prod-eu\"".into())
    })?;
    let (row, password) = to_row(&name, input, now_ms())?;
    let store = &state.tasks.store;
    store.insert_connection(&row, password.as_ref().map(Secret::expose))?;
    Ok((
        StatusCode::CREATED,
        Json(view(store, row, password.is_some())?),
    ))
}

/// The saved connections, by name.
#[utoipa::path(
    get, path = "/connections", tag = "connections",
    responses(
        (status = 200, description = "The connections", body = Vec<ConnectionView>),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn list_connections(State(state): St) -> Result<Json<Vec<ConnectionView>>, ApiError> {
    let store = &state.tasks.store;
    let mut out = Vec::new();
    for row in store.connections()? {
        let has_password = store
            .connection(&row.name)?
            .is_some_and(|(_, p)| p.is_some());
        out.push(view(store, row, has_password)?);
    }
    Ok(Json(out))
}

/// One saved connection.
#[utoipa::path(
    get, path = "/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 200, description = "The connection", body = ConnectionView),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn get_connection(
    State(state): St,
    Path(name): Path<String>,
) -> Result<Json<ConnectionView>, ApiError> {
    let store = &state.tasks.store;
    let (row, password) = store
        .connection(&name)?
        .ok_or_else(|| no_connection(&name))?;
    Ok(Json(view(store, row, password.is_some())?))
}

/// Replace a saved connection: URL (its password, or none), TLS settings, description. Tasks
/// that name it use it as it is now from their next start.
#[utoipa::path(
    put, path = "/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    request_body = ConnectionInput,
    responses(
        (status = 200, description = "Replaced", body = ConnectionView),
        (status = 400, description = "The URL or TLS settings are not valid", body = ErrorBody),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 422, description = "The URL or TLS settings were refused", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn replace_connection(
    State(state): St,
    Path(name): Path<String>,
    body: Result<Json<ConnectionInput>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<ConnectionView>, ApiError> {
    let Json(input) =
        body.map_err(|e| ApiError::BadRequest(format!("the connection: {}", e.body_text())))?;
    let store = &state.tasks.store;
    let (old, _) = store
        .connection(&name)?
        .ok_or_else(|| no_connection(&name))?;
    let (row, password) = to_row(&name, input, old.created_ms)?;
    store.replace_connection(&row, password.as_ref().map(Secret::expose))?;
    Ok(Json(view(store, row, password.is_some())?))
}

/// Delete a saved connection that no task names.
#[utoipa::path(
    delete, path = "/connections/{name}", tag = "connections",
    params(("name" = String, Path, description = "The connection's name")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 409, description = "Tasks name it", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn delete_connection(
    State(state): St,
    Path(name): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = &state.tasks.store;
    let users = store.connection_users(&name)?;
    if !users.is_empty() {
        return Err(ApiError::Conflict(format!(
            "connection {name} is named by task(s) {}: change or delete them first",
            users.join(", ")
        )));
    }
    match store.delete_connection(&name)? {
        true => Ok(StatusCode::NO_CONTENT),
        false => Err(no_connection(&name)),
    }
}

/// Check that the connection's server can be reached and logged in to (every master, for a
/// cluster), with its TLS settings, and say what it is.
#[utoipa::path(
    post, path = "/connections/{name}/test", tag = "connections",
    params(("name" = String, Path, description = "The connection's name"), TestParams),
    responses(
        (status = 200, description = "The result (look at `ok`)", body = TestResult),
        (status = 401, description = "No or wrong token", body = ErrorBody),
        (status = 404, description = "No such connection", body = ErrorBody),
        (status = 500, description = "The store failed", body = ErrorBody),
    ),
    security(("bearer" = []))
)]
pub async fn test_connection(
    State(state): St,
    Path(name): Path<String>,
    Query(params): Query<TestParams>,
) -> Result<Json<TestResult>, ApiError> {
    let (url, tls) = load(&state.tasks.store, &name)?;
    let role = match params.side {
        Side::Source => Role::Source,
        Side::Target => Role::Target,
    };
    let result = match ferry_engine::net::probe::probe(role, &url, tls.as_ref()).await {
        Ok(probe) => TestResult {
            ok: true,
            server: serde_json::to_value(probe).ok(),
            error: None,
        },
        Err(e) => TestResult {
            ok: false,
            server: None,
            error: Some(e.to_string()),
        },
    };
    Ok(Json(result))
}
