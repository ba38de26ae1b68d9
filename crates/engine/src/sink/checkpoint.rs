//! Where the target stands in the source's replication stream, kept in the target itself in
//! `__ferry:checkpoint:<task>` (db 0) and written in the same MULTI/EXEC as the writes it
//! covers, so a crash leaves the target exactly at a checkpoint it names.
//!
//! The value is text: `<replid> <offset> <db>` once the stream is being applied (`db` is the
//! db the source had selected at `offset`, which a continued stream does not repeat), or
//! `<replid> loading` while a snapshot is being copied (a target holding part of a snapshot
//! cannot be continued). When bytes with no write in them (pings, sentinels' hellos) follow
//! the last write, the position of that write is kept too: `<replid> <offset> <db>
//! <write offset> <write db>`. A replica promoted in a failover may never have received those
//! bytes from its old master; the stream can still be continued from the last write.

use std::fmt;

use crate::pipeline::entry::OWN_KEY_PREFIX;

/// What a checkpoint says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Checkpoint {
    /// The stream of `replid` is applied up to `offset` (inclusive), with `db` selected.
    Applied {
        replid: String,
        offset: u64,
        db: u32,
        /// Where the last write ended (offset, db), when only writeless bytes follow it.
        last_write: Option<(u64, u32)>,
    },
    /// A full copy from `replid` was started and did not finish.
    Loading { replid: String },
}

impl Checkpoint {
    /// The key for a task named `task`.
    pub fn key(task: &str) -> Vec<u8> {
        [OWN_KEY_PREFIX, b"checkpoint:", task.as_bytes()].concat()
    }

    pub fn parse(value: &[u8]) -> Option<Checkpoint> {
        let text = std::str::from_utf8(value).ok()?;
        let mut parts = text.split(' ');
        let replid = parts.next().filter(|r| valid_replid(r))?.to_string();
        let checkpoint = match (parts.next()?, parts.next()) {
            ("loading", None) => Checkpoint::Loading { replid },
            (offset, Some(db)) => {
                let offset = offset.parse().ok()?;
                let last_write = match (parts.next(), parts.next()) {
                    (None, _) => None,
                    (Some(w), Some(wdb)) => Some((w.parse().ok()?, wdb.parse().ok()?)),
                    (Some(_), None) => return None,
                };
                if last_write.is_some_and(|(w, _)| w > offset) {
                    return None;
                }
                Checkpoint::Applied {
                    replid,
                    offset,
                    db: db.parse().ok()?,
                    last_write,
                }
            }
            _ => return None,
        };
        parts.next().is_none().then_some(checkpoint)
    }
}

impl fmt::Display for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Checkpoint::Applied {
                replid,
                offset,
                db,
                last_write: None,
            } => write!(f, "{replid} {offset} {db}"),
            Checkpoint::Applied {
                replid,
                offset,
                db,
                last_write: Some((w, wdb)),
            } => write!(f, "{replid} {offset} {db} {w} {wdb}"),
            Checkpoint::Loading { replid } => write!(f, "{replid} loading"),
        }
    }
}

/// A replication id is 40 hex characters.
fn valid_replid(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "8de1787ba490483314a4d30f1c628bc5025eb761";

    #[test]
    fn round_trips_and_rejects_garbage() {
        for c in [
            Checkpoint::Applied {
                replid: ID.into(),
                offset: 1234,
                db: 3,
                last_write: None,
            },
            Checkpoint::Applied {
                replid: ID.into(),
                offset: 1234,
                db: 3,
                last_write: Some((1200, 0)),
            },
            Checkpoint::Loading { replid: ID.into() },
        ] {
            assert_eq!(Checkpoint::parse(c.to_string().as_bytes()), Some(c));
        }
        for bad in [
            "",
            "x 1 0",
            &format!("{ID} 1"),
            &format!("{ID} 1 0 9"),
            &format!("{ID} 1 0 9 0"),
            &format!("{ID} -1 0"),
        ] {
            assert_eq!(Checkpoint::parse(bad.as_bytes()), None, "{bad}");
        }
        assert_eq!(Checkpoint::key("a:1"), b"__ferry:checkpoint:a:1");
    }
}
