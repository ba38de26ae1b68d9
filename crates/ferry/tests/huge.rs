//! Huge values through every path that streams them in pieces: a big LZF-compressed string in
//! the snapshot (decompressed a chunk at a time), a big plain one, a list of big elements,
//! and big values written in the command stream. Checked key by key; the memory these paths
//! take is measured by `scripts/bench --huge-values`, not here.

mod common;

use std::time::Duration;

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};

/// `n` bytes of text from a small vocabulary: LZF compresses it to about half, so the
/// snapshot stores it compressed and still far above the big-value threshold.
fn words(n: usize, seed: u64) -> Vec<u8> {
    const VOCAB: [&str; 16] = [
        "ferry", "redis", "stream", "value", "huge", "chunk", "window", "literal", "offset",
        "replica", "master", "append", "snapshot", "bounded", "memory", "piece",
    ];
    let mut x = seed;
    let mut out = Vec::with_capacity(n + 16);
    while out.len() < n {
        x = x
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        out.extend_from_slice(VOCAB[(x >> 60) as usize].as_bytes());
        out.push(b' ' + ((x >> 20) % 8) as u8);
    }
    out.truncate(n);
    out
}

/// `n` bytes LZF cannot compress (the snapshot stores them plain).
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

/// Keys whose elements are each far over the element threshold (1 MiB): list items between
/// small ones (listpack nodes from Redis 7, ziplist nodes before), a hash value, a hash field,
/// both, a set member and a sorted set member, as text (the snapshot stores it LZF-compressed)
/// and as noise (stored plain). With `field_ttl`, a hash whose fields have their own expiries.
fn fill_huge_elements(server: &Server, field_ttl: bool) {
    let mut c = server.conn();
    let mut p = redis::pipe();
    p.cmd("RPUSH").arg("elem:list").arg("a").arg("b").ignore();
    p.cmd("RPUSH")
        .arg("elem:list")
        .arg(words(3 << 20, 31))
        .arg("c")
        .arg(noise(2 << 20, 32))
        .arg("d")
        .arg(words(5 << 20, 33))
        .ignore();
    p.cmd("PEXPIRE").arg("elem:list").arg(900_000).ignore();
    p.cmd("HSET")
        .arg("elem:hvalue")
        .arg("f1")
        .arg("v1")
        .arg("f2")
        .arg(words(3 << 20, 34))
        .arg("f3")
        .arg(noise(2 << 20, 35))
        .ignore();
    p.cmd("HSET")
        .arg("elem:hfield")
        .arg(noise(2 << 20, 36))
        .arg("v")
        .arg(words(2 << 20, 37))
        .arg("")
        .arg("f")
        .arg("v2")
        .ignore();
    p.cmd("HSET")
        .arg("elem:hboth")
        .arg(words(3 << 20, 38))
        .arg(noise(3 << 20, 39))
        .ignore();
    p.cmd("SADD")
        .arg("elem:set")
        .arg("m1")
        .arg(words(4 << 20, 40))
        .arg(noise(2 << 20, 41))
        .arg("42")
        .ignore();
    p.cmd("ZADD")
        .arg("elem:zset")
        .arg(1.5)
        .arg("m")
        .arg(-2.25)
        .arg(words(3 << 20, 42))
        .arg("+inf")
        .arg(noise(2 << 20, 43))
        .ignore();
    if field_ttl {
        p.cmd("HSET")
            .arg("elem:httl")
            .arg("a")
            .arg(words(3 << 20, 44))
            .arg("b")
            .arg("small")
            .arg(noise(2 << 20, 45))
            .arg(noise(2 << 20, 46))
            .ignore();
        p.cmd("HPEXPIRE")
            .arg("elem:httl")
            .arg(800_000)
            .arg("FIELDS")
            .arg(2)
            .arg("a")
            .arg("b")
            .ignore();
    }
    p.cmd("SET").arg("small").arg("x").ignore();
    p.query::<()>(&mut c).unwrap();
}

