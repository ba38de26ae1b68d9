//! Target mode "replica": the target replicates from ferry as from a master. ferry tells it
//! `REPLICAOF <ferry's port>`, takes its handshake, asks the source with the target's own
//! `PSYNC <replid> <offset>`, and relays both ways byte for byte: the source's answer, its
//! snapshot and its command stream to the target, the target's `REPLCONF ACK`s to the source.
//!
//! So the target loads the snapshot as a replica does (no command per key: about half the
//! target's CPU of a copy written as commands, see docs/performance.md) and its own
//! replication offset is the checkpoint: after a restart of ferry, of the target or a broken
//! link, the target asks to continue from exactly what it applied, and the source continues
//! from its backlog or sends a new snapshot, as for any replica. Nothing in the data is
//! changed on the way, which is what limits the mode (see `config::replica_mode_fits`).

mod handshake;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ferry_resp::{Decoder, Limits};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use crate::config::TaskConfig;
use crate::error::{Error, Result, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::info::info;
use crate::net::socket::{ReadHalf, WriteHalf};
use crate::source::psync::{self, EOF_MARK_LEN, PsyncReply, Transfer};
use crate::spec::OnConflict;
use crate::status::{Phase, Status};
use handshake::{Handshake, Step, ack_offset};

/// How long the target has to connect to ferry after `REPLICAOF` and finish its handshake.
const CONNECT_WAIT: Duration = Duration::from_secs(60);
/// How long one connection to the replication port has to reach PSYNC.
const HANDSHAKE_WAIT: Duration = Duration::from_secs(10);
/// How often the target's own offset is read.
const POLL: Duration = Duration::from_millis(50);
/// Bytes read at once from either side.
const READ_BYTES: usize = 256 * 1024;

/// Relays the source at `source` into the task's target until the link breaks (an error, which
/// the task retries: the target then continues from its own offset), `cancel` fires, or, with
/// `full_only`, the target has loaded the snapshot (it is then made a master again).
pub(crate) async fn run(
    config: &TaskConfig,
    source: &Endpoint,
    status: &Arc<Status>,
    cancel: &CancellationToken,
) -> Result<()> {
    let mut target = Conn::connect(Role::Target, &config.target).await?;
    let mut src = Conn::connect(Role::Source, source).await?;
    check_versions(&mut target, &mut src).await?;
    let prefix = format!("ferry-{}-", config.id.as_str());
    let holds_copy = settle_target(config, &mut target, &mut src, &prefix, status).await?;

    let listener = TcpListener::bind(config.replica_listen)
        .await
        .map_err(|e| {
            Error::Config(format!(
                "[target] replica_listen = {}: ferry cannot listen there for the target's replication link: {e}",
                config.replica_listen
            ))
        })?;
    let local = listener.local_addr().map_err(|e| Error::Internal {
        what: "the replication listener",
        why: e.to_string(),
    })?;
    let (host, port) = config
        .replica_announce
        .clone()
        .unwrap_or_else(|| (local.ip().to_string(), local.port()));
    // A new password each run: only the target ferry configured can take the stream.
    let secret = Bytes::from(format!("{prefix}{}", crate::sink::lease::token()));
    target
        .request_ok(&[&b"CONFIG"[..], b"SET", b"masterauth", &secret])
        .await
        .map_err(|e| needs_config(e, "CONFIG SET masterauth"))?;
    target
        .request_ok(&[
            &b"REPLICAOF"[..],
            host.as_bytes(),
            port.to_string().as_bytes(),
        ])
        .await
        .map_err(|e| needs_config(e, "REPLICAOF"))?;
    tracing::info!(target = %target.addr, listen = %local, announce = %format!("{host}:{port}"), "target told to replicate from ferry");

    let (link, leftover, asked) = tokio::select! {
        accepted = accept_target(&listener, secret, &host, port, &target.addr) => accepted?,
        _ = cancel.cancelled() => return Ok(()),
    };
    drop(listener);
    let ask = if config.checkpoint {
        asked
    } else {
        // Every start a new copy, as asked.
        handshake::Psync {
            replid: Bytes::from_static(b"?"),
            offset: Bytes::from_static(b"-1"),
        }
    };
    psync::replconf(&mut src, &[&b"REPLCONF"[..], b"listening-port", b"0"]).await?;
    psync::replconf(
        &mut src,
        &[&b"REPLCONF"[..], b"capa", b"eof", b"capa", b"psync2"],
    )
    .await?;
    status.accept_source();
    status.set_mode("psync");
    src.write_all(&psync::command(&[b"PSYNC", &ask.replid, &ask.offset]))
        .await?;
    let line = src.read_line("the reply to PSYNC").await?;
    let reply = psync::parse_psync_reply(&line).map_err(|msg| Error::Server {
        role: Role::Source,
        addr: src.addr.clone(),
        msg,
    })?;
    if matches!(reply, PsyncReply::Full { .. }) && holds_copy && config.checkpoint {
        // The target holds a copy of the source the source cannot continue: as in commands
        // mode, `full_resync` says whether it is replaced by a new one.
        let asked = String::from_utf8_lossy(&ask.offset)
            .parse::<u64>()
            .map_or(0, |o| o.saturating_sub(1));
        let why = psync::cannot_continue(&String::from_utf8_lossy(&ask.replid), asked);
        if config.full_resync == crate::spec::FullResync::Stop {
            return Err(Error::ResyncNeeded {
                addr: src.addr.clone(),
                why,
            });
        }
        status.warn(
            "full_resync",
            format!("{why}; the target loads the source's snapshot again, as configured"),
        );
    }
    let (tracker, start) = match &reply {
        PsyncReply::Full { replid, offset } => {
            tracing::info!(source = %src.addr, %replid, offset, "full resync: the source's snapshot goes to the target");
            status.set_replid(replid.clone());
            status.snapshot_offset.store(*offset, Relaxed);
            status.set_phase(Phase::Full);
            (Tracker::full(*offset), *offset)
        }
        PsyncReply::Continue { replid } => {
            let offset = std::str::from_utf8(&ask.offset)
                .ok()
                .and_then(|o| o.parse::<u64>().ok())
                .map_or(0, |o| o.saturating_sub(1));
            let replid = replid
                .clone()
                .unwrap_or_else(|| String::from_utf8_lossy(&ask.replid).into_owned());
            tracing::info!(source = %src.addr, %replid, offset, "the target continues from its own offset");
            status.set_replid(replid);
            status.snapshot_offset.store(offset, Relaxed);
            status.applied(offset);
            status.set_phase(Phase::Incremental);
            (Tracker::stream(offset), offset)
        }
    };
    status.source_offset.store(start, Relaxed);
    let (link_rd, mut link_wr) = link.into_split();
    // The answer goes to the target as the source gave it (a new replication id included).
    let mut answer = BytesMut::from(&line[..]);
    answer.extend_from_slice(b"\r\n");
    link_wr
        .write_all(&answer)
        .await
        .map_err(|source| io(Role::Target, &target.addr, source))?;

    let (src_addr, tgt_addr) = (src.addr.clone(), target.addr.clone());
    let (src_sock, src_buf) = src.into_parts();
    let (src_rd, src_wr) = src_sock.into_split();
    let loaded = tokio::sync::Notify::new();
    let down = downstream(
        src_rd,
        src_buf,
        link_wr,
        tracker,
        (status, &src_addr, &tgt_addr),
        config.source_timeout,
    );
    let up = upstream(
        link_rd,
        leftover,
        src_wr,
        (status, &src_addr, &tgt_addr),
        &loaded,
    );
    let poll = poll_target(
        Conn::connect(Role::Target, &config.target).await?,
        status,
        &loaded,
    );
    tokio::pin!(down, up, poll);
    let mut waiting_load = true;
    loop {
        tokio::select! {
            r = &mut down => return r,
            r = &mut up => return r,
            r = &mut poll => return r,
            _ = loaded.notified(), if waiting_load => {
                waiting_load = false;
                // What the copy brought, for the status (the bytes were relayed, not parsed).
                let keyspace = info(&mut target, "keyspace").await?;
                let keys = psync::keyspace_keys(&keyspace, |_| true);
                status.keys_written.store(keys, Relaxed);
                if config.full_only {
                    // The copy is on the target: it stops following and takes writes again.
                    target.request_ok(&[&b"REPLICAOF"[..], b"NO", b"ONE"]).await?;
                    tracing::info!(target = %target.addr, keys, "snapshot loaded; the target is a master again (full copy only)");
                    return Ok(());
                }
            }
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}

/// The target must read the source's snapshot as it is, and follow with PSYNC (4.0 and later).
async fn check_versions(target: &mut Conn, src: &mut Conn) -> Result<()> {
    if crate::net::topology::is_cluster(target).await? {
        return Err(Error::Config(format!(
            "target {} is a cluster node, which cannot replicate from ferry (REPLICAOF is refused in cluster mode); use [target] mode = \"commands\"",
            target.addr
        )));
    }
    let tv = target.version().await?;
    if tv < (4, 0, 0) {
        return Err(Error::Config(format!(
            "target {} runs Redis {}.{}.{}; [target] mode = \"replica\" needs 4.0 or later (it continues with PSYNC after a break); use [target] mode = \"commands\"",
            target.addr, tv.0, tv.1, tv.2
        )));
    }
    let sv = src.version().await?;
    let (s_rdb, t_rdb) = (
        crate::sink::caps::rdb_version_of(sv),
        crate::sink::caps::rdb_version_of(tv),
    );
    if s_rdb > t_rdb {
        return Err(Error::Config(format!(
            "the source ({}.{}.{}) writes snapshots in RDB version {s_rdb}, which target {} ({}.{}.{}, RDB {t_rdb}) cannot load as a replica; use [target] mode = \"commands\", which rewrites what the target cannot read",
            sv.0, sv.1, sv.2, target.addr, tv.0, tv.1, tv.2
        )));
    }
    Ok(())
}

/// Whether the target may become the source's replica through ferry: a replica already (of
/// ferry for this task, or of the source's history) continues; a master with keys of its own
/// is settled by `on_conflict`, since a replica's first sync replaces everything it holds.
/// True when the target holds a copy of the source's history (one a new snapshot would
/// replace); not for a first copy that was interrupted.
async fn settle_target(
    config: &TaskConfig,
    target: &mut Conn,
    src: &mut Conn,
    prefix: &str,
    status: &Status,
) -> Result<bool> {
    let repl = info(target, "replication").await?;
    if repl.get("role").map(String::as_str) == Some("slave") {
        let ours = match target
            .request(&[&b"CONFIG"[..], b"GET", b"masterauth"])
            .await?
        {
            ferry_resp::Frame::Array(items) => items
                .get(1)
                .and_then(|v| v.as_bytes())
                .is_some_and(|v| v.starts_with(prefix.as_bytes())),
            _ => false,
        };
        let source = info(src, "replication").await?;
        let history = [source.get("master_replid"), source.get("master_replid2")];
        let same = repl
            .get("master_replid")
            .is_some_and(|id| history.contains(&Some(id)));
        if ours || same {
            return Ok(same);
        }
        return Err(Error::Config(format!(
            "target {} is a replica of {}:{}, not of this task: [target] mode = \"replica\" would make it replicate the source instead and replace its data; if that is meant, make it a master first (REPLICAOF NO ONE)",
            target.addr,
            repl.get("master_host").map_or("?", String::as_str),
            repl.get("master_port").map_or("?", String::as_str),
        )));
    }
    if status.has_synced() {
        return Ok(false);
    }
    let keyspace = info(target, "keyspace").await?;
    let keys = psync::keyspace_keys(&keyspace, |_| true);
    match (keys, config.on_conflict) {
        (0, _) | (_, None) => Ok(false),
        (n, Some(OnConflict::Flush)) => {
            status.warn(
                "target_flushed",
                format!(
                    "target {} holds {n} keys; as a replica it drops them all for the source's data, as on_conflict = \"flush\" allows",
                    target.addr
                ),
            );
            Ok(false)
        }
        (n, Some(how)) => Err(Error::Config(format!(
            "target {} holds {n} keys; [target] mode = \"replica\" makes it the source's replica, which replaces everything it holds (every db){}: empty it first, or set [sync] on_conflict = \"flush\" with confirm_flush = true",
            target.addr,
            if how == OnConflict::Overwrite {
                ", so on_conflict = \"overwrite\" cannot keep the others"
            } else {
                ""
            }
        ))),
    }
}

/// Says what the target's user lacks for replica mode.
fn needs_config(err: Error, what: &str) -> Error {
    match err {
        Error::Server { role, addr, msg } => Error::Server {
            role,
            addr,
            msg: format!(
                "refused {what}: {msg} ([target] mode = \"replica\" needs CONFIG SET masterauth and REPLICAOF on a self-hosted target; use [target] mode = \"commands\" where they are not allowed)"
            ),
        },
        other => other,
    }
}

/// Waits for the target's connection and takes its handshake; other connections to the port
/// are refused and closed. Returns the link, what the target sent after its PSYNC, and where it
/// asked to start.
async fn accept_target(
    listener: &TcpListener,
    secret: Bytes,
    host: &str,
    port: u16,
    target: &str,
) -> Result<(TcpStream, BytesMut, handshake::Psync)> {
    let deadline = tokio::time::Instant::now() + CONNECT_WAIT;
    loop {
        let accepted = tokio::time::timeout_at(deadline, listener.accept()).await;
        let (mut sock, peer) = match accepted {
            Ok(Ok(pair)) => pair,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "accepting on the replication port failed");
                continue;
            }
            Err(_) => {
                return Err(Error::Config(format!(
                    "target {target} did not connect to ferry at {host}:{port} within {} s after REPLICAOF: it must reach that address (set [target] replica_announce to one it can reach); its log says why",
                    CONNECT_WAIT.as_secs()
                )));
            }
        };
        let _ = sock.set_nodelay(true);
        let mut hs = Handshake::new(secret.clone());
        // A peer that says nothing must not keep the port from the target.
        let until = deadline.min(tokio::time::Instant::now() + HANDSHAKE_WAIT);
        let taken = tokio::time::timeout_at(until, take_handshake(&mut sock, &mut hs)).await;
        match taken {
            Ok(Ok(Some((leftover, ask)))) => return Ok((sock, leftover, ask)),
            Ok(Ok(None)) => {
                tracing::warn!(%peer, "a connection to the replication port was refused");
            }
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "a connection to the replication port failed")
            }
            Err(_) => {
                tracing::warn!(%peer, "a connection to the replication port said no PSYNC in time")
            }
        }
    }
}

