//! `ferry rdb inspect`: every key as one JSON object per line.
//!
//! ```text
//! {"db":0,"key":"user:1","type":"hash","encoding":"listpack","expire_ms":null,"value":[["name","ada"]]}
//! ```
//!
//! `idle` (LRU seconds) and `freq` (LFU counter) follow `expire_ms` when the file has them, and
//! `key_metadata_base64` (RDB 13 module key metadata, the KEY_META record as in the file).
//! Values by type (byte strings by the rule in the [module docs](super)):
//! - string: the string; list, set: an array of strings (file order);
//! - zset: `[[member, score], ...]`, the score a number, or `"inf"`/`"-inf"`;
//! - hash: `[[field, value], ...]`, `[field, value, expire_ms]` for a field with a TTL;
//! - stream: `{"entries":[[id,[[field,value],...]],...],"meta":{...},"groups":[...]}`, each
//!   group with its consumers and pending entries; a Redis 8.6 stream with IDMP state adds
//!   `"idmp":{"duration_s":n,"max_size":n,"producers":[{"pid":..,"iids":[[iid,id],...]},...],
//!   "iids_added":n,"iids_duplicates":n}` after the groups;
//! - module: `{"module":name,"encver":n,"raw_base64":...}`, the value's bytes as in the file.
//!
//! A function library prints as `{"function":code}` and module data outside the keyspace as
//! `{"module_aux":name,"encver":n,"raw_base64":...}`, unless a filter or `--no-values` is
//! given.
//!
//! A small value is decoded whole and printed; a big one is printed chunk by chunk as the
//! parser yields it, so memory stays bounded. A big string's parts are first read ahead by
//! a second parser over the same file (the "scout") to learn whether the whole string is
//! UTF-8, so it follows the same rule as a small one.

use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;

use ferry_rdb::{
    Chunk, Consumer, Event, HashField, KeyMeta, Kind, ModuleType, Parser, PendingEntry,
    StreamEntry, StreamGroup, StreamId, StreamMeta, decode_value,
};

use super::json::{self, Base64, Utf8Check};
use super::{Error, Filter, Limits, open, type_name};

#[derive(Clone, Debug)]
pub struct InspectOptions {
    pub file: PathBuf,
    pub filter: Filter,
    /// Print values (false: metadata only).
    pub values: bool,
    pub limits: Limits,
}

/// What is open while a big value's chunks arrive.
enum Big {
    /// Filtered out: chunks are drained.
    Skip,
    /// `--no-values`: the line is closed at the end.
    Meta,
    Value(ValueWriter),
}

