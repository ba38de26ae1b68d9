//! One key's value read from a live server type by type, in bounded pieces, as the chunks the
//! sink writes a big key from (`Entry::BigStart`, `BigChunk`s, `BigEnd`). Scan mode uses it for
//! keys too big to `DUMP` whole and on sources that refuse `DUMP`.
//!
//! Per type: a string in `GETRANGE` steps, a list in `LRANGE` index ranges, a hash, set or
//! sorted set with `HSCAN`/`SSCAN`/`ZSCAN` (a hash's field TTLs with `HPEXPIRETIME` where the
//! server has them), a stream with `XRANGE` pages, then its metadata (`XINFO STREAM`), then per
//! consumer group its consumers (`XINFO CONSUMERS`) and its pending entries (`XPENDING`), in
//! the order the sink's chunk writer takes them.
//!
//! The value is not read atomically: a key written while it is read comes out as a mix of
//! before and after. The scan source re-reads every key a keyspace notification names, so such
//! a mix is overwritten later. A key that is gone, or of another type, at some read ends the
//! value early without error; [`ValueReader::vanished`] says so, and the chunks handed out
//! until then are a partial value the caller must re-read (or delete) the key over.

// Used by the scan source (issue 19), which lands separately.

use std::collections::VecDeque;

use bytes::Bytes;
use ferry_rdb::{
    Chunk, Consumer, HashField, PendingEntry, StreamEntry, StreamGroup, StreamId, StreamMeta,
    TypeByte,
};
use ferry_resp::Frame;

use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::text::escape;

/// What TYPE answered, for the types ferry can read piece by piece.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ValueKind {
    String,
    List,
    Hash,
    Set,
    ZSet,
    Stream,
}

impl ValueKind {
    /// From TYPE's reply ("string", "list", ...); None for "none" and module types.
    pub fn from_type_reply(reply: &[u8]) -> Option<ValueKind> {
        Some(match reply {
            b"string" => ValueKind::String,
            b"list" => ValueKind::List,
            b"hash" => ValueKind::Hash,
            b"set" => ValueKind::Set,
            b"zset" => ValueKind::ZSet,
            b"stream" => ValueKind::Stream,
            _ => return None,
        })
    }

    /// The name TYPE gives it.
    pub fn name(self) -> &'static str {
        match self {
            ValueKind::String => "string",
            ValueKind::List => "list",
            ValueKind::Hash => "hash",
            ValueKind::Set => "set",
            ValueKind::ZSet => "zset",
            ValueKind::Stream => "stream",
        }
    }

    /// The command that gives its length (STRLEN, LLEN, HLEN, SCARD, ZCARD, XLEN).
    pub fn length_command(self) -> &'static str {
        match self {
            ValueKind::String => "STRLEN",
            ValueKind::List => "LLEN",
            ValueKind::Hash => "HLEN",
            ValueKind::Set => "SCARD",
            ValueKind::ZSet => "ZCARD",
            ValueKind::Stream => "XLEN",
        }
    }

    /// The type byte a BigStart's KeyMeta carries for it, the one the sink's chunk writer
    /// expects. Streams are the 7.0+ form: its metadata chunk leaves out what an older source
    /// does not report, and the writer then sends no counter for it.
    pub fn type_byte(self) -> TypeByte {
        match self {
            ValueKind::String => TypeByte::STRING,
            ValueKind::List => TypeByte::LIST_QUICKLIST_2,
            ValueKind::Hash => TypeByte::HASH,
            ValueKind::Set => TypeByte::SET,
            ValueKind::ZSet => TypeByte::ZSET_2,
            ValueKind::Stream => TypeByte::STREAM_LISTPACKS_3,
        }
    }
}

/// Where the reading of a value is.
#[derive(Debug)]
enum Step {
    /// A string's byte offset, or a list's index, of the next read.
    At(u64),
    /// A hash's, set's or sorted set's SCAN cursor.
    Scan(Bytes),
    /// A stream's entries from this id on.
    Entries(StreamId),
    /// A stream's length, ids and counters.
    Meta,
    /// The list of a stream's consumer groups.
    Groups,
    /// The consumers of the next group in `groups`.
    Consumers,
    /// The pending entries of group `group` from this id on.
    Pending(StreamId),
    /// Every piece is read: is the key still there, with the same type?
    Check,
    Done,
}

/// A consumer group as `XINFO GROUPS` lists it, before its consumers are read.
#[derive(Debug)]
struct GroupHead {
    name: Bytes,
    last_id: StreamId,
    entries_read: Option<u64>,
}

