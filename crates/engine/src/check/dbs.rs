//! `db_map`: every db the task writes into exists on the target (its `databases` setting; a
//! cluster has only db 0). Checked for the `[filter] db_map` entries, as `sync` always has, and
//! for the source dbs that hold keys now.

use super::reach::Side;
use super::{Finding, Item};
use crate::config::TaskConfig;
use crate::error::Result;
use crate::net::info;
use crate::pipeline::transform::{DEFAULT_DBS, Transform};

pub(super) async fn check(
    source: Option<&mut Side>,
    target: &mut Side,
    config: &TaskConfig,
) -> Result<Finding> {
    let item = Item::DbMap;
    let cluster = target.is_cluster();
    let dbs = if cluster {
        Some(1)
    } else {
        match target.nodes.first_mut() {
            Some(conn) => info::config_get(conn, "databases")
                .await?
                .and_then(|v| v.parse().ok()),
            None => None,
        }
    };
    let fix = if cluster {
        "a cluster target has only db 0: sync only db 0 ([filter] allow_db = [0]) or map the others to 0 ([filter] db_map = { \"N\" = 0 })"
    } else {
        "map the source db to one the target has ([filter] db_map), leave it out ([filter] block_db), or raise the target's `databases`"
    };
    let rules = config.writer.filter.as_deref();
    if let Some(rules) = rules
        && let Err(e) = Transform::check_target(rules, dbs, cluster)
    {
        return Ok(Finding::from_error(item, e, fix));
    }
    let limit = dbs.unwrap_or(DEFAULT_DBS);
    if let Some(source) = source
        && !source.is_cluster()
        && let Some(conn) = source.nodes.first_mut()
    {
        let keyspace = info::info(conn, "keyspace").await?;
        let mut held: Vec<u32> = keyspace
            .keys()
            .filter_map(|k| k.strip_prefix("db")?.parse().ok())
            .filter(|db| rules.is_none_or(|r| r.db_passes(*db)))
            .collect();
        held.sort_unstable();
        for db in held {
            let to = config.writer.db_map.target(db);
            if to >= limit {
                let why = if cluster {
                    "a cluster target has only db 0".to_string()
                } else {
                    format!("the target has {limit} dbs")
                };
                return Ok(Finding::fail(
                    item,
                    format!(
                        "source db {db} holds keys that go to target db {to}, but {why} ({})",
                        target.name()
                    ),
                    fix,
                ));
            }
        }
    }
    let about = match dbs {
        Some(n) => format!("the target has {n} dbs"),
        None => format!("the target does not say how many dbs it has (taken as {DEFAULT_DBS})"),
    };
    Ok(Finding::pass(
        item,
        format!("{}: every synced db has a place ({about})", target.name()),
    ))
}
