//! The scan-mode source (issue 19), end to end: real servers that refuse replication
//! (`PSYNC`/`SYNC` renamed away, or a user without them), the real binary, and the target
//! checked key by key against the source after the writes stop.
//!
//! Scan mode promises convergence, not a replay of each write: so every test lets writes
//! run, stops them, and then polls the comparison until it passes or a generous deadline
//! runs out (never a timing assertion).
//!
//! The random workload is testkit's over three dbs (every command type, `MULTI` blocks,
//! scripts, functions, `SWAPDB` and `MOVE`), plus what it never issues ([`extra_writes`]:
//! `XACK`, keys that expire by themselves within a second or two). Some of these Redis
//! notifies nothing for: `SWAPDB`, `FLUSHDB` and `FLUSHALL` (ferry watches `INFO
//! commandstats` for them and rescans), and, in Redis 7.0's `t_stream.c`, the consumer-group
//! changes of `XREADGROUP`, `XACK`, `XCLAIM` and `XAUTOCLAIM` (only `XADD`, `XTRIM`, `XDEL`,
//! `XSETID` and the `XGROUP` subcommands fire keyspace events). ferry documents the latter
//! (docs/guarantees.md): a group's progress reaches the target with the key's next notified
//! change or the next full pass, and `ferry cutover` makes one last pass. So while ferry
//! follows, the comparisons leave the groups' progress out ([`following`]);
//! [`stream_group_progress_arrives_with_the_next_change_and_at_cutover`] checks those two
//! promises exactly.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use common::{Ferry, check_json, refused};
use redis::Value;
use serde_json::Value as Json;
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec, Workload};
use testkit::{Cluster, Server, wait_until};

/// A server that refuses to serve replicas, as managed services do.
const NO_REPLICATION: &[&str] = &[
    "--rename-command",
    "PSYNC",
    "",
    "--rename-command",
    "SYNC",
    "",
];

/// How long convergence may take on a busy shared machine. Generous on purpose: it bounds a
/// hang, it does not measure anything.
const CONVERGE: Duration = Duration::from_secs(180);

/// Elements of the one huge key, read in bounded pieces in scan mode.
const HUGE: usize = 200_000;

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        dbs: vec![0, 1, 2],
        keys_per_db: 300,
        ttl_fraction: 0.3,
        big_elements: 500,
    }
}

fn source_with(extra: &[&str]) -> Server {
    let mut args = NO_REPLICATION.to_vec();
    args.extend_from_slice(extra);
    Server::start_with(&args)
}

