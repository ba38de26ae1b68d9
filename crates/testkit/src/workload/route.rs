//! Where a batch goes: one connection, or the masters of a cluster.
//!
//! On a cluster each command is sent to the master owning its slot, pipelined per master.
//! A transaction (`MULTI` ... `EXEC`) travels as one unit. Redirections are followed as a
//! cluster client does: `MOVED` re-reads the slot map and sends again, `ASK` sends again to
//! the importing node after `ASKING`, `TRYAGAIN` (keys of a multi-key command split by a
//! migration) and `CLUSTERDOWN` wait a little and send again. A unit is only ever resent
//! when the server refused it, so nothing is applied twice.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use redis::{Cmd, Value, cmd};

use crate::cluster::{SLOTS, read_slots};
use crate::{wait_until, wire};

/// Sends of one unit before its last refusal is kept as its reply (a slot kept half
/// migrated makes `TRYAGAIN` last: then the command is dropped, as a client would give up).
const MAX_TRIES: usize = 30;
/// Pause before sending again after `TRYAGAIN` or `CLUSTERDOWN`.
const BACKOFF: Duration = Duration::from_millis(10);

/// Where commands go.
pub(crate) enum Target<'a> {
    /// One server, one connection.
    Conn(&'a mut redis::Connection),
    /// A cluster: each command to its slot's master.
    Cluster(&'a mut Router),
}

impl Target<'_> {
    pub fn is_cluster(&self) -> bool {
        matches!(self, Target::Cluster(_))
    }

    /// Sends `cmds` and returns one reply per command (a command's error is its reply).
    /// `slots[i]` is the slot of `cmds[i]` (`None`: no key; any master on a cluster).
    /// Panics when a connection fails.
    pub fn send(&mut self, cmds: &[Cmd], slots: &[Option<u16>], labels: &[String]) -> Vec<Value> {
        match self {
            Target::Conn(conn) => {
                let mut pipe = redis::pipe();
                for c in cmds {
                    pipe.add_command(c.clone());
                }
                wire::send(conn, &pipe).unwrap_or_else(|e| {
                    panic!(
                        "workload: connection failed while sending {} commands: {e}",
                        cmds.len()
                    )
                })
            }
            Target::Cluster(router) => router.send(cmds, slots, labels),
        }
    }
}

/// Routes commands to the masters of a cluster, following redirections.
pub(crate) struct Router {
    /// Nodes to ask for the slot map (every node given at start).
    seeds: Vec<String>,
    password: Option<String>,
    /// Master address of each slot.
    owners: Vec<String>,
    conns: HashMap<String, redis::Connection>,
}

/// What a refused unit needs before it is sent again.
enum Redirect {
    /// The slot's owner as the refusing node knows it (`MOVED <slot> <host:port>`).
    Moved(Option<(u16, String)>),
    Ask(String),
    Later,
}

impl Router {
    /// A router over the cluster reachable through `seeds` (`host:port` of its nodes).
    pub fn new(seeds: Vec<String>, password: Option<&str>) -> Router {
        let mut router = Router {
            seeds,
            password: password.map(str::to_string),
            owners: Vec::new(),
            conns: HashMap::new(),
        };
        router.refresh();
        router
    }

    /// Re-reads the slot map from the first node that answers with every slot covered.
    pub fn refresh(&mut self) {
        let mut last = String::new();
        let seeds = self.seeds.clone();
        let read = wait_until(Duration::from_secs(30), || {
            for seed in &seeds {
                let ranges = crate::server::connect(seed, self.password.as_deref(), 0)
                    .and_then(|mut c| read_slots(&mut c, seed));
                match ranges {
                    Ok(ranges) => {
                        let mut owners = vec![String::new(); usize::from(SLOTS)];
                        for r in ranges {
                            owners[usize::from(r.start)..=usize::from(r.end)].fill(r.master);
                        }
                        if owners.iter().all(|o| !o.is_empty()) {
                            self.owners = owners;
                            return true;
                        }
                        last = format!("{seed}: not every slot is covered");
                    }
                    Err(e) => last = e,
                }
            }
            false
        });
        assert!(read, "workload: no slot map from {:?}: {last}", self.seeds);
    }

    /// The masters owning slots, each once.
    pub fn masters(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for owner in &self.owners {
            if !out.contains(owner) {
                out.push(owner.clone());
            }
        }
        out
    }

    /// Every node given at start plus the current masters.
    pub fn nodes(&self) -> Vec<String> {
        let mut out = self.seeds.clone();
        for m in self.masters() {
            if !out.contains(&m) {
                out.push(m);
            }
        }
        out
    }

    /// Runs `c` on the node `addr` now.
    pub fn query_on(&mut self, addr: &str, c: &Cmd) -> redis::RedisResult<Value> {
        let result = c.query(self.conn(addr));
        if result.is_err() {
            self.conns.remove(addr);
        }
        result
    }

