//! Each server build in the version cache (`scripts/fetch-redis-versions`) starts through
//! testkit, takes writes, reports its version, and works with `populate` and `compare`:
//! against a copy made by its own replication, and against the reference version (7.0)
//! replicating from it, or it from 7.0 when it is newer.
//!
//! A version the cache does not hold is skipped with a printed note, so a machine without
//! the cache passes.

use std::path::Path;
use std::time::Duration;

use testkit::compare::{self, Options};
use testkit::versions::{self, Version};
use testkit::workload::Spec;
use testkit::{Server, wait_until};

fn spec() -> Spec {
    Spec {
        dbs: vec![0, 2],
        keys_per_db: 150,
        big_elements: 300,
        ..Spec::default()
    }
}

fn populate(server: &Server, version: &Version) {
    versions::populate(server, &spec(), version);
}

/// Starts a replica of `primary` with `bin` and waits until it has the full copy.
fn replica_of(primary: &Server, bin: &Path) -> Server {
    let replica = Server::start_bin(bin, &["--replica-read-only", "no"]);
    let mut conn = replica.conn();
    // REPLICAOF is 5.0+: every version here has it.
    let _: () = redis::cmd("REPLICAOF")
        .arg("127.0.0.1")
        .arg(primary.port())
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("REPLICAOF on {replica:?}: {e}"));
    let synced = wait_until(Duration::from_secs(30), || {
        let info = replica.info("replication");
        let master = primary.info("replication");
        info.get("master_link_status").map(String::as_str) == Some("up")
            && info.get("master_sync_in_progress").map(String::as_str) == Some("0")
            && info.get("slave_repl_offset") == master.get("master_repl_offset")
    });
    assert!(
        synced,
        "replica {replica:?} of {primary:?} did not catch up; its log:\n{}",
        replica.log_tail(20)
    );
    replica
}

/// Starts the build, checks its version, writes keys of several types and reads them back.
fn starts_and_takes_writes(name: &str) {
    let Some((version, bin)) = versions::cached(name) else {
        return;
    };
    let server = Server::start_bin(&bin, &[]);
    let info = server.info("server");
    assert_eq!(
        info.get(version.info_field()),
        Some(&version.version_text()),
        "{name}: INFO server: {info:?}"
    );
    assert_eq!(server.version(), version.redis_version, "{name}");

    let mut conn = server.conn();
    let mut pipe = redis::pipe();
    pipe.cmd("SET").arg("s").arg("v").ignore();
    pipe.cmd("HSET")
        .arg("h")
        .arg("f1")
        .arg("1")
        .arg("f2")
        .arg("2")
        .ignore();
    pipe.cmd("RPUSH")
        .arg("l")
        .arg("a")
        .arg("b")
        .arg("c")
        .ignore();
    pipe.cmd("ZADD").arg("z").arg(1.5).arg("m").ignore();
    pipe.cmd("XADD")
        .arg("x")
        .arg("1-1")
        .arg("f")
        .arg("v")
        .ignore();
    pipe.cmd("PEXPIRE").arg("s").arg(600_000).ignore();
    pipe.query::<()>(&mut conn)
        .unwrap_or_else(|e| panic!("{name}: writes failed: {e}"));
    let got: (String, i64, Vec<String>, i64) = redis::pipe()
        .cmd("GET")
        .arg("s")
        .cmd("HLEN")
        .arg("h")
        .cmd("LRANGE")
        .arg("l")
        .arg(0)
        .arg(-1)
        .cmd("XLEN")
        .arg("x")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("{name}: reads failed: {e}"));
    assert_eq!(
        got,
        ("v".into(), 2, vec!["a".into(), "b".into(), "c".into()], 1)
    );
    let keyspace = server.info("keyspace");
    assert!(
        keyspace
            .get("db0")
            .is_some_and(|db| db.starts_with("keys=5,expires=1")),
        "{name}: INFO keyspace: {keyspace:?}"
    );
    // DEBUG DIGEST-VALUE is what compare reads: testkit's defaults must allow it.
    let digest: Vec<String> = redis::cmd("DEBUG")
        .arg("DIGEST-VALUE")
        .arg("h")
        .query(&mut conn)
        .unwrap_or_else(|e| panic!("{name}: DEBUG DIGEST-VALUE: {e}"));
    assert_eq!(digest.len(), 1);
}

