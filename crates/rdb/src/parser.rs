//! The event stream: opcodes, keys with their metadata, small values captured raw and big
//! values switched to chunks mid-value.

use std::io::Read;

use bytes::Bytes;

use crate::chunk::Chunk;
use crate::error::{Error, ErrorKind};
use crate::length::{read_length, read_ms};
use crate::reader::Reader;
use crate::string::{MAX_ELEMENT_BYTES, read_string};
use crate::types::{TypeByte, opcode};
use crate::value::decode::{ChunkLimits, Decoder};
use crate::value::validate;
use crate::value::walk::{self, Limits, Stop};

/// A key's identity and metadata, as read before its value.
#[derive(Clone, Debug)]
pub struct KeyMeta {
    pub db: u64,
    pub key: Bytes,
    /// Absolute unix ms; second-precision expiry converted (x1000).
    pub expire_ms: Option<i64>,
    /// LRU idle seconds (opcode 0xF8).
    pub idle: Option<u64>,
    /// LFU frequency (opcode 0xF9).
    pub freq: Option<u8>,
    pub type_byte: TypeByte,
    /// Redis 8.6+ (RDB 13) module key metadata (opcode 0xF3, `RDB_OPCODE_KEY_META`), as the
    /// bytes the file holds: the opcode, the class count, then per class a 4-byte class spec
    /// and module opcodes up to their EOF. `None` for a key without.
    ///
    /// Kept apart from [`Record::raw`] because Redis puts it *before* the type byte, in the
    /// file (`[META] TYPE KEY VALUE`) and in a DUMP payload alike (`[META] TYPE VALUE
    /// version crc`, read back by RESTORE's `rdbResolveKeyType`): build the payload with
    /// [`dump::payload_with_meta`](crate::dump::payload_with_meta). Only RESTORE can carry
    /// it; a value rewritten as commands loses it.
    pub key_metadata: Option<Bytes>,
}

/// A whole value small enough to carry: `raw` is the value's serialized bytes exactly as in
/// the RDB (after the type byte and key), so ferry can build a DUMP payload without
/// re-encoding.
#[derive(Clone, Debug)]
pub struct Record {
    pub meta: KeyMeta,
    pub raw: Bytes,
}

#[derive(Clone, Debug)]
pub enum Event {
    Aux {
        key: Bytes,
        value: Bytes,
    },
    SelectDb(u64),
    ResizeDb {
        db_size: u64,
        expires_size: u64,
    },
    /// A function library (FUNCTION2 opcode): the library's code, for FUNCTION LOAD REPLACE.
    /// For the pre-GA form (0xF6, Redis 7.0 release candidates) the code gets a
    /// `#!<engine> name=<name>` first line when it lacks one, so that it loads on GA Redis.
    Function {
        code: Bytes,
    },
    /// Module data outside the keyspace (0xF7): `raw` is everything after the module id,
    /// up to and including the module EOF opcode.
    ModuleAux {
        module_id: u64,
        raw: Bytes,
    },
    Key(Record),
    /// A value over the big-value thresholds: its elements follow as chunks, then BigValueEnd.
    BigValueStart(KeyMeta),
    BigValueChunk(Chunk),
    BigValueEnd,
    /// Valkey 9+ (RDB 80 and up, opcode 0xF3 `RDB_OPCODE_SLOT_IMPORT`): a slot import that
    /// was in progress on the node that wrote the snapshot (atomic slot migration): the
    /// job's name and its slot ranges. It describes the node, not data.
    SlotImport {
        job: Bytes,
        ranges: Vec<(u64, u64)>,
    },
    /// Opcode 0xF4 (`RDB_OPCODE_SLOT_INFO`): a size hint for one cluster slot.
    SlotInfo {
        slot: u64,
        keys: u64,
        expires: u64,
    },
    /// End of snapshot; checksum is the CRC64 read from the file (already verified when
    /// nonzero and the version has one).
    End {
        checksum: Option<u64>,
    },
}

