//! encode → check → parse gives back the frame, for every variant.

mod common;

use common::{bulk, encode, samples};
use ferry_resp::{Bytes, Frame, Limits, check, parse};

#[test]
fn every_sample_round_trips() {
    for frame in samples() {
        let wire = encode(&frame);
        assert_eq!(
            check(&wire, &Limits::default()),
            Ok(Some(wire.len())),
            "{frame}"
        );
        assert_eq!(parse(&wire).as_ref(), Ok(&frame), "{frame}");
    }
}

#[test]
fn nan_round_trips_as_nan() {
    let wire = encode(&Frame::Double(f64::NAN));
    assert_eq!(&wire[..], b",nan\r\n");
    assert!(matches!(parse(&wire), Ok(Frame::Double(d)) if d.is_nan()));
}

#[test]
fn check_finds_the_end_of_the_first_frame() {
    let one = encode(&Frame::Array(vec![bulk(b"a"), Frame::Integer(1)]));
    let mut two = one.to_vec();
    two.extend_from_slice(b"+next\r\n");
    assert_eq!(check(&two, &Limits::default()), Ok(Some(one.len())));
}

#[test]
fn wire_forms_from_the_specs() {
    let cases: &[(&[u8], Frame)] = &[
        (b"$-1\r\n", Frame::Null),
        (b"*-1\r\n", Frame::Null),
        (b"_\r\n", Frame::Null),
        (b",1.23\r\n", Frame::Double(1.23)),
        (b",10\r\n", Frame::Double(10.0)),
        (b",-1.5E-3\r\n", Frame::Double(-0.0015)),
        (b",1e10\r\n", Frame::Double(1e10)),
        (b",inf\r\n", Frame::Double(f64::INFINITY)),
        (b",-inf\r\n", Frame::Double(f64::NEG_INFINITY)),
        (b"(+42\r\n", Frame::BigNumber(Bytes::from_static(b"+42"))),
        (
            b"+with\nlf\r\n",
            Frame::Simple(Bytes::from_static(b"with\nlf")),
        ),
        (
            b"=15\r\ntxt:Some string\r\n",
            Frame::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"Some string"),
            },
        ),
        (
            b"*2\r\n+a\r\n$-1\r\n",
            Frame::Array(vec![common::simple("a"), Frame::Null]),
        ),
    ];
    for (wire, want) in cases {
        let raw = Bytes::from_static(wire);
        assert_eq!(parse(&raw).as_ref(), Ok(want), "{}", raw.escape_ascii());
    }
}

#[test]
fn bulk_payloads_are_slices_of_the_input() {
    let wire = encode(&Frame::Array(vec![
        bulk(b"SET"),
        bulk(b"key"),
        bulk(b"value"),
    ]));
    let range = wire.as_ptr_range();
    let args = parse(&wire).unwrap().command_args().unwrap();
    for arg in args {
        assert!(range.contains(&arg.as_ptr()), "payload was copied");
    }
}
