//! Every strict prefix of a valid frame is "incomplete", never an error, never a panic.

mod common;

use common::{encode, samples};
use ferry_resp::{BytesMut, Decoder, Error, Limits, check, parse};

#[test]
fn every_strict_prefix_is_incomplete() {
    for frame in samples() {
        let wire = encode(&frame);
        for cut in 0..wire.len() {
            let prefix = &wire[..cut];
            assert_eq!(
                check(prefix, &Limits::default()),
                Ok(None),
                "{frame} cut at {cut}"
            );
            assert_eq!(
                parse(&wire.slice(..cut)),
                Err(Error::Incomplete),
                "{frame} cut at {cut}"
            );
        }
    }
}

#[test]
fn decoder_leaves_a_prefix_untouched() {
    let mut decoder = Decoder::new(Limits::default());
    for frame in samples() {
        let wire = encode(&frame);
        for cut in 0..wire.len() {
            let mut buf = BytesMut::from(&wire[..cut]);
            assert_eq!(decoder.decode(&mut buf), Ok(None));
            assert_eq!(&buf[..], &wire[..cut]);
        }
    }
}

#[test]
fn a_bulk_still_arriving_is_incomplete_whatever_its_size() {
    // 500 MiB announced, 3 bytes present: no rescan, no allocation, just "wait".
    assert_eq!(check(b"$524288000\r\nabc", &Limits::default()), Ok(None));
}
