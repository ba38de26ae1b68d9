//! Limits on the load ferry puts on the target (`[limit]`): the rate measured over each
//! phase never exceeds the limit by more than 10% (an upper bound only: a slow machine is
//! slower, never faster), and the target still ends equal to the source key by key.

mod common;

use std::time::{Duration, Instant};

use common::{Ferry, master_offset, wait_caught_up};
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

/// Slack over a limit that a measured rate may show (the first burst, the samples' timing).
const SLACK: f64 = 1.10;

/// Polls ferry's status every 10 ms until `done` holds; returns when it was seen to.
fn poll(
    ferry: &mut Ferry,
    mut done: impl FnMut(&serde_json::Value) -> bool,
) -> (Instant, serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = ferry.wait_status(Duration::from_secs(10), "a status", |_| true);
        if done(&status) {
            return (Instant::now(), status);
        }
        assert!(Instant::now() < deadline, "{status}\n{}", ferry.log());
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// What was counted from `base` at `start` to `end` at `stop`, per second. Both instants lie
/// outside the phase measured (taken before it began, seen after it ended), so the rate can
/// only come out lower than the real one; the limit lets one bucket (0.1 s) more through.
fn rate(base: u64, start: Instant, end: u64, stop: Instant) -> (f64, u64) {
    let counted = end - base;
    (counted as f64 / (stop - start).as_secs_f64(), counted)
}

fn int(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

/// Snapshot keys at 1000/s: about 3 s of copying.
#[test]
fn full_copy_keeps_to_its_keys_per_second() {
    let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(2500)
        .query(&mut source.conn())
        .unwrap();
    workload::populate(
        &source,
        &Spec {
            seed: 71,
            dbs: vec![0, 1],
            keys_per_db: 250,
            big_elements: 300,
            ..Spec::default()
        },
    );
    let target = Server::start();
    let limit = 1000.0;
    // The phase starts after this; its start is not seen exactly through the status.
    let start = Instant::now();
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-keys-per-sec",
        "1000",
    ]);
    let (stop, status) = poll(&mut ferry, |s| s["phase"] == "incremental");
    let (per_sec, counted) = rate(0, start, int(&status["keys_written"]), stop);
    eprintln!("full copy: {counted} keys at {per_sec:.0} keys/s (limit {limit})");
    assert!(counted > 1500, "too few keys measured: {counted}");
    assert!(per_sec <= limit * SLACK, "{per_sec:.0} keys/s over {limit}");
    assert_eq!(status["limit"]["full_keys_per_sec"], 1000.0);
    assert!(int(&status["limit"]["throttled_ms"]) > 0, "{status}");
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// Snapshot bytes at 1 MB/s, counted on the target: 3 MB of values.
#[test]
fn full_copy_keeps_to_its_megabytes_per_second() {
    let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    let mut c = source.conn();
    for i in 0..300 {
        let _: () = redis::cmd("RPUSH")
            .arg(format!("list:{i}"))
            .arg(noise(i, 10_000))
            .query(&mut c)
            .unwrap();
    }
    let target = Server::start();
    let before = target_bytes(&target);
    let start = Instant::now();
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-mb-per-sec",
        "1",
    ]);
    let (stop, _) = poll(&mut ferry, |s| s["phase"] == "incremental");
    let (per_sec, counted) = rate(before, start, target_bytes(&target), stop);
    eprintln!("full copy: {counted} bytes at {per_sec:.0} B/s (limit 1000000)");
    assert!(counted > 2_000_000, "too few bytes measured: {counted}");
    assert!(
        per_sec <= 1_000_000.0 * SLACK,
        "{per_sec:.0} B/s over 1 MB/s"
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// The stream under two limits at once, 2000 commands/s and 1 MB/s: first many small writes
/// (the command limit holds them back), then fewer large ones (the byte limit does).
#[test]
fn incremental_keeps_to_its_commands_and_megabytes_per_second() {
    let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    let target = Server::start();
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--incremental-ops-per-sec",
        "2000",
        "--incremental-mb-per-sec",
        "1",
    ]);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));

    // 6000 small writes, sent to the source as fast as it takes them.
    let base = int(&ferry.status().unwrap()["ops_applied"]);
    let start = Instant::now();
    let mut pipe = redis::pipe();
    for i in 0..6000 {
        pipe.cmd("SET").arg(format!("k:{i}")).arg(i).ignore();
    }
    let _: () = pipe.query(&mut source.conn()).unwrap();
    let want = master_offset(&source);
    let (stop, status) = poll(&mut ferry, |s| int(&s["applied_offset"]) >= want);
    let (per_sec, counted) = rate(base, start, int(&status["ops_applied"]), stop);
    eprintln!("stream: {counted} commands at {per_sec:.0}/s (limit 2000)");
    assert!(counted > 4000, "too few commands measured: {counted}");
    assert!(
        per_sec <= 2000.0 * SLACK,
        "{per_sec:.0} commands/s over 2000"
    );
    assert!(status["limit"]["throttled_ms"].as_u64().unwrap() > 0);

    // 3 MB in 300 writes of 10 kB, counted as the target receives them.
    let before = target_bytes(&target);
    let start = Instant::now();
    let mut pipe = redis::pipe();
    for i in 0..300 {
        pipe.cmd("SET")
            .arg(format!("big:{i}"))
            .arg(noise(i, 10_000))
            .ignore();
    }
    let _: () = pipe.query(&mut source.conn()).unwrap();
    let want = master_offset(&source);
    let (stop, _) = poll(&mut ferry, |s| int(&s["applied_offset"]) >= want);
    let (per_sec, counted) = rate(before, start, target_bytes(&target), stop);
    eprintln!("stream: {counted} bytes at {per_sec:.0} B/s (limit 1000000)");
    assert!(counted > 2_000_000, "too few bytes measured: {counted}");
    assert!(
        per_sec <= 1_000_000.0 * SLACK,
        "{per_sec:.0} B/s over 1 MB/s"
    );

    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    compare::eventually_equal(
        &source,
        &target,
        &Options::default(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A cluster into a cluster: three shards' streams, each writing to the three masters, share
/// one limit on snapshot keys.
#[test]
fn a_cluster_task_shares_its_limit_across_shards_and_masters() {
    let source = Cluster::start_with(3, 0, &["--repl-diskless-sync-delay", "0"]);
    workload::populate_cluster(
        &source,
        &Spec {
            seed: 73,
            dbs: vec![0],
            keys_per_db: 2500,
            big_elements: 300,
            ..Spec::default()
        },
    );
    let target = Cluster::start(3, 0);
    let start = Instant::now();
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-keys-per-sec",
        "1000",
    ]);
    let (stop, status) = poll(&mut ferry, |s| s["phase"] == "incremental");
    let (per_sec, counted) = rate(0, start, int(&status["keys_written"]), stop);
    eprintln!("cluster full copy: {counted} keys at {per_sec:.0} keys/s (limit 1000)");
    assert!(counted > 2000, "too few keys measured: {counted}");
    assert!(per_sec <= 1000.0 * SLACK, "{per_sec:.0} keys/s over 1000");
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// `len` bytes that do not compress (a snapshot compresses its strings).
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Bytes the target has received from all its clients (`INFO stats`).
fn input_bytes(conn: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(conn).unwrap();
    info.lines()
        .find_map(|l| l.strip_prefix("total_net_input_bytes:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn target_bytes(target: &Server) -> u64 {
    input_bytes(&mut target.conn())
}
