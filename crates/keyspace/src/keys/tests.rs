use super::*;
use crate::split_by_slot;

/// The command written as words (no quoting: tests do not need spaces in arguments).
fn words(cmd: &str) -> Vec<&str> {
    cmd.split_whitespace()
        .map(|w| if w == "''" { "" } else { w })
        .collect()
}

fn of(cmd: &str) -> Keys {
    keys(&words(cmd))
}

fn keyed_of(cmd: &str) -> KeyArgs {
    match of(cmd) {
        Keys::Keyed(k) => k,
        other => panic!("{cmd}: {other:?}"),
    }
}

/// The keys as `(index, access)` and the kind.
fn shape(cmd: &str) -> (Vec<(usize, Access)>, Kind) {
    let k = keyed_of(cmd);
    let keys = k.keys().iter().map(|k| (k.index, k.access)).collect();
    (keys, k.kind())
}

fn single(cmd: &str, index: usize, access: Access) {
    assert_eq!(shape(cmd), (vec![(index, access)], Kind::Single), "{cmd}");
}

fn malformed(cmd: &str) {
    assert!(
        matches!(of(cmd), Keys::Malformed(_)),
        "{cmd}: {:?}",
        of(cmd)
    );
}

use Access::{Read as R, ReadWrite as RW, Write as W};

#[test]
fn strings() {
    for cmd in [
        "SET k v",
        "set k v EX 10 GET",
        "GETSET k v",
        "GETDEL k",
        "GETEX k PERSIST",
        "GETEX k",
        "SETEX k 10 v",
        "PSETEX k 10 v",
        "SETNX k v",
        "SETRANGE k 0 v",
        "APPEND k v",
        "INCR k",
        "DECR k",
        "INCRBY k 1",
        "DECRBY k 1",
        "INCRBYFLOAT k 1.5",
        "DELEX k IFEQ v",
        "DELIFEQ k v",
    ] {
        single(cmd, 1, W);
    }
    malformed("SET k");
    malformed("INCR");
    malformed("INCR a b");
    malformed("SETEX k 10");
}

#[test]
fn bits() {
    single("SETBIT k 7 1", 1, W);
    single("BITFIELD k INCRBY u8 0 1", 1, W);
    assert_eq!(
        shape("BITOP AND d a b"),
        (vec![(2, W), (3, R), (4, R)], Kind::Combine)
    );
    assert_eq!(
        shape("bitop not d a"),
        (vec![(2, W), (3, R)], Kind::Combine)
    );
    malformed("BITOP AND d");
}

#[test]
fn lists() {
    for cmd in [
        "LPUSH k a b",
        "RPUSH k a",
        "LPUSHX k a",
        "RPUSHX k a",
        "LINSERT k BEFORE p v",
        "LSET k 0 v",
        "LREM k 0 v",
        "LTRIM k 0 1",
        "LPOP k",
        "RPOP k 2",
    ] {
        single(cmd, 1, W);
    }
    for cmd in [
        "RPOPLPUSH s d",
        "BRPOPLPUSH s d 0",
        "LMOVE s d LEFT RIGHT",
        "BLMOVE s d LEFT RIGHT 0",
    ] {
        assert_eq!(shape(cmd), (vec![(1, RW), (2, W)], Kind::Combine), "{cmd}");
    }
    assert_eq!(
        shape("BLPOP a b 0"),
        (vec![(1, RW), (2, RW)], Kind::Combine)
    );
    single("BRPOP a 0", 1, RW);
    malformed("BLPOP a");
    assert_eq!(
        shape("LMPOP 2 a b LEFT COUNT 2"),
        (vec![(2, RW), (3, RW)], Kind::Combine)
    );
    assert_eq!(
        shape("BLMPOP 0 2 a b RIGHT"),
        (vec![(3, RW), (4, RW)], Kind::Combine)
    );
    malformed("LMPOP 0 a LEFT");
    malformed("LMPOP 3 a b LEFT"); // LEFT taken for a key, no direction left
    malformed("LMPOP x a LEFT");
    malformed("LINSERT k BEFORE p");
}

