//! Datasets and write workloads for a real Redis.
//!
//! [`populate`] fills a server with a deterministic dataset holding every type and encoding
//! Redis has; [`Workload`] issues deterministic random writes covering
//! [`REQUIRED_COMMANDS`] and [`CROSS_SLOT_COMMANDS`]; [`run_in_background`] runs a workload
//! on its own thread while a test does something else (starts ferry, kills it, ...).
//!
//! On a [`Cluster`]: [`populate_cluster`] writes the same dataset (db 0) on the masters,
//! [`Workload::for_cluster`] keeps each op's keys in one slot with hash tags, and
//! [`run_in_background_cluster`] runs it while the test reshards or fails over; commands
//! follow `MOVED` and `ASK` (module `route`).

mod batch;
mod ops;
mod populate;
mod route;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

pub use ops::Workload;
pub use populate::{populate, populate_cluster};

use crate::{Cluster, Server};

/// What to write: which dbs, how many keys, how many with TTLs, how big the big ones are.
///
/// The same spec gives the same data (values, names, TTL deadlines) every time within one
/// test process, so two servers populated with one spec compare equal.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Seeds every random choice.
    pub seed: u64,
    /// The dbs written to. Default `[0, 1, 2]`.
    pub dbs: Vec<i64>,
    /// Keys [`populate`] writes per db (one of each type and encoding first, then a mix).
    pub keys_per_db: usize,
    /// Fraction of populated keys given a TTL (all at least an hour away).
    pub ttl_fraction: f64,
    /// Elements in each "big" collection (multi-node list, hashtable set/hash, skiplist
    /// zset). Default 2000.
    pub big_elements: usize,
}

impl Default for Spec {
    fn default() -> Self {
        Spec {
            seed: 42,
            dbs: vec![0, 1, 2],
            keys_per_db: 1000,
            ttl_fraction: 0.2,
            big_elements: 2000,
        }
    }
}

/// Commands a [`Workload`] issues at least once when run for 2000 ops or more (on Redis 7+
/// with at least two dbs in the spec; `SWAPDB` and `MOVE` need two dbs, `FCALL` and
/// `FUNCTION LOAD` need Redis 7). Subcommands are named with their container command.
pub const REQUIRED_COMMANDS: &[&str] = &[
    "APPEND",
    "BITOP",
    "BLPOP",
    "BRPOP",
    "BRPOPLPUSH",
    "DECR",
    "DECRBY",
    "DEL",
    "EVAL",
    "EVALSHA",
    "EXEC",
    "EXPIRE",
    "EXPIREAT",
    "GEOADD",
    "GETSET",
    "HDEL",
    "HINCRBY",
    "HINCRBYFLOAT",
    "HMSET",
    "HSET",
    "HSETNX",
    "INCR",
    "INCRBY",
    "INCRBYFLOAT",
    "LINSERT",
    "LPOP",
    "LPUSH",
    "LPUSHX",
    "LREM",
    "LSET",
    "LTRIM",
    "MOVE",
    "MSET",
    "MSETNX",
    "MULTI",
    "PERSIST",
    "PEXPIRE",
    "PEXPIREAT",
    "PFADD",
    "PFMERGE",
    "PSETEX",
    "RENAME",
    "RENAMENX",
    "RESTORE",
    "RPOP",
    "RPOPLPUSH",
    "RPUSH",
    "RPUSHX",
    "SADD",
    "SDIFFSTORE",
    "SELECT",
    "SET",
    "SETBIT",
    "SETEX",
    "SETNX",
    "SETRANGE",
    "SINTERSTORE",
    "SMOVE",
    "SPOP",
    "SREM",
    "SUNIONSTORE",
    "ZADD",
    "ZINCRBY",
    "ZINTERSTORE",
    "ZREM",
    "ZREMRANGEBYLEX",
    "ZUNIONSTORE",
    "ZREMRANGEBYRANK",
    "ZREMRANGEBYSCORE",
    "SWAPDB",
    "UNLINK",
    "XADD",
    "XCLAIM",
    "XDEL",
    "XAUTOCLAIM",
    "XGROUP CREATE",
    "XGROUP CREATECONSUMER",
    "XGROUP SETID",
    "XTRIM",
    "FCALL",
    "FUNCTION LOAD",
];

