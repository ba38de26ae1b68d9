//! `versions`: a target older than the source. Values in an encoding the target cannot read
//! are rewritten as plain commands (slower, but they arrive). Function libraries a target
//! before 7.0 cannot hold are dropped by the sync, counted: a warning. So are the TTLs of hash
//! fields (Redis 7.4) on a target without them: a warning naming how many hashes have them.
//! Streams a target before 5.0 cannot hold fail.

use bytes::Bytes;
use ferry_resp::Frame;

use super::reach::Side;
use super::{Finding, Item};
use crate::error::Result;
use crate::net::conn::Conn;
use crate::net::info::info;
use crate::sink::caps::rdb_version_of;

type Version = (u32, u32, u32);

/// SCAN calls per source node when looking for a stream (a target before 5.0 only).
const STREAM_SCAN_CALLS: usize = 20;

/// What the source holds that only newer targets can take.
#[derive(Debug, Default, PartialEq, Eq)]
struct Holds {
    functions: bool,
    /// Some(true) a stream was seen; Some(false) none in the keys looked at; None not looked.
    streams: Option<bool>,
    /// Hashes with fields that have a TTL of their own (`subexpiry` of the source's `INFO
    /// keyspace`), when the target keeps none.
    field_ttls: u64,
}

pub(super) async fn check(source: &mut Side, target: &mut Side) -> Result<Finding> {
    let mut holds = Holds::default();
    if !keeps_field_ttls(target).await {
        for conn in &mut source.nodes {
            holds.field_ttls += info(conn, "keyspace")
                .await?
                .values()
                .filter_map(|db| db.split(',').find_map(|kv| kv.strip_prefix("subexpiry=")))
                .filter_map(|n| n.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    if target.version.0 < 7 && source.version.0 >= 7 {
        for conn in &mut source.nodes {
            if let Frame::Array(libs) = conn.request(&[&b"FUNCTION"[..], b"LIST"]).await?
                && !libs.is_empty()
            {
                holds.functions = true;
            }
        }
    }
    if target.version.0 < 5 && source.version.0 >= 6 {
        let mut seen = false;
        for conn in &mut source.nodes {
            seen |= has_stream(conn).await?;
        }
        holds.streams = Some(seen);
    }
    let (result, words, fix) = judge(source.version, target.version, &holds);
    let found = format!(
        "source Redis {}, {} Redis {}: {words}",
        text(source.version),
        target.name(),
        text(target.version)
    );
    Ok(match result {
        super::Outcome::Pass => Finding::pass(Item::Versions, found),
        super::Outcome::Warn => Finding::warn(Item::Versions, found, fix),
        super::Outcome::Fail => Finding::fail(Item::Versions, found, fix),
    })
}

/// Whether the target keeps TTLs per hash field: Redis 7.4 and later, or Valkey 9 (which
/// reports `redis_version` 7.2.4).
async fn keeps_field_ttls(target: &mut Side) -> bool {
    if target.version >= (7, 4, 0) {
        return true;
    }
    let Some(conn) = target.nodes.first_mut() else {
        return false;
    };
    info(conn, "server").await.is_ok_and(|f| {
        f.get("valkey_version")
            .and_then(|v| v.split('.').next()?.parse::<u32>().ok())
            .is_some_and(|major| major >= 9)
    })
}

/// Looks for a stream in db 0 with a bounded number of `SCAN ... TYPE stream` calls.
async fn has_stream(conn: &mut Conn) -> Result<bool> {
    let mut cursor = Bytes::from_static(b"0");
    for _ in 0..STREAM_SCAN_CALLS {
        let reply = conn
            .request_ok(&[&b"SCAN"[..], &cursor, b"COUNT", b"1000", b"TYPE", b"stream"])
            .await?;
        let Frame::Array(parts) = reply else {
            return Ok(false);
        };
        let mut parts = parts.into_iter();
        let (Some(next), Some(Frame::Array(keys))) = (parts.next(), parts.next()) else {
            return Ok(false);
        };
        if !keys.is_empty() {
            return Ok(true);
        }
        cursor = next.as_bytes().cloned().unwrap_or_default();
        if &cursor[..] == b"0" {
            break;
        }
    }
    Ok(false)
}

fn text(v: Version) -> String {
    format!("{}.{}.{}", v.0, v.1, v.2)
}

fn judge(source: Version, target: Version, holds: &Holds) -> (super::Outcome, String, String) {
    use super::Outcome::{Fail, Pass, Warn};
    // Ferry goes on without them (each is counted as dropped), so this is a warning.
    if holds.functions {
        return (
            Warn,
            "the source holds function libraries, which a target before 7.0 cannot hold: they are not copied (counted as dropped), and scripts calling them fail on the target".into(),
            "upgrade the target to Redis 7.0 or later for the libraries to be copied".into(),
        );
    }
    match holds.streams {
        Some(true) => {
            return (
                Fail,
                "the source holds streams, which a target before 5.0 cannot hold".into(),
                "upgrade the target to Redis 5.0 or later, or leave streams out ([filter] block_type = [\"stream\"])".into(),
            );
        }
        Some(false) => {
            return (
                Warn,
                "a target before 5.0 cannot hold streams; none was seen in the first keys of the source, but not every key was looked at".into(),
                "upgrade the target to Redis 5.0 or later, or leave streams out ([filter] block_type = [\"stream\"])".into(),
            );
        }
        None => {}
    }
    if holds.field_ttls > 0 {
        return (
            Warn,
            format!(
                "the source holds {} with fields that have a TTL of their own, which a target before 7.4 does not keep: the fields are copied without it (each TTL counted as dropped) and deleted on the target when the source's expiry deletes them (while the sync runs)",
                match holds.field_ttls {
                    1 => "1 hash".to_string(),
                    n => format!("{n} hashes"),
                }
            ),
            "upgrade the target to Redis 7.4 or later (or Valkey 9) for the fields' TTLs to be kept".into(),
        );
    }
    if rdb_version_of(target) < rdb_version_of(source) {
        return (
            Warn,
            format!(
                "the target reads RDB version {} at most, the source writes {}: values are rewritten as commands, which is slower than RESTORE",
                rdb_version_of(target),
                rdb_version_of(source)
            ),
            "upgrade the target to the source's version for the faster path; nothing is needed for the sync to work".into(),
        );
    }
    (
        Pass,
        "the target reads everything the source writes".into(),
        String::new(),
    )
}

#[cfg(test)]
mod tests {
    use super::super::Outcome;
    use super::*;

    #[test]
    fn older_targets_warn_or_fail_by_what_the_source_holds() {
        let none = Holds::default();
        assert_eq!(judge((7, 0, 15), (7, 0, 15), &none).0, Outcome::Pass);
        assert_eq!(judge((6, 2, 14), (7, 0, 15), &none).0, Outcome::Pass);
        assert_eq!(judge((7, 0, 15), (6, 2, 14), &none).0, Outcome::Warn);
        // Same RDB version: nothing to rewrite.
        assert_eq!(judge((6, 2, 14), (5, 0, 6), &none).0, Outcome::Pass);
        let functions = Holds {
            functions: true,
            ..Holds::default()
        };
        assert_eq!(judge((7, 0, 15), (6, 2, 14), &functions).0, Outcome::Warn);
        let streams = Holds {
            streams: Some(true),
            ..Holds::default()
        };
        assert_eq!(judge((6, 2, 14), (4, 0, 14), &streams).0, Outcome::Fail);
        let unseen = Holds {
            streams: Some(false),
            ..Holds::default()
        };
        assert_eq!(judge((6, 2, 14), (4, 0, 14), &unseen).0, Outcome::Warn);
        let field_ttls = Holds {
            field_ttls: 3,
            ..Holds::default()
        };
        let (result, words, _) = judge((8, 0, 2), (7, 0, 15), &field_ttls);
        assert_eq!(result, Outcome::Warn);
        assert!(words.contains("3 hashes with fields"), "{words}");
    }
}
