//! What a server says of its place: standalone, or one node of a Redis Cluster, and then who
//! serves which slots. Asked of the server itself, so any node's URL is enough.

use ferry_resp::Frame;

use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;

pub const SLOTS: usize = 16384;

/// Whether the server runs in cluster mode (`INFO cluster`, which every version since 3.0
/// answers; older ones have no such section and are standalone).
pub async fn is_cluster(conn: &mut Conn) -> Result<bool> {
    let info = conn.request_ok(&[&b"INFO"[..], b"cluster"]).await?;
    let text = info.as_bytes().cloned().unwrap_or_default();
    Ok(String::from_utf8_lossy(&text)
        .lines()
        .any(|l| l.trim() == "cluster_enabled:1"))
}

/// One master and what it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The master's address, with the login and TLS settings of the URL the user gave.
    pub master: Endpoint,
    /// Its replicas, same settings.
    pub replicas: Vec<Endpoint>,
    /// Slot ranges it serves, inclusive, in ascending order.
    pub ranges: Vec<(u16, u16)>,
}

impl Shard {
    /// Its lowest slot: a name for the shard that does not change with failovers.
    pub fn first_slot(&self) -> u16 {
        self.ranges.first().map_or(0, |r| r.0)
    }

    pub fn serves(&self, slot: u16) -> bool {
        self.ranges.iter().any(|&(a, b)| (a..=b).contains(&slot))
    }
}

/// Who serves each slot. Every slot has an owner: a cluster with uncovered slots is refused,
/// since writes to them would fail.
#[derive(Clone, Debug)]
pub struct Topology {
    /// Masters that serve slots, ordered by their first slot.
    pub shards: Vec<Shard>,
    /// Slot → index into `shards`.
    owner: Box<[u16]>,
}

impl Topology {
    /// Asks `conn` (a node of the cluster `seed` names) for the slot map: CLUSTER SHARDS where
    /// the server has it (7.0+), else CLUSTER SLOTS.
    pub async fn discover(conn: &mut Conn, seed: &Endpoint) -> Result<Topology> {
        let shards = match conn.request(&[&b"CLUSTER"[..], b"SHARDS"]).await? {
            Frame::Array(items) => parse_shards(&items, seed),
            _ => match conn.request_ok(&[&b"CLUSTER"[..], b"SLOTS"]).await? {
                Frame::Array(items) => parse_slots(&items, seed),
                other => Err(format!("CLUSTER SLOTS answered {other}")),
            },
        };
        let shards = shards.map_err(|msg| Error::Server {
            role: conn.role,
            addr: conn.addr.clone(),
            msg: format!("cannot read the cluster's slot map: {msg}"),
        })?;
        Topology::new(shards).map_err(|msg| Error::Server {
            role: conn.role,
            addr: conn.addr.clone(),
            msg,
        })
    }

    pub fn new(mut shards: Vec<Shard>) -> std::result::Result<Topology, String> {
        shards.retain(|s| !s.ranges.is_empty());
        for s in &mut shards {
            s.ranges.sort_unstable();
        }
        shards.sort_by_key(Shard::first_slot);
        let mut owner = vec![u16::MAX; SLOTS].into_boxed_slice();
        for (i, shard) in shards.iter().enumerate() {
            for &(a, b) in &shard.ranges {
                for slot in a..=b.min(SLOTS as u16 - 1) {
                    owner[slot as usize] = i as u16;
                }
            }
        }
        if let Some(free) = owner.iter().position(|&o| o == u16::MAX) {
            let served = owner.iter().filter(|&&o| o != u16::MAX).count();
            return Err(format!(
                "the cluster does not serve every slot (slot {free} has no master; {served} of {SLOTS} are served): fix the cluster (CLUSTER ADDSLOTS or redis-cli --cluster fix) before syncing"
            ));
        }
        Ok(Topology { shards, owner })
    }

    /// Index of the shard serving `slot`.
    pub fn owner(&self, slot: u16) -> usize {
        self.owner[slot as usize & (SLOTS - 1)] as usize
    }
}

fn text(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Bulk(b) | Frame::Simple(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Frame::Integer(n) => Some(n.to_string()),
        _ => None,
    }
}

fn int(frame: &Frame) -> Option<i64> {
    match frame {
        Frame::Integer(n) => Some(*n),
        other => text(other)?.parse().ok(),
    }
}

/// A node as the seed's URL would name it: same login and TLS, another host and port. An empty
/// or `?` address means "the host you asked".
fn node(seed: &Endpoint, host: &str, port: i64) -> Option<Endpoint> {
    let port = u16::try_from(port).ok().filter(|&p| p != 0)?;
    let host = match host {
        "" | "?" => seed.host.clone(),
        h => h.to_string(),
    };
    Some(seed.at(&host, port))
}

/// Field/value pairs of a RESP2 flat array or a RESP3 map.
fn pairs(frame: &Frame) -> Vec<(String, &Frame)> {
    match frame {
        Frame::Array(items) => items
            .chunks(2)
            .filter_map(|p| Some((text(&p[0])?, p.get(1)?)))
            .collect(),
        Frame::Map(entries) => entries
            .iter()
            .filter_map(|(k, v)| Some((text(k)?, v)))
            .collect(),
        _ => Vec::new(),
    }
}

