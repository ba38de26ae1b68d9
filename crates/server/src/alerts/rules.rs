//! An alert rule: what it watches (`Kind`), on which task (or every task), the threshold and
//! how long the condition must hold, and where the webhook goes. Validation answers one line
//! naming the field and what to give instead.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;

/// The longest `for_seconds` taken: a week.
pub const MAX_FOR_SECONDS: u64 = 7 * 24 * 3600;
/// A shorter secret would be guessable; a longer one is surely a mistake (a file pasted).
const SECRET_LEN: std::ops::RangeInclusive<usize> = 16..=1024;

/// What a rule watches. Each is a number per task, compared with `threshold` (above it is
/// bad), except `failed`, which has none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The task is in the `failed` state (value 1, else 0).
    Failed,
    /// The p99 of source-write-to-target latency over the last minute, of the worst shard or
    /// target, in ms (unknown while no write was confirmed in that minute).
    LatencyMs,
    /// Bytes of the source's stream read but not yet applied, of the worst shard or target.
    LagBytes,
    /// How long the oldest write not yet applied has been waiting, in seconds (as seen by
    /// the server's once-a-second look at the offsets), of the worst shard or target.
    LagSeconds,
    /// Differences found: the last verification's (POST /tasks/{id}/verify) or the live
    /// verification's mismatched keys, whichever is larger.
    VerifyMismatches,
    /// Minutes the task has been in its full copy (`full_sync`).
    FullCopyMinutes,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Failed => "failed",
            Kind::LatencyMs => "latency_ms",
            Kind::LagBytes => "lag_bytes",
            Kind::LagSeconds => "lag_seconds",
            Kind::VerifyMismatches => "verify_mismatches",
            Kind::FullCopyMinutes => "full_copy_minutes",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        [
            Kind::Failed,
            Kind::LatencyMs,
            Kind::LagBytes,
            Kind::LagSeconds,
            Kind::VerifyMismatches,
            Kind::FullCopyMinutes,
        ]
        .into_iter()
        .find(|k| k.name() == name)
    }

    /// Whether `value` is bad under `threshold`.
    pub fn breached(self, value: f64, threshold: Option<f64>) -> bool {
        match self {
            Kind::Failed => value >= 1.0,
            _ => value > threshold.unwrap_or(0.0),
        }
    }
}

/// A new rule, as `POST /api/v1/alerts` takes it.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRule {
    /// The task watched; absent: every task, also those created later.
    #[schema(example = "t-3f9a1c2b7d4e")]
    pub task: Option<String>,
    pub kind: Kind,
    /// Required for every kind but `failed` (which takes none): a number ≥ 0; the alert fires
    /// when the value seen is above it.
    #[schema(example = 1048576)]
    pub threshold: Option<f64>,
    /// How long the condition must hold before the alert fires, and be gone before it
    /// resolves (default 0: at the next look, once a second). At most a week.
    #[serde(default)]
    #[schema(example = 30)]
    pub for_seconds: u64,
    /// Where each firing and resolution is POSTed: an http:// or https:// URL, without a
    /// user or password in it.
    #[schema(example = "https://alerts.example.com/ferry")]
    pub webhook_url: String,
    /// Required, 16 to 1024 characters: the key of the HMAC-SHA256 signature of every body
    /// (header `X-Ferry-Signature: sha256=<hex>`). Never shown again.
    #[schema(example = "a-long-random-shared-secret")]
    pub secret: String,
}

/// A stored rule. The secret is only read by the delivery worker.
#[derive(Clone, Debug, PartialEq)]
pub struct Rule {
    pub id: String,
    pub task: Option<String>,
    pub kind: Kind,
    pub threshold: Option<f64>,
    pub for_seconds: u64,
    pub webhook_url: String,
    pub created_ms: u64,
}

