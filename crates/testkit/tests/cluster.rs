//! `Cluster`: start, routing, live slot moves and failover, on real `redis-server` nodes.

use std::collections::BTreeSet;
use std::time::Duration;

use testkit::compare::{self, Diff, Options, Problem, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server, wait_until};

fn spec() -> Spec {
    Spec {
        dbs: vec![0],
        keys_per_db: 200,
        big_elements: 300,
        ..Spec::default()
    }
}

/// Keys whose slots are owned by different masters, `n` per master.
fn keys_on_every_master(cluster: &Cluster, n: usize) -> Vec<Vec<u8>> {
    let masters: Vec<u16> = cluster.masters().iter().map(|m| m.port()).collect();
    let mut per_master = vec![0; masters.len()];
    let mut keys = Vec::new();
    for i in 0.. {
        if per_master.iter().all(|c| *c >= n) {
            break;
        }
        let key = format!("key:{i}").into_bytes();
        let owner = cluster.owner(Cluster::slot(&key)).port();
        let m = masters.iter().position(|p| *p == owner).unwrap();
        if per_master[m] < n {
            per_master[m] += 1;
            keys.push(key);
        }
    }
    keys
}

fn set(conn: &mut redis::Connection, key: &[u8], value: &str) {
    let _: () = redis::cmd("SET").arg(key).arg(value).query(conn).unwrap();
}

fn get(conn: &mut redis::Connection, key: &[u8]) -> Option<String> {
    redis::cmd("GET").arg(key).query(conn).unwrap()
}

#[test]
fn starts_with_replicas_and_routes_keys() {
    let cluster = Cluster::start(3, 1);
    assert_eq!(cluster.nodes().len(), 6);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    // Sorted by lowest slot: the first owns slot 0, the last slot 16383.
    assert_eq!(cluster.owner(0).port(), masters[0].port());
    assert_eq!(cluster.owner(16383).port(), masters[2].port());
    for master in &masters {
        let replicas = cluster.replicas_of(master);
        assert_eq!(replicas.len(), 1, "{master:?}");
        let info = replicas[0].info("replication");
        assert_eq!(info["master_link_status"], "up");
    }
    assert_eq!(cluster.urls().len(), 6);
    assert!(cluster.url().starts_with("redis://127.0.0.1:"));

    let keys = keys_on_every_master(&cluster, 5);
    let owners: BTreeSet<u16> = keys
        .iter()
        .map(|k| cluster.owner(Cluster::slot(k)).port())
        .collect();
    assert_eq!(owners.len(), 3);
    for key in &keys {
        set(&mut cluster.conn_for(key), key, "v");
    }
    for key in &keys {
        assert_eq!(get(&mut cluster.conn_for(key), key).as_deref(), Some("v"));
        // The owner is what the server itself says.
        let slot: u16 = redis::cmd("CLUSTER")
            .arg("KEYSLOT")
            .arg(key)
            .query(&mut cluster.conn_for(key))
            .unwrap();
        assert_eq!(slot, Cluster::slot(key));
    }
}

#[test]
fn move_slot_carries_its_keys() {
    let cluster = Cluster::start(3, 0);
    let slot = Cluster::slot(b"{moved}");
    let mut conn = cluster.conn_for(b"{moved}");
    for i in 0..250 {
        set(
            &mut conn,
            format!("{{moved}}:{i}").as_bytes(),
            &i.to_string(),
        );
    }
    let from = cluster.owner(slot).port();
    let to = *cluster.masters().iter().find(|m| m.port() != from).unwrap();
    cluster.move_slot(slot, to);
    assert_eq!(cluster.owner(slot).port(), to.port());
    let mut conn = cluster.conn_for(b"{moved}");
    for i in 0..250 {
        let key = format!("{{moved}}:{i}");
        assert_eq!(get(&mut conn, key.as_bytes()), Some(i.to_string()), "{key}");
    }
    let on_source: u64 = redis::cmd("DBSIZE")
        .query(
            &mut cluster
                .nodes()
                .iter()
                .find(|n| n.port() == from)
                .unwrap()
                .conn(),
        )
        .unwrap();
    assert_eq!(on_source, 0);
}

