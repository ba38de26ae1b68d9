//! `compare` finds every kind of difference, names the key, and stays quiet on equal data
//! (including data that expires while it is being read).

use std::time::Duration;

use redis::Connection;
use testkit::Server;
use testkit::compare::{self, Diff, Options, Problem};
use testkit::workload::{self, Spec};

fn spec() -> Spec {
    Spec {
        keys_per_db: 200,
        ..Spec::default()
    }
}

/// Two servers holding the same dataset.
fn pair() -> (Server, Server) {
    let (source, target) = (Server::start(), Server::start());
    workload::populate(&source, &spec());
    workload::populate(&target, &spec());
    (source, target)
}

fn run(conn: &mut Connection, args: &[&[u8]]) -> redis::Value {
    let mut c = redis::cmd(std::str::from_utf8(args[0]).unwrap());
    for a in &args[1..] {
        c.arg(*a);
    }
    c.query(conn).unwrap()
}

/// Compares and expects exactly one difference, on `key` in `db`; returns the report text.
fn single_diff(source: &Server, target: &Server, db: i64, key: &[u8]) -> (Problem, String) {
    let report = compare::compare(source, target, &Options::default())
        .expect_err("a difference must be found");
    let text = report.to_string();
    assert!(report.error.is_none(), "{text}");
    assert_eq!(report.diffs.len(), 1, "{text}");
    match &report.diffs[0] {
        Diff::Key {
            db: d,
            key: k,
            problem,
        } if *d == db && k == key => (problem.clone(), text),
        other => panic!("expected a difference on db {db} key {key:?}, got {other}"),
    }
}

#[test]
fn same_spec_compares_equal() {
    let (source, target) = pair();
    let n =
        compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(n, 3 * 200);
    // Restricting the dbs restricts the walk.
    let opts = Options {
        dbs: vec![1],
        ..Options::default()
    };
    assert_eq!(compare::compare(&source, &target, &opts).unwrap(), 200);
}

#[test]
fn changed_value_is_reported() {
    let (source, target) = pair();
    let mut conn = target.conn_db(1);
    run(&mut conn, &[b"SETRANGE", b"p:StrShort:1", b"0", b"changed"]);
    let (problem, text) = single_diff(&source, &target, 1, b"p:StrShort:1");
    assert_eq!(problem, Problem::Digest);
    assert!(
        text.contains("db 1 key \"p:StrShort:1\": digest differs"),
        "{text}"
    );
}

#[test]
fn changed_element_of_a_big_collection_is_reported() {
    let (source, target) = pair();
    let mut conn = target.conn();
    run(&mut conn, &[b"LSET", b"p:ListBig:7", b"1000", b"changed"]);
    let (problem, _) = single_diff(&source, &target, 0, b"p:ListBig:7");
    assert_eq!(problem, Problem::Digest);
}

#[test]
fn missing_key_is_reported() {
    let (source, target) = pair();
    let mut conn = target.conn();
    run(&mut conn, &[b"DEL", b"p:HashSmall:13"]);
    let (problem, text) = single_diff(&source, &target, 0, b"p:HashSmall:13");
    assert_eq!(problem, Problem::MissingOnTarget);
    assert!(
        text.contains("db 0 key \"p:HashSmall:13\": missing on target"),
        "{text}"
    );
}

