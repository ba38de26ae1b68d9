//! Elements longer than `Options::huge_element_bytes` inside big values come out as
//! `ElementPart`s and an `ElementEnd`: put back together, every value (hashtable encodings,
//! quicklists, and values stored as one listpack or ziplist) equals what the same snapshot
//! gives with whole elements. Quicklist nodes (listpack and ziplist, plain and LZF)
//! longer than the threshold are read entry by entry and refused, when damaged, with the same
//! error and byte as the whole-value check names.
//!
//! The snapshots are built here byte by byte (the layouts of Redis's `rdb.c`, `listpack.c`
//! and `ziplist.c`); ferry's `tests/huge.rs` does the same against snapshots written by real
//! servers (Redis 7 listpack nodes, Redis 6.2 ziplist nodes).

use bytes::Bytes;
use ferry_rdb::{Chunk, Element, Error, ErrorKind, Event, Options, Parser, crc64};

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

/// An LZF-compressed string (the data must compress).
fn lzf_string(out: &mut Vec<u8>, s: &[u8]) {
    let c = lzf::compress(s).expect("compressible");
    out.push(0xC3);
    len(out, c.len() as u64);
    len(out, s.len() as u64);
    out.extend_from_slice(&c);
}

/// Redis's `lpEncodeBacklen`, as the bytes lie in the listpack.
fn backlen(l: usize) -> Vec<u8> {
    let groups = match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    };
    (0..groups)
        .rev()
        .map(|g| {
            let b = ((l >> (7 * g)) & 127) as u8;
            if g == groups - 1 { b } else { b | 128 }
        })
        .collect()
}

/// A listpack entry: a 7-bit integer, or a string in the shortest form.
fn lp_entry(e: &Item) -> Vec<u8> {
    let mut b = match e {
        Item::Int(i) => vec![*i],
        Item::Str(s) if s.len() < 64 => [&[0x80 | s.len() as u8][..], s].concat(),
        Item::Str(s) if s.len() < 4096 => {
            [&[0xE0 | (s.len() >> 8) as u8, s.len() as u8][..], s].concat()
        }
        Item::Str(s) => [&[0xF0][..], &(s.len() as u32).to_le_bytes(), s].concat(),
    };
    b.extend(backlen(b.len()));
    b
}

fn listpack(items: &[Item]) -> Vec<u8> {
    let body: Vec<u8> = items.iter().map(lp_entry).collect::<Vec<_>>().concat();
    let total = 6 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xFF);
    out
}

/// A ziplist: previous length, encoding (a string in the shortest form, or a 4-bit
/// immediate integer), data; the tail offset at the last entry.
fn ziplist(items: &[Item]) -> Vec<u8> {
    let mut body = Vec::new();
    let mut prev = 0usize;
    let mut tail = 10usize;
    for it in items {
        let mut e = if prev < 254 {
            vec![prev as u8]
        } else {
            [&[0xFE][..], &(prev as u32).to_le_bytes()].concat()
        };
        match it {
            Item::Int(i) => e.push(0xF1 + i % 13),
            Item::Str(s) if s.len() < 64 => {
                e.push(s.len() as u8);
                e.extend_from_slice(s);
            }
            Item::Str(s) if s.len() < 16384 => {
                e.extend([0x40 | (s.len() >> 8) as u8, s.len() as u8]);
                e.extend_from_slice(s);
            }
            Item::Str(s) => {
                e.push(0x80);
                e.extend_from_slice(&(s.len() as u32).to_be_bytes());
                e.extend_from_slice(s);
            }
        }
        tail = 10 + body.len();
        prev = e.len();
        body.extend(e);
    }
    let total = 10 + body.len() + 1;
    let mut out = (total as u32).to_le_bytes().to_vec();
    out.extend_from_slice(&(tail as u32).to_le_bytes());
    out.extend_from_slice(&(items.len() as u16).to_le_bytes());
    out.extend_from_slice(&body);
    out.push(0xFF);
    out
}

#[derive(Clone)]
enum Item {
    Int(u8),
    Str(Vec<u8>),
}

fn s(b: &[u8]) -> Item {
    Item::Str(b.to_vec())
}

