//! Hostile bytes into ferry-rdb: as a snapshot (default thresholds, then tiny ones so that
//! every collection goes through chunk mode), as a DUMP payload, and as one raw value
//! (first byte the type, the rest its bytes).
#![no_main]

use bytes::Bytes;
use ferry_rdb::{Event, Options, Parser, TypeByte, decode_value, dump};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_fuzz::capped(data.len(), || {
    let tiny = Options {
        big_value_bytes: 64,
        big_value_elements: 4,
        chunk_elements: 3,
        chunk_bytes: 32,
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
}));
