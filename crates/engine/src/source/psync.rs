//! Acts as a replica of the source: handshake, `PSYNC`, the snapshot (as `$<len>` or as the
//! diskless `$EOF:<mark>` form), then the command stream, acknowledged every second.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use ferry_resp::{Decoder, Frame, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::snapshot::{self, BATCH_BYTES, BATCH_ENTRIES, ChunkReader, Outcome};
use super::split::{Failure, Split};
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::socket::{ReadHalf, WriteHalf};
use crate::pipeline::entry::{Batch, Command, Entry, OWN_KEY_PREFIX, weight};
use crate::sink::checkpoint::Checkpoint;
use crate::spec::FullResync;
use crate::status::Status;

/// A master pings its replicas every 10 s by default (`repl-ping-replica-period`); this long
/// without a byte means the link is dead, as a replica's own `repl-timeout` would say.
/// Why a target that holds part of a snapshot cannot be continued.
pub const INTERRUPTED: &str = "the previous full copy into the target was interrupted";

pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
pub(crate) const EOF_MARK_LEN: usize = 40;
/// The command stream's read buffer is replaced when its room passes this.
const READ_BUFFER_CAP: usize = 4 * 1024 * 1024;

/// The channel sentinels announce themselves on, through the master they watch.
const SENTINEL_HELLO: &[u8] = b"__sentinel__:hello";

#[derive(Clone, Debug)]
pub struct Options {
    pub rdb: ferry_rdb::Options,
    /// Stop once the snapshot has been read (the command stream is not followed).
    pub full_only: bool,
    /// Where the target stands, from its checkpoint: continue from there if the source can.
    pub resume: Option<Checkpoint>,
    /// What to do when the target holds an earlier copy and the source can only send a full one.
    pub full_resync: FullResync,
    /// Why the target(s) need a full copy although they hold data (one lost the checkpoint
    /// this process had written, and its data with it; several targets are at positions one
    /// stream cannot continue together): the full copy that follows goes by `full_resync` too.
    pub resync_why: Option<String>,
    /// How the command stream is read.
    pub stream: StreamSettings,
}

/// How the command stream is read.
#[derive(Clone, Copy, Debug)]
pub struct StreamSettings {
    /// Silence on the stream for this long means the link is dead (a network cut).
    pub idle_timeout: Duration,
    /// Pass PUBLISH and SPUBLISH on to the target (never Sentinel's hello channel).
    pub forward_publish: bool,
    /// Pass any command with a huge argument on in pieces, not only `SET`/`APPEND` (off when
    /// a transform script needs whole commands).
    pub split_any: bool,
    /// A huge `RESTORE` is passed on in pieces too when every target reads payloads up to
    /// this RDB version (that of the source, which takes no newer one); None: read whole, so
    /// an older target can have it rewritten as commands.
    pub split_restore: Option<u16>,
}

/// How the source answered PSYNC.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum PsyncReply {
    Full {
        replid: String,
        offset: u64,
    },
    /// Continuing; a new replication id when the source has changed history (failover).
    Continue {
        replid: Option<String>,
    },
}

/// How the source frames its snapshot.
pub(crate) enum Transfer {
    /// `$<len>`: exactly this many bytes follow.
    Sized(u64),
    /// `$EOF:<mark>`: bytes follow until the 40-byte mark.
    Diskless([u8; EOF_MARK_LEN]),
}

/// A source connection that has finished the replica handshake, ready for PSYNC.
pub struct PsyncSource {
    conn: Conn,
}

impl PsyncSource {
    /// Connects, logs in and announces itself as a replica able to take diskless snapshots.
    /// The RDB version the source writes, from its version (a table of releases).
    pub async fn rdb_version(&mut self) -> Result<u16> {
        let version = self.conn.version().await?;
        Ok(crate::sink::caps::rdb_version_of(version))
    }

    /// The source's replication id and run_id (`INFO replication`, `INFO server`).
    pub async fn identity(&mut self) -> Result<(String, String)> {
        let repl = crate::net::info::info(&mut self.conn, "replication").await?;
        let server = crate::net::info::info(&mut self.conn, "server").await?;
        let field = |m: &HashMap<String, String>, k: &str| m.get(k).cloned().unwrap_or_default();
        Ok((field(&repl, "master_replid"), field(&server, "run_id")))
    }

    /// Keys the source holds now in the dbs `synced` lets through (its `INFO keyspace`).
    pub async fn key_count(&mut self, synced: impl Fn(u32) -> bool) -> Result<u64> {
        let fields = crate::net::info::info(&mut self.conn, "keyspace").await?;
        Ok(keyspace_keys(&fields, synced))
    }

    pub async fn connect(endpoint: &Endpoint) -> Result<PsyncSource> {
        let mut conn = Conn::connect(Role::Source, endpoint).await?;
        // ferry listens on no replication port; 0 keeps INFO honest about that.
        replconf(&mut conn, &[&b"REPLCONF"[..], b"listening-port", b"0"]).await?;
        replconf(
            &mut conn,
            &[&b"REPLCONF"[..], b"capa", b"eof", b"capa", b"psync2"],
        )
        .await?;
        Ok(PsyncSource { conn })
    }

