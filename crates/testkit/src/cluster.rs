//! A real Redis Cluster: `redis-server` processes in cluster mode, slots split evenly over
//! the masters, replicas attached, and live resharding and failover as an operator does
//! them.
//!
//! [`Cluster::start`] builds it the way `redis-cli --cluster create` does: distinct config
//! epochs, `CLUSTER ADDSLOTSRANGE` (`ADDSLOTS` before 7.0), `CLUSTER MEET`, then
//! `CLUSTER REPLICATE`; it returns once every node reports `cluster_state:ok`, every node
//! gives the same `CLUSTER SLOTS` and every replica's link is up. [`Cluster::move_slot`]
//! migrates a slot with its keys as `redis-cli --cluster reshard` does (`SETSLOT
//! IMPORTING`/`MIGRATING`, `GETKEYSINSLOT` + `MIGRATE`, `SETSLOT NODE`);
//! [`Cluster::begin_move`] does it step by step so a test can write while a slot is half
//! migrated. [`Cluster::failover`] is a manual `CLUSTER FAILOVER`.
//!
//! Everything here asks the nodes (`CLUSTER SLOTS`, `ROLE`) rather than remembering: after a
//! failover or a move, [`Cluster::masters`] and [`Cluster::owner`] say what the cluster says.

use std::path::Path;
use std::time::Duration;

use redis::{Cmd, FromRedisValue, Value, cmd};

use crate::server::{free_port, free_port_with_bus};
use crate::{Server, redis_server_bin, wait_until, wire};

/// Hash slots in a Redis Cluster.
pub const SLOTS: u16 = 16384;

/// How long the cluster gets to agree after a change (start, move, failover).
const SETTLE: Duration = Duration::from_secs(60);
/// Keys per `MIGRATE` in [`Cluster::move_slot`].
const MIGRATE_BATCH: usize = 100;

/// A running Redis Cluster; dropping it kills every node (each is a [`Server`]).
pub struct Cluster {
    nodes: Vec<Server>,
    /// `CLUSTER MYID` of each node, in `nodes` order.
    ids: Vec<String>,
    replicas_per_master: usize,
}

/// One contiguous range of slots as `CLUSTER SLOTS` reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct SlotRange {
    pub start: u16,
    pub end: u16,
    /// `ip:port` of the master.
    pub master: String,
    /// `ip:port` of each replica, sorted.
    pub replicas: Vec<String>,
}

impl Cluster {
    /// Starts `masters` masters with `replicas_per_master` replicas each (testkit's server
    /// defaults), and waits until the cluster is up and agreed.
    pub fn start(masters: usize, replicas_per_master: usize) -> Cluster {
        Cluster::start_with(masters, replicas_per_master, &[])
    }

    /// Like [`Cluster::start`], with extra arguments for every node. A `--requirepass`
    /// given here is the password of every node, and is also given as `--masterauth`.
    pub fn start_with(masters: usize, replicas_per_master: usize, extra_args: &[&str]) -> Cluster {
        Cluster::start_bin(
            &redis_server_bin(),
            masters,
            replicas_per_master,
            extra_args,
        )
    }

    /// Like [`Cluster::start_with`], with a given `redis-server` binary (Redis 5.0 or later,
    /// e.g. one of [`crate::versions::available`]).
    pub fn start_bin(
        bin: &Path,
        masters: usize,
        replicas_per_master: usize,
        extra_args: &[&str],
    ) -> Cluster {
        assert!(
            (1..=usize::from(SLOTS)).contains(&masters),
            "a cluster needs 1 to {SLOTS} masters, not {masters}"
        );
        let password = extra_args
            .windows(2)
            .rev()
            .find(|pair| pair[0] == "--requirepass")
            .map(|pair| pair[1])
            .filter(|pw| !pw.is_empty());
        let mut args = vec![
            "--cluster-enabled",
            "yes",
            // Relative to the server's dir (`--dir`), so each node has its own.
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            "2000",
            "--repl-diskless-sync-delay",
            "0",
        ];
        if let Some(pw) = password {
            args.extend(["--masterauth", pw]);
        }
        args.extend(extra_args);
        let count = masters * (1 + replicas_per_master);
        let nodes: Vec<Server> = std::thread::scope(|scope| {
            let starting: Vec<_> = (0..count)
                .map(|_| scope.spawn(|| Server::start_bin_ports(bin, &args, &node_ports)))
                .collect();
            starting
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
                .collect()
        });
        let ids: Vec<String> = nodes
            .iter()
            .map(|node| must(node, cmd("CLUSTER").arg("MYID")))
            .collect();
        let cluster = Cluster {
            nodes,
            ids,
            replicas_per_master,
        };
        cluster.form(masters);
        cluster
    }

