//! The version matrix: each cached server build (`scripts/fetch-redis-versions`) as source
//! into Redis 7.0, Redis 7.0 into each, and Redis 8.0 into 5.0, checked key by key. Versions
//! the cache lacks are skipped with a note, so a machine without the cache passes.
//!
//! Into older targets only the full copy is checked: a newer source's stream carries commands
//! an older server does not know (7.0 propagates `SET ... PXAT`, which 5.0 refuses).

mod common;

use std::time::Duration;

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::versions::{self, Version};
use testkit::workload::{Spec, Workload};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        dbs: vec![0, 2],
        keys_per_db: 300,
        big_elements: 300,
        ..Spec::default()
    }
}

fn options(source: &Version) -> Options {
    Options {
        group_read_counters: false,
        // From 7.2 on (Redis 8, Valkey) consumers created without pending entries are not
        // replicated; the servers' own replicas lack them too (Options::idle_consumers).
        idle_consumers: source.redis_version < (7, 2, 0),
        ..Options::default()
    }
}

/// Full copy, then (when `follow`) a workload through the stream; target equal to source.
fn sync_and_compare(
    source: &Server,
    source_version: &Version,
    target: &Server,
    follow: bool,
    label: &str,
) {
    versions::populate(source, &spec(21), source_version);
    let mut args = vec![
        "--source".to_string(),
        source.url(),
        "--target".to_string(),
        target.url(),
    ];
    if !follow {
        args.push("--full-only".into());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    if follow {
        let mut ferry = Ferry::start_with_status(&args);
        ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        let mut workload = Workload::new(&spec(22));
        workload.run(source, 1500);
        wait_caught_up(&mut ferry, source, Duration::from_secs(60));
        compare::eventually_equal(
            source,
            target,
            &options(source_version),
            Duration::from_secs(10),
        )
        .unwrap_or_else(|r| panic!("{label}: {r}\nferry log:\n{}", ferry.log()));
        assert!(
            ferry.terminate(Duration::from_secs(30)).success(),
            "{label}"
        );
    } else {
        let mut ferry = Ferry::start(&args);
        let code = ferry.wait(Duration::from_secs(120));
        assert!(code.success(), "{label}: {code}; log:\n{}", ferry.log());
        compare::compare(source, target, &options(source_version))
            .unwrap_or_else(|r| panic!("{label}: {r}\nferry log:\n{}", ferry.log()));
    }
}

#[test]
fn each_version_as_source_into_7_0() {
    for v in versions::ALL
        .iter()
        .filter(|v| v.name != versions::REFERENCE)
    {
        let Some((version, bin)) = versions::cached(v.name) else {
            continue;
        };
        let source = Server::start_bin(&bin, &[]);
        let target = Server::start();
        sync_and_compare(
            &source,
            &version,
            &target,
            true,
            &format!("{version} -> 7.0"),
        );
    }
}

#[test]
fn redis_7_0_into_each_version() {
    let Some((reference, _)) = versions::cached(versions::REFERENCE) else {
        return;
    };
    for v in versions::ALL
        .iter()
        .filter(|v| v.name != versions::REFERENCE)
    {
        let Some((version, bin)) = versions::cached(v.name) else {
            continue;
        };
        let source = Server::start();
        let target = Server::start_bin(&bin, &[]);
        // Newer targets take 7.0's stream as it is; older ones get the full copy, rewritten.
        let follow = version.redis_version >= (7, 0, 0);
        sync_and_compare(
            &source,
            &reference,
            &target,
            follow,
            &format!("7.0 -> {version}"),
        );
    }
}

#[test]
fn redis_8_0_into_5_0() {
    let (Some((v8, bin8)), Some((_, bin5))) = (
        versions::cached("redis-8.0.2"),
        versions::cached("redis-5.0.6"),
    ) else {
        return;
    };
    let source = Server::start_bin(&bin8, &[]);
    let target = Server::start_bin(&bin5, &[]);
    sync_and_compare(&source, &v8, &target, false, "8.0 -> 5.0");
}