/// Reads and answers the handshake until PSYNC; None when the peer was refused.
async fn take_handshake(
    sock: &mut TcpStream,
    hs: &mut Handshake,
) -> std::io::Result<Option<(BytesMut, handshake::Psync)>> {
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::with_capacity(4096);
    loop {
        loop {
            let args = match decoder.decode_command(&mut buf) {
                Ok(Some((Ok(args), _))) => args,
                Ok(None) => break,
                Ok(Some((Err(_), _))) | Err(_) => {
                    let _ = sock
                        .write_all(b"-ERR ferry's replication port takes RESP commands only\r\n")
                        .await;
                    return Ok(None);
                }
            };
            match hs.step(&args) {
                Step::Reply(reply) => sock.write_all(reply).await?,
                Step::Psync(ask) => return Ok(Some((buf, ask))),
                Step::Refuse(msg) => {
                    sock.write_all(format!("-{msg}\r\n").as_bytes()).await?;
                    return Ok(None);
                }
            }
        }
        if buf.len() > 64 * 1024 || sock.read_buf(&mut buf).await? == 0 {
            return Ok(None);
        }
    }
}

/// Where the bytes from the source stand: before the snapshot, in it, or in the stream.
enum Tracker {
    /// Newlines (the source is still making its snapshot), then the `$...` line.
    Preamble {
        line: Vec<u8>,
        offset: u64,
    },
    Snapshot {
        transfer: Transfer,
        received: u64,
        /// The last bytes seen, where the start of a diskless end mark may hide.
        tail: Vec<u8>,
        offset: u64,
    },
    Stream(u64),
}