/// Writes the keys of `opts.file` to `out`; returns how many keys were printed.
pub fn run(opts: &InspectOptions, out: &mut impl Write) -> Result<u64, Error> {
    let file = opts.file.as_path();
    let mut parser = open(file, &opts.limits)?;
    let version = parser.rdb_version();
    let extras = opts.values && opts.filter.is_empty();
    let mut index = 0u64;
    let mut scout: Option<Scout> = None;
    let mut big: Option<Big> = None;
    let mut printed = 0u64;
    loop {
        let ev = match parser.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => {
                if matches!(big, Some(Big::Value(_) | Big::Meta)) {
                    out.write_all(b"\n")?;
                }
                return Err(Error::parse(file, &e));
            }
        };
        index += 1;
        match ev {
            Event::Key(rec) => {
                let meta = &rec.meta;
                if !opts.filter.matches(meta.db, &meta.key) {
                    continue;
                }
                printed += 1;
                if !opts.values {
                    header(out, meta)?;
                    out.write_all(b"}\n")?;
                    continue;
                }
                if meta.type_byte.kind() == Some(Kind::Module) {
                    header(out, meta)?;
                    out.write_all(b",\"value\":")?;
                    module_value(out, "module", &rec.raw)?;
                    out.write_all(b"}\n")?;
                    continue;
                }
                let chunks = decode_value(meta.type_byte, &rec.raw, version).map_err(|e| {
                    let start = parser.bytes_read() - rec.raw.len() as u64;
                    Error::decode(file, &e, &meta.key, start)
                })?;
                let mut check = Utf8Check::default();
                for c in &chunks {
                    if let Chunk::StringPart(p) = c {
                        check.feed(p);
                    }
                }
                header(out, meta)?;
                out.write_all(b",\"value\":")?;
                let mut w = ValueWriter::start(out, meta, check.finish())?;
                for c in &chunks {
                    w.chunk(out, c)?;
                }
                w.end(out)?;
                out.write_all(b"}\n")?;
            }
            Event::BigValueStart(meta) => {
                if !opts.filter.matches(meta.db, &meta.key) {
                    big = Some(Big::Skip);
                    continue;
                }
                printed += 1;
                header(out, &meta)?;
                if !opts.values {
                    big = Some(Big::Meta);
                    continue;
                }
                let utf8 = if meta.type_byte.kind() == Some(Kind::String) {
                    let s = match &mut scout {
                        Some(s) => s,
                        None => scout.insert(Scout::open(opts)),
                    };
                    s.utf8_of_big_string(index)
                } else {
                    false
                };
                out.write_all(b",\"value\":")?;
                big = Some(Big::Value(ValueWriter::start(out, &meta, utf8)?));
            }
            Event::BigValueChunk(c) => {
                if let Some(Big::Value(w)) = &mut big {
                    w.chunk(out, &c)?;
                }
            }
            Event::BigValueEnd => match big.take() {
                Some(Big::Value(w)) => {
                    w.end(out)?;
                    out.write_all(b"}\n")?;
                }
                Some(Big::Meta) => out.write_all(b"}\n")?,
                Some(Big::Skip) | None => {}
            },
            Event::Function { code } if extras => {
                out.write_all(b"{\"function\":")?;
                json::bytes(out, &code)?;
                out.write_all(b"}\n")?;
            }
            Event::ModuleAux { module_id, raw } if extras => {
                let module = ModuleType::from_id(module_id);
                out.write_all(b"{\"module_aux\":")?;
                json::string(out, &module.name)?;
                out.write_all(b",\"encver\":")?;
                json::u64(out, module.encver)?;
                out.write_all(b",\"raw_base64\":\"")?;
                out.write_all(json::base64(&raw).as_bytes())?;
                out.write_all(b"\"}\n")?;
            }
            _ => {}
        }
    }
    Ok(printed)
}

/// `{"db":..,"key":..,"type":..,"encoding":..,"expire_ms":..` (the object stays open).
fn header(out: &mut impl Write, meta: &KeyMeta) -> std::io::Result<()> {
    out.write_all(b"{\"db\":")?;
    json::u64(out, meta.db)?;
    out.write_all(b",\"key\":")?;
    json::bytes(out, &meta.key)?;
    out.write_all(b",\"type\":\"")?;
    out.write_all(type_name(meta.type_byte).as_bytes())?;
    out.write_all(b"\",\"encoding\":\"")?;
    out.write_all(meta.type_byte.encoding_name().as_bytes())?;
    out.write_all(b"\",\"expire_ms\":")?;
    json::opt_i64(out, meta.expire_ms)?;
    if let Some(idle) = meta.idle {
        out.write_all(b",\"idle\":")?;
        json::u64(out, idle)?;
    }
    if let Some(freq) = meta.freq {
        out.write_all(b",\"freq\":")?;
        json::u64(out, u64::from(freq))?;
    }
    if let Some(km) = &meta.key_metadata {
        out.write_all(b",\"key_metadata_base64\":\"")?;
        out.write_all(json::base64(km).as_bytes())?;
        out.write_all(b"\"")?;
    }
    Ok(())
}

/// `{"<label>":name,"encver":n,"raw_base64":...}` for a module value's raw bytes.
fn module_value(out: &mut impl Write, label: &str, raw: &[u8]) -> std::io::Result<()> {
    out.write_all(b"{\"")?;
    out.write_all(label.as_bytes())?;
    out.write_all(b"\":")?;
    match ModuleType::of_value(raw) {
        Some(module) => {
            json::string(out, &module.name)?;
            out.write_all(b",\"encver\":")?;
            json::u64(out, module.encver)?;
        }
        None => out.write_all(b"null,\"encver\":null")?,
    }
    out.write_all(b",\"raw_base64\":\"")?;
    out.write_all(json::base64(raw).as_bytes())?;
    out.write_all(b"\"}")
}

