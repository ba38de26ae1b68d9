//! Typed events: the one place a task's telemetry comes from. Each [`Event`] is logged (with
//! `tracing`), counted (with the `metrics` facade: whatever recorder the program installs, none
//! by default) and sent to the task's subscribers (`TaskHandle::subscribe`), so the log, the
//! metrics and a server's event history and alerts cannot disagree.
//!
//! Metric labels are a small fixed set: `task` (the task id), `shard` (a cluster source's shard
//! or one of several targets; empty otherwise) and, per event kind, one closed set of values
//! (an error code, a phase name). Never a message, a key or an address.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;
use tokio::sync::broadcast;

use super::Phase;
use super::throttle::Limits;

/// Events kept for a subscriber that reads slowly; an older one is then skipped (the
/// subscriber is told how many).
const CAPACITY: usize = 1024;

/// One thing that happened to a task.
#[derive(Clone, Debug, Serialize)]
pub struct Event {
    /// Unix time in ms.
    pub at_ms: u64,
    pub task: String,
    /// The shard of a cluster source, or the target of several, it happened on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    /// The phase changed.
    Phase {
        from: Phase,
        to: Phase,
    },
    /// The task failed and stopped; `code` is the error's stable code.
    Failed {
        code: &'static str,
        message: String,
    },
    /// A failure that is retried.
    Retrying {
        code: &'static str,
        message: String,
        /// Retries since the last progress.
        attempt: u32,
        delay_ms: u64,
        /// Seconds left before the task gives up.
        gives_up_in_s: u64,
    },
    /// Something the user should know that does not stop the task.
    Warning {
        code: &'static str,
        message: String,
    },
    /// One precheck item's result (passes are not sent: only what needs attention).
    Precheck {
        item: &'static str,
        result: &'static str,
        found: String,
        fix: String,
    },
    /// A round of continuous verification.
    Verified {
        compared: u64,
        differing: u64,
    },
    /// Writing to the target was paused, or resumed.
    Paused,
    Resumed,
    /// The write limits were changed while the task runs.
    LimitsChanged {
        limits: Limits,
    },
}

impl EventKind {
    /// The kind's name, as in the JSON and the `kind` metric label.
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::Phase { .. } => "phase",
            EventKind::Failed { .. } => "failed",
            EventKind::Retrying { .. } => "retrying",
            EventKind::Warning { .. } => "warning",
            EventKind::Precheck { .. } => "precheck",
            EventKind::Verified { .. } => "verified",
            EventKind::Paused => "paused",
            EventKind::Resumed => "resumed",
            EventKind::LimitsChanged { .. } => "limits_changed",
        }
    }
}

/// Where a task's events go. Cheap to clone; a clone for a shard labels its events with it.
#[derive(Clone)]
pub struct Events {
    task: Arc<str>,
    shard: Option<Arc<str>>,
    /// Phase changes are sent (off for a writer's own status inside a cluster target, whose
    /// phase only mirrors the task's).
    phases: bool,
    tx: broadcast::Sender<Event>,
}

impl Default for Events {
    fn default() -> Events {
        Events::new("")
    }
}

impl Events {
    pub fn new(task: &str) -> Events {
        Events {
            task: task.into(),
            shard: None,
            phases: true,
            tx: broadcast::channel(CAPACITY).0,
        }
    }

    /// The same events, labelled with a shard (or target).
    pub fn for_shard(&self, shard: &str) -> Events {
        Events {
            shard: Some(shard.into()),
            ..self.clone()
        }
    }

    /// The same events, without phase changes: for a part whose phase mirrors the task's.
    pub fn without_phases(&self) -> Events {
        Events {
            phases: false,
            ..self.clone()
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Logs, counts and sends one event.
    pub fn emit(&self, kind: EventKind) {
        if !self.phases && matches!(kind, EventKind::Phase { .. }) {
            return;
        }
        let shard = self.shard.as_deref().unwrap_or("");
        match &kind {
            EventKind::Phase { from, to } => {
                tracing::debug!(task = %self.task, shard, "phase {} -> {}", from.name(), to.name());
                metrics::counter!("ferry_phase_changes_total", "task" => self.task.to_string(), "shard" => shard.to_string(), "phase" => to.name()).increment(1);
            }
            EventKind::Failed { code, message } => {
                tracing::error!(task = %self.task, shard, code, "{message}");
                metrics::counter!("ferry_errors_total", "task" => self.task.to_string(), "shard" => shard.to_string(), "code" => *code).increment(1);
            }
            EventKind::Retrying {
                code,
                message,
                delay_ms,
                gives_up_in_s,
                ..
            } => {
                tracing::warn!(
                    task = %self.task,
                    shard,
                    code,
                    "{message}; retrying in {:.1} s (giving up in {gives_up_in_s} s)",
                    *delay_ms as f64 / 1000.0
                );
                metrics::counter!("ferry_retries_total", "task" => self.task.to_string(), "shard" => shard.to_string(), "code" => *code).increment(1);
            }
            EventKind::Warning { code, message } => {
                tracing::warn!(task = %self.task, shard, code, "{message}");
                metrics::counter!("ferry_warnings_total", "task" => self.task.to_string(), "shard" => shard.to_string(), "code" => *code).increment(1);
            }
            EventKind::Precheck {
                item,
                result,
                found,
                fix,
            } => {
                tracing::warn!(task = %self.task, "precheck {item} ({result}): {found}; {fix}");
            }
            EventKind::Verified {
                compared,
                differing,
            } => {
                tracing::debug!(task = %self.task, compared, differing, "continuous verification");
                metrics::counter!("ferry_verify_compared_total", "task" => self.task.to_string())
                    .increment(*compared);
                metrics::counter!("ferry_verify_differing_total", "task" => self.task.to_string())
                    .increment(*differing);
            }
            EventKind::Paused => {
                tracing::info!(task = %self.task, "paused: nothing more is written to the target")
            }
            EventKind::Resumed => tracing::info!(task = %self.task, "resumed"),
            EventKind::LimitsChanged { limits } => {
                tracing::info!(task = %self.task, ?limits, "write limits changed")
            }
        }
        let at_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        // No subscriber is fine: the log and the metrics have it.
        let _ = self.tx.send(Event {
            at_ms,
            task: self.task.to_string(),
            shard: self.shard.as_deref().map(str::to_string),
            kind,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribers_get_each_event_with_its_labels() {
        let events = Events::new("t1");
        let mut rx = events.subscribe();
        events.emit(EventKind::Phase {
            from: Phase::Connecting,
            to: Phase::Full,
        });
        events.for_shard("0").emit(EventKind::Warning {
            code: "spool_full",
            message: "full".into(),
        });
        let first = rx.try_recv().unwrap();
        assert_eq!((first.task.as_str(), first.shard.as_deref()), ("t1", None));
        let second = rx.try_recv().unwrap();
        assert_eq!(second.shard.as_deref(), Some("0"));
        let json = serde_json::to_value(&second).unwrap();
        assert_eq!(json["type"], "warning");
        assert_eq!(json["code"], "spool_full");
    }
}
