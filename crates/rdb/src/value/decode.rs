//! Decodes a value into [`Chunk`]s, one chunk at a time, reading from the stream: the
//! state machine behind big values and [`decode_value`](crate::decode_value).
//!
//! Memory: at most one chunk of elements, plus one whole element of at most
//! `ChunkLimits::huge` bytes (a longer string element, quicklist node or listpack/ziplist
//! value is read in pieces: see `pieces`), plus, for a stream, one consumer group's PEL and
//! consumers or one stream node, or one intset or zipmap value (read whole).
//! (A type-26 stream's IDMP iids come a chunk at a time.)

use std::collections::VecDeque;
use std::io::Read;

use bytes::Bytes;

use super::pieces::{Blob, Node, NodeKind, Opened, Src, Step, open_string};
use super::{Elem, intset, listpack, stream, ziplist, zipmap};
use crate::chunk::{
    Chunk, Consumer, Element, HashField, IdmpEntry, PendingEntry, StreamGroup, StreamId,
    StreamIdmp, StreamMeta,
};
use crate::error::{Error, ErrorKind};
use crate::length::{Len, read_f64, read_len, read_len_id, read_length, read_ms, read_raw_id};
use crate::reader::Reader;
use crate::string::{
    LzfStream, MAX_ELEMENT_BYTES, lzf_whole, read_int, read_lzf_lens, read_string, read_string_vec,
    read_text_double,
};
use crate::types::TypeByte;

/// Chunk size limits.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChunkLimits {
    pub elements: usize,
    pub bytes: usize,
    /// An element longer than this comes in `ElementPart`s.
    pub huge: u64,
}

/// What is being read in pieces, across calls.
enum Piece {
    /// A string element, then what ends it.
    Str { src: Src, then: Then },
    /// A quicklist node longer than the threshold, entry by entry.
    Node(Box<Node>),
    /// A value stored as one listpack or ziplist longer than the threshold, entry by entry,
    /// its entries taken as its type's tuples.
    Blob(Box<BlobValue>),
}

/// Where a tuple of a compact value stands: `i` entries of it read; the first (a member or
/// field) whole or in parts, the second (a hash value) too.
struct BlobValue {
    node: Node,
    ty: u8,
    i: usize,
    first: Held,
    second: Held,
}

enum Held {
    Whole(Bytes),
    /// Sent in parts (and, for a hash field, ended).
    Parts,
}

impl BlobValue {
    fn tuple(&self) -> usize {
        match self.ty {
            10 | 20 => 1,
            23 | 25 => 3,
            _ => 2,
        }
    }
}

/// What follows a string element's last part.
enum Then {
    ListItem,
    SetMember,
    /// Its score follows (text in type 3, binary in type 5).
    ZSetMember,
    /// Its value follows, then (`Ttl::After`) the field's expiry.
    HashField(Ttl),
    HashValue {
        field: Option<Bytes>,
        ttl: Ttl,
    },
}

/// A hash field's expiry: read before its field (Redis), or stored after its value (Valkey).
#[derive(Clone, Copy)]
enum Ttl {
    Known(Option<i64>),
    After,
}

enum State {
    Start,
    Str {
        remaining: u64,
    },
    /// An LZF-compressed string, decompressed a chunk at a time.
    Lzf(LzfStream),
    Seq {
        remaining: u64,
        min_expire: i64,
    },
    Nodes {
        remaining: u64,
    },
    StreamNodes {
        remaining: u64,
    },
    StreamGroups {
        remaining: u64,
    },
    /// Type 26: IDMP producers left to read.
    IdmpProducers {
        remaining: u64,
    },
    /// Type 26: iids left of `producer`, then `producers_left` more producers.
    IdmpEntries {
        producer: Bytes,
        remaining: u64,
        producers_left: u64,
    },
    Done,
}

pub(crate) struct Decoder {
    ty: TypeByte,
    version: u16,
    lim: ChunkLimits,
    state: State,
    pending: VecDeque<Chunk>,
    piece: Option<Piece>,
}

/// Splits `items` into chunks of at most `lim.elements` items and about `lim.bytes` bytes.
fn split<T>(
    items: Vec<T>,
    size: impl Fn(&T) -> usize,
    lim: ChunkLimits,
    make: impl Fn(Vec<T>) -> Chunk,
    out: &mut VecDeque<Chunk>,
) {
    let mut cur = Vec::new();
    let mut bytes = 0usize;
    for it in items {
        bytes += size(&it);
        cur.push(it);
        if cur.len() >= lim.elements || bytes >= lim.bytes {
            out.push_back(make(std::mem::take(&mut cur)));
            bytes = 0;
        }
    }
    if !cur.is_empty() {
        out.push_back(make(cur));
    }
}

