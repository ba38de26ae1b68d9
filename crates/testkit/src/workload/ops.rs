//! The write workload: deterministic random ops over a small key space per type.
//!
//! Keys live in one namespace per kind of value (`wl:s:` strings, `wl:n:` integers,
//! `wl:f:` floats, `wl:b:` bitmaps, `wl:l:` lists, `wl:t:` sets, `wl:z:` zsets, `wl:h:`
//! hashes, `wl:p:` HyperLogLogs, `wl:g:` geo, `wl:x:` streams, `wl:tmp:` short-lived
//! strings), and every command keeps a key in its namespace, so the workload never meets
//! `WRONGTYPE`. Rename, move, restore and swapdb keep namespaces intact too.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::{Cmd, Value, cmd};

use super::Spec;
use super::batch::Batch;
use super::populate::LIBRARY;
use super::route::{Router, Target};
use crate::cluster::key_slot;
use crate::{Cluster, Server, wire};

/// Keys per namespace per db: small, so ops meet existing keys often.
const KEYS: u32 = 40;
/// On a cluster: hash-tag groups (`{g0}` ... ), each its own slot, and keys per namespace
/// per group.
const GROUPS: u32 = 32;
const KEYS_PER_GROUP: u32 = 8;

const SCRIPT: &str =
    "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('HINCRBY', KEYS[2], 'cnt', 1)";

/// The library loaded once by the workload (beside populate's `ferry_testkit`).
const LIBRARY2: &str = "#!lua name=ferry_testkit_wl\n\
redis.register_function('ferry_wl_push', function(keys, args) return redis.call('RPUSH', keys[1], args[1]) end)\n";

/// One kind of op. Most issue one command (after, sometimes, a command that makes sure the
/// key is in the state the op needs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Set,
    Append,
    Getset,
    Setex,
    Setnx,
    Psetex,
    Setrange,
    Mset,
    Msetnx,
    Incr,
    Decr,
    Incrby,
    Decrby,
    Incrbyfloat,
    Setbit,
    Bitop,
    Lpush,
    Rpush,
    Lpushx,
    Rpushx,
    Lpop,
    Rpop,
    Linsert,
    Lset,
    Lrem,
    Ltrim,
    Rpoplpush,
    Blpop,
    Brpop,
    Brpoplpush,
    Sadd,
    Srem,
    Spop,
    Smove,
    Sdiffstore,
    Sinterstore,
    Sunionstore,
    Zadd,
    Zincrby,
    Zrem,
    Zremrangebylex,
    Zremrangebyrank,
    Zremrangebyscore,
    Zunionstore,
    Zinterstore,
    Hset,
    Hmset,
    Hsetnx,
    Hdel,
    Hincrby,
    Hincrbyfloat,
    Pfadd,
    Pfmerge,
    Geoadd,
    Xadd,
    Xdel,
    Xtrim,
    XgroupCreate,
    XgroupCreateconsumer,
    XgroupSetid,
    Xreadgroup,
    Xclaim,
    Xautoclaim,
    Del,
    Unlink,
    Expire,
    Pexpire,
    Expireat,
    Pexpireat,
    Persist,
    Rename,
    Renamenx,
    Move,
    Restore,
    Swapdb,
    Select,
    Multi,
    Eval,
    Evalsha,
    Fcall,
    FunctionLoad,
    ShortTtl,
    Lmove,
    Blmove,
    Zdiffstore,
    Zrangestore,
    Copy,
    Georadiusstore,
    Geosearchstore,
    SortStore,
}

impl Op {
    /// Relative frequency after the coverage pass.
    fn weight(self) -> u32 {
        match self {
            Op::FunctionLoad => 0,
            Op::Swapdb => 1,
            Op::ShortTtl | Op::Restore | Op::Xclaim | Op::Xdel | Op::Move | Op::XgroupCreate => 2,
            Op::Select => 4,
            Op::Set
            | Op::Hset
            | Op::Lpush
            | Op::Rpush
            | Op::Sadd
            | Op::Zadd
            | Op::Incr
            | Op::Xadd => 20,
            _ => 10,
        }
    }
}

const ALL_OPS: &[Op] = &[
    Op::Set,
    Op::Append,
    Op::Getset,
    Op::Setex,
    Op::Setnx,
    Op::Psetex,
    Op::Setrange,
    Op::Mset,
    Op::Msetnx,
    Op::Incr,
    Op::Decr,
    Op::Incrby,
    Op::Decrby,
    Op::Incrbyfloat,
    Op::Setbit,
    Op::Bitop,
    Op::Lpush,
    Op::Rpush,
    Op::Lpushx,
    Op::Rpushx,
    Op::Lpop,
    Op::Rpop,
    Op::Linsert,
    Op::Lset,
    Op::Lrem,
    Op::Ltrim,
    Op::Rpoplpush,
    Op::Blpop,
    Op::Brpop,
    Op::Brpoplpush,
    Op::Sadd,
    Op::Srem,
    Op::Spop,
    Op::Smove,
    Op::Sdiffstore,
    Op::Sinterstore,
    Op::Sunionstore,
    Op::Zadd,
    Op::Zincrby,
    Op::Zrem,
    Op::Zremrangebylex,
    Op::Zremrangebyrank,
    Op::Zremrangebyscore,
    Op::Zunionstore,
    Op::Zinterstore,
    Op::Hset,
    Op::Hmset,
    Op::Hsetnx,
    Op::Hdel,
    Op::Hincrby,
    Op::Hincrbyfloat,
    Op::Pfadd,
    Op::Pfmerge,
    Op::Geoadd,
    Op::Xadd,
    Op::Xdel,
    Op::Xtrim,
    Op::XgroupCreate,
    Op::XgroupCreateconsumer,
    Op::XgroupSetid,
    Op::Xreadgroup,
    Op::Xclaim,
    Op::Xautoclaim,
    Op::Del,
    Op::Unlink,
    Op::Expire,
    Op::Pexpire,
    Op::Expireat,
    Op::Pexpireat,
    Op::Persist,
    Op::Rename,
    Op::Renamenx,
    Op::Move,
    Op::Restore,
    Op::Swapdb,
    Op::Select,
    Op::Multi,
    Op::Eval,
    Op::Evalsha,
    Op::Fcall,
    Op::FunctionLoad,
    Op::ShortTtl,
    Op::Lmove,
    Op::Blmove,
    Op::Zdiffstore,
    Op::Zrangestore,
    Op::Copy,
    Op::Georadiusstore,
    Op::Geosearchstore,
    Op::SortStore,
];

