//! `[filter]`: full + incremental syncs (a workload running through the copy) with each kind
//! of filter, ending with the target holding exactly what the filter says, key by key: the
//! expectation is the same rule applied to the source.

mod common;

use std::time::Duration;

use common::{Ferry, free_port, master_offset, resyncs, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, KeyFilter, Options};
use testkit::workload::{self, Spec};

/// Populated dbs 0, 1, 2 with a few hundred keys each (every type and encoding).
fn populate_spec(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 300,
        big_elements: 300,
        ..Spec::default()
    }
}

fn config(dir: &std::path::Path, source: &Server, target: &Server, filter: &str) -> String {
    let path = dir.join(format!("ferry-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[sync]\nname = \"filters\"\n[filter]\n{filter}\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// A sync under `filter`: the source populated, a workload (`workload`) running before,
/// during and after the snapshot, then a last burst; returns once the target has applied
/// everything.
struct Run {
    source: Server,
    target: Server,
    ferry: Ferry,
    _dir: tempfile::TempDir,
}

fn run(filter: &str, populate: &Spec, workload: &Spec) -> Run {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, populate);
    let background = workload::run_in_background(&source, workload.clone());
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &source, &target, filter);
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    let mut tail = workload::Workload::new(&Spec {
        seed: workload.seed + 1000,
        ..workload.clone()
    });
    tail.run(&source, 1500);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    Run {
        source,
        target,
        ferry,
        _dir: dir,
    }
}

fn options(expect: impl Fn(i64, &[u8], &str) -> bool + Send + Sync + 'static) -> Options {
    Options {
        group_read_counters: false,
        expect: Some(KeyFilter::new(expect)),
        ..Options::default()
    }
}

fn assert_equal(r: &Run, opts: &Options) -> u64 {
    compare::eventually_equal(&r.source, &r.target, opts, Duration::from_secs(20))
        .unwrap_or_else(|report| panic!("{report}\nferry log:\n{}", r.ferry.log()))
}

fn status_counter(r: &Run, name: &str) -> u64 {
    r.ferry.status().unwrap()[name].as_u64().unwrap()
}

/// The target also holds this many keys that the filter blocked on the source; so the
/// comparison cannot pass by copying nothing or everything.
fn assert_some_blocked(r: &Run, opts: &Options, compared: u64) {
    let all = compare::compare(
        &r.source,
        &r.source,
        &Options {
            expect: None,
            ..opts.clone()
        },
    )
    .unwrap();
    assert!(
        compared > 100 && compared < all,
        "{compared} keys compared of {all}: the filter kept all or nothing"
    );
}

#[test]
fn key_prefix_allow() {
    let allowed = |k: &[u8]| {
        [&b"wl:l:"[..], b"wl:t:", b"p:"]
            .iter()
            .any(|p| k.starts_with(p))
    };
    let r = run(
        r#"allow_key_prefix = ["wl:l:", "wl:t:", "p:"]"#,
        &populate_spec(1),
        &Spec {
            seed: 11,
            ..populate_spec(1)
        },
    );
    let opts = options(move |_, k, _| allowed(k));
    let n = assert_equal(&r, &opts);
    assert_some_blocked(&r, &opts, n);
    assert!(status_counter(&r, "filtered_commands") > 0);
}

/// Blocked prefixes, and a DEL (and an MSET) over allowed and blocked keys in the stream:
/// cut down to the allowed keys. A RENAME from an allowed key to a blocked one cannot be
/// cut: reported and counted.
#[test]
fn key_prefix_block_and_split_commands() {
    let blocked = |k: &[u8]| {
        [&b"wl:s:"[..], b"wl:h:", b"p:bin"]
            .iter()
            .any(|p| k.starts_with(p))
    };
    let mut r = run(
        r#"block_key_prefix = ["wl:s:", "wl:h:", "p:bin"]"#,
        &populate_spec(2),
        &Spec {
            seed: 12,
            ..populate_spec(2)
        },
    );
    let mut conn = r.source.conn();
    let _: () = redis::cmd("MSET")
        .arg(&["mix:a", "1", "wl:s:mix", "2", "mix:b", "3", "mix:c", "4"])
        .query(&mut conn)
        .unwrap();
    wait_caught_up(&mut r.ferry, &r.source, Duration::from_secs(30));
    assert_eq!(
        r.target
            .conn()
            .get::<_, Option<String>>("mix:b")
            .unwrap()
            .as_deref(),
        Some("3")
    );
    let _: i64 = redis::cmd("DEL")
        .arg(&["mix:a", "wl:s:mix", "mix:b"])
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("wl:s:plain")
        .arg("x")
        .query(&mut conn)
        .unwrap();
    let _: () = redis::cmd("RENAME")
        .arg("mix:c")
        .arg("wl:h:renamed")
        .query(&mut conn)
        .unwrap();
    wait_caught_up(&mut r.ferry, &r.source, Duration::from_secs(30));
    use redis::Commands;
    let mut t = r.target.conn();
    assert!(!t.exists::<_, bool>("mix:a").unwrap());
    assert!(!t.exists::<_, bool>("wl:s:mix").unwrap());
    assert!(!t.exists::<_, bool>("wl:h:renamed").unwrap());
    // The RENAME was not applied (reported): its source key stays on the target. Taken away
    // by hand, the rest must be exact.
    assert!(t.exists::<_, bool>("mix:c").unwrap());
    let _: i64 = t.del("mix:c").unwrap();
    let opts = options(move |_, k, _| !blocked(k));
    let n = assert_equal(&r, &opts);
    assert_some_blocked(&r, &opts, n);
    assert!(status_counter(&r, "split_commands") >= 2);
    assert!(status_counter(&r, "unsplittable_commands") >= 1);
    let log = r.ferry.log();
    assert!(
        log.contains("RENAME in db 0 names keys the filter allows and keys it blocks")
            && log.contains("\"wl:h:renamed\" (blocked)"),
        "{log}"
    );
}

#[test]
fn key_regex() {
    let r = run(
        r#"allow_key_regex = ["^wl:(z|x|g):", "^p:[A-Z]"]"#,
        &populate_spec(3),
        &Spec {
            seed: 13,
            ..populate_spec(3)
        },
    );
    let re = regex_like();
    let opts = options(move |_, k, _| re(k));
    let n = assert_equal(&r, &opts);
    assert_some_blocked(&r, &opts, n);
}

/// The regexes of `key_regex`, written out.
fn regex_like() -> impl Fn(&[u8]) -> bool + Send + Sync + 'static {
    |k: &[u8]| {
        [&b"wl:z:"[..], b"wl:x:", b"wl:g:"]
            .iter()
            .any(|p| k.starts_with(p))
            || (k.starts_with(b"p:") && k.get(2).is_some_and(|c| c.is_ascii_uppercase()))
    }
}