/// What a run of bytes from the source held.
#[derive(Debug, Default, PartialEq, Eq)]
struct Seen {
    /// The snapshot's size, when its header was in them.
    snapshot_size: Option<u64>,
    /// Snapshot bytes received so far, when some were in them.
    snapshot_bytes: Option<u64>,
    /// The snapshot ended in them.
    snapshot_done: bool,
    /// Where the stream stands after them, when they reached it.
    stream_offset: Option<u64>,
}

impl Tracker {
    fn full(offset: u64) -> Tracker {
        Tracker::Preamble {
            line: Vec::new(),
            offset,
        }
    }

    fn stream(offset: u64) -> Tracker {
        Tracker::Stream(offset)
    }

    /// Follows `data`, the next bytes the source sent. Err: the source sent a header that is
    /// not a snapshot's.
    fn feed(&mut self, mut data: &[u8]) -> std::result::Result<Seen, String> {
        let mut seen = Seen::default();
        while !data.is_empty() {
            match self {
                Tracker::Preamble { line, offset } => {
                    let Some(nl) = data.iter().position(|&b| b == b'\n') else {
                        line.extend_from_slice(data);
                        if line.len() > 128 {
                            return Err("a snapshot header longer than 128 bytes".into());
                        }
                        return Ok(seen);
                    };
                    line.extend_from_slice(&data[..nl]);
                    data = &data[nl + 1..];
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    // A bare newline: the source is alive, still making its snapshot.
                    if line.is_empty() {
                        continue;
                    }
                    let transfer = psync::parse_transfer(line).ok_or_else(|| {
                        format!(
                            "expected a snapshot header ($<len> or $EOF:<mark>), got {}",
                            crate::text::escape(line)
                        )
                    })?;
                    if let Transfer::Sized(len) = transfer {
                        seen.snapshot_size = Some(len);
                    }
                    *self = Tracker::Snapshot {
                        transfer,
                        received: 0,
                        tail: Vec::new(),
                        offset: *offset,
                    };
                }
                Tracker::Snapshot {
                    transfer,
                    received,
                    tail,
                    offset,
                } => {
                    let end = match transfer {
                        Transfer::Sized(len) => {
                            let want = (*len - *received).min(data.len() as u64) as usize;
                            *received += want as u64;
                            (*received == *len).then_some(want)
                        }
                        Transfer::Diskless(mark) => {
                            let end = diskless_end(tail, data, mark);
                            match end {
                                // The mark may have begun in the bytes before, counted then.
                                Some(end) => {
                                    *received = *received + end as u64 - EOF_MARK_LEN as u64
                                }
                                None => {
                                    *received += data.len() as u64;
                                    let keep = EOF_MARK_LEN - 1;
                                    if data.len() >= keep {
                                        tail.clear();
                                        tail.extend_from_slice(&data[data.len() - keep..]);
                                    } else {
                                        tail.extend_from_slice(data);
                                        let excess = tail.len().saturating_sub(keep);
                                        tail.drain(..excess);
                                    }
                                }
                            }
                            end
                        }
                    };
                    seen.snapshot_bytes = Some(*received);
                    match end {
                        Some(end) => {
                            seen.snapshot_done = true;
                            seen.stream_offset = Some(*offset);
                            data = &data[end..];
                            *self = Tracker::Stream(*offset);
                        }
                        None => return Ok(seen),
                    }
                }
                Tracker::Stream(offset) => {
                    *offset += data.len() as u64;
                    seen.stream_offset = Some(*offset);
                    return Ok(seen);
                }
            }
        }
        Ok(seen)
    }
}

