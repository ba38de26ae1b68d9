//! Data already in the target when a new task starts its first full copy (`[sync]
//! on_conflict`): refuse and say what is there, copy over it, or empty the synced dbs first.
//!
//! Only a fresh task is checked: one whose target holds no checkpoint of it and that has not
//! synced yet in this process. A resume continues its own copy; a copy that can no longer be
//! continued is `full_resync`'s business. Ferry's own keys (`__ferry:*`, e.g. other tasks'
//! checkpoints) are not the user's data and do not count.

use bytes::Bytes;
use ferry_resp::Frame;

use super::Target;
use crate::config::TaskConfig;
use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::pipeline::entry::OWN_KEY_PREFIX;
use crate::spec::OnConflict;
use crate::status::Status;
use crate::text::escape;

/// Example keys named in the refusal.
const EXAMPLES: usize = 3;
/// Keys scanned per db to count exactly; past this, a db that holds data is counted from
/// its size less the ferry keys seen so far.
const SCAN_BUDGET: u64 = 100_000;

/// Before the first full copy of `config`'s task into `target`: acts on what the target
/// holds as `on_conflict` says. Does nothing for a task that has synced before in this
/// process (a retry), nor once the policy is settled (`on_conflict` None).
pub async fn before_copy(target: &mut Target, config: &TaskConfig, status: &Status) -> Result<()> {
    match config.on_conflict {
        Some(policy) if !status.has_synced() => {
            settle(target, policy, synced_dbs(config).as_deref(), status).await?;
            reclaim(target, config, policy).await
        }
        _ => Ok(()),
    }
}

/// The target dbs the task writes into, when `[filter]` narrows or moves them (None: all).
/// Keys in other target dbs are no conflict: the task never touches them.
pub(crate) fn synced_dbs(config: &TaskConfig) -> Option<Vec<u32>> {
    let rules = config.writer.filter.as_deref();
    if rules.is_none() && config.writer.db_map.is_identity() {
        return None;
    }
    let mut dbs: Vec<u32> = (0..=255u32)
        .filter(|db| rules.is_none_or(|r| r.db_passes(*db)))
        .map(|db| config.writer.db_map.target(db))
        .collect();
    dbs.sort_unstable();
    dbs.dedup();
    Some(dbs)
}

/// A cluster source: every shard writes into the same target(s), so each target is checked
/// once, before any shard starts (a shard checked later would find the others' keys), and only
/// if none of `shards` (the shards' task names) holds a checkpoint there.
pub async fn before_shards(config: &TaskConfig, shards: &[String], status: &Status) -> Result<()> {
    let Some(policy) = config.on_conflict.filter(|_| !status.has_synced()) else {
        return Ok(());
    };
    for endpoint in std::iter::once(&config.target).chain(&config.more_targets) {
        let mut target = Target::connect(endpoint).await?;
        if let Some(fence) = &config.writer.fence {
            fence.claim(&mut target, &endpoint.addr()).await?;
        }
        let mut resumed = false;
        if config.checkpoint {
            for name in shards {
                resumed |= target.read_checkpoint(name).await?.is_some();
            }
        }
        if !resumed {
            settle(&mut target, policy, synced_dbs(config).as_deref(), status).await?;
            reclaim(&mut target, config, policy).await?;
        }
    }
    Ok(())
}

/// A flush took the task's lease and fence with everything else: take them again.
async fn reclaim(target: &mut Target, config: &TaskConfig, policy: OnConflict) -> Result<()> {
    match &config.writer.fence {
        Some(fence) if policy == OnConflict::Flush => {
            let addr = target.addr();
            fence.claim(target, &addr).await
        }
        _ => Ok(()),
    }
}

/// Looks for keys in the target's `dbs` (every db when None) and acts on them as `policy` says.
pub async fn settle(
    target: &mut Target,
    policy: OnConflict,
    dbs: Option<&[u32]>,
    status: &Status,
) -> Result<()> {
    let Some(what) = holdings(target, dbs).await? else {
        return Ok(());
    };
    match policy {
        OnConflict::Fail => Err(Error::TargetNotEmpty(format!("{what} {REFUSAL_FIX}"))),
        OnConflict::Overwrite => {
            status.warn("target_not_empty", format!(
                "{what}; copying over them (on_conflict = \"overwrite\"): keys of the same name are replaced, the others stay"
            ));
            Ok(())
        }
        OnConflict::Flush => {
            status.warn(
                "target_not_empty",
                format!("{what}; emptying it first (on_conflict = \"flush\")"),
            );
            for conn in target.conns() {
                flush(conn, dbs).await?;
            }
            Ok(())
        }
    }
}