#[derive(Clone, Debug)]
pub struct Options {
    /// A value whose serialized size passes this many bytes is emitted as chunks (default 8 MiB).
    pub big_value_bytes: usize,
    /// A collection with more elements than this is emitted as chunks (default 50_000).
    /// Counted where cheap: length prefixes of hashtable encodings, listpack/ziplist/intset
    /// header counts (including quicklist nodes, summed as they pass), stream listpack
    /// element counts and PEL sizes.
    pub big_value_elements: u64,
    /// Max elements per chunk (default 1000).
    pub chunk_elements: usize,
    /// Approximate max bytes per chunk (default 1 MiB); also the most bytes of one
    /// [`Chunk::ElementPart`](crate::Chunk::ElementPart) or `StringPart`.
    pub chunk_bytes: usize,
    /// In a big value, an element (list item, set or sorted set member, hash field or value)
    /// longer than this comes out in [`Chunk::ElementPart`](crate::Chunk::ElementPart)s
    /// instead of whole (default 1 MiB), and a quicklist node longer than this is read entry
    /// by entry: memory stays bounded whatever one element holds.
    pub huge_element_bytes: usize,
    /// Verify the trailing CRC64 (default true).
    pub verify_checksum: bool,
    /// Validate every small value's bytes as deeply as Redis's `sanitize-dump-payload yes`
    /// before it is returned (default true): a damaged value inside a snapshot whose CRC is
    /// right fails here, naming its key, db and byte offset, instead of reaching a server
    /// through `RESTORE`. Big values are checked as they are decoded, whatever this says.
    pub validate_values: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            big_value_bytes: 8 * 1024 * 1024,
            big_value_elements: 50_000,
            chunk_elements: 1000,
            chunk_bytes: 1024 * 1024,
            huge_element_bytes: 1024 * 1024,
            verify_checksum: true,
            validate_values: true,
        }
    }
}

impl Options {
    pub(crate) fn chunk_limits(&self) -> ChunkLimits {
        ChunkLimits {
            elements: self.chunk_elements,
            bytes: self.chunk_bytes,
            huge: self.huge_element_bytes as u64,
        }
    }
}

enum State {
    Keys,
    Big {
        decoder: Box<Decoder>,
        meta: KeyMeta,
    },
    Done,
    Failed(Error),
}

/// Streaming RDB parser over any reader. See the crate docs.
pub struct Parser<R: Read> {
    rd: Reader<R>,
    options: Options,
    version: u16,
    db: u64,
    expire_ms: Option<i64>,
    idle: Option<u64>,
    freq: Option<u8>,
    state: State,
}

/// Most module metadata classes a key can hold (Redis 8.6 `KEY_META_MAX_NUM_MODULES`: 7).
const MAX_KEY_META_CLASSES: u64 = 7;

/// Reads the 9-byte header: `REDIS` + 4 digits, or `VALKEY` + 3 digits (Valkey 9+).
fn read_header<R: Read>(rd: &mut Reader<R>) -> Result<u16, Error> {
    let magic: [u8; 9] = rd.array().map_err(|e| e.reading("header"))?;
    let digits = |d: &[u8]| -> Option<u16> {
        d.iter().try_fold(0u16, |acc, &c| {
            c.is_ascii_digit().then(|| acc * 10 + u16::from(c - b'0'))
        })
    };
    let bad = Error::new(ErrorKind::BadMagic, 0);
    let version = if &magic[..5] == b"REDIS" {
        let v = digits(&magic[5..]).ok_or(bad)?;
        if !(1..=13).contains(&v) {
            return Err(Error::new(ErrorKind::UnsupportedVersion(v), 5));
        }
        v
    } else if &magic[..6] == b"VALKEY" {
        let v = digits(&magic[6..]).ok_or(bad)?;
        if !(80..=81).contains(&v) {
            return Err(Error::new(ErrorKind::UnsupportedVersion(v), 6));
        }
        v
    } else {
        return Err(bad);
    };
    Ok(version)
}