/// Where in `data` the snapshot ends (just past its end mark), given the `tail` of what came
/// before, which may hold the mark's start.
fn diskless_end(tail: &[u8], data: &[u8], mark: &[u8; EOF_MARK_LEN]) -> Option<usize> {
    if !tail.is_empty() {
        let mut joint = tail.to_vec();
        joint.extend_from_slice(&data[..data.len().min(EOF_MARK_LEN - 1)]);
        if let Some(at) = psync::find(&joint, mark) {
            return Some(at + EOF_MARK_LEN - tail.len());
        }
    }
    psync::find(data, mark).map(|at| at + EOF_MARK_LEN)
}

/// Source to target: every byte as it comes, followed for the status.
async fn downstream(
    mut rd: ReadHalf,
    mut buf: BytesMut,
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    mut tracker: Tracker,
    (status, src, tgt): (&Status, &str, &str),
    idle: Duration,
) -> Result<()> {
    loop {
        if !buf.is_empty() {
            let seen = tracker.feed(&buf).map_err(|msg| Error::Server {
                role: Role::Source,
                addr: src.to_string(),
                msg,
            })?;
            if let Some(size) = seen.snapshot_size {
                status.snapshot_size.store(size, Relaxed);
            }
            if let Some(bytes) = seen.snapshot_bytes {
                status.bytes_read.store(bytes, Relaxed);
            }
            if seen.snapshot_done {
                tracing::info!("snapshot relayed to the target; it loads it now");
            }
            if let Some(offset) = seen.stream_offset {
                status.source_offset.store(offset, Relaxed);
                status.received(offset);
            }
            wr.write_all(&buf)
                .await
                .map_err(|source| io(Role::Target, tgt, source))?;
            buf.clear();
        }
        buf.reserve(READ_BYTES);
        let n = match tokio::time::timeout(idle, rd.read_buf(&mut buf)).await {
            Ok(Ok(n)) => n,
            Ok(Err(source)) => return Err(io(Role::Source, src, source)),
            Err(_) => {
                return Err(Error::Timeout {
                    role: Role::Source,
                    addr: src.to_string(),
                    secs: idle.as_secs(),
                });
            }
        };
        if n == 0 {
            return Err(Error::Closed {
                role: Role::Source,
                addr: src.to_string(),
                context: " while relaying it to the target".into(),
            });
        }
    }
}

