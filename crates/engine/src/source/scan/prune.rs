//! Deleting from the targets what the source no longer holds. A pass rewrites every key the
//! source has, but a key deleted while no notification could be heard (ferry stopped, the
//! subscription dropped) is still on the target: only a look at the target finds it. Each
//! target key that this task would have written (synced db, passes the filter, in this
//! shard's slots) and that the source does not hold is deleted, through the same writers as
//! everything else, so it is ordered with the changes read before and after it.

use std::sync::Arc;

use bytes::Bytes;
use ferry_resp::Frame;
use tokio_util::sync::CancellationToken;

use crate::error::{Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::Topology;
use crate::pipeline::entry::OWN_KEY_PREFIX;
use crate::pipeline::transform::Rules;

use super::Out;
use super::read::Reader;

/// Target keys judged per round trip.
const PER_ROUND: usize = 512;

/// How to find this task's keys on its targets.
#[derive(Clone)]
pub struct Prune {
    pub targets: Vec<Endpoint>,
    /// Target db → the one source db written into it (the db map turned around); a target db
    /// that none, or more than one, is written into is not looked at.
    pub source_db: Arc<dyn Fn(u32) -> Option<u32> + Send + Sync>,
    pub filter: Option<Arc<Rules>>,
    /// A cluster source's shard: only keys of these slots are its to judge.
    pub slots: Option<Vec<(u16, u16)>>,
}

impl Prune {
    /// Deletes, through `out`, every key of the targets the source does not hold. False when
    /// the writers have gone.
    pub(super) async fn run(
        &self,
        reader: &mut Reader,
        out: &mut Out,
        cancel: &CancellationToken,
    ) -> Result<bool> {
        let mut deleted = 0u64;
        for endpoint in &self.targets {
            let mut conn = Conn::connect(Role::Target, endpoint).await?;
            let nodes = match crate::net::topology::is_cluster(&mut conn).await? {
                true => Topology::discover(&mut conn, endpoint)
                    .await?
                    .shards
                    .into_iter()
                    .map(|s| s.master)
                    .collect(),
                false => vec![endpoint.clone()],
            };
            let cluster = nodes.len() > 1 || nodes[0] != *endpoint;
            drop(conn);
            for node in nodes {
                let mut conn = Conn::connect(Role::Target, &node).await?;
                let dbs = match cluster {
                    true => vec![0],
                    false => target_dbs(&mut conn).await?,
                };
                for target_db in dbs {
                    let Some(source_db) = (self.source_db)(target_db) else {
                        continue;
                    };
                    let (n, alive) = self
                        .db(&mut conn, target_db, source_db, reader, out, cancel)
                        .await?;
                    deleted += n;
                    if !alive {
                        return Ok(false);
                    }
                }
            }
        }
        if deleted > 0 {
            tracing::info!(
                keys = deleted,
                "deleted from the target keys the source no longer holds"
            );
        }
        Ok(true)
    }

    async fn db(
        &self,
        conn: &mut Conn,
        target_db: u32,
        source_db: u32,
        reader: &mut Reader,
        out: &mut Out,
        cancel: &CancellationToken,
    ) -> Result<(u64, bool)> {
        conn.request_ok(&[&b"SELECT"[..], target_db.to_string().as_bytes()])
            .await?;
        let mut deleted = 0;
        let mut cursor = Bytes::from_static(b"0");
        loop {
            if cancel.is_cancelled() {
                return Ok((deleted, false));
            }
            let count = PER_ROUND.to_string();
            let reply = conn
                .request_ok(&[&b"SCAN"[..], &cursor, b"COUNT", count.as_bytes()])
                .await?;
            let (next, keys) = scan_reply(reply).ok_or_else(|| {
                conn.server_error(b"answered SCAN with a reply of an unexpected shape")
            })?;
            let keys: Vec<Bytes> = keys.into_iter().filter(|k| self.ours(k)).collect();
            if !keys.is_empty() {
                reader.select(source_db).await?;
                let held = reader.exists(&keys).await?;
                for (key, held) in keys.into_iter().zip(held) {
                    if held {
                        continue;
                    }
                    deleted += 1;
                    let args = vec![Bytes::from_static(b"DEL"), key];
                    if !out.command(source_db, args).await {
                        return Ok((deleted, false));
                    }
                }
            }
            if next.as_ref() == b"0" {
                return Ok((deleted, true));
            }
            cursor = next;
        }
    }

    /// Whether this task writes a key of that name (as the source names it).
    fn ours(&self, key: &[u8]) -> bool {
        if key.starts_with(OWN_KEY_PREFIX) {
            return false;
        }
        if let Some(ranges) = &self.slots {
            let slot = ferry_keyspace::slot(key);
            if !ranges.iter().any(|&(a, b)| (a..=b).contains(&slot)) {
                return false;
            }
        }
        self.filter.as_ref().is_none_or(|f| f.key_passes(key))
    }
}

/// The target's dbs that hold keys (`INFO keyspace`).
async fn target_dbs(conn: &mut Conn) -> Result<Vec<u32>> {
    let fields = crate::net::info::info(conn, "keyspace").await?;
    let mut dbs: Vec<u32> = fields
        .keys()
        .filter_map(|k| k.strip_prefix("db")?.parse().ok())
        .collect();
    dbs.sort_unstable();
    Ok(dbs)
}

pub(super) fn scan_reply(reply: Frame) -> Option<(Bytes, Vec<Bytes>)> {
    let Frame::Array(mut parts) = reply else {
        return None;
    };
    if parts.len() != 2 {
        return None;
    }
    let keys = match parts.pop()? {
        Frame::Array(keys) => keys
            .into_iter()
            .map(|k| k.as_bytes().cloned())
            .collect::<Option<Vec<_>>>()?,
        _ => return None,
    };
    let next = parts.pop()?.as_bytes()?.clone();
    Some((next, keys))
}