#[test]
fn missing_binary_key_is_named_escaped() {
    let (source, target) = pair();
    // Key 5 of each db has a binary name (see populate).
    let key = b"p:bin\x00\xff\r\n \"p:StrLzf:5\x82";
    let mut conn = target.conn_db(2);
    let deleted: i64 = redis::cmd("DEL").arg(&key[..]).query(&mut conn).unwrap();
    assert_eq!(deleted, 1);
    let (problem, text) = single_diff(&source, &target, 2, key);
    assert_eq!(problem, Problem::MissingOnTarget);
    assert!(
        text.contains(r#"db 2 key "p:bin\x00\xff\r\n \"p:StrLzf:5\x82": missing on target"#),
        "{text}"
    );
}

#[test]
fn changed_type_is_reported() {
    let (source, target) = pair();
    let mut conn = target.conn();
    run(&mut conn, &[b"DEL", b"p:StrInt:0"]);
    run(&mut conn, &[b"RPUSH", b"p:StrInt:0", b"a"]);
    let (problem, text) = single_diff(&source, &target, 0, b"p:StrInt:0");
    assert!(matches!(problem, Problem::Type { .. }), "{text}");
    assert!(
        text.contains("db 0 key \"p:StrInt:0\": type string vs list"),
        "{text}"
    );
}

#[test]
fn changed_ttl_is_reported() {
    let (source, target) = pair();
    for server in [&source, &target] {
        run(&mut server.conn(), &[b"PERSIST", b"p:ZsetSmall:11"]);
    }
    run(
        &mut target.conn(),
        &[b"PEXPIRE", b"p:ZsetSmall:11", b"9000000"],
    );
    let (problem, text) = single_diff(&source, &target, 0, b"p:ZsetSmall:11");
    assert!(
        matches!(
            problem,
            Problem::Ttl {
                source: None,
                target: Some(_)
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("db 0 key \"p:ZsetSmall:11\": ttl none vs 89"),
        "{text}"
    );

    // Both with a TTL, further apart than the tolerance.
    run(
        &mut source.conn(),
        &[b"PEXPIRE", b"p:ZsetSmall:11", b"5000000"],
    );
    let (problem, _) = single_diff(&source, &target, 0, b"p:ZsetSmall:11");
    assert!(matches!(
        problem,
        Problem::Ttl {
            source: Some(_),
            target: Some(_)
        }
    ));
    // Within the tolerance: equal.
    run(
        &mut source.conn(),
        &[b"PEXPIRE", b"p:ZsetSmall:11", b"8999500"],
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
}

#[test]
fn extra_key_in_db2_is_reported() {
    let (source, target) = pair();
    run(&mut target.conn_db(2), &[b"SET", b"extra-key", b"x"]);
    let (problem, text) = single_diff(&source, &target, 2, b"extra-key");
    assert_eq!(problem, Problem::ExtraOnTarget);
    assert!(
        text.contains("db 2 key \"extra-key\": extra on target"),
        "{text}"
    );
}

#[test]
fn extra_db_on_target_is_walked() {
    let (source, target) = pair();
    run(&mut target.conn_db(9), &[b"SET", b"stray", b"x"]);
    let (problem, _) = single_diff(&source, &target, 9, b"stray");
    assert_eq!(problem, Problem::ExtraOnTarget);
}

#[test]
fn ferry_keys_are_ignored() {
    let (source, target) = pair();
    run(&mut target.conn(), &[b"SET", b"__ferry:checkpoint", b"x"]);
    run(
        &mut source.conn_db(1),
        &[b"SET", b"__ferry:heartbeat", b"y"],
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
}

#[test]
fn stream_group_state_is_compared() {
    // DEBUG DIGEST-VALUE covers entries only; groups, consumers and pending entries are
    // compared separately.
    let (source, target) = pair();
    run(
        &mut target.conn(),
        &[
            b"XGROUP",
            b"CREATECONSUMER",
            b"p:Stream:16",
            b"g1",
            b"carol",
        ],
    );
    let (problem, text) = single_diff(&source, &target, 0, b"p:Stream:16");
    assert!(matches!(problem, Problem::StreamGroups { .. }), "{text}");
    assert!(text.contains("carol"), "{text}");

    let (source, target) = pair();
    run(
        &mut target.conn(),
        &[
            b"XACK",
            b"p:Stream:16",
            b"g1",
            b"1000-0",
            b"1000-2",
            b"1001-0",
        ],
    );
    let (problem, _) = single_diff(&source, &target, 0, b"p:Stream:16");
    assert!(matches!(problem, Problem::StreamGroups { .. }));
}

#[test]
fn group_progress_can_be_left_out() {
    // An acknowledgement is progress; a consumer more is not.
    let (source, target) = pair();
    run(
        &mut target.conn(),
        &[b"XACK", b"p:Stream:16", b"g1", b"1000-0", b"1000-2"],
    );
    let opts = Options {
        group_progress: false,
        ..Options::default()
    };
    compare::compare(&source, &target, &opts).unwrap_or_else(|r| panic!("{r}"));
    run(
        &mut target.conn(),
        &[
            b"XGROUP",
            b"CREATECONSUMER",
            b"p:Stream:16",
            b"g1",
            b"carol",
        ],
    );
    let report = compare::compare(&source, &target, &opts).unwrap_err();
    assert_eq!(report.diffs.len(), 1, "{report}");
    assert!(report.to_string().contains("carol"), "{report}");
}

#[test]
fn function_libraries_are_compared() {
    let (source, target) = pair();
    if source.version().0 < 7 {
        return;
    }
    run(
        &mut target.conn(),
        &[b"FUNCTION", b"DELETE", b"ferry_testkit"],
    );
    let report = compare::compare(&source, &target, &Options::default()).unwrap_err();
    assert_eq!(
        report.diffs,
        [Diff::Library {
            name: "ferry_testkit".into(),
            problem: Problem::MissingOnTarget
        }],
        "{report}"
    );
}

#[test]
fn max_diffs_stops_the_walk() {
    let (source, target) = pair();
    run(&mut target.conn(), &[b"FLUSHALL"]);
    let opts = Options {
        max_diffs: 5,
        ..Options::default()
    };
    let report = compare::compare(&source, &target, &opts).unwrap_err();
    assert_eq!(report.diffs.len(), 5, "{report}");
    assert!(report.truncated);
}

#[test]
fn unreachable_server_is_an_error_not_a_panic() {
    let source = Server::start();
    let addr = {
        let gone = Server::start();
        gone.addr()
    };
    let report =
        compare::compare_addrs(&source.addr(), None, &addr, None, &Options::default()).unwrap_err();
    assert!(
        report.error.as_deref().unwrap_or("").contains(&addr),
        "{report}"
    );
}

#[test]
fn passwords_are_used() {
    let source = Server::start_with(&["--requirepass", "a"]);
    let target = Server::start_with(&["--requirepass", "b"]);
    workload::populate(&source, &spec());
    workload::populate(&target, &spec());
    assert_eq!(
        compare::compare(&source, &target, &Options::default()).unwrap(),
        600
    );
    let n = compare::compare_addrs(
        &source.addr(),
        Some("a"),
        &target.addr(),
        Some("b"),
        &Options::default(),
    );
    assert_eq!(n.unwrap(), 600);
}

#[test]
fn keys_expiring_during_the_walk_are_not_differences() {
    let (source, target) = (Server::start(), Server::start());
    for server in [&source, &target] {
        let mut pipe = redis::pipe();
        for i in 0..3000 {
            pipe.cmd("SET")
                .arg(format!("tmp:{i}"))
                .arg("v")
                .arg("PX")
                .arg(1 + i % 400)
                .ignore();
        }
        pipe.cmd("SET").arg("stays").arg("v").ignore();
        let _: () = pipe.query(&mut server.conn()).unwrap();
    }
    let mut rounds = 0;
    loop {
        let n = compare::compare(&source, &target, &Options::default())
            .unwrap_or_else(|r| panic!("{r}"));
        rounds += 1;
        if n == 1 {
            break;
        }
        assert!(rounds < 500, "keys never expired");
    }
}

#[test]
fn eventually_equal_waits_for_the_target() {
    let (source, target) = (Server::start(), Server::start());
    workload::populate(&source, &spec());
    assert!(compare::compare(&source, &target, &Options::default()).is_err());
    std::thread::scope(|s| {
        s.spawn(|| workload::populate(&target, &spec()));
        let n = compare::eventually_equal(
            &source,
            &target,
            &Options::default(),
            Duration::from_secs(20),
        );
        assert_eq!(n.unwrap_or_else(|r| panic!("{r}")), 600);
    });
}

/// For a sync that filters, maps dbs and extends TTLs: the expectation follows the options,
/// and a key where it should not be, or an expiry off by the extension, is still found.
#[test]
fn expect_db_map_and_ttl_offset() {
    use compare::KeyFilter;
    let (source, target) = (Server::start(), Server::start());
    let (mut s1, mut t5) = (source.conn_db(1), target.conn_db(5));
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + 3_600_000;
    for (conn, extra) in [(&mut s1, 0), (&mut t5, 5000)] {
        run(conn, &[b"SET", b"keep", b"1"]);
        run(conn, &[b"SET", b"ttl", b"2"]);
        run(
            conn,
            &[b"PEXPIREAT", b"ttl", (at + extra).to_string().as_bytes()],
        );
    }
    run(&mut s1, &[b"SET", b"blocked:1", b"x"]);
    run(&mut source.conn_db(0), &[b"SET", b"other-db", b"x"]);
    let opts = Options {
        expect: Some(KeyFilter::new(|db, k, _| {
            db == 1 && !k.starts_with(b"blocked:")
        })),
        db_map: vec![(1, 5)],
        ttl_offset_ms: 5000,
        ..Options::default()
    };
    assert_eq!(compare::compare(&source, &target, &opts).unwrap(), 2);
    // Without the offset the expiry differs.
    let plain = Options {
        ttl_offset_ms: 0,
        ..opts.clone()
    };
    let report = compare::compare(&source, &target, &plain).unwrap_err();
    assert!(
        matches!(&report.diffs[..], [Diff::Key { key, problem: Problem::Ttl { .. }, .. }] if key == b"ttl"),
        "{report}"
    );
    // A blocked key on the target, and a key in a target db nothing maps to, are extra.
    run(&mut t5, &[b"SET", b"blocked:1", b"x"]);
    run(&mut target.conn_db(1), &[b"SET", b"stray", b"x"]);
    let report = compare::compare(&source, &target, &opts).unwrap_err();
    let mut found: Vec<(i64, Vec<u8>)> = report
        .diffs
        .iter()
        .map(|d| match d {
            Diff::Key {
                db,
                key,
                problem: Problem::ExtraOnTarget,
            } => (*db, key.clone()),
            other => panic!("{other}"),
        })
        .collect();
    found.sort();
    assert_eq!(found, [(1, b"stray".to_vec()), (5, b"blocked:1".to_vec())]);
}