    /// Slots, meetings and replicas; then waits for agreement.
    fn form(&self, masters: usize) {
        // Distinct epochs up front, as redis-cli does: no collision to resolve later.
        for (i, node) in self.nodes.iter().enumerate() {
            must::<()>(node, cmd("CLUSTER").arg("SET-CONFIG-EPOCH").arg(i + 1));
        }
        for (i, node) in self.nodes[..masters].iter().enumerate() {
            let (lo, hi) = slot_range(i, masters);
            let mut c = cmd("CLUSTER");
            if node.version() >= (7, 0, 0) {
                c.arg("ADDSLOTSRANGE").arg(lo).arg(hi);
            } else {
                c.arg("ADDSLOTS").arg((lo..=hi).collect::<Vec<u16>>());
            }
            must::<()>(node, &c);
        }
        let first = &self.nodes[0];
        for node in &self.nodes[1..] {
            let mut meet = cmd("CLUSTER");
            meet.arg("MEET").arg("127.0.0.1").arg(node.port());
            if let Some(bus) = bus_port(node) {
                meet.arg(bus);
            }
            must::<()>(first, &meet);
        }
        let count = self.nodes.len();
        let met = wait_until(SETTLE, || {
            self.nodes.iter().all(|node| {
                query::<String>(node, cmd("CLUSTER").arg("NODES")).is_ok_and(|text| {
                    text.lines().count() == count
                        && !text.contains("handshake")
                        && !text.contains("noaddr")
                })
            })
        });
        assert!(met, "cluster nodes did not all meet; {}", self.describe());
        for (n, replica) in self.nodes[masters..].iter().enumerate() {
            let master_id = &self.ids[n / self.replicas_per_master.max(1)];
            let mut last = String::new();
            let attached = wait_until(SETTLE, || {
                match query::<()>(replica, cmd("CLUSTER").arg("REPLICATE").arg(master_id)) {
                    Ok(()) => true,
                    Err(e) => {
                        last = e;
                        false
                    }
                }
            });
            assert!(attached, "CLUSTER REPLICATE on {}: {last}", replica.addr());
        }
        self.await_settled("start");
    }

    /// Every node, masters first as started (roles may have changed since: see
    /// [`Cluster::masters`]).
    pub fn nodes(&self) -> &[Server] {
        &self.nodes
    }

    /// The current masters (by `ROLE`), ordered by the lowest slot each owns (masters
    /// without slots last).
    pub fn masters(&self) -> Vec<&Server> {
        let ranges = self.slots();
        let lowest = |node: &Server| {
            ranges
                .iter()
                .filter(|r| r.master == node.addr())
                .map(|r| r.start)
                .min()
                .unwrap_or(SLOTS)
        };
        let mut masters: Vec<&Server> = self
            .nodes
            .iter()
            .filter(|node| role(node).is_ok_and(|r| r.master_port.is_none()))
            .collect();
        masters.sort_by_key(|node| (lowest(node), node.port()));
        masters
    }

    /// The nodes that are replicas of `master` (by their `ROLE`).
    pub fn replicas_of(&self, master: &Server) -> Vec<&Server> {
        self.nodes
            .iter()
            .filter(|node| role(node).is_ok_and(|r| r.master_port == Some(master.port())))
            .collect()
    }

    /// `redis://127.0.0.1:P` of the first master (without the password).
    pub fn url(&self) -> String {
        self.masters()
            .first()
            .map_or_else(|| self.nodes[0].url(), |m| m.url())
    }

