//! RDB length encoding: 6/14/32/64-bit lengths and the "special" encodings that mark a
//! string stored as an integer or LZF-compressed. Also the fixed-width numbers.

use std::io::Read;

use crate::error::{Error, ErrorKind};
use crate::reader::Reader;

/// A decoded length prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Len {
    /// A plain length (of a string, or a count).
    Plain(u64),
    /// A string stored as a little-endian signed integer of this many bytes (1, 2 or 4).
    Int(u8),
    /// An LZF-compressed string follows: compressed length, original length, data.
    Lzf,
}

pub(crate) fn read_len<R: Read>(rd: &mut Reader<R>) -> Result<Len, Error> {
    let b = rd.u8()?;
    Ok(match b >> 6 {
        0 => Len::Plain(u64::from(b & 0x3F)),
        1 => Len::Plain(u64::from(b & 0x3F) << 8 | u64::from(rd.u8()?)),
        2 => match b {
            0x80 => Len::Plain(u64::from(u32::from_be_bytes(rd.array()?))),
            0x81 => Len::Plain(u64::from_be_bytes(rd.array()?)),
            _ => return Err(rd.err(ErrorKind::Corrupt("unknown length encoding"))),
        },
        _ => match b & 0x3F {
            0 => Len::Int(1),
            1 => Len::Int(2),
            2 => Len::Int(4),
            3 => Len::Lzf,
            _ => return Err(rd.err(ErrorKind::Corrupt("unknown string encoding"))),
        },
    })
}

/// A length that must be plain (a count, an id part, a db number).
pub(crate) fn read_length<R: Read>(rd: &mut Reader<R>) -> Result<u64, Error> {
    match read_len(rd)? {
        Len::Plain(n) => Ok(n),
        _ => Err(rd.err(ErrorKind::Corrupt(
            "string encoding where a length was expected",
        ))),
    }
}

/// Milliseconds as stored by RDB (8 bytes little-endian).
pub(crate) fn read_ms<R: Read>(rd: &mut Reader<R>) -> Result<i64, Error> {
    Ok(i64::from_le_bytes(rd.array()?))
}

/// A binary double (ZSET_2 scores, module doubles).
pub(crate) fn read_f64<R: Read>(rd: &mut Reader<R>) -> Result<f64, Error> {
    Ok(f64::from_le_bytes(rd.array()?))
}

/// A stream ID as stored raw: 16 bytes, ms then seq, big-endian.
pub(crate) fn read_raw_id<R: Read>(rd: &mut Reader<R>) -> Result<crate::StreamId, Error> {
    let b: [u8; 16] = rd.array()?;
    Ok(crate::StreamId::from_be_bytes(&b))
}

/// A stream ID as two lengths.
pub(crate) fn read_len_id<R: Read>(rd: &mut Reader<R>) -> Result<crate::StreamId, Error> {
    let ms = read_length(rd)?;
    let seq = read_length(rd)?;
    Ok(crate::StreamId { ms, seq })
}
