//! One sync task: target first (so a bad target fails before the source forks a snapshot), then
//! the source as a replica, joined by a bounded channel that carries backpressure end to end.

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use std::path::Path;

use crate::checkpoint::Checkpoint;
use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result};
use std::sync::atomic::Ordering::Relaxed;

use crate::entry::Entry;
use crate::source::psync::{self, PsyncSource};
use crate::source::snapshot;
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
    let mut target = StandaloneTarget::connect(&config.target).await?;
    tracing::info!(
        target = target.addr(),
        version = ?target.caps.version,
        rdb_version = target.caps.rdb_version,
        "target ready"
    );
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    match &config.source {
        Source::Redis(endpoint) => {
            let key = Checkpoint::key(&config.name);
            let resume = target.read_checkpoint(&key).await?;
            match &resume {
                Some(c) => tracing::info!(checkpoint = %c, "the target holds a checkpoint"),
                None => tracing::info!("no checkpoint on the target: full sync"),
            }
            let source = PsyncSource::connect(endpoint).await?;
            tracing::info!(source = %endpoint, "source accepted the replica handshake");
            let writer =
                tokio::spawn(target.run(rx, status.clone(), config.writer.clone(), Some(key)));
            let options = psync::Options {
                rdb: config.rdb.clone(),
                full_only: config.full_only,
                resume,
                full_resync: config.full_resync,
            };
            let read = source
                .run(options, tx, status.clone(), cancel.clone())
                .await;
            join_writer(writer).await?;
            read
        }
        Source::RdbFile(path) => {
            let writer = tokio::spawn(target.run(rx, status.clone(), config.writer.clone(), None));
            let read = load_file(path, config.rdb.clone(), tx, status, cancel).await;
            join_writer(writer).await?;
            read
        }
    }
}

/// The writer drains what the source sent, then ends; its error is the more precise one.
async fn join_writer(writer: tokio::task::JoinHandle<Result<()>>) -> Result<()> {
    writer
        .await
        .unwrap_or_else(|join| Err(Error::Config(format!("target writer stopped: {join}"))))
}

/// Reads a snapshot file into the channel, then marks its end.
async fn load_file(
    path: &Path,
    rdb: ferry_rdb::Options,
    tx: mpsc::Sender<crate::entry::Batch>,
    status: &Arc<Status>,
    cancel: &CancellationToken,
) -> Result<()> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path)
        .map_err(|e| Error::Config(format!("cannot open source file {name}: {e}")))?;
    let size = file.metadata().map(|m| m.len()).unwrap_or(0);
    status.snapshot_size.store(size, Relaxed);
    status.set_phase(Phase::Full);
    tracing::info!(file = %name, bytes = size, "loading snapshot file");
    let reader = FileReader {
        inner: std::io::BufReader::with_capacity(256 * 1024, file),
        status: status.clone(),
        cancel: cancel.clone(),
        read: 0,
    };
    let parser_tx = tx.clone();
    let parsed = tokio::task::spawn_blocking(move || snapshot::parse_into(reader, rdb, &parser_tx))
        .await
        .map_err(|join| Error::Config(format!("snapshot parser stopped: {join}")))?;
    match parsed {
        Ok(snapshot::Outcome::Done { rdb_version }) => {
            tracing::info!(rdb_version, "snapshot file read to its end");
            let _ = tx.send(vec![Entry::SnapshotEnd { offset: 0 }]).await;
            Ok(())
        }
        Ok(snapshot::Outcome::Abandoned) => Ok(()),
        Err(_) if cancel.is_cancelled() => Ok(()),
        Err(source) => Err(Error::Snapshot { addr: name, source }),
    }
}

/// A file reader that reports progress and stops when the task is cancelled.
struct FileReader {
    inner: std::io::BufReader<std::fs::File>,
    status: Arc<Status>,
    cancel: CancellationToken,
    read: u64,
}

impl std::io::Read for FileReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        if self.cancel.is_cancelled() {
            // Not `Interrupted`: readers retry on that.
            return Err(std::io::Error::other("stopped"));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.status.bytes_read.store(self.read, Relaxed);
        Ok(n)
    }
}