    /// `redis://127.0.0.1:P` of every node.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Server::url).collect()
    }

    /// `127.0.0.1:P` of every node.
    pub fn addrs(&self) -> Vec<String> {
        self.nodes.iter().map(Server::addr).collect()
    }

    /// The nodes' password (`--requirepass`), if any.
    pub fn password(&self) -> Option<&str> {
        self.nodes[0].password()
    }

    /// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the part
    /// between the first `{` and the next `}`, when not empty), modulo 16384.
    pub fn slot(key: &[u8]) -> u16 {
        key_slot(key)
    }

    /// The master owning `slot`, per `CLUSTER SLOTS`.
    pub fn owner(&self, slot: u16) -> &Server {
        let ranges = self.slots();
        let range = ranges
            .iter()
            .find(|r| (r.start..=r.end).contains(&slot))
            .unwrap_or_else(|| panic!("slot {slot} has no owner; {}", self.describe()));
        self.node_at(&range.master)
    }

    /// A connection to the master owning `key`'s slot.
    pub fn conn_for(&self, key: &[u8]) -> redis::Connection {
        self.owner(key_slot(key)).conn()
    }

    /// Moves `slot` and its keys to the master `to`, and waits until every node agrees.
    pub fn move_slot(&self, slot: u16, to: &Server) {
        self.begin_move(slot, to).finish();
    }

    /// Starts moving `slot` to the master `to`: marks it `IMPORTING` on `to` and `MIGRATING`
    /// on its owner. Keys move with [`Migration::step`]; [`Migration::finish`] moves the rest
    /// and hands the slot over. Between the two, clients see `ASK` and `TRYAGAIN` as they
    /// would during a real reshard.
    pub fn begin_move<'a>(&'a self, slot: u16, to: &'a Server) -> Migration<'a> {
        assert!(slot < SLOTS, "slot {slot} out of range");
        let from = self.owner(slot);
        assert!(
            from.port() != to.port(),
            "slot {slot} is already on {}",
            to.addr()
        );
        let (from_id, to_id) = (self.id_of(from), self.id_of(to));
        must::<()>(
            to,
            cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("IMPORTING")
                .arg(from_id),
        );
        must::<()>(
            from,
            cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg("MIGRATING")
                .arg(to_id),
        );
        Migration {
            cluster: self,
            slot,
            from,
            to,
            moved: 0,
        }
    }

    /// Promotes `replica` with `CLUSTER FAILOVER` (its master agreeing), and waits until it
    /// is a master, its old master is its replica and every node agrees.
    pub fn failover(&self, replica: &Server) {
        let old = role(replica)
            .ok()
            .and_then(|r| r.master_port)
            .unwrap_or_else(|| panic!("{} is not a replica", replica.addr()));
        let promoted =
            || {
                role(replica).is_ok_and(|r| r.master_port.is_none())
                    && self.nodes.iter().find(|n| n.port() == old).is_none_or(|n| {
                        role(n).is_ok_and(|r| r.master_port == Some(replica.port()))
                    })
            };
        // A manual failover that does not complete within its timeout is abandoned by
        // Redis; ask again.
        let mut done = false;
        for _ in 0..3 {
            must::<()>(replica, cmd("CLUSTER").arg("FAILOVER"));
            if wait_until(Duration::from_secs(20), &promoted) {
                done = true;
                break;
            }
        }
        assert!(
            done,
            "failover to {} did not complete; {}",
            replica.addr(),
            self.describe()
        );
        self.await_settled("failover");
    }

    /// `CLUSTER SLOTS` from the first node that answers.
    fn slots(&self) -> Vec<SlotRange> {
        let mut last = String::new();
        for node in &self.nodes {
            match conn_of(node).and_then(|mut c| read_slots(&mut c, &node.addr())) {
                Ok(ranges) => return ranges,
                Err(e) => last = e,
            }
        }
        panic!("no cluster node answered CLUSTER SLOTS: {last}")
    }

    fn node_at(&self, addr: &str) -> &Server {
        self.nodes
            .iter()
            .find(|n| n.addr() == addr)
            .unwrap_or_else(|| panic!("{addr} is not a node of this cluster"))
    }

    fn id_of(&self, node: &Server) -> &str {
        let i = self
            .nodes
            .iter()
            .position(|n| n.port() == node.port())
            .unwrap_or_else(|| panic!("{} is not a node of this cluster", node.addr()));
        &self.ids[i]
    }

    /// Why the cluster is not settled yet, or `None` when every node reports
    /// `cluster_state:ok`, the same slot owners (`CLUSTER SLOTS`, every slot covered) and
    /// the same nodes and roles (`CLUSTER NODES`, none failing or in handshake), each master
    /// with slots has `replicas_per_master` replicas, and every replica's link is up.
    ///
    /// Replicas are checked in `CLUSTER NODES`, not `CLUSTER SLOTS`: Redis 7 lists a replica
    /// there only once its replication offset is not 0, which on an idle master takes until
    /// the next replication ping (10 s).
    fn unsettled(&self) -> Option<String> {
        type View = (Vec<(u16, u16, String)>, Vec<NodeLine>);
        let mut first: Option<(String, View)> = None;
        for node in &self.nodes {
            let addr = node.addr();
            let state = query::<String>(node, cmd("CLUSTER").arg("INFO"))
                .map(|t| crate::server::parse_info(&t));
            match state {
                Ok(info) if info.get("cluster_state").map(String::as_str) == Some("ok") => {}
                Ok(info) => {
                    return Some(format!(
                        "{addr}: cluster_state {:?}",
                        info.get("cluster_state")
                    ));
                }
                Err(e) => return Some(e),
            }
            let read = conn_of(node).and_then(|mut c| {
                let slots = read_slots(&mut c, &addr)?;
                let owners: Vec<(u16, u16, String)> = slots
                    .into_iter()
                    .map(|r| (r.start, r.end, r.master))
                    .collect();
                Ok((owners, read_nodes(&mut c, &addr)?))
            });
            let view = match read {
                Ok(view) => view,
                Err(e) => return Some(e),
            };
            if let Some(bad) = view.1.iter().find(|n| !n.healthy) {
                return Some(format!("{addr} sees {bad:?}"));
            }
            match &first {
                None => {
                    let (owners, nodes) = &view;
                    let covered: usize = owners
                        .iter()
                        .map(|(lo, hi, _)| usize::from(hi - lo) + 1)
                        .sum();
                    if covered != usize::from(SLOTS) {
                        return Some(format!("{addr}: {covered} slots covered"));
                    }
                    for (_, _, master) in owners {
                        let id = nodes.iter().find(|n| n.addr == *master).map(|n| &n.id);
                        let replicas = nodes
                            .iter()
                            .filter(|n| n.master_id.is_some() && n.master_id.as_ref() == id)
                            .count();
                        if replicas != self.replicas_per_master {
                            return Some(format!("{addr}: {master} has {replicas} replicas"));
                        }
                    }
                    first = Some((addr.clone(), view));
                }
                Some((a, v)) if *v != view => {
                    return Some(format!("{a} and {addr} disagree: {v:?} vs {view:?}"));
                }
                Some(_) => {}
            }
            match role(node) {
                Ok(Role {
                    master_port: Some(_),
                    linked: false,
                }) => return Some(format!("{addr}: replica link down")),
                Ok(_) => {}
                Err(e) => return Some(e),
            }
        }
        None
    }

    fn await_settled(&self, after: &str) {
        let mut why = None;
        let settled = wait_until(SETTLE, || {
            why = self.unsettled();
            why.is_none()
        });
        assert!(
            settled,
            "cluster not settled after {after} within {SETTLE:?}: {}; {}",
            why.unwrap_or_default(),
            self.describe()
        );
    }

    /// Each node's `CLUSTER NODES` and log tail, for failure messages.
    fn describe(&self) -> String {
        let mut out = String::new();
        for node in &self.nodes {
            let nodes = query::<String>(node, cmd("CLUSTER").arg("NODES")).unwrap_or_else(|e| e);
            out.push_str(&format!(
                "\n--- {} CLUSTER NODES:\n{nodes}--- log tail:\n{}",
                node.addr(),
                node.log_tail(8)
            ));
        }
        out
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("nodes", &self.addrs())
            .finish()
    }
}

