//! Valkey 9 snapshots (`VALKEY080`), as a cluster node writes them: a slot import in
//! progress (opcode 0xF3), slot size hints (0xF4), and a hash with field expiries (type 22).
//! No Valkey 9 server is at hand, so the file is built here byte by byte from the layout in
//! Valkey's sources (read for facts): `src/rdb.h` (magic `VALKEY` + 3 digits, RDB 80 in
//! 9.0 and 9.1, opcodes 243 `RDB_OPCODE_SLOT_IMPORT` and 244 `RDB_OPCODE_SLOT_INFO`,
//! `RDB_TYPE_HASH_2` 22), `src/cluster_migrateslots.c` `clusterRDBSaveSlotImports` (the
//! job's 40-byte name as a string, the range count, then each range's first and last slot
//! as lengths), `src/rdb.c` `rdbLoadRioWithLoadingCtx` (slot info: slot, keys, expires as
//! lengths) and the `RDB_TYPE_HASH_2` save path (per field: field, value, 8-byte LE expiry,
//! -1 for none). The development branch's RDB 81 adds type 23 (a "path hash") and opcode
//! 242 (a command written inline by a forkless save): both are refused by name.
//!
//! The file is kept as `tests/data/valkey9-cluster-node.rdb` for ferry's own tests; rewrite
//! it with `FERRY_WRITE_CORRUPT_FIXTURES=1`.

use std::path::PathBuf;

use bytes::Bytes;
use ferry_rdb::{Chunk, ErrorKind, Event, HashField, Options, Parser, crc64, decode_value};

fn len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    len(out, s.len() as u64);
    out.extend_from_slice(s);
}

const JOB: &[u8; 40] = b"2c1f4e0a9b8d7c6e5f4a3b2c1d0e9f8a7b6c5d4e";
/// A field expiry far in the future (2100-01-01), so a loader keeps the field.
const FIELD_EXPIRY: i64 = 4_102_444_800_000;
const KEY_EXPIRY: i64 = 4_102_444_800_000;

/// The snapshot body after the 9-byte magic, up to and including EOF (no CRC).
fn body() -> Vec<u8> {
    let mut f = Vec::new();
    for (k, v) in [(&b"valkey-ver"[..], &b"9.0.0"[..]), (b"redis-bits", b"64")] {
        f.push(0xFA);
        string(&mut f, k);
        string(&mut f, v);
    }
    // A slot import in progress: slots 100-200 and 300-300.
    f.push(0xF3);
    string(&mut f, JOB);
    len(&mut f, 2);
    for n in [100, 200, 300, 300] {
        len(&mut f, n);
    }
    f.push(0xFE);
    len(&mut f, 0);
    f.push(0xFB);
    len(&mut f, 3);
    len(&mut f, 1);
    f.push(0xF4);
    for n in [5, 3, 1] {
        len(&mut f, n);
    }
    // A string with an expiry.
    f.push(0xFC);
    f.extend_from_slice(&KEY_EXPIRY.to_le_bytes());
    f.push(0);
    string(&mut f, b"{a}str");
    string(&mut f, b"value");
    // A Valkey hash with one field that expires and one that does not.
    f.push(22);
    string(&mut f, b"{a}hash");
    len(&mut f, 2);
    string(&mut f, b"f1");
    string(&mut f, b"v1");
    f.extend_from_slice(&(-1i64).to_le_bytes());
    string(&mut f, b"f2");
    string(&mut f, b"v2");
    f.extend_from_slice(&FIELD_EXPIRY.to_le_bytes());
    // A list: one quicklist node holding the listpack ["a", "b"].
    f.push(18);
    string(&mut f, b"{a}list");
    len(&mut f, 1);
    len(&mut f, 2);
    let lp = [11, 0, 0, 0, 2, 0, 0x81, b'a', 2, 0x81, b'b', 2, 0xFF];
    let mut lp = lp.to_vec();
    lp[0] = lp.len() as u8;
    string(&mut f, &lp);
    f.push(0xFF);
    f
}