/// The last `n` lines of a log, for failure messages (a full ferry log can be long).
fn tail(log: &str, n: usize) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Starts `ferry sync` with a status API and waits until the copy is done and it follows
/// the source's changes.
fn follow(args: &[&str]) -> Ferry {
    let mut ferry = Ferry::start_with_status(args);
    ferry.wait_status(Duration::from_secs(180), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    ferry
}

/// Asserts that ferry reads the source by scanning, and says what that promises.
fn assert_scan_mode(ferry: &Ferry) {
    let st = ferry.status().expect("a status");
    assert_eq!(st["source_mode"], "scan", "{st}");
    assert_eq!(st["guarantee"], "converges", "{st}");
}

/// What a scan-mode sync promises while it follows: every key's type, value, TTL, stream
/// groups and consumers, and the function libraries; not the groups' progress (pending
/// entries, delivery counts, last-delivered ids), which Redis notifies nothing for.
fn following() -> Options {
    Options {
        group_progress: false,
        ..Options::default()
    }
}

/// Polls until the target equals the source key by key as [`following`] compares them;
/// panics with the differences, ferry's status and its log's tail when it does not within
/// [`CONVERGE`].
fn converge(ferry: &Ferry, source: &Side, target: &Side) -> u64 {
    converge_with(ferry, source, target, &following())
}

/// Like [`converge`], comparing as `opts` says.
fn converge_with(ferry: &Ferry, source: &Side, target: &Side, opts: &Options) -> u64 {
    compare::eventually_equal_sides(source, target, opts, CONVERGE)
        .unwrap_or_else(|report| {
            panic!(
                "target did not converge to the source: {report}\nferry status: {:?}\nferry log tail:\n{}",
                ferry.status(),
                tail(&ferry.log(), 80)
            )
        })
}

/// Stops ferry as a user would and checks it exits cleanly.
fn finish(mut ferry: Ferry) {
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(
        code.success(),
        "{code}; log tail:\n{}",
        tail(&ferry.log(), 40)
    );
}

/// One key of [`HUGE`] elements: a sorted set in db 1, with an expiry.
fn huge_zset(server: &Server) {
    let mut conn = server.conn_db(1);
    for chunk in 0..HUGE / 1000 {
        let mut zadd = redis::cmd("ZADD");
        zadd.arg("huge:zset");
        for i in chunk * 1000..(chunk + 1) * 1000 {
            zadd.arg(i as f64 * 0.5).arg(format!("member:{i}"));
        }
        let _: i64 = zadd.query(&mut conn).unwrap();
    }
    let _: i64 = redis::cmd("PEXPIREAT")
        .arg("huge:zset")
        .arg(4_000_000_000_000u64)
        .query(&mut conn)
        .unwrap();
}

/// A small deterministic generator, for the extra writes (the test crate has no `rand`).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Streams the extra writes read from as a group and acknowledge.
const ACK_STREAMS: u64 = 4;

/// Random writes on a standalone source until [`Writes::stop`]: testkit's workload over `dbs`
/// (every command type, `MULTI` blocks, scripts, functions, `SWAPDB`, `MOVE`, stream groups
/// with `XREADGROUP`/`XCLAIM`), interleaved with [`extra_writes`].
struct Writes {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<BTreeMap<String, u64>>>,
}

impl Writes {
    fn start(server: &Server, seed: u64, dbs: &[i64]) -> Writes {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let mut conn = server.conn();
        let mut workload = Workload::new(&Spec {
            dbs: dbs.to_vec(),
            ..spec(seed)
        });
        let handle = std::thread::spawn(move || {
            let mut counts = BTreeMap::new();
            let mut rng = Rng(seed | 1);
            let mut round = 0u64;
            while !flag.load(Ordering::Relaxed) {
                for (name, n) in workload.run_conn(&mut conn, 100) {
                    *counts.entry(name).or_insert(0) += n;
                }
                extra_writes(&mut conn, &mut rng, round, &mut counts);
                round += 1;
            }
            counts
        });
        Writes {
            stop,
            handle: Some(handle),
        }
    }

    /// Stops after the current round; returns the commands issued, by name.
    fn stop(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        match self.handle.take().expect("joined once").join() {
            Ok(counts) => counts,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Writes {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The writes testkit's workload lacks or issues rarely: keys that expire by themselves
/// while the test runs (strings and a hash, 50 ms to 2 s), `MOVE` across dbs, `PERSIST` of
/// a key that had a TTL, `XREADGROUP` then `XACK` of part of what was read, and a `MULTI`
/// block that renames, deletes, increments and appends.
fn extra_writes(
    conn: &mut redis::Connection,
    rng: &mut Rng,
    round: u64,
    counts: &mut BTreeMap<String, u64>,
) {
    let mut count = |name: &str| *counts.entry(name.to_string()).or_insert(0) += 1;
    let db = rng.below(3);
    let mut p = redis::pipe();
    p.cmd("SELECT").arg(db).ignore();
    p.cmd("SET")
        .arg(format!("scan:ttl:{}", rng.below(50)))
        .arg(round)
        .arg("PX")
        .arg(50 + rng.below(2000))
        .ignore();
    count("SET PX");
    let h = format!("scan:hx:{}", rng.below(10));
    p.cmd("HSET").arg(&h).arg("f").arg(round).ignore();
    p.cmd("PEXPIRE").arg(&h).arg(50 + rng.below(2000)).ignore();
    count("PEXPIRE");
    let m = format!("scan:mv:{}", rng.below(20));
    p.cmd("SET").arg(&m).arg(round).ignore();
    // 0 when the other db has that key already: not an error.
    p.cmd("MOVE").arg(&m).arg((db + 1) % 3).ignore();
    count("MOVE");
    let k = format!("scan:p:{}", rng.below(10));
    p.cmd("SET").arg(&k).arg(round).arg("EX").arg(1000).ignore();
    if rng.below(2) == 0 {
        p.cmd("PERSIST").arg(&k).ignore();
        count("PERSIST");
    }
    p.cmd("MULTI").ignore();
    p.cmd("SET").arg("scan:r:a").arg(round).ignore();
    p.cmd("RENAME").arg("scan:r:a").arg("scan:r:b").ignore();
    p.cmd("DEL").arg("scan:r:c").ignore();
    p.cmd("INCR").arg("scan:r:c").ignore();
    p.cmd("APPEND").arg("scan:r:d").arg("x").ignore();
    p.cmd("EXEC").ignore();
    count("MULTI");
    p.cmd("SELECT").arg(0).ignore();
    let s = format!("scan:x:{}", rng.below(ACK_STREAMS));
    p.cmd("XADD").arg(&s).arg("*").arg("n").arg(round).ignore();
    p.query::<()>(conn).unwrap();
    // The workload's SWAPDB may have taken the stream and its group to another db.
    let _: redis::RedisResult<()> = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg(&s)
        .arg("g")
        .arg("0")
        .query(conn);
    let read: Value = redis::cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g")
        .arg(format!("c{}", rng.below(2)))
        .arg("COUNT")
        .arg(3)
        .arg("STREAMS")
        .arg(&s)
        .arg(">")
        .query(conn)
        .unwrap();
    count("XREADGROUP");
    // Acknowledge every other entry read: some stay pending.
    let ids: Vec<String> = entry_ids(&read).into_iter().step_by(2).collect();
    if !ids.is_empty() {
        let _: i64 = redis::cmd("XACK")
            .arg(&s)
            .arg("g")
            .arg(&ids)
            .query(conn)
            .unwrap();
        count("XACK");
    }
}

/// The entry ids of an `XREADGROUP` reply (`[[stream, [[id, fields], ...]], ...]`).
fn entry_ids(reply: &Value) -> Vec<String> {
    let items = |v: &Value| match v {
        Value::Array(items) => items.clone(),
        _ => Vec::new(),
    };
    let mut ids = Vec::new();
    for stream in items(reply) {
        let parts = items(&stream);
        for entry in parts.get(1).map(items).unwrap_or_default() {
            if let Some(Value::BulkString(id)) = items(&entry).first() {
                ids.push(String::from_utf8_lossy(id).into_owned());
            }
        }
    }
    ids
}

/// Checks the writes covered what the brief of scan mode names.
fn assert_covered(counts: &BTreeMap<String, u64>) {
    for cmd in [
        "SET",
        "INCR",
        "APPEND",
        "LPUSH",
        "HSET",
        "SADD",
        "ZADD",
        "XADD",
        "XDEL",
        "XTRIM",
        "XGROUP CREATE",
        "XREADGROUP",
        "XACK",
        "EXPIRE",
        "PERSIST",
        "DEL",
        "RENAME",
        "MULTI",
        "SET PX",
        "MOVE",
        "RESTORE",
        "SWAPDB",
    ] {
        assert!(
            counts.get(cmd).copied().unwrap_or(0) > 0,
            "the writes never issued {cmd}: {counts:?}"
        );
    }
}

/// Lets `writes` run for `secs` seconds (at least until they have done some rounds), then
/// stops them and returns what they issued.
fn run_for(writes: Writes, secs: u64) -> BTreeMap<String, u64> {
    std::thread::sleep(Duration::from_secs(secs));
    writes.stop()
}

/// a. A standalone source whose PSYNC and SYNC are renamed away: every type in three dbs,
/// a 200,000-element sorted set and keys with TTLs are copied, then a random workload of
/// every command type is followed until the target equals the source.
#[test]
fn scan_copies_and_follows_a_source_without_psync() {
    let source = source_with(&[]);
    let target = Server::start();
    workload::populate(&source, &spec(1));
    huge_zset(&source);
    let ferry = follow(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ]);
    assert_scan_mode(&ferry);
    // The copy alone, before any write.
    let copied = converge(&ferry, &Side::from(&source), &Side::from(&target));
    assert!(copied >= 900, "only {copied} keys compared");
    let counts = run_for(Writes::start(&source, 10, &[0, 1, 2]), 4);
    assert_covered(&counts);
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    let st = ferry.status().unwrap();
    assert!(st["last_error"].is_null(), "{st}");
    // The huge key kept its absolute expiry (to the few ms a relative TTL read loses), in
    // whichever db the workload's SWAPDBs left it.
    let db = (0..3)
        .find(|&db| {
            redis::cmd("EXISTS")
                .arg("huge:zset")
                .query::<i64>(&mut source.conn_db(db))
                .unwrap()
                == 1
        })
        .expect("huge:zset on the source");
    let at: i64 = redis::cmd("PEXPIRETIME")
        .arg("huge:zset")
        .query(&mut target.conn_db(db))
        .unwrap();
    assert!(
        (at - 4_000_000_000_000).abs() < 2000,
        "huge:zset expires at {at}"
    );
    finish(ferry);
}

/// a, with `--source-mode auto`: PSYNC is refused, so ferry picks scan, says so once in
/// its log and in the status.
#[test]
fn auto_picks_scan_when_psync_is_renamed() {
    let source = source_with(&[]);
    let target = Server::start();
    workload::populate(&source, &spec(2));
    let ferry = follow(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "auto",
    ]);
    assert_scan_mode(&ferry);
    let log = ferry.log();
    // The decision, once (the precheck's report of its source_mode item aside).
    let said: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("code=\"scan_mode\""))
        .collect();
    assert_eq!(
        said.len(),
        1,
        "one log line should say scan is used because PSYNC is refused; log tail:\n{}",
        tail(&log, 40)
    );
    assert!(said[0].contains("PSYNC"), "{}", said[0]);
    let counts = run_for(Writes::start(&source, 20, &[0, 1, 2]), 2);
    assert!(counts.get("XACK").copied().unwrap_or(0) > 0, "{counts:?}");
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    finish(ferry);
}

/// b. The source login is a user without `+psync`/`+sync` on a server that has them.
#[test]
fn scan_as_a_user_without_psync() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg("mover")
        .arg("on")
        .arg(">mover-pw")
        .arg("~*")
        .arg("&*")
        .arg("+@all")
        .arg("-psync")
        .arg("-sync")
        .query(&mut source.conn())
        .unwrap();
    workload::populate(&source, &spec(3));
    let url = format!("redis://mover:mover-pw@{}", source.addr());
    let ferry = follow(&[
        "--source",
        &url,
        "--target",
        &target.url(),
        "--source-mode",
        "auto",
    ]);
    assert_scan_mode(&ferry);
    assert!(
        !ferry.log().contains("mover-pw"),
        "the password is in the log:\n{}",
        tail(&ferry.log(), 40)
    );
    let counts = run_for(Writes::start(&source, 30, &[0, 1, 2]), 3);
    assert_covered(&counts);
    // The comparison logs in as the default user: it may read everything.
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    finish(ferry);
}

/// The clients of `server` that are subscribed (ferry's keyspace-notification link).
fn subscribers(server: &Server) -> usize {
    let list: String = redis::cmd("CLIENT")
        .arg("LIST")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut server.conn())
        .unwrap();
    list.lines().filter(|l| !l.is_empty()).count()
}