impl<R: Read> Parser<R> {
    /// Reads and checks the header ("REDIS" + 4-digit version 1-13, or "VALKEY080").
    pub fn new(reader: R, options: Options) -> Result<Self, Error> {
        let mut rd = Reader::new(reader, options.verify_checksum);
        let version = read_header(&mut rd)?;
        Ok(Self {
            rd,
            options,
            version,
            db: 0,
            expire_ms: None,
            idle: None,
            freq: None,
            state: State::Keys,
        })
    }

    pub fn rdb_version(&self) -> u16 {
        self.version
    }

    /// Bytes consumed from the reader so far (for progress).
    pub fn bytes_read(&self) -> u64 {
        self.rd.high_water()
    }

    /// Next event; Ok(None) after End has been returned. After an error, the same error
    /// again.
    pub fn next_event(&mut self) -> Result<Option<Event>, Error> {
        let r = match &mut self.state {
            State::Done => return Ok(None),
            State::Failed(e) => return Err(e.clone()),
            State::Big { decoder, meta } => match decoder.next_chunk(&mut self.rd) {
                Ok(Some(c)) => Ok(Some(Event::BigValueChunk(c))),
                Ok(None) => {
                    self.state = State::Keys;
                    Ok(Some(Event::BigValueEnd))
                }
                Err(e) => Err(e.within(meta.type_byte.what(), &meta.key).in_db(meta.db)),
            },
            State::Keys => self.next_opcode().map(Some),
        };
        if let Err(e) = &r {
            self.state = State::Failed(e.clone());
        }
        r
    }

