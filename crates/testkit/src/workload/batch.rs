//! A pipeline that remembers a label per command, counts what was issued and collects
//! the errors the server answered.

use std::collections::BTreeMap;

use redis::{Cmd, Pipeline, Value};

use crate::wire;

/// Commands queued before a batch sends itself.
const FLUSH_AT: usize = 1000;

/// Errors that are part of the plan, not a sign of a broken workload.
fn expected(label: &str, err: &str) -> bool {
    label == "XGROUP CREATE" && err.starts_with("BUSYGROUP")
}

#[derive(Default)]
pub(crate) struct Batch {
    pipe: Pipeline,
    labels: Vec<String>,
    /// Commands issued, by label.
    pub counts: BTreeMap<String, u64>,
    /// Unexpected errors, by label.
    pub errors: BTreeMap<String, u64>,
    /// The first few unexpected errors, as "LABEL: message".
    pub samples: Vec<String>,
}

impl Batch {
    /// Queues `cmd`, counted under `label` (the command name, or "XGROUP CREATE" style).
    pub fn add(&mut self, label: &str, cmd: Cmd) {
        self.pipe.add_command(cmd);
        self.labels.push(label.to_string());
        *self.counts.entry(label.to_string()).or_insert(0) += 1;
    }

    /// Sends if enough is queued.
    pub fn maybe_flush(&mut self, conn: &mut redis::Connection) {
        if self.labels.len() >= FLUSH_AT {
            self.flush(conn);
        }
    }

    /// Sends what is queued and returns the replies; server errors are recorded, a broken
    /// connection panics.
    pub fn flush(&mut self, conn: &mut redis::Connection) -> Vec<Value> {
        let replies = wire::send(conn, &self.pipe).unwrap_or_else(|e| {
            panic!(
                "workload: connection failed while sending {} commands: {e}",
                self.labels.len()
            )
        });
        let labels = std::mem::take(&mut self.labels);
        for (label, reply) in labels.iter().zip(&replies) {
            self.check(label, reply);
        }
        self.pipe.clear();
        replies
    }

    fn check(&mut self, label: &str, reply: &Value) {
        if let Some(err) = wire::error_text(reply) {
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
