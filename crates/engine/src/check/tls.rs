//! `tls`: how long the server certificate of each `rediss://` endpoint stays valid. A
//! handshake that fails (a wrong CA, a wrong name, an expired certificate) already fails
//! `reachable` with the error `sync` gives; this item looks ahead, so that a certificate about
//! to expire is renewed before it breaks a running sync. Plain `redis://` endpoints are skipped.

use std::time::{SystemTime, UNIX_EPOCH};

use x509_parser::prelude::{FromDer, X509Certificate};

use super::reach::Side;
use super::{Finding, Item};
use crate::net::tls::utc;

/// A certificate expiring sooner than this is a warning.
const WARN_DAYS: i64 = 30;
const DAY: i64 = 86_400;

/// One finding per TLS side: the node whose certificate expires first decides it.
pub(super) fn check(side: &Side) -> Option<Finding> {
    side.endpoint.tls.as_ref()?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let mut worst: Option<Finding> = None;
    let mut lines = Vec::new();
    for conn in &side.nodes {
        let finding = match conn.peer_certificate() {
            None => Finding::warn(
                Item::Tls,
                format!(
                    "{} {}: the server sent no certificate",
                    side.label, conn.addr
                ),
                "check the server's tls-cert-file",
            ),
            Some(der) => match not_after(&der) {
                Ok(until) => judge(&format!("{} {}", side.label, conn.addr), until, now),
                Err(why) => Finding::warn(
                    Item::Tls,
                    format!(
                        "{} {}: the server's certificate cannot be read ({why})",
                        side.label, conn.addr
                    ),
                    "check its expiry date by hand (openssl x509 -enddate)",
                ),
            },
        };
        if finding.result == super::Outcome::Pass {
            lines.push(finding.found);
        } else if worst.as_ref().is_none_or(|w| finding.result > w.result) {
            worst = Some(finding);
        }
    }
    Some(worst.unwrap_or_else(|| Finding::pass(Item::Tls, lines.join("; "))))
}

/// The certificate's notAfter, in seconds since 1970.
fn not_after(der: &[u8]) -> Result<i64, String> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
    Ok(cert.validity().not_after.timestamp())
}

/// Expired: fail; within `WARN_DAYS`: warn; else pass.
fn judge(name: &str, until: i64, now: i64) -> Finding {
    let date = utc(until.max(0) as u64);
    let renew = "renew the server's certificate (tls-cert-file) and reload it (CONFIG SET tls-cert-file ...)";
    if until <= now {
        return Finding::fail(
            Item::Tls,
            format!("{name}: the server's certificate expired on {date}"),
            renew,
        );
    }
    let days = (until - now) / DAY;
    if days < WARN_DAYS {
        return Finding::warn(
            Item::Tls,
            format!(
                "{name}: the server's certificate expires on {date}, in {days} days: a sync running then stops"
            ),
            renew,
        );
    }
    Finding::pass(
        Item::Tls,
        format!("{name}: certificate valid until {date} ({days} days)"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::Outcome;

    #[test]
    fn expired_fails_soon_warns_later_passes() {
        let now = 1_700_000_000;
        assert_eq!(judge("t", now - 1, now).result, Outcome::Fail);
        let soon = judge("t", now + 29 * DAY, now);
        assert_eq!(soon.result, Outcome::Warn);
        assert!(soon.found.contains("in 29 days"), "{}", soon.found);
        assert_eq!(judge("t", now + 31 * DAY, now).result, Outcome::Pass);
    }

    #[test]
    fn unreadable_certificates_are_an_error_not_a_panic() {
        assert!(not_after(b"").is_err());
        assert!(not_after(&[0x30, 0x82, 0xff, 0xff, 0x01]).is_err());
    }
}
