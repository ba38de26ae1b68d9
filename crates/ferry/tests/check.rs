//! `ferry check`, the precheck, against real servers: each item set up to pass and set up to
//! warn or fail; and `ferry sync` refusing on a failed item but starting on warnings.

mod common;

use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{Ferry, check_json, config_file, free_port, refused};
use serde_json::Value;
use testkit::compare::{self, Options};
use testkit::tls::TlsFiles;
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

/// The findings of `item`.
fn of<'a>(findings: &'a [Value], item: &str) -> Vec<&'a Value> {
    findings.iter().filter(|f| f["item"] == item).collect()
}

/// The one finding of `item`, checked to have `result`.
fn one<'a>(findings: &'a [Value], item: &str, result: &str) -> &'a Value {
    let found = of(findings, item);
    assert_eq!(found.len(), 1, "one {item} finding wanted in {findings:#?}");
    assert_eq!(found[0]["result"], result, "{item}: {:#}", found[0]);
    found[0]
}

fn text(finding: &Value, field: &str) -> String {
    finding[field].as_str().unwrap().to_string()
}

fn acl(server: &Server, rule: &str) {
    let _: () = redis::cmd("ACL")
        .arg(rule.split(' ').collect::<Vec<_>>())
        .query(&mut server.conn())
        .unwrap();
}

#[test]
fn a_ready_pair_passes_every_item_and_the_table_says_so() {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &Spec::default());
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    for f in &findings {
        assert_eq!(f["result"], "pass", "{f:#}");
    }
    let items: Vec<&str> = findings
        .iter()
        .map(|f| f["item"].as_str().unwrap())
        .collect();
    for item in [
        "reachable",
        "authenticated",
        "source_replication",
        "target_write",
        "versions",
        "memory",
        "eviction_policy",
        "target_keys",
        "backlog",
        "output_buffer",
        "modules",
        "db_map",
        "heartbeat",
        "repl_timeout",
    ] {
        assert!(items.contains(&item), "{item} missing from {items:?}");
    }
    assert_eq!(of(&findings, "reachable").len(), 2, "source and target");
    // The table: a header, one row per finding, a count.
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "check",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.starts_with("ITEM"), "{table}");
    assert!(
        table.contains(&format!("{} passed, 0 warnings, 0 failed", findings.len())),
        "{table}"
    );
}

