//! Every form a source propagates reaches the target as a command it takes, with the same
//! effect. The application runs the original commands on the source; ferry applies what the
//! source propagated (`XADD ... MAXLEN = n LIMIT k`, `SET ... PXAT`, `LPOP key count`,
//! `XCLAIM ... LASTID`, ...); after each form the target is compared with the source key by
//! key, so a failure names the form.
//!
//! - Into a plain master of the same version, on every version of the matrix: the forms a
//!   source sends only to its replicas.
//! - Into older targets (8.0 → 5.0, 7.0 → 5.0, 8.0 → 6.2, 8.0 → 7.0): every newer form is
//!   rewritten into what the target knows; what it cannot hold is counted in `dropped` and the
//!   case then removes it on the source too (a hash field's TTL, a function library), so the
//!   rest still compares.
//!
//! Versions the cache lacks are skipped with a note.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::versions::{self, Version};

/// One form: the commands the application runs, from the source version that has them.
struct Case {
    name: &'static str,
    /// Oldest source (`redis_version`) that has every command of the case.
    since: (u32, u32, u32),
    /// Valkey 8 reports 7.2.4 but has no hash field TTLs.
    redis_only: bool,
    /// Only on Valkey, from this version (which its `redis_version` does not tell).
    valkey: Option<(u32, u32, u32)>,
    /// Lines to run: arguments split on spaces, or on `|` when the line starts with one.
    lines: fn(now_ms: u64) -> Vec<String>,
}

