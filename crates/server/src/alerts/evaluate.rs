//! Once a second, every rule is looked at for each task it covers: the value seen is compared
//! with the threshold. A condition that holds without a break for `for_seconds` fires; once
//! fired, the condition gone for `for_seconds` resolves it. Each is one delivery, written with
//! the firing state in one transaction, so a value that flaps around the threshold cannot
//! send more than one pair per `2 × for_seconds`, and a restart neither fires again nor
//! forgets to resolve (the firing state is in the store; only the "since when" clocks of
//! conditions not yet fired start over).

use std::collections::{HashMap, HashSet};

use ferry_engine::task::TaskStatus;
use serde_json::Value;

use super::deliver::{AlertPayload, AlertState};
use super::rules::{Kind, Rule};
use super::store::Transition;
use crate::error::ApiError;
use crate::store::{Store, TaskRow};
use crate::tasks::Tasks;

/// What a rule sees of one task now.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Seen {
    Value(f64),
    /// The task does not run, so it has no lag or latency: as good as any value under the
    /// threshold (shown as null).
    NotRunning,
    /// Running, but there is nothing to judge by yet (no latency sample in the last minute):
    /// nothing changes.
    Unknown,
    /// The task was deleted, or the rule no longer covers it: a firing alert resolves now.
    Gone,
}

impl Seen {
    fn value(self) -> Option<f64> {
        match self {
            Seen::Value(v) => Some(v),
            _ => None,
        }
    }
}

/// Since when the condition of one (rule, task) has held, or been gone.
#[derive(Debug, Default)]
struct Clock {
    bad_since: Option<u64>,
    good_since: Option<u64>,
}

enum Decision {
    Fire { since_ms: u64 },
    Resolve { since_ms: u64 },
}

/// One task as the rules see it in one look.
struct Sample {
    row: TaskRow,
    status: Option<TaskStatus>,
    /// The last verification report's differences, summed over its targets.
    verified_differences: Option<u64>,
}

#[derive(Default)]
pub struct Evaluator {
    clocks: HashMap<(String, String), Clock>,
}

impl Evaluator {
    /// One look at every rule; returns how many deliveries it wrote.
    pub fn tick(&mut self, tasks: &Tasks, now_ms: u64) -> Result<usize, ApiError> {
        let store = &tasks.store;
        let rules = store.rules()?;
        let mut samples = HashMap::new();
        for row in store.list()? {
            let status = tasks.handle(&row.id).map(|h| h.status());
            let verified_differences = store
                .report(&row.id, "verify")?
                .map(|r| differences(&r.json));
            samples.insert(
                row.id.clone(),
                Sample {
                    row,
                    status,
                    verified_differences,
                },
            );
        }
        let firing: HashSet<(String, String)> = store
            .firing()?
            .into_iter()
            .map(|f| (f.rule, f.task))
            .collect();
        let mut written = 0;
        let mut looked = HashSet::new();
        for rule in &rules {
            let mut covered: Vec<&str> = match &rule.task {
                Some(task) => vec![task.as_str()],
                None => samples.keys().map(String::as_str).collect(),
            };
            for (r, t) in &firing {
                if *r == rule.id && !covered.contains(&t.as_str()) {
                    covered.push(t);
                }
            }
            covered.sort_unstable();
            for task in covered {
                let sample = samples.get(task);
                let covers = rule.task.as_deref().is_none_or(|t| t == task);
                let seen = match sample {
                    Some(s) if covers => see(rule.kind, s, now_ms),
                    _ => Seen::Gone,
                };
                let key = (rule.id.clone(), task.to_string());
                let is_firing = firing.contains(&key);
                looked.insert(key.clone());
                let name = sample.map(|s| s.row.name.as_str());
                written += self.judge(store, rule, task, name, seen, is_firing, now_ms)? as usize;
            }
        }
        self.clocks.retain(|k, _| looked.contains(k));
        Ok(written)
    }

