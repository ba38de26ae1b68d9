//! Damaged values never reach the target: a snapshot whose CRC is right but whose values are
//! damaged inside (`crates/rdb/tests/data/corrupt/`) is refused with the key, its db and the
//! byte offset, and so is a `RESTORE` of a damaged payload arriving in the command stream.
//! The target keeps answering and never holds the damaged key.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::{Ferry, wait_caught_up};
use ferry_rdb::{TypeByte, dump};
use testkit::Server;

fn corrupt(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../rdb/tests/data/corrupt")
        .join(format!("{name}.rdb"))
}

/// The damaged value of a corrupt fixture: type byte and bytes (between the key `bad` and
/// the EOF opcode).
fn damaged_value(name: &str) -> (u8, Vec<u8>) {
    let f = std::fs::read(corrupt(name)).unwrap();
    let key = f.windows(4).position(|w| w == b"\x03bad").unwrap();
    (f[key - 1], f[key + 4..f.len() - 9].to_vec())
}

/// Offset of the damaged value in its fixture file.
fn value_offset(name: &str) -> usize {
    let f = std::fs::read(corrupt(name)).unwrap();
    f.windows(4).position(|w| w == b"\x03bad").unwrap() + 4
}

fn exists(server: &Server, db: i64, key: &str) -> bool {
    let mut c = server.conn_db(db);
    redis::cmd("EXISTS").arg(key).query::<i64>(&mut c).unwrap() == 1
}

fn ping(server: &Server) -> String {
    let mut c = server.conn();
    redis::cmd("PING").query::<String>(&mut c).unwrap()
}

/// These cases as Redis 7.0 reads them (types it knows, RDB 10 payloads).
const REDIS_70_CASES: &[&str] = &[
    "hash-listpack-entry-2g",
    "zset-listpack-count",
    "list-ziplist-prevlen",
    "hash-ziplist-tail",
    "intset-order",
    "hash-zipmap-count",
    "quicklist-node-entry",
    "stream-lp-count",
    "stream-consumer-pel-not-in-group",
    "stream-pel-without-consumer",
    "zset-nan-score",
    "string-lzf-back-reference",
];

/// The fixtures are damage Redis itself refuses: with `sanitize-dump-payload yes` a real
/// server rejects each as a RESTORE payload, as ferry does.
#[test]
fn redis_with_sanitize_yes_refuses_the_same_payloads() {
    let server = Server::start_with(&["--sanitize-dump-payload", "yes"]);
    let mut c = server.conn();
    for name in REDIS_70_CASES {
        let (ty, value) = damaged_value(name);
        let payload = dump::payload(TypeByte(ty), &value, 10);
        let r = redis::cmd("RESTORE")
            .arg("bad")
            .arg(0)
            .arg(&payload[..])
            .query::<String>(&mut c);
        assert!(r.is_err(), "{name}: Redis took it: {r:?}");
        assert!(dump::validate_payload(&payload).is_err(), "{name}");
    }
    assert_eq!(ping(&server), "PONG");
}

#[test]
fn damaged_snapshot_is_refused_with_key_db_and_offset() {
    for name in [
        "hash-listpack-entry-2g",
        "quicklist-node-entry",
        "stream-lp-count",
        "stream-pel-without-consumer",
        "intset-order",
    ] {
        let target = Server::start();
        let path = corrupt(name);
        let mut ferry = Ferry::start(&[
            "--source",
            path.to_str().unwrap(),
            "--target",
            &target.url(),
        ]);
        let code = ferry.wait(Duration::from_secs(60));
        let log = ferry.log();
        assert_eq!(code.code(), Some(1), "{name}: {log}");
        let line = log
            .lines()
            .find(|l| l.starts_with("ferry: "))
            .unwrap_or_else(|| panic!("{name}: no error line in {log}"));
        assert!(
            line.contains("is unreadable: corrupt snapshot:")
                && line.contains("in key \"bad\" in db 3 at byte "),
            "{name}: {line}"
        );
        let at: usize = line
            .rsplit("at byte ")
            .next()
            .and_then(|t| t.split(' ').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_else(|| panic!("{name}: no offset in {line}"));
        assert!(
            line.contains("repair or delete that key on the source"),
            "{name}: {line}"
        );
        assert!(
            at >= value_offset(name),
            "{name}: offset {at} before the value: {line}"
        );
        assert_eq!(log.matches("ferry: ").count(), 1, "{name}: one line: {log}");
        assert!(!log.contains("panicked"), "{name}: {log}");
        // The target answers and never got the damaged key.
        assert_eq!(ping(&target), "PONG", "{name}");
        assert!(
            !exists(&target, 3, "bad"),
            "{name}: the damaged key reached the target"
        );
    }
}

/// An application RESTOREs a damaged payload on a source that does not check payloads
/// deeply (`sanitize-dump-payload no`, Redis's default): the source keeps it and passes the
/// RESTORE on to its replicas. ferry stops there with the key, db and offset; the target
/// keeps what it had and never gets the key.
#[test]
fn damaged_restore_in_the_stream_is_refused() {
    let source = Server::start_with(&["--sanitize-dump-payload", "no"]);
    let target = Server::start();
    let mut c = source.conn_db(2);
    redis::cmd("SET")
        .arg("before")
        .arg("1")
        .query::<()>(&mut c)
        .unwrap();
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    assert!(exists(&target, 2, "before"));

    let (ty, value) = damaged_value("hash-listpack-entry-2g");
    let payload = dump::payload(TypeByte(ty), &value, 10);
    redis::cmd("RESTORE")
        .arg("bad")
        .arg(0)
        .arg(&payload[..])
        .query::<()>(&mut c)
        .expect("the source takes it: it checks only the listpack's header");
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert_eq!(code.code(), Some(1), "{log}");
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_default();
    assert!(
        line.contains("RESTORE of key \"bad\" in db 2 (the command ending at replication offset ")
            && line.contains("its payload is damaged at byte ")
            && line.contains("listpack entry runs past its end"),
        "{log}"
    );
    assert!(!log.contains("panicked"), "{log}");
    assert_eq!(ping(&target), "PONG");
    assert!(exists(&target, 2, "before"));
    assert!(
        !exists(&target, 2, "bad"),
        "the damaged key reached the target"
    );
}