/// A slot being moved; see [`Cluster::begin_move`].
pub struct Migration<'a> {
    cluster: &'a Cluster,
    slot: u16,
    from: &'a Server,
    to: &'a Server,
    moved: usize,
}

impl Migration<'_> {
    /// The slot being moved.
    pub fn slot(&self) -> u16 {
        self.slot
    }

    /// The master the slot is moving from.
    pub fn source(&self) -> &Server {
        self.from
    }

    /// The master the slot is moving to.
    pub fn destination(&self) -> &Server {
        self.to
    }

    /// Keys moved so far.
    pub fn keys_moved(&self) -> usize {
        self.moved
    }

    /// Moves up to `keys` keys of the slot (`GETKEYSINSLOT` + `MIGRATE`); returns whether
    /// the source holds no key of the slot any more.
    pub fn step(&mut self, keys: usize) -> bool {
        let listed: Vec<Vec<u8>> = must(
            self.from,
            cmd("CLUSTER")
                .arg("GETKEYSINSLOT")
                .arg(self.slot)
                .arg(keys.max(1)),
        );
        if !listed.is_empty() {
            let mut migrate = cmd("MIGRATE");
            migrate
                .arg("127.0.0.1")
                .arg(self.to.port())
                .arg("")
                .arg(0)
                .arg(5000);
            if let Some(pw) = self.to.password() {
                migrate.arg("AUTH").arg(pw);
            }
            migrate.arg("KEYS").arg(&listed);
            // "NOKEY" when they all went meanwhile (expired, deleted): fine.
            let _: Value = must(self.from, &migrate);
            self.moved += listed.len();
        }
        let left: u64 = must(
            self.from,
            cmd("CLUSTER").arg("COUNTKEYSINSLOT").arg(self.slot),
        );
        left == 0
    }

    /// Moves the remaining keys, assigns the slot to the destination (`SETSLOT NODE` on the
    /// destination, the source, then every other master) and waits until every node agrees.
    pub fn finish(mut self) {
        while !self.step(MIGRATE_BATCH) {}
        let cluster = self.cluster;
        let to_id = cluster.id_of(self.to).to_string();
        let assign = || {
            cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(self.slot)
                .arg("NODE")
                .arg(&to_id)
                .clone()
        };
        must::<()>(self.to, &assign());
        must::<()>(self.from, &assign());
        for master in cluster.masters() {
            if master.port() != self.to.port() && master.port() != self.from.port() {
                // A master may refuse while it still believes in an older config: gossip
                // brings it along anyway.
                let _ = query::<()>(master, &assign());
            }
        }
        let slot = self.slot;
        let owned = wait_until(SETTLE, || {
            cluster.nodes.iter().all(|node| {
                conn_of(node)
                    .and_then(|mut c| read_slots(&mut c, &node.addr()))
                    .is_ok_and(|ranges| {
                        ranges.iter().any(|r| {
                            (r.start..=r.end).contains(&slot) && r.master == self.to.addr()
                        })
                    })
            })
        });
        assert!(
            owned,
            "slot {slot} not seen on {} by every node; {}",
            self.to.addr(),
            cluster.describe()
        );
        cluster.await_settled("a slot move");
    }
}

