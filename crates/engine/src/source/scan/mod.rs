//! A source that will not replicate (PSYNC renamed away, or a user without it): every key is
//! read with `SCAN` + `DUMP`, and changes are followed through keyspace notifications, each
//! notified key read again and written whole (or deleted).
//!
//! What it promises is weaker than replication and said so everywhere: the target converges
//! (once writes stop and the notified keys are read, it equals the source), but writes in
//! between are not replayed one by one, order across keys is not kept, and a source
//! transaction is not applied as one. To keep even that promise the subscription starts
//! before the first key is read, every key is read on one connection by one loop (a later
//! read is never overtaken by an earlier one), and a subscription that drops, or names that
//! did not fit in memory, start a full pass again, which also deletes what the target holds
//! and the source no longer does.
//!
//! The entries are the ones a replica's would be, so filters, the db map, the Lua step, TTL
//! extension, limits, several targets and cluster targets apply unchanged: the first pass is
//! a snapshot (`Key`, `Big*` entries), what follows is commands (`RESTORE ... REPLACE`, `DEL`)
//! at offsets that count the bytes ferry has read.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_rdb::{KeyMeta, Record};
use ferry_resp::Frame;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::pipeline::entry::{Batch, Command, Entry, OWN_KEY_PREFIX};
use crate::status::{Phase, Status};

pub mod by_type;
mod notify;
mod prune;
mod read;
mod streamed;

pub use prune::Prune;

use notify::{Changes, Subscription};
use read::{Reader, Value};

/// Keys asked per `SCAN` step, and read per round trip.
const SCAN_COUNT: usize = 512;
/// Changed keys read per round trip.
const CHANGES_PER_READ: usize = 512;
/// A key changed again within this long is read once: the bound on how often a hot key is read.
const COALESCE: Duration = Duration::from_millis(20);
/// How often function libraries are compared with the source's.
const FUNCTIONS_EVERY: Duration = Duration::from_secs(10);
/// How often the source's count of FLUSHDB, FLUSHALL and SWAPDB calls is read.
const FLUSHES_EVERY: Duration = Duration::from_millis(500);
/// Most bytes (as `MEMORY USAGE` counts them) of a value read with one whole `DUMP`.
const SCAN_WHOLE_BYTES: usize = 1 << 20;
/// A batch goes to the writers at this many entries or bytes, or when the reader waits.
const BATCH_ENTRIES: usize = 1024;
const BATCH_BYTES: usize = 256 << 10;

pub struct Options {
    /// Stop once the first pass, and the changes made during it, are on the target.
    pub full_only: bool,
    /// How to find what the targets hold and the source no longer does; None where it cannot
    /// be told (a Lua step may rename keys).
    pub prune: Option<Prune>,
    /// The targets hold a copy from an earlier run of this task: prune after the first pass
    /// too, not only after a rescan.
    pub prune_first: bool,
    /// When a value is read in pieces, and how big the pieces are.
    pub rdb: ferry_rdb::Options,
    /// Every target takes `RESTORE ... ABSTTL` (5.0+); else a relative TTL is sent.
    pub abs_ttl: bool,
    /// The source dbs the filter lets through.
    pub dbs: Arc<dyn Fn(u32) -> bool + Send + Sync>,
    /// The source is a cluster node: db 0 only.
    pub cluster_node: bool,
    /// A cluster node's first slot: where a key of ferry's may be written on it.
    pub first_slot: Option<u16>,
}

