//! Finding where the next frame ends, in one pass and without allocating.
//!
//! [`check`] is the gatekeeper: it validates the whole grammar and every limit, so that
//! [`parse`](crate::parse) only has to build what has already been accepted. Bulk payloads are
//! jumped over by their length, never scanned, so a large value arriving in pieces costs only a
//! re-read of its header on each attempt.

use crate::error::Error;
use crate::frame::tag;
use crate::number;

/// The highest nesting depth ever honoured, whatever [`Limits::max_depth`] says.
///
/// Checking, parsing, encoding and dropping a frame all recurse once per level; this ceiling
/// keeps that well inside a 2 MiB thread stack, even in a debug build.
pub const DEPTH_CEILING: usize = 128;

/// Bounds applied to frames received from a peer, checked before anything is allocated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Longest payload of a bulk string, bulk error or verbatim string, in bytes.
    ///
    /// Default 512 MiB, Redis's own `proto-max-bulk-len`.
    pub max_bulk: usize,
    /// Most items one aggregate header may announce (pairs, for maps and attributes).
    ///
    /// Default `i32::MAX`, the bound Redis itself puts on a command's argument count: a replica
    /// must accept whatever its primary accepted. Memory stays bounded by the bytes actually
    /// received, since nothing is reserved ahead of them.
    pub max_elements: usize,
    /// Deepest nesting of aggregates: `0` allows none, `1` allows a flat array, and so on.
    /// An attribute counts as one level around the frame it annotates.
    ///
    /// Default 32. Values above [`DEPTH_CEILING`] act as that ceiling.
    pub max_depth: usize,
    /// Longest line (simple string, error, number, length header), CRLF excluded, in bytes.
    ///
    /// Default 64 KiB, Redis's own bound on an inline line.
    pub max_line: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bulk: 512 * 1024 * 1024,
            max_elements: i32::MAX as usize,
            max_depth: 32,
            max_line: 64 * 1024,
        }
    }
}

impl Limits {
    /// No bounds on sizes, the [`DEPTH_CEILING`] on depth: for bytes that are already in hand.
    pub(crate) const WHOLE: Limits = Limits {
        max_bulk: usize::MAX,
        max_elements: usize::MAX,
        max_depth: DEPTH_CEILING,
        max_line: usize::MAX,
    };
}

/// Walks the start of `buf` and reports where its first frame ends, without allocating.
///
/// - `Ok(Some(n))`: one complete, valid frame occupies `buf[..n]`.
/// - `Ok(None)`: `buf` is a strict prefix of a frame that may still turn out valid; wait for
///   more bytes. This is not an error.
/// - `Err(e)`: the bytes break the protocol or `limits`. This is reported as soon as it is
///   certain, even before the frame is complete (a bad type byte, a length over the limit, a
///   non-digit in a length).
pub fn check(buf: &[u8], limits: &Limits) -> Result<Option<usize>, Error> {
    let mut walker = Walker {
        buf,
        pos: 0,
        limits,
        max_depth: limits.max_depth.min(DEPTH_CEILING),
    };
    match walker.frame(0) {
        Ok(()) => Ok(Some(walker.pos)),
        Err(Stop::Incomplete) => Ok(None),
        Err(Stop::Invalid(error)) => Err(error),
    }
}

/// Why the walk stopped short of a whole frame.
enum Stop {
    Incomplete,
    Invalid(Error),
}

impl From<Error> for Stop {
    fn from(error: Error) -> Self {
        Stop::Invalid(error)
    }
}

/// A cursor over `buf`; `pos` never passes `buf.len()`.
struct Walker<'a> {
    buf: &'a [u8],
    pos: usize,
    limits: &'a Limits,
    max_depth: usize,
}

impl<'a> Walker<'a> {
    /// Walks one frame found at `pos`, nested inside `depth` aggregates.
    fn frame(&mut self, depth: usize) -> Result<(), Stop> {
        let ty = self.byte()?;
        match ty {
            tag::SIMPLE | tag::ERROR => {
                self.line(|_| true, Error::MissingCrlf)?;
            }
            tag::INTEGER => {
                let line = self.line(number::is_int_prefix, Error::BadInteger)?;
                number::parse_i64(line).ok_or(Error::BadInteger)?;
            }
            tag::DOUBLE => {
                let line = self.line(|_| true, Error::BadDouble)?;
                number::parse_f64(line).ok_or(Error::BadDouble)?;
            }
            tag::BIG_NUMBER => {
                let line = self.line(number::is_big_number_prefix, Error::BadBigNumber)?;
                if !number::is_big_number(line) {
                    return Err(Error::BadBigNumber.into());
                }
            }
            tag::BOOLEAN => {
                match self.buf.get(self.pos) {
                    Some(b't' | b'f') => self.pos += 1,
                    Some(_) => return Err(Error::BadBoolean.into()),
                    None => return Err(Stop::Incomplete),
                }
                self.crlf()?;
            }
            tag::NULL => self.crlf()?,
            tag::BULK => {
                if let Some(len) = self.length(true)? {
                    self.payload(len, false)?;
                }
            }
            tag::BULK_ERROR | tag::VERBATIM => {
                let len = self.length(false)?.ok_or(Error::BadLength)?;
                self.payload(len, ty == tag::VERBATIM)?;
            }
            tag::ARRAY | tag::SET | tag::PUSH => {
                self.enter(depth)?;
                if let Some(count) = self.count(ty == tag::ARRAY)? {
                    self.items(count, depth)?;
                }
            }
            tag::MAP | tag::ATTRIBUTE => {
                self.enter(depth)?;
                let count = self.count(false)?.ok_or(Error::BadLength)?;
                // Cannot overflow: count <= i64::MAX.
                self.items(count * 2, depth)?;
                if ty == tag::ATTRIBUTE {
                    self.frame(depth + 1)?;
                }
            }
            other => return Err(Error::InvalidTypeByte(other).into()),
        }
        Ok(())
    }

