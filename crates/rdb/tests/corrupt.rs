//! Snapshots whose CRC is right but whose values are damaged inside: each is refused with
//! one error naming the key, its db and the byte where the damage is, before the value is
//! returned (so before anyone can `RESTORE` it). The same values as DUMP payloads are
//! refused by `dump::validate_payload`.
//!
//! The files are built here byte by byte (the layouts of Redis's `listpack.c`, `ziplist.c`,
//! `zipmap.c`, `intset.c`, `t_stream.c` and `rdb.c`), and kept in `tests/data/corrupt/`
//! (described in its README.md) for the fuzz corpus and for ferry's own tests. Each holds,
//! in db 3, a good string key `ok` and then the damaged key `bad`. Rewrite the files after
//! changing a case with `FERRY_WRITE_CORRUPT_FIXTURES=1 cargo test -p ferry-rdb --test corrupt`.

use std::path::PathBuf;

use ferry_rdb::{ErrorKind, Event, Options, Parser, TypeByte, crc64, dump};

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

/// Redis's `lpEncodeBacklen`, forwards (the bytes as they lie in the listpack).
fn backlen(l: usize) -> Vec<u8> {
    match l {
        0..=127 => vec![l as u8],
        _ => vec![(l >> 7) as u8, (l & 127) as u8 | 128],
    }
}

/// A listpack element: a small integer (7-bit form) or a string (6- or 12-bit form).
#[derive(Clone, Copy)]
enum Lp<'a> {
    Int(u8),
    Str(&'a [u8]),
}

fn lp_entry(e: Lp<'_>) -> Vec<u8> {
    let mut b = match e {
        Lp::Int(i) => vec![i],
        Lp::Str(s) if s.len() < 64 => {
            let mut b = vec![0x80 | s.len() as u8];
            b.extend_from_slice(s);
            b
        }
        Lp::Str(s) => {
            let mut b = vec![0xE0 | (s.len() >> 8) as u8, s.len() as u8];
            b.extend_from_slice(s);
            b
        }
    };
    b.extend(backlen(b.len()));
    b
}

/// A listpack of whole entries (bytes already encoded, backlen included).
fn listpack_raw(entries: &[Vec<u8>], count: u16) -> Vec<u8> {
    let body: Vec<u8> = entries.concat();
    let total = 6 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xFF);
    out
}

fn listpack(elems: &[Lp<'_>]) -> Vec<u8> {
    let e: Vec<Vec<u8>> = elems.iter().map(|&e| lp_entry(e)).collect();
    listpack_raw(&e, elems.len() as u16)
}

/// A ziplist entry holding a short string, with the previous entry's size.
fn zl_entry(prev: usize, s: &[u8]) -> Vec<u8> {
    let mut b = vec![prev as u8, s.len() as u8];
    b.extend_from_slice(s);
    b
}

fn ziplist(entries: &[Vec<u8>], tail: u32, count: u16) -> Vec<u8> {
    let body: Vec<u8> = entries.concat();
    let total = 10 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&tail.to_le_bytes());
    out.extend_from_slice(&count.to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xFF);
    out
}

/// A stream node: master entry (count, deleted, fields, 0) then SAMEFIELDS entries.
fn stream_node(values: &[&[u8]], lp_count: u8) -> Vec<u8> {
    let mut e = vec![
        Lp::Int(values.len() as u8),
        Lp::Int(0),
        Lp::Int(1),
        Lp::Str(b"f"),
        Lp::Int(0),
    ];
    for (i, v) in values.iter().enumerate() {
        e.extend([
            Lp::Int(2),
            Lp::Int(i as u8),
            Lp::Int(0),
            Lp::Str(v),
            Lp::Int(lp_count),
        ]);
    }
    listpack(&e)
}

fn raw_id(out: &mut Vec<u8>, ms: u64, seq: u64) {
    out.extend_from_slice(&ms.to_be_bytes());
    out.extend_from_slice(&seq.to_be_bytes());
}

