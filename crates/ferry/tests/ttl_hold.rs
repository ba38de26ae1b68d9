//! TTLs renewed during the full copy (issue 13, part 3). A snapshot key whose TTL runs out
//! while the copy is still running, but which the source keeps alive after the snapshot, must
//! be on the target at the end with the source's final TTL; a short-TTL key the source lets
//! expire must be gone; a long-TTL key keeps its TTL. The copy is slowed down with
//! `--full-keys-per-sec` so the short TTLs pass long before it ends.

mod common;

use std::time::{Duration, Instant};

use common::{Ferry, wait_caught_up};
use testkit::compare::{self, Options, Side};
use testkit::{Cluster, Server, versions};

/// Keys of each kind.
const N: usize = 500;
/// Keys without a TTL that make the copy long: at 1000 keys/s it lasts about 15 s.
const FILLER: usize = 12_000;
/// The short TTL: it passes early in the copy.
const SHORT_MS: u64 = 4000;

/// The renewals, each on its own group of short-TTL keys; "twice" keys have no TTL in the
/// snapshot and get a short one then a long one after it, both behind the copy in the stream.
const RENEWED: [&str; 5] = ["pexpire", "persist", "set", "getex", "twice"];

fn key(group: &str, i: usize) -> String {
    format!("{group}:{{{i}}}")
}

/// Writes the keys of every group; the short TTLs start now.
fn populate(source: &Server) {
    let mut c = source.conn();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(FILLER)
        .arg("filler")
        .query(&mut c)
        .unwrap();
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.cmd("SET").arg(key("twice", i)).arg(i).ignore();
        pipe.cmd("SET")
            .arg(key("long", i))
            .arg(i)
            .arg("EX")
            .arg(3600)
            .ignore();
        for group in ["pexpire", "persist", "set", "getex", "gone"] {
            pipe.cmd("SET")
                .arg(key(group, i))
                .arg(i)
                .arg("PX")
                .arg(SHORT_MS)
                .ignore();
        }
    }
    let _: () = pipe.query(&mut c).unwrap();
}

/// Renews every key of the renewed groups, one way per group; fails when a key had already
/// expired on the source (the machine was too slow to renew within the short TTL).
fn renew(source: &Server) {
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.cmd("PEXPIRE").arg(key("pexpire", i)).arg(600_000);
        pipe.cmd("PERSIST").arg(key("persist", i));
        pipe.cmd("SET")
            .arg(key("set", i))
            .arg(format!("new {i}"))
            .arg("XX");
        pipe.cmd("GETEX").arg(key("getex", i)).arg("EX").arg(900);
        pipe.cmd("PEXPIRE").arg(key("twice", i)).arg(SHORT_MS / 2);
    }
    for i in 0..N {
        pipe.cmd("PEXPIRE").arg(key("twice", i)).arg(700_000);
    }
    let replies: Vec<redis::Value> = pipe.query(&mut source.conn()).unwrap();
    let missed = replies
        .iter()
        .filter(|r| matches!(r, redis::Value::Nil | redis::Value::Int(0)))
        .count();
    assert_eq!(
        missed, 0,
        "{missed} keys expired on the source before their renewal: the test needs them renewed within {SHORT_MS} ms"
    );
}

/// The target, standalone or a cluster.
enum Target {
    One(Server),
    Cluster(Cluster),
}

impl Target {
    fn side(&self) -> Side {
        match self {
            Target::One(s) => s.into(),
            Target::Cluster(c) => c.into(),
        }
    }

    fn url(&self) -> String {
        match self {
            Target::One(s) => s.url(),
            Target::Cluster(c) => c.url(),
        }
    }

    fn exists(&self, key: &str) -> bool {
        let mut c = match self {
            Target::One(s) => s.conn(),
            Target::Cluster(c) => c.conn_for(key.as_bytes()),
        };
        redis::cmd("EXISTS").arg(key).query::<i64>(&mut c).unwrap() == 1
    }

    /// ferry's hold lists (`__ferry:hold:*`) on every server.
    fn hold_lists(&self) -> usize {
        let servers = match self {
            Target::One(s) => vec![s],
            Target::Cluster(c) => c.masters(),
        };
        servers
            .iter()
            .map(|s| {
                let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
                    .arg("__ferry:hold:*")
                    .query(&mut s.conn())
                    .unwrap();
                keys.len()
            })
            .sum()
    }
}

