//! `ferry rdb stats`: keys, expiring keys and bytes per db, per type and per encoding, and
//! the biggest keys.
//!
//! A key's size (`bytes`) is what its entry takes in the file: its expiry, LRU and LFU
//! opcodes, type byte, key name and serialized value, measured as the difference of
//! [`ferry_rdb::Parser::bytes_read`] before the key's first event and after its last (the
//! record, or `BigValueEnd` for a value that arrives in chunks). One measure for small and
//! big values alike, and the sizes of all keys plus the file's headers, aux fields and
//! checksum add up to the file's size.
//!
//! Element counts (`elements`: list items, set and zset members, hash fields, stream
//! entries) are reported for the biggest keys only: counted from the chunks of a big value,
//! decoded for a small one when it enters the list.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::io::Write;
use std::path::PathBuf;

use bytes::Bytes;
use ferry_rdb::{Chunk, Event, KeyMeta, Kind, TypeByte, decode_value};
use serde_json::{Value, json};

use super::json::bytes_value;
use super::{Error, Filter, Limits, open, type_name};
use ferry_engine::text::escape as printable;

#[derive(Clone, Debug)]
pub struct StatsOptions {
    pub file: PathBuf,
    pub filter: Filter,
    /// How many of the biggest keys to list.
    pub top: usize,
    pub limits: Limits,
}

/// Keys, expiring keys and bytes of a group of keys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub keys: u64,
    pub expiring: u64,
    pub bytes: u64,
}

impl Counts {
    fn add(&mut self, expiring: bool, bytes: u64) {
        self.keys += 1;
        self.expiring += u64::from(expiring);
        self.bytes += bytes;
    }

    fn json(&self) -> Value {
        json!({ "keys": self.keys, "expiring": self.expiring, "bytes": self.bytes })
    }
}

/// One of the biggest keys.
#[derive(Clone, Debug)]
pub struct BigKey {
    pub bytes: u64,
    /// Position in the file (ties go to the earlier key).
    seq: u64,
    pub db: u64,
    pub key: Bytes,
    pub type_byte: TypeByte,
    pub expire_ms: Option<i64>,
    /// `None` for strings and module values, or when the value could not be decoded.
    pub elements: Option<u64>,
}

impl BigKey {
    /// Heap order: the greatest is the one to drop first (smallest, then latest).
    fn rank(&self) -> (Reverse<u64>, u64) {
        (Reverse(self.bytes), self.seq)
    }
}

impl PartialEq for BigKey {
    fn eq(&self, o: &Self) -> bool {
        self.rank() == o.rank()
    }
}
impl Eq for BigKey {}
impl PartialOrd for BigKey {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for BigKey {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&o.rank())
    }
}

/// Everything `stats` reports.
#[derive(Debug, Default)]
pub struct Report {
    pub file: PathBuf,
    pub rdb_version: u16,
    pub file_bytes: u64,
    pub total: Counts,
    pub dbs: BTreeMap<u64, Counts>,
    pub types: BTreeMap<&'static str, Counts>,
    /// By (type, encoding).
    pub encodings: BTreeMap<(&'static str, &'static str), Counts>,
    /// Biggest first.
    pub biggest: Vec<BigKey>,
    pub functions: u64,
    pub module_aux: u64,
    pub aux: Vec<(Bytes, Bytes)>,
}

/// A big value being counted as its chunks pass.
struct Open {
    meta: KeyMeta,
    start: u64,
    elements: Option<u64>,
}

fn chunk_elements(c: &Chunk) -> u64 {
    match c {
        Chunk::ListItems(v) | Chunk::SetMembers(v) => v.len() as u64,
        Chunk::ZSetEntries(v) => v.len() as u64,
        Chunk::HashFields(v) => v.len() as u64,
        Chunk::StreamEntries(v) => v.len() as u64,
        _ => 0,
    }
}

