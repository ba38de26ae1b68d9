//! Writes to one standalone server over one connection, deeply pipelined: commands go out in
//! large writes without waiting, a second task reads the replies in order and matches each to
//! what it confirms. The number of commands in flight is bounded, so memory is too.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ferry_resp::{Decoder, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, Semaphore, mpsc};

use super::caps::Caps;
use super::encode::{Encoder, Expect, Guard, Kind, SlotCheckpoints};
use super::lease::Fence;
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::socket::{ReadHalf, WriteHalf};
use crate::pipeline::entry::{Batch, Entry};
use crate::sink::checkpoint::Checkpoint;
use crate::spec::OnError;
use crate::status::throttle::{Stage, Throttle};
use crate::status::{Phase, Status};
use crate::text::escape;

const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Debug)]
pub struct Options {
    /// Commands sent and not yet answered, at most.
    pub max_in_flight: usize,
    /// Bytes gathered before they are written out, at most.
    pub flush_bytes: usize,
    /// Write snapshot values as plain commands instead of RESTORE.
    pub rewrite_values: bool,
    /// What a write the target refuses does.
    pub on_error: OnError,
    /// The target also receives other streams (the other shards of a cluster source): a
    /// command that empties the whole target would delete their keys too.
    pub shared_target: bool,
    /// The task's limits on what is written per second, shared by all its writers.
    pub throttle: Option<Arc<Throttle>>,
    /// The `[filter]` rules, applied to every batch before it is written (a cluster target
    /// applies them in its router and gives its masters' writers None).
    pub filter: Option<Arc<crate::pipeline::transform::Rules>>,
    /// Which target db each source db is written to.
    pub db_map: crate::pipeline::transform::DbMap,
    /// A Lua script each entry passes through before it is written.
    pub transform: Option<Arc<crate::pipeline::script::Script>>,
    /// The task's lease and fence: with a checkpoint, every transaction is fenced.
    pub fence: Option<Arc<Fence>>,
    /// Hold the TTLs of snapshot keys until the stream can renew or delete them (see `hold`).
    pub ttl_hold: Option<super::hold::Setup>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_in_flight: 16 * 1024,
            flush_bytes: 512 * 1024,
            rewrite_values: false,
            on_error: OnError::Fail,
            shared_target: false,
            throttle: None,
            filter: None,
            db_map: crate::pipeline::transform::DbMap::default(),
            transform: None,
            fence: None,
            ttl_hold: None,
        }
    }
}

pub struct StandaloneTarget {
    conn: Conn,
    pub caps: Caps,
    /// Set when this server is one master of a cluster target (with the per-slot
    /// checkpoint keys, when checkpoints are kept).
    cluster: Option<Option<Arc<SlotCheckpoints>>>,
    /// On a cluster, the slots this master serves (its fences are set again after a flush).
    owned: Arc<Vec<u16>>,
}

impl StandaloneTarget {
    /// Connects, logs in and checks that the server takes writes.
    pub async fn connect(endpoint: &Endpoint) -> Result<StandaloneTarget> {
        let conn = Conn::connect(Role::Target, endpoint).await?;
        Self::from_conn(conn).await
    }

    /// Writes through a connection already logged in; checks that the server takes writes.
    pub async fn from_conn(mut conn: Conn) -> Result<StandaloneTarget> {
        let role = conn.request_ok(&[&b"ROLE"[..]]).await?;
        let replica = match &role {
            Frame::Array(items) => items
                .first()
                .and_then(|f| f.as_bytes())
                .is_some_and(|r| &r[..] == b"slave"),
            _ => false,
        };
        if replica {
            return Err(Error::Server {
                role: Role::Target,
                addr: conn.addr.clone(),
                msg: "is a read-only replica; point ferry at its master".into(),
            });
        }
        let caps = Caps::probe(&mut conn).await?;
        Ok(StandaloneTarget {
            conn,
            caps,
            cluster: None,
            owned: Arc::default(),
        })
    }

