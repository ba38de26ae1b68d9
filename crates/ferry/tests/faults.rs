//! Crashes and refusals: ferry killed at any moment continues from the checkpoint in the
//! target, exactly once, or says why it cannot.

mod common;

use std::time::Duration;

use common::{Ferry, config_file, resyncs, signal, wait_caught_up};
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

/// Killed with SIGKILL three times while writes flow: each restart continues from the
/// checkpoint (the source serves a partial resync), and no write is lost or applied twice —
/// the workload's INCR, INCRBYFLOAT, APPEND, LPUSH, RPOPLPUSH and XADD would show it.
#[test]
fn killed_mid_stream_continues_exactly_once() {
    let source = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let target = Server::start();
    let spec = Spec {
        seed: 11,
        keys_per_db: 1000,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&source, spec.clone());
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        ferry.kill();
        std::thread::sleep(Duration::from_millis(300));
        ferry = Ferry::start_with_status(&args);
        ferry.wait_status(Duration::from_secs(60), "the restarted stream", |s| {
            s["phase"] == "incremental"
        });
        assert!(
            ferry
                .log()
                .contains("source continues the stream from the checkpoint"),
            "round {round}:\n{}",
            ferry.log()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    let counts = background.stop();
    for cmd in [
        "INCR",
        "INCRBYFLOAT",
        "APPEND",
        "LPUSH",
        "RPOPLPUSH",
        "XADD",
    ] {
        assert!(
            counts.get(cmd).copied().unwrap_or(0) > 0,
            "workload never issued {cmd}"
        );
    }
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let (full, partial) = resyncs(&source);
    assert_eq!(
        (full, partial),
        (1, 3),
        "the source should serve one full sync, then only partial ones"
    );
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// Killed in the middle of the snapshot: the target holds part of a copy. By default ferry
/// stops and says so; with full_resync = "flush" it empties the target and copies again.
#[test]
fn killed_mid_snapshot_needs_an_explicit_full_resync() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(300_000)
        .query(&mut source.conn())
        .unwrap();
    workload::populate(
        &source,
        &Spec {
            seed: 5,
            ..Spec::default()
        },
    );
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(60), "keys being written", |s| {
        s["phase"] == "full" && s["keys_written"].as_u64().unwrap_or(0) > 0
    });
    ferry.kill();
    // Meanwhile a key is deleted on the source: only emptying the target removes it there.
    let _: () = redis::cmd("DEL")
        .arg("key:1")
        .query(&mut source.conn())
        .unwrap();

    let mut refused = Ferry::start(&args);
    assert!(!refused.wait(Duration::from_secs(60)).success());
    let log = refused.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("previous full copy into the target was interrupted"),
        "{line}"
    );
    assert!(line.contains("full_resync = \"flush\""), "{line}");

    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "full_resync = \"flush\"",
    );
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A checkpoint the source cannot continue from (here: another server's history under the
/// same task name, as after a source restart without persistence).
#[test]
fn a_checkpoint_the_source_cannot_continue_is_reported() {
    let first = Server::start();
    let second = Server::start();
    let target = Server::start();
    workload::populate(
        &first,
        &Spec {
            seed: 1,
            keys_per_db: 300,
            ..Spec::default()
        },
    );
    workload::populate(
        &second,
        &Spec {
            seed: 2,
            keys_per_db: 300,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let name = "name = \"orders\"";
    let config = config_file(dir.path(), &first.url(), &target.url(), name);
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(ferry.terminate(Duration::from_secs(30)).success());

    let config = config_file(dir.path(), &second.url(), &target.url(), name);
    let mut refused = Ferry::start(&["--config", &config]);
    assert!(!refused.wait(Duration::from_secs(60)).success());
    let log = refused.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("cannot continue from the target's checkpoint"),
        "{line}"
    );
    // Nothing was removed: the target still equals the first source.
    compare::compare(&first, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));

    let config = config_file(
        dir.path(),
        &second.url(),
        &target.url(),
        &format!("{name}\nfull_resync = \"flush\""),
    );
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    compare::compare(&second, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// The source drops the replica link four times under load (`CLIENT KILL TYPE replica`):
/// ferry retries, continues from its checkpoint each time (partial resyncs only), and the
/// target ends equal.
#[test]
fn replica_link_killed_by_the_source_is_resumed() {
    let source = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let target = Server::start();
    let spec = Spec {
        seed: 13,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&source, spec.clone());
    for round in 1..=4u64 {
        // Kill only once ferry is attached again, or the kill finds no replica to drop.
        assert!(testkit::wait_until(Duration::from_secs(60), || {
            source
                .info("replication")
                .get("connected_slaves")
                .map(String::as_str)
                == Some("1")
        }));
        std::thread::sleep(Duration::from_millis(400));
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("replica")
            .query(&mut source.conn())
            .unwrap();
        assert_eq!(killed, 1, "round {round}");
        ferry.wait_status(Duration::from_secs(60), "the retry after the kill", |s| {
            s["retries"].as_u64().unwrap_or(0) >= round
        });
    }
    std::thread::sleep(Duration::from_millis(500));
    background.stop();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let st = ferry.status().unwrap();
    assert!(st["retries"].as_u64().unwrap() >= 4, "{st}");
    assert!(st["phase"] == "incremental", "{st}");
    let (full, partial) = resyncs(&source);
    assert_eq!(full, 1, "only the first sync may be a full one");
    assert!(partial >= 4, "{partial} partial resyncs");
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A write the target refuses (its copy of a key was changed by hand to another type):
/// `on_error = "log"` counts it, says so and goes on; the default stops, naming the key.
#[test]
fn refused_writes_follow_on_error() {
    for policy in ["log", "fail"] {
        let source = Server::start();
        let target = Server::start();
        let _: () = redis::cmd("RPUSH")
            .arg("orders")
            .arg("a")
            .query(&mut source.conn())
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("ferry.toml");
        std::fs::write(
            &config,
            format!(
                "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\non_error = \"{policy}\"\n",
                source.url(),
                target.url()
            ),
        )
        .unwrap();
        let mut ferry = Ferry::start_with_status(&["--config", config.to_str().unwrap()]);
        ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        let _: () = redis::cmd("SET")
            .arg("orders")
            .arg("oops")
            .query(&mut target.conn())
            .unwrap();
        let _: () = redis::cmd("RPUSH")
            .arg("orders")
            .arg("b")
            .query(&mut source.conn())
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("after")
            .arg("1")
            .query(&mut source.conn())
            .unwrap();
        if policy == "log" {
            ferry.wait_status(
                Duration::from_secs(30),
                "the write after the refused one",
                |s| s["skipped_errors"] == 1 && s["ops_applied"].as_u64().unwrap_or(0) >= 2,
            );
            let after: Option<String> = redis::cmd("GET")
                .arg("after")
                .query(&mut target.conn())
                .unwrap();
            assert_eq!(after.as_deref(), Some("1"));
            assert!(ferry.log().contains("WRONGTYPE"), "{}", ferry.log());
            assert!(ferry.terminate(Duration::from_secs(30)).success());
        } else {
            let code = ferry.wait(Duration::from_secs(30));
            assert!(!code.success());
            let log = ferry.log();
            let line = log
                .lines()
                .find(|l| l.starts_with("ferry: "))
                .unwrap_or_else(|| panic!("{log}"));
            assert!(
                line.contains("WRONGTYPE") && line.contains("\"orders\""),
                "{line}"
            );
        }
    }
}

/// The source fails over to its replica (promoted by hand here, as Sentinel would): ferry,
/// pointed at the new master with the same task name, continues from its checkpoint through the
/// new master's memory of the old history (its secondary replication id), with no full resync.
#[test]
fn continues_from_a_promoted_replica() {
    let old = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let replica = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let target = Server::start();
    let spec = Spec {
        seed: 17,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&old, &spec);
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(old.port())
        .query(&mut replica.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let name = "name = \"orders\"";
    let config = config_file(dir.path(), &old.url(), &target.url(), name);
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut tail = workload::Workload::new(&Spec {
        seed: 18,
        ..spec.clone()
    });
    tail.run(&old, 1000);
    wait_caught_up(&mut ferry, &old, Duration::from_secs(60));
    // The replica has everything too; then the old master goes away and the replica takes over.
    assert!(testkit::wait_until(Duration::from_secs(30), || {
        replica.info("replication").get("slave_repl_offset")
            == old.info("replication").get("master_repl_offset")
    }));
    ferry.kill();
    drop(old);
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut replica.conn())
        .unwrap();

    let config = config_file(dir.path(), &replica.url(), &target.url(), name);
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(
        Duration::from_secs(60),
        "the stream from the new master",
        |s| s["phase"] == "incremental",
    );
    assert!(
        ferry
            .log()
            .contains("source continues the stream from the checkpoint"),
        "{}",
        ferry.log()
    );
    tail.run(&replica, 1000);
    wait_caught_up(&mut ferry, &replica, Duration::from_secs(60));
    compare::eventually_equal(
        &replica,
        &target,
        &stream_options(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let (full, partial) = resyncs(&replica);
    assert_eq!(
        (full, partial),
        (0, 1),
        "the new master served ferry a partial resync only"
    );
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// The target loses its data and the checkpoint with it (as a restart without persistence
/// would; here FLUSHALL and a dropped connection): ferry notices on reconnecting, and by
/// default stops and says so; with full_resync = "flush" it copies everything again.
#[test]
fn a_target_that_lost_its_data_is_noticed() {
    for policy in ["stop", "flush"] {
        let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
        let target = Server::start();
        workload::populate(
            &source,
            &Spec {
                seed: 23,
                keys_per_db: 300,
                ..Spec::default()
            },
        );
        let dir = tempfile::tempdir().unwrap();
        let config = config_file(
            dir.path(),
            &source.url(),
            &target.url(),
            &format!("full_resync = \"{policy}\""),
        );
        let mut ferry = Ferry::start_with_status(&["--config", &config]);
        ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        let mut c = target.conn();
        let _: () = redis::cmd("FLUSHALL").query(&mut c).unwrap();
        let _: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg("normal")
            .arg("SKIPME")
            .arg("yes")
            .query(&mut c)
            .unwrap();
        // A write makes ferry find the broken connection.
        let _: () = redis::cmd("SET")
            .arg("after")
            .arg("1")
            .query(&mut source.conn())
            .unwrap();
        if policy == "stop" {
            let code = ferry.wait(Duration::from_secs(60));
            assert!(!code.success());
            let log = ferry.log();
            let line = log
                .lines()
                .find(|l| l.starts_with("ferry: "))
                .unwrap_or_else(|| panic!("{log}"));
            assert!(line.contains("no longer holds the checkpoint"), "{line}");
        } else {
            ferry.wait_status(Duration::from_secs(60), "the copy again", |s| {
                s["phase"] == "incremental" && s["retries"].as_u64().unwrap_or(0) >= 1
            });
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
    }
}

/// The source restarts with persistence (SHUTDOWN SAVE, started again on the same port): its
/// RDB keeps its replication id and offset, so ferry, retrying meanwhile, continues with a
/// partial resync, and the target ends equal.
#[test]
fn source_restart_with_persistence_is_continued() {
    restart_with_persistence(Restart::Source);
}

/// The target restarts with its own persistence (SHUTDOWN SAVE, started again): its data and
/// ferry's checkpoint survive, so ferry reconnects and replays its spool from there.
#[test]
fn target_restart_with_persistence_is_continued() {
    restart_with_persistence(Restart::Target);
}

enum Restart {
    Source,
    Target,
}

/// Restarts one side with persistence while ferry follows a workload; ferry must retry and
/// continue from its checkpoint (the source serves one full sync, then partial ones only).
fn restart_with_persistence(which: Restart) {
    let mut source = Server::start_with(&[
        "--repl-backlog-size",
        "64mb",
        "--repl-diskless-sync-delay",
        "0",
    ]);
    let mut target = Server::start();
    let spec = Spec {
        seed: 29,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut load = workload::Workload::new(&Spec {
        seed: 30,
        ..spec.clone()
    });
    load.run(&source, 1000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let retried = |s: &serde_json::Value| {
        s["retries"].as_u64().unwrap_or(0) >= 1 && s["phase"] == "incremental"
    };
    match which {
        Restart::Source => {
            source.restart();
            ferry.wait_status(
                Duration::from_secs(60),
                "a retry after the restart",
                retried,
            );
            load.run(&source, 1000);
        }
        Restart::Target => {
            target.restart();
            load.run(&source, 1000);
            ferry.wait_status(
                Duration::from_secs(60),
                "a retry after the restart",
                retried,
            );
        }
    }
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let (full, partial) = resyncs(&source);
    assert_eq!(
        full,
        1,
        "only the first sync may be a full one:\n{}",
        source.log_tail(30)
    );
    match which {
        Restart::Source => assert!(
            partial >= 1,
            "the source served a partial resync after the restart"
        ),
        // The spool bridged the target's restart: the source link stayed up.
        Restart::Target => {
            assert_eq!(partial, 0, "{}", source.log_tail(30));
            assert!(
                ferry.log().contains("replaying the spool"),
                "{}",
                ferry.log()
            );
        }
    }
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A network cut often shows as silence, not as a closed connection: the source stops
/// (SIGSTOP) for longer than `advanced.source_timeout`. ferry takes the link for dead,
/// reconnects with backoff until the source answers again, and continues with a partial
/// resync, exactly once.
#[test]
fn a_silent_source_link_is_taken_for_dead_and_resumed() {
    let source = Server::start_with(&[
        "--repl-backlog-size",
        "64mb",
        "--repl-ping-replica-period",
        "1",
    ]);
    let target = Server::start();
    let spec = Spec {
        seed: 71,
        keys_per_db: 300,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[advanced]\nsource_timeout = 3\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", config.to_str().unwrap()]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut load = workload::Workload::new(&Spec {
        seed: 72,
        ..spec.clone()
    });
    load.run(&source, 1000);
    signal(source.pid(), "-STOP");
    let silent = testkit::wait_until(Duration::from_secs(60), || {
        ferry.log().contains("nothing received for 3 s")
    });
    signal(source.pid(), "-CONT");
    assert!(silent, "the silence was not noticed:\n{}", ferry.log());
    ferry.wait_status(Duration::from_secs(120), "the resumed stream", |s| {
        s["phase"] == "incremental" && s["retries"].as_u64().unwrap_or(0) >= 1
    });
    load.run(&source, 1000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let (full, partial) = resyncs(&source);
    assert_eq!(full, 1, "{}", source.log_tail(30));
    assert!(partial >= 1, "{}", source.log_tail(30));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A diskless source waiting out its `repl-diskless-sync-delay` has taken ferry's handshake and
/// PSYNC but not answered it yet; dropping the replica link then (`CLIENT KILL TYPE replica`,
/// `TYPE slave` on 5.0) is a lost connection: ferry says what it was waiting for, retries, and
/// copies everything. Against the default server and Redis 5.0 when cached.
#[test]
fn link_dropped_before_fullresync_is_retried() {
    let mut builds: Vec<Option<std::path::PathBuf>> = vec![None];
    if let Some((_, bin)) = testkit::versions::cached("redis-5.0.6") {
        builds.push(Some(bin));
    }
    for bin in builds {
        let args = [
            "--repl-diskless-sync",
            "yes",
            "--repl-diskless-sync-delay",
            "30",
        ];
        let source = match &bin {
            Some(bin) => Server::start_bin(bin, &args),
            None => Server::start_with(&args),
        };
        let target = Server::start();
        let spec = Spec {
            seed: 17,
            keys_per_db: 300,
            ..Spec::default()
        };
        match &bin {
            Some(_) => testkit::versions::populate(
                &source,
                &spec,
                &testkit::versions::Version::named("redis-5.0.6").unwrap(),
            ),
            None => workload::populate(&source, &spec),
        }
        let version = source.version();
        let mut ferry =
            Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
        // The source holds ferry as a replica waiting for its snapshot to start.
        assert!(
            testkit::wait_until(Duration::from_secs(60), || {
                source
                    .info("replication")
                    .get("slave0")
                    .is_some_and(|s| s.contains("wait_bgsave"))
            }),
            "{version:?}: ferry never waited for the snapshot; log:\n{}",
            ferry.log()
        );
        let kind = if bin.is_some() { "slave" } else { "replica" };
        let killed: i64 = redis::cmd("CLIENT")
            .arg("KILL")
            .arg("TYPE")
            .arg(kind)
            .query(&mut source.conn())
            .unwrap();
        assert_eq!(killed, 1, "{version:?}");
        // The next attempt need not wait the whole delay again.
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("repl-diskless-sync-delay")
            .arg("0")
            .query(&mut source.conn())
            .unwrap();
        ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        let log = ferry.log();
        assert!(
            log.contains("closed the connection while waiting for the reply to PSYNC; retrying"),
            "{version:?}: {log}"
        );
        compare::eventually_equal(&source, &target, &stream_options(), Duration::from_secs(10))
            .unwrap_or_else(|r| panic!("{version:?}: {r}\nferry log:\n{}", ferry.log()));
        let st = ferry.status().unwrap();
        assert!(st["retries"].as_u64().unwrap() >= 1, "{st}");
        assert!(ferry.terminate(Duration::from_secs(30)).success());
    }
}
