//! Against a real redis-server: every Record's `dump::payload` equals `DUMP key`, and with
//! tiny thresholds every big value's chunks equal what the server reports. Skips (with a
//! note) when redis-server is not installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_rdb::{Chunk, Event, KeyMeta, Kind, Options, Parser, dump};

#[derive(Debug, Clone, PartialEq)]
enum Reply {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

impl Reply {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Reply::Bulk(Some(b)) => b.clone(),
            Reply::Simple(s) => s.as_bytes().to_vec(),
            Reply::Int(i) => i.to_string().into_bytes(),
            other => panic!("not a string: {other:?}"),
        }
    }
    fn array(&self) -> Vec<Reply> {
        match self {
            Reply::Array(Some(v)) => v.clone(),
            other => panic!("not an array: {other:?}"),
        }
    }
    fn int(&self) -> i64 {
        match self {
            Reply::Int(i) => *i,
            other => panic!("not an int: {other:?}"),
        }
    }
}

struct Server {
    child: Child,
    dir: PathBuf,
    conn: BufReader<TcpStream>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn read_reply(r: &mut BufReader<TcpStream>) -> Reply {
    let mut line = String::new();
    r.read_line(&mut line).expect("read");
    let line = line.trim_end_matches("\r\n");
    let (t, rest) = line.split_at(1);
    match t {
        "+" => Reply::Simple(rest.to_string()),
        "-" => Reply::Error(rest.to_string()),
        ":" => Reply::Int(rest.parse().unwrap()),
        "$" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Reply::Bulk(None);
            }
            let mut b = vec![0; n as usize + 2];
            r.read_exact(&mut b).unwrap();
            b.truncate(n as usize);
            Reply::Bulk(Some(b))
        }
        "*" => {
            let n: i64 = rest.parse().unwrap();
            if n < 0 {
                return Reply::Array(None);
            }
            Reply::Array(Some((0..n).map(|_| read_reply(r)).collect()))
        }
        _ => panic!("bad reply {line:?}"),
    }
}