/// Source db 1 only, written into target db 5; ferry is killed mid-stream and started again:
/// the checkpoint names the source's db, so the resumed stream lands in db 5 too.
#[test]
fn db_allow_and_db_map_across_a_resume() {
    // Room for the writes made while ferry is down.
    let source = Server::start_with(&["--repl-backlog-size", "256mb"]);
    let target = Server::start();
    workload::populate(&source, &populate_spec(4));
    // The workload writes db 1 only (MOVE and SWAPDB into a db that is not synced cannot be
    // applied, and say so: see `swapdb_into_a_filtered_db_stops_the_task`).
    let work = Spec {
        seed: 14,
        dbs: vec![1],
        ..populate_spec(4)
    };
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &source,
        &target,
        "allow_db = [1]\ndb_map = { \"1\" = 5 }",
    );
    let background = workload::run_in_background(&source, work.clone());
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let at = master_offset(&source);
    let st = ferry.wait_status(Duration::from_secs(60), "some of the stream", |s| {
        s["applied_offset"].as_u64().unwrap_or(0) > at
    });
    assert!(st["filtered_keys"].as_u64().unwrap() > 0, "{st}");
    ferry.kill();
    std::thread::sleep(Duration::from_millis(500));
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    workload::Workload::new(&Spec { seed: 15, ..work }).run(&source, 1500);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let opts = Options {
        db_map: vec![(1, 5)],
        ..options(|db, _, _| db == 1)
    };
    let n = compare::eventually_equal(&source, &target, &opts, Duration::from_secs(20))
        .unwrap_or_else(|report| panic!("{report}\nferry log:\n{}", ferry.log()));
    assert!(n > 200, "{n} keys compared");
    let dbs = target.info("keyspace");
    assert!(
        dbs.keys().all(|db| db == "db5" || db == "db0"),
        "target dbs: {dbs:?}"
    );
    // The restart continued the stream (no second snapshot).
    assert_eq!(resyncs(&source).0, 1, "{}", ferry.log());
}

