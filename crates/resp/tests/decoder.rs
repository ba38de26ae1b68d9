//! The stateful decoder over a read buffer.

mod common;

use common::{bulk, encode};
use ferry_resp::{BytesMut, Decoder, Error, Frame, Limits, encode_command};

#[test]
fn two_and_a_half_frames() {
    let frames = [
        Frame::Array(vec![bulk(b"SET"), bulk(b"a"), bulk(b"1")]),
        Frame::Map(vec![(bulk(b"k"), Frame::Double(2.5))]),
        Frame::Array(vec![bulk(b"DEL"), bulk(b"a\r\nb")]),
    ];
    let wires: Vec<_> = frames.iter().map(encode).collect();
    let half = wires[2].len() / 2;
    let mut buf = BytesMut::new();
    buf.extend_from_slice(&wires[0]);
    buf.extend_from_slice(&wires[1]);
    buf.extend_from_slice(&wires[2][..half]);

    let mut decoder = Decoder::new(Limits::default());
    for (frame, wire) in frames.iter().zip(&wires).take(2) {
        let (got, raw) = decoder.decode(&mut buf).unwrap().unwrap();
        assert_eq!(&got, frame);
        assert_eq!(&raw, wire);
    }
    assert_eq!(decoder.decode(&mut buf), Ok(None));
    assert_eq!(&buf[..], &wires[2][..half]);

    buf.extend_from_slice(&wires[2][half..]);
    let (got, raw) = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(got, frames[2]);
    assert_eq!(raw, wires[2]);
    assert!(buf.is_empty());
    assert_eq!(decoder.decode(&mut buf), Ok(None));
}

#[test]
fn byte_at_a_time() {
    let mut wire = BytesMut::new();
    for i in 0..50u32 {
        encode_command(
            &mut wire,
            &[&b"INCRBY"[..], b"counter", i.to_string().as_bytes()],
        );
    }
    let mut decoder = Decoder::default();
    let mut buf = BytesMut::new();
    let mut seen = Vec::new();
    for &byte in wire.iter() {
        buf.extend_from_slice(&[byte]);
        while let Some((frame, _)) = decoder.decode(&mut buf).unwrap() {
            seen.push(frame.command_args().unwrap()[2].clone());
        }
    }
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(seen, want);
}

#[test]
fn errors_leave_the_buffer() {
    let mut buf = BytesMut::from(&b"+OK\r\n!x"[..]);
    let mut decoder = Decoder::new(Limits::default());
    assert!(decoder.decode(&mut buf).unwrap().is_some());
    assert_eq!(decoder.decode(&mut buf), Err(Error::BadLength));
    assert_eq!(&buf[..], b"!x");
}

#[test]
fn commands_come_as_their_arguments() {
    let mut buf = BytesMut::new();
    encode_command(&mut buf, &[&b"SET"[..], b"k", b"a\r\nb"]);
    buf.extend_from_slice(b"*2\r\n+PING\r\n$1\r\nx\r\n");
    buf.extend_from_slice(b":12\r\n*0\r\n*2\r\n$1\r\na\r\n:1\r\n*1\r\n$3\r\nDE");
    let mut decoder = Decoder::default();
    let mut next = || decoder.decode_command(&mut buf).unwrap();
    let (args, raw) = next().unwrap();
    assert_eq!(args.unwrap(), vec!["SET", "k", "a\r\nb"]);
    assert_eq!(&raw[..4], b"*3\r\n");
    assert_eq!(next().unwrap().0.unwrap(), vec!["PING", "x"]);
    // Anything else comes as the frame it is.
    assert_eq!(next().unwrap().0, Err(Frame::Integer(12)));
    assert_eq!(next().unwrap().0, Err(Frame::Array(vec![])));
    assert_eq!(
        next().unwrap().0,
        Err(Frame::Array(vec![bulk(b"a"), Frame::Integer(1)]))
    );
    assert_eq!(next(), None);
}
