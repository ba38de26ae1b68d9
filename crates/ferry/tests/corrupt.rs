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
use testkit::versions;

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

struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// ferry's check against Redis's own: payloads of small values of every encoding Redis 7.0
/// writes, damaged at random (CRC made right again), given to `RESTORE` on a server with
/// `sanitize-dump-payload yes` and to `dump::validate_payload`. What Redis takes, ferry must
/// take (refusing it would stop a sync of valid data); what ferry takes, Redis must take,
/// except the few things ferry checks further (a zset score that is not a number, a value that
/// does not end where the payload's footer starts) or leaves to the target (an empty
/// collection, which RESTORE refuses cleanly). On Redis 7.0, and on the matrix's 6.2
/// (ziplists), 8.0 (hashes with field expiries) and Valkey 8.1 (set listpacks) when cached.
fn differential(server: &Server, extra: &[&[&str]], extra_keys: &[&str]) {
    let mut c = server.conn();
    let setup: &[&[&str]] = &[
        &["SET", "str", "hello"],
        &["SET", "lzf", &"abcdefgh".repeat(20)],
        &["SET", "int", "12345"],
        &["HSET", "hash", "f1", "v1", "f2", "2", "f3", "v3"],
        &["ZADD", "zset", "1", "a", "2.5", "b", "3", "c"],
        &["RPUSH", "list", "a", "b", "1", "c", "d"],
        &["SADD", "intset", "1", "2", "3", "100000"],
        &["SADD", "set", "a", "b", "c"],
        &["XADD", "stream", "1-1", "f", "v", "g", "w"],
        &["XADD", "stream", "2-1", "f", "v2", "g", "w2"],
        &["XGROUP", "CREATE", "stream", "grp", "0"],
        &[
            "XREADGROUP",
            "GROUP",
            "grp",
            "c1",
            "COUNT",
            "1",
            "STREAMS",
            "stream",
            ">",
        ],
    ];
    for cmd in setup.iter().chain(extra) {
        redis::cmd(cmd[0])
            .arg(&cmd[1..])
            .query::<redis::Value>(&mut c)
            .unwrap();
    }
    let mut keys = vec![
        "str", "lzf", "int", "hash", "zset", "list", "intset", "set", "stream",
    ];
    keys.extend_from_slice(extra_keys);
    let mut rng = XorShift(0x2545_F491_4F6C_DD1D);
    let (mut both_refuse, mut both_take, mut stricter, mut framed) = (0, 0, 0, 0);
    for &key in &keys {
        let good: Vec<u8> = redis::cmd("DUMP").arg(key).query(&mut c).unwrap();
        assert!(
            dump::validate_payload(&good).is_ok(),
            "{key}: DUMP itself refused"
        );
        for _ in 0..1000 {
            let mut p = good.clone();
            let body = p.len() - 10;
            for _ in 0..1 + rng.next() % 3 {
                let i = 1 + (rng.next() as usize) % (body - 1);
                p[i] = match rng.next() % 3 {
                    0 => p[i] ^ (1 << (rng.next() % 8)),
                    1 => rng.next() as u8,
                    _ => [0, 0xFF, 0x7F, 0x80, 0xC3, 0x40, 0xF0][(rng.next() % 7) as usize],
                };
            }
            let n = p.len() - 8;
            let crc = ferry_rdb::crc64(&p[..n]);
            p[n..].copy_from_slice(&crc.to_le_bytes());
            let redis_takes = redis::cmd("RESTORE")
                .arg("probe")
                .arg(0)
                .arg(&p[..])
                .arg("REPLACE")
                .query::<String>(&mut c)
                .is_ok();
            let ferry = dump::validate_payload(&p);
            // Redis reads a payload's value from a buffer that still holds the version and
            // CRC, and never checks where the value ends: a value that runs into them, or
            // stops short of them, can still load there. It also reads a string-encoding
            // byte where a length belongs as a small length (so an LZF string can claim 0
            // bytes), and an unknown length form as the largest number where it does not check
            // (a stream's counters). ferry holds the value to its bytes and its lengths to
            // their form: these
            // are refusals of framing Redis never writes, not of the structures inside.
            let framing = ferry.as_ref().is_err_and(|e| {
                matches!(
                    e.kind(),
                    ferry_rdb::ErrorKind::Corrupt(
                        "value ends early"
                            | "trailing bytes after the value"
                            | "string encoding where a length was expected"
                            | "unknown length encoding"
                            | "unknown string encoding"
                            | "LZF lengths are impossible"
                    )
                )
            });
            match (redis_takes, &ferry) {
                (true, Err(_)) if framing => framed += 1,
                // Redis reads such a score with strtod whatever it holds, and ferry could
                // not rewrite it as ZADD for an older target; 6.2 did not yet check a stream's
                // length against its nodes (7.0 does). ferry applies the newest rules.
                (true, Err(e))
                    if matches!(
                        e.kind(),
                        ferry_rdb::ErrorKind::Corrupt(
                            "zset score is not a number"
                                | "stream length is not zero but it has no entries"
                        )
                    ) =>
                {
                    stricter += 1
                }
                (true, Err(e)) => panic!("{key}: Redis takes {p:02x?} but ferry refuses: {e}"),
                (false, Ok(_)) => {
                    let (ty, raw, _) = dump::parse_payload(&p).unwrap();
                    let empty =
                        ferry_rdb::decode_value(ty, &bytes::Bytes::copy_from_slice(raw), 10)
                            .is_ok_and(|chunks| chunks.is_empty() && ty != TypeByte::STRING);
                    assert!(empty, "{key}: ferry takes {p:02x?}, Redis refuses it");
                }
                (false, Err(_)) => both_refuse += 1,
                (true, Ok(_)) => both_take += 1,
            }
        }
        assert_eq!(ping(server), "PONG");
    }
    assert!(
        both_refuse > 100 && both_take > 100,
        "{both_refuse} refused, {both_take} taken"
    );
    let (a, b, c) = server.version();
    eprintln!(
        "{a}.{b}.{c} ({} keys): {both_refuse} refused by both, {both_take} taken by both, {stricter} stricter, {framed} framing",
        keys.len()
    );
}

