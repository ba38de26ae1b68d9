//! `distinct`: the source and each target are different servers, and none of them feeds
//! another. Addresses cannot tell (`localhost` and `127.0.0.1`, a Sentinel name, a cluster
//! reached through two of its nodes), so the servers are asked who they are: `run_id`, the
//! replication ids and role (`INFO replication`), and a cluster's node ids (`CLUSTER NODES`).
//! A target that is the source, a replica of it, or its master would receive ferry's writes
//! into the very data ferry reads (and `on_conflict = "flush"` would empty the source).
//!
//! A cascade A → B → A is the same mistake one hop away: the source is then the target of a
//! task that fills it from the target. Every task (with a checkpoint, in commands mode) says
//! so in its target as it starts: `__ferry:tasks` is a hash of task (stream) name → the
//! replication id it copies from, one read instead of a walk of the source's keyspace for
//! `__ferry:checkpoint:*` (which cost the source about half a second per million keys at
//! every first start). A name whose checkpoint is gone (a task that never copied, or one
//! cleaned up by hand) does not count on a standalone source.
//!
//! This item cannot be ignored: `sync` stops on it before anything is written.

use std::collections::HashMap;

use ferry_resp::Frame;

use super::reach::{Cluster, Side};
use super::{Finding, Item, Mode, Outcome};
use crate::config::TaskConfig;
use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::net::info::info;
use crate::sink::checkpoint::Checkpoint;

/// What one server says of itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// `host:port` it was reached at.
    pub addr: String,
    pub run_id: String,
    /// `master` or `slave`.
    pub role: String,
    pub replid: String,
    /// The history it continued (after a promotion), or all zeros.
    pub replid2: String,
    /// A replica's `master_host:master_port`.
    pub master: Option<String>,
}

/// What one side says of itself: each server ferry talks to, and a cluster's node ids.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Identity {
    pub nodes: Vec<Node>,
    pub cluster_ids: Vec<String>,
}

/// A task that copies into the source: its checkpoint key, its name, and the server it copies
/// from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upstream {
    /// Its checkpoint key (a cluster's: the prefix of its per-slot keys).
    pub key: String,
    /// Its name in `__ferry:tasks`.
    pub name: String,
    pub replid: String,
    /// The run_id of the server it copies from, as registered.
    pub run_id: Option<String>,
}

const NO_ID: &str = "0000000000000000000000000000000000000000";

/// Asks every server of `side` who it is.
pub async fn identity(side: &mut Side) -> Result<Identity> {
    let mut out = Identity::default();
    for conn in &mut side.nodes {
        out.nodes.push(node(conn).await?);
    }
    if side.is_cluster()
        && let Some(conn) = side.nodes.first_mut()
        && let Frame::Bulk(text) | Frame::Simple(text) =
            conn.request_ok(&[&b"CLUSTER"[..], b"NODES"]).await?
    {
        out.cluster_ids = String::from_utf8_lossy(&text)
            .lines()
            .filter_map(|l| l.split(' ').next())
            .filter(|id| !id.is_empty())
            .map(str::to_string)
            .collect();
    }
    Ok(out)
}

async fn node(conn: &mut Conn) -> Result<Node> {
    let server = info(conn, "server").await?;
    let repl = info(conn, "replication").await?;
    let field =
        |map: &HashMap<String, String>, name: &str| map.get(name).cloned().unwrap_or_default();
    let master = match (repl.get("master_host"), repl.get("master_port")) {
        (Some(h), Some(p)) => Some(format!("{h}:{p}")),
        _ => None,
    };
    Ok(Node {
        addr: conn.addr.clone(),
        run_id: field(&server, "run_id"),
        role: field(&repl, "role"),
        replid: field(&repl, "master_replid"),
        replid2: field(&repl, "master_replid2"),
        master,
    })
}