/// Reads one key's value in pieces of at most `piece` elements (strings: `piece_bytes`).
///
/// Pieces of a collection are bounded by `piece_bytes` too (at least one element each). A SCAN
/// reply bigger than a piece (a small hash in its compact encoding comes whole, whatever the
/// COUNT) is handed out over several calls. Replies are kept near `piece_bytes` as well: after
/// one of big elements the next request asks for fewer (so memory is about `piece_bytes` plus
/// one element, not `piece` times the biggest element).
pub struct ValueReader {
    key: Bytes,
    kind: ValueKind,
    piece: usize,
    piece_bytes: usize,
    /// Elements the next request asks for: `piece`, or fewer after a reply of big elements.
    count: usize,
    step: Step,
    /// Chunks read and not handed out yet.
    ready: VecDeque<Chunk>,
    /// Requests that read the value so far: a value read in one is atomic, needing no check.
    reads: u64,
    /// Whether to ask for hash field TTLs; off once the server says it has no HPEXPIRETIME.
    field_ttls: bool,
    vanished: bool,
    /// The source's clock at the groups' read (unix ms): XINFO and XPENDING give ages.
    now_ms: i64,
    groups: VecDeque<GroupHead>,
    group: Bytes,
    /// A stream's entries handed out so far: how many, and the highest id.
    entries: (u64, StreamId),
}

impl ValueReader {
    pub fn new(key: Bytes, kind: ValueKind, piece: usize, piece_bytes: usize) -> Self {
        let step = match kind {
            ValueKind::String | ValueKind::List => Step::At(0),
            ValueKind::Hash | ValueKind::Set | ValueKind::ZSet => {
                Step::Scan(Bytes::from_static(b"0"))
            }
            ValueKind::Stream => Step::Entries(StreamId::default()),
        };
        ValueReader {
            key,
            kind,
            piece: piece.max(1),
            piece_bytes: piece_bytes.max(1),
            count: piece.max(1),
            step,
            ready: VecDeque::new(),
            reads: 0,
            field_ttls: true,
            vanished: false,
            now_ms: 0,
            groups: VecDeque::new(),
            group: Bytes::new(),
            entries: (0, StreamId::default()),
        }
    }

    /// True once the key was found gone or of another type (or, for a stream, a consumer group
    /// being read was destroyed): `next` then gave `Ok(None)` early and the chunks before are
    /// not the whole value. False after a value read to its end.
    pub fn vanished(&self) -> bool {
        self.vanished
    }

    /// The next piece, read from `conn` (a plain connection to the source, db already
    /// SELECTed); Ok(None) once the value is whole, or ended early (see [`Self::vanished`]).
    pub async fn next(&mut self, conn: &mut Conn) -> Result<Option<Chunk>> {
        loop {
            if let Some(chunk) = self.ready.pop_front() {
                return Ok(Some(chunk));
            }
            if matches!(self.step, Step::Done) {
                return Ok(None);
            }
            self.read(conn).await?;
        }
    }

    /// One step: reads the next piece into `ready`, or moves on.
    async fn read(&mut self, conn: &mut Conn) -> Result<()> {
        match std::mem::replace(&mut self.step, Step::Done) {
            Step::At(at) if self.kind == ValueKind::String => self.string(conn, at).await,
            Step::At(at) => self.list(conn, at).await,
            Step::Scan(cursor) => self.scan(conn, cursor).await,
            Step::Entries(from) => self.entries(conn, from).await,
            Step::Meta => self.meta(conn).await,
            Step::Groups => self.group_list(conn).await,
            Step::Consumers => self.consumers(conn).await,
            Step::Pending(from) => self.pending(conn, from).await,
            Step::Check => self.check(conn).await,
            Step::Done => Ok(()),
        }
    }

    /// Sizes the next request by the last reply: `n` elements of `bytes` in all.
    fn adapt(&mut self, n: usize, bytes: usize) {
        self.count = if bytes > self.piece_bytes {
            (n.saturating_mul(self.piece_bytes) / bytes).max(1)
        } else {
            self.count.saturating_mul(2).min(self.piece)
        };
    }

    /// Ends the value early: the key is gone or changed type.
    fn gone(&mut self) {
        self.vanished = true;
        self.step = Step::Done;
    }

    /// After the last piece: checked only when the value took several reads.
    fn finished(&mut self) {
        self.step = if self.reads > 1 {
            Step::Check
        } else {
            Step::Done
        };
    }

