//! Frames and helpers shared by the integration tests.
#![allow(dead_code)]

use ferry_resp::{Bytes, BytesMut, Frame, encode_frame};

pub fn bulk(s: &[u8]) -> Frame {
    Frame::Bulk(Bytes::copy_from_slice(s))
}

pub fn simple(s: &str) -> Frame {
    Frame::Simple(Bytes::copy_from_slice(s.as_bytes()))
}

pub fn encode(frame: &Frame) -> Bytes {
    let mut out = BytesMut::new();
    encode_frame(frame, &mut out);
    out.freeze()
}

/// One frame of every variant, plus nested and awkward ones.
pub fn samples() -> Vec<Frame> {
    let command = Frame::Array(vec![bulk(b"SET"), bulk(b"key"), bulk(b"va\r\nlue\x00")]);
    vec![
        simple("OK"),
        simple(""),
        Frame::Error(Bytes::from_static(b"ERR unknown command")),
        Frame::Integer(0),
        Frame::Integer(-5),
        Frame::Integer(i64::MAX),
        Frame::Integer(i64::MIN),
        bulk(b""),
        bulk(b"foo"),
        bulk(b"\r\n\r\n"),
        bulk(&[0, 255, 13, 10, 36]),
        Frame::Null,
        Frame::Array(vec![]),
        command.clone(),
        Frame::Double(1.5),
        Frame::Double(-0.25),
        Frame::Double(1e300),
        Frame::Double(3e-12),
        Frame::Double(f64::INFINITY),
        Frame::Double(f64::NEG_INFINITY),
        Frame::Boolean(true),
        Frame::Boolean(false),
        Frame::BigNumber(Bytes::from_static(
            b"3492890328409238509324850943850943825024385",
        )),
        Frame::BigNumber(Bytes::from_static(b"-12345678901234567890123")),
        Frame::BulkError(Bytes::from_static(b"SYNTAX invalid\r\nsyntax")),
        Frame::Verbatim {
            format: *b"txt",
            text: Bytes::from_static(b"Some string\r\n"),
        },
        Frame::Verbatim {
            format: *b"mkd",
            text: Bytes::new(),
        },
        Frame::Map(vec![]),
        Frame::Map(vec![
            (simple("first"), Frame::Integer(1)),
            (
                bulk(b"second"),
                Frame::Array(vec![Frame::Null, Frame::Boolean(false)]),
            ),
        ]),
        Frame::Set(vec![bulk(b"a"), Frame::Integer(2), Frame::Double(3.0)]),
        Frame::Push(vec![bulk(b"message"), bulk(b"chan"), bulk(b"hi")]),
        Frame::Attribute {
            attrs: vec![(simple("ttl"), Frame::Integer(3600))],
            frame: Box::new(command.clone()),
        },
        Frame::Array(vec![
            Frame::Array(vec![
                Frame::Array(vec![Frame::Integer(1), bulk(b"x")]),
                Frame::Null,
            ]),
            Frame::Map(vec![(
                Frame::Set(vec![simple("k")]),
                Frame::Attribute {
                    attrs: vec![],
                    frame: Box::new(Frame::Push(vec![Frame::Integer(9)])),
                },
            )]),
            command,
        ]),
    ]
}
