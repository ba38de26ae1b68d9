//! Huge values through every path that streams them in pieces: a big LZF-compressed string in
//! the snapshot (decompressed a chunk at a time), a big plain one, a list of big elements,
//! and big values written in the command stream. Checked key by key; the memory these paths
//! take is measured by `scripts/bench --huge-values`, not here.

mod common;

use std::time::Duration;

use common::{Ferry, master_offset, signal, wait_caught_up};
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

/// Where the huge-argument tests write: one server or a cluster.
enum Target {
    One(Server),
    Cluster(testkit::Cluster),
}

impl Target {
    fn url(&self) -> String {
        match self {
            Target::One(s) => s.url(),
            Target::Cluster(c) => c.url(),
        }
    }

    fn side(&self) -> compare::Side {
        match self {
            Target::One(s) => compare::Side::from(s),
            Target::Cluster(c) => compare::Side::from(c),
        }
    }

    /// APPENDs the target ran: the workload sends none, so these are the pieces.
    fn appends(&self) -> u64 {
        let masters: Vec<&Server> = match self {
            Target::One(s) => vec![s],
            Target::Cluster(c) => c.masters(),
        };
        masters
            .into_iter()
            .map(|m| {
                let stats = m.info("commandstats");
                stats.get("cmdstat_append").map_or(0, |v| {
                    v.split(',')
                        .find_map(|f| f.strip_prefix("calls="))
                        .and_then(|n| n.parse().ok())
                        .unwrap_or(0)
                })
            })
            .sum()
    }

    /// ferry's temporary keys left anywhere (none should be, once a command is applied).
    fn leftovers(&self) -> Vec<String> {
        let masters: Vec<&Server> = match self {
            Target::One(s) => vec![s],
            Target::Cluster(c) => c.masters(),
        };
        masters
            .into_iter()
            .flat_map(|m| {
                redis::cmd("KEYS")
                    .arg("__ferry:arg:*")
                    .query::<Vec<String>>(&mut m.conn())
                    .unwrap()
            })
            .collect()
    }
}

/// Writes every command the huge-argument tests cover, with 2-3 MiB arguments; returns how
/// many elements `huge:lpush` must hold (the non-idempotent write, counted exactly).
fn huge_argument_workload(source: &Server) -> usize {
    let mut c = source.conn();
    // A DUMP of a big list, taken from a real server, to RESTORE through the stream.
    redis::cmd("RPUSH")
        .arg("dumped")
        .arg(noise(3 << 20, 40))
        .arg(words(1 << 20, 41))
        .query::<()>(&mut c)
        .unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("dumped").query(&mut c).unwrap();
    let mut p = redis::pipe();
    p.cmd("RPUSH")
        .arg("huge:rpush")
        .arg(noise(2 << 20, 20))
        .arg("small")
        .ignore();
    p.cmd("LPUSH")
        .arg("huge:lpush")
        .arg(noise(2 << 20, 21))
        .ignore();
    p.cmd("HSET")
        .arg("huge:hash")
        .arg("f")
        .arg(noise(2 << 20, 22))
        .ignore();
    p.cmd("HSET")
        .arg("huge:hash")
        .arg(words(2 << 20, 23))
        .arg("v")
        .ignore();
    p.cmd("SADD")
        .arg("huge:set")
        .arg(noise(2 << 20, 24))
        .ignore();
    p.cmd("ZADD")
        .arg("huge:zset")
        .arg(1.5)
        .arg(noise(2 << 20, 25))
        .ignore();
    p.cmd("RPUSH").arg("huge:lset").arg("a").arg("b").ignore();
    p.cmd("LSET")
        .arg("huge:lset")
        .arg(1)
        .arg(noise(2 << 20, 26))
        .ignore();
    p.cmd("SETEX")
        .arg("huge:setex")
        .arg(5000)
        .arg(noise(2 << 20, 27))
        .ignore();
    p.cmd("XADD")
        .arg("huge:stream")
        .arg("*")
        .arg("f")
        .arg(noise(2 << 20, 28))
        .arg("g")
        .arg("small")
        .ignore();
    p.cmd("RESTORE")
        .arg("huge:restore")
        .arg(0)
        .arg(&payload)
        .ignore();
    // Inside a source transaction: no MULTI/EXEC of their own, applied with the rest.
    p.cmd("MULTI").ignore();
    p.cmd("LPUSH")
        .arg("huge:lpush")
        .arg(noise(2 << 20, 29))
        .ignore();
    p.cmd("INCR").arg("counter").ignore();
    p.cmd("HSET")
        .arg("huge:hash")
        .arg("g")
        .arg(words(3 << 20, 30))
        .ignore();
    p.cmd("RESTORE")
        .arg("huge:restore")
        .arg(0)
        .arg(&payload)
        .arg("REPLACE")
        .ignore();
    p.cmd("EXEC").ignore();
    p.query::<()>(&mut c).unwrap();
    2
}