    async fn string(&mut self, conn: &mut Conn, at: u64) -> Result<()> {
        let start = at.to_string();
        let end = (at + self.piece_bytes as u64 - 1).to_string();
        let args: [&[u8]; 4] = [b"GETRANGE", &self.key, start.as_bytes(), end.as_bytes()];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        self.reads += 1;
        let part = match reply {
            Frame::Bulk(b) | Frame::Simple(b) if b.len() <= self.piece_bytes => b,
            // A missing key gives "" (nil on some forks).
            Frame::Null => Bytes::new(),
            other => return Err(self.bad(conn, "GETRANGE", shape(&other))),
        };
        let short = part.len() < self.piece_bytes;
        if at == 0 && part.is_empty() {
            // An empty string or no key at all: TYPE tells them apart. The empty string is
            // written too (as an APPEND of nothing, which creates it).
            if self.still_there(conn).await? {
                self.ready.push_back(Chunk::StringPart(part));
                self.step = Step::Done;
            }
            return Ok(());
        }
        let len = part.len() as u64;
        if !part.is_empty() {
            self.ready.push_back(Chunk::StringPart(part));
        }
        if short {
            self.finished();
        } else {
            self.step = Step::At(at + len);
        }
        Ok(())
    }

    async fn list(&mut self, conn: &mut Conn, at: u64) -> Result<()> {
        let asked = self.count;
        let start = at.to_string();
        let stop = (at + asked as u64 - 1).to_string();
        let args: [&[u8]; 4] = [b"LRANGE", &self.key, start.as_bytes(), stop.as_bytes()];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        self.reads += 1;
        let items = match strings(reply, asked) {
            Ok(items) => items,
            Err(why) => return Err(self.bad(conn, "LRANGE", why)),
        };
        if at == 0 && items.is_empty() {
            // Redis holds no empty list: the key is gone.
            self.gone();
            return Ok(());
        }
        let n = items.len();
        self.adapt(n, items.iter().map(|i| i.len()).sum());
        for piece in split(items, self.piece, self.piece_bytes, |i| i.len()) {
            self.ready.push_back(Chunk::ListItems(piece));
        }
        if n < asked {
            self.finished();
        } else {
            self.step = Step::At(at + n as u64);
        }
        Ok(())
    }

    /// One SCAN call of a hash, set or sorted set. A SCAN may give an element twice (the table
    /// grew or shrank between calls): harmless, HSET, SADD and ZADD of an element already
    /// written change nothing.
    async fn scan(&mut self, conn: &mut Conn, cursor: Bytes) -> Result<()> {
        let (command, label): (&[u8], &str) = match self.kind {
            ValueKind::Hash => (b"HSCAN", "HSCAN"),
            ValueKind::Set => (b"SSCAN", "SSCAN"),
            _ => (b"ZSCAN", "ZSCAN"),
        };
        let count = self.count.to_string();
        let args: [&[u8]; 5] = [command, &self.key, &cursor, b"COUNT", count.as_bytes()];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        let first = self.reads == 0;
        self.reads += 1;
        let (next, items) = match scan_reply(reply) {
            Ok(r) => r,
            Err(why) => return Err(self.bad(conn, label, why)),
        };
        let end = next.as_ref() == b"0";
        // Members and values: a sorted set's or a hash's count is two per element.
        let per = if self.kind == ValueKind::Set { 1 } else { 2 };
        self.adapt(items.len() / per, items.iter().map(|i| i.len()).sum());
        if first && end && items.is_empty() {
            // Redis holds no empty hash, set or sorted set: the key is gone.
            self.gone();
            return Ok(());
        }
        let (piece, bytes) = (self.piece, self.piece_bytes);
        match self.kind {
            ValueKind::Set => {
                for p in split(items, piece, bytes, |m| m.len()) {
                    self.ready.push_back(Chunk::SetMembers(p));
                }
            }
            ValueKind::ZSet => {
                let entries = match zset_entries(items) {
                    Ok(e) => e,
                    Err(why) => return Err(self.bad(conn, label, why)),
                };
                for p in split(entries, piece, bytes, |(m, _)| m.len() + 8) {
                    self.ready.push_back(Chunk::ZSetEntries(p));
                }
            }
            _ => {
                let Some(fields) = self.hash_fields(conn, items).await? else {
                    return Ok(());
                };
                for p in split(fields, piece, bytes, |f| f.field.len() + f.value.len()) {
                    self.ready.push_back(Chunk::HashFields(p));
                }
            }
        }
        if end {
            self.finished();
        } else {
            self.step = Step::Scan(next);
        }
        Ok(())
    }

