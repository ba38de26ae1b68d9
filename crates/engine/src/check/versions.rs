//! `versions`: a target older than the source. Values in an encoding the target cannot read
//! are rewritten as plain commands (slower, but they arrive). Function libraries a target
//! before 7.0 cannot hold are dropped by the sync, counted: a warning. Streams a target before
//! 5.0 cannot hold fail.

use bytes::Bytes;
use ferry_resp::Frame;

use super::reach::Side;
use super::{Finding, Item};
use crate::error::Result;
use crate::net::conn::Conn;
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
}

pub(super) async fn check(source: &mut Side, target: &Side) -> Result<Finding> {
    let mut holds = Holds::default();
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
            streams: None,
        };
        assert_eq!(judge((7, 0, 15), (6, 2, 14), &functions).0, Outcome::Warn);
        let streams = Holds {
            functions: false,
            streams: Some(true),
        };
        assert_eq!(judge((6, 2, 14), (4, 0, 14), &streams).0, Outcome::Fail);
        let unseen = Holds {
            functions: false,
            streams: Some(false),
        };
        assert_eq!(judge((6, 2, 14), (4, 0, 14), &unseen).0, Outcome::Warn);
    }
}