/// A type-19 stream value: nodes of (master id ms, listpack), metadata, one group with the
/// given global PEL ids and one consumer owning `owned`.
fn stream(nodes: &[(u64, Vec<u8>)], length: u64, pel: &[u64], owned: &[u64]) -> Vec<u8> {
    let mut v = Vec::new();
    len(&mut v, nodes.len() as u64);
    for (ms, lp) in nodes {
        let mut key = Vec::new();
        raw_id(&mut key, *ms, 0);
        string(&mut v, &key);
        string(&mut v, lp);
    }
    len(&mut v, length);
    for n in [10, 0, 1, 0, 0, 0, length] {
        len(&mut v, n); // last id, first id, max deleted id, entries added
    }
    if pel.is_empty() && owned.is_empty() {
        len(&mut v, 0);
        return v;
    }
    len(&mut v, 1);
    string(&mut v, b"g");
    len(&mut v, 1);
    len(&mut v, 0);
    len(&mut v, 1); // entries read
    len(&mut v, pel.len() as u64);
    for &ms in pel {
        raw_id(&mut v, ms, 0);
        v.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
        len(&mut v, 1);
    }
    len(&mut v, 1);
    string(&mut v, b"c");
    v.extend_from_slice(&1_700_000_000_000i64.to_le_bytes());
    len(&mut v, owned.len() as u64);
    for &ms in owned {
        raw_id(&mut v, ms, 0);
    }
    v
}

/// One damaged value: its file name, type, value bytes, the offset of the damage inside the
/// value and what the error says.
struct Case {
    name: &'static str,
    ty: u8,
    value: Vec<u8>,
    damage_at: usize,
    what: &'static str,
}

/// Offset of `needle` in `hay` (the damaged part of a value, located by its bytes).
fn at(hay: &[u8], needle: &[u8]) -> usize {
    hay.windows(needle.len())
        .position(|w| w == needle)
        .expect("needle")
}

