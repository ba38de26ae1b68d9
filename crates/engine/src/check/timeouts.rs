//! `repl_timeout`: whether the source's and ferry's silence limits suit a full copy.
//!
//! The source drops a replica that goes quiet for `repl-timeout` seconds: one whose
//! `REPLCONF ACK` is that old, or (diskless sync, the default since 7.0) one that has taken no
//! snapshot bytes for that long. ferry reads the snapshot only as fast as the target takes it,
//! so a slow target pauses the transfer; the longer the copy, the likelier a pause that long.
//! The limit should be at least Redis's default of 60 s, and at least the estimated copy time
//! (as `output_buffer` estimates it). On ferry's side, `[advanced] source_timeout` must be
//! longer than the source's `repl-ping-replica-period`, or an idle source looks dead between
//! its pings and ferry reconnects over and over.

use super::backlog::{duration, snapshot_secs};
use super::reach::Side;
use super::{Finding, Item};
use crate::config::TaskConfig;
use crate::error::Result;
use crate::net::info;

/// Redis's default `repl-timeout`, and the least this item passes.
const MIN_REPL_TIMEOUT: u64 = 60;

pub(super) async fn check(source: &mut Side, config: &TaskConfig) -> Result<Finding> {
    let ours = config.source_timeout.as_secs();
    let mut passes = Vec::new();
    let mut problems = Vec::new();
    for conn in &mut source.nodes {
        let name = format!("{} {}", source.label, conn.addr);
        let timeout = info::config_get(conn, "repl-timeout")
            .await?
            .and_then(|v| v.parse::<u64>().ok());
        let ping = info::config_get(conn, "repl-ping-replica-period")
            .await?
            .and_then(|v| v.parse::<u64>().ok());
        let (Some(timeout), Some(ping)) = (timeout, ping) else {
            return Ok(Finding::warn(
                Item::ReplTimeout,
                format!(
                    "{name}: repl-timeout and repl-ping-replica-period cannot be read (CONFIG GET refused)"
                ),
                format!(
                    "make sure repl-timeout is at least {MIN_REPL_TIMEOUT} s and repl-ping-replica-period less than ferry's source_timeout ({ours} s)"
                ),
            ));
        };
        let copy = snapshot_secs(conn).await?;
        let need = MIN_REPL_TIMEOUT.max(copy.ceil() as u64);
        let mut fine = true;
        if timeout < need {
            fine = false;
            let why = if need > MIN_REPL_TIMEOUT {
                format!(
                    "shorter than the ~{} a full copy is estimated to take",
                    duration(copy)
                )
            } else {
                format!("less than Redis's default {MIN_REPL_TIMEOUT} s")
            };
            problems.push((
                format!(
                    "{name}: repl-timeout {timeout} s, {why}: a pause in the copy that long (a slow target) makes the source drop ferry and the copy start over"
                ),
                format!("on the source: CONFIG SET repl-timeout {need}"),
            ));
        }
        // A full copy only ends with the snapshot, during which the source sends every second.
        if !config.full_only && ours <= ping {
            fine = false;
            problems.push((
                format!(
                    "ferry's source_timeout ({ours} s) is not longer than {name}'s repl-ping-replica-period ({ping} s): ferry would take an idle source for dead and reconnect"
                ),
                format!(
                    "set [advanced] source_timeout = {} (or lower the source's repl-ping-replica-period)",
                    MIN_REPL_TIMEOUT.max(ping * 3)
                ),
            ));
        }
        if fine {
            passes.push(format!(
                "{name}: repl-timeout {timeout} s, pings every {ping} s (ferry waits {ours} s)"
            ));
        }
    }
    if problems.is_empty() {
        return Ok(Finding::pass(Item::ReplTimeout, passes.join("; ")));
    }
    let (found, fix): (Vec<String>, Vec<String>) = problems.into_iter().unzip();
    Ok(Finding::warn(
        Item::ReplTimeout,
        found.join("; "),
        fix.join("; "),
    ))
}
