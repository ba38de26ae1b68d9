//! Between one replication stream and the target: hands the source's entries to the target's
//! writer and keeps the command stream in the spool, so that
//! - a slow target is fed from disk while the source keeps being read at its own pace;
//! - a target that goes away (restart, network cut) is reconnected with backoff while the
//!   source is still read into the spool, and written to again from its own checkpoint when it
//!   is back, without asking the source for those writes again;
//! - when the spool is full and the target has confirmed none of it, reading the source stops
//!   (the source then buffers, and drops the link when its replica output buffer is full).
//!
//! The snapshot is not spooled: a target lost during the full copy cannot be continued anyway.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::TaskConfig;
use crate::error::{Error, Result};
use crate::net::endpoint::Endpoint;
use crate::pipeline::entry::{Batch, Entry};
use crate::pipeline::pause::Pause;
use crate::pipeline::spool::{self, Spool};
use crate::sink::Target;
use crate::sink::checkpoint::Checkpoint;
use crate::status::events::EventKind;
use crate::status::{Phase, Status};

/// Batches between the relay and the writer.
const WRITER_BATCHES: usize = 8;
/// Entries read back from the spool at a time.
const SPOOL_BATCH: usize = 512;

/// How one writer's run ended.
enum Fed {
    /// The source has ended and the writer has been given everything.
    SourceDone,
    /// The writer stopped (with the target's error, or Ok when it had nothing more to do).
    WriterEnded(Result<()>),
    /// The task is stopping.
    Stopped,
}

pub struct Relay {
    config: TaskConfig,
    /// The target written to.
    endpoint: Endpoint,
    status: Arc<Status>,
    cancel: CancellationToken,
    spool_dir: PathBuf,
    /// Set once the command stream starts (and the spool is on).
    spool: Option<Spool>,
    replid: Option<Bytes>,
    /// The snapshot is over: entries now are the command stream.
    stream: bool,
    /// The spool holds entries the writer has not been given yet: they go first.
    behind: bool,
    source_done: bool,
    full_said: bool,
    /// The first entry for a new writer: where the target's checkpoint says to go on from.
    restart: Option<Entry>,
    /// This target holds the stream up to here already (it is ahead of the position the
    /// shared stream starts from): entries ending before are not given to it.
    skip_until: u64,
    /// The task's pause switch, and a watch on it.
    pause: Pause,
    paused: tokio::sync::watch::Receiver<bool>,
}

impl Relay {
    /// A relay into `endpoint` whose spool is `spool_dir`.
    pub fn new(
        config: TaskConfig,
        endpoint: Endpoint,
        spool_dir: PathBuf,
        status: Arc<Status>,
        cancel: CancellationToken,
        pause: Pause,
    ) -> Self {
        Relay {
            paused: pause.watch(),
            pause,
            spool_dir,
            config,
            endpoint,
            status,
            cancel,
            spool: None,
            replid: None,
            stream: false,
            behind: false,
            source_done: false,
            full_said: false,
            restart: None,
            skip_until: 0,
        }
    }

    /// The target already holds the stream up to `offset`.
    pub fn skipping_until(mut self, offset: u64) -> Self {
        self.skip_until = offset;
        self
    }

    /// Writes what `source` sends into `target` until the source ends, the task stops, or a
    /// failure that the spool cannot bridge.
    pub async fn run(mut self, mut source: mpsc::Receiver<Batch>, target: Target) -> Result<()> {
        let mut target = target;
        loop {
            let (tx, rx) = mpsc::channel(WRITER_BATCHES);
            let task = self.config.checkpoint.then(|| self.config.name.clone());
            let mut writer =
                tokio::spawn(target.run(rx, self.status.clone(), self.config.writer.clone(), task));
            let restarted = match self.restart.take() {
                Some(start) => tx.send(vec![start]).await.is_ok(),
                None => true,
            };
            let fed = match restarted {
                true => self.feed(&mut source, &tx, &mut writer).await,
                false => Fed::WriterEnded(join(&mut writer).await),
            };
            drop(tx);
            let err = match fed {
                Fed::SourceDone | Fed::Stopped => return join(&mut writer).await,
                Fed::WriterEnded(Ok(())) => return Ok(()),
                Fed::WriterEnded(Err(e)) => e,
            };
            target = self.reconnect(&mut source, err).await?;
        }
    }

