//! A pipeline that remembers a label per command, counts what was issued and collects
//! the errors the server answered.

use std::collections::BTreeMap;

use redis::{Cmd, Value};

use super::route::Target;
use crate::wire;

/// Commands queued before a batch sends itself.
const FLUSH_AT: usize = 1000;

/// Errors that are part of the plan, not a sign of a broken workload: a group that exists
/// already, and (on a cluster) a multi-key command whose keys a slot migration keeps apart
/// for longer than the router waits.
fn expected(label: &str, err: &str) -> bool {
    (label == "XGROUP CREATE" && err.starts_with("BUSYGROUP")) || err.starts_with("TRYAGAIN")
}

#[derive(Default)]
pub(crate) struct Batch {
    cmds: Vec<Cmd>,
    labels: Vec<String>,
    /// The slot of each command (on a cluster), from [`Batch::slot`] when it was added.
    slots: Vec<Option<u16>>,
    /// The slot of the commands added next.
    pub slot: Option<u16>,
    /// Commands issued, by label.
    pub counts: BTreeMap<String, u64>,
    /// Unexpected errors, by label.
    pub errors: BTreeMap<String, u64>,
    /// The first few unexpected errors, as "LABEL: message".
    pub samples: Vec<String>,
    /// Errors that say a command went to the wrong node (`MOVED`, `ASK`, `CROSSSLOT`,
    /// `CLUSTERDOWN`): on a cluster, a routing failure rather than a command this server
    /// lacks. The first few, as "LABEL: message".
    pub misrouted: Vec<String>,
}

impl Batch {
    /// Queues `cmd`, counted under `label` (the command name, or "XGROUP CREATE" style).
    pub fn add(&mut self, label: &str, cmd: Cmd) {
        self.cmds.push(cmd);
        self.labels.push(label.to_string());
        self.slots.push(self.slot);
        *self.counts.entry(label.to_string()).or_insert(0) += 1;
    }

    /// Sends if enough is queued.
    pub fn maybe_flush(&mut self, to: &mut Target) {
        if self.labels.len() >= FLUSH_AT {
            self.flush(to);
        }
    }

    /// Sends what is queued and returns the replies; server errors are recorded, a broken
    /// connection panics.
    pub fn flush(&mut self, to: &mut Target) -> Vec<Value> {
        if self.cmds.is_empty() {
            return Vec::new();
        }
        let replies = to.send(&self.cmds, &self.slots, &self.labels);
        let labels = std::mem::take(&mut self.labels);
        for (label, reply) in labels.iter().zip(&replies) {
            self.check(label, reply);
        }
        self.cmds.clear();
        self.slots.clear();
        replies
    }

    fn check(&mut self, label: &str, reply: &Value) {
        if let Some(err) = wire::error_text(reply) {
            let routing = ["MOVED", "ASK", "CROSSSLOT", "CLUSTERDOWN"]
                .iter()
                .any(|code| err.starts_with(code));
            if routing && self.misrouted.len() < 20 {
                self.misrouted.push(format!("{label}: {err}"));
            }
            if !expected(label, &err) {
                *self.errors.entry(label.to_string()).or_insert(0) += 1;
                if self.samples.len() < 20 {
                    self.samples.push(format!("{label}: {err}"));
                }
            }
        } else if label == "EXEC" {
            // Errors of commands inside a transaction come back inside EXEC's reply.
            for inner in wire::items(reply).unwrap_or_default() {
                self.check("EXEC (inner)", inner);
            }
        }
    }
}