impl NewRule {
    /// Checks every field but `task` (the caller knows the tasks); the first problem found is
    /// the error.
    pub fn validate(&self) -> Result<(), ApiError> {
        let bad = |m: String| Err(ApiError::BadRequest(m));
        match (self.kind, self.threshold) {
            (Kind::Failed, Some(_)) => {
                return bad(
                    "threshold: a failed rule takes none (it fires when the task is failed); leave it out".into(),
                );
            }
            (Kind::Failed, None) => {}
            (kind, None) => {
                return bad(format!(
                    "threshold: required for a {} rule (a number ≥ 0, in {})",
                    kind.name(),
                    unit(kind)
                ));
            }
            (_, Some(t)) if !t.is_finite() || t < 0.0 => {
                return bad(format!("threshold: {t} is not a number ≥ 0"));
            }
            _ => {}
        }
        if self.for_seconds > MAX_FOR_SECONDS {
            return bad(format!(
                "for_seconds: {} is longer than a week ({MAX_FOR_SECONDS})",
                self.for_seconds
            ));
        }
        check_url(&self.webhook_url)?;
        let chars = self.secret.chars().count();
        if !SECRET_LEN.contains(&chars) {
            return bad(format!(
                "secret: {chars} characters; give {} to {} (e.g. the output of `openssl rand -hex 32`): it signs every webhook body",
                SECRET_LEN.start(),
                SECRET_LEN.end()
            ));
        }
        Ok(())
    }
}

fn unit(kind: Kind) -> &'static str {
    match kind {
        Kind::Failed => "-",
        Kind::LatencyMs => "ms",
        Kind::LagBytes => "bytes",
        Kind::LagSeconds => "seconds",
        Kind::VerifyMismatches => "keys",
        Kind::FullCopyMinutes => "minutes",
    }
}

fn check_url(text: &str) -> Result<(), ApiError> {
    let bad = |why: &str| {
        Err(ApiError::BadRequest(format!(
            "webhook_url {text:?}: {why}; give an http:// or https:// URL such as https://alerts.example.com/ferry"
        )))
    };
    let url = match reqwest::Url::parse(text) {
        Ok(url) => url,
        Err(e) => return bad(&e.to_string()),
    };
    if !matches!(url.scheme(), "http" | "https") {
        return bad(&format!(
            "the scheme {:?} is not http or https",
            url.scheme()
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return bad("it names no host");
    }
    // It is shown by the API and in logs: no credentials in it (the secret signs instead).
    if !url.username().is_empty() || url.password().is_some() {
        return bad("it holds a user or password, which the API would show");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(kind: Kind, threshold: Option<f64>, url: &str, secret: &str) -> NewRule {
        NewRule {
            task: None,
            kind,
            threshold,
            for_seconds: 0,
            webhook_url: url.into(),
            secret: secret.into(),
        }
    }

    const URL: &str = "http://127.0.0.1:9/hook";
    const SECRET: &str = "0123456789abcdef";

    #[test]
    fn each_bad_field_is_named() {
        let cases = [
            (rule(Kind::Failed, Some(1.0), URL, SECRET), "takes none"),
            (rule(Kind::LagBytes, None, URL, SECRET), "required"),
            (rule(Kind::LagBytes, Some(-1.0), URL, SECRET), "≥ 0"),
            (rule(Kind::LagBytes, Some(f64::NAN), URL, SECRET), "≥ 0"),
            (
                rule(Kind::Failed, None, "ftp://127.0.0.1/x", SECRET),
                "scheme",
            ),
            (rule(Kind::Failed, None, "not a url", SECRET), "webhook_url"),
            (
                rule(Kind::Failed, None, "http://u:p@127.0.0.1/x", SECRET),
                "password",
            ),
            (rule(Kind::Failed, None, URL, "short"), "secret: 5"),
        ];
        for (r, needle) in cases {
            let err = r.validate().unwrap_err();
            assert!(matches!(err, ApiError::BadRequest(_)), "{err}");
            assert!(err.to_string().contains(needle), "{err} / {needle}");
        }
        let mut long = rule(Kind::LagSeconds, Some(5.0), URL, SECRET);
        long.for_seconds = MAX_FOR_SECONDS + 1;
        assert!(long.validate().unwrap_err().to_string().contains("week"));
        rule(Kind::Failed, None, "https://127.0.0.1/x", SECRET)
            .validate()
            .unwrap();
        rule(Kind::LagBytes, Some(0.0), URL, SECRET)
            .validate()
            .unwrap();
    }

    #[test]
    fn kinds_round_trip_and_compare() {
        for name in [
            "failed",
            "latency_ms",
            "lag_bytes",
            "lag_seconds",
            "verify_mismatches",
            "full_copy_minutes",
        ] {
            let kind = Kind::parse(name).unwrap();
            assert_eq!(kind.name(), name);
            assert_eq!(serde_json::to_value(kind).unwrap(), name);
        }
        assert!(Kind::Failed.breached(1.0, None));
        assert!(!Kind::Failed.breached(0.0, None));
        assert!(Kind::LagBytes.breached(11.0, Some(10.0)));
        assert!(!Kind::LagBytes.breached(10.0, Some(10.0)));
    }
}