    /// HSCAN's field/value list as fields with their TTLs. None when the key went away.
    async fn hash_fields(
        &mut self,
        conn: &mut Conn,
        items: Vec<Bytes>,
    ) -> Result<Option<Vec<HashField>>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.bad(conn, "HSCAN", "an odd number of fields and values"));
        }
        let fields: Vec<HashField> = items
            .chunks_exact(2)
            .map(|fv| HashField {
                field: fv[0].clone(),
                value: fv[1].clone(),
                expire_ms: None,
            })
            .collect();
        if !self.field_ttls || fields.is_empty() {
            return Ok(Some(fields));
        }
        let n = fields.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"HPEXPIRETIME", &self.key, b"FIELDS", n.as_bytes()];
        args.extend(fields.iter().map(|f| f.field.as_ref()));
        let reply = match conn.request(&args).await? {
            Frame::Error(msg) | Frame::BulkError(msg) if unknown_command(&msg) => {
                // Older than 7.4 (or a fork without field expiry): no field has a TTL.
                self.field_ttls = false;
                return Ok(Some(fields));
            }
            Frame::Error(msg) | Frame::BulkError(msg) if changed(&msg) => {
                self.gone();
                return Ok(None);
            }
            Frame::Error(msg) | Frame::BulkError(msg) => {
                return Err(self.refused(conn, "HPEXPIRETIME", &msg));
            }
            Frame::Null => {
                self.gone();
                return Ok(None);
            }
            Frame::Array(times) if times.len() == fields.len() => times,
            other => return Err(self.bad(conn, "HPEXPIRETIME", shape(&other))),
        };
        let asked = fields.len();
        let mut kept = Vec::with_capacity(asked);
        for (mut f, t) in fields.into_iter().zip(&reply) {
            match t.as_integer() {
                // Deleted or expired since the HSCAN: left out.
                Some(-2) => continue,
                Some(-1) => {}
                Some(at) if at >= 0 => f.expire_ms = Some(at),
                _ => {
                    return Err(self.bad(conn, "HPEXPIRETIME", "a time that is not a number"));
                }
            }
            kept.push(f);
        }
        if kept.len() < asked {
            // The key itself may be gone: the final check says.
            self.reads += 1;
        }
        let fields = kept;
        Ok(Some(fields))
    }

    async fn entries(&mut self, conn: &mut Conn, from: StreamId) -> Result<()> {
        // An exclusive start, as the id after the last one read: the same as XRANGE's "(" but
        // understood by every version (the "(" form is 6.2+).
        let asked = self.count;
        let start = from.to_string();
        let count = asked.to_string();
        let args: [&[u8]; 6] = [
            b"XRANGE",
            &self.key,
            start.as_bytes(),
            b"+",
            b"COUNT",
            count.as_bytes(),
        ];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        self.reads += 1;
        let entries = match stream_entries(reply, asked) {
            Ok(e) => e,
            Err(why) => return Err(self.bad(conn, "XRANGE", why)),
        };
        let n = entries.len();
        let next = entries.last().and_then(|e| after(e.id));
        if let Some(last) = entries.last() {
            self.entries = (self.entries.0 + n as u64, self.entries.1.max(last.id));
        }
        let weight = |e: &StreamEntry| e.fields.iter().map(|(f, v)| f.len() + v.len()).sum();
        self.adapt(n, entries.iter().map(weight).sum());
        for p in split(entries, self.piece, self.piece_bytes, weight) {
            self.ready.push_back(Chunk::StreamEntries(p));
        }
        // XINFO STREAM comes next whatever: it also tells whether the key is still there (an
        // XRANGE of a missing key is as empty as that of an empty stream).
        self.step = match next {
            Some(next) if n >= asked => Step::Entries(next),
            _ => Step::Meta,
        };
        Ok(())
    }

    async fn meta(&mut self, conn: &mut Conn) -> Result<()> {
        let args: [&[u8]; 3] = [b"XINFO", b"STREAM", &self.key];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        let (mut meta, groups) = match stream_meta(&reply) {
            Ok(m) => m,
            Err(why) => return Err(self.bad(conn, "XINFO STREAM", why)),
        };
        // Changed while read (entries deleted, or the key made anew): the stream's figures
        // may be below what was read, which the target refuses (XSETID). They are raised to
        // what the target holds; the change is notified and the key read again.
        let (read, highest) = self.entries;
        if meta.last_id < highest || meta.entries_added.is_some_and(|a| a < read) {
            meta.last_id = meta.last_id.max(highest);
            meta.entries_added = meta.entries_added.map(|a| a.max(read));
            if meta.max_deleted_id.is_some_and(|d| d > meta.last_id) {
                meta.max_deleted_id = Some(meta.last_id);
            }
        }
        self.ready.push_back(Chunk::StreamMeta(meta));
        self.step = if groups > 0 { Step::Groups } else { Step::Done };
        Ok(())
    }

    async fn group_list(&mut self, conn: &mut Conn) -> Result<()> {
        let args: [&[u8]; 3] = [b"XINFO", b"GROUPS", &self.key];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        let groups = match group_heads(&reply) {
            Ok(g) => g,
            Err(why) => return Err(self.bad(conn, "XINFO GROUPS", why)),
        };
        self.now_ms = match server_time(&conn.request_ok(&[&b"TIME"[..]]).await?) {
            Some(t) => t,
            None => return Err(self.bad(conn, "TIME", "not two numbers")),
        };
        self.groups = groups.into();
        self.step = Step::Consumers;
        Ok(())
    }

    async fn consumers(&mut self, conn: &mut Conn) -> Result<()> {
        let Some(group) = self.groups.pop_front() else {
            self.step = Step::Done;
            return Ok(());
        };
        let args: [&[u8]; 4] = [b"XINFO", b"CONSUMERS", &self.key, &group.name];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        let consumers = match consumers(&reply, self.now_ms) {
            Ok(c) => c,
            Err(why) => return Err(self.bad(conn, "XINFO CONSUMERS", why)),
        };
        self.ready.push_back(Chunk::StreamGroup(StreamGroup {
            name: group.name.clone(),
            last_id: group.last_id,
            entries_read: group.entries_read,
            consumers,
        }));
        self.group = group.name;
        self.step = Step::Pending(StreamId::default());
        Ok(())
    }

    async fn pending(&mut self, conn: &mut Conn, from: StreamId) -> Result<()> {
        // Exclusive start as in `entries`.
        let start = from.to_string();
        let count = self.piece.to_string();
        let args: [&[u8]; 6] = [
            b"XPENDING",
            &self.key,
            &self.group,
            start.as_bytes(),
            b"+",
            count.as_bytes(),
        ];
        let Some(reply) = ask(conn, &self.key, &args).await? else {
            self.gone();
            return Ok(());
        };
        let entries = match pending_entries(reply, self.piece, self.now_ms) {
            Ok(e) => e,
            Err(why) => return Err(self.bad(conn, "XPENDING", why)),
        };
        let n = entries.len();
        let next = entries.last().and_then(|e| after(e.id));
        if n > 0 {
            self.ready.push_back(Chunk::StreamPending {
                group: self.group.clone(),
                entries,
            });
        }
        self.step = match next {
            Some(next) if n >= self.piece => Step::Pending(next),
            _ => Step::Consumers,
        };
        Ok(())
    }

    async fn check(&mut self, conn: &mut Conn) -> Result<()> {
        self.still_there(conn).await?;
        Ok(())
    }

    /// Whether the key is (still) of its kind, by TYPE; when not, the value ends early.
    async fn still_there(&mut self, conn: &mut Conn) -> Result<bool> {
        let args: [&[u8]; 2] = [b"TYPE", &self.key];
        let there = match conn.request_ok(&args).await? {
            Frame::Simple(t) | Frame::Bulk(t) => t.as_ref() == self.kind.name().as_bytes(),
            other => return Err(self.bad(conn, "TYPE", shape(&other))),
        };
        if there {
            self.step = Step::Done;
        } else {
            self.gone();
        }
        Ok(there)
    }

    /// A reply no Redis sends.
    fn bad(&self, conn: &Conn, command: &str, why: impl std::fmt::Display) -> Error {
        Error::Server {
            role: conn.role,
            addr: conn.addr.clone(),
            msg: format!(
                "answered {command} of key {} with {why}, which is not what Redis sends; is this a Redis-compatible server?",
                escape(&self.key)
            ),
        }
    }

    fn refused(&self, conn: &Conn, command: &str, msg: &[u8]) -> Error {
        refused(conn, &self.key, command, msg)
    }
}

