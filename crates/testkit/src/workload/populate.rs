//! The dataset [`populate`] writes: every type and encoding, binary names, TTLs.

use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::{Cmd, cmd};

use super::Spec;
use super::batch::Batch;
use super::route::{Router, Target};
use crate::cluster::key_slot;
use crate::{Cluster, Server};

/// The function library [`populate`] loads (and the workload's `FCALL` uses).
pub(crate) const LIBRARY: &str = "#!lua name=ferry_testkit\n\
redis.register_function('ferry_set', function(keys, args) return redis.call('SET', keys[1], args[1]) end)\n\
redis.register_function{function_name='ferry_get', callback=function(keys) return redis.call('GET', keys[1]) end, flags={'no-writes'}}\n";

/// What one populated key is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    StrInt,
    StrShort,
    StrRaw,
    StrEmpty,
    StrBinary,
    StrLzf,
    ListSmall,
    ListBig,
    SetInt,
    SetSmall,
    SetBig,
    ZsetSmall,
    ZsetBig,
    HashSmall,
    HashBig,
    HashLongValue,
    Stream,
    StreamEmpty,
    HllSparse,
    HllDense,
    Bitmap,
    Geo,
}

/// Every kind, written first in each db; then a mix of the small ones by weight.
const ALL: &[Kind] = &[
    Kind::StrInt,
    Kind::StrShort,
    Kind::StrRaw,
    Kind::StrEmpty,
    Kind::StrBinary,
    Kind::StrLzf,
    Kind::ListSmall,
    Kind::ListBig,
    Kind::SetInt,
    Kind::SetSmall,
    Kind::SetBig,
    Kind::ZsetSmall,
    Kind::ZsetBig,
    Kind::HashSmall,
    Kind::HashBig,
    Kind::HashLongValue,
    Kind::Stream,
    Kind::StreamEmpty,
    Kind::HllSparse,
    Kind::HllDense,
    Kind::Bitmap,
    Kind::Geo,
];

const MIX: &[(Kind, u32)] = &[
    (Kind::StrShort, 25),
    (Kind::StrInt, 8),
    (Kind::StrRaw, 6),
    (Kind::StrEmpty, 1),
    (Kind::StrBinary, 3),
    (Kind::StrLzf, 2),
    (Kind::ListSmall, 10),
    (Kind::SetInt, 5),
    (Kind::SetSmall, 6),
    (Kind::ZsetSmall, 8),
    (Kind::HashSmall, 15),
    (Kind::HashLongValue, 2),
    (Kind::Stream, 2),
    (Kind::StreamEmpty, 1),
    (Kind::HllSparse, 2),
    (Kind::Bitmap, 2),
    (Kind::Geo, 2),
];

/// Fills `server` with the dataset `spec` describes.
///
/// Each db in `spec.dbs` gets `spec.keys_per_db` keys: first one of each kind below, then
/// the empty key name (a string), then a weighted mix of the small kinds. Every 13th key
/// (from key 5) has a binary name (`\0`, `\xff`, CR, LF, space, quote, a high byte).
///
/// - strings: integer (`int`, including i64 min/max), short (`embstr`), long (`raw`), empty,
///   binary with `\0` and `\xff`, long and LZF-compressible;
/// - lists: small (one listpack node) and big (`big_elements` items, many quicklist nodes),
///   items mixing integers, text and binary;
/// - sets: integers (`intset`), small strings (`listpack` on 7.2+, `hashtable` before),
///   big (`hashtable`);
/// - zsets: small (`listpack`) and big (`skiplist`), scores `inf`, `-inf`, fractions,
///   negatives, `1e300`, binary members;
/// - hashes: small (`listpack`), big and one with a long value (`hashtable`);
/// - streams with explicit ids, deleted entries, two groups, consumers (one made with
///   `XGROUP CREATECONSUMER`), pending entries, a claimed and an acknowledged entry; and
///   streams emptied by `XDEL` that keep a group;
/// - HyperLogLogs, sparse and dense; bitmaps (`SETBIT` up to offset 200000); geo sets.
///
/// A `ttl_fraction` of keys get a TTL, by `PEXPIREAT` (ms) or `EXPIREAT` (s), at least an
/// hour and at most two days away, from one base time per process so two servers get equal
/// deadlines. On Redis 7+ the function library `ferry_testkit` (`ferry_set`, which writes,
/// and the read-only `ferry_get`) is loaded. Running it again gives the same data.
///
/// Writes are pipelined; any error the server answers panics with the command and message.
pub fn populate(server: &Server, spec: &Spec) {
    let mut conn = server.conn();
    let mut batch = Batch::default();
    if server.version().0 >= 7 {
        batch.add(
            "FUNCTION LOAD",
            cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(LIBRARY)
                .clone(),
        );
    }
    write_all(
        &mut Target::Conn(&mut conn),
        batch,
        spec,
        &spec.dbs,
        &server.addr(),
    );
}

