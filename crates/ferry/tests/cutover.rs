//! `ferry cutover` and `ferry cleanup` against real servers: a running sync ended with the
//! source's writes paused, the target caught up, verified and left without ferry's keys, on a
//! standalone and a cluster target; a target that differs keeps the task and lifts the pause;
//! a source too old to pause writes alone is refused; the cutover through `ferry serve`'s API.

mod common;
mod serving;

use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{Ferry, get, own_keys};
use serde_json::{Value, json};
use serving::Serve;
use testkit::compare::{self, Options, Side};
use testkit::{Cluster, Server};

const WAIT: Duration = Duration::from_secs(120);

fn ferry(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .current_dir(dir.path())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// INCRs on `key` until stopped, counting those the server took.
struct Writer {
    stop: Arc<AtomicBool>,
    count: Arc<AtomicU64>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    fn start(mut conn: redis::Connection, key: &'static str) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let count = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, count) = (stop.clone(), count.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    let _: i64 = redis::cmd("INCR").arg(key).query(&mut conn).unwrap();
                    count.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Writer {
            stop,
            count,
            thread: Some(thread),
        }
    }

    fn wait_for(&self, n: u64) {
        let at = self.count.load(Ordering::SeqCst);
        testkit::wait_until(WAIT, || self.count.load(Ordering::SeqCst) >= at + n);
    }

    /// Stops it: a write blocked by a pause ends when the pause does.
    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.count.load(Ordering::SeqCst)
    }
}

fn unpause(server: &Server) {
    let _: () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query(&mut server.conn())
        .unwrap();
}