/// A second parser over the same file that runs ahead to each big string, to tell whether
/// its parts together are UTF-8. It sees the same events in the same order (same options),
/// so the main parser's event count finds the same value.
struct Scout {
    parser: Option<Parser<File>>,
    /// Events this parser has returned.
    seen: u64,
}

impl Scout {
    fn open(opts: &InspectOptions) -> Scout {
        let parser = File::open(&opts.file).ok().and_then(|f| {
            let mut o = opts.limits.options();
            o.verify_checksum = false;
            Parser::new(f, o).ok()
        });
        Scout { parser, seen: 0 }
    }

    /// `start` counts the events up to and including the big string's BigValueStart. If
    /// anything goes wrong the answer is "not UTF-8", which is lossless too (base64).
    fn utf8_of_big_string(&mut self, start: u64) -> bool {
        let r = self.try_utf8(start);
        if r.is_none() {
            self.parser = None;
        }
        r.unwrap_or(false)
    }

    fn try_utf8(&mut self, start: u64) -> Option<bool> {
        let p = self.parser.as_mut()?;
        if self.seen >= start {
            return None;
        }
        while self.seen < start {
            let ev = p.next_event().ok()??;
            self.seen += 1;
            if self.seen == start && !matches!(ev, Event::BigValueStart(_)) {
                return None;
            }
        }
        let mut check = Utf8Check::default();
        loop {
            let ev = p.next_event().ok()??;
            self.seen += 1;
            match ev {
                Event::BigValueChunk(Chunk::StringPart(part)) => check.feed(&part),
                Event::BigValueEnd => return Some(check.finish()),
                _ => return None,
            }
        }
    }
}

/// Writes one value's JSON from its chunks: `start`, `chunk` for each, `end`.
enum ValueWriter {
    /// A string: as JSON string text when it is UTF-8, else streamed base64.
    Str {
        utf8: bool,
        b64: Base64,
    },
    /// An array of elements (list, set, zset, hash).
    Seq {
        first: bool,
    },
    Stream(StreamState),
}

enum StreamState {
    Entries {
        first: bool,
    },
    Groups {
        first: bool,
        open: Option<bool>,
    },
    /// Inside `"idmp"`'s producers: the open producer's pid and first-iid flag.
    Idmp {
        first: bool,
        open: Option<(Bytes, bool)>,
    },
    /// `"idmp"` written whole but for its closing brace.
    IdmpDone,
}

fn sep(out: &mut impl Write, first: &mut bool) -> std::io::Result<()> {
    if !std::mem::take(first) {
        out.write_all(b",")?;
    }
    Ok(())
}

fn id(out: &mut impl Write, id: StreamId) -> std::io::Result<()> {
    out.write_all(b"\"")?;
    json::u64(out, id.ms)?;
    out.write_all(b"-")?;
    json::u64(out, id.seq)?;
    out.write_all(b"\"")
}

fn opt_id(out: &mut impl Write, i: Option<StreamId>) -> std::io::Result<()> {
    match i {
        Some(i) => id(out, i),
        None => out.write_all(b"null"),
    }
}

impl ValueWriter {
    /// Opens the value; `utf8` says whether a string's bytes are valid UTF-8 as a whole.
    fn start(out: &mut impl Write, meta: &KeyMeta, utf8: bool) -> std::io::Result<Self> {
        Ok(match meta.type_byte.kind() {
            Some(Kind::String) => {
                out.write_all(if utf8 { b"\"" } else { b"{\"base64\":\"" })?;
                ValueWriter::Str {
                    utf8,
                    b64: Base64::default(),
                }
            }
            Some(Kind::Stream) => {
                out.write_all(b"{\"entries\":[")?;
                ValueWriter::Stream(StreamState::Entries { first: true })
            }
            _ => {
                out.write_all(b"[")?;
                ValueWriter::Seq { first: true }
            }
        })
    }