/// Temporary element keys left on `server` (there should be none).
fn element_keys(server: &Server) -> Vec<Vec<u8>> {
    redis::cmd("KEYS")
        .arg("__ferry:elem:*")
        .query(&mut server.conn())
        .unwrap()
}

/// `APPEND`s a server has run: only elements in parts (after their first 256 KiB) use them
/// in these copies.
fn appends(server: &Server) -> u64 {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query(&mut server.conn())
        .unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_append:calls="))
        .and_then(|v| v.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

/// A full copy from `source` into `target`, then key by key equal, every huge element through
/// a temporary key (each of 2 MiB or more takes at least 7 `APPEND`s), none left behind.
fn copy_huge_elements(
    source: &Server,
    (url, target): (String, compare::Side),
    left: &[&Server],
    label: &str,
) {
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &url, "--full-only"]);
    let code = ferry.wait(Duration::from_secs(300));
    assert!(code.success(), "{label}: {code}; log:\n{}", ferry.log());
    compare::compare_sides(&compare::Side::from(source), &target, &Options::default())
        .unwrap_or_else(|r| panic!("{label}: {r}\nferry log:\n{}", ferry.log()));
    for s in left {
        assert_eq!(
            element_keys(s),
            Vec::<Vec<u8>>::new(),
            "{label}: left behind"
        );
    }
    let appended: u64 = left.iter().map(|s| appends(s)).sum();
    assert!(appended >= 12 * 7, "{label}: {appended} APPENDs");
}

/// Elements of 2-5 MiB, each written through a temporary key in 256 KiB pieces: a snapshot
/// of Redis 7 (listpack quicklist nodes), of Redis 6.2 (ziplist nodes) and of Redis 8 (hash
/// field expiries), into a standalone target (its snapshot writes in fenced transactions),
/// into a cluster (each temporary key in its key's slot), and Redis 7's into Redis 5.0.
#[test]
fn huge_elements_in_the_snapshot() {
    // Hashes and sorted sets kept as one listpack (ziplist before 7.0) however long their
    // values, where a source is configured so.
    const LISTPACK: &[&str] = &[
        "--hash-max-listpack-value",
        "67108864",
        "--zset-max-listpack-value",
        "67108864",
    ];
    const ZIPLIST: &[&str] = &[
        "--hash-max-ziplist-value",
        "67108864",
        "--zset-max-ziplist-value",
        "67108864",
    ];
    type Source = (String, Option<std::path::PathBuf>, &'static [&'static str]);
    let mut sources: Vec<Source> = vec![
        ("redis-7.0".into(), None, &[]),
        ("redis-7.0 with listpack values".into(), None, LISTPACK),
    ];
    for name in ["redis-6.2.14", "redis-8.0.2"] {
        if let Some((_, bin)) = testkit::versions::cached(name) {
            sources.push((name.into(), Some(bin.clone()), &[]));
            if name == "redis-6.2.14" {
                sources.push((format!("{name} with ziplist values"), Some(bin), ZIPLIST));
            }
        }
    }
    for (label, bin, config) in sources {
        let start = |args: &[&str]| match &bin {
            Some(bin) => Server::start_bin(bin, args),
            None => Server::start_with(args),
        };
        let source = start(config);
        let field_ttl = source.version() >= (7, 4, 0);
        fill_huge_elements(&source, field_ttl);
        if !config.is_empty() {
            let encoding: String = redis::cmd("OBJECT")
                .arg("ENCODING")
                .arg("elem:hboth")
                .query(&mut source.conn())
                .unwrap();
            assert!(
                ["listpack", "ziplist"].contains(&encoding.as_str()),
                "{label}: {encoding}"
            );
        }
        // A target of the same version (older ones drop field expiries, and say so).
        let target = start(&[]);
        copy_huge_elements(
            &source,
            (target.url(), compare::Side::from(&target)),
            &[&target],
            &format!("{label} into standalone"),
        );
        if field_ttl {
            continue;
        }
        let cluster = testkit::Cluster::start(3, 0);
        copy_huge_elements(
            &source,
            (cluster.url(), compare::Side::from(&cluster)),
            &cluster.masters(),
            &format!("{label} into a cluster"),
        );
        // The oldest target: its Lua and RESTORE-less rewrite of the newer snapshot.
        if bin.is_none()
            && let Some((_, old)) = testkit::versions::cached("redis-5.0.6")
        {
            let target = Server::start_bin(&old, &[]);
            copy_huge_elements(
                &source,
                (target.url(), compare::Side::from(&target)),
                &[&target],
                &format!("{label} into redis-5.0.6"),
            );
        }
    }
}