#[test]
fn sets() {
    single("SADD k a", 1, W);
    single("SREM k a b", 1, W);
    single("SPOP k", 1, W);
    assert_eq!(shape("SMOVE s d m"), (vec![(1, RW), (2, W)], Kind::Combine));
    for name in ["SUNIONSTORE", "SINTERSTORE", "SDIFFSTORE"] {
        assert_eq!(
            shape(&format!("{name} d a b")),
            (vec![(1, W), (2, R), (3, R)], Kind::Combine)
        );
    }
    assert_eq!(
        shape("SINTERCARD 2 a b LIMIT 3"),
        (vec![(2, R), (3, R)], Kind::Combine)
    );
    malformed("SMOVE s d");
    malformed("SUNIONSTORE d");
}

#[test]
fn sorted_sets() {
    for cmd in [
        "ZADD k 1 a",
        "ZADD k NX GT CH 1 a 2 b",
        "ZINCRBY k 1 a",
        "ZREM k a",
        "ZREMRANGEBYLEX k - +",
        "ZREMRANGEBYRANK k 0 1",
        "ZREMRANGEBYSCORE k 0 1",
        "ZPOPMIN k",
        "ZPOPMAX k 3",
    ] {
        single(cmd, 1, W);
    }
    for name in ["ZUNIONSTORE", "ZINTERSTORE", "ZDIFFSTORE"] {
        assert_eq!(
            shape(&format!("{name} d 2 a b WEIGHTS 1 2")),
            (vec![(1, W), (3, R), (4, R)], Kind::Combine)
        );
        malformed(&format!("{name} d 0 a"));
        malformed(&format!("{name} d 3 a b"));
        malformed(&format!("{name} d -1 a"));
        malformed(&format!("{name} d 99999999999999999999999 a"));
    }
    assert_eq!(
        shape("ZRANGESTORE d s 0 -1"),
        (vec![(1, W), (2, R)], Kind::Combine)
    );
    assert_eq!(
        shape("BZPOPMIN a b 0"),
        (vec![(1, RW), (2, RW)], Kind::Combine)
    );
    single("BZPOPMAX a 0", 1, RW);
    assert_eq!(
        shape("ZMPOP 2 a b MIN"),
        (vec![(2, RW), (3, RW)], Kind::Combine)
    );
    assert_eq!(
        shape("BZMPOP 1.5 2 a b MAX COUNT 1"),
        (vec![(3, RW), (4, RW)], Kind::Combine)
    );
    for name in ["ZUNION", "ZINTER", "ZDIFF", "ZINTERCARD"] {
        assert_eq!(
            shape(&format!("{name} 2 a b")),
            (vec![(2, R), (3, R)], Kind::Combine)
        );
    }
}

#[test]
fn hashes() {
    for cmd in [
        "HSET k f v",
        "HMSET k f v g w",
        "HSETNX k f v",
        "HDEL k f",
        "HINCRBY k f 1",
        "HINCRBYFLOAT k f 1.5",
        "HEXPIRE k 10 FIELDS 1 f",
        "HPEXPIRE k 10 NX FIELDS 1 f",
        "HEXPIREAT k 10 FIELDS 1 f",
        "HPEXPIREAT k 10 FIELDS 1 f",
        "HPERSIST k FIELDS 1 f",
        "HGETDEL k FIELDS 1 f",
        "HGETEX k PX 10 FIELDS 1 f",
        "HSETEX k PX 10 FIELDS 1 f v",
        "HSETF k FVS 1 f v",
        "HGETF k FIELDS 1 f",
    ] {
        single(cmd, 1, W);
    }
    malformed("HSET k f");
    malformed("HEXPIRE k 10 FIELDS 1");
}