/// c. The notification subscription is dropped (`CLIENT KILL TYPE pubsub`) several times
/// while writes go on; in the same breath as each kill a copied key is deleted and another
/// is created, so their notifications are lost for sure. ferry must notice, rescan what it
/// may have missed, and converge: the deleted keys gone from the target too. Those keys
/// live in db 3, out of reach of the workload's SWAPDBs.
#[test]
fn a_dropped_subscription_is_made_good() {
    let source = source_with(&[]);
    let target = Server::start();
    workload::populate(&source, &spec(4));
    {
        let mut c = source.conn_db(3);
        for i in 0..4 {
            let _: () = redis::cmd("SET")
                .arg(format!("doomed:{i}"))
                .arg("x")
                .query(&mut c)
                .unwrap();
        }
    }
    let ferry = follow(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ]);
    assert_scan_mode(&ferry);
    let writes = Writes::start(&source, 40, &[0, 1, 2]);
    for i in 0..4 {
        let doomed = format!("doomed:{i}");
        let copied = wait_until(Duration::from_secs(120), || {
            redis::cmd("EXISTS")
                .arg(&doomed)
                .query::<i64>(&mut target.conn_db(3))
                .unwrap()
                == 1
        });
        assert!(copied, "{doomed} never reached the target");
        let subscribed = wait_until(Duration::from_secs(120), || subscribers(&source) > 0);
        assert!(
            subscribed,
            "ferry has no subscription on the source (round {i}); log tail:\n{}",
            tail(&ferry.log(), 40)
        );
        // Pipelined: the DEL runs right after the kill, before ferry can subscribe again.
        let (killed, deleted): (i64, i64) = redis::pipe()
            .cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("pubsub")
            .cmd("DEL")
            .arg(&doomed)
            .cmd("SET")
            .arg(format!("born:{i}"))
            .arg(i)
            .ignore()
            .query(&mut source.conn_db(3))
            .unwrap();
        assert!(killed >= 1, "no subscription was killed");
        assert_eq!(deleted, 1);
        std::thread::sleep(Duration::from_millis(500));
    }
    // A flush notifies nothing either.
    let _: () = redis::cmd("FLUSHDB").query(&mut source.conn_db(2)).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let counts = writes.stop();
    assert_covered(&counts);
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    let mut t = target.conn_db(3);
    for i in 0..4 {
        let gone: i64 = redis::cmd("EXISTS")
            .arg(format!("doomed:{i}"))
            .query(&mut t)
            .unwrap();
        assert_eq!(
            gone, 0,
            "doomed:{i}, deleted while unsubscribed, is still on the target"
        );
    }
    finish(ferry);
}

