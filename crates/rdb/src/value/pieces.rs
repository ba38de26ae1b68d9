//! Elements too long to hold whole, read in pieces: a string element straight from the
//! reader (plain, or LZF decompressed a piece at a time), and a quicklist node (listpack or
//! ziplist) read entry by entry, so that a node holding one 256 MiB entry is never in memory
//! whole. The node is checked as it passes exactly as `listpack::validate` and
//! `ziplist::validate` check a whole one: every entry inside the node, its backward length
//! (listpack) or previous length (ziplist), the tail offset, the count and the terminator.

use std::io::Read;

use bytes::Bytes;

use super::{listpack, ziplist};
use crate::error::{Error, ErrorKind};
use crate::length::{Len, read_len};
use crate::reader::Reader;
use crate::string::{LzfStream, MAX_ELEMENT_BYTES, lzf_whole, read_int, read_lzf_lens};

/// The bytes of one string, produced a piece at a time.
pub(crate) enum Src {
    Plain { left: u64 },
    Lzf(LzfStream),
}

impl Src {
    /// The next piece of at most `want` bytes; `None` once the string is whole.
    pub(crate) fn next_part<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        want: usize,
    ) -> Result<Option<Vec<u8>>, Error> {
        match self {
            Src::Plain { left: 0 } => Ok(None),
            Src::Plain { left } => {
                let n = (*left).min(want.max(1) as u64);
                *left -= n;
                rd.vec(n).map(Some)
            }
            Src::Lzf(lzf) => lzf.next_part(rd, want),
        }
    }
}

/// A string element as its length prefix says to read it.
pub(crate) enum Opened {
    Whole(Bytes),
    /// Longer than the threshold: to be read in pieces.
    Huge(Src),
}

/// Reads a string's length prefix and, when it is at most `huge` bytes, the string.
pub(crate) fn open_string<R: Read>(rd: &mut Reader<R>, huge: u64) -> Result<Opened, Error> {
    Ok(match read_len(rd)? {
        Len::Plain(n) if n > huge => Opened::Huge(Src::Plain { left: n }),
        Len::Plain(n) => {
            if n > MAX_ELEMENT_BYTES {
                return Err(rd.err(ErrorKind::TooLarge("string")));
            }
            Opened::Whole(rd.vec(n)?.into())
        }
        Len::Int(w) => Opened::Whole(read_int(rd, w)?.to_string().into()),
        Len::Lzf => {
            let (clen, ulen) = read_lzf_lens(rd)?;
            if ulen > huge {
                Opened::Huge(Src::Lzf(LzfStream::new(clen, ulen, rd.offset())))
            } else {
                Opened::Whole(lzf_whole(rd, clen, ulen)?.into())
            }
        }
    })
}

/// How much a blob's LZF output is decompressed ahead of what the node parser takes.
const LZF_BLOCK: usize = 64 * 1024;

/// The bytes of one blob (a quicklist node), taken in order a few at a time.
pub(crate) struct Blob {
    src: BlobSrc,
    len: u64,
    /// Bytes of the blob taken so far.
    pos: u64,
    /// Where errors point: the blob's first data byte (plain), or its string (LZF: an offset
    /// inside compressed data means nothing in the file).
    at: u64,
    plain: bool,
}

enum BlobSrc {
    Plain,
    Lzf {
        lzf: LzfStream,
        buf: Vec<u8>,
        used: usize,
    },
}

impl Blob {
    /// A plain blob of `len` bytes whose data starts at the reader's offset.
    pub(crate) fn plain<R: Read>(rd: &Reader<R>, len: u64) -> Blob {
        Blob {
            src: BlobSrc::Plain,
            len,
            pos: 0,
            at: rd.offset(),
            plain: true,
        }
    }

    /// An LZF blob of `ulen` bytes once decompressed; `at` is where its string starts.
    pub(crate) fn lzf<R: Read>(rd: &Reader<R>, clen: u64, ulen: u64, at: u64) -> Blob {
        Blob {
            src: BlobSrc::Lzf {
                lzf: LzfStream::new(clen, ulen, rd.offset()),
                buf: Vec::new(),
                used: 0,
            },
            len: ulen,
            pos: 0,
            at,
            plain: false,
        }
    }