    /// Makes this the writer for one master of a cluster (see `Encoder::for_cluster`).
    pub fn for_cluster(mut self, slots: Option<Arc<SlotCheckpoints>>, owned: Vec<u16>) -> Self {
        self.cluster = Some(slots);
        self.owned = Arc::new(owned);
        self
    }

    pub fn addr(&self) -> &str {
        &self.conn.addr
    }

    /// The connection, before `run` takes it over (left on db 0).
    pub fn conn_mut(&mut self) -> &mut Conn {
        &mut self.conn
    }

    /// The task's checkpoint, if the target holds one (db 0).
    pub async fn read_checkpoint(&mut self, key: &[u8]) -> Result<Option<Checkpoint>> {
        match self.conn.request_ok(&[&b"GET"[..], key]).await? {
            Frame::Bulk(value) => match Checkpoint::parse(&value) {
                Some(c) => Ok(Some(c)),
                None => Err(Error::Server {
                    role: Role::Target,
                    addr: self.conn.addr.clone(),
                    msg: format!(
                        "holds {} = {} which is not a ferry checkpoint; delete it or give the task another [sync] name",
                        escape(key),
                        escape(&value)
                    ),
                }),
            },
            _ => Ok(None),
        }
    }

    /// Writes every entry from `rx` until it closes, then waits for the last reply. With a
    /// `checkpoint` key, stream writes go in transactions that update it.
    pub async fn run(
        mut self,
        mut rx: mpsc::Receiver<Batch>,
        status: Arc<Status>,
        options: Options,
        checkpoint: Option<Vec<u8>>,
    ) -> Result<()> {
        let addr = self.conn.addr.clone();
        // On a cluster, the slots this master serves: where an earlier run may have held TTLs.
        let hold_slots = match (&options.ttl_hold, &self.cluster) {
            (Some(_), Some(_)) => own_slots(&mut self.conn).await?,
            _ => Vec::new(),
        };
        let mut hold = options.ttl_hold.clone().map(|setup| {
            super::hold::Hold::new(
                setup,
                self.cluster.is_some(),
                self.caps.version >= (7, 0, 0),
                super::hold::ROUND_PASSES,
            )
        });
        if let Some(hold) = &mut hold {
            // A server that does not say how many dbs it has may refuse SELECT: db 0 only.
            hold.set_own_slots(hold_slots, self.caps.databases.unwrap_or(1));
            // Loaded once on this connection; a target that refuses SCRIPT gets the body each
            // time. (A restart or failover that empties its script cache also drops this
            // connection; a SCRIPT FLUSH meanwhile makes a pass fail with NOSCRIPT, retried.)
            let script = super::hold::Hold::release_script();
            if let Ok(Frame::Bulk(sha)) = self
                .conn
                .request(&[&b"SCRIPT"[..], b"LOAD", script.as_bytes()])
                .await
            {
                hold.set_release_sha(sha);
            }
        }
        let hold_reports = hold.as_ref().map(|h| h.reports());
        let (stream, buf) = self.conn.into_parts();
        let (rd, mut wr) = stream.into_split();
        let credit = Arc::new(Semaphore::new(options.max_in_flight));
        let (expect_tx, expect_rx) = mpsc::unbounded_channel::<Vec<Expect>>();
        // Fenced only where a checkpoint is kept: the fence guards the checkpoint's writes.
        let fence = options.fence.clone().filter(|_| checkpoint.is_some());
        // The reply reader's call for a write-out with nothing new to write (a base checkpoint).
        let wake = Arc::new(Notify::new());
        let mut replies = tokio::spawn(read_replies(
            rd,
            buf,
            expect_rx,
            credit.clone(),
            status.clone(),
            Target {
                addr: addr.clone(),
                on_error: options.on_error,
                fence: fence.clone(),
                hold: hold_reports,
                credit_max: options.max_in_flight,
                wake: wake.clone(),
            },
        ));
        let mut enc = Encoder::for_target(self.caps, options.rewrite_values);
        if let Some(hold) = hold {
            enc = enc.with_hold(hold);
        }
        enc.shared_target = options.shared_target;
        enc.db_map = options.db_map.clone();
        // A cluster's masters get entries from the router, which applied the filter already.
        let mut transform = match (&options.filter, &self.cluster) {
            (Some(rules), None) => {
                crate::pipeline::transform::Transform::check_target(
                    rules,
                    self.caps.databases,
                    false,
                )?;
                Some(crate::pipeline::transform::Transform::new(
                    rules.clone(),
                    self.caps
                        .databases
                        .unwrap_or(crate::pipeline::transform::DEFAULT_DBS),
                ))
            }
            _ => None,
        };
        if let (Some(fence), Some(key)) = (&fence, &checkpoint) {
            enc = enc.with_guard(match &self.cluster {
                Some(_) => Guard {
                    token: fence.token().clone(),
                    own: fence.slot_key(ferry_keyspace::slot(key)),
                    slots: Some(fence.slot_keys()),
                    owned: self.owned.clone(),
                    lease: fence.lease_key(),
                    lease_value: fence.value().clone(),
                },
                None => Guard {
                    token: fence.token().clone(),
                    own: fence.key(),
                    slots: None,
                    owned: Arc::default(),
                    lease: fence.lease_key(),
                    lease_value: fence.value().clone(),
                },
            });
        }
        if let Some(key) = checkpoint {
            enc = enc.with_checkpoint(key);
        }
        if let Some(slots) = self.cluster {
            enc = enc.for_cluster(slots);
        }
        // Flush early enough that a flush never needs more credit than exists.
        let flush_replies = (options.max_in_flight / 4).max(1);
        let mut out = Out {
            fence: fence.as_deref(),
            wr: &mut wr,
            expect_tx: &expect_tx,
            credit: &credit,
            credit_max: options.max_in_flight as u32,
            status: &status,
            throttle: options.throttle.as_deref(),
            pending: Pending::default(),
        };
        let mut failure = None;
        let mut ended = None;
        'run: loop {
            let next = tokio::select! {
                batch = rx.recv() => Wait::Batch(batch),
                () = wake.notified() => Wait::Wake,
                done = &mut replies => Wait::ReaderEnded(done),
            };
            let batch = match next {
                Wait::Batch(batch) => batch,
                // The snapshot's writes are confirmed: the base checkpoint naming its end goes
                // out now, not with whatever the stream brings next (maybe nothing for a while).
                Wait::Wake => {
                    enc.snapshot_confirmed();
                    if out.flush(&mut enc).await {
                        continue;
                    }
                    break;
                }
                // A refusal or a lost connection ends the writer now. Idle, it would notice only
                // at its next write, and a router waiting for it to confirm (a cluster's
                // barrier before a cross-slot command) would send it nothing more: both waited
                // for ever.
                Wait::ReaderEnded(done) => {
                    ended = Some(done);
                    break;
                }
            };
            let Some(batch) = batch else {
                enc.finish();
                out.flush(&mut enc).await;
                // A cluster master's base checkpoint names what the target confirmed: once the
                // replies in flight are read (all the credit is back), the position they
                // confirmed goes out too, so a stop right after the copy leaves a checkpoint to
                // go on from, not the copy's "loading" one.
                let all = options.max_in_flight as u32;
                if let Ok(Ok(permits)) =
                    tokio::time::timeout(Duration::from_secs(10), credit.acquire_many(all)).await
                {
                    drop(permits);
                    out.flush(&mut enc).await;
                }
                break;
            };
            let batch = match &mut transform {
                None => batch,
                Some(t) => match t.apply(batch, &status) {
                    Ok(batch) => batch,
                    Err(e) => {
                        failure = Some(e);
                        break 'run;
                    }
                },
            };
            for entry in batch {
                // What is gathered is counted against one stage's limits: write it out first.
                if out.enters(&entry) && !out.flush(&mut enc).await {
                    break 'run;
                }
                out.pending.count(&entry);
                if let Err(e) = enc.push(entry) {
                    failure = Some(e);
                    break 'run;
                }
                let full = enc.pending_len() >= options.flush_bytes
                    || enc.replies >= flush_replies
                    || out.paced_write_due(&enc);
                if full && !out.flush(&mut enc).await {
                    break 'run;
                }
            }
            // Write out as soon as nothing more is waiting: latency when idle, big writes when busy.
            if rx.is_empty() && !out.flush(&mut enc).await {
                break;
            }
        }
        if failure.is_some() {
            // Write out what came before the failure (a source transaction it cut off is
            // discarded, never applied in part), and wait for its replies.
            enc.finish();
            out.flush(&mut enc).await;
        }
        drop(expect_tx);
        let _ = wr.shutdown().await;
        let ended = match ended {
            Some(ended) => ended,
            None => replies.await,
        };
        match ended {
            Ok(r) => match failure {
                Some(e) => Err(e),
                None => r,
            },
            Err(join) => Err(Error::Server {
                role: Role::Target,
                addr,
                msg: format!("reply reader stopped: {join}"),
            }),
        }
    }
}

