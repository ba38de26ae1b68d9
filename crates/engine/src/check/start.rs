//! `start`: what a start of this task will do with the targets as they are: a new full copy,
//! a resume from a checkpoint, or a full resync that `full_resync` refuses (the error `sync`
//! stops with) or allows (the targets are emptied and copied again). The decision is
//! `fanout::plan`, the one `sync` acts on; whether the source can continue from the checkpoint
//! is predicted from its `INFO replication` by the test Redis applies to a `PSYNC`.
//! `sync` decides this itself as it starts, so the item runs only under `ferry check`.

use super::reach::{Cluster, Side};
use super::{Finding, Item};
use crate::config::TaskConfig;
use crate::error::Error;
use crate::net::info::info;
use crate::pipeline::fanout::{self, Plan};
use crate::sink::Target;
use crate::source::psync;
use crate::spec::FullResync;

pub(super) async fn check(
    source: &mut Side,
    targets: &[Side],
    config: &TaskConfig,
) -> Vec<Finding> {
    let item = Item::Start;
    if !config.checkpoint {
        return vec![Finding::pass(
            item,
            "[advanced] checkpoint = false: every start is a new task, a full copy",
        )];
    }
    // One stream per shard of a cluster source, each with its own checkpoint.
    let streams: Vec<(String, String)> = match &source.cluster {
        Cluster::Complete(topology) => topology
            .shards
            .iter()
            .zip(&source.nodes)
            .map(|(s, n)| {
                (
                    format!("{}@{}", config.name, s.first_slot()),
                    n.addr.clone(),
                )
            })
            .collect(),
        _ => vec![(config.name.clone(), source.endpoint.addr())],
    };
    let mut writers = Vec::new();
    for t in targets {
        match Target::connect(&t.endpoint).await {
            Ok(w) => writers.push(w),
            Err(e) => {
                return vec![Finding::fail(
                    item,
                    format!("{}: cannot read its checkpoint: {e}", t.name()),
                    "fix what the items above say about this target",
                )];
            }
        }
    }
    let mut findings = Vec::new();
    for (i, (task, addr)) in streams.iter().enumerate() {
        let mut found = Vec::new();
        for w in writers.iter_mut() {
            match w.read_checkpoint(task).await {
                Ok(c) => found.push((w.addr(), c)),
                Err(e) => {
                    findings.push(Finding::fail(
                        item,
                        format!(
                            "target {}: cannot read the checkpoint of task {task}: {e}",
                            w.addr()
                        ),
                        "",
                    ));
                    return findings;
                }
            }
        }
        let plan = fanout::plan(&found, config, false, addr);
        let last = source.nodes.len() - 1;
        let node = &mut source.nodes[i.min(last)];
        findings.push(match plan {
            Err(e) => refused(task, e),
            Ok(Plan {
                resync_why: Some(why),
                ..
            }) => recopy(task, &why),
            Ok(Plan { resume: None, .. }) => Finding::pass(
                item,
                format!(
                    "task {task}: no target holds its checkpoint: a new task, a full copy (what the targets hold already: see target_keys)"
                ),
            ),
            Ok(Plan {
                resume: Some(checkpoint),
                ..
            }) => match info(node, "replication").await {
                Err(e) => Finding::warn(
                    item,
                    format!(
                        "task {task}: the targets hold checkpoint {checkpoint}; whether source {addr} can continue from it is not known ({e})"
                    ),
                    "let the source user run INFO",
                ),
                Ok(fields) => match psync::can_continue(&fields, &checkpoint) {
                    Ok(point) => Finding::pass(
                        item,
                        format!(
                            "task {task}: resumes from the targets' checkpoint {point}: source {addr} still holds the writes after it"
                        ),
                    ),
                    Err(why) => match config.full_resync {
                        FullResync::Stop => refused(
                            task,
                            Error::ResyncNeeded {
                                addr: addr.clone(),
                                why,
                            },
                        ),
                        FullResync::Flush => recopy(task, &why),
                    },
                },
            },
        });
    }
    findings
}

/// `sync` would stop with `error`.
fn refused(task: &str, error: Error) -> Finding {
    Finding::fail(
        Item::Start,
        format!("task {task}: {error}"),
        "to empty the target and copy again: [sync] full_resync = \"flush\"; or give the task another name, or another target, to keep this copy",
    )
}

/// `full_resync = "flush"`: the targets are emptied and copied again.
fn recopy(task: &str, why: &str) -> Finding {
    Finding::warn(
        Item::Start,
        format!(
            "task {task}: {why}; with full_resync = \"flush\" the sync empties the targets and copies the snapshot again"
        ),
        "what the targets hold now is deleted; set full_resync = \"stop\" to be asked instead",
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::sink::checkpoint::Checkpoint;

    const ID: &str = "8de1787ba490483314a4d30f1c628bc5025eb761";
    const OTHER: &str = "1111111111111111111111111111111111111111";

    fn info(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn at(offset: u64) -> Checkpoint {
        Checkpoint::Applied {
            replid: ID.into(),
            offset,
            db: 0,
            last_write: None,
        }
    }

    #[test]
    fn the_source_continues_only_within_its_history_and_backlog() {
        let source = info(&[
            ("master_replid", ID),
            ("master_replid2", OTHER),
            ("second_repl_offset", "-1"),
            ("repl_backlog_active", "1"),
            ("repl_backlog_first_byte_offset", "1001"),
            ("repl_backlog_histlen", "5000"),
        ]);
        assert_eq!(psync::can_continue(&source, &at(1000)), Ok(at(1000)));
        assert_eq!(psync::can_continue(&source, &at(6000)), Ok(at(6000)));
        assert!(psync::can_continue(&source, &at(999)).is_err());
        assert!(psync::can_continue(&source, &at(6001)).is_err());
        let loading = Checkpoint::Loading { replid: ID.into() };
        assert_eq!(
            psync::can_continue(&source, &loading),
            Err(crate::source::psync::INTERRUPTED.to_string())
        );
        // A promoted replica continues its old master's history up to where it took over.
        let promoted = info(&[
            ("master_replid", OTHER),
            ("master_replid2", ID),
            ("second_repl_offset", "3001"),
            ("repl_backlog_active", "1"),
            ("repl_backlog_first_byte_offset", "1"),
            ("repl_backlog_histlen", "9000"),
        ]);
        assert!(psync::can_continue(&promoted, &at(3000)).is_ok());
        assert!(psync::can_continue(&promoted, &at(3001)).is_err());
        let no_backlog = info(&[("master_replid", ID), ("repl_backlog_active", "0")]);
        let why = psync::can_continue(&no_backlog, &at(10)).unwrap_err();
        assert!(
            why.contains("cannot continue from the target's checkpoint"),
            "{why}"
        );
    }
}