    /// Moves one (rule, task)'s clock on with what is seen now, and writes a firing or a
    /// resolution when one is due. True when it wrote one.
    #[allow(clippy::too_many_arguments)]
    pub fn judge(
        &mut self,
        store: &Store,
        rule: &Rule,
        task: &str,
        task_name: Option<&str>,
        seen: Seen,
        firing: bool,
        now_ms: u64,
    ) -> Result<bool, ApiError> {
        let clock = self
            .clocks
            .entry((rule.id.clone(), task.to_string()))
            .or_default();
        let hold_ms = rule.for_seconds.saturating_mul(1000);
        let bad = match seen {
            Seen::Value(v) => rule.kind.breached(v, rule.threshold),
            Seen::NotRunning | Seen::Gone => false,
            Seen::Unknown => return Ok(false),
        };
        let decision = if bad {
            clock.good_since = None;
            let since = *clock.bad_since.get_or_insert(now_ms);
            (!firing && now_ms.saturating_sub(since) >= hold_ms)
                .then_some(Decision::Fire { since_ms: since })
        } else {
            clock.bad_since = None;
            let since = *clock.good_since.get_or_insert(now_ms);
            let over = seen == Seen::Gone || now_ms.saturating_sub(since) >= hold_ms;
            (firing && over).then_some(Decision::Resolve { since_ms: since })
        };
        let Some(decision) = decision else {
            return Ok(false);
        };
        let t = Transition {
            rule: &rule.id,
            task,
            value: seen.value(),
            at_ms: now_ms,
        };
        let (state, since_ms) = match decision {
            Decision::Fire { since_ms } => (AlertState::Firing, since_ms),
            Decision::Resolve { since_ms } => (AlertState::Resolved, since_ms),
        };
        let payload = |delivery: i64| {
            let p = AlertPayload {
                delivery,
                rule: rule.id.clone(),
                kind: rule.kind,
                threshold: rule.threshold,
                for_seconds: rule.for_seconds,
                task: task.to_string(),
                task_name: task_name.map(str::to_string),
                state,
                value: seen.value(),
                at: now_ms,
                since: since_ms,
                message: message(rule, task, state, seen),
            };
            serde_json::to_string(&p).unwrap_or_default()
        };
        let written = match state {
            AlertState::Firing => store.fire(&t, since_ms, payload)?,
            AlertState::Resolved => store.resolve(&t, payload)?,
        };
        if let Some(delivery) = written {
            tracing::info!(
                rule = %rule.id,
                task,
                delivery,
                "{}",
                message(rule, task, state, seen)
            );
        }
        Ok(written.is_some())
    }
}

/// The value a rule's kind reads from one task.
fn see(kind: Kind, s: &Sample, now_ms: u64) -> Seen {
    let snap = s.status.as_ref().map(|st| &st.status);
    match kind {
        Kind::Failed => Seen::Value(if s.row.state == "failed" { 1.0 } else { 0.0 }),
        Kind::FullCopyMinutes => Seen::Value(match s.row.state.as_str() {
            "full_sync" => now_ms.saturating_sub(s.row.since_ms) as f64 / 60_000.0,
            _ => 0.0,
        }),
        Kind::VerifyMismatches => {
            let live = snap.and_then(|st| st.verify.as_ref()).map(|v| v.mismatched);
            Seen::Value(live.max(s.verified_differences).unwrap_or(0) as f64)
        }
        Kind::LagBytes => match snap {
            None => Seen::NotRunning,
            Some(st) => Seen::Value(
                std::iter::once(st.lag_bytes)
                    .chain(st.shards.iter().map(|p| p.status.lag_bytes))
                    .chain(st.targets.iter().map(|p| p.status.lag_bytes))
                    .max()
                    .unwrap_or(0) as f64,
            ),
        },
        // The engine's own measure (the heartbeat's): the same figure as the status and
        // /metrics show. Unknown (the heartbeat off, or nothing sent yet): nothing changes.
        Kind::LagSeconds => match snap {
            None => Seen::NotRunning,
            Some(st) => st.lag_s.map_or(Seen::Unknown, Seen::Value),
        },
        Kind::LatencyMs => match snap {
            None => Seen::NotRunning,
            Some(st) => std::iter::once(&st.latency_ms)
                .chain(st.shards.iter().map(|p| &p.status.latency_ms))
                .chain(st.targets.iter().map(|p| &p.status.latency_ms))
                .filter_map(|l| l.as_ref().map(|l| l.p99))
                .reduce(f64::max)
                .map_or(Seen::Unknown, Seen::Value),
        },
    }
}

/// The differences of a kept verification report (one entry per target).
fn differences(report: &str) -> u64 {
    serde_json::from_str::<Vec<Value>>(report)
        .unwrap_or_default()
        .iter()
        .filter_map(|t| t["differences"].as_u64())
        .sum()
}