#[test]
fn wrong_password_and_unreachable_target_are_named_as_sync_names_them() {
    let source = Server::start_with(&["--requirepass", "right"]);
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    let url = format!("redis://:wrong@{}", source.addr());
    let (code, findings) = check_json(&["--source", &url, "--target", &nowhere]);
    assert_eq!(code, 1);
    let reachable = of(&findings, "reachable");
    assert_eq!(reachable.len(), 2, "{findings:#?}");
    assert_eq!(reachable[0]["result"], "pass");
    assert_eq!(reachable[1]["result"], "fail");
    assert!(text(reachable[1], "found").contains("cannot connect to target"));
    let auth = one(&findings, "authenticated", "fail");
    let found = text(auth, "found");
    assert!(
        found.contains(&source.addr()) && found.contains("rejected the login"),
        "{found}"
    );
    // The right password passes; the sync's own error for the wrong one is unchanged.
    let target = Server::start();
    let good = format!("redis://:right@{}", source.addr());
    let (code, findings) = check_json(&["--source", &good, "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let auth = of(&findings, "authenticated");
    assert_eq!(auth.len(), 2, "{findings:#?}");
    assert!(auth.iter().all(|f| f["result"] == "pass"), "{findings:#?}");
    assert!(
        text(auth[0], "found").starts_with("logged in to source"),
        "{auth:#?}"
    );
    let line = refused(&["--source", &url, "--target", &target.url()]);
    assert!(line.contains("rejected the login"), "{line}");
}

#[test]
fn a_user_who_may_not_replicate_or_write_is_told_what_to_grant() {
    let source = Server::start();
    let target = Server::start();
    acl(&source, "SETUSER syncer on >pw ~* &* +@all -psync");
    acl(&target, "SETUSER writer on >pw ~* &* +@all -restore");
    let source_url = format!("redis://syncer:pw@{}", source.addr());
    let target_url = format!("redis://writer:pw@{}", target.addr());
    let (code, findings) = check_json(&["--source", &source_url, "--target", &target_url]);
    assert_eq!(code, 1, "{findings:#?}");
    let repl = one(&findings, "source_replication", "fail");
    assert!(text(repl, "found").contains("psync"), "{repl:#}");
    assert!(
        text(repl, "fix").starts_with("on the source: ACL SETUSER syncer +psync (or all ferry needs: ACL SETUSER syncer reset on >PASSWORD "),
        "{repl:#}"
    );
    let write = one(&findings, "target_write", "fail");
    assert!(text(write, "found").contains("restore"), "{write:#}");
    assert!(
        text(write, "fix").contains("ACL SETUSER writer +restore"),
        "{write:#}"
    );

    // Users with every permission they need pass.
    acl(&source, "SETUSER syncer +psync");
    acl(&target, "SETUSER writer +restore");
    let (code, findings) = check_json(&["--source", &source_url, "--target", &target_url]);
    assert_eq!(code, 0, "{findings:#?}");
    one(&findings, "source_replication", "pass");
    one(&findings, "target_write", "pass");

    // The sync refuses on the failed item, naming it.
    acl(&source, "SETUSER syncer -psync");
    let line = refused(&["--source", &source_url, "--target", &target_url]);
    assert!(
        line.starts_with("ferry: precheck failed: source_replication"),
        "{line}"
    );
    assert!(line.contains("ACL SETUSER syncer +psync"), "{line}");
}

#[test]
fn a_user_who_may_not_ask_gets_a_warning_and_the_sync_starts() {
    let source = Server::start();
    let target = Server::start();
    acl(
        &source,
        "SETUSER reader on >pw ~* +psync +replconf +ping +info",
    );
    workload::populate(&source, &Spec::default());
    let url = format!("redis://reader:pw@{}", source.addr());
    let (code, findings) = check_json(&["--source", &url, "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let repl = one(&findings, "source_replication", "warn");
    assert!(text(repl, "found").contains("ACL DRYRUN"), "{repl:#}");
    one(&findings, "heartbeat", "warn");
    let mut ferry = Ferry::start(&["--source", &url, "--target", &target.url(), "--full-only"]);
    let code = ferry.wait(Duration::from_secs(120));
    assert!(code.success(), "{}", ferry.log());
    assert!(
        ferry.log().contains("precheck source_replication"),
        "{}",
        ferry.log()
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
}

#[test]
fn an_evicting_target_warns_and_the_sync_still_starts() {
    let source = Server::start();
    let target = Server::start_with(&["--maxmemory", "200mb", "--maxmemory-policy", "allkeys-lru"]);
    workload::populate(&source, &Spec::default());
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let policy = one(&findings, "eviction_policy", "warn");
    assert!(text(policy, "found").contains("allkeys-lru"), "{policy:#}");
    assert!(text(policy, "fix").contains("CONFIG SET maxmemory-policy noeviction"));
    one(&findings, "memory", "pass");
    let mut ferry = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-only",
    ]);
    assert!(
        ferry.wait(Duration::from_secs(120)).success(),
        "{}",
        ferry.log()
    );
    assert!(
        ferry.log().contains("precheck eviction_policy"),
        "{}",
        ferry.log()
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));

    // --ignore-warnings keeps them out of the log; [check] ignore leaves the item out.
    let again = Server::start_with(&["--maxmemory", "200mb", "--maxmemory-policy", "allkeys-lru"]);
    let mut ferry = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &again.url(),
        "--full-only",
        "--ignore-warnings",
    ]);
    assert!(
        ferry.wait(Duration::from_secs(120)).success(),
        "{}",
        ferry.log()
    );
    assert!(!ferry.log().contains("precheck"), "{}", ferry.log());
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "on_conflict = \"overwrite\"\n[check]\nignore = [\"eviction_policy\"]",
    );
    let (code, findings) = check_json(&["--config", &path]);
    assert_eq!(code, 0, "{findings:#?}");
    assert!(of(&findings, "eviction_policy").is_empty(), "{findings:#?}");
}

#[test]
fn a_target_too_small_for_the_data_fails_with_the_line_that_fixes_it() {
    let source = Server::start();
    {
        let mut c = source.conn();
        let mut p = redis::pipe();
        for i in 0..20_000 {
            p.cmd("SET")
                .arg(format!("key:{i}"))
                .arg("v".repeat(200))
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    let small = Server::start_with(&["--maxmemory", "2mb"]);
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &small.url()]);
    assert_eq!(code, 1, "{findings:#?}");
    let memory = one(&findings, "memory", "fail");
    assert!(
        text(memory, "fix").contains("CONFIG SET maxmemory"),
        "{memory:#}"
    );
    let roomy = Server::start_with(&["--maxmemory", "500mb"]);
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &roomy.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    one(&findings, "memory", "pass");
}

