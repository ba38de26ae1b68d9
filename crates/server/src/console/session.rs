//! Console sign-in: the API token given once in a form buys a session, an HttpOnly,
//! SameSite=Strict cookie holding a random id. Sessions are kept in memory (a restarted server
//! signs everyone out) and end 12 hours after sign-in or at sign-out. Each session has its own
//! CSRF token, handed to the page's script, which sends it as `X-CSRF-Token` with every request
//! that changes something: a cookie alone never changes state.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, header};

use crate::tasks::random_hex;

pub const COOKIE: &str = "ferry_session";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// More live sessions than anyone signs in to: beyond it the oldest go first, so a script
/// that signs in in a loop cannot grow the server's memory.
const MAX_SESSIONS: usize = 1000;

struct Session {
    csrf: String,
    expires: Instant,
}

/// What a request's cookie says.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No cookie, or one of no live session.
    None,
    /// A live session; for a state-changing request, its CSRF token came with it.
    Allowed,
    /// A live session, but a state-changing request without its CSRF token.
    NoCsrf,
}

#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<String, Session>>,
}

/// `a == b` in time that does not depend on where they differ.
pub fn same(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Methods that only read: a page may load them with its cookie alone.
fn reads_only(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The session id in the request's cookies.
pub fn cookie_id(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.live.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session: its id (for the cookie) and its CSRF token (for the page).
    pub fn open(&self) -> (String, String) {
        let id = random_hex(32);
        let csrf = random_hex(32);
        let now = Instant::now();
        let mut live = self.live();
        live.retain(|_, s| s.expires > now);
        while live.len() >= MAX_SESSIONS {
            let Some(oldest) = live
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            live.remove(&oldest);
        }
        live.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + LIFETIME,
            },
        );
        (id, csrf)
    }

    /// The CSRF token of the request's live session.
    pub fn csrf(&self, headers: &HeaderMap) -> Option<String> {
        let id = cookie_id(headers)?;
        let live = self.live();
        let found = live.iter().find(|(k, _)| same(k, id))?.1;
        (found.expires > Instant::now()).then(|| found.csrf.clone())
    }

    /// Whether the request's cookie may do what its method does.
    pub fn check(&self, method: &Method, headers: &HeaderMap) -> Verdict {
        let Some(csrf) = self.csrf(headers) else {
            return Verdict::None;
        };
        if reads_only(method) {
            return Verdict::Allowed;
        }
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        match same(sent, &csrf) {
            true => Verdict::Allowed,
            false => Verdict::NoCsrf,
        }
    }

    pub fn close(&self, headers: &HeaderMap) {
        if let Some(id) = cookie_id(headers) {
            self.live().retain(|k, _| !same(k, id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(cookie: &str, csrf: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_str(cookie).unwrap());
        if let Some(c) = csrf {
            h.insert(CSRF_HEADER, HeaderValue::from_str(c).unwrap());
        }
        h
    }

    #[test]
    fn a_cookie_reads_but_changes_nothing_without_its_csrf_token() {
        let sessions = Sessions::default();
        let (id, csrf) = sessions.open();
        let cookie = format!("other=1; {COOKIE}={id}");
        assert_eq!(
            sessions.check(&Method::GET, &headers(&cookie, None)),
            Verdict::Allowed
        );
        assert_eq!(
            sessions.check(&Method::POST, &headers(&cookie, None)),
            Verdict::NoCsrf
        );
        let (_, other_csrf) = sessions.open();
        assert_eq!(
            sessions.check(&Method::DELETE, &headers(&cookie, Some(&other_csrf))),
            Verdict::NoCsrf
        );
        assert_eq!(
            sessions.check(&Method::DELETE, &headers(&cookie, Some(&csrf))),
            Verdict::Allowed
        );
        // A made-up id is no session; a closed one is none either.
        assert_eq!(
            sessions.check(&Method::GET, &headers(&format!("{COOKIE}=abc"), None)),
            Verdict::None
        );
        sessions.close(&headers(&cookie, None));
        assert_eq!(
            sessions.check(&Method::GET, &headers(&cookie, None)),
            Verdict::None
        );
    }
}
