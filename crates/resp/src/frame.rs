//! The wire value: one RESP2 or RESP3 frame, its accessors and its readable form.

use std::fmt;

use bytes::Bytes;

use crate::number;

/// The type bytes that open each kind of frame.
pub(crate) mod tag {
    pub const SIMPLE: u8 = b'+';
    pub const ERROR: u8 = b'-';
    pub const INTEGER: u8 = b':';
    pub const BULK: u8 = b'$';
    pub const ARRAY: u8 = b'*';
    pub const NULL: u8 = b'_';
    pub const DOUBLE: u8 = b',';
    pub const BOOLEAN: u8 = b'#';
    pub const BIG_NUMBER: u8 = b'(';
    pub const BULK_ERROR: u8 = b'!';
    pub const VERBATIM: u8 = b'=';
    pub const MAP: u8 = b'%';
    pub const SET: u8 = b'~';
    pub const PUSH: u8 = b'>';
    pub const ATTRIBUTE: u8 = b'|';
}

/// One RESP frame. Payloads are [`Bytes`], so a parsed frame shares the buffer it came from.
#[derive(Clone, Debug, PartialEq)]
pub enum Frame {
    /// `+OK\r\n`: a line of text without CR or LF.
    Simple(Bytes),
    /// `-ERR message\r\n`: an error reply on one line.
    Error(Bytes),
    /// `:1\r\n`: a signed 64-bit integer.
    Integer(i64),
    /// `$3\r\nfoo\r\n`: a binary-safe string.
    Bulk(Bytes),
    /// `_\r\n` (RESP3), or the RESP2 nulls `$-1\r\n` and `*-1\r\n`.
    Null,
    /// `*2\r\n...`: an ordered list of frames.
    Array(Vec<Frame>),
    /// `,1.5\r\n` (RESP3): a double, including `inf`, `-inf` and `nan`.
    Double(f64),
    /// `#t\r\n` or `#f\r\n` (RESP3).
    Boolean(bool),
    /// `(12345678901234567890\r\n` (RESP3): an integer of any size, kept as its digits.
    BigNumber(Bytes),
    /// `!7\r\nERR bad\r\n` (RESP3): a binary-safe error.
    BulkError(Bytes),
    /// `=8\r\ntxt:text\r\n` (RESP3): a string with a 3-byte format such as `txt` or `mkd`.
    Verbatim {
        /// The format, e.g. `*b"txt"`.
        format: [u8; 3],
        /// The text after `format:`.
        text: Bytes,
    },
    /// `%1\r\n<key><value>` (RESP3): key/value pairs in wire order.
    Map(Vec<(Frame, Frame)>),
    /// `~2\r\n...` (RESP3): an unordered collection, kept in wire order.
    Set(Vec<Frame>),
    /// `>2\r\n...` (RESP3): out-of-band data such as a pub/sub message.
    Push(Vec<Frame>),
    /// `|1\r\n<key><value><frame>` (RESP3): attributes, attached to the frame that follows them.
    Attribute {
        /// The attribute pairs.
        attrs: Vec<(Frame, Frame)>,
        /// The frame they annotate.
        frame: Box<Frame>,
    },
}

impl Frame {
    /// Whether this is an error reply: [`Frame::Error`] or [`Frame::BulkError`].
    pub fn is_error(&self) -> bool {
        matches!(self, Frame::Error(_) | Frame::BulkError(_))
    }