/// Namespaces any generic key op (DEL, EXPIRE, MOVE, ...) may touch.
const NAMESPACES: &[&str] = &["s", "n", "f", "b", "l", "t", "z", "h", "p", "g", "x"];

/// Random writes, deterministic from the spec's seed. See [`super::REQUIRED_COMMANDS`].
pub struct Workload {
    rng: StdRng,
    dbs: Vec<i64>,
    db: i64,
    /// Ops not yet issued once; drained before random picks, so every op appears early.
    cover: Vec<Op>,
    weights: Vec<(Op, u32)>,
    server_version: Option<(u32, u32, u32)>,
    script_sha: Option<String>,
    batch: Batch,
    /// Writing to a cluster: keys carry a hash tag `{g<N>}`, and all keys of one op share
    /// one (so multi-key commands stay in one slot); only db 0.
    cluster: bool,
    /// The hash-tag group of the op being built, on a cluster.
    group: Option<u32>,
}

impl Workload {
    /// A workload over `spec.dbs` (db 0 if empty), seeded by `spec.seed`.
    pub fn new(spec: &Spec) -> Self {
        let mut rng = StdRng::seed_from_u64(spec.seed ^ 0x5eed_f0e7);
        let dbs = if spec.dbs.is_empty() {
            vec![0]
        } else {
            spec.dbs.clone()
        };
        let mut cover = ALL_OPS.to_vec();
        cover.shuffle(&mut rng);
        let db = dbs[0];
        Workload {
            rng,
            dbs,
            db,
            cover,
            weights: Vec::new(),
            server_version: None,
            script_sha: None,
            batch: Batch::default(),
            cluster: false,
            group: None,
        }
    }

    /// A workload for a cluster, seeded by `spec.seed`: db 0 only (whatever `spec.dbs`
    /// says), no `SELECT`, `MOVE`, `SWAPDB` or `FUNCTION LOAD`; each op's keys share a hash
    /// tag (`{g17}wl:l:3`), picked anew for each op, so multi-key commands stay in one slot
    /// while ops spread over many. Run it with [`Workload::run_cluster`].
    pub fn for_cluster(spec: &Spec) -> Self {
        let mut workload = Workload::new(&Spec {
            dbs: vec![0],
            ..spec.clone()
        });
        workload.cluster = true;
        workload
    }

    /// Runs `ops` ops against `server` on a new connection; returns commands issued by name.
    pub fn run(&mut self, server: &Server, ops: usize) -> BTreeMap<String, u64> {
        let mut conn = server.conn();
        self.server_version.get_or_insert(server.version());
        self.run_conn(&mut conn, ops)
    }

    /// Runs `ops` ops on `conn` (any db: the workload selects its own).
    pub fn run_conn(&mut self, conn: &mut redis::Connection, ops: usize) -> BTreeMap<String, u64> {
        assert!(
            !self.cluster,
            "a workload made by Workload::for_cluster runs with run_cluster"
        );
        self.run_on(&mut Target::Conn(conn), ops)
    }

    /// Runs `ops` ops on `cluster`, each command sent to the master owning its keys
    /// (following `MOVED` and `ASK` while slots move). Needs a workload made by
    /// [`Workload::for_cluster`].
    pub fn run_cluster(&mut self, cluster: &Cluster, ops: usize) -> BTreeMap<String, u64> {
        let mut router = Router::new(cluster.addrs(), cluster.password());
        self.run_router(&mut router, ops)
    }

    pub(crate) fn run_router(&mut self, router: &mut Router, ops: usize) -> BTreeMap<String, u64> {
        assert!(
            self.cluster,
            "a cluster runs a workload made by Workload::for_cluster"
        );
        self.run_on(&mut Target::Cluster(router), ops)
    }

    fn run_on(&mut self, to: &mut Target, ops: usize) -> BTreeMap<String, u64> {
        self.batch.counts.clear();
        self.prepare(to);
        if !self.cluster {
            self.select(self.db);
        }
        for _ in 0..ops {
            let op = self.next_op();
            self.op(to, op);
            self.batch.maybe_flush(to);
        }
        self.batch.flush(to);
        std::mem::take(&mut self.batch.counts)
    }

    /// Unexpected errors the server answered so far, by command. Empty when the workload
    /// works as designed.
    pub fn errors(&self) -> &BTreeMap<String, u64> {
        &self.batch.errors
    }

    /// The first few unexpected errors, as "COMMAND: message".
    pub fn error_samples(&self) -> &[String] {
        &self.batch.samples
    }

    /// The first few errors that say a command reached the wrong node or spanned slots
    /// (`MOVED`, `ASK`, `CROSSSLOT`, `CLUSTERDOWN`), as "COMMAND: message". Empty for a
    /// cluster workload whose routing works, whatever the server version.
    pub fn misrouted(&self) -> &[String] {
        &self.batch.misrouted
    }

    /// Learns the server version, loads the script and makes sure the library `FCALL` uses
    /// is there (populate loads it; a bare server gets it here). On a cluster the script
    /// goes to every node (a replica promoted later has it too) and the library to every
    /// master that lacks it.
    fn prepare(&mut self, to: &mut Target) {
        match to {
            Target::Conn(conn) => self.prepare_conn(conn),
            Target::Cluster(router) => self.prepare_cluster(router),
        }
    }