/// What a writer waits for between batches.
enum Wait {
    /// The next batch, or none when the router is done.
    Batch(Option<Batch>),
    /// A confirmation that calls for a write of its own (see `Expect::SnapshotWritten`).
    Wake,
    /// The reply reader stopped, with its result.
    ReaderEnded(std::result::Result<Result<()>, tokio::task::JoinError>),
}

/// Where a writer's output goes: the reply reader, the socket, through the task's limits.
struct Out<'a> {
    /// Checked before each write: a copy that lost its task writes nothing more.
    fence: Option<&'a Fence>,
    wr: &'a mut WriteHalf,
    expect_tx: &'a mpsc::UnboundedSender<Vec<Expect>>,
    credit: &'a Semaphore,
    /// All the credit there is: a batch with more replies (one entry can make many: a flush
    /// of a cluster master sets its slots' fences again) takes all of it.
    credit_max: u32,
    status: &'a Status,
    throttle: Option<&'a Throttle>,
    /// Gathered since the last write, to count against the limits.
    pending: Pending,
}

/// Keys or commands gathered and not yet counted against the limits, and their stage.
#[derive(Default)]
struct Pending {
    stage: Option<Stage>,
    units: u64,
}

impl Pending {
    /// The stage an entry counts in, if it is data.
    fn stage_of(entry: &Entry) -> Option<Stage> {
        match entry {
            Entry::Key(_)
            | Entry::BigStart(_)
            | Entry::BigChunk(..)
            | Entry::BigEnd(_)
            | Entry::Function(_) => Some(Stage::Full),
            Entry::Command(_) => Some(Stage::Incremental),
            _ => None,
        }
    }