#[test]
fn streams() {
    for cmd in [
        "XADD s * f v",
        "XADD s MAXLEN ~ 10 * f v",
        "XDEL s 1-1",
        "XTRIM s MAXLEN 10",
        "XCLAIM s g c 0 1-1",
        "XAUTOCLAIM s g c 0 0-0",
        "XACK s g 1-1",
        "XSETID s 1-1",
        "XDELEX s ACKED IDS 1 1-1",
        "XACKDEL s g KEEPREF IDS 1 1-1",
        // Redis 8.6 (newer than the matrix: from src/commands/xcfgset.json).
        "XCFGSET s IDMP-DURATION 100 IDMP-MAXSIZE 100",
        "XCFGSET s",
        "XADD s IDMP p i1 * f v",
        "XGROUP CREATE s g $ MKSTREAM",
        "xgroup setid s g 0",
        "XGROUP DESTROY s g",
        "XGROUP CREATECONSUMER s g c",
        "XGROUP DELCONSUMER s g c",
    ] {
        let at = if cmd.to_uppercase().starts_with("XGROUP") {
            2
        } else {
            1
        };
        single(cmd, at, W);
    }
    assert_eq!(of("XGROUP HELP"), Keys::NoEffect);
    assert!(matches!(of("XGROUP NOSUCH s"), Keys::Unsupported(_)));
    malformed("XGROUP DESTROY s");
    malformed("XGROUP CREATE s g");
    assert_eq!(
        shape("XREADGROUP GROUP g c COUNT 1 STREAMS a b > >"),
        (vec![(7, RW), (8, RW)], Kind::Combine)
    );
    // A consumer named like the keyword is not the keyword.
    single("XREADGROUP GROUP g STREAMS STREAMS s >", 5, RW);
    single("XREAD COUNT 2 STREAMS s 0", 4, R);
    malformed("XREADGROUP GROUP g c STREAMS a b >");
    malformed("XREADGROUP NOGROUP g c STREAMS a >");
    malformed("XREAD COUNT 2 BLOCK 0 a 0");
}

#[test]
fn hyperloglog() {
    single("PFADD k a b", 1, W);
    single("PFADD k", 1, W);
    // One key: the cached count is rewritten and replicated. Several: a read.
    single("PFCOUNT k", 1, W);
    assert_eq!(shape("PFCOUNT a b"), (vec![(1, R), (2, R)], Kind::Combine));
    single("PFMERGE d", 1, W);
    assert_eq!(
        shape("PFMERGE d a b"),
        (vec![(1, W), (2, R), (3, R)], Kind::Combine)
    );
    single("PFDEBUG GETREG k", 2, W);
}

#[test]
fn geo() {
    single("GEOADD k 13.3 38.1 p", 1, W);
    single("GEORADIUS k 15 37 200 km WITHDIST", 1, R);
    assert_eq!(
        shape("GEORADIUS k 15 37 200 km COUNT 3 STORE d"),
        (vec![(1, R), (9, W)], Kind::Combine)
    );
    assert_eq!(
        shape("georadiusbymember k m 100 km storedist d"),
        (vec![(1, R), (6, W)], Kind::Combine)
    );
    // A member named STORE comes before the options and is not the keyword.
    single("GEORADIUSBYMEMBER k STORE 100 km", 1, R);
    malformed("GEORADIUS k 15 37 200 km STORE");
    assert_eq!(
        shape("GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 1 km"),
        (vec![(1, W), (2, R)], Kind::Combine)
    );
}

#[test]
fn keyspace() {
    for cmd in [
        "EXPIRE k 10",
        "EXPIRE k 10 NX",
        "PEXPIRE k 10",
        "EXPIREAT k 10",
        "PEXPIREAT k 10",
        "PERSIST k",
        "RESTORE k 0 payload",
        "RESTORE-ASKING k 0 payload REPLACE ABSTTL",
    ] {
        single(cmd, 1, W);
    }
    for name in ["RENAME", "RENAMENX"] {
        assert_eq!(
            shape(&format!("{name} a b")),
            (vec![(1, RW), (2, W)], Kind::Combine)
        );
    }
    let copy = keyed_of("COPY a b REPLACE");
    assert!(!copy.other_db());
    assert_eq!(
        copy.keys(),
        [
            KeyArg {
                index: 1,
                access: R
            },
            KeyArg {
                index: 2,
                access: W
            }
        ]
    );
    assert!(keyed_of("COPY a b DB 1 REPLACE").other_db());
    malformed("COPY a b DB");
    malformed("COPY a b NOSUCH");
    let mv = keyed_of("MOVE k 1");
    assert!(mv.other_db());
    assert_eq!(mv.kind(), Kind::Single);
    assert!(matches!(of("SWAPDB 0 1"), Keys::Unsupported(_)));
    malformed("RENAME a");
    malformed("RENAME a b c");
}