    fn chunk(&mut self, out: &mut impl Write, c: &Chunk) -> std::io::Result<()> {
        match (self, c) {
            (ValueWriter::Str { utf8, b64 }, Chunk::StringPart(p)) => {
                if *utf8 {
                    json::escaped(out, p)
                } else {
                    b64.write(out, p)
                }
            }
            (ValueWriter::Seq { first }, c) => seq_chunk(out, first, c),
            (ValueWriter::Stream(s), c) => stream_chunk(out, s, c),
            // A chunk that does not fit the type: the parser never sends one.
            _ => Ok(()),
        }
    }

    fn end(self, out: &mut impl Write) -> std::io::Result<()> {
        match self {
            ValueWriter::Str { utf8: true, .. } => out.write_all(b"\""),
            ValueWriter::Str { mut b64, .. } => {
                b64.finish(out)?;
                out.write_all(b"\"}")
            }
            ValueWriter::Seq { .. } => out.write_all(b"]"),
            ValueWriter::Stream(StreamState::Entries { .. }) => {
                out.write_all(b"],\"meta\":null,\"groups\":[]}")
            }
            ValueWriter::Stream(StreamState::Groups { open, .. }) => {
                if open.is_some() {
                    out.write_all(b"]}")?;
                }
                out.write_all(b"]}")
            }
            // The parser always ends IDMP state with its counters; close what is open anyway.
            ValueWriter::Stream(StreamState::Idmp { open, .. }) => {
                if open.is_some() {
                    out.write_all(b"]}")?;
                }
                out.write_all(b"]}}")
            }
            ValueWriter::Stream(StreamState::IdmpDone) => out.write_all(b"}}"),
        }
    }
}

fn seq_chunk(out: &mut impl Write, first: &mut bool, c: &Chunk) -> std::io::Result<()> {
    match c {
        Chunk::ListItems(items) | Chunk::SetMembers(items) => {
            for it in items {
                sep(out, first)?;
                json::bytes(out, it)?;
            }
        }
        Chunk::ZSetEntries(entries) => {
            for (member, score) in entries {
                sep(out, first)?;
                out.write_all(b"[")?;
                json::bytes(out, member)?;
                out.write_all(b",")?;
                json::score(out, *score)?;
                out.write_all(b"]")?;
            }
        }
        Chunk::HashFields(fields) => {
            for HashField {
                field,
                value,
                expire_ms,
            } in fields
            {
                sep(out, first)?;
                out.write_all(b"[")?;
                json::bytes(out, field)?;
                out.write_all(b",")?;
                json::bytes(out, value)?;
                if let Some(ms) = expire_ms {
                    out.write_all(b",")?;
                    json::i64(out, *ms)?;
                }
                out.write_all(b"]")?;
            }
        }
        _ => {}
    }
    Ok(())
}