/// What `ROLE` says of a node.
struct Role {
    /// The master's port, for a replica.
    master_port: Option<u16>,
    /// For a replica: its link to the master is up (`connected`).
    linked: bool,
}

fn role(node: &Server) -> Result<Role, String> {
    let reply: Value = query(node, &cmd("ROLE"))?;
    let items = wire::items(&reply).unwrap_or_default();
    let kind = items.first().and_then(wire::text).unwrap_or_default();
    match kind.as_str() {
        "master" => Ok(Role {
            master_port: None,
            linked: true,
        }),
        "slave" => Ok(Role {
            master_port: items
                .get(2)
                .and_then(wire::int)
                .and_then(|p| u16::try_from(p).ok()),
            linked: items.get(3).and_then(wire::text).as_deref() == Some("connected"),
        }),
        _ => Err(format!("{}: ROLE gave {reply:?}", node.addr())),
    }
}

/// Slots `[lo, hi]` of master `i` of `n`, split evenly.
fn slot_range(i: usize, n: usize) -> (u16, u16) {
    let total = usize::from(SLOTS);
    let lo = i * total / n;
    let hi = (i + 1) * total / n - 1;
    (lo as u16, hi as u16)
}

/// The port for a cluster node, with `--cluster-port` on 7.0+ (any free port), else a port
/// whose `+10000` is free too.
fn node_ports(version: (u32, u32, u32)) -> (u16, Vec<String>) {
    if version >= (7, 0, 0) {
        let bus = free_port();
        (free_port(), vec!["--cluster-port".into(), bus.to_string()])
    } else {
        (free_port_with_bus(), Vec::new())
    }
}

/// The cluster bus port of `node` when set apart (`CONFIG GET cluster-port`, 7.0+).
fn bus_port(node: &Server) -> Option<u16> {
    if node.version() < (7, 0, 0) {
        return None;
    }
    let pair: Vec<String> = must(node, cmd("CONFIG").arg("GET").arg("cluster-port"));
    pair.get(1).and_then(|p| p.parse().ok()).filter(|p| *p != 0)
}

/// One line of `CLUSTER NODES`, as far as agreement goes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct NodeLine {
    id: String,
    /// `ip:port`.
    addr: String,
    /// For a replica, its master's id.
    master_id: Option<String>,
    /// No `fail`, `fail?`, `handshake` or `noaddr` flag.
    healthy: bool,
}