impl Server {
    fn start() -> Option<Self> {
        if Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_err()
        {
            eprintln!("NOTE: redis-server not found; skipping the real-server test");
            return None;
        }
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir =
            std::env::temp_dir().join(format!("ferry-rdb-test-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .arg("--dir")
            .arg(&dir)
            .args(["--dbfilename", "x.rdb", "--enable-debug-command", "yes"])
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let start = Instant::now();
        let stream = loop {
            match TcpStream::connect(("127.0.0.1", port)) {
                Ok(s) => break s,
                Err(_) if start.elapsed() < Duration::from_secs(10) => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => panic!("redis-server did not start: {e}"),
            }
        };
        Some(Server {
            child,
            dir,
            conn: BufReader::new(stream),
        })
    }

    fn cmd<A: AsRef<[u8]>>(&mut self, args: &[A]) -> Reply {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            let a = a.as_ref();
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.conn.get_mut().write_all(&out).unwrap();
        let r = read_reply(&mut self.conn);
        if let Reply::Error(e) = &r {
            panic!("{:?}: {e}", String::from_utf8_lossy(args[0].as_ref()));
        }
        r
    }

    fn c(&mut self, line: &str) -> Reply {
        let args: Vec<&str> = line.split(' ').collect();
        self.cmd(&args)
    }
}

fn load(s: &mut Server) {
    s.c("FLUSHALL");
    // Strings: raw, int-encoded (8/16/32 bit), int too wide, empty, binary key, LZF, long.
    s.c("SET str hello");
    for (k, v) in [
        ("i8", "-7"),
        ("i16", "1234"),
        ("i32", "-123456789"),
        ("i64", "9999999999"),
    ] {
        s.cmd(&[b"SET", k.as_bytes(), v.as_bytes()]);
    }
    s.cmd(&[&b"SET"[..], b"empty", b""]);
    s.cmd(&[&b"SET"[..], b"bin\x00\xffkey", b"\x00\x01\x02\xfe\xff"]);
    s.cmd(&[b"SET".to_vec(), b"lzf".to_vec(), b"abcdefgh".repeat(200)]);
    let noisy: Vec<u8> = (0..5000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    s.cmd(&[b"SET".to_vec(), b"noisy".to_vec(), noisy]);
    s.c("PEXPIREAT str 4102444800123");
    s.c("EXPIRE i16 100000");
    // Lists: small listpack, big quicklist, PLAIN nodes.
    s.c("RPUSH list_small a b 1 2 -3");
    let mut args = vec!["RPUSH".to_string(), "list_big".to_string()];
    args.extend((0..2000).map(|i| format!("item-{i}")));
    s.cmd(&args);
    s.c("DEBUG QUICKLIST-PACKED-THRESHOLD 100");
    s.cmd(&[
        b"RPUSH".to_vec(),
        b"list_plain".to_vec(),
        vec![b'x'; 200],
        b"y".to_vec(),
        vec![b'z'; 300],
    ]);
    // Sets: intset, hashtable (ints and strings).
    s.c("SADD set_int 1 2 3 -5 70000 5000000000");
    s.c("SADD set_str a b c");
    let mut args = vec!["SADD".to_string(), "set_big".to_string()];
    args.extend((0..1000).map(|i| i.to_string()));
    s.cmd(&args);
    let mut args = vec!["SADD".to_string(), "set_big_str".to_string()];
    args.extend((0..300).map(|i| format!("m{i}")));
    s.cmd(&args);
    // Sorted sets: listpack and skiplist.
    s.c("ZADD zset_small 1.5 a 2 b -inf c 0.1 d");
    let mut args = vec!["ZADD".to_string(), "zset_big".to_string()];
    for i in 0..300 {
        args.push(format!("{}", i as f64 * 0.37 - 20.0));
        args.push(format!("m{i}"));
    }
    s.cmd(&args);
    // Hashes: listpack and hashtable.
    s.c("HSET hash_small f1 v1 f2 2 f3 -30");
    s.cmd(&[
        b"HSET".to_vec(),
        b"hash_long".to_vec(),
        b"f".to_vec(),
        vec![b'v'; 100],
    ]);
    let mut args = vec!["HSET".to_string(), "hash_big".to_string()];
    for i in 0..300 {
        args.push(format!("f{i}"));
        args.push(format!("v{i}"));
    }
    s.cmd(&args);
    // Streams: one with groups, PEL and a deleted entry; one small.
    for i in 0..60 {
        if i % 7 == 3 {
            s.cmd(&["XADD", "stream", "*", "other", &i.to_string()]);
        } else {
            s.cmd(&["XADD", "stream", "*", "a", &i.to_string(), "b", "x"]);
        }
    }
    let ids = s.c("XRANGE stream - + COUNT 3").array();
    let id2 = ids[2].array()[0].bytes();
    s.cmd(&[b"XDEL".to_vec(), b"stream".to_vec(), id2]);
    s.c("XGROUP CREATE stream g1 0");
    s.c("XGROUP CREATE stream g2 $");
    s.c("XGROUP CREATE stream g3 0");
    s.c("XREADGROUP GROUP g1 c1 COUNT 5 STREAMS stream >");
    s.c("XREADGROUP GROUP g1 c2 COUNT 3 STREAMS stream >");
    s.c("XREADGROUP GROUP g3 c9 COUNT 1 STREAMS stream >");
    let first = s.c("XRANGE stream - + COUNT 1").array()[0].array()[0].bytes();
    s.cmd(&[b"XACK".to_vec(), b"stream".to_vec(), b"g1".to_vec(), first]);
    s.c("XADD stream_small 5-1 f v");
    s.cmd(&[
        "FUNCTION",
        "LOAD",
        "#!lua name=mylib\nredis.register_function('myfunc', function(keys, args) return 1 end)",
    ]);
    s.c("SELECT 1");
    s.c("SET k1 v1");
    s.c("HSET h1 a b");
    s.c("SELECT 2");
    s.c("RPUSH l2 x y");
    s.c("SET k2 v2 EX 1000");
    s.c("SELECT 0");
}

fn parse(data: &[u8], options: Options) -> Vec<Event> {
    let mut p = Parser::new(data, options).expect("header");
    let mut out = Vec::new();
    while let Some(e) = p.next_event().unwrap_or_else(|e| panic!("{e}")) {
        out.push(e);
    }
    assert!(matches!(out.last(), Some(Event::End { checksum: Some(c) }) if *c != 0));
    out
}

fn sorted<T: Ord>(mut v: Vec<T>) -> Vec<T> {
    v.sort();
    v
}

fn check_big(s: &mut Server, meta: &KeyMeta, chunks: &[Chunk]) {
    s.cmd(&["SELECT", &meta.db.to_string()]);
    let key = meta.key.to_vec();
    let q = |s: &mut Server, c: &[&[u8]]| s.cmd(c);
    match meta.type_byte.kind().unwrap() {
        Kind::String => {
            let got: Vec<u8> = chunks
                .iter()
                .flat_map(|c| {
                    if let Chunk::StringPart(b) = c {
                        b.to_vec()
                    } else {
                        panic!("{c:?}")
                    }
                })
                .collect();
            assert_eq!(got, q(s, &[b"GET", &key]).bytes());
            assert!(chunks.len() > 1, "a big string comes in parts");
        }
        Kind::List => {
            let got: Vec<Vec<u8>> = chunks
                .iter()
                .flat_map(|c| {
                    if let Chunk::ListItems(v) = c {
                        v.clone()
                    } else {
                        panic!()
                    }
                })
                .map(|b| b.to_vec())
                .collect();
            let want: Vec<Vec<u8>> = q(s, &[b"LRANGE", &key, b"0", b"-1"])
                .array()
                .iter()
                .map(Reply::bytes)
                .collect();
            assert_eq!(got, want);
        }
        Kind::Set => {
            let got: Vec<Vec<u8>> = chunks
                .iter()
                .flat_map(|c| {
                    if let Chunk::SetMembers(v) = c {
                        v.clone()
                    } else {
                        panic!()
                    }
                })
                .map(|b| b.to_vec())
                .collect();
            let want: Vec<Vec<u8>> = q(s, &[b"SMEMBERS", &key])
                .array()
                .iter()
                .map(Reply::bytes)
                .collect();
            assert_eq!(sorted(got), sorted(want));
        }
        Kind::ZSet => {
            let mut got: Vec<(Vec<u8>, f64)> = chunks
                .iter()
                .flat_map(|c| {
                    if let Chunk::ZSetEntries(v) = c {
                        v.clone()
                    } else {
                        panic!()
                    }
                })
                .map(|(m, s)| (m.to_vec(), s))
                .collect();
            let r = q(s, &[b"ZRANGE", &key, b"0", b"-1", b"WITHSCORES"]).array();
            let mut want: Vec<(Vec<u8>, f64)> = r
                .chunks(2)
                .map(|p| {
                    let score = String::from_utf8(p[1].bytes())
                        .unwrap()
                        .parse::<f64>()
                        .unwrap();
                    (p[0].bytes(), score)
                })
                .collect();
            got.sort_by(|a, b| a.0.cmp(&b.0));
            want.sort_by(|a, b| a.0.cmp(&b.0));
            assert_eq!(got, want);
        }
        Kind::Hash => {
            let got: Vec<(Vec<u8>, Vec<u8>)> = chunks
                .iter()
                .flat_map(|c| {
                    if let Chunk::HashFields(v) = c {
                        v.clone()
                    } else {
                        panic!()
                    }
                })
                .map(|f| (f.field.to_vec(), f.value.to_vec()))
                .collect();
            let r = q(s, &[b"HGETALL", &key]).array();
            let want: Vec<(Vec<u8>, Vec<u8>)> =
                r.chunks(2).map(|p| (p[0].bytes(), p[1].bytes())).collect();
            assert_eq!(sorted(got), sorted(want));
        }
        Kind::Stream => check_stream(s, &key, chunks),
        Kind::Module => panic!("no modules here"),
    }
}

fn check_stream(s: &mut Server, key: &[u8], chunks: &[Chunk]) {
    let mut entries = Vec::new();
    let mut meta = None;
    let mut groups = Vec::new();
    let mut pending: Vec<(Bytes, ferry_rdb::PendingEntry)> = Vec::new();
    for c in chunks {
        match c {
            Chunk::StreamEntries(e) => entries.extend(e.iter().cloned()),
            Chunk::StreamMeta(m) => meta = Some(m.clone()),
            Chunk::StreamGroup(g) => groups.push(g.clone()),
            Chunk::StreamPending { group, entries } => {
                pending.extend(entries.iter().map(|e| (group.clone(), e.clone())))
            }
            other => panic!("{other:?}"),
        }
    }
    let want = s.cmd(&[&b"XRANGE"[..], key, b"-", b"+"]).array();
    assert_eq!(entries.len(), want.len());
    for (e, w) in entries.iter().zip(&want) {
        let w = w.array();
        assert_eq!(e.id.to_string().into_bytes(), w[0].bytes());
        let fields: Vec<Vec<u8>> = e
            .fields
            .iter()
            .flat_map(|(f, v)| [f.to_vec(), v.to_vec()])
            .collect();
        let wf: Vec<Vec<u8>> = w[1].array().iter().map(Reply::bytes).collect();
        assert_eq!(fields, wf);
    }
    let meta = meta.expect("stream meta");
    assert_eq!(meta.length as i64, s.cmd(&[&b"XLEN"[..], key]).int());
    let info = s.cmd(&[&b"XINFO"[..], b"STREAM", key]).array();
    let field = |name: &str| {
        let i = info
            .iter()
            .position(|r| r.bytes() == name.as_bytes())
            .unwrap();
        info[i + 1].clone()
    };
    assert_eq!(
        meta.last_id.to_string().into_bytes(),
        field("last-generated-id").bytes()
    );
    assert_eq!(
        meta.entries_added.map(|n| n as i64),
        Some(field("entries-added").int())
    );
    let want_groups = s.cmd(&[&b"XINFO"[..], b"GROUPS", key]).array();
    assert_eq!(groups.len(), want_groups.len());
    for (g, w) in groups.iter().zip(&want_groups) {
        let w = w.array();
        let get = |name: &str| {
            let i = w
                .iter()
                .position(|r| matches!(r, Reply::Bulk(Some(b)) if b == name.as_bytes()))
                .unwrap();
            w[i + 1].clone()
        };
        assert_eq!(g.name.to_vec(), get("name").bytes());
        assert_eq!(g.consumers.len() as i64, get("consumers").int());
        assert_eq!(
            g.last_id.to_string().into_bytes(),
            get("last-delivered-id").bytes()
        );
        assert_eq!(
            g.entries_read.map(|n| n as i64),
            match get("entries-read") {
                Reply::Int(i) => Some(i),
                _ => None,
            }
        );
        let mine: Vec<_> = pending
            .iter()
            .filter(|(gr, _)| *gr == g.name)
            .map(|(_, p)| p)
            .collect();
        assert_eq!(mine.len() as i64, get("pending").int());
        let xp = s
            .cmd(&[&b"XPENDING"[..], key, &g.name, b"-", b"+", b"1000"])
            .array();
        assert_eq!(xp.len(), mine.len());
        for (p, w) in mine.iter().zip(&xp) {
            let w = w.array();
            assert_eq!(p.id.to_string().into_bytes(), w[0].bytes());
            assert_eq!(p.consumer.to_vec(), w[1].bytes());
            assert_eq!(p.delivery_count as i64, w[3].int());
        }
    }
}

#[test]
fn real_server_round_trip() {
    let Some(mut s) = Server::start() else { return };
    load(&mut s);
    s.c("SAVE");
    let data = std::fs::read(s.dir.join("x.rdb")).unwrap();

    // Default thresholds: every key is a Record whose payload equals DUMP.
    let events = parse(&data, Options::default());
    let mut types = std::collections::BTreeSet::new();
    let mut records = 0;
    let mut dbs = std::collections::BTreeSet::new();
    for e in &events {
        match e {
            Event::Key(r) => {
                records += 1;
                types.insert(r.meta.type_byte.0);
                dbs.insert(r.meta.db);
                s.cmd(&["SELECT", &r.meta.db.to_string()]);
                let want = s.cmd(&[&b"DUMP"[..], &r.meta.key]).bytes();
                let got = dump::payload(r.meta.type_byte, &r.raw, 10);
                assert!(got[..] == want[..], "DUMP differs for {:?}", r.meta.key);
                let (t, raw, v) = dump::validate_payload(&want).unwrap();
                assert_eq!((t, raw, v), (r.meta.type_byte, &r.raw[..], 10));
                let pttl = s.cmd(&[&b"PTTL"[..], &r.meta.key]).int();
                assert_eq!(pttl > 0, r.meta.expire_ms.is_some(), "{:?}", r.meta.key);
            }
            Event::BigValueStart(m) => panic!("unexpected big value {:?}", m.key),
            _ => {}
        }
    }
    let expected_keys: i64 = (0..3)
        .map(|db| {
            s.cmd(&["SELECT", &db.to_string()]);
            s.c("DBSIZE").int()
        })
        .sum();
    assert_eq!(records, expected_keys);
    assert_eq!(dbs.into_iter().collect::<Vec<_>>(), vec![0, 1, 2]);
    // string, set, zset2, hash, intset, quicklist2, listpack hash/zset, stream3? (7.0: 19)
    for t in [0u8, 2, 5, 4, 11, 18, 16, 17, 19] {
        assert!(types.contains(&t), "type {t} missing: {types:?}");
    }
    let str_meta = events.iter().find_map(|e| match e {
        Event::Key(r) if &r.meta.key[..] == b"str" => Some(r.meta.clone()),
        _ => None,
    });
    assert_eq!(str_meta.unwrap().expire_ms, Some(4_102_444_800_123));
    let func = events.iter().find_map(|e| {
        if let Event::Function { code } = e {
            Some(code.clone())
        } else {
            None
        }
    });
    assert!(func.unwrap().starts_with(b"#!lua name=mylib"));

    // Tiny thresholds: big values' chunks equal what the server reports.
    let tiny = Options {
        big_value_elements: 10,
        big_value_bytes: 1024,
        chunk_elements: 7,
        chunk_bytes: 512,
        ..Options::default()
    };
    let events = parse(&data, tiny);
    let mut cur: Option<(KeyMeta, Vec<Chunk>)> = None;
    let mut big_kinds = std::collections::BTreeSet::new();
    let mut small = 0;
    for e in events {
        match e {
            Event::BigValueStart(m) => cur = Some((m, Vec::new())),
            Event::BigValueChunk(c) => cur.as_mut().unwrap().1.push(c),
            Event::BigValueEnd => {
                let (meta, chunks) = cur.take().unwrap();
                big_kinds.insert(format!("{:?}", meta.type_byte.kind().unwrap()));
                assert!(chunks.iter().all(|c| match c {
                    Chunk::ListItems(v) | Chunk::SetMembers(v) => v.len() <= 7,
                    Chunk::StringPart(b) => b.len() <= 512,
                    _ => true,
                }));
                check_big(&mut s, &meta, &chunks);
            }
            Event::Key(r) => {
                small += 1;
                assert!(cur.is_none());
                s.cmd(&["SELECT", &r.meta.db.to_string()]);
                let want = s.cmd(&[&b"DUMP"[..], &r.meta.key]).bytes();
                assert!(dump::payload(r.meta.type_byte, &r.raw, 10)[..] == want[..]);
            }
            _ => {}
        }
    }
    assert!(small > 5);
    for k in ["String", "List", "Set", "ZSet", "Hash", "Stream"] {
        assert!(big_kinds.contains(k), "no big {k}: {big_kinds:?}");
    }
}

/// Elements in parts put back as one-element chunks of their kind, to check like any chunk.
fn reassemble(chunks: Vec<Chunk>, in_parts: &mut usize) -> Vec<Chunk> {
    let mut out = Vec::new();
    let mut part = Vec::new();
    let mut field = None;
    for c in chunks {
        match c {
            Chunk::ElementPart(b) => part.extend_from_slice(&b),
            Chunk::ElementEnd(e) => {
                *in_parts += 1;
                let b = Bytes::from(std::mem::take(&mut part));
                out.push(match e {
                    ferry_rdb::Element::ListItem => Chunk::ListItems(vec![b]),
                    ferry_rdb::Element::SetMember => Chunk::SetMembers(vec![b]),
                    ferry_rdb::Element::ZSetMember { score } => {
                        Chunk::ZSetEntries(vec![(b, score)])
                    }
                    ferry_rdb::Element::HashField => {
                        field = Some(b);
                        continue;
                    }
                    ferry_rdb::Element::HashValue {
                        field: f,
                        expire_ms,
                    } => Chunk::HashFields(vec![ferry_rdb::HashField {
                        field: f.or_else(|| field.take()).expect("its field"),
                        value: b,
                        expire_ms,
                    }]),
                });
            }
            other => out.push(other),
        }
    }
    assert!(part.is_empty() && field.is_none(), "an element left open");
    out
}

/// With a tiny element threshold, elements of the server's own snapshot come in parts (the
/// items of PLAIN list nodes; the listpack nodes of a long list, stored LZF-compressed, read
/// entry by entry), and put together they are what the server holds.
#[test]
fn real_server_elements_in_parts() {
    let Some(mut s) = Server::start() else { return };
    load(&mut s);
    s.c("SAVE");
    let data = std::fs::read(s.dir.join("x.rdb")).unwrap();
    let opts = Options {
        big_value_elements: 2,
        big_value_bytes: 1024,
        chunk_elements: 7,
        chunk_bytes: 40,
        huge_element_bytes: 64,
        ..Options::default()
    };
    let mut cur: Option<(KeyMeta, Vec<Chunk>)> = None;
    let mut in_parts = 0;
    let mut lists = 0;
    for e in parse(&data, opts) {
        match e {
            Event::BigValueStart(m) => cur = Some((m, Vec::new())),
            Event::BigValueChunk(c) => {
                if let Chunk::ElementPart(b) = &c {
                    assert!(b.len() <= 40);
                }
                cur.as_mut().unwrap().1.push(c)
            }
            Event::BigValueEnd => {
                let (meta, chunks) = cur.take().unwrap();
                lists += usize::from(meta.type_byte.kind() == Some(Kind::List));
                check_big(&mut s, &meta, &reassemble(chunks, &mut in_parts));
            }
            _ => {}
        }
    }
    assert!(lists >= 2, "{lists} big lists");
    // list_plain's two long items.
    assert!(in_parts >= 2, "{in_parts} elements in parts");
}
