//! One writer per task (issue: two copies of one task doubled INCRs): a second copy refuses,
//! a copy frozen past its lease is replaced, and when it wakes it applies nothing. Counted
//! exactly with INCR, APPEND and LPUSH, and compared key by key.

mod common;

use std::time::Duration;

use common::{Ferry, signal, wait_caught_up};
use redis::Commands;
use testkit::compare::{self, Side};
use testkit::{Cluster, Server};

const NO_DELAY: &[&str] = &["--repl-diskless-sync-delay", "0"];

/// Non-idempotent writes on three keys: a write applied twice or lost shows in the counts.
fn writes(source: &Server, n: usize) {
    let mut c = source.conn();
    for i in 0..n {
        let _: i64 = c.incr("counter", 1).unwrap();
        let _: i64 = c.append("log", format!("{},", i % 10)).unwrap();
        let _: i64 = c.lpush("list", i).unwrap();
    }
}

/// The counts the target must hold after `n` writes in all, read through `get`.
fn assert_counts(n: usize, mut get: impl FnMut(&str) -> (i64, usize, usize), ferry_log: &str) {
    let (counter, log_len, list_len) = get("");
    assert_eq!(
        (counter, log_len, list_len),
        (n as i64, 2 * n, n),
        "INCR, APPEND and LPUSH counts on the target; ferry log:\n{ferry_log}"
    );
}

fn counts_standalone(target: &Server) -> impl FnMut(&str) -> (i64, usize, usize) + '_ {
    move |_| {
        let mut c = target.conn();
        let counter: Option<i64> = c.get("counter").unwrap();
        let log: usize = c.strlen("log").unwrap();
        let list: usize = c.llen("list").unwrap();
        (counter.unwrap_or(0), log, list)
    }
}

#[test]
fn a_second_copy_of_a_running_task_refuses() {
    let source = Server::start_with(NO_DELAY);
    let target = Server::start();
    writes(&source, 100);
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut first = Ferry::start_with_status(&args);
    first.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    // Same task (same name, same target), its own data dir: the report's case.
    let mut second = Ferry::start(&args);
    writes(&source, 1000);
    let code = second.wait(Duration::from_secs(60));
    let log = second.log();
    assert!(!code.success(), "the second copy ran; its log:\n{log}");
    let line = log.lines().find(|l| l.starts_with("ferry: ")).unwrap_or("");
    assert!(
        line.contains(&format!("task {} is already running (host ", source.addr()))
            && line.contains(&format!("pid {}, since ", first.pid()))
            && line.contains(&format!("on target {}", target.addr())),
        "{log}"
    );
    writes(&source, 900);
    wait_caught_up(&mut first, &source, Duration::from_secs(60));
    assert_counts(2000, counts_standalone(&target), &first.log());
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Default::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let st = first.status().unwrap();
    assert!(st["last_error"].is_null(), "{st}");
}