/// The tasks that copy into the source, from its `__ferry:tasks` (db 0; on a cluster, on the
/// server holding that key), each with the replication id it copies from (on a standalone
/// source, the one its checkpoint names): where the source's own data comes from.
pub async fn upstreams(source: &mut Side) -> Result<Vec<Upstream>> {
    let mut out = Vec::new();
    let cluster = source.is_cluster();
    for conn in &mut source.nodes {
        if cluster {
            // A cluster replica (read_from = "replica") answers reads of its own slots only
            // after READONLY; a master takes it as a no-op.
            conn.request(&[&b"READONLY"[..]]).await?;
        }
        let entries = match conn.request(&[&b"HGETALL"[..], REGISTRY_KEY]).await? {
            Frame::Array(items) => items,
            // On a cluster only the master serving the key's slot holds it.
            Frame::Error(msg)
                if cluster && (msg.starts_with(b"MOVED") || msg.starts_with(b"ASK")) =>
            {
                continue;
            }
            Frame::Error(msg) => return Err(conn.server_error(&msg)),
            _ => continue,
        };
        for pair in entries.chunks(2) {
            let [Frame::Bulk(name), Frame::Bulk(value)] = pair else {
                continue;
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let value = String::from_utf8_lossy(value).into_owned();
            let mut words = value.split(' ');
            let (mut replid, run_id) = (
                words.next().unwrap_or_default().to_string(),
                words.next().map(str::to_string),
            );
            let key = String::from_utf8_lossy(&Checkpoint::key(&name)).into_owned();
            if !cluster {
                // The checkpoint names the id the copy came from (a master's id changes as
                // its first replica attaches, after the task registered); a task whose
                // checkpoint is gone does not count.
                match conn.request(&[&b"GET"[..], key.as_bytes()]).await? {
                    Frame::Bulk(value) => match Checkpoint::parse(&value) {
                        Some(
                            Checkpoint::Applied { replid: id, .. }
                            | Checkpoint::Loading { replid: id },
                        ) => replid = id,
                        None => continue,
                    },
                    _ => continue,
                }
            }
            if !out.iter().any(|u: &Upstream| u.key == key) {
                out.push(Upstream {
                    key,
                    name,
                    replid,
                    run_id,
                });
            }
        }
    }
    Ok(out)
}

/// Where a target says which tasks copy into it (see the module's notes).
pub const REGISTRY_KEY: &[u8] = b"__ferry:tasks";

/// Records in `conns` (a target's servers: on a cluster each master, of which the one serving
/// the key's slot takes it) that the stream `name` copies into it from the server with this
/// replication id and run_id: what a later task's `distinct` reads when this target is its
/// source. Written once the task holds the target's lease and is about to copy.
/// The connections are on db 0 (as `Target::conns` leaves them).
pub async fn register(conns: Vec<&mut Conn>, name: &str, replid: &str, run_id: &str) -> Result<()> {
    let value = format!("{replid} {run_id}");
    let args: [&[u8]; 4] = [b"HSET", REGISTRY_KEY, name.as_bytes(), value.as_bytes()];
    for conn in conns {
        match conn.request(&args).await? {
            // Another master of the cluster serves the key.
            Frame::Error(msg) if msg.starts_with(b"MOVED") || msg.starts_with(b"ASK") => {}
            Frame::Error(msg) => return Err(conn.server_error(&msg)),
            _ => {}
        }
    }
    Ok(())
}

/// Why `a` and `b` hold the same data, if they do: one server, one cluster, or one
/// replicating the other (directly or down a chain: a replica takes its master's replication
/// id). `a` is the side data is read from when `a_is_source`.
pub fn same(a: &Identity, b: &Identity, a_is_source: bool) -> Option<String> {
    let (an, bn) = if a_is_source {
        ("the source", "the target")
    } else {
        ("the first", "the second")
    };
    if let Some(id) = a.cluster_ids.iter().find(|id| b.cluster_ids.contains(id)) {
        return Some(format!("they are one cluster (node {id} is in both)"));
    }
    let clustered = !a.cluster_ids.is_empty() || !b.cluster_ids.is_empty();
    let at = |x: &Node, y: &Node| {
        if !clustered {
            String::new()
        } else {
            format!(" (node {} and node {})", x.addr, y.addr)
        }
    };
    for x in &a.nodes {
        for y in &b.nodes {
            if !x.run_id.is_empty() && x.run_id == y.run_id {
                return Some(format!(
                    "they are one server (run_id {}){}",
                    x.run_id,
                    at(x, y)
                ));
            }
            if x.replid.is_empty() || x.replid != y.replid {
                continue;
            }
            // Two masters sharing an id are not replicating each other (a server started
            // from another's RDB file may keep its id): only a replica ties them.
            let why = match (x.role == "slave", y.role == "slave") {
                (false, true) => format!(
                    "{bn} is a replica of {an} (it replicates {}, replication id {})",
                    y.master.as_deref().unwrap_or("?"),
                    y.replid
                ),
                (true, false) => format!(
                    "{bn} is the master of {an} ({an} replicates {}, replication id {})",
                    x.master.as_deref().unwrap_or("?"),
                    x.replid
                ),
                (true, true) => format!(
                    "both are replicas of one master (replication id {})",
                    x.replid
                ),
                (false, false) => continue,
            };
            return Some(format!("{why}{}", at(x, y)));
        }
    }
    None
}

/// The checkpoint in the source of a task that copies from `target`, if there is one.
pub fn feeds<'a>(target: &Identity, upstreams: &'a [Upstream]) -> Option<(&'a Upstream, String)> {
    for up in upstreams {
        for n in &target.nodes {
            for (id, which) in [(&n.replid, "master_replid"), (&n.replid2, "master_replid2")] {
                if *id == up.replid && id != NO_ID && !id.is_empty() {
                    return Some((up, format!("{which} of {}", n.addr)));
                }
            }
            if !n.run_id.is_empty() && up.run_id.as_deref() == Some(n.run_id.as_str()) {
                return Some((up, format!("run_id of {}", n.addr)));
            }
        }
    }
    None
}

