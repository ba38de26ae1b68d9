//! Target mode "replica": the target replicates from ferry, which relays the source's
//! snapshot and stream. Checked key by key against the source, across kills of ferry (the
//! target continues from its own offset, exactly once), with `--full-only`, through a cutover,
//! and the refusals of what the mode cannot do.

mod common;

use std::time::Duration;

use common::{Ferry, config_file, get, incr, refused, resyncs, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};

const WAIT: Duration = Duration::from_secs(120);

fn stream_options() -> Options {
    // Redis's stream does not carry consumer groups' read counters (its replicas drift too).
    Options {
        group_read_counters: false,
        ..Options::default()
    }
}

fn role(server: &Server) -> String {
    server.info("replication")["role"].clone()
}

/// `ferry sync` arguments from `source` into `target` in replica mode.
fn replica_args(source: &str, target: &Server) -> Vec<String> {
    [
        "--source",
        source,
        "--target",
        &target.url(),
        "--target-mode",
        "replica",
    ]
    .map(String::from)
    .to_vec()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// A sync that reached its incremental phase, then was stopped (the target stays a replica).
fn synced_then_stopped(args: &[&str]) {
    let mut sync = Ferry::start_with_status(args);
    sync.wait_status(WAIT, "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let code = sync.terminate(WAIT);
    assert!(code.success(), "{code}; log:\n{}", sync.log());
}

/// A disk snapshot, then the stream under a random workload; ferry killed twice while writes
/// flow: each restart has the target ask to continue from its own offset, the source serves
/// a partial resync, and no write is lost or applied twice (INCR, APPEND, LPUSH, XADD ... in
/// the workload would show it key by key). The target's acknowledgements reach the source.
#[test]
fn the_target_follows_the_source_through_ferry_exactly_once_across_kills() {
    let source = Server::start_with(&["--repl-backlog-size", "64mb", "--repl-diskless-sync", "no"]);
    let target = Server::start();
    let spec = Spec {
        seed: 21,
        keys_per_db: 1000,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let owned = replica_args(&source.url(), &target);
    let args = strs(&owned);
    let mut ferry = Ferry::start_with_status(&args);
    // Once loaded, the status counts what the snapshot brought (the target's key count).
    ferry.wait_status(WAIT, "the loaded copy counted", |s| {
        s["phase"] == "incremental" && s["keys_written"].as_u64().unwrap_or(0) > 1000
    });
    assert_eq!(role(&target), "slave");
    let background = workload::run_in_background(&source, spec.clone());
    for round in 0..2 {
        std::thread::sleep(Duration::from_millis(700));
        ferry.kill();
        std::thread::sleep(Duration::from_millis(300));
        ferry = Ferry::start_with_status(&args);
        ferry.wait_status(WAIT, "the restarted stream", |s| {
            s["phase"] == "incremental"
        });
        assert!(
            ferry
                .log()
                .contains("the target continues from its own offset"),
            "round {round}:\n{}",
            ferry.log()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let counts = background.stop();
    for cmd in ["INCR", "APPEND", "LPUSH", "RPOPLPUSH", "XADD"] {
        assert!(
            counts.get(cmd).copied().unwrap_or(0) > 0,
            "workload never issued {cmd}"
        );
    }
    wait_caught_up(&mut ferry, &source, WAIT);
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(20))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    // The target asked with its own replication id at first (not `?`): the source turned
    // that down, then served the full sync, and only partial ones after.
    let log = source.log_tail(100_000);
    assert_eq!(
        log.matches("Partial resynchronization not accepted")
            .count(),
        1,
        "{log}"
    );
    assert_eq!(
        resyncs(&source).1,
        2,
        "the source should serve one full sync, then only partial ones:\n{log}"
    );
    // WAIT counts the target's acknowledgements, which ferry passes on.
    let acked: i64 = redis::cmd("WAIT")
        .arg(1)
        .arg(10_000)
        .query(&mut source.conn())
        .unwrap();
    assert_eq!(acked, 1, "the target's ACKs did not reach the source");
    // The target acknowledges once a second: its offset reaches the source's (the GETACK of
    // that WAIT included).
    let st = ferry.wait_status(WAIT, "no lag", |s| s["lag_bytes"] == 0);
    assert!(st["last_error"].is_null(), "{st}");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    // Stopped, the target stays a replica: the next start continues it.
    assert_eq!(role(&target), "slave");
}

/// `--full-only` over a diskless snapshot: ferry ends once the target has loaded it, and the
/// target is a master again, holding the source's data.
#[test]
fn full_only_leaves_the_target_a_master_with_the_copy() {
    let source = Server::start_with(&[
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 5,
            keys_per_db: 2000,
            ..Spec::default()
        },
    );
    let mut args = replica_args(&source.url(), &target);
    args.push("--full-only".into());
    let mut ferry = Ferry::start(&strs(&args));
    let code = ferry.wait(WAIT);
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    assert_eq!(role(&target), "master");
    let n =
        compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(n > 5000, "only {n} keys compared");
    // It takes writes again.
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg(1)
        .query(&mut target.conn())
        .unwrap();
}

/// `ferry cutover` of a replica-mode task: the target catches up through ferry, is verified,
/// and is made a master again, with every write the source took before the pause.
#[test]
fn a_cutover_makes_the_target_a_master_with_every_write() {
    let source = Server::start();
    let target = Server::start();
    let mut conn = source.conn();
    incr(&mut conn, "orders", 200);
    let owned = replica_args(&source.url(), &target);
    let args = strs(&owned);
    let mut sync = Ferry::start_with_status(&args);
    sync.wait_status(WAIT, "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    incr(&mut conn, "orders", 100);
    let code = sync.terminate(WAIT);
    assert!(code.success(), "{code}; log:\n{}", sync.log());
    // Written while ferry is stopped: the cutover's run brings them.
    incr(&mut conn, "orders", 50);
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["cutover", "--pause-writes", "60", "--json"])
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["promoted"], target.addr(), "{report}");
    assert_eq!(role(&target), "master");
    assert_eq!(get(&mut target.conn(), "orders"), Some(350));
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut source.conn())
        .unwrap();
}

/// A target holding keys of its own is not made a replica (which would drop them) unless
/// on_conflict = "flush" says so; what would change the data on its way is refused up front.
#[test]
fn what_replica_mode_cannot_do_is_refused_with_what_to_do() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg(1)
        .query(&mut target.conn())
        .unwrap();
    let line = refused(&strs(&replica_args(&source.url(), &target)));
    assert!(
        line.contains("holds 1 keys") && line.contains("on_conflict = \"flush\""),
        "{line}"
    );
    assert_eq!(role(&target), "master");
    assert_eq!(get(&mut target.conn(), "mine"), Some(1));

    let dir = tempfile::tempdir().unwrap();
    let path = config_file(dir.path(), &source.url(), &target.url(), "");
    let with = |extra: &str| {
        let text = std::fs::read_to_string(&path).unwrap();
        let file = dir.path().join("replica.toml");
        std::fs::write(
            &file,
            text.replace("[target]\n", "[target]\nmode = \"replica\"\n") + extra,
        )
        .unwrap();
        refused(&["--config", file.to_str().unwrap()])
    };
    let line = with("[filter]\nblock_keys = [\"tmp:*\"]\n");
    assert!(line.contains("[filter]"), "{line}");
    let line = with("[limit]\nfull_keys_per_sec = 1000\n");
    assert!(line.contains("[limit]"), "{line}");
    // A target's mode in [source] is named as such.
    let file = dir.path().join("wrong.toml");
    std::fs::write(
        &file,
        std::fs::read_to_string(&path)
            .unwrap()
            .replace("[source]\n", "[source]\nmode = \"replica\"\n"),
    )
    .unwrap();
    let line = refused(&["--config", file.to_str().unwrap()]);
    assert!(line.contains("[source] mode = \"replica\""), "{line}");
    assert_eq!(role(&target), "master");
}

/// The target holds a copy the source can no longer continue (its backlog overran while ferry
/// was stopped): as in commands mode, ferry stops and says so, and replaces the copy only with
/// full_resync = "flush".
#[test]
fn a_copy_the_source_cannot_continue_is_replaced_only_when_allowed() {
    let source = Server::start_with(&["--repl-backlog-size", "16kb"]);
    let target = Server::start();
    let mut conn = source.conn();
    incr(&mut conn, "orders", 10);
    let owned = replica_args(&source.url(), &target);
    let args = strs(&owned);
    synced_then_stopped(&args);
    // Far more than the backlog holds.
    let big = "x".repeat(64 * 1024);
    for i in 0..4 {
        let _: () = redis::cmd("SET")
            .arg(format!("big:{i}"))
            .arg(&big)
            .query(&mut conn)
            .unwrap();
    }
    incr(&mut conn, "orders", 5);
    let line = refused(&args);
    assert!(
        line.contains("cannot continue") && line.contains("full_resync"),
        "{line}"
    );
    assert_eq!(get(&mut target.conn(), "orders"), Some(10));
    let mut again = Ferry::start_with_status(&[&args[..], &["--full-resync", "flush"]].concat());
    again.wait_status(WAIT, "the new copy loaded", |s| s["phase"] == "incremental");
    testkit::wait_until(WAIT, || get(&mut target.conn(), "orders") == Some(15));
    assert!(
        again
            .log()
            .contains("the target loads the source's snapshot again"),
        "{}",
        again.log()
    );
    let n =
        compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(n >= 5, "{n}");
    let code = again.terminate(WAIT);
    assert!(code.success(), "{code}; log:\n{}", again.log());
}

/// A source behind Sentinel fails over (planned: writes paused on the old master so its replica
/// has everything): ferry asks the sentinels again and the target continues from its own offset
/// on the promoted replica, which serves no full resync.
#[test]
fn a_source_behind_sentinel_fails_over_and_the_target_continues() {
    let no_delay = ["--repl-diskless-sync-delay", "0"];
    let master = Server::start_with(&no_delay);
    let replica = Server::start_replica_of_with(&master, &no_delay);
    let sentinels = testkit::Sentinel::start(&master, "ferrymaster", 1, 1);
    let target = Server::start();
    let spec = Spec {
        seed: 61,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&master, &spec);
    let url = sentinels.url("ferrymaster");
    let mut ferry = Ferry::start_with_status(&strs(&replica_args(&url, &target)));
    ferry.wait_status(WAIT, "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut load = workload::Workload::new(&spec);
    load.run(&master, 2000);
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(20_000)
        .arg("WRITE")
        .query(&mut master.conn())
        .unwrap();
    let written = common::master_offset(&master);
    wait_caught_up(&mut ferry, &master, WAIT);
    assert!(testkit::wait_until(Duration::from_secs(30), || {
        replica.info("replication")["master_repl_offset"]
            .parse::<u64>()
            .unwrap_or(0)
            >= written
    }));
    let promoted = sentinels.failover("ferrymaster");
    assert_eq!(promoted, replica.addr());
    load.run(&replica, 2000);
    wait_caught_up(&mut ferry, &replica, WAIT);
    compare::eventually_equal(
        &replica,
        &target,
        &stream_options(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(
        resyncs(&replica).0,
        0,
        "the promoted replica served a full resync:\n{}",
        ferry.log()
    );
    assert!(
        !replica
            .log_tail(100_000)
            .contains("Partial resynchronization not accepted"),
        "{}",
        ferry.log()
    );
    let code = ferry.terminate(WAIT);
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}
