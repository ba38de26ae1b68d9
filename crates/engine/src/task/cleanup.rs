//! Removing a task's own keys once it is gone for good: its checkpoints, fences, lease and
//! held-TTL lists in each target, its heartbeat key in the source (and the copy of it in the
//! targets). Another task's keys are never touched: a key is the task's only when its name
//! follows the kind exactly, alone or before the hash tag of a cluster form.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::Serialize;

use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::info::info;
use crate::net::topology::{self, Topology};
use crate::pipeline::entry::OWN_KEY_PREFIX;
use crate::sink::cluster::scan;
use ferry_resp::Frame;

/// The kinds of keys ferry keeps for a task, each `__ferry:<kind>:<task>[...]`.
const KINDS: [&str; 5] = ["checkpoint", "fence", "lease", "hold", "heartbeat"];

/// How many of the task's keys were removed, per server (`source 127.0.0.1:6379`,
/// `target 127.0.0.1:6380`, a cluster's masters each by address).
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Cleanup {
    pub removed: BTreeMap<String, u64>,
}

impl Cleanup {
    pub fn total(&self) -> u64 {
        self.removed.values().sum()
    }
}

/// The kind of key this is of task `task`, if it is one of its own: `__ferry:<kind>:<name>`,
/// or a cluster form `__ferry:<kind>:<name>:{tag}` / `__ferry:checkpoint:<name>:base:{tag}`
/// (and `slot:`), where `<name>` is the task's name or, for a shard of a cluster source,
/// `<task>@<first slot>` (whose heartbeat is `__ferry:heartbeat:<task>@<slot>{tag}`).
pub fn task_key_kind(key: &[u8], task: &str) -> Option<&'static str> {
    let rest = key.strip_prefix(OWN_KEY_PREFIX)?;
    KINDS.into_iter().find(|kind| {
        let Some(mut rest) = rest
            .strip_prefix(kind.as_bytes())
            .and_then(|r| r.strip_prefix(b":"))
            .and_then(|r| r.strip_prefix(task.as_bytes()))
        else {
            return false;
        };
        if let Some(shard) = rest.strip_prefix(b"@") {
            let digits = shard.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return false;
            }
            rest = &shard[digits..];
        }
        match rest.strip_prefix(b":") {
            // A cluster source's heartbeat: the tag right after the shard's name.
            None if *kind == "heartbeat" => rest.is_empty() || rest.starts_with(b"{"),
            None => rest.is_empty(),
            Some(tail) if *kind == "checkpoint" => {
                tail.starts_with(b"base:{") || tail.starts_with(b"slot:{")
            }
            Some(tail) => tail.starts_with(b"{"),
        }
    })
}

/// Deletes the task's own keys from every target and, `with_source`, its heartbeats from the
/// source (they expire 10 s after the last beat anyway). Refused while a target holds one of
/// the task's leases: a copy of the task still runs (or stopped without giving it back less
/// than a lease's time ago), and its checkpoint is in use.
pub async fn remove_own_keys(config: &TaskConfig, with_source: bool) -> Result<Cleanup> {
    let task = config.name.as_str();
    let targets = std::iter::once(&config.target).chain(&config.more_targets);
    let mut found = Vec::new();
    for endpoint in targets {
        for mut conn in masters(Role::Target, endpoint).await? {
            let keys = task_keys(&mut conn, task, &KINDS).await?;
            found.push((format!("target {}", conn.addr), conn, keys));
        }
    }
    if let (Source::Redis(endpoint), true) = (&config.source, with_source) {
        for mut conn in masters(Role::Source, endpoint).await? {
            let keys = task_keys(&mut conn, task, &["heartbeat"]).await?;
            found.push((format!("source {}", conn.addr), conn, keys));
        }
    }
    // Nothing is deleted anywhere until every lease has been looked at.
    for (server, conn, keys) in &mut found {
        for (db, key, kind) in keys.iter() {
            if *kind != "lease" {
                continue;
            }
            select(conn, *db).await?;
            if let Frame::Integer(ms) = conn.request_ok(&[&b"PTTL"[..], key]).await?
                && ms != -2
            {
                let left = match ms {
                    -1 => "without an expiry".to_string(),
                    ms => format!("for {} s more", (ms + 999) / 1000),
                };
                return Err(Error::Config(format!(
                    "{server} holds {} {left}: a copy of task {task} runs there; stop it first (or, if none runs, wait for the lease to expire)",
                    crate::text::escape(key)
                )));
            }
        }
    }
    let mut cleanup = Cleanup::default();
    for (server, conn, keys) in &mut found {
        let mut removed = 0;
        for (db, key, _) in keys.iter() {
            select(conn, *db).await?;
            if let Frame::Integer(n) = conn.request_ok(&[&b"DEL"[..], key]).await? {
                removed += n as u64;
            }
        }
        if server.starts_with("target ") {
            removed += unregister(conn, task).await?;
        }
        if removed > 0 {
            *cleanup.removed.entry(server.clone()).or_default() += removed;
        }
    }
    Ok(cleanup)
}