fn file(magic: &[u8; 9], body: &[u8]) -> Vec<u8> {
    let mut f = magic.to_vec();
    f.extend_from_slice(body);
    let crc = crc64(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

fn parse(data: &[u8]) -> Result<(u16, Vec<Event>), ferry_rdb::Error> {
    let mut p = Parser::new(data, Options::default())?;
    let mut out = Vec::new();
    while let Some(e) = p.next_event()? {
        out.push(e);
    }
    Ok((p.rdb_version(), out))
}

#[test]
fn cluster_node_snapshot_with_a_slot_import() {
    let f = file(b"VALKEY080", &body());
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/valkey9-cluster-node.rdb");
    if std::env::var_os("FERRY_WRITE_CORRUPT_FIXTURES").is_some() {
        std::fs::write(&path, &f).unwrap();
    }
    assert_eq!(
        std::fs::read(&path).unwrap(),
        f,
        "the kept file differs from this build"
    );

    let (version, events) = parse(&f).unwrap();
    assert_eq!(version, 80);
    let import = events.iter().find_map(|e| match e {
        Event::SlotImport { job, ranges } => Some((job.clone(), ranges.clone())),
        _ => None,
    });
    assert_eq!(
        import,
        Some((Bytes::from_static(JOB), vec![(100, 200), (300, 300)]))
    );
    assert!(events.iter().any(|e| matches!(
        e,
        Event::SlotInfo {
            slot: 5,
            keys: 3,
            expires: 1
        }
    )));
    let keys: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Key(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 3);
    assert_eq!(&keys[0].meta.key[..], b"{a}str");
    assert_eq!(keys[0].meta.expire_ms, Some(KEY_EXPIRY));
    let hash = decode_value(keys[1].meta.type_byte, &keys[1].raw, version).unwrap();
    assert_eq!(
        hash,
        vec![Chunk::HashFields(vec![
            HashField {
                field: Bytes::from_static(b"f1"),
                value: Bytes::from_static(b"v1"),
                expire_ms: None,
            },
            HashField {
                field: Bytes::from_static(b"f2"),
                value: Bytes::from_static(b"v2"),
                expire_ms: Some(FIELD_EXPIRY),
            },
        ])]
    );
    let list = decode_value(keys[2].meta.type_byte, &keys[2].raw, version).unwrap();
    assert_eq!(
        list,
        vec![Chunk::ListItems(vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b")
        ])]
    );
    assert!(matches!(events.last(), Some(Event::End { .. })));

    // The same bytes under Valkey's development RDB 81 read the same.
    let (version, events81) = parse(&file(b"VALKEY081", &body())).unwrap();
    assert_eq!(version, 81);
    assert_eq!(events81.len(), events.len());
}

#[test]
fn what_valkey_files_cannot_hold_is_named() {
    let b = body();
    let key_at = b.windows(9).position(|w| w == b"\x16\x07{a}hash").unwrap();
    // Type 23 is Redis's listpack hash with TTLs, but not in a Valkey file: in RDB 81 it is
    // Valkey's path hash, which this parser does not read; in RDB 80 it is nothing.
    let mut t23 = b.clone();
    t23[key_at] = 23;
    let e = parse(&file(b"VALKEY081", &t23)).unwrap_err();
    assert_eq!(
        e.kind(),
        ErrorKind::Unsupported("Valkey path hash (type 23 of RDB 81)"),
        "{e}"
    );
    assert_eq!(e.offset(), 9 + key_at as u64);
    for t in [23, 24, 25, 26] {
        let mut x = b.clone();
        x[key_at] = t;
        let e = parse(&file(b"VALKEY080", &x)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::UnknownType(t), "{e}");
    }
    // A command written inline by a forkless save (RDB 81, opcode 242).
    let mut inline = b.clone();
    inline.insert(key_at, 0xF2);
    let e = parse(&file(b"VALKEY081", &inline)).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Unsupported(w) if w.contains("forkless save")),
        "{e}"
    );
    assert!(e.to_string().contains("at byte"), "{e}");
    // In RDB 80 the same byte is no opcode at all.
    let e = parse(&file(b"VALKEY080", &inline)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnknownType(0xF2), "{e}");
    // A later version is refused by number.
    let e = parse(&file(b"VALKEY082", &b)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::UnsupportedVersion(82), "{e}");
    // A slot import naming more ranges than there are slots.
    let imp = b
        .windows(1 + 41)
        .position(|w| w[0] == 0xF3 && &w[2..] == JOB)
        .unwrap();
    let mut many = b[..imp + 42].to_vec();
    len(&mut many, 20_000);
    let e = parse(&file(b"VALKEY080", &many)).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Corrupt(_)), "{e}");
}