/// `CLUSTER NODES` on `conn`, sorted by id.
fn read_nodes(conn: &mut redis::Connection, addr: &str) -> Result<Vec<NodeLine>, String> {
    let text: String = cmd("CLUSTER")
        .arg("NODES")
        .query(conn)
        .map_err(|e| format!("CLUSTER NODES on {addr}: {e}"))?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(' ').collect();
        let [id, node_addr, flags, master, ..] = fields[..] else {
            return Err(format!("CLUSTER NODES on {addr}: odd line {line:?}"));
        };
        // ip:port@cport[,hostname]
        let node_addr = node_addr.split(['@', ',']).next().unwrap_or_default();
        let flags: Vec<&str> = flags.split(',').collect();
        out.push(NodeLine {
            id: id.to_string(),
            addr: node_addr.to_string(),
            master_id: (master != "-").then(|| master.to_string()),
            healthy: !flags
                .iter()
                .any(|f| matches!(*f, "fail" | "fail?" | "handshake" | "noaddr")),
        });
    }
    out.sort();
    Ok(out)
}

/// The key's hash slot (CRC16 of the key or its hash tag), as ferry computes it.
pub(crate) fn key_slot(key: &[u8]) -> u16 {
    ferry_keyspace::slot(key)
}

/// `CLUSTER SLOTS` on `conn`, sorted by first slot, replicas sorted.
pub(crate) fn read_slots(
    conn: &mut redis::Connection,
    addr: &str,
) -> Result<Vec<SlotRange>, String> {
    let reply: Value = cmd("CLUSTER")
        .arg("SLOTS")
        .query(conn)
        .map_err(|e| format!("CLUSTER SLOTS on {addr}: {e}"))?;
    let odd = || format!("CLUSTER SLOTS on {addr}: odd reply {reply:?}");
    let node_addr = |v: &Value| -> Option<String> {
        let parts = wire::items(v)?;
        let ip = wire::text(parts.first()?)?;
        let port = wire::int(parts.get(1)?)?;
        // An empty ip means "the address you reached me on" (7.0+ may say so).
        let ip = if ip.is_empty() {
            "127.0.0.1".into()
        } else {
            ip
        };
        Some(format!("{ip}:{port}"))
    };
    let mut out = Vec::new();
    for range in wire::items(&reply).ok_or_else(odd)? {
        let parts = wire::items(range).ok_or_else(odd)?;
        let bound = |i: usize| {
            parts
                .get(i)
                .and_then(wire::int)
                .and_then(|v| u16::try_from(v).ok())
        };
        let (Some(start), Some(end)) = (bound(0), bound(1)) else {
            return Err(odd());
        };
        let master = parts.get(2).and_then(node_addr).ok_or_else(odd)?;
        let mut replicas: Vec<String> = parts[3..].iter().filter_map(node_addr).collect();
        replicas.sort();
        out.push(SlotRange {
            start,
            end,
            master,
            replicas,
        });
    }
    out.sort_by_key(|r| r.start);
    Ok(out)
}

fn conn_of(node: &Server) -> Result<redis::Connection, String> {
    crate::server::connect(&node.addr(), node.password(), 0)
}

/// Runs `c` on `node` on a new connection.
fn query<T: FromRedisValue>(node: &Server, c: &Cmd) -> Result<T, String> {
    let mut conn = conn_of(node)?;
    c.query(&mut conn)
        .map_err(|e| format!("{} on {}: {e}", command_name(c), node.addr()))
}

/// Like [`query`], panicking with the node's log on failure.
fn must<T: FromRedisValue>(node: &Server, c: &Cmd) -> T {
    query(node, c).unwrap_or_else(|e| panic!("{e}; log tail:\n{}", node.log_tail(20)))
}

/// The first two words of a command, for messages.
fn command_name(c: &Cmd) -> String {
    c.args_iter()
        .take(2)
        .filter_map(|a| match a {
            redis::Arg::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
            redis::Arg::Cursor => None,
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slot_ranges_cover_everything_once() {
        for n in [1, 2, 3, 5, 7] {
            let mut next = 0usize;
            for i in 0..n {
                let (lo, hi) = slot_range(i, n);
                assert_eq!(usize::from(lo), next);
                next = usize::from(hi) + 1;
            }
            assert_eq!(next, usize::from(SLOTS));
        }
    }
}