#[test]
fn half_migrated_slot_answers_ask() {
    let cluster = Cluster::start(2, 0);
    let slot = Cluster::slot(b"{half}");
    let mut conn = cluster.conn_for(b"{half}");
    for i in 0..20 {
        set(&mut conn, format!("{{half}}:{i}").as_bytes(), "x");
    }
    let to = cluster.masters()[if cluster.owner(slot).port() == cluster.masters()[0].port() {
        1
    } else {
        0
    }];
    let mut migration = cluster.begin_move(slot, to);
    assert!(!migration.step(5));
    assert_eq!(migration.keys_moved(), 5);
    // A moved key is asked for elsewhere; a key still here is served.
    let moved: Vec<Vec<u8>> = redis::cmd("CLUSTER")
        .arg("GETKEYSINSLOT")
        .arg(slot)
        .arg(100)
        .query(&mut to.conn())
        .unwrap();
    assert_eq!(moved.len(), 5);
    let err = redis::cmd("GET")
        .arg(&moved[0])
        .query::<Option<String>>(&mut conn)
        .unwrap_err();
    assert!(err.to_string().to_uppercase().contains("ASK"), "{err}");
    migration.finish();
    assert_eq!(cluster.owner(slot).port(), to.port());
    let mut conn = cluster.conn_for(b"{half}");
    for i in 0..20 {
        assert_eq!(
            get(&mut conn, format!("{{half}}:{i}").as_bytes()).as_deref(),
            Some("x")
        );
    }
}

#[test]
fn failover_promotes_the_replica() {
    let cluster = Cluster::start(3, 1);
    let slot = Cluster::slot(b"x");
    set(&mut cluster.conn_for(b"x"), b"x", "before");
    let old_owner = cluster.owner(slot).port();
    let replica = cluster
        .replicas_of(cluster.owner(slot))
        .first()
        .copied()
        .unwrap();
    cluster.failover(replica);
    assert_eq!(cluster.owner(slot).port(), replica.port());
    assert_ne!(cluster.owner(slot).port(), old_owner);
    assert_eq!(cluster.masters().len(), 3);
    let demoted = cluster
        .nodes()
        .iter()
        .find(|n| n.port() == old_owner)
        .unwrap();
    assert_eq!(cluster.replicas_of(replica)[0].port(), demoted.port());
    assert_eq!(
        get(&mut cluster.conn_for(b"x"), b"x").as_deref(),
        Some("before")
    );
}

#[test]
fn password_protects_every_node() {
    let cluster = Cluster::start_with(2, 1, &["--requirepass", "pw"]);
    assert_eq!(cluster.password(), Some("pw"));
    for node in cluster.nodes() {
        assert_eq!(node.password(), Some("pw"));
    }
    let slot = Cluster::slot(b"{pw}");
    let mut conn = cluster.conn_for(b"{pw}:a");
    set(&mut conn, b"{pw}:a", "1");
    let to = *cluster
        .masters()
        .iter()
        .find(|m| m.port() != cluster.owner(slot).port())
        .unwrap();
    cluster.move_slot(slot, to);
    assert_eq!(
        get(&mut cluster.conn_for(b"{pw}:a"), b"{pw}:a").as_deref(),
        Some("1")
    );
}

#[test]
fn cluster_compares_with_itself_and_with_a_standalone_copy() {
    let cluster = Cluster::start(3, 0);
    workload::populate_cluster(&cluster, &spec());
    // The keys are spread over every master.
    for master in cluster.masters() {
        let n: u64 = redis::cmd("DBSIZE").query(&mut master.conn()).unwrap();
        assert!(n > 20, "{} holds {n} keys", master.addr());
    }
    let copy = Server::start();
    workload::populate(&copy, &spec());
    let opts = Options::default();
    let side = Side::from(&cluster);
    let equal =
        |a: &Side, b: &Side| compare::compare_sides(a, b, &opts).unwrap_or_else(|r| panic!("{r}"));
    assert_eq!(equal(&side, &side), 200);
    assert_eq!(equal(&side, &Side::from(&copy)), 200);
    assert_eq!(equal(&Side::from(&copy), &side), 200);

    // ferry's own keys are skipped on both sides; a changed and an extra key are reported.
    set(
        &mut cluster.conn_for(b"__ferry:checkpoint"),
        b"__ferry:checkpoint",
        "1",
    );
    let _: () = redis::cmd("APPEND")
        .arg("p:StrShort:1")
        .arg("!")
        .query(&mut copy.conn())
        .unwrap();
    set(
        &mut cluster.conn_for(b"only-in-cluster"),
        b"only-in-cluster",
        "1",
    );
    let report = compare::compare_sides(&side, &Side::from(&copy), &opts).unwrap_err();
    assert_eq!(report.diffs.len(), 2, "{report}");
    assert!(report.diffs.contains(&Diff::Key {
        db: 0,
        key: b"p:StrShort:1".to_vec(),
        problem: Problem::Digest
    }));
    assert!(report.diffs.contains(&Diff::Key {
        db: 0,
        key: b"only-in-cluster".to_vec(),
        problem: Problem::MissingOnTarget
    }));
    assert!(
        report.to_string().contains("source cluster 127.0.0.1:"),
        "{report}"
    );
}

