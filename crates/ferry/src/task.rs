//! One sync task: target first (so a bad target fails before the source forks a snapshot), then
//! the source as a replica, joined by a bounded channel that carries backpressure end to end.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::TaskConfig;
use crate::error::Result;
use crate::source::psync::{self, PsyncSource};
use crate::status::{Phase, Status};
use crate::target::standalone::StandaloneTarget;

/// Batches between source and target; with the batch limits this bounds memory to a few MiB.
const CHANNEL_BATCHES: usize = 8;

/// Runs the task until it fails, the source ends (full-only), or `cancel` fires. On return the
/// status holds the final phase and, on failure, the error.
pub async fn run(config: TaskConfig, status: Arc<Status>, cancel: CancellationToken) -> Result<()> {
    let result = run_inner(&config, &status, &cancel).await;
    match &result {
        Ok(()) => status.set_phase(Phase::Stopped),
        Err(e) => {
            status.set_error(e.to_string());
            status.set_phase(Phase::Failed);
        }
    }
    result
}

async fn run_inner(
    config: &TaskConfig,
    status: &Arc<Status>,
    cancel: &CancellationToken,
) -> Result<()> {
    status.set_phase(Phase::Connecting);
    let target = StandaloneTarget::connect(&config.target).await?;
    tracing::info!(target = target.addr(), version = ?target.version, "target ready");
    let source = PsyncSource::connect(&config.source).await?;
    tracing::info!(source = %config.source, "source accepted the replica handshake");

    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let writer = tokio::spawn(target.run(rx, status.clone(), config.writer.clone()));
    let options = psync::Options {
        rdb: config.rdb.clone(),
        full_only: config.full_only,
    };
    let read = source
        .run(options, tx, status.clone(), cancel.clone())
        .await;
    // The writer drains what the source sent, then ends; its error is the more precise one.
    let written = writer.await.unwrap_or_else(|join| {
        Err(crate::error::Error::Config(format!(
            "target writer stopped: {join}"
        )))
    });
    written?;
    read
}