/// Runs the scan source until the task stops, a link fails, or (full-only) the copy is done.
pub async fn run(
    endpoint: &Endpoint,
    options: Options,
    tx: mpsc::Sender<Batch>,
    status: Arc<Status>,
    cancel: CancellationToken,
) -> Result<()> {
    let mut admin = Conn::connect(Role::Source, endpoint).await?;
    let found = notify::enable(&mut admin).await?;
    match &found {
        notify::Found::On => {}
        notify::Found::TurnedOn(before) => status.warn(
            "notifications_enabled",
            format!(
                "turned on keyspace notifications on source {} (notify-keyspace-events was {before:?}); they stay on after the sync: set it back when the sync is over",
                admin.addr
            ),
        ),
        notify::Found::Unknown => {}
    }
    let dbs = source_dbs(&mut admin, &options).await;
    let changes = Changes::default();
    let mut follower = Follower::start(endpoint, &changes, &options).await?;
    if matches!(found, notify::Found::Unknown) {
        probe_notifications(&mut admin, &changes, &options, &status).await?;
    }
    drop(admin);
    // Above this a value's DUMP is streamed in chunks rather than held: a whole one waits in
    // the writers' queue (several batches deep) as a RESTORE, so it is kept small.
    let bounds = read::Bounds {
        big_bytes: options.rdb.big_value_bytes.min(SCAN_WHOLE_BYTES) as u64,
        big_elements: options.rdb.big_value_elements,
    };
    let mut conn = Conn::connect(Role::Source, endpoint).await?;
    if options.cluster_node {
        // A cluster replica (read_from = "replica") serves reads of its slots only after this;
        // a master takes it and changes nothing.
        conn.request_ok(&[&b"READONLY"[..]]).await?;
    }
    let reader = Reader::new(conn, bounds).await?;
    if !reader.abilities.dump {
        status.warn(
            "dump_refused",
            format!(
                "source {} refuses DUMP: every value is read type by type (HSCAN, LRANGE...) and written as commands, which is slower; module values cannot be read this way",
                reader.conn.addr
            ),
        );
    }
    // Shaped as a replication id, as checkpoints hold: new at every run, since a scan run's
    // stream can never be continued.
    let replid = format!(
        "{:016x}{:016x}{:08x}",
        rand_u64(),
        rand_u64(),
        rand_u64() as u32
    );
    status.set_replid(replid.clone());
    status.set_mode("scan");
    status.accept_source();
    tracing::info!(source = %endpoint, "reading the source by SCAN, following keyspace notifications");
    let mut scan = Scan {
        reader,
        out: Out {
            tx,
            batch: Vec::new(),
            weight: 0,
            offset: 0,
            status: status.clone(),
            copying: true,
            rdb_version: None,
            abs_ttl: options.abs_ttl,
        },
        changes,
        dbs,
        options,
        functions: BTreeMap::new(),
        rdb_version: None,
        flushes: None,
        cancel,
    };
    let sent = scan
        .out
        .push(Entry::SyncStart {
            replid: replid.into(),
            offset: 0,
            snapshot: true,
            clear_target: false,
        })
        .await;
    if !sent {
        return Ok(());
    }
    status.set_phase(Phase::Full);
    let result = scan.follow(&mut follower, endpoint).await;
    drop(follower);
    match result {
        Err(_) if scan.cancel.is_cancelled() => Ok(()),
        other => other,
    }
}

/// Where the source will not show its notify-keyspace-events: writes a key of ferry's own
/// (expiring in 10 s) and waits for its notification. None within 3 s: they are off, and
/// scan mode would miss every change. Where the write is refused, ferry cannot tell: it says
/// so and goes on.
async fn probe_notifications(
    admin: &mut Conn,
    changes: &Changes,
    options: &Options,
    status: &Status,
) -> Result<()> {
    let suffix = format!("{:016x}", rand_u64());
    let key = match options.first_slot {
        Some(slot) => {
            ferry_keyspace::SlotTags::new().key_in_slot(b"__ferry:probe:", slot, suffix.as_bytes())
        }
        None => format!("__ferry:probe:{suffix}").into_bytes(),
    };
    let key = Bytes::from(key);
    *changes.probe.lock().unwrap_or_else(|e| e.into_inner()) = Some((0, key.clone()));
    admin.request_ok(&[&b"SELECT"[..], b"0"]).await?;
    let wrote = admin
        .request(&[&b"SET"[..], &key, b"1", b"PX", b"10000"])
        .await?;
    if let Frame::Error(msg) = wrote {
        status.warn(
            "notifications_unseen",
            format!(
                "source {} shows neither its notify-keyspace-events (CONFIG GET refused) nor lets ferry write a key to see ({}): it must include K and A (e.g. \"KEA\", in the service's parameters), else scan mode misses every change after its first pass",
                admin.addr,
                String::from_utf8_lossy(&msg)
            ),
        );
        return Ok(());
    }
    match tokio::time::timeout(Duration::from_secs(3), changes.probe_seen.notified()).await {
        Ok(()) => Ok(()),
        Err(_) => Err(Error::Precheck(format!(
            "scan mode needs keyspace notifications from source {}: a key ferry wrote there was not notified within 3 s, so they are off (and CONFIG is refused, so ferry cannot turn them on); run CONFIG SET notify-keyspace-events KA there (or set it in the service's parameters), then start again",
            admin.addr
        ))),
    }
}