    /// Asks for a full sync and streams entries into `tx` until the source closes, `cancel`
    /// fires, or (with `full_only`) the snapshot has been read.
    pub async fn run(
        mut self,
        options: Options,
        tx: mpsc::Sender<Batch>,
        status: Arc<Status>,
        cancel: CancellationToken,
    ) -> Result<()> {
        let mut options = options;
        if let Some(resume) = &options.resume {
            options.resume = Some(resume_point(&mut self.conn, resume).await?);
        }
        if !matches!(options.resume, Some(Checkpoint::Applied { .. }))
            && let Some(delay) = diskless_delay(&mut self.conn).await
        {
            // Until it answers, the source is holding the snapshot back: say so, not "connecting".
            status.diskless_wait_s.store(delay, Relaxed);
        }
        let conn = &mut self.conn;
        let asked = match &options.resume {
            Some(Checkpoint::Applied { replid, offset, .. }) => {
                let next = (offset + 1).to_string();
                conn.write_all(&command(&[b"PSYNC", replid.as_bytes(), next.as_bytes()]))
                    .await?;
                Some((replid.clone(), *offset))
            }
            _ => {
                conn.write_all(&command(&[b"PSYNC", b"?", b"-1"])).await?;
                None
            }
        };
        let reply = conn.read_line("the reply to PSYNC").await;
        status.diskless_wait_s.store(0, Relaxed);
        let reply = reply?;
        let reply = parse_psync_reply(&reply).map_err(|msg| Error::Server {
            role: Role::Source,
            addr: conn.addr.clone(),
            msg,
        })?;
        let (replid, offset) = match (reply, asked.as_ref(), &options.resume) {
            (
                PsyncReply::Continue { replid: new_id },
                Some((old_id, offset)),
                Some(Checkpoint::Applied { db, .. }),
            ) => {
                let replid = new_id.unwrap_or_else(|| old_id.clone());
                let offset = *offset;
                tracing::info!(source = %conn.addr, %replid, offset, "source continues the stream from the checkpoint");
                let db = *db;
                return self
                    .continue_stream(replid, (offset, db), options.stream, tx, status, cancel)
                    .await;
            }
            (PsyncReply::Continue { .. }, _, _) => {
                return Err(Error::Server {
                    role: Role::Source,
                    addr: conn.addr.clone(),
                    msg: "answered +CONTINUE to a request for a full copy".into(),
                });
            }
            (PsyncReply::Full { replid, offset }, _, resume) => {
                let why = match (resume, asked) {
                    (None, _) => options.resync_why.clone(),
                    (Some(Checkpoint::Loading { .. }), _) => Some(INTERRUPTED.to_string()),
                    (Some(_), Some((old_id, old_offset))) => {
                        Some(cannot_continue(&old_id, old_offset))
                    }
                    (Some(_), None) => None,
                };
                if let Some(why) = &why {
                    if options.full_resync == FullResync::Stop {
                        return Err(Error::ResyncNeeded {
                            addr: conn.addr.clone(),
                            why: why.clone(),
                        });
                    }
                    status.warn("full_resync", format!(
                        "{why}; emptying the target and copying the snapshot again, as configured"));
                }
                let clear_target = why.is_some();
                tracing::info!(source = %conn.addr, %replid, offset, "full resync accepted");
                if tx
                    .send(vec![Entry::SyncStart {
                        replid: Bytes::from(replid.clone()),
                        offset,
                        snapshot: true,
                        clear_target,
                    }])
                    .await
                    .is_err()
                {
                    return Ok(());
                }
                (replid, offset)
            }
        };
        status.set_replid(replid);
        status.snapshot_offset.store(offset, Relaxed);
        status.source_offset.store(offset, Relaxed);
        status.set_phase(crate::status::Phase::Full);

        let header = conn.read_line("the snapshot to start").await?;
        let transfer = parse_transfer(&header).ok_or_else(|| Error::Server {
            role: Role::Source,
            addr: conn.addr.clone(),
            msg: format!(
                "expected a snapshot header ($<len> or $EOF:<mark>), got {}",
                crate::text::escape(&header)
            ),
        })?;
        if let Transfer::Sized(len) = transfer {
            status.snapshot_size.store(len, Relaxed);
        }
        let addr = conn.addr.clone();
        let (stream, buf) = self.conn.into_parts();
        let (mut rd, wr) = stream.into_split();

        // The parser is synchronous: it runs on a blocking thread, fed through a small channel.
        let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(16);
        let parser_tx = tx.clone();
        let rdb_options = options.rdb.clone();
        let parser = tokio::task::spawn_blocking(move || {
            snapshot::parse_into(ChunkReader::new(chunk_rx), rdb_options, &parser_tx)
        });

        let received = tokio::select! {
            r = receive_snapshot(&mut rd, buf, transfer, &chunk_tx, &status, &addr) => Some(r),
            _ = cancel.cancelled() => None,
        };
        drop(chunk_tx);
        let leftover = match received {
            None => return Ok(()),
            Some(Err(Stop::ParserGone)) => {
                return match parser.await {
                    Ok(Err(source)) => Err(Error::Snapshot { addr, source }),
                    // The target side went away; its own error is the one to report.
                    _ => Ok(()),
                };
            }
            Some(Err(Stop::Link(e))) => return Err(e),
            Some(Ok(leftover)) => leftover,
        };

        // A diskless master sends no commands until the first ACK: acknowledge right away.
        let getack = Arc::new(Notify::new());
        let ack_cancel = cancel.child_token();
        let acker = (!options.full_only).then(|| {
            tokio::spawn(acknowledge(
                wr,
                status.clone(),
                getack.clone(),
                ack_cancel.clone(),
            ))
        });
        let _stop_acks = ack_cancel.drop_guard();

        match parser.await {
            Ok(Ok(Outcome::Done { rdb_version })) => {
                tracing::info!(rdb_version, "snapshot read to its end");
            }
            Ok(Ok(Outcome::Abandoned)) => return Ok(()),
            Ok(Err(source)) => return Err(Error::Snapshot { addr, source }),
            Err(join) => {
                return Err(Error::Server {
                    role: Role::Source,
                    addr,
                    msg: format!("snapshot parser stopped: {join}"),
                });
            }
        }
        if tx.send(vec![Entry::SnapshotEnd { offset }]).await.is_err() || options.full_only {
            return Ok(());
        }
        let result = follow_stream(
            &mut rd,
            leftover,
            (offset, 0),
            options.stream,
            &tx,
            &status,
            &getack,
            &cancel,
            &addr,
        )
        .await;
        if let Some(acker) = acker {
            acker.abort();
        }
        result
    }
}