/// Takes the task's streams out of the target's list of tasks copying into it
/// (`check::distinct::REGISTRY_KEY`, db 0; on a cluster, on the master serving it); 1 when
/// the task was in it (the last name out deletes the key, as Redis does).
async fn unregister(conn: &mut Conn, task: &str) -> Result<u64> {
    let registry = crate::check::distinct::REGISTRY_KEY;
    select(conn, 0).await?;
    let names = match conn.request(&[&b"HKEYS"[..], registry]).await? {
        Frame::Array(names) => names,
        _ => return Ok(0),
    };
    let ours: Vec<Bytes> = names
        .into_iter()
        .filter_map(|n| match n {
            Frame::Bulk(name) => Some(name),
            _ => None,
        })
        .filter(|name| {
            name.strip_prefix(task.as_bytes())
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"@"))
        })
        .collect();
    if ours.is_empty() {
        return Ok(0);
    }
    let mut args: Vec<&[u8]> = vec![b"HDEL", registry];
    args.extend(ours.iter().map(|n| &n[..]));
    conn.request_ok(&args).await?;
    Ok(1)
}

/// One connection per server holding data: the server, or each master of a cluster.
pub(crate) async fn masters(role: Role, endpoint: &Endpoint) -> Result<Vec<Conn>> {
    let mut conn = Conn::connect(role, endpoint).await?;
    if !topology::is_cluster(&mut conn).await? {
        return Ok(vec![conn]);
    }
    let topology = Topology::discover(&mut conn, endpoint).await?;
    let mut out = Vec::new();
    for shard in &topology.shards {
        out.push(Conn::connect_direct(role, &shard.master).await?);
    }
    Ok(out)
}

async fn select(conn: &mut Conn, db: u32) -> Result<()> {
    conn.request_ok(&[&b"SELECT"[..], db.to_string().as_bytes()])
        .await
        .map(drop)
}

/// The task's keys of these kinds on one server, in every db that holds keys (a held-TTL list
/// lives in the db of the keys it holds): (db, key, kind).
async fn task_keys(
    conn: &mut Conn,
    task: &str,
    kinds: &[&str],
) -> Result<Vec<(u32, Bytes, &'static str)>> {
    let dbs: Vec<u32> = info(conn, "keyspace")
        .await?
        .keys()
        .filter_map(|k| k.strip_prefix("db")?.parse().ok())
        .collect();
    let pattern = [OWN_KEY_PREFIX, b"*"].concat();
    let mut out = Vec::new();
    for db in dbs {
        select(conn, db).await?;
        for key in scan(conn, &pattern).await? {
            if let Some(kind) = task_key_kind(&key, task).filter(|k| kinds.contains(k)) {
                out.push((db, key, kind));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_tasks_keys_match() {
        for key in [
            "__ferry:checkpoint:orders",
            "__ferry:checkpoint:orders:base:{06S}",
            "__ferry:checkpoint:orders:slot:{06S}",
            "__ferry:fence:orders",
            "__ferry:fence:orders:{06S}",
            "__ferry:lease:orders",
            "__ferry:hold:orders",
            "__ferry:hold:orders:{a}",
            "__ferry:heartbeat:orders",
            "__ferry:checkpoint:orders@0",
            "__ferry:lease:orders@5461",
            "__ferry:fence:orders@5461:{06S}",
            "__ferry:checkpoint:orders@10923:slot:{06S}",
            "__ferry:heartbeat:orders@0{06S}",
        ] {
            assert!(task_key_kind(key.as_bytes(), "orders").is_some(), "{key}");
        }
        for key in [
            "__ferry:checkpoint:orders-eu",
            "__ferry:checkpoint:orders:eu",
            "__ferry:fence:orders:eu:{06S}",
            "__ferry:checkpoint:orders:slot:eu",
            "__ferry:tmp:orders",
            "__ferry:lease:order",
            "orders",
            "__ferry:checkpoint:",
            "__ferry:checkpoint:orders@",
            "__ferry:checkpoint:orders@x",
            "__ferry:checkpoint:orders@1x",
            "__ferry:heartbeat:orders-eu@0{06S}",
            "__ferry:fence:orders{06S}",
        ] {
            assert!(task_key_kind(key.as_bytes(), "orders").is_none(), "{key}");
        }
        // A task named like another's cluster suffix does not take that task's keys.
        assert_eq!(
            task_key_kind(b"__ferry:checkpoint:a:slot:{06S}", "a:slot"),
            None
        );
        assert_eq!(task_key_kind(b"__ferry:hold:t:{x}", "t"), Some("hold"));
    }
}
