//! The `distinct` item: a target that is the source under another name, a replica of it, its
//! master, one of its cluster's nodes, or where its data comes from (a cascade loop) is refused
//! by `sync` before anything is written, and shown by `ferry check`; servers that only look
//! related (a replica promoted long ago, a cascade) are not. Real servers, the real binary.

mod common;

use std::time::Duration;

use common::{Ferry, check_item, free_port, refused};
use serde_json::Value;
use testkit::workload::{self, Spec};
use testkit::{Cluster, Sentinel, Server};

fn spec(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 200,
        ..Spec::default()
    }
}

/// What a server holds: each key but ferry's own (the heartbeat ferry writes on a source
/// changes every second) with `DEBUG DIGEST-VALUE` of its value.
fn fingerprint(server: &Server) -> Vec<(Vec<u8>, String)> {
    let mut c = server.conn();
    let mut keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    keys.retain(|k| !k.starts_with(b"__ferry:"));
    keys.sort();
    keys.into_iter()
        .map(|k| {
            let digest: Vec<String> = redis::cmd("DEBUG")
                .arg("DIGEST-VALUE")
                .arg(&k)
                .query(&mut c)
                .unwrap();
            (k, digest.concat())
        })
        .collect()
}

fn run_id(server: &Server) -> String {
    server.info("server")["run_id"].clone()
}

/// The reported case: the same server as `localhost` and `127.0.0.1`, with `on_conflict =
/// "flush"` confirmed. Refused before any write; the source keeps every key.
#[test]
fn one_server_under_two_names_is_refused_before_a_flush() {
    let source = Server::start();
    workload::populate(&source, &spec(1));
    let before = fingerprint(&source);
    assert!(!before.is_empty());
    let as_localhost = format!("redis://localhost:{}", source.port());
    let as_ip = format!("redis://127.0.0.1:{}", source.port());
    for conflict in [
        &["--on-conflict", "flush", "--yes-flush-target"][..],
        &["--on-conflict", "overwrite"],
    ] {
        let mut args = vec!["--source", &as_localhost, "--target", &as_ip];
        args.extend(conflict);
        let line = refused(&args);
        assert!(
            line.contains(&format!("source localhost:{}", source.port()))
                && line.contains(&format!("target 127.0.0.1:{}", source.port()))
                && line.contains(&format!("one server (run_id {})", run_id(&source))),
            "{line}"
        );
        assert_eq!(fingerprint(&source), before, "the source was changed");
    }
    // Not in [check] ignore either.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{as_localhost}\"\n[target]\nurl = \"{as_ip}\"\n[check]\nignore = [\"distinct\"]\n"
        ),
    )
    .unwrap();
    let line = refused(&["--config", config.to_str().unwrap()]);
    assert!(
        line.contains("check.ignore cannot name \"distinct\""),
        "{line}"
    );

    let (code, found) = check_distinct(&["--source", &as_localhost, "--target", &as_ip]);
    assert_eq!(code, 1);
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0]["result"], "fail");
    assert!(
        found[0]["found"]
            .as_str()
            .unwrap()
            .contains("one server (run_id"),
        "{found:#?}"
    );
    assert!(
        found[0]["fix"].as_str().unwrap().contains("another server"),
        "{found:#?}"
    );
    assert_eq!(fingerprint(&source), before);
}

/// A target that replicates the source, and a target that is the source's master.
#[test]
fn a_replica_of_the_source_or_its_master_is_refused() {
    let master = Server::start();
    workload::populate(&master, &spec(2));
    let replica = Server::start_replica_of(&master);
    let before = fingerprint(&master);
    let line = refused(&[
        "--source",
        &master.url(),
        "--target",
        &replica.url(),
        "--on-conflict",
        "overwrite",
    ]);
    assert!(
        line.contains("the target is a replica of the source"),
        "{line}"
    );
    let line = refused(&[
        "--source",
        &replica.url(),
        "--target",
        &master.url(),
        "--on-conflict",
        "flush",
        "--yes-flush-target",
    ]);
    assert!(
        line.contains("the target is the master of the source"),
        "{line}"
    );
    assert_eq!(fingerprint(&master), before);
    let (code, found) = check_distinct(&["--source", &replica.url(), "--target", &master.url()]);
    assert_eq!(code, 1);
    assert_eq!(found[0]["result"], "fail", "{found:#?}");

    // Behind Sentinel: the name resolves to the master first.
    let sentinels = Sentinel::start(&master, "mymaster", 1, 1);
    let line = refused(&[
        "--source",
        &replica.url(),
        "--target",
        &sentinels.url("mymaster"),
    ]);
    assert!(
        line.contains("the target is the master of the source"),
        "{line}"
    );
}

/// Every `[[more_targets]]` entry is looked at: one that is the source under another name,
/// and two targets that are one server.
#[test]
fn each_extra_target_and_each_pair_of_targets_is_looked_at() {
    let source = Server::start();
    let first = Server::start();
    let other = Server::start();
    workload::populate(&source, &spec(3));
    let before = fingerprint(&source);
    let dir = tempfile::tempdir().unwrap();
    let write = |second: &str| {
        let path = dir.path().join(format!("ferry-{}.toml", free_port()));
        std::fs::write(
            &path,
            format!(
                "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[[more_targets]]\nurl = \"{second}\"\n[sync]\non_conflict = \"flush\"\nconfirm_flush = true\n",
                source.url(),
                first.url()
            ),
        )
        .unwrap();
        path.to_str().unwrap().to_string()
    };
    let config = write(&format!("redis://localhost:{}", source.port()));
    let line = refused(&["--config", &config]);
    assert!(
        line.contains(&format!("target 2 localhost:{}", source.port()))
            && line.contains("one server"),
        "{line}"
    );
    assert_eq!(fingerprint(&source), before);

    let config = write(&format!("redis://localhost:{}", first.port()));
    let line = refused(&["--config", &config]);
    assert!(
        line.contains(&format!("target 1 {}", first.addr()))
            && line.contains(&format!("target 2 localhost:{}", first.port()))
            && line.contains("one server"),
        "{line}"
    );
    // Two different targets pass.
    let (code, found) = check_distinct(&[
        "--source",
        &source.url(),
        "--target",
        &first.url(),
        "--target",
        &other.url(),
    ]);
    assert_eq!(code, 0, "{found:#?}");
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(found.iter().all(|f| f["result"] == "pass"), "{found:#?}");
}

