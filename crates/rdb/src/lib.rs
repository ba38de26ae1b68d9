//! Streaming parser for Redis RDB snapshots (RDB 1-13, Valkey 80-81) and DUMP payloads.
//!
//! Built for replication tools: a [`Parser`] reads any [`std::io::Read`] (a file, a socket
//! in the middle of a PSYNC) and yields [`Event`]s. A small value comes out as a
//! [`Record`] whose `raw` bytes are exactly the value's serialized form, ready for
//! [`dump::payload`] and `RESTORE` (a Redis 8.6 key with module metadata also has
//! [`KeyMeta::key_metadata`], for [`dump::payload_with_meta`]); a value over [`Options`]'
//! thresholds comes out as [`Chunk`]s of elements, so memory stays bounded whatever the
//! snapshot holds.
//! [`decode_value`] turns a small value's raw bytes into the same chunks.
//!
//! The crate is pure: no I/O of its own, no async, no files.
//!
//! Modules:
//! - `error`: [`Error`] (byte offset, key, small [`ErrorKind`]).
//! - `types`: [`TypeByte`] and [`Kind`], opcode constants.
//! - `reader`: the buffered reader that tracks offsets, runs the CRC and captures raw bytes.
//! - `length`: length encodings and fixed-width numbers.
//! - `string`: integer and LZF strings, old text doubles, the element size cap.
//! - `value`: per-encoding code: `listpack`, `ziplist`, `intset`, `zipmap`, `stream`,
//!   `walk` (find a value's end, decide "big"), `validate` (the deep check of a whole value,
//!   as Redis's `sanitize-dump-payload yes`), `decode` (the chunk state machine) and `pieces`
//!   (an element, or a quicklist node, too long to hold whole).
//! - `module`: [`ModuleType`], a module type's name and version from its id.
//! - `chunk`: [`Chunk`] and the stream types.
//! - `parser`: [`Parser`], [`Event`], [`Options`].
//! - [`dump`]: DUMP payloads and [`crc64`].
//!
//! Damaged values: every small value is validated before it is returned (see
//! [`validate_value`] and [`Options::validate_values`]), so a snapshot whose CRC is right but
//! whose values are damaged fails at the damaged key, naming it, its db and the byte; a big
//! value's blobs and stream nodes are validated as they are decoded.
//!
//! Limits: in a big value, an element longer than [`Options::huge_element_bytes`] (1 MiB by
//! default: a list item, a set or sorted set member, a hash field or value, stored plain or
//! LZF-compressed) comes out in [`Chunk::ElementPart`]s of at most `chunk_bytes`, then a
//! [`Chunk::ElementEnd`] saying which element it was; a quicklist node (listpack, or ziplist
//! before Redis 7), or a value stored as one listpack or ziplist, longer than that is read
//! entry by entry and checked as it passes. A big plain string is streamed in parts, and a
//! big LZF string decompressed a chunk at a time (its length capped at
//! [`MAX_ELEMENT_BYTES`], 512 MiB). Still read whole, each up to 512 MiB: an intset or zipmap
//! value, a stream node, a stream consumer group's PEL, a small value (up to
//! `big_value_bytes`), an aux field or function, and anything given to [`decode_value`]
//! (its elements come whole). Module values are never
//! chunked. Empty collections are rejected (Redis never writes them). The pre-GA module type 6
//! cannot be skipped without the module and is reported as unsupported.

mod chunk;
pub mod dump;
mod error;
mod length;
mod module;
mod parser;
mod reader;
mod string;
mod types;
mod value;

use bytes::Bytes;

pub use chunk::{
    Chunk, Consumer, Element, HashField, IdmpEntry, PendingEntry, StreamEntry, StreamGroup,
    StreamId, StreamIdmp, StreamMeta,
};
pub use dump::{Crc64, crc64};
pub use error::{Error, ErrorKind};
pub use module::ModuleType;
pub use parser::{Event, KeyMeta, Options, Parser, Record};
pub use string::MAX_ELEMENT_BYTES;
pub use types::{Kind, TypeByte};

/// Checks a value's raw bytes (as in [`Record::raw`]) as deeply as Redis's
/// `sanitize-dump-payload yes` does: every blob entry inside its blob, counts that match, no
/// duplicate members, no NaN score, LZF data that decompresses, stream nodes and consumer
/// groups consistent. The error's offset is the byte in `raw`. [`Parser`] runs this on every
/// small value unless [`Options::validate_values`] is off.
pub fn validate_value(type_byte: TypeByte, raw: &[u8], rdb_version: u16) -> Result<(), Error> {
    value::validate::validate(type_byte, raw, rdb_version)
        .map_err(|(at, what)| Error::new(ErrorKind::Corrupt(what), at as u64))
}

/// A string key's value from its raw bytes (as in [`Record::raw`] of a [`TypeByte::STRING`]):
/// a slice of `raw` itself when stored plain (no copy), made when stored as an integer or
/// LZF-compressed. The same bytes [`decode_value`] gives, without its reader and chunks.
pub fn string_value(raw: &Bytes) -> Result<Bytes, Error> {
    match value::validate::string_value(raw) {
        Ok(std::borrow::Cow::Borrowed(s)) => Ok(raw.slice_ref(s)),
        Ok(std::borrow::Cow::Owned(v)) => Ok(Bytes::from(v)),
        Err((at, what)) => Err(Error::new(ErrorKind::Corrupt(what), at as u64)),
    }
}

/// Decodes a small value's raw bytes (as in [`Record::raw`]) into chunks, with the
/// default chunk sizes.
pub fn decode_value(
    type_byte: TypeByte,
    raw: &Bytes,
    rdb_version: u16,
) -> Result<Vec<Chunk>, Error> {
    let mut rd = reader::Reader::with_buffer(&raw[..], false, raw.len());
    // The value is in memory already: its elements come whole.
    let lim = value::decode::ChunkLimits {
        huge: u64::MAX,
        ..Options::default().chunk_limits()
    };
    let mut dec = value::decode::Decoder::new(type_byte, rdb_version, lim);
    let mut out = Vec::new();
    while let Some(c) = dec.next_chunk(&mut rd)? {
        out.push(c);
    }
    if !rd.at_end() {
        return Err(rd.err(ErrorKind::Corrupt("trailing bytes after the value")));
    }
    Ok(out)
}
