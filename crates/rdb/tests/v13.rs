//! RDB 13 (Redis 8.6): a stream of type 26 (STREAM_LISTPACKS_4, with IDMP state) and a key
//! with module key metadata (opcode 0xF3, KEY_META), built byte by byte since no 8.6 server is
//! at hand.
//!
//! Sources for the layout:
//! - redis/librdb PR #93 "Support RDB v13" (head 5b946b9): `src/lib/defines.h` (type 26,
//!   opcode 243), `src/lib/parserRaw.c` `elementRawStreamLP` states `ST_LOAD_IDMP_*` and
//!   `elementRawKeyMeta`, `src/lib/parser.c` `elementStreamLP`; `src/redisver.h` (8.6 -> 13).
//! - Redis 8.6 `src/keymeta.c` `rdbSaveKeyMetadata` / `rdbLoadKeyMetadata` (class spec is 4 raw
//!   bytes, then the class's module-opcode value, then module EOF).
//! - Redis `src/t_stream.c` for the listpack node layout (as in `value/stream.rs`).

use bytes::Bytes;
use ferry_rdb::{
    Chunk, Consumer, ErrorKind, Event, IdmpEntry, Options, Parser, PendingEntry, StreamEntry,
    StreamGroup, StreamId, StreamIdmp, StreamMeta, TypeByte, crc64, decode_value, dump,
};

/// RDB length encoding (rdbSaveLen): 6-bit, 14-bit, 32-bit or 64-bit big-endian.
fn len(out: &mut Vec<u8>, n: u64) {
    if n < 1 << 6 {
        out.push(n as u8);
    } else if n < 1 << 14 {
        out.push(0x40 | (n >> 8) as u8);
        out.push(n as u8);
    } else if n <= u64::from(u32::MAX) {
        out.push(0x80);
        out.extend_from_slice(&(n as u32).to_be_bytes());
    } else {
        out.push(0x81);
        out.extend_from_slice(&n.to_be_bytes());
    }
}

/// A plain RDB string: length, bytes.
fn string(out: &mut Vec<u8>, s: &[u8]) {
    len(out, s.len() as u64);
    out.extend_from_slice(s);
}

