//! Key-by-key comparison of two Redis servers: key set, type, `DEBUG DIGEST-VALUE`, TTL,
//! stream consumer groups, and function libraries.
//!
//! Each side is walked with `SCAN`; each batch of keys is read on both sides with `TYPE`,
//! `DEBUG DIGEST-VALUE` and the expiry time inside one `MULTI`/`EXEC` (so a key cannot expire
//! between the three reads). Expiry is read as an absolute time (`PEXPIRETIME`, Redis 7+), so
//! the two sides agree however far apart in time they were read (digesting a 200,000-element
//! key takes seconds); older servers give `PTTL`, turned absolute with the local clock. A key present on one side only is read again before it is
//! reported: gone from both sides, or present only with a TTL within the tolerance of
//! running out, is not a difference (it is expiring, and expiry is not a sync bug).
//! Keys starting with `__ferry:` are ferry's own and are skipped.
//!
//! Either side may be a cluster ([`Side::Cluster`], [`compare_sides`]): its masters are
//! read from `CLUSTER SLOTS`, each is walked with `SCAN`, and each key is read on the
//! master owning its slot, with one `MULTI`/`EXEC` per key (a transaction may not span
//! slots). With a cluster on either side only db 0 is compared. A cluster node given as a
//! standalone side is read with per-key transactions and `READONLY` too, so a cluster
//! master compares with its replica.
//!
//! Across versions: Redis 7.2 (and Valkey) print doubles shortest-round-trip where 7.0 and
//! older print `%.17g`, in replies and in `DEBUG DIGEST-VALUE` alike, so a sorted set's digest
//! differs between the two families whenever a score prints differently (`-0.1`,
//! `-0.10000000000000001`); such a key is compared again member by member with the scores as
//! numbers. With a 5.x server on either side stream consumer groups are not compared
//! (`XINFO STREAM FULL` is 6.0+), and the fields 7.0 added to it only when both sides have
//! them.

mod report;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{Pipeline, Value, cmd};

pub use report::{Diff, Problem, Report};

use crate::cluster::{SLOTS, key_slot, read_slots};
use crate::wire;
use crate::{Cluster, Server};

/// Keys ferry writes itself; never compared.
pub const FERRY_PREFIX: &[u8] = b"__ferry:";

/// Keys per `SCAN` call and per read batch.
const BATCH: usize = 1000;

/// What to compare and how strictly.
#[derive(Clone, Debug)]
pub struct Options {
    /// Dbs to compare; empty means every db that has keys on either side (`INFO keyspace`).
    pub dbs: Vec<i64>,
    /// Largest difference between the two sides' remaining TTLs that still counts as equal.
    /// Default 2000.
    pub ttl_tolerance_ms: i64,
    /// Stop after this many differences. Default 20.
    pub max_diffs: usize,
    /// Compare each consumer group's `entries-read` and `lag`. Default true. Turn it off for a
    /// target fed by the replication stream: Redis 7.0 propagates XREADGROUP as `XCLAIM ...
    /// LASTID`, which does not carry the group's read counter, so Redis's own replicas drift
    /// from their master there too (seen: replica entries-read 2 / lag 1, master 3 / 0).
    pub group_read_counters: bool,
    /// Compare consumers that have no pending entries. Default true. Turn it off for a source
    /// of 7.2 or later (Redis 8, Valkey) fed through its stream: such servers do not replicate
    /// consumers created without pending entries, and their own replicas lack them too (seen
    /// after the same workload with valkey 8.0.1 and redis 8.0.2: master consumers=[c0],
    /// replica consumers=[]; redis 7.0.15 replicates them).
    pub idle_consumers: bool,
    /// Compare consumer groups' progress: last-delivered id, read counters, pending entries
    /// (owner, delivery count) and each consumer's pending entries. Default true. Turn it off
    /// for a scan-mode sync while it follows: Redis publishes no keyspace event for
    /// `XREADGROUP`, `XACK`, `XCLAIM` or `XAUTOCLAIM`, so that progress reaches the target only
    /// with the key's next notified change or the next full pass. Groups and consumers are
    /// still compared by name.
    pub group_progress: bool,
    /// Where each source key is expected on the target, for a sync that renames keys, moves
    /// them to other dbs or drops them (a transform). Default none: the same key in the same
    /// db. With a map, every source key is compared with its image, and a target key that is
    /// no source key's image is reported as extra.
    pub key_map: Option<KeyMap>,
    /// The source keys the target should hold, for a sync that filters: called with the
    /// source db, the key and its type (as `TYPE` names it). A source key it rejects counts
    /// as absent from the source (so its presence on the target is a difference). Default:
    /// every key.
    pub expect: Option<KeyFilter>,
    /// Source db → target db, for a sync that maps dbs; dbs not named keep their number.
    /// The source's db `s` is compared with the target's `map(s)`; keys in a target db no
    /// source db maps to are reported as extra. Default: none. (Ignored with a `key_map`,
    /// which says the db of each key itself.)
    pub db_map: Vec<(i64, i64)>,
    /// What the target's expiries should have on top of the source's, in ms (a sync that
    /// extends TTLs). Default 0.
    pub ttl_offset_ms: i64,
}

/// A predicate over (source db, key, type): see [`Options::expect`].
#[derive(Clone)]
pub struct KeyFilter(pub Arc<KeyPredicate>);

/// (source db, key, type) → whether the target should hold the key.
pub type KeyPredicate = dyn Fn(i64, &[u8], &str) -> bool + Send + Sync;

impl KeyFilter {
    /// A filter from a closure.
    pub fn new(f: impl Fn(i64, &[u8], &str) -> bool + Send + Sync + 'static) -> KeyFilter {
        KeyFilter(Arc::new(f))
    }
}

impl std::fmt::Debug for KeyFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyFilter(..)")
    }
}

