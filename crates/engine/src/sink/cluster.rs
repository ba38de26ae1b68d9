//! Writes to a Redis Cluster: one pipelined writer per master (the standalone writer, with an
//! encoder that keeps each transaction within one slot), and a router in front that sends
//! each key and command to the master serving its slot.
//!
//! What a cluster refuses and a standalone source sends anyway is handled here:
//! - a command whose keys span slots and whose effect splits per key (DEL, UNLINK, MSET, ...)
//!   is split into one command per slot;
//! - one that cannot be split (RENAME, SUNIONSTORE, LMOVE, ...) is run by the target itself on
//!   copies of its keys made in one slot, and the keys it writes are copied back, each slot's
//!   part in one transaction with that slot's checkpoint (the destination first, so a replay
//!   after a crash recomputes the rest from data it has not yet changed);
//! - a source transaction that spans slots is applied as one transaction per slot, counted in
//!   `relaxed_transactions`.
//!
//! Checkpoints: each slot has its own (`__ferry:checkpoint:<task>:slot:{tag}`), written in the
//! transaction with that slot's writes, and each master a base one
//! (`__ferry:checkpoint:<task>:base:{tag}`) for bytes with no write in them. A resume starts
//! the source at the lowest base and skips, per slot, what that slot's checkpoint covers.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_keyspace::{SlotTags, slot};
use ferry_resp::Frame;
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use super::caps::Caps;
use super::encode::SlotCheckpoints;
use super::lease::{self, Fence};
use super::standalone::{Options, StandaloneTarget};
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::{SLOTS, Topology};
use crate::pipeline::entry::{Barrier, Batch, Command, Entry, OWN_KEY_PREFIX, weight};
use crate::sink::checkpoint::Checkpoint;
use crate::status::Status;
use crate::text::escape;

/// Entries per batch sent to one master's writer.
const SHARD_BATCH: usize = 512;
/// Bytes per batch sent to one master's writer, about (see `entry::weight`): the parts of a
/// huge value would otherwise gather by the hundred while the source outpaces the writers.
const SHARD_BATCH_BYTES: usize = 512 * 1024;
/// Commands of one source transaction held to be regrouped by slot, at most; a longer one is
/// applied in parts.
const TXN_HOLD: usize = 4096;

pub struct ClusterTarget {
    topology: Topology,
    writers: Vec<StandaloneTarget>,
    /// One more connection per master, for reads and the few writes done one at a time.
    control: Vec<Conn>,
    pub caps: Caps,
    tags: Arc<SlotTags>,
    resume: Resume,
    /// Base checkpoints to put back in place before writing (see `Rebase`).
    rebase: Option<Rebase>,
}

/// After a resharding moved a master's first slot (and with it the base checkpoint kept
/// there) elsewhere: each master without a base of its own gets one naming the resume point
/// (true of every master: it is the lowest base), then the bases left in slots that are no
/// master's first are deleted, so an old position does not hold every later resume back.
#[derive(Debug, Default)]
struct Rebase {
    /// (master, key, checkpoint text) to write.
    write: Vec<(usize, Vec<u8>, String)>,
    /// (master, key) to delete, after the writes.
    delete: Vec<(usize, Bytes)>,
}

/// What the checkpoints found on a resume say is applied already, beyond where the source
/// resumes.
#[derive(Default, Debug)]
struct Resume {
    /// Per master (topology order): everything routed to it up to here is applied.
    bases: Vec<u64>,
    /// Per slot: its writes up to here are applied.
    slots: HashMap<u16, u64>,
    /// Nothing beyond this offset is covered.
    until: u64,
}

impl Resume {
    fn covers(&self, slot: Option<u16>, shard: usize, offset: u64) -> bool {
        if offset > self.until {
            return false;
        }
        match slot {
            // A slot's writes go in transactions with its own checkpoint, which moves with
            // the slot. A master's base says nothing of a slot that came to it in a
            // resharding: writes its old master refused (MOVED) lie below the new one's base.
            Some(s) => {
                self.bases.iter().all(|&b| b >= offset)
                    || self.slots.get(&s).is_some_and(|&o| o >= offset)
            }
            None => self.bases.get(shard).is_some_and(|&b| b >= offset),
        }
    }
}