/// Elements of a whole value: the stream's recorded length, else the sum of its chunks.
fn elements_of(chunks: &[Chunk]) -> u64 {
    chunks
        .iter()
        .find_map(|c| match c {
            Chunk::StreamMeta(m) => Some(m.length),
            _ => None,
        })
        .unwrap_or_else(|| chunks.iter().map(chunk_elements).sum())
}

fn counts_elements(t: TypeByte) -> bool {
    !matches!(t.kind(), Some(Kind::String | Kind::Module) | None)
}

struct Top {
    n: usize,
    heap: BinaryHeap<BigKey>,
    seq: u64,
}

impl Top {
    /// Would a key of this size make the list?
    fn wants(&self, bytes: u64) -> bool {
        self.n > 0
            && (self.heap.len() < self.n || self.heap.peek().is_some_and(|w| bytes > w.bytes))
    }

    fn push(&mut self, meta: &KeyMeta, bytes: u64, elements: Option<u64>) {
        if self.heap.len() >= self.n {
            self.heap.pop();
        }
        self.heap.push(BigKey {
            bytes,
            seq: self.seq,
            db: meta.db,
            key: meta.key.clone(),
            type_byte: meta.type_byte,
            expire_ms: meta.expire_ms,
            elements,
        });
    }
}

/// Reads the whole file and counts.
pub fn collect(opts: &StatsOptions) -> Result<Report, Error> {
    let file = opts.file.as_path();
    let mut parser = open(file, &opts.limits)?;
    let version = parser.rdb_version();
    let mut r = Report {
        file: opts.file.clone(),
        rdb_version: version,
        ..Report::default()
    };
    let mut top = Top {
        n: opts.top,
        heap: BinaryHeap::new(),
        seq: 0,
    };
    let mut open_big: Option<Open> = None;
    let mut skipping = false;
    loop {
        let before = parser.bytes_read();
        let ev = match parser.next_event() {
            Ok(Some(ev)) => ev,
            Ok(None) => break,
            Err(e) => return Err(Error::parse(file, &e)),
        };
        let key_done = match ev {
            Event::Key(rec) => {
                if !opts.filter.matches(rec.meta.db, &rec.meta.key) {
                    continue;
                }
                let bytes = parser.bytes_read() - before;
                if top.wants(bytes) {
                    let elements = if counts_elements(rec.meta.type_byte) {
                        decode_value(rec.meta.type_byte, &rec.raw, version)
                            .ok()
                            .map(|c| elements_of(&c))
                    } else {
                        None
                    };
                    top.push(&rec.meta, bytes, elements);
                }
                Some((rec.meta, bytes))
            }
            Event::BigValueStart(meta) => {
                skipping = !opts.filter.matches(meta.db, &meta.key);
                if !skipping {
                    let elements = counts_elements(meta.type_byte).then_some(0);
                    open_big = Some(Open {
                        meta,
                        start: before,
                        elements,
                    });
                }
                None
            }
            Event::BigValueChunk(c) => {
                if let Some(Open {
                    elements: Some(n), ..
                }) = &mut open_big
                {
                    match &c {
                        Chunk::StreamMeta(m) => *n = m.length,
                        Chunk::StreamEntries(_) => {}
                        c => *n += chunk_elements(c),
                    }
                }
                None
            }
            Event::BigValueEnd => {
                if skipping {
                    skipping = false;
                    None
                } else {
                    open_big.take().map(|o| {
                        let bytes = parser.bytes_read() - o.start;
                        if top.wants(bytes) {
                            top.push(&o.meta, bytes, o.elements);
                        }
                        (o.meta, bytes)
                    })
                }
            }
            Event::Aux { key, value } => {
                r.aux.push((key, value));
                None
            }
            Event::Function { .. } => {
                r.functions += 1;
                None
            }
            Event::ModuleAux { .. } => {
                r.module_aux += 1;
                None
            }
            Event::SelectDb(_)
            | Event::ResizeDb { .. }
            | Event::SlotImport { .. }
            | Event::SlotInfo { .. }
            | Event::End { .. } => None,
        };
        if let Some((meta, bytes)) = key_done {
            top.seq += 1;
            let exp = meta.expire_ms.is_some();
            let t = meta.type_byte;
            r.total.add(exp, bytes);
            r.dbs.entry(meta.db).or_default().add(exp, bytes);
            r.types.entry(type_name(t)).or_default().add(exp, bytes);
            r.encodings
                .entry((type_name(t), t.encoding_name()))
                .or_default()
                .add(exp, bytes);
        }
    }
    r.file_bytes = std::fs::metadata(file)
        .map(|m| m.len())
        .unwrap_or_else(|_| parser.bytes_read());
    r.biggest = top.heap.into_sorted_vec();
    Ok(r)
}

