//! The spool: while the target is away or slow, ferry keeps reading the source into a local
//! file, so the source keeps its replica link (its backlog here is far too small to continue
//! the stream otherwise), and replays it in order when the target is back.

mod common;

use std::time::Duration;

use common::{Ferry, resyncs, signal, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};

fn stream_options() -> Options {
    // Redis's stream does not carry consumer groups' read counters (its replicas drift too).
    Options {
        group_read_counters: false,
        ..Options::default()
    }
}

/// A source that cannot bridge an outage itself: a 16 KiB backlog, and a replica whose output
/// buffer passes `buffer` is dropped at once.
fn small_source(buffer: &str) -> Server {
    let source = Server::start_with(&["--repl-backlog-size", "16kb"]);
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("client-output-buffer-limit")
        .arg(format!("replica {buffer} {buffer} 0"))
        .query(&mut source.conn())
        .unwrap();
    source
}

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 300,
        ..Spec::default()
    }
}

fn lag(s: &serde_json::Value) -> u64 {
    s["lag_bytes"].as_u64().unwrap_or(0)
}

/// The spool's size, as last shown (it is updated a few times a second).
fn spooled(s: &serde_json::Value) -> u64 {
    s["spool_bytes"].as_u64().unwrap_or(0)
}

/// The target is stopped for as long as it takes the source to write 2 MiB more (128 times
/// its backlog) under a workload, then started again with its saved data: ferry replays the
/// spool from the target's checkpoint, and the source never sees the replica reconnect.
#[test]
fn a_target_outage_is_bridged_by_the_spool() {
    let source = small_source("1mb");
    let mut target = Server::start();
    workload::populate(&source, &spec(41));
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&source, spec(42));
    std::thread::sleep(Duration::from_millis(300));
    target.stop();
    let st = ferry.wait_status(
        Duration::from_secs(120),
        "2 MiB of the stream spooled while the target is away",
        |s| s["phase"] == "retrying" && lag(s) > 2 << 20 && spooled(s) > 2 << 20,
    );
    assert!(
        st["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("kept in the spool"),
        "{st}"
    );
    target.start_again();
    ferry.wait_status(
        Duration::from_secs(120),
        "the stream to go on into the restarted target",
        |s| s["phase"] == "incremental",
    );
    let counts = background.stop();
    assert!(counts.values().sum::<u64>() > 0);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(120));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(
        ferry
            .log()
            .contains("target is back: replaying the spool from its checkpoint"),
        "{}",
        ferry.log()
    );
    assert_eq!(
        resyncs(&source),
        (1, 0),
        "the replica link should have stayed up through the outage:\n{}",
        source.log_tail(30)
    );
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// The target stops answering (SIGSTOP) for a while: ferry keeps reading the source into the
/// spool instead of letting the source's output buffer for it overflow, and feeds the target
/// from the spool when it answers again.
#[test]
fn a_stalled_target_does_not_cost_the_replica_link() {
    let source = small_source("256kb");
    let target = Server::start();
    workload::populate(&source, &spec(43));
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&source, spec(44));
    signal(target.pid(), "-STOP");
    ferry.wait_status(
        Duration::from_secs(120),
        "1 MiB of the stream spooled while the target stalls",
        |s| lag(s) > 1 << 20 && spooled(s) > 1 << 20,
    );
    signal(target.pid(), "-CONT");
    background.stop();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(120));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(
        resyncs(&source),
        (1, 0),
        "the replica link should have stayed up while the target stalled:\n{}",
        source.log_tail(30)
    );
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A spool of 1 MiB fills while the target is away: ferry says so and stops reading; the
/// source then drops the link (its output buffer for the replica overflows). When the target is
/// back, ferry applies what it spooled, finds the source's backlog cannot continue from there,
/// and (as configured) copies everything again: nothing is lost, only time.
#[test]
fn a_full_spool_stops_reading_and_loses_nothing() {
    let source = small_source("512kb");
    let mut target = Server::start();
    workload::populate(&source, &spec(45));
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--spool-size-mb",
        "1",
        "--full-resync",
        "flush",
    ]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&source, spec(46));
    std::thread::sleep(Duration::from_millis(300));
    target.stop();
    let st = ferry.wait_status(Duration::from_secs(120), "the spool to fill", |s| {
        s["spool_full"] == true
    });
    assert_eq!(st["spool_limit"], 1 << 20, "{st}");
    let dropped = testkit::wait_until(Duration::from_secs(120), || {
        source.info("replication")["connected_slaves"] == "0"
    });
    assert!(
        dropped,
        "the source kept the replica link of a reader that stopped"
    );
    target.start_again();
    let recopying = testkit::wait_until(Duration::from_secs(120), || {
        ferry.log().contains("emptying the target")
    });
    assert!(recopying, "no new full copy:\n{}", ferry.log());
    ferry.wait_status(
        Duration::from_secs(120),
        "the new full copy to be applied",
        |s| s["phase"] == "incremental",
    );
    background.stop();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(120));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let log = ferry.log();
    assert!(log.contains("is full (1 MiB)"), "{log}");
    assert!(log.contains("replaying the spool"), "{log}");
    assert!(log.contains("emptying the target"), "{log}");
    let source_log = source.log_tail(200);
    assert!(
        source_log.contains("Unable to partial resync") && source_log.contains("lack of backlog"),
        "{source_log}"
    );
    assert_eq!(
        source_log.matches("Starting BGSAVE for SYNC").count(),
        2,
        "{source_log}"
    );
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}