/// A copy frozen (SIGSTOP) past its lease is replaced; when it wakes it holds stream data the
/// new copy has applied already, and must apply none of it.
fn frozen_copy_is_fenced(
    target_url: &str,
    counts: &mut dyn FnMut() -> (i64, usize, usize),
    target: Side,
    resumable: &dyn Fn() -> bool,
) {
    let source = Server::start_with(NO_DELAY);
    writes(&source, 100);
    let args = ["--source", &source.url(), "--target", target_url];
    let mut old = Ferry::start_with_status(&args);
    old.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    writes(&source, 400);
    wait_caught_up(&mut old, &source, Duration::from_secs(60));
    // Frozen only once the target holds a checkpoint a new copy can go on from (a cluster
    // master writes its first one after its first confirmed writes).
    assert!(
        testkit::wait_until(Duration::from_secs(30), resumable),
        "no checkpoint to resume from; log:\n{}",
        old.log()
    );
    signal(old.pid(), "-STOP");
    // The source goes on writing to the frozen copy's link too.
    writes(&source, 500);
    let mut new = Ferry::start_with_status(&args);
    new.wait_status(Duration::from_secs(60), "the takeover", |s| {
        s["phase"] == "incremental"
    });
    writes(&source, 500);
    wait_caught_up(&mut new, &source, Duration::from_secs(60));
    let exact = |c: (i64, usize, usize), n: usize| c == (n as i64, 2 * n, n);
    assert!(
        exact(counts(), 1500),
        "{:?} before the wake-up; log:\n{}",
        counts(),
        new.log()
    );
    signal(old.pid(), "-CONT");
    let code = old.wait(Duration::from_secs(60));
    let log = old.log();
    assert!(!code.success(), "{log}");
    assert!(
        log.contains("was taken over by another copy"),
        "the woken copy should say it was replaced; log:\n{log}"
    );
    writes(&source, 500);
    wait_caught_up(&mut new, &source, Duration::from_secs(60));
    assert!(
        exact(counts(), 2000),
        "{:?} after the woken copy stopped; old log:\n{log}\nnew log:\n{}",
        counts(),
        new.log()
    );
    compare::eventually_equal_sides(
        &Side::from(&source),
        &target,
        &Default::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let st = new.status().unwrap();
    assert!(st["last_error"].is_null(), "{st}");
}

#[test]
fn a_frozen_copy_that_wakes_after_a_takeover_writes_nothing() {
    let target = Server::start();
    let mut get = counts_standalone(&target);
    frozen_copy_is_fenced(&target.url(), &mut || get(""), Side::from(&target), &|| {
        true
    });
}

#[test]
fn a_frozen_copy_into_a_cluster_writes_nothing_after_a_takeover() {
    let target = Cluster::start(3, 0);
    let mut counts = || {
        let counter: Option<i64> = target.conn_for(b"counter").get("counter").unwrap();
        let log: usize = target.conn_for(b"log").strlen("log").unwrap();
        let list: usize = target.conn_for(b"list").llen("list").unwrap();
        (counter.unwrap_or(0), log, list)
    };
    // A base written when the copy started says "loading" until that master's first
    // confirmed writes after it: a copy frozen before then leaves nothing to go on from.
    let every_master_has_a_base = || {
        target.masters().iter().all(|m| {
            let mut conn = m.conn();
            let keys: Vec<String> = conn.keys("__ferry:checkpoint:*:base:*").unwrap();
            !keys.is_empty()
                && keys.iter().all(|k| {
                    let value: Option<String> = conn.get(k).unwrap();
                    value.is_some_and(|v| !v.ends_with(" loading"))
                })
        })
    };
    frozen_copy_is_fenced(
        &target.url(),
        &mut counts,
        Side::from(&target),
        &every_master_has_a_base,
    );
}

/// A lease set by hand (no expiry) would make every start wait forever: it is named instead.
#[test]
fn a_lease_without_expiry_is_named() {
    let source = Server::start_with(NO_DELAY);
    let target = Server::start();
    let lease = format!("__ferry:lease:{}", source.addr());
    let _: () = target
        .conn()
        .set(&lease, "abc 1 978307200000 elsewhere 0123")
        .unwrap();
    let mut ferry = Ferry::start(&["--source", &source.url(), "--target", &target.url()]);
    let code = ferry.wait(Duration::from_secs(30));
    let log = ferry.log();
    assert!(!code.success(), "{log}");
    assert!(
        log.contains(&format!("holds {lease} without an expiry")),
        "{log}"
    );
    let keys: Vec<String> = target.conn().keys("*").unwrap();
    assert_eq!(keys, vec![lease], "nothing else was written");
}

/// A FLUSHALL from the source empties ferry's fences too: they are set again in the same
/// stream (on a cluster target, one fenced transaction per slot of each master) and the
/// sync goes on, counts exact.
#[test]
fn a_flushall_in_the_stream_keeps_the_task_fenced() {
    let source = Server::start_with(NO_DELAY);
    let target = Cluster::start(3, 0);
    writes(&source, 100);
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let _: () = redis::cmd("FLUSHALL").query(&mut source.conn()).unwrap();
    writes(&source, 700);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let counter: Option<i64> = target.conn_for(b"counter").get("counter").unwrap();
    let list: usize = target.conn_for(b"list").llen("list").unwrap();
    assert_eq!((counter, list), (Some(700), 700), "{}", ferry.log());
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Default::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    let st = ferry.status().unwrap();
    assert!(st["last_error"].is_null() && st["retries"] == 0, "{st}");
}
