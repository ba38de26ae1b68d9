//! Datasets and write workloads for a real Redis.
//!
//! [`populate`] fills a server with a deterministic dataset holding every type and encoding
//! Redis has; [`Workload`] issues deterministic random writes covering
//! [`REQUIRED_COMMANDS`]; [`run_in_background`] runs a workload on its own thread while a
//! test does something else (starts ferry, kills it, ...).

mod batch;
mod ops;
mod populate;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;

pub use ops::Workload;
pub use populate::populate;

use crate::Server;

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

/// Ops per batch on the background thread; `stop` waits for at most one batch.
const BACKGROUND_BATCH: usize = 100;

/// Runs a [`Workload`] on `server` on its own thread until [`Background::stop`].
pub fn run_in_background(server: &Server, spec: Spec) -> Background {
    run_in_background_addr(&server.addr(), server.password(), spec)
}

/// Like [`run_in_background`], for a server given by `host:port` and optional password.
pub fn run_in_background_addr(addr: &str, password: Option<&str>, spec: Spec) -> Background {
    let stop = Arc::new(AtomicBool::new(false));
    let ops = Arc::new(AtomicU64::new(0));
    let (addr, password) = (addr.to_string(), password.map(str::to_string));
    let handle = {
        let (stop, ops) = (stop.clone(), ops.clone());
        std::thread::Builder::new()
            .name("testkit-workload".into())
            .spawn(move || {
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
