//! One side of a verification (the source or a target): a standalone server, or every master
//! of a cluster with the slot map to route each key. Reads are pipelined: a batch of commands
//! goes out in one write per node and the replies come back in order.

use std::collections::BTreeSet;

use bytes::{Bytes, BytesMut};
use ferry_resp::Frame;

use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::{self, Topology};

/// How long a batch's replies may take: a server that stops answering ends the verification.
const REPLY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// A connection and the db it has selected.
struct Node {
    conn: Conn,
    db: u32,
}

pub struct Side {
    pub role: Role,
    /// What the user named, for the report.
    pub label: String,
    nodes: Vec<Node>,
    /// Set for a cluster: `nodes[i]` is the master of `shards[i]`.
    topology: Option<Topology>,
    /// `DEBUG DIGEST-VALUE` answers on every node.
    pub digest: bool,
}

impl Side {
    pub async fn connect(role: Role, endpoint: &Endpoint) -> Result<Side> {
        let mut conn = Conn::connect(role, endpoint).await?;
        let label = endpoint.to_string();
        let (nodes, topology) = if topology::is_cluster(&mut conn).await? {
            let topology = Topology::discover(&mut conn, endpoint).await?;
            let mut nodes = Vec::with_capacity(topology.shards.len());
            for shard in &topology.shards {
                let conn = Conn::connect_direct(role, &shard.master).await?;
                nodes.push(Node { conn, db: 0 });
            }
            (nodes, Some(topology))
        } else {
            (vec![Node { conn, db: 0 }], None)
        };
        let mut side = Side {
            role,
            label,
            nodes,
            topology,
            digest: true,
        };
        for node in &mut side.nodes {
            // A server that refuses DEBUG (the default since 7.0 unless enable-debug-command
            // is set, and on most hosted offers) is compared value by value instead.
            let probe = node
                .conn
                .request(&[&b"DEBUG"[..], b"DIGEST-VALUE", b"__ferry:verify:probe"])
                .await?;
            side.digest &= matches!(probe, Frame::Array(_));
        }
        Ok(side)
    }

    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The dbs that hold keys on any node (`INFO keyspace`).
    pub async fn dbs(&mut self) -> Result<BTreeSet<u32>> {
        let mut dbs = BTreeSet::new();
        for node in &mut self.nodes {
            let info = node.conn.request_ok(&[&b"INFO"[..], b"keyspace"]).await?;
            let text = info.as_bytes().cloned().unwrap_or_default();
            for line in String::from_utf8_lossy(&text).lines() {
                if let Some(n) = line
                    .strip_prefix("db")
                    .and_then(|l| l.split(':').next())
                    .and_then(|n| n.parse().ok())
                {
                    dbs.insert(n);
                }
            }
        }
        Ok(dbs)
    }

    /// How many dbs the server has: 1 for a cluster, else its `databases` setting (16, Redis's
    /// default, when `CONFIG` is refused).
    pub async fn databases(&mut self) -> Result<u32> {
        if self.topology.is_some() {
            return Ok(1);
        }
        let reply = self.nodes[0]
            .conn
            .request(&[&b"CONFIG"[..], b"GET", b"databases"])
            .await?;
        let n = match reply {
            Frame::Array(items) => items
                .get(1)
                .and_then(|f| std::str::from_utf8(f.as_bytes()?).ok()?.parse().ok()),
            Frame::Map(pairs) => pairs
                .first()
                .and_then(|(_, v)| std::str::from_utf8(v.as_bytes()?).ok()?.parse().ok()),
            _ => None,
        };
        Ok(n.unwrap_or(crate::pipeline::transform::DEFAULT_DBS))
    }

    /// One `SCAN` step on node `node` in `db`: the next cursor (0 at the end) and keys.
    pub async fn scan(
        &mut self,
        node: usize,
        db: u32,
        cursor: u64,
        count: usize,
    ) -> Result<(u64, Vec<Bytes>)> {
        let cursor = cursor.to_string();
        let count = count.to_string();
        let args: Vec<&[u8]> = vec![b"SCAN", cursor.as_bytes(), b"COUNT", count.as_bytes()];
        let replies = self.on_node(node, db, &[args]).await?;
        let bad = || self.bad_reply("SCAN");
        let parts = match replies.into_iter().next() {
            Some(Frame::Array(parts)) => parts,
            Some(e) if e.is_error() => return Err(self.failed("SCAN", &e)),
            _ => return Err(bad()),
        };
        let [next, Frame::Array(keys)] = <[Frame; 2]>::try_from(parts).map_err(|_| bad())? else {
            return Err(bad());
        };
        let next = next
            .as_bytes()
            .and_then(|b| std::str::from_utf8(b).ok()?.parse().ok())
            .ok_or_else(bad)?;
        let keys = keys
            .into_iter()
            .map(|k| k.as_bytes().cloned().ok_or_else(bad))
            .collect::<Result<_>>()?;
        Ok((next, keys))
    }

