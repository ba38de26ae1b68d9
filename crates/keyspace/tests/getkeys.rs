//! Cross-check of the key table against real servers: for a representative invocation of
//! every command the crate knows, the keys it finds must be those `COMMAND GETKEYSANDFLAGS`
//! gives, and a key it calls written must be one the server flags `RW`, `OW` or `RM`.
//!
//! Runs against the installed `redis-server` (Redis 7.0), and against Redis 8.0 and
//! Valkey 8.1 when the version cache holds them (skipped with a note otherwise). Commands a
//! server does not know (`COMMAND INFO` answers nil) are skipped on that server.

use ferry_keyspace::{Access, Keys, keys};
use redis::Value;

/// One invocation per command (and per form, where the keys move with the options). Words
/// are split on spaces; `''` is an empty argument. Every key is named apart from the other
/// arguments so the server's answer can be matched by name.
const CASES: &[&str] = &[
    // No keys.
    "PING",
    "SELECT 1",
    "MULTI",
    "EXEC",
    "PUBLISH chan msg",
    "SPUBLISH chan msg",
    "REPLCONF GETACK *",
    "FLUSHALL",
    "FLUSHDB ASYNC",
    "SWAPDB 0 1",
    "SCRIPT LOAD body",
    "SCRIPT FLUSH",
    "FUNCTION LOAD code",
    "FUNCTION DELETE lib",
    "FUNCTION FLUSH",
    "FUNCTION RESTORE payload",
    // Strings.
    "SET k1 v",
    "SET k1 v NX GET EX 10",
    "GETSET k1 v",
    "GETDEL k1",
    "GETEX k1 PERSIST",
    "SETEX k1 10 v",
    "PSETEX k1 10 v",
    "SETNX k1 v",
    "SETRANGE k1 0 v",
    "APPEND k1 v",
    "INCR k1",
    "DECR k1",
    "INCRBY k1 2",
    "DECRBY k1 2",
    "INCRBYFLOAT k1 2.5",
    "DELEX k1 IFEQ v",
    "DELIFEQ k1 v",
    "MSETEX 2 k1 v k2 v NX EX 10",
    // Bits.
    "SETBIT k1 7 1",
    "BITFIELD k1 INCRBY u8 0 1",
    "BITOP AND d1 k1 k2",
    "BITOP NOT d1 k1",
    // Lists.
    "LPUSH k1 a b",
    "RPUSH k1 a",
    "LPUSHX k1 a",
    "RPUSHX k1 a",
    "LINSERT k1 BEFORE p v",
    "LSET k1 0 v",
    "LREM k1 0 v",
    "LTRIM k1 0 1",
    "LPOP k1",
    "RPOP k1 2",
    "RPOPLPUSH k1 d1",
    "BRPOPLPUSH k1 d1 0",
    "LMOVE k1 d1 LEFT RIGHT",
    "BLMOVE k1 d1 LEFT RIGHT 0",
    "BLPOP k1 k2 0",
    "BRPOP k1 0",
    "LMPOP 2 k1 k2 LEFT COUNT 2",
    "BLMPOP 0 2 k1 k2 RIGHT",
    // Sets.
    "SADD k1 a",
    "SREM k1 a b",
    "SPOP k1 2",
    "SMOVE k1 d1 m",
    "SUNIONSTORE d1 k1 k2",
    "SINTERSTORE d1 k1 k2",
    "SDIFFSTORE d1 k1 k2",
    "SINTERCARD 2 k1 k2 LIMIT 3",
    // Sorted sets.
    "ZADD k1 NX 1 a 2 b",
    "ZINCRBY k1 1 a",
    "ZREM k1 a",
    "ZREMRANGEBYLEX k1 - +",
    "ZREMRANGEBYRANK k1 0 1",
    "ZREMRANGEBYSCORE k1 0 1",
    "ZPOPMIN k1",
    "ZPOPMAX k1 2",
    "BZPOPMIN k1 k2 0",
    "BZPOPMAX k1 0",
    "ZMPOP 2 k1 k2 MIN",
    "BZMPOP 0 2 k1 k2 MAX COUNT 1",
    "ZUNIONSTORE d1 2 k1 k2 WEIGHTS 1 2",
    "ZINTERSTORE d1 2 k1 k2",
    "ZDIFFSTORE d1 2 k1 k2",
    "ZRANGESTORE d1 k1 0 -1",
    "ZUNION 2 k1 k2",
    "ZINTER 2 k1 k2",
    "ZDIFF 2 k1 k2",
    "ZINTERCARD 2 k1 k2",
    // Hashes.
    "HSET k1 f v",
    "HMSET k1 f v g w",
    "HSETNX k1 f v",
    "HDEL k1 f",
    "HINCRBY k1 f 1",
    "HINCRBYFLOAT k1 f 1.5",
    "HEXPIRE k1 10 FIELDS 1 f",
    "HPEXPIRE k1 10 NX FIELDS 1 f",
    "HEXPIREAT k1 10 FIELDS 1 f",
    "HPEXPIREAT k1 10 FIELDS 1 f",
    "HPERSIST k1 FIELDS 1 f",
    "HGETDEL k1 FIELDS 1 f",
    "HGETEX k1 PX 10 FIELDS 1 f",
    "HSETEX k1 PX 10 FIELDS 1 f v",
    "HGETF k1 FIELDS 1 f",
    "HSETF k1 FVS 1 f v",
    // Streams.
    "XADD k1 * f v",
    "XDEL k1 1-1",
    "XTRIM k1 MAXLEN 10",
    "XCLAIM k1 g c 0 1-1",
    "XAUTOCLAIM k1 g c 0 0-0",
    "XACK k1 g 1-1",
    "XSETID k1 1-1",
    "XDELEX k1 ACKED IDS 1 1-1",
    "XACKDEL k1 g KEEPREF IDS 1 1-1",
    "XGROUP CREATE k1 g $ MKSTREAM",
    "XGROUP SETID k1 g 0",
    "XGROUP DESTROY k1 g",
    "XGROUP CREATECONSUMER k1 g c",
    "XGROUP DELCONSUMER k1 g c",
    "XREADGROUP GROUP g c COUNT 1 STREAMS k1 k2 > >",
    "XREAD COUNT 2 STREAMS k1 k2 0 0",
    // HyperLogLog.
    "PFADD k1 a",
    "PFCOUNT k1",
    "PFCOUNT k1 k2",
    "PFMERGE d1 k1 k2",
    "PFDEBUG GETREG k1",
    // Geo.
    "GEOADD k1 13.3 38.1 p",
    "GEORADIUS k1 15 37 200 km WITHDIST",
    "GEORADIUS k1 15 37 200 km COUNT 3 STORE d1",
    "GEORADIUSBYMEMBER k1 m 100 km STOREDIST d1",
    "GEOSEARCHSTORE d1 k1 FROMMEMBER m BYRADIUS 1 km",
    // Keyspace.
    "DEL k1 k2 k3",
    "UNLINK k1 k2",
    "TOUCH k1 k2",
    "EXISTS k1 k2",
    "MGET k1 k2",
    "MSET k1 v k2 v",
    "MSETNX k1 v k2 v",
    "EXPIRE k1 10",
    "PEXPIRE k1 10 NX",
    "EXPIREAT k1 10",
    "PEXPIREAT k1 10",
    "PERSIST k1",
    "RESTORE k1 0 payload",
    "RESTORE-ASKING k1 0 payload REPLACE",
    "RENAME k1 d1",
    "RENAMENX k1 d1",
    "COPY k1 d1 REPLACE",
    "COPY k1 d1 DB 1",
    "MOVE k1 1",
    "SORT k1 LIMIT 0 10 ALPHA DESC",
    "SORT k1 BY nosort GET # STORE d1",
    "SORT k1 BY w_*",
    "SORT_RO k1 BY nosort",
    "MIGRATE host 6379 k1 0 1000",
    "MIGRATE host 6379 '' 0 1000 REPLACE AUTH KEYS KEYS k1 k2",
    "MIGRATE host 6379 '' 0 1000 AUTH2 user pass KEYS k1 k2",
    // Scripts.
    "EVAL body 2 k1 k2 arg",
    "EVALSHA sha 1 k1",
    "EVAL_RO body 1 k1",
    "EVALSHA_RO sha 1 k1",
    "FCALL f 1 k1 arg",
    "FCALL_RO f 2 k1 k2",
    "EVAL body 0",
    // Vector sets (Redis 8).
    "VADD k1 VALUES 2 1 2 elem",
    "VREM k1 elem",
    "VSETATTR k1 elem {}",
];