/// The subscription's task: started before anything is read, restarted after it drops.
struct Follower {
    task: tokio::task::JoinHandle<()>,
}

impl Follower {
    async fn start(endpoint: &Endpoint, changes: &Changes, options: &Options) -> Result<Follower> {
        let subscription = Subscription::start(endpoint).await?;
        let (changes, dbs) = (changes.clone(), options.dbs.clone());
        let cluster = options.cluster_node;
        let task = tokio::spawn(async move {
            subscription
                .run(changes, move |db| (!cluster || db == 0) && dbs(db))
                .await
        });
        Ok(Follower { task })
    }
}

impl Drop for Follower {
    /// However the run ends, its subscription ends with it.
    fn drop(&mut self) {
        self.task.abort();
    }
}

struct Scan {
    reader: Reader,
    out: Out,
    changes: Changes,
    dbs: Vec<u32>,
    options: Options,
    /// Function libraries as last read: name → code.
    functions: BTreeMap<Bytes, Bytes>,
    /// The RDB version of the source's DUMP payloads, once known (from `INFO`, or a payload).
    rdb_version: Option<u16>,
    /// Calls of FLUSHDB, FLUSHALL and SWAPDB the source has counted, as last read (`None`:
    /// it will not say).
    flushes: Option<u64>,
    cancel: CancellationToken,
}

impl Scan {
    /// The first pass, then the changes, until stopped; a lost subscription means a new
    /// subscription and a new pass.
    async fn follow(&mut self, follower: &mut Follower, endpoint: &Endpoint) -> Result<()> {
        self.flushes = flush_count(&mut self.reader.conn).await?;
        self.rdb_version = payload_version(&mut self.reader.conn).await;
        if self.flushes.is_none() {
            self.out.status.warn(
                "flushes_unseen",
                "the source does not let ferry read INFO commandstats: a FLUSHDB, FLUSHALL or SWAPDB there (which keyspace notifications do not report) reaches the target only with the next full pass".into(),
            );
        }
        if !self.pass().await? {
            return Ok(());
        }
        self.functions().await?;
        let offset = self.out.offset;
        if !self.out.push(Entry::SnapshotEnd { offset }).await {
            return Ok(());
        }
        self.out.copying = false;
        tracing::info!("first pass over the source done; following its changes");
        if self.options.prune_first && !self.prune().await? {
            return Ok(());
        }
        // Full-only: the changes heard during the pass are read, then the copy is done.
        let mut budget = match self.options.full_only {
            true => Some(self.changes.lock().len()),
            false => None,
        };
        let mut functions_due = Instant::now() + FUNCTIONS_EVERY;
        let mut flushes_due = Instant::now();
        loop {
            if self.cancel.is_cancelled() {
                return Ok(());
            }
            if Instant::now() >= flushes_due {
                self.check_flushes().await?;
                flushes_due = Instant::now() + FLUSHES_EVERY;
            }
            let mut lost = self.changes.lock().lost.take();
            if self.out.status.rescan_asked.swap(false, SeqCst) {
                lost.get_or_insert_with(|| "a full pass was asked for (a cutover)".to_string());
            }
            if let Some(why) = lost {
                self.out.status.warn(
                    "rescan",
                    format!("{why}: reading every key again, and deleting from the target what the source no longer holds"),
                );
                if follower.task.is_finished() {
                    *follower = Follower::start(endpoint, &self.changes, &self.options).await?;
                }
                // The names waiting stay: one may be a deletion whose key's older value is
                // still on its way to the target, where the pass cannot see it.
                self.dbs = source_dbs(&mut self.reader.conn, &self.options).await;
                if !self.pass().await? || !self.prune().await? || !self.out.flush().await {
                    return Ok(());
                }
                self.out.status.rescans.fetch_add(1, SeqCst);
                continue;
            }
            let waiting = self.changes.lock().len();
            self.out
                .status
                .pending_keys
                .store(waiting as u64, std::sync::atomic::Ordering::Relaxed);
            if waiting == 0 || budget == Some(0) {
                if budget.is_some() {
                    self.out.flush().await;
                    return Ok(());
                }
                if !self.out.flush().await {
                    return Ok(());
                }
                tokio::select! {
                    _ = self.cancel.cancelled() => return Ok(()),
                    _ = self.changes.wake.notified() => {}
                    _ = tokio::time::sleep_until(functions_due.min(flushes_due).into()) => {}
                }
                if Instant::now() >= functions_due {
                    self.functions().await?;
                    functions_due = Instant::now() + FUNCTIONS_EVERY;
                }
                // Let a burst gather: a key written many times in it is read once.
                tokio::time::sleep(COALESCE).await;
                continue;
            }
            let n = budget.map_or(CHANGES_PER_READ, |b| b.min(CHANGES_PER_READ));
            let (keys, since) = self.changes.lock().take(n);
            if let Some(b) = &mut budget {
                *b -= keys.len();
            }
            if !self.read_changes(keys, since).await? {
                return Ok(());
            }
        }
    }