    fn prepare_conn(&mut self, conn: &mut redis::Connection) {
        if self.server_version.is_none() {
            let text: String = cmd("INFO")
                .arg("server")
                .query(conn)
                .unwrap_or_else(|e| panic!("workload: INFO failed: {e}"));
            self.server_version = Some(version_of(&text));
        }
        self.choose_ops();
        let sha: String = cmd("SCRIPT")
            .arg("LOAD")
            .arg(SCRIPT)
            .query(conn)
            .unwrap_or_else(|e| panic!("workload: SCRIPT LOAD failed: {e}"));
        *self.batch.counts.entry("SCRIPT LOAD".into()).or_insert(0) += 1;
        self.script_sha = Some(sha);
        if self.functions() {
            let listed: Value = cmd("FUNCTION")
                .arg("LIST")
                .arg("LIBRARYNAME")
                .arg("ferry_testkit")
                .query(conn)
                .unwrap_or_else(|e| panic!("workload: FUNCTION LIST failed: {e}"));
            let present = wire::items(&listed).is_some_and(|libs| !libs.is_empty());
            if !present {
                let load = cmd("FUNCTION")
                    .arg("LOAD")
                    .arg("REPLACE")
                    .arg(LIBRARY)
                    .clone();
                self.batch.add("FUNCTION LOAD", load);
            }
        }
    }

    fn prepare_cluster(&mut self, router: &mut Router) {
        let masters = router.masters();
        if self.server_version.is_none() {
            let info = router
                .query_on(&masters[0], cmd("INFO").arg("server"))
                .unwrap_or_else(|e| panic!("workload: INFO on {} failed: {e}", masters[0]));
            self.server_version = Some(version_of(&wire::text(&info).unwrap_or_default()));
        }
        self.choose_ops();
        let load = cmd("SCRIPT").arg("LOAD").arg(SCRIPT).clone();
        for node in router.nodes() {
            // A node gone (a test killed it) is no reason to stop.
            if let Ok(sha) = router.query_on(&node, &load) {
                self.script_sha = wire::text(&sha);
                *self.batch.counts.entry("SCRIPT LOAD".into()).or_insert(0) += 1;
            }
        }
        if self.functions() {
            let list = cmd("FUNCTION")
                .arg("LIST")
                .arg("LIBRARYNAME")
                .arg("ferry_testkit")
                .clone();
            let load = cmd("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(LIBRARY)
                .clone();
            for master in masters {
                let listed = router
                    .query_on(&master, &list)
                    .unwrap_or_else(|e| panic!("workload: FUNCTION LIST on {master}: {e}"));
                if wire::items(&listed).is_none_or(|libs| libs.is_empty()) {
                    router
                        .query_on(&master, &load)
                        .unwrap_or_else(|e| panic!("workload: FUNCTION LOAD on {master}: {e}"));
                    *self.batch.counts.entry("FUNCTION LOAD".into()).or_insert(0) += 1;
                }
            }
        }
    }

    /// The ops this server and mode support, once.
    fn choose_ops(&mut self) {
        if self.weights.is_empty() {
            let supported: Vec<Op> = ALL_OPS
                .iter()
                .copied()
                .filter(|op| self.supported(*op))
                .collect();
            self.cover.retain(|op| supported.contains(op));
            self.weights = supported.iter().map(|op| (*op, op.weight())).collect();
        }
    }

    fn functions(&self) -> bool {
        self.version() >= (7, 0, 0)
    }

    fn version(&self) -> (u32, u32, u32) {
        self.server_version.unwrap_or((0, 0, 0))
    }

    fn supported(&self, op: Op) -> bool {
        match op {
            Op::Swapdb | Op::Move | Op::Select | Op::FunctionLoad if self.cluster => false,
            Op::Fcall | Op::FunctionLoad => self.functions(),
            Op::Swapdb | Op::Move => self.dbs.len() >= 2,
            Op::Lmove
            | Op::Blmove
            | Op::Zdiffstore
            | Op::Zrangestore
            | Op::Copy
            | Op::Geosearchstore => self.version() >= (6, 2, 0),
            _ => true,
        }
    }

    fn next_op(&mut self) -> Op {
        if let Some(op) = self.cover.pop() {
            return op;
        }
        let total: u32 = self.weights.iter().map(|(_, w)| w).sum();
        let mut at = self.rng.random_range(0..total);
        for &(op, weight) in &self.weights {
            if at < weight {
                return op;
            }
            at -= weight;
        }
        unreachable!("weights sum to total")
    }

    // ---- building blocks -------------------------------------------------------------

    fn add(&mut self, label: &str, c: &mut Cmd) {
        self.batch.add(label, c.clone());
    }

    /// A key in namespace `ns`; some string keys have binary names. On a cluster, in the
    /// op's group.
    fn key(&mut self, ns: &str) -> Vec<u8> {
        let (n, mut key) = match self.group {
            Some(group) => (
                self.rng.random_range(0..KEYS_PER_GROUP),
                format!("{{g{group}}}wl:{ns}:").into_bytes(),
            ),
            None => (
                self.rng.random_range(0..KEYS),
                format!("wl:{ns}:").into_bytes(),
            ),
        };
        if ns == "s" && n % 8 == 0 {
            key.extend_from_slice(b"\x00\xff\n");
        }
        key.extend_from_slice(n.to_string().as_bytes());
        key
    }

    fn any_key(&mut self) -> Vec<u8> {
        let ns = NAMESPACES[self.rng.random_range(0..NAMESPACES.len())];
        self.key(ns)
    }

    /// `n` distinct keys from `pick`: on a standalone server in `n` different slots (as a
    /// cluster would hash them, so the multi-key command is one a cluster would refuse), on
    /// a cluster all in the op's group.
    fn keys_apart(&mut self, n: usize, mut pick: impl FnMut(&mut Self) -> Vec<u8>) -> Vec<Vec<u8>> {
        let mut keys: Vec<Vec<u8>> = Vec::with_capacity(n);
        while keys.len() < n {
            let key = pick(self);
            let clash = keys
                .iter()
                .any(|k| *k == key || (!self.cluster && key_slot(k) == key_slot(&key)));
            if !clash {
                keys.push(key);
            }
        }
        keys
    }

    /// Two distinct keys of `ns` (in different slots on a standalone server).
    fn two(&mut self, ns: &str) -> (Vec<u8>, Vec<u8>) {
        let mut keys = self.keys_apart(2, |w| w.key(ns));
        let b = keys.pop().expect("two keys");
        let a = keys.pop().expect("two keys");
        (a, b)
    }

    /// Three distinct keys of `ns` (in different slots on a standalone server).
    fn three(&mut self, ns: &str) -> (Vec<u8>, Vec<u8>, Vec<u8>) {
        let mut keys = self.keys_apart(3, |w| w.key(ns));
        let c = keys.pop().expect("three keys");
        let b = keys.pop().expect("three keys");
        let a = keys.pop().expect("three keys");
        (a, b, c)
    }

    fn value(&mut self) -> Vec<u8> {
        let len = self.rng.random_range(0..24);
        let mut v: Vec<u8> = (0..len)
            .map(|_| self.rng.random_range(b'a'..=b'z'))
            .collect();
        if self.rng.random_bool(0.1) {
            v.extend_from_slice(b"\x00\xff");
        }
        v
    }

    /// `LEFT` or `RIGHT`.
    fn end(&mut self) -> &'static str {
        if self.rng.random_bool(0.5) {
            "LEFT"
        } else {
            "RIGHT"
        }
    }