/// Keys with more elements than this are written in chunks (BigStart, BigChunk, BigEnd), so
/// the filter meets them too.
const CHUNKED: &str = "\n[advanced]\nbig_value_elements = 50";

/// Stream values (and only they) are left out, from the snapshot and from the stream; big
/// keys go through the chunked path.
#[test]
fn type_block() {
    let r = run(
        &format!("block_type = [\"stream\"]{CHUNKED}"),
        &populate_spec(5),
        &Spec {
            seed: 16,
            ..populate_spec(5)
        },
    );
    let opts = options(|_, _, kind| kind != "stream");
    let n = assert_equal(&r, &opts);
    assert_some_blocked(&r, &opts, n);
}

/// FLUSHALL blocked: the target keeps what it had, and takes the writes after it. The
/// expectation is a real replica of the source detached just before the FLUSHALL, given the
/// same later writes.
#[test]
fn command_block_keeps_data_through_flushall() {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &populate_spec(6));
    let dir = tempfile::tempdir().unwrap();
    let path = config(
        dir.path(),
        &source,
        &target,
        r#"block_command = ["FLUSHALL"]"#,
    );
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let work = Spec {
        seed: 17,
        ..populate_spec(6)
    };
    workload::Workload::new(&work).run(&source, 1500);
    let reference = Server::start_replica_of(&source);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    testkit::wait_until(Duration::from_secs(60), || {
        reference.info("replication")["master_repl_offset"] == master_offset(&source).to_string()
            && reference.info("replication")["master_link_status"] == "up"
    });
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut reference.conn())
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut source.conn()).unwrap();
    for server in [&source, &reference] {
        let mut c = server.conn_db(1);
        let _: () = redis::cmd("SET")
            .arg("after")
            .arg("flush")
            .query(&mut c)
            .unwrap();
    }
    wait_caught_up(&mut ferry, &source, Duration::from_secs(30));
    let opts = Options {
        group_read_counters: false,
        ..Options::default()
    };
    let n = compare::compare(&reference, &target, &opts)
        .unwrap_or_else(|report| panic!("{report}\nferry log:\n{}", ferry.log()));
    assert!(n > 500, "{n}");
    assert!(
        ferry.status().unwrap()["filtered_commands"]
            .as_u64()
            .unwrap()
            >= 1
    );
}

/// FLUSHALL with db 2 filtered out empties only the synced dbs of the target: a key the
/// target holds in db 2 stays.
#[test]
fn flushall_with_a_filtered_db() {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &populate_spec(7));
    let _: () = redis::cmd("SET")
        .arg("target-only")
        .arg("kept")
        .query(&mut target.conn_db(2))
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &source, &target, "block_db = [2]");
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let work = Spec {
        seed: 18,
        dbs: vec![0, 1],
        ..populate_spec(7)
    };
    workload::Workload::new(&work).run(&source, 1000);
    let _: () = redis::cmd("FLUSHALL").query(&mut source.conn()).unwrap();
    workload::Workload::new(&Spec { seed: 19, ..work }).run(&source, 1000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let opts = Options {
        dbs: vec![0, 1],
        ..options(|db, _, _| db != 2)
    };
    compare::eventually_equal(&source, &target, &opts, Duration::from_secs(20))
        .unwrap_or_else(|report| panic!("{report}\nferry log:\n{}", ferry.log()));
    let kept: Option<String> = redis::cmd("GET")
        .arg("target-only")
        .query(&mut target.conn_db(2))
        .unwrap();
    assert_eq!(kept.as_deref(), Some("kept"), "{}", ferry.log());
    // Nothing of source db 2 reached it.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut target.conn_db(2))
        .unwrap();
    assert_eq!(keys, ["target-only"]);
}