    fn conn(&mut self, addr: &str) -> &mut redis::Connection {
        if !self.conns.contains_key(addr) {
            let conn = crate::server::connect(addr, self.password.as_deref(), 0)
                .unwrap_or_else(|e| panic!("workload: {e}"));
            self.conns.insert(addr.to_string(), conn);
        }
        self.conns.get_mut(addr).expect("inserted above")
    }

    fn send(&mut self, cmds: &[Cmd], slots: &[Option<u16>], labels: &[String]) -> Vec<Value> {
        let units = units(labels);
        let mut replies: Vec<Option<Vec<Value>>> = vec![None; units.len()];
        let mut ask: Vec<Option<String>> = vec![None; units.len()];
        let mut tries = vec![0usize; units.len()];
        let mut pending: Vec<usize> = (0..units.len()).collect();
        while !pending.is_empty() {
            let mut by_node: BTreeMap<String, Vec<usize>> = BTreeMap::new();
            for &u in &pending {
                let addr = ask[u].clone().unwrap_or_else(|| {
                    let slot = slots[units[u].start].unwrap_or(0);
                    self.owners[usize::from(slot)].clone()
                });
                by_node.entry(addr).or_default().push(u);
            }
            let mut again = Vec::new();
            let (mut moved, mut later) = (false, false);
            // Owners named by MOVED replies: newer than a slot map a node not yet told of a
            // failover or a migration may still give.
            let mut pointed: Vec<(u16, String)> = Vec::new();
            for (addr, group) in by_node {
                let mut pipe = redis::pipe();
                for &u in &group {
                    if ask[u].is_some() {
                        pipe.add_command(cmd("ASKING"));
                    }
                    for c in &cmds[units[u].clone()] {
                        pipe.add_command(c.clone());
                    }
                }
                let got = match wire::send(self.conn(&addr), &pipe) {
                    Ok(got) => got,
                    Err(e) => {
                        // A node gone (failover): ask the cluster again.
                        self.conns.remove(&addr);
                        for &u in &group {
                            tries[u] += 1;
                            assert!(
                                tries[u] < MAX_TRIES,
                                "workload: connection to {addr} failed: {e}"
                            );
                        }
                        again.extend(&group);
                        moved = true;
                        later = true;
                        continue;
                    }
                };
                let mut got = got.into_iter();
                for &u in &group {
                    if ask[u].is_some() {
                        got.next(); // ASKING's OK
                    }
                    let unit: Vec<Value> = got.by_ref().take(units[u].len()).collect();
                    tries[u] += 1;
                    match redirect(&unit) {
                        Some(_) if tries[u] >= MAX_TRIES => replies[u] = Some(unit),
                        Some(Redirect::Moved(owner)) => {
                            moved = true;
                            ask[u] = None;
                            pointed.extend(owner);
                            // A cluster still settling may send it back and forth: give it time.
                            later |= tries[u] > 3;
                            again.push(u);
                        }
                        Some(Redirect::Ask(to)) => {
                            ask[u] = Some(to);
                            again.push(u);
                        }
                        Some(Redirect::Later) => {
                            later = true;
                            ask[u] = None;
                            again.push(u);
                        }
                        None => replies[u] = Some(unit),
                    }
                }
            }
            if moved {
                self.refresh();
                for (slot, owner) in pointed {
                    if let Some(o) = self.owners.get_mut(usize::from(slot)) {
                        *o = owner;
                    }
                }
            }
            if later {
                std::thread::sleep(BACKOFF);
            }
            again.sort_unstable();
            pending = again;
        }
        replies.into_iter().flatten().flatten().collect()
    }
}

/// Command index ranges that travel together: a `MULTI` ... `EXEC` block, or one command.
fn units(labels: &[String]) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < labels.len() {
        let mut end = i + 1;
        if labels[i] == "MULTI" {
            while end < labels.len() && labels[end - 1] != "EXEC" {
                end += 1;
            }
        }
        out.push(i..end);
        i = end;
    }
    out
}

/// Whether a unit was refused for where it was sent, and what to do about it.
fn redirect(replies: &[Value]) -> Option<Redirect> {
    for reply in replies {
        let Value::ServerError(e) = reply else {
            continue;
        };
        let details = e.details().unwrap_or("");
        match e.code() {
            "MOVED" => {
                let mut parts = details.split_whitespace();
                let owner = parts
                    .next()
                    .and_then(|slot| slot.parse().ok())
                    .zip(parts.next().map(str::to_string));
                return Some(Redirect::Moved(owner));
            }
            "ASK" => {
                // "<slot> <host:port>"
                let to = details.split_whitespace().nth(1)?;
                return Some(Redirect::Ask(to.to_string()));
            }
            "TRYAGAIN" | "CLUSTERDOWN" => return Some(Redirect::Later),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transactions_travel_whole() {
        let labels: Vec<String> = ["SET", "MULTI", "SET", "INCR", "EXEC", "DEL"]
            .map(String::from)
            .into();
        assert_eq!(units(&labels), vec![0..1, 1..5, 5..6]);
    }
}
