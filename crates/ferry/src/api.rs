//! The HTTP status API: `GET /status` returns the task's status as JSON.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use tokio_util::sync::CancellationToken;

use ferry_engine::error::{Error, Result};
use ferry_engine::status::{Snapshot, Status};

pub fn router(status: Arc<Status>) -> Router {
    Router::new()
        .route("/status", get(get_status))
        .with_state(status)
}

async fn get_status(State(status): State<Arc<Status>>) -> Json<Snapshot> {
    Json(status.snapshot())
}

/// Binds now (so a taken port is an error before the task starts) and serves until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    status: Arc<Status>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::StatusServer {
            addr: addr.to_string(),
            source,
        })?;
    tracing::info!(%addr, "status API listening: GET /status");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, router(status))
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
    }))
}
