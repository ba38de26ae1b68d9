//! Hostile bytes into ferry-rdb: as a snapshot (default thresholds, then tiny ones so that
//! every collection goes through chunk mode, then without value validation), as a DUMP
//! payload, and as one raw value (first byte the type, the rest its bytes). A value that
//! passes validation must decode.
#![no_main]

use bytes::Bytes;
use ferry_rdb::{Event, Kind, Options, Parser, TypeByte, decode_value, dump, validate_value};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| ferry_fuzz::capped(data.len(), || {
    let tiny = Options {
        big_value_bytes: 64,
        big_value_elements: 4,
        chunk_elements: 3,
        chunk_bytes: 32,
        huge_element_bytes: 16,
        verify_checksum: true,
        validate_values: true,
    };
    let unvalidated = Options {
        validate_values: false,
        ..Options::default()
    };
    for options in [Options::default(), tiny, unvalidated] {
        let Ok(mut parser) = Parser::new(data, options) else {
            break;
        };
        while let Some(Ok(event)) = parser.next() {
            if let Event::Key(r) = event {
                let v = parser.rdb_version();
                let valid = validate_value(r.meta.type_byte, &r.raw, v).is_ok();
                let decoded = decode_value(r.meta.type_byte, &r.raw, v);
                if valid && r.meta.type_byte.kind() != Some(Kind::Module) {
                    assert!(decoded.is_ok(), "validated but not decodable: {decoded:?}");
                }
            }
        }
        assert!(parser.bytes_read() <= data.len() as u64);
    }
    if let Ok((ty, raw, version)) = dump::parse_payload(data) {
        let _ = decode_value(ty, &Bytes::copy_from_slice(raw), version);
        let _ = dump::validate_payload(data);
    }
    if let [ty, raw @ ..] = data {
        let raw = Bytes::copy_from_slice(raw);
        for version in [12, 80] {
            let valid = validate_value(TypeByte(*ty), &raw, version).is_ok();
            let decoded = decode_value(TypeByte(*ty), &raw, version);
            if valid && TypeByte(*ty).kind() != Some(Kind::Module) {
                assert!(decoded.is_ok(), "validated but not decodable: {decoded:?}");
            }
        }
    }
}));
