//! The delivery worker: POSTs each pending delivery of the outbox to its rule's webhook,
//! signed with the rule's secret, and keeps the outcome (attempts, HTTP status, error). A
//! connection error or an answer other than 2xx is retried with exponential backoff (1 s,
//! doubling, at most a minute apart) until the receiver takes it or the rule is deleted;
//! redirects are not followed. After a restart every pending delivery is tried at once.
//!
//! Delivery is at least once: a crash between the receiver's answer and its record sends that
//! delivery again, with the same `X-Ferry-Delivery` id, for the receiver to drop.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use utoipa::ToSchema;

use super::rules::Kind;
use super::store::Due;
use crate::error::ApiError;
use crate::store::Store;
use crate::tasks::{Tasks, now_ms};

/// The hex HMAC-SHA256 of the body, keyed with the rule's secret: `sha256=<hex>`.
pub const SIGNATURE_HEADER: &str = "X-Ferry-Signature";
/// The delivery's id, the same in every retry of it.
pub const DELIVERY_HEADER: &str = "X-Ferry-Delivery";
/// When the alert fired or resolved (ms since the epoch; the payload's `at`).
pub const TIMESTAMP_HEADER: &str = "X-Ferry-Timestamp";

const TIMEOUT: Duration = Duration::from_secs(10);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(60);
/// Deliveries taken per look at the outbox.
const BATCH: u32 = 32;
/// Deliveries made are kept this long (for `GET /alerts/{id}/deliveries`), then forgotten.
const KEEP: Duration = Duration::from_secs(30 * 24 * 3600);
/// How often deliveries older than `KEEP` are looked for.
const FORGET_EVERY: Duration = Duration::from_secs(3600);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AlertState {
    Firing,
    Resolved,
}

/// The JSON body POSTed to a rule's webhook, for each firing and each resolution. Headers:
/// `X-Ferry-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the rule's secret>`,
/// `X-Ferry-Delivery: <delivery>` (the same in every retry: drop one already seen),
/// `X-Ferry-Timestamp: <at>`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertPayload {
    /// The delivery's id (as in `GET /api/v1/alerts/{id}/deliveries`).
    #[schema(example = 17)]
    pub delivery: i64,
    /// The rule's id.
    #[schema(example = "a-5e0c1d2a9b3f")]
    pub rule: String,
    pub kind: Kind,
    /// The rule's threshold (none for `failed`).
    pub threshold: Option<f64>,
    pub for_seconds: u64,
    /// The task's id.
    #[schema(example = "t-3f9a1c2b7d4e")]
    pub task: String,
    /// The task's name, when it still exists.
    pub task_name: Option<String>,
    pub state: AlertState,
    /// The value seen (in the kind's unit: ms, bytes, seconds, keys, minutes; 1 for a failed
    /// task); null when the task no longer runs or no longer exists.
    #[schema(example = 1048576.0)]
    pub value: Option<f64>,
    /// When it fired or resolved: Unix time in ms.
    pub at: u64,
    /// Firing: since when the condition held. Resolved: since when it was gone.
    pub since: u64,
    /// One line for people.
    pub message: String,
}

/// `sha256=<hex>` of `body` keyed with `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    // HMAC takes a key of any length: this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC accepts keys of every length");
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256={hex}")
}

/// How long to wait after the `attempts`-th failed attempt.
pub fn backoff(attempts: u32) -> Duration {
    let doubled = Duration::from_secs(1u64 << attempts.saturating_sub(1).min(16));
    doubled.min(MAX_BACKOFF)
}

