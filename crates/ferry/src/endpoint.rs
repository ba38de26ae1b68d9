//! Server addresses as the Redis ecosystem writes them: `redis://[user:pass@]host:port[/db]`.

use std::fmt;

use crate::error::Error;

/// Where a server is and how to log in to it. Built only from a checked URL.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl Endpoint {
    /// Parses a `redis://` URL. `role` ("source", "target") names the setting in errors.
    pub fn parse(role: &'static str, text: &str) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::Config(format!("{role} URL {text:?}: {why}"));
        if !text.contains("://") {
            return Err(bad(
                "no scheme; write it as redis://[user:password@]host:port",
            ));
        }
        let url = url::Url::parse(text).map_err(|e| {
            bad(&format!(
                "{e}; write it as redis://[user:password@]host:port"
            ))
        })?;
        match url.scheme() {
            "redis" => {}
            "rediss" => {
                return Err(bad(
                    "TLS (rediss://) is not supported by this build yet; use redis://",
                ));
            }
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?}; use redis://host:port"
                )));
            }
        }
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("no host; write it as redis://host:port"))?;
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = url.port().unwrap_or(6379);
        let password = match url.password() {
            Some(p) => Some(percent_decode(p).map_err(|_| bad("password is not valid UTF-8"))?),
            None => None,
        };
        let username = match url.username() {
            "" => None,
            u => Some(percent_decode(u).map_err(|_| bad("user name is not valid UTF-8"))?),
        };
        if username.is_some() && password.is_none() {
            return Err(bad(
                "a user name needs a password: redis://user:password@host:port",
            ));
        }
        match url.path() {
            "" | "/" => {}
            p if p.trim_start_matches('/').parse::<u32>().is_ok() => {
                return Err(bad(
                    "a db in the URL is not supported: ferry syncs every db to the same db number",
                ));
            }
            p => return Err(bad(&format!("unexpected path {p:?}"))),
        }
        if url.query().is_some() {
            return Err(bad("query parameters are not supported"));
        }
        Ok(Endpoint {
            host,
            port,
            username,
            password,
        })
    }

    /// The same login and settings for another server (a cluster node, a promoted replica).
    pub fn with_addr(&self, host: String, port: u16) -> Endpoint {
        Endpoint {
            host,
            port,
            ..self.clone()
        }
    }

    /// Whether connections use TLS.
    pub fn is_tls(&self) -> bool {
        false
    }

    /// `host:port`, for connecting and for messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
            if let Some(v) = hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// Never prints the password.
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("addr", &self.addr())
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.addr())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_auth_forms() {
        let e = Endpoint::parse("source", "redis://127.0.0.1:7000").unwrap();
        assert_eq!(e.addr(), "127.0.0.1:7000");
        assert_eq!(e.password, None);
        let e = Endpoint::parse("source", "redis://:p%40ss@localhost").unwrap();
        assert_eq!(e.port, 6379);
        assert_eq!(e.password.as_deref(), Some("p@ss"));
        assert_eq!(e.username, None);
        let e = Endpoint::parse("target", "redis://alice:secret@[::1]:6380").unwrap();
        assert_eq!(e.addr(), "[::1]:6380");
        assert_eq!(e.username.as_deref(), Some("alice"));
        assert!(!format!("{e:?}").contains("secret"));
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for bad in [
            "127.0.0.1:6379",
            "http://x:1",
            "redis://",
            "redis://h:1/3",
            "redis://alice@h:1",
            "rediss://h:1",
        ] {
            let err = Endpoint::parse("source", bad).unwrap_err().to_string();
            assert!(err.starts_with("source URL"), "{bad}: {err}");
        }
    }
}