/// Whether a standalone target holds this task's checkpoint (each shard's, for a cluster
/// source): a resume, not a first start. A cluster target is not asked (its checkpoints
/// are found by a SCAN of its own).
async fn resumes(source: &Side, targets: &mut [Side], config: &TaskConfig) -> Result<bool> {
    if !config.checkpoint {
        return Ok(false);
    }
    let names: Vec<String> = match &source.cluster {
        Cluster::Complete(topology) => topology
            .shards
            .iter()
            .map(|s| format!("{}@{}", config.name, s.first_slot()))
            .collect(),
        _ => vec![config.name.clone()],
    };
    for t in targets.iter_mut().filter(|t| !t.is_cluster()) {
        for name in &names {
            let key = Checkpoint::key(name);
            if let Ok(Frame::Integer(1)) = t.nodes[0].request(&[&b"EXISTS"[..], &key]).await {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// A reply the server refused (a user without `INFO`, `SCAN` or `GET`) becomes its message;
/// a lost connection stays an error.
fn answered<T>(r: Result<T>) -> Result<std::result::Result<T, String>> {
    match r {
        Ok(v) => Ok(Ok(v)),
        Err(Error::Server { msg, .. }) => Ok(Err(msg)),
        Err(e) => Err(e),
    }
}

/// The findings for the source against each target, and for each pair of targets. A failure
/// carries the error `sync` stops with; a server that will not say who it is gets a warning.
pub async fn check(
    source: Option<&mut Side>,
    targets: &mut [Side],
    config: &TaskConfig,
    mode: Mode,
) -> Result<Vec<Finding>> {
    let item = Item::Distinct;
    let mut ids = Vec::new();
    for t in targets.iter_mut() {
        ids.push(answered(identity(t).await)?);
    }
    let mut findings = Vec::new();
    if let Some(source) = source {
        let own = answered(identity(source).await)?;
        // A loop is made by a task's first start (the second task of the pair is refused
        // when it starts), so `sync` skips it when resuming; `ferry check` always looks.
        let upstreams = if mode == Mode::Sync && resumes(source, targets, config).await? {
            Ok(Vec::new())
        } else {
            answered(upstreams(source).await)?
        };
        for (t, id) in targets.iter().zip(&ids) {
            let pair = format!("{} and {}", source.name(), t.name());
            let (own, id) = match (&own, id) {
                (Ok(own), Ok(id)) => (own, id),
                (Err(msg), _) | (_, Err(msg)) => {
                    findings.push(Finding::warn(
                        item,
                        format!("{pair}: cannot tell whether they are one server: {msg}"),
                        "let ferry's users run INFO (and CLUSTER NODES on a cluster), or make sure yourself that the target is not the source nor a replica or master of it",
                    ));
                    continue;
                }
            };
            // In replica mode the target replicates the source through ferry once started:
            // that is the task itself (which checks the target is its own before going on).
            let own_replica = config.target_mode == crate::spec::TargetMode::Replica
                && id.nodes.iter().all(|n| n.role == "slave");
            if let Some(why) = same(own, id, true).filter(|why| {
                !(own_replica && why.starts_with("the target is a replica of the source"))
            }) {
                findings.push(refusal(
                    format!("{pair} hold the same data: {why}"),
                    format!(
                        "give a target that is another server: ferry would write into its own source{}",
                        if why.contains("replica of the source") {
                            ""
                        } else {
                            " (on_conflict = \"flush\" would empty it)"
                        }
                    ),
                ));
                continue;
            }
            let upstreams = match &upstreams {
                Ok(u) => u,
                Err(msg) => {
                    findings.push(Finding::warn(
                        item,
                        format!(
                            "{pair} are different servers, but the source's checkpoints of other tasks cannot be read ({msg}): whether the target feeds the source (a loop) is not known"
                        ),
                        "let the source user run HGETALL and EXISTS on __ferry:* keys (ACL SETUSER <user> +hgetall +exists ~__ferry:*), or make sure no task copies the target into the source",
                    ));
                    continue;
                }
            };
            if let Some((up, which)) = feeds(id, upstreams) {
                findings.push(refusal(
                    format!(
                        "{pair} would make a loop: the source holds {}, the checkpoint of a task copying into it from replication id {} ({which}): the target is where the source's data comes from",
                        up.key, up.replid
                    ),
                    format!(
                        "sync the other way, or stop that task; if it no longer runs, remove its keys from the source (ferry cleanup with that task's settings, or DEL {} and HDEL __ferry:tasks {})",
                        up.key, up.name
                    ),
                ));
                continue;
            }
            let runs: Vec<&str> = own
                .nodes
                .iter()
                .chain(&id.nodes)
                .map(|n| n.run_id.as_str())
                .collect();
            findings.push(Finding::pass(
                item,
                format!(
                    "{pair} are different servers and neither replicates the other (run_ids {})",
                    runs.join(", ")
                ),
            ));
        }
    }
    for i in 0..targets.len() {
        for j in i + 1..targets.len() {
            let (Ok(a), Ok(b)) = (&ids[i], &ids[j]) else {
                continue;
            };
            if let Some(why) = same(a, b, false) {
                findings.push(refusal(
                    format!(
                        "{} and {} hold the same data: {why}",
                        targets[i].name(),
                        targets[j].name()
                    ),
                    "give each target once, and only servers that replicate none of the others"
                        .to_string(),
                ));
            }
        }
    }
    Ok(findings)
}

fn refusal(found: String, fix: String) -> Finding {
    Finding {
        item: Item::Distinct,
        result: Outcome::Fail,
        error: Some(Error::Config(format!("{found}; {fix}"))),
        found,
        fix,
        acl: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    fn server(addr: &str, run_id: &str, role: &str, replid: &str, replid2: &str) -> Identity {
        Identity {
            nodes: vec![Node {
                addr: addr.into(),
                run_id: run_id.into(),
                role: role.into(),
                replid: replid.into(),
                replid2: replid2.into(),
                master: (role == "slave").then(|| "127.0.0.1:1".to_string()),
            }],
            cluster_ids: Vec::new(),
        }
    }

    #[test]
    fn same_server_replica_and_master_are_told_apart_from_strangers() {
        let source = server("s:1", "r1", "master", A, NO_ID);
        let same = server("t:1", "r1", "master", A, NO_ID);
        assert!(
            super::same(&source, &same, true)
                .unwrap()
                .contains("one server")
        );
        let replica = server("t:1", "r2", "slave", A, NO_ID);
        let why = super::same(&source, &replica, true).unwrap();
        assert!(
            why.contains("the target is a replica of the source"),
            "{why}"
        );
        let master = server("m:1", "r0", "master", A, NO_ID);
        let why = super::same(&replica, &master, true).unwrap();
        assert!(
            why.contains("the target is the master of the source"),
            "{why}"
        );
        // Once a replica of the source, promoted since: its own history now.
        let promoted = server("t:1", "r3", "master", B, A);
        assert_eq!(super::same(&source, &promoted, true), None);
        // Two masters sharing an id (one started from the other's RDB file) feed nothing.
        let loaded = server("t:1", "r4", "master", A, NO_ID);
        assert_eq!(super::same(&source, &loaded, true), None);
    }

    #[test]
    fn a_shared_cluster_node_is_one_cluster() {
        let mut a = server("s:1", "r1", "master", A, NO_ID);
        let mut b = server("t:1", "r2", "master", B, NO_ID);
        a.cluster_ids = vec!["n1".into(), "n2".into()];
        b.cluster_ids = vec!["n3".into()];
        assert_eq!(super::same(&a, &b, true), None);
        b.cluster_ids.push("n2".into());
        assert!(super::same(&a, &b, true).unwrap().contains("node n2"));
    }

    #[test]
    fn a_checkpoint_naming_the_target_is_a_loop() {
        let ups = vec![Upstream {
            key: "__ferry:checkpoint:x".into(),
            name: "x".into(),
            replid: A.into(),
            run_id: Some("r9".into()),
        }];
        let target = server("t:1", "r2", "master", A, NO_ID);
        assert!(
            feeds(&target, &ups)
                .unwrap()
                .1
                .contains("master_replid of t:1")
        );
        let promoted = server("t:1", "r2", "master", B, A);
        assert!(feeds(&promoted, &ups).unwrap().1.contains("master_replid2"));
        let other = server("t:1", "r2", "master", B, NO_ID);
        assert_eq!(feeds(&other, &ups), None);
        // The server the task copied from under another id (one it took when its first
        // replica attached, after the task registered): its run_id tells.
        let renamed = server("t:1", "r9", "master", B, NO_ID);
        assert!(feeds(&renamed, &ups).unwrap().1.contains("run_id of t:1"));
    }
}