impl PsyncSource {
    /// The source accepted to continue: no snapshot, the stream starts right after `offset`.
    async fn continue_stream(
        self,
        replid: String,
        (offset, db): (u64, u32),
        settings: StreamSettings,
        tx: mpsc::Sender<Batch>,
        status: Arc<Status>,
        cancel: CancellationToken,
    ) -> Result<()> {
        status.set_replid(replid.clone());
        status.snapshot_offset.store(offset, Relaxed);
        status.source_offset.store(offset, Relaxed);
        status.applied(offset);
        status.set_phase(crate::status::Phase::Incremental);
        let start = Entry::SyncStart {
            replid: Bytes::from(replid),
            offset,
            snapshot: false,
            clear_target: false,
        };
        if tx.send(vec![start]).await.is_err() {
            return Ok(());
        }
        let addr = self.conn.addr.clone();
        let (stream, buf) = self.conn.into_parts();
        let (mut rd, wr) = stream.into_split();
        let getack = Arc::new(Notify::new());
        let ack_cancel = cancel.child_token();
        let acker = tokio::spawn(acknowledge(
            wr,
            status.clone(),
            getack.clone(),
            ack_cancel.clone(),
        ));
        let _stop_acks = ack_cancel.drop_guard();
        let result = follow_stream(
            &mut rd,
            buf,
            (offset, db),
            settings,
            &tx,
            &status,
            &getack,
            &cancel,
            &addr,
        )
        .await;
        acker.abort();
        result
    }
}

/// Where to ask the source to continue from. Normally the checkpoint's position; but a
/// replica promoted in a failover knows its old master's history only up to where it was
/// promoted, and the old master may have sent pings after that which the target has
/// followed. If only such bytes lie beyond the promotion point, continuing from the last
/// write loses nothing (those bytes change no data).
async fn resume_point(conn: &mut Conn, checkpoint: &Checkpoint) -> Result<Checkpoint> {
    if !matches!(
        checkpoint,
        Checkpoint::Applied {
            last_write: Some(_),
            ..
        }
    ) {
        return Ok(checkpoint.clone());
    }
    let info = conn
        .request_ok(&[&b"INFO"[..], b"replication"])
        .await?
        .as_bytes()
        .cloned()
        .unwrap_or_default();
    let info = crate::net::info::parse_info(&String::from_utf8_lossy(&info));
    let point = resume_at(&info, checkpoint);
    if let (
        Checkpoint::Applied { offset: from, .. },
        Checkpoint::Applied {
            offset: write,
            last_write: None,
            ..
        },
    ) = (checkpoint, &point)
        && from != write
        && let Some(next) = info.get("second_repl_offset")
    {
        tracing::info!(
            "the source took over the stream at offset {next}, before the last {} bytes the target followed (no writes in them): continuing from the last write at {write}",
            from - write
        );
    }
    Ok(point)
}

/// Where to ask the source to continue from, given its `INFO replication`: the checkpoint
/// itself, or its last write when the source took over the stream (a promoted replica) after
/// that write but before the writeless bytes that followed it, which it may never have had.
pub fn resume_at(info: &HashMap<String, String>, checkpoint: &Checkpoint) -> Checkpoint {
    let Checkpoint::Applied {
        replid,
        offset,
        last_write: Some((write, write_db)),
        ..
    } = checkpoint
    else {
        return checkpoint.clone();
    };
    let promoted_at = info
        .get("second_repl_offset")
        .and_then(|o| o.parse::<u64>().ok());
    match (info.get("master_replid2"), promoted_at) {
        (Some(id2), Some(next)) if id2 == replid && offset + 1 > next && *write < next => {
            Checkpoint::Applied {
                replid: replid.clone(),
                offset: *write,
                db: *write_db,
                last_write: None,
            }
        }
        _ => checkpoint.clone(),
    }
}