#[test]
fn split_commands() {
    for name in ["DEL", "UNLINK", "MGET", "EXISTS", "TOUCH"] {
        let access = if matches!(name, "DEL" | "UNLINK") {
            W
        } else {
            R
        };
        assert_eq!(
            shape(&format!("{name} a b c")),
            (vec![(1, access), (2, access), (3, access)], Kind::Split)
        );
        single(&format!("{name} a"), 1, access);
        malformed(name);
    }
    for name in ["MSET", "MSETNX"] {
        assert_eq!(
            shape(&format!("{name} a 1 b 2")),
            (vec![(1, W), (3, W)], Kind::Split)
        );
        malformed(&format!("{name} a 1 b"));
    }
    assert_eq!(
        shape("MSETEX 2 a 1 b 2 NX EX 10"),
        (vec![(2, W), (4, W)], Kind::Split)
    );
    malformed("MSETEX 0 a 1");
    malformed("MSETEX 2 a 1 b");
}

#[test]
fn sort() {
    single("SORT k", 1, R);
    single("SORT k LIMIT 0 10 ALPHA DESC", 1, R);
    single("SORT k BY nosort GET #", 1, R);
    assert_eq!(
        shape("SORT k BY nosort GET # STORE d"),
        (vec![(1, R), (7, W)], Kind::Combine)
    );
    assert!(matches!(of("SORT k BY w_*"), Keys::Unsupported(_)));
    assert!(matches!(
        of("SORT k GET # GET o_*->f"),
        Keys::Unsupported(_)
    ));
    single("SORT_RO k BY nosort", 1, R);
    malformed("SORT k STORE");
    malformed("SORT k LIMIT 0");
    malformed("SORT k FOO");
    malformed("SORT_RO k STORE d");
}

#[test]
fn scripts() {
    assert_eq!(
        shape("EVAL body 2 a b x"),
        (vec![(3, RW), (4, RW)], Kind::Combine)
    );
    single("EVALSHA sha 1 k", 3, RW);
    single("FCALL f 1 k arg", 3, RW);
    single("EVAL_RO body 1 k", 3, R);
    single("FCALL_RO f 1 k", 3, R);
    assert!(matches!(of("EVAL body 0"), Keys::Unsupported(_)));
    assert!(matches!(of("FCALL f 0 x"), Keys::Unsupported(_)));
    assert_eq!(of("EVALSHA_RO sha 0"), Keys::NoEffect);
    malformed("EVAL body 3 a");
    malformed("EVAL body x");
    malformed("EVAL body");
}

#[test]
fn whole_server() {
    for cmd in [
        "FLUSHALL",
        "flushall ASYNC",
        "FLUSHDB",
        "SCRIPT LOAD body",
        "SCRIPT FLUSH",
        "FUNCTION LOAD code",
        "FUNCTION RESTORE payload REPLACE",
        "function delete lib",
        "FUNCTION FLUSH SYNC",
    ] {
        assert_eq!(of(cmd), Keys::Global, "{cmd}");
    }
    for cmd in ["FUNCTION LIST", "SCRIPT EXISTS sha", "SCRIPT KILL"] {
        assert_eq!(of(cmd), Keys::NoEffect, "{cmd}");
    }
    assert!(matches!(of("SCRIPT NOSUCH"), Keys::Unsupported(_)));
    assert!(matches!(of("FUNCTION NOSUCH"), Keys::Unsupported(_)));
    malformed("SCRIPT");
}