/// SWAPDB between a synced db and one that is not: the task stops, saying why.
#[test]
fn swapdb_into_a_filtered_db_stops_the_task() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &source, &target, "allow_db = [0]");
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let _: () = redis::cmd("SWAPDB")
        .arg(0)
        .arg(3)
        .query(&mut source.conn())
        .unwrap();
    let code = ferry.wait(Duration::from_secs(30));
    assert!(!code.success());
    let log = ferry.log();
    let last = log
        .lines()
        .rev()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or("");
    assert!(
        last.contains("SWAPDB 0 3 from the source") && last.contains("db 3 is filtered out"),
        "{log}"
    );
}

/// Expiries on the target are the source's plus `ttl_extend`, from the snapshot (whole and
/// chunked keys) and the stream (EXPIRE, PEXPIREAT, SET EX, SETEX, RESTORE... as the workload
/// issues them).
///
/// Streams are left out here: with streams written in chunks (`big_value_elements = 50`) the
/// target sometimes lacks some of a consumer group's pending entries, with or without any
/// filter (seen in 2 of 5 runs with no filter). Likely cause: the chunked path recreates
/// pending entries with XCLAIM, and Redis 7.0 answers `XCLAIM ... FORCE` of an entry deleted
/// from the stream by dropping it from the pending list instead (checked by hand on 7.0.15).
#[test]
fn ttl_extend() {
    let r = run(
        &format!("ttl_extend = 1000\nblock_type = [\"stream\"]{CHUNKED}"),
        &Spec {
            ttl_fraction: 0.5,
            ..populate_spec(8)
        },
        &Spec {
            seed: 20,
            ..populate_spec(8)
        },
    );
    let opts = Options {
        ttl_offset_ms: 1_000_000,
        ..options(|_, _, kind| kind != "stream")
    };
    let n = assert_equal(&r, &opts);
    assert!(n > 500, "{n}");
    // The same data without the offset differs: the extension is really there.
    let plain = Options {
        ttl_offset_ms: 0,
        ..opts
    };
    assert!(compare::compare(&r.source, &r.target, &plain).is_err());
    // A TTL that deletes still deletes.
    let mut c = r.source.conn();
    let _: () = redis::cmd("SET")
        .arg("doomed")
        .arg("1")
        .query(&mut c)
        .unwrap();
    let _: i64 = redis::cmd("EXPIRE")
        .arg("doomed")
        .arg(-1)
        .query(&mut c)
        .unwrap();
    let mut ferry = r.ferry;
    wait_caught_up(&mut ferry, &r.source, Duration::from_secs(30));
    let exists: i64 = redis::cmd("EXISTS")
        .arg("doomed")
        .query(&mut r.target.conn())
        .unwrap();
    assert_eq!(exists, 0);
}

