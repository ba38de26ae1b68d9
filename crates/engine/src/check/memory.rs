//! `memory` and `eviction_policy`: whether the source's data fits in what the target has left
//! under its `maxmemory`, and what the target does when it is full.

use super::reach::Side;
use super::{Finding, Item, Mode};
use crate::error::Result;
use crate::net::info::{self, number, size};

/// Headroom under which a fit is only a warning: data takes more room in some encodings and
/// versions than in others, and writes go on while the copy runs.
const HEADROOM: f64 = 0.2;

/// The source's data in memory, summed over its nodes.
pub(super) struct SourceData {
    bytes: u64,
}

/// `used_memory_dataset` (the data, without the server's own overhead, which the target has
/// already) where the server reports it (4.0+), else `used_memory`.
pub(super) async fn source_data(source: &mut Side) -> Result<SourceData> {
    let mut bytes = 0;
    for conn in &mut source.nodes {
        let fields = info::info(conn, "memory").await?;
        bytes += number(&fields, "used_memory_dataset")
            .or_else(|| number(&fields, "used_memory"))
            .unwrap_or(0);
    }
    Ok(SourceData { bytes })
}

/// Free memory on each master of the target against its share of the source's data (a
/// cluster's slots are taken as evenly spread). Under `Mode::Sync` a shortfall is a warning:
/// the estimate compares different servers' accounting, and a full target refuses writes
/// with an error of its own (OOM) that stops the sync and says what to do.
pub(super) async fn free_memory(
    target: &mut Side,
    data: &SourceData,
    mode: Mode,
) -> Result<Finding> {
    let masters = target.nodes.len().max(1) as u64;
    let need = data.bytes.div_ceil(masters);
    let share = if masters > 1 {
        format!("its share of the source's data, {}", size(need))
    } else {
        format!("the source's data, {}", size(need))
    };
    let mut worst: Option<(f64, String, String)> = None;
    let mut unlimited = 0;
    for conn in &mut target.nodes {
        let fields = info::info(conn, "memory").await?;
        let max = number(&fields, "maxmemory").unwrap_or(0);
        let used = number(&fields, "used_memory").unwrap_or(0);
        if max == 0 {
            unlimited += 1;
            continue;
        }
        let free = max.saturating_sub(used);
        let ratio = if need == 0 {
            f64::INFINITY
        } else {
            free as f64 / need as f64
        };
        if worst.as_ref().is_none_or(|(r, _, _)| ratio < *r) {
            let suggested = used + (need as f64 * (1.0 + HEADROOM)) as u64;
            worst = Some((
                ratio,
                format!(
                    "{} {}: {} free ({} maxmemory, {} used) for {share}",
                    target.label,
                    conn.addr,
                    size(free),
                    size(max),
                    size(used)
                ),
                format!(
                    "raise the target's maxmemory (CONFIG SET maxmemory {} on {}), or sync less ([filter])",
                    info::config_size(suggested),
                    conn.addr
                ),
            ));
        }
    }
    let Some((ratio, found, fix)) = worst else {
        return Ok(Finding::pass(
            Item::Memory,
            format!(
                "{}: no maxmemory, so no limit but the host's memory (the source's data: {})",
                target.name(),
                size(data.bytes)
            ),
        ));
    };
    let limited = target.nodes.len() - unlimited;
    let found = if limited > 1 {
        format!("{found} (the tightest of {limited} masters with a maxmemory)")
    } else {
        found
    };
    Ok(if ratio < 1.0 {
        match mode {
            Mode::Check => Finding::fail(Item::Memory, format!("{found}: too small"), fix),
            Mode::Sync => Finding::warn(
                Item::Memory,
                format!("{found}: too small, likely to refuse writes (OOM)"),
                fix,
            ),
        }
    } else if ratio < 1.0 + HEADROOM {
        Finding::warn(
            Item::Memory,
            format!("{found}: less than {:.0}% headroom", HEADROOM * 100.0),
            fix,
        )
    } else {
        Finding::pass(Item::Memory, found)
    })
}

/// Anything but `noeviction` lets the target drop synced keys when full, without a word.
/// Without a `maxmemory` nothing is evicted, whatever the policy.
pub(super) async fn eviction_policy(target: &mut Side) -> Result<Finding> {
    let mut evicting = Vec::new();
    for conn in &mut target.nodes {
        let fields = info::info(conn, "memory").await?;
        let policy = fields
            .get("maxmemory_policy")
            .cloned()
            .unwrap_or_else(|| "noeviction".into());
        let max = number(&fields, "maxmemory").unwrap_or(0);
        if policy != "noeviction" && max > 0 {
            evicting.push((conn.addr.clone(), policy));
        }
    }
    Ok(match evicting.first() {
        None => Finding::pass(
            Item::EvictionPolicy,
            format!(
                "{}: noeviction, or no maxmemory: no key is evicted",
                target.name()
            ),
        ),
        Some((addr, policy)) => Finding::warn(
            Item::EvictionPolicy,
            format!(
                "{} {addr}: maxmemory-policy is {policy}: when full, the target drops keys ferry wrote and the copy silently differs",
                target.label
            ),
            "CONFIG SET maxmemory-policy noeviction on the target (writes are then refused when full, and ferry says so)",
        ),
    })
}
