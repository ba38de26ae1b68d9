//! What the API answers when it refuses: one status code and one JSON body,
//! `{"error": code, "message": one line naming what was wrong and what to do}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request itself is wrong (a spec that does not validate, a bad parameter).
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    NotFound(String),
    /// The task is not in a state that allows this.
    #[error("{0}")]
    Conflict(String),
    /// The engine refused: its stable error code and its message.
    #[error("{message}")]
    Engine { code: &'static str, message: String },
    #[error("the task store failed: {0}")]
    Store(String),
    /// The server cannot start: its data dir, token or listen address.
    #[error("{0}")]
    Setup(String),
}

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// A stable code: `bad_request`, `unauthorized`, `not_found`, `conflict`, `store`, or the
    /// engine's own error code (e.g. `config`).
    #[schema(example = "conflict")]
    pub error: String,
    /// One line: what was wrong and what to do.
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::Engine { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Store(_) | ApiError::Setup(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::Conflict(_) => "conflict",
            ApiError::Engine { code, .. } => code,
            ApiError::Store(_) => "store",
            ApiError::Setup(_) => "setup",
        }
    }

    pub fn no_task(id: &str) -> ApiError {
        ApiError::NotFound(format!(
            "no task with id {id:?}: GET /api/v1/tasks lists them"
        ))
    }
}

impl From<ferry_engine::Error> for ApiError {
    fn from(e: ferry_engine::Error) -> ApiError {
        ApiError::Engine {
            code: e.code(),
            message: e.to_string(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Store(_) = &self {
            tracing::error!("{self}");
        }
        let body = ErrorBody {
            error: self.code().to_string(),
            message: self.to_string(),
        };
        (self.status(), Json(body)).into_response()
    }
}
