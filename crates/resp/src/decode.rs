//! Turning checked bytes into [`Frame`]s: [`parse`] for one frame in hand, [`Decoder`] for a
//! connection's read buffer.
//!
//! Building trusts nothing it has not been told by [`check`]: every frame is checked first,
//! then built by a cursor that slices payloads out of the shared buffer (no copies) and still
//! cannot read past the end or panic if the two ever disagreed.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

use crate::check::{Limits, check};
use crate::error::Error;
use crate::frame::{Frame, tag};
use crate::number;

/// Parses exactly one complete frame that occupies all of `raw`.
///
/// Bulk payloads are zero-copy slices of `raw`. Fails with [`Error::Incomplete`] if `raw` ends
/// early, [`Error::TrailingBytes`] if it goes on after the frame, or the protocol error found.
/// No size limits apply (the bytes are already in hand) except the [`DEPTH_CEILING`] on nesting.
///
/// [`DEPTH_CEILING`]: crate::DEPTH_CEILING
pub fn parse(raw: &Bytes) -> Result<Frame, Error> {
    match check(raw, &Limits::WHOLE)? {
        None => Err(Error::Incomplete),
        Some(n) if n != raw.len() => Err(Error::TrailingBytes),
        Some(_) => build(raw),
    }
}

/// Splits whole frames off the front of a read buffer.
///
/// Each call re-checks the buffer from its start; bulk payloads are jumped over, so only the
/// headers are read again while a large frame is arriving.
#[derive(Clone, Debug, Default)]
pub struct Decoder {
    limits: Limits,
}

impl Decoder {
    /// A decoder that holds every frame to `limits`.
    pub fn new(limits: Limits) -> Self {
        Decoder { limits }
    }

    /// The limits this decoder applies.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// If `buf` starts with a complete frame, splits it off and returns it with its raw bytes
    /// (the exact slice that was removed from `buf`, shared, not copied).
    ///
    /// `Ok(None)` when more bytes are needed; `buf` is then left as it was. On `Err` the
    /// stream cannot be resynchronised and the connection should be dropped.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<(Frame, Bytes)>, Error> {
        let Some(n) = check(buf, &self.limits)? else {
            return Ok(None);
        };
        let raw = buf.split_to(n).freeze();
        let frame = build(&raw)?;
        Ok(Some((frame, raw)))
    }

    /// As [`decode`](Self::decode), for a stream of commands (a replication stream): a frame
    /// that is an array of strings comes as its arguments, sliced out of its raw bytes without
    /// the [`Frame`] in between (`Err(frame)` for any other frame). Half the work of `decode`
    /// then [`Frame::command_args`] on a stream that is all commands.
    pub fn decode_command(
        &mut self,
        buf: &mut BytesMut,
    ) -> Result<Option<(CommandArgs, Bytes)>, Error> {
        let Some(n) = check(buf, &self.limits)? else {
            return Ok(None);
        };
        let raw = buf.split_to(n).freeze();
        let args = match command_args(&raw)? {
            Some(args) => Ok(args),
            None => Err(build(&raw)?),
        };
        Ok(Some((args, raw)))
    }
}

/// A command's arguments, or the frame that is not a command.
pub type CommandArgs = Result<Vec<Bytes>, Frame>;

/// The arguments of a checked frame that is a non-empty array of bulk or simple strings;
/// `None` for any other frame.
fn command_args(raw: &Bytes) -> Result<Option<Vec<Bytes>>, Error> {
    let mut b = Builder { raw, pos: 0 };
    if b.byte()? != tag::ARRAY {
        return Ok(None);
    }
    let count = match b.length()? {
        Some(n) if n > 0 => n,
        _ => return Ok(None),
    };
    let mut args = Vec::with_capacity(b.capacity(count));
    for _ in 0..count {
        match b.byte()? {
            tag::BULK => match b.length()? {
                Some(len) => args.push(b.payload(len)?),
                None => return Ok(None),
            },
            tag::SIMPLE => args.push(b.line_bytes()?),
            _ => return Ok(None),
        }
    }
    if b.pos != raw.len() {
        return Err(Error::TrailingBytes);
    }
    Ok(Some(args))
}

/// Builds the frame that [`check`] found to occupy all of `raw`.
fn build(raw: &Bytes) -> Result<Frame, Error> {
    let mut builder = Builder { raw, pos: 0 };
    let frame = builder.frame()?;
    if builder.pos != raw.len() {
        return Err(Error::TrailingBytes);
    }
    Ok(frame)
}

/// A cursor over checked bytes. Its errors are unreachable after a successful [`check`].
struct Builder<'a> {
    raw: &'a Bytes,
    pos: usize,
}