/// Sends one command about `key`. An error reply saying the key (or its group) is gone or of
/// another type gives None; any other error reply is an error naming the command.
async fn ask(conn: &mut Conn, key: &[u8], args: &[&[u8]]) -> Result<Option<Frame>> {
    match conn.request(args).await? {
        Frame::Error(msg) | Frame::BulkError(msg) if changed(&msg) => Ok(None),
        Frame::Error(msg) | Frame::BulkError(msg) => {
            let name = String::from_utf8_lossy(args.first().copied().unwrap_or_default());
            let name = match args.get(1) {
                Some(sub) if name.eq_ignore_ascii_case("XINFO") => {
                    format!("XINFO {}", String::from_utf8_lossy(sub))
                }
                _ => name.into_owned(),
            };
            Err(refused(conn, key, &name, &msg))
        }
        f => Ok(Some(f)),
    }
}

fn refused(conn: &Conn, key: &[u8], command: &str, msg: &[u8]) -> Error {
    Error::Server {
        role: conn.role,
        addr: conn.addr.clone(),
        msg: format!(
            "refused {command} of key {}: {}",
            escape(key),
            String::from_utf8_lossy(&msg[..msg.len().min(300)])
        ),
    }
}

/// An error reply that means the key is gone or holds another type now (or, for a stream, the
/// group being read was destroyed).
fn changed(msg: &[u8]) -> bool {
    msg.starts_with(b"WRONGTYPE") || msg.starts_with(b"NOGROUP") || msg == b"ERR no such key"
}