    fn next_opcode(&mut self) -> Result<Event, Error> {
        let rd = &mut self.rd;
        loop {
            let at = rd.offset();
            let b = rd.u8().map_err(|e| e.reading("opcode"))?;
            match b {
                opcode::EXPIRETIME_MS => {
                    self.expire_ms = Some(read_ms(rd).map_err(|e| e.reading("expiry"))?);
                }
                opcode::EXPIRETIME => {
                    let s = i32::from_le_bytes(rd.array().map_err(|e| e.reading("expiry"))?);
                    self.expire_ms = Some(i64::from(s) * 1000);
                }
                opcode::IDLE => {
                    self.idle = Some(read_length(rd).map_err(|e| e.reading("idle time"))?)
                }
                opcode::FREQ => self.freq = Some(rd.u8().map_err(|e| e.reading("frequency"))?),
                opcode::AUX => {
                    let key =
                        read_string(rd, MAX_ELEMENT_BYTES).map_err(|e| e.reading("aux field"))?;
                    let value =
                        read_string(rd, MAX_ELEMENT_BYTES).map_err(|e| e.reading("aux field"))?;
                    return Ok(Event::Aux { key, value });
                }
                opcode::RESIZEDB => {
                    let f = |e: Error| e.reading("resizedb");
                    let db_size = read_length(rd).map_err(f)?;
                    let expires_size = read_length(rd).map_err(f)?;
                    return Ok(Event::ResizeDb {
                        db_size,
                        expires_size,
                    });
                }
                opcode::SELECTDB => {
                    self.db = read_length(rd).map_err(|e| e.reading("db selector"))?;
                    return Ok(Event::SelectDb(self.db));
                }
                opcode::SLOT_INFO => {
                    let f = |e: Error| e.reading("slot info");
                    let slot = read_length(rd).map_err(f)?;
                    let keys = read_length(rd).map_err(f)?;
                    let expires = read_length(rd).map_err(f)?;
                    return Ok(Event::SlotInfo {
                        slot,
                        keys,
                        expires,
                    });
                }
                opcode::SLOT_IMPORT if self.version >= 80 => {
                    return read_slot_import(rd).map_err(|e| e.reading("slot import"));
                }
                opcode::INLINE_COMMAND if self.version >= 81 => {
                    return Err(Error::new(
                        ErrorKind::Unsupported(
                            "a write command inside the snapshot (Valkey forkless save, opcode 0xF2): save the source's snapshots with a fork",
                        ),
                        at,
                    ));
                }
                t if self.version >= 80 && (23..=26).contains(&t) => {
                    // Valkey files use these numbers for their own types (or none yet);
                    // Redis's meanings of them do not apply.
                    if t == 23 && self.version >= 81 {
                        return Err(Error::new(
                            ErrorKind::Unsupported("Valkey path hash (type 23 of RDB 81)"),
                            at,
                        ));
                    }
                    return Err(Error::new(ErrorKind::UnknownType(t), at));
                }
                opcode::FUNCTION2 => {
                    let code =
                        read_string(rd, MAX_ELEMENT_BYTES).map_err(|e| e.reading("function"))?;
                    return Ok(Event::Function { code });
                }
                opcode::FUNCTION_PRE_GA => {
                    return read_function_pre_ga(rd).map_err(|e| e.reading("function"));
                }
                opcode::MODULE_AUX => {
                    let f = |e: Error| e.reading("module aux data");
                    let module_id = read_length(rd).map_err(f)?;
                    rd.start_capture();
                    let r = (|| {
                        let when_opcode = read_length(rd)?;
                        if when_opcode != crate::types::module_opcode::UINT {
                            return Err(
                                rd.err(ErrorKind::Corrupt("module aux 'when' is not a UINT"))
                            );
                        }
                        read_length(rd)?;
                        walk::skip_module_body(rd)
                    })();
                    let raw = rd.take_capture();
                    r.map_err(f)?;
                    return Ok(Event::ModuleAux { module_id, raw });
                }
                opcode::EOF => {
                    let computed = rd.finish_crc();
                    if self.version < 5 {
                        self.state = State::Done;
                        return Ok(Event::End { checksum: None });
                    }
                    let file = u64::from_le_bytes(rd.array().map_err(|e| e.reading("checksum"))?);
                    if let Some(computed) = computed
                        && file != 0
                        && file != computed
                    {
                        return Err(Error::new(
                            ErrorKind::ChecksumMismatch { file, computed },
                            at,
                        ));
                    }
                    self.state = State::Done;
                    return Ok(Event::End {
                        checksum: Some(file),
                    });
                }
                opcode::KEY_META if (13..80).contains(&self.version) => {
                    let key_metadata = read_key_meta(rd).map_err(|e| e.reading("key metadata"))?;
                    let at = rd.offset();
                    let t = rd.u8().map_err(|e| e.reading("key metadata"))?;
                    if TypeByte(t).kind().is_none() {
                        return Err(Error::new(
                            ErrorKind::Corrupt("key metadata is not followed by a value type"),
                            at,
                        ));
                    }
                    return self.key_value(TypeByte(t), Some(key_metadata));
                }
                t if TypeByte(t).kind().is_some() => return self.key_value(TypeByte(t), None),
                t => return Err(Error::new(ErrorKind::UnknownType(t), at)),
            }
        }
    }

    fn key_value(&mut self, ty: TypeByte, key_metadata: Option<Bytes>) -> Result<Event, Error> {
        let rd = &mut self.rd;
        let key = read_string(rd, MAX_ELEMENT_BYTES).map_err(|e| e.reading("key name"))?;
        let meta = KeyMeta {
            db: self.db,
            key,
            expire_ms: self.expire_ms.take(),
            idle: self.idle.take(),
            freq: self.freq.take(),
            type_byte: ty,
            key_metadata,
        };
        let lim = Limits {
            bytes: self.options.big_value_bytes as u64,
            elements: self.options.big_value_elements,
        };
        let value_at = rd.offset();
        rd.start_capture();
        match walk::walk(rd, ty, self.version, lim) {
            Ok(()) => {
                let raw = rd.take_capture();
                if self.options.validate_values
                    && let Err((at, what)) = validate::validate(ty, &raw, self.version)
                {
                    return Err(Error::new(ErrorKind::Corrupt(what), value_at + at as u64)
                        .within(ty.what(), &meta.key)
                        .in_db(meta.db));
                }
                Ok(Event::Key(Record { meta, raw }))
            }
            Err(Stop::Big) => {
                let prefix = rd.take_capture();
                rd.replay(&prefix);
                let decoder = Box::new(Decoder::new(ty, self.version, self.options.chunk_limits()));
                self.state = State::Big {
                    decoder,
                    meta: meta.clone(),
                };
                Ok(Event::BigValueStart(meta))
            }
            Err(Stop::Err(e)) => {
                rd.take_capture();
                Err(e.within(ty.what(), &meta.key).in_db(meta.db))
            }
        }
    }
}

