//! Clusters and Sentinel, end to end: real clusters started by testkit, the real binary, and
//! the target checked key by key against the source.

mod common;

use std::time::Duration;

use common::{Ferry, resyncs, wait_caught_up};
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Sentinel, Server};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        dbs: vec![0],
        keys_per_db: 1500,
        big_elements: 500,
        ..Spec::default()
    }
}

/// Redis's stream does not carry consumer groups' read counters (its own replicas drift there
/// too); everything else must match.
fn opts() -> Options {
    Options {
        group_read_counters: false,
        ..Options::default()
    }
}

fn equal(source: &Side, target: &Side, ferry: &Ferry) -> u64 {
    // Generous: it returns as soon as both sides are equal, and a loaded machine (the suite's
    // groups run side by side) slows a cross-slot workload's barriers a lot.
    compare::eventually_equal_sides(source, target, &opts(), Duration::from_secs(180))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()))
}

const NO_DELAY: &[&str] = &["--repl-diskless-sync-delay", "0"];

/// Starts ferry with a status API and waits until it follows the source's writes.
fn follow(args: &[&str]) -> Ferry {
    let mut ferry = Ferry::start_with_status(args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    ferry
}

/// Stops ferry as a user would (SIGTERM) and checks that it exits cleanly.
fn finish(mut ferry: Ferry) {
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// Splitting a standalone Redis into a cluster: every multi-key command of the workload names
/// keys in different slots, which the cluster itself would refuse with CROSSSLOT.
#[test]
fn standalone_into_cluster_with_cross_slot_commands() {
    let source = Server::start_with(NO_DELAY);
    let target = Cluster::start(3, 0);
    let spec = spec(11);
    workload::populate(&source, &spec);
    let background = workload::run_in_background(&source, spec.clone());
    std::thread::sleep(Duration::from_millis(300));
    // Any node of the cluster will do: ferry asks it for the rest.
    let node = target.urls()[1].clone();
    let mut ferry = follow(&["--source", &source.url(), "--target", &node]);
    std::thread::sleep(Duration::from_secs(1));
    let counts = background.stop();
    let mut tail = workload::Workload::new(&Spec {
        seed: 12,
        ..spec.clone()
    });
    let tail_counts = tail.run(&source, 3000);
    for cmd in workload::CROSS_SLOT_COMMANDS {
        let issued =
            counts.get(*cmd).copied().unwrap_or(0) + tail_counts.get(*cmd).copied().unwrap_or(0);
        assert!(issued > 0, "workload never issued {cmd}");
    }
    // Every master confirms the stream's position, also those the last writes did not reach.
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let n = equal(&Side::from(&source), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    let st = ferry.status().unwrap();
    assert!(st["cross_slot_commands"].as_u64().unwrap() > 0, "{st}");
    assert!(st["last_error"].is_null(), "{st}");
    finish(ferry);
}

/// Cluster to cluster under load, ferry killed mid-stream and started again: every shard of
/// the source continues from its checkpoints with a partial resync, nothing lost or repeated
/// (the workload's INCR, APPEND, LPUSH, XADD... would show it).
#[test]
fn cluster_into_cluster_survives_a_kill() {
    let source = Cluster::start_with(3, 0, NO_DELAY);
    let target = Cluster::start(3, 0);
    let spec = spec(21);
    workload::populate_cluster(&source, &spec);
    let background = workload::run_in_background_cluster(&source, spec.clone());
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    let st = ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert_eq!(st["shards"].as_array().map(Vec::len), Some(3), "{st}");
    std::thread::sleep(Duration::from_secs(2));
    ferry.kill();
    std::thread::sleep(Duration::from_millis(500));
    let ferry = follow(&args);
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    let n = equal(&Side::from(&source), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    for master in source.masters() {
        let (full, partial) = resyncs(master);
        assert_eq!(
            (full, partial),
            (1, 1),
            "{}: expected one full sync, then one partial on restart",
            master.addr()
        );
    }
    finish(ferry);
}

/// Merging a cluster into one standalone Redis (db 0).
#[test]
fn cluster_into_standalone() {
    let source = Cluster::start_with(3, 0, NO_DELAY);
    let target = Server::start();
    let spec = spec(31);
    workload::populate_cluster(&source, &spec);
    let background = workload::run_in_background_cluster(&source, spec.clone());
    let ferry = follow(&["--source", &source.url(), "--target", &target.url()]);
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    let n = equal(&Side::from(&source), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    finish(ferry);
}

/// A slot moved between the target's masters while the stream is applied: ferry follows the
/// new owner and the data stays equal.
#[test]
fn target_resharded_while_syncing() {
    let source = Server::start_with(NO_DELAY);
    let target = Cluster::start(3, 0);
    let spec = spec(41);
    workload::populate(&source, &spec);
    let ferry = follow(&["--source", &source.url(), "--target", &target.url()]);
    let background = workload::run_in_background(&source, spec.clone());
    // Move two slots that hold keys, one in a single step and one slowly, while writes go on.
    let masters = target.masters();
    for i in 0..2 {
        let key = loop {
            let key: Vec<u8> = redis::cmd("RANDOMKEY")
                .query(&mut masters[i].conn())
                .unwrap();
            if !key.starts_with(b"__ferry:") {
                break key;
            }
        };
        let slot = Cluster::slot(&key);
        let owner = target.owner(slot).addr();
        let to = *masters.iter().find(|m| m.addr() != owner).unwrap();
        if i == 0 {
            target.move_slot(slot, to);
        } else {
            let mut migration = target.begin_move(slot, to);
            while !migration.step(1) {
                std::thread::sleep(Duration::from_millis(50));
            }
            migration.finish();
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    let n = equal(&Side::from(&source), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    finish(ferry);
}

/// A resharding moves slot 0, where the master serving it keeps its base checkpoint: a
/// restart continues from the checkpoints (no full copy), each master has its base in its
/// own first slot again, and the copy stays equal.
#[test]
fn a_restart_after_a_base_checkpoints_slot_moved_continues() {
    let source = Server::start_with(NO_DELAY);
    let target = Cluster::start(3, 0);
    let spec = spec(43);
    workload::populate(&source, &spec);
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = follow(&args);
    let mut load = workload::Workload::new(&spec);
    load.run(&source, 2000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(120));
    let from = target.owner(0).addr();
    let to = *target.masters().iter().find(|m| m.addr() != from).unwrap();
    target.move_slot(0, to);
    finish(ferry);
    load.run(&source, 2000);
    let ferry = follow(&args);
    load.run(&source, 2000);
    let n = equal(&Side::from(&source), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    let log = ferry.log();
    assert!(
        log.contains("continues the stream from the checkpoint") && !log.contains("full sync"),
        "not continued:\n{log}"
    );
    assert!(
        log.contains("put back in each master's first slot"),
        "{log}"
    );
    let bases: Vec<Vec<u8>> = target
        .masters()
        .iter()
        .flat_map(|m| {
            redis::cmd("KEYS")
                .arg("__ferry:checkpoint:*:base:*")
                .query::<Vec<Vec<u8>>>(&mut m.conn())
                .unwrap()
        })
        .collect();
    assert_eq!(bases.len(), 3, "one base per master: {bases:?}");
    finish(ferry);
}

/// A source behind Sentinel fails over to its replica: ferry asks the sentinels again and
/// continues from the promoted replica without a full resync.
#[test]
fn source_behind_sentinel_fails_over() {
    let master = Server::start_with(NO_DELAY);
    let replica = Server::start_replica_of_with(&master, NO_DELAY);
    let sentinels = Sentinel::start(&master, "ferrymaster", 1, 1);
    let target = Server::start();
    let spec = spec(51);
    workload::populate(&master, &spec);
    let url = sentinels.url("ferrymaster");
    let mut ferry = follow(&["--source", &url, "--target", &target.url()]);
    let mut load = workload::Workload::new(&spec);
    load.run(&master, 2000);
    // A planned failover, as Redis's own FAILOVER does it: writes (expiries included) paused
    // on the old master, so the replica it promotes has everything ferry has. A replica
    // promoted while behind never had some writes ferry applied, and then only a full resync
    // would be exact.
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(20_000)
        .arg("WRITE")
        .query(&mut master.conn())
        .unwrap();
    // A planned failover: the replica and ferry have everything the master wrote.
    let written = common::master_offset(&master);
    wait_caught_up(&mut ferry, &master, Duration::from_secs(60));
    let synced = testkit::wait_until(Duration::from_secs(30), || {
        replica.info("replication")["master_repl_offset"]
            .parse::<u64>()
            .unwrap_or(0)
            >= written
    });
    assert!(synced, "the replica did not catch up before the failover");
    let promoted = sentinels.failover("ferrymaster");
    assert_eq!(promoted, replica.addr());
    load.run(&replica, 2000);
    let n = equal(&Side::from(&replica), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    let (full, _) = resyncs(&replica);
    assert_eq!(
        full,
        0,
        "the promoted replica served a full resync:\n{}",
        ferry.log()
    );
    finish(ferry);
}

/// `read_from = "replica"`: each shard of a cluster source is replicated from one of its
/// replicas, so the masters serve no snapshot.
#[test]
fn cluster_source_read_from_replicas() {
    let source = Cluster::start_with(3, 1, NO_DELAY);
    let target = Server::start();
    let spec = spec(71);
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
    let ferry = follow(&["--config", config.to_str().unwrap()]);
    let mut load = workload::Workload::for_cluster(&spec);
    load.run_cluster(&source, 2000);
    let n = equal(&Side::from(&source), &Side::from(&target), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    // ferry is attached to each replica, not to the masters.
    for master in source.masters() {
        let slaves = |s: &Server| s.info("replication")["connected_slaves"].clone();
        assert_eq!(slaves(master), "1", "{}: only its replica", master.addr());
        for replica in source.replicas_of(master) {
            assert_eq!(slaves(replica), "1", "{}: ferry", replica.addr());
        }
    }
    finish(ferry);
}

/// A target behind Sentinel fails over (planned: writes paused on the old master so its
/// replica has everything ferry wrote there): ferry asks the sentinels again and continues on
/// the promoted replica from the checkpoint that replicated with the data it covers.
#[test]
fn target_behind_sentinel_fails_over() {
    let source = Server::start_with(&[
        "--repl-diskless-sync-delay",
        "0",
        "--repl-backlog-size",
        "64mb",
    ]);
    let master = Server::start();
    let replica = Server::start_replica_of(&master);
    let sentinels = Sentinel::start(&master, "ferrytarget", 1, 1);
    let spec = spec(61);
    workload::populate(&source, &spec);
    let url = sentinels.url("ferrytarget");
    let mut ferry = follow(&["--source", &source.url(), "--target", &url]);
    let mut load = workload::Workload::new(&spec);
    load.run(&source, 2000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let _: () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(20_000)
        .arg("WRITE")
        .query(&mut master.conn())
        .unwrap();
    let written = common::master_offset(&master);
    let synced = testkit::wait_until(Duration::from_secs(30), || {
        replica.info("replication")["master_repl_offset"]
            .parse::<u64>()
            .unwrap_or(0)
            >= written
    });
    assert!(
        synced,
        "the target's replica did not catch up before the failover"
    );
    let promoted = sentinels.failover("ferrytarget");
    assert_eq!(promoted, replica.addr());
    load.run(&source, 2000);
    let n = equal(&Side::from(&source), &Side::from(&replica), &ferry);
    assert!(n > 1000, "only {n} keys compared");
    let st = ferry.status().unwrap();
    assert!(st["retries"].as_u64().unwrap() >= 1, "{st}");
    finish(ferry);
}