/// A source key's db and name to the db and name it should have on the target, or `None`
/// when it should not be there at all.
#[derive(Clone)]
pub struct KeyMap(Arc<KeyMapFn>);

type KeyMapFn = dyn Fn(i64, &[u8]) -> Option<(i64, Vec<u8>)> + Send + Sync;

impl KeyMap {
    pub fn new(map: impl Fn(i64, &[u8]) -> Option<(i64, Vec<u8>)> + Send + Sync + 'static) -> Self {
        KeyMap(Arc::new(map))
    }

    fn apply(&self, db: i64, key: &[u8]) -> Option<(i64, Vec<u8>)> {
        (self.0)(db, key)
    }
}

impl std::fmt::Debug for KeyMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMap(..)")
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            dbs: Vec::new(),
            ttl_tolerance_ms: 2000,
            max_diffs: 20,
            group_read_counters: true,
            idle_consumers: true,
            group_progress: true,
            key_map: None,
            expect: None,
            db_map: Vec::new(),
            ttl_offset_ms: 0,
        }
    }
}

/// One side of a comparison: a standalone server or a cluster.
///
/// Build one with [`Side::standalone`], [`Side::cluster`], or `From` a [`Server`] or a
/// [`Cluster`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Side {
    /// A standalone server (or a single node): every db [`Options::dbs`] names.
    Standalone {
        /// `host:port`.
        addr: String,
        password: Option<String>,
    },
    /// A Redis Cluster, db 0 only. The masters and who owns which slot are read from
    /// `CLUSTER SLOTS` (asking the first node that answers) when a comparison starts; keys
    /// are listed with `SCAN` on every master and each key is read on the master owning
    /// its slot.
    Cluster {
        /// `host:port` of some or all nodes.
        nodes: Vec<String>,
        password: Option<String>,
    },
}

impl Side {
    /// A standalone server at `addr` (`host:port`).
    pub fn standalone(addr: &str, password: Option<&str>) -> Side {
        Side::Standalone {
            addr: addr.to_string(),
            password: password.map(str::to_string),
        }
    }

    /// A cluster reached through any of `nodes` (`host:port`).
    pub fn cluster<S: AsRef<str>>(nodes: &[S], password: Option<&str>) -> Side {
        Side::Cluster {
            nodes: nodes.iter().map(|n| n.as_ref().to_string()).collect(),
            password: password.map(str::to_string),
        }
    }

    /// How reports name it: the address, or `cluster <addr>,<addr>...`.
    pub fn label(&self) -> String {
        match self {
            Side::Standalone { addr, .. } => addr.clone(),
            Side::Cluster { nodes, .. } => format!("cluster {}", nodes.join(",")),
        }
    }

    fn is_cluster(&self) -> bool {
        matches!(self, Side::Cluster { .. })
    }
}

impl From<&Server> for Side {
    fn from(server: &Server) -> Side {
        Side::standalone(&server.addr(), server.password())
    }
}

impl From<&Cluster> for Side {
    fn from(cluster: &Cluster) -> Side {
        Side::cluster(&cluster.addrs(), cluster.password())
    }
}

/// Compares every key (and function library) of `source` and `target`.
///
/// Returns the number of keys found on both sides and compared, or a [`Report`] listing
/// the first differences.
pub fn compare(source: &Server, target: &Server, opts: &Options) -> Result<u64, Report> {
    compare_sides(&source.into(), &target.into(), opts)
}

/// Like [`compare`], for servers given by `host:port` and optional password.
pub fn compare_addrs(
    source: &str,
    source_password: Option<&str>,
    target: &str,
    target_password: Option<&str>,
    opts: &Options,
) -> Result<u64, Report> {
    compare_sides(
        &Side::standalone(source, source_password),
        &Side::standalone(target, target_password),
        opts,
    )
}

/// Like [`compare`], for any two sides: standalone servers or clusters. When either side
/// is a cluster only db 0 is compared (and the source db [`Options::db_map`] maps into it),
/// whatever [`Options::dbs`] says.
pub fn compare_sides(source: &Side, target: &Side, opts: &Options) -> Result<u64, Report> {
    let mut report = Report::new(&source.label(), &target.label());
    let run = || -> Result<Walk, String> {
        let src = Reader::connect(source)?;
        let dst = Reader::connect(target)?;
        let mut opts = opts.clone();
        if source.is_cluster() || target.is_cluster() {
            // Db 0 of the cluster, and the source db mapped into it.
            let source_db = opts
                .db_map
                .iter()
                .find(|(_, t)| *t == 0)
                .map_or(0, |(s, _)| *s);
            opts.dbs = vec![source_db];
        }
        if opts.key_map.is_none() && !opts.db_map.is_empty() {
            // A db map is a key map that keeps every name.
            let map = opts.db_map.clone();
            opts.key_map = Some(KeyMap::new(move |db, key| {
                let to = map.iter().find(|(s, _)| *s == db).map_or(db, |(_, t)| *t);
                Some((to, key.to_vec()))
            }));
        }
        let mut walk = Walk {
            src,
            dst,
            opts,
            diffs: Vec::new(),
            compared: 0,
            zsets: Vec::new(),
            images: HashSet::new(),
        };
        walk.run()?;
        Ok(walk)
    };
    match run() {
        Ok(walk) => {
            report.compared = walk.compared;
            report.truncated = walk.diffs.len() >= opts.max_diffs.max(1);
            report.diffs = walk.diffs;
        }
        Err(error) => report.error = Some(error),
    }
    if report.diffs.is_empty() && report.error.is_none() {
        Ok(report.compared)
    } else {
        Err(report)
    }
}

/// Polls [`compare`] until it passes or `timeout` has passed; returns the last result.
pub fn eventually_equal(
    source: &Server,
    target: &Server,
    opts: &Options,
    timeout: Duration,
) -> Result<u64, Report> {
    eventually_equal_sides(&source.into(), &target.into(), opts, timeout)
}

