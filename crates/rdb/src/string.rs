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

/// How far back an LZF back-reference can reach (13 bits of offset, plus one).
const LZF_WINDOW: usize = 8 * 1024;

/// An LZF string decoded a piece at a time straight from the reader: memory is one piece
/// plus the 8 KiB window back-references reach into, whatever the string's length. Every
/// length the input claims is checked against what is left of both sides before it is used,
/// and the string must end exactly where both lengths say.
pub(crate) struct LzfStream {
    /// Compressed bytes not read yet.
    cleft: u64,
    /// Uncompressed bytes no instruction read so far accounts for.
    uleft: u64,
    /// The last (up to) `LZF_WINDOW` bytes produced.
    window: Vec<u8>,
    /// The rest of an instruction cut at the end of the previous piece.
    rest: Rest,
    /// Where the compressed data starts, for errors.
    at: u64,
}

#[derive(Clone, Copy)]
enum Rest {
    None,
    /// Literal bytes still to copy from the input.
    Literal(usize),
    /// Bytes still to copy from `back` bytes behind the end of the output.
    Copy {
        back: usize,
        len: usize,
    },
}

impl LzfStream {
    pub(crate) fn new(clen: u64, ulen: u64, at: u64) -> Self {
        Self {
            cleft: clen,
            uleft: ulen,
            window: Vec::new(),
            rest: Rest::None,
            at,
        }
    }

    fn bad(&self) -> Error {
        Error::new(ErrorKind::Corrupt("LZF data does not decompress"), self.at)
    }

    /// The next piece of `want` bytes (fewer only for the last one); `None` once the whole
    /// string was produced.
    pub(crate) fn next_part<R: Read>(
        &mut self,
        rd: &mut Reader<R>,
        want: usize,
    ) -> Result<Option<Vec<u8>>, Error> {
        let left = self.uleft
            + match self.rest {
                Rest::None => 0,
                Rest::Literal(n) | Rest::Copy { len: n, .. } => n as u64,
            };
        if left == 0 {
            if self.cleft != 0 {
                return Err(self.bad());
            }
            return Ok(None);
        }
        let hist = self.window.len();
        let mut out = std::mem::take(&mut self.window);
        let want = (want.max(1) as u64).min(left) as usize;
        out.reserve(want);
        let goal = hist + want;
        while out.len() < goal {
            let room = goal - out.len();
            match self.rest {
                Rest::Literal(n) => {
                    let take = n.min(room);
                    rd.extend_into(&mut out, take)?;
                    self.rest = if take < n {
                        Rest::Literal(n - take)
                    } else {
                        Rest::None
                    };
                    continue;
                }
                Rest::Copy { back, len } => {
                    let take = len.min(room);
                    let from = out.len() - back;
                    if back >= take {
                        out.extend_from_within(from..from + take);
                    } else {
                        // Overlapping: each byte may be one this copy just wrote.
                        for i in 0..take {
                            out.push(out[from + i]);
                        }
                    }
                    self.rest = if take < len {
                        Rest::Copy {
                            back,
                            len: len - take,
                        }
                    } else {
                        Rest::None
                    };
                    continue;
                }
                Rest::None => {}
            }
            if self.cleft == 0 {
                return Err(self.bad());
            }
            let ctrl = rd.u8()?;
            self.cleft -= 1;
            if ctrl < 32 {
                // A literal run of ctrl + 1 bytes.
                let n = u64::from(ctrl) + 1;
                if n > self.cleft || n > self.uleft {
                    return Err(self.bad());
                }
                self.cleft -= n;
                self.uleft -= n;
                self.rest = Rest::Literal(n as usize);
            } else {
                // A back-reference: length in the top 3 bits (7 = one more length byte),
                // distance in the low 5 bits and the next byte.
                let mut len = u64::from(ctrl >> 5);
                let need = if len == 7 { 2 } else { 1 };
                if self.cleft < need {
                    return Err(self.bad());
                }
                if len == 7 {
                    len += u64::from(rd.u8()?);
                }
                let back = ((usize::from(ctrl & 0x1f) << 8) | usize::from(rd.u8()?)) + 1;
                self.cleft -= need;
                len += 2;
                if len > self.uleft || back > out.len() {
                    return Err(self.bad());
                }
                self.uleft -= len;
                self.rest = Rest::Copy {
                    back,
                    len: len as usize,
                };
            }
        }
        let finished = self.uleft == 0 && matches!(self.rest, Rest::None);
        if finished && self.cleft != 0 {
            return Err(self.bad());
        }
        if hist == 0 && finished {
            // The whole string in one piece: no copy.
            return Ok(Some(out));
        }
        let part = out[hist..].to_vec();
        let keep = out.len().saturating_sub(LZF_WINDOW);
        out.drain(..keep);
        self.window = out;
        Ok(Some(part))
    }
}