/// Ends the refusal under `on_conflict = "fail"`: what the user can do.
pub const REFUSAL_FIX: &str = "that this new task did not write; to copy over them (keys of the same name replaced, the others kept) set [sync] on_conflict = \"overwrite\", or to empty the target first on_conflict = \"flush\" with confirm_flush = true";

/// What the target holds in `dbs` (every db when None) that ferry did not write, in words
/// (`target A already holds 12 keys (...)`); None when nothing.
pub async fn holdings(target: &mut Target, dbs: Option<&[u32]>) -> Result<Option<String>> {
    let mut found = Vec::new();
    let mut examples = Vec::new();
    for conn in target.conns() {
        survey(conn, dbs, &mut found, &mut examples).await?;
    }
    Ok((!found.is_empty()).then(|| describe(&found, &examples)))
}

/// Keys in one db of one server that ferry did not write.
struct Found {
    addr: String,
    db: u32,
    keys: u64,
    /// Counted key by key; else from the db's size less the ferry keys seen.
    exact: bool,
}

/// Adds what one server holds in `dbs` to `found`, with up to `EXAMPLES` example keys.
async fn survey(
    conn: &mut Conn,
    dbs: Option<&[u32]>,
    found: &mut Vec<Found>,
    examples: &mut Vec<(u32, Bytes)>,
) -> Result<()> {
    let info = conn.request_ok(&[&b"INFO"[..], b"keyspace"]).await?;
    let text = info.as_bytes().cloned().unwrap_or_default();
    let sizes = keyspace(&String::from_utf8_lossy(&text));
    let mut selected = 0;
    for (db, size) in sizes {
        if size == 0 || dbs.is_some_and(|d| !d.contains(&db)) {
            continue;
        }
        if db != selected {
            conn.request_ok(&[&b"SELECT"[..], db.to_string().as_bytes()])
                .await?;
            selected = db;
        }
        let (mut own, mut theirs, mut scanned) = (0u64, 0u64, 0u64);
        let mut cursor = Bytes::from_static(b"0");
        let complete = loop {
            let reply = conn
                .request_ok(&[&b"SCAN"[..], &cursor, b"COUNT", b"1000"])
                .await?;
            let (next, keys) = scan_page(conn, reply)?;
            for key in keys {
                scanned += 1;
                if key.starts_with(OWN_KEY_PREFIX) {
                    own += 1;
                    continue;
                }
                theirs += 1;
                if examples.len() < EXAMPLES {
                    examples.push((db, key));
                }
            }
            if &next[..] == b"0" {
                break true;
            }
            if scanned >= SCAN_BUDGET && theirs > 0 {
                break false;
            }
            cursor = next;
        };
        let keys = if complete {
            theirs
        } else {
            size.saturating_sub(own)
        };
        if keys > 0 {
            found.push(Found {
                addr: conn.addr.clone(),
                db,
                keys,
                exact: complete,
            });
        }
    }
    if selected != 0 {
        conn.request_ok(&[&b"SELECT"[..], b"0"]).await?;
    }
    Ok(())
}

/// Empties `dbs` (every db when None) of one server.
async fn flush(conn: &mut Conn, dbs: Option<&[u32]>) -> Result<()> {
    let Some(dbs) = dbs else {
        conn.request_ok(&[&b"FLUSHALL"[..]]).await?;
        return Ok(());
    };
    // Only dbs that hold keys: `dbs` may name more than the server has.
    let info = conn.request_ok(&[&b"INFO"[..], b"keyspace"]).await?;
    let text = info.as_bytes().cloned().unwrap_or_default();
    for (db, _) in keyspace(&String::from_utf8_lossy(&text)) {
        if !dbs.contains(&db) {
            continue;
        }
        conn.request_ok(&[&b"SELECT"[..], db.to_string().as_bytes()])
            .await?;
        conn.request_ok(&[&b"FLUSHDB"[..]]).await?;
    }
    conn.request_ok(&[&b"SELECT"[..], b"0"]).await?;
    Ok(())
}