/// Consumer-group progress Redis publishes no keyspace event for (`XREADGROUP`'s pending
/// entries and last-delivered id, `XACK`, `XCLAIM`'s and `XAUTOCLAIM`'s owners and delivery
/// counts), on a copied stream otherwise left alone, reaches the target as documented: with
/// the key's next notified change, and at a cutover, which makes one last full pass. Both
/// checked exactly, progress included.
#[test]
fn stream_group_progress_arrives_with_the_next_change_and_at_cutover() {
    let source = source_with(&[]);
    let target = Server::start();
    let mut c = source.conn();
    let mut ids = Vec::new();
    for i in 0..8 {
        let id: String = redis::cmd("XADD")
            .arg("orders")
            .arg("*")
            .arg("n")
            .arg(i)
            .query(&mut c)
            .unwrap();
        ids.push(id);
    }
    let _: () = redis::cmd("XGROUP")
        .arg("CREATE")
        .arg("orders")
        .arg("billing")
        .arg("0")
        .query(&mut c)
        .unwrap();
    // The consumers exist before the copy: creating one is the only group change that is
    // notified (xgroup-createconsumer), and it would bring the others along.
    for consumer in ["alice", "bob", "carol"] {
        let _: i64 = redis::cmd("XGROUP")
            .arg("CREATECONSUMER")
            .arg("orders")
            .arg("billing")
            .arg(consumer)
            .query(&mut c)
            .unwrap();
    }
    let exact = Options::default();
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ];
    let ferry = follow(&args);
    converge_with(&ferry, &Side::from(&source), &Side::from(&target), &exact);
    let unnotified = |c: &mut redis::Connection, ack: &str, claim: &str| {
        let _: Value = redis::cmd("XREADGROUP")
            .arg("GROUP")
            .arg("billing")
            .arg("alice")
            .arg("COUNT")
            .arg(3)
            .arg("STREAMS")
            .arg("orders")
            .arg(">")
            .query(c)
            .unwrap();
        let _: i64 = redis::cmd("XACK")
            .arg("orders")
            .arg("billing")
            .arg(ack)
            .query(c)
            .unwrap();
        let _: Value = redis::cmd("XCLAIM")
            .arg("orders")
            .arg("billing")
            .arg("bob")
            .arg(0)
            .arg(claim)
            .query(c)
            .unwrap();
        let _: Value = redis::cmd("XAUTOCLAIM")
            .arg("orders")
            .arg("billing")
            .arg("carol")
            .arg(0)
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query(c)
            .unwrap();
    };
    unnotified(&mut c, &ids[0], &ids[1]);
    // The key's next notified change brings its progress along.
    let _: String = redis::cmd("XADD")
        .arg("orders")
        .arg("*")
        .arg("n")
        .arg("next")
        .query(&mut c)
        .unwrap();
    converge_with(&ferry, &Side::from(&source), &Side::from(&target), &exact);
    // Progress made while nothing else happens to the key, then a cutover: exact.
    unnotified(&mut c, &ids[3], &ids[4]);
    finish(ferry);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("cutover")
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cutover failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    compare::compare(&source, &target, &exact).unwrap_or_else(|r| panic!("after cutover: {r}"));
}

