//! `populate` and `Workload`: what they write, that it is deterministic, and that Redis's
//! own replication of it compares equal (compare is checked against a real replica).

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use testkit::compare::{self, Options};
use testkit::workload::{self, CROSS_SLOT_COMMANDS, REQUIRED_COMMANDS, Spec, Workload};
use testkit::{Cluster, Server, wait_until};

fn small() -> Spec {
    Spec {
        keys_per_db: 150,
        big_elements: 600,
        ..Spec::default()
    }
}

fn scan_all(conn: &mut redis::Connection) -> Vec<Vec<u8>> {
    let mut keys = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, batch): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("COUNT")
            .arg(1000)
            .query(conn)
            .unwrap();
        keys.extend(batch);
        if next == 0 {
            return keys;
        }
        cursor = next;
    }
}

#[test]
fn populate_writes_every_type_and_encoding() {
    let server = Server::start();
    let spec = Spec {
        keys_per_db: 300,
        ..Spec::default()
    };
    workload::populate(&server, &spec);
    let keyspace = server.info("keyspace");
    for db in &spec.dbs {
        assert!(
            keyspace[&format!("db{db}")].starts_with("keys=300,"),
            "{keyspace:?}"
        );
    }
    let mut conn = server.conn();
    let keys = scan_all(&mut conn);
    let mut types = BTreeSet::new();
    let mut encodings = BTreeSet::new();
    let mut hll = BTreeSet::new();
    let mut with_ttl = 0;
    for key in &keys {
        let t: String = redis::cmd("TYPE").arg(key).query(&mut conn).unwrap();
        let e: String = redis::cmd("OBJECT")
            .arg("ENCODING")
            .arg(key)
            .query(&mut conn)
            .unwrap();
        if String::from_utf8_lossy(key).contains("Hll") {
            let h: String = redis::cmd("PFDEBUG")
                .arg("ENCODING")
                .arg(key)
                .query(&mut conn)
                .unwrap();
            hll.insert(h);
        }
        let ttl: i64 = redis::cmd("PTTL").arg(key).query(&mut conn).unwrap();
        if ttl >= 0 {
            assert!(ttl > 30 * 60 * 1000, "ttl {ttl} too short");
            with_ttl += 1;
        }
        types.insert(t);
        encodings.insert(e);
    }
    assert_eq!(
        types,
        ["hash", "list", "set", "stream", "string", "zset"]
            .map(String::from)
            .into()
    );
    for e in [
        "int",
        "embstr",
        "raw",
        "intset",
        "hashtable",
        "listpack",
        "skiplist",
        "stream",
    ] {
        assert!(encodings.contains(e), "no {e} among {encodings:?}");
    }
    assert!(
        encodings.contains("quicklist") || server.version() >= (7, 2, 0),
        "{encodings:?}"
    );
    assert_eq!(hll, ["dense", "sparse"].map(String::from).into());
    assert!(
        (20..120).contains(&with_ttl),
        "{with_ttl} of 300 keys with a TTL"
    );
    assert!(keys.iter().any(|k| k.is_empty()), "the empty key name");
    assert!(
        keys.iter().any(|k| k.contains(&0) && k.contains(&0xff)),
        "binary key names"
    );

    let groups: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("GROUPS")
        .arg("p:Stream:16")
        .query(&mut conn)
        .unwrap();
    assert_eq!(groups.len(), 2);
    let consumers: Vec<redis::Value> = redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg("p:Stream:16")
        .arg("g1")
        .query(&mut conn)
        .unwrap();
    assert_eq!(consumers.len(), 2);
    if server.version().0 >= 7 {
        let libs: Vec<redis::Value> = redis::cmd("FUNCTION").arg("LIST").query(&mut conn).unwrap();
        assert_eq!(libs.len(), 1);
    }
}

#[test]
fn populate_twice_gives_the_same_data() {
    let (once, twice) = (Server::start(), Server::start());
    workload::populate(&once, &small());
    workload::populate(&twice, &small());
    workload::populate(&twice, &small());
    assert_eq!(
        compare::compare(&once, &twice, &Options::default()).unwrap(),
        450
    );
}

#[test]
fn workload_covers_the_required_commands() {
    let server = Server::start();
    workload::populate(&server, &small());
    let mut workload = Workload::new(&small());
    let counts = workload.run(&server, 3000);
    let missing: Vec<&&str> = REQUIRED_COMMANDS
        .iter()
        .filter(|c| !counts.contains_key(**c))
        .collect();
    assert!(
        missing.is_empty(),
        "not issued: {missing:?}; counts {counts:?}"
    );
    assert!(
        workload.errors().is_empty(),
        "{:?}",
        workload.error_samples()
    );
    // Every op is one of the required commands or a helper read/prefix.
    let total: u64 = counts.values().sum();
    assert!(total >= 3000, "{total}");
}