/// Compressible text of `n` bytes.
fn text(n: usize, seed: u8) -> Vec<u8> {
    let words: [&[u8]; 6] = [
        b"ferry ", b"huge ", b"piece ", b"node ", b"redis ", b"list ",
    ];
    let mut out = Vec::with_capacity(n + 8);
    let mut x = u32::from(seed) + 1;
    while out.len() < n {
        x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        out.extend_from_slice(words[(x >> 16) as usize % 6]);
    }
    out.truncate(n);
    out
}

/// Bytes LZF cannot compress.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 32) as u8
        })
        .collect()
}

/// How a quicklist node is stored.
#[derive(Clone, Copy)]
enum Store {
    Plain,
    Lzf,
}

/// A node's blob; `Lzf` stores it compressed when LZF can shrink it (as Redis does).
fn blob(out: &mut Vec<u8>, b: &[u8], store: Store) {
    match store {
        Store::Lzf if lzf::compress(b).is_ok() => lzf_string(out, b),
        _ => string(out, b),
    }
}

const HUGE: usize = 1000;

/// One key's value: its type byte and bytes.
struct Value {
    key: &'static str,
    ty: u8,
    bytes: Vec<u8>,
}

fn values() -> Vec<Value> {
    let big = |seed| text(3 * HUGE + 17, seed);
    let rnd = |seed| noise(2 * HUGE + 5, seed);
    let mut out = Vec::new();

    // Redis 7 list: listpack nodes, plain and LZF, one with a huge entry among small ones, one
    // holding only a huge entry, a PLAIN node, and nodes of small entries between.
    let mut v = Vec::new();
    len(&mut v, 6);
    for (container, node, store) in [
        (
            2,
            listpack(&[s(b"a"), Item::Int(7), s(b"bb")]),
            Store::Plain,
        ),
        (
            2,
            listpack(&[s(b"c"), Item::Str(rnd(1)), Item::Int(3), s(b"d")]),
            Store::Plain,
        ),
        (2, listpack(&[Item::Str(big(2))]), Store::Lzf),
        (1, big(3), Store::Lzf),
        (1, rnd(4), Store::Plain),
        (
            2,
            listpack(&[s(&text(HUGE - 1, 5)), Item::Str(big(6)), s(b"e")]),
            Store::Lzf,
        ),
    ] {
        len(&mut v, container);
        blob(&mut v, &node, store);
    }
    out.push(Value {
        key: "list:lp",
        ty: 18,
        bytes: v,
    });

    // Redis 3.2-6.2 list: ziplist nodes.
    let mut v = Vec::new();
    len(&mut v, 4);
    for (node, store) in [
        (ziplist(&[s(b"a"), Item::Int(4)]), Store::Plain),
        (
            ziplist(&[s(b"b"), Item::Str(rnd(7)), s(&[b'x'; 300])]),
            Store::Plain,
        ),
        (ziplist(&[Item::Str(big(8)), Item::Int(9)]), Store::Lzf),
        (ziplist(&[Item::Str(big(9))]), Store::Plain),
    ] {
        blob(&mut v, &node, store);
    }
    out.push(Value {
        key: "list:zl",
        ty: 14,
        bytes: v,
    });

    // Old linked list, set, sorted sets: plain strings, some LZF.
    for (key, ty) in [("list:old", 1u8), ("set", 2)] {
        let mut v = Vec::new();
        len(&mut v, 4);
        string(&mut v, b"small");
        string(&mut v, &rnd(10));
        lzf_string(&mut v, &big(11));
        string(&mut v, b"42");
        out.push(Value { key, ty, bytes: v });
    }
    for (key, ty) in [("zset2", 5u8), ("zset", 3)] {
        let mut v = Vec::new();
        len(&mut v, 3);
        let score = |v: &mut Vec<u8>, x: f64| {
            if ty == 5 {
                v.extend_from_slice(&x.to_le_bytes());
            } else {
                string(v, x.to_string().as_bytes());
            }
        };
        string(&mut v, b"m");
        score(&mut v, 1.5);
        lzf_string(&mut v, &big(12));
        score(&mut v, -2.25);
        string(&mut v, &rnd(13));
        score(&mut v, 1e9);
        out.push(Value { key, ty, bytes: v });
    }

    // Hashes: a huge value, a huge field, both, a huge field with an empty value.
    let fields: Vec<(Vec<u8>, Vec<u8>, bool)> = vec![
        (b"f1".to_vec(), b"v1".to_vec(), false),
        (b"f2".to_vec(), rnd(14), true),
        (big(15), b"v3".to_vec(), false),
        (rnd(16), big(17), true),
        (big(18), Vec::new(), false),
        (b"f6".to_vec(), b"v6".to_vec(), true),
    ];
    // Text is stored compressed, noise plain (as Redis stores what LZF cannot shrink).
    let put = |v: &mut Vec<u8>, b: &[u8]| {
        if b.len() > HUGE && lzf::compress(b).is_ok() {
            lzf_string(v, b);
        } else {
            string(v, b);
        }
    };
    let mut v = Vec::new();
    len(&mut v, fields.len() as u64);
    for (f, val, _) in &fields {
        put(&mut v, f);
        put(&mut v, val);
    }
    out.push(Value {
        key: "hash",
        ty: 4,
        bytes: v,
    });
    // Redis 7.4 hash with field expiries (relative to the smallest, stored first).
    let mut v = 1_700_000_000_000i64.to_le_bytes().to_vec();
    len(&mut v, fields.len() as u64);
    for (i, (f, val, ttl)) in fields.iter().enumerate() {
        len(&mut v, if *ttl { 1000 + i as u64 } else { 0 });
        put(&mut v, f);
        put(&mut v, val);
    }
    out.push(Value {
        key: "hash:ttl",
        ty: 24,
        bytes: v,
    });

    // Values stored as one listpack or ziplist (Redis keeps them small unless its
    // *-max-listpack-value settings are raised): a hash, a sorted set, a set, a hash with
    // field expiries, and the pre-3.2 ziplist list, hash and sorted set.
    let hash_items = vec![
        s(b"f1"),
        s(b"v1"),
        s(b"f2"),
        Item::Str(rnd(22)),
        Item::Str(big(23)),
        s(b"v3"),
        Item::Str(rnd(24)),
        Item::Str(big(25)),
        Item::Str(big(26)),
        s(b""),
        s(b"f6"),
        Item::Int(6),
    ];
    let zset_items = vec![
        s(b"m"),
        s(b"1.5"),
        Item::Str(big(27)),
        s(b"-2.25"),
        Item::Str(rnd(28)),
        Item::Int(7),
        s(b"z"),
        s(b"inf"),
    ];
    let set_items = vec![
        s(b"a"),
        Item::Str(rnd(29)),
        Item::Int(5),
        Item::Str(big(30)),
    ];
    let ex_items = vec![
        s(b"f1"),
        Item::Str(big(31)),
        s(b"1800000000000"),
        Item::Str(rnd(32)),
        s(b"v2"),
        s(b"1900000000000"),
        Item::Str(big(33)),
        Item::Str(rnd(34)),
        Item::Int(0),
        s(b"f4"),
        s(b"v4"),
        Item::Int(0),
    ];
    for (i, store) in [Store::Plain, Store::Lzf].into_iter().enumerate() {
        let keys: [[&'static str; 7]; 2] = [
            [
                "lp:hash",
                "lp:zset",
                "lp:set",
                "lp:hashex",
                "zl:list",
                "zl:hash",
                "zl:zset",
            ],
            [
                "lp:hash:c",
                "lp:zset:c",
                "lp:set:c",
                "lp:hashex:c",
                "zl:list:c",
                "zl:hash:c",
                "zl:zset:c",
            ],
        ];
        let k = keys[i];
        for (key, ty, blob_bytes) in [
            (k[0], 16u8, listpack(&hash_items)),
            (k[1], 17, listpack(&zset_items)),
            (k[2], 20, listpack(&set_items)),
            (k[3], 25, listpack(&ex_items)),
            (k[4], 10, ziplist(&set_items)),
            (k[5], 13, ziplist(&hash_items)),
            (k[6], 12, ziplist(&zset_items)),
        ] {
            let mut v = Vec::new();
            if ty == 25 {
                v.extend_from_slice(&1_800_000_000_000i64.to_le_bytes());
            }
            blob(&mut v, &blob_bytes, store);
            out.push(Value { key, ty, bytes: v });
        }
    }
    out
}

/// Valkey 9's hash (type 22 of RDB 80): field, value, then the field's expiry (-1: none).
fn valkey_hash() -> Value {
    let mut v = Vec::new();
    len(&mut v, 3);
    for (f, val, ms) in [
        (text(3 * HUGE, 20), b"x".to_vec(), 1_800_000_000_000i64),
        (b"g".to_vec(), noise(2 * HUGE, 21), -1),
        (b"h".to_vec(), b"y".to_vec(), 1_900_000_000_000),
    ] {
        string(&mut v, &f);
        string(&mut v, &val);
        v.extend_from_slice(&ms.to_le_bytes());
    }
    Value {
        key: "vhash",
        ty: 22,
        bytes: v,
    }
}

fn snapshot(magic: &[u8], values: &[Value]) -> (Vec<u8>, Vec<usize>) {
    let mut f = magic.to_vec();
    f.push(0xFE);
    len(&mut f, 0);
    let mut at = Vec::new();
    for v in values {
        f.push(v.ty);
        string(&mut f, v.key.as_bytes());
        at.push(f.len());
        f.extend_from_slice(&v.bytes);
    }
    f.push(0xFF);
    let crc = crc64(&f);
    f.extend_from_slice(&crc.to_le_bytes());
    (f, at)
}

/// A value as what it holds: list items, set members, sorted set pairs (score as bits), hash
/// fields with value and expiry.
#[derive(Debug, PartialEq, Default)]
struct Logical {
    items: Vec<Vec<u8>>,
    pairs: Vec<(Vec<u8>, u64)>,
    fields: Vec<(Vec<u8>, Vec<u8>, Option<i64>)>,
}

struct Read {
    values: Vec<(Bytes, Logical)>,
    /// Elements that came in parts.
    in_parts: usize,
    largest_part: usize,
}

fn read(file: &[u8], opts: Options) -> Result<Read, Error> {
    let mut p = Parser::new(file, opts)?;
    let mut out = Read {
        values: Vec::new(),
        in_parts: 0,
        largest_part: 0,
    };
    let mut cur = Logical::default();
    let mut part = Vec::new();
    let mut field_in_parts = None;
    while let Some(e) = p.next_event()? {
        match e {
            Event::BigValueStart(_) => cur = Logical::default(),
            Event::BigValueChunk(c) => match c {
                Chunk::ListItems(v) | Chunk::SetMembers(v) => {
                    cur.items.extend(v.iter().map(|b| b.to_vec()))
                }
                Chunk::ZSetEntries(v) => cur
                    .pairs
                    .extend(v.iter().map(|(m, s)| (m.to_vec(), s.to_bits()))),
                Chunk::HashFields(v) => cur.fields.extend(
                    v.iter()
                        .map(|f| (f.field.to_vec(), f.value.to_vec(), f.expire_ms)),
                ),
                Chunk::ElementPart(b) => {
                    assert!(!b.is_empty(), "an empty part");
                    out.largest_part = out.largest_part.max(b.len());
                    part.extend_from_slice(&b);
                }
                Chunk::ElementEnd(el) => {
                    out.in_parts += 1;
                    let bytes = std::mem::take(&mut part);
                    match el {
                        Element::ListItem | Element::SetMember => cur.items.push(bytes),
                        Element::ZSetMember { score } => cur.pairs.push((bytes, score.to_bits())),
                        Element::HashField => {
                            assert!(field_in_parts.is_none(), "two fields in parts in a row");
                            field_in_parts = Some(bytes);
                        }
                        Element::HashValue { field, expire_ms } => {
                            let field = match field {
                                Some(f) => {
                                    assert!(field_in_parts.is_none());
                                    f.to_vec()
                                }
                                None => field_in_parts.take().expect("a field in parts first"),
                            };
                            cur.fields.push((field, bytes, expire_ms));
                        }
                    }
                }
                other => panic!("unexpected chunk {other:?}"),
            },
            Event::BigValueEnd => {
                assert!(
                    part.is_empty() && field_in_parts.is_none(),
                    "an element left open"
                );
                out.values.push((Bytes::new(), std::mem::take(&mut cur)));
            }
            Event::Key(r) => panic!("{:?} is not big", r.meta.key),
            _ => {}
        }
    }
    Ok(out)
}

fn in_parts(huge: usize, chunk_bytes: usize) -> Options {
    Options {
        big_value_bytes: 1,
        big_value_elements: 0,
        chunk_elements: 3,
        chunk_bytes,
        huge_element_bytes: huge,
        ..Options::default()
    }
}

fn whole() -> Options {
    in_parts(usize::MAX, 1 << 20)
}

#[test]
fn elements_in_parts_equal_whole_ones() {
    for (magic, values) in [
        (&b"REDIS0012"[..], values()),
        (&b"VALKEY080"[..], vec![valkey_hash()]),
    ] {
        let (file, _) = snapshot(magic, &values);
        let want = read(&file, whole()).unwrap();
        assert_eq!(want.in_parts, 0);
        assert_eq!(want.values.len(), values.len());
        for part in [1, 100, 256, 4096] {
            let got = read(&file, in_parts(HUGE, part)).unwrap();
            assert_eq!(got.values.len(), want.values.len());
            for (i, ((_, g), (_, w))) in got.values.iter().zip(&want.values).enumerate() {
                assert_eq!(g, w, "{} with parts of {part}", values[i].key);
            }
            assert!(got.largest_part <= part, "a part over {part}");
            // Each element over the threshold: list 4 + 2 entries in nodes, ziplist 3, old
            // list 2, set 2, zsets 2 each, hashes 2 x (value, field, both: 2, field + empty
            // value: 2, its value 1 ...) as counted by the whole read.
            let longer = want
                .values
                .iter()
                .map(|(_, l)| {
                    l.items.iter().filter(|i| i.len() > HUGE).count()
                        + l.pairs.iter().filter(|p| p.0.len() > HUGE).count()
                        + l.fields
                            .iter()
                            .map(|(f, v, _)| {
                                if f.len() > HUGE {
                                    2
                                } else {
                                    usize::from(v.len() > HUGE)
                                }
                            })
                            .sum::<usize>()
                })
                .sum::<usize>();
            assert!(longer >= 3);
            assert_eq!(got.in_parts, longer, "elements in parts");
        }
        // A threshold above every element: the same chunks as before.
        let got = read(&file, in_parts(1 << 20, 100)).unwrap();
        assert_eq!(got.in_parts, 0);
    }
}

/// A big list of one 3 MiB entry in a listpack node, compressed or not: in parts of at most
/// the chunk size, and equal.
#[test]
fn a_node_of_one_huge_entry_is_never_read_whole() {
    for store in [Store::Plain, Store::Lzf] {
        let item = match store {
            Store::Plain => noise(3 << 20, 9),
            Store::Lzf => text(3 << 20, 9),
        };
        let mut v = Vec::new();
        len(&mut v, 3);
        for node in [
            listpack(&[s(b"first")]),
            listpack(&[Item::Str(item.clone())]),
            listpack(&[s(b"last")]),
        ] {
            len(&mut v, 2);
            blob(&mut v, &node, store);
        }
        let (file, _) = snapshot(
            b"REDIS0011",
            &[Value {
                key: "l",
                ty: 18,
                bytes: v,
            }],
        );
        let opts = Options {
            big_value_bytes: 64 << 10,
            chunk_bytes: 256 << 10,
            ..Options::default()
        };
        let got = read(&file, opts).unwrap();
        assert_eq!(got.in_parts, 1);
        assert!(got.largest_part <= 256 << 10);
        assert_eq!(
            got.values[0].1.items,
            vec![b"first".to_vec(), item, b"last".to_vec()]
        );
    }
}

/// The error a file gives read whole (validated as one value) and read in parts.
fn both_errors(file: &[u8]) -> (Error, Error) {
    let whole = Options {
        big_value_bytes: usize::MAX,
        big_value_elements: u64::MAX,
        ..Options::default()
    };
    let a = Parser::new(file, whole)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .expect_err("whole: refused");
    let b = read(file, in_parts(HUGE, 256))
        .err()
        .expect("in parts: refused");
    (a, b)
}

/// Damage inside a node read entry by entry is refused as the whole-value check refuses it:
/// the same error, key and byte (the entry's, or the node's string when it is compressed).
#[test]
fn damaged_nodes_read_in_parts_are_refused_at_the_same_byte() {
    let huge = text(5 * HUGE, 30);
    let lp = listpack(&[s(b"a"), Item::Str(huge.clone()), s(b"z")]);
    // Offsets inside the listpack: header 6, the "a" entry 3 bytes, then the huge entry
    // (0xF0, 4 length bytes, data, 2 bytes of backward length).
    assert!(huge.len() >= 4096 && lzf::compress(&huge).is_ok());
    let e = 6 + 3;
    let zl = ziplist(&[s(b"a"), Item::Str(huge.clone()), s(b"z")]);
    // Header 10, "a" 3 bytes, then previous length (1), 0x80 and 4 length bytes, data.
    let ze = 10 + 3;
    type Damage = (&'static str, &'static str, Vec<u8>, u8);
    let mut cases: Vec<Damage> = Vec::new();
    let mut d = lp.clone();
    d[e + 1..e + 5].copy_from_slice(&(huge.len() as u32 + 500_000).to_le_bytes());
    cases.push(("lp-entry-length", "listpack entry runs past its end", d, 18));
    let mut d = lp.clone();
    d[e + 5 + huge.len()] ^= 1;
    cases.push((
        "lp-backlen",
        "listpack entry's backward length differs from its size",
        d,
        18,
    ));
    let mut d = lp.clone();
    d[4] = 4;
    cases.push((
        "lp-count",
        "listpack header count differs from its entries",
        d,
        18,
    ));
    let mut d = lp.clone();
    d[e] = 0xF7;
    cases.push((
        "lp-encoding",
        "listpack entry has an unknown encoding",
        d,
        18,
    ));
    let mut d = zl.clone();
    d[ze + 2..ze + 6].copy_from_slice(&(huge.len() as u32 + 9).to_be_bytes());
    cases.push(("zl-entry-length", "ziplist entry runs past its end", d, 14));
    let mut d = zl.clone();
    d[ze + 6 + huge.len() + 1] ^= 1;
    cases.push((
        "zl-next-prevlen",
        "ziplist entry's previous length differs from the entry before",
        d,
        14,
    ));
    let mut d = zl.clone();
    d[4] ^= 2;
    cases.push((
        "zl-tail",
        "ziplist tail offset does not point at its last entry",
        d,
        14,
    ));
    for (name, what, node, ty) in cases {
        for store in [Store::Plain, Store::Lzf] {
            // A good node, then the damaged one.
            let mut v = Vec::new();
            len(&mut v, 2);
            let ok = if ty == 18 {
                len(&mut v, 2);
                listpack(&[s(b"ok")])
            } else {
                ziplist(&[s(b"ok")])
            };
            string(&mut v, &ok);
            if ty == 18 {
                len(&mut v, 2);
            }
            let string_at = v.len();
            let mut prefix = Vec::new();
            len(&mut prefix, node.len() as u64);
            let data_at = string_at + prefix.len();
            blob(&mut v, &node, store);
            let (file, at) = snapshot(
                b"REDIS0011",
                &[Value {
                    key: "bad",
                    ty,
                    bytes: v,
                }],
            );
            let (a, b) = both_errors(&file);
            assert_eq!(a.kind(), ErrorKind::Corrupt(what), "{name}: whole: {a}");
            assert_eq!(b.kind(), a.kind(), "{name}: in parts: {b}");
            assert_eq!(b.offset(), a.offset(), "{name}: {b} / {a}");
            assert_eq!(b.key(), Some(&b"bad"[..]), "{name}");
            match store {
                Store::Plain => assert!(
                    b.offset() >= (at[0] + data_at) as u64,
                    "{name}: inside the node: {b}"
                ),
                Store::Lzf => assert_eq!(b.offset(), (at[0] + string_at) as u64, "{name}: {b}"),
            }
        }
    }
}
