//! The web console at `/`: one page of plain HTML, CSS and JavaScript, embedded in the binary
//! (nothing to build, nothing fetched from elsewhere), that drives the same `/api/v1` as
//! every other client. It signs in with the API token and from then on is let in by its
//! session cookie (see [`session`]).
//!
//! - [`session`]: sign-in sessions and their CSRF tokens.
//! - [`history`]: the last hour of each task's lag and latency, sampled by the server.

pub mod history;
pub mod session;

use std::sync::Arc;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use serde_json::json;

use crate::api::AppState;

/// What the console keeps in the server.
#[derive(Default)]
pub struct Console {
    pub sessions: session::Sessions,
    pub history: history::History,
}

/// The console's own routes (its page, its assets, sign-in and sign-out); its data comes from
/// `/api/v1`.
pub fn routes(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/console/assets/{file}", get(asset))
        .route(
            "/console/session",
            get(current).post(sign_in).delete(sign_out),
        )
        .with_state(state)
}

/// The assets, by name: (bytes, content type).
fn lookup(name: &str) -> Option<(&'static [u8], &'static str)> {
    Some(match name {
        "app.js" => (
            include_bytes!("assets/app.js"),
            "text/javascript; charset=utf-8",
        ),
        "app.css" => (include_bytes!("assets/app.css"), "text/css; charset=utf-8"),
        "icon.svg" => (include_bytes!("assets/icon.svg"), "image/svg+xml"),
        _ => return None,
    })
}

/// Headers every console response carries: its scripts and styles come from here only, it is
/// never framed, and nothing leaks in a Referer.
fn guarded(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

async fn index() -> Response {
    guarded(
        (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            include_str!("assets/index.html"),
        )
            .into_response(),
    )
}

async fn asset(Path(file): Path<String>) -> Response {
    match lookup(&file) {
        Some((bytes, kind)) => guarded(
            (
                [
                    (header::CONTENT_TYPE, kind),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                bytes,
            )
                .into_response(),
        ),
        None => (StatusCode::NOT_FOUND, "no such console asset").into_response(),
    }
}

fn refused(status: StatusCode, code: &str, message: &str) -> Response {
    (status, Json(json!({"error": code, "message": message}))).into_response()
}

/// Whether this browser is signed in: its CSRF token if so, else `null` (a 200 either way:
/// not being signed in yet is no error for the page to log).
async fn current(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    Json(json!({"csrf": state.console.sessions.csrf(&headers)})).into_response()
}

#[derive(Deserialize)]
struct SignIn {
    token: String,
}

/// Sign in with the API token: a session cookie, and the CSRF token for the page. JSON only
/// (a cross-site form cannot send it).
async fn sign_in(
    State(state): State<Arc<AppState>>,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Ok(Json(body)) = body else {
        return refused(
            StatusCode::BAD_REQUEST,
            "bad_request",
            "send {\"token\": \"...\"} as JSON",
        );
    };
    if !session::same(body.token.trim(), &state.token) {
        return refused(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "wrong API token: it is in the server's DATA_DIR/api-token",
        );
    }
    let (id, csrf) = state.console.sessions.open();
    let cookie = format!(
        "{}={id}; HttpOnly; SameSite=Strict; Path=/; Max-Age={}",
        session::COOKIE,
        session::LIFETIME.as_secs()
    );
    let mut response = Json(json!({"csrf": csrf})).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    response
}

/// Sign out: the session ends here and the cookie is cleared. Needs the CSRF token, as any
/// change.
async fn sign_out(State(state): State<Arc<AppState>>, headers: HeaderMap) -> Response {
    let sessions = &state.console.sessions;
    if sessions.check(&axum::http::Method::DELETE, &headers) == session::Verdict::NoCsrf {
        return refused(
            StatusCode::FORBIDDEN,
            "forbidden",
            "sign-out needs the page's X-CSRF-Token header",
        );
    }
    sessions.close(&headers);
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("ferry_session=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"),
    );
    response
}
