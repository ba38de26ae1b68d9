//! `reachable` and `authenticated`: ferry connects to every server as `sync` would (TLS,
//! Sentinel, every master of a cluster) and logs in. The connections made here serve the other
//! items.

use super::{Finding, Item, Mode, Report};
use crate::config::TaskConfig;
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::{self, Topology};
use crate::spec::ReadFrom;

/// One side of the sync, connected: the source, or one target.
pub struct Side {
    pub role: Role,
    /// `source`, `target`, `target 2`: names the side in findings.
    pub label: String,
    pub endpoint: Endpoint,
    /// The user ferry logs in as (`default` without one in the URL).
    pub user: String,
    pub version: (u32, u32, u32),
    /// One connection per server holding data: the server itself, or each master of a
    /// cluster (for a cluster source, the node of each shard that `read_from` names).
    pub nodes: Vec<Conn>,
    pub cluster: Cluster,
}

pub enum Cluster {
    Standalone,
    /// Every slot served.
    Complete(Topology),
    /// The slot map is incomplete or unreadable: the error says how (taken by the `slots`
    /// item).
    Incomplete(Option<Error>),
}

impl Side {
    /// `source 127.0.0.1:6379`.
    pub fn name(&self) -> String {
        format!("{} {}", self.label, self.endpoint)
    }

    pub fn is_cluster(&self) -> bool {
        !matches!(self.cluster, Cluster::Standalone)
    }
}

/// Connects to one side and records `reachable` and `authenticated`. A failure ends the run
/// under `Mode::Sync` (with the error `sync` has always given) and leaves the side out under
/// `Mode::Check`.
pub(super) async fn connect(
    role: Role,
    label: &str,
    endpoint: &Endpoint,
    config: &TaskConfig,
    mode: Mode,
    report: &mut Report,
) -> Result<Option<Side>> {
    match open(role, label, endpoint, config, mode).await {
        Ok(side) => {
            let shape = match &side.cluster {
                Cluster::Standalone => String::new(),
                _ => format!(", a cluster of {} masters", side.nodes.len()),
            };
            let (a, b, c) = side.version;
            report.add(Finding::pass(
                Item::Reachable,
                format!("{} answers: Redis {a}.{b}.{c}{shape}", side.name()),
            ));
            let login = match &endpoint.password {
                Some(_) => format!("logged in to {} as {}", side.name(), side.user),
                None => format!("{} takes commands without a password", side.name()),
            };
            report.add(Finding::pass(Item::Authenticated, login));
            Ok(Some(side))
        }
        Err(e) if mode == Mode::Sync => Err(e),
        Err(e) => {
            let name = format!("{label} {endpoint}");
            let fix = match &e {
                Error::Auth { .. } | Error::NoAuth { .. } => format!(
                    "give the right user and password for the {role}: in its URL (redis://user:password@host:port), or as [{role}] user with password_file or password_env"
                ),
                Error::Connect { .. } => {
                    "check the host and port, that redis-server runs there, and any firewall in between".into()
                }
                Error::Tls { .. } => format!(
                    "check the {role}'s TLS settings (CA, client certificate, server name) against the server's"
                ),
                Error::Sentinel { .. } => {
                    "check the sentinel addresses and the master name in the URL".into()
                }
                _ => format!("check the {role} URL and that the server there is a Redis"),
            };
            if matches!(e, Error::Auth { .. } | Error::NoAuth { .. }) {
                report.add(Finding::pass(Item::Reachable, format!("{name} answers")));
                report.add(Finding::from_error(Item::Authenticated, e, fix));
            } else {
                report.add(Finding::from_error(Item::Reachable, e, fix));
            }
            Ok(None)
        }
    }
}

async fn open(
    role: Role,
    label: &str,
    endpoint: &Endpoint,
    config: &TaskConfig,
    mode: Mode,
) -> Result<Side> {
    let mut conn = Conn::connect(role, endpoint).await?;
    let cluster = topology::is_cluster(&mut conn).await?;
    let version = conn.version().await?;
    let mut side = Side {
        role,
        label: label.to_string(),
        endpoint: endpoint.clone(),
        user: endpoint
            .username
            .clone()
            .unwrap_or_else(|| "default".into()),
        version,
        nodes: Vec::new(),
        cluster: Cluster::Standalone,
    };
    if !cluster {
        side.nodes.push(conn);
        return Ok(side);
    }
    match Topology::discover(&mut conn, endpoint).await {
        Ok(topology) => {
            drop(conn);
            for shard in &topology.shards {
                let node = match (role, config.read_from) {
                    (Role::Source, ReadFrom::Replica) => {
                        shard.replicas.first().unwrap_or(&shard.master)
                    }
                    _ => &shard.master,
                };
                side.nodes.push(Conn::connect_direct(role, node).await?);
            }
            side.cluster = Cluster::Complete(topology);
        }
        Err(e) if mode == Mode::Sync => return Err(e),
        Err(e) => {
            side.nodes.push(conn);
            side.cluster = Cluster::Incomplete(Some(e));
        }
    }
    Ok(side)
}