fn cases() -> Vec<Case> {
    let mut out = Vec::new();
    let blob = |b: &[u8]| {
        let mut v = Vec::new();
        string(&mut v, b);
        v
    };
    // The blob's data starts after its one- or two-byte length.
    let data_at = |b: &[u8]| if b.len() < 64 { 1 } else { 2 };

    // A hash listpack whose third entry claims 2^31 bytes (0xF0: 32-bit string length).
    let mut big = vec![0xF0];
    big.extend_from_slice(&0x8000_0000u32.to_le_bytes());
    big.extend_from_slice(b"xy");
    big.push(7);
    let e = vec![
        lp_entry(Lp::Str(b"f")),
        lp_entry(Lp::Str(b"v")),
        big.clone(),
        lp_entry(Lp::Str(b"v")),
    ];
    let lp = listpack_raw(&e, 4);
    out.push(Case {
        name: "hash-listpack-entry-2g",
        ty: 16,
        damage_at: data_at(&lp) + at(&lp, &big),
        value: blob(&lp),
        what: "listpack entry runs past its end",
    });

    // A set listpack whose second entry's backward length is wrong.
    let mut e = vec![lp_entry(Lp::Str(b"a")), lp_entry(Lp::Str(b"bb"))];
    let second = 6 + e[0].len();
    *e[1].last_mut().unwrap() = 9;
    let lp = listpack_raw(&e, 2);
    out.push(Case {
        name: "set-listpack-backlen",
        ty: 20,
        damage_at: data_at(&lp) + second,
        value: blob(&lp),
        what: "listpack entry's backward length differs from its size",
    });

    // A zset listpack whose header counts 4 entries for 2.
    let mut lp = listpack(&[Lp::Str(b"m"), Lp::Int(1)]);
    lp[4] = 4;
    out.push(Case {
        name: "zset-listpack-count",
        ty: 17,
        damage_at: data_at(&lp) + 4,
        value: blob(&lp),
        what: "listpack header count differs from its entries",
    });

    // A set listpack holding one member twice (as an integer and as its text).
    let lp = listpack(&[Lp::Int(5), Lp::Str(b"x"), Lp::Str(b"5")]);
    let dup = 6 + 2 + 3;
    out.push(Case {
        name: "set-listpack-duplicate",
        ty: 20,
        damage_at: data_at(&lp) + dup,
        value: blob(&lp),
        what: "duplicate set member",
    });

    // A list ziplist whose second entry gives the wrong previous length.
    let e1 = zl_entry(0, b"one");
    let e2 = zl_entry(9, b"two");
    let zl = ziplist(&[e1.clone(), e2], 10 + e1.len() as u32, 2);
    out.push(Case {
        name: "list-ziplist-prevlen",
        ty: 10,
        damage_at: data_at(&zl) + 10 + e1.len(),
        value: blob(&zl),
        what: "ziplist entry's previous length differs from the entry before",
    });

    // A hash ziplist whose tail offset points at its first entry.
    let e1 = zl_entry(0, b"f");
    let e2 = zl_entry(e1.len(), b"v");
    let zl = ziplist(&[e1, e2], 10, 2);
    out.push(Case {
        name: "hash-ziplist-tail",
        ty: 13,
        damage_at: data_at(&zl) + 4,
        value: blob(&zl),
        what: "ziplist tail offset does not point at its last entry",
    });

    // An intset whose elements are out of order.
    let mut is = 2u32.to_le_bytes().to_vec();
    is.extend_from_slice(&3u32.to_le_bytes());
    for v in [1i16, 3, 2] {
        is.extend_from_slice(&v.to_le_bytes());
    }
    out.push(Case {
        name: "intset-order",
        ty: 11,
        damage_at: data_at(&is) + 8 + 4,
        value: blob(&is),
        what: "intset elements are not strictly ascending",
    });

    // A zipmap that counts 5 entries and holds 1.
    let zm = vec![5, 1, b'f', 1, 0, b'v', 0xFF];
    out.push(Case {
        name: "hash-zipmap-count",
        ty: 9,
        damage_at: data_at(&zm),
        value: blob(&zm),
        what: "zipmap header count differs from its entries",
    });

    // A quicklist (RDB 10) whose packed node's string runs past the listpack.
    let mut lp = listpack(&[Lp::Str(b"abc")]);
    lp[6] = 0x80 | 60;
    let mut v = Vec::new();
    len(&mut v, 1);
    len(&mut v, 2);
    let node_at = v.len() + data_at(&lp) + 6;
    string(&mut v, &lp);
    out.push(Case {
        name: "quicklist-node-entry",
        ty: 18,
        damage_at: node_at,
        value: v,
        what: "listpack entry runs past its end",
    });

    // A stream entry whose lp-count does not match its elements.
    let node = stream_node(&[b"v1", b"v2"], 5);
    let v = stream(&[(1, node.clone())], 2, &[], &[]);
    let node_at = at(&v, &node);
    // The first entry's lp-count: after the master entry and flags, ms, seq, value.
    let lp_count_at = 6 + [
        lp_entry(Lp::Int(2)),
        lp_entry(Lp::Int(0)),
        lp_entry(Lp::Int(1)),
        lp_entry(Lp::Str(b"f")),
        lp_entry(Lp::Int(0)),
        lp_entry(Lp::Int(2)),
        lp_entry(Lp::Int(0)),
        lp_entry(Lp::Int(0)),
        lp_entry(Lp::Str(b"v1")),
    ]
    .concat()
    .len();
    out.push(Case {
        name: "stream-lp-count",
        ty: 19,
        damage_at: node_at + lp_count_at,
        value: v,
        what: "stream entry's lp-count differs from its elements",
    });

    // A stream that says it holds 5 entries and has no node.
    let v = stream(&[], 5, &[], &[]);
    out.push(Case {
        name: "stream-length-without-nodes",
        ty: 19,
        damage_at: 1,
        value: v,
        what: "stream length is not zero but it has no entries",
    });

    // A consumer owning an id its group's PEL lacks.
    let node = stream_node(&[b"v1"], 4);
    let v = stream(&[(1, node)], 1, &[1], &[1, 2]);
    let mut id2 = Vec::new();
    raw_id(&mut id2, 2, 0);
    out.push(Case {
        name: "stream-consumer-pel-not-in-group",
        ty: 19,
        damage_at: at(&v, &id2),
        value: v,
        what: "consumer PEL entry missing from the group PEL",
    });

    // A group PEL entry no consumer owns.
    let node = stream_node(&[b"v1"], 4);
    let v = stream(&[(1, node)], 1, &[1, 3], &[1]);
    let group_at = at(&v, b"\x01g");
    out.push(Case {
        name: "stream-pel-without-consumer",
        ty: 19,
        damage_at: group_at,
        value: v,
        what: "group PEL entry has no consumer",
    });

    // A sorted set (RDB 8+ binary scores) with a NaN score.
    let mut v = Vec::new();
    len(&mut v, 1);
    string(&mut v, b"m");
    let score_at = v.len();
    v.extend_from_slice(&f64::NAN.to_le_bytes());
    out.push(Case {
        name: "zset-nan-score",
        ty: 5,
        damage_at: score_at,
        value: v,
        what: "zset score is NaN",
    });

    // An LZF string whose back reference points before the start of the output.
    let v = vec![0xC3, 2, 3, 0x20, 0x05];
    out.push(Case {
        name: "string-lzf-back-reference",
        ty: 0,
        damage_at: 0,
        value: v,
        what: "LZF data does not decompress to its stated length",
    });
    out
}

