//! Alerts: rules on one task or every task (failed, latency, lag in bytes or seconds, verify
//! mismatches, a long full copy), looked at once a second; each firing and each resolution is
//! a delivery in an outbox in the store, POSTed to the rule's webhook with an HMAC-SHA256
//! signature and retried with backoff until taken, also across restarts.
//!
//! - [`rules`]: the rule, its kinds, its validation.
//! - [`evaluate`]: the once-a-second look; fired once, resolved once.
//! - [`store`]: the tables (rules, firing states, outbox) in the server's SQLite store.
//! - [`deliver`]: the worker that POSTs the outbox, its payload and signature.
//! - [`routes`]: the routes under `/api/v1/alerts`.

pub mod deliver;
pub mod evaluate;
pub mod routes;
pub mod rules;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

pub use deliver::AlertPayload;
pub use store::SCHEMA;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::tasks::{Tasks, now_ms};

/// How often the rules are looked at.
const EVERY: Duration = Duration::from_secs(1);

/// The running evaluator and delivery worker.
pub struct Alerts {
    evaluator: JoinHandle<()>,
    worker: JoinHandle<()>,
}

/// Starts the evaluator and the delivery worker (POSTing through `client`, see
/// [`deliver::client`]); both end when `stop` fires. Called once the tasks that were running
/// have been started again: before that, they would look stopped to the rules.
pub fn start(tasks: Arc<Tasks>, client: reqwest::Client, stop: CancellationToken) -> Alerts {
    let wake = Arc::new(Notify::new());
    let worker = tokio::spawn(deliver::run(
        tasks.clone(),
        client,
        wake.clone(),
        stop.clone(),
    ));
    let evaluator = tokio::spawn(async move {
        let mut evaluator = evaluate::Evaluator::default();
        let mut every = tokio::time::interval(EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            // The look itself does not wait on anything: once `stop` is seen, no look that
            // could take the tasks' shutdown for a change of their state is under way.
            match evaluator.tick(&tasks, now_ms()) {
                Ok(0) => {}
                Ok(_) => wake.notify_one(),
                Err(e) => tracing::error!("cannot evaluate the alert rules: {e}"),
            }
        }
    });
    Alerts { evaluator, worker }
}

impl Alerts {
    /// Waits until both have ended (after `stop`).
    pub async fn stopped(self) {
        let _ = self.evaluator.await;
        let _ = self.worker.await;
    }
}