fn message(rule: &Rule, task: &str, state: AlertState, seen: Seen) -> String {
    let kind = rule.kind.name();
    let held = rule.for_seconds;
    match (rule.kind, state, seen) {
        (Kind::Failed, AlertState::Firing, _) => format!("task {task} failed"),
        (Kind::Failed, AlertState::Resolved, Seen::Gone) => {
            format!("task {task} is gone or no longer watched")
        }
        (Kind::Failed, AlertState::Resolved, _) => format!("task {task} is no longer failed"),
        (_, AlertState::Firing, Seen::Value(v)) => format!(
            "task {task}: {kind} {v} is above {} for {held} s",
            rule.threshold.unwrap_or(0.0)
        ),
        (_, AlertState::Firing, _) => format!("task {task}: {kind} fired"),
        (_, AlertState::Resolved, Seen::Value(v)) => format!(
            "task {task}: {kind} {v} is back at or below {} for {held} s",
            rule.threshold.unwrap_or(0.0)
        ),
        (_, AlertState::Resolved, Seen::NotRunning) => {
            format!("task {task}: {kind} resolved (the task does not run)")
        }
        (_, AlertState::Resolved, _) => {
            format!("task {task}: {kind} resolved (the task is gone or no longer watched)")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &std::path::Path) -> Store {
        Store::open(&dir.join("ferry.db")).unwrap()
    }

    fn rule(store: &Store, kind: Kind, threshold: Option<f64>, for_seconds: u64) -> Rule {
        let rule = Rule {
            id: "a-1".into(),
            task: None,
            kind,
            threshold,
            for_seconds,
            webhook_url: "http://127.0.0.1:9/hook".into(),
            created_ms: 0,
        };
        store.insert_rule(&rule, "0123456789abcdef").unwrap();
        rule
    }

    /// Feeds `values` (one a second from t=0) to a fresh evaluator; returns the deliveries'
    /// (state, at second) in order.
    fn run(
        store: &Store,
        ev: &mut Evaluator,
        rule: &Rule,
        start_s: u64,
        values: &[Seen],
    ) -> Vec<(String, u64)> {
        for (i, seen) in values.iter().enumerate() {
            let now = (start_s + i as u64) * 1000;
            let firing = store
                .firing()
                .unwrap()
                .iter()
                .any(|f| f.rule == rule.id && f.task == "t-1");
            ev.judge(store, rule, "t-1", Some("one"), *seen, firing, now)
                .unwrap();
        }
        store
            .deliveries(&rule.id, 100)
            .unwrap()
            .into_iter()
            .map(|d| (d.state, d.at_ms / 1000))
            .collect()
    }

    use Seen::Value as V;

    #[test]
    fn fires_once_after_for_seconds_and_resolves_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let rule = rule(&store, Kind::LagBytes, Some(100.0), 3);
        let mut ev = Evaluator::default();
        // Bad from t=1; fires at t=4 (held 3 s), stays bad without a second firing; good from
        // t=8, resolved at t=11.
        let seen = [
            V(0.0),
            V(500.0),
            V(500.0),
            V(500.0),
            V(900.0),
            V(500.0),
            V(500.0),
            V(500.0),
            V(10.0),
            V(10.0),
            V(10.0),
            V(10.0),
            V(10.0),
            V(10.0),
        ];
        let got = run(&store, &mut ev, &rule, 0, &seen);
        assert_eq!(got, vec![("firing".into(), 4), ("resolved".into(), 11)]);
        let d = store.deliveries(&rule.id, 100).unwrap();
        assert_eq!(d[0].value, Some(900.0));
        let body: Value =
            serde_json::from_str(&store.due(u64::MAX, 10).unwrap()[0].payload).unwrap();
        assert_eq!(body["state"], "firing");
        assert_eq!(body["delivery"], d[0].id);
        assert_eq!(body["since"], 1000);
        assert_eq!(body["task_name"], "one");
        assert_eq!(
            body["message"],
            "task t-1: lag_bytes 900 is above 100 for 3 s"
        );
        assert!(store.firing().unwrap().is_empty());
    }

    #[test]
    fn a_flapping_value_sends_nothing_until_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let rule = rule(&store, Kind::LatencyMs, Some(100.0), 2);
        let mut ev = Evaluator::default();
        let flapping: Vec<Seen> = (0..20)
            .map(|i| V(if i % 2 == 0 { 500.0 } else { 1.0 }))
            .collect();
        assert!(run(&store, &mut ev, &rule, 0, &flapping).is_empty());
        // Unknown changes nothing: the bad stretch goes on across it.
        let seen = [V(500.0), Seen::Unknown, V(500.0), V(500.0)];
        let got = run(&store, &mut ev, &rule, 100, &seen);
        assert_eq!(got, vec![("firing".into(), 102)]);
        // Firing, a flap back under the threshold shorter than for_seconds does not resolve.
        let got = run(&store, &mut ev, &rule, 200, &flapping);
        assert_eq!(got.len(), 1, "{got:?}");
    }

    #[test]
    fn a_restart_neither_fires_again_nor_forgets_to_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let rule = {
            let store = store(dir.path());
            let rule = rule(&store, Kind::Failed, None, 0);
            let got = run(&store, &mut Evaluator::default(), &rule, 0, &[V(1.0)]);
            assert_eq!(got, vec![("firing".into(), 0)]);
            rule
        };
        let store = store(dir.path());
        let mut ev = Evaluator::default();
        let got = run(&store, &mut ev, &rule, 10, &[V(1.0), V(1.0)]);
        assert_eq!(got.len(), 1, "fired again after a restart: {got:?}");
        let got = run(&store, &mut ev, &rule, 20, &[V(0.0), V(0.0)]);
        assert_eq!(got, vec![("firing".into(), 0), ("resolved".into(), 20)]);
    }

    #[test]
    fn a_deleted_task_resolves_at_once_and_a_stopped_one_after_the_hold() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let rule = rule(&store, Kind::LagSeconds, Some(5.0), 3);
        let mut ev = Evaluator::default();
        let got = run(&store, &mut ev, &rule, 0, &[V(9.0); 4]);
        assert_eq!(got.len(), 1);
        let got = run(&store, &mut ev, &rule, 10, &[Seen::NotRunning; 3]);
        assert_eq!(got.len(), 1, "resolved before the hold: {got:?}");
        let got = run(&store, &mut ev, &rule, 20, &[Seen::NotRunning]);
        assert_eq!(got.len(), 2);
        let got = run(&store, &mut ev, &rule, 30, &[V(9.0); 4]);
        assert_eq!(got.len(), 3);
        let got = run(&store, &mut ev, &rule, 40, &[Seen::Gone]);
        assert_eq!(got.last().unwrap(), &("resolved".to_string(), 40));
        assert_eq!(store.deliveries(&rule.id, 100).unwrap()[3].value, None);
    }

    #[test]
    fn a_resolution_waits_for_its_firing_to_be_delivered() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let rule = rule(&store, Kind::Failed, None, 0);
        run(
            &store,
            &mut Evaluator::default(),
            &rule,
            0,
            &[V(1.0), V(0.0)],
        );
        let due = store.due(u64::MAX, 10).unwrap();
        assert_eq!(due.len(), 1, "only the firing is due first");
        store
            .attempt_failed(due[0].id, None, "refused", 5_000)
            .unwrap();
        assert!(store.due(4_000, 10).unwrap().is_empty());
        assert_eq!(store.next_due().unwrap(), Some(5_000));
        store.retry_pending_now(1_000).unwrap();
        assert_eq!(store.due(1_000, 10).unwrap()[0].id, due[0].id);
        store.delivered(due[0].id, 200, 2_000).unwrap();
        let next = store.due(u64::MAX, 10).unwrap();
        assert_eq!(next.len(), 1);
        assert!(next[0].payload.contains("\"resolved\""));
        // Made ones are forgotten once old; pending ones never.
        assert_eq!(store.forget_delivered(2_001).unwrap(), 1);
        assert_eq!(store.deliveries(&rule.id, 10).unwrap().len(), 1);
        // Deleting the rule takes its outbox with it.
        assert!(store.delete_rule(&rule.id).unwrap());
        assert!(store.due(u64::MAX, 10).unwrap().is_empty());
    }

    #[test]
    fn a_verify_report_counts_its_targets_differences() {
        assert_eq!(
            differences(r#"[{"target":"a","differences":3},{"target":"b","differences":4}]"#),
            7
        );
        assert_eq!(differences("not json"), 0);
    }
}