    /// The payload of a [`Simple`](Frame::Simple), [`Bulk`](Frame::Bulk),
    /// [`Error`](Frame::Error), [`BulkError`](Frame::BulkError) or
    /// [`BigNumber`](Frame::BigNumber) frame.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Frame::Simple(b)
            | Frame::Bulk(b)
            | Frame::Error(b)
            | Frame::BulkError(b)
            | Frame::BigNumber(b) => Some(b),
            _ => None,
        }
    }

    /// The value of an [`Integer`](Frame::Integer), or of a [`Simple`](Frame::Simple) or
    /// [`Bulk`](Frame::Bulk) holding a canonical decimal `i64` (as Redis reads numbers: no `+`,
    /// no leading zeros, no spaces).
    pub fn as_integer(&self) -> Option<i64> {
        match self {
            Frame::Integer(n) => Some(*n),
            Frame::Simple(b) | Frame::Bulk(b) => number::parse_i64(b),
            _ => None,
        }
    }

    /// The arguments of a command: a non-empty [`Array`](Frame::Array) whose items are all
    /// [`Bulk`](Frame::Bulk) or [`Simple`](Frame::Simple). `None` for anything else.
    ///
    /// The returned [`Bytes`] share the frame's buffer; nothing is copied.
    pub fn command_args(&self) -> Option<Vec<Bytes>> {
        let Frame::Array(items) = self else {
            return None;
        };
        if items.is_empty() {
            return None;
        }
        items
            .iter()
            .map(|item| match item {
                Frame::Bulk(b) | Frame::Simple(b) => Some(b.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A one-line readable form, in the spirit of `redis-cli`: strings quoted, with binary escaped
/// (`"a\x00b"`), and a label on the other kinds (`(integer) 1`, `(error) ERR ...`, `(nil)`).
/// Aggregates print as `[a, b]`, `{k => v}`, `(set) [..]`, `(push) [..]`.
impl fmt::Display for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Frame::Simple(s) => escape(f, s),
            Frame::Error(s) | Frame::BulkError(s) => {
                f.write_str("(error) ")?;
                escape(f, s)
            }
            Frame::Integer(n) => write!(f, "(integer) {n}"),
            Frame::Bulk(b) => quoted(f, b),
            Frame::Null => f.write_str("(nil)"),
            Frame::Array(items) => list(f, items),
            Frame::Double(d) => write!(f, "(double) {d}"),
            Frame::Boolean(b) => write!(f, "({b})"),
            Frame::BigNumber(n) => {
                f.write_str("(big number) ")?;
                escape(f, n)
            }
            Frame::Verbatim { format, text } => {
                f.write_str("(verbatim ")?;
                escape(f, format)?;
                f.write_str(") ")?;
                quoted(f, text)
            }
            Frame::Map(pairs) => map(f, pairs),
            Frame::Set(items) => {
                f.write_str("(set) ")?;
                list(f, items)
            }
            Frame::Push(items) => {
                f.write_str("(push) ")?;
                list(f, items)
            }
            Frame::Attribute { attrs, frame } => {
                f.write_str("(attributes ")?;
                map(f, attrs)?;
                write!(f, ") {frame}")
            }
        }
    }
}

fn list(f: &mut fmt::Formatter<'_>, items: &[Frame]) -> fmt::Result {
    f.write_str("[")?;
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{item}")?;
    }
    f.write_str("]")
}

fn map(f: &mut fmt::Formatter<'_>, pairs: &[(Frame, Frame)]) -> fmt::Result {
    f.write_str("{")?;
    for (i, (key, value)) in pairs.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{key} => {value}")?;
    }
    f.write_str("}")
}

fn quoted(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    escape(f, bytes)?;
    f.write_str("\"")
}

/// Writes `bytes` as `redis-cli` does (`sdscatrepr`): printable ASCII as is, the usual
/// backslash escapes, anything else as `\xHH`.
fn escape(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for &b in bytes {
        match b {
            b'\\' => f.write_str("\\\\")?,
            b'"' => f.write_str("\\\"")?,
            b'\n' => f.write_str("\\n")?,
            b'\r' => f.write_str("\\r")?,
            b'\t' => f.write_str("\\t")?,
            0x07 => f.write_str("\\a")?,
            0x08 => f.write_str("\\b")?,
            0x20..=0x7e => fmt::Write::write_char(f, char::from(b))?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &'static [u8]) -> Frame {
        Frame::Bulk(Bytes::from_static(s))
    }

    #[test]
    fn display_escapes_binary() {
        assert_eq!(bulk(b"a\x00\"\n\xff").to_string(), r#""a\x00\"\n\xff""#);
        let cmd = Frame::Array(vec![
            bulk(b"SET"),
            bulk(b"k"),
            Frame::Integer(3),
            Frame::Null,
        ]);
        assert_eq!(cmd.to_string(), r#"["SET", "k", (integer) 3, (nil)]"#);
        let err = Frame::Error(Bytes::from_static(b"ERR no"));
        assert_eq!(err.to_string(), "(error) ERR no");
        let map = Frame::Map(vec![(bulk(b"a"), Frame::Boolean(true))]);
        assert_eq!(map.to_string(), r#"{"a" => (true)}"#);
    }

    #[test]
    fn accessors() {
        let cmd = Frame::Array(vec![bulk(b"PING"), Frame::Simple(Bytes::from_static(b"x"))]);
        assert_eq!(cmd.command_args().unwrap(), vec![&b"PING"[..], &b"x"[..]]);
        assert_eq!(Frame::Array(vec![]).command_args(), None);
        assert_eq!(Frame::Array(vec![Frame::Integer(1)]).command_args(), None);
        assert_eq!(bulk(b"-12").as_integer(), Some(-12));
        assert_eq!(bulk(b"+12").as_integer(), None);
        assert_eq!(Frame::Integer(7).as_integer(), Some(7));
        assert!(Frame::BulkError(Bytes::new()).is_error());
        assert!(!bulk(b"").is_error());
        assert_eq!(bulk(b"x").as_bytes().map(|b| &b[..]), Some(&b"x"[..]));
        assert_eq!(Frame::Integer(1).as_bytes(), None);
    }
}