/// A stream id as the 16-byte big-endian form (radix-tree keys, PEL entries).
fn raw_id(out: &mut Vec<u8>, ms: u64, seq: u64) {
    out.extend_from_slice(&ms.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
}

/// A listpack element for these tests: small unsigned ints (7-bit form) or short strings
/// (6-bit form), each followed by its one-byte backlen.
enum Lp<'a> {
    Int(u8),
    Str(&'a [u8]),
}

fn listpack(elems: &[Lp<'_>]) -> Vec<u8> {
    let mut body = Vec::new();
    for e in elems {
        match e {
            Lp::Int(i) => {
                assert!(*i < 128);
                body.push(*i);
                body.push(1);
            }
            Lp::Str(s) => {
                assert!(s.len() < 63);
                body.push(0x80 | s.len() as u8);
                body.extend_from_slice(s);
                body.push(1 + s.len() as u8);
            }
        }
    }
    let total = 6 + body.len() + 1;
    let mut lp = Vec::with_capacity(total);
    lp.extend_from_slice(&(total as u32).to_le_bytes());
    lp.extend_from_slice(&(elems.len() as u16).to_le_bytes());
    lp.extend_from_slice(&body);
    lp.push(0xFF);
    lp
}

/// Entry ids' ms, as Redis 8.6 writes (needs the 64-bit length form).
const MS: u64 = 1_771_945_454_291;
const DELIVERED_MS: i64 = 1_771_945_454_300;

/// The value of a type-26 stream: two entries, one group with one consumer and one pending
/// entry, and IDMP state with two producers (one with two iids, one with none).
fn stream_value() -> Vec<u8> {
    let mut v = Vec::new();
    // Listpack nodes (as type 21): count, then per node its master id and listpack.
    len(&mut v, 1);
    let mut key = Vec::new();
    raw_id(&mut key, MS, 0);
    string(&mut v, &key);
    // t_stream.c: master entry `count deleted num-fields field... 0`, then per entry `flags
    // ms-diff seq-diff value... lp-count` (flags 2 = SAMEFIELDS).
    let lp = listpack(&[
        Lp::Int(2),
        Lp::Int(0),
        Lp::Int(1),
        Lp::Str(b"f"),
        Lp::Int(0),
        Lp::Int(2),
        Lp::Int(0),
        Lp::Int(0),
        Lp::Str(b"a"),
        Lp::Int(4),
        Lp::Int(2),
        Lp::Int(0),
        Lp::Int(1),
        Lp::Str(b"b"),
        Lp::Int(4),
    ]);
    string(&mut v, &lp);
    // Stream metadata (types 19+): length, last id, first id, max deleted id, entries added.
    len(&mut v, 2);
    len(&mut v, MS);
    len(&mut v, 1);
    len(&mut v, MS);
    len(&mut v, 0);
    len(&mut v, 0);
    len(&mut v, 0);
    len(&mut v, 2);
    // Groups: name, last id, entries read (19+), PEL (raw id, delivery ms LE, count),
    // consumers (name, seen ms LE, active ms LE (21+), own PEL of raw ids).
    len(&mut v, 1);
    string(&mut v, b"g1");
    len(&mut v, MS);
    len(&mut v, 0);
    len(&mut v, 1);
    len(&mut v, 1);
    raw_id(&mut v, MS, 0);
    v.extend_from_slice(&DELIVERED_MS.to_le_bytes());
    len(&mut v, 3);
    len(&mut v, 1);
    string(&mut v, b"c1");
    v.extend_from_slice(&DELIVERED_MS.to_le_bytes());
    v.extend_from_slice(&(DELIVERED_MS + 1).to_le_bytes());
    len(&mut v, 1);
    raw_id(&mut v, MS, 0);
    // IDMP (type 26 only; librdb parserRaw.c ST_LOAD_IDMP_CONFIG): duration, max entries,
    // producer count.
    len(&mut v, 7200);
    len(&mut v, 1000);
    len(&mut v, 2);
    // ST_LOAD_IDMP_NEXT_PRODUCER / _PRODUCER_RETURN: pid string, iid count.
    string(&mut v, b"p1");
    len(&mut v, 2);
    // ST_LOAD_IDMP_NEXT_ENTRY / _ENTRY_IID_RETURN: iid string, entry id as ms, seq lengths.
    string(&mut v, b"iid-1");
    len(&mut v, MS);
    len(&mut v, 0);
    string(&mut v, b"iid-2");
    len(&mut v, MS);
    len(&mut v, 1);
    string(&mut v, b"p2");
    len(&mut v, 0);
    // ST_LOAD_IDMP_STATS: iids added, iids duplicates.
    len(&mut v, 3);
    len(&mut v, 1);
    v
}

/// KEY_META (keymeta.c rdbSaveKeyMetadata): opcode 243, class count, per class a 4-byte class
/// spec (opaque here) then module opcodes up to EOF (0). Class 1 saves a UINT and a STRING,
/// class 2 a SINT, a FLOAT and a DOUBLE.
fn key_metadata() -> Vec<u8> {
    let mut m = vec![0xF3];
    len(&mut m, 2);
    m.extend_from_slice(b"KMT0");
    len(&mut m, 2); // RDB_MODULE_OPCODE_UINT
    len(&mut m, 42);
    len(&mut m, 5); // RDB_MODULE_OPCODE_STRING
    string(&mut m, b"meta0");
    len(&mut m, 0); // RDB_MODULE_OPCODE_EOF
    m.extend_from_slice(&[0xFF, 0x00, 0xF3, 0x01]);
    len(&mut m, 1); // RDB_MODULE_OPCODE_SINT
    len(&mut m, 7);
    len(&mut m, 3); // RDB_MODULE_OPCODE_FLOAT
    m.extend_from_slice(&1.5f32.to_le_bytes());
    len(&mut m, 4); // RDB_MODULE_OPCODE_DOUBLE
    m.extend_from_slice(&2.5f64.to_le_bytes());
    len(&mut m, 0);
    m
}

const EXPIRE_MS: i64 = 4_000_000_000_000;

/// A whole RDB 13 file: aux fields, db 0 with the stream, a string with an expiry and key
/// metadata (`[expiry] [META] TYPE KEY VALUE`), then EOF and the CRC64.
fn file() -> Vec<u8> {
    let mut f = b"REDIS0013".to_vec();
    f.push(0xFA);
    string(&mut f, b"redis-ver");
    string(&mut f, b"8.6.0");
    f.push(0xFA);
    string(&mut f, b"redis-bits");
    f.extend_from_slice(&[0xC0, 64]); // 8-bit integer string
    f.extend_from_slice(&[0xFE, 0x00, 0xFB, 0x02, 0x01]);
    f.push(26);
    string(&mut f, b"st");
    f.extend_from_slice(&stream_value());
    f.push(0xFC);
    f.extend_from_slice(&EXPIRE_MS.to_le_bytes());
    f.extend_from_slice(&key_metadata());
    f.push(0);
    string(&mut f, b"s");
    string(&mut f, b"v");
    f.push(0xFF);
    let crc = crc64(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    f
}

fn parse_all(data: &[u8], options: Options) -> Result<(u16, Vec<Event>), ferry_rdb::Error> {
    let mut p = Parser::new(data, options)?;
    let mut events = Vec::new();
    while let Some(ev) = p.next_event()? {
        events.push(ev);
    }
    Ok((p.rdb_version(), events))
}

fn id(ms: u64, seq: u64) -> StreamId {
    StreamId { ms, seq }
}

fn expected_stream_chunks() -> Vec<Chunk> {
    let b = Bytes::from_static;
    vec![
        Chunk::StreamEntries(vec![
            StreamEntry {
                id: id(MS, 0),
                fields: vec![(b(b"f"), b(b"a"))],
            },
            StreamEntry {
                id: id(MS, 1),
                fields: vec![(b(b"f"), b(b"b"))],
            },
        ]),
        Chunk::StreamMeta(StreamMeta {
            length: 2,
            last_id: id(MS, 1),
            first_id: Some(id(MS, 0)),
            max_deleted_id: Some(id(0, 0)),
            entries_added: Some(2),
        }),
        Chunk::StreamGroup(StreamGroup {
            name: b(b"g1"),
            last_id: id(MS, 0),
            entries_read: Some(1),
            consumers: vec![Consumer {
                name: b(b"c1"),
                seen_time_ms: DELIVERED_MS,
                active_time_ms: Some(DELIVERED_MS + 1),
            }],
        }),
        Chunk::StreamPending {
            group: b(b"g1"),
            entries: vec![PendingEntry {
                id: id(MS, 0),
                delivery_time_ms: DELIVERED_MS,
                delivery_count: 3,
                consumer: b(b"c1"),
            }],
        },
        Chunk::StreamIdmp(StreamIdmp {
            duration_s: 7200,
            max_size: 1000,
            producers: 2,
        }),
        Chunk::StreamIdmpEntries {
            producer: b(b"p1"),
            entries: vec![
                IdmpEntry {
                    iid: b(b"iid-1"),
                    id: id(MS, 0),
                },
                IdmpEntry {
                    iid: b(b"iid-2"),
                    id: id(MS, 1),
                },
            ],
        },
        Chunk::StreamIdmpEntries {
            producer: b(b"p2"),
            entries: vec![],
        },
        Chunk::StreamIdmpCounters {
            iids_added: 3,
            iids_duplicates: 1,
        },
    ]
}

#[test]
fn rdb13_parses_field_by_field() {
    let (version, events) = parse_all(&file(), Options::default()).unwrap();
    assert_eq!(version, 13);
    assert_eq!(events.len(), 7, "{events:#?}");
    match &events[0] {
        Event::Aux { key, value } => {
            assert_eq!((&key[..], &value[..]), (&b"redis-ver"[..], &b"8.6.0"[..]))
        }
        e => panic!("{e:?}"),
    }
    match &events[1] {
        Event::Aux { key, value } => {
            assert_eq!((&key[..], &value[..]), (&b"redis-bits"[..], &b"64"[..]))
        }
        e => panic!("{e:?}"),
    }
    assert!(matches!(events[2], Event::SelectDb(0)));
    assert!(matches!(
        events[3],
        Event::ResizeDb {
            db_size: 2,
            expires_size: 1
        }
    ));

    let Event::Key(st) = &events[4] else {
        panic!("{:?}", events[4])
    };
    assert_eq!(st.meta.db, 0);
    assert_eq!(&st.meta.key[..], b"st");
    assert_eq!(st.meta.type_byte, TypeByte::STREAM_LISTPACKS_4);
    assert_eq!(st.meta.type_byte.kind(), Some(ferry_rdb::Kind::Stream));
    assert_eq!(st.meta.expire_ms, None);
    assert_eq!(st.meta.key_metadata, None);
    // The raw capture is the value exactly, IDMP tail included.
    assert_eq!(&st.raw[..], &stream_value()[..]);
    assert_eq!(
        decode_value(st.meta.type_byte, &st.raw, 13).unwrap(),
        expected_stream_chunks()
    );

    let Event::Key(s) = &events[5] else {
        panic!("{:?}", events[5])
    };
    assert_eq!(&s.meta.key[..], b"s");
    assert_eq!(s.meta.type_byte, TypeByte::STRING);
    assert_eq!(s.meta.expire_ms, Some(EXPIRE_MS));
    assert_eq!(s.meta.key_metadata.as_deref(), Some(&key_metadata()[..]));
    assert_eq!(&s.raw[..], b"\x01v");

    let Event::End { checksum } = events[6] else {
        panic!("{:?}", events[6])
    };
    let f = file();
    assert_eq!(
        checksum,
        Some(u64::from_le_bytes(f[f.len() - 8..].try_into().unwrap()))
    );
}

#[test]
fn key_metadata_leads_the_dump_payload() {
    let (_, events) = parse_all(&file(), Options::default()).unwrap();
    let Some(Event::Key(s)) = events
        .iter()
        .find(|e| matches!(e, Event::Key(r) if &r.meta.key[..] == b"s"))
    else {
        panic!("no key s")
    };
    let meta = s.meta.key_metadata.as_deref().unwrap();
    let p = dump::payload_with_meta(meta, s.meta.type_byte, &s.raw, 13);
    // Redis 8.6 DUMP: [KEY_META] TYPE VALUE, version 13 LE, CRC64 LE of all before it.
    let mut want = meta.to_vec();
    want.push(0);
    want.extend_from_slice(b"\x01v");
    want.extend_from_slice(&13u16.to_le_bytes());
    let crc = crc64(&want);
    want.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(&p[..], &want[..]);
    assert_eq!(
        dump::payload_with_meta(&[], TypeByte::STRING, b"\x01v", 13),
        dump::payload(TypeByte::STRING, b"\x01v", 13)
    );
    // Splitting such a payload would have to drop the metadata: refused, not silent.
    assert!(matches!(
        dump::parse_payload(&p).unwrap_err().kind(),
        ErrorKind::Unsupported(_)
    ));
}

#[test]
fn big_values_carry_the_same_chunks_and_key_metadata() {
    let opts = Options {
        big_value_bytes: 0,
        ..Options::default()
    };
    let (_, events) = parse_all(&file(), opts).unwrap();
    let mut stream = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    let mut string_meta = None;
    for e in events {
        match e {
            Event::BigValueStart(m) => {
                if &m.key[..] == b"s" {
                    string_meta = m.key_metadata.clone();
                }
                cur = Some(m.key.to_vec());
            }
            Event::BigValueChunk(c) if cur.as_deref() == Some(b"st") => stream.push(c),
            Event::BigValueEnd => cur = None,
            Event::Key(r) => panic!("not big: {:?}", r.meta.key),
            _ => {}
        }
    }
    assert_eq!(stream, expected_stream_chunks());
    assert_eq!(string_meta.as_deref(), Some(&key_metadata()[..]));

    // One element per chunk: the producer with two iids comes as two chunks.
    let opts = Options {
        big_value_bytes: 0,
        chunk_elements: 1,
        ..Options::default()
    };
    let (_, events) = parse_all(&file(), opts).unwrap();
    let idmp: Vec<_> = events
        .into_iter()
        .filter_map(|e| match e {
            Event::BigValueChunk(Chunk::StreamIdmpEntries { producer, entries }) => {
                Some((producer, entries.len()))
            }
            _ => None,
        })
        .collect();
    let b = Bytes::from_static;
    assert_eq!(idmp, vec![(b(b"p1"), 1), (b(b"p1"), 1), (b(b"p2"), 0)]);
}

#[test]
fn iids_count_toward_the_element_threshold() {
    // The node's 15 listpack elements (its header count) + 1 pending entry + 2 iids = 18:
    // without the iids 17 would not be over.
    for (limit, big) in [(18, false), (17, true)] {
        let opts = Options {
            big_value_elements: limit,
            ..Options::default()
        };
        let (_, events) = parse_all(&file(), opts).unwrap();
        let st_big = events
            .iter()
            .any(|e| matches!(e, Event::BigValueStart(m) if &m.key[..] == b"st"));
        assert_eq!(st_big, big, "limit {limit}");
    }
}

#[test]
fn every_prefix_fails_cleanly() {
    let data = file();
    for opts in [
        Options::default(),
        Options {
            big_value_elements: 2,
            big_value_bytes: 16,
            ..Options::default()
        },
    ] {
        for n in 0..data.len() {
            let err = parse_all(&data[..n], opts.clone()).expect_err("a prefix must not parse");
            assert!(err.is_truncated() || n < 9, "[..{n}]: {err}");
        }
    }
    let raw = stream_value();
    for n in 0..raw.len() {
        let err = decode_value(
            TypeByte::STREAM_LISTPACKS_4,
            &Bytes::copy_from_slice(&raw[..n]),
            13,
        )
        .expect_err("a prefix must not decode");
        assert!(err.is_truncated(), "stream[..{n}]: {err}");
    }
}

/// Replaces the file's checksum after an edit.
fn recrc(mut f: Vec<u8>) -> Vec<u8> {
    let n = f.len() - 8;
    let crc = crc64(&f[..n]);
    f[n..].copy_from_slice(&crc.to_le_bytes());
    f
}

#[test]
fn unknown_and_misplaced_opcodes_are_clear_errors() {
    let f = file();
    let meta_at = f.windows(5).position(|w| w == b"\xF3\x02KMT").unwrap();

    // Version 12 has no KEY_META: 0xF3 is an unknown type there.
    let mut v12 = f.clone();
    v12[5..9].copy_from_slice(b"0012");
    let err = parse_all(&recrc(v12), Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownType(0xF3), "{err}");
    assert_eq!(err.offset(), meta_at as u64);

    // Nor does Valkey's RDB 80, where 243 is a slot import record (tests/valkey9.rs): read
    // as one, Redis's key metadata leaves the rest of the file unreadable.
    let mut valkey = b"VALKEY080".to_vec();
    valkey.extend_from_slice(&f[9..]);
    let err = parse_all(&recrc(valkey), Options::default()).unwrap_err();
    assert_ne!(err.kind(), ErrorKind::UnknownType(0xF3), "{err}");

    // Key metadata must be followed by a value type.
    let type_at = meta_at + key_metadata().len();
    let mut bad = f.clone();
    bad[type_at] = 0xFC;
    let err = parse_all(&recrc(bad), Options::default()).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Corrupt(_)), "{err}");
    assert_eq!(err.offset(), type_at as u64);

    // An unknown module opcode inside the metadata.
    let mut bad = f.clone();
    bad[meta_at + 6] = 9;
    let err = parse_all(&recrc(bad), Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownModuleOpcode(9), "{err}");

    // The type after 26 is still unknown in version 13.
    let st_at = f.windows(3).position(|w| w == b"\x1A\x02s").unwrap();
    let mut bad = f.clone();
    bad[st_at] = 27;
    let err = parse_all(&recrc(bad), Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnknownType(27), "{err}");

    // Version 14 is refused.
    let mut v14 = f;
    v14[5..9].copy_from_slice(b"0014");
    let err = parse_all(&v14, Options::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnsupportedVersion(14), "{err}");
}
