//! `slots`: a cluster (source or target) serves all 16384 slots, so no key is left without a
//! master to read it from or write it to.

use super::reach::{Cluster, Side};
use super::{Finding, Item, Report};
use crate::net::topology::SLOTS;

/// Adds the finding for a cluster side; a standalone server has no slots to check.
pub(super) fn check(side: &mut Side, report: &mut Report) {
    let name = side.name();
    let finding = match &mut side.cluster {
        Cluster::Standalone => return,
        Cluster::Complete(topology) => Finding::pass(
            Item::Slots,
            format!(
                "{name}: all {SLOTS} slots served by {} masters",
                topology.shards.len()
            ),
        ),
        Cluster::Incomplete(error) => {
            let fix = "assign every slot (CLUSTER ADDSLOTS, or redis-cli --cluster fix), then check again";
            match error.take() {
                Some(e) => Finding::from_error(Item::Slots, e, fix),
                None => Finding::fail(Item::Slots, format!("{name}: slot map unreadable"), fix),
            }
        }
    };
    report.add(finding);
}