pub fn client() -> Result<reqwest::Client, ApiError> {
    reqwest::Client::builder()
        .timeout(TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("ferry/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| ApiError::Setup(format!("cannot make the webhook client: {e}")))
}

/// Makes due deliveries until `stop`; woken early by `wake` when new ones are written.
pub async fn run(
    tasks: Arc<Tasks>,
    client: reqwest::Client,
    wake: Arc<Notify>,
    stop: CancellationToken,
) {
    let store = &tasks.store;
    match store.retry_pending_now(now_ms()) {
        Ok(0) => {}
        Ok(n) => tracing::info!("{n} alert deliveries were pending: trying them again now"),
        Err(e) => tracing::error!("cannot read the alert outbox: {e}"),
    }
    let mut forgot_at: Option<std::time::Instant> = None;
    loop {
        if forgot_at.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
            forgot_at = Some(std::time::Instant::now());
            let before = now_ms().saturating_sub(KEEP.as_millis() as u64);
            if let Err(e) = store.forget_delivered(before) {
                tracing::error!("cannot forget old alert deliveries: {e}");
            }
        }
        let wait = match deliver_due(store, &client, &stop).await {
            Ok(true) => Duration::ZERO,
            Ok(false) => match store.next_due() {
                Ok(Some(at)) => Duration::from_millis(at.saturating_sub(now_ms())),
                Ok(None) => MAX_BACKOFF,
                Err(e) => {
                    tracing::error!("cannot read the alert outbox: {e}");
                    MAX_BACKOFF
                }
            },
            Err(e) => {
                tracing::error!("cannot read the alert outbox: {e}");
                MAX_BACKOFF
            }
        };
        tokio::select! {
            () = stop.cancelled() => return,
            () = wake.notified() => {}
            () = tokio::time::sleep(wait.min(MAX_BACKOFF)) => {}
        }
    }
}

/// One batch; true when it was full (more may be due).
async fn deliver_due(
    store: &Store,
    client: &reqwest::Client,
    stop: &CancellationToken,
) -> Result<bool, ApiError> {
    let due = store.due(now_ms(), BATCH)?;
    let full = due.len() == BATCH as usize;
    for d in due {
        let outcome = tokio::select! {
            () = stop.cancelled() => return Ok(false),
            outcome = send(client, &d) => outcome,
        };
        let attempts = d.attempts + 1;
        match outcome {
            Ok(status) => {
                store.delivered(d.id, status, now_ms())?;
                tracing::info!(
                    delivery = d.id,
                    attempts,
                    status,
                    "alert delivered to {}",
                    d.url
                );
            }
            Err((status, error)) => {
                let wait = backoff(attempts);
                store.attempt_failed(d.id, status, &error, now_ms() + wait.as_millis() as u64)?;
                tracing::warn!(
                    delivery = d.id,
                    attempts,
                    "alert delivery to {} failed: {error}; next try in {} s",
                    d.url,
                    wait.as_secs()
                );
            }
        }
    }
    Ok(full)
}

/// One POST: the 2xx status, or the status (when there was an answer) and what went wrong.
async fn send(client: &reqwest::Client, d: &Due) -> Result<u16, (Option<u16>, String)> {
    let sent = client
        .post(&d.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signature(&d.secret, d.payload.as_bytes()))
        .header(DELIVERY_HEADER, d.id.to_string())
        .header(TIMESTAMP_HEADER, d.at_ms.to_string())
        .body(d.payload.clone())
        .send()
        .await;
    match sent {
        Ok(answer) if answer.status().is_success() => Ok(answer.status().as_u16()),
        Ok(answer) => {
            let status = answer.status();
            Err((
                Some(status.as_u16()),
                format!("the receiver answered {status}"),
            ))
        }
        Err(e) => Err((e.status().map(|s| s.as_u16()), describe(e))),
    }
}

/// The error with its causes, without the URL (shown beside it already).
fn describe(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_in_hex() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[tokio::test]
    async fn a_closed_port_is_a_failed_attempt_that_says_why() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let due = Due {
            id: 1,
            payload: "{}".into(),
            attempts: 0,
            at_ms: 0,
            url: format!("http://127.0.0.1:{port}/hook"),
            secret: "0123456789abcdef".into(),
        };
        let (status, why) = send(&client().unwrap(), &due).await.unwrap_err();
        assert_eq!(status, None);
        assert!(why.contains("onnect"), "{why}");
        assert!(
            !why.contains("127.0.0.1"),
            "the URL is shown beside it: {why}"
        );
    }

    #[test]
    fn backoff_doubles_up_to_a_minute() {
        let secs: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX).as_secs(), 60);
    }
}