impl ClusterTarget {
    /// Reads the slot map through `conn` and connects to every master.
    pub async fn connect(endpoint: &Endpoint, mut conn: Conn) -> Result<ClusterTarget> {
        let topology = Topology::discover(&mut conn, endpoint).await?;
        drop(conn);
        let mut writers = Vec::new();
        let mut control = Vec::new();
        for shard in &topology.shards {
            writers.push(StandaloneTarget::connect(&shard.master).await?);
            control.push(Conn::connect(Role::Target, &shard.master).await?);
        }
        let caps = writers
            .iter()
            .map(|w| w.caps)
            .min_by_key(|c| (c.rdb_version, c.version))
            .unwrap_or(Caps::LATEST);
        tracing::info!(
            masters = topology.shards.len(),
            "target is a cluster: {}",
            topology
                .shards
                .iter()
                .map(|s| s.master.addr())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Ok(ClusterTarget {
            topology,
            writers,
            control,
            caps,
            tags: Arc::new(SlotTags::new()),
            resume: Resume::default(),
            rebase: None,
        })
    }

    pub fn addr(&self) -> String {
        self.topology
            .shards
            .first()
            .map(|s| s.master.addr())
            .unwrap_or_default()
    }

    /// One connection to each master, in topology order.
    pub fn control_mut(&mut self) -> &mut [Conn] {
        &mut self.control
    }

    /// The control connection to the master serving `key`'s slot.
    pub fn conn_for_key(&mut self, key: &[u8]) -> &mut Conn {
        let owner = self.topology.owner(slot(key));
        &mut self.control[owner]
    }

    /// Which master (topology order) serves each slot.
    pub fn slot_owners(&self) -> Vec<usize> {
        (0..SLOTS as u16).map(|s| self.topology.owner(s)).collect()
    }

    pub fn masters(&self) -> usize {
        self.topology.shards.len()
    }

    /// Where to resume: the lowest of the masters' base checkpoints. Remembers what each slot's
    /// checkpoint covers beyond it, so those writes are not applied twice.
    pub async fn read_checkpoint(&mut self, task: &str) -> Result<Option<Checkpoint>> {
        let base_prefix = key_prefix(task, "base");
        let slot_prefix = key_prefix(task, "slot");
        // Each master's own base lives in its first slot; one found anywhere else came with a
        // slot a resharding moved.
        let own_keys: Vec<Vec<u8>> = self
            .topology
            .shards
            .iter()
            .map(|shard| self.tags.key_in_slot(&base_prefix, shard.first_slot(), b""))
            .collect();
        let mut bases: Vec<Option<Checkpoint>> = vec![None; self.control.len()];
        let mut moved: Vec<(usize, Bytes, Checkpoint)> = Vec::new();
        let mut slots: Vec<(u16, Checkpoint)> = Vec::new();
        let pattern = [&glob_escape(&key_prefix(task, ""))[..], b"*"].concat();
        for (i, conn) in self.control.iter_mut().enumerate() {
            for key in scan(conn, &pattern).await? {
                let value = match conn.request_ok(&[&b"GET"[..], &key]).await? {
                    Frame::Bulk(v) => v,
                    _ => continue,
                };
                let Some(checkpoint) = Checkpoint::parse(&value) else {
                    return Err(Error::Server {
                        role: Role::Target,
                        addr: conn.addr.clone(),
                        msg: format!(
                            "holds {} = {} which is not a ferry checkpoint; delete it or give the task another [sync] name",
                            escape(&key),
                            escape(&value)
                        ),
                    });
                };
                if key[..] == own_keys[i][..] {
                    bases[i] = Some(checkpoint);
                } else if key.starts_with(&base_prefix) {
                    moved.push((i, key, checkpoint));
                } else if key.starts_with(&slot_prefix) {
                    slots.push((slot(&key), checkpoint));
                }
            }
        }
        self.rebase = None;
        if bases.iter().all(Option::is_none) && moved.is_empty() && slots.is_empty() {
            return Ok(None);
        }
        let found: Vec<&Checkpoint> = bases
            .iter()
            .flatten()
            .chain(moved.iter().map(|(_, _, c)| c))
            .collect();
        let replid = match found.first() {
            Some(Checkpoint::Applied { replid, .. } | Checkpoint::Loading { replid }) => {
                replid.clone()
            }
            None => match &slots[0].1 {
                Checkpoint::Applied { replid, .. } | Checkpoint::Loading { replid } => {
                    replid.clone()
                }
            },
        };
        // A master without a base is one that lost its data (restarted without persistence,
        // flushed), unless a resharding took its first slot: then that base is among the
        // moved ones. More masters without one than bases moved: some data is gone.
        let without = bases.iter().filter(|b| b.is_none()).count();
        let consistent = without <= moved.len()
            && found
                .iter()
                .all(|c| matches!(c, Checkpoint::Applied { replid: r, .. } if *r == replid));
        if !consistent {
            // Some master lost its part (restarted without persistence, flushed) or a copy
            // was interrupted: what the target holds cannot be continued.
            for (i, b) in bases.iter().enumerate() {
                if b.is_none() && without > moved.len() {
                    tracing::warn!(
                        "target master {} holds no checkpoint of this task while others do: it lost its data",
                        self.topology.shards[i].master
                    );
                }
            }
            return Ok(Some(Checkpoint::Loading { replid }));
        }
        let (mut low, mut low_db) = (u64::MAX, 0);
        for c in &found {
            if let Checkpoint::Applied { offset, db, .. } = c
                && *offset < low
            {
                (low, low_db) = (*offset, *db);
            }
        }
        let offsets: Vec<u64> = if moved.is_empty() {
            bases
                .iter()
                .flatten()
                .map(|c| match c {
                    Checkpoint::Applied { offset, .. } => *offset,
                    Checkpoint::Loading { .. } => 0,
                })
                .collect()
        } else {
            // Which master confirmed what is no longer known: only the lowest holds for all.
            let value = Checkpoint::Applied {
                replid: replid.clone(),
                offset: low,
                db: low_db,
                last_write: None,
            }
            .to_string();
            self.rebase = Some(Rebase {
                write: bases
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| b.is_none())
                    .map(|(i, _)| (i, own_keys[i].clone(), value.clone()))
                    .collect(),
                delete: moved.iter().map(|(i, k, _)| (*i, k.clone())).collect(),
            });
            vec![low; bases.len()]
        };
        let mut resume = Resume {
            bases: offsets,
            slots: HashMap::new(),
            until: low,
        };
        for (s, c) in slots {
            if let Checkpoint::Applied {
                replid: r, offset, ..
            } = c
                && r == replid
                && offset > low
            {
                resume.slots.insert(s, offset);
                resume.until = resume.until.max(offset);
            }
        }
        resume.until = resume
            .until
            .max(resume.bases.iter().copied().max().unwrap_or(0));
        self.resume = resume;
        Ok(Some(Checkpoint::Applied {
            replid,
            offset: low,
            db: low_db,
            last_write: None,
        }))
    }