/// A scan-mode copy cannot continue where it stopped (docs/guarantees.md): started again
/// on the same target it makes a whole pass again and deletes what the source lost while it
/// was stopped.
#[test]
fn a_restarted_scan_starts_over_and_deletes_what_went() {
    let source = source_with(&[]);
    let target = Server::start();
    workload::populate(&source, &spec(11));
    let mut c = source.conn();
    let _: () = redis::cmd("SET")
        .arg("gone")
        .arg("x")
        .query(&mut c)
        .unwrap();
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ];
    let ferry = follow(&args);
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    finish(ferry);
    // While ferry is stopped: a copied key deleted, a new key, random writes.
    let _: () = redis::cmd("DEL").arg("gone").query(&mut c).unwrap();
    let _: () = redis::cmd("SET").arg("new").arg("x").query(&mut c).unwrap();
    workload::Workload::new(&spec(12)).run(&source, 500);
    let ferry = follow(&args);
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    finish(ferry);
}

/// d. `DUMP` is disabled on the source: every type is read type by type and written as
/// commands, then followed the same way.
#[test]
fn scan_without_dump_reads_type_by_type() {
    let source = source_with(&["--rename-command", "DUMP", ""]);
    let target = Server::start();
    workload::populate(&source, &spec(5));
    let ferry = follow(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ]);
    assert_scan_mode(&ferry);
    // The copy, every type and encoding of the populated dataset.
    let copied = converge(&ferry, &Side::from(&source), &Side::from(&target));
    assert!(copied >= 900, "only {copied} keys compared");
    // The workload's own RESTORE needs DUMP and fails here; everything else goes on.
    run_for(Writes::start(&source, 50, &[0, 1, 2]), 2);
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    finish(ferry);
}