    fn count(&mut self, entry: &Entry) {
        if let Some(stage) = Self::stage_of(entry) {
            self.stage = Some(stage);
        }
        // A key counts once, when whole; a command once.
        if matches!(entry, Entry::Key(_) | Entry::BigEnd(_) | Entry::Command(_)) {
            self.units += 1;
        }
    }
}

impl Out<'_> {
    /// Whether `entry` starts another stage than what is gathered.
    fn enters(&self, entry: &Entry) -> bool {
        self.throttle.is_some_and(Throttle::is_limited)
            && matches!(
                (self.pending.stage, Pending::stage_of(entry)),
                (Some(a), Some(b)) if a != b
            )
    }

    /// Under a limit, writes go out in pieces of one bucket's worth, so the target sees a
    /// steady flow instead of a large write after a long wait.
    fn paced_write_due(&self, enc: &Encoder) -> bool {
        let (Some(throttle), Some(stage)) = (self.throttle, self.pending.stage) else {
            return false;
        };
        if !throttle.is_limited() {
            return false;
        }
        let (units, bytes) = throttle.write_size(stage);
        self.pending.units >= units || enc.pending_len() >= bytes
    }

    /// Hands what the encoder holds to the reply reader and the socket, after waiting as long
    /// as the limits say, and then the rest of a round of TTL hold passes, a chunk per write
    /// (an idle stream brings no next write-out to carry it). False when the reply reader has
    /// stopped (its result says why).
    async fn flush(&mut self, enc: &mut Encoder) -> bool {
        loop {
            if !self.flush_once(enc).await {
                return false;
            }
            if !enc.hold_round_left() {
                return true;
            }
        }
    }

    async fn flush_once(&mut self, enc: &mut Encoder) -> bool {
        enc.hold_tick();
        enc.confirmed(self.status.applied_offset.load(Relaxed));
        // A base checkpoint due goes out too: a master that got nothing since the copy ended
        // (stopped before any write or heartbeat reached it) still names the copy's end, so
        // the next run goes on from it instead of copying again.
        if enc.expects.is_empty() && !enc.checkpoint_due() {
            return true;
        }
        if self.fence.is_some_and(|f| f.check().is_err()) {
            return false;
        }
        let (parts, expects) = enc.take_parts();
        // Counted as the reply reader counts what it gives back, so credit is neither lost nor
        // made (a checkpoint written while the parts are taken has a reply too).
        let replies = expects.iter().filter(|e| e.takes_reply()).count() as u32;
        let replies = replies.min(self.credit_max);
        if replies > 0 {
            match self.credit.acquire_many(replies).await {
                Ok(permit) => permit.forget(),
                Err(_) => return false,
            }
        }
        if let (Some(throttle), Some(stage)) = (self.throttle, self.pending.stage) {
            let units = std::mem::take(&mut self.pending.units);
            let len = parts.iter().map(Bytes::len).sum::<usize>();
            throttle.wait(stage, units, len as u64).await;
        }
        if self.expect_tx.send(expects).is_err() {
            return false;
        }
        // With TLS the last bytes may wait in the TLS layer until flushed (a no-op on plain TCP).
        for part in parts {
            if self.wr.write_all(&part).await.is_err() {
                return false;
            }
        }
        self.wr.flush().await.is_ok()
    }
}

