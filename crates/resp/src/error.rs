//! The ways a byte stream can violate the protocol.

/// A protocol violation found while checking or parsing a frame.
///
/// "More bytes are needed" is never one of these: [`check`](crate::check) and
/// [`Decoder::decode`](crate::Decoder::decode) answer `Ok(None)` for that. The only exception is
/// [`Error::Incomplete`], returned by [`parse`](crate::parse) when it is handed a cut-off frame.
///
/// Every variant carries only small, fixed context, so the type is `Copy` and cheap to match on.
#[derive(thiserror::Error, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Error {
    /// The first byte of a frame is not one of the RESP2/RESP3 type bytes.
    #[error("invalid RESP type byte 0x{0:02x}")]
    InvalidTypeByte(u8),
    /// A line or payload is not followed by `\r\n`.
    #[error("missing CRLF after a line or payload")]
    MissingCrlf,
    /// A line (simple string, error, number or length header) runs past the limit without `\r\n`.
    #[error("line longer than {limit} bytes without CRLF")]
    LineTooLong {
        /// [`Limits::max_line`](crate::Limits::max_line) in force.
        limit: usize,
    },
    /// An integer frame that is not a canonical `i64` in decimal.
    #[error("invalid integer")]
    BadInteger,
    /// A length or count header that is not a number, or is negative other than `-1` where a
    /// null is allowed.
    #[error("invalid length: not a number, or negative other than -1")]
    BadLength,
    /// A double frame whose text is not a floating-point number, `inf`, `-inf` or `nan`.
    #[error("invalid double")]
    BadDouble,
    /// A boolean frame other than `#t` or `#f`.
    #[error("invalid boolean: expected 't' or 'f'")]
    BadBoolean,
    /// A big number frame that is not an optionally signed run of decimal digits.
    #[error("invalid big number")]
    BadBigNumber,
    /// A verbatim string without its 3-byte format and `:` separator.
    #[error("invalid verbatim string: expected a 3-byte format and ':'")]
    BadVerbatim,
    /// A bulk string, bulk error or verbatim string longer than the limit.
    #[error("bulk length {len} exceeds the limit of {limit} bytes")]
    BulkTooLarge {
        /// The length announced by the peer.
        len: u64,
        /// [`Limits::max_bulk`](crate::Limits::max_bulk) in force.
        limit: usize,
    },
    /// An aggregate announcing more items than the limit (pairs, for maps and attributes).
    #[error("aggregate of {count} elements exceeds the limit of {limit}")]
    TooManyElements {
        /// The count announced by the peer.
        count: u64,
        /// [`Limits::max_elements`](crate::Limits::max_elements) in force.
        limit: usize,
    },
    /// Aggregates nested deeper than the limit.
    #[error("frames nested deeper than {limit} levels")]
    TooDeep {
        /// The nesting limit in force (see [`Limits::max_depth`](crate::Limits::max_depth)).
        limit: usize,
    },
    /// [`parse`](crate::parse) was given bytes that go on after the end of the frame.
    #[error("trailing bytes after the frame")]
    TrailingBytes,
    /// [`parse`](crate::parse) was given bytes that end before the frame does.
    #[error("frame is incomplete")]
    Incomplete,
}