/// e. A cluster source (3 masters, PSYNC and SYNC renamed on every node) into a standalone
/// target and into a cluster target at the same time, under a workload.
#[test]
fn cluster_source_without_psync_into_standalone_and_cluster() {
    let source = Cluster::start_with(3, 0, NO_REPLICATION);
    let into_one = Server::start();
    let into_cluster = Cluster::start(3, 0);
    let spec = Spec {
        dbs: vec![0],
        ..spec(6)
    };
    workload::populate_cluster(&source, &spec);
    let background = workload::run_in_background_cluster(&source, spec.clone());
    let mut ferries = Vec::new();
    for target in [into_one.url(), into_cluster.url()] {
        ferries.push(follow(&[
            "--source",
            &source.url(),
            "--target",
            &target,
            "--source-mode",
            "scan",
        ]));
    }
    for ferry in &ferries {
        assert_scan_mode(ferry);
    }
    std::thread::sleep(Duration::from_secs(3));
    // Keys that expire by themselves, on every master.
    for i in 0..30 {
        let key = format!("scan:ttl:{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .arg("PX")
            .arg(100 + i * 50)
            .query(&mut source.conn_for(key.as_bytes()))
            .unwrap();
    }
    let counts = background.stop();
    for cmd in [
        "INCR",
        "APPEND",
        "XADD",
        "XREADGROUP",
        "EXPIRE",
        "DEL",
        "RENAME",
        "MULTI",
    ] {
        assert!(
            counts.get(cmd).copied().unwrap_or(0) > 0,
            "never issued {cmd}"
        );
    }
    let src = Side::from(&source);
    let n = converge(&ferries[0], &src, &Side::from(&into_one));
    assert!(n > 200, "only {n} keys compared");
    converge(&ferries[1], &src, &Side::from(&into_cluster));
    for ferry in ferries {
        finish(ferry);
    }
}

/// f. `--full-only` in scan mode ends by itself, exit 0, with the target equal.
#[test]
fn full_only_in_scan_mode_ends_by_itself() {
    let source = source_with(&[]);
    let target = Server::start();
    workload::populate(&source, &spec(7));
    let mut ferry = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
        "--full-only",
    ]);
    let code = ferry.wait(Duration::from_secs(180));
    assert!(
        code.success(),
        "{code}; log tail:\n{}",
        tail(&ferry.log(), 40)
    );
    let n = compare::compare(&source, &target, &Options::default())
        .unwrap_or_else(|r| panic!("{r}\nferry log tail:\n{}", tail(&ferry.log(), 40)));
    assert!(n >= 900, "only {n} keys compared");
}

