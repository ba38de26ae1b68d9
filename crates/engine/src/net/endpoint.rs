//! Server addresses as the Redis ecosystem writes them: `redis://[user:pass@]host:port`, and
//! `rediss://` for TLS.

use std::fmt;

use std::sync::Arc;

use crate::error::Error;
use crate::net::tls::{Tls, TlsSection};

/// TLS settings that read no file (the public CAs), for checking a URL without loading.
static NO_TLS_FILES: TlsSection = TlsSection {
    ca_file: None,
    cert_file: None,
    key_file: None,
    server_name: None,
    min_version: None,
};

/// Where a server is, how to log in to it and whether to speak TLS. Built only from a checked
/// URL. Cheap to clone: the TLS config inside is shared.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// Set for `rediss://`.
    pub tls: Option<Tls>,
    /// Set for `redis+sentinel://`: the master is whichever server these sentinels name at
    /// connect time; `host` and `port` are then the first sentinel's.
    pub sentinel: Option<Arc<Sentinels>>,
}

impl Endpoint {
    /// Parses a `redis://` or `rediss://` URL (TLS with the public CAs and no client
    /// certificate). `role` ("source", "target") names the setting in errors.
    pub fn parse(role: &'static str, text: &str) -> Result<Endpoint, Error> {
        Endpoint::parse_with_tls(role, text, &TlsSection::default())
    }

    /// Parses a URL; a `rediss://` one uses these TLS settings, whose files are read and
    /// checked here. Settings with a `redis://` URL are an error: they would be ignored.
    pub fn parse_with_tls(
        role: &'static str,
        text: &str,
        tls: &TlsSection,
    ) -> Result<Endpoint, Error> {
        Endpoint::parse_inner(role, text, tls, true)
    }

    /// Parses a URL and checks that TLS settings go with a TLS URL, without reading their
    /// files: a `rediss://` endpoint from here uses the public CAs, for validation only.
    pub fn parse_unloaded(
        role: &'static str,
        text: &str,
        tls: &TlsSection,
    ) -> Result<Endpoint, Error> {
        Endpoint::parse_inner(role, text, tls, false)
    }

    fn parse_inner(
        role: &'static str,
        text: &str,
        tls: &TlsSection,
        load: bool,
    ) -> Result<Endpoint, Error> {
        let bad = |why: &str| Error::Config(format!("{role} URL {text:?}: {why}"));
        for (scheme, secure) in [("redis+sentinel://", false), ("rediss+sentinel://", true)] {
            if let Some(rest) = text.strip_prefix(scheme) {
                return Endpoint::parse_sentinel(role, rest, secure, tls, load)
                    .map_err(|why| bad(&why));
            }
        }
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
        let secure = match url.scheme() {
            "redis" => false,
            "rediss" => true,
            other => {
                return Err(bad(&format!(
                    "unknown scheme {other:?}; use redis://host:port (rediss:// for TLS)"
                )));
            }
        };
        if !secure && !tls.is_empty() {
            return Err(bad(&format!(
                "TLS settings are given for the {role} but its URL is redis://; write rediss:// to connect with TLS"
            )));
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
                return Err(bad(&db_in_url(role, p.trim_start_matches('/'))));
            }
            p => return Err(bad(&format!("unexpected path {p:?}"))),
        }
        if url.query().is_some() {
            return Err(bad("query parameters are not supported"));
        }
        let tls = if secure {
            Some(Tls::load(role, if load { tls } else { &NO_TLS_FILES })?)
        } else {
            None
        };
        Ok(Endpoint {
            host,
            port,
            username,
            password,
            tls,
            sentinel: None,
        })
    }

    /// `[user:password@]host:port[,host:port...]/master-name`, after the scheme.
    fn parse_sentinel(
        role: &'static str,
        rest: &str,
        secure: bool,
        tls: &TlsSection,
        load: bool,
    ) -> Result<Endpoint, String> {
        let (login, hosts) = match rest.rsplit_once('@') {
            Some((login, hosts)) => (Some(login), hosts),
            None => (None, rest),
        };
        let (username, password) = match login.map(|l| l.split_once(':')) {
            None => (None, None),
            Some(None) => {
                return Err(
                    "a user name needs a password: redis+sentinel://user:password@host:port/master"
                        .into(),
                );
            }
            Some(Some((user, pass))) => {
                let decode = |s: &str, what: &str| {
                    percent_decode(s).map_err(|_| format!("{what} is not valid UTF-8"))
                };
                let user = (!user.is_empty())
                    .then(|| decode(user, "user name"))
                    .transpose()?;
                (user, Some(decode(pass, "password")?))
            }
        };
        let sentinels = Sentinels::parse(hosts)?;
        if !secure && !tls.is_empty() {
            return Err(format!(
                "TLS settings are given for the {role} but its URL is redis+sentinel://; write rediss+sentinel:// to connect with TLS"
            ));
        }
        let tls = if secure {
            Some(
                Tls::load(role, if load { tls } else { &NO_TLS_FILES })
                    .map_err(|e| e.to_string())?,
            )
        } else {
            None
        };
        let (host, port) = sentinels.addrs[0].clone();
        Ok(Endpoint {
            host,
            port,
            username,
            password,
            tls,
            sentinel: Some(Arc::new(sentinels)),
        })
    }

    /// The same login and TLS settings for another server of the same deployment (a cluster
    /// node, a replica a sentinel names). Its certificate is checked against `host` unless a
    /// `server_name` is set.
    pub fn at(&self, host: &str, port: u16) -> Endpoint {
        Endpoint {
            host: host.to_string(),
            port,
            sentinel: None,
            ..self.clone()
        }
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
            .field("tls", &self.tls)
            .finish()
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.sentinel {
            Some(sentinels) => write!(f, "{sentinels}"),
            None => f.write_str(&self.addr()),
        }
    }
}