/// Waits until the target holds none of ferry's hold lists any more: every held key has its
/// TTL back (or is gone with the source's DEL).
fn wait_released(target: &Target, ferry: &Ferry) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = target.hold_lists();
        if left == 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{left} hold lists still on the target\n{}",
            ferry.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn run(target: &Target, extra: &[&str]) {
    let target_url = target.url();
    let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    populate(&source);
    let source_url = source.url();
    let mut args = vec![
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--full-keys-per-sec",
        "1000",
    ];
    args.extend_from_slice(extra);
    let mut ferry = Ferry::start_with_status(&args);
    // The snapshot is being written: what the source does now comes after it in the stream.
    ferry.wait_status(Duration::from_secs(60), "the copy to start", |s| {
        s["keys_written"].as_u64().unwrap_or(0) > 0
    });
    renew(&source);
    let copied = ferry.wait_status(Duration::from_secs(120), "the copy to end", |s| {
        s["phase"] == "incremental"
    });
    eprintln!("copy done: {copied}");
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));

    let source_side = Side::standalone(&source.addr(), None);
    compare::eventually_equal_sides(
        &source_side,
        &target.side(),
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    // Every renewed key is there, every unrenewed short one is gone, key by key.
    for group in RENEWED.iter().chain(&["long"]) {
        let have = (0..N).filter(|&i| target.exists(&key(group, i))).count();
        assert_eq!(have, N, "{group} keys on the target");
    }
    let gone = (0..N).filter(|&i| target.exists(&key("gone", i))).count();
    assert_eq!(gone, 0, "unrenewed short-TTL keys left on the target");
    wait_released(target, &ferry);
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

#[test]
fn ttls_renewed_during_the_copy_survive_on_a_standalone_target() {
    let target = Target::One(Server::start());
    run(&target, &[]);
    // The release passes name the script loaded once (SCRIPT LOAD), not its body each time.
    let Target::One(server) = &target else {
        unreachable!()
    };
    let stats = server.info("commandstats");
    let evalsha = stats.get("cmdstat_evalsha").map_or("", String::as_str);
    assert!(evalsha.starts_with("calls="), "no EVALSHA: {stats:?}");
}

#[test]
fn ttls_renewed_during_the_copy_survive_on_a_cluster_target() {
    run(&Target::Cluster(Cluster::start(3, 0)), &[]);
}

/// A 6.2 target: no PEXPIRETIME (the script reads PTTL + TIME), and 7.0's encodings are
/// rewritten as commands (SET, RPUSH..., then PEXPIREAT with the held expiry).
#[test]
fn ttls_renewed_during_the_copy_survive_on_a_6_2_target() {
    run_on_version("redis-6.2.14");
}

/// A newer server than the source: RESTORE as it is, PEXPIRETIME.
#[test]
fn ttls_renewed_during_the_copy_survive_on_a_valkey_8_1_target() {
    run_on_version("valkey-8.1.1");
}

fn run_on_version(name: &str) {
    let (_, bin) = versions::cached(name).unwrap_or_else(|| {
        panic!(
            "{}",
            versions::missing_note(&versions::Version::named(name).unwrap())
        )
    });
    run(&Target::One(Server::start_bin(&bin, &[])), &[]);
}

/// ferry killed (SIGKILL) once the copy is applied, while keys are still held: the next run
/// continues the stream from the checkpoint, finds the lists the first one left and finishes
/// them (keys get their TTL back or go with the source's DEL), and the target ends equal.
#[test]
fn held_keys_are_finished_by_the_next_run() {
    let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    let target = Target::One(Server::start());
    populate(&source);
    // Still alive when the copy ends, too close for their TTL to be given back at once.
    let mut pipe = redis::pipe();
    for i in 0..N {
        pipe.cmd("SET")
            .arg(key("mid", i))
            .arg(i)
            .arg("EX")
            .arg(40)
            .ignore();
    }
    let _: () = pipe.query(&mut source.conn()).unwrap();
    let source_url = source.url();
    let target_url = target.url();
    let args = [
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--full-keys-per-sec",
        "1000",
    ];
    // The first run applies the stream slowly: killed as the copy ends, it leaves the
    // renewals to the second run, which starts without a measure of the lag.
    let first: Vec<&str> = args
        .iter()
        .copied()
        .chain(["--incremental-ops-per-sec", "100"])
        .collect();
    let mut ferry = Ferry::start_with_status(&first);
    ferry.wait_status(Duration::from_secs(60), "the copy to start", |s| {
        s["keys_written"].as_u64().unwrap_or(0) > 0
    });
    renew(&source);
    ferry.wait_status(Duration::from_secs(120), "the copy to end", |s| {
        s["phase"] == "incremental"
    });
    ferry.kill();
    assert!(target.hold_lists() > 0, "no key held when ferry was killed");

    let mut ferry = Ferry::start_with_status(&args);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    assert!(
        ferry
            .log()
            .contains("source continues the stream from the checkpoint"),
        "the second run did not continue the stream:\n{}",
        ferry.log()
    );
    compare::eventually_equal_sides(
        &Side::from(&source),
        &target.side(),
        &Options::default(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    wait_released(&target, &ferry);
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}