    /// Waits until the targets have confirmed every write handed out so far, so that a look
    /// at them sees all of it (a write still on its way would land after the look, and a key
    /// the source deleted meanwhile would stay). False when the task stops first.
    async fn confirmed(&mut self) -> bool {
        let offset = self.out.offset + 1;
        let db = self.reader.db().unwrap_or(0);
        if !self.out.advance(db, 1).await || !self.out.flush().await {
            return false;
        }
        while self.out.status.confirmed_offset() < offset {
            tokio::select! {
                _ = self.cancel.cancelled() => return false,
                _ = self.out.tx.closed() => return false,
                _ = tokio::time::sleep(Duration::from_millis(10)) => {}
            }
        }
        true
    }

    /// A flush or a swap of dbs on the source removes or moves keys without a notification
    /// for any of them: what the target holds is then judged again by a full pass.
    async fn check_flushes(&mut self) -> Result<()> {
        let Some(before) = self.flushes else {
            return Ok(());
        };
        let now = flush_count(&mut self.reader.conn).await?;
        if now.is_some_and(|n| n != before) {
            self.changes.lock().lost.get_or_insert_with(|| {
                "the source ran FLUSHDB, FLUSHALL or SWAPDB (which keyspace notifications do not report)".to_string()
            });
        }
        self.flushes = now;
        Ok(())
    }

    /// Deletes what the targets hold and the source no longer does, where that can be told.
    async fn prune(&mut self) -> Result<bool> {
        if self.options.prune.is_some() && !self.confirmed().await {
            return Ok(false);
        }
        match &self.options.prune {
            Some(prune) => {
                prune
                    .run(&mut self.reader, &mut self.out, &self.cancel)
                    .await
            }
            None => Ok(true),
        }
    }