fn hf_size(f: &HashField) -> usize {
    f.field.len() + f.value.len() + 8
}

fn bad(at: u64) -> impl Fn(&'static str) -> Error {
    move |e| Error::new(ErrorKind::Corrupt(e), at)
}

fn elems<'a>(
    it: impl Iterator<Item = Result<Elem<'a>, &'static str>>,
) -> Result<Vec<Elem<'a>>, &'static str> {
    it.collect()
}

fn pairs<'a, 'b>(e: &'b [Elem<'a>]) -> Result<std::slice::ChunksExact<'b, Elem<'a>>, &'static str> {
    if !e.len().is_multiple_of(2) {
        return Err("odd number of elements in a pair encoding");
    }
    Ok(e.chunks_exact(2))
}

fn to_zset(e: &[Elem<'_>]) -> Result<Vec<(Bytes, f64)>, &'static str> {
    pairs(e)?
        .map(|p| {
            Ok((
                p[0].to_bytes(),
                p[1].as_f64().ok_or("zset score is not a number")?,
            ))
        })
        .collect()
}

fn to_hash(e: &[Elem<'_>]) -> Result<Vec<HashField>, &'static str> {
    Ok(pairs(e)?
        .map(|p| HashField {
            field: p[0].to_bytes(),
            value: p[1].to_bytes(),
            expire_ms: None,
        })
        .collect())
}

/// Decodes a whole compact blob (types 9-13, 16, 17, 20, 23, 25) into chunks.
fn decode_blob(
    ty: u8,
    b: &[u8],
    lim: ChunkLimits,
    out: &mut VecDeque<Chunk>,
) -> Result<(), &'static str> {
    let bsz = |b: &Bytes| b.len();
    match ty {
        9 => {
            let f = zipmap::pairs(b)?
                .into_iter()
                .map(|(k, v)| HashField {
                    field: Bytes::copy_from_slice(k),
                    value: Bytes::copy_from_slice(v),
                    expire_ms: None,
                })
                .collect();
            split(f, hf_size, lim, Chunk::HashFields, out);
        }
        10 => {
            let v = elems(ziplist::iter(b)?)?
                .into_iter()
                .map(Elem::to_bytes)
                .collect();
            split(v, bsz, lim, Chunk::ListItems, out);
        }
        11 => {
            let v = intset::values(b)?
                .map(|i| Bytes::from(i.to_string()))
                .collect();
            split(v, bsz, lim, Chunk::SetMembers, out);
        }
        12 => split(
            to_zset(&elems(ziplist::iter(b)?)?)?,
            |e| e.0.len() + 8,
            lim,
            Chunk::ZSetEntries,
            out,
        ),
        13 => split(
            to_hash(&elems(ziplist::iter(b)?)?)?,
            hf_size,
            lim,
            Chunk::HashFields,
            out,
        ),
        16 => split(
            to_hash(&elems(listpack::iter(b)?)?)?,
            hf_size,
            lim,
            Chunk::HashFields,
            out,
        ),
        17 => split(
            to_zset(&elems(listpack::iter(b)?)?)?,
            |e| e.0.len() + 8,
            lim,
            Chunk::ZSetEntries,
            out,
        ),
        20 => {
            let v = elems(listpack::iter(b)?)?
                .into_iter()
                .map(Elem::to_bytes)
                .collect();
            split(v, bsz, lim, Chunk::SetMembers, out);
        }
        23 | 25 => {
            let e = elems(listpack::iter(b)?)?;
            if !e.len().is_multiple_of(3) {
                return Err("listpack-ex element count is not a multiple of 3");
            }
            let f = e
                .chunks_exact(3)
                .map(|t| {
                    let ttl = t[2].as_i64().ok_or("hash field TTL is not an integer")?;
                    Ok(HashField {
                        field: t[0].to_bytes(),
                        value: t[1].to_bytes(),
                        expire_ms: (ttl != 0).then_some(ttl),
                    })
                })
                .collect::<Result<Vec<_>, &'static str>>()?;
            split(f, hf_size, lim, Chunk::HashFields, out);
        }
        _ => return Err("not a compact encoding"),
    }
    Ok(())
}

enum Acc {
    List(Vec<Bytes>),
    Set(Vec<Bytes>),
    ZSet(Vec<(Bytes, f64)>),
    Hash(Vec<HashField>),
}

impl Acc {
    fn empty(&self) -> Acc {
        match self {
            Acc::List(_) => Acc::List(Vec::new()),
            Acc::Set(_) => Acc::Set(Vec::new()),
            Acc::ZSet(_) => Acc::ZSet(Vec::new()),
            Acc::Hash(_) => Acc::Hash(Vec::new()),
        }
    }

    fn len(&self) -> usize {
        match self {
            Acc::List(v) | Acc::Set(v) => v.len(),
            Acc::ZSet(v) => v.len(),
            Acc::Hash(v) => v.len(),
        }
    }

    fn into_chunk(self) -> Chunk {
        match self {
            Acc::List(v) => Chunk::ListItems(v),
            Acc::Set(v) => Chunk::SetMembers(v),
            Acc::ZSet(v) => Chunk::ZSetEntries(v),
            Acc::Hash(v) => Chunk::HashFields(v),
        }
    }
}

impl Decoder {
    pub(crate) fn new(ty: TypeByte, version: u16, lim: ChunkLimits) -> Self {
        let lim = ChunkLimits {
            elements: lim.elements.max(1),
            bytes: lim.bytes.max(1),
            huge: lim.huge,
        };
        Self {
            ty,
            version,
            lim,
            state: State::Start,
            pending: VecDeque::new(),
            piece: None,
        }
    }

    /// The next chunk of the value, or `None` once the value has been read to its end.
    pub(crate) fn next_chunk<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
    ) -> Result<Option<Chunk>, Error> {
        loop {
            if let Some(c) = self.pending.pop_front() {
                return Ok(Some(c));
            }
            if self.piece.is_some() {
                self.read_piece(rd)?;
                continue;
            }
            match self.state {
                State::Done => return Ok(None),
                State::Start => self.start(rd)?,
                State::Str { remaining } => {
                    if remaining == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    let n = remaining.min(self.lim.bytes as u64);
                    let part = rd.vec(n)?;
                    self.state = State::Str {
                        remaining: remaining - n,
                    };
                    return Ok(Some(Chunk::StringPart(part.into())));
                }
                State::Lzf(ref mut lzf) => match lzf.next_part(rd, self.lim.bytes)? {
                    Some(part) => return Ok(Some(Chunk::StringPart(part.into()))),
                    None => self.state = State::Done,
                },
                State::Seq {
                    remaining,
                    min_expire,
                } => {
                    if remaining == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    let left = self.read_seq(rd, remaining, min_expire)?;
                    self.state = State::Seq {
                        remaining: left,
                        min_expire,
                    };
                }
                State::Nodes { remaining } => {
                    if remaining == 0 {
                        self.state = State::Done;
                        continue;
                    }
                    let left = self.read_nodes(rd, remaining)?;
                    self.state = State::Nodes { remaining: left };
                }
                State::StreamNodes { remaining } => {
                    if remaining == 0 {
                        self.read_stream_meta(rd)?;
                        continue;
                    }
                    self.read_stream_node(rd)?;
                    self.state = State::StreamNodes {
                        remaining: remaining - 1,
                    };
                }
                State::StreamGroups { remaining } => {
                    if remaining == 0 {
                        self.state = State::Done;
                        if self.ty == TypeByte::STREAM_LISTPACKS_4 {
                            self.read_idmp_config(rd)?;
                        }
                        continue;
                    }
                    self.read_group(rd)?;
                    self.state = State::StreamGroups {
                        remaining: remaining - 1,
                    };
                }
                State::IdmpProducers { remaining } => {
                    if remaining == 0 {
                        let iids_added = read_length(rd)?;
                        let iids_duplicates = read_length(rd)?;
                        self.pending.push_back(Chunk::StreamIdmpCounters {
                            iids_added,
                            iids_duplicates,
                        });
                        self.state = State::Done;
                        continue;
                    }
                    let producer = read_string(rd, MAX_ELEMENT_BYTES)?;
                    let n = read_length(rd)?;
                    if n == 0 {
                        self.pending.push_back(Chunk::StreamIdmpEntries {
                            producer: producer.clone(),
                            entries: Vec::new(),
                        });
                    }
                    self.state = State::IdmpEntries {
                        producer,
                        remaining: n,
                        producers_left: remaining - 1,
                    };
                }
                State::IdmpEntries {
                    ref producer,
                    remaining,
                    producers_left,
                } => {
                    let producer = producer.clone();
                    if remaining == 0 {
                        self.state = State::IdmpProducers {
                            remaining: producers_left,
                        };
                        continue;
                    }
                    let left = self.read_idmp_entries(rd, &producer, remaining)?;
                    self.state = State::IdmpEntries {
                        producer,
                        remaining: left,
                        producers_left,
                    };
                }
            }
        }
    }

    fn start<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        let lim = self.lim;
        self.state = State::Done;
        match self.ty.0 {
            0 => match read_len(rd)? {
                Len::Plain(n) => self.state = State::Str { remaining: n },
                Len::Int(w) => {
                    let v = read_int(rd, w)?;
                    self.pending
                        .push_back(Chunk::StringPart(Bytes::from(v.to_string())));
                }
                Len::Lzf => {
                    let (clen, ulen) = read_lzf_lens(rd)?;
                    self.state = State::Lzf(LzfStream::new(clen, ulen, rd.offset()));
                }
            },
            1..=5 | 22 => {
                let remaining = read_length(rd)?;
                self.state = State::Seq {
                    remaining,
                    min_expire: 0,
                };
            }
            24 => {
                let min_expire = read_ms(rd)?;
                let remaining = read_length(rd)?;
                self.state = State::Seq {
                    remaining,
                    min_expire,
                };
            }
            9..=13 | 16 | 17 | 20 | 23 | 25 => {
                if self.ty.0 == 25 {
                    read_ms(rd)?;
                }
                let at = rd.offset();
                let kind = match self.ty.0 {
                    10 | 12 | 13 => Some(NodeKind::Ziplist),
                    16 | 17 | 20 | 23 | 25 => Some(NodeKind::Listpack),
                    _ => None,
                };
                let blob = match (kind, read_len(rd)?) {
                    (Some(kind), Len::Plain(n)) if n > lim.huge => {
                        let blob = Blob::plain(rd, n);
                        self.start_blob(rd, blob, kind)?;
                        return Ok(());
                    }
                    (_, Len::Plain(n)) => {
                        if n > MAX_ELEMENT_BYTES {
                            return Err(rd.err(ErrorKind::TooLarge("string")));
                        }
                        rd.vec(n)?
                    }
                    (_, Len::Int(w)) => read_int(rd, w)?.to_string().into_bytes(),
                    (kind, Len::Lzf) => {
                        let (clen, ulen) = read_lzf_lens(rd)?;
                        match kind {
                            Some(kind) if ulen > lim.huge => {
                                let blob = Blob::lzf(rd, clen, ulen, at);
                                self.start_blob(rd, blob, kind)?;
                                return Ok(());
                            }
                            _ => lzf_whole(rd, clen, ulen)?,
                        }
                    }
                };
                decode_blob(self.ty.0, &blob, lim, &mut self.pending).map_err(bad(at))?;
            }
            14 | 18 => {
                self.state = State::Nodes {
                    remaining: read_length(rd)?,
                }
            }
            15 | 19 | 21 | 26 => {
                self.state = State::StreamNodes {
                    remaining: read_length(rd)?,
                }
            }
            6 | 7 => {
                return Err(rd.err(ErrorKind::Unsupported(
                    "module values are carried raw, not decoded",
                )));
            }
            t => return Err(rd.err(ErrorKind::UnknownType(t))),
        }
        Ok(())
    }

    /// Reads up to a chunk of a hashtable-encoded collection's elements into `pending`, and
    /// stops early at an element to be read in pieces (`piece`). Returns the elements left.
    fn read_seq<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        mut remaining: u64,
        min_expire: i64,
    ) -> Result<u64, Error> {
        let cap = (remaining.min(self.lim.elements as u64)) as usize;
        let ty = self.ty.0;
        let huge = self.lim.huge;
        let valkey = self.ty.is_valkey_hash2(self.version);
        let mut acc = match ty {
            1 => Acc::List(Vec::with_capacity(cap)),
            2 => Acc::Set(Vec::with_capacity(cap)),
            3 | 5 => Acc::ZSet(Vec::with_capacity(cap)),
            _ => Acc::Hash(Vec::with_capacity(cap)),
        };
        let mut bytes = 0usize;
        while remaining > 0 && acc.len() < self.lim.elements && bytes < self.lim.bytes {
            remaining -= 1;
            match &mut acc {
                Acc::List(v) | Acc::Set(v) => match open_string(rd, huge)? {
                    Opened::Whole(s) => {
                        bytes += s.len();
                        v.push(s);
                    }
                    Opened::Huge(src) => {
                        let then = if ty == 1 {
                            Then::ListItem
                        } else {
                            Then::SetMember
                        };
                        self.piece = Some(Piece::Str { src, then });
                        break;
                    }
                },
                Acc::ZSet(v) => match open_string(rd, huge)? {
                    Opened::Whole(m) => {
                        let score = self.read_score(rd)?;
                        bytes += m.len() + 8;
                        v.push((m, score));
                    }
                    Opened::Huge(src) => {
                        let then = Then::ZSetMember;
                        self.piece = Some(Piece::Str { src, then });
                        break;
                    }
                },
                Acc::Hash(v) => {
                    let ttl = if valkey {
                        Ttl::After
                    } else {
                        let ttl = if ty == 4 { 0 } else { read_length(rd)? };
                        Ttl::Known(match (ty, ttl) {
                            (_, 0) => None,
                            (24, t) => Some((t as i64).wrapping_add(min_expire).wrapping_sub(1)),
                            (_, t) => Some(t as i64),
                        })
                    };
                    let field = match open_string(rd, huge)? {
                        Opened::Whole(f) => f,
                        Opened::Huge(src) => {
                            let then = Then::HashField(ttl);
                            self.piece = Some(Piece::Str { src, then });
                            break;
                        }
                    };
                    let value = match open_string(rd, huge)? {
                        Opened::Whole(v) => v,
                        Opened::Huge(src) => {
                            let field = Some(field);
                            let then = Then::HashValue { field, ttl };
                            self.piece = Some(Piece::Str { src, then });
                            break;
                        }
                    };
                    let expire_ms = match ttl {
                        Ttl::Known(e) => e,
                        Ttl::After => {
                            let ms = read_ms(rd)?;
                            (ms != -1).then_some(ms)
                        }
                    };
                    let f = HashField {
                        field,
                        value,
                        expire_ms,
                    };
                    bytes += hf_size(&f);
                    v.push(f);
                }
            }
        }
        if acc.len() > 0 {
            self.pending.push_back(acc.into_chunk());
        }
        Ok(remaining)
    }

    fn read_score<R: Read>(&self, rd: &mut Reader<R>) -> Result<f64, Error> {
        if self.ty.0 == 3 {
            read_text_double(rd)
        } else {
            read_f64(rd)
        }
    }

    /// Moves the element in pieces on by one part (or a chunk of a node's items), or ends it.
    fn read_piece<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        let lim = self.lim;
        match self.piece.take() {
            None => {}
            Some(Piece::Str { mut src, then }) => {
                if let Some(part) = src.next_part(rd, lim.bytes)? {
                    self.pending.push_back(Chunk::ElementPart(part.into()));
                    self.piece = Some(Piece::Str { src, then });
                    return Ok(());
                }
                self.end_element(rd, then)?;
            }
            Some(Piece::Node(mut node)) => {
                let mut items = Vec::new();
                let mut bytes = 0usize;
                let mut more = true;
                while items.len() < lim.elements && bytes < lim.bytes {
                    match node.next(rd, lim.huge, lim.bytes)? {
                        Step::Item(b) => {
                            bytes += b.len();
                            items.push(b);
                            continue;
                        }
                        Step::Part(p) => {
                            if !items.is_empty() {
                                let items = std::mem::take(&mut items);
                                self.pending.push_back(Chunk::ListItems(items));
                            }
                            self.pending.push_back(Chunk::ElementPart(p));
                        }
                        Step::End => {
                            if !items.is_empty() {
                                let items = std::mem::take(&mut items);
                                self.pending.push_back(Chunk::ListItems(items));
                            }
                            self.pending.push_back(Chunk::ElementEnd(Element::ListItem));
                        }
                        Step::Done => more = false,
                    }
                    break;
                }
                if !items.is_empty() {
                    self.pending.push_back(Chunk::ListItems(items));
                }
                if more {
                    self.piece = Some(Piece::Node(node));
                }
            }
            Some(Piece::Blob(mut b)) => {
                let more = self.read_blob(rd, &mut b)?;
                self.piece = more.then_some(Piece::Blob(b));
            }
        }
        Ok(())
    }

    fn start_blob<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        blob: Blob,
        kind: NodeKind,
    ) -> Result<(), Error> {
        let node = Node::start(rd, blob, kind)?;
        self.piece = Some(Piece::Blob(Box::new(BlobValue {
            node,
            ty: self.ty.0,
            i: 0,
            first: Held::Parts,
            second: Held::Parts,
        })));
        Ok(())
    }

    /// Reads a compact value's entries until a chunk's worth of elements, or a part or end of
    /// an element in parts, is pending.
    fn read_blob<R: Read>(&mut self, rd: &mut Reader<R>, b: &mut BlobValue) -> Result<bool, Error> {
        let lim = self.lim;
        let t = b.tuple();
        let mut acc = match b.ty {
            10 => Acc::List(Vec::new()),
            20 => Acc::Set(Vec::new()),
            12 | 17 => Acc::ZSet(Vec::new()),
            _ => Acc::Hash(Vec::new()),
        };
        let mut bytes = 0usize;
        let mut more = true;
        while acc.len() < lim.elements && bytes < lim.bytes {
            let step = b.node.next(rd, lim.huge, lim.bytes)?;
            if matches!(step, Step::Part(_) | Step::End) && acc.len() > 0 {
                let empty = acc.empty();
                let full = std::mem::replace(&mut acc, empty);
                self.pending.push_back(full.into_chunk());
            }
            let zset = matches!(b.ty, 12 | 17);
            match step {
                Step::Done => {
                    if b.i != 0 {
                        let what = if t == 3 {
                            "listpack-ex element count is not a multiple of 3"
                        } else {
                            "odd number of elements in a pair encoding"
                        };
                        return Err(b.node.error(what));
                    }
                    more = false;
                    break;
                }
                Step::Item(e) if t == 1 => {
                    bytes += e.len();
                    match &mut acc {
                        Acc::List(v) | Acc::Set(v) => v.push(e),
                        _ => {}
                    }
                    continue;
                }
                Step::Item(e) if b.i == 0 => {
                    b.first = Held::Whole(e);
                    b.i = 1;
                    continue;
                }
                Step::Item(e) if b.i == 1 && zset => {
                    let score = crate::string::parse_f64(&e)
                        .ok_or_else(|| b.node.error("zset score is not a number"))?;
                    b.i = 0;
                    match (std::mem::replace(&mut b.first, Held::Parts), &mut acc) {
                        (Held::Whole(m), Acc::ZSet(v)) => {
                            bytes += m.len() + 8;
                            v.push((m, score));
                            continue;
                        }
                        _ => self
                            .pending
                            .push_back(Chunk::ElementEnd(Element::ZSetMember { score })),
                    }
                }
                Step::Item(e) if b.i == 1 => {
                    if matches!(b.first, Held::Parts) {
                        // After a field in parts, its value in parts too.
                        self.parts_of(e);
                        b.second = Held::Parts;
                    } else {
                        b.second = Held::Whole(e);
                    }
                    b.i = 2;
                    if t == 3 {
                        if matches!(b.first, Held::Parts) {
                            break;
                        }
                        continue;
                    }
                    self.end_tuple(b, None, &mut acc, &mut bytes);
                    if matches!(acc.len(), 0) {
                        break;
                    }
                    continue;
                }
                Step::Item(e) => {
                    let ttl = Elem::Str(&e)
                        .as_i64()
                        .ok_or_else(|| b.node.error("hash field TTL is not an integer"))?;
                    self.end_tuple(b, (ttl != 0).then_some(ttl), &mut acc, &mut bytes);
                    if matches!(acc.len(), 0) {
                        break;
                    }
                    continue;
                }
                Step::Part(p) => {
                    if (b.i == 1 && zset) || b.i == 2 {
                        let what = if zset {
                            "zset score is not a number"
                        } else {
                            "hash field TTL is not an integer"
                        };
                        return Err(b.node.error(what));
                    }
                    self.pending.push_back(Chunk::ElementPart(p));
                }
                Step::End => match (t, b.i) {
                    (1, _) => {
                        let e = if b.ty == 10 {
                            Element::ListItem
                        } else {
                            Element::SetMember
                        };
                        self.pending.push_back(Chunk::ElementEnd(e));
                    }
                    (_, 0) => {
                        b.first = Held::Parts;
                        b.i = 1;
                        if !zset {
                            self.pending
                                .push_back(Chunk::ElementEnd(Element::HashField));
                        }
                    }
                    _ => {
                        b.second = Held::Parts;
                        b.i = 2;
                        if t == 2 {
                            self.end_tuple(b, None, &mut acc, &mut bytes);
                        }
                    }
                },
            }
            break;
        }
        if acc.len() > 0 {
            self.pending.push_back(acc.into_chunk());
        }
        Ok(more)
    }

    /// A short hash value after a field in parts: in parts too.
    fn parts_of(&mut self, mut v: Bytes) {
        while !v.is_empty() {
            let part = v.split_to(v.len().min(self.lim.bytes));
            self.pending.push_back(Chunk::ElementPart(part));
        }
    }

    /// A hash tuple is complete: into `acc` when whole, else its element's end.
    fn end_tuple(
        &mut self,
        b: &mut BlobValue,
        expire_ms: Option<i64>,
        acc: &mut Acc,
        bytes: &mut usize,
    ) {
        b.i = 0;
        let first = std::mem::replace(&mut b.first, Held::Parts);
        let second = std::mem::replace(&mut b.second, Held::Parts);
        match (first, second, acc) {
            (Held::Whole(field), Held::Whole(value), Acc::Hash(v)) => {
                let f = HashField {
                    field,
                    value,
                    expire_ms,
                };
                *bytes += hf_size(&f);
                v.push(f);
            }
            (first, _, _) => {
                let field = match first {
                    Held::Whole(f) => Some(f),
                    Held::Parts => None,
                };
                self.pending
                    .push_back(Chunk::ElementEnd(Element::HashValue { field, expire_ms }));
            }
        }
    }

    /// After a string element's last part: what the file stores after it, and its end.
    fn end_element<R: Read>(&mut self, rd: &mut Reader<R>, then: Then) -> Result<(), Error> {
        let element = match then {
            Then::ListItem => Element::ListItem,
            Then::SetMember => Element::SetMember,
            Then::ZSetMember => Element::ZSetMember {
                score: self.read_score(rd)?,
            },
            Then::HashField(ttl) => {
                self.pending
                    .push_back(Chunk::ElementEnd(Element::HashField));
                // The value follows in parts too, so that the field's end is never alone.
                let then = Then::HashValue { field: None, ttl };
                match open_string(rd, self.lim.huge)? {
                    Opened::Huge(src) => {
                        self.piece = Some(Piece::Str { src, then });
                        return Ok(());
                    }
                    Opened::Whole(mut v) => {
                        while !v.is_empty() {
                            let part = v.split_to(v.len().min(self.lim.bytes));
                            self.pending.push_back(Chunk::ElementPart(part));
                        }
                        return self.end_element(rd, then);
                    }
                }
            }
            Then::HashValue { field, ttl } => Element::HashValue {
                field,
                expire_ms: match ttl {
                    Ttl::Known(e) => e,
                    Ttl::After => {
                        let ms = read_ms(rd)?;
                        (ms != -1).then_some(ms)
                    }
                },
            },
        };
        self.pending.push_back(Chunk::ElementEnd(element));
        Ok(())
    }

    /// Reads quicklist nodes until a chunk's worth of items is pending, or a node (or a
    /// plain node's item) longer than the threshold is to be read in pieces.
    fn read_nodes<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        mut remaining: u64,
    ) -> Result<u64, Error> {
        let mut items: Vec<Bytes> = Vec::new();
        let mut bytes = 0usize;
        let huge = self.lim.huge;
        let kind = if self.ty.0 == 18 {
            NodeKind::Listpack
        } else {
            NodeKind::Ziplist
        };
        while remaining > 0 && items.len() < self.lim.elements && bytes < self.lim.bytes {
            remaining -= 1;
            let plain = if self.ty.0 == 18 {
                match read_length(rd)? {
                    1 => true,
                    2 => false,
                    _ => return Err(rd.err(ErrorKind::Corrupt("unknown quicklist node container"))),
                }
            } else {
                false
            };
            let at = rd.offset();
            let node = match read_len(rd)? {
                Len::Plain(n) if n > huge => {
                    self.piece = Some(if plain {
                        let then = Then::ListItem;
                        Piece::Str {
                            src: Src::Plain { left: n },
                            then,
                        }
                    } else {
                        let blob = Blob::plain(rd, n);
                        Piece::Node(Box::new(Node::start(rd, blob, kind)?))
                    });
                    break;
                }
                Len::Plain(n) => {
                    if n > MAX_ELEMENT_BYTES {
                        return Err(rd.err(ErrorKind::TooLarge("string")));
                    }
                    rd.vec(n)?
                }
                Len::Int(w) => read_int(rd, w)?.to_string().into_bytes(),
                Len::Lzf => {
                    let (clen, ulen) = read_lzf_lens(rd)?;
                    if ulen > huge {
                        self.piece = Some(if plain {
                            let then = Then::ListItem;
                            let src = Src::Lzf(LzfStream::new(clen, ulen, rd.offset()));
                            Piece::Str { src, then }
                        } else {
                            let blob = Blob::lzf(rd, clen, ulen, at);
                            Piece::Node(Box::new(Node::start(rd, blob, kind)?))
                        });
                        break;
                    }
                    lzf_whole(rd, clen, ulen)?
                }
            };
            if plain {
                bytes += node.len();
                items.push(node.into());
                continue;
            }
            let it: Box<dyn Iterator<Item = Result<Elem<'_>, &'static str>>> = if self.ty.0 == 18 {
                Box::new(listpack::iter(&node).map_err(bad(at))?)
            } else {
                Box::new(ziplist::iter(&node).map_err(bad(at))?)
            };
            for e in it {
                let e = e.map_err(bad(at))?;
                bytes += e.len();
                items.push(e.to_bytes());
            }
        }
        split(
            items,
            |b| b.len(),
            self.lim,
            Chunk::ListItems,
            &mut self.pending,
        );
        Ok(remaining)
    }

    fn read_stream_node<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        let at = rd.offset();
        let key = read_string_vec(rd, 16)?;
        let key: [u8; 16] = key
            .try_into()
            .map_err(|_| Error::new(ErrorKind::Corrupt("stream node key is not 16 bytes"), at))?;
        let master = StreamId::from_be_bytes(&key);
        let at = rd.offset();
        let lp = read_string_vec(rd, MAX_ELEMENT_BYTES)?;
        let mut entries = Vec::new();
        stream::decode_node(master, &lp, &mut entries).map_err(bad(at))?;
        split(
            entries,
            stream::entry_size,
            self.lim,
            Chunk::StreamEntries,
            &mut self.pending,
        );
        Ok(())
    }

    fn read_stream_meta<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        let length = read_length(rd)?;
        let last_id = read_len_id(rd)?;
        let mut meta = StreamMeta {
            length,
            last_id,
            first_id: None,
            max_deleted_id: None,
            entries_added: None,
        };
        if self.ty.0 >= 19 {
            meta.first_id = Some(read_len_id(rd)?);
            meta.max_deleted_id = Some(read_len_id(rd)?);
            meta.entries_added = Some(read_length(rd)?);
        }
        self.pending.push_back(Chunk::StreamMeta(meta));
        self.state = State::StreamGroups {
            remaining: read_length(rd)?,
        };
        Ok(())
    }

    /// Type 26's IDMP settings, after the last consumer group. Layout (librdb PR #93,
    /// `src/lib/parserRaw.c` `elementRawStreamLP`, states `ST_LOAD_IDMP_*`): duration (len),
    /// max size (len), producer count (len); per producer its pid (string) and iid count
    /// (len), per iid the iid (string) and the entry id as two lens (ms, seq); finally
    /// iids-added and iids-duplicates (lens).
    fn read_idmp_config<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        let duration_s = read_length(rd)?;
        let max_size = read_length(rd)?;
        let producers = read_length(rd)?;
        self.pending.push_back(Chunk::StreamIdmp(StreamIdmp {
            duration_s,
            max_size,
            producers,
        }));
        self.state = State::IdmpProducers {
            remaining: producers,
        };
        Ok(())
    }

    /// Reads up to one chunk of `producer`'s iids; returns how many are left.
    fn read_idmp_entries<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        producer: &Bytes,
        mut remaining: u64,
    ) -> Result<u64, Error> {
        let mut entries = Vec::with_capacity(remaining.min(self.lim.elements as u64) as usize);
        let mut bytes = 0usize;
        while remaining > 0 && entries.len() < self.lim.elements && bytes < self.lim.bytes {
            remaining -= 1;
            let iid = read_string(rd, MAX_ELEMENT_BYTES)?;
            let id = read_len_id(rd)?;
            bytes += iid.len() + 16;
            entries.push(IdmpEntry { iid, id });
        }
        self.pending.push_back(Chunk::StreamIdmpEntries {
            producer: producer.clone(),
            entries,
        });
        Ok(remaining)
    }

    fn read_group<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        let name = read_string(rd, MAX_ELEMENT_BYTES)?;
        let last_id = read_len_id(rd)?;
        let entries_read = if self.ty.0 >= 19 {
            let v = read_length(rd)?;
            (v != u64::MAX).then_some(v)
        } else {
            None
        };
        let pel_len = read_length(rd)?;
        let mut pel = Vec::with_capacity(pel_len.min(4096) as usize);
        for _ in 0..pel_len {
            let id = read_raw_id(rd)?;
            let t = read_ms(rd)?;
            let n = read_length(rd)?;
            pel.push((id, t, n, None::<usize>));
        }
        pel.sort_by_key(|p| p.0);
        let n_consumers = read_length(rd)?;
        let mut consumers = Vec::with_capacity(n_consumers.min(1024) as usize);
        for ci in 0..n_consumers {
            let cname = read_string(rd, MAX_ELEMENT_BYTES)?;
            let seen = read_ms(rd)?;
            let active = if self.ty.0 >= 21 {
                Some(read_ms(rd)?)
            } else {
                None
            };
            let own = read_length(rd)?;
            for _ in 0..own {
                let at = rd.offset();
                let id = read_raw_id(rd)?;
                let i = pel.binary_search_by_key(&id, |p| p.0).map_err(|_| {
                    Error::new(
                        ErrorKind::Corrupt("consumer PEL entry missing from the group PEL"),
                        at,
                    )
                })?;
                pel[i].3 = Some(ci as usize);
            }
            consumers.push(Consumer {
                name: cname,
                seen_time_ms: seen,
                active_time_ms: active,
            });
        }
        let mut entries = Vec::with_capacity(pel.len());
        for (id, t, n, owner) in pel {
            let owner = owner
                .ok_or_else(|| rd.err(ErrorKind::Corrupt("group PEL entry has no consumer")))?;
            entries.push(PendingEntry {
                id,
                delivery_time_ms: t,
                delivery_count: n,
                consumer: consumers[owner].name.clone(),
            });
        }
        self.pending.push_back(Chunk::StreamGroup(StreamGroup {
            name: name.clone(),
            last_id,
            entries_read,
            consumers,
        }));
        split(
            entries,
            |p| 32 + p.consumer.len(),
            self.lim,
            |entries| Chunk::StreamPending {
                group: name.clone(),
                entries,
            },
            &mut self.pending,
        );
        Ok(())
    }
}
