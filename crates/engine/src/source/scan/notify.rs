//! Keyspace notifications: which keys changed. The source publishes the name of every key a
//! command touches on `__keyspace@<db>__:<key>`; ferry listens on a connection of its own and
//! keeps the names in a set until the reader gets to them, so a key written a thousand times
//! meanwhile is read once. Pub/sub delivers at most once: a subscription that drops (the link,
//! or the source's output buffer limit for pub/sub clients) may have lost names, and the one
//! way to find them again is to read everything again, which the owner of the set is told.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use ferry_resp::Frame;
use indexmap::IndexMap;
use tokio::sync::Notify;

use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::pipeline::entry::OWN_KEY_PREFIX;

/// The event classes ferry needs: `K` (keyspace channel) and `A` (every command class); `E`
/// or `m`/`n`, when set, are kept.
const NEEDED: &str = "KA";

/// Most key-name bytes held before the set is given up for a rescan: bounds memory whatever
/// the write rate.
const MAX_PENDING_BYTES: usize = 16 << 20;
/// What one waiting name costs besides its bytes: its map entry, index and allocation.
const PER_NAME: usize = 96;

/// What [`enable`] found.
pub(super) enum Found {
    /// Notifications of every class were on.
    On,
    /// They were not (the setting as it was); ferry turned them on.
    TurnedOn(String),
    /// The source will not show its setting (`CONFIG` refused, as managed services do, which
    /// set it in their parameters instead): ferry cannot tell.
    Unknown,
}

/// Makes sure the source publishes keyspace notifications of every class: turns them on with
/// `CONFIG SET` when they are not, or says which line to run when that is refused.
pub(super) async fn enable(conn: &mut Conn) -> Result<Found> {
    let Some(current) = crate::net::info::config_get(conn, "notify-keyspace-events").await? else {
        return Ok(Found::Unknown);
    };
    if with_needed(&current) == normalized(&current) {
        return Ok(Found::On);
    }
    let wanted = compact(&current);
    match conn
        .request(&[
            &b"CONFIG"[..],
            b"SET",
            b"notify-keyspace-events",
            wanted.as_bytes(),
        ])
        .await?
    {
        Frame::Error(msg) => Err(refused(
            &conn.addr,
            &format!(
                "its notify-keyspace-events is {current:?} and CONFIG SET is refused ({})",
                String::from_utf8_lossy(&msg)
            ),
        )),
        _ => Ok(Found::TurnedOn(current)),
    }
}

fn refused(addr: &str, why: &str) -> Error {
    Error::Precheck(format!(
        "scan mode needs keyspace notifications from source {addr}: {why}; run CONFIG SET notify-keyspace-events {NEEDED} there (or set it in the service's parameters), then start again"
    ))
}

/// The flags as Redis keeps them: `A` stands for the classes it covers.
fn normalized(flags: &str) -> String {
    let mut set: Vec<char> = Vec::new();
    for c in flags.chars() {
        let expanded: &[char] = match c {
            'A' => &['g', '$', 'l', 's', 'h', 'z', 'x', 'e', 't', 'd'],
            c => &[c],
        };
        for &c in expanded {
            if !set.contains(&c) {
                set.push(c);
            }
        }
    }
    // Redis 7.0 added 'n' (new key) and 'm' (key miss) outside of 'A'.
    let mut classes: Vec<char> = set.into_iter().filter(|c| *c != 'K' && *c != 'E').collect();
    classes.sort_unstable();
    let mut out = String::new();
    if flags.contains('K') {
        out.push('K');
    }
    if flags.contains('E') {
        out.push('E');
    }
    out.extend(classes);
    out
}

/// `current` with ferry's classes added.
fn with_needed(current: &str) -> String {
    // 'd' (streams) and 't' (stream groups) are in 'A' from 5.0; older servers refuse them,
    // and 'A' alone is accepted everywhere.
    normalized(&format!("{current}{NEEDED}"))
}

/// `current` with ferry's classes added, as every version takes it: `A` stands for every class
/// the server has (which differs by version), so only the flags outside it are spelled out.
fn compact(current: &str) -> String {
    let mut out = String::from("KA");
    if current.contains('E') {
        out.push('E');
    }
    for c in ['m', 'n'] {
        if current.contains(c) {
            out.push(c);
        }
    }
    out
}