#[test]
fn no_effect() {
    for cmd in [
        "PING",
        "PING hello",
        "REPLCONF GETACK *",
        "SELECT 0",
        "SELECT 3",
        "MULTI",
        "EXEC",
        "DISCARD",
        "PUBLISH ch msg",
        "SPUBLISH ch msg",
    ] {
        assert_eq!(of(cmd), Keys::NoEffect, "{cmd}");
    }
    malformed("SELECT");
    malformed("MULTI x");
}

#[test]
fn migrate() {
    single("MIGRATE h 6379 k 0 1000", 3, RW);
    single("MIGRATE h 6379 k 0 1000 COPY REPLACE", 3, R);
    // AUTH's password reads KEYS: it is a password, not the keyword.
    assert_eq!(
        shape("MIGRATE h 6379 '' 0 1000 REPLACE AUTH KEYS KEYS a b"),
        (vec![(10, RW), (11, RW)], Kind::Combine)
    );
    assert_eq!(
        shape("MIGRATE h 6379 '' 0 1000 AUTH2 u p KEYS a b"),
        (vec![(10, RW), (11, RW)], Kind::Combine)
    );
    malformed("MIGRATE h 6379 k 0 1000 KEYS a");
    malformed("MIGRATE h 6379 '' 0 1000 KEYS");
}

#[test]
fn unknown_commands() {
    assert_eq!(of("JSON.SET doc $ {}"), Keys::Unknown);
    assert_eq!(of("GET k"), Keys::Unknown);
    assert_eq!(of("OBJECT ENCODING k"), Keys::Unknown);
    assert_eq!(keys(&["A".repeat(100)]), Keys::Unknown);
    assert_eq!(keys(&[&b"\xff\x00"[..]]), Keys::Unknown);
    assert!(matches!(keys::<&str>(&[]), Keys::Malformed(_)));
}