/// A listpack node holding one huge entry, its length damaged in the file (the CRC made
/// right again): refused while the node is read in pieces, naming the key and the entry's
/// byte, and the target never gets the key.
#[test]
fn a_damaged_huge_list_entry_is_refused_with_key_and_offset() {
    let source = Server::start();
    let item = noise(2 << 20, 50);
    redis::cmd("RPUSH")
        .arg("elem:bad")
        .arg("a")
        .arg(&item[..])
        .arg("z")
        .query::<()>(&mut source.conn())
        .unwrap();
    redis::cmd("SAVE").query::<()>(&mut source.conn()).unwrap();
    let mut file = std::fs::read(source.dir().join("dump.rdb")).unwrap();
    let data = file
        .windows(64)
        .position(|w| w == &item[..64])
        .expect("the item stored plain");
    // A listpack string entry of 32-bit length: 0xF0, 4 bytes of length, the data.
    let entry = data - 5;
    assert_eq!(file[entry], 0xF0, "a 32-bit listpack string");
    file[entry + 1..data].copy_from_slice(&((item.len() + 1_000_000) as u32).to_le_bytes());
    let end = file.len() - 8;
    let crc = ferry_rdb::crc64(&file[..end]);
    file[end..].copy_from_slice(&crc.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.rdb");
    std::fs::write(&path, &file).unwrap();

    let target = Server::start();
    let mut ferry = Ferry::start(&[
        "--source",
        path.to_str().unwrap(),
        "--target",
        &target.url(),
    ]);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert_eq!(code.code(), Some(1), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("corrupt snapshot: listpack entry runs past its end")
            && line.contains(&format!("in key \"elem:bad\" in db 0 at byte {entry} ")),
        "{line}"
    );
    assert!(!log.contains("panicked"), "{log}");
    let n: i64 = redis::cmd("EXISTS")
        .arg("elem:bad")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(n, 0);
}

#[test]
fn huge_values_in_the_snapshot_and_the_stream() {
    let source = Server::start();
    let target = Server::start();
    {
        let mut c = source.conn();
        let mut p = redis::pipe();
        p.cmd("SET").arg("huge:lzf").arg(words(3 << 20, 1)).ignore();
        p.cmd("SET")
            .arg("huge:repeat")
            .arg(b"abcdefgh".repeat(3 << 17))
            .ignore();
        p.cmd("SET")
            .arg("huge:plain")
            .arg(noise(3 << 20, 2))
            .ignore();
        for i in 0..8 {
            p.cmd("RPUSH")
                .arg("huge:list")
                .arg(words(512 << 10, 10 + i))
                .ignore();
        }
        p.cmd("SET").arg("small").arg("x").ignore();
        p.query::<()>(&mut c).unwrap();
    }
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--big-value-bytes",
        "262144",
    ]);
    let st = ferry.wait_status(Duration::from_secs(180), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    // huge:repeat compresses below the threshold and goes whole, as RESTORE.
    assert_eq!(
        st["big_keys"], 3,
        "lzf, plain and list should be chunked: {st}"
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));

    {
        let mut c = source.conn();
        let mut p = redis::pipe();
        p.cmd("SET")
            .arg("stream:lzf")
            .arg(words(3 << 20, 3))
            .ignore();
        p.cmd("SET")
            .arg("stream:plain")
            .arg(noise(3 << 20, 4))
            .ignore();
        p.cmd("APPEND")
            .arg("stream:plain")
            .arg(noise(1 << 20, 5))
            .ignore();
        p.cmd("RPUSH")
            .arg("huge:list")
            .arg(noise(2 << 20, 6))
            .ignore();
        // SETs with options after the value (Redis 7 propagates an expiry as PXAT): in pieces
        // too, the expiry given once the options are in.
        p.cmd("SET")
            .arg("stream:ex")
            .arg(noise(2 << 20, 7))
            .arg("EX")
            .arg(1000)
            .ignore();
        p.cmd("SET")
            .arg("stream:keep")
            .arg("x")
            .arg("EX")
            .arg(2000)
            .ignore();
        p.cmd("SET")
            .arg("stream:keep")
            .arg(noise(2 << 20, 8))
            .arg("KEEPTTL")
            .ignore();
        p.cmd("SET")
            .arg("stream:drop")
            .arg("x")
            .arg("EX")
            .arg(3000)
            .ignore();
        p.cmd("SET")
            .arg("stream:drop")
            .arg(noise(2 << 20, 9))
            .arg("XX")
            .arg("GET")
            .ignore();
        p.query::<()>(&mut c).unwrap();
    }
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let mut t = target.conn();
    for (key, lo, hi) in [
        ("stream:ex", 990_000, 1_000_000),
        ("stream:keep", 1_990_000, 2_000_000),
        ("stream:drop", -1, -1),
    ] {
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut t).unwrap();
        assert!((lo..=hi).contains(&ttl), "{key}: PTTL {ttl} on the target");
    }
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    let len: usize = redis::cmd("STRLEN")
        .arg("stream:plain")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(len, 4 << 20, "the APPEND was applied once");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// Big APPENDs go in pieces inside one transaction with their checkpoint: ferry killed while