/// The target a reply reader reads from, and what it does with refusals.
struct Target {
    addr: String,
    on_error: OnError,
    fence: Option<Arc<Fence>>,
    /// Where passes over held TTLs report what they left.
    hold: Option<Arc<super::hold::Reports>>,
    /// All the credit there is (see `Out::credit_max`).
    credit_max: usize,
    /// Wakes the writer when a confirmation calls for a write of its own.
    wake: Arc<Notify>,
}

/// Reads replies in order and settles each expectation; the first refusal ends the task.
async fn read_replies(
    mut rd: ReadHalf,
    mut buf: BytesMut,
    mut expects: mpsc::UnboundedReceiver<Vec<Expect>>,
    credit: Arc<Semaphore>,
    status: Arc<Status>,
    target: Target,
) -> Result<()> {
    let Target {
        addr,
        on_error,
        fence,
        hold,
        credit_max,
        wake,
    } = target;
    let result = async {
        let mut decoder = Decoder::new(Limits::default());
        let mut settle = Settle {
            status: &status,
            addr: &addr,
            started: Instant::now(),
            on_error,
            fence: fence.as_deref(),
            hold,
            wake: &wake,
        };
        // Expectations inside an open transaction, settled by its EXEC.
        let mut queued: Option<Vec<Expect>> = None;
        while let Some(batch) = expects.recv().await {
            let mut replies = 0;
            for expect in batch {
                let frame = if expect.takes_reply() {
                    replies += 1;
                    Some(next_reply(&mut rd, &mut buf, &mut decoder, &addr).await?)
                } else {
                    None
                };
                match (expect, frame, &mut queued) {
                    (Expect::Multi, Some(frame), None) => {
                        settle.ok("MULTI", &frame)?;
                        queued = Some(Vec::new());
                    }
                    (Expect::Discard, Some(frame), Some(_)) => {
                        settle.ok("DISCARD", &frame)?;
                        queued = None;
                    }
                    (Expect::Exec, Some(frame), Some(_)) => {
                        let inside = queued.take().unwrap_or_default();
                        settle.exec(inside, frame)?;
                    }
                    (
                        expect @ (Expect::Reply { .. } | Expect::Hold { .. }),
                        Some(frame),
                        Some(inside),
                    ) => {
                        // Queued: a refusal now is a command the target does not accept at all.
                        settle.reply(&expect, &frame, true)?;
                        inside.push(expect);
                    }
                    (note, None, Some(inside)) => inside.push(note),
                    (expect, frame, None) => settle.one(expect, frame.as_ref())?,
                    (expect, _, Some(_)) => {
                        return Err(Error::Server {
                            role: Role::Target,
                            addr: addr.clone(),
                            msg: format!("ferry lost track of a transaction at {expect:?}"),
                        });
                    }
                }
            }
            // What the writer took for this batch (at most all the credit there is).
            credit.add_permits(replies.min(credit_max));
        }
        Ok(())
    }
    .await;
    // Wake a writer waiting for credit that will never come.
    credit.close();
    result
}