/// PUBLISH reaches the target's subscribers with `forward_publish`; Sentinel's hello channel
/// never does.
#[test]
fn forward_publish() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = config(dir.path(), &source, &target, "forward_publish = true");
    let mut ferry = Ferry::start_with_status(&["--config", &path]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let client = redis::Client::open(target.url()).unwrap();
    let mut sub = client.get_connection().unwrap();
    let mut pubsub = sub.as_pubsub();
    pubsub.psubscribe("*").unwrap();
    pubsub
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut c = source.conn();
    for (channel, msg) in [
        ("__sentinel__:hello", "hi"),
        ("news", "first"),
        ("news", "second"),
    ] {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(channel)
            .arg(msg)
            .query(&mut c)
            .unwrap();
    }
    let mut got = Vec::new();
    for _ in 0..2 {
        let m = pubsub.get_message().unwrap();
        got.push((
            m.get_channel_name().to_string(),
            m.get_payload::<String>().unwrap(),
        ));
    }
    assert_eq!(
        got,
        [
            ("news".to_string(), "first".to_string()),
            ("news".to_string(), "second".to_string())
        ]
    );
    wait_caught_up(&mut ferry, &source, Duration::from_secs(30));
}

/// A bad filter is one line naming the option, before anything is copied.
#[test]
fn bad_filters_are_one_line() {
    for (args, says) in [
        (
            &["--allow-key-regex", "user:(\\d+"][..],
            "ferry: filter.allow_key_regex[0] \"user:(\\\\d+\" is not a valid regular expression",
        ),
        (
            &["--db-map", "1:5"][..],
            "ferry: --db-map \"1:5\" is not SOURCE=TARGET",
        ),
        (
            &["--allow-db", "3", "--block-db", "3"][..],
            "ferry: filter.allow_db and filter.block_db both name 3",
        ),
        (
            &["--block-type", "vector"][..],
            "ferry: filter.block_type: \"vector\" is not a type",
        ),
    ] {
        let mut all = vec![
            "--source",
            "redis://127.0.0.1:1",
            "--target",
            "redis://127.0.0.1:2",
        ];
        all.extend_from_slice(args);
        let mut ferry = Ferry::start(&all);
        let code = ferry.wait(Duration::from_secs(30));
        assert_eq!(code.code(), Some(1));
        let log = ferry.log();
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 1, "{log}");
        assert!(lines[0].starts_with(says), "{log}");
    }
    // A db map beyond the target's dbs is refused when ferry connects to it.
    let source = Server::start();
    let target = Server::start_with(&["--databases", "4"]);
    let mut ferry = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--db-map",
        "1=7",
    ]);
    assert!(!ferry.wait(Duration::from_secs(30)).success());
    let log = ferry.log();
    let last = log.lines().last().unwrap_or("");
    assert!(
        last.starts_with(
            "ferry: filter.db_map sends source db 1 to target db 7, but the target has 4 dbs"
        ),
        "{log}"
    );
}

/// Into a cluster target: the router applies the filter once for every master, and source
/// db 1 mapped to db 0 is written there (cross-slot DELs and MSETs cut to the allowed keys).
#[test]
fn into_a_cluster_with_db_map_and_key_filter() {
    let source = Server::start();
    let target = testkit::Cluster::start(3, 0);
    let populate = Spec {
        dbs: vec![0, 1],
        ..populate_spec(9)
    };
    workload::populate(&source, &populate);
    let work = Spec {
        seed: 21,
        dbs: vec![1],
        ..populate.clone()
    };
    let background = workload::run_in_background(&source, work.clone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[filter]\nallow_db = [1]\ndb_map = {{ \"1\" = 0 }}\nblock_key_prefix = [\"wl:s:\", \"wl:h:\"]\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", path.to_str().unwrap()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    workload::Workload::new(&Spec { seed: 22, ..work }).run(&source, 1500);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let blocked = |k: &[u8]| k.starts_with(b"wl:s:") || k.starts_with(b"wl:h:");
    let opts = Options {
        db_map: vec![(1, 0)],
        ..options(move |db, k, _| db == 1 && !blocked(k))
    };
    let n = compare::eventually_equal_sides(
        &compare::Side::from(&source),
        &compare::Side::from(&target),
        &opts,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|report| panic!("{report}\nferry log:\n{}", ferry.log()));
    assert!(n > 200, "{n} keys compared");
    let st = ferry.status().unwrap();
    assert!(st["filtered_keys"].as_u64().unwrap() > 0, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
}
