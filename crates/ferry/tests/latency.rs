//! End-to-end latency: the heartbeat ferry writes on the source, measured when the target has
//! applied it, never copied; estimated from the stream when the source refuses the write.

mod common;

use std::time::{Duration, Instant};

use common::{Ferry, config_file, resyncs, wait_caught_up};
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 300,
        ..Spec::default()
    }
}

/// The keys named `pattern` on `server`, every db, as `db:key`.
fn keys(server: &Server, pattern: &str) -> Vec<String> {
    let mut all = Vec::new();
    for db in 0..16 {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg(pattern)
            .query(&mut server.conn_db(db))
            .unwrap();
        all.extend(found.into_iter().map(|k| format!("{db}:{k}")));
    }
    all
}

/// Waits until `GET /status` reports at least `n` latency samples; returns `latency_ms`.
fn wait_samples(ferry: &mut Ferry, n: u64) -> serde_json::Value {
    let st = ferry.wait_status(Duration::from_secs(60), "latency samples", |s| {
        s["latency_ms"]["samples"].as_u64().unwrap_or(0) >= n
    });
    st["latency_ms"].clone()
}

fn assert_equal(source: &Server, target: &Server) {
    // The stream does not carry consumer groups' read counters (see the README's Tests).
    let opts = Options {
        group_read_counters: false,
        ..Options::default()
    };
    compare::eventually_equal(source, target, &opts, Duration::from_secs(30))
        .unwrap_or_else(|r| panic!("{r}"));
}

/// Standalone → standalone: latency is measured end to end, the heartbeat key (this task's or
/// another's) never reaches the target, and a restart resumes without copying it.
#[test]
fn heartbeat_measures_latency_and_is_never_copied() {
    let started = Instant::now();
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &spec(1));
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(dir.path(), &source.url(), &target.url(), "name = \"hb\"");
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    // Another task's heartbeat (and a name that only starts like ours), sent at the epoch: were
    // either taken for ours, its latency would be decades.
    let mut conn = source.conn();
    for key in ["__ferry:heartbeat:other", "__ferry:heartbeat:hbx"] {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .arg("PX")
            .arg(600_000)
            .query(&mut conn)
            .unwrap();
    }
    let background = workload::run_in_background(&source, spec(2));
    let latency = wait_samples(&mut ferry, 3);
    background.stop();
    let (p50, p99) = (
        latency["p50"].as_f64().unwrap(),
        latency["p99"].as_f64().unwrap(),
    );
    assert!(p50 <= p99, "{latency}");
    assert_eq!(latency["estimated"], false, "{latency}");
    // Every sample of ours was sent after the test started.
    let bound = started.elapsed().as_secs_f64() * 1000.0;
    assert!(p99 <= bound, "a foreign heartbeat was counted: {latency}");
    // (In whichever db: the workload's SWAPDB moves it.)
    assert!(
        !keys(&source, "__ferry:heartbeat:hb").is_empty(),
        "the source holds the heartbeat"
    );

    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    assert_equal(&source, &target);
    assert_eq!(keys(&target, "__ferry:heartbeat:*"), Vec::<String>::new());

    // Stopped and started again: a partial resync over the heartbeats written meanwhile.
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(
        code.success(),
        "ferry failed: {code}; log:\n{}",
        ferry.log()
    );
    let mut tail = workload::Workload::new(&spec(3));
    tail.run(&source, 500);
    let (_, partial_before) = resyncs(&source);
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert_eq!(resyncs(&source).1, partial_before + 1, "{}", ferry.log());
    let latency = wait_samples(&mut ferry, 2);
    assert_eq!(latency["estimated"], false, "{latency}");
    tail.run(&source, 500);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    assert_equal(&source, &target);
    assert_eq!(keys(&target, "__ferry:heartbeat:*"), Vec::<String>::new());
}