    /// Routes every entry from `rx` to the masters' writers until it closes; `task` names the
    /// checkpoints (None: none are kept).
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        status: Arc<Status>,
        options: Options,
        task: Option<String>,
    ) -> Result<()> {
        if let Some(rebase) = self.rebase.take() {
            for (i, key, value) in &rebase.write {
                self.control[*i]
                    .request_ok(&[&b"SET"[..], key, value.as_bytes()])
                    .await?;
            }
            for (i, key) in &rebase.delete {
                self.control[*i].request_ok(&[&b"DEL"[..], key]).await?;
            }
            tracing::info!(
                moved = rebase.delete.len(),
                "base checkpoints moved by a resharding put back in each master's first slot"
            );
        }
        let slot_keys = task.as_ref().map(|t| {
            let prefix = key_prefix(t, "slot");
            Arc::new(SlotCheckpoints::new(
                (0..SLOTS as u16)
                    .map(|s| Bytes::from(self.tags.key_in_slot(&prefix, s, b"")))
                    .collect(),
            ))
        });
        // The filter runs here, once for every master; their writers only map dbs.
        let mut transform = match &options.filter {
            Some(rules) => {
                crate::pipeline::transform::Transform::check_target(rules, Some(1), true)?;
                Some(crate::pipeline::transform::Transform::new(rules.clone(), 1))
            }
            None => None,
        };
        let db_map = options.db_map.clone();
        let options = Options {
            filter: None,
            ..options
        };
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        let mut writer_status = Vec::new();
        for (i, (shard, writer)) in self.topology.shards.iter().zip(self.writers).enumerate() {
            let (tx, rx) = mpsc::channel::<Batch>(4);
            let base = task.as_ref().map(|t| {
                self.tags
                    .key_in_slot(&key_prefix(t, "base"), shard.first_slot(), b"")
            });
            let owned = (0..SLOTS as u16)
                .filter(|&s| self.topology.owner(s) == i)
                .collect();
            let writer = writer.for_cluster(slot_keys.clone(), owned);
            let st = Arc::new(Status::new(
                status
                    .events()
                    .for_shard(&shard.master.addr())
                    .without_phases(),
            ));
            st.set_phase(status.phase());
            writer_status.push(st.clone());
            handles.push(tokio::spawn(writer.run(rx, st, options.clone(), base)));
            senders.push(tx);
        }
        let mut router = Router {
            caps: self.caps,
            topology: self.topology,
            pending: vec![Vec::new(); senders.len()],
            pending_bytes: vec![0; senders.len()],
            senders,
            handles,
            control: self.control,
            tags: self.tags,
            slot_keys,
            resume: self.resume,
            replid: None,
            txn: None,
            status: status.clone(),
            on_error: options.on_error,
            position: None,
            broadcast: 0,
            db_map,
            fence: options.fence.clone().filter(|_| task.is_some()),
        };
        let mut seen = Vec::new();
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        let routed: Result<()> = async {
            loop {
                tokio::select! {
                    batch = rx.recv() => {
                        let Some(batch) = batch else { break };
                        let batch = match transform.as_mut() {
                            Some(t) => t.apply(batch, &status)?,
                            None => batch,
                        };
                        for entry in batch {
                            if let Err(e) = router.entry(entry).await {
                                // What came before it is written (and checkpointed) first.
                                router.send_all().await;
                                return Err(e);
                            }
                        }
                        router.broadcast_position().await?;
                        if rx.is_empty() && !router.send_all().await {
                            break;
                        }
                    }
                    _ = tick.tick() => {}
                    // A latency probe waits for every master: notice its confirmation promptly.
                    _ = tokio::time::sleep(PROBE_FOLD), if status.latency.waiting() => {}
                }
                status.fold_writers(&writer_status, &mut seen);
            }
            router.send_all().await;
            Ok(())
        }
        .await;
        drop(rx);
        let Router {
            senders, handles, ..
        } = router;
        drop(senders);
        let mut first = routed.err();
        for handle in handles {
            let result = handle.await.unwrap_or_else(|join| {
                Err(Error::Internal {
                    what: "a target writer",
                    why: join.to_string(),
                })
            });
            if let Err(e) = result {
                first.get_or_insert(e);
            }
        }
        status.fold_writers(&writer_status, &mut seen);
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

/// How often the masters' positions are gathered while a latency probe waits for them: the
/// measured latency is late by at most this.
const PROBE_FOLD: Duration = Duration::from_millis(2);

/// `__ferry:checkpoint:<task>:<what>:` — followed by a hash tag naming the slot.
fn key_prefix(task: &str, what: &str) -> Vec<u8> {
    let mut key = Checkpoint::key(task);
    key.push(b':');
    if !what.is_empty() {
        key.extend_from_slice(what.as_bytes());
        key.push(b':');
    }
    key
}

/// A SCAN pattern matching `prefix` literally.
fn glob_escape(prefix: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(prefix.len());
    for &b in prefix {
        if matches!(b, b'*' | b'?' | b'[' | b']' | b'\\') {
            out.push(b'\\');
        }
        out.push(b);
    }
    out
}

/// Every key of one server matching `pattern`.
pub(crate) async fn scan(conn: &mut Conn, pattern: &[u8]) -> Result<Vec<Bytes>> {
    let mut cursor = Bytes::from_static(b"0");
    let mut keys = Vec::new();
    loop {
        let reply = conn
            .request_ok(&[&b"SCAN"[..], &cursor, b"MATCH", pattern, b"COUNT", b"1000"])
            .await?;
        let Frame::Array(parts) = reply else {
            return Err(conn.server_error(b"SCAN answered something else than an array"));
        };
        let mut parts = parts.into_iter();
        let (Some(next), Some(Frame::Array(found))) = (parts.next(), parts.next()) else {
            return Err(conn.server_error(b"SCAN answered an unexpected array"));
        };
        keys.extend(found.into_iter().filter_map(|f| f.as_bytes().cloned()));
        cursor = next.as_bytes().cloned().unwrap_or_default();
        if &cursor[..] == b"0" || cursor.is_empty() {
            return Ok(keys);
        }
    }
}

/// Where a command goes on a cluster.
#[derive(Debug, PartialEq)]
pub enum Route {
    /// About the whole server (FLUSHALL, FUNCTION LOAD): every master.
    Everywhere,
    /// No data in it (PING, SELECT, PUBLISH's echo): nothing to write.
    Nowhere,
    /// All its keys are in this slot.
    Slot(u16),
    /// Keys in several slots, and the same effect as one command per slot.
    Split(Vec<(u16, Vec<Bytes>)>),
    /// Keys in several slots and an effect that depends on them together: key argument
    /// indexes, and which of those keys it writes, in the order to write them back.
    Combine {
        keys: Vec<usize>,
        written: Vec<usize>,
    },
    /// Cannot be applied on a cluster; why.
    Refuse(String),
}

/// How `args` travels on a cluster target.
pub fn route(args: &[Bytes]) -> Route {
    use ferry_keyspace::{Keys, Kind};
    // Forwarded messages (`forward_publish`): a cluster passes PUBLISH to every node from
    // any master; SPUBLISH must reach the master of its channel's slot.
    let name = &args[0];
    if (name.eq_ignore_ascii_case(b"PUBLISH") || name.eq_ignore_ascii_case(b"SPUBLISH"))
        && let Some(channel) = args.get(1)
    {
        return Route::Slot(slot(channel));
    }
    match ferry_keyspace::keys(args) {
        Keys::Global => Route::Everywhere,
        Keys::NoEffect => Route::Nowhere,
        Keys::Unsupported(why) | Keys::Malformed(why) => Route::Refuse(why.to_string()),
        // A module's command: its first argument is its key by convention (said once in
        // the log by the caller's warning on refusal, if the guess is wrong).
        Keys::Unknown => match args.get(1) {
            Some(key) => Route::Slot(slot(key)),
            None => Route::Refuse("an unknown command without arguments".into()),
        },
        Keys::Keyed(k) if k.other_db() => {
            Route::Refuse("it writes into another db, and a cluster has only db 0".into())
        }
        Keys::Keyed(k) => match (k.slot(args), k.kind()) {
            (Some(s), _) => Route::Slot(s),
            (None, Kind::Split) => match ferry_keyspace::split_by_slot(args) {
                Some(parts) => Route::Split(parts),
                None => Route::Refuse("it cannot be split per slot".into()),
            },
            (None, _) => Route::Combine {
                keys: k.positions().collect(),
                written: k.written_in_apply_order(),
            },
        },
    }
}

struct Router {
    topology: Topology,
    senders: Vec<mpsc::Sender<Batch>>,
    handles: Vec<JoinHandle<Result<()>>>,
    /// Entries gathered per master, sent when large or when the source has nothing more.
    pending: Vec<Batch>,
    /// Their weight, per master.
    pending_bytes: Vec<usize>,
    control: Vec<Conn>,
    tags: Arc<SlotTags>,
    slot_keys: Option<Arc<SlotCheckpoints>>,
    resume: Resume,
    replid: Option<Bytes>,
    /// A source transaction being gathered, to be regrouped by slot.
    txn: Option<Vec<Command>>,
    status: Arc<Status>,
    on_error: crate::spec::OnError,
    /// The stream position of the last entry seen, and the last one every master was told.
    position: Option<(u64, u32)>,
    broadcast: u64,
    /// Which target db each source db is written to: only those written to db 0 can be.
    db_map: crate::pipeline::transform::DbMap,
    /// The task's fence: the write-back transactions are fenced like the writers' own.
    fence: Option<Arc<Fence>>,
    /// For the commands computed here, in the form the masters take (see `rewrite`).
    caps: Caps,
}

impl Router {
    /// Tells every master how far the stream has gone, so one that receives none of the
    /// writes still confirms the position (the task's applied offset is the lowest of them).
    async fn broadcast_position(&mut self) -> Result<()> {
        match self.position {
            Some((offset, db)) if offset > self.broadcast && self.txn.is_none() => {
                self.broadcast = offset;
                self.everywhere(Entry::Offset { offset, db }).await
            }
            _ => Ok(()),
        }
    }

    async fn entry(&mut self, entry: Entry) -> Result<()> {
        match &entry {
            Entry::Command(c) => self.position = Some((c.end_offset, c.db)),
            Entry::Offset { offset, db } => {
                self.position = Some((*offset, *db));
                if self.txn.is_none() {
                    self.broadcast = self.broadcast.max(*offset);
                }
            }
            Entry::SnapshotEnd { offset } => self.position = Some((*offset, 0)),
            _ => {}
        }
        match entry {
            Entry::SyncStart {
                ref replid,
                snapshot,
                ..
            } => {
                if snapshot {
                    self.resume = Resume::default();
                }
                self.replid = Some(replid.clone());
                self.everywhere(entry).await
            }
            // Bytes with no write inside a source transaction being held (a cascade's own
            // checkpoint, a PUBLISH): its EXEC tells the position, after its writes.
            Entry::Offset { .. } if self.txn.is_some() => Ok(()),
            Entry::SnapshotStart { .. }
            | Entry::SnapshotEnd { .. }
            | Entry::Function(_)
            | Entry::Offset { .. } => self.everywhere(entry).await,
            Entry::Barrier(_) => self.everywhere(entry).await,
            Entry::Unwritable(_) => self.send_to(0, entry).await,
            Entry::Key(ref record) => {
                let shard = self.shard_of(record.meta.db, &record.meta.key)?;
                self.send_to(shard, entry).await
            }
            Entry::BigStart(ref meta) | Entry::BigChunk(ref meta, _) | Entry::BigEnd(ref meta) => {
                let shard = self.shard_of(meta.db, &meta.key)?;
                self.send_to(shard, entry).await
            }
            Entry::Command(cmd) => self.command(cmd).await,
        }
    }

    fn shard_of(&self, db: u64, key: &[u8]) -> Result<usize> {
        if self.db_map.target(db as u32) != 0 {
            return Err(only_db0(db, key));
        }
        Ok(self.topology.owner(slot(key)))
    }

    async fn send_to(&mut self, shard: usize, entry: Entry) -> Result<()> {
        self.pending_bytes[shard] += weight(&entry);
        self.pending[shard].push(entry);
        if self.pending[shard].len() >= SHARD_BATCH
            || self.pending_bytes[shard] >= SHARD_BATCH_BYTES
        {
            self.pending_bytes[shard] = 0;
            let batch = std::mem::take(&mut self.pending[shard]);
            if self.senders[shard].send(batch).await.is_err() {
                return Err(self.writer_gone().await);
            }
        }
        Ok(())
    }

    async fn everywhere(&mut self, entry: Entry) -> Result<()> {
        for shard in 0..self.senders.len() {
            self.send_to(shard, entry.clone()).await?;
        }
        Ok(())
    }

    /// Sends what is gathered. False when a writer has stopped (its result says why).
    async fn send_all(&mut self) -> bool {
        for shard in 0..self.senders.len() {
            if self.pending[shard].is_empty() {
                continue;
            }
            self.pending_bytes[shard] = 0;
            let batch = std::mem::take(&mut self.pending[shard]);
            if self.senders[shard].send(batch).await.is_err() {
                return false;
            }
        }
        true
    }

    /// The error of a writer that stopped, for the one-line message.
    async fn writer_gone(&mut self) -> Error {
        for handle in &mut self.handles {
            if handle.is_finished() {
                // Taken out: the teardown awaits every handle once more.
                let done = std::mem::replace(handle, tokio::spawn(async { Ok(()) }));
                if let Ok(Err(e)) = done.await {
                    return e;
                }
            }
        }
        Error::Internal {
            what: "a target writer",
            why: "it ended without a result".into(),
        }
    }

    /// Waits until every master has confirmed everything sent to it.
    async fn barrier(&mut self) -> Result<()> {
        let signal = Arc::new(Semaphore::new(0));
        self.everywhere(Entry::Barrier(Barrier(signal.clone())))
            .await?;
        if !self.send_all().await {
            return Err(self.writer_gone().await);
        }
        let n = self.senders.len() as u32;
        loop {
            tokio::select! {
                permit = signal.acquire_many(n) => {
                    if let Ok(p) = permit { p.forget(); }
                    return Ok(());
                }
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    if self.handles.iter().any(JoinHandle::is_finished) {
                        return Err(self.writer_gone().await);
                    }
                }
            }
        }
    }

    async fn command(&mut self, cmd: Command) -> Result<()> {
        let name = cmd.args[0].as_ref();
        if name.eq_ignore_ascii_case(b"MULTI") {
            self.txn = Some(Vec::new());
            return Ok(());
        }
        if name.eq_ignore_ascii_case(b"EXEC") {
            self.apply_txn().await?;
            let (offset, db) = (cmd.end_offset, cmd.db);
            return self.everywhere(Entry::Offset { offset, db }).await;
        }
        if let Some(txn) = &mut self.txn {
            txn.push(cmd);
            if txn.len() >= TXN_HOLD {
                let held = std::mem::take(txn);
                self.apply_grouped(held).await?;
            }
            return Ok(());
        }
        self.single(cmd).await
    }

    /// Applies a source transaction as one transaction per slot (see the module comment).
    async fn apply_txn(&mut self) -> Result<()> {
        let Some(held) = self.txn.take() else {
            return Ok(());
        };
        self.apply_grouped(held).await
    }

    async fn apply_grouped(&mut self, held: Vec<Command>) -> Result<()> {
        let mut slots_seen = std::collections::BTreeSet::new();
        let mut run: Vec<(u16, usize, Command)> = Vec::new();
        for cmd in held {
            let routed = route(&cmd.args);
            match &routed {
                Route::Slot(s) => {
                    slots_seen.insert(*s);
                    run.push((*s, run.len(), cmd));
                }
                Route::Split(parts) => {
                    for (s, _) in parts {
                        slots_seen.insert(*s);
                    }
                    // Splits stay in place relative to their own slots' commands.
                    for (s, args) in parts.clone() {
                        let part = split_command(&cmd, args, s);
                        run.push((s, run.len(), part));
                    }
                }
                _ => {
                    // Reads the target: everything before it goes first, in slot groups.
                    slots_seen.insert(u16::MAX);
                    self.flush_run(&mut run).await?;
                    self.single(cmd).await?;
                }
            }
        }
        self.flush_run(&mut run).await?;
        if slots_seen.len() > 1 {
            self.status
                .relaxed_transactions
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Sends a run of single-slot commands, grouped by slot (keeping their order within a slot),
    /// so each master's writer makes one transaction per slot.
    async fn flush_run(&mut self, run: &mut Vec<(u16, usize, Command)>) -> Result<()> {
        run.sort_by_key(|(s, i, _)| (*s, *i));
        for (s, _, mut cmd) in run.drain(..) {
            cmd.slot = Some(s);
            self.slotted(cmd).await?;
        }
        Ok(())
    }

    /// A command outside a source transaction.
    async fn single(&mut self, cmd: Command) -> Result<()> {
        match route(&cmd.args) {
            Route::Nowhere => {
                let (offset, db) = (cmd.end_offset, cmd.db);
                self.everywhere(Entry::Offset { offset, db }).await
            }
            Route::Everywhere => {
                if self.db_map.target(cmd.db_on_target()) != 0
                    && cmd.args[0].eq_ignore_ascii_case(b"FLUSHDB")
                {
                    return Err(only_db0(cmd.db_on_target() as u64, b""));
                }
                for shard in 0..self.senders.len() {
                    let entry = if self.resume.covers(None, shard, cmd.end_offset) {
                        Entry::Offset {
                            offset: cmd.end_offset,
                            db: cmd.db,
                        }
                    } else {
                        Entry::Command(cmd.clone())
                    };
                    self.send_to(shard, entry).await?;
                }
                Ok(())
            }
            Route::Slot(s) => {
                let mut cmd = cmd;
                cmd.slot = Some(s);
                self.slotted(cmd).await
            }
            Route::Split(parts) => {
                for (s, args) in parts {
                    let part = split_command(&cmd, args, s);
                    self.slotted(part).await?;
                }
                Ok(())
            }
            Route::Combine { keys, written } => self.combine(cmd, keys, written).await,
            Route::Refuse(why) => Err(Error::CannotWrite {
                what: format!(
                    "command {} from the source",
                    String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase()
                ),
                why: format!("a cluster target cannot apply it: {why}"),
            }),
        }
    }

    /// A command whose keys are all in `cmd.slot`.
    async fn slotted(&mut self, cmd: Command) -> Result<()> {
        let s = cmd.slot.unwrap_or(0);
        if self.db_map.target(cmd.db_on_target()) != 0 {
            return Err(only_db0(
                cmd.db_on_target() as u64,
                cmd.args.get(1).map_or(&[][..], |k| k),
            ));
        }
        let shard = self.topology.owner(s);
        if self.resume.covers(Some(s), shard, cmd.end_offset) {
            let (offset, db) = (cmd.end_offset, cmd.db);
            return self.send_to(shard, Entry::Offset { offset, db }).await;
        }
        self.send_to(shard, Entry::Command(cmd)).await
    }

    /// Applies a command whose keys span slots and whose effect cannot be split: the target
    /// computes it on copies of its keys gathered in one slot, then the keys it writes are
    /// copied back, destination first, each slot's part in one transaction with that slot's
    /// checkpoint.
    async fn combine(&mut self, cmd: Command, keys: Vec<usize>, written: Vec<usize>) -> Result<()> {
        if self.db_map.target(cmd.db_on_target()) != 0 {
            return Err(only_db0(cmd.db_on_target() as u64, &cmd.args[keys[0]]));
        }
        let offset = cmd.end_offset;
        let home_key = written.first().copied().unwrap_or(keys[0]);
        let home = slot(&cmd.args[home_key]);
        let todo: Vec<usize> = written
            .iter()
            .copied()
            .filter(|&p| {
                let s = slot(&cmd.args[p]);
                !self.resume.covers(Some(s), self.topology.owner(s), offset)
            })
            .collect();
        if !todo.is_empty() {
            self.barrier().await?;
            self.combine_now(&cmd, &keys, &todo, home).await?;
            self.status
                .cross_slot_commands
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        self.status
            .ops_applied
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let db = cmd.db;
        self.everywhere(Entry::Offset { offset, db }).await
    }

    async fn combine_now(
        &mut self,
        cmd: &Command,
        keys: &[usize],
        todo: &[usize],
        home: u16,
    ) -> Result<()> {
        let home_shard = self.topology.owner(home);
        // Copies of every key, by name (a key may appear twice), in the home slot.
        let mut copies: Vec<(Bytes, Bytes)> = Vec::new();
        let mut args = cmd.args.clone();
        for &p in keys {
            let key = cmd.args[p].clone();
            let copy = match copies.iter().find(|(k, _)| *k == key) {
                Some((_, c)) => c.clone(),
                None => {
                    let suffix = format!(":{}", copies.len());
                    let copy = Bytes::from(self.tags.key_in_slot(
                        [OWN_KEY_PREFIX, b"tmp:"].concat().as_slice(),
                        home,
                        suffix.as_bytes(),
                    ));
                    let value = self
                        .read_value(self.topology.owner(slot(&key)), &key)
                        .await?;
                    self.write_value(home_shard, &copy, value.as_ref()).await?;
                    copies.push((key, copy.clone()));
                    copy
                }
            };
            args[p] = copy;
        }
        let mut refused = None;
        for args in self.rewritten(args) {
            if let Frame::Error(msg) | Frame::BulkError(msg) =
                self.control[home_shard].request(&args).await?
            {
                refused = Some(String::from_utf8_lossy(&msg).into_owned());
                break;
            }
        }
        if let Some(msg) = refused {
            self.cleanup(home_shard, &copies).await?;
            return self.refused(cmd, msg);
        }
        // Destination first: a replay after a crash recomputes the sources' part from data
        // that part has not changed yet.
        let mut done: Vec<u16> = Vec::new();
        for &p in todo {
            let s = slot(&cmd.args[p]);
            if done.contains(&s) {
                continue;
            }
            done.push(s);
            let mut writes = Vec::new();
            for &q in todo {
                let key = &cmd.args[q];
                if slot(key) != s || writes.iter().any(|(k, _): &(Bytes, _)| k == key) {
                    continue;
                }
                // Every key argument was copied above; a written key is one of them.
                let Some((_, copy)) = copies.iter().find(|(k, _)| k == key) else {
                    continue;
                };
                let copy = copy.clone();
                let value = self.read_value(home_shard, &copy).await?;
                writes.push((key.clone(), value));
            }
            self.write_back(s, cmd, writes).await?;
        }
        self.cleanup(home_shard, &copies).await
    }

    /// A key's serialized value and time to live (ms, 0 for none), or None when it is missing.
    async fn read_value(&mut self, shard: usize, key: &[u8]) -> Result<Option<(Bytes, i64)>> {
        let conn = &mut self.control[shard];
        let payload = match conn.request_ok(&[&b"DUMP"[..], key]).await? {
            Frame::Bulk(p) => p,
            _ => return Ok(None),
        };
        let ttl = match conn.request_ok(&[&b"PTTL"[..], key]).await? {
            Frame::Integer(t) if t > 0 => t,
            Frame::Integer(-2) => return Ok(None),
            _ => 0,
        };
        Ok(Some((payload, ttl)))
    }

    async fn write_value(
        &mut self,
        shard: usize,
        key: &[u8],
        value: Option<&(Bytes, i64)>,
    ) -> Result<()> {
        let conn = &mut self.control[shard];
        conn.request_ok(&[&b"DEL"[..], key]).await?;
        if let Some((payload, ttl)) = value {
            let ttl = ttl.to_string();
            conn.request_ok(&[&b"RESTORE"[..], key, ttl.as_bytes(), payload, b"REPLACE"])
                .await?;
        }
        Ok(())
    }

    /// Writes `writes` (all in slot `s`) and that slot's checkpoint in one transaction.
    async fn write_back(
        &mut self,
        s: u16,
        cmd: &Command,
        writes: Vec<(Bytes, Option<(Bytes, i64)>)>,
    ) -> Result<()> {
        let shard = self.topology.owner(s);
        let mut out = BytesMut::new();
        let mut replies = 2;
        // Fenced as the writers' transactions are (see `lease`).
        if let (Some(fence), Some(keys)) = (&self.fence, &self.slot_keys) {
            let fence_key = fence.slot_key(s);
            let own = lease::own_key(&fence_key, fence.token());
            ferry_resp::encode_command(&mut out, &[&b"WATCH"[..], &fence_key, &own]);
            ferry_resp::encode_command(
                &mut out,
                &[
                    &b"EVAL"[..],
                    lease::GUARD_SCRIPT.as_bytes(),
                    b"3",
                    &fence_key,
                    keys.key(s),
                    &own,
                    fence.token(),
                    b"",
                ],
            );
        }
        ferry_resp::encode_command(&mut out, &[&b"MULTI"[..]]);
        for (key, value) in &writes {
            ferry_resp::encode_command(&mut out, &[&b"DEL"[..], key]);
            replies += 1;
            if let Some((payload, ttl)) = value {
                let ttl = ttl.to_string();
                ferry_resp::encode_command(
                    &mut out,
                    &[&b"RESTORE"[..], key, ttl.as_bytes(), payload],
                );
                replies += 1;
            }
        }
        if let (Some(keys), Some(replid)) = (&self.slot_keys, &self.replid) {
            let value = format!(
                "{} {} {}",
                String::from_utf8_lossy(replid),
                cmd.end_offset,
                cmd.db
            );
            ferry_resp::encode_command(&mut out, &[&b"SET"[..], keys.key(s), value.as_bytes()]);
            replies += 1;
        }
        ferry_resp::encode_command(&mut out, &[&b"EXEC"[..]]);
        let conn = &mut self.control[shard];
        conn.write_all(&out).await?;
        if let Some(fence) = self.fence.as_ref().filter(|_| self.slot_keys.is_some()) {
            conn.read_frame().await?;
            if let (Frame::Integer(code), _) = conn.read_frame().await?
                && code != 1
            {
                // EXEC answers nil: read what is left, then stop.
                for _ in 0..replies {
                    conn.read_frame().await?;
                }
                return Err(fence.refused(&conn.addr, code));
            }
        }
        let mut last = Frame::Null;
        for _ in 0..replies {
            let (frame, _) = conn.read_frame().await?;
            if let Frame::Error(msg) = &frame {
                return Err(Error::TargetRefused {
                    addr: conn.addr.clone(),
                    what: format!(
                        "writing back {} for a cross-slot {}",
                        escape(&writes[0].0),
                        String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase()
                    ),
                    msg: String::from_utf8_lossy(msg).into_owned(),
                    retryable: crate::net::topology::is_redirect(msg),
                });
            }
            last = frame;
        }
        match last {
            Frame::Array(results) => {
                if let Some(Frame::Error(msg)) =
                    results.iter().find(|f| matches!(f, Frame::Error(_)))
                {
                    return Err(Error::TargetRefused {
                        addr: self.control[shard].addr.clone(),
                        what: format!("writing back {}", escape(&writes[0].0)),
                        msg: String::from_utf8_lossy(msg).into_owned(),
                        retryable: false,
                    });
                }
                Ok(())
            }
            other => Err(Error::TargetRefused {
                addr: self.control[shard].addr.clone(),
                what: format!("writing back {}", escape(&writes[0].0)),
                msg: format!("EXEC answered {other}"),
                retryable: true,
            }),
        }
    }

    async fn cleanup(&mut self, shard: usize, copies: &[(Bytes, Bytes)]) -> Result<()> {
        let mut args: Vec<&[u8]> = vec![b"DEL"];
        args.extend(copies.iter().map(|(_, c)| &c[..]));
        self.control[shard].request_ok(&args).await?;
        Ok(())
    }

    /// The target refused a cross-slot command's computation: `on_error` decides, as for any
    /// refused write.
    /// A command computed on one master, in the form it takes (see `rewrite`); what it
    /// cannot hold is counted and logged, as the writers do.
    fn rewritten(&self, args: Vec<Bytes>) -> Vec<Vec<Bytes>> {
        use super::rewrite::Form;
        match super::rewrite::for_target(&args, &self.caps) {
            Form::Same => vec![args],
            Form::Commands(commands) => commands,
            Form::Lossy { commands, why, .. } => {
                self.status
                    .dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                self.status.warn("dropped", format!("left out {why}"));
                commands
            }
        }
    }

    fn refused(&self, cmd: &Command, msg: String) -> Result<()> {
        let what = format!(
            "{} of key {} (cross-slot, computed on the target)",
            String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase(),
            escape(cmd.args.get(1).map_or(&[][..], |k| k))
        );
        // A slot that moved is no refusal of the command: never skipped, tried again.
        let moved = crate::net::topology::is_redirect(msg.as_bytes());
        match self.on_error {
            _ if moved => Err(Error::TargetRefused {
                addr: self.topology.shards[0].master.addr(),
                what,
                msg,
                retryable: true,
            }),
            crate::spec::OnError::Fail => Err(Error::TargetRefused {
                addr: self.topology.shards[0].master.addr(),
                what,
                msg,
                retryable: false,
            }),
            on_error => {
                self.status
                    .skipped_errors
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if on_error == crate::spec::OnError::Log {
                    self.status.warn(
                        "write_skipped",
                        format!("target refused {what}: {msg}; skipped (on_error)"),
                    );
                }
                Ok(())
            }
        }
    }
}

/// One slot's part of a split command, encoded anew.
fn split_command(cmd: &Command, args: Vec<Bytes>, slot: u16) -> Command {
    let mut raw = BytesMut::new();
    ferry_resp::encode_command(&mut raw, &args);
    Command {
        db: cmd.db,
        target_db: cmd.target_db,
        args,
        raw: raw.freeze(),
        end_offset: cmd.end_offset,
        slot: Some(slot),
    }
}

fn only_db0(db: u64, key: &[u8]) -> Error {
    let what = if key.is_empty() {
        format!("a write in db {db}")
    } else {
        format!("key {} in db {db}", escape(key))
    };
    Error::CannotWrite {
        what,
        why: "a cluster target has only db 0; sync only db 0 from this source ([filter] allow_db = [0]) or map this db to 0 ([filter] db_map)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &[&str]) -> Vec<Bytes> {
        words
            .iter()
            .map(|w| Bytes::copy_from_slice(w.as_bytes()))
            .collect()
    }

    #[test]
    fn routes_by_what_a_command_does_with_its_keys() {
        assert_eq!(route(&args(&["FLUSHALL"])), Route::Everywhere);
        assert_eq!(route(&args(&["PING"])), Route::Nowhere);
        // Forwarded messages go to the master of their channel's slot.
        assert_eq!(
            route(&args(&["SPUBLISH", "news", "hi"])),
            Route::Slot(slot(b"news"))
        );
        assert_eq!(
            route(&args(&["publish", "news", "hi"])),
            Route::Slot(slot(b"news"))
        );
        assert_eq!(route(&args(&["SET", "foo", "1"])), Route::Slot(12182));
        assert_eq!(
            route(&args(&["RENAME", "{a}x", "{a}y"])),
            Route::Slot(slot(b"a"))
        );
        match route(&args(&["DEL", "foo", "bar", "foo2"])) {
            Route::Split(parts) => {
                let keys: usize = parts.iter().map(|(_, a)| a.len() - 1).sum();
                assert_eq!(keys, 3);
                assert!(
                    parts
                        .iter()
                        .all(|(s, a)| a[1..].iter().all(|k| slot(k) == *s))
                );
            }
            other => panic!("{other:?}"),
        }
        match route(&args(&["RENAME", "foo", "bar"])) {
            Route::Combine { keys, written } => {
                assert_eq!(keys, vec![1, 2]);
                // The destination is written first.
                assert_eq!(written, vec![2, 1]);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn resume_covers_by_slot_and_by_master() {
        let r = Resume {
            bases: vec![100, 200],
            slots: [(7u16, 150u64)].into_iter().collect(),
            until: 200,
        };
        assert!(r.covers(Some(1), 0, 100));
        assert!(!r.covers(Some(1), 0, 101));
        assert!(r.covers(Some(7), 0, 150));
        assert!(!r.covers(Some(7), 0, 151));
        assert!(r.covers(None, 1, 200));
        assert!(!r.covers(None, 1, 201));
        // A slot now on master 1 whose checkpoint is behind that master's base (it came from
        // master 0 in a resharding): its writes past the slot's checkpoint are not covered.
        assert!(!r.covers(Some(1), 1, 180));
        assert!(!r.covers(Some(7), 1, 180));
        assert!(r.covers(Some(7), 1, 150));
    }

    #[test]
    fn checkpoint_patterns_match_literally() {
        assert_eq!(glob_escape(b"a*b?[c]"), b"a\\*b\\?\\[c\\]".to_vec());
        assert_eq!(
            key_prefix("t", "slot"),
            b"__ferry:checkpoint:t:slot:".to_vec()
        );
    }
}