fn parse_shards(items: &[Frame], seed: &Endpoint) -> std::result::Result<Vec<Shard>, String> {
    let mut shards = Vec::new();
    for item in items {
        let fields = pairs(item);
        let get = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
        let ranges = match get("slots") {
            Some(Frame::Array(bounds)) => bounds
                .chunks(2)
                .filter_map(|p| Some((int(&p[0])? as u16, int(p.get(1)?)? as u16)))
                .collect(),
            _ => Vec::new(),
        };
        let mut master = None;
        let mut replicas = Vec::new();
        if let Some(Frame::Array(nodes)) = get("nodes") {
            for n in nodes {
                let f = pairs(n);
                let field = |name: &str| f.iter().find(|(k, _)| k == name).map(|(_, v)| *v);
                // A failed node is no one to write to or read from. A replica the cluster
                // calls "loading" may only not have gossiped its offset yet: it goes last.
                let health = field("health").and_then(text).unwrap_or_default();
                if health != "online" && health != "loading" {
                    continue;
                }
                let host = field("ip").and_then(text).unwrap_or_default();
                let port = field("tls-port")
                    .filter(|_| seed.tls.is_some())
                    .or_else(|| field("port"))
                    .and_then(int)
                    .unwrap_or(0);
                let Some(endpoint) = node(seed, &host, port) else {
                    continue;
                };
                match field("role").and_then(text).as_deref() {
                    Some("master") if health == "online" => master = Some(endpoint),
                    Some("master") => {}
                    _ if health == "online" => replicas.insert(0, endpoint),
                    _ => replicas.push(endpoint),
                }
            }
        }
        match master {
            Some(master) => shards.push(Shard {
                master,
                replicas,
                ranges,
            }),
            None if ranges.is_empty() => {}
            None => {
                return Err(format!(
                    "slots from {} have no master that is online",
                    ranges[0].0
                ));
            }
        }
    }
    Ok(shards)
}

fn parse_slots(items: &[Frame], seed: &Endpoint) -> std::result::Result<Vec<Shard>, String> {
    let mut shards: Vec<Shard> = Vec::new();
    for item in items {
        let Frame::Array(parts) = item else {
            return Err(format!("unexpected entry {item}"));
        };
        let (Some(start), Some(end)) = (parts.first().and_then(int), parts.get(1).and_then(int))
        else {
            return Err(format!("unexpected entry {item}"));
        };
        let endpoint = |f: &Frame| -> Option<Endpoint> {
            let Frame::Array(n) = f else { return None };
            node(seed, &text(n.first()?)?, int(n.get(1)?)?)
        };
        let Some(master) = parts.get(2).and_then(endpoint) else {
            return Err(format!("slots {start}-{end} have no master"));
        };
        let replicas: Vec<Endpoint> = parts.iter().skip(3).filter_map(endpoint).collect();
        let range = (start as u16, end as u16);
        match shards.iter_mut().find(|s| s.master == master) {
            Some(s) => s.ranges.push(range),
            None => shards.push(Shard {
                master,
                replicas,
                ranges: vec![range],
            }),
        }
    }
    Ok(shards)
}

/// A MOVED, ASK, TRYAGAIN or CLUSTERDOWN reply: the slot map changed or is changing.
pub fn is_redirect(msg: &[u8]) -> bool {
    [&b"MOVED "[..], b"ASK ", b"TRYAGAIN", b"CLUSTERDOWN"]
        .iter()
        .any(|p| msg.starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn seed() -> Endpoint {
        Endpoint::parse("target", "redis://:pw@127.0.0.1:7000").unwrap()
    }

    fn bulk(s: &str) -> Frame {
        Frame::Bulk(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn reads_cluster_slots_with_ranges_split_over_entries() {
        let entry = |a, b, port| {
            Frame::Array(vec![
                Frame::Integer(a),
                Frame::Integer(b),
                Frame::Array(vec![bulk(""), Frame::Integer(port), bulk("id")]),
                Frame::Array(vec![bulk("127.0.0.1"), Frame::Integer(port + 100)]),
            ])
        };
        let items = [
            entry(0, 99, 7000),
            entry(100, 16383, 7001),
            entry(50000, 50000, 7000),
        ];
        let shards = parse_slots(&items[..2], &seed()).unwrap();
        let t = Topology::new(shards).unwrap();
        assert_eq!(t.shards.len(), 2);
        assert_eq!(t.shards[0].master.addr(), "127.0.0.1:7000");
        assert_eq!(t.shards[0].master.password.as_deref(), Some("pw"));
        assert_eq!(t.shards[1].replicas[0].addr(), "127.0.0.1:7101");
        assert_eq!(t.owner(99), 0);
        assert_eq!(t.owner(100), 1);
    }

    #[test]
    fn refuses_a_cluster_with_unserved_slots() {
        let shards = vec![Shard {
            master: seed(),
            replicas: vec![],
            ranges: vec![(0, 8000)],
        }];
        let err = Topology::new(shards).unwrap_err();
        assert!(err.contains("slot 8001 has no master"), "{err}");
    }

    #[test]
    fn reads_cluster_shards() {
        let node = |port: i64, role: &str, health: &str| {
            Frame::Array(vec![
                bulk("id"),
                bulk("abc"),
                bulk("port"),
                Frame::Integer(port),
                bulk("ip"),
                bulk("127.0.0.1"),
                bulk("role"),
                bulk(role),
                bulk("health"),
                bulk(health),
            ])
        };
        let shard = |a, b, port| {
            Frame::Array(vec![
                bulk("slots"),
                Frame::Array(vec![Frame::Integer(a), Frame::Integer(b)]),
                bulk("nodes"),
                Frame::Array(vec![
                    node(port, "master", "online"),
                    node(port + 1, "replica", "online"),
                    node(port + 2, "replica", "fail"),
                ]),
            ])
        };
        let shards =
            parse_shards(&[shard(8192, 16383, 7010), shard(0, 8191, 7000)], &seed()).unwrap();
        let t = Topology::new(shards).unwrap();
        assert_eq!(t.shards[0].master.addr(), "127.0.0.1:7000");
        assert_eq!(t.shards[0].replicas.len(), 1);
        assert_eq!(t.owner(16383), 1);
    }
}