/// Why the source cannot continue from a checkpoint: the words `sync` stops with.
pub fn cannot_continue(replid: &str, offset: u64) -> String {
    format!(
        "the source cannot continue from the target's checkpoint ({replid} at offset {offset}): \
         its backlog no longer holds those writes, or it is another dataset"
    )
}

/// Whether the source, by its `INFO replication`, will continue the stream from `checkpoint`
/// (Redis's own test for a partial resync: the same history, or the one it took over up to
/// `second_repl_offset`, and the next offset still in its backlog). Ok: the checkpoint `PSYNC`
/// asks from; Err: why it will answer with a full resync instead.
pub fn can_continue(
    info: &HashMap<String, String>,
    checkpoint: &Checkpoint,
) -> std::result::Result<Checkpoint, String> {
    let point = resume_at(info, checkpoint);
    let Checkpoint::Applied { replid, offset, .. } = &point else {
        return Err(INTERRUPTED.to_string());
    };
    let number = |name: &str| info.get(name).and_then(|v| v.parse::<i64>().ok());
    let next = *offset as i64 + 1;
    let field = |name: &str| info.get(name).map(String::as_str);
    let same_history = field("master_replid") == Some(replid.as_str())
        || (field("master_replid2") == Some(replid.as_str())
            && number("second_repl_offset").is_some_and(|s| next <= s));
    let first = number("repl_backlog_first_byte_offset").unwrap_or(0);
    let held = number("repl_backlog_active") == Some(1)
        && next >= first
        && next <= first + number("repl_backlog_histlen").unwrap_or(0);
    if same_history && held {
        Ok(point)
    } else {
        Err(cannot_continue(replid, *offset))
    }
}

/// The keys of `INFO keyspace` (`db3:keys=12,expires=1,...`) summed over the dbs `synced`
/// lets through.
pub fn keyspace_keys(fields: &HashMap<String, String>, synced: impl Fn(u32) -> bool) -> u64 {
    fields
        .iter()
        .filter_map(|(name, value)| {
            let db: u32 = name.strip_prefix("db")?.parse().ok()?;
            let keys = value
                .split(',')
                .find_map(|pair| pair.strip_prefix("keys="))?;
            synced(db).then(|| keys.parse::<u64>().ok()).flatten()
        })
        .sum()
}

/// How long a source that sends snapshots diskless holds one back for more replicas to join
/// (`repl-diskless-sync-delay`, 5 s by default since Redis 7); None when it writes them to
/// disk, does not wait, or may not be asked (CONFIG refused).
async fn diskless_delay(conn: &mut Conn) -> Option<u64> {
    use crate::net::info::config_get;
    if config_get(conn, "repl-diskless-sync").await.ok()?? != "yes" {
        return None;
    }
    let delay: u64 = config_get(conn, "repl-diskless-sync-delay")
        .await
        .ok()??
        .parse()
        .ok()?;
    (delay > 0).then_some(delay)
}

/// Why the source would refuse ferry as a replica, asked without starting a copy: `None` when
/// nothing says it would (the real PSYNC may still be refused). Asks `COMMAND INFO` (a
/// renamed or disabled command is unknown to it) and, where the user may, `ACL DRYRUN`.
pub async fn refusal(endpoint: &Endpoint) -> Result<Option<String>> {
    let mut conn = Conn::connect(Role::Source, endpoint).await?;
    for name in ["PSYNC", "REPLCONF"] {
        if let Frame::Array(items) = conn
            .request(&[&b"COMMAND"[..], b"INFO", name.as_bytes()])
            .await?
            && matches!(items.first(), None | Some(Frame::Null))
        {
            return Ok(Some(format!(
                "the source has no {name} command (renamed or disabled, as managed services do)"
            )));
        }
    }
    let user = match conn.request(&[&b"ACL"[..], b"WHOAMI"]).await? {
        Frame::Bulk(u) | Frame::Simple(u) => u,
        _ => return Ok(None),
    };
    for args in [
        &[&b"PSYNC"[..], b"?", b"-1"][..],
        &[&b"REPLCONF"[..], b"listening-port", b"0"][..],
    ] {
        let mut ask: Vec<&[u8]> = vec![b"ACL", b"DRYRUN", &user];
        ask.extend_from_slice(args);
        match conn.request(&ask).await? {
            Frame::Simple(ok) if ok.as_ref() == b"OK" => {}
            // The answer to a permission it lacks is a sentence; an error is "cannot ask".
            Frame::Bulk(why) | Frame::Simple(why) => {
                return Ok(Some(format!(
                    "the source user {} may not run {}: {}",
                    String::from_utf8_lossy(&user),
                    String::from_utf8_lossy(args[0]),
                    String::from_utf8_lossy(&why)
                )));
            }
            _ => return Ok(None),
        }
    }
    Ok(None)
}