/// Like [`eventually_equal`], for servers given by `host:port` and optional password.
pub fn eventually_equal_addrs(
    source: &str,
    source_password: Option<&str>,
    target: &str,
    target_password: Option<&str>,
    opts: &Options,
    timeout: Duration,
) -> Result<u64, Report> {
    eventually_equal_sides(
        &Side::standalone(source, source_password),
        &Side::standalone(target, target_password),
        opts,
        timeout,
    )
}

/// Polls [`compare_sides`] until it passes or `timeout` has passed; returns the last result.
pub fn eventually_equal_sides(
    source: &Side,
    target: &Side,
    opts: &Options,
    timeout: Duration,
) -> Result<u64, Report> {
    let deadline = Instant::now() + timeout;
    loop {
        let result = compare_sides(source, target, opts);
        if result.is_ok() || Instant::now() >= deadline {
            return result;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One server being walked.
struct Node {
    conn: redis::Connection,
    addr: String,
    /// A cluster node: each key's reads get their own `MULTI`/`EXEC` (a transaction may
    /// not span slots there).
    per_key_tx: bool,
    version: (u32, u32, u32),
    major: u32,
}

impl Node {
    /// Connects to `addr`. A node in cluster mode (a cluster side's master, or a cluster
    /// node given as a standalone side, e.g. to compare a master with its replica) gets
    /// per-key transactions and `READONLY` (a replica then serves its master's keys).
    fn connect(addr: &str, password: Option<&str>) -> Result<Node, String> {
        let mut conn = crate::server::connect(addr, password, 0)?;
        let text: String = cmd("INFO")
            .arg("server")
            .query(&mut conn)
            .map_err(|e| format!("INFO on {addr}: {e}"))?;
        let cluster: String = cmd("INFO")
            .arg("cluster")
            .query(&mut conn)
            .map_err(|e| format!("INFO cluster on {addr}: {e}"))?;
        let per_key_tx = crate::server::parse_info(&cluster)
            .get("cluster_enabled")
            .is_some_and(|v| v == "1");
        if per_key_tx {
            cmd("READONLY")
                .query::<()>(&mut conn)
                .map_err(|e| format!("READONLY on {addr}: {e}"))?;
        }
        let info = crate::server::parse_info(&text);
        let version = info
            .get("redis_version")
            .and_then(|v| crate::server::parse_version(v))
            .unwrap_or((0, 0, 0));
        Ok(Node {
            conn,
            addr: addr.to_string(),
            per_key_tx,
            version,
            major: version.0,
        })
    }

    fn send(&mut self, pipe: &Pipeline) -> Result<Vec<Value>, String> {
        wire::send(&mut self.conn, pipe)
            .map_err(|e| format!("connection to {} failed: {e}", self.addr))
    }

    /// Dbs with keys, from `INFO keyspace`.
    fn dbs(&mut self) -> Result<BTreeSet<i64>, String> {
        let text: String = cmd("INFO")
            .arg("keyspace")
            .query(&mut self.conn)
            .map_err(|e| format!("INFO keyspace on {}: {e}", self.addr))?;
        Ok(crate::server::parse_info(&text)
            .keys()
            .filter_map(|k| k.strip_prefix("db")?.parse().ok())
            .collect())
    }

    /// One `SCAN` step in `db`: the next cursor and the keys.
    fn scan(&mut self, db: i64, cursor: u64) -> Result<(u64, Vec<Vec<u8>>), String> {
        let mut pipe = redis::pipe();
        pipe.cmd("SELECT").arg(db);
        pipe.cmd("SCAN").arg(cursor).arg("COUNT").arg(BATCH);
        let replies = self.send(&pipe)?;
        let reply = fail_on_error(&self.addr, &replies)?
            .pop()
            .unwrap_or(Value::Nil);
        let parts = wire::items(&reply)
            .ok_or_else(|| format!("SCAN on {}: odd reply {reply:?}", self.addr))?;
        let next = parts.first().and_then(wire::int).map(|c| c as u64);
        let keys = parts.get(1).and_then(wire::items);
        match (next, keys) {
            (Some(next), Some(keys)) => Ok((next, keys.iter().filter_map(wire::bytes).collect())),
            _ => Err(format!("SCAN on {}: odd reply {reply:?}", self.addr)),
        }
    }

    /// `TYPE`, `DEBUG DIGEST-VALUE` and expiry time of each key, read atomically.
    fn probe(&mut self, db: i64, keys: &[Vec<u8>]) -> Result<Vec<Probe>, String> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        pipe.cmd("SELECT").arg(db);
        if !self.per_key_tx {
            pipe.cmd("MULTI");
        }
        for key in keys {
            if self.per_key_tx {
                pipe.cmd("MULTI");
            }
            pipe.cmd("TYPE").arg(key);
            pipe.cmd("DEBUG").arg("DIGEST-VALUE").arg(key);
            pipe.cmd(if self.major >= 7 {
                "PEXPIRETIME"
            } else {
                "PTTL"
            })
            .arg(key);
            if self.per_key_tx {
                pipe.cmd("EXEC");
            }
        }
        if !self.per_key_tx {
            pipe.cmd("EXEC");
        }
        let replies = self.send(&pipe)?;
        let replies = fail_on_error(&self.addr, &replies).map_err(|e| {
            if e.contains("DEBUG") {
                format!("{e} (start redis-server with `--enable-debug-command yes`)")
            } else {
                e
            }
        })?;
        let exec: Vec<Value> = if self.per_key_tx {
            // SELECT, then MULTI, 3 x QUEUED, EXEC per key.
            replies
                .iter()
                .skip(1)
                .skip(4)
                .step_by(5)
                .flat_map(|r| wire::items(r).unwrap_or_default().to_vec())
                .collect()
        } else {
            let last = replies.last().and_then(wire::items).unwrap_or_default();
            last.to_vec()
        };
        if exec.len() != keys.len() * 3 {
            return Err(format!(
                "{}: EXEC gave {} replies for {} reads",
                self.addr,
                exec.len(),
                keys.len() * 3
            ));
        }
        exec.chunks(3)
            .map(|r| {
                let digest = match &r[1] {
                    Value::Array(a) => a.first().and_then(wire::bytes),
                    other => wire::bytes(other),
                };
                Ok(Probe {
                    kind: wire::text(&r[0])
                        .ok_or_else(|| format!("{}: TYPE gave {:?}", self.addr, r[0]))?,
                    digest: digest.ok_or_else(|| {
                        format!("{}: DEBUG DIGEST-VALUE gave {:?}", self.addr, r[1])
                    })?,
                    expire_at: match wire::int(&r[2]) {
                        Some(t) if t >= 0 && self.major < 7 => now_ms() + t,
                        Some(t) => t,
                        None => return Err(format!("{}: expiry read gave {:?}", self.addr, r[2])),
                    },
                })
            })
            .collect()
    }

    /// Consumer groups, consumers and pending entries of each stream, without the
    /// wall-clock fields (seen/active/delivery times) and the entries (the digest has them).
    fn stream_meta(
        &mut self,
        db: i64,
        keys: &[Vec<u8>],
        fields: StreamFields,
    ) -> Result<Vec<Option<String>>, String> {
        let mut pipe = redis::pipe();
        pipe.cmd("SELECT").arg(db);
        for key in keys {
            pipe.cmd("XINFO")
                .arg("STREAM")
                .arg(key)
                .arg("FULL")
                .arg("COUNT")
                .arg(0);
        }
        let replies = self.send(&pipe)?;
        // An error here means the key is gone: report it as absent.
        Ok(replies[1..]
            .iter()
            .map(|r| {
                wire::error_text(r)
                    .is_none()
                    .then(|| stream_meta(r, fields))
            })
            .collect())
    }

    /// A sorted set's members in order with their scores, read `BATCH` at a time; `None`
    /// when the key is no longer a sorted set.
    fn zset_items(&mut self, db: i64, key: &[u8]) -> Result<Option<ZsetItems>, String> {
        let mut out = Vec::new();
        loop {
            let mut pipe = redis::pipe();
            pipe.cmd("SELECT").arg(db);
            pipe.cmd("ZRANGE")
                .arg(key)
                .arg(out.len())
                .arg(out.len() + BATCH - 1)
                .arg("WITHSCORES");
            let replies = self.send(&pipe)?;
            fail_on_error(&self.addr, &replies[..1])?; // SELECT
            let reply = replies.get(1).cloned().unwrap_or(Value::Nil);
            if wire::error_text(&reply).is_some() {
                return Ok(None); // WRONGTYPE: no longer a sorted set
            }
            let odd = || format!("ZRANGE on {}: odd reply {reply:?}", self.addr);
            // RESP2: member, score, member, score...; RESP3: [member, score] pairs.
            let mut flat: Vec<&Value> = Vec::new();
            for item in wire::items(&reply).ok_or_else(odd)? {
                match wire::items(item) {
                    Some(pair) => flat.extend(pair),
                    None => flat.push(item),
                }
            }
            if !flat.len().is_multiple_of(2) {
                return Err(odd());
            }
            let before = out.len();
            for pair in flat.chunks(2) {
                let member = wire::bytes(pair[0]).ok_or_else(odd)?;
                let score = match pair[1] {
                    Value::Double(d) => *d,
                    other => wire::text(other)
                        .and_then(|t| t.parse::<f64>().ok())
                        .ok_or_else(odd)?,
                };
                out.push((member, score));
            }
            if out.len() - before < BATCH {
                return Ok(Some(out));
            }
        }
    }

    /// Function libraries by name, with their code.
    fn libraries(&mut self) -> Result<BTreeMap<String, String>, String> {
        let listed: Value = cmd("FUNCTION")
            .arg("LIST")
            .arg("WITHCODE")
            .query(&mut self.conn)
            .map_err(|e| format!("FUNCTION LIST on {}: {e}", self.addr))?;
        let mut libs = BTreeMap::new();
        for lib in wire::items(&listed).unwrap_or_default() {
            let fields = pairs(lib);
            let get = |name: &str| {
                fields
                    .iter()
                    .find(|(k, _)| k == name)
                    .and_then(|(_, v)| wire::text(v))
            };
            if let Some(name) = get("library_name") {
                libs.insert(name, get("library_code").unwrap_or_default());
            }
        }
        Ok(libs)
    }
}

/// One side being walked: a standalone server, or every master of a cluster with the
/// slot map routing each key to its master.
struct Reader {
    nodes: Vec<Node>,
    /// For a cluster: the index in `nodes` of each slot's master.
    owners: Option<Vec<usize>>,
    /// Lowest major version among the nodes.
    major: u32,
    /// Redis 7.2+ (Valkey too): doubles printed shortest-round-trip, not `%.17g`.
    shortest_doubles: bool,
}

/// Where a walk of one side's keys is: which node, which `SCAN` cursor.
#[derive(Default)]
struct Cursor {
    node: usize,
    at: u64,
}

impl Reader {
    fn connect(side: &Side) -> Result<Reader, String> {
        let (nodes, owners) = match side {
            Side::Standalone { addr, password } => {
                (vec![Node::connect(addr, password.as_deref())?], None)
            }
            Side::Cluster { nodes, password } => {
                let password = password.as_deref();
                let mut ranges = Err(format!("{}: no nodes given", side.label()));
                for seed in nodes {
                    ranges = crate::server::connect(seed, password, 0)
                        .and_then(|mut conn| read_slots(&mut conn, seed));
                    if ranges.is_ok() {
                        break;
                    }
                }
                let ranges = ranges?;
                let mut masters: Vec<String> = Vec::new();
                let mut owners = vec![usize::MAX; usize::from(SLOTS)];
                for range in &ranges {
                    let i = match masters.iter().position(|m| *m == range.master) {
                        Some(i) => i,
                        None => {
                            masters.push(range.master.clone());
                            masters.len() - 1
                        }
                    };
                    owners[usize::from(range.start)..=usize::from(range.end)].fill(i);
                }
                if let Some(slot) = owners.iter().position(|o| *o == usize::MAX) {
                    return Err(format!("{}: slot {slot} has no owner", side.label()));
                }
                let nodes = masters
                    .iter()
                    .map(|m| Node::connect(m, password))
                    .collect::<Result<Vec<Node>, String>>()?;
                (nodes, Some(owners))
            }
        };
        let lowest = nodes.iter().map(|n| n.version).min().unwrap_or((0, 0, 0));
        Ok(Reader {
            nodes,
            owners,
            major: lowest.0,
            shortest_doubles: lowest >= (7, 2, 0),
        })
    }

    /// The index in `nodes` of the node holding `key`.
    fn node_of(&self, key: &[u8]) -> usize {
        self.owners
            .as_ref()
            .map_or(0, |owners| owners[usize::from(key_slot(key))])
    }

    /// `keys` split by node: for each node, the positions in `keys` of its keys.
    fn by_node(&self, keys: &[Vec<u8>]) -> Vec<Vec<usize>> {
        let mut out = vec![Vec::new(); self.nodes.len()];
        for (i, key) in keys.iter().enumerate() {
            out[self.node_of(key)].push(i);
        }
        out
    }

    /// Runs `read` on each node with its share of `keys`; the results back in `keys` order.
    fn per_node<T>(
        &mut self,
        keys: &[Vec<u8>],
        mut read: impl FnMut(&mut Node, &[Vec<u8>]) -> Result<Vec<T>, String>,
    ) -> Result<Vec<T>, String> {
        if self.nodes.len() == 1 {
            return read(&mut self.nodes[0], keys);
        }
        let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(keys.len()).collect();
        for (node, positions) in self.by_node(keys).into_iter().enumerate() {
            if positions.is_empty() {
                continue;
            }
            let share: Vec<Vec<u8>> = positions.iter().map(|&i| keys[i].clone()).collect();
            let results = read(&mut self.nodes[node], &share)?;
            for (i, result) in positions.into_iter().zip(results) {
                out[i] = Some(result);
            }
        }
        out.into_iter()
            .map(|r| r.ok_or_else(|| "a read gave fewer results than keys".to_string()))
            .collect()
    }

    /// Dbs with keys: `INFO keyspace` of a standalone server; db 0 of a cluster.
    fn dbs(&mut self) -> Result<BTreeSet<i64>, String> {
        match self.owners {
            Some(_) => Ok([0].into()),
            None => self.nodes[0].dbs(),
        }
    }

    /// The next keys of `db`, walking every node in turn; `None` when all are walked.
    fn scan(&mut self, db: i64, cursor: &mut Cursor) -> Result<Option<Vec<Vec<u8>>>, String> {
        let Some(node) = self.nodes.get_mut(cursor.node) else {
            return Ok(None);
        };
        let (next, keys) = node.scan(db, cursor.at)?;
        if next == 0 {
            *cursor = Cursor {
                node: cursor.node + 1,
                at: 0,
            };
        } else {
            cursor.at = next;
        }
        Ok(Some(keys))
    }

    fn probe(&mut self, db: i64, keys: &[Vec<u8>]) -> Result<Vec<Probe>, String> {
        self.per_node(keys, |node, keys| node.probe(db, keys))
    }

    fn stream_meta(
        &mut self,
        db: i64,
        keys: &[Vec<u8>],
        fields: StreamFields,
    ) -> Result<Vec<Option<String>>, String> {
        self.per_node(keys, |node, keys| node.stream_meta(db, keys, fields))
    }

    fn zset_items(&mut self, db: i64, key: &[u8]) -> Result<Option<ZsetItems>, String> {
        let node = self.node_of(key);
        self.nodes[node].zset_items(db, key)
    }

    /// Function libraries; on a cluster every master must hold the same ones.
    fn libraries(&mut self) -> Result<BTreeMap<String, String>, String> {
        let mut first: Option<(String, BTreeMap<String, String>)> = None;
        for node in &mut self.nodes {
            let libs = node.libraries()?;
            match &first {
                None => first = Some((node.addr.clone(), libs)),
                Some((addr, other)) if *other != libs => {
                    let names =
                        |l: &BTreeMap<String, String>| l.keys().cloned().collect::<Vec<_>>();
                    return Err(format!(
                        "cluster masters hold different function libraries: {addr} {:?}, {} {:?}",
                        names(other),
                        node.addr,
                        names(&libs)
                    ));
                }
                Some(_) => {}
            }
        }
        Ok(first.map(|(_, libs)| libs).unwrap_or_default())
    }
}

/// Key names, in the order they are compared.
type Keys = Vec<Vec<u8>>;

/// A sorted set's (member, score) pairs in order.
type ZsetItems = Vec<(Vec<u8>, f64)>;

/// The first server error among `replies` as `Err`, else the replies.
fn fail_on_error(addr: &str, replies: &[Value]) -> Result<Vec<Value>, String> {
    match replies.iter().find_map(wire::error_text) {
        Some(err) => Err(format!("{addr} answered {err}")),
        None => Ok(replies.to_vec()),
    }
}

/// What one side holds for one key.
#[derive(Clone, Debug)]
struct Probe {
    /// `TYPE`: "none" when absent.
    kind: String,
    digest: Vec<u8>,
    /// Absolute expiry in unix ms; -1: no TTL, -2: absent.
    expire_at: i64,
}

impl Probe {
    fn absent() -> Probe {
        Probe {
            kind: "none".into(),
            digest: Vec::new(),
            expire_at: -2,
        }
    }

    fn present(&self) -> bool {
        self.kind != "none" && self.expire_at != -2
    }

    /// Present with a TTL running out within `tolerance`.
    fn expiring(&self, tolerance: i64) -> bool {
        self.present() && self.expire_at >= 0 && self.expire_at - now_ms() <= tolerance
    }

    /// Remaining TTL in ms as of `now`, or None without a TTL.
    fn ttl(&self, now: i64) -> Option<i64> {
        (self.expire_at >= 0).then(|| self.expire_at - now)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

struct Walk {
    src: Reader,
    dst: Reader,
    opts: Options,
    diffs: Vec<Diff>,
    compared: u64,
    /// Sorted sets whose digests differ only maybe (see the module doc), to read again:
    /// their positions in the keys being compared.
    zsets: Vec<usize>,
    /// With a key map: the target keys (db, name) that are some source key's image.
    images: HashSet<(i64, Vec<u8>)>,
}

impl Walk {
    fn full(&self) -> bool {
        self.diffs.len() >= self.opts.max_diffs.max(1)
    }

    fn run(&mut self) -> Result<(), String> {
        let dbs: Vec<i64> = if self.opts.dbs.is_empty() {
            let mut dbs = self.src.dbs()?;
            dbs.extend(self.dst.dbs()?);
            dbs.into_iter().collect()
        } else {
            self.opts.dbs.clone()
        };
        for &db in &dbs {
            self.db(db)?;
            if self.full() {
                return Ok(());
            }
        }
        if self.opts.key_map.is_some() {
            // Every target db that holds keys or received some source key's image.
            let mut targets: BTreeSet<i64> = match self.opts.dbs.is_empty() {
                true => self.dst.dbs()?.into_iter().collect(),
                false => BTreeSet::new(),
            };
            targets.extend(self.images.iter().map(|(db, _)| *db));
            if !self.opts.dbs.is_empty() && self.images.is_empty() {
                targets.extend(self.opts.dbs.iter().copied());
            }
            for db in targets {
                self.extra_on_target(db)?;
            }
        }
        if self.src.major >= 7 && self.dst.major >= 7 {
            self.functions()?;
        }
        Ok(())
    }

    fn db(&mut self, db: i64) -> Result<(), String> {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        // Every key of the source...
        let mut cursor = Cursor::default();
        while let Some(keys) = self.src.scan(db, &mut cursor)? {
            let fresh: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| !k.starts_with(FERRY_PREFIX) && seen.insert(k.clone()))
                .collect();
            match self.opts.key_map.clone() {
                None => self.keys((db, &fresh), (db, &fresh))?,
                Some(map) => {
                    // Each source key against its image, grouped by the image's db.
                    let mut by_db: BTreeMap<i64, (Keys, Keys)> = BTreeMap::new();
                    for key in fresh {
                        if let Some((to_db, to_key)) = map.apply(db, &key) {
                            self.images.insert((to_db, to_key.clone()));
                            let group = by_db.entry(to_db).or_default();
                            group.0.push(key);
                            group.1.push(to_key);
                        }
                    }
                    for (to_db, (keys, images)) in by_db {
                        self.keys((db, &keys), (to_db, &images))?;
                    }
                }
            }
            if self.full() {
                break;
            }
        }
        if self.opts.key_map.is_some() {
            // The target's keys are checked once every source db has been walked.
            return Ok(());
        }
        // ...then the target's keys the source scan did not return.
        let mut cursor = Cursor::default();
        while !self.full() {
            let Some(keys) = self.dst.scan(db, &mut cursor)? else {
                break;
            };
            let fresh: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| !k.starts_with(FERRY_PREFIX) && seen.insert(k.clone()))
                .collect();
            self.keys((db, &fresh), (db, &fresh))?;
        }
        Ok(())
    }

    /// With a key map: the target's keys in `db` that are no source key's image, unless they
    /// are about to expire.
    fn extra_on_target(&mut self, db: i64) -> Result<(), String> {
        let mut seen: HashSet<Vec<u8>> = HashSet::new();
        let mut cursor = Cursor::default();
        while !self.full() {
            let Some(keys) = self.dst.scan(db, &mut cursor)? else {
                break;
            };
            let extra: Vec<Vec<u8>> = keys
                .into_iter()
                .filter(|k| {
                    !k.starts_with(FERRY_PREFIX)
                        && !self.images.contains(&(db, k.clone()))
                        && seen.insert(k.clone())
                })
                .collect();
            let probes = self.dst.probe(db, &extra)?;
            let tolerance = self.opts.ttl_tolerance_ms;
            for (key, t) in extra.iter().zip(probes) {
                if t.present() && !t.expiring(tolerance) {
                    self.diff(db, key, Problem::ExtraOnTarget);
                }
            }
        }
        Ok(())
    }

    /// Reads `keys` of `db` on the source and `images` of `to_db` on the target; a source key
    /// [`Options::expect`] rejects reads as absent, and the target's expiries are taken back
    /// by [`Options::ttl_offset_ms`].
    fn probe_both(
        &mut self,
        (db, keys): (i64, &[Vec<u8>]),
        (to_db, images): (i64, &[Vec<u8>]),
    ) -> Result<(Vec<Probe>, Vec<Probe>), String> {
        let (src, dst) = both(&mut self.src, &mut self.dst, |side, source| match source {
            true => side.probe(db, keys),
            false => side.probe(to_db, images),
        });
        let (mut src, mut dst) = (src?, dst?);
        if let Some(expect) = &self.opts.expect {
            for (key, p) in keys.iter().zip(src.iter_mut()) {
                if p.present() && !(expect.0)(db, key, &p.kind) {
                    *p = Probe::absent();
                }
            }
        }
        if self.opts.ttl_offset_ms != 0 {
            for p in dst.iter_mut().filter(|p| p.expire_at >= 0) {
                p.expire_at -= self.opts.ttl_offset_ms;
            }
        }
        Ok((src, dst))
    }

    /// Compares `keys` of `db` on the source with `images` of `to_db` on the target (the
    /// same keys and db without a key map), key by key.
    fn keys(
        &mut self,
        (db, keys): (i64, &[Vec<u8>]),
        (to_db, images): (i64, &[Vec<u8>]),
    ) -> Result<(), String> {
        let (src, dst) = self.probe_both((db, keys), (to_db, images))?;
        let mut one_sided = Vec::new();
        let mut streams = Vec::new();
        for (i, (s, t)) in src.iter().zip(&dst).enumerate() {
            match (s.present(), t.present()) {
                (false, false) => {}
                (true, true) => self.pair(db, i, &keys[i], s, t, &mut streams),
                _ => one_sided.push(i),
            }
        }
        // Read one-sided keys again: a key may have expired (or been written) between the
        // two sides' reads.
        let pick = |from: &[Vec<u8>]| one_sided.iter().map(|&i| from[i].clone()).collect();
        let (again, again_images): (Vec<Vec<u8>>, Vec<Vec<u8>>) = (pick(keys), pick(images));
        let (src, dst) = self.probe_both((db, &again), (to_db, &again_images))?;
        let tolerance = self.opts.ttl_tolerance_ms;
        for ((&i, s), t) in one_sided.iter().zip(&src).zip(&dst) {
            let key = &keys[i];
            match (s.present(), t.present()) {
                (false, false) => {}
                (true, true) => self.pair(db, i, key, s, t, &mut streams),
                (true, false) if !s.expiring(tolerance) => {
                    self.diff(db, key, Problem::MissingOnTarget)
                }
                // Extra: named as the target holds it.
                (false, true) if !t.expiring(tolerance) => {
                    let image = images[i].clone();
                    self.diff(to_db, &image, Problem::ExtraOnTarget)
                }
                _ => {}
            }
        }
        for i in std::mem::take(&mut self.zsets) {
            let (src, dst) = both(&mut self.src, &mut self.dst, |side, source| match source {
                true => side.zset_items(db, &keys[i]),
                false => side.zset_items(to_db, &images[i]),
            });
            if src? != dst? {
                self.diff(db, &keys[i], Problem::Digest);
            }
        }
        // `XINFO STREAM key FULL` exists since Redis 6.0: with a 5.x server on either side the
        // consumer groups are not compared (the entries still are, by the digest).
        let common_major = self.src.major.min(self.dst.major);
        if !streams.is_empty() && common_major >= 6 {
            let fields = StreamFields {
                counters: self.opts.group_read_counters,
                idle_consumers: self.opts.idle_consumers,
                progress: self.opts.group_progress,
                since_7: common_major >= 7,
            };
            let pick = |from: &[Vec<u8>]| streams.iter().map(|&i| from[i].clone()).collect();
            let (stream_keys, stream_images): (Vec<Vec<u8>>, Vec<Vec<u8>>) =
                (pick(keys), pick(images));
            let (src, dst) = both(&mut self.src, &mut self.dst, |side, source| match source {
                true => side.stream_meta(db, &stream_keys, fields),
                false => side.stream_meta(to_db, &stream_images, fields),
            });
            let (src, dst) = (src?, dst?);
            for ((key, s), t) in stream_keys.iter().zip(src).zip(dst) {
                if let (Some(s), Some(t)) = (s, t)
                    && s != t
                {
                    self.diff(
                        db,
                        key,
                        Problem::StreamGroups {
                            source: s,
                            target: t,
                        },
                    );
                }
            }
        }
        Ok(())
    }

    /// Compares a key present on both sides (the `i`th being compared); streams with equal
    /// entries are queued for the group check.
    fn pair(
        &mut self,
        db: i64,
        i: usize,
        key: &[u8],
        s: &Probe,
        t: &Probe,
        streams: &mut Vec<usize>,
    ) {
        self.compared += 1;
        if s.kind != t.kind {
            let problem = Problem::Type {
                source: s.kind.clone(),
                target: t.kind.clone(),
            };
            return self.diff(db, key, problem);
        }
        let now = now_ms();
        let ttl_equal = match (s.ttl(now), t.ttl(now)) {
            (None, None) => true,
            (Some(a), Some(b)) => (a - b).abs() <= self.opts.ttl_tolerance_ms,
            _ => false,
        };
        if !ttl_equal {
            let problem = Problem::Ttl {
                source: s.ttl(now),
                target: t.ttl(now),
            };
            self.diff(db, key, problem);
        }
        // DEBUG DIGEST-VALUE mixes in whether the key has a TTL: with a TTL on one side only
        // the digests differ whatever the values, and the key is reported already.
        if (s.expire_at >= 0) != (t.expire_at >= 0) {
            return;
        }
        if s.digest != t.digest {
            if s.kind == "zset" && self.src.shortest_doubles != self.dst.shortest_doubles {
                self.zsets.push(i);
            } else {
                self.diff(db, key, Problem::Digest);
            }
        } else if s.kind == "stream" {
            streams.push(i);
        }
    }

    fn diff(&mut self, db: i64, key: &[u8], problem: Problem) {
        if !self.full() {
            self.diffs.push(Diff::Key {
                db,
                key: key.to_vec(),
                problem,
            });
        }
    }

    fn functions(&mut self) -> Result<(), String> {
        let src = self.src.libraries()?;
        let dst = self.dst.libraries()?;
        let names: BTreeSet<&String> = src.keys().chain(dst.keys()).collect();
        for name in names {
            let problem = match (src.get(name), dst.get(name)) {
                (Some(_), None) => Problem::MissingOnTarget,
                (None, Some(_)) => Problem::ExtraOnTarget,
                (Some(a), Some(b)) if a != b => Problem::Digest,
                _ => continue,
            };
            if !self.full() {
                self.diffs.push(Diff::Library {
                    name: name.clone(),
                    problem,
                });
            }
        }
        Ok(())
    }
}

/// Runs `read` on both sides at once (the servers do the work, in parallel); its flag says
/// whether it reads the source.
fn both<T: Send>(
    src: &mut Reader,
    dst: &mut Reader,
    read: impl Fn(&mut Reader, bool) -> T + Sync,
) -> (T, T) {
    std::thread::scope(|scope| {
        let on_source = scope.spawn(|| read(src, true));
        let on_target = read(dst, false);
        let on_source = on_source
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (on_source, on_target)
    })
}

/// A flat `[k1, v1, k2, v2, ...]` reply (or a RESP3 map) as pairs with text keys.
fn pairs(v: &Value) -> Vec<(String, &Value)> {
    match v {
        Value::Map(m) => m
            .iter()
            .filter_map(|(k, v)| Some((wire::text(k)?, v)))
            .collect(),
        _ => wire::items(v)
            .unwrap_or_default()
            .chunks(2)
            .filter_map(|c| Some((wire::text(&c[0])?, c.get(1)?)))
            .collect(),
    }
}

/// A reply as canonical text.
fn render(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Array(a) | Value::Set(a) => {
            format!("[{}]", a.iter().map(render).collect::<Vec<_>>().join(","))
        }
        Value::Map(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}={}", render(k), render(v)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        Value::Double(d) => d.to_string(),
        other => match wire::bytes(other) {
            Some(b) => format!("\"{}\"", wire::escape(&b)),
            None => format!("{other:?}"),
        },
    }
}

/// Which `XINFO STREAM FULL` fields both sides are compared on.
#[derive(Clone, Copy, Debug)]
struct StreamFields {
    /// The groups' `entries-read` and `lag` ([`Options::group_read_counters`]).
    counters: bool,
    /// Consumers without pending entries ([`Options::idle_consumers`]).
    idle_consumers: bool,
    /// The groups' progress ([`Options::group_progress`]).
    progress: bool,
    /// Both sides are Redis 7+: compare the fields 7.0 added (`max-deleted-entry-id`,
    /// `entries-added`, `recorded-first-entry-id`; groups' `entries-read` and `lag`), which
    /// a 6.x server does not report.
    since_7: bool,
}

/// `XINFO STREAM key FULL` without entries, internal layout and wall-clock fields.
fn stream_meta(reply: &Value, fields: StreamFields) -> String {
    let mut out = Vec::new();
    for (name, value) in pairs(reply) {
        match name.as_str() {
            "entries" | "radix-tree-keys" | "radix-tree-nodes" => {}
            "max-deleted-entry-id" | "entries-added" | "recorded-first-entry-id"
                if !fields.since_7 => {}
            "groups" => {
                let groups: Vec<String> = wire::items(value)
                    .unwrap_or_default()
                    .iter()
                    .map(|g| match fields.progress {
                        true => {
                            group_meta(g, fields.counters && fields.since_7, fields.idle_consumers)
                        }
                        false => group_names(g),
                    })
                    .collect();
                out.push(format!("groups=[{}]", groups.join(",")));
            }
            _ => out.push(format!("{name}={}", render(value))),
        }
    }
    out.join(" ")
}

/// A group's name and its consumers' names, without its progress.
fn group_names(group: &Value) -> String {
    let mut out = Vec::new();
    for (name, value) in pairs(group) {
        match name.as_str() {
            "name" => out.push(format!("name={}", render(value))),
            "consumers" => {
                let names: Vec<String> = wire::items(value)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|c| pairs(c).into_iter().filter(|(n, _)| n == "name"))
                    .map(|(_, v)| render(v))
                    .collect();
                out.push(format!("consumers=[{}]", names.join(",")));
            }
            _ => {}
        }
    }
    format!("{{{}}}", out.join(" "))
}