/// Acts on what the target confirmed.
struct Settle<'a> {
    status: &'a Status,
    addr: &'a str,
    started: Instant,
    on_error: OnError,
    fence: Option<&'a Fence>,
    /// Where passes over held TTLs report what they left.
    hold: Option<Arc<super::hold::Reports>>,
    wake: &'a Notify,
}

impl Settle<'_> {
    fn ok(&self, command: &'static str, frame: &Frame) -> Result<()> {
        match refusal(frame) {
            Some(msg) => Err(Error::TargetRefused {
                addr: self.addr.to_string(),
                what: command.to_string(),
                msg,
                retryable: true,
            }),
            None => Ok(()),
        }
    }

    /// Acts on a refusal of this command. Out of memory always fails the task. Refused when
    /// queued, the transaction is discarded whole, so it fails as retryable: nothing of it
    /// applied. Otherwise `on_error` decides.
    fn reply(&self, expect: &Expect, frame: &Frame, queued: bool) -> Result<()> {
        let (
            Expect::Reply {
                kind,
                command,
                key,
                db,
            },
            Some(msg),
        ) = (expect, refusal(frame))
        else {
            return Ok(());
        };
        let what = describe(command, *kind, key, *db);
        match self.on_error {
            // A full target is the user's to fix (maxmemory, eviction policy): stop and say so.
            _ if msg.starts_with("OOM") => Err(Error::TargetRefused {
                addr: self.addr.to_string(),
                what,
                msg,
                retryable: false,
            }),
            // The cluster's slot map changed under ferry, or the server became a replica in
            // a failover: start again from the checkpoints, asking anew where to write
            // (nothing of a refused transaction was applied). NOSCRIPT: the script cache was
            // emptied under a connection that loaded the TTL hold's script; a new one loads it.
            _ if crate::net::topology::is_redirect(msg.as_bytes())
                || msg.starts_with("READONLY")
                || msg.starts_with("NOSCRIPT") =>
            {
                Err(Error::TargetRefused {
                    addr: self.addr.to_string(),
                    what,
                    msg,
                    retryable: true,
                })
            }
            _ if queued => Err(Error::TargetRefused {
                addr: self.addr.to_string(),
                what,
                msg,
                retryable: true,
            }),
            OnError::Fail => Err(Error::TargetRefused {
                addr: self.addr.to_string(),
                what,
                msg,
                retryable: false,
            }),
            OnError::Skip | OnError::Log => {
                self.status.skipped_errors.fetch_add(1, Relaxed);
                if self.on_error == OnError::Log {
                    self.status.warn(
                        "write_skipped",
                        format!(
                            "target {} refused {what}: {msg}; skipped (on_error)",
                            self.addr
                        ),
                    );
                }
                Ok(())
            }
        }
    }

    /// Settles one expectation outside a transaction (`frame` for those that take a reply).
    fn one(&mut self, expect: Expect, frame: Option<&Frame>) -> Result<()> {
        let status = self.status;
        match expect {
            Expect::Offset(offset) => status.applied(offset),
            Expect::KeyDone { chunked } => {
                status.keys_written.fetch_add(1, Relaxed);
                if chunked {
                    status.big_keys.fetch_add(1, Relaxed);
                } else {
                    status.rewritten_keys.fetch_add(1, Relaxed);
                }
            }
            Expect::Dropped(what) => {
                status.dropped.fetch_add(1, Relaxed);
                // Empty: a kind already said once, counted only.
                if !what.is_empty() {
                    status.warn("dropped", format!("left out {what}"));
                }
            }
            Expect::SnapshotWritten(offset) => {
                status.applied(offset);
                self.wake.notify_one();
            }
            Expect::SnapshotApplied(offset) => {
                status.applied(offset);
                status.set_phase(Phase::Incremental);
                tracing::info!(
                    keys = status.keys_written.load(Relaxed),
                    seconds = self.started.elapsed().as_secs_f64(),
                    "snapshot applied on the target"
                );
            }
            Expect::Reply { kind, .. } => {
                if let Some(frame) = frame {
                    self.reply(&expect, frame, false)?;
                }
                match kind {
                    Kind::Keys(n) => {
                        status.keys_written.fetch_add(n as u64, Relaxed);
                    }
                    Kind::Part => {}
                    Kind::Stream { offset } => {
                        status.ops_applied.fetch_add(1, Relaxed);
                        if let Some(offset) = offset {
                            status.applied(offset);
                        }
                    }
                }
            }
            Expect::Barrier(barrier) => barrier.release(),
            Expect::Guard => match (frame, self.fence) {
                (Some(Frame::Integer(1)), _) | (_, None) => {}
                (Some(Frame::Integer(code)), Some(fence)) => {
                    return Err(fence.refused(self.addr, *code));
                }
                (other, _) => {
                    return Err(Error::TargetRefused {
                        addr: self.addr.to_string(),
                        what: "the fence check before a transaction (EVAL)".into(),
                        msg: other
                            .and_then(refusal)
                            .unwrap_or_else(|| format!("unexpected reply {other:?}")),
                        retryable: false,
                    });
                }
            },
            Expect::Hold {
                list,
                pass,
                key,
                db,
            } => {
                let label = Expect::Reply {
                    kind: Kind::Part,
                    command: Bytes::from_static(b"EVAL (ttl hold)"),
                    key,
                    db,
                };
                if let Some(frame) = frame {
                    // The slot moved to another master, its list with it: not this writer's
                    // to look at any more (its keys wait for the source's DEL or renewal).
                    // A cluster busy with a change (TRYAGAIN, CLUSTERDOWN): the next pass.
                    let refused = refusal(frame);
                    let moved = refused
                        .as_deref()
                        .is_some_and(|m| m.starts_with("MOVED ") || m.starts_with("ASK "));
                    let redirect = refused
                        .as_deref()
                        .is_some_and(|m| crate::net::topology::is_redirect(m.as_bytes()));
                    if !redirect {
                        self.reply(&label, frame, false)?;
                    }
                    if let Some(hold) = &self.hold {
                        match frame {
                            Frame::Integer(left) => hold.report(list, pass, *left),
                            _ if moved => hold.report(list, pass, -1),
                            _ => {}
                        }
                    }
                }
            }
            Expect::Multi | Expect::Exec | Expect::Discard => {}
        }
        Ok(())
    }

    /// The EXEC's array holds one result per queued command, in order.
    fn exec(&mut self, inside: Vec<Expect>, frame: Frame) -> Result<()> {
        let results = match frame {
            Frame::Array(results) => results,
            // A fenced transaction's WATCH fired after its check: another copy wrote the fence.
            Frame::Null if let Some(fence) = self.fence => {
                return Err(fence.refused(self.addr, -1));
            }
            other => {
                return Err(Error::TargetRefused {
                    addr: self.addr.to_string(),
                    what: "EXEC".into(),
                    msg: refusal(&other).unwrap_or_else(|| format!("unexpected reply {other}")),
                    // EXECABORT: nothing of the transaction was applied.
                    retryable: true,
                });
            }
        };
        let mut results = results.into_iter();
        for expect in inside {
            if matches!(expect, Expect::Reply { .. } | Expect::Hold { .. }) {
                let Some(result) = results.next() else {
                    return Err(Error::TargetRefused {
                        addr: self.addr.to_string(),
                        what: "EXEC".into(),
                        msg: "fewer results than queued commands".into(),
                        retryable: false,
                    });
                };
                self.one(expect, Some(&result))?;
            } else {
                self.one(expect, None)?;
            }
        }
        Ok(())
    }
}