/// `db3:keys=12,expires=0,avg_ttl=0` lines of `INFO keyspace`, as (db, keys).
fn keyspace(info: &str) -> Vec<(u32, u64)> {
    info.lines()
        .filter_map(|line| {
            let (db, fields) = line.trim().strip_prefix("db")?.split_once(':')?;
            let keys = fields
                .split(',')
                .find_map(|f| f.strip_prefix("keys="))?
                .parse()
                .ok()?;
            Some((db.parse().ok()?, keys))
        })
        .collect()
}

/// The next cursor and the keys of one SCAN reply.
fn scan_page(conn: &Conn, reply: Frame) -> Result<(Bytes, Vec<Bytes>)> {
    let Frame::Array(parts) = reply else {
        return Err(conn.server_error(b"SCAN answered something else than an array"));
    };
    let mut parts = parts.into_iter();
    let (Some(next), Some(Frame::Array(keys))) = (parts.next(), parts.next()) else {
        return Err(conn.server_error(b"SCAN answered an unexpected array"));
    };
    let next = next.as_bytes().cloned().unwrap_or_default();
    let keys = keys.into_iter().filter_map(|f| f.as_bytes().cloned());
    Ok((next, keys.collect()))
}

/// `target A already holds 12 keys (db 0: 10, db 3: 2; e.g. "a" in db 0, ...)`.
fn describe(found: &[Found], examples: &[(u32, Bytes)]) -> String {
    let mut addrs: Vec<&str> = found.iter().map(|f| f.addr.as_str()).collect();
    addrs.dedup();
    let mut per_db: Vec<(u32, u64)> = Vec::new();
    for f in found {
        match per_db.iter_mut().find(|(db, _)| *db == f.db) {
            Some((_, n)) => *n += f.keys,
            None => per_db.push((f.db, f.keys)),
        }
    }
    per_db.sort_unstable();
    let total: u64 = per_db.iter().map(|(_, n)| n).sum();
    let about = if found.iter().all(|f| f.exact) {
        ""
    } else {
        "about "
    };
    let dbs = per_db
        .iter()
        .map(|(db, n)| format!("db {db}: {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let examples = examples
        .iter()
        .map(|(db, key)| format!("{} in db {db}", escape(key)))
        .collect::<Vec<_>>()
        .join(", ");
    let keys = if total == 1 { "key" } else { "keys" };
    format!(
        "target {} already holds {about}{total} {keys} ({dbs}; e.g. {examples})",
        addrs.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_key_counts_from_info_keyspace() {
        let info =
            "# Keyspace\r\ndb0:keys=12,expires=1,avg_ttl=5\r\ndb15:keys=3,expires=0,avg_ttl=0\r\n";
        assert_eq!(keyspace(info), vec![(0, 12), (15, 3)]);
        assert_eq!(keyspace("# Keyspace\r\n"), vec![]);
    }

    #[test]
    fn names_servers_counts_dbs_and_escaped_examples() {
        let found = [
            Found {
                addr: "h:1".into(),
                db: 3,
                keys: 2,
                exact: true,
            },
            Found {
                addr: "h:1".into(),
                db: 0,
                keys: 10,
                exact: true,
            },
        ];
        let examples = [(0, Bytes::from_static(b"a\x00")), (3, Bytes::from("b"))];
        assert_eq!(
            describe(&found, &examples),
            "target h:1 already holds 12 keys (db 0: 10, db 3: 2; e.g. \"a\\x00\" in db 0, \"b\" in db 3)"
        );
        let cluster = [
            Found {
                addr: "h:1".into(),
                db: 0,
                keys: 1,
                exact: true,
            },
            Found {
                addr: "h:2".into(),
                db: 0,
                keys: 200_000,
                exact: false,
            },
        ];
        assert_eq!(
            describe(&cluster, &examples[..1]),
            "target h:1, h:2 already holds about 200001 keys (db 0: 200001; e.g. \"a\\x00\" in db 0)"
        );
    }
}
