//! Hostile bytes into ferry-resp, under default and tiny limits. Beyond "no panic":
//! a frame `check` accepts is one `parse` accepts; the decoder gives the same frames
//! whether the bytes come at once or in two pieces; re-encoding a frame is stable.
#![no_main]

use ferry_resp::{Bytes, BytesMut, Decoder, Limits, check, encode_frame, parse};
use libfuzzer_sys::fuzz_target;

/// Runs a decoder over `data` fed in two pieces split at `at`; returns the raw frames and
/// whether it stopped on an error.
fn decode_all(data: &[u8], at: usize, limits: &Limits) -> (Vec<Bytes>, bool) {
    let mut decoder = Decoder::new(limits.clone());
    let mut buf = BytesMut::from(&data[..at]);
    let mut rest = Some(&data[at..]);
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some((frame, raw))) => {
                let mut once = BytesMut::new();
                encode_frame(&frame, &mut once);
                let again = parse(&once.clone().freeze()).expect("re-encoded frame parses");
                let mut twice = BytesMut::new();
                encode_frame(&again, &mut twice);
                assert_eq!(once, twice, "re-encoding is not stable");
                let _ = frame.to_string();
                frames.push(raw);
            }
            Ok(None) => match rest.take() {
                Some(more) => buf.extend_from_slice(more),
                None => return (frames, false),
            },
            Err(_) => return (frames, true),
        }
    }
}

fuzz_target!(|data: &[u8]| ferry_fuzz::capped(data.len(), || {
    let tiny = Limits {
        max_bulk: 16,
        max_elements: 4,
        max_depth: 3,
        max_line: 16,
    };
    for limits in [Limits::default(), tiny] {
        if let Ok(Some(n)) = check(data, &limits) {
            assert!(n <= data.len());
            parse(&Bytes::copy_from_slice(&data[..n])).expect("parse accepts what check accepts");
        }
        let whole = decode_all(data, data.len(), &limits);
        let split = decode_all(data, data.len() / 3, &limits);
        assert_eq!(whole, split, "frames depend on how the bytes arrive");
    }
    let _ = parse(&Bytes::copy_from_slice(data));
}));