    fn member(&mut self) -> String {
        format!("m{}", self.rng.random_range(0..30))
    }

    fn field(&mut self) -> String {
        format!("f{}", self.rng.random_range(0..12))
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }

    /// A TTL in seconds at least 5 minutes long.
    fn ttl_s(&mut self) -> u64 {
        self.rng.random_range(300..86_400)
    }

    fn other_db(&mut self) -> Option<i64> {
        let others: Vec<i64> = self.dbs.iter().copied().filter(|d| *d != self.db).collect();
        (!others.is_empty()).then(|| others[self.rng.random_range(0..others.len())])
    }

    fn select(&mut self, db: i64) {
        self.db = db;
        self.add("SELECT", cmd("SELECT").arg(db));
    }

    fn ensure_group(&mut self, key: &[u8]) {
        // BUSYGROUP when it exists already: expected, not counted as an error.
        self.add(
            "XGROUP CREATE",
            cmd("XGROUP")
                .arg("CREATE")
                .arg(key)
                .arg("wg")
                .arg("0")
                .arg("MKSTREAM"),
        );
    }

    /// Sends what is queued plus `c` now and returns `c`'s reply.
    fn now(&mut self, to: &mut Target, label: &str, c: &mut Cmd) -> Value {
        self.add(label, c);
        self.batch.flush(to).pop().unwrap_or(Value::Nil)
    }

    // ---- the ops ---------------------------------------------------------------------

    /// Queues one op; on a cluster, all its keys in one group picked for it.
    fn op(&mut self, to: &mut Target, op: Op) {
        if !self.cluster || self.group.is_some() {
            return self.build(to, op);
        }
        let group = self.rng.random_range(0..GROUPS);
        self.group = Some(group);
        self.batch.slot = Some(key_slot(format!("{{g{group}}}").as_bytes()));
        self.build(to, op);
        self.group = None;
        self.batch.slot = None;
    }