const DELETED_CLAIM: &str = "XAUTOCLAIM of a deleted entry";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "XADD MAXLEN ~ (propagated as MAXLEN = n)",
            since: (5, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                let mut l: Vec<String> =
                    (1..=60).map(|i| format!("XADD xa {i}-1 f v{i}")).collect();
                l.push("XADD xa MAXLEN ~ 5 61-1 f v".into());
                l
            },
        },
        Case {
            name: "XADD MAXLEN ~ LIMIT (propagated as MAXLEN = n LIMIT k)",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                let mut l: Vec<String> =
                    (1..=60).map(|i| format!("XADD xl {i}-1 f v{i}")).collect();
                l.push("XADD xl MAXLEN ~ 3 LIMIT 25 * f v".into());
                l.push("XADD xl MAXLEN ~ 3 LIMIT 25 * f v".into());
                l
            },
        },
        Case {
            name: "XTRIM MAXLEN ~ LIMIT",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                let mut l: Vec<String> =
                    (1..=60).map(|i| format!("XADD xt {i}-1 f v{i}")).collect();
                l.push("XTRIM xt MAXLEN ~ 10 LIMIT 15".into());
                l.push("XTRIM xt MAXLEN = 45".into());
                l
            },
        },
        Case {
            name: "XADD/XTRIM MINID ~ LIMIT, NOMKSTREAM",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                let mut l: Vec<String> =
                    (1..=60).map(|i| format!("XADD xm {i}-1 f v{i}")).collect();
                l.push("XADD xm MINID ~ 35-0 LIMIT 10 * f v".into());
                l.push("XTRIM xm MINID ~ 35-0 LIMIT 10".into());
                l.push("XTRIM xm MINID 40-1".into());
                l.push("XADD xm NOMKSTREAM MINID = 45-0 * f v".into());
                l.push("XADD xm:none NOMKSTREAM * f v".into());
                l
            },
        },
        Case {
            name: "SET EX/PX, SETEX, PSETEX, GETSET (SET PXAT from 7.0)",
            since: (5, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "SET s1 a EX 100",
                    "SET s2 a PX 100000 NX",
                    "SET s2 b XX PX 200000",
                    "SETEX s3 100 a",
                    "PSETEX s4 100000 a",
                    "GETSET s4 b",
                    "SET s5 1.5",
                    "INCRBYFLOAT s5 2.25",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            // 5.0 propagates INCRBYFLOAT as a SET that loses the TTL its own key keeps (its
            // replicas drift the same way); from 6.0 as SET ... KEEPTTL.
            name: "SET KEEPTTL, INCRBYFLOAT of a key with a TTL",
            since: (6, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "SET sk a EX 100",
                    "SET sk b KEEPTTL",
                    "SET sk c XX KEEPTTL",
                    "SET sf 1.5 EX 300",
                    "INCRBYFLOAT sf 2.25",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "SET GET/EXAT/PXAT, GETEX, GETDEL",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |now| {
                vec![
                    format!("SET sg a EXAT {}", now / 1000 + 100),
                    format!("SET sg b PXAT {} GET", now + 200_000),
                    "SET sg2 a GET".into(),
                    "SET sg2 b XX GET".into(),
                    "SET sg3 a".into(),
                    "GETEX sg3 EX 100".into(),
                    "SET sg4 a EX 100".into(),
                    "GETEX sg4 PERSIST".into(),
                    format!("GETEX sg3 PXAT {}", now + 300_000),
                    "SET sg5 a".into(),
                    "GETDEL sg5".into(),
                ]
            },
        },
        Case {
            name: "SET IFEQ (Valkey 8.1)",
            since: (7, 2, 0),
            redis_only: false,
            valkey: Some((8, 1, 0)),
            lines: |_| {
                ["SET si a", "SET si b IFEQ a", "SET si c IFEQ b GET EX 100"]
                    .map(String::from)
                    .to_vec()
            },
        },
        Case {
            name: "SET NX GET",
            since: (7, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                ["SET sn a NX GET", "SET sn b XX GET EX 100"]
                    .map(String::from)
                    .to_vec()
            },
        },
        Case {
            name: "EXPIRE, PEXPIRE, EXPIREAT (PEXPIREAT from 7.0)",
            since: (5, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |now| {
                vec![
                    "SET e1 a".into(),
                    "EXPIRE e1 100".into(),
                    "SET e2 a".into(),
                    "PEXPIRE e2 100000".into(),
                    "SET e3 a".into(),
                    format!("EXPIREAT e3 {}", now / 1000 + 100),
                    "SET e4 a".into(),
                    "EXPIRE e4 -1".into(),
                ]
            },
        },
        Case {
            name: "EXPIRE NX/XX/GT/LT",
            since: (7, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "SET ex a",
                    "EXPIRE ex 100 NX",
                    "EXPIRE ex 200 GT",
                    "EXPIRE ex 150 LT",
                    "EXPIRE ex 300 XX",
                    "PEXPIRE ex 100000 LT",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "BLPOP, BRPOP, BRPOPLPUSH, SPOP count, HINCRBYFLOAT, ZPOPMIN, BZPOPMAX",
            since: (5, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "RPUSH bl 1 2 3 4 5",
                    "BLPOP bl 1",
                    "BRPOP bl 1",
                    "BRPOPLPUSH bl bl2 1",
                    "SADD sp a b c d e f",
                    "SPOP sp 2",
                    "SPOP sp",
                    "HSET hf a 1 b 2",
                    "HINCRBYFLOAT hf a 1.5",
                    "ZADD zp 1 a 2 b 3 c 4 d",
                    "ZPOPMIN zp 2",
                    "BZPOPMAX zp 1",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "LMOVE, BLMOVE, LPOP/RPOP count",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "RPUSH lm 1 2 3 4 5 6 7 8",
                    "LMOVE lm lm2 LEFT LEFT",
                    "LMOVE lm lm2 LEFT RIGHT",
                    "LMOVE lm lm2 RIGHT LEFT",
                    "LMOVE lm lm2 RIGHT RIGHT",
                    "BLMOVE lm lm LEFT RIGHT 1",
                    "LPOP lm 2",
                    "RPOP lm2 2",
                    "LPOP lm 10",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "LMPOP, BLMPOP, ZMPOP, BZMPOP",
            since: (7, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "RPUSH lp 1 2 3 4 5 6",
                    "LMPOP 2 lp:none lp LEFT COUNT 2",
                    "BLMPOP 1 1 lp RIGHT COUNT 3",
                    "ZADD zm 1 a 2 b 3 c 4 d",
                    "ZMPOP 1 zm MIN COUNT 2",
                    "BZMPOP 1 1 zm MAX",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "ZADD GT/LT (INCR, XX, CH)",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "ZADD zg 1 a 5 b 0.1 e",
                    "ZADD zg GT 3 a 2 b 7 c",
                    "ZADD zg LT CH 0.5 a 9 b",
                    "ZADD zg GT XX 11 c 4 d",
                    "ZADD zg GT INCR 2 a",
                    "ZADD zg GT 0.30000000000000004 e",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "ZRANGESTORE, ZDIFFSTORE, GEOSEARCHSTORE, COPY",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "ZADD zr 1 a 2 b 3 c 4 d 5 e 6 f 7 g 8 h",
                    "ZADD zl 0 a 0 b 0 c 0 d 0 e",
                    "ZRANGESTORE zr:1 zr 1 3",
                    "ZRANGESTORE zr:2 zr 2 6 BYSCORE LIMIT 1 2",
                    "ZRANGESTORE zr:3 zr 6 (2 BYSCORE REV",
                    "ZRANGESTORE zr:4 zl [b [d BYLEX",
                    "ZRANGESTORE zr:5 zl + - BYLEX REV LIMIT 0 3",
                    "ZRANGESTORE zr:6 zr 0 -1 REV",
                    "ZRANGESTORE zr:1 zr 20 30 BYSCORE",
                    "ZADD zd:o 0 b 0 d",
                    "ZDIFFSTORE zd 2 zr zd:o",
                    "GEOADD geo 13.361389 38.115556 Palermo 15.087269 37.502669 Catania",
                    "GEOSEARCHSTORE geo:1 geo FROMMEMBER Palermo BYRADIUS 200 km ASC COUNT 1",
                    "GEOSEARCHSTORE geo:2 geo FROMLONLAT 15 37 BYRADIUS 200 km",
                    "SET cp:a v EX 100",
                    "COPY cp:a cp:b",
                    "RPUSH cp:l 1 2 3",
                    "COPY cp:l cp:b REPLACE",
                    "COPY cp:l cp:a",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "XREADGROUP, XCLAIM, XACK (XCLAIM ... LASTID, XGROUP SETID)",
            since: (5, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "XADD xg 1-1 f v",
                    "XADD xg 2-1 f v",
                    "XADD xg 3-1 f v",
                    "XADD xg 4-1 f v",
                    "XGROUP CREATE xg g 0",
                    "XREADGROUP GROUP g c1 COUNT 2 STREAMS xg >",
                    "XREADGROUP GROUP g c2 NOACK COUNT 1 STREAMS xg >",
                    "XCLAIM xg g c3 0 1-1",
                    "XACK xg g 2-1",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "XAUTOCLAIM, XGROUP CREATECONSUMER",
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "XADD xc 1-1 f v",
                    "XADD xc 2-1 f v",
                    "XADD xc 3-1 f v",
                    "XGROUP CREATE xc g 0",
                    "XREADGROUP GROUP g c1 STREAMS xc >",
                    "XAUTOCLAIM xc g c2 0 0-0 COUNT 2",
                    "XGROUP CREATECONSUMER xc g c9",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            // From 7.0 a claimed id whose entry is gone leaves the pending list; before 7.0
            // it stays (claimed), and the XCLAIM the source propagates for it does the same
            // on the target: equal only where both sides are on the same side of 7.0.
            name: DELETED_CLAIM,
            since: (6, 2, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "XADD xd 1-1 f v",
                    "XADD xd 2-1 f v",
                    "XGROUP CREATE xd g 0",
                    "XREADGROUP GROUP g c1 STREAMS xd >",
                    "XDEL xd 1-1",
                    "XAUTOCLAIM xd g c2 0 0-0",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "XSETID ENTRIESADDED/MAXDELETEDID, XGROUP CREATE/SETID ENTRIESREAD",
            since: (7, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "XADD xs 1-1 f v",
                    "XADD xs 2-1 f v",
                    "XDEL xs 2-1",
                    "XSETID xs 5-0 ENTRIESADDED 9 MAXDELETEDID 3-0",
                    "XGROUP CREATE xs g 0 ENTRIESREAD 0",
                    "XGROUP SETID xs g 1-1 ENTRIESREAD 1",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "EVAL (its writes), FUNCTION LOAD/FCALL/DELETE",
            since: (7, 0, 0),
            redis_only: false,
            valkey: None,
            lines: |_| {
                [
                    "|EVAL|redis.call('INCR', KEYS[1]) redis.call('LPUSH', KEYS[2], 'x') return 1|2|ev:a|ev:b",
                    "|FUNCTION|LOAD|#!lua name=forms\nredis.register_function('fset', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
                    "FCALL fset 1 fn:a v",
                    "FUNCTION DELETE forms",
                ]
                .map(String::from)
                .to_vec()
            },
        },
        Case {
            name: "HEXPIRE, HPEXPIREAT, HPERSIST",
            since: (7, 4, 0),
            redis_only: true,
            valkey: None,
            lines: |now| {
                vec![
                    "HSET hx a 1 b 2 c 3".into(),
                    "HEXPIRE hx 100 FIELDS 1 a".into(),
                    format!("HPEXPIREAT hx {} FIELDS 2 b c", now + 200_000),
                    "HPERSIST hx FIELDS 1 a".into(),
                    // What a target before 7.4 cannot hold, gone on the source too.
                    "HPERSIST hx FIELDS 2 b c".into(),
                ]
            },
        },
        Case {
            name: "HSETEX, HGETEX, HGETDEL",
            since: (8, 0, 0),
            redis_only: true,
            valkey: None,
            lines: |_| {
                [
                    "HSETEX hs PX 100000 FIELDS 2 a 1 b 2",
                    "HSETEX hs FNX EX 100 FIELDS 1 c 3",
                    "HGETEX hs PERSIST FIELDS 1 a",
                    "HGETEX hs EX 500 FIELDS 1 b",
                    "HGETDEL hs FIELDS 1 a",
                    "HSETEX hs FIELDS 1 d 4",
                    "HPERSIST hs FIELDS 2 b c",
                ]
                .map(String::from)
                .to_vec()
            },
        },
    ]
}

fn run_line(conn: &mut redis::Connection, line: &str) {
    let args: Vec<&str> = match line.strip_prefix('|') {
        Some(rest) => rest.split('|').collect(),
        None => line.split(' ').collect(),
    };
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    let _: redis::Value = cmd.query(conn).unwrap_or_else(|e| panic!("{line}: {e}"));
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Runs every case the source has through a sync into `target`, comparing after each.
/// Returns the `dropped` count at the end.
fn run_cases(
    source: &Server,
    source_v: &Version,
    target: &Server,
    checkpoint: bool,
    label: &str,
) -> u64 {
    // Small stream nodes on the source: an approximate trim there removes whole nodes, which
    // the target (default node size) could only match by trimming exactly as many entries.
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("stream-node-max-entries")
        .arg("10")
        .query(&mut source.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        if checkpoint {
            ""
        } else {
            "[advanced]\ncheckpoint = false"
        },
    );
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let target_v = target.version();
    let options = Options {
        group_read_counters: false,
        // Consumers without pending entries: not replicated from 7.2 on, and not creatable
        // before 6.2 (dropped, counted).
        idle_consumers: source_v.redis_version < (7, 2, 0) && target_v >= (6, 2, 0),
        ..Options::default()
    };
    let mut conn = source.conn();
    let mut ran = 0;
    for case in cases() {
        if source_v.redis_version < case.since || (case.redis_only && source_v.product != "redis") {
            continue;
        }
        if case
            .valkey
            .is_some_and(|v| source_v.product != "valkey" || source_v.version < v)
        {
            continue;
        }
        if case.name == DELETED_CLAIM
            && (source_v.redis_version >= (7, 0, 0)) != (target_v >= (7, 0, 0))
        {
            continue;
        }
        let now = now_ms();
        for line in (case.lines)(now) {
            run_line(&mut conn, &line);
        }
        wait_caught_up(&mut ferry, source, Duration::from_secs(60));
        compare::eventually_equal(source, target, &options, Duration::from_secs(10))
            .unwrap_or_else(|r| {
                panic!(
                    "{label}: after {}: {r}\nferry log:\n{}",
                    case.name,
                    ferry.log()
                )
            });
        ran += 1;
    }
    assert!(ran > 0, "{label}: no case ran");
    let st = ferry.status().unwrap();
    eprintln!("{label}: dropped {}", st["dropped"]);
    for line in ferry.log().lines().filter(|l| l.contains("left out")) {
        eprintln!("{label}: {line}");
    }
    assert!(
        ferry.terminate(Duration::from_secs(30)).success(),
        "{label}"
    );
    st["dropped"].as_u64().unwrap_or(0)
}

/// Part 2: each version into a plain master of the same version. Nothing is dropped.
#[test]
fn propagated_forms_apply_on_a_plain_master_of_each_version() {
    for v in versions::ALL {
        let Some((version, bin)) = versions::cached(v.name) else {
            continue;
        };
        let source = Server::start_bin(&bin, &[]);
        let target = Server::start_bin(&bin, &[]);
        let label = format!("{version} -> {version}");
        let dropped = run_cases(&source, &version, &target, true, &label);
        assert_eq!(dropped, 0, "{label}");
    }
}

/// Part 5: newer sources into older targets; what the target cannot hold is counted.
#[test]
fn newer_forms_are_rewritten_for_older_targets() {
    for (from, into, drops) in [
        ("redis-8.0.2", "redis-5.0.6", true),
        ("redis-7.0.15", "redis-5.0.6", true),
        ("redis-8.0.2", "redis-6.2.14", true),
        ("redis-8.0.2", "redis-7.0.15", true),
        ("valkey-8.1.1", "valkey-8.0.1", false),
        ("valkey-8.1.1", "redis-6.2.14", true),
    ] {
        let (Some((source_v, source_bin)), Some((_, target_bin))) =
            (versions::cached(from), versions::cached(into))
        else {
            continue;
        };
        let source = Server::start_bin(&source_bin, &[]);
        let target = Server::start_bin(&target_bin, &[]);
        let label = format!("{from} -> {into}");
        let dropped = run_cases(&source, &source_v, &target, true, &label);
        assert_eq!(dropped > 0, drops, "{label}: dropped {dropped}");
    }
}

/// Without a checkpoint there is no ferry transaction around each command: a form written as
/// several commands gets one of its own (8.0 into 5.0).
#[test]
fn newer_forms_without_a_checkpoint() {
    let (Some((source_v, source_bin)), Some((_, target_bin))) = (
        versions::cached("redis-8.0.2"),
        versions::cached("redis-5.0.6"),
    ) else {
        return;
    };
    let source = Server::start_bin(&source_bin, &[]);
    let target = Server::start_bin(&target_bin, &[]);
    let dropped = run_cases(
        &source,
        &source_v,
        &target,
        false,
        "8.0 -> 5.0, no checkpoint",
    );
    assert!(dropped > 0);
}

/// Into a cluster of an older version, commands whose keys span slots are computed by one
/// master on copies of their keys (see README, Clusters): there too in a form it takes. A
/// 7.0 source into a 3-master Redis 5.0 cluster.
#[test]
fn cross_slot_forms_into_an_older_cluster() {
    let (Some((_, v7)), Some((_, v5))) = (
        versions::cached("redis-7.0.15"),
        versions::cached("redis-5.0.6"),
    ) else {
        return;
    };
    let source = Server::start_bin(&v7, &["--repl-diskless-sync-delay", "0"]);
    let target = testkit::Cluster::start_bin(&v5, 3, 0, &[]);
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut conn = source.conn();
    for line in [
        "RPUSH la 1 2 3 4 5 6",
        "LMOVE la lb LEFT RIGHT",
        "LMOVE la lb RIGHT LEFT",
        "ZADD za 1 a 2 b 3 c 4 d",
        "ZADD zb 0 b",
        "ZRANGESTORE zc za 1 3 BYSCORE",
        "ZDIFFSTORE zd 2 za zb",
        "SET ca v EX 100",
        "COPY ca cb",
        "SET {t}a v EX 100",
        "LPOP la 2",
    ] {
        run_line(&mut conn, line);
    }
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let st = ferry.status().unwrap();
    assert!(st["cross_slot_commands"].as_u64().unwrap() >= 4, "{st}");
    compare::eventually_equal_sides(
        &testkit::compare::Side::from(&source),
        &testkit::compare::Side::from(&target),
        &Options::default(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}