fn unknown_command(msg: &[u8]) -> bool {
    msg.starts_with(b"ERR unknown command") || msg.starts_with(b"ERR Unknown command")
}

/// The id just after `id`, if there is one.
fn after(id: StreamId) -> Option<StreamId> {
    if id.seq < u64::MAX {
        Some(StreamId {
            ms: id.ms,
            seq: id.seq + 1,
        })
    } else if id.ms < u64::MAX {
        Some(StreamId {
            ms: id.ms + 1,
            seq: 0,
        })
    } else {
        None
    }
}

/// Splits `items` into pieces of at most `max` items and about `max_bytes` bytes (each piece
/// holds at least one item), by `size`.
fn split<T>(
    items: Vec<T>,
    max: usize,
    max_bytes: usize,
    size: impl Fn(&T) -> usize,
) -> Vec<Vec<T>> {
    let mut pieces = Vec::new();
    let mut piece = Vec::new();
    let mut bytes = 0usize;
    for item in items {
        let n = size(&item);
        if !piece.is_empty() && (piece.len() >= max || bytes.saturating_add(n) > max_bytes) {
            pieces.push(std::mem::take(&mut piece));
            bytes = 0;
        }
        bytes = bytes.saturating_add(n);
        piece.push(item);
    }
    if !piece.is_empty() {
        pieces.push(piece);
    }
    pieces
}

/// A few words on a reply's shape, for messages: never the reply itself, which may be huge.
fn shape(f: &Frame) -> String {
    match f {
        Frame::Simple(b) | Frame::Bulk(b) => format!("a string of {} bytes", b.len()),
        Frame::Error(m) | Frame::BulkError(m) => {
            format!("the error {}", escape(&m[..m.len().min(200)]))
        }
        Frame::Integer(n) => format!("the integer {n}"),
        Frame::Null => "nil".into(),
        Frame::Array(v) => format!("an array of {} items", v.len()),
        Frame::Map(v) => format!("a map of {} pairs", v.len()),
        Frame::Set(v) => format!("a set of {} items", v.len()),
        Frame::Push(_) => "a push message".into(),
        Frame::Double(_) => "a double".into(),
        Frame::Boolean(_) => "a boolean".into(),
        Frame::BigNumber(_) => "a big number".into(),
        Frame::Verbatim { .. } => "a verbatim string".into(),
        Frame::Attribute { .. } => "attributes".into(),
    }
}

fn text(f: &Frame) -> Option<&Bytes> {
    match f {
        Frame::Bulk(b) | Frame::Simple(b) => Some(b),
        _ => None,
    }
}

fn items(f: Frame) -> std::result::Result<Vec<Frame>, String> {
    match f {
        Frame::Array(v) | Frame::Set(v) => Ok(v),
        Frame::Null => Ok(Vec::new()),
        other => Err(shape(&other)),
    }
}

/// An array of at most `max` strings.
fn strings(reply: Frame, max: usize) -> std::result::Result<Vec<Bytes>, String> {
    let v = items(reply)?;
    if v.len() > max {
        return Err(format!(
            "{} items where at most {max} were asked for",
            v.len()
        ));
    }
    v.into_iter()
        .map(|f| match f {
            Frame::Bulk(b) | Frame::Simple(b) => Ok(b),
            other => Err(format!("an item that is {}", shape(&other))),
        })
        .collect()
}

/// `[cursor, [items...]]`.
fn scan_reply(reply: Frame) -> std::result::Result<(Bytes, Vec<Bytes>), String> {
    let mut v = items(reply)?;
    if v.len() != 2 {
        return Err(format!(
            "{} items where a cursor and a list were due",
            v.len()
        ));
    }
    let list = v.pop().unwrap_or(Frame::Null);
    let cursor = match v.pop() {
        Some(Frame::Bulk(c) | Frame::Simple(c))
            if !c.is_empty() && c.len() <= 20 && c.iter().all(u8::is_ascii_digit) =>
        {
            c
        }
        Some(Frame::Integer(n)) if n >= 0 => Bytes::from(n.to_string()),
        other => {
            return Err(format!(
                "a cursor that is {}",
                other.as_ref().map_or_else(|| "missing".into(), shape)
            ));
        }
    };
    let items = items(list)?
        .into_iter()
        .map(|f| match f {
            Frame::Bulk(b) | Frame::Simple(b) => Ok(b),
            other => Err(format!("an element that is {}", shape(&other))),
        })
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok((cursor, items))
}