/// A finding of `ferry check --json` whose text names every one of `words` (any case).
fn finding_naming<'a>(findings: &'a [Json], words: &[&str]) -> Option<&'a Json> {
    findings.iter().find(|f| {
        let text = format!("{} {}", f["found"], f["fix"]).to_lowercase();
        words.iter().all(|w| text.contains(&w.to_lowercase()))
    })
}

/// g. The source's CONFIG is renamed too and its notifications are off, so ferry cannot
/// turn them on: the sync fails before copying, with one line naming the CONFIG SET line to
/// run; `ferry check` says which mode would be used and why.
#[test]
fn notifications_off_and_config_renamed_fails_before_copying() {
    let source = source_with(&["--rename-command", "CONFIG", ""]);
    let target = Server::start();
    workload::populate(&source, &spec(8));
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ];
    let line = refused(&args);
    assert!(
        line.contains("CONFIG SET notify-keyspace-events"),
        "the error should name the line to run: {line}"
    );
    let user_keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query::<Vec<String>>(&mut target.conn())
        .unwrap()
        .into_iter()
        .filter(|k| !k.starts_with("__ferry:"))
        .collect();
    assert!(user_keys.is_empty(), "copied before failing: {user_keys:?}");

    // `ferry check` writes nothing, and with CONFIG refused it cannot see the setting: it
    // warns, naming the line; the sync above is what tries (a key of ferry's own) and stops.
    let (code, findings) = check_json(&args);
    assert_eq!(code, 0, "{findings:#?}");
    let fix = finding_naming(&findings, &["CONFIG SET notify-keyspace-events"])
        .unwrap_or_else(|| panic!("no finding names the CONFIG SET line: {findings:#?}"));
    assert_eq!(fix["result"], "warn", "{fix:#}");
    assert_eq!(fix["item"], "notifications", "{fix:#}");
    assert!(
        finding_naming(&findings, &["scan"]).is_some(),
        "check should say scan mode will be used: {findings:#?}"
    );

    // auto: PSYNC is refused, so scan, and check says why.
    let auto = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "auto",
    ];
    let (_, findings) = check_json(&auto);
    assert!(
        finding_naming(&findings, &["scan", "psync"]).is_some(),
        "check should say scan will be used because PSYNC is refused: {findings:#?}"
    );
}

/// g, the other way round: CONFIG is renamed but the operator turned notifications on when
/// the server started (as a managed service's parameter group does): scan mode works.
#[test]
fn notifications_already_on_need_no_config() {
    let source = source_with(&[
        "--rename-command",
        "CONFIG",
        "",
        "--notify-keyspace-events",
        "KEA",
    ]);
    let target = Server::start();
    workload::populate(&source, &spec(9));
    let ferry = follow(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--source-mode",
        "scan",
    ]);
    assert_scan_mode(&ferry);
    run_for(Writes::start(&source, 90, &[0, 1, 2]), 2);
    converge(&ferry, &Side::from(&source), &Side::from(&target));
    finish(ferry);
}