#[test]
fn validation_agrees_with_redis_sanitize_yes() {
    differential(
        &Server::start_with(&["--sanitize-dump-payload", "yes"]),
        &[],
        &[],
    );
}

#[test]
fn validation_agrees_with_other_versions_sanitize_yes() {
    let hash_ttl: &[&[&str]] = &[
        &["HSET", "hfe", "f1", "v1", "f2", "v2", "f3", "v3"],
        &["HPEXPIRE", "hfe", "100000000", "FIELDS", "1", "f1"],
        &["HPEXPIRE", "hfe", "200000000", "FIELDS", "1", "f2"],
    ];
    for (name, extra, keys) in [
        ("redis-6.2.14", &[][..], &[][..]),
        ("redis-8.0.2", hash_ttl, &["hfe"][..]),
        ("valkey-8.1.1", &[][..], &[][..]),
    ] {
        let Some((_, bin)) = versions::cached(name) else {
            eprintln!(
                "{}",
                versions::missing_note(&versions::Version::named(name).unwrap())
            );
            continue;
        };
        differential(
            &Server::start_bin(&bin, &["--sanitize-dump-payload", "yes"]),
            extra,
            keys,
        );
    }
}

/// The way it happens: an application RESTOREs a damaged payload into a source that does not
/// check payloads deeply; later a sync starts and the source's snapshot carries the damaged
/// value as it is. ferry refuses the snapshot at that key; the target answers and lacks it.
#[test]
fn damaged_value_in_a_source_snapshot_is_refused() {
    for diskless in ["no", "yes"] {
        let source = Server::start_with(&[
            "--sanitize-dump-payload",
            "no",
            "--repl-diskless-sync",
            diskless,
            "--repl-diskless-sync-delay",
            "0",
        ]);
        let target = Server::start();
        let mut c = source.conn_db(5);
        redis::cmd("SET")
            .arg("good")
            .arg("1")
            .query::<()>(&mut c)
            .unwrap();
        let (ty, value) = damaged_value("hash-listpack-entry-2g");
        let payload = dump::payload(TypeByte(ty), &value, 10);
        redis::cmd("RESTORE")
            .arg("bad")
            .arg(0)
            .arg(&payload[..])
            .query::<()>(&mut c)
            .expect("the source takes it: it checks only the listpack's header");
        let mut ferry = Ferry::start(&["--source", &source.url(), "--target", &target.url()]);
        let code = ferry.wait(Duration::from_secs(60));
        let log = ferry.log();
        assert_eq!(code.code(), Some(1), "diskless {diskless}: {log}");
        let line = log
            .lines()
            .find(|l| l.starts_with("ferry: "))
            .unwrap_or_default();
        assert!(
            line.contains("is unreadable: corrupt snapshot: listpack entry runs past its end in key \"bad\" in db 5 at byte "),
            "diskless {diskless}: {log}"
        );
        assert_eq!(ping(&target), "PONG");
        assert!(
            !exists(&target, 5, "bad"),
            "diskless {diskless}: the damaged key reached the target"
        );
        assert_eq!(ping(&source), "PONG");
    }
}
