//! Servers found through Redis Sentinel: `redis+sentinel://[user:password@]host:port[,host:port
//! ...]/master-name`. The sentinels are asked for the master's address at every connect, so a
//! reconnect after a failover reaches the new master.

use std::fmt;

use ferry_resp::Frame;

use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::{Endpoint, Sentinels};

impl Sentinels {
    /// Asks the sentinels in turn for the master's address and returns the first answer. The
    /// login of `endpoint` is tried on a sentinel only if it asks for one.
    pub async fn master_addr(&self, role: Role, endpoint: &Endpoint) -> Result<(String, u16)> {
        let mut errors = Vec::new();
        for (host, port) in &self.addrs {
            let plain = Endpoint {
                username: None,
                password: None,
                ..endpoint.at(host, *port)
            };
            let conn = match Conn::connect_direct(role, &plain).await {
                Err(Error::NoAuth { .. }) => {
                    Conn::connect_direct(role, &endpoint.at(host, *port)).await
                }
                other => other,
            };
            let mut conn = match conn {
                Ok(c) => c,
                Err(e) => {
                    errors.push(e.to_string());
                    continue;
                }
            };
            match conn
                .request(&[
                    &b"SENTINEL"[..],
                    b"get-master-addr-by-name",
                    self.master.as_bytes(),
                ])
                .await
            {
                Ok(Frame::Array(parts)) if parts.len() == 2 => {
                    let master_host = parts[0]
                        .as_bytes()
                        .map(|b| String::from_utf8_lossy(b).into_owned());
                    let master_port = parts[1]
                        .as_bytes()
                        .and_then(|b| std::str::from_utf8(b).ok()?.parse::<u16>().ok());
                    if let (Some(h), Some(p)) = (master_host, master_port) {
                        tracing::debug!(sentinel = %conn.addr, master = %self.master, "{h}:{p}");
                        return Ok((h, p));
                    }
                    errors.push(format!(
                        "sentinel {host}:{port} answered an unreadable address"
                    ));
                }
                Ok(Frame::Null) => errors.push(format!(
                    "sentinel {host}:{port} does not know a master named {:?}",
                    self.master
                )),
                Ok(Frame::Error(msg)) => errors.push(format!(
                    "sentinel {host}:{port}: {}",
                    String::from_utf8_lossy(&msg)
                )),
                Ok(other) => errors.push(format!("sentinel {host}:{port} answered {other}")),
                Err(e) => errors.push(e.to_string()),
            }
        }
        Err(Error::Sentinel {
            role,
            master: self.master.clone(),
            why: errors.join("; "),
        })
    }
}

impl fmt::Display for Sentinels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|(h, p)| format!("{h}:{p}")).collect();
        write!(f, "{} (via sentinel {})", self.master, addrs.join(","))
    }
}

impl fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_hosts_and_master_name() {
        let s = Sentinels::parse("127.0.0.1:26379,127.0.0.1:26380/mymaster").unwrap();
        assert_eq!(
            s.addrs,
            vec![("127.0.0.1".into(), 26379), ("127.0.0.1".into(), 26380)]
        );
        assert_eq!(s.master, "mymaster");
        let s = Sentinels::parse("[::1]:5000,sentinel-b/m").unwrap();
        assert_eq!(
            s.addrs,
            vec![("::1".into(), 5000), ("sentinel-b".into(), 26379)]
        );
        assert_eq!(s.to_string(), "m (via sentinel ::1:5000,sentinel-b:26379)");
        for bad in ["h:1", "h:1/", ":1/m", "h:x/m", "h:1/a/b"] {
            assert!(Sentinels::parse(bad).is_err(), "{bad}");
        }
    }
}