    fn bad(&self, off: u64, what: &'static str) -> Error {
        let at = if self.plain { self.at + off } else { self.at };
        Error::new(ErrorKind::Corrupt(what), at)
    }

    /// Appends the next `n` bytes of the blob to `out` (the caller has checked they are in it).
    fn take_into<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        n: usize,
        out: &mut Vec<u8>,
    ) -> Result<(), Error> {
        debug_assert!(self.pos + n as u64 <= self.len);
        self.pos += n as u64;
        let at = self.at;
        match &mut self.src {
            BlobSrc::Plain => rd.extend_into(out, n),
            BlobSrc::Lzf { lzf, buf, used } => {
                let mut n = n;
                while n > 0 {
                    if *used == buf.len() {
                        *buf = lzf
                            .next_part(rd, LZF_BLOCK.max(n.min(1 << 20)))?
                            .ok_or_else(|| {
                                Error::new(ErrorKind::Corrupt("LZF data does not decompress"), at)
                            })?;
                        *used = 0;
                    }
                    let k = (buf.len() - *used).min(n);
                    out.extend_from_slice(&buf[*used..*used + k]);
                    *used += k;
                    n -= k;
                }
                Ok(())
            }
        }
    }

    fn take<R: Read>(&mut self, rd: &mut Reader<R>, n: usize) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(n);
        self.take_into(rd, n, &mut out)?;
        Ok(out)
    }

    /// The LZF stream must end with the blob (it checks its own lengths on the last piece).
    fn finish<R: Read>(&mut self, rd: &mut Reader<R>) -> Result<(), Error> {
        if let BlobSrc::Lzf { lzf, buf, used } = &mut self.src
            && (*used != buf.len() || lzf.next_part(rd, 1)?.is_some())
        {
            return Err(self.bad(0, "LZF data does not decompress"));
        }
        Ok(())
    }
}

/// What the next step of a node gives.
pub(crate) enum Step {
    /// A whole entry.
    Item(Bytes),
    /// A piece of an entry too long to hold whole.
    Part(Bytes),
    /// The entry in pieces is whole.
    End,
    /// The node is read to its end.
    Done,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    Listpack,
    Ziplist,
}

/// An entry being read in pieces.
struct HugeEntry {
    /// Data bytes still to give.
    left: u64,
    /// The entry's size before its backward length (listpack).
    size: u64,
    /// Where it starts in the blob.
    start: u64,
    /// Its last data bytes, for the backward length check (which reads back into them).
    tail: Vec<u8>,
}

/// A listpack or ziplist read entry by entry (see the module docs).
pub(crate) struct Node {
    blob: Blob,
    kind: NodeKind,
    header_count: Option<u64>,
    count: u64,
    /// Ziplist: the tail offset the header claims, the previous entry's size and start.
    tail: u64,
    prev_size: u64,
    prev_at: Option<u64>,
    huge: Option<HugeEntry>,
    done: bool,
}

/// Bytes of the backward-length check kept from an entry's data: the check reads at most
/// 5 bytes back from the entry's end.
const TAIL: usize = 4;