/// Populates a primary of this build and compares it with a replica of the same build, then
/// with a replica across versions (this build into 7.0 when it is older, 7.0 into it when
/// newer): compare must pass on all.
fn compare_works(name: &str) {
    let Some((version, bin)) = versions::cached(name) else {
        return;
    };
    let primary = Server::start_bin(&bin, &[]);
    populate(&primary, &version);
    let replica = replica_of(&primary, &bin);
    let n = compare::compare(&primary, &replica, &Options::default())
        .unwrap_or_else(|r| panic!("{name} vs its own replica:\n{r}"));
    assert_eq!(n, 2 * 150, "{name}");

    if name == versions::REFERENCE {
        return;
    }
    let Some((_, reference)) = versions::cached(versions::REFERENCE) else {
        return;
    };
    let (source, target) = if version.redis_version < (7, 0, 0) {
        // An older server into 7.0.
        let target = replica_of(&primary, &reference);
        (primary, target)
    } else {
        // 7.0 into a newer server (a 7.0 replica cannot load a newer RDB).
        let source = Server::start_bin(&reference, &[]);
        populate(&source, &Version::named(versions::REFERENCE).unwrap());
        let target = replica_of(&source, &bin);
        (source, target)
    };
    // Scores that print differently in 7.0 (`%.17g`) and 7.2+ (shortest): compare must
    // still find them equal, and find a real change.
    let mut conn = source.conn();
    let _: () = redis::cmd("ZADD")
        .arg("vz")
        .arg("-0.1")
        .arg("a")
        .arg("1e300")
        .arg("b")
        .arg("0.30000000000000004")
        .arg("c")
        .query(&mut conn)
        .unwrap();
    let what = format!("{} into {}", version_of(&source), version_of(&target));
    let n = compare::eventually_equal(
        &source,
        &target,
        &Options::default(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{what}:\n{r}"));
    assert_eq!(n, 2 * 150 + 1, "{what}");
    // The target is a writable replica: a change there stays there.
    let _: () = redis::cmd("ZADD")
        .arg("vz")
        .arg("-0.2")
        .arg("a")
        .query(&mut target.conn())
        .unwrap();
    let report = compare::compare(&source, &target, &Options::default())
        .expect_err("a changed score must be found");
    assert_eq!(
        report.diffs,
        [compare::Diff::Key {
            db: 0,
            key: b"vz".to_vec(),
            problem: compare::Problem::Digest
        }],
        "{what}: {report}"
    );
}

fn version_of(server: &Server) -> String {
    let info = server.info("server");
    match info.get("valkey_version") {
        Some(v) => format!("valkey {v}"),
        None => format!(
            "redis {}",
            info.get("redis_version").cloned().unwrap_or_default()
        ),
    }
}

macro_rules! version_tests {
    ($($module:ident => $name:literal),* $(,)?) => {$(
        mod $module {
            #[test]
            fn starts_and_takes_writes() {
                super::starts_and_takes_writes($name);
            }

            #[test]
            fn populate_and_compare() {
                super::compare_works($name);
            }
        }
    )*};
}

version_tests! {
    redis_5_0_6 => "redis-5.0.6",
    redis_6_2_14 => "redis-6.2.14",
    redis_7_0_15 => "redis-7.0.15",
    valkey_8_0_1 => "valkey-8.0.1",
    redis_8_0_2 => "redis-8.0.2",
    valkey_8_1_1 => "valkey-8.1.1",
}

/// The tests above cover exactly the versions the fetch script knows.
#[test]
fn every_known_version_has_tests() {
    let names: Vec<&str> = versions::ALL.iter().map(|v| v.name).collect();
    assert_eq!(
        names,
        [
            "redis-5.0.6",
            "redis-6.2.14",
            "redis-7.0.15",
            "valkey-8.0.1",
            "redis-8.0.2",
            "valkey-8.1.1"
        ]
    );
    let available = versions::available();
    eprintln!(
        "version cache {}: {} of {} versions present{}",
        versions::cache_dir().display(),
        available.len(),
        names.len(),
        if available.is_empty() {
            " (run scripts/fetch-redis-versions to fetch them)"
        } else {
            ""
        }
    );
}
