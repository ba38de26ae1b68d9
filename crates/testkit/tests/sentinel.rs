//! `Sentinel`: sentinels over a master with replicas, and a forced failover.

use testkit::{Sentinel, Server};

fn set(server: &Server, key: &str, value: &str) {
    let _: () = redis::cmd("SET")
        .arg(key)
        .arg(value)
        .query(&mut server.conn())
        .unwrap();
}

#[test]
fn sentinels_fail_over_to_a_replica() {
    let master = Server::start();
    let replicas = [
        Server::start_replica_of(&master),
        Server::start_replica_of(&master),
    ];
    set(&master, "k", "before");
    let sentinels = Sentinel::start(&master, "src", 2, 3);
    assert_eq!(sentinels.addrs().len(), 3);
    assert_eq!(
        sentinels.url("src"),
        format!("redis+sentinel://{}/src", sentinels.addrs().join(","))
    );
    assert_eq!(sentinels.master_addr("src"), master.addr());

    let new = sentinels.failover("src");
    assert_ne!(new, master.addr());
    assert_eq!(sentinels.master_addr("src"), new);
    let promoted = replicas.iter().find(|r| r.addr() == new).unwrap();
    let value: String = redis::cmd("GET")
        .arg("k")
        .query(&mut promoted.conn())
        .unwrap();
    assert_eq!(value, "before");
    set(promoted, "k", "after");
}

#[test]
fn sentinels_use_the_masters_password() {
    let master = Server::start_with(&["--requirepass", "pw"]);
    let replica = Server::start_replica_of(&master);
    assert_eq!(replica.password(), Some("pw"));
    let sentinels = Sentinel::start(&master, "secure", 1, 1);
    let new = sentinels.failover("secure");
    assert_eq!(new, replica.addr());
}
