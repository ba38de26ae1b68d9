//! Sinks (the targets): turn entries into commands and pipeline them. `encode` is the part every target
//! shares (entry → RESP commands with what to expect back); `standalone` writes to one server;
//! `cluster` routes to one standalone writer per master of a Redis Cluster; `conflict` deals
//! with data already in the target before a new task's first copy; `lease` keeps one writer
//! per task; `checkpoint` is where the target stands in the source's stream.

pub mod caps;
pub mod checkpoint;
pub mod cluster;
pub mod conflict;
pub mod encode;
pub mod hold;
pub mod lease;
pub mod replica;
pub mod rewrite;
pub mod standalone;

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::error::{Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::pipeline::entry::Batch;
use crate::sink::checkpoint::Checkpoint;
use crate::status::Status;
use caps::Caps;
use cluster::ClusterTarget;
use standalone::{Options, StandaloneTarget};

/// A connected target: one server, or every master of a cluster. Which one is asked of the
/// server the URL names.
pub enum Target {
    Standalone(StandaloneTarget),
    Cluster(ClusterTarget),
}

impl Target {
    pub async fn connect(endpoint: &Endpoint) -> Result<Target> {
        let mut conn = Conn::connect(Role::Target, endpoint).await?;
        if crate::net::topology::is_cluster(&mut conn).await? {
            Ok(Target::Cluster(
                ClusterTarget::connect(endpoint, conn).await?,
            ))
        } else {
            Ok(Target::Standalone(StandaloneTarget::from_conn(conn).await?))
        }
    }

    /// Host and port, for messages (a cluster's first master).
    pub fn addr(&self) -> String {
        match self {
            Target::Standalone(t) => t.addr().to_string(),
            Target::Cluster(t) => t.addr(),
        }
    }

    pub fn caps(&self) -> Caps {
        match self {
            Target::Standalone(t) => t.caps,
            Target::Cluster(t) => t.caps,
        }
    }

    /// One connection to each server holding the target's data (every master of a cluster),
    /// for what is done before writing starts.
    pub fn conns(&mut self) -> Vec<&mut Conn> {
        match self {
            Target::Standalone(t) => vec![t.conn_mut()],
            Target::Cluster(t) => t.control_mut().iter_mut().collect(),
        }
    }

    /// The connection to the server holding `key` (a cluster: the master serving its slot).
    pub fn conn_for_key(&mut self, key: &[u8]) -> &mut Conn {
        match self {
            Target::Standalone(t) => t.conn_mut(),
            Target::Cluster(t) => t.conn_for_key(key),
        }
    }

    /// Where the task named `task` stands in the source's stream, if the target says.
    pub async fn read_checkpoint(&mut self, task: &str) -> Result<Option<Checkpoint>> {
        match self {
            Target::Standalone(t) => t.read_checkpoint(&Checkpoint::key(task)).await,
            Target::Cluster(t) => t.read_checkpoint(task).await,
        }
    }

    /// Writes every entry from `rx` until it closes; with `task`, keeps that task's checkpoints.
    pub async fn run(
        self,
        rx: mpsc::Receiver<Batch>,
        status: Arc<Status>,
        options: Options,
        task: Option<String>,
    ) -> Result<()> {
        // The Lua transform runs on a thread of its own between the source and the writer,
        // after `[filter]`, which then runs there too (and not again in the writers).
        let (rx, script, options) = match &options.transform {
            Some(script) => {
                let filter = match &options.filter {
                    Some(rules) => {
                        let (dbs, cluster) = match &self {
                            Target::Standalone(t) => (t.caps.databases, false),
                            Target::Cluster(_) => (Some(1), true),
                        };
                        crate::pipeline::transform::Transform::check_target(rules, dbs, cluster)?;
                        Some(crate::pipeline::transform::Transform::new(
                            rules.clone(),
                            dbs.unwrap_or(crate::pipeline::transform::DEFAULT_DBS),
                        ))
                    }
                    None => None,
                };
                let (rx, done) =
                    crate::pipeline::script::spawn(script, filter, status.clone(), rx)?;
                let options = Options {
                    filter: None,
                    ..options
                };
                (rx, Some(done), options)
            }
            None => (rx, None, options),
        };
        // Held TTLs wait for the stream's lag, measured on the stream's status (set by the
        // relay when it feeds several targets).
        let mut options = options;
        if let Some(setup) = &mut options.ttl_hold {
            setup.clock.get_or_insert_with(|| status.clone());
        }
        let written = match self {
            Target::Standalone(t) => {
                t.run(rx, status, options, task.map(|t| Checkpoint::key(&t)))
                    .await
            }
            Target::Cluster(t) => t.run(rx, status, options, task).await,
        };
        crate::pipeline::script::outcome(script, written)
    }
}
