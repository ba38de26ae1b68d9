//! Values read piece by piece from a real source, written by the real sink encoder into a real
//! target, compared key by key; keys that vanish mid-read; replies no Redis sends.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use ferry_rdb::KeyMeta;
use testkit::{Server, compare, versions};

use super::*;
use crate::error::Role;
use crate::net::endpoint::Endpoint;
use crate::pipeline::entry::Entry;
use crate::sink::caps::Caps;
use crate::sink::encode::{Encoder, Expect};

const PIECE: usize = 1000;
const PIECE_BYTES: usize = 64 * 1024;

async fn connect(server: &Server, role: Role) -> Conn {
    let endpoint = Endpoint::parse("source", &server.url()).unwrap();
    Conn::connect(role, &endpoint).await.unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Sends what the encoder holds to the target and checks every reply. Anything the encoder
/// left out fails the test, but for what a target older than 6.2 cannot hold.
async fn flush(target: &mut Conn, enc: &mut Encoder) {
    let (out, expects) = enc.take();
    if !out.is_empty() {
        target.write_all(&out).await.unwrap();
    }
    for e in &expects {
        match e {
            Expect::Reply { command, key, .. } => {
                let (reply, _) = target.read_frame().await.unwrap();
                assert!(
                    !reply.is_error(),
                    "target refused {} of {}: {reply}",
                    escape(command),
                    escape(key)
                );
            }
            Expect::Dropped(what) if what.starts_with("consumers without pending entries") => {
                let version = target.version().await.unwrap();
                assert!(version < (6, 2, 0), "{what} from a {version:?} target");
            }
            Expect::Dropped(what) => panic!("dropped: {what}"),
            _ => {}
        }
    }
}

/// What reading one key gave.
struct Read {
    chunks: usize,
    vanished: bool,
    /// Requests that read the value.
    reads: u64,
}

/// Reads `key` from the source with a ValueReader and writes it through the sink's encoder as
/// a big key, as the scan source will.
async fn copy_key(
    source: &mut Conn,
    target: &mut Conn,
    enc: &mut Encoder,
    key: Bytes,
    piece: usize,
    piece_bytes: usize,
) -> Read {
    let kind = match source.request_ok(&[&b"TYPE"[..], &key]).await.unwrap() {
        Frame::Simple(t) => ValueKind::from_type_reply(&t).unwrap(),
        other => panic!("TYPE: {other}"),
    };
    let pttl = source
        .request_ok(&[&b"PTTL"[..], &key])
        .await
        .unwrap()
        .as_integer()
        .unwrap();
    let meta = Arc::new(KeyMeta {
        db: 0,
        key: key.clone(),
        expire_ms: (pttl > 0).then(|| now_ms() + pttl),
        idle: None,
        freq: None,
        type_byte: kind.type_byte(),
        key_metadata: None,
    });
    enc.push(Entry::BigStart(meta.clone())).unwrap();
    let mut reader = ValueReader::new(key.clone(), kind, piece, piece_bytes);
    let mut chunks = 0;
    while let Some(chunk) = reader.next(source).await.unwrap() {
        chunks += 1;
        let elements = match &chunk {
            Chunk::StringPart(p) => {
                assert!(p.len() <= piece_bytes, "{}", escape(&key));
                0
            }
            Chunk::ListItems(v) | Chunk::SetMembers(v) => v.len(),
            Chunk::ZSetEntries(v) => v.len(),
            Chunk::HashFields(v) => v.len(),
            Chunk::StreamEntries(v) => v.len(),
            Chunk::StreamPending { entries, .. } => entries.len(),
            _ => 0,
        };
        assert!(
            elements <= piece,
            "{} elements in a piece of {}",
            elements,
            piece
        );
        enc.push(Entry::BigChunk(meta.clone(), chunk)).unwrap();
        if enc.pending_len() > 1 << 20 {
            flush(target, enc).await;
        }
    }
    enc.push(Entry::BigEnd(meta)).unwrap();
    flush(target, enc).await;
    Read {
        chunks,
        vanished: reader.vanished(),
        reads: reader.reads,
    }
}

/// Copies every key of the source's db 0, in pieces; the chunk count of each key.
async fn copy_all(source: &Server, target: &Server, piece: usize) -> Vec<(String, usize)> {
    let mut src = connect(source, Role::Source).await;
    let mut dst = connect(target, Role::Target).await;
    let caps = Caps::probe(&mut dst).await.unwrap();
    let mut enc = Encoder::for_target(caps, false);
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut source.conn())
        .unwrap();
    keys.sort();
    let mut counts = Vec::new();
    for key in keys {
        let read = copy_key(
            &mut src,
            &mut dst,
            &mut enc,
            Bytes::from(key.clone()),
            piece,
            PIECE_BYTES,
        )
        .await;
        assert!(!read.vanished, "{} vanished", escape(&key));
        counts.push((String::from_utf8_lossy(&key).into_owned(), read.chunks));
    }
    counts
}