    fn build(&mut self, to: &mut Target, op: Op) {
        match op {
            Op::Set => {
                let (k, v) = (self.key("s"), self.value());
                let mut c = cmd("SET");
                c.arg(k).arg(v);
                match self.rng.random_range(0..4) {
                    0 => {
                        c.arg("EX").arg(self.ttl_s());
                    }
                    1 => {
                        c.arg("KEEPTTL");
                    }
                    _ => {}
                }
                self.add("SET", &mut c);
            }
            Op::Append => {
                let (k, v) = (self.key("s"), self.value());
                self.add("APPEND", cmd("APPEND").arg(k).arg(v));
            }
            Op::Getset => {
                let (k, v) = (self.key("s"), self.value());
                self.add("GETSET", cmd("GETSET").arg(k).arg(v));
            }
            Op::Setex => {
                let (k, t, v) = (self.key("s"), self.ttl_s(), self.value());
                self.add("SETEX", cmd("SETEX").arg(k).arg(t).arg(v));
            }
            Op::Setnx => {
                let (k, v) = (self.key("s"), self.value());
                self.add("SETNX", cmd("SETNX").arg(k).arg(v));
            }
            Op::Psetex => {
                let (k, v) = (self.key("s"), self.value());
                let t = self.ttl_s() * 1000 + self.rng.random_range(0..1000);
                self.add("PSETEX", cmd("PSETEX").arg(k).arg(t).arg(v));
            }
            Op::Setrange => {
                let (k, v) = (self.key("s"), self.value());
                let offset = self.rng.random_range(0..64);
                self.add("SETRANGE", cmd("SETRANGE").arg(k).arg(offset).arg(v));
            }
            Op::Mset | Op::Msetnx => {
                let name = if op == Op::Mset { "MSET" } else { "MSETNX" };
                let mut c = cmd(name);
                let n = self.rng.random_range(2..4);
                for k in self.keys_apart(n, |w| w.key("s")) {
                    c.arg(k).arg(self.value());
                }
                self.add(name, &mut c);
            }
            Op::Incr | Op::Decr => {
                let name = if op == Op::Incr { "INCR" } else { "DECR" };
                let k = self.key("n");
                self.add(name, cmd(name).arg(k));
            }
            Op::Incrby | Op::Decrby => {
                let name = if op == Op::Incrby { "INCRBY" } else { "DECRBY" };
                let (k, by) = (self.key("n"), self.rng.random_range(-1000..1000));
                self.add(name, cmd(name).arg(k).arg(by));
            }
            Op::Incrbyfloat => {
                let k = self.key("f");
                let by = format!("{:.3}", self.rng.random_range(-100.0..100.0f64));
                self.add("INCRBYFLOAT", cmd("INCRBYFLOAT").arg(k).arg(by));
            }
            Op::Setbit => {
                let (k, offset) = (self.key("b"), self.rng.random_range(0..4096u32));
                let bit = self.rng.random_range(0..2);
                self.add("SETBIT", cmd("SETBIT").arg(k).arg(offset).arg(bit));
            }
            Op::Bitop => {
                let (dest, a, b) = self.three("b");
                let mut c = cmd("BITOP");
                match self.rng.random_range(0..4) {
                    0 => c.arg("NOT").arg(dest).arg(a),
                    1 => c.arg("AND").arg(dest).arg(a).arg(b),
                    2 => c.arg("OR").arg(dest).arg(a).arg(b),
                    _ => c.arg("XOR").arg(dest).arg(a).arg(b),
                };
                self.add("BITOP", &mut c);
            }
            Op::Lpush | Op::Rpush | Op::Lpushx | Op::Rpushx => {
                let name = match op {
                    Op::Lpush => "LPUSH",
                    Op::Rpush => "RPUSH",
                    Op::Lpushx => "LPUSHX",
                    _ => "RPUSHX",
                };
                let mut c = cmd(name);
                c.arg(self.key("l"));
                for _ in 0..self.rng.random_range(1..4) {
                    c.arg(self.value());
                }
                self.add(name, &mut c);
            }
            Op::Lpop | Op::Rpop => {
                let name = if op == Op::Lpop { "LPOP" } else { "RPOP" };
                let k = self.key("l");
                self.add(name, cmd(name).arg(k));
            }
            Op::Linsert => {
                let (k, v) = (self.key("l"), self.value());
                self.add("LPUSH", cmd("LPUSH").arg(&k).arg("pivot"));
                let side = if self.rng.random_bool(0.5) {
                    "BEFORE"
                } else {
                    "AFTER"
                };
                self.add(
                    "LINSERT",
                    cmd("LINSERT").arg(k).arg(side).arg("pivot").arg(v),
                );
            }
            Op::Lset => {
                let (k, v) = (self.key("l"), self.value());
                self.add("RPUSH", cmd("RPUSH").arg(&k).arg("x"));
                self.add("LSET", cmd("LSET").arg(k).arg(-1).arg(v));
            }
            Op::Lrem => {
                let k = self.key("l");
                let count = self.rng.random_range(-2..3);
                self.add("LREM", cmd("LREM").arg(k).arg(count).arg("pivot"));
            }
            Op::Ltrim => {
                let k = self.key("l");
                let keep = self.rng.random_range(5..60);
                self.add("LTRIM", cmd("LTRIM").arg(k).arg(0).arg(keep));
            }
            Op::Rpoplpush => {
                let (src, dst) = self.two("l");
                self.add("RPOPLPUSH", cmd("RPOPLPUSH").arg(src).arg(dst));
            }
            Op::Blpop | Op::Brpop | Op::Brpoplpush => {
                // The list is non-empty when the pop runs, so it never waits.
                let (k, v) = (self.key("l"), self.value());
                self.add("RPUSH", cmd("RPUSH").arg(&k).arg(v));
                match op {
                    Op::Blpop => self.add("BLPOP", cmd("BLPOP").arg(k).arg("0.01")),
                    Op::Brpop => self.add("BRPOP", cmd("BRPOP").arg(k).arg("0.01")),
                    _ => {
                        let dst = self.key("l");
                        self.add("BRPOPLPUSH", cmd("BRPOPLPUSH").arg(k).arg(dst).arg("0.01"));
                    }
                }
            }
            Op::Sadd => {
                let mut c = cmd("SADD");
                c.arg(self.key("t"));
                for _ in 0..self.rng.random_range(1..5) {
                    if self.rng.random_bool(0.5) {
                        c.arg(self.rng.random_range(0..100));
                    } else {
                        c.arg(self.member());
                    }
                }
                self.add("SADD", &mut c);
            }
            Op::Srem => {
                let (k, m) = (self.key("t"), self.member());
                self.add("SREM", cmd("SREM").arg(k).arg(m));
            }
            Op::Spop => {
                let k = self.key("t");
                let mut c = cmd("SPOP");
                c.arg(k);
                if self.rng.random_bool(0.3) {
                    c.arg(2);
                }
                self.add("SPOP", &mut c);
            }
            Op::Smove => {
                let ((src, dst), m) = (self.two("t"), self.member());
                self.add("SMOVE", cmd("SMOVE").arg(src).arg(dst).arg(m));
            }
            Op::Sdiffstore | Op::Sinterstore | Op::Sunionstore => {
                let name = match op {
                    Op::Sdiffstore => "SDIFFSTORE",
                    Op::Sinterstore => "SINTERSTORE",
                    _ => "SUNIONSTORE",
                };
                let (dst, a, b) = self.three("t");
                self.add(name, cmd(name).arg(dst).arg(a).arg(b));
            }
            Op::Zadd => {
                let mut c = cmd("ZADD");
                c.arg(self.key("z"));
                for _ in 0..self.rng.random_range(1..4) {
                    let score = match self.rng.random_range(0..10) {
                        0 => "+inf".to_string(),
                        1 => format!("{:.4}", self.rng.random_range(-50.0..50.0f64)),
                        _ => self.rng.random_range(-100..100).to_string(),
                    };
                    c.arg(score).arg(self.member());
                }
                self.add("ZADD", &mut c);
            }
            Op::Zincrby => {
                let (k, by, m) = (self.key("z"), self.rng.random_range(-5..6), self.member());
                self.add("ZINCRBY", cmd("ZINCRBY").arg(k).arg(by).arg(m));
            }
            Op::Zrem => {
                let (k, m) = (self.key("z"), self.member());
                self.add("ZREM", cmd("ZREM").arg(k).arg(m));
            }
            Op::Zremrangebylex => {
                let k = self.key("z");
                let to = format!("[{}", self.member());
                self.add(
                    "ZREMRANGEBYLEX",
                    cmd("ZREMRANGEBYLEX").arg(k).arg("-").arg(to),
                );
            }
            Op::Zremrangebyrank => {
                let k = self.key("z");
                self.add(
                    "ZREMRANGEBYRANK",
                    cmd("ZREMRANGEBYRANK").arg(k).arg(0).arg(1),
                );
            }
            Op::Zremrangebyscore => {
                let (k, lo) = (self.key("z"), self.rng.random_range(-100..100));
                self.add(
                    "ZREMRANGEBYSCORE",
                    cmd("ZREMRANGEBYSCORE").arg(k).arg(lo).arg(lo + 10),
                );
            }
            Op::Zunionstore | Op::Zinterstore => {
                let name = if op == Op::Zunionstore {
                    "ZUNIONSTORE"
                } else {
                    "ZINTERSTORE"
                };
                let (dst, a, b) = self.three("z");
                let mut c = cmd(name);
                c.arg(dst).arg(2).arg(a).arg(b);
                if self.rng.random_bool(0.3) {
                    c.arg("AGGREGATE").arg("MAX");
                }
                self.add(name, &mut c);
            }
            Op::Hset | Op::Hmset => {
                let name = if op == Op::Hset { "HSET" } else { "HMSET" };
                let mut c = cmd(name);
                c.arg(self.key("h"));
                for _ in 0..self.rng.random_range(1..4) {
                    c.arg(self.field()).arg(self.value());
                }
                self.add(name, &mut c);
            }
            Op::Hsetnx => {
                let (k, f, v) = (self.key("h"), self.field(), self.value());
                self.add("HSETNX", cmd("HSETNX").arg(k).arg(f).arg(v));
            }
            Op::Hdel => {
                let k = self.key("h");
                let f = match self.rng.random_range(0..6) {
                    0 => "cnt".to_string(),
                    1 => "flt".to_string(),
                    _ => self.field(),
                };
                self.add("HDEL", cmd("HDEL").arg(k).arg(f));
            }
            Op::Hincrby => {
                let (k, by) = (self.key("h"), self.rng.random_range(-10..10));
                self.add("HINCRBY", cmd("HINCRBY").arg(k).arg("cnt").arg(by));
            }
            Op::Hincrbyfloat => {
                let k = self.key("h");
                let by = format!("{:.2}", self.rng.random_range(-10.0..10.0f64));
                self.add(
                    "HINCRBYFLOAT",
                    cmd("HINCRBYFLOAT").arg(k).arg("flt").arg(by),
                );
            }
            Op::Pfadd => {
                let mut c = cmd("PFADD");
                c.arg(self.key("p"));
                for _ in 0..self.rng.random_range(1..10) {
                    c.arg(self.rng.random_range(0..100_000));
                }
                self.add("PFADD", &mut c);
            }
            Op::Pfmerge => {
                let (dst, a, b) = self.three("p");
                self.add("PFMERGE", cmd("PFMERGE").arg(dst).arg(a).arg(b));
            }
            Op::Geoadd => {
                let k = self.key("g");
                let lon = format!("{:.5}", self.rng.random_range(-179.0..179.0f64));
                let lat = format!("{:.5}", self.rng.random_range(-85.0..85.0f64));
                let m = self.member();
                self.add("GEOADD", cmd("GEOADD").arg(k).arg(lon).arg(lat).arg(m));
            }
            Op::Xadd => {
                let (k, v) = (self.key("x"), self.value());
                self.add("XADD", cmd("XADD").arg(k).arg("*").arg("v").arg(v));
            }
            Op::Xdel => {
                let k = self.key("x");
                self.add("XADD", cmd("XADD").arg(&k).arg("*").arg("v").arg("del"));
                let count = self.rng.random_range(1..4);
                let range = self.now(
                    to,
                    "XRANGE",
                    cmd("XRANGE")
                        .arg(&k)
                        .arg("-")
                        .arg("+")
                        .arg("COUNT")
                        .arg(count),
                );
                let ids = entry_ids(&range);
                let mut c = cmd("XDEL");
                c.arg(&k);
                c.arg(ids.last().cloned().unwrap_or_else(|| b"0-1".to_vec()));
                self.add("XDEL", &mut c);
            }
            Op::Xtrim => {
                let (k, max) = (self.key("x"), self.rng.random_range(10..60));
                self.add("XTRIM", cmd("XTRIM").arg(k).arg("MAXLEN").arg(max));
            }
            Op::XgroupCreate => {
                let k = self.key("x");
                let g = format!("g{}", self.rng.random_range(0..3));
                // DESTROY needs the stream to exist.
                self.add("XADD", cmd("XADD").arg(&k).arg("*").arg("v").arg("group"));
                self.add(
                    "XGROUP DESTROY",
                    cmd("XGROUP").arg("DESTROY").arg(&k).arg(&g),
                );
                let id = if self.rng.random_bool(0.5) { "$" } else { "0" };
                self.add(
                    "XGROUP CREATE",
                    cmd("XGROUP")
                        .arg("CREATE")
                        .arg(k)
                        .arg(g)
                        .arg(id)
                        .arg("MKSTREAM"),
                );
            }
            Op::XgroupCreateconsumer => {
                let k = self.key("x");
                self.ensure_group(&k);
                let consumer = format!("c{}", self.rng.random_range(0..5));
                let mut c = cmd("XGROUP");
                c.arg("CREATECONSUMER").arg(k).arg("wg").arg(consumer);
                self.add("XGROUP CREATECONSUMER", &mut c);
            }
            Op::XgroupSetid => {
                let k = self.key("x");
                self.ensure_group(&k);
                let id = if self.rng.random_bool(0.5) { "$" } else { "0" };
                self.add(
                    "XGROUP SETID",
                    cmd("XGROUP").arg("SETID").arg(k).arg("wg").arg(id),
                );
            }
            Op::Xreadgroup => {
                let k = self.key("x");
                self.ensure_group(&k);
                let consumer = format!("c{}", self.rng.random_range(0..5));
                let mut c = cmd("XREADGROUP");
                c.arg("GROUP").arg("wg").arg(consumer).arg("COUNT").arg(3);
                c.arg("STREAMS").arg(k).arg(">");
                self.add("XREADGROUP", &mut c);
            }
            Op::Xclaim => {
                // Needs ids that are pending: deliver one, then ask which ones are.
                let k = self.key("x");
                self.ensure_group(&k);
                self.add("XADD", cmd("XADD").arg(&k).arg("*").arg("v").arg("claim"));
                let mut read = cmd("XREADGROUP");
                read.arg("GROUP").arg("wg").arg("c0").arg("COUNT").arg(2);
                read.arg("STREAMS").arg(&k).arg(">");
                self.add("XREADGROUP", &mut read);
                let pending = self.now(
                    to,
                    "XPENDING",
                    cmd("XPENDING").arg(&k).arg("wg").arg("-").arg("+").arg(3),
                );
                let ids = entry_ids(&pending);
                let mut c = cmd("XCLAIM");
                c.arg(&k).arg("wg").arg("c1").arg(0);
                if ids.is_empty() {
                    c.arg("0-1");
                }
                for id in ids {
                    c.arg(id);
                }
                self.add("XCLAIM", &mut c);
            }
            Op::Xautoclaim => {
                let k = self.key("x");
                self.ensure_group(&k);
                let mut c = cmd("XAUTOCLAIM");
                c.arg(k)
                    .arg("wg")
                    .arg("c2")
                    .arg(0)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(2);
                self.add("XAUTOCLAIM", &mut c);
            }
            Op::Del | Op::Unlink => {
                let name = if op == Op::Del { "DEL" } else { "UNLINK" };
                let mut c = cmd(name);
                let n = self.rng.random_range(2..4);
                c.arg(self.keys_apart(n, Self::any_key));
                self.add(name, &mut c);
            }
            Op::Expire => {
                let (k, t) = (self.any_key(), self.ttl_s());
                self.add("EXPIRE", cmd("EXPIRE").arg(k).arg(t));
            }
            Op::Pexpire => {
                let (k, t) = (
                    self.any_key(),
                    self.ttl_s() * 1000 + self.rng.random_range(0..1000),
                );
                self.add("PEXPIRE", cmd("PEXPIRE").arg(k).arg(t));
            }
            Op::Expireat => {
                let (k, t) = (self.any_key(), self.ttl_s());
                let at = Self::now_ms() / 1000 + t;
                self.add("EXPIREAT", cmd("EXPIREAT").arg(k).arg(at));
            }
            Op::Pexpireat => {
                let (k, t) = (self.any_key(), self.ttl_s());
                let at = Self::now_ms() + t * 1000 + self.rng.random_range(0..1000);
                self.add("PEXPIREAT", cmd("PEXPIREAT").arg(k).arg(at));
            }
            Op::Persist => {
                let k = self.any_key();
                self.add("PERSIST", cmd("PERSIST").arg(k));
            }
            Op::Rename | Op::Renamenx => {
                let name = if op == Op::Rename {
                    "RENAME"
                } else {
                    "RENAMENX"
                };
                // Make sure the source exists (RENAME of a missing key is an error).
                let (src, dst) = self.two("l");
                self.add("RPUSH", cmd("RPUSH").arg(&src).arg("renamed"));
                self.add(name, cmd(name).arg(src).arg(dst));
            }
            Op::Move => {
                if let Some(db) = self.other_db() {
                    let k = self.any_key();
                    self.add("MOVE", cmd("MOVE").arg(k).arg(db));
                }
            }
            Op::Restore => {
                let (src, dst) = (self.key("l"), self.key("l"));
                self.add("RPUSH", cmd("RPUSH").arg(&src).arg("dumped"));
                let dump = self.now(to, "DUMP", cmd("DUMP").arg(&src));
                if let Value::BulkString(payload) = dump {
                    let ttl = if self.rng.random_bool(0.5) {
                        0
                    } else {
                        self.ttl_s() * 1000
                    };
                    let mut c = cmd("RESTORE");
                    c.arg(dst).arg(ttl).arg(payload).arg("REPLACE");
                    self.add("RESTORE", &mut c);
                }
            }
            Op::Swapdb => {
                if let Some(other) = self.other_db() {
                    let here = self.db;
                    self.add("SWAPDB", cmd("SWAPDB").arg(here).arg(other));
                }
            }
            Op::Select => {
                let db = self.dbs[self.rng.random_range(0..self.dbs.len())];
                self.select(db);
            }
            Op::Multi => {
                self.add("MULTI", &mut cmd("MULTI"));
                for _ in 0..self.rng.random_range(1..4) {
                    let inner = [
                        Op::Set,
                        Op::Incr,
                        Op::Lpush,
                        Op::Hset,
                        Op::Sadd,
                        Op::Zadd,
                        Op::Expire,
                    ];
                    let op = inner[self.rng.random_range(0..inner.len())];
                    self.op(to, op);
                }
                self.add("EXEC", &mut cmd("EXEC"));
            }
            Op::Eval | Op::Evalsha => {
                let (s, h, v) = (self.key("s"), self.key("h"), self.value());
                let mut c = if op == Op::Eval {
                    cmd("EVAL").arg(SCRIPT).clone()
                } else {
                    let sha = self.script_sha.clone().unwrap_or_default();
                    cmd("EVALSHA").arg(sha).clone()
                };
                c.arg(2).arg(s).arg(h).arg(v);
                self.add(if op == Op::Eval { "EVAL" } else { "EVALSHA" }, &mut c);
            }
            Op::Fcall => {
                // On a cluster only populate's library is on every master.
                if self.rng.random_bool(0.5)
                    || self.cover.contains(&Op::FunctionLoad)
                    || self.cluster
                {
                    let (k, v) = (self.key("s"), self.value());
                    self.add("FCALL", cmd("FCALL").arg("ferry_set").arg(1).arg(k).arg(v));
                } else {
                    let (k, v) = (self.key("l"), self.value());
                    self.add(
                        "FCALL",
                        cmd("FCALL").arg("ferry_wl_push").arg(1).arg(k).arg(v),
                    );
                }
            }
            Op::FunctionLoad => {
                self.add(
                    "FUNCTION LOAD",
                    cmd("FUNCTION").arg("LOAD").arg("REPLACE").arg(LIBRARY2),
                );
            }
            Op::Lmove | Op::Blmove => {
                let (src, dst) = self.two("l");
                let (from, into) = (self.end(), self.end());
                if op == Op::Lmove {
                    self.add("LMOVE", cmd("LMOVE").arg(src).arg(dst).arg(from).arg(into));
                } else {
                    // The list is non-empty when the move runs, so it never waits.
                    let v = self.value();
                    self.add("RPUSH", cmd("RPUSH").arg(&src).arg(v));
                    let mut c = cmd("BLMOVE");
                    c.arg(src).arg(dst).arg(from).arg(into).arg("0.01");
                    self.add("BLMOVE", &mut c);
                }
            }
            Op::Zdiffstore => {
                let (dst, a, b) = self.three("z");
                self.add(
                    "ZDIFFSTORE",
                    cmd("ZDIFFSTORE").arg(dst).arg(2).arg(a).arg(b),
                );
            }
            Op::Zrangestore => {
                let (dst, src) = self.two("z");
                let stop = self.rng.random_range(0..20);
                let mut c = cmd("ZRANGESTORE");
                c.arg(dst).arg(src).arg(0).arg(stop);
                if self.rng.random_bool(0.3) {
                    c.arg("REV");
                }
                self.add("ZRANGESTORE", &mut c);
            }
            Op::Copy => {
                let ns = NAMESPACES[self.rng.random_range(0..NAMESPACES.len())];
                let (src, dst) = self.two(ns);
                let mut c = cmd("COPY");
                c.arg(src).arg(dst);
                if self.rng.random_bool(0.5) {
                    c.arg("REPLACE");
                }
                self.add("COPY", &mut c);
            }
            Op::Georadiusstore | Op::Geosearchstore => {
                let (dst, src) = self.two("g");
                let lon = format!("{:.5}", self.rng.random_range(-179.0..179.0f64));
                let lat = format!("{:.5}", self.rng.random_range(-85.0..85.0f64));
                let km = self.rng.random_range(500..8000);
                let mut c;
                if op == Op::Georadiusstore {
                    c = cmd("GEORADIUS");
                    c.arg(src).arg(lon).arg(lat).arg(km).arg("km");
                    c.arg("STORE").arg(dst);
                } else {
                    c = cmd("GEOSEARCHSTORE");
                    c.arg(dst).arg(src).arg("FROMLONLAT").arg(lon).arg(lat);
                    c.arg("BYRADIUS").arg(km).arg("km");
                    if self.rng.random_bool(0.3) {
                        c.arg("STOREDIST");
                    }
                }
                let label = if op == Op::Georadiusstore {
                    "GEORADIUS"
                } else {
                    "GEOSEARCHSTORE"
                };
                self.add(label, &mut c);
            }
            Op::SortStore => {
                // A list or set sorted into a list; no BY/GET patterns.
                let ns = if self.rng.random_bool(0.5) { "l" } else { "t" };
                let src = self.key(ns);
                let dst = loop {
                    let k = self.key("l");
                    if k != src && (self.cluster || key_slot(&k) != key_slot(&src)) {
                        break k;
                    }
                };
                let mut c = cmd("SORT");
                c.arg(src).arg("ALPHA");
                if self.rng.random_bool(0.5) {
                    c.arg("DESC");
                }
                if self.rng.random_bool(0.3) {
                    c.arg("LIMIT").arg(0).arg(self.rng.random_range(1..20));
                }
                c.arg("STORE").arg(dst);
                self.add("SORT", &mut c);
            }
            Op::ShortTtl => {
                // Gone within half a second: expiry reaches replicas as DEL.
                let tag = self.group.map(|g| format!("{{g{g}}}")).unwrap_or_default();
                let k = format!("{tag}wl:tmp:{}", self.rng.random_range(0..KEYS));
                let ms = self.rng.random_range(20..500);
                self.add("SET", cmd("SET").arg(k).arg("short").arg("PX").arg(ms));
            }
        }
    }
}

/// Entry ids from an `XRANGE` reply (`[[id, fields], ...]`) or an `XPENDING` one
/// (`[[id, consumer, idle, count], ...]`).
fn entry_ids(reply: &Value) -> Vec<Vec<u8>> {
    wire::items(reply)
        .unwrap_or_default()
        .iter()
        .filter_map(|entry| wire::bytes(wire::items(entry)?.first()?))
        .collect()
}

/// The `redis_version` of an `INFO server` text; (0, 0, 0) when absent.
fn version_of(info: &str) -> (u32, u32, u32) {
    let info = crate::server::parse_info(info);
    info.get("redis_version")
        .and_then(|v| crate::server::parse_version(v))
        .unwrap_or((0, 0, 0))
}