#[test]
fn apply_order_puts_destinations_first() {
    let order = |cmd| keyed_of(cmd).written_in_apply_order();
    assert_eq!(order("RENAME a b"), [2, 1]);
    assert_eq!(order("SMOVE s d m"), [2, 1]);
    assert_eq!(order("LMOVE s d LEFT RIGHT"), [2, 1]);
    assert_eq!(order("RPOPLPUSH s d"), [2, 1]);
    assert_eq!(order("SUNIONSTORE d a b"), [1]);
    assert_eq!(order("ZUNIONSTORE d 2 a b"), [1]);
    assert_eq!(order("COPY a b"), [2]);
    assert_eq!(order("LMPOP 2 a b LEFT"), [2, 3]);
    assert_eq!(order("SORT k STORE d"), [3]);
    assert!(order("PFCOUNT a b").is_empty());
    let k = keyed_of("SMOVE s d m");
    assert_eq!(k.written().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(k.positions().collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn common_slot() {
    let same = words("RENAME {u}a {u}b");
    let Keys::Keyed(k) = keys(&same) else {
        panic!()
    };
    assert_eq!(k.slot(&same), Some(crate::slot(b"u")));
    let apart = words("RENAME a b");
    let Keys::Keyed(k) = keys(&apart) else {
        panic!()
    };
    assert_eq!(k.slot(&apart), None);
    // Arguments that are not the ones the keys came from do not panic.
    assert_eq!(k.slot(&["RENAME"]), None);
}

/// Every known command, with arguments made of tokens that steer the parsers (keywords,
/// counts good and bad, empty strings), at every length up to 12: nothing panics, every
/// position is inside the arguments, and a keyed result is never empty.
#[test]
fn hostile_arguments_never_panic() {
    const NAMES: &[&str] = &[
        "SET",
        "DEL",
        "MSET",
        "MSETNX",
        "MSETEX",
        "RENAME",
        "BLPOP",
        "LMPOP",
        "BLMPOP",
        "ZUNIONSTORE",
        "SINTERCARD",
        "EVAL",
        "EVAL_RO",
        "FCALL",
        "SORT",
        "SORT_RO",
        "GEORADIUS",
        "GEORADIUSBYMEMBER",
        "XREADGROUP",
        "XREAD",
        "MIGRATE",
        "COPY",
        "MOVE",
        "XGROUP",
        "SCRIPT",
        "FUNCTION",
        "PFCOUNT",
        "PFMERGE",
        "BITOP",
        "PFDEBUG",
        "SWAPDB",
        "PING",
        "SELECT",
        "GEOSEARCHSTORE",
        "ZRANGESTORE",
        "SMOVE",
        "BLMOVE",
    ];
    const TOKENS: &[&str] = &[
        "STORE",
        "STOREDIST",
        "STREAMS",
        "KEYS",
        "AUTH",
        "AUTH2",
        "GROUP",
        "BY",
        "GET",
        "LIMIT",
        "DB",
        "NX",
        "EX",
        "0",
        "1",
        "2",
        "3",
        "-1",
        "18446744073709551616",
        "",
        "*",
        "#",
        "k",
        "CREATE",
        "LOAD",
    ];
    let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = |n: usize| {
        // xorshift: deterministic, no dependency.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for name in NAMES {
        for len in 0..=12 {
            for _ in 0..200 {
                let mut args = vec![*name];
                args.extend((0..len).map(|_| TOKENS[next(TOKENS.len())]));
                if let Keys::Keyed(k) = keys(&args) {
                    assert!(!k.keys().is_empty(), "{args:?}");
                    assert!(k.positions().all(|i| i > 0 && i < args.len()), "{args:?}");
                    let _ = k.slot(&args);
                }
                if let Some(parts) = split_by_slot(&args) {
                    assert!(!parts.is_empty());
                }
            }
        }
    }
}

#[test]
fn keys_before_knows_them_only_when_later_arguments_cannot_change_them() {
    let positions =
        |head: &[&str], argc| keys_before(head, argc).map(|k| k.positions().collect::<Vec<_>>());
    for (head, argc) in [
        (&["RPUSH", "l"][..], 3),
        (&["HSET", "h"][..], 6),
        (&["HSET", "h", "f"][..], 4),
        (&["ZADD", "z", "1"][..], 4),
        (&["SETEX", "k", "10"][..], 4),
        (&["LSET", "l", "0"][..], 4),
        (&["XADD", "s", "MAXLEN", "=", "3", "*", "f"][..], 8),
        (&["RESTORE", "k", "0"][..], 5),
        (&["SET", "k"][..], 3),
    ] {
        assert_eq!(positions(head, argc), Some(vec![1]), "{head:?}");
    }
    // Several keys, all before: SMOVE src dst <member>, MSET a v b <v>.
    assert_eq!(positions(&["SMOVE", "a", "b"], 4), Some(vec![1, 2]));
    assert_eq!(positions(&["MSET", "a", "v", "b"], 5), Some(vec![1, 3]));
    // A key after the huge argument, or not knowable yet.
    assert_eq!(positions(&["MSET", "a"], 5), None);
    assert_eq!(positions(&["DEL"], 2), None);
    assert_eq!(positions(&["SORT", "k"], 4), None);
    assert_eq!(positions(&["GEORADIUSBYMEMBER", "k"], 7), None);
    assert_eq!(positions(&["EVAL"], 5), None);
    assert_eq!(positions(&["EVAL", "s"], 5), None);
    assert_eq!(positions(&["EVAL", "s", "1", "k"], 5), Some(vec![3]));
    assert_eq!(positions(&["MOVE", "k"], 3), None);
    assert_eq!(positions(&["PING"], 2), None);
    assert_eq!(positions(&["JSON.SET", "k"], 4), None);
    // Wrong arity, whatever comes later.
    assert_eq!(positions(&["SETEX", "k"], 5), None);
    assert_eq!(positions(&["RPUSH", "l", "x"], 2), None);
}
