//! Topologies beyond one-to-one: one source into several targets from one replication stream,
//! and a cascade A → B → C (two ferry tasks, the second reading the first one's target).

mod common;

use std::time::Duration;

use common::{Ferry, resyncs, wait_caught_up};
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

#[test]
fn a_cascade_stays_equal_end_to_end() {
    let a = Server::start();
    let b = Server::start();
    let c = Server::start();
    let spec = Spec {
        seed: 61,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&a, &spec);
    let mut first = Ferry::start_with_status(&[
        "--source",
        &a.url(),
        "--target",
        &b.url(),
        "--name",
        "a-to-b",
    ]);
    first.wait_status(Duration::from_secs(120), "A → B incremental", |s| {
        s["phase"] == "incremental"
    });
    let mut second = Ferry::start_with_status(&[
        "--source",
        &b.url(),
        "--target",
        &c.url(),
        "--name",
        "b-to-c",
    ]);
    second.wait_status(Duration::from_secs(120), "B → C incremental", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(
        &a,
        Spec {
            seed: 62,
            ..spec.clone()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    // The middle task restarts while writes flow through it.
    second.kill();
    second = Ferry::start_with_status(&[
        "--source",
        &b.url(),
        "--target",
        &c.url(),
        "--name",
        "b-to-c",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    wait_caught_up(&mut first, &a, Duration::from_secs(120));
    wait_caught_up(&mut second, &b, Duration::from_secs(120));
    // Redis's stream does not carry consumer groups' read counters (its replicas drift too).
    let options = Options {
        group_read_counters: false,
        ..Options::default()
    };
    compare::eventually_equal(&a, &c, &options, Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("A vs C: {r}\nB → C log:\n{}", second.log()));
    // Each target holds its own task's checkpoint only: the first task's did not travel on.
    let own = |server: &Server| -> Vec<String> {
        redis::cmd("KEYS")
            .arg("__ferry:checkpoint:*")
            .query(&mut server.conn())
            .unwrap()
    };
    assert_eq!(own(&b), vec!["__ferry:checkpoint:a-to-b".to_string()]);
    assert_eq!(own(&c), vec!["__ferry:checkpoint:b-to-c".to_string()]);
    assert!(first.terminate(Duration::from_secs(30)).success());
    assert!(second.terminate(Duration::from_secs(30)).success());
}

fn applied(status: &serde_json::Value, target: &Server) -> u64 {
    status["targets"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == target.addr()))
        .and_then(|t| t["applied_offset"].as_u64())
        .unwrap_or(0)
}

/// One PSYNC feeds two targets. One of them goes away under load: the other keeps applying
/// the stream meanwhile; the absent one is replayed from its spool when it is back. Then ferry
/// is killed and restarted: the stream continues from the least advanced target's checkpoint,
/// the other skipping what it holds. Both end equal to the source key by key.
#[test]
fn one_stream_feeds_several_targets_independently() {
    let source = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let first = Server::start();
    let mut second = Server::start();
    let spec = Spec {
        seed: 63,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let args = [
        "--source",
        &source.url(),
        "--target",
        &first.url(),
        "--target",
        &second.url(),
    ];
    let mut ferry = Ferry::start_with_status(&args);
    let st = ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert_eq!(st["targets"].as_array().map(Vec::len), Some(2), "{st}");
    let background = workload::run_in_background(
        &source,
        Spec {
            seed: 64,
            ..spec.clone()
        },
    );
    std::thread::sleep(Duration::from_millis(500));
    second.stop();
    let down = ferry.wait_status(Duration::from_secs(60), "the second target retrying", |s| {
        s["targets"]
            .as_array()
            .is_some_and(|ts| ts.iter().any(|t| t["phase"] == "retrying"))
    });
    // The first target goes on while the second is away.
    let before = applied(&down, &first);
    ferry.wait_status(
        Duration::from_secs(60),
        "the first target to keep applying",
        |s| applied(s, &first) > before + 100_000,
    );
    second.start_again();
    ferry.wait_status(Duration::from_secs(120), "both targets incremental", |s| {
        s["targets"]
            .as_array()
            .is_some_and(|ts| ts.iter().all(|t| t["phase"] == "incremental"))
    });
    // A crash: the restart resumes both from one stream.
    ferry.kill();
    ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(60), "the restarted stream", |s| {
        s["phase"] == "incremental"
    });
    std::thread::sleep(Duration::from_millis(500));
    background.stop();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(120));
    let options = Options {
        group_read_counters: false,
        ..Options::default()
    };
    for target in [&first, &second] {
        compare::eventually_equal(&source, target, &options, Duration::from_secs(10))
            .unwrap_or_else(|r| panic!("{}: {r}\nferry log:\n{}", target.addr(), ferry.log()));
    }
    assert!(
        ferry
            .log()
            .contains("source continues the stream from the checkpoint")
    );
    assert_eq!(resyncs(&source), (1, 1), "{}", source.log_tail(40));
    // The heartbeat measures the stream into the least advanced target.
    ferry.wait_status(Duration::from_secs(60), "latency samples", |s| {
        s["latency_ms"]["samples"].as_u64().unwrap_or(0) > 0
    });
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A cluster source into two targets: each shard's stream feeds both, each target ends equal to
/// the whole cluster key by key.
#[test]
fn a_cluster_source_feeds_several_targets() {
    let source = Cluster::start_with(3, 0, &["--repl-diskless-sync-delay", "0"]);
    let first = Server::start();
    let second = Server::start();
    let spec = Spec {
        seed: 65,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate_cluster(&source, &spec);
    let background = workload::run_in_background_cluster(
        &source,
        Spec {
            seed: 66,
            ..spec.clone()
        },
    );
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &first.url(),
        "--target",
        &second.url(),
    ]);
    let st = ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert_eq!(st["shards"].as_array().map(Vec::len), Some(3), "{st}");
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    let options = Options {
        group_read_counters: false,
        ..Options::default()
    };
    for target in [&first, &second] {
        compare::eventually_equal_sides(
            &Side::from(&source),
            &Side::from(target),
            &options,
            Duration::from_secs(60),
        )
        .unwrap_or_else(|r| panic!("{}: {r}\nferry log:\n{}", target.addr(), ferry.log()));
    }
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}