    /// Reads every key of every synced db once. False when the writers have gone.
    async fn pass(&mut self) -> Result<bool> {
        let started = Instant::now();
        let mut keys_seen: u64 = 0;
        for db in self.dbs.clone() {
            self.reader.select(db).await?;
            let mut cursor = Bytes::from_static(b"0");
            loop {
                if self.cancel.is_cancelled() {
                    return Ok(false);
                }
                let (next, keys) = self.reader.scan(&cursor, SCAN_COUNT).await?;
                let keys: Vec<Bytes> = keys
                    .into_iter()
                    .filter(|k| !k.starts_with(OWN_KEY_PREFIX))
                    .collect();
                keys_seen += keys.len() as u64;
                if !keys.is_empty() && !self.read_and_write(db, &keys).await? {
                    return Ok(false);
                }
                if !self.out.copying && self.changes.lock().len() >= CHANGES_PER_READ {
                    // While a rescan goes on, changes are not kept waiting behind it.
                    let (keys, since) = self.changes.lock().take(CHANGES_PER_READ);
                    if !self.read_changes(keys, since).await? {
                        return Ok(false);
                    }
                    self.reader.select(db).await?;
                }
                if next.as_ref() == b"0" {
                    break;
                }
                cursor = next;
            }
        }
        tracing::info!(
            keys = keys_seen,
            secs = started.elapsed().as_secs_f64(),
            "pass over the source's keys done"
        );
        Ok(true)
    }

    /// Reads changed keys again (grouped by db) and writes what they hold now.
    async fn read_changes(
        &mut self,
        mut keys: Vec<(u32, Bytes)>,
        since: Option<Instant>,
    ) -> Result<bool> {
        keys.sort_by_key(|(db, _)| *db);
        let mut i = 0;
        while i < keys.len() {
            let db = keys[i].0;
            let end = keys[i..]
                .iter()
                .position(|(d, _)| *d != db)
                .map_or(keys.len(), |n| i + n);
            let group: Vec<Bytes> = keys[i..end].iter().map(|(_, k)| k.clone()).collect();
            self.reader.select(db).await?;
            if !self.read_and_write(db, &group).await? {
                return Ok(false);
            }
            i = end;
        }
        if let Some(since) = since {
            // Applied once the target confirms this offset: the age of the oldest change in
            // it is the lag a user sees.
            self.out.status.changed_since(self.out.offset, since);
        }
        Ok(self.out.flush().await)
    }