    async fn feed(
        &mut self,
        source: &mut mpsc::Receiver<Batch>,
        tx: &mpsc::Sender<Batch>,
        writer: &mut JoinHandle<Result<()>>,
    ) -> Fed {
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            if self.source_done && !self.behind {
                return Fed::SourceDone;
            }
            let paused = self.pause.is_paused();
            // Paused, the stream goes on into the spool; without one (or in the snapshot,
            // which is not spooled) the source is not read.
            let held = match &self.spool {
                Some(spool) => spool.is_full(),
                None => paused,
            };
            let reading = !self.source_done && !held;
            // Reading the source comes before feeding the writer from the spool: a source that
            // is not read holds ferry's share in its output buffer, and drops the link when full.
            tokio::select! {
                biased;
                done = &mut *writer => return Fed::WriterEnded(joined(done)),
                _ = self.cancel.cancelled() => return Fed::Stopped,
                _ = self.paused.changed() => {}
                _ = tick.tick() => {
                    if let Err(e) = self.housekeeping() {
                        return Fed::WriterEnded(Err(e));
                    }
                }
                batch = source.recv(), if reading => match batch {
                    None => self.source_done = true,
                    Some(batch) => match self.take(batch, tx).await {
                        Ok(true) => {}
                        Ok(false) => return Fed::WriterEnded(join(writer).await),
                        Err(e) => return Fed::WriterEnded(Err(e)),
                    },
                },
                permit = tx.reserve(), if self.behind && !paused => {
                    let Ok(permit) = permit else {
                        return Fed::WriterEnded(join(writer).await);
                    };
                    match self.read_spool() {
                        Ok(Some(batch)) => permit.send(batch),
                        Ok(None) => self.behind = false,
                        Err(e) => return Fed::WriterEnded(Err(e)),
                    }
                }
            }
        }
    }

    /// Takes one batch from the source. False when the writer has gone.
    async fn take(&mut self, batch: Batch, tx: &mpsc::Sender<Batch>) -> Result<bool> {
        if !self.stream {
            // The snapshot and the markers around it: handed over as they come.
            let start = self.stream_start(&batch);
            if tx.send(batch).await.is_err() {
                return Ok(false);
            }
            if let Some(offset) = start {
                self.start_stream(offset)?;
            }
            return Ok(true);
        }
        let mut batch = batch;
        if self.skip_until > 0 {
            let until = self.skip_until;
            batch.retain(|e| match e {
                Entry::Command(c) => c.end_offset > until,
                Entry::Offset { offset, .. } => *offset > until,
                _ => true,
            });
            if batch.is_empty() {
                return Ok(true);
            }
            self.skip_until = 0;
        }
        let Some(spool) = &mut self.spool else {
            return Ok(tx.send(batch).await.is_ok());
        };
        spool.append(&batch).map_err(spool_error)?;
        if spool.is_full() {
            spool
                .trim(self.status.applied_offset.load(Relaxed))
                .map_err(spool_error)?;
        }
        if self.behind {
            // The writer is being fed from the spool, in order; this batch is there too.
            return Ok(true);
        }
        if self.pause.is_paused() {
            // Kept for when the task resumes.
            spool.rewind_to_last_append().map_err(spool_error)?;
            self.behind = true;
            return Ok(true);
        }
        match tx.try_send(batch) {
            Ok(()) => Ok(true),
            Err(TrySendError::Full(_)) => {
                spool.rewind_to_last_append().map_err(spool_error)?;
                self.behind = true;
                Ok(true)
            }
            Err(TrySendError::Closed(_)) => Ok(false),
        }
    }

    /// Where the command stream starts, if this batch starts it.
    fn stream_start(&mut self, batch: &Batch) -> Option<u64> {
        let mut start = None;
        for entry in batch {
            match entry {
                Entry::SyncStart {
                    replid,
                    offset,
                    snapshot,
                    ..
                } => {
                    self.replid = Some(replid.clone());
                    if !snapshot {
                        start = Some(*offset);
                    }
                }
                Entry::SnapshotEnd { offset } if !self.config.full_only => start = Some(*offset),
                _ => {}
            }
        }
        start
    }

    fn start_stream(&mut self, offset: u64) -> Result<()> {
        self.stream = true;
        // Without a checkpoint a returning target cannot say where to go on from.
        if self.config.spool.limit == 0 || !self.config.checkpoint {
            return Ok(());
        }
        // A target ahead of the shared stream's start takes (and spools) only what follows
        // its own position.
        let start = offset.max(self.skip_until);
        self.spool = Some(
            Spool::create(&self.spool_dir, start, self.config.spool.limit).map_err(spool_error)?,
        );
        self.status
            .spool_limit
            .store(self.config.spool.limit, Relaxed);
        tracing::debug!(dir = %self.spool_dir.display(), offset, "spooling the command stream");
        Ok(())
    }

    fn read_spool(&mut self) -> Result<Option<Batch>> {
        let Some(spool) = &mut self.spool else {
            return Ok(None);
        };
        let batch = spool.read(SPOOL_BATCH).map_err(spool_error)?;
        Ok((!batch.is_empty()).then_some(batch))
    }

    /// Frees what the target has confirmed when room is needed, and shows the spool's state.
    fn housekeeping(&mut self) -> Result<()> {
        let Some(spool) = &mut self.spool else {
            return Ok(());
        };
        if spool.is_full() {
            spool
                .trim(self.status.applied_offset.load(Relaxed))
                .map_err(spool_error)?;
        }
        self.status.spool_bytes.store(spool.bytes(), Relaxed);
        let full = spool.is_full();
        self.status.spool_full.store(full, Relaxed);
        if full && !self.full_said {
            self.status.warn("spool_full", format!(
                "the spool {} is full ({} MiB) and the target has confirmed none of it: reading from the source is paused; the source drops the link once its output buffer for replicas is full (client-output-buffer-limit replica), and then only its backlog can continue the stream; raise [spool] size_mb to bridge longer outages",
                self.spool_dir.display(),
                self.config.spool.limit >> 20
            ));
        }
        if !full && self.full_said {
            tracing::info!("the spool has room again: reading from the source goes on");
        }
        self.full_said = full;
        Ok(())
    }

    /// The writer failed. If the target went away while the command stream was being
    /// spooled, keeps reading the source into the spool while reconnecting with backoff, and
    /// returns the target once it is back and its checkpoint lies in the spool. Otherwise
    /// returns the error, for the task to retry from the checkpoint (asking the source again).
    async fn reconnect(
        &mut self,
        source: &mut mpsc::Receiver<Batch>,
        err: Error,
    ) -> Result<Target> {
        let window = target_gone(&err, &self.config.retry);
        let Some(limit) = window.filter(|_| self.spool.is_some() && self.config.checkpoint) else {
            return Err(err);
        };
        let started = Instant::now();
        let mut attempt: u32 = 0;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        self.status.retries.fetch_add(1, Relaxed);
        loop {
            let left = limit.saturating_sub(started.elapsed());
            if left.is_zero() {
                return Err(Error::GaveUp {
                    minutes: limit.as_secs() / 60,
                    last: Box::new(err),
                });
            }
            let until = std::time::SystemTime::now() + left;
            let until = until
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.status.retry_until.store(until, Relaxed);
            let spool_mib = self.spool.as_ref().map_or(0, |s| s.bytes() >> 20);
            self.status.set_error(format!(
                "{err}; the source stream is kept in the spool meanwhile ({spool_mib} of {} MiB)",
                self.config.spool.limit >> 20
            ));
            self.status.set_phase(Phase::Retrying);
            let delay = crate::error::backoff(attempt).min(left);
            if attempt == 0 {
                self.status.events().emit(EventKind::Retrying {
                    code: err.code(),
                    message: format!(
                        "{err}; reading the source into the spool {} while the target is away",
                        self.spool_dir.display()
                    ),
                    attempt,
                    delay_ms: delay.as_millis() as u64,
                    gives_up_in_s: left.as_secs(),
                });
            }
            let sleep = tokio::time::sleep(delay);
            tokio::pin!(sleep);
            loop {
                let reading = !self.source_done && !self.spool.as_ref().is_some_and(Spool::is_full);
                tokio::select! {
                    _ = &mut sleep => break,
                    _ = self.cancel.cancelled() => return Err(err),
                    batch = source.recv(), if reading => match batch {
                        None => self.source_done = true,
                        Some(batch) => {
                            if let Some(spool) = &mut self.spool {
                                spool.append(&batch).map_err(spool_error)?;
                            }
                        }
                    },
                    _ = tick.tick() => self.housekeeping()?,
                }
            }
            match self.target_back().await {
                Ok(Some(target)) => {
                    self.status.set_phase(Phase::Incremental);
                    return Ok(target);
                }
                Ok(None) => return Err(err),
                Err(e) if target_gone(&e, &self.config.retry).is_some() => {
                    tracing::debug!("target still away: {e}");
                    attempt = attempt.saturating_add(1);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Connects to the target and finds its checkpoint in the spool. None when the spool
    /// cannot continue the target (it lost more than the spool holds, or its data).
    async fn target_back(&mut self) -> Result<Option<Target>> {
        let mut target = Target::connect(&self.endpoint).await?;
        if let Some(fence) = &self.config.writer.fence {
            fence.claim(&mut target, &self.endpoint.addr()).await?;
        }
        let checkpoint = target.read_checkpoint(&self.config.name).await?;
        let Some(spool) = &mut self.spool else {
            return Ok(None);
        };
        let (replid, offset) = match &checkpoint {
            Some(Checkpoint::Applied { replid, offset, .. })
                if self.replid.as_deref() == Some(replid.as_bytes()) =>
            {
                (replid.clone(), *offset)
            }
            other => {
                let found = other.as_ref().map_or("none".to_string(), |c| c.to_string());
                self.status.warn("spool_cannot_continue", format!(
                    "target {} is back but its checkpoint ({found}) is not one the spool can continue: going back to the source",
                    target.addr()
                ));
                return Ok(None);
            }
        };
        if !spool.seek_after(offset).map_err(spool_error)? {
            self.status.warn("spool_cannot_continue", format!(
                "target {} is back at offset {offset}, which the spool no longer holds (it holds {}..{}): going back to the source",
                target.addr(),
                spool.start(),
                spool.end()
            ));
            return Ok(None);
        }
        tracing::info!(
            target = target.addr(),
            offset,
            spooled = spool.end() - offset,
            "target is back: replaying the spool from its checkpoint"
        );
        self.behind = true;
        // The target now holds exactly what its checkpoint names.
        self.status.applied_offset.store(offset, Relaxed);
        self.restart = Some(Entry::SyncStart {
            replid: Bytes::from(replid),
            offset,
            snapshot: false,
            clear_target: false,
        });
        Ok(Some(target))
    }
}

/// How long a target that went away (connection refused, reset, closed, still loading its
/// data, not answering) is waited for with the spool; None for other failures.
fn target_gone(err: &Error, retry: &crate::config::Retry) -> Option<Duration> {
    err.target_gone().map(|r| match r {
        crate::error::Retry::Other => retry.other,
        _ => retry.connection,
    })
}

fn spool_error(e: spool::SpoolError) -> Error {
    Error::Local(format!(
        "{e}; free space there, choose another [sync] data_dir, or turn the spool off with [spool] size_mb = 0"
    ))
}

async fn join(writer: &mut JoinHandle<Result<()>>) -> Result<()> {
    joined(writer.await)
}

fn joined(done: std::result::Result<Result<()>, tokio::task::JoinError>) -> Result<()> {
    done.unwrap_or_else(|join| {
        Err(Error::Internal {
            what: "the target writer",
            why: join.to_string(),
        })
    })
}