#[test]
fn keys_in_the_target_fail_unless_on_conflict_says_what_to_do() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query(&mut target.conn())
        .unwrap();
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 1);
    let keys = one(&findings, "target_keys", "fail");
    let found = text(keys, "found");
    assert!(
        found.contains("1 key") && found.contains("\"mine\""),
        "{found}"
    );
    let (code, findings) = check_json(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--on-conflict",
        "overwrite",
    ]);
    assert_eq!(code, 0, "{findings:#?}");
    one(&findings, "target_keys", "pass");
}

#[test]
fn a_tiny_backlog_under_writes_warns_and_the_sync_starts() {
    let source = Server::start_with(&["--repl-backlog-size", "16kb"]);
    let target = Server::start();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut c = source.conn();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _: () = redis::cmd("SET")
                    .arg(format!("w:{}", i % 100))
                    .arg("x".repeat(1000))
                    .query(&mut c)
                    .unwrap();
                i += 1;
            }
        })
    };
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let backlog = one(&findings, "backlog", "warn");
    assert!(
        text(backlog, "found").contains("less than 10 min"),
        "{backlog:#}"
    );
    assert!(
        text(backlog, "fix").contains("CONFIG SET repl-backlog-size"),
        "{backlog:#}"
    );
    one(&findings, "output_buffer", "pass");
    // A replica output buffer that the writes during a snapshot would overflow.
    let limit = |value: &str| {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg("client-output-buffer-limit")
            .arg(value)
            .query(&mut source.conn())
            .unwrap();
    };
    limit("replica 1 1 0");
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let buffer = one(&findings, "output_buffer", "warn");
    assert!(
        text(buffer, "fix").contains("CONFIG SET client-output-buffer-limit"),
        "{buffer:#}"
    );
    limit("replica 256mb 64mb 60");
    // The sync logs the warning and starts following the source.
    let mut ferry = Ferry::start(&["--source", &source.url(), "--target", &target.url()]);
    let started = testkit::wait_until(Duration::from_secs(120), || {
        ferry
            .log()
            .contains("source accepted the replica handshake")
    });
    assert!(started, "{}", ferry.log());
    assert!(ferry.log().contains("precheck backlog"), "{}", ferry.log());
    assert!(
        ferry.terminate(Duration::from_secs(60)).success(),
        "{}",
        ferry.log()
    );
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();

    // Without writes the same backlog covers any time.
    let (_, findings) = check_json(&[
        "--source",
        &source.url(),
        "--target",
        &Server::start().url(),
    ]);
    one(&findings, "backlog", "pass");
}

#[test]
fn a_replica_source_cannot_take_the_heartbeat() {
    let master = Server::start();
    let replica = Server::start_replica_of(&master);
    let target = Server::start();
    let (code, findings) = check_json(&["--source", &replica.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let heartbeat = one(&findings, "heartbeat", "warn");
    assert!(
        text(heartbeat, "found").contains("replica"),
        "{heartbeat:#}"
    );
    let (_, findings) = check_json(&["--source", &master.url(), "--target", &target.url()]);
    one(&findings, "heartbeat", "pass");
}

#[test]
fn db_map_beyond_the_target_fails_as_sync_says() {
    let source = Server::start();
    let target = Server::start_with(&["--databases", "4"]);
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--db-map",
        "1=7",
    ];
    let (code, findings) = check_json(&args);
    assert_eq!(code, 1);
    let map = one(&findings, "db_map", "fail");
    assert!(
        text(map, "found").starts_with(
            "filter.db_map sends source db 1 to target db 7, but the target has 4 dbs"
        ),
        "{map:#}"
    );
    // A source db with keys that the target does not have.
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut source.conn_db(5))
        .unwrap();
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 1);
    let map = one(&findings, "db_map", "fail");
    assert!(text(map, "found").contains("source db 5"), "{map:#}");
    let (code, findings) = check_json(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--db-map",
        "5=3",
    ]);
    assert_eq!(code, 0, "{findings:#?}");
    one(&findings, "db_map", "pass");
}