impl Report {
    /// The report as one JSON object.
    pub fn to_json(&self) -> Value {
        let aux: serde_json::Map<String, Value> = self
            .aux
            .iter()
            .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), bytes_value(v)))
            .collect();
        json!({
            "file": self.file.display().to_string(),
            "rdb_version": self.rdb_version,
            "file_bytes": self.file_bytes,
            "keys": self.total.keys,
            "expiring_keys": self.total.expiring,
            "key_bytes": self.total.bytes,
            "functions": self.functions,
            "module_aux": self.module_aux,
            "aux": aux,
            "dbs": self.dbs.iter().map(|(db, c)| {
                let mut v = c.json();
                v["db"] = json!(db);
                v
            }).collect::<Vec<_>>(),
            "types": self.types.iter().map(|(t, c)| {
                let mut v = c.json();
                v["type"] = json!(t);
                v
            }).collect::<Vec<_>>(),
            "encodings": self.encodings.iter().map(|((t, e), c)| {
                let mut v = c.json();
                v["type"] = json!(t);
                v["encoding"] = json!(e);
                v
            }).collect::<Vec<_>>(),
            "biggest": self.biggest.iter().map(|b| json!({
                "db": b.db,
                "key": bytes_value(&b.key),
                "type": type_name(b.type_byte),
                "encoding": b.type_byte.encoding_name(),
                "bytes": b.bytes,
                "elements": b.elements,
                "expire_ms": b.expire_ms,
            })).collect::<Vec<_>>(),
        })
    }

    pub fn write_json(&self, out: &mut impl Write) -> std::io::Result<()> {
        serde_json::to_writer(&mut *out, &self.to_json()).map_err(std::io::Error::other)?;
        out.write_all(b"\n")
    }

    /// The report as text tables.
    pub fn write_table(&self, out: &mut impl Write) -> std::io::Result<()> {
        writeln!(out, "file         {}", self.file.display())?;
        writeln!(
            out,
            "format       RDB version {}, {} bytes, {} in keys",
            self.rdb_version,
            self.file_bytes,
            human(self.total.bytes)
        )?;
        writeln!(
            out,
            "keys         {} ({} expiring) in {} db{}",
            self.total.keys,
            self.total.expiring,
            self.dbs.len(),
            if self.dbs.len() == 1 { "" } else { "s" }
        )?;
        if self.functions > 0 || self.module_aux > 0 {
            writeln!(
                out,
                "other        {} function libraries, {} module aux sections",
                self.functions, self.module_aux
            )?;
        }
        if !self.aux.is_empty() {
            let aux: Vec<String> = self
                .aux
                .iter()
                .map(|(k, v)| format!("{}={}", String::from_utf8_lossy(k), printable(v)))
                .collect();
            writeln!(out, "aux          {}", aux.join(" "))?;
        }
        let num = |c: &Counts| {
            vec![
                c.keys.to_string(),
                c.expiring.to_string(),
                c.bytes.to_string(),
                human(c.bytes),
            ]
        };
        let mut rows = Vec::new();
        for (db, c) in &self.dbs {
            let mut row = vec![db.to_string()];
            row.extend(num(c));
            rows.push(row);
        }
        writeln!(out)?;
        table(
            out,
            &["db", "keys", "expiring", "bytes", ""],
            &rows,
            "lrrrr",
        )?;
        let mut rows = Vec::new();
        for (t, c) in &self.types {
            let mut row = vec![t.to_string()];
            row.extend(num(c));
            rows.push(row);
        }
        writeln!(out)?;
        table(
            out,
            &["type", "keys", "expiring", "bytes", ""],
            &rows,
            "lrrrr",
        )?;
        let mut rows = Vec::new();
        for ((t, e), c) in &self.encodings {
            let mut row = vec![t.to_string(), e.to_string()];
            row.extend(num(c));
            rows.push(row);
        }
        writeln!(out)?;
        table(
            out,
            &["type", "encoding", "keys", "expiring", "bytes", ""],
            &rows,
            "llrrrr",
        )?;
        if !self.biggest.is_empty() {
            let rows: Vec<Vec<String>> = self
                .biggest
                .iter()
                .map(|b| {
                    vec![
                        b.bytes.to_string(),
                        human(b.bytes),
                        b.elements.map_or("-".into(), |n| n.to_string()),
                        b.db.to_string(),
                        type_name(b.type_byte).to_string(),
                        b.type_byte.encoding_name().to_string(),
                        printable(&b.key),
                    ]
                })
                .collect();
            writeln!(out, "\nbiggest keys")?;
            table(
                out,
                &["bytes", "", "elements", "db", "type", "encoding", "key"],
                &rows,
                "rrrrlll",
            )?;
        }
        Ok(())
    }
}

