//! A write the target cannot take stops the task before anything after it is applied, and
//! the checkpoint names the position before it: fixed and started again, the task goes on
//! from there with nothing lost or repeated. The case seen: `SELECT 20` into a 16-db target
//! (inside a transaction the target refuses only the SELECT, and the next SET went to db 0).

mod common;

use std::time::Duration;

use common::{Ferry, ferry_line, wait_caught_up};
use redis::Commands;
use testkit::compare::{self, Options, Side};
use testkit::{Cluster, Server};

const SOURCE_32_DBS: &[&str] = &["--repl-diskless-sync-delay", "0", "--databases", "32"];

/// On one connection: a write in db 0, one in db 20, then more in db 0 (counted).
fn writes_across_db_20(source: &Server) {
    let mut c = source.conn();
    let _: () = c.set("before", "1").unwrap();
    let _: i64 = c.incr("counter", 1).unwrap();
    let _: () = redis::cmd("SELECT").arg(20).query(&mut c).unwrap();
    let _: () = c.set("k20", "v").unwrap();
    let _: i64 = c.incr("counter20", 1).unwrap();
    let _: () = redis::cmd("SELECT").arg(0).query(&mut c).unwrap();
    let _: () = c.set("after", "1").unwrap();
    let _: i64 = c.incr("counter", 1).unwrap();
    let _: i64 = c.append("log", "x").unwrap();
}

fn exists(server: &Server, db: i64, key: &str) -> bool {
    server.conn_db(db).exists(key).unwrap()
}

#[test]
fn a_db_the_target_lacks_stops_the_task_before_the_next_write() {
    let source = Server::start_with(SOURCE_32_DBS);
    let target = Server::start();
    let _: () = source.conn().set("seed", "1").unwrap();
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    writes_across_db_20(&source);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert!(!code.success(), "{log}");
    let line = ferry_line(&log);
    assert!(
        line.contains("SET from the source's db 20")
            && line.contains("the target has 16 dbs")
            && line.contains("db_map"),
        "{log}"
    );
    // What came before is there; nothing after it, in any db.
    assert!(exists(&target, 0, "before"), "{log}");
    let counter: i64 = target.conn().get("counter").unwrap();
    assert_eq!(counter, 1, "{log}");
    for db in 0..16 {
        for key in ["k20", "after", "log", "counter20"] {
            assert!(!exists(&target, db, key), "{key} in db {db}; {log}");
        }
    }
    // Mapped to a db the target has, the task goes on from its checkpoint: the commands from
    // the refused one on are applied once.
    let mut more = args.to_vec();
    more.extend(["--db-map", "20=1"]);
    let mut ferry = Ferry::start_with_status(&more);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let mut t = target.conn();
    let counter: i64 = t.get("counter").unwrap();
    let log_value: String = t.get("log").unwrap();
    assert_eq!((counter, log_value.as_str()), (2, "x"), "{}", ferry.log());
    let counter20: i64 = target.conn_db(1).get("counter20").unwrap();
    assert_eq!(counter20, 1);
    assert!(exists(&target, 1, "k20") && exists(&target, 0, "after"));
    let (full, partial) = common::resyncs(&source);
    assert_eq!(
        (full, partial),
        (1, 1),
        "the restart resumed: {}",
        ferry.log()
    );
    let opts = Options {
        db_map: vec![(20, 1)],
        ..Options::default()
    };
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&target),
        &opts,
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
}

/// With several targets, the one that lacks the db stops there (and is marked failed) while
/// the other applies everything.
#[test]
fn with_several_targets_the_one_that_lacks_the_db_stops_there() {
    let source = Server::start_with(SOURCE_32_DBS);
    let small = Server::start();
    let big = Server::start_with(&["--databases", "32"]);
    let _: () = source.conn().set("seed", "1").unwrap();
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &small.url(),
        "--target",
        &big.url(),
    ]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    writes_across_db_20(&source);
    let of_small = |s: &serde_json::Value| {
        s["targets"]
            .as_array()
            .and_then(|ts| ts.iter().find(|t| t["name"] == small.addr().as_str()))
            .cloned()
            .unwrap_or_default()
    };
    let st = ferry.wait_status(Duration::from_secs(60), "the small target to fail", |s| {
        of_small(s)["phase"] == "failed"
    });
    let err = of_small(&st)["last_error"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(err.contains("the target has 16 dbs"), "{st}");
    assert!(exists(&small, 0, "before"));
    for db in 0..16 {
        for key in ["k20", "after", "log"] {
            assert!(!exists(&small, db, key), "{key} in db {db}");
        }
    }
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&big),
        &Options::default(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\n{}", ferry.log()));
}

/// A cluster target has db 0 only: a write in another db stops the task, and nothing after it
/// reaches the cluster.
#[test]
fn a_cluster_target_stops_at_a_write_in_another_db() {
    let source = Server::start_with(SOURCE_32_DBS);
    let target = Cluster::start(3, 0);
    let _: () = source.conn().set("seed", "1").unwrap();
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    writes_across_db_20(&source);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert!(!code.success(), "{log}");
    assert!(ferry_line(&log).contains("db 20"), "{log}");
    let before: Option<String> = target.conn_for(b"before").get("before").unwrap();
    assert_eq!(before.as_deref(), Some("1"), "{log}");
    for key in ["k20", "after", "log", "counter20"] {
        let found: bool = target.conn_for(key.as_bytes()).exists(key).unwrap();
        assert!(!found, "{key} reached the cluster; {log}");
    }
    let counter: i64 = target.conn_for(b"counter").get("counter").unwrap();
    assert_eq!(counter, 1, "{log}");
}
