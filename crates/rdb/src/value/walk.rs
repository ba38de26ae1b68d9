//! Walks a value to find its end while the reader captures its bytes, without decoding
//! elements: a listpack, ziplist or intset is one string to skip (after a header check).
//! Stops with [`Stop::Big`] as soon as the value passes a big-value threshold.

use std::io::Read;

use super::{intset, listpack, ziplist, zipmap};
use crate::error::{Error, ErrorKind};
use crate::length::{Len, read_len, read_length};
use crate::reader::Reader;
use crate::string::read_lzf_lens;
use crate::types::{TypeByte, module_opcode};

/// Big-value thresholds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub bytes: u64,
    pub elements: u64,
}

/// Why a walk stopped early.
#[derive(Debug)]
pub(crate) enum Stop {
    /// The value is over a threshold: decode it as chunks instead.
    Big,
    Err(Error),
}

impl From<Error> for Stop {
    fn from(e: Error) -> Self {
        Stop::Err(e)
    }
}

#[derive(Clone, Copy)]
enum BlobKind {
    Ziplist,
    Listpack,
    Intset,
    Zipmap,
}

impl BlobKind {
    fn header(self) -> usize {
        match self {
            BlobKind::Ziplist => ziplist::HEADER,
            BlobKind::Listpack => listpack::HEADER,
            BlobKind::Intset => intset::HEADER,
            BlobKind::Zipmap => 1,
        }
    }

    fn count(self, header: &[u8]) -> Option<u64> {
        match self {
            BlobKind::Ziplist => ziplist::count_from_header(header),
            BlobKind::Listpack => listpack::count_from_header(header),
            BlobKind::Intset => intset::count_from_header(header),
            BlobKind::Zipmap => zipmap::count_from_header(header),
        }
    }

    /// Checks what the header alone can tell against the blob's size.
    fn check_header(self, h: &[u8], size: u64) -> Result<(), &'static str> {
        let total = || u64::from(u32::from_le_bytes([h[0], h[1], h[2], h[3]]));
        match self {
            BlobKind::Ziplist if size < 11 => Err("ziplist shorter than its header"),
            BlobKind::Ziplist if total() != size => {
                Err("ziplist header length differs from its size")
            }
            BlobKind::Listpack if size < 7 => Err("listpack shorter than its header"),
            BlobKind::Listpack if total() != size => {
                Err("listpack header length differs from its size")
            }
            BlobKind::Intset => {
                if size < 8 {
                    return Err("intset shorter than its header");
                }
                let width = total();
                let n = u64::from(u32::from_le_bytes([h[4], h[5], h[6], h[7]]));
                if !matches!(width, 2 | 4 | 8) || 8 + n * width != size {
                    return Err("intset length differs from its size");
                }
                Ok(())
            }
            BlobKind::Zipmap if size < 2 => Err("zipmap shorter than its header"),
            _ => Ok(()),
        }
    }
}

struct Walker<'a, R> {
    rd: &'a mut Reader<R>,
    lim: Limits,
    elements: u64,
}

/// Walks the value of type `ty` (the reader positioned just after the key).
pub(crate) fn walk<R: Read>(
    rd: &mut Reader<R>,
    ty: TypeByte,
    rdb_version: u16,
    lim: Limits,
) -> Result<(), Stop> {
    let mut w = Walker {
        rd,
        lim,
        elements: 0,
    };
    w.value(ty, rdb_version)
}