fn group_meta(group: &Value, counters: bool, idle_consumers: bool) -> String {
    let mut out = Vec::new();
    for (name, value) in pairs(group) {
        match name.as_str() {
            "entries-read" | "lag" if !counters => {}
            // [id, consumer, delivery-time, delivery-count]
            "pending" => out.push(format!("pending={}", without_index(value, 2))),
            "consumers" => {
                let consumers: Vec<String> = wire::items(value)
                    .unwrap_or_default()
                    .iter()
                    .filter(|c| {
                        idle_consumers
                            || pairs(c)
                                .iter()
                                .any(|(n, v)| n == "pel-count" && wire::int(v).unwrap_or(0) > 0)
                    })
                    .map(|c| {
                        let mut fields = Vec::new();
                        for (name, value) in pairs(c) {
                            match name.as_str() {
                                "seen-time" | "active-time" => {}
                                // [id, delivery-time, delivery-count]
                                "pending" => {
                                    fields.push(format!("pending={}", without_index(value, 1)))
                                }
                                _ => fields.push(format!("{name}={}", render(value))),
                            }
                        }
                        format!("{{{}}}", fields.join(" "))
                    })
                    .collect();
                out.push(format!("consumers=[{}]", consumers.join(",")));
            }
            _ => out.push(format!("{name}={}", render(value))),
        }
    }
    format!("{{{}}}", out.join(" "))
}

/// Renders a list of tuples, leaving out element `skip` of each.
fn without_index(list: &Value, skip: usize) -> String {
    let rows: Vec<String> = wire::items(list)
        .unwrap_or_default()
        .iter()
        .map(|row| {
            let cells: Vec<String> = wire::items(row)
                .unwrap_or_default()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != skip)
                .map(|(_, v)| render(v))
                .collect();
            format!("[{}]", cells.join(","))
        })
        .collect();
    format!("[{}]", rows.join(","))
}
