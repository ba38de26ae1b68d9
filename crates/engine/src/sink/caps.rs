//! What a target can take: the newest RDB encoding its RESTORE reads, and the command options
//! that came with later versions. Found on connect, so a newer source's values can be rewritten
//! into plain commands for an older target instead of being refused.

use ferry_resp::Frame;

use crate::error::Result;
use crate::net::conn::Conn;

/// Key ferry writes briefly to learn the target's RDB version; ferry's own prefix.
const PROBE_KEY: &[u8] = b"__ferry:probe:rdb-version";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caps {
    /// Server version from INFO (`redis_version`, which Valkey also reports).
    pub version: (u32, u32, u32),
    /// Newest RDB version its RESTORE accepts.
    pub rdb_version: u16,
    /// Its `databases` setting (`CONFIG GET`, else found with SELECT); None only for a
    /// target that is assumed, never asked.
    pub databases: Option<u32>,
}

impl Caps {
    /// A target as new as this build knows: every feature, every encoding.
    pub const LATEST: Caps = Caps {
        version: (99, 0, 0),
        rdb_version: u16::MAX,
        databases: None,
    };

    /// Asks the target: its version from INFO, its RDB version from the trailer of a DUMP of a
    /// scratch key (exact, whatever the fork), else from a table of releases.
    pub async fn probe(conn: &mut Conn) -> Result<Caps> {
        let version = conn.version().await?;
        let dumped = async {
            conn.request_ok(&[&b"SET"[..], PROBE_KEY, b"x", b"PX", b"60000"])
                .await?;
            let dump = conn.request_ok(&[&b"DUMP"[..], PROBE_KEY]).await;
            conn.request_ok(&[&b"DEL"[..], PROBE_KEY]).await?;
            dump
        }
        .await;
        let rdb_version = match dumped {
            Ok(Frame::Bulk(payload)) if payload.len() >= 10 => {
                let at = payload.len() - 10;
                u16::from_le_bytes([payload[at], payload[at + 1]])
            }
            _ => rdb_version_of(version),
        };
        let databases = match conn
            .request(&[&b"CONFIG"[..], b"GET", b"databases"])
            .await?
        {
            Frame::Array(items) => items
                .get(1)
                .and_then(|f| f.as_bytes())
                .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
            _ => None,
        };
        // Managed services often refuse CONFIG: SELECT tells too. A write into a db the
        // target lacks must be refused before it is sent (see `Encoder::check_db`).
        let databases = match databases {
            Some(n) => Some(n),
            None => Some(count_dbs(conn).await?),
        };
        Ok(Caps {
            version,
            rdb_version,
            databases,
        })
    }

    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.version.0, self.version.1) >= (major, minor)
    }

    /// `RESTORE ... ABSTTL`, `IDLETIME`, `FREQ` (5.0).
    pub fn restore_abs_ttl(&self) -> bool {
        self.at_least(5, 0)
    }

    /// `XGROUP CREATECONSUMER` (6.2).
    pub fn xgroup_createconsumer(&self) -> bool {
        self.at_least(6, 2)
    }

    /// `XSETID ... ENTRIESADDED ... MAXDELETEDID`, `XGROUP CREATE ... ENTRIESREAD` (7.0).
    pub fn stream_counters(&self) -> bool {
        self.at_least(7, 0)
    }

    /// Function libraries (7.0).
    pub fn functions(&self) -> bool {
        self.at_least(7, 0)
    }

    /// Per-field hash expiry, `HPEXPIREAT` (Redis 7.4; Valkey 9.0, which reports
    /// `redis_version` 7.2.4 but writes RDB 80).
    pub fn hash_field_ttl(&self) -> bool {
        self.at_least(7, 4) || self.rdb_version >= 80
    }
}

/// How many dbs the server has, found with SELECT (doubling, then halving), back on db 0.
async fn count_dbs(conn: &mut Conn) -> Result<u32> {
    let mut selectable = async |db: u32| -> Result<bool> {
        let n = db.to_string();
        Ok(!matches!(
            conn.request(&[&b"SELECT"[..], n.as_bytes()]).await?,
            Frame::Error(_)
        ))
    };
    // db `lo` exists, db `hi` does not.
    let (mut lo, mut hi) = (0u32, 1u32);
    while hi < 1 << 30 && selectable(hi).await? {
        lo = hi;
        hi *= 2;
    }
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if selectable(mid).await? {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    conn.request_ok(&[&b"SELECT"[..], b"0"]).await?;
    Ok(lo + 1)
}

/// RDB version written by each Redis release line (Valkey up to 8.x reports 7.2.4 and writes 11).
pub(crate) fn rdb_version_of(version: (u32, u32, u32)) -> u16 {
    match (version.0, version.1) {
        (0..=2, _) => 6,
        (3, 0..=1) => 6,
        (3, _) => 7,
        (4, _) => 8,
        (5, _) | (6, _) => 9,
        (7, 0..=1) => 10,
        (7, 2..=3) => 11,
        (7, _) | (8, 0..=5) => 12,
        _ => 13,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_table_matches_what_the_servers_write() {
        assert_eq!(rdb_version_of((2, 8, 24)), 6);
        assert_eq!(rdb_version_of((3, 2, 12)), 7);
        assert_eq!(rdb_version_of((4, 0, 14)), 8);
        assert_eq!(rdb_version_of((5, 0, 6)), 9);
        assert_eq!(rdb_version_of((6, 2, 14)), 9);
        assert_eq!(rdb_version_of((7, 0, 15)), 10);
        assert_eq!(rdb_version_of((7, 2, 4)), 11);
        assert_eq!(rdb_version_of((7, 4, 1)), 12);
        assert_eq!(rdb_version_of((8, 0, 2)), 12);
        assert_eq!(rdb_version_of((8, 4, 0)), 12);
        assert_eq!(rdb_version_of((8, 6, 0)), 13);
    }

    #[test]
    fn features_follow_the_version() {
        let old = Caps {
            version: (5, 0, 6),
            rdb_version: 9,
            databases: None,
        };
        assert!(old.restore_abs_ttl() && !old.xgroup_createconsumer() && !old.functions());
        let v4 = Caps {
            version: (4, 0, 14),
            rdb_version: 8,
            databases: None,
        };
        assert!(!v4.restore_abs_ttl());
        assert!(Caps::LATEST.hash_field_ttl() && Caps::LATEST.stream_counters());
    }
}