impl Builder<'_> {
    fn frame(&mut self) -> Result<Frame, Error> {
        let ty = self.byte()?;
        Ok(match ty {
            tag::SIMPLE => Frame::Simple(self.line_bytes()?),
            tag::ERROR => Frame::Error(self.line_bytes()?),
            tag::INTEGER => {
                Frame::Integer(number::parse_i64(self.line()?).ok_or(Error::BadInteger)?)
            }
            tag::DOUBLE => Frame::Double(number::parse_f64(self.line()?).ok_or(Error::BadDouble)?),
            tag::BIG_NUMBER => Frame::BigNumber(self.line_bytes()?),
            tag::BOOLEAN => match self.line()? {
                b"t" => Frame::Boolean(true),
                b"f" => Frame::Boolean(false),
                _ => return Err(Error::BadBoolean),
            },
            tag::NULL => {
                self.line()?;
                Frame::Null
            }
            tag::BULK => match self.length()? {
                None => Frame::Null,
                Some(len) => Frame::Bulk(self.payload(len)?),
            },
            tag::BULK_ERROR => {
                let len = self.length()?.ok_or(Error::BadLength)?;
                Frame::BulkError(self.payload(len)?)
            }
            tag::VERBATIM => {
                let len = self.length()?.ok_or(Error::BadLength)?;
                let body = self.payload(len)?;
                let format = body.get(..3).and_then(|f| f.try_into().ok());
                match (format, body.get(3)) {
                    (Some(format), Some(b':')) => Frame::Verbatim {
                        format,
                        text: body.slice(4..),
                    },
                    _ => return Err(Error::BadVerbatim),
                }
            }
            tag::ARRAY => match self.length()? {
                None => Frame::Null,
                Some(count) => Frame::Array(self.items(count)?),
            },
            tag::SET => Frame::Set(self.counted_items()?),
            tag::PUSH => Frame::Push(self.counted_items()?),
            tag::MAP => Frame::Map(self.counted_pairs()?),
            tag::ATTRIBUTE => Frame::Attribute {
                attrs: self.counted_pairs()?,
                frame: Box::new(self.frame()?),
            },
            other => return Err(Error::InvalidTypeByte(other)),
        })
    }

    fn byte(&mut self) -> Result<u8, Error> {
        let byte = *self.raw.get(self.pos).ok_or(Error::Incomplete)?;
        self.pos += 1;
        Ok(byte)
    }

    /// The range of the line at `pos`, CRLF excluded; moves past the CRLF.
    fn line_range(&mut self) -> Result<Range<usize>, Error> {
        let rest = self.raw.get(self.pos..).ok_or(Error::Incomplete)?;
        let cr = rest
            .iter()
            .position(|&b| b == b'\r')
            .ok_or(Error::Incomplete)?;
        let range = self.pos..self.pos + cr;
        self.pos += cr + 2;
        Ok(range)
    }

    fn line(&mut self) -> Result<&[u8], Error> {
        let range = self.line_range()?;
        Ok(&self.raw[range])
    }

    fn line_bytes(&mut self) -> Result<Bytes, Error> {
        let range = self.line_range()?;
        Ok(self.raw.slice(range))
    }

    /// A length header: `None` for `-1`.
    fn length(&mut self) -> Result<Option<usize>, Error> {
        match number::parse_i64(self.line()?) {
            Some(-1) => Ok(None),
            Some(n) => usize::try_from(n).map(Some).map_err(|_| Error::BadLength),
            None => Err(Error::BadLength),
        }
    }

    /// The `len`-byte payload at `pos`, sliced out of the buffer; moves past its CRLF.
    fn payload(&mut self, len: usize) -> Result<Bytes, Error> {
        let end = self.pos.checked_add(len).ok_or(Error::Incomplete)?;
        if end
            .checked_add(2)
            .is_none_or(|after| after > self.raw.len())
        {
            return Err(Error::Incomplete);
        }
        let payload = self.raw.slice(self.pos..end);
        self.pos = end + 2;
        Ok(payload)
    }

    /// Room for `count` items, but never more than the remaining bytes could hold.
    fn capacity(&self, count: usize) -> usize {
        count.min(self.raw.len().saturating_sub(self.pos) / 3)
    }

    fn items(&mut self, count: usize) -> Result<Vec<Frame>, Error> {
        let mut items = Vec::with_capacity(self.capacity(count));
        for _ in 0..count {
            items.push(self.frame()?);
        }
        Ok(items)
    }

    fn counted_items(&mut self) -> Result<Vec<Frame>, Error> {
        let count = self.length()?.ok_or(Error::BadLength)?;
        self.items(count)
    }

    fn counted_pairs(&mut self) -> Result<Vec<(Frame, Frame)>, Error> {
        let count = self.length()?.ok_or(Error::BadLength)?;
        let mut pairs = Vec::with_capacity(self.capacity(count) / 2);
        for _ in 0..count {
            pairs.push((self.frame()?, self.frame()?));
        }
        Ok(pairs)
    }
}
