//! The Lua transform step: a user's script sees each snapshot key and each command of the
//! replication stream on its way to the target, and returns it as it is, changed (another
//! key name, db or arguments) or nothing (dropped). See "Transform (Lua)" in the README for
//! the contract.
//!
//! - `sandbox`: the Lua state, its safe libraries and its time and memory limits;
//! - `convert`: entries to Lua tables and back ([`LuaTransform::apply`]);
//! - here: the checked script of a task, and its run between the channel from the source and
//!   the target's writer, on one of the engine's shared workers (`crate::workers`: a Lua state
//!   stays on the thread that made it).

mod convert;
mod sandbox;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

pub use convert::LuaTransform;
pub use sandbox::Limits;

use crate::pipeline::entry::Batch;

/// Name of the function a script must define.
pub const FUNCTION: &str = "transform";

/// Batches between the script and the writer: the script's output is bounded like its input.
const CHANNEL_BATCHES: usize = 2;

#[derive(thiserror::Error, Debug)]
pub enum ScriptError {
    #[error("cannot read transform script {path}: {source}; check [transform] script")]
    Read {
        path: String,
        source: std::io::Error,
    },
    /// A syntax error, or an error raised while the script's top level ran. Lua's message
    /// starts with `<file>:<line>:`.
    #[error("transform script {0}")]
    Load(String),
    #[error(
        "transform script {path} defines no function {FUNCTION}(entry); define one that returns the entry (changed or not), or nil to drop it"
    )]
    NoFunction { path: String },
    /// An error raised in a call; Lua's message starts with `<file>:<line>:`.
    #[error("transform script {message} (in {what})")]
    Runtime { message: String, what: String },
    #[error(
        "transform script {at}: a call ran longer than {limit_ms} ms (in {what}) and was stopped; is there an endless loop? [transform] time_limit_ms raises the limit"
    )]
    TimedOut {
        /// `<file>:<line>` where it was stopped.
        at: String,
        limit_ms: u128,
        what: String,
    },
    /// The script returned something ferry cannot write; `line` is where `transform` is defined.
    #[error("transform script {path}:{line}: {FUNCTION}() {problem} (for {what})")]
    Returned {
        path: String,
        line: usize,
        problem: String,
        what: String,
    },
}

/// A task's transform script, read and checked when the task is configured; each writer runs
/// it in a Lua state of its own.
#[derive(Clone, Debug)]
pub struct Script {
    pub path: PathBuf,
    code: String,
    pub limits: Limits,
}

impl Script {
    /// Reads the script and checks that it loads in the sandbox and defines `transform`.
    pub fn load(path: &Path, limits: Limits) -> Result<Script, ScriptError> {
        let code = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let script = Script {
            path: path.to_path_buf(),
            code,
            limits,
        };
        script.start()?;
        Ok(script)
    }

    /// A fresh Lua state running this script.
    pub fn start(&self) -> Result<LuaTransform, ScriptError> {
        LuaTransform::new(&self.path.display().to_string(), &self.code, self.limits)
    }
}

/// How the thread running a script for one writer ended, once it has.
pub struct Done(oneshot::Receiver<crate::Result<()>>);

/// Starts `script` on a shared worker between `input` and the returned channel. It ends when
/// `input` closes, when the receiver goes away, or at the script's first error. With `filter`,
/// the `[filter]` rules are applied first, in the same step, so the script sees only what the
/// filter lets through.
pub fn spawn(
    script: &Script,
    mut filter: Option<crate::pipeline::transform::Transform>,
    status: std::sync::Arc<crate::status::Status>,
    mut input: mpsc::Receiver<Batch>,
) -> crate::Result<(mpsc::Receiver<Batch>, Done)> {
    let script = script.clone();
    let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
    let (done_tx, done) = oneshot::channel();
    let started = crate::workers::shared().spawn(move || async move {
        let result = async {
            // Made here: a Lua state stays on the worker that made it.
            let mut transform = script.start()?;
            while let Some(batch) = input.recv().await {
                let batch = match &mut filter {
                    Some(filter) => filter.apply(batch, &status)?,
                    None => batch,
                };
                let batch = transform.apply_batch(batch)?;
                if !batch.is_empty() && tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok(())
        }
        .await;
        // Before the output closes, so the writer, seeing it closed, finds the outcome.
        let _ = done_tx.send(result);
        drop(tx);
    });
    if !started {
        return Err(crate::Error::Internal {
            what: "the transform step",
            why: "no worker thread is running".into(),
        });
    }
    Ok((rx, Done(done)))
}

/// The writer has returned `written`: the script's error if it stopped the stream (the writer
/// then ended as if the source had), else the writer's outcome.
pub fn outcome(done: Option<Done>, written: crate::Result<()>) -> crate::Result<()> {
    written?;
    let Some(Done(mut done)) = done else {
        return Ok(());
    };
    match done.try_recv() {
        Ok(Err(e)) => Err(e),
        // The thread panicked: its output closed without a word.
        Err(oneshot::error::TryRecvError::Closed) => Err(crate::Error::Internal {
            what: "the transform thread",
            why: "it ended without a result".into(),
        }),
        // Still running: the writer stopped before its input ended, for its own reasons.
        Ok(Ok(())) | Err(oneshot::error::TryRecvError::Empty) => Ok(()),
    }
}