/// A cluster given as the source through one node and as the target through another.
#[test]
fn one_cluster_through_two_nodes_is_refused() {
    let cluster = Cluster::start(3, 0);
    let nodes = cluster.urls();
    let line = refused(&["--source", &nodes[0], "--target", &nodes[1]]);
    assert!(line.contains("they are one cluster (node "), "{line}");
    let (code, found) = check_distinct(&["--source", &nodes[2], "--target", &nodes[0]]);
    assert_eq!(code, 1);
    assert_eq!(found[0]["result"], "fail", "{found:#?}");
}

/// A → B runs (its checkpoint is in B); B → A would copy A's own data back into it: refused,
/// naming the checkpoint. A → B → C, a cascade, is not a loop and runs.
#[test]
fn a_cascade_loop_is_refused_and_a_cascade_is_not() {
    let a = Server::start();
    let b = Server::start();
    let c = Server::start();
    workload::populate(&a, &spec(4));
    let mut first = Ferry::start_with_status(&["--source", &a.url(), "--target", &b.url()]);
    first.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let before = fingerprint(&a);
    let line = refused(&[
        "--source",
        &b.url(),
        "--target",
        &a.url(),
        "--on-conflict",
        "flush",
        "--yes-flush-target",
    ]);
    assert!(
        line.contains("would make a loop")
            && line.contains(&format!("__ferry:checkpoint:{}", a.addr()))
            && line.contains(&format!("master_replid of {}", a.addr())),
        "{line}"
    );
    assert_eq!(fingerprint(&a), before, "A was changed");
    let (code, found) = check_distinct(&["--source", &b.url(), "--target", &a.url()]);
    assert_eq!(code, 1);
    assert_eq!(found[0]["result"], "fail", "{found:#?}");

    // B → C: B holds A → B's checkpoint, but C is not A.
    let mut second = Ferry::start_with_status(&["--source", &b.url(), "--target", &c.url()]);
    second.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(second.terminate(Duration::from_secs(30)).success());
    assert!(first.terminate(Duration::from_secs(30)).success());
}

/// A target that was once a replica of another server and was promoted since (it keeps that
/// server's replication id as its `master_replid2`) is a server of its own: the sync runs.
#[test]
fn a_promoted_former_replica_is_a_target_like_any_other() {
    let elsewhere = Server::start();
    workload::populate(&elsewhere, &spec(5));
    let target = Server::start_replica_of(&elsewhere);
    let _: () = redis::cmd("REPLICAOF")
        .arg("NO")
        .arg("ONE")
        .query(&mut target.conn())
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query(&mut target.conn()).unwrap();
    assert_eq!(
        target.info("replication")["master_replid2"],
        elsewhere.info("replication")["master_replid"]
    );
    let source = Server::start();
    workload::populate(&source, &spec(6));
    let (code, found) = check_distinct(&["--source", &source.url(), "--target", &target.url()]);
    assert_eq!(code, 0, "{found:#?}");
    assert_eq!(found[0]["result"], "pass", "{found:#?}");
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
    testkit::compare::compare(&source, &target, &Default::default())
        .unwrap_or_else(|r| panic!("{r}"));
}

/// A cluster source read from its replicas: the list of tasks copying into it
/// (`__ferry:tasks`, which a task writes into its target as it starts) is read there too.
/// One naming the target's replication id is a loop; one naming another server is not.
#[test]
fn a_cluster_source_read_from_replicas_is_looked_at_through_them() {
    let cluster = Cluster::start(3, 1);
    let target = Server::start();
    let key = "__ferry:tasks";
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("ferry.toml");
    std::fs::write(
        &config,
        format!(
            "[source]\nurl = \"{}\"\nread_from = \"replica\"\n[target]\nurl = \"{}\"\n",
            cluster.url(),
            target.url()
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let owner = cluster.owner(Cluster::slot(key.as_bytes()));
    let replica = cluster.replicas_of(owner)[0];
    for (replid, result) in [
        (
            "8de1787ba490483314a4d30f1c628bc5025eb761".to_string(),
            "pass",
        ),
        (target.info("replication")["master_replid"].clone(), "fail"),
    ] {
        let value = format!("{replid} 0123456789abcdef0123456789abcdef01234567");
        let _: () = redis::cmd("HSET")
            .arg(key)
            .arg("upstream@0")
            .arg(&value)
            .query(&mut cluster.conn_for(key.as_bytes()))
            .unwrap();
        assert!(testkit::wait_until(Duration::from_secs(10), || {
            let mut c = replica.conn();
            let _: () = redis::cmd("READONLY").query(&mut c).unwrap();
            redis::cmd("HGET")
                .arg(key)
                .arg("upstream@0")
                .query::<Option<String>>(&mut c)
                .unwrap()
                == Some(value.clone())
        }));
        let (_, found) = check_distinct(&["--config", config]);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_eq!(found[0]["result"], result, "{found:#?}");
    }
}

/// `ferry check --json`: its exit code and the `distinct` findings.
fn check_distinct(args: &[&str]) -> (i32, Vec<Value>) {
    check_item(args, "distinct")
}