/// Multi-key commands a [`Workload`] on a standalone server issues at least once when run
/// for 2000 ops or more on Redis 7+ (with `dbs: vec![0]` as well), each time with keys in
/// different hash slots: commands a cluster refuses with `CROSSSLOT`, which a sync into a
/// cluster has to split or refuse. `DEL`, `UNLINK`, `MSET` and `MSETNX` always name two
/// keys or more. `LMOVE`, `BLMOVE`, `ZDIFFSTORE`, `ZRANGESTORE`, `COPY` and
/// `GEOSEARCHSTORE` need Redis 6.2. `GEORADIUS` is issued with `STORE`, `SORT` with `STORE`
/// and `ALPHA` (no `BY`/`GET` patterns).
pub const CROSS_SLOT_COMMANDS: &[&str] = &[
    "RENAME",
    "RENAMENX",
    "SMOVE",
    "RPOPLPUSH",
    "LMOVE",
    "BLMOVE",
    "SUNIONSTORE",
    "SINTERSTORE",
    "SDIFFSTORE",
    "ZUNIONSTORE",
    "ZINTERSTORE",
    "ZDIFFSTORE",
    "ZRANGESTORE",
    "BITOP",
    "PFMERGE",
    "COPY",
    "MSETNX",
    "MSET",
    "DEL",
    "UNLINK",
    "GEORADIUS",
    "GEOSEARCHSTORE",
    "SORT",
];

/// Ops per batch on the background thread; `stop` waits for at most one batch.
const BACKGROUND_BATCH: usize = 100;

/// Runs a [`Workload`] on `server` on its own thread until [`Background::stop`].
pub fn run_in_background(server: &Server, spec: Spec) -> Background {
    run_in_background_addr(&server.addr(), server.password(), spec)
}

/// Like [`run_in_background`], for a server given by `host:port` and optional password.
pub fn run_in_background_addr(addr: &str, password: Option<&str>, spec: Spec) -> Background {
    let (addr, password) = (addr.to_string(), password.map(str::to_string));
    background(move |stop, ops| {
        let mut conn = crate::server::connect(&addr, password.as_deref(), 0)
            .unwrap_or_else(|e| panic!("background workload: {e}"));
        let mut workload = Workload::new(&spec);
        let mut counts = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            for (name, n) in workload.run_conn(&mut conn, BACKGROUND_BATCH) {
                *counts.entry(name).or_insert(0) += n;
            }
            ops.fetch_add(BACKGROUND_BATCH as u64, Ordering::Relaxed);
        }
        counts
    })
}

/// Runs a [`Workload::for_cluster`] on `cluster` on its own thread until
/// [`Background::stop`]. Slots may move and replicas take over meanwhile: commands follow
/// the cluster's redirections. [`Background::stop`] panics if a command was misrouted in
/// the end ([`Workload::misrouted`]).
pub fn run_in_background_cluster(cluster: &Cluster, spec: Spec) -> Background {
    let (addrs, password) = (cluster.addrs(), cluster.password().map(str::to_string));
    background(move |stop, ops| {
        let mut router = route::Router::new(addrs, password.as_deref());
        let mut workload = Workload::for_cluster(&spec);
        let mut counts = BTreeMap::new();
        while !stop.load(Ordering::Relaxed) {
            for (name, n) in workload.run_router(&mut router, BACKGROUND_BATCH) {
                *counts.entry(name).or_insert(0) += n;
            }
            ops.fetch_add(BACKGROUND_BATCH as u64, Ordering::Relaxed);
        }
        assert!(
            workload.misrouted().is_empty(),
            "background cluster workload: commands misrouted: {:?}",
            workload.misrouted()
        );
        counts
    })
}

type Counts = BTreeMap<String, u64>;

/// Runs `body` (given the stop flag and the op counter) on a workload thread.
fn background(body: impl FnOnce(&AtomicBool, &AtomicU64) -> Counts + Send + 'static) -> Background {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let handle = {
        let (stop, ops) = (stop.clone(), ops.clone());
        std::thread::Builder::new()
            .name("testkit-workload".into())
            .spawn(move || body(&stop, &ops))
            .unwrap_or_else(|e| panic!("cannot spawn the workload thread: {e}"))
    };
    Background {
        stop,
        ops,
        handle: Some(handle),
    }
}

/// A workload running on its own thread; see [`run_in_background`].
pub struct Background {
    stop: Arc<AtomicBool>,
    ops: Arc<AtomicU64>,
    handle: Option<JoinHandle<BTreeMap<String, u64>>>,
}

impl Background {
    /// Ops completed so far (in whole batches), to wait for "some writes happened".
    pub fn ops_done(&self) -> u64 {
        self.ops.load(Ordering::Relaxed)
    }

    /// Stops after the current batch, joins the thread and returns the command counts.
    /// Re-raises the thread's panic (e.g. the server went away) in the caller.
    pub fn stop(mut self) -> BTreeMap<String, u64> {
        self.stop.store(true, Ordering::Relaxed);
        let handle = self.handle.take().expect("joined only here");
        match handle.join() {
            Ok(counts) => counts,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}