/// Like [`populate`], on a cluster: db 0 only (whatever `spec.dbs` says), each key written
/// on the master owning it, and the function library loaded on every master. The data is
/// what [`populate`] writes on a standalone server with `dbs: vec![0]`, so the two compare
/// equal.
pub fn populate_cluster(cluster: &Cluster, spec: &Spec) {
    let mut router = Router::new(cluster.addrs(), cluster.password());
    if cluster.nodes()[0].version().0 >= 7 {
        let load = cmd("FUNCTION")
            .arg("LOAD")
            .arg("REPLACE")
            .arg(LIBRARY)
            .clone();
        for master in router.masters() {
            router
                .query_on(&master, &load)
                .unwrap_or_else(|e| panic!("populate: FUNCTION LOAD on {master}: {e}"));
        }
    }
    let label = format!("cluster {}", cluster.addrs().join(","));
    write_all(
        &mut Target::Cluster(&mut router),
        Batch::default(),
        spec,
        &[0],
        &label,
    );
}

/// Writes every key of `dbs` through `to`, after what `batch` holds already.
fn write_all(to: &mut Target, mut batch: Batch, spec: &Spec, dbs: &[i64], name: &str) {
    let mut rng = StdRng::seed_from_u64(spec.seed);
    let cluster = to.is_cluster();
    for &db in dbs {
        if !cluster {
            batch.add("SELECT", cmd("SELECT").arg(db).clone());
        }
        for i in 0..spec.keys_per_db {
            let kind = match ALL.get(i) {
                Some(kind) => *kind,
                None if i == ALL.len() => Kind::StrShort, // the empty name
                None => pick(&mut rng),
            };
            let key = key_name(kind, db, i);
            if cluster {
                batch.slot = Some(key_slot(&key));
            }
            write_key(&mut batch, &mut rng, kind, &key, spec.big_elements);
            if rng.random_bool(spec.ttl_fraction.clamp(0.0, 1.0)) {
                let (label, expire) = expire_cmd(&mut rng, &key);
                batch.add(label, expire);
            }
            batch.maybe_flush(to);
        }
    }
    batch.flush(to);
    assert!(
        batch.errors.is_empty(),
        "populate: {name} got errors: {:?}",
        batch.samples
    );
}

fn pick(rng: &mut StdRng) -> Kind {
    let total: u32 = MIX.iter().map(|(_, w)| w).sum();
    let mut at = rng.random_range(0..total);
    for &(kind, weight) in MIX {
        if at < weight {
            return kind;
        }
        at -= weight;
    }
    unreachable!("weights sum to total")
}

/// `p:<kind>:<i>`; every 13th key has a binary name, and key 22 (the first after one of each
/// kind) is the empty name.
fn key_name(kind: Kind, db: i64, i: usize) -> Vec<u8> {
    if i == ALL.len() {
        return Vec::new();
    }
    let plain = format!("p:{kind:?}:{i}");
    if i % 13 == 5 {
        let mut key = b"p:bin\x00\xff\r\n \"".to_vec();
        key.extend_from_slice(plain.as_bytes());
        key.push(b'\x80' + (db.rem_euclid(100) as u8));
        return key;
    }
    plain.into_bytes()
}

/// Absolute expiry times are an offset from one base per test process (an hour from the
/// first use), so two servers populated from one spec get identical deadlines.
fn expire_cmd(rng: &mut StdRng, key: &[u8]) -> (&'static str, Cmd) {
    static BASE_MS: OnceLock<u64> = OnceLock::new();
    let base = *BASE_MS.get_or_init(|| {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        now.as_millis() as u64 + 3_600_000
    });
    let offset_ms = rng.random_range(0..2 * 86_400_000u64);
    if rng.random_bool(0.5) {
        // Millisecond precision.
        (
            "PEXPIREAT",
            cmd("PEXPIREAT").arg(key).arg(base + offset_ms).clone(),
        )
    } else {
        // Whole seconds.
        (
            "EXPIREAT",
            cmd("EXPIREAT")
                .arg(key)
                .arg((base + offset_ms) / 1000)
                .clone(),
        )
    }
}