/// Target to source: the target's acknowledgements, which are the task's applied offset and
/// tell the source what its replica has (for `WAIT`, and so it does not time the link out).
async fn upstream(
    mut rd: tokio::net::tcp::OwnedReadHalf,
    mut buf: BytesMut,
    mut wr: WriteHalf,
    (status, src, tgt): (&Status, &str, &str),
    loaded: &tokio::sync::Notify,
) -> Result<()> {
    let mut decoder = Decoder::new(Limits::default());
    loop {
        loop {
            // A replica loading its snapshot sends bare newlines to show it is alive.
            let newlines = buf.iter().take_while(|&&b| b == b'\n').count();
            if newlines > 0 {
                let _ = buf.split_to(newlines);
                wr.write_all(&b"\n".repeat(newlines))
                    .await
                    .map_err(|source| io(Role::Source, src, source))?;
            }
            let (args, raw) = match decoder.decode_command(&mut buf) {
                Ok(Some((Ok(args), raw))) => (args, raw),
                // Not a command: nothing a replica says to its master.
                Ok(Some((Err(_), _))) => continue,
                Ok(None) => break,
                Err(e) => {
                    return Err(Error::Server {
                        role: Role::Target,
                        addr: tgt.to_string(),
                        msg: format!("sent ferry bytes that are not a replica's commands: {e}"),
                    });
                }
            };
            let Some(offset) = ack_offset(&args) else {
                continue;
            };
            applied(status, offset, loaded, "its acknowledgement");
            wr.write_all(&raw)
                .await
                .map_err(|source| io(Role::Source, src, source))?;
        }
        buf.reserve(4096);
        let n = rd
            .read_buf(&mut buf)
            .await
            .map_err(|source| io(Role::Target, tgt, source))?;
        if n == 0 {
            return Err(Error::Closed {
                role: Role::Target,
                addr: tgt.to_string(),
                context: " (its replication link to ferry)".into(),
            });
        }
    }
}