/// Keys waiting to be read again, in the order first notified, each with when.
#[derive(Default)]
pub(super) struct Pending {
    keys: IndexMap<(u32, Bytes), Instant>,
    bytes: usize,
    /// Names were lost (too many waiting, or the subscription dropped): everything must be
    /// read again.
    pub lost: Option<String>,
}

impl Pending {
    fn add(&mut self, db: u32, key: Bytes) {
        if self.lost.is_some() {
            return;
        }
        let len = key.len();
        if let indexmap::map::Entry::Vacant(v) = self.keys.entry((db, key)) {
            v.insert(Instant::now());
            self.bytes += len + PER_NAME;
        }
        if self.bytes > MAX_PENDING_BYTES {
            self.keys = IndexMap::new();
            self.bytes = 0;
            self.lost = Some(format!(
                "more than {} MiB of changed key names waited to be read",
                MAX_PENDING_BYTES >> 20
            ));
        }
    }

    /// Up to `n` keys, oldest first, and when the oldest of them was notified.
    pub fn take(&mut self, n: usize) -> (Vec<(u32, Bytes)>, Option<Instant>) {
        let n = n.min(self.keys.len());
        let mut since = None;
        let mut out = Vec::with_capacity(n);
        for ((db, key), at) in self.keys.drain(..n) {
            self.bytes -= key.len() + PER_NAME;
            since = Some(since.map_or(at, |s: Instant| s.min(at)));
            out.push((db, key));
        }
        (out, since)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }
}

/// The set a subscription fills and the reader drains, with a wake-up for the reader.
#[derive(Clone, Default)]
pub(super) struct Changes {
    pub pending: Arc<Mutex<Pending>>,
    pub wake: Arc<Notify>,
    /// A key ferry writes to see whether notifications come at all, and the signal that its
    /// notification came.
    pub probe: Arc<Mutex<Option<(u32, Bytes)>>>,
    pub probe_seen: Arc<Notify>,
}

impl Changes {
    pub fn lock(&self) -> std::sync::MutexGuard<'_, Pending> {
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lost(&self, why: String) {
        let mut p = self.lock();
        p.keys = IndexMap::new();
        p.bytes = 0;
        p.lost.get_or_insert(why);
        drop(p);
        self.wake.notify_one();
    }
}

/// A live subscription: connected and confirmed before it is returned, so every change made
/// after this returns is heard (or, if the link drops, reported as lost).
pub(super) struct Subscription {
    conn: Conn,
}

impl Subscription {
    pub async fn start(endpoint: &Endpoint) -> Result<Subscription> {
        let mut conn = Conn::connect(Role::Source, endpoint).await?;
        match conn
            .request(&[&b"PSUBSCRIBE"[..], b"__keyspace@*__:*"])
            .await?
        {
            Frame::Array(items)
                if items
                    .first()
                    .and_then(Frame::as_bytes)
                    .is_some_and(|k| k.eq_ignore_ascii_case(b"psubscribe")) => {}
            Frame::Error(msg) => {
                return Err(Error::Precheck(format!(
                    "source {} refused PSUBSCRIBE __keyspace@*__:* ({}); scan mode follows changes through keyspace notifications: allow the source user +psubscribe and the channels (ACL SETUSER <user> +psubscribe &__keyspace@*__:*)",
                    conn.addr,
                    String::from_utf8_lossy(&msg)
                )));
            }
            _ => {
                return Err(Error::Server {
                    role: Role::Source,
                    addr: conn.addr.clone(),
                    msg: "answered PSUBSCRIBE with a reply of an unexpected shape".into(),
                });
            }
        }
        Ok(Subscription { conn })
    }

