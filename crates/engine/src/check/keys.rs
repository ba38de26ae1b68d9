//! `target_keys`: keys already in the target's synced dbs, which a new task's first copy
//! meets as `[sync] on_conflict` says. The survey is the one `sync` does itself
//! (`target::conflict`); `sync` acts on it right before its copy, so this item runs only
//! under `ferry check`. What a task that finds its checkpoint does is the `start` item's.

use super::reach::{Cluster, Side};
use super::{Finding, Item};
use crate::config::TaskConfig;
use crate::sink::{Target, conflict};
use crate::spec::OnConflict;

pub(super) async fn check(target: &Side, source: Option<&Side>, config: &TaskConfig) -> Finding {
    let item = Item::TargetKeys;
    let name = target.name();
    let mut writer = match Target::connect(&target.endpoint).await {
        Ok(t) => t,
        Err(e) => {
            return Finding::fail(
                item,
                format!("{name}: cannot look at its keys: {e}"),
                "fix what the items above say about this target",
            );
        }
    };
    // A task that has written its checkpoint there resumes its own copy: no conflict.
    let names: Vec<String> = match source.map(|s| &s.cluster) {
        Some(Cluster::Complete(topology)) => topology
            .shards
            .iter()
            .map(|s| format!("{}@{}", config.name, s.first_slot()))
            .collect(),
        _ => vec![config.name.clone()],
    };
    if config.checkpoint {
        for task in &names {
            match writer.read_checkpoint(task).await {
                Ok(Some(_)) => {
                    return Finding::pass(
                        item,
                        format!(
                            "{name} holds the checkpoint of task {task}: not a new task, so on_conflict does not apply (whether it resumes: see start)"
                        ),
                    );
                }
                Ok(None) => {}
                Err(e) => {
                    return Finding::fail(
                        item,
                        format!("{name}: cannot read the checkpoint: {e}"),
                        "",
                    );
                }
            }
        }
    }
    let dbs = conflict::synced_dbs(config);
    let what = match conflict::holdings(&mut writer, dbs.as_deref()).await {
        Ok(None) => return Finding::pass(item, format!("{name}: no keys in the synced dbs")),
        Ok(Some(what)) => what,
        Err(e) => return Finding::fail(item, format!("{name}: cannot look at its keys: {e}"), ""),
    };
    match config.on_conflict.unwrap_or_default() {
        OnConflict::Fail => Finding::fail(
            item,
            format!("{what} (on_conflict = \"fail\")"),
            conflict::REFUSAL_FIX
                .trim_start_matches("that this new task did not write; ")
                .to_string(),
        ),
        OnConflict::Overwrite => Finding::pass(
            item,
            format!("{what}; on_conflict = \"overwrite\" copies over them"),
        ),
        OnConflict::Flush => Finding::pass(
            item,
            format!("{what}; on_conflict = \"flush\" empties the synced dbs first"),
        ),
    }
}