fn word(rng: &mut StdRng, min: usize, max: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_";
    let len = rng.random_range(min..=max);
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

fn binary(rng: &mut StdRng, min: usize, max: usize) -> Vec<u8> {
    let len = rng.random_range(min..=max);
    let mut out: Vec<u8> = (0..len).map(|_| rng.random()).collect();
    out.extend_from_slice(b"\x00\xff\r\n");
    out.shuffle(rng);
    out
}

fn some_int(rng: &mut StdRng) -> i64 {
    match rng.random_range(0..8) {
        0 => 0,
        1 => -1,
        2 => i64::MAX,
        3 => i64::MIN,
        4 => rng.random_range(0..10_000),
        _ => rng.random(),
    }
}

fn some_score(rng: &mut StdRng, i: usize) -> String {
    match i % 9 {
        0 => "inf".into(),
        1 => "-inf".into(),
        2 => "0.5".into(),
        3 => (-(rng.random_range(1..1000) as i64)).to_string(),
        4 => format!("{}", rng.random::<f64>() * 1e9 - 5e8),
        5 => "1e300".into(),
        6 => "-0.1".into(),
        _ => rng.random_range(0..100).to_string(),
    }
}

/// Appends the commands that build one key of `kind` (deleting any earlier value first).
fn write_key(batch: &mut Batch, rng: &mut StdRng, kind: Kind, key: &[u8], big: usize) {
    let set =
        |batch: &mut Batch, value: &[u8]| batch.add("SET", cmd("SET").arg(key).arg(value).clone());
    match kind {
        Kind::StrInt => set(batch, some_int(rng).to_string().as_bytes()),
        Kind::StrShort => set(batch, word(rng, 1, 40).as_bytes()),
        Kind::StrRaw => set(batch, word(rng, 45, 300).as_bytes()),
        Kind::StrEmpty => set(batch, b""),
        Kind::StrBinary => set(batch, &binary(rng, 1, 64)),
        Kind::StrLzf => {
            let reps = rng.random_range(200..1000);
            set(batch, "ferry-compressible-".repeat(reps).as_bytes());
        }
        Kind::ListSmall | Kind::ListBig => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            let n = if kind == Kind::ListBig {
                big
            } else {
                rng.random_range(1..16)
            };
            let items: Vec<Vec<u8>> = (0..n)
                .map(|i| match i % 3 {
                    0 => some_int(rng).to_string().into_bytes(),
                    1 => word(rng, 0, 30).into_bytes(),
                    _ => binary(rng, 0, 30),
                })
                .collect();
            for chunk in items.chunks(500) {
                batch.add("RPUSH", cmd("RPUSH").arg(key).arg(chunk).clone());
            }
        }
        Kind::SetInt | Kind::SetSmall | Kind::SetBig => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            let members: Vec<Vec<u8>> = match kind {
                Kind::SetInt => (0..rng.random_range(1..20))
                    .map(|_| some_int(rng).to_string().into_bytes())
                    .collect(),
                Kind::SetSmall => (0..rng.random_range(1..20))
                    .map(|i| format!("m{i}-{}", word(rng, 0, 12)).into_bytes())
                    .collect(),
                _ => (0..big)
                    .map(|i| format!("member-{i}-{}", word(rng, 0, 20)).into_bytes())
                    .collect(),
            };
            for chunk in members.chunks(500) {
                batch.add("SADD", cmd("SADD").arg(key).arg(chunk).clone());
            }
        }
        Kind::ZsetSmall | Kind::ZsetBig => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            let n = if kind == Kind::ZsetBig {
                big
            } else {
                rng.random_range(1..20)
            };
            let mut pairs: Vec<(String, Vec<u8>)> = Vec::with_capacity(n);
            for i in 0..n {
                let mut member = format!("z{i}-").into_bytes();
                if i % 7 == 3 {
                    member.extend_from_slice(&binary(rng, 0, 8));
                } else {
                    member.extend_from_slice(word(rng, 0, 16).as_bytes());
                }
                pairs.push((some_score(rng, i), member));
            }
            for chunk in pairs.chunks(500) {
                let mut c = cmd("ZADD");
                c.arg(key);
                for (score, member) in chunk {
                    c.arg(score).arg(member);
                }
                batch.add("ZADD", c);
            }
        }
        Kind::HashSmall | Kind::HashBig | Kind::HashLongValue => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            let n = if kind == Kind::HashBig {
                big
            } else {
                rng.random_range(1..16)
            };
            let mut fields: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
                .map(|i| {
                    let value = match i % 4 {
                        0 => some_int(rng).to_string().into_bytes(),
                        1 => binary(rng, 0, 12),
                        _ => word(rng, 0, 20).into_bytes(),
                    };
                    (format!("f{i}").into_bytes(), value)
                })
                .collect();
            if kind == Kind::HashLongValue {
                // One value over hash-max-listpack-value (64) makes it a hashtable.
                fields.push((b"long".to_vec(), word(rng, 100, 200).into_bytes()));
            }
            for chunk in fields.chunks(500) {
                let mut c = cmd("HSET");
                c.arg(key);
                for (field, value) in chunk {
                    c.arg(field).arg(value);
                }
                batch.add("HSET", c);
            }
        }
        Kind::Stream => write_stream(batch, rng, key),
        Kind::StreamEmpty => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            batch.add(
                "XADD",
                cmd("XADD").arg(key).arg("5-1").arg("f").arg("v").clone(),
            );
            batch.add("XDEL", cmd("XDEL").arg(key).arg("5-1").clone());
            let create = cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg("g")
                .arg("0")
                .clone();
            batch.add("XGROUP CREATE", create);
        }
        Kind::HllSparse | Kind::HllDense => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            // Past hll-sparse-max-bytes (3000) the representation turns dense.
            let n = if kind == Kind::HllDense {
                6000
            } else {
                rng.random_range(1..40)
            };
            let seed: u32 = rng.random();
            let elements: Vec<String> = (0..n).map(|i| format!("e{seed}-{i}")).collect();
            for chunk in elements.chunks(1000) {
                batch.add("PFADD", cmd("PFADD").arg(key).arg(chunk).clone());
            }
        }
        Kind::Bitmap => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            for _ in 0..rng.random_range(1..20) {
                let offset = rng.random_range(0..200_000u32);
                batch.add("SETBIT", cmd("SETBIT").arg(key).arg(offset).arg(1).clone());
            }
        }
        Kind::Geo => {
            batch.add("DEL", cmd("DEL").arg(key).clone());
            let mut c = cmd("GEOADD");
            c.arg(key);
            for i in 0..rng.random_range(1..15) {
                let lon = rng.random_range(-179.0..179.0f64);
                let lat = rng.random_range(-85.0..85.0f64);
                c.arg(format!("{lon:.6}"))
                    .arg(format!("{lat:.6}"))
                    .arg(format!("place{i}"));
            }
            batch.add("GEOADD", c);
        }
    }
}