/// The target has applied the stream up to `offset` (`by`: how ferry knows). The first time
/// past the snapshot's end it has loaded the snapshot: the copy is done.
fn applied(status: &Status, offset: u64, loaded: &tokio::sync::Notify, by: &str) {
    status.applied(offset);
    if status.phase() == Phase::Full && offset >= status.snapshot_offset.load(Relaxed) {
        tracing::info!(
            offset,
            by,
            "the target has loaded the snapshot and follows the stream"
        );
        status.set_phase(Phase::Incremental);
        loaded.notify_one();
    }
}

/// Reads the target's own applied offset from its `INFO replication` every `POLL`: a replica
/// acknowledges once a second (and a disk-based copy's load only at the next of those), so
/// the status, a cutover and `--full-only` learn of it sooner this way. Ends only with an error
/// (a target that refuses INFO leaves the acknowledgements alone to say it).
async fn poll_target(mut conn: Conn, status: &Status, loaded: &tokio::sync::Notify) -> Result<()> {
    let mut tick = tokio::time::interval(POLL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let repl = match info(&mut conn, "replication").await {
            Ok(repl) => repl,
            Err(Error::Server { .. }) => return std::future::pending().await,
            Err(e) => return Err(e),
        };
        // Linked and not syncing: what it has applied is of this stream (before the link is up
        // the offset is of the copy it held before).
        let linked = repl.get("master_link_status").map(String::as_str) == Some("up")
            && repl.get("master_sync_in_progress").map(String::as_str) != Some("1");
        if let Some(offset) = repl
            .get("slave_repl_offset")
            .and_then(|o| o.parse::<u64>().ok())
            .filter(|_| linked)
        {
            applied(status, offset, loaded, "its INFO");
        }
    }
}