    /// Feeds notified names into `changes` until the link drops (then reported as lost) or
    /// the task stops. `wanted` says which dbs are synced.
    pub async fn run(mut self, changes: Changes, wanted: impl Fn(u32) -> bool) {
        loop {
            let frame = match self.conn.read_frame().await {
                Ok((frame, _)) => frame,
                Err(e) => {
                    tracing::warn!(source = %self.conn.addr, error = %e, "the keyspace notification subscription dropped: every key will be read again");
                    changes.lost(format!(
                        "the subscription to keyspace notifications dropped ({e})"
                    ));
                    return;
                }
            };
            let Some((db, key)) = parse_message(&frame) else {
                continue;
            };
            let probe = changes
                .probe
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if probe.is_some_and(|(d, k)| d == db && k == key) {
                changes.probe_seen.notify_one();
                continue;
            }
            if key.starts_with(OWN_KEY_PREFIX) || !wanted(db) {
                continue;
            }
            let mut pending = changes.lock();
            let was_empty = pending.len() == 0;
            pending.add(db, key);
            drop(pending);
            if was_empty {
                changes.wake.notify_one();
            }
        }
    }
}

/// `pmessage <pattern> __keyspace@<db>__:<key> <event>` → (db, key).
fn parse_message(frame: &Frame) -> Option<(u32, Bytes)> {
    let Frame::Array(items) = frame else {
        return None;
    };
    let [kind, _, channel, _] = items.as_slice() else {
        return None;
    };
    if !kind.as_bytes()?.eq_ignore_ascii_case(b"pmessage") {
        return None;
    }
    let channel = channel.as_bytes()?;
    let rest = channel.strip_prefix(b"__keyspace@")?;
    let end = rest.iter().position(|&b| b == b'_')?;
    let db: u32 = std::str::from_utf8(&rest[..end]).ok()?.parse().ok()?;
    let after = rest[end..].strip_prefix(b"__:")?;
    // A copy: a slice would keep the whole read buffer it came in alive while the name waits.
    Some((db, Bytes::copy_from_slice(after)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_gain_what_is_missing_and_keep_the_rest() {
        assert_eq!(with_needed(""), normalized("KA"));
        assert_eq!(with_needed("KEA"), normalized("KEA"));
        assert_eq!(with_needed("Ex"), normalized("KEA"));
        assert_eq!(with_needed("KAm"), normalized("KAm"));
        assert_eq!(normalized("AK"), normalized("KA"));
        assert_ne!(normalized("Kx"), normalized("KA"));
        // Redis answers CONFIG GET with its own spelling: "AKE" for "KEA".
        assert_eq!(normalized("AKE"), normalized("KEA"));
    }

    #[test]
    fn what_is_sent_keeps_the_flags_outside_a() {
        assert_eq!(compact(""), "KA");
        assert_eq!(compact("Ex"), "KAE");
        assert_eq!(compact("Km"), "KAm");
        assert_eq!(normalized(&compact("Elm")), with_needed("Elm"));
    }

    #[test]
    fn messages_name_db_and_key() {
        let msg = |channel: &'static [u8]| {
            Frame::Array(vec![
                Frame::Bulk(Bytes::from_static(b"pmessage")),
                Frame::Bulk(Bytes::from_static(b"__keyspace@*__:*")),
                Frame::Bulk(Bytes::from_static(channel)),
                Frame::Bulk(Bytes::from_static(b"set")),
            ])
        };
        assert_eq!(
            parse_message(&msg(b"__keyspace@3__:a:b__:c")),
            Some((3, Bytes::from_static(b"a:b__:c")))
        );
        assert_eq!(
            parse_message(&msg(b"__keyspace@0__:")),
            Some((0, Bytes::new()))
        );
        assert_eq!(parse_message(&msg(b"__keyevent@0__:set")), None);
        assert_eq!(parse_message(&msg(b"__keyspace@x__:k")), None);
    }

    #[test]
    fn a_key_notified_often_waits_once() {
        let mut p = Pending::default();
        for _ in 0..1000 {
            p.add(0, Bytes::from_static(b"hot"));
        }
        p.add(1, Bytes::from_static(b"hot"));
        assert_eq!(p.len(), 2);
        let (keys, since) = p.take(10);
        assert_eq!(keys.len(), 2);
        assert!(since.is_some());
        assert_eq!(p.bytes, 0);
    }

    #[test]
    fn too_many_names_become_a_rescan() {
        let mut p = Pending::default();
        let mut i = 0u64;
        while p.lost.is_none() {
            p.add(0, Bytes::from(format!("{i:0>1000}")));
            i += 1;
        }
        assert_eq!(p.len(), 0);
        assert!(i > 1000);
    }
}