#[test]
fn workload_runs_on_a_bare_server_with_one_db() {
    let server = Server::start();
    let spec = Spec {
        dbs: vec![5],
        ..small()
    };
    let mut workload = Workload::new(&spec);
    let counts = workload.run(&server, 2500);
    assert!(
        workload.errors().is_empty(),
        "{:?}",
        workload.error_samples()
    );
    assert!(
        !counts.contains_key("SWAPDB") && !counts.contains_key("MOVE"),
        "{counts:?}"
    );
    assert!(counts.contains_key("FCALL"));
    let keyspace = server.info("keyspace");
    assert_eq!(keyspace.keys().collect::<Vec<_>>(), ["db5"], "{keyspace:?}");
}

#[test]
fn workload_is_deterministic() {
    let (a, b) = (Server::start(), Server::start());
    let run = |server: &Server| -> BTreeMap<String, u64> {
        let mut workload = Workload::new(&small());
        let mut counts = workload.run(server, 700);
        for (k, v) in workload.run(server, 700) {
            *counts.entry(k).or_default() += v;
        }
        counts
    };
    assert_eq!(run(&a), run(&b));
}

/// Redis's own replication of populate + workload must compare equal: proves compare has
/// no false differences on everything the workload writes.
#[test]
fn a_real_replica_compares_equal() {
    let source = Server::start();
    workload::populate(&source, &small());
    let port = source.port().to_string();
    let replica = Server::start_with(&["--replicaof", "127.0.0.1", &port]);
    let mut workload = Workload::new(&small());
    workload.run(&source, 3000);
    assert!(
        workload.errors().is_empty(),
        "{:?}",
        workload.error_samples()
    );
    let caught_up = wait_until(Duration::from_secs(20), || {
        let (s, r) = (source.info("replication"), replica.info("replication"));
        r.get("master_link_status").map(String::as_str) == Some("up")
            && s.get("master_repl_offset") == r.get("slave_repl_offset")
    });
    assert!(
        caught_up,
        "replica did not catch up; log:\n{}",
        replica.log_tail(20)
    );
    let n = compare::eventually_equal(
        &source,
        &replica,
        &Options::default(),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{r}"));
    assert!(n > 450, "{n}");
}

#[test]
fn background_workload_runs_until_stopped() {
    let source = Server::start();
    let port = source.port().to_string();
    let replica = Server::start_with(&["--replicaof", "127.0.0.1", &port]);
    let background = workload::run_in_background(&source, small());
    assert!(wait_until(Duration::from_secs(30), || background
        .ops_done()
        >= 1000));
    let counts = background.stop();
    assert!(counts["SET"] > 0 && counts["SELECT"] > 0, "{counts:?}");
    // Writes stopped: the replica converges.
    compare::eventually_equal(
        &source,
        &replica,
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
}

#[test]
fn workload_issues_the_cross_slot_commands() {
    let server = Server::start();
    let spec = Spec {
        dbs: vec![0],
        ..small()
    };
    workload::populate(&server, &spec);
    let mut workload = Workload::new(&spec);
    let counts = workload.run(&server, 2000);
    let missing: Vec<&&str> = CROSS_SLOT_COMMANDS
        .iter()
        .filter(|c| !counts.contains_key(**c))
        .collect();
    assert!(
        missing.is_empty(),
        "not issued: {missing:?}; counts {counts:?}"
    );
    assert!(
        workload.errors().is_empty(),
        "{:?}",
        workload.error_samples()
    );
}

/// The same workload on a one-node cluster (every slot on one master): each cross-slot
/// command is refused with CROSSSLOT, every time, so its keys were in different slots.
#[test]
fn cross_slot_commands_span_slots() {
    let cluster = Cluster::start(1, 0);
    let spec = Spec {
        dbs: vec![0],
        ..small()
    };
    let mut workload = Workload::new(&spec);
    let mut conn = cluster.nodes()[0].conn();
    let counts = workload.run_conn(&mut conn, 2000);
    for name in CROSS_SLOT_COMMANDS {
        let issued = counts.get(*name).copied().unwrap_or(0);
        let refused = workload.errors().get(*name).copied().unwrap_or(0);
        assert!(issued > 0, "{name} not issued");
        assert_eq!(refused, issued, "{name}: {refused} of {issued} refused");
    }
    assert!(
        workload
            .error_samples()
            .iter()
            .all(|e| e.contains("CROSSSLOT")),
        "{:?}",
        workload.error_samples()
    );
}