/// Where our access and the server's key-spec flags are known to differ, and why.
const ACCESS_DIFFERS: &[(&str, &str)] = &[
    (
        "PFCOUNT k1",
        "one-key PFCOUNT rewrites the cached count and replicates it; the spec says RO",
    ),
    (
        "XREADGROUP",
        "XREADGROUP changes the group's pending list; the spec says RO",
    ),
];

fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace()
        .map(|w| if w == "''" { "" } else { w })
        .collect()
}

fn known(c: &mut redis::Connection, name: &str) -> bool {
    let info: Value = redis::cmd("COMMAND")
        .arg("INFO")
        .arg(name)
        .query(c)
        .expect("COMMAND INFO");
    match info {
        Value::Array(v) => v.first().is_some_and(|x| *x != Value::Nil),
        _ => false,
    }
}

fn check(server: &testkit::Server, label: &str) {
    let mut c = server.conn();
    let (mut compared, mut skipped) = (0, Vec::new());
    for case in CASES {
        let args = words(case);
        if !known(&mut c, args[0]) {
            skipped.push(*case);
            continue;
        }
        let theirs: redis::RedisResult<Vec<(Vec<u8>, Vec<String>)>> = redis::cmd("COMMAND")
            .arg("GETKEYSANDFLAGS")
            .arg(&args)
            .query(&mut c);
        match keys(&args) {
            Keys::Keyed(found) => {
                let theirs = theirs.unwrap_or_else(|e| panic!("{label}: {case}: {e}"));
                let mut ours: Vec<(&[u8], Access)> = found
                    .keys()
                    .iter()
                    .map(|k| (args[k.index].as_bytes(), k.access))
                    .collect();
                ours.sort_by_key(|(name, _)| *name);
                let mut their_names: Vec<&[u8]> =
                    theirs.iter().map(|(name, _)| name.as_slice()).collect();
                their_names.sort();
                let our_names: Vec<&[u8]> = ours.iter().map(|(name, _)| *name).collect();
                assert_eq!(
                    our_names, their_names,
                    "{label}: {case}: keys differ from COMMAND GETKEYS"
                );
                if ACCESS_DIFFERS
                    .iter()
                    .any(|(prefix, _)| case.starts_with(prefix))
                {
                    continue;
                }
                for (name, flags) in &theirs {
                    let server_writes = flags.iter().any(|f| ["RW", "OW", "RM"].contains(&&**f));
                    let ours_writes = ours
                        .iter()
                        .any(|(n, a)| n == &name.as_slice() && a.is_written());
                    assert_eq!(
                        ours_writes,
                        server_writes,
                        "{label}: {case}: key {:?}: server flags {flags:?}",
                        String::from_utf8_lossy(name)
                    );
                }
                compared += 1;
            }
            Keys::NoEffect | Keys::Global => {
                let theirs = theirs.unwrap_or_default();
                // SPUBLISH's channel picks a slot the way a key does, but it holds no data.
                if !case.starts_with("SPUBLISH") {
                    assert!(theirs.is_empty(), "{label}: {case}: server finds keys");
                }
                compared += 1;
            }
            Keys::Unsupported(why) => {
                eprintln!("{label}: {case}: unsupported here ({why}); server: {theirs:?}");
            }
            other => panic!("{label}: {case}: {other:?}: the cases must be valid and known"),
        }
    }
    eprintln!(
        "{label}: {compared} invocations agree with the server; skipped (unknown to it): {skipped:?}"
    );
    assert!(compared > 100, "{label}: only {compared} compared");
}

#[test]
fn agrees_with_installed_redis() {
    let server = testkit::Server::start();
    let (a, b, c) = server.version();
    check(&server, &format!("redis {a}.{b}.{c} (installed)"));
}

#[test]
fn agrees_with_redis_8_0() {
    if let Some((version, bin)) = testkit::versions::cached("redis-8.0.2") {
        check(&testkit::Server::start_bin(&bin, &[]), version.name);
    }
}

#[test]
fn agrees_with_valkey_8_1() {
    if let Some((version, bin)) = testkit::versions::cached("valkey-8.1.1") {
        check(&testkit::Server::start_bin(&bin, &[]), version.name);
    }
}