fn io(role: Role, addr: &str, source: std::io::Error) -> Error {
    Error::Io {
        role,
        addr: addr.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(t: &mut Tracker, parts: &[&[u8]]) -> Vec<Seen> {
        parts.iter().map(|p| t.feed(p).unwrap()).collect()
    }

    #[test]
    fn a_sized_snapshot_is_followed_to_the_stream_however_it_is_cut() {
        let all = b"\n\n$5\r\nREDIS*1\r\n$4\r\nPING\r\n";
        for cut in 0..all.len() {
            for cut2 in cut..all.len() {
                let mut t = Tracker::full(100);
                let seen = feed_all(&mut t, &[&all[..cut], &all[cut..cut2], &all[cut2..]]);
                assert!(seen.iter().any(|s| s.snapshot_done), "cut {cut} {cut2}");
                assert!(matches!(t, Tracker::Stream(114)), "cut {cut} {cut2}");
                assert_eq!(
                    seen.iter().filter_map(|s| s.snapshot_size).next_back(),
                    Some(5)
                );
            }
        }
    }

    #[test]
    fn a_diskless_snapshot_ends_at_its_mark_however_it_is_cut() {
        let mark = [b'm'; EOF_MARK_LEN];
        let mut all = b"$EOF:".to_vec();
        all.extend_from_slice(&mark);
        all.extend_from_slice(b"\r\nREDIS0011 data m m mm ");
        all.extend_from_slice(&mark);
        all.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
        for cut in 0..all.len() {
            for cut2 in (cut..all.len()).step_by(7) {
                let mut t = Tracker::full(7);
                let seen = feed_all(&mut t, &[&all[..cut], &all[cut..cut2], &all[cut2..]]);
                assert!(seen.iter().any(|s| s.snapshot_done), "cut {cut} {cut2}");
                assert!(matches!(t, Tracker::Stream(21)), "cut {cut} {cut2}");
                let received = seen.iter().filter_map(|s| s.snapshot_bytes).next_back();
                assert_eq!(received, Some(b"REDIS0011 data m m mm ".len() as u64));
            }
        }
    }

    #[test]
    fn a_header_that_is_not_a_snapshots_is_an_error() {
        let mut t = Tracker::full(0);
        assert!(t.feed(b"-ERR no\r\n").is_err());
        let mut t = Tracker::full(0);
        assert!(t.feed(&[b'x'; 200]).is_err());
    }

    #[test]
    fn a_continued_stream_counts_from_the_targets_offset() {
        let mut t = Tracker::stream(1000);
        assert_eq!(
            t.feed(b"*1\r\n$4\r\nPING\r\n").unwrap().stream_offset,
            Some(1014)
        );
    }
}