/// Writes rows under a header, column `i` aligned by `align`'s byte `i` (`l` or `r`).
fn table(
    out: &mut impl Write,
    header: &[&str],
    rows: &[Vec<String>],
    align: &str,
) -> std::io::Result<()> {
    let mut width: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let last = header.len() - 1;
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = width[i].saturating_sub(c.chars().count());
            if align.as_bytes().get(i) == Some(&b'l') {
                s.push_str(c);
                if i != last {
                    s.push_str(&" ".repeat(pad));
                }
            } else {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            }
        }
        s.truncate(s.trim_end().len());
        s
    };
    writeln!(out, "{}", line(&mut header.iter().copied()))?;
    for r in rows {
        writeln!(out, "{}", line(&mut r.iter().map(String::as_str)))?;
    }
    Ok(())
}

/// `12.3 MiB` and the like.
fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human(0), "0 B");
        assert_eq!(human(1023), "1023 B");
        assert_eq!(human(1536), "1.5 KiB");
        assert_eq!(human(3 * 1024 * 1024 * 1024), "3.0 GiB");
    }

    #[test]
    fn top_keeps_the_biggest_and_first_on_ties() {
        let mut top = Top {
            n: 3,
            heap: BinaryHeap::new(),
            seq: 0,
        };
        let meta = |k: &str| KeyMeta {
            db: 0,
            key: Bytes::copy_from_slice(k.as_bytes()),
            expire_ms: None,
            idle: None,
            freq: None,
            type_byte: TypeByte::STRING,
            key_metadata: None,
        };
        for (k, size) in [("a", 5), ("b", 9), ("c", 5), ("d", 1), ("e", 7), ("f", 5)] {
            if top.wants(size) {
                top.push(&meta(k), size, None);
            }
            top.seq += 1;
        }
        let got: Vec<_> = top
            .heap
            .into_sorted_vec()
            .into_iter()
            .map(|b| (b.key, b.bytes))
            .collect();
        assert_eq!(
            got,
            vec![
                (Bytes::from("b"), 9),
                (Bytes::from("e"), 7),
                (Bytes::from("a"), 5)
            ]
        );
    }
}