/// The sentinels watching one master, and its name.
#[derive(Clone, PartialEq, Eq)]
pub struct Sentinels {
    pub addrs: Vec<(String, u16)>,
    pub master: String,
}

impl Sentinels {
    /// Parses what follows `redis+sentinel://` and the optional `user:password@`:
    /// `host:port[,host:port...]/master-name`.
    pub fn parse(hosts_and_name: &str) -> std::result::Result<Sentinels, String> {
        let (hosts, master) = hosts_and_name.split_once('/').ok_or(
            "no master name; write it as redis+sentinel://host:port[,host:port]/master-name",
        )?;
        let master = master.trim_end_matches('/');
        if master.is_empty() || master.contains('/') || master.contains('?') {
            return Err(format!(
                "master name {master:?} is not valid; write it as redis+sentinel://host:port[,host:port]/master-name"
            ));
        }
        let mut addrs = Vec::new();
        for host in hosts.split(',') {
            let (h, p) = match host.rsplit_once(':') {
                Some((h, p)) if !h.ends_with(':') || h.starts_with('[') => (h, p),
                _ => (host, "26379"),
            };
            let h = h.trim_start_matches('[').trim_end_matches(']');
            if h.is_empty() {
                return Err(format!("sentinel address {host:?} has no host"));
            }
            let port: u16 = p
                .parse()
                .map_err(|_| format!("sentinel address {host:?} has no valid port"))?;
            addrs.push((h.to_string(), port));
        }
        Ok(Sentinels {
            addrs,
            master: master.to_string(),
        })
    }
}

/// A db number in a URL is how other clients pick one db; ferry syncs every db to the same
/// number, so the message says which filter setting does what the user meant.
fn db_in_url(role: &str, db: &str) -> String {
    let fix = match role {
        "source" => format!(
            "to sync only db {db}, use --allow-db {db} ([filter] allow_db = [{db}]); to write it into another db, add --db-map {db}=N ([filter] db_map)"
        ),
        _ => format!(
            "to write source db 0 into target db {db}, use --db-map 0={db} ([filter] db_map = {{ \"0\" = {db} }})"
        ),
    };
    format!("no db number in the URL: ferry syncs every db to the db of the same number; {fix}")
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
        assert!(e.tls.is_none());
    }

    #[test]
    fn rediss_means_tls_and_nodes_share_its_config() {
        let e = Endpoint::parse("target", "rediss://:pw@127.0.0.1:6380").unwrap();
        let tls = e.tls.as_ref().expect("TLS for rediss://");
        let node = e.at("127.0.0.1", 7001);
        assert_eq!(node.addr(), "127.0.0.1:7001");
        assert_eq!(node.password.as_deref(), Some("pw"));
        let node_tls = node.tls.as_ref().unwrap();
        assert!(std::sync::Arc::ptr_eq(&tls.config(), &node_tls.config()));
        assert_eq!(
            node_tls.server_name("127.0.0.1").unwrap().to_str(),
            "127.0.0.1"
        );
    }

    #[test]
    fn tls_settings_need_rediss() {
        let section = TlsSection {
            server_name: Some("redis.internal".into()),
            ..TlsSection::default()
        };
        let err = Endpoint::parse_with_tls("source", "redis://h:1", &section)
            .unwrap_err()
            .to_string();
        assert!(err.contains("write rediss://"), "{err}");
        let e = Endpoint::parse_with_tls("source", "rediss://h:1", &section).unwrap();
        let name = e.at("127.0.0.1", 1).tls.unwrap().server_name("127.0.0.1");
        assert_eq!(name.unwrap().to_str(), "redis.internal");
    }

    #[test]
    fn rejects_what_it_cannot_honour() {
        for bad in [
            "127.0.0.1:6379",
            "http://x:1",
            "redis://",
            "redis://h:1/3",
            "redis://alice@h:1",
            "rediss://h:1/0",
        ] {
            let err = Endpoint::parse("source", bad).unwrap_err().to_string();
            assert!(err.starts_with("source URL"), "{bad}: {err}");
        }
    }
}