fn huge_arguments_into(target: Target) {
    let source = Server::start();
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let lpushes = huge_argument_workload(&source);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let n = compare::eventually_equal_sides(
        &compare::Side::from(&source),
        &target.side(),
        &Options::default(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(n, 11);
    assert_eq!(target.leftovers(), Vec::<String>::new());
    // 13 commands with a huge argument, each of 2 MiB at least (8 pieces: a SET, 7 APPENDs).
    let appends = target.appends();
    assert!(appends >= 13 * 7, "{appends} APPENDs: not passed in pieces");
    let len: usize = match &target {
        Target::One(t) => redis::cmd("LLEN").arg("huge:lpush").query(&mut t.conn()),
        Target::Cluster(c) => redis::cmd("LLEN")
            .arg("huge:lpush")
            .query(&mut c.conn_for(b"huge:lpush")),
    }
    .unwrap();
    assert_eq!(len, lpushes, "each LPUSH applied once");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// Commands other than SET/APPEND with a huge argument (RPUSH, HSET with a huge value and a
/// huge field, SADD, ZADD, LSET, SETEX, XADD, RESTORE of a real DUMP), in and out of a source
/// transaction: each argument passed in pieces through a temporary key, the command applied
/// once, key by key equal, no temporary key left.
#[test]
fn huge_arguments_of_any_command() {
    huge_arguments_into(Target::One(Server::start()));
}

/// The same into a cluster: each temporary key in its command's slot.
#[test]
fn huge_arguments_of_any_command_into_a_cluster() {
    huge_arguments_into(Target::Cluster(testkit::Cluster::start(3, 0)));
}

/// ferry killed while the pieces of huge LPUSHes and HSETs are on their way to a target that
/// has stalled (SIGSTOP: its socket holds a transaction's first pieces, never its EXEC), then
/// started again: each command applied exactly once (LPUSH counted), no temporary key left.
fn kill_between_pieces(target: Target) {
    // A backlog that holds all the writes: the restart continues from the checkpoint.
    let source = Server::start_with(&["--repl-backlog-size", "128mb"]);
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let masters: Vec<&Server> = match &target {
        Target::One(s) => vec![s],
        Target::Cluster(c) => c.masters(),
    };
    for m in &masters {
        signal(m.pid(), "-STOP");
    }
    let mut c = source.conn();
    for i in 0..6u64 {
        let mut p = redis::pipe();
        p.cmd("LPUSH")
            .arg("huge:lpush")
            .arg(noise(3 << 20, 200 + i))
            .ignore();
        p.cmd("HSET")
            .arg("huge:hash")
            .arg(format!("f{i}"))
            .arg(words(2 << 20, 300 + i))
            .ignore();
        p.query::<()>(&mut c).unwrap();
    }
    // ferry has read it all (into its spool); the stalled target holds a part of it.
    let want = master_offset(&source);
    ferry.wait_status(Duration::from_secs(120), "the stream read", |s| {
        s["source_offset"].as_u64().unwrap_or(0) >= want
    });
    ferry.kill();
    // Shown only if the test fails: what the killed copy did.
    eprintln!("the killed ferry's log:\n{}", ferry.log());
    for m in &masters {
        signal(m.pid(), "-CONT");
    }
    let mut ferry = Ferry::start_with_status(&args);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let len: usize = match &target {
        Target::One(t) => redis::cmd("LLEN").arg("huge:lpush").query(&mut t.conn()),
        Target::Cluster(c) => redis::cmd("LLEN")
            .arg("huge:lpush")
            .query(&mut c.conn_for(b"huge:lpush")),
    }
    .unwrap();
    assert_eq!(len, 6, "each LPUSH applied exactly once");
    compare::eventually_equal_sides(
        &compare::Side::from(&source),
        &target.side(),
        &Options::default(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(target.leftovers(), Vec::<String>::new());
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

#[test]
fn a_kill_between_the_pieces_of_a_huge_argument_applies_it_once() {
    kill_between_pieces(Target::One(Server::start()));
}

#[test]
fn a_kill_between_the_pieces_of_a_huge_argument_applies_it_once_into_a_cluster() {
    kill_between_pieces(Target::Cluster(testkit::Cluster::start(3, 0)));
}

/// A length-encoded number at `at` of an RDB value: (the number, where the next thing starts).
fn rdb_length(b: &[u8], at: usize) -> (u64, usize) {
    match b[at] >> 6 {
        0 => (u64::from(b[at] & 0x3f), at + 1),
        1 => (
            (u64::from(b[at] & 0x3f) << 8) | u64::from(b[at + 1]),
            at + 2,
        ),
        _ if b[at] == 0x80 => (
            u64::from(u32::from_be_bytes(b[at + 1..at + 5].try_into().unwrap())),
            at + 5,
        ),
        _ => panic!("unexpected length encoding {:#x}", b[at]),
    }
}

/// A huge RESTORE whose payload has a right CRC but a damaged listpack inside (the source,
/// with sanitize-dump-payload no, takes it): ferry stops with the key and the byte, and the
/// target never applies the command (nor keeps a temporary key).
#[test]
fn a_damaged_huge_restore_is_refused_and_nothing_of_it_applied() {
    // No LZF in the DUMP: the listpacks lie in it as they are, for the test to damage one.
    let source = Server::start_with(&["--sanitize-dump-payload", "no", "--rdbcompression", "no"]);
    let target = Server::start();
    let mut c = source.conn();
    for i in 0..40u64 {
        let mut cmd = redis::cmd("RPUSH");
        cmd.arg("dumped");
        for j in 0..1000u64 {
            cmd.arg(noise(100, i * 1000 + j));
        }
        cmd.query::<()>(&mut c).unwrap();
    }
    let mut payload: Vec<u8> = redis::cmd("DUMP").arg("dumped").query(&mut c).unwrap();
    assert!(payload.len() > 2 << 20);
    assert_eq!(payload[0], 18, "a quicklist of listpacks");
    let (_nodes, at) = rdb_length(&payload, 1);
    let (container, at) = rdb_length(&payload, at);
    assert_eq!(container, 2, "a packed node");
    let node = at;
    let (_lp_len, lp) = rdb_length(&payload, at);
    // The first entry now claims a 32-bit string length: it runs past its listpack.
    payload[lp + 6] = 0xf0;
    let n = payload.len();
    let crc = ferry_rdb::crc64(&payload[..n - 8]);
    payload[n - 8..].copy_from_slice(&crc.to_le_bytes());

    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut p = redis::pipe();
    p.cmd("SET").arg("before").arg("x").ignore();
    p.cmd("RESTORE")
        .arg("huge:bad")
        .arg(0)
        .arg(&payload)
        .ignore();
    p.cmd("SET").arg("after").arg("x").ignore();
    p.query::<()>(&mut c).unwrap();
    let code = ferry.wait(Duration::from_secs(120));
    assert_eq!(code.code(), Some(1), "log:\n{}", ferry.log());
    let log = ferry.log();
    assert!(
        log.contains("RESTORE of key \"huge:bad\" in db 0") && log.contains("damaged at byte"),
        "{log}"
    );
    // The byte named is in the damaged node: where its blob starts, or the entry itself.
    let byte: usize = log
        .split("damaged at byte ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap();
    assert!((node..=lp + 6).contains(&byte), "byte {byte}: {log}");
    let mut t = target.conn();
    let exists: u32 = redis::cmd("EXISTS")
        .arg("huge:bad")
        .arg("after")
        .query(&mut t)
        .unwrap();
    assert_eq!(
        exists, 0,
        "nothing of the damaged command or after it applied"
    );
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("__ferry:arg:*")
        .query(&mut t)
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
}

/// Into Redis 5.0: the commands the script applies are rewritten as for any stream command
/// (`ZADD ... GT` has no `GT` there; `XADD ... MAXLEN = n LIMIT k`, how 7.0 propagates an
/// approximate trim, takes no `LIMIT`), each still taking its huge argument from its
/// temporary key; a huge RESTORE of a payload 5.0 cannot read is rewritten as commands.
#[test]
fn huge_arguments_into_redis_5_0() {
    let Some((_, bin)) = testkit::versions::cached("redis-5.0.6") else {
        return;
    };
    let source = Server::start();
    let target = Server::start_bin(&bin, &[]);
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut p = redis::pipe();
    p.cmd("RPUSH")
        .arg("huge:rpush")
        .arg(noise(2 << 20, 50))
        .ignore();
    p.cmd("ZADD")
        .arg("huge:zset")
        .arg("GT")
        .arg(2)
        .arg(noise(2 << 20, 51))
        .ignore();
    p.cmd("XADD")
        .arg("huge:stream")
        .arg("MAXLEN")
        .arg("~")
        .arg(10)
        .arg("LIMIT")
        .arg(5)
        .arg("*")
        .arg("f")
        .arg(noise(2 << 20, 52))
        .ignore();
    p.cmd("HSET")
        .arg("huge:hash")
        .arg("a")
        .arg("b")
        .arg("f")
        .arg(noise(2 << 20, 53))
        .ignore();
    // A RESTORE of a 7.0 payload (RDB 10, which 5.0 cannot read) is read whole, as before,
    // and rewritten as commands.
    let mut c = source.conn();
    redis::cmd("RPUSH")
        .arg("dumped")
        .arg(noise(2 << 20, 54))
        .query::<()>(&mut c)
        .unwrap();
    let payload: Vec<u8> = redis::cmd("DUMP").arg("dumped").query(&mut c).unwrap();
    p.cmd("RESTORE")
        .arg("huge:restore")
        .arg(0)
        .arg(payload)
        .ignore();
    p.query::<()>(&mut c).unwrap();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    compare::eventually_equal(
        &source,
        &target,
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("__ferry:arg:*")
        .query(&mut target.conn())
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// `[filter]` blocking a key or a command name: a command with a huge argument is judged as
/// the source sent it, so a blocked one leaves nothing on the target (no value, no temporary
/// key) and an allowed one arrives whole.
#[test]
fn a_filter_judges_a_command_in_pieces_as_the_source_sent_it() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[filter]\nblock_key_prefix = [\"blocked:\"]\nblock_command = [\"SADD\"]\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", config.to_str().unwrap()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut p = redis::pipe();
    p.cmd("RPUSH")
        .arg("blocked:list")
        .arg(noise(2 << 20, 60))
        .ignore();
    p.cmd("SADD")
        .arg("kept:set")
        .arg(noise(2 << 20, 61))
        .ignore();
    p.cmd("RPUSH")
        .arg("kept:list")
        .arg(noise(2 << 20, 62))
        .ignore();
    p.cmd("HSET")
        .arg("kept:hash")
        .arg("f")
        .arg(noise(2 << 20, 63))
        .ignore();
    p.query::<()>(&mut source.conn()).unwrap();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let mut t = target.conn();
    let exists: u32 = redis::cmd("EXISTS")
        .arg("blocked:list")
        .arg("kept:set")
        .query(&mut t)
        .unwrap();
    assert_eq!(exists, 0, "blocked by key and by command name");
    let left: Vec<String> = redis::cmd("KEYS")
        .arg("__ferry:arg:*")
        .query(&mut t)
        .unwrap();
    assert!(left.is_empty(), "{left:?}");
    for key in ["kept:list", "kept:hash"] {
        let digest = |c: &mut redis::Connection| -> Vec<String> {
            redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(key)
                .query(c)
                .unwrap()
        };
        assert_eq!(digest(&mut source.conn()), digest(&mut t), "{key}");
    }
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// With a transform script, a command with a huge argument other than SET/APPEND reaches the
/// script whole (it may rename the key the pieces would have been built for): the key renamed,
/// its value equal, no pieces written.
#[test]
fn a_transform_script_sees_a_command_with_a_huge_argument_whole() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("transform.lua");
    std::fs::write(
        &script,
        "function transform(entry)\n  if entry.kind == \"key\" then\n    entry.key = \"eu:\" .. entry.key\n  else\n    for _, i in ipairs(entry.keys) do entry.args[i] = \"eu:\" .. entry.args[i] end\n  end\n  return entry\nend\n",
    )
    .unwrap();
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--transform",
        script.to_str().unwrap(),
    ];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    redis::cmd("RPUSH")
        .arg("huge:list")
        .arg(noise(2 << 20, 70))
        .query::<()>(&mut source.conn())
        .unwrap();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(180));
    let digest = |c: &mut redis::Connection, key: &str| -> Vec<String> {
        redis::cmd("DEBUG")
            .arg("DIGEST-VALUE")
            .arg(key)
            .query(c)
            .unwrap()
    };
    assert_eq!(
        digest(&mut source.conn(), "huge:list"),
        digest(&mut target.conn(), "eu:huge:list")
    );
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    assert_eq!(Target::One(target).appends(), 0, "no pieces with a script");
}