impl Node {
    /// Reads the node's header and checks it against the blob's length.
    pub(crate) fn start<R: Read>(
        rd: &mut Reader<R>,
        mut blob: Blob,
        kind: NodeKind,
    ) -> Result<Node, Error> {
        let (min, header) = match kind {
            NodeKind::Listpack => (listpack::HEADER + 1, listpack::HEADER),
            NodeKind::Ziplist => (ziplist::HEADER + 1, ziplist::HEADER),
        };
        if blob.len < min as u64 {
            let what = match kind {
                NodeKind::Listpack => "listpack shorter than its header",
                NodeKind::Ziplist => "ziplist shorter than its header",
            };
            return Err(blob.bad(0, what));
        }
        let h = blob.take(rd, header)?;
        let u32_at = |i: usize| u64::from(u32::from_le_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]));
        let last = blob.len - 1;
        let (header_count, tail) = match kind {
            NodeKind::Listpack => {
                if u32_at(0) != blob.len {
                    return Err(blob.bad(0, "listpack header length differs from its size"));
                }
                (listpack::count_from_header(&h), 0)
            }
            NodeKind::Ziplist => {
                if u32_at(0) != blob.len {
                    return Err(blob.bad(0, "ziplist header length differs from its size"));
                }
                if u32_at(4) > last {
                    return Err(blob.bad(4, "ziplist tail offset is past its end"));
                }
                (ziplist::count_from_header(&h), u32_at(4))
            }
        };
        Ok(Node {
            blob,
            kind,
            header_count,
            count: 0,
            tail,
            prev_size: 0,
            prev_at: None,
            huge: None,
            done: false,
        })
    }

    /// An error about what the entries say (their tuples), at the entry read last.
    pub(crate) fn error(&self, what: &'static str) -> Error {
        self.blob.bad(self.blob.pos, what)
    }

    /// The next item, piece or end of the node. An entry whose data is longer than `huge`
    /// bytes comes in pieces of at most `part` bytes.
    pub(crate) fn next<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        huge: u64,
        part: usize,
    ) -> Result<Step, Error> {
        if self.done {
            return Ok(Step::Done);
        }
        if let Some(h) = &mut self.huge {
            if h.left > 0 {
                let n = h.left.min(part.max(1) as u64) as usize;
                let mut piece = Vec::new();
                self.blob.take_into(rd, n, &mut piece)?;
                h.left -= n as u64;
                if piece.len() >= TAIL {
                    h.tail.clear();
                    h.tail.extend_from_slice(&piece[piece.len() - TAIL..]);
                } else {
                    h.tail.extend_from_slice(&piece);
                    let cut = h.tail.len().saturating_sub(TAIL);
                    h.tail.drain(..cut);
                }
                return Ok(Step::Part(piece.into()));
            }
            let h = self.huge.take().expect("an entry in pieces");
            if self.kind == NodeKind::Listpack {
                let back = listpack::backlen_size(h.size) as usize;
                let mut tail = h.tail;
                self.blob.take_into(rd, back, &mut tail)?;
                if !backlen_matches(&tail, h.size) {
                    return Err(self.blob.bad(
                        h.start,
                        "listpack entry's backward length differs from its size",
                    ));
                }
            }
            self.count += 1;
            return Ok(Step::End);
        }
        match self.kind {
            NodeKind::Listpack => self.listpack_entry(rd, huge, part),
            NodeKind::Ziplist => self.ziplist_entry(rd, huge, part),
        }
    }

    /// At the terminator: where it must be, and the count the header claims.
    fn end<R: Read>(&mut self, rd: &mut Reader<R>, p: u64) -> Result<Step, Error> {
        let last = self.blob.len - 1;
        let (early, count_at, count_bad) = match self.kind {
            NodeKind::Listpack => (
                "listpack terminator before its end",
                4,
                "listpack header count differs from its entries",
            ),
            NodeKind::Ziplist => (
                "ziplist terminator before its end",
                8,
                "ziplist header count differs from its entries",
            ),
        };
        if p != last {
            return Err(self.blob.bad(p, early));
        }
        if self.kind == NodeKind::Ziplist
            && let Some(at) = self.prev_at
            && at != self.tail
        {
            return Err(self
                .blob
                .bad(4, "ziplist tail offset does not point at its last entry"));
        }
        if let Some(n) = self.header_count
            && n != self.count
        {
            return Err(self.blob.bad(count_at, count_bad));
        }
        self.blob.finish(rd)?;
        self.done = true;
        Ok(Step::Done)
    }

    fn listpack_entry<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        huge: u64,
        part: usize,
    ) -> Result<Step, Error> {
        let last = self.blob.len - 1;
        let p = self.blob.pos;
        let mut entry = self.blob.take(rd, 1)?;
        let e = entry[0];
        if e == 0xFF {
            return self.end(rd, p);
        }
        if p == last {
            return Err(self.blob.bad(p, "listpack lacks its terminator"));
        }
        let head: u64 = match e {
            0xE0..=0xEF => 2,
            0xF0 => 5,
            0xF5..=0xFE => {
                return Err(self.blob.bad(p, "listpack entry has an unknown encoding"));
            }
            _ => 1,
        };
        if p + head > last {
            return Err(self.blob.bad(p, "listpack entry header runs past its end"));
        }
        self.blob.take_into(rd, head as usize - 1, &mut entry)?;
        let Some((_, Some(data))) = listpack::entry_sizes(&entry, 0) else {
            return Err(self.blob.bad(p, "listpack entry has an unknown encoding"));
        };
        let size = head + data;
        let back = listpack::backlen_size(size);
        if p + size + back > last {
            return Err(self.blob.bad(p, "listpack entry runs past its end"));
        }
        let string = matches!(e, 0x80..=0xBF | 0xE0..=0xF0);
        if string && data > huge {
            self.huge = Some(HugeEntry {
                left: data,
                size,
                start: p,
                tail: Vec::new(),
            });
            return self.next(rd, huge, part);
        }
        self.blob
            .take_into(rd, (data + back) as usize, &mut entry)?;
        if !backlen_matches(&entry, size) {
            return Err(self
                .blob
                .bad(p, "listpack entry's backward length differs from its size"));
        }
        let item = listpack::entry_elem(&entry)
            .map_err(|what| self.blob.bad(p, what))?
            .to_bytes();
        self.count += 1;
        Ok(Step::Item(item))
    }

    fn ziplist_entry<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        huge: u64,
        part: usize,
    ) -> Result<Step, Error> {
        let last = self.blob.len - 1;
        let p = self.blob.pos;
        let mut entry = self.blob.take(rd, 1)?;
        let first = entry[0];
        if first == 0xFF {
            return self.end(rd, p);
        }
        if p == last {
            return Err(self.blob.bad(p, "ziplist lacks its terminator"));
        }
        let (prevlen_size, prevlen) = if first < 254 {
            (1u64, u64::from(first))
        } else {
            if p + 5 > last {
                return Err(self.blob.bad(p, "ziplist entry header runs past its end"));
            }
            self.blob.take_into(rd, 4, &mut entry)?;
            (
                5,
                u64::from(u32::from_le_bytes([entry[1], entry[2], entry[3], entry[4]])),
            )
        };
        let q = p + prevlen_size;
        self.blob.take_into(rd, 1, &mut entry)?;
        let e = entry[prevlen_size as usize];
        let len_size: u64 = match e >> 6 {
            0 => 1,
            1 => 2,
            2 => 5,
            _ => match e {
                0xC0 | 0xD0 | 0xE0 | 0xF0 | 0xFE | 0xF1..=0xFD => 1,
                _ => return Err(self.blob.bad(p, "ziplist entry has an unknown encoding")),
            },
        };
        if q + len_size > last {
            return Err(self.blob.bad(p, "ziplist entry header runs past its end"));
        }
        self.blob.take_into(rd, len_size as usize - 1, &mut entry)?;
        let l = &entry[prevlen_size as usize + 1..];
        let len = match e >> 6 {
            0 => u64::from(e & 0x3F),
            1 => (u64::from(e & 0x3F) << 8) | u64::from(l[0]),
            2 => u64::from(u32::from_be_bytes([l[0], l[1], l[2], l[3]])),
            _ => match e {
                0xC0 => 2,
                0xD0 => 4,
                0xE0 => 8,
                0xF0 => 3,
                0xFE => 1,
                _ => 0,
            },
        };
        let size = prevlen_size + len_size + len;
        if p + size > last {
            return Err(self.blob.bad(p, "ziplist entry runs past its end"));
        }
        if prevlen != self.prev_size {
            return Err(self.blob.bad(
                p,
                "ziplist entry's previous length differs from the entry before",
            ));
        }
        self.prev_size = size;
        self.prev_at = Some(p);
        if e >> 6 != 3 && len > huge {
            self.huge = Some(HugeEntry {
                left: len,
                size,
                start: p,
                tail: Vec::new(),
            });
            return self.next(rd, huge, part);
        }
        self.blob.take_into(rd, len as usize, &mut entry)?;
        let item = ziplist::entry_elem(&entry)
            .map_err(|what| self.blob.bad(p, what))?
            .to_bytes();
        self.count += 1;
        Ok(Step::Item(item))
    }
}

/// Whether the bytes ending in a listpack entry's backward length encode `len`, read as
/// Redis reads them: from the last byte back, 7 bits each, while the high bit is set.
fn backlen_matches(b: &[u8], len: u64) -> bool {
    let mut val = 0u64;
    let mut shift = 0;
    let Some(mut i) = b.len().checked_sub(1) else {
        return false;
    };
    loop {
        val |= u64::from(b[i] & 127) << shift;
        if b[i] & 128 == 0 {
            break;
        }
        shift += 7;
        if shift > 28 || i == 0 {
            return false;
        }
        i -= 1;
    }
    val == len
}