#[test]
fn cluster_slots_are_checked_on_each_side() {
    let source = Server::start();
    let cluster = Cluster::start(3, 0);
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &cluster.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let slots = one(&findings, "slots", "pass");
    assert!(
        text(slots, "found").contains("all 16384 slots served by 3 masters"),
        "{slots:#}"
    );
    one(&findings, "target_write", "pass");

    // Take one slot away from every node's view.
    for node in cluster.nodes() {
        let _: () = redis::cmd("CLUSTER")
            .arg("DELSLOTS")
            .arg(777)
            .query(&mut node.conn())
            .unwrap();
    }
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &cluster.url()]);
    assert_eq!(code, 1);
    let slots = one(&findings, "slots", "fail");
    assert!(
        text(slots, "found").contains("slot 777 has no master"),
        "{slots:#}"
    );
    let line = refused(&["--source", &source.url(), "--target", &cluster.url()]);
    assert!(line.contains("slot 777 has no master"), "{line}");
}

#[test]
fn each_target_is_checked() {
    let source = Server::start();
    let first = Server::start();
    let second =
        Server::start_with(&["--maxmemory", "200mb", "--maxmemory-policy", "volatile-lru"]);
    let (code, findings) = check_json(&[
        "--source",
        &source.url(),
        "--target",
        &first.url(),
        "--target",
        &second.url(),
    ]);
    assert_eq!(code, 0, "{findings:#?}");
    assert_eq!(of(&findings, "reachable").len(), 3, "{findings:#?}");
    assert_eq!(of(&findings, "target_write").len(), 2, "{findings:#?}");
    let policies = of(&findings, "eviction_policy");
    assert_eq!(policies.len(), 2, "{findings:#?}");
    assert_eq!(policies[0]["result"], "pass");
    assert_eq!(policies[1]["result"], "warn");
    let found = text(policies[1], "found");
    assert!(
        found.starts_with(&format!("target 2 {}", second.addr())),
        "{found}"
    );
}

#[test]
fn an_older_target_warns_what_it_cannot_take() {
    let Some((_, bin)) = testkit::versions::cached("redis-6.2.14") else {
        return;
    };
    let source = Server::start();
    let older = Server::start_bin(&bin, &[]);
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &older.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let versions = one(&findings, "versions", "warn");
    assert!(
        text(versions, "found").contains("rewritten as commands"),
        "{versions:#}"
    );
    let _: () = redis::cmd("FUNCTION")
        .arg("LOAD")
        .arg("#!lua name=lib\nredis.register_function('f', function() return 1 end)")
        .query(&mut source.conn())
        .unwrap();
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &older.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let versions = one(&findings, "versions", "warn");
    assert!(
        text(versions, "found").contains("function libraries"),
        "{versions:#}"
    );
    let newer = Server::start();
    let (_, findings) = check_json(&["--source", &older.url(), "--target", &newer.url()]);
    one(&findings, "versions", "pass");
}

/// Hash fields with a TTL of their own (Redis 7.4+) into a target that keeps none: the
/// versions item says how many, and that the TTLs are dropped; into Redis 8.0 it passes.
#[test]
fn hash_field_ttls_into_an_older_target_are_named() {
    let Some((_, bin8)) = testkit::versions::cached("redis-8.0.2") else {
        return;
    };
    let source = Server::start_bin(&bin8, &[]);
    let _: () = redis::cmd("HSET")
        .arg("h")
        .arg("a")
        .arg("1")
        .arg("b")
        .arg("2")
        .query(&mut source.conn())
        .unwrap();
    let _: Vec<i64> = redis::cmd("HEXPIRE")
        .arg("h")
        .arg(3600)
        .arg("FIELDS")
        .arg(2)
        .arg("a")
        .arg("b")
        .query(&mut source.conn())
        .unwrap();
    let older = Server::start();
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &older.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let versions = one(&findings, "versions", "warn");
    assert!(
        text(versions, "found").contains("1 hash with fields that have a TTL"),
        "{versions:#}"
    );
    let same = Server::start_bin(&bin8, &[]);
    let (_, findings) = check_json(&["--source", &source.url(), "--target", &same.url()]);
    one(&findings, "versions", "pass");
}