    /// Reads `keys` of `db` (selected) and hands what they hold to the writers.
    async fn read_and_write(&mut self, db: u32, keys: &[Bytes]) -> Result<bool> {
        let values = self.reader.read(keys).await?;
        for (key, value) in keys.iter().zip(values) {
            let sent = match value {
                Value::Gone if self.out.copying => true,
                Value::Gone => self.out.command(db, vec![Bytes::from_static(b"DEL"), key.clone()]).await,
                Value::Dumped { payload, expire_ms } => {
                    if let [.., a, b, _, _, _, _, _, _, _, _] = payload[..] {
                        self.rdb_version = Some(u16::from_le_bytes([a, b]));
                    }
                    self.out.dumped(db, key, payload, expire_ms).await?
                }
                Value::Big { kind, expire_ms } => self.big(db, key, kind, expire_ms).await?,
                Value::Pieces { kind, expire_ms } => self.pieces(db, key, kind, expire_ms).await?,
                Value::Unreadable { type_name } => {
                    self.out
                        .push(Entry::Unwritable(format!(
                            "key {} in db {db}: its type {type_name} has no commands to read it and the source refuses DUMP",
                            crate::text::escape(key)
                        )))
                        .await
                }
            };
            if !sent {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// A value too big to hold whole: its DUMP streamed through the parser where the payload's
    /// version is known, else read type by type.
    async fn big(
        &mut self,
        db: u32,
        key: &Bytes,
        kind: Option<by_type::ValueKind>,
        expire_ms: Option<i64>,
    ) -> Result<bool> {
        if let Some(version) = self.rdb_version {
            if self.out.copying && self.out.rdb_version != Some(version) {
                self.out.rdb_version = Some(version);
                if !self
                    .out
                    .push(Entry::SnapshotStart {
                        rdb_version: version,
                    })
                    .await
                {
                    return Ok(false);
                }
            }
            let streamed = streamed::dump(
                &mut self.reader.conn,
                db,
                key,
                expire_ms,
                version,
                &self.options.rdb,
                &mut self.out,
            )
            .await?;
            match streamed {
                streamed::Streamed::Written { bytes } => {
                    return Ok(self.out.copying || self.out.advance(db, bytes).await);
                }
                streamed::Streamed::Gone if self.out.copying => return Ok(true),
                streamed::Streamed::Gone => {
                    let args = vec![Bytes::from_static(b"DEL"), key.clone()];
                    return Ok(self.out.command(db, args).await);
                }
                streamed::Streamed::Stopped => return Ok(false),
                streamed::Streamed::NotFramed => {}
            }
        }
        let kind = match kind {
            Some(kind) => Some(kind),
            None => self.reader.kind(key).await?,
        };
        match kind {
            Some(kind) => self.pieces(db, key, kind, expire_ms).await,
            None => {
                let what = format!(
                    "key {} in db {db}: a module value too big to read whole, whose DUMP ferry cannot stream",
                    crate::text::escape(key)
                );
                Ok(self.out.push(Entry::Unwritable(what)).await)
            }
        }
    }

    /// A value read type by type, written as the big keys of a snapshot are: the target's
    /// copy is deleted, then the pieces go in order, then the expiry.
    async fn pieces(
        &mut self,
        db: u32,
        key: &Bytes,
        kind: by_type::ValueKind,
        expire_ms: Option<i64>,
    ) -> Result<bool> {
        let meta = Arc::new(KeyMeta {
            db: db as u64,
            key: key.clone(),
            expire_ms,
            idle: None,
            freq: None,
            type_byte: kind.type_byte(),
            key_metadata: None,
        });
        if !self.out.push(Entry::BigStart(meta.clone())).await {
            return Ok(false);
        }
        let mut piece = by_type::ValueReader::new(
            key.clone(),
            kind,
            self.options.rdb.chunk_elements,
            self.options.rdb.chunk_bytes,
        );
        let mut bytes = 0;
        while let Some(chunk) = piece.next(&mut self.reader.conn).await? {
            let entry = Entry::BigChunk(meta.clone(), chunk);
            bytes += crate::pipeline::entry::weight(&entry) as u64;
            if !self.out.push(entry).await {
                return Ok(false);
            }
        }
        if piece.vanished() {
            // Deleted or retyped while it was read: notified, so read again soon; meanwhile
            // the target holds part of it.
            tracing::debug!(key = %crate::text::escape(key), db, "a key changed while read in pieces");
        }
        if !self.out.push(Entry::BigEnd(meta)).await {
            return Ok(false);
        }
        // After the first pass the stream's position moves past it, as for any command.
        Ok(self.out.copying || self.out.advance(db, bytes).await)
    }

    /// Function libraries (7.0+): all of them in the first pass, then what changed.
    async fn functions(&mut self) -> Result<()> {
        let reply = self
            .reader
            .conn
            .request(&[&b"FUNCTION"[..], b"LIST", b"WITHCODE"])
            .await?;
        // Before 7.0, or a user without it: no functions to copy.
        let Frame::Array(libraries) = reply else {
            return Ok(());
        };
        let mut now = BTreeMap::new();
        for library in libraries {
            let Frame::Array(fields) = library else {
                continue;
            };
            let mut name = None;
            let mut code = None;
            for pair in fields.chunks(2) {
                match (pair[0].as_bytes().map(|b| b.as_ref()), pair.get(1)) {
                    (Some(b"library_name"), Some(v)) => name = v.as_bytes().cloned(),
                    (Some(b"library_code"), Some(v)) => code = v.as_bytes().cloned(),
                    _ => {}
                }
            }
            if let (Some(name), Some(code)) = (name, code) {
                now.insert(name, code);
            }
        }
        for (name, code) in &now {
            if self.functions.get(name) == Some(code) {
                continue;
            }
            let sent = match self.out.copying {
                true => self.out.push(Entry::Function(code.clone())).await,
                false => {
                    let args = vec![
                        Bytes::from_static(b"FUNCTION"),
                        Bytes::from_static(b"LOAD"),
                        Bytes::from_static(b"REPLACE"),
                        code.clone(),
                    ];
                    self.out.command(0, args).await
                }
            };
            if !sent {
                return Ok(());
            }
        }
        for name in self.functions.keys() {
            if !now.contains_key(name) {
                let args = vec![
                    Bytes::from_static(b"FUNCTION"),
                    Bytes::from_static(b"DELETE"),
                    name.clone(),
                ];
                self.out.command(0, args).await;
            }
        }
        self.functions = now;
        Ok(())
    }
}

/// Where entries go: batched, each command at the next offset.
pub(super) struct Out {
    tx: mpsc::Sender<Batch>,
    batch: Batch,
    weight: usize,
    /// Bytes of commands made so far: the stream's offset.
    offset: u64,
    status: Arc<Status>,
    /// In the first pass: keys go as a snapshot's; after it, as commands.
    copying: bool,
    /// The RDB version the snapshot's values were announced in.
    rdb_version: Option<u16>,
    abs_ttl: bool,
}

impl Out {
    /// Queues an entry; false when the writers have gone (the task is ending).
    async fn push(&mut self, entry: Entry) -> bool {
        self.weight += crate::pipeline::entry::weight(&entry);
        self.batch.push(entry);
        if self.batch.len() >= BATCH_ENTRIES || self.weight >= BATCH_BYTES {
            return self.flush().await;
        }
        true
    }

    async fn flush(&mut self) -> bool {
        if self.batch.is_empty() {
            return true;
        }
        self.weight = 0;
        self.status
            .source_offset
            .store(self.offset, std::sync::atomic::Ordering::Relaxed);
        self.tx.send(std::mem::take(&mut self.batch)).await.is_ok()
    }

    /// A command for the target, made here (not received), at the next offset.
    pub(super) async fn command(&mut self, db: u32, args: Vec<Bytes>) -> bool {
        let (raw, args) = encoded(args);
        self.offset += raw.len() as u64;
        self.status.wrote(db, &args, self.offset);
        self.push(Entry::Command(Command {
            db,
            target_db: None,
            args,
            raw,
            end_offset: self.offset,
            slot: None,
        }))
        .await
    }

    /// Moves the stream's position past `bytes` written without a command of their own.
    async fn advance(&mut self, db: u32, bytes: u64) -> bool {
        self.offset += bytes.max(1);
        let offset = self.offset;
        self.push(Entry::Offset { offset, db }).await
    }

    /// A DUMP payload: a snapshot key in the first pass, a `RESTORE ... REPLACE` after.
    async fn dumped(
        &mut self,
        db: u32,
        key: &Bytes,
        payload: Bytes,
        expire_ms: Option<i64>,
    ) -> Result<bool> {
        if !self.copying {
            let mut args = vec![Bytes::from_static(b"RESTORE"), key.clone()];
            let ttl = match (expire_ms, self.abs_ttl) {
                (None, _) => 0,
                (Some(at), true) => at,
                // A relative TTL from now: never 0, which would mean none.
                (Some(at), false) => (at - crate::status::latency::unix_ms() as i64).max(1),
            };
            args.push(Bytes::from(ttl.to_string()));
            args.push(payload);
            args.push(Bytes::from_static(b"REPLACE"));
            if self.abs_ttl && expire_ms.is_some() {
                args.push(Bytes::from_static(b"ABSTTL"));
            }
            return Ok(self.command(db, args).await);
        }
        let (type_byte, raw, version) =
            ferry_rdb::dump::parse_payload(&payload).map_err(|e| Error::Server {
                role: Role::Source,
                addr: String::new(),
                msg: format!(
                    "answered DUMP of key {} in db {db} with a payload ferry cannot read ({e})",
                    crate::text::escape(key)
                ),
            })?;
        if self.rdb_version != Some(version) {
            self.rdb_version = Some(version);
            if !self
                .push(Entry::SnapshotStart {
                    rdb_version: version,
                })
                .await
            {
                return Ok(false);
            }
        }
        let raw = payload.slice_ref(raw);
        let record = Record {
            meta: KeyMeta {
                db: db as u64,
                key: key.clone(),
                expire_ms,
                idle: None,
                freq: None,
                type_byte,
                key_metadata: None,
            },
            raw,
        };
        Ok(self.push(Entry::Key(record)).await)
    }
}

/// A command's RESP bytes, and its arguments as views into them: a value is held once, not
/// once in the arguments and again in the bytes written.
fn encoded(args: Vec<Bytes>) -> (Bytes, Vec<Bytes>) {
    let mut raw = BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
    raw.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    let mut spans = Vec::with_capacity(args.len());
    for arg in &args {
        raw.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        spans.push((raw.len(), arg.len()));
        raw.extend_from_slice(arg);
        raw.extend_from_slice(b"\r\n");
    }
    drop(args);
    let raw = raw.freeze();
    let args = spans
        .into_iter()
        .map(|(at, len)| raw.slice(at..at + len))
        .collect();
    (raw, args)
}

/// The RDB version of the server's DUMP payloads, by its version (`INFO server`): Valkey 9
/// reports `redis_version` 7.2.4 and writes RDB 80. `None` where `INFO` is refused (then a
/// small key's payload tells it).
async fn payload_version(conn: &mut Conn) -> Option<u16> {
    let fields = crate::net::info::info(conn, "server").await.ok()?;
    let version = |name: &str| {
        let v = fields.get(name)?;
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        Some((
            parts.next()?,
            parts.next().unwrap_or(0),
            parts.next().unwrap_or(0),
        ))
    };
    if version("valkey_version").is_some_and(|v| v.0 >= 9) {
        return Some(80);
    }
    version("redis_version").map(crate::sink::caps::rdb_version_of)
}

/// Calls of FLUSHDB, FLUSHALL and SWAPDB so far (`INFO commandstats`); `None` when refused.
async fn flush_count(conn: &mut Conn) -> Result<Option<u64>> {
    let text = match conn.request(&[&b"INFO"[..], b"commandstats"]).await? {
        Frame::Bulk(text) | Frame::Simple(text) => text,
        _ => return Ok(None),
    };
    let fields = crate::net::info::parse_info(&String::from_utf8_lossy(&text));
    let calls = |name: &str| {
        fields
            .get(name)
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("calls=")))
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0)
    };
    Ok(Some(
        calls("cmdstat_flushdb") + calls("cmdstat_flushall") + calls("cmdstat_swapdb"),
    ))
}