/// Most slot ranges a slot import can name: one per slot.
const MAX_SLOT_RANGES: u64 = 16384;

/// Valkey's slot import record after its opcode (`clusterRDBSaveSlotImports`): the job's
/// name (a string, 40 bytes in Valkey 9), the number of ranges, then each range's first and
/// last slot as lengths.
fn read_slot_import<R: Read>(rd: &mut Reader<R>) -> Result<Event, Error> {
    let job = read_string(rd, MAX_ELEMENT_BYTES)?;
    let at = rd.offset();
    let n = read_length(rd)?;
    if n > MAX_SLOT_RANGES {
        return Err(Error::new(
            ErrorKind::Corrupt("slot import names more ranges than there are slots"),
            at,
        ));
    }
    let mut ranges = Vec::with_capacity(n as usize);
    for _ in 0..n {
        let start = read_length(rd)?;
        let end = read_length(rd)?;
        ranges.push((start, end));
    }
    Ok(Event::SlotImport { job, ranges })
}

/// The KEY_META record after its opcode, returned whole with the opcode in front. Layout
/// (Redis 8.6 `keymeta.c` `rdbSaveKeyMetadata`/`rdbLoadKeyMetadata`; librdb PR #93
/// `src/lib/parserRaw.c` `elementRawKeyMeta`): class count (len); per class a 4-byte class
/// spec (raw), then module opcodes (SINT/UINT/FLOAT/DOUBLE/STRING) up to module EOF.
fn read_key_meta<R: Read>(rd: &mut Reader<R>) -> Result<Bytes, Error> {
    rd.start_capture();
    let r = (|| {
        let at = rd.offset();
        let classes = read_length(rd)?;
        if classes > MAX_KEY_META_CLASSES {
            return Err(Error::new(
                ErrorKind::Corrupt("more key metadata classes than Redis allows (7)"),
                at,
            ));
        }
        for _ in 0..classes {
            rd.skip(4)?;
            walk::skip_module_body(rd)?;
        }
        Ok(())
    })();
    let body = rd.take_capture();
    r?;
    let mut out = Vec::with_capacity(body.len() + 1);
    out.push(opcode::KEY_META);
    out.extend_from_slice(&body);
    Ok(out.into())
}

/// The pre-GA function opcode (0xF6): name, engine, optional description, code.
fn read_function_pre_ga<R: Read>(rd: &mut Reader<R>) -> Result<Event, Error> {
    let name = read_string(rd, MAX_ELEMENT_BYTES)?;
    let engine = read_string(rd, MAX_ELEMENT_BYTES)?;
    if read_length(rd)? != 0 {
        read_string(rd, MAX_ELEMENT_BYTES)?;
    }
    let code = read_string(rd, MAX_ELEMENT_BYTES)?;
    if code.starts_with(b"#!") {
        return Ok(Event::Function { code });
    }
    let mut full = Vec::with_capacity(code.len() + name.len() + 16);
    full.extend_from_slice(b"#!");
    full.extend(engine.iter().map(u8::to_ascii_lowercase));
    full.extend_from_slice(b" name=");
    full.extend_from_slice(&name);
    full.push(b'\n');
    full.extend_from_slice(&code);
    Ok(Event::Function { code: full.into() })
}

impl<R: Read> Iterator for Parser<R> {
    type Item = Result<Event, Error>;

    /// Stops (returns `None`) after End or after the first error.
    fn next(&mut self) -> Option<Self::Item> {
        if matches!(self.state, State::Failed(_)) {
            return None;
        }
        self.next_event().transpose()
    }
}
