//! `ferry serve`: many sync tasks in one process, behind a REST API (axum, with its OpenAPI
//! document made by utoipa from the handlers themselves). Tasks, their passwords (in a table
//! of their own), their events and their last precheck and verify reports are kept in SQLite in
//! the data dir; a restarted server starts again the tasks that were running, each continuing
//! from its checkpoint in the target.
//!
//! - [`store`]: the SQLite store.
//! - [`tasks`]: the tasks' lifecycle on the engine (`ferry_engine::task`).
//! - [`connections`]: saved servers that task specs name.
//! - [`api`]: the routes, the token check, the OpenAPI document.
//! - [`alerts`]: alert rules, their evaluation and the webhook outbox.
//! - [`metrics`]: `GET /metrics` for Prometheus.
//! - [`console`]: the web console at `/`.

pub mod alerts;
pub mod api;
pub mod connections;
pub mod console;
pub mod error;
pub mod metrics;
pub mod store;
pub mod tasks;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use error::ApiError;
use tokio_util::sync::CancellationToken;

/// How to run a server.
#[derive(Clone, Debug)]
pub struct Options {
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
}

/// Runs the server until `stop` fires, then stops its tasks (their stored states kept, so the
/// next start resumes them) and returns.
pub async fn serve(opts: Options, stop: CancellationToken) -> Result<(), ApiError> {
    let state = open(&opts.data_dir)?;
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .map_err(|e| {
            ApiError::Setup(format!(
                "cannot listen on {}: {e} (is another server there? choose another --listen address)",
                opts.listen
            ))
        })?;
    let addr = listener.local_addr().unwrap_or(opts.listen);
    tracing::info!(%addr, "serving the API on http://{addr}/api/v1 (OpenAPI at /openapi.json)");
    // Made before the tasks start again: a failure here leaves nothing running.
    let webhooks = alerts::deliver::client()?;
    // Before any task starts: the engine's counters are kept from their first event.
    metrics::counters();
    state.tasks.boot()?;
    let alerts = alerts::start(state.tasks.clone(), webhooks, stop.clone());
    let history = console::history::start(state.clone(), stop.clone());
    state.ready.store(true, Ordering::SeqCst);
    let (router, _) = api::router(state.clone());
    let shutdown = stop.clone();
    let served = axum::serve(listener, router)
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
    // Before the tasks stop: their stopping is not a change for the rules to see.
    alerts.stopped().await;
    let _ = history.await;
    state.tasks.shutdown().await;
    served.map_err(|e| ApiError::Store(format!("the HTTP server failed: {e}")))
}

/// Opens (or creates) the data dir: the store, and the API token.
pub fn open(data_dir: &Path) -> Result<Arc<api::AppState>, ApiError> {
    std::fs::create_dir_all(data_dir).map_err(|e| {
        ApiError::Setup(format!(
            "cannot create the data dir {}: {e} (choose another with --data)",
            data_dir.display()
        ))
    })?;
    let store = store::Store::open(&data_dir.join("ferry.db"))
        .map_err(|e| ApiError::Setup(format!("{e} (is the data dir writable? --data DIR)")))?;
    let token = token(data_dir)?;
    let tasks = Arc::new(tasks::Tasks::new(store, data_dir.to_path_buf()));
    Ok(Arc::new(api::AppState {
        tasks,
        token,
        ready: AtomicBool::new(false),
        console: Default::default(),
    }))
}

/// The API token in `DIR/api-token`, created (mode 0600) on first start.
fn token(data_dir: &Path) -> Result<String, ApiError> {
    let path = data_dir.join("api-token");
    match std::fs::read_to_string(&path) {
        Ok(text) if !text.trim().is_empty() => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => {
            return Err(ApiError::Setup(format!(
                "cannot read the API token {}: {e}",
                path.display()
            )));
        }
    }
    let token = tasks::random_hex(32);
    write_private(&path, &format!("{token}\n")).map_err(|e| {
        ApiError::Setup(format!(
            "cannot write the API token {}: {e}",
            path.display()
        ))
    })?;
    tracing::info!(
        "created an API token in {}: send it as Authorization: Bearer <token>",
        path.display()
    );
    Ok(token)
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}