/// The dbs a pass reads: those `INFO keyspace` names (a db without keys has nothing to copy,
/// and its changes are heard all the same), else every db the server has.
async fn source_dbs(conn: &mut Conn, options: &Options) -> Vec<u32> {
    if options.cluster_node {
        return vec![0];
    }
    let mut dbs: Vec<u32> = match crate::net::info::info(conn, "keyspace").await {
        Ok(fields) => fields
            .keys()
            .filter_map(|k| k.strip_prefix("db")?.parse().ok())
            .collect(),
        Err(_) => {
            let n = crate::net::info::config_get(conn, "databases")
                .await
                .ok()
                .flatten()
                .and_then(|v| v.parse().ok())
                .unwrap_or(16);
            (0..n).collect()
        }
    };
    dbs.retain(|&db| (options.dbs)(db));
    dbs.sort_unstable();
    dbs
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_made_command_is_resp_and_its_arguments_are_views_of_it() {
        let (raw, args) = encoded(vec![
            Bytes::from_static(b"RESTORE"),
            Bytes::from_static(b"k"),
            Bytes::from_static(b""),
        ]);
        assert_eq!(
            raw.as_ref(),
            b"*3\r\n$7\r\nRESTORE\r\n$1\r\nk\r\n$0\r\n\r\n".as_slice()
        );
        let mut expected = BytesMut::new();
        ferry_resp::encode_command(&mut expected, &args);
        assert_eq!(raw.as_ref(), expected.as_ref());
        assert_eq!(args[1].as_ptr(), raw[21..].as_ptr());
    }
}