/// they are written and started again applies each exactly once, wherever the kill lands.
#[test]
fn big_appends_in_pieces_survive_a_kill_exactly_once() {
    // A backlog that holds all the APPENDs: the restart continues from the checkpoint.
    let source = Server::start_with(&["--repl-backlog-size", "128mb"]);
    let target = Server::start();
    redis::cmd("SET")
        .arg("log")
        .arg("start")
        .query::<()>(&mut source.conn())
        .unwrap();
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut c = source.conn();
    let mut want = 5usize;
    for i in 0..12u64 {
        let piece = noise(3 << 20, 100 + i);
        want += piece.len();
        redis::cmd("APPEND")
            .arg("log")
            .arg(piece)
            .query::<()>(&mut c)
            .unwrap();
        if i == 5 {
            // Mid-way through the writes (where exactly does not matter to what is checked).
            ferry.kill();
            ferry = Ferry::start_with_status(&args);
        }
    }
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let len: usize = redis::cmd("STRLEN")
        .arg("log")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(len, want, "each APPEND applied exactly once");
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// The pieces of a big SET and APPEND into a cluster target: each transaction in its key's
/// slot, the values equal key by key.
#[test]
fn big_writes_in_pieces_into_a_cluster() {
    let source = Server::start();
    let target = testkit::Cluster::start(3, 0);
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut c = source.conn();
    let mut p = redis::pipe();
    for i in 0..4u64 {
        let key = format!("big:{i}");
        p.cmd("SET").arg(&key).arg(words(2 << 20, i)).ignore();
        p.cmd("APPEND").arg(&key).arg(noise(1 << 20, i)).ignore();
        p.cmd("MULTI").ignore();
        p.cmd("APPEND")
            .arg(&key)
            .arg(noise(1 << 20, 10 + i))
            .ignore();
        p.cmd("INCR").arg(format!("n{{{key}}}")).ignore();
        p.cmd("EXEC").ignore();
    }
    p.query::<()>(&mut c).unwrap();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let n = compare::eventually_equal_sides(
        &compare::Side::from(&source),
        &compare::Side::from(&target),
        &Options::default(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(n, 8);
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}
