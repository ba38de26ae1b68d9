//! Inputs that once broke the parser, kept as `tests/data/bugNNNN.bin` and replayed.
//!
//! Every file goes through the same calls as the `rdb_parser` fuzz target (`fuzz/`): as a
//! snapshot with default and with tiny big-value thresholds, as a DUMP payload, and as one
//! raw value (first byte the type, the rest its bytes). Each bug also has its own test that
//! pins down the outcome.

use bytes::Bytes;
use ferry_rdb::{ErrorKind, Event, Options, Parser, TypeByte, decode_value, dump};

fn data(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the fuzz target does with one input; must not panic.
fn exercise(data: &[u8]) {
    let tiny = Options {
        big_value_bytes: 64,
        big_value_elements: 4,
        chunk_elements: 3,
        chunk_bytes: 32,
        huge_element_bytes: 16,
        verify_checksum: true,
        validate_values: true,
    };
    for options in [Options::default(), tiny] {
        let Ok(mut parser) = Parser::new(data, options) else {
            break;
        };
        while let Some(Ok(event)) = parser.next() {
            if let Event::Key(r) = event {
                let _ = decode_value(r.meta.type_byte, &r.raw, parser.rdb_version());
            }
        }
        assert!(parser.bytes_read() <= data.len() as u64);
    }
    if let Ok((ty, raw, version)) = dump::parse_payload(data) {
        let _ = decode_value(ty, &Bytes::copy_from_slice(raw), version);
    }
    if let [ty, raw @ ..] = data {
        let raw = Bytes::copy_from_slice(raw);
        for version in [12, 80] {
            let _ = decode_value(TypeByte(*ty), &raw, version);
        }
    }
}

/// A raw-value input (type byte, then the value's bytes) decoded as RDB 12.
fn decode(data: &[u8]) -> Result<usize, ferry_rdb::Error> {
    decode_value(TypeByte(data[0]), &Bytes::copy_from_slice(&data[1..]), 12).map(|c| c.len())
}

#[test]
fn every_kept_input_replays_without_panic() {
    let dir = format!("{}/tests/data", env!("CARGO_MANIFEST_DIR"));
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).expect("tests/data") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "bin") {
            exercise(&std::fs::read(&path).expect("read"));
            n += 1;
        }
    }
    assert!(n > 0, "no inputs in {dir}");
}

/// A stream node whose master entry claims 100 fields in a 149-byte listpack with room for
/// 68 more elements: rejected at the count, before anything is reserved for the fields (the
/// count used to be held only to the whole node's size, so a large node could reserve
/// 64 bytes per byte of node). Since the node is validated whole before it is decoded (as
/// Redis's `streamValidateListpackIntegrity` does), it fails there, before any field is read.
#[test]
fn bug0001_stream_field_count_is_held_to_the_bytes_left() {
    let e = decode(&data("bug0001.bin")).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Corrupt("stream node ends inside an entry")
    );
}