/// The cluster workload keeps writing while a slot is half migrated, then moved, and while
/// a replica takes over; afterwards each master and its replica hold the same data.
#[test]
fn cluster_workload_follows_a_reshard_and_a_failover() {
    let cluster = Cluster::start(3, 1);
    workload::populate_cluster(&cluster, &spec());
    let background = workload::run_in_background_cluster(&cluster, spec());
    let ops_after = |n: u64| {
        let start = background.ops_done();
        assert!(
            wait_until(Duration::from_secs(60), || background.ops_done()
                >= start + n),
            "the workload stalled at {} ops",
            background.ops_done()
        );
    };
    ops_after(300);
    // Group 5's slot holds workload keys: move it half, write, then finish.
    let slot = Cluster::slot(b"{g5}");
    let to = *cluster
        .masters()
        .iter()
        .find(|m| m.port() != cluster.owner(slot).port())
        .unwrap();
    let mut migration = cluster.begin_move(slot, to);
    migration.step(3);
    ops_after(600);
    migration.finish();
    ops_after(300);
    let replica = cluster.replicas_of(cluster.masters()[0])[0];
    cluster.failover(replica);
    ops_after(300);
    let counts = background.stop();
    assert!(counts["SET"] > 0 && counts["EXEC"] > 0, "{counts:?}");
    assert!(!counts.contains_key("SELECT"), "{counts:?}");

    // Redis's replicas drift on consumer groups' read counters (see Options).
    let opts = Options {
        group_read_counters: false,
        ..Options::default()
    };
    let side = Side::from(&cluster);
    let keys = compare::compare_sides(&side, &side, &opts).unwrap_or_else(|r| panic!("{r}"));
    assert!(keys > 200, "{keys}");
    for master in cluster.masters() {
        let replica = cluster.replicas_of(master)[0];
        compare::eventually_equal(master, replica, &opts, Duration::from_secs(30))
            .unwrap_or_else(|r| panic!("{r}"));
    }
}

/// Every cached version (Redis 5.0 and later, Valkey) forms a cluster, moves a slot with
/// the cluster workload running, fails over, and compares equal to a standalone copy of
/// populate's data.
#[test]
fn every_cached_version_forms_a_cluster() {
    let available = testkit::versions::available();
    if available.is_empty() {
        eprintln!("skipped: no cached versions (scripts/fetch-redis-versions)");
    }
    for (version, bin) in available {
        let cluster = Cluster::start_bin(&bin, 2, 1, &[]);
        let copy = Server::start_bin(&bin, &[]);
        // Before 6.2 populate lacks XGROUP CREATECONSUMER: it writes the rest, then panics.
        let old = version.redis_version < (6, 2, 0);
        let populates: [&dyn Fn(); 2] =
            [&|| workload::populate_cluster(&cluster, &spec()), &|| {
                workload::populate(&copy, &spec())
            }];
        for populate in populates {
            let done = std::panic::catch_unwind(std::panic::AssertUnwindSafe(populate));
            assert!(done.is_ok() || old, "{}: populate failed", version.name);
        }
        let background = workload::run_in_background_cluster(&cluster, spec());
        let slot = Cluster::slot(b"{g1}");
        let to = *cluster
            .masters()
            .iter()
            .find(|m| m.port() != cluster.owner(slot).port())
            .unwrap();
        cluster.move_slot(slot, to);
        let replica = cluster.replicas_of(cluster.masters()[1])[0];
        cluster.failover(replica);
        let start = background.ops_done();
        assert!(
            wait_until(Duration::from_secs(60), || background.ops_done() > start),
            "{}: workload stalled",
            version.name
        );
        background.stop();
        assert_eq!(cluster.owner(slot).port(), to.port(), "{}", version.name);
        // Drop the workload's keys again: what is left is populate's data.
        for master in cluster.masters() {
            let mut conn = master.conn();
            let keys: Vec<Vec<u8>> = redis::cmd("KEYS").arg("*wl:*").query(&mut conn).unwrap();
            for key in keys {
                let _: () = redis::cmd("DEL").arg(key).query(&mut conn).unwrap();
            }
        }
        compare::compare_sides(
            &Side::from(&cluster),
            &Side::from(&copy),
            &Options::default(),
        )
        .unwrap_or_else(|r| panic!("{}: {r}", version.name));
    }
}