pub(crate) fn command(args: &[&[u8]]) -> BytesMut {
    let mut out = BytesMut::new();
    ferry_resp::encode_command(&mut out, args);
    out
}

pub(crate) async fn replconf(conn: &mut Conn, args: &[&[u8]]) -> Result<()> {
    match conn.request(args).await? {
        ferry_resp::Frame::Error(msg) => Err(Error::Server {
            role: Role::Source,
            addr: conn.addr.clone(),
            msg: format!(
                "refused {}: {}{}",
                String::from_utf8_lossy(&args[..2].join(&b' ')),
                String::from_utf8_lossy(&msg),
                if msg.starts_with(b"NOPERM") {
                    " (the source user needs +replconf +psync +ping: ACL SETUSER <user> +replconf +psync +ping; where replication cannot be allowed, read the source with [source] mode = \"scan\")"
                } else if msg.starts_with(b"ERR unknown command") {
                    " (replication is disabled or renamed there; read the source with [source] mode = \"scan\" or \"auto\")"
                } else {
                    ""
                }
            ),
        }),
        _ => Ok(()),
    }
}

pub(crate) fn parse_psync_reply(line: &[u8]) -> std::result::Result<PsyncReply, String> {
    let text = String::from_utf8_lossy(line);
    if let Some(rest) = text.strip_prefix("+FULLRESYNC ") {
        let mut parts = rest.split_whitespace();
        if let (Some(id), Some(Ok(off))) = (parts.next(), parts.next().map(str::parse::<u64>)) {
            return Ok(PsyncReply::Full {
                replid: id.to_string(),
                offset: off,
            });
        }
        return Err(format!("malformed PSYNC reply {text:?}"));
    }
    if let Some(rest) = text.strip_prefix("+CONTINUE") {
        let id = rest.trim();
        return Ok(PsyncReply::Continue {
            replid: (!id.is_empty()).then(|| id.to_string()),
        });
    }
    if let Some(err) = text.strip_prefix('-') {
        let hint = if err.starts_with("NOPERM") {
            " (the source user needs +psync +replconf: ACL SETUSER <user> +psync +replconf +ping; where replication cannot be allowed, read the source with [source] mode = \"scan\")"
        } else if err.contains("unknown command") {
            " (PSYNC is disabled or renamed there; read the source with [source] mode = \"scan\" or \"auto\")"
        } else if err.starts_with("NOMASTERLINK") || err.starts_with("LOADING") {
            " (the source is not ready to serve replicas yet; try again shortly)"
        } else {
            ""
        };
        return Err(format!("refused PSYNC: {err}{hint}"));
    }
    Err(format!("unexpected reply to PSYNC: {text:?}"))
}

pub(crate) fn parse_transfer(line: &[u8]) -> Option<Transfer> {
    let rest = line.strip_prefix(b"$")?;
    if let Some(mark) = rest.strip_prefix(b"EOF:") {
        return mark.try_into().ok().map(Transfer::Diskless);
    }
    std::str::from_utf8(rest)
        .ok()?
        .parse()
        .ok()
        .map(Transfer::Sized)
}

/// Why the snapshot transfer ended early.
enum Stop {
    /// The parser stopped reading: it failed, or the target side went away.
    ParserGone,
    /// The link to the source failed.
    Link(Error),
}

/// Splits the snapshot off the front of what the source sends: pure, so every way the bytes
/// can be cut into reads is testable.
struct Framing {
    transfer: Transfer,
    received: u64,
}

impl Framing {
    fn new(transfer: Transfer) -> Framing {
        Framing {
            transfer,
            received: 0,
        }
    }

    /// Takes from `pending` the bytes known to be snapshot; true once the snapshot is whole,
    /// and then `pending` holds only what follows it (the command stream).
    fn take(&mut self, pending: &mut BytesMut) -> (Bytes, bool) {
        let (data, done) = match &self.transfer {
            Transfer::Sized(len) => {
                let want = (len - self.received).min(pending.len() as u64) as usize;
                let done = self.received + want as u64 == *len;
                (pending.split_to(want).freeze(), done)
            }
            Transfer::Diskless(mark) => match find(pending, mark) {
                Some(at) => {
                    let data = pending.split_to(at).freeze();
                    pending.advance(EOF_MARK_LEN);
                    (data, true)
                }
                // Hold back what could be the start of the mark.
                None => {
                    let safe = pending.len().saturating_sub(EOF_MARK_LEN - 1);
                    (pending.split_to(safe).freeze(), false)
                }
            },
        };
        self.received += data.len() as u64;
        (data, done)
    }
}