    fn byte(&mut self) -> Result<u8, Stop> {
        let byte = *self.buf.get(self.pos).ok_or(Stop::Incomplete)?;
        self.pos += 1;
        Ok(byte)
    }

    /// Reads a line up to its CRLF and returns it without the CRLF.
    ///
    /// While the CRLF has not arrived, `prefix_ok` tells whether what is there can still become
    /// valid; if not, the walk fails with `invalid` at once instead of waiting.
    fn line(&mut self, prefix_ok: fn(&[u8]) -> bool, invalid: Error) -> Result<&'a [u8], Stop> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let max = self.limits.max_line;
        let window = &rest[..rest.len().min(max.saturating_add(1))];
        let Some(cr) = window.iter().position(|&b| b == b'\r') else {
            if window.len() > max {
                return Err(Error::LineTooLong { limit: max }.into());
            }
            return Err(if prefix_ok(window) {
                Stop::Incomplete
            } else {
                Stop::Invalid(invalid)
            });
        };
        let line = &rest[..cr];
        match rest.get(cr + 1) {
            Some(b'\n') => {
                self.pos += cr + 2;
                Ok(line)
            }
            Some(_) => Err(Error::MissingCrlf.into()),
            None if prefix_ok(line) => Err(Stop::Incomplete),
            None => Err(invalid.into()),
        }
    }

    /// Expects `\r\n` at `pos`, failing early on whichever of the two bytes has arrived wrong.
    fn crlf(&mut self) -> Result<(), Stop> {
        for expected in [b'\r', b'\n'] {
            match self.buf.get(self.pos) {
                Some(&b) if b == expected => self.pos += 1,
                Some(_) => return Err(Error::MissingCrlf.into()),
                None => return Err(Stop::Incomplete),
            }
        }
        Ok(())
    }

    /// Reads a length header: `None` for `-1` when `null_ok`, else a non-negative length.
    fn length(&mut self, null_ok: bool) -> Result<Option<u64>, Stop> {
        let line = self.line(number::is_int_prefix, Error::BadLength)?;
        match number::parse_i64(line) {
            Some(-1) if null_ok => Ok(None),
            Some(n) => Ok(Some(u64::try_from(n).map_err(|_| Error::BadLength)?)),
            None => Err(Error::BadLength.into()),
        }
    }

    /// Reads an aggregate's count header and holds it to [`Limits::max_elements`].
    fn count(&mut self, null_ok: bool) -> Result<Option<u64>, Stop> {
        let count = self.length(null_ok)?;
        let limit = self.limits.max_elements;
        match count {
            Some(count) if count > limit as u64 => {
                Err(Error::TooManyElements { count, limit }.into())
            }
            _ => Ok(count),
        }
    }

    /// Jumps over a `len`-byte payload and its CRLF, after holding `len` to the limit.
    fn payload(&mut self, len: u64, verbatim: bool) -> Result<(), Stop> {
        let limit = self.limits.max_bulk;
        let too_large = Error::BulkTooLarge { len, limit };
        if len > limit as u64 {
            return Err(too_large.into());
        }
        let len = usize::try_from(len).map_err(|_| too_large)?;
        if verbatim {
            // "txt:" at least; the ':' is checked as soon as it is there.
            if len < 4 || self.buf.get(self.pos + 3).is_some_and(|&b| b != b':') {
                return Err(Error::BadVerbatim.into());
            }
        }
        let end = self.pos.checked_add(len).ok_or(too_large)?;
        if end > self.buf.len() {
            return Err(Stop::Incomplete);
        }
        self.pos = end;
        self.crlf()
    }

    /// Walks `count` frames, one level deeper than `depth`.
    fn items(&mut self, count: u64, depth: usize) -> Result<(), Stop> {
        // Each item takes at least 3 bytes, so this loop ends soon on a short buffer.
        for _ in 0..count {
            self.frame(depth + 1)?;
        }
        Ok(())
    }

    /// Refuses to open an aggregate at `depth` if that would pass the nesting limit.
    fn enter(&self, depth: usize) -> Result<(), Stop> {
        if depth >= self.max_depth {
            return Err(Error::TooDeep {
                limit: self.max_depth,
            }
            .into());
        }
        Ok(())
    }
}
