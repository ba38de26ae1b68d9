//! End-to-end: the real binary between real redis-servers, checked key by key.

mod common;

use std::time::Duration;

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 2000,
        ..Spec::default()
    }
}

fn full_copy_to(source: Server, target: Server, args: &[&str]) {
    workload::populate(&source, &spec(1));
    let mut ferry = Ferry::start(args);
    let code = ferry.wait(Duration::from_secs(120));
    assert!(
        code.success(),
        "ferry failed: {code}; log:\n{}",
        ferry.log()
    );
    let n =
        compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(n > 5000, "only {n} keys compared");
}

#[test]
fn full_copy_over_a_disk_snapshot() {
    let source = Server::start_with(&["--repl-diskless-sync", "no"]);
    let target = Server::start();
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-only",
    ];
    full_copy_to(source, target, &args);
}

/// Diskless, with a delay: the source sends newline keep-alives before its PSYNC reply. The
/// settings come from a config file this time.
#[test]
fn full_copy_over_a_diskless_snapshot() {
    let source = Server::start_with(&[
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "2",
    ]);
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[sync]\nfull_only = true\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    full_copy_to(source, target, &["--config", config.to_str().unwrap()]);
}

#[test]
fn full_then_incremental_under_a_random_workload() {
    for diskless in ["no", "yes"] {
        let source = Server::start_with(&[
            "--repl-diskless-sync",
            diskless,
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let target = Server::start();
        let spec = spec(7);
        workload::populate(&source, &spec);
        // Writes run before, during and after the snapshot.
        let background = workload::run_in_background(&source, spec.clone());
        std::thread::sleep(Duration::from_millis(300));
        let mut ferry =
            Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
        ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        std::thread::sleep(Duration::from_secs(2));
        let counts = background.stop();
        // A last burst after the snapshot, so every command also travels the stream alone.
        let mut tail = workload::Workload::new(&Spec {
            seed: 99,
            ..spec.clone()
        });
        let tail_counts = tail.run(&source, 3000);
        for cmd in workload::REQUIRED_COMMANDS {
            assert!(
                counts.get(*cmd).copied().unwrap_or(0)
                    + tail_counts.get(*cmd).copied().unwrap_or(0)
                    > 0,
                "workload never issued {cmd}"
            );
        }
        wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
        // ferry's heartbeat moves the source on every second: the lag is 0 again within one.
        let st = ferry.wait_status(Duration::from_secs(30), "no lag", |s| s["lag_bytes"] == 0);
        assert_eq!(st["lag_bytes"], 0, "{st}");
        assert!(st["ops_applied"].as_u64().unwrap() > 1000, "{st}");
        assert!(st["last_error"].is_null(), "{st}");
        // WAIT makes the source ask its replicas for an ACK (REPLCONF GETACK): ferry answers
        // with the offset the target has applied, which is everything by now.
        let acked: i64 = redis::cmd("WAIT")
            .arg(1)
            .arg(10_000)
            .query(&mut source.conn())
            .unwrap();
        assert_eq!(acked, 1, "ferry did not acknowledge the source's offset");
        // Redis's replication stream does not carry consumer groups' read counters (its own
        // replicas drift there too); everything else must match.
        let opts = Options {
            group_read_counters: false,
            ..Options::default()
        };
        compare::eventually_equal(&source, &target, &opts, Duration::from_secs(10))
            .unwrap_or_else(|r| panic!("diskless={diskless}: {r}\nferry log:\n{}", ferry.log()));
        let code = ferry.terminate(Duration::from_secs(30));
        assert!(
            code.success(),
            "ferry did not stop cleanly: {code}; log:\n{}",
            ferry.log()
        );
    }
}

#[test]
fn big_keys_go_through_the_chunked_path() {
    let source = Server::start();
    let target = Server::start();
    {
        let mut c = source.conn();
        let mut hset = redis::pipe();
        for i in 0..200_000u32 {
            hset.cmd("HSET")
                .arg("big:hash")
                .arg(format!("field:{i}"))
                .arg(i)
                .ignore();
            hset.cmd("RPUSH")
                .arg("big:list")
                .arg(format!("element-{i}"))
                .ignore();
        }
        hset.cmd("PEXPIREAT")
            .arg("big:hash")
            .arg(4_000_000_000_000u64)
            .ignore();
        hset.cmd("SET").arg("small").arg("x").ignore();
        hset.query::<()>(&mut c).unwrap();
    }
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--big-value-elements",
        "50000",
    ]);
    let st = ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert_eq!(st["big_keys"], 2, "both big keys should be chunked: {st}");
    assert_eq!(st["keys_written"], 3, "{st}");
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    // The chunked hash kept its absolute expiry.
    let pttl: i64 = redis::cmd("PEXPIRETIME")
        .arg("big:hash")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(pttl, 4_000_000_000_000);
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// Every value written as plain commands instead of RESTORE: the path ferry takes for a target
/// too old to read the source's encodings. Same data must arrive, stream groups included.
#[test]
fn full_copy_rewritten_as_plain_commands() {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &spec(3));
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[advanced]\nrewrite_values = true\n",
            source.url(),
            target.url()
        ),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", config.to_str().unwrap()]);
    let st = ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let n =
        compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    // Plain strings go as MSET either way; everything else was rewritten.
    assert!(st["rewritten_keys"].as_u64().unwrap() > n / 4, "{st}");
    assert_eq!(st["dropped"], 0, "{st}");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}