#[test]
fn a_short_repl_timeout_or_a_source_timeout_within_the_ping_period_warns() {
    let source = Server::start_with(&["--repl-timeout", "10"]);
    let target = Server::start();
    let (code, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{findings:#?}");
    let warn = one(&findings, "repl_timeout", "warn");
    assert!(
        text(warn, "found").contains("repl-timeout 10 s, less than Redis's default 60 s"),
        "{warn:#}"
    );
    assert_eq!(
        text(warn, "fix"),
        "on the source: CONFIG SET repl-timeout 60"
    );
    // The sync logs the warning and copies.
    let mut ferry = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-only",
    ]);
    assert!(
        ferry.wait(Duration::from_secs(120)).success(),
        "{}",
        ferry.log()
    );
    assert!(
        ferry.log().contains("precheck repl_timeout"),
        "{}",
        ferry.log()
    );

    // The fix it gives passes.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "repl-timeout", "60"])
        .query(&mut source.conn())
        .unwrap();
    let (_, findings) = check_json(&["--source", &source.url(), "--target", &target.url()]);
    let pass = one(&findings, "repl_timeout", "pass");
    assert!(
        text(pass, "found").contains("repl-timeout 60 s"),
        "{pass:#}"
    );

    // ferry's own silence limit within the source's ping period.
    let _: () = redis::cmd("CONFIG")
        .arg(&["SET", "repl-ping-replica-period", "30"])
        .query(&mut source.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "on_conflict = \"overwrite\"\n[advanced]\nsource_timeout = 20",
    );
    let (code, findings) = check_json(&["--config", &path]);
    assert_eq!(code, 0, "{findings:#?}");
    let warn = one(&findings, "repl_timeout", "warn");
    assert!(
        text(warn, "found")
            .contains("ferry's source_timeout (20 s) is not longer than source 127.0.0.1")
            && text(warn, "found").contains("repl-ping-replica-period (30 s)"),
        "{warn:#}"
    );
    assert!(
        text(warn, "fix").starts_with("set [advanced] source_timeout = 90"),
        "{warn:#}"
    );
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn a_certificate_near_its_end_warns_and_an_expired_one_fails_the_handshake() {
    let files = TlsFiles::generate();
    let source = Server::start_tls(&files, &[]);
    let soon = Server::start_tls(
        &files,
        &[
            "--tls-cert-file",
            path(&files.soon_cert),
            "--tls-key-file",
            path(&files.soon_key),
        ],
    );
    let plain = Server::start();
    let ca = path(&files.ca);
    let (code, findings) = check_json(&[
        "--source",
        &source.tls_url(),
        "--source-tls-ca",
        ca,
        "--target",
        &soon.tls_url(),
        "--target-tls-ca",
        ca,
    ]);
    assert_eq!(code, 0, "{findings:#?}");
    let tls = of(&findings, "tls");
    assert_eq!(tls.len(), 2, "source and target: {findings:#?}");
    assert_eq!(tls[0]["result"], "pass", "{:#}", tls[0]);
    assert!(
        text(tls[0], "found").contains("certificate valid until 2100-01-01"),
        "{:#}",
        tls[0]
    );
    assert_eq!(tls[1]["result"], "warn", "{:#}", tls[1]);
    let found = text(tls[1], "found");
    let days = testkit::tls::SOON_DAYS;
    assert!(
        found.starts_with("target 127.0.0.1:")
            && found.contains("the server's certificate expires on")
            && (found.contains(&format!("in {} days", days - 1))
                || found.contains(&format!("in {days} days"))),
        "{found}"
    );
    assert!(
        text(tls[1], "fix").starts_with("renew the server's certificate"),
        "{:#}",
        tls[1]
    );
    // The sync logs the warning and copies.
    let mut ferry = Ferry::start(&[
        "--source",
        &source.tls_url(),
        "--source-tls-ca",
        ca,
        "--target",
        &soon.tls_url(),
        "--target-tls-ca",
        ca,
        "--full-only",
    ]);
    assert!(
        ferry.wait(Duration::from_secs(120)).success(),
        "{}",
        ferry.log()
    );
    assert!(ferry.log().contains("precheck tls"), "{}", ferry.log());

    // A plain target has no tls finding; an expired certificate fails the handshake under
    // `reachable`, with the words the sync uses, and has no tls finding either.
    let expired = Server::start_tls(
        &files,
        &[
            "--tls-cert-file",
            path(&files.expired_cert),
            "--tls-key-file",
            path(&files.expired_key),
        ],
    );
    let (code, findings) = check_json(&[
        "--source",
        &plain.url(),
        "--target",
        &expired.tls_url(),
        "--target-tls-ca",
        ca,
    ]);
    assert_eq!(code, 1, "{findings:#?}");
    assert!(of(&findings, "tls").is_empty(), "{findings:#?}");
    let reachable = of(&findings, "reachable");
    assert_eq!(reachable[1]["result"], "fail", "{findings:#?}");
    let found = text(reachable[1], "found");
    assert!(
        found.contains("certificate has expired") && found.contains("2001-01-01"),
        "{found}"
    );
}
