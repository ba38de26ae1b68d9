//! Writing frames and commands to a buffer, without allocating anything but the buffer itself.

use std::fmt::Write as _;

use bytes::{BufMut, BytesMut};

use crate::frame::{Frame, tag};
use crate::number;

/// Appends a command as a RESP2 array of bulk strings: `*N\r\n$len\r\narg\r\n...`.
///
/// This is the form every Redis server accepts, whatever protocol version the connection uses.
pub fn encode_command<A: AsRef<[u8]>>(out: &mut BytesMut, args: &[A]) {
    // Upper bound: "$" + up to 20 digits + CRLF + payload + CRLF per argument.
    let size = args.iter().fold(23, |size: usize, arg| {
        size.saturating_add(arg.as_ref().len() + 25)
    });
    out.reserve(size);
    header(out, tag::ARRAY, args.len());
    for arg in args {
        blob(out, tag::BULK, arg.as_ref());
    }
}

/// Appends `frame` in the form its variant names (RESP2 or RESP3).
///
/// [`Frame::Null`] is written as the RESP2 `$-1\r\n`, which clients of both versions read.
/// For any frame that [`parse`](crate::parse) can produce, parsing the output gives the frame
/// back (`nan` doubles aside, which compare unequal to themselves).
pub fn encode_frame(frame: &Frame, out: &mut BytesMut) {
    match frame {
        Frame::Simple(s) => line(out, tag::SIMPLE, s),
        Frame::Error(s) => line(out, tag::ERROR, s),
        Frame::Integer(n) => {
            out.put_u8(tag::INTEGER);
            number::put_i64(out, *n);
            out.put_slice(b"\r\n");
        }
        Frame::Bulk(b) => blob(out, tag::BULK, b),
        Frame::Null => out.put_slice(b"$-1\r\n"),
        Frame::Array(items) => aggregate(out, tag::ARRAY, items),
        Frame::Double(d) => {
            out.put_u8(tag::DOUBLE);
            if d.is_nan() {
                out.put_slice(b"nan");
            } else {
                // `{:?}` is the shortest text that reads back exactly ("1e300", "inf", "1.5").
                // Writing into a BytesMut cannot fail.
                let _ = write!(out, "{d:?}");
            }
            out.put_slice(b"\r\n");
        }
        Frame::Boolean(b) => out.put_slice(if *b { b"#t\r\n" } else { b"#f\r\n" }),
        Frame::BigNumber(n) => line(out, tag::BIG_NUMBER, n),
        Frame::BulkError(e) => blob(out, tag::BULK_ERROR, e),
        Frame::Verbatim { format, text } => {
            header(out, tag::VERBATIM, text.len().saturating_add(4));
            out.put_slice(format);
            out.put_u8(b':');
            out.put_slice(text);
            out.put_slice(b"\r\n");
        }
        Frame::Map(pairs) => pairs_of(out, tag::MAP, pairs),
        Frame::Set(items) => aggregate(out, tag::SET, items),
        Frame::Push(items) => aggregate(out, tag::PUSH, items),
        Frame::Attribute { attrs, frame } => {
            pairs_of(out, tag::ATTRIBUTE, attrs);
            encode_frame(frame, out);
        }
    }
}

/// `<tag><len>\r\n`
fn header(out: &mut BytesMut, tag: u8, len: usize) {
    out.put_u8(tag);
    number::put_u64(out, len as u64);
    out.put_slice(b"\r\n");
}

/// `<tag><text>\r\n`
fn line(out: &mut BytesMut, tag: u8, text: &[u8]) {
    out.put_u8(tag);
    out.put_slice(text);
    out.put_slice(b"\r\n");
}

/// `<tag><len>\r\n<payload>\r\n`
fn blob(out: &mut BytesMut, tag: u8, payload: &[u8]) {
    header(out, tag, payload.len());
    out.put_slice(payload);
    out.put_slice(b"\r\n");
}

fn aggregate(out: &mut BytesMut, tag: u8, items: &[Frame]) {
    header(out, tag, items.len());
    for item in items {
        encode_frame(item, out);
    }
}

fn pairs_of(out: &mut BytesMut, tag: u8, pairs: &[(Frame, Frame)]) {
    header(out, tag, pairs.len());
    for (key, value) in pairs {
        encode_frame(key, out);
        encode_frame(value, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn command_layout() {
        let mut out = BytesMut::new();
        encode_command(&mut out, &["SET", "key", ""]);
        assert_eq!(&out[..], b"*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n");
    }

    #[test]
    fn frame_layout() {
        let mut out = BytesMut::new();
        encode_frame(&Frame::Double(1.5), &mut out);
        encode_frame(&Frame::Double(f64::NEG_INFINITY), &mut out);
        encode_frame(&Frame::Double(f64::NAN), &mut out);
        encode_frame(&Frame::Null, &mut out);
        encode_frame(&Frame::Integer(-42), &mut out);
        assert_eq!(&out[..], b",1.5\r\n,-inf\r\n,nan\r\n$-1\r\n:-42\r\n");
    }
}