    /// Sends `cmds` (each about the key in its second argument, or third for `DEBUG`) in `db` and returns the
    /// replies in the same order. Error replies come back as frames.
    pub async fn pipeline<A: AsRef<[u8]>>(
        &mut self,
        db: u32,
        cmds: &[Vec<A>],
    ) -> Result<Vec<Frame>> {
        let Some(topology) = &self.topology else {
            return self.on_node(0, db, cmds).await;
        };
        let mut per_node: Vec<Vec<usize>> = vec![Vec::new(); self.nodes.len()];
        for (i, cmd) in cmds.iter().enumerate() {
            // `DEBUG DIGEST-VALUE key` names its key third.
            let at = match cmd.first() {
                Some(name) if name.as_ref().eq_ignore_ascii_case(b"DEBUG") => 2,
                _ => 1,
            };
            let key = cmd.get(at).map_or(&b""[..], |k| k.as_ref());
            per_node[topology.owner(ferry_keyspace::slot(key))].push(i);
        }
        let mut replies = vec![Frame::Null; cmds.len()];
        for (node, indices) in per_node.into_iter().enumerate() {
            if indices.is_empty() {
                continue;
            }
            let part: Vec<&Vec<A>> = indices.iter().map(|&i| &cmds[i]).collect();
            let got = self.on_node_refs(node, db, &part).await?;
            for (i, frame) in indices.into_iter().zip(got) {
                replies[i] = frame;
            }
        }
        Ok(replies)
    }

    /// One command about `key`, routed like [`Side::pipeline`].
    pub async fn request<A: AsRef<[u8]>>(&mut self, db: u32, args: Vec<A>) -> Result<Frame> {
        let mut replies = self.pipeline(db, &[args]).await?;
        Ok(replies.pop().unwrap_or(Frame::Null))
    }

    async fn on_node<A: AsRef<[u8]>>(
        &mut self,
        node: usize,
        db: u32,
        cmds: &[Vec<A>],
    ) -> Result<Vec<Frame>> {
        let refs: Vec<&Vec<A>> = cmds.iter().collect();
        self.on_node_refs(node, db, &refs).await
    }

    async fn on_node_refs<A: AsRef<[u8]>>(
        &mut self,
        node: usize,
        db: u32,
        cmds: &[&Vec<A>],
    ) -> Result<Vec<Frame>> {
        let node = &mut self.nodes[node];
        let mut out = BytesMut::new();
        let select = node.db != db;
        if select {
            ferry_resp::encode_command(
                &mut out,
                &[b"SELECT".as_slice(), db.to_string().as_bytes()],
            );
        }
        for cmd in cmds {
            ferry_resp::encode_command(&mut out, cmd);
        }
        node.conn.write_all(&out).await?;
        let read = async {
            if select {
                let (reply, _) = node.conn.read_frame().await?;
                if let Frame::Error(msg) = reply {
                    return Err(node.conn.server_error(&msg));
                }
                node.db = db;
            }
            let mut replies = Vec::with_capacity(cmds.len());
            for _ in cmds {
                replies.push(node.conn.read_frame().await?.0);
            }
            Ok(replies)
        };
        match tokio::time::timeout(REPLY_TIMEOUT, read).await {
            Ok(r) => r,
            Err(_) => Err(Error::Closed {
                role: self.role,
                addr: self.label.clone(),
                context: format!(" (no reply within {} s)", REPLY_TIMEOUT.as_secs()),
            }),
        }
    }

    pub fn bad_reply(&self, what: &str) -> Error {
        Error::Server {
            role: self.role,
            addr: self.label.clone(),
            msg: format!("unexpected reply to {what}"),
        }
    }

    /// An error reply to a read: verification cannot go on without it.
    pub fn failed(&self, what: &str, frame: &Frame) -> Error {
        Error::Server {
            role: self.role,
            addr: self.label.clone(),
            msg: format!(
                "{what} failed: {}",
                frame
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_else(|| frame.to_string())
            ),
        }
    }
}