fn stream_chunk(out: &mut impl Write, s: &mut StreamState, c: &Chunk) -> std::io::Result<()> {
    match (&mut *s, c) {
        (StreamState::Entries { first }, Chunk::StreamEntries(entries)) => {
            for StreamEntry { id: i, fields } in entries {
                sep(out, first)?;
                out.write_all(b"[")?;
                id(out, *i)?;
                out.write_all(b",[")?;
                let mut f1 = true;
                for (f, v) in fields {
                    sep(out, &mut f1)?;
                    out.write_all(b"[")?;
                    json::bytes(out, f)?;
                    out.write_all(b",")?;
                    json::bytes(out, v)?;
                    out.write_all(b"]")?;
                }
                out.write_all(b"]]")?;
            }
        }
        (StreamState::Entries { .. }, Chunk::StreamMeta(m)) => {
            out.write_all(b"],\"meta\":")?;
            stream_meta(out, m)?;
            out.write_all(b",\"groups\":[")?;
            *s = StreamState::Groups {
                first: true,
                open: None,
            };
        }
        (StreamState::Groups { first, open }, Chunk::StreamGroup(g)) => {
            if open.is_some() {
                out.write_all(b"]}")?;
            }
            sep(out, first)?;
            stream_group(out, g)?;
            *open = Some(true);
        }
        (
            StreamState::Groups {
                open: Some(pfirst), ..
            },
            Chunk::StreamPending { entries, .. },
        ) => {
            for PendingEntry {
                id: i,
                delivery_time_ms,
                delivery_count,
                consumer,
            } in entries
            {
                sep(out, pfirst)?;
                out.write_all(b"{\"id\":")?;
                id(out, *i)?;
                out.write_all(b",\"consumer\":")?;
                json::bytes(out, consumer)?;
                out.write_all(b",\"delivery_time_ms\":")?;
                json::i64(out, *delivery_time_ms)?;
                out.write_all(b",\"delivery_count\":")?;
                json::u64(out, *delivery_count)?;
                out.write_all(b"}")?;
            }
        }
        (StreamState::Groups { open, .. }, Chunk::StreamIdmp(idmp)) => {
            if open.is_some() {
                out.write_all(b"]}")?;
            }
            out.write_all(b"],\"idmp\":{\"duration_s\":")?;
            json::u64(out, idmp.duration_s)?;
            out.write_all(b",\"max_size\":")?;
            json::u64(out, idmp.max_size)?;
            out.write_all(b",\"producers\":[")?;
            *s = StreamState::Idmp {
                first: true,
                open: None,
            };
        }
        (StreamState::Idmp { first, open }, Chunk::StreamIdmpEntries { producer, entries }) => {
            if open.as_ref().is_none_or(|(p, _)| p != producer) {
                if open.is_some() {
                    out.write_all(b"]}")?;
                }
                sep(out, first)?;
                out.write_all(b"{\"pid\":")?;
                json::bytes(out, producer)?;
                out.write_all(b",\"iids\":[")?;
                *open = Some((producer.clone(), true));
            }
            if let Some((_, ifirst)) = open {
                for e in entries {
                    sep(out, ifirst)?;
                    out.write_all(b"[")?;
                    json::bytes(out, &e.iid)?;
                    out.write_all(b",")?;
                    id(out, e.id)?;
                    out.write_all(b"]")?;
                }
            }
        }
        (
            StreamState::Idmp { open, .. },
            Chunk::StreamIdmpCounters {
                iids_added,
                iids_duplicates,
            },
        ) => {
            if open.is_some() {
                out.write_all(b"]}")?;
            }
            out.write_all(b"],\"iids_added\":")?;
            json::u64(out, *iids_added)?;
            out.write_all(b",\"iids_duplicates\":")?;
            json::u64(out, *iids_duplicates)?;
            *s = StreamState::IdmpDone;
        }
        _ => {}
    }
    Ok(())
}

fn stream_meta(out: &mut impl Write, m: &StreamMeta) -> std::io::Result<()> {
    out.write_all(b"{\"length\":")?;
    json::u64(out, m.length)?;
    out.write_all(b",\"last_id\":")?;
    id(out, m.last_id)?;
    out.write_all(b",\"first_id\":")?;
    opt_id(out, m.first_id)?;
    out.write_all(b",\"max_deleted_id\":")?;
    opt_id(out, m.max_deleted_id)?;
    out.write_all(b",\"entries_added\":")?;
    json::opt_u64(out, m.entries_added)?;
    out.write_all(b"}")
}

/// Opens a group object up to its pending array: `{"name":..,..,"pending":[`.
fn stream_group(out: &mut impl Write, g: &StreamGroup) -> std::io::Result<()> {
    out.write_all(b"{\"name\":")?;
    json::bytes(out, &g.name)?;
    out.write_all(b",\"last_id\":")?;
    id(out, g.last_id)?;
    out.write_all(b",\"entries_read\":")?;
    json::opt_u64(out, g.entries_read)?;
    out.write_all(b",\"consumers\":[")?;
    let mut first = true;
    for Consumer {
        name,
        seen_time_ms,
        active_time_ms,
    } in &g.consumers
    {
        sep(out, &mut first)?;
        out.write_all(b"{\"name\":")?;
        json::bytes(out, name)?;
        out.write_all(b",\"seen_time_ms\":")?;
        json::i64(out, *seen_time_ms)?;
        out.write_all(b",\"active_time_ms\":")?;
        json::opt_i64(out, *active_time_ms)?;
        out.write_all(b"}")?;
    }
    out.write_all(b"],\"pending\":[")
}
