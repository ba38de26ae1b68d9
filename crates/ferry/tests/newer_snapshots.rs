//! Snapshots from servers newer than any in the matrix: a Valkey 9 cluster node's snapshot
//! (`VALKEY080`, with a slot import in progress and slot size hints), built byte by byte by
//! `crates/rdb/tests/valkey9.rs` since no Valkey 9 binary is at hand, loaded by
//! `ferry sync --source FILE` into real servers that cannot read RDB 80 (values rewritten as
//! commands). The node's own records are skipped with a debug line; a field expiry a target
//! cannot hold is left out with a warning.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use testkit::Server;
use testkit::versions;

fn file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../rdb/tests/data/valkey9-cluster-node.rdb")
}

/// Runs `ferry sync --source FILE --target URL` with debug logging; exit code and log.
fn sync(target: &Server) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "sync",
            "--source",
            file().to_str().unwrap(),
            "--target",
            &target.url(),
        ])
        .env("FERRY_LOG", "debug")
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check(target: &Server, field_ttl: bool) {
    let (code, log) = sync(target);
    assert_eq!(code, Some(0), "{log}");
    assert!(
        log.contains("skipped a slot import record") && log.contains("skipped a slot size hint"),
        "{log}"
    );
    let mut c = target.conn();
    let str_value: String = redis::cmd("GET").arg("{a}str").query(&mut c).unwrap();
    assert_eq!(str_value, "value");
    let pexpiretime: i64 = redis::cmd("PTTL").arg("{a}str").query(&mut c).unwrap();
    assert!(pexpiretime > 0, "the key's expiry is kept");
    let mut hash: Vec<(String, String)> =
        redis::cmd("HGETALL").arg("{a}hash").query(&mut c).unwrap();
    hash.sort();
    assert_eq!(
        hash,
        vec![("f1".into(), "v1".into()), ("f2".into(), "v2".into())]
    );
    let list: Vec<String> = redis::cmd("LRANGE")
        .arg("{a}list")
        .arg(0)
        .arg(-1)
        .query(&mut c)
        .unwrap();
    assert_eq!(list, ["a", "b"]);
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert_eq!(keys.len(), 3, "{keys:?}");
    if field_ttl {
        let at: Vec<i64> = redis::cmd("HPEXPIRETIME")
            .arg("{a}hash")
            .arg("FIELDS")
            .arg(2)
            .arg("f1")
            .arg("f2")
            .query(&mut c)
            .unwrap();
        assert_eq!(at, [-1, 4_102_444_800_000]);
    } else {
        assert!(log.contains("left out TTLs of 1 fields of hash"), "{log}");
    }
}

#[test]
fn valkey9_cluster_node_snapshot_loads_into_redis_70() {
    check(&Server::start(), false);
}

/// Redis 8.0 holds field expiries: the one the snapshot has arrives.
#[test]
fn valkey9_cluster_node_snapshot_loads_into_redis_80() {
    let Some((_, bin)) = versions::cached("redis-8.0.2") else {
        eprintln!(
            "{}",
            versions::missing_note(&versions::Version::named("redis-8.0.2").unwrap())
        );
        return;
    };
    check(&Server::start_bin(&bin, &[]), true);
}