impl<R: Read> Walker<'_, R> {
    fn corrupt(&self, what: &'static str) -> Stop {
        Stop::Err(self.rd.err(ErrorKind::Corrupt(what)))
    }

    fn count(&mut self, n: u64) -> Result<(), Stop> {
        self.elements = self.elements.saturating_add(n);
        if self.elements > self.lim.elements {
            Err(Stop::Big)
        } else {
            Ok(())
        }
    }

    fn bytes(&mut self, more: u64) -> Result<(), Stop> {
        if (self.rd.captured_len() as u64).saturating_add(more) > self.lim.bytes {
            Err(Stop::Big)
        } else {
            Ok(())
        }
    }

    fn len(&mut self) -> Result<u64, Stop> {
        Ok(read_length(self.rd)?)
    }

    fn collection_len(&mut self, what: &'static str) -> Result<u64, Stop> {
        let n = self.len()?;
        if n == 0 {
            return Err(Stop::Err(self.rd.err(ErrorKind::EmptyValue(what))));
        }
        self.count(n)?;
        Ok(n)
    }

    fn string(&mut self) -> Result<(), Stop> {
        match read_len(self.rd)? {
            Len::Plain(n) => {
                self.bytes(n)?;
                self.rd.skip(n)?;
            }
            Len::Int(w) => self.rd.skip(u64::from(w))?,
            Len::Lzf => {
                let (clen, _) = read_lzf_lens(self.rd)?;
                self.bytes(clen)?;
                self.rd.skip(clen)?;
            }
        }
        Ok(())
    }

    /// Skips a blob string, checking its header; returns its element count when cheap.
    fn blob(&mut self, kind: BlobKind) -> Result<Option<u64>, Stop> {
        let h = kind.header();
        match read_len(self.rd)? {
            Len::Plain(n) => {
                self.bytes(n)?;
                let at = self.rd.offset();
                let head = self.rd.peek(h.min(n as usize));
                let count = if head.len() == h {
                    kind.check_header(head, n)
                        .map_err(|e| Stop::Err(Error::new(ErrorKind::Corrupt(e), at)))?;
                    kind.count(head)
                } else {
                    None
                };
                if n < h as u64 {
                    return Err(Stop::Err(Error::new(
                        ErrorKind::Corrupt("blob shorter than its header"),
                        at,
                    )));
                }
                if matches!(kind, BlobKind::Intset) {
                    self.rd.skip(n)?;
                } else {
                    self.rd.skip(n - 1)?;
                    if self.rd.u8()? != 0xFF {
                        return Err(self.corrupt("compact encoding lacks its 0xFF terminator"));
                    }
                }
                Ok(count)
            }
            Len::Int(_) => Err(self.corrupt("compact encoding stored as an integer")),
            Len::Lzf => {
                let (clen, _) = read_lzf_lens(self.rd)?;
                self.bytes(clen)?;
                // The header is almost always inside the first literal run.
                let head = self.rd.peek(1 + h);
                let count = match head.first() {
                    Some(&ctrl)
                        if ctrl < 32 && usize::from(ctrl) + 1 >= h && head.len() == 1 + h =>
                    {
                        kind.count(&head[1..])
                    }
                    _ => None,
                };
                self.rd.skip(clen)?;
                Ok(count)
            }
        }
    }

    fn top_blob(&mut self, kind: BlobKind, what: &'static str) -> Result<(), Stop> {
        match self.blob(kind)? {
            Some(0) => Err(Stop::Err(self.rd.err(ErrorKind::EmptyValue(what)))),
            Some(n) => self.count(n),
            None => Ok(()),
        }
    }

    fn value(&mut self, ty: TypeByte, ver: u16) -> Result<(), Stop> {
        match ty.0 {
            0 => self.string(),
            1 | 2 => {
                let n = self.collection_len(ty.what())?;
                for _ in 0..n {
                    self.string()?;
                }
                Ok(())
            }
            3 => {
                let n = self.collection_len("zset")?;
                for _ in 0..n {
                    self.string()?;
                    let l = self.rd.u8()?;
                    if l < 253 {
                        self.rd.skip(u64::from(l))?;
                    }
                }
                Ok(())
            }
            5 => {
                let n = self.collection_len("zset")?;
                for _ in 0..n {
                    self.string()?;
                    self.rd.skip(8)?;
                }
                Ok(())
            }
            4 => {
                let n = self.collection_len("hash")?;
                for _ in 0..n {
                    self.string()?;
                    self.string()?;
                }
                Ok(())
            }
            22 if ty.is_valkey_hash2(ver) => {
                let n = self.collection_len("hash")?;
                for _ in 0..n {
                    self.string()?;
                    self.string()?;
                    self.rd.skip(8)?;
                }
                Ok(())
            }
            22 | 24 => {
                if ty.0 == 24 {
                    self.rd.skip(8)?;
                }
                let n = self.collection_len("hash")?;
                for _ in 0..n {
                    self.len()?;
                    self.string()?;
                    self.string()?;
                }
                Ok(())
            }
            9 => self.top_blob(BlobKind::Zipmap, "hash"),
            10 => self.top_blob(BlobKind::Ziplist, "list"),
            11 => self.top_blob(BlobKind::Intset, "set"),
            12 => self.top_blob(BlobKind::Ziplist, "zset"),
            13 => self.top_blob(BlobKind::Ziplist, "hash"),
            16 | 23 => self.top_blob(BlobKind::Listpack, "hash"),
            17 => self.top_blob(BlobKind::Listpack, "zset"),
            20 => self.top_blob(BlobKind::Listpack, "set"),
            25 => {
                self.rd.skip(8)?;
                self.top_blob(BlobKind::Listpack, "hash")
            }
            14 => {
                let nodes = self.len()?;
                if nodes == 0 {
                    return Err(Stop::Err(self.rd.err(ErrorKind::EmptyValue("list"))));
                }
                for _ in 0..nodes {
                    let c = self.blob(BlobKind::Ziplist)?;
                    self.count(c.unwrap_or(1))?;
                }
                Ok(())
            }
            18 => {
                let nodes = self.len()?;
                if nodes == 0 {
                    return Err(Stop::Err(self.rd.err(ErrorKind::EmptyValue("list"))));
                }
                for _ in 0..nodes {
                    match self.len()? {
                        1 => {
                            self.string()?;
                            self.count(1)?;
                        }
                        2 => {
                            let c = self.blob(BlobKind::Listpack)?;
                            self.count(c.unwrap_or(1))?;
                        }
                        _ => return Err(self.corrupt("unknown quicklist node container")),
                    }
                }
                Ok(())
            }
            15 | 19 | 21 | 26 => self.stream(ty.0),
            7 => {
                self.len()?;
                self.module_body()
            }
            6 => Err(Stop::Err(self.rd.err(ErrorKind::Unsupported(
                "pre-GA module value (type 6) has no generic layout",
            )))),
            _ => Err(Stop::Err(self.rd.err(ErrorKind::UnknownType(ty.0)))),
        }
    }

    fn stream(&mut self, ty: u8) -> Result<(), Stop> {
        let nodes = self.len()?;
        for _ in 0..nodes {
            self.string()?;
            let c = self.blob(BlobKind::Listpack)?;
            self.count(c.unwrap_or(1))?;
        }
        let metas = if ty >= 19 { 8 } else { 3 };
        for _ in 0..metas {
            self.len()?;
        }
        let groups = self.len()?;
        for _ in 0..groups {
            self.string()?;
            self.len()?;
            self.len()?;
            if ty >= 19 {
                self.len()?;
            }
            let pel = self.len()?;
            self.count(pel)?;
            for _ in 0..pel {
                self.rd.skip(16 + 8)?;
                self.len()?;
            }
            let consumers = self.len()?;
            for _ in 0..consumers {
                self.string()?;
                self.rd.skip(if ty >= 21 { 16 } else { 8 })?;
                let pel = self.len()?;
                self.bytes(pel.saturating_mul(16))?;
                self.rd.skip(pel.saturating_mul(16))?;
            }
        }
        if ty == 26 {
            self.stream_idmp()?;
        }
        Ok(())
    }

    /// Type 26's tail (see `Decoder::read_idmp_config`): duration, max size, producers (each
    /// a pid string and its iid string -> ms, seq map), then the two counters. Iids count
    /// as elements.
    fn stream_idmp(&mut self) -> Result<(), Stop> {
        self.len()?;
        self.len()?;
        let producers = self.len()?;
        for _ in 0..producers {
            self.string()?;
            let n = self.len()?;
            self.count(n)?;
            for _ in 0..n {
                self.string()?;
                self.len()?;
                self.len()?;
            }
        }
        self.len()?;
        self.len()?;
        Ok(())
    }

    /// Module opcodes up to and including RDB_MODULE_OPCODE_EOF. Module values are never
    /// made big: they cannot be rewritten as commands, so they are always carried raw.
    fn module_body(&mut self) -> Result<(), Stop> {
        skip_module_body(self.rd).map_err(Stop::Err)
    }
}

/// Skips module opcodes up to and including EOF.
pub(crate) fn skip_module_body<R: Read>(rd: &mut Reader<R>) -> Result<(), Error> {
    loop {
        let at = rd.offset();
        match read_length(rd)? {
            module_opcode::EOF => return Ok(()),
            module_opcode::SINT | module_opcode::UINT => {
                read_length(rd)?;
            }
            module_opcode::FLOAT => rd.skip(4)?,
            module_opcode::DOUBLE => rd.skip(8)?,
            module_opcode::STRING => match read_len(rd)? {
                Len::Plain(n) => rd.skip(n)?,
                Len::Int(w) => rd.skip(u64::from(w))?,
                Len::Lzf => {
                    let (clen, _) = read_lzf_lens(rd)?;
                    rd.skip(clen)?;
                }
            },
            op => return Err(Error::new(ErrorKind::UnknownModuleOpcode(op), at)),
        }
    }
}