/// The slot ranges the server (a cluster master) serves, from `CLUSTER NODES`.
async fn own_slots(conn: &mut Conn) -> Result<Vec<(u16, u16)>> {
    let nodes = conn.request_ok(&[&b"CLUSTER"[..], b"NODES"]).await?;
    let text = match &nodes {
        Frame::Verbatim { text, .. } => String::from_utf8_lossy(text).into_owned(),
        other => String::from_utf8_lossy(other.as_bytes().map_or(&b""[..], |b| b)).into_owned(),
    };
    Ok(super::hold::own_slots(&text))
}

/// What a refused command was about, for the one-line error.
fn describe(command: &[u8], kind: Kind, key: &[u8], db: u32) -> String {
    // Stream commands arrive in any case: show them as Redis documents them.
    let command = String::from_utf8_lossy(command).to_ascii_uppercase();
    match kind {
        Kind::Keys(n) if n > 1 => format!("{command} of {n} keys from {} in db {db}", escape(key)),
        _ if key.is_empty() => command,
        _ => format!("{command} of key {} in db {db}", escape(key)),
    }
}

/// The error text in a reply, including errors inside an EXEC's array of replies.
fn refusal(frame: &Frame) -> Option<String> {
    match frame {
        Frame::Error(msg) | Frame::BulkError(msg) => {
            Some(String::from_utf8_lossy(msg).into_owned())
        }
        Frame::Array(items) => items.iter().find_map(|f| match f {
            Frame::Error(msg) | Frame::BulkError(msg) => Some(format!(
                "inside MULTI/EXEC: {}",
                String::from_utf8_lossy(msg)
            )),
            _ => None,
        }),
        _ => None,
    }
}