/// Forwards the snapshot's bytes to the parser; returns the bytes that arrived after it.
async fn receive_snapshot(
    rd: &mut ReadHalf,
    mut pending: BytesMut,
    transfer: Transfer,
    chunks: &mpsc::Sender<Bytes>,
    status: &Status,
    addr: &str,
) -> std::result::Result<BytesMut, Stop> {
    let mut framing = Framing::new(transfer);
    loop {
        let (data, done) = framing.take(&mut pending);
        if !data.is_empty() {
            status.bytes_read.store(framing.received, Relaxed);
            if chunks.send(data).await.is_err() {
                return Err(Stop::ParserGone);
            }
        }
        if done {
            return Ok(pending);
        }
        // Each read that finds too little room left takes a block of its own, and every block
        // stays alive while a chunk cut from it waits for the parser (up to 16 chunks): with
        // 256 KiB blocks that was 4 MiB per source however small the reads, 12 MiB for a
        // three-master source.
        pending.reserve(64 * 1024);
        let n = rd.read_buf(&mut pending).await.map_err(|source| {
            Stop::Link(Error::Io {
                role: Role::Source,
                addr: addr.to_string(),
                source,
            })
        })?;
        if n == 0 {
            return Err(Stop::Link(Error::Closed {
                role: Role::Source,
                addr: addr.to_string(),
                context: format!(
                    " during the snapshot transfer, after {} bytes",
                    framing.received
                ),
            }));
        }
    }
}