/// A `ferry sync` that copied the source and followed its writes (every shard's stream
/// incremental, `caught_up` true), then was stopped (its checkpoint kept).
fn synced_then_stopped(source: &str, target: &str, caught_up: impl Fn() -> bool) {
    let mut sync = Ferry::start_with_status(&["--source", source, "--target", target]);
    sync.wait_status(WAIT, "every stream incremental", |st| {
        let shards = st["shards"].as_array().cloned().unwrap_or_default();
        st["phase"] == "incremental" && shards.iter().all(|p| p["phase"] == "incremental")
    });
    let deadline = Instant::now() + WAIT;
    while !caught_up() {
        assert!(
            Instant::now() < deadline,
            "no catch-up; log:\n{}",
            sync.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = sync.terminate(WAIT);
    assert!(status.success(), "{status}; log:\n{}", sync.log());
}

#[test]
fn a_standalone_cutover_pauses_writes_catches_up_verifies_and_leaves_no_keys() {
    let source = Server::start();
    let target = Server::start();
    testkit::workload::populate(
        &source,
        &testkit::workload::Spec {
            seed: 3,
            keys_per_db: 300,
            ..Default::default()
        },
    );
    let writer = Writer::start(source.conn(), "orders");
    writer.wait_for(100);
    synced_then_stopped(&source.url(), &target.url(), || {
        get(&mut target.conn(), "orders").unwrap_or(0) > 0
    });
    // The applications still write while ferry is stopped and cuts over.
    writer.wait_for(100);
    let out = ferry(&[
        "cutover",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--pause-writes",
        "60",
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("no JSON report:\n{}", text(&out)));
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(report["ok"], true, "{report}");
    assert!(report["paused_until_ms"].as_u64().is_some(), "{report}");
    assert_eq!(report["verify"][0]["differences"], 0, "{report}");
    assert!(report["verify"][0]["source_keys"].as_u64().unwrap() > 300);
    assert!(
        report["removed"][format!("target {}", target.addr())]
            .as_u64()
            .unwrap()
            >= 2,
        "{report}"
    );
    // Writes are still paused: the target holds exactly the source's data, counter and all.
    assert_eq!(own_keys(&target), Vec::<String>::new());
    if let Err(report) = compare::compare_sides(
        &Side::standalone(&source.addr(), None),
        &Side::standalone(&target.addr(), None),
        &Options::default(),
    ) {
        panic!("target differs: {report:?}");
    }
    let on_target = get(&mut target.conn(), "orders").unwrap();
    unpause(&source);
    let written = writer.stop();
    // At most the one write that waited out the pause is not on the target.
    assert!(
        written as i64 - on_target <= 1,
        "{written} written, {on_target} on the target"
    );
}

#[test]
fn a_cluster_cutover_leaves_no_keys_on_any_master() {
    let source = Cluster::start(3, 0);
    let target = Cluster::start(3, 0);
    for i in 0..300 {
        let key = format!("k:{i}");
        let _: () = redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query(&mut source.conn_for(key.as_bytes()))
            .unwrap();
    }
    // Stopped as soon as the copy is on the target, before any write follows it: each
    // master's stop still leaves a checkpoint naming the copy's end (no full copy again).
    synced_then_stopped(&source.url(), &target.url(), || {
        let key = "k:299";
        get(&mut target.conn_for(key.as_bytes()), key) == Some(299)
    });

    let out = ferry(&[
        "cutover",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--pause-writes",
        "60",
    ]);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("done "), "{said}");
    for m in source.masters() {
        assert!(
            said.contains(&format!("caught up   source {}", m.addr())),
            "{said}"
        );
    }
    for m in target.masters() {
        assert_eq!(own_keys(m), Vec::<String>::new(), "{}", m.addr());
    }
    // The cutover's run went on from the stopped sync's checkpoints: one full copy per shard.
    for m in source.masters() {
        assert_eq!(
            common::resyncs(m).0,
            1,
            "full resyncs served by {}",
            m.addr()
        );
    }
    if let Err(report) = compare::compare_sides(
        &Side::cluster(&source.addrs(), None),
        &Side::cluster(&target.addrs(), None),
        &Options::default(),
    ) {
        panic!("target differs: {report:?}");
    }
    for m in source.masters() {
        unpause(m);
    }
}

#[test]
fn a_target_that_differs_is_not_cut_over_and_writes_go_on() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    synced_then_stopped(&source.url(), &target.url(), || {
        get(&mut target.conn(), "a") == Some(1)
    });
    // Somebody wrote into the target by hand.
    let _: () = redis::cmd("SET")
        .arg("stray")
        .arg("x")
        .query(&mut target.conn())
        .unwrap();
    let out = ferry(&[
        "cutover",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--pause-writes",
        "600",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["verify"][0]["differences"], 1, "{report}");
    assert!(
        report["verify"][0]["examples"][0]
            .as_str()
            .unwrap()
            .contains("stray")
    );
    assert!(report["paused_until_ms"].is_null(), "{report}");
    // The pause was lifted (this write would wait 600 s otherwise) and the task's
    // checkpoint is still there to go on from.
    let start = Instant::now();
    let _: () = redis::cmd("SET")
        .arg("after")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    assert!(start.elapsed() < Duration::from_secs(300));
    assert!(
        own_keys(&target)
            .iter()
            .any(|k| k.starts_with("__ferry:checkpoint:")),
        "{:?}",
        own_keys(&target)
    );

    // `ferry cleanup` then takes ferry's keys away alone.
    let out = ferry(&[
        "cleanup",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("removed target {}", target.addr())),
        "{}",
        text(&out)
    );
    assert_eq!(own_keys(&target), Vec::<String>::new());
}

#[test]
fn a_source_before_6_2_cannot_pause_writes_alone() {
    let Some((_, bin)) = testkit::versions::available()
        .into_iter()
        .find(|(v, _)| v.redis_version < (6, 2, 0))
    else {
        eprintln!(
            "skipped: no Redis before 6.2 in the version cache (scripts/fetch-redis-versions)"
        );
        return;
    };
    let source = Server::start_bin(&bin, &[]);
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    synced_then_stopped(&source.url(), &target.url(), || {
        get(&mut target.conn(), "a") == Some(1)
    });
    let out = ferry(&[
        "cutover",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--pause-writes",
        "10",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let said = text(&out);
    assert!(
        said.contains("6.2") && said.contains("without pausing"),
        "{said}"
    );
}

#[test]
fn a_served_task_is_cut_over_through_the_api() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}})),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    serve.wait_state(&id, "incremental");
    let writer = Writer::start(source.conn(), "orders");
    writer.wait_for(200);
    let done = serve.ok(
        "POST",
        &format!("/api/v1/tasks/{id}/cutover"),
        Some(json!({"pause_writes_s": 60})),
    );
    assert_eq!(done["failed"], false, "{done}");
    assert_eq!(done["report"]["ok"], true, "{done}");
    assert_eq!(done["task"]["state"], "stopped", "{done}");
    assert_eq!(own_keys(&target), Vec::<String>::new());
    if let Err(report) = compare::compare_sides(
        &Side::standalone(&source.addr(), None),
        &Side::standalone(&target.addr(), None),
        &Options::default(),
    ) {
        panic!("target differs: {report:?}");
    }
    let events = serve.ok(
        "GET",
        &format!("/api/v1/tasks/{id}/events?limit=1000"),
        None,
    );
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "cutover_report" && e["ok"] == true),
        "{events}"
    );
    // Not running any more: a second cutover is refused.
    let (code, body) = serve.call("POST", &format!("/api/v1/tasks/{id}/cutover"), None);
    assert_eq!(code, 409, "{body}");
    unpause(&source);
    writer.stop();
    serve.assert_no_password();
}