const DB: u64 = 3;

/// The snapshot: header, db 3, the good key `ok`, the damaged key `bad`, EOF and a right CRC.
/// Returns it with the offset where the damaged value starts.
fn snapshot(c: &Case) -> (Vec<u8>, usize) {
    let mut f = b"REDIS0011".to_vec();
    f.push(0xFE);
    len(&mut f, DB);
    f.push(0);
    string(&mut f, b"ok");
    string(&mut f, b"fine");
    f.push(c.ty);
    string(&mut f, b"bad");
    let value_at = f.len();
    f.extend_from_slice(&c.value);
    f.push(0xFF);
    let crc = crc64(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    (f, value_at)
}

fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/corrupt")
}

#[test]
fn damaged_values_are_refused_with_key_db_and_offset() {
    let write = std::env::var_os("FERRY_WRITE_CORRUPT_FIXTURES").is_some();
    for c in cases() {
        let (file, value_at) = snapshot(&c);
        let path = data_dir().join(format!("{}.rdb", c.name));
        if write {
            std::fs::create_dir_all(data_dir()).unwrap();
            std::fs::write(&path, &file).unwrap();
        }
        let kept = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(kept, file, "{} differs from what this test builds", c.name);

        let mut p = Parser::new(&file[..], Options::default()).unwrap();
        let mut keys = Vec::new();
        let err = loop {
            match p.next_event() {
                Ok(Some(Event::Key(r))) => keys.push(r.meta.key),
                Ok(Some(Event::End { .. })) | Ok(None) => panic!("{}: accepted", c.name),
                Ok(Some(_)) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(
            keys,
            vec![&b"ok"[..]],
            "{}: only the good key comes out",
            c.name
        );
        assert_eq!(err.kind(), ErrorKind::Corrupt(c.what), "{}: {err}", c.name);
        assert_eq!(err.key(), Some(&b"bad"[..]), "{}", c.name);
        assert_eq!(err.db(), Some(DB), "{}", c.name);
        assert_eq!(
            err.offset(),
            (value_at + c.damage_at) as u64,
            "{}: {err}",
            c.name
        );
        let line = err.to_string();
        assert!(
            line.contains("key \"bad\" in db 3 at byte"),
            "{}: {line}",
            c.name
        );

        // Without validation the same file reads to its end (the CRC is right and every
        // value's outer layout holds): the damage is only seen inside values.
        let opts = Options {
            validate_values: false,
            ..Options::default()
        };
        let all: Result<Vec<_>, _> = Parser::new(&file[..], opts).unwrap().collect();
        assert!(all.is_ok(), "{}: {:?}", c.name, all.err());

        // The same value as a DUMP payload.
        let payload = dump::payload(TypeByte(c.ty), &c.value, 11);
        let err = dump::validate_payload(&payload).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Corrupt(c.what), "{}: {err}", c.name);
        assert_eq!(err.offset(), 1 + c.damage_at as u64, "{}", c.name);
        assert!(
            dump::parse_payload(&payload).is_ok(),
            "{}: its CRC is right",
            c.name
        );
    }
}

/// A value over the big-value thresholds is decoded into chunks (written as commands, which
/// cannot crash a server); the blobs and stream nodes are validated the same way as they are
/// decoded, so the structural cases are refused there too, naming key and db. Rules about
/// content that commands express harmlessly (a duplicate member, a NaN score the target
/// refuses, a stream length) are left to the target on that path.
#[test]
fn damaged_big_values_are_refused_while_decoded() {
    let tiny = Options {
        big_value_bytes: 1,
        big_value_elements: 0,
        ..Options::default()
    };
    // (A stream without nodes holds nothing to count as big: it stays a whole value and is
    // validated whole.)
    let left_to_the_target = ["set-listpack-duplicate", "zset-nan-score"];
    // Also with every element in parts and every blob read entry by entry.
    let in_parts = Options {
        huge_element_bytes: 0,
        chunk_bytes: 7,
        ..tiny.clone()
    };
    for opts in [tiny, in_parts] {
        for c in cases() {
            let (file, value_at) = snapshot(&c);
            let r: Result<Vec<_>, _> = Parser::new(&file[..], opts.clone()).unwrap().collect();
            if left_to_the_target.contains(&c.name) {
                assert!(r.is_ok(), "{}: {:?}", c.name, r.err());
                continue;
            }
            let err = r.expect_err(c.name);
            assert_eq!(err.key(), Some(&b"bad"[..]), "{}: {err}", c.name);
            assert_eq!(err.db(), Some(DB), "{}: {err}", c.name);
            assert!(err.offset() >= value_at as u64, "{}: {err}", c.name);
        }
    }
}

/// The same builders make valid values, which pass: the cases above fail for their damage.
#[test]
fn undamaged_values_pass() {
    let ok: Vec<(u8, Vec<u8>)> = vec![
        (16, listpack(&[Lp::Str(b"f"), Lp::Str(b"v")])),
        (20, listpack(&[Lp::Int(5), Lp::Str(b"x")])),
        (17, listpack(&[Lp::Str(b"m"), Lp::Int(1)])),
        (10, {
            let e1 = zl_entry(0, b"one");
            let e2 = zl_entry(e1.len(), b"two");
            ziplist(&[e1.clone(), e2], 10 + e1.len() as u32, 2)
        }),
        (9, vec![1, 1, b'f', 1, 0, b'v', 0xFF]),
        (11, {
            let mut is = 2u32.to_le_bytes().to_vec();
            is.extend_from_slice(&2u32.to_le_bytes());
            for v in [1i16, 3] {
                is.extend_from_slice(&v.to_le_bytes());
            }
            is
        }),
    ];
    for (ty, b) in ok {
        let mut v = Vec::new();
        string(&mut v, &b);
        ferry_rdb::validate_value(TypeByte(ty), &v, 11).unwrap_or_else(|e| panic!("{ty}: {e}"));
    }
    let node = stream_node(&[b"v1", b"v2"], 4);
    let v = stream(&[(1, node)], 2, &[1], &[1]);
    ferry_rdb::validate_value(TypeByte(19), &v, 11).unwrap();
}
