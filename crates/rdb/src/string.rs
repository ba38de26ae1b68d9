//! RDB strings: plain, integer-encoded and LZF-compressed; reading them whole (capped)
//! and the old text-encoded doubles of ZSET (type 3).

use std::io::Read;

use bytes::Bytes;

use crate::error::{Error, ErrorKind};
use crate::length::{Len, read_len, read_length};
use crate::reader::Reader;

/// Hard cap on a single element read whole (a string in chunk mode, a listpack, a
/// quicklist node, an LZF string): 512 MiB, Redis's own `proto-max-bulk-len` default.
pub const MAX_ELEMENT_BYTES: u64 = 512 * 1024 * 1024;

/// LZF cannot expand one input byte into more than ~88 output bytes; a claimed length
/// above this ratio is corrupt (and must not be allocated).
const LZF_MAX_RATIO: u64 = 100;

/// Reads an integer-encoded string's value.
pub(crate) fn read_int<R: Read>(rd: &mut Reader<R>, width: u8) -> Result<i64, Error> {
    Ok(match width {
        1 => i64::from(rd.u8()? as i8),
        2 => i64::from(i16::from_le_bytes(rd.array()?)),
        _ => i64::from(i32::from_le_bytes(rd.array()?)),
    })
}

/// Reads the two LZF lengths, checked against the caps.
pub(crate) fn read_lzf_lens<R: Read>(rd: &mut Reader<R>) -> Result<(u64, u64), Error> {
    let clen = read_length(rd)?;
    let ulen = read_length(rd)?;
    if clen == 0 || ulen > clen.saturating_mul(LZF_MAX_RATIO) {
        return Err(rd.err(ErrorKind::Corrupt("LZF lengths are impossible")));
    }
    if ulen > MAX_ELEMENT_BYTES {
        return Err(rd.err(ErrorKind::TooLarge("LZF string")));
    }
    Ok((clen, ulen))
}

pub(crate) fn lzf_decompress(data: &[u8], ulen: u64, offset: u64) -> Result<Vec<u8>, Error> {
    // Redis takes any data that claims 0 bytes as the empty string (its `lzf_decompress`
    // then fails with 0, which equals the length it wanted).
    if ulen == 0 {
        return Ok(Vec::new());
    }
    let bad = || Error::new(ErrorKind::Corrupt("LZF data does not decompress"), offset);
    let out = lzf::decompress(data, ulen as usize).map_err(|_| bad())?;
    if out.len() as u64 != ulen {
        return Err(bad());
    }
    Ok(out)
}

/// Reads a whole string (int-encoded ones become their decimal text), at most `cap` bytes.
pub(crate) fn read_string<R: Read>(rd: &mut Reader<R>, cap: u64) -> Result<Bytes, Error> {
    Ok(Bytes::from(read_string_vec(rd, cap)?))
}

pub(crate) fn read_string_vec<R: Read>(rd: &mut Reader<R>, cap: u64) -> Result<Vec<u8>, Error> {
    match read_len(rd)? {
        Len::Plain(n) => {
            if n > cap {
                return Err(rd.err(ErrorKind::TooLarge("string")));
            }
            rd.vec(n)
        }
        Len::Int(w) => Ok(read_int(rd, w)?.to_string().into_bytes()),
        Len::Lzf => {
            let (clen, ulen) = read_lzf_lens(rd)?;
            if ulen > cap {
                return Err(rd.err(ErrorKind::TooLarge("string")));
            }
            let at = rd.offset();
            let data = rd.vec(clen)?;
            lzf_decompress(&data, ulen, at)
        }
    }
}

/// Reads a ZSET (type 3) score: a length byte (253 NaN, 254 +inf, 255 -inf) then text.
pub(crate) fn read_text_double<R: Read>(rd: &mut Reader<R>) -> Result<f64, Error> {
    let n = rd.u8()?;
    match n {
        253 => Ok(f64::NAN),
        254 => Ok(f64::INFINITY),
        255 => Ok(f64::NEG_INFINITY),
        _ => {
            let at = rd.offset();
            let text = rd.vec(u64::from(n))?;
            parse_f64(&text).ok_or(Error::new(ErrorKind::Corrupt("score is not a number"), at))
        }
    }
}

/// Parses a score as Redis writes it (`%.17g`, "inf", "-inf", "nan").
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok()
}
