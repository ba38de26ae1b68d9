//! `Server`: start, auth, info, logs, failure messages, and cleanup on drop.

use std::path::Path;
use std::time::Duration;

use testkit::{Server, wait_until};

#[test]
fn starts_answers_and_reports_itself() {
    let server = Server::start();
    let mut conn = server.conn();
    let pong: String = redis::cmd("PING").query(&mut conn).unwrap();
    assert_eq!(pong, "PONG");
    assert_eq!(server.addr(), format!("127.0.0.1:{}", server.port()));
    assert_eq!(server.url(), format!("redis://127.0.0.1:{}", server.port()));
    assert!(server.version() >= (5, 0, 0), "{:?}", server.version());
    let info = server.info("server");
    assert_eq!(info["tcp_port"], server.port().to_string());
    assert_eq!(info["process_id"], server.pid().to_string());
    assert!(server.dir().is_dir());
    assert!(
        wait_until(Duration::from_secs(5), || server
            .log_tail(50)
            .contains("Ready to accept connections")),
        "log: {}",
        server.log_tail(50)
    );
}

#[test]
fn conn_db_selects_the_db() {
    let server = Server::start();
    let mut conn = server.conn_db(3);
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let keyspace = server.info("keyspace");
    assert!(keyspace.contains_key("db3"), "{keyspace:?}");
    assert!(!keyspace.contains_key("db0"), "{keyspace:?}");
}

#[test]
fn password_is_used_by_conn() {
    let server = Server::start_with(&["--requirepass", "s3cret pw"]);
    assert_eq!(server.password(), Some("s3cret pw"));
    let mut conn = server.conn();
    let _: () = redis::cmd("SET")
        .arg("k")
        .arg("v")
        .query(&mut conn)
        .unwrap();
    let v: String = redis::cmd("GET").arg("k").query(&mut conn).unwrap();
    assert_eq!(v, "v");
    // Without the password the server refuses.
    let mut bare = redis::Client::open(server.url())
        .unwrap()
        .get_connection()
        .unwrap();
    let err = redis::cmd("GET")
        .arg("k")
        .query::<String>(&mut bare)
        .unwrap_err();
    assert!(err.to_string().contains("NOAUTH"), "{err}");
}

#[test]
fn extra_args_reach_the_server() {
    let server = Server::start_with(&["--repl-diskless-sync", "yes", "--databases", "32"]);
    let mut conn = server.conn();
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("databases")
        .query(&mut conn)
        .unwrap();
    assert_eq!(cfg, ["databases", "32"]);
    let cfg: Vec<String> = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query(&mut conn)
        .unwrap();
    assert_eq!(cfg, ["save", ""]);
}

#[test]
fn drop_kills_the_process_and_removes_the_dir() {
    let server = Server::start();
    let (pid, port, dir) = (server.pid(), server.port(), server.dir().to_path_buf());
    assert!(Path::new(&format!("/proc/{pid}")).exists());
    drop(server);
    assert!(
        wait_until(Duration::from_secs(5), || !Path::new(&format!(
            "/proc/{pid}"
        ))
        .exists()),
        "redis-server {pid} still running after drop"
    );
    assert!(!dir.exists(), "{} still there", dir.display());
    let refused = std::net::TcpStream::connect_timeout(
        &([127, 0, 0, 1], port).into(),
        Duration::from_millis(500),
    );
    assert!(refused.is_err(), "port {port} still answers");
}

#[test]
fn many_servers_get_distinct_ports() {
    let servers: Vec<Server> = (0..6).map(|_| Server::start()).collect();
    let mut ports: Vec<u16> = servers.iter().map(Server::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), servers.len());
}

#[test]
fn a_bad_argument_panics_with_the_server_output() {
    let result = std::panic::catch_unwind(|| Server::start_with(&["--no-such-directive", "1"]));
    let panic = result.expect_err("a bad directive must fail the start");
    let msg = panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default();
    assert!(msg.contains("exited at start"), "{msg}");
    assert!(
        msg.contains("no-such-directive"),
        "the message should quote the server's complaint: {msg}"
    );
}