async fn next_reply(
    rd: &mut ReadHalf,
    buf: &mut BytesMut,
    decoder: &mut Decoder,
    addr: &str,
) -> Result<Frame> {
    loop {
        match decoder.decode(buf) {
            Ok(Some((frame, _))) => return Ok(frame),
            Ok(None) => {}
            Err(source) => {
                return Err(Error::Protocol {
                    role: Role::Target,
                    addr: addr.to_string(),
                    source,
                });
            }
        }
        buf.reserve(64 * 1024);
        match tokio::time::timeout(REPLY_TIMEOUT, rd.read_buf(buf)).await {
            Err(_) => {
                return Err(Error::Timeout {
                    role: Role::Target,
                    addr: addr.to_string(),
                    secs: REPLY_TIMEOUT.as_secs(),
                });
            }
            Ok(Err(source)) => {
                return Err(Error::Io {
                    role: Role::Target,
                    addr: addr.to_string(),
                    source,
                });
            }
            Ok(Ok(0)) => {
                return Err(Error::Closed {
                    role: Role::Target,
                    addr: addr.to_string(),
                    context: " while replies were pending".into(),
                });
            }
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_what_was_refused() {
        assert_eq!(
            describe(b"RESTORE", Kind::Keys(1), b"a\x00", 2),
            "RESTORE of key \"a\\x00\" in db 2"
        );
        assert_eq!(
            describe(b"MSET", Kind::Keys(128), b"k", 0),
            "MSET of 128 keys from \"k\" in db 0"
        );
        assert_eq!(
            describe(b"FUNCTION LOAD", Kind::Part, b"", 0),
            "FUNCTION LOAD"
        );
        let exec = Frame::Array(vec![
            Frame::Simple("OK".into()),
            Frame::Error("WRONGTYPE x".into()),
        ]);
        assert_eq!(refusal(&exec).unwrap(), "inside MULTI/EXEC: WRONGTYPE x");
    }
}