/// ZSCAN's member/score list. Scores print as Redis prints doubles, "inf" and "-inf" included.
fn zset_entries(items: Vec<Bytes>) -> std::result::Result<Vec<(Bytes, f64)>, String> {
    if !items.len().is_multiple_of(2) {
        return Err("an odd number of members and scores".into());
    }
    items
        .chunks_exact(2)
        .map(|ms| match parse_score(&ms[1]) {
            Some(score) => Ok((ms[0].clone(), score)),
            None => Err(format!(
                "the score {}",
                escape(&ms[1][..ms[1].len().min(40)])
            )),
        })
        .collect()
}

fn parse_score(b: &[u8]) -> Option<f64> {
    let s: f64 = std::str::from_utf8(b).ok()?.parse().ok()?;
    // Redis never stores NaN.
    (!s.is_nan()).then_some(s)
}

/// `<ms>-<seq>`.
fn parse_id(b: &[u8]) -> Option<StreamId> {
    let s = std::str::from_utf8(b).ok()?;
    let (ms, seq) = s.split_once('-')?;
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|c| c.is_ascii_digit());
    if !digits(ms) || !digits(seq) {
        return None;
    }
    Some(StreamId {
        ms: ms.parse().ok()?,
        seq: seq.parse().ok()?,
    })
}

fn id_of(f: &Frame) -> std::result::Result<StreamId, String> {
    text(f)
        .and_then(|b| parse_id(b))
        .ok_or_else(|| format!("a stream id that is {}", shape(f)))
}

/// XRANGE's `[[id, [field, value, ...]], ...]`, at most `max` entries.
fn stream_entries(reply: Frame, max: usize) -> std::result::Result<Vec<StreamEntry>, String> {
    let v = items(reply)?;
    if v.len() > max {
        return Err(format!(
            "{} entries where at most {max} were asked for",
            v.len()
        ));
    }
    let mut out: Vec<StreamEntry> = Vec::new();
    for e in v {
        let mut pair = items(e)?;
        if pair.len() != 2 {
            return Err(format!("an entry of {} items", pair.len()));
        }
        let fields = items(pair.pop().unwrap_or(Frame::Null))?;
        let id = id_of(&pair[0])?;
        if out.last().is_some_and(|last| last.id >= id) {
            return Err(format!("entry {id} out of order"));
        }
        if !fields.len().is_multiple_of(2) {
            return Err(format!(
                "entry {id} with an odd number of fields and values"
            ));
        }
        let mut fv = Vec::new();
        let mut it = fields.into_iter();
        while let (Some(f), Some(v)) = (it.next(), it.next()) {
            match (f, v) {
                (Frame::Bulk(f) | Frame::Simple(f), Frame::Bulk(v) | Frame::Simple(v)) => {
                    fv.push((f, v))
                }
                _ => return Err(format!("entry {id} with a field that is not a string")),
            }
        }
        out.push(StreamEntry { id, fields: fv });
    }
    Ok(out)
}

/// The name/value pairs of an XINFO reply: a flat array in RESP2, a map in RESP3.
fn pairs(reply: &Frame) -> std::result::Result<Vec<(&[u8], &Frame)>, String> {
    match reply {
        Frame::Array(v) if v.len().is_multiple_of(2) => v
            .chunks_exact(2)
            .map(|p| match text(&p[0]) {
                Some(name) => Ok((name.as_ref(), &p[1])),
                None => Err(format!("a field name that is {}", shape(&p[0]))),
            })
            .collect(),
        Frame::Map(v) => v
            .iter()
            .map(|(k, val)| match text(k) {
                Some(name) => Ok((name.as_ref(), val)),
                None => Err(format!("a field name that is {}", shape(k))),
            })
            .collect(),
        other => Err(shape(other)),
    }
}

fn field<'a>(pairs: &[(&[u8], &'a Frame)], name: &str) -> Option<&'a Frame> {
    pairs
        .iter()
        .find(|(n, _)| *n == name.as_bytes())
        .map(|(_, v)| *v)
}

fn count(pairs: &[(&[u8], &Frame)], name: &str) -> std::result::Result<Option<u64>, String> {
    match field(pairs, name) {
        None | Some(Frame::Null) => Ok(None),
        Some(f) => match f.as_integer() {
            Some(n) if n >= 0 => Ok(Some(n as u64)),
            _ => Err(format!("{name} that is {}", shape(f))),
        },
    }
}

fn required<T>(v: Option<T>, name: &str) -> std::result::Result<T, String> {
    v.ok_or_else(|| format!("no {name}"))
}