/// Follows the source while a workload runs; checks the latency is estimated, the sync
/// exact, and the log says why once.
fn estimated_while_syncing(source: &Server, writes_to: &Server, source_url: &str) {
    let target = Server::start();
    let mut ferry = Ferry::start_with_status(&["--source", source_url, "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(writes_to, spec(5));
    let latency = wait_samples(&mut ferry, 2);
    background.stop();
    assert_eq!(latency["estimated"], true, "{latency}");
    assert!(
        latency["p50"].as_f64().unwrap() <= latency["p99"].as_f64().unwrap(),
        "{latency}"
    );
    wait_caught_up(&mut ferry, source, Duration::from_secs(60));
    assert_equal(source, &target);
    let st = ferry.status().unwrap();
    assert!(st["last_error"].is_null(), "{st}");
    let log = ferry.log();
    assert_eq!(
        log.matches("does not take the latency heartbeat").count(),
        1,
        "{log}"
    );
    assert_eq!(keys(source, "__ferry:*"), Vec::<String>::new());
}

#[test]
fn a_user_without_write_permission_gets_an_estimate() {
    let source = Server::start();
    let _: () = redis::cmd("ACL")
        .arg(
            "SETUSER reader on >pw ~* +psync +replconf +ping +info"
                .split(' ')
                .collect::<Vec<_>>(),
        )
        .query(&mut source.conn())
        .unwrap();
    workload::populate(&source, &spec(4));
    let url = format!("redis://reader:pw@{}", source.addr());
    estimated_while_syncing(&source, &source, &url);
}

#[test]
fn a_replica_source_gets_an_estimate() {
    let master = Server::start();
    workload::populate(&master, &spec(6));
    let replica = Server::start_replica_of(&master);
    estimated_while_syncing(&replica, &master, &replica.url());
}

#[test]
fn heartbeat_can_be_turned_off() {
    let source = Server::start();
    workload::populate(&source, &spec(7));
    let dir = tempfile::tempdir().unwrap();
    // In the config file, then with the flag.
    for (n, flag) in [None, Some("--no-heartbeat")].into_iter().enumerate() {
        let target = Server::start();
        let sync = if flag.is_none() {
            "heartbeat = false"
        } else {
            ""
        };
        let config = config_file(dir.path(), &source.url(), &target.url(), sync);
        let mut args = vec!["--config", config.as_str()];
        args.extend(flag);
        let mut ferry = Ferry::start_with_status(&args);
        ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        let mut tail = workload::Workload::new(&spec(8 + n as u64));
        tail.run(&source, 500);
        wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
        // Longer than a heartbeat's period: one would have been written by now.
        std::thread::sleep(Duration::from_secs(2));
        assert_eq!(keys(&source, "__ferry:*"), Vec::<String>::new());
        assert!(ferry.status().unwrap()["latency_ms"].is_null());
        assert_equal(&source, &target);
    }
}

/// A cluster source read from its replicas: each shard's heartbeat is written to that shard's
/// master (a key in one of its slots), comes back through the replica, and is reported per
/// shard and all together.
#[test]
fn cluster_source_reports_each_shard_and_all() {
    let source = Cluster::start_with(3, 1, &["--repl-diskless-sync-delay", "0"]);
    let target = Server::start();
    let spec = Spec {
        dbs: vec![0],
        ..spec(9)
    };
    workload::populate_cluster(&source, &spec);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\nread_from = \"replica\"\n[target]\nurl = \"{}\"\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", config.to_str().unwrap()]);
    let background = workload::run_in_background_cluster(&source, spec.clone());
    let st = ferry.wait_status(Duration::from_secs(120), "samples from every shard", |s| {
        let shards = s["shards"].as_array().cloned().unwrap_or_default();
        shards.len() == 3
            && shards
                .iter()
                .all(|p| p["latency_ms"]["samples"].as_u64().unwrap_or(0) >= 2)
    });
    background.stop();
    let top = &st["latency_ms"];
    let most = st["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["latency_ms"]["estimated"], false, "{st}");
            p["latency_ms"]["samples"].as_u64().unwrap()
        })
        .max()
        .unwrap();
    assert!(top["samples"].as_u64().unwrap() > most, "{st}");
    assert!(
        top["p50"].as_f64().unwrap() <= top["p99"].as_f64().unwrap(),
        "{st}"
    );
    assert_eq!(top["estimated"], false, "{st}");
    // Each master took its own shard's heartbeat.
    for master in source.masters() {
        let found: Vec<String> = redis::cmd("KEYS")
            .arg("__ferry:heartbeat:*")
            .query(&mut master.conn())
            .unwrap();
        assert_eq!(found.len(), 1, "{}: {found:?}", master.addr());
    }
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Options {
            group_read_counters: false,
            ..Options::default()
        },
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(keys(&target, "__ferry:heartbeat:*"), Vec::<String>::new());
}

/// A cascade A→B→C, two ferry tasks: each measures its own heartbeat; A's never reaches B (so
/// B→C never sees it), B's never reaches C.
#[test]
fn cascade_keeps_each_tasks_heartbeat_to_itself() {
    let a = Server::start();
    let b = Server::start();
    let c = Server::start();
    workload::populate(&a, &spec(10));
    let dir = tempfile::tempdir().unwrap();
    let ab = config_file(dir.path(), &a.url(), &b.url(), "name = \"ab\"");
    let bc = config_file(dir.path(), &b.url(), &c.url(), "name = \"bc\"");
    let mut first = Ferry::start_with_status(&["--config", &ab]);
    first.wait_status(Duration::from_secs(60), "A→B incremental", |s| {
        s["phase"] == "incremental"
    });
    let mut second = Ferry::start_with_status(&["--config", &bc]);
    second.wait_status(Duration::from_secs(60), "B→C incremental", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&a, spec(11));
    for ferry in [&mut first, &mut second] {
        let latency = wait_samples(ferry, 3);
        assert_eq!(latency["estimated"], false, "{latency}");
    }
    background.stop();
    wait_caught_up(&mut first, &a, Duration::from_secs(60));
    wait_caught_up(&mut second, &b, Duration::from_secs(60));
    assert_equal(&a, &b);
    assert_equal(&b, &c);
    let heartbeats = |s: &Server| {
        let mut names: Vec<String> = keys(s, "__ferry:heartbeat:*")
            .into_iter()
            .map(|k| k.split_once(':').unwrap().1.to_string())
            .collect();
        names.sort();
        names.dedup();
        names
    };
    assert_eq!(heartbeats(&a), ["__ferry:heartbeat:ab"]);
    assert_eq!(heartbeats(&b), ["__ferry:heartbeat:bc"]);
    assert_eq!(heartbeats(&c), Vec::<String>::new());
}