/// Decodes a whole LZF string (`ulen` already checked against the caller's cap).
pub(crate) fn lzf_whole<R: Read>(
    rd: &mut Reader<R>,
    clen: u64,
    ulen: u64,
) -> Result<Vec<u8>, Error> {
    // Redis takes any data that claims 0 bytes as the empty string (its `lzf_decompress`
    // then fails with 0, which equals the length it wanted).
    if ulen == 0 {
        rd.vec(clen)?;
        return Ok(Vec::new());
    }
    let mut lzf = LzfStream::new(clen, ulen, rd.offset());
    let out = lzf.next_part(rd, ulen as usize)?.unwrap_or_default();
    if lzf.next_part(rd, 1)?.is_some() {
        return Err(lzf.bad());
    }
    Ok(out)
}

/// Reads a whole string (int-encoded ones become their decimal text), at most `cap` bytes.
pub(crate) fn read_string<R: Read>(rd: &mut Reader<R>, cap: u64) -> Result<Bytes, Error> {
    match read_len(rd)? {
        Len::Plain(n) if n <= cap => rd.bytes(n),
        Len::Plain(_) => Err(rd.err(ErrorKind::TooLarge("string"))),
        Len::Int(w) => Ok(read_int(rd, w)?.to_string().into()),
        Len::Lzf => {
            let (clen, ulen) = read_lzf_lens(rd)?;
            if ulen > cap {
                return Err(rd.err(ErrorKind::TooLarge("string")));
            }
            Ok(lzf_whole(rd, clen, ulen)?.into())
        }
    }
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
            lzf_whole(rd, clen, ulen)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(n: usize) -> Vec<u8> {
        // Compressible, with back-references of every length and distance up to the window.
        let mut v = Vec::with_capacity(n);
        let mut x: u32 = 7;
        while v.len() < n {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let run = (x >> 16) as usize % 300;
            if x & 1 == 0 && v.len() > 9000 {
                let from = v.len() - 1 - (x >> 8) as usize % 8000;
                for i in 0..run.min(n - v.len()) {
                    v.push(v[from + i]);
                }
            } else {
                v.extend((0..run.min(n - v.len())).map(|i| (x as usize + i * 31) as u8));
            }
        }
        v
    }

    fn pieces(packed: &[u8], ulen: usize, want: usize) -> Result<Vec<Vec<u8>>, Error> {
        let mut rd = Reader::new(packed, false);
        let mut lzf = LzfStream::new(packed.len() as u64, ulen as u64, 0);
        let mut out = Vec::new();
        while let Some(p) = lzf.next_part(&mut rd, want)? {
            out.push(p);
        }
        Ok(out)
    }

    #[test]
    fn lzf_in_pieces_equals_whole() {
        let data = sample(300_000);
        let packed = lzf::compress(&data).unwrap();
        assert!(packed.len() < data.len() / 2);
        for want in [1, 100, 8191, 8192, 65_536, 1 << 20] {
            let parts = pieces(&packed, data.len(), want).unwrap();
            assert!(parts.iter().all(|p| p.len() <= want));
            assert_eq!(parts.concat(), data, "pieces of {want}");
        }
        let mut rd = Reader::new(&packed[..], false);
        assert_eq!(
            lzf_whole(&mut rd, packed.len() as u64, data.len() as u64).unwrap(),
            data
        );
    }

    #[test]
    fn lzf_damage_is_refused() {
        let data = sample(50_000);
        let packed = lzf::compress(&data).unwrap();
        // Claimed lengths that disagree with the data, either way.
        assert!(pieces(&packed, data.len() + 1, 4096).is_err());
        assert!(pieces(&packed, data.len() - 1, 4096).is_err());
        assert!(pieces(&packed[..packed.len() - 1], data.len(), 4096).is_err());
        let mut longer = packed.clone();
        longer.push(0);
        assert!(pieces(&longer, data.len(), 4096).is_err());
        // A back-reference before the start of the output.
        assert!(pieces(&[0x20, 0x05, 0x00], 3, 4096).is_err());
        // A literal run longer than the input left.
        assert!(pieces(&[0x1f, b'a'], 32, 4096).is_err());
    }
}