/// XINFO STREAM: the stream's metadata and how many groups it has. Fields an older server
/// does not report (`max-deleted-entry-id`, `entries-added`: 7.0) are None.
fn stream_meta(reply: &Frame) -> std::result::Result<(StreamMeta, u64), String> {
    let p = pairs(reply)?;
    let id = |name: &str| -> std::result::Result<Option<StreamId>, String> {
        match field(&p, name) {
            None | Some(Frame::Null) => Ok(None),
            Some(f) => id_of(f).map(Some),
        }
    };
    let length = required(count(&p, "length")?, "length")?;
    let last_id = required(id("last-generated-id")?, "last-generated-id")?;
    let groups = required(count(&p, "groups")?, "groups")?;
    // Redis 7.0+ records the first id; before, the first entry's is the same thing.
    let first_id = match id("recorded-first-entry-id")? {
        Some(first) => Some(first),
        None => match field(&p, "first-entry") {
            None | Some(Frame::Null) => None,
            Some(Frame::Array(e)) if !e.is_empty() => Some(id_of(&e[0])?),
            Some(other) => return Err(format!("first-entry that is {}", shape(other))),
        },
    };
    let meta = StreamMeta {
        length,
        last_id,
        first_id,
        max_deleted_id: id("max-deleted-entry-id")?,
        entries_added: count(&p, "entries-added")?,
    };
    Ok((meta, groups))
}

/// XINFO GROUPS: each group's name, last delivered id and (7.0+) read counter.
fn group_heads(reply: &Frame) -> std::result::Result<Vec<GroupHead>, String> {
    let Frame::Array(groups) = reply else {
        return Err(shape(reply));
    };
    groups
        .iter()
        .map(|g| {
            let p = pairs(g)?;
            let name = required(field(&p, "name").and_then(text), "group name")?.clone();
            let last_id = id_of(required(
                field(&p, "last-delivered-id"),
                "last-delivered-id",
            )?)?;
            Ok(GroupHead {
                name,
                last_id,
                entries_read: count(&p, "entries-read")?,
            })
        })
        .collect()
}

/// XINFO CONSUMERS, its ages (ms) turned into times by the source's clock `now_ms`.
fn consumers(reply: &Frame, now_ms: i64) -> std::result::Result<Vec<Consumer>, String> {
    let Frame::Array(list) = reply else {
        return Err(shape(reply));
    };
    list.iter()
        .map(|c| {
            let p = pairs(c)?;
            let name = required(field(&p, "name").and_then(text), "consumer name")?.clone();
            let idle = required(field(&p, "idle").and_then(Frame::as_integer), "idle")?;
            // 7.2+: ms since its last successful read, -1 for never, as the RDB keeps it.
            let active_time_ms = field(&p, "inactive")
                .and_then(Frame::as_integer)
                .map(|i| if i < 0 { -1 } else { now_ms.saturating_sub(i) });
            Ok(Consumer {
                name,
                seen_time_ms: now_ms.saturating_sub(idle.max(0)),
                active_time_ms,
            })
        })
        .collect()
}

/// XPENDING's extended form: `[[id, consumer, idle ms, deliveries], ...]`, at most `max`.
fn pending_entries(
    reply: Frame,
    max: usize,
    now_ms: i64,
) -> std::result::Result<Vec<PendingEntry>, String> {
    let v = items(reply)?;
    if v.len() > max {
        return Err(format!(
            "{} entries where at most {max} were asked for",
            v.len()
        ));
    }
    let mut out: Vec<PendingEntry> = Vec::new();
    for e in v {
        let Frame::Array(row) = e else {
            return Err(format!("a pending entry that is {}", shape(&e)));
        };
        let [id, consumer, idle, count] = row.as_slice() else {
            return Err(format!("a pending entry of {} items", row.len()));
        };
        let id = id_of(id)?;
        if out.last().is_some_and(|last| last.id >= id) {
            return Err(format!("pending entry {id} out of order"));
        }
        let (Some(consumer), Some(idle), Some(count)) =
            (text(consumer), idle.as_integer(), count.as_integer())
        else {
            return Err(format!(
                "pending entry {id} without consumer, idle time or count"
            ));
        };
        out.push(PendingEntry {
            id,
            delivery_time_ms: now_ms.saturating_sub(idle.max(0)),
            delivery_count: count.max(0) as u64,
            consumer: consumer.clone(),
        });
    }
    Ok(out)
}

/// TIME's `[seconds, microseconds]` as unix ms.
fn server_time(reply: &Frame) -> Option<i64> {
    let Frame::Array(v) = reply else {
        return None;
    };
    let [s, us] = v.as_slice() else {
        return None;
    };
    let (s, us) = (s.as_integer()?, us.as_integer()?);
    s.checked_mul(1000)?.checked_add(us / 1000)
}

#[cfg(test)]
mod tests;