fn q(conn: &mut redis::Connection, args: &[&[u8]]) {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query::<redis::Value>(conn)
        .unwrap_or_else(|e| panic!("{}: {e}", String::from_utf8_lossy(args[0])));
}

/// Deterministic bytes, CR and LF and NUL among them.
fn noise(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes `n` elements with `command key <args of i>...`, 1000 per command.
fn fill(
    conn: &mut redis::Connection,
    command: &str,
    key: &str,
    n: usize,
    args: impl Fn(usize) -> Vec<Vec<u8>>,
) {
    for start in (0..n).step_by(1000) {
        let mut c = redis::cmd(command);
        c.arg(key);
        for i in start..(start + 1000).min(n) {
            for a in args(i) {
                c.arg(a);
            }
        }
        c.query::<redis::Value>(conn).unwrap();
    }
}

/// One key of every type and shape; big ones when `big` is set. `version` says which
/// commands the server has.
fn populate(server: &Server, big: bool) {
    let version = server.version();
    let mut c = server.conn();
    q(&mut c, &[b"SET", b"str:small", b"hello", b"PX", b"3600000"]);
    q(&mut c, &[b"SET", b"str:empty", b""]);
    q(&mut c, &[b"SET", b"str:binary", &noise(3000, 7)]);
    q(&mut c, &[b"RPUSH", b"list:small", b"a", b"", b"c"]);
    q(
        &mut c,
        &[
            b"HSET",
            b"hash:small",
            b"f1",
            b"v1",
            b"",
            b"empty field",
            b"f3",
            b"",
        ],
    );
    q(&mut c, &[b"SADD", b"set:small", b"x", b"", b"z"]);
    q(
        &mut c,
        &[
            b"SADD",
            b"set:ints",
            b"1",
            b"2",
            b"3",
            b"-40",
            b"1000000000000",
        ],
    );
    q(
        &mut c,
        &[
            b"ZADD",
            b"zset:small",
            b"1.5",
            b"a",
            b"inf",
            b"b",
            b"-inf",
            b"c",
            b"-0.1",
            b"d",
            b"1e-300",
            b"e",
            b"0",
            b"",
        ],
    );
    q(&mut c, &[b"XADD", b"stream:small", b"1-1", b"f", b"v"]);
    q(&mut c, &[b"XADD", b"stream:small", b"1-2", b"", b""]);
    // A stream whose every entry was deleted, with a group.
    q(&mut c, &[b"XADD", b"stream:empty", b"5-5", b"f", b"v"]);
    q(&mut c, &[b"XDEL", b"stream:empty", b"5-5"]);
    q(
        &mut c,
        &[b"XGROUP", b"CREATE", b"stream:empty", b"g0", b"$"],
    );
    let n = if big { 200_000 } else { 3000 };
    fill(&mut c, "RPUSH", "list:big", n, |i| {
        vec![format!("item-{i}-{}", "x".repeat(i % 13)).into_bytes()]
    });
    fill(&mut c, "HSET", "hash:big", n, |i| {
        vec![
            format!("field-{i}").into_bytes(),
            format!("value-{}", i * 7).into_bytes(),
        ]
    });
    fill(&mut c, "SADD", "set:big", n, |i| {
        vec![format!("member-{i}").into_bytes()]
    });
    fill(&mut c, "ZADD", "zset:big", n, |i| {
        vec![
            format!("{}", i as f64 / 7.0 - 1000.0).into_bytes(),
            format!("m{i}").into_bytes(),
        ]
    });
    q(&mut c, &[b"PEXPIRE", b"hash:big", b"3600000"]);
    let string_len = if big { 5 << 20 } else { 300_000 };
    q(&mut c, &[b"SET", b"str:big", &noise(string_len, 11)]);
    // A stream of 3000 entries, some deleted, two groups with pending entries.
    for i in 1..=3000u64 {
        let id = format!("{}-{}", 1_000 + i / 3, i % 3);
        let value = format!("v{i}");
        q(
            &mut c,
            &[
                b"XADD",
                b"stream:big",
                id.as_bytes(),
                b"n",
                value.as_bytes(),
                b"f2",
                b"",
            ],
        );
    }
    for i in (1..=3000u64).filter(|i| i % 10 == 0 || *i <= 5) {
        let id = format!("{}-{}", 1_000 + i / 3, i % 3);
        q(&mut c, &[b"XDEL", b"stream:big", id.as_bytes()]);
    }
    q(&mut c, &[b"XGROUP", b"CREATE", b"stream:big", b"g1", b"0"]);
    q(
        &mut c,
        &[b"XGROUP", b"CREATE", b"stream:big", b"g2", b"1300-0"],
    );
    for (group, consumer, count) in [
        ("g1", "alice", "700"),
        ("g1", "bob", "400"),
        ("g2", "carol", "1500"),
    ] {
        q(
            &mut c,
            &[
                b"XREADGROUP",
                b"GROUP",
                group.as_bytes(),
                consumer.as_bytes(),
                b"COUNT",
                count.as_bytes(),
                b"STREAMS",
                b"stream:big",
                b">",
            ],
        );
    }
    // Some acknowledged.
    q(
        &mut c,
        &[
            b"XACK",
            b"stream:big",
            b"g1",
            b"1002-0",
            b"1002-1",
            b"1002-2",
        ],
    );
    if version >= (6, 2, 0) {
        q(
            &mut c,
            &[b"XGROUP", b"CREATECONSUMER", b"stream:big", b"g1", b"dave"],
        );
    }
    if version >= (7, 4, 0) {
        fill(&mut c, "HSET", "hash:ttl", 3000, |i| {
            vec![format!("f{i}").into_bytes(), format!("v{i}").into_bytes()]
        });
        let at = now_ms() + 3_600_000;
        for i in (0..3000).step_by(2) {
            let at = (at + i as i64).to_string();
            let field = format!("f{i}");
            q(
                &mut c,
                &[
                    b"HPEXPIREAT",
                    b"hash:ttl",
                    at.as_bytes(),
                    b"FIELDS",
                    b"1",
                    field.as_bytes(),
                ],
            );
        }
    }
}

/// Every field's HPEXPIRETIME, in field order.
fn field_ttls(server: &Server, key: &str) -> Vec<i64> {
    let mut c = server.conn();
    let mut fields: Vec<Vec<u8>> = redis::cmd("HKEYS").arg(key).query(&mut c).unwrap();
    fields.sort();
    redis::cmd("HPEXPIRETIME")
        .arg(key)
        .arg("FIELDS")
        .arg(fields.len())
        .arg(&fields)
        .query(&mut c)
        .unwrap()
}

fn start(bin: Option<&Path>) -> Server {
    match bin {
        Some(bin) => Server::start_bin(bin, &[]),
        None => Server::start(),
    }
}

async fn every_type_arrives_equal(bin: Option<&Path>) {
    let source = start(bin);
    let target = start(bin);
    populate(&source, true);
    let counts = copy_all(&source, &target, PIECE).await;
    let chunks = |key: &str| counts.iter().find(|(k, _)| k == key).unwrap().1;
    // Many pieces each, none over the bounds (checked as they were read).
    for key in ["list:big", "hash:big", "set:big", "zset:big"] {
        assert!(chunks(key) >= 200, "{key}: {} chunks", chunks(key));
    }
    assert!(chunks("str:big") >= 80, "{}", chunks("str:big"));
    // 2700 entries in 3 pieces, meta, 2 groups, 1100 + 1500 pending in 2 + 2 pieces.
    assert!(chunks("stream:big") >= 10, "{}", chunks("stream:big"));
    assert_eq!(chunks("str:empty"), 1);
    let n = compare::compare(&source, &target, &compare::Options::default())
        .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(n as usize, counts.len());
    if source.version() >= (7, 4, 0) {
        let ttls = field_ttls(&source, "hash:ttl");
        assert_eq!(ttls.iter().filter(|t| **t > 0).count(), 1500);
        assert_eq!(ttls, field_ttls(&target, "hash:ttl"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_read_in_pieces_arrives_equal() {
    every_type_arrives_equal(None).await;
}

/// Redis 8: hash field TTLs, consumers' active times.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_type_read_in_pieces_arrives_equal_on_redis_8() {
    let Some((_, bin)) = versions::cached("redis-8.0.2") else {
        return;
    };
    every_type_arrives_equal(Some(&bin)).await;
}

/// Every cached version's replies (XINFO without the 7.0 fields on 5.0 and 6.2, no
/// HPEXPIRETIME on Valkey 8), with small pieces.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_values_on_every_cached_version() {
    for (version, bin) in versions::available() {
        let source = Server::start_bin(&bin, &[]);
        let target = Server::start_bin(&bin, &[]);
        populate(&source, false);
        let counts = copy_all(&source, &target, 97).await;
        let n = compare::compare(&source, &target, &compare::Options::default())
            .unwrap_or_else(|r| panic!("{version}: {r}"));
        assert_eq!(n as usize, counts.len(), "{version}");
    }
}

/// Reads 3 pieces of `key`, lets `change` act on the source, then reads on to the end.
async fn read_while(source: &Server, key: &str, kind: ValueKind, change: &[&[u8]]) -> Read {
    let mut conn = connect(source, Role::Source).await;
    let mut reader = ValueReader::new(Bytes::from(key.to_string()), kind, 100, 1024);
    let mut chunks = 0;
    while let Some(_chunk) = reader.next(&mut conn).await.unwrap() {
        chunks += 1;
        if chunks == 3 {
            q(&mut source.conn(), &[b"DEL", key.as_bytes()]);
            if !change.is_empty() {
                q(&mut source.conn(), change);
            }
        }
    }
    Read {
        chunks,
        vanished: reader.vanished(),
        reads: reader.reads,
    }
}

/// Elements of 100 KiB: requests shrink to about `piece_bytes` (256 KiB) after the first,
/// instead of 100 elements (10 MiB) each.
#[tokio::test]
async fn big_elements_shrink_the_requests() {
    let source = Server::start();
    let target = Server::start();
    let mut c = source.conn();
    let element = |i: usize| {
        let mut e = noise(100 << 10, i as u64);
        e.extend_from_slice(i.to_string().as_bytes());
        e
    };
    fill(&mut c, "RPUSH", "list", 300, |i| vec![element(i)]);
    fill(&mut c, "HSET", "hash", 300, |i| {
        vec![i.to_string().into_bytes(), element(i)]
    });
    fill(&mut c, "SADD", "set", 300, |i| vec![element(i)]);
    fill(&mut c, "ZADD", "zset", 300, |i| {
        vec![i.to_string().into_bytes(), element(i)]
    });
    for i in 1..=300 {
        let id = format!("1-{i}");
        q(
            &mut c,
            &[b"XADD", b"stream", id.as_bytes(), b"f", &element(i)],
        );
    }
    let mut src = connect(&source, Role::Source).await;
    let mut dst = connect(&target, Role::Target).await;
    let caps = Caps::probe(&mut dst).await.unwrap();
    let mut enc = Encoder::for_target(caps, false);
    for key in ["list", "hash", "set", "zset", "stream"] {
        let key = Bytes::from_static(key.as_bytes());
        let read = copy_key(&mut src, &mut dst, &mut enc, key.clone(), 100, 256 << 10).await;
        // 3 requests of 100 would do without the byte bound.
        assert!(read.reads > 30, "{}: {} reads", escape(&key), read.reads);
    }
    let n = compare::compare(&source, &target, &compare::Options::default())
        .unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(n, 5);
}

#[tokio::test]
async fn a_key_deleted_or_retyped_while_read_ends_early_without_error() {
    let source = Server::start();
    populate(&source, false);
    let cases: [(&str, ValueKind); 6] = [
        ("str:big", ValueKind::String),
        ("list:big", ValueKind::List),
        ("hash:big", ValueKind::Hash),
        ("set:big", ValueKind::Set),
        ("zset:big", ValueKind::ZSet),
        ("stream:big", ValueKind::Stream),
    ];
    for (key, kind) in cases {
        let read = read_while(&source, key, kind, &[]).await;
        assert!(read.vanished, "{key} deleted");
        // The pieces of the reply in hand, no more (the whole key has dozens).
        assert!(read.chunks < 10, "{key}: {} chunks", read.chunks);
    }
    q(&mut source.conn(), &[b"FLUSHALL"]);
    populate(&source, false);
    for (key, kind) in cases {
        let retyped: &[&[u8]] = match kind {
            ValueKind::String => &[b"RPUSH", key.as_bytes(), b"x"],
            _ => &[b"SET", key.as_bytes(), b"now a string"],
        };
        let read = read_while(&source, key, kind, retyped).await;
        assert!(read.vanished, "{key} retyped");
    }
    // Gone before the first read: nothing at all.
    let mut conn = connect(&source, Role::Source).await;
    for kind in [
        ValueKind::String,
        ValueKind::Hash,
        ValueKind::Stream,
        ValueKind::List,
    ] {
        let mut reader = ValueReader::new(Bytes::from_static(b"nothing"), kind, 10, 10);
        assert!(reader.next(&mut conn).await.unwrap().is_none(), "{kind:?}");
        assert!(reader.vanished(), "{kind:?}");
    }
    // The empty string is a value, not a vanished key.
    let mut reader = ValueReader::new(Bytes::from_static(b"str:empty"), ValueKind::String, 10, 10);
    assert!(matches!(
        reader.next(&mut conn).await.unwrap(),
        Some(Chunk::StringPart(p)) if p.is_empty()
    ));
    assert!(reader.next(&mut conn).await.unwrap().is_none());
    assert!(!reader.vanished());
}

#[test]
fn type_replies_name_their_kinds() {
    for kind in [
        ValueKind::String,
        ValueKind::List,
        ValueKind::Hash,
        ValueKind::Set,
        ValueKind::ZSet,
        ValueKind::Stream,
    ] {
        assert_eq!(
            ValueKind::from_type_reply(kind.name().as_bytes()),
            Some(kind)
        );
        assert_eq!(
            kind.type_byte().kind().map(|k| k.name()),
            Some(kind.name()),
            "{kind:?}"
        );
    }
    assert_eq!(ValueKind::from_type_reply(b"none"), None);
    assert_eq!(ValueKind::from_type_reply(b"ReJSON-RL"), None);
    assert_eq!(ValueKind::Stream.length_command(), "XLEN");
}

fn bulk(s: &str) -> Frame {
    Frame::Bulk(Bytes::from(s.to_string()))
}

fn array(items: Vec<Frame>) -> Frame {
    Frame::Array(items)
}

#[test]
fn hostile_replies_are_errors_not_panics() {
    // SCAN: a cursor that is not a number, the wrong number of items, nested elements.
    assert!(scan_reply(array(vec![bulk("1x"), array(vec![])])).is_err());
    assert!(scan_reply(array(vec![bulk("0")])).is_err());
    assert!(scan_reply(array(vec![bulk("0"), array(vec![array(vec![])])])).is_err());
    assert!(scan_reply(Frame::Integer(3)).is_err());
    let (cursor, items) = scan_reply(array(vec![bulk("17"), array(vec![bulk("a")])])).unwrap();
    assert_eq!((&cursor[..], items.len()), (&b"17"[..], 1));
    // Scores: inf and -inf are scores, nan and words are not; pairs must pair.
    let z = zset_entries(vec!["a".into(), "inf".into(), "b".into(), "-inf".into()]).unwrap();
    assert_eq!(z[0].1, f64::INFINITY);
    assert_eq!(z[1].1, f64::NEG_INFINITY);
    assert!(zset_entries(vec!["a".into(), "nan".into()]).is_err());
    assert!(zset_entries(vec!["a".into(), "one".into()]).is_err());
    assert!(zset_entries(vec!["a".into()]).is_err());
    // Lists: more than asked for.
    assert!(strings(array(vec![bulk("a"), bulk("b")]), 1).is_err());
    // Stream entries: more than asked, out of order, bad ids, odd fields.
    let entry = |id: &str, fields: Vec<Frame>| array(vec![bulk(id), array(fields)]);
    assert!(stream_entries(array(vec![entry("1-1", vec![]), entry("1-2", vec![])]), 1).is_err());
    assert!(stream_entries(array(vec![entry("1-2", vec![]), entry("1-1", vec![])]), 9).is_err());
    assert!(stream_entries(array(vec![entry("1-x", vec![])]), 9).is_err());
    assert!(stream_entries(array(vec![entry("1-1", vec![bulk("f")])]), 9).is_err());
    assert!(stream_entries(array(vec![bulk("1-1")]), 9).is_err());
    let ok = stream_entries(array(vec![entry("1-1", vec![bulk("f"), bulk("")])]), 9).unwrap();
    assert_eq!(ok[0].fields[0].1.len(), 0);
    // XPENDING rows of the wrong size.
    let row = array(vec![bulk("1-1"), bulk("c"), Frame::Integer(5)]);
    assert!(pending_entries(array(vec![row]), 9, 0).is_err());
    // XINFO STREAM without its length; an odd flat array.
    assert!(stream_meta(&array(vec![bulk("last-generated-id"), bulk("1-1")])).is_err());
    assert!(stream_meta(&array(vec![bulk("length")])).is_err());
    // TIME that is not two numbers.
    assert_eq!(server_time(&array(vec![bulk("1")])), None);
    assert_eq!(
        server_time(&array(vec![bulk("1"), bulk("2500")])),
        Some(1002)
    );
}

#[test]
fn an_older_servers_stream_info_leaves_the_7_0_fields_out() {
    // Redis 5.0's XINFO STREAM.
    let reply = array(vec![
        bulk("length"),
        Frame::Integer(2),
        bulk("radix-tree-keys"),
        Frame::Integer(1),
        bulk("groups"),
        Frame::Integer(1),
        bulk("last-generated-id"),
        bulk("9-1"),
        bulk("first-entry"),
        array(vec![bulk("3-0"), array(vec![bulk("f"), bulk("v")])]),
        bulk("last-entry"),
        array(vec![bulk("9-1"), array(vec![bulk("f"), bulk("v")])]),
    ]);
    let (meta, groups) = stream_meta(&reply).unwrap();
    assert_eq!(groups, 1);
    assert_eq!(meta.length, 2);
    assert_eq!(meta.last_id, StreamId { ms: 9, seq: 1 });
    assert_eq!(meta.first_id, Some(StreamId { ms: 3, seq: 0 }));
    assert_eq!((meta.max_deleted_id, meta.entries_added), (None, None));
}

#[test]
fn ids_step_past_their_end() {
    let max = StreamId {
        ms: u64::MAX,
        seq: u64::MAX,
    };
    assert_eq!(
        parse_id(b"18446744073709551615-18446744073709551615"),
        Some(max)
    );
    assert_eq!(after(max), None);
    assert_eq!(
        after(StreamId {
            ms: 4,
            seq: u64::MAX
        }),
        Some(StreamId { ms: 5, seq: 0 })
    );
    for bad in [
        &b"1-"[..],
        b"-1",
        b"1",
        b"a-1",
        b"1-+1",
        b"18446744073709551616-0",
    ] {
        assert_eq!(parse_id(bad), None, "{}", escape(bad));
    }
}

#[test]
fn pieces_keep_both_bounds() {
    let items: Vec<usize> = vec![10, 10, 10, 50, 1, 1, 1, 1];
    let pieces = split(items, 3, 25, |n| *n);
    assert_eq!(
        pieces,
        vec![vec![10, 10], vec![10], vec![50], vec![1, 1, 1], vec![1]]
    );
    assert!(split(Vec::<usize>::new(), 3, 25, |n| *n).is_empty());
}

/// A source account without a command it needs: one error naming the command and the key.
#[tokio::test]
async fn a_refused_read_names_the_command_and_the_key() {
    let source = Server::start();
    let mut c = source.conn();
    q(&mut c, &[b"HSET", b"h", b"f", b"v"]);
    q(
        &mut c,
        &[
            b"ACL", b"SETUSER", b"reader", b"on", b">s3cret", b"~*", b"+@all", b"-hscan",
        ],
    );
    let url = format!("redis://reader:s3cret@{}", source.addr());
    let endpoint = Endpoint::parse("source", &url).unwrap();
    let mut conn = Conn::connect(Role::Source, &endpoint).await.unwrap();
    let mut reader = ValueReader::new(Bytes::from_static(b"h"), ValueKind::Hash, 10, 1024);
    let e = reader.next(&mut conn).await.unwrap_err().to_string();
    assert!(e.contains("refused HSCAN of key \"h\": NOPERM"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}