pub(crate) fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    let first = *needle.first()?;
    let mut from = 0;
    while from + needle.len() <= haystack.len() {
        let at = from + haystack[from..].iter().position(|&b| b == first)?;
        if haystack.len() - at < needle.len() {
            return None;
        }
        if &haystack[at..at + needle.len()] == needle {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// Sends `REPLCONF ACK <applied offset>` every second, and at once when the source asks.
async fn acknowledge(
    mut wr: WriteHalf,
    status: Arc<Status>,
    getack: Arc<Notify>,
    cancel: CancellationToken,
) {
    // A diskless master starts the command stream only at an ACK that comes after it has
    // noticed the snapshot is sent, which its cron may take a while to do: ACK often at first,
    // or the stream could wait up to a second.
    let started = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        if started.elapsed() > Duration::from_secs(3) && tick.period() < Duration::from_secs(1) {
            tick = tokio::time::interval_at(
                tokio::time::Instant::now() + Duration::from_secs(1),
                Duration::from_secs(1),
            );
        }
        let offset = status
            .confirmed_offset()
            .max(status.snapshot_offset.load(Relaxed));
        let mut msg = BytesMut::with_capacity(64);
        ferry_resp::encode_command(
            &mut msg,
            &[&b"REPLCONF"[..], b"ACK", offset.to_string().as_bytes()],
        );
        if wr.write_all(&msg).await.is_err() || wr.flush().await.is_err() {
            return;
        }
        tokio::select! {
            _ = tick.tick() => {}
            _ = getack.notified() => {}
            _ = cancel.cancelled() => return,
        }
    }
}

/// Reads the command stream and turns it into entries, counting offsets byte for byte.
#[allow(clippy::too_many_arguments)]
async fn follow_stream(
    rd: &mut ReadHalf,
    mut pending: BytesMut,
    (mut offset, mut db): (u64, u32),
    settings: StreamSettings,
    tx: &mpsc::Sender<Batch>,
    status: &Status,
    getack: &Notify,
    cancel: &CancellationToken,
    addr: &str,
) -> Result<()> {
    let StreamSettings {
        idle_timeout,
        forward_publish,
        split_any,
        split_restore,
    } = settings;
    let mut decoder = Decoder::new(Limits::default());
    let mut batch: Batch = Vec::with_capacity(BATCH_ENTRIES);
    let mut batch_bytes = 0;
    let protocol = |msg: String| Error::Server {
        role: Role::Source,
        addr: addr.to_string(),
        msg,
    };
    let failure = |f: Failure| match f {
        Failure::Protocol(msg) => protocol(msg),
        Failure::Damaged { what, why } => Error::CannotWrite { what, why },
    };
    // A huge SET/APPEND being passed on in pieces, and whether the source is inside a MULTI.
    let mut split: Option<Split> = None;
    let mut in_multi = false;
    loop {
        loop {
            let mut pieces = Vec::new();
            if split.is_none() {
                // Before the decoder, which would wait for the whole value.
                split = Split::start(
                    &mut pending,
                    &mut offset,
                    (db, in_multi, split_any, split_restore),
                    &mut pieces,
                );
            }
            if let Some(s) = &mut split {
                s.feed(&mut pending, &mut offset, &mut pieces)
                    .map_err(failure)?;
                if let Some(check) = s.check_mut() {
                    check.flush().await;
                }
                if s.wants_verdict() {
                    // A huge RESTORE's payload is judged before the script that applies
                    // it (and the EXEC) is passed on.
                    let verdict = match s.check_mut() {
                        Some(check) => check.verdict().await,
                        None => Ok(()),
                    };
                    s.verdict(verdict).map_err(failure)?;
                    s.feed(&mut pending, &mut offset, &mut pieces)
                        .map_err(failure)?;
                }
            }
            if split.as_ref().is_some_and(Split::done) {
                split = None;
            }
            if split.is_some() || !pieces.is_empty() {
                let waiting = pieces.is_empty();
                for entry in pieces {
                    if let Entry::Command(c) = &entry {
                        status.wrote(db, &c.args, c.end_offset);
                    }
                    batch_bytes += weight(&entry);
                    batch.push(entry);
                }
                if batch.len() >= BATCH_ENTRIES || batch_bytes >= BATCH_BYTES {
                    status.source_offset.store(offset, Relaxed);
                    if tx.send(take_full(&mut batch)).await.is_err() {
                        return Ok(());
                    }
                    batch_bytes = 0;
                }
                if waiting {
                    break;
                }
                continue;
            }
            let (args, raw) = match decoder.decode_command(&mut pending) {
                Ok(Some(f)) => f,
                Ok(None) => break,
                Err(source) => {
                    return Err(Error::Protocol {
                        role: Role::Source,
                        addr: addr.to_string(),
                        source,
                    });
                }
            };
            offset += raw.len() as u64;
            let args = args.map_err(|frame| {
                protocol(format!(
                    "replication stream carried a frame that is not a command: {frame}"
                ))
            })?;
            let name = &args[0];
            let entry = if name.eq_ignore_ascii_case(b"PING") {
                Entry::Offset { offset, db }
            } else if name.eq_ignore_ascii_case(b"SELECT") {
                db = args
                    .get(1)
                    .and_then(|d| std::str::from_utf8(d).ok()?.parse().ok())
                    .ok_or_else(|| {
                        protocol(format!(
                            "malformed SELECT in the stream: {}",
                            String::from_utf8_lossy(&raw).escape_debug()
                        ))
                    })?;
                Entry::Offset { offset, db }
            } else if name.eq_ignore_ascii_case(b"REPLCONF") {
                if args
                    .get(1)
                    .is_some_and(|a| a.eq_ignore_ascii_case(b"GETACK"))
                {
                    getack.notify_one();
                }
                Entry::Offset { offset, db }
            } else if (name.eq_ignore_ascii_case(b"PUBLISH")
                || name.eq_ignore_ascii_case(b"SPUBLISH"))
                && (!forward_publish || args.get(1).is_some_and(|c| &c[..] == SENTINEL_HELLO))
            {
                // A message, not data: a master replicates every PUBLISH, sentinels' hellos
                // among them, which must not reach the target's own subscribers (its sentinels
                // would take the source's for their peers). Others only when asked.
                Entry::Offset { offset, db }
            } else if args.get(1).is_some_and(|k| k.starts_with(OWN_KEY_PREFIX)) {
                // Ferry's own keys: this task's heartbeat (a latency probe), another task's,
                // another ferry's checkpoint in a cascade (A→B→C). Not data, never copied.
                status.own_key_seen(&args, offset);
                Entry::Offset { offset, db }
            } else {
                if name.eq_ignore_ascii_case(b"MULTI") {
                    in_multi = true;
                } else if name.eq_ignore_ascii_case(b"EXEC") {
                    in_multi = false;
                }
                status.wrote(db, &args, offset);
                Entry::Command(Command {
                    db,
                    target_db: None,
                    args,
                    raw,
                    end_offset: offset,
                    slot: None,
                })
            };
            batch_bytes += weight(&entry);
            batch.push(entry);
            if batch.len() >= BATCH_ENTRIES || batch_bytes >= BATCH_BYTES {
                status.source_offset.store(offset, Relaxed);
                if tx.send(take_full(&mut batch)).await.is_err() {
                    return Ok(());
                }
                batch_bytes = 0;
            }
        }
        status.source_offset.store(offset, Relaxed);
        // Before the last batch goes, so an estimate's clock starts before the target can confirm.
        status.received(offset);
        if !batch.is_empty() {
            if tx.send(std::mem::take(&mut batch)).await.is_err() {
                return Ok(());
            }
            batch_bytes = 0;
        }
        if pending.capacity() > READ_BUFFER_CAP && pending.len() < READ_BUFFER_CAP / 4 {
            // Consumed a piece at a time, the buffer's room for what was consumed is not
            // reclaimed while the unread part is larger, and each reserve then doubles it:
            // 274 MiB for one 256 MiB SET passed on in pieces. Start a small one.
            pending = BytesMut::from(&pending[..]);
        }
        pending.reserve(64 * 1024);
        let read = tokio::select! {
            biased;
            _ = cancel.cancelled() => return Ok(()),
            // The target side failed: its error ends the task; stop reading at once.
            _ = tx.closed() => return Ok(()),
            r = tokio::time::timeout(idle_timeout, rd.read_buf(&mut pending)) => r,
        };
        // Stopping drops the ACK writer, which half-closes the link: what the source does
        // about that is no error.
        if cancel.is_cancelled() {
            return Ok(());
        }
        match read {
            // A network cut often shows only as silence: a lost connection, retried as one.
            Err(_) => {
                return Err(Error::Closed {
                    role: Role::Source,
                    addr: addr.to_string(),
                    context: format!(
                        " (nothing received for {} s, not even its pings: the replication link is dead)",
                        idle_timeout.as_secs()
                    ),
                });
            }
            Ok(Err(source)) => {
                return Err(Error::Io {
                    role: Role::Source,
                    addr: addr.to_string(),
                    source,
                });
            }
            Ok(Ok(0)) => {
                return Err(Error::Closed {
                    role: Role::Source,
                    addr: addr.to_string(),
                    context: format!(" of the replication stream at offset {offset}"),
                });
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// A full batch, handed on; the next starts at full size (grown one push at a time it was
/// reallocated nine times per batch).
fn take_full(batch: &mut Batch) -> Batch {
    std::mem::replace(batch, Vec::with_capacity(BATCH_ENTRIES))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_mark_anywhere_and_only_whole() {
        let mark = b"0123456789012345678901234567890123456789";
        let mut data = b"xx0123".to_vec();
        assert_eq!(find(&data, mark), None);
        data.extend_from_slice(mark);
        assert_eq!(find(&data, mark), Some(6));
    }

    /// Feeds `wire` cut at `cuts` and returns (snapshot bytes, what followed, done).
    fn frame(transfer: Transfer, wire: &[u8], cuts: &[usize]) -> (Vec<u8>, Vec<u8>, bool) {
        let mut framing = Framing::new(transfer);
        let mut pending = BytesMut::new();
        let mut snapshot = Vec::new();
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
            pending.extend_from_slice(&wire[last..cut]);
            last = cut;
            let (data, done) = framing.take(&mut pending);
            snapshot.extend_from_slice(&data);
            if done {
                pending.extend_from_slice(&wire[last..]);
                return (snapshot, pending.to_vec(), true);
            }
        }
        (snapshot, pending.to_vec(), false)
    }

    #[test]
    fn diskless_end_mark_is_found_however_the_reads_cut_it() {
        let mark = *b"8de1787ba490483314a4d30f1c628bc5025eb761";
        // The snapshot itself holds most of the mark, to catch a search that restarts badly.
        let body = [&b"REDIS0010\xfa"[..], &mark[..39], b"\xff12345678"].concat();
        let after = b"*1\r\n$4\r\nPING\r\n";
        let wire = [&body[..], &mark[..], &after[..]].concat();
        for a in 0..=wire.len() {
            for b in a..=wire.len() {
                let (snapshot, rest, done) = frame(Transfer::Diskless(mark), &wire, &[a, b]);
                assert!(done, "cuts {a},{b}");
                assert_eq!(snapshot, body, "cuts {a},{b}");
                assert_eq!(rest, after, "cuts {a},{b}");
            }
        }
        let one_by_one: Vec<usize> = (1..wire.len()).collect();
        assert_eq!(frame(Transfer::Diskless(mark), &wire, &one_by_one).0, body);
    }

    #[test]
    fn sized_snapshot_stops_at_its_length() {
        let wire = b"REDIS0010\xffxxxxxxxx*1\r\n$4\r\nPING\r\n";
        for a in 0..=wire.len() {
            let (snapshot, rest, done) = frame(Transfer::Sized(19), wire, &[a]);
            assert!(done);
            assert_eq!(snapshot, &wire[..19]);
            assert_eq!(rest, &wire[19..]);
        }
        let (snapshot, _, done) = frame(Transfer::Sized(100), wire, &[5]);
        assert!(!done);
        assert_eq!(snapshot, wire);
    }

    #[test]
    fn counts_keys_of_the_synced_dbs() {
        let fields = crate::net::info::parse_info(
            "# Keyspace\r\ndb0:keys=10,expires=2,avg_ttl=0\r\ndb3:keys=5,expires=0,avg_ttl=0,subexpiry=0\r\n",
        );
        assert_eq!(keyspace_keys(&fields, |_| true), 15);
        assert_eq!(keyspace_keys(&fields, |db| db != 0), 5);
        assert_eq!(keyspace_keys(&HashMap::new(), |_| true), 0);
    }

    #[test]
    fn parses_psync_replies() {
        assert_eq!(
            parse_psync_reply(b"+FULLRESYNC 8de1787ba490483314a4d30f1c628bc5025eb761 42").unwrap(),
            PsyncReply::Full {
                replid: "8de1787ba490483314a4d30f1c628bc5025eb761".to_string(),
                offset: 42
            }
        );
        assert_eq!(
            parse_psync_reply(b"+CONTINUE").unwrap(),
            PsyncReply::Continue { replid: None }
        );
        assert_eq!(
            parse_psync_reply(b"+CONTINUE 8de1787ba490483314a4d30f1c628bc5025eb761").unwrap(),
            PsyncReply::Continue {
                replid: Some("8de1787ba490483314a4d30f1c628bc5025eb761".into())
            }
        );
        assert!(
            parse_psync_reply(b"-NOPERM no")
                .unwrap_err()
                .contains("ACL SETUSER")
        );
        assert!(parse_psync_reply(b"+FULLRESYNC x").is_err());
        assert!(matches!(
            parse_transfer(b"$123"),
            Some(Transfer::Sized(123))
        ));
        assert!(matches!(
            parse_transfer(b"$EOF:0123456789012345678901234567890123456789"),
            Some(Transfer::Diskless(_))
        ));
        assert!(parse_transfer(b"$EOF:short").is_none());
        assert!(parse_transfer(b"+OK").is_none());
    }
}