/// A stream with explicit ids (so two servers hold the same one), deleted entries, two
/// groups, consumers with pending entries, a claimed and an acknowledged entry.
fn write_stream(batch: &mut Batch, rng: &mut StdRng, key: &[u8]) {
    batch.add("DEL", cmd("DEL").arg(key).clone());
    let n = rng.random_range(8..24u64);
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{}-{}", 1000 + i / 3, i % 3))
        .collect();
    for (i, id) in ids.iter().enumerate() {
        let mut c = cmd("XADD");
        c.arg(key).arg(id).arg("n").arg(i);
        for f in 0..rng.random_range(1..4) {
            c.arg(format!("field{f}")).arg(binary(rng, 0, 10));
        }
        batch.add("XADD", c);
    }
    let deleted = [&ids[1], &ids[4]];
    batch.add(
        "XDEL",
        cmd("XDEL").arg(key).arg(deleted[0]).arg(deleted[1]).clone(),
    );
    let live: Vec<&String> = ids.iter().filter(|id| !deleted.contains(id)).collect();
    let group = |sub: &str| cmd("XGROUP").arg(sub).arg(key).clone();
    batch.add("XGROUP CREATE", group("CREATE").arg("g1").arg("0").clone());
    batch.add("XGROUP CREATE", group("CREATE").arg("g2").arg("$").clone());
    let read = cmd("XREADGROUP")
        .arg("GROUP")
        .arg("g1")
        .arg("alice")
        .arg("COUNT")
        .arg(5)
        .arg("STREAMS")
        .arg(key)
        .arg(">")
        .clone();
    batch.add("XREADGROUP", read);
    batch.add(
        "XGROUP CREATECONSUMER",
        group("CREATECONSUMER").arg("g1").arg("bob").clone(),
    );
    let claim = cmd("XCLAIM")
        .arg(key)
        .arg("g1")
        .arg("bob")
        .arg(0)
        .arg(live[1])
        .clone();
    batch.add("XCLAIM", claim);
    batch.add("XACK", cmd("XACK").arg(key).arg("g1").arg(live[0]).clone());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mix_covers_only_small_kinds() {
        for (kind, _) in MIX {
            assert!(!matches!(
                kind,
                Kind::ListBig | Kind::SetBig | Kind::ZsetBig | Kind::HashBig | Kind::HllDense
            ));
        }
    }

    #[test]
    fn names_are_distinct_per_db() {
        let names: std::collections::HashSet<Vec<u8>> =
            (0..500).map(|i| key_name(Kind::StrShort, 0, i)).collect();
        assert_eq!(names.len(), 500);
    }
}
