//! The heartbeat: every second, `SET __ferry:heartbeat:<task> <ms since the epoch> PX 10000` on
//! the source, over a connection of its own. The write comes back in the replication stream
//! (never copied: the key is ferry's own), and once the target has confirmed its position the
//! time since it was sent is one latency sample (see `latency`).
//!
//! It never fails the task: a lost connection is reconnected with backoff, and a source that
//! refuses the write (a replica, `READONLY`, an ACL user without `+set`, `MISCONF`) leaves the
//! latency to be estimated from the stream, said once in the log and asked again now and then.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_keyspace::SlotTags;
use ferry_resp::Frame;
use tokio_util::sync::CancellationToken;

use crate::config::TaskConfig;
use crate::error::{Error, Role};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::{self, Topology};
use crate::status::Status;
use crate::status::latency::{HEARTBEAT_PREFIX, unix_ms};

const EVERY: Duration = Duration::from_secs(1);
/// The key outlives a few missed beats, then goes by itself once ferry stops.
const EXPIRY_MS: &str = "10000";
/// A source that refused the write is asked again this often.
const ASK_AGAIN: Duration = Duration::from_secs(30);

/// `__ferry:heartbeat:<task>`.
pub fn key(task: &str) -> Vec<u8> {
    [HEARTBEAT_PREFIX, task.as_bytes()].concat()
}

/// Starts the heartbeat of one replication stream from `endpoint` (unless turned off or there
/// is no stream to follow); it stops when the returned guard is dropped or `cancel` fires.
pub fn start(
    config: &TaskConfig,
    endpoint: &Endpoint,
    status: &Arc<Status>,
    cancel: &CancellationToken,
) -> Option<Heartbeat> {
    if !config.heartbeat || config.full_only {
        return None;
    }
    let stream = status.latency.begin();
    let stop = cancel.child_token();
    tokio::spawn(beat(
        endpoint.clone(),
        config.name.clone(),
        status.clone(),
        stream,
        stop.clone(),
    ));
    Some(Heartbeat {
        stop,
        status: status.clone(),
        stream,
    })
}

/// A running heartbeat; dropping it stops it, and its stream takes no more probes.
pub struct Heartbeat {
    stop: CancellationToken,
    status: Arc<Status>,
    stream: u64,
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.stop.cancel();
        self.status.latency.end(self.stream);
    }
}

/// Where the heartbeat writes: a connection to the master and the key, in a slot that master
/// serves on a cluster.
struct Writer {
    conn: Conn,
    key: Bytes,
}

/// Why there is no writer.
enum NoWriter {
    /// Worth trying again soon (the link, a busy server).
    Link(Error),
    /// The source will not take the heartbeat as it stands.
    Refused(String),
}

async fn beat(
    endpoint: Endpoint,
    task: String,
    status: Arc<Status>,
    stream: u64,
    stop: CancellationToken,
) {
    let mut beat = Beat {
        endpoint,
        task,
        status,
        stream,
        writer: None,
        failures: 0,
        refused_at: None,
    };
    let mut tick = tokio::time::interval(EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        // A source that hangs must not keep the heartbeat past the task's stop.
        let pause = tokio::select! {
            pause = beat.once() => pause,
            _ = stop.cancelled() => return,
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.cancelled() => return,
        }
    }
}

/// The heartbeat's state between beats.
struct Beat {
    endpoint: Endpoint,
    task: String,
    status: Arc<Status>,
    /// The stream this heartbeat measures (see `Latency::begin`).
    stream: u64,
    writer: Option<Writer>,
    /// Connection attempts failed in a row, for the backoff.
    failures: u32,
    /// When the source last refused the heartbeat.
    refused_at: Option<Instant>,
}

impl Beat {
    /// One beat: connects if need be and writes the key. Returns how long to wait before the
    /// next (beyond the tick): a backoff after a failed connection.
    async fn once(&mut self) -> Duration {
        let latency = &self.status.latency;
        if self.refused_at.is_some_and(|t| t.elapsed() < ASK_AGAIN) {
            return Duration::ZERO;
        }
        let w = match &mut self.writer {
            Some(w) => w,
            None => match open(&self.endpoint, &self.task).await {
                Ok(w) => {
                    self.failures = 0;
                    latency.set_key(self.stream, w.key.clone());
                    self.writer.insert(w)
                }
                Err(NoWriter::Refused(why)) => {
                    self.refused(&why);
                    return Duration::ZERO;
                }
                Err(NoWriter::Link(e)) => {
                    self.failures = self.failures.saturating_add(1);
                    tracing::debug!("heartbeat: {e}");
                    return backoff(self.failures);
                }
            },
        };
        let value = unix_ms();
        latency.sent(value, Instant::now());
        let value = value.to_string();
        let reply = w
            .conn
            .request(&[
                &b"SET"[..],
                &w.key,
                value.as_bytes(),
                b"PX",
                EXPIRY_MS.as_bytes(),
            ])
            .await;
        match reply {
            Ok(Frame::Error(msg)) if topology::is_redirect(&msg) => {
                // The slot moved to another master: find it again.
                self.writer = None;
            }
            Ok(Frame::Error(msg)) if passing(&msg) => {
                tracing::debug!("heartbeat: {}", String::from_utf8_lossy(&msg));
            }
            Ok(Frame::Error(msg)) => self.refused(&String::from_utf8_lossy(&msg)),
            Ok(_) => {
                self.refused_at = None;
                if latency.set_estimating(self.stream, false) {
                    tracing::info!(
                        source = %self.endpoint,
                        "the source takes the heartbeat's write now: latency is measured end to end"
                    );
                }
            }
            Err(e) => {
                tracing::debug!("heartbeat: {e}");
                self.writer = None;
            }
        }
        Duration::ZERO
    }

    /// The source refused the heartbeat: estimate from the stream instead, and say why once.
    fn refused(&mut self, why: &str) {
        self.refused_at = Some(Instant::now());
        let latency = &self.status.latency;
        latency.set_estimating(self.stream, true);
        if latency
            .refusal_logged
            .swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            return;
        }
        let why = why.trim();
        let fix = if why.starts_with("NOPERM") {
            "to measure end to end, let ferry's user write its own keys (ACL SETUSER <user> +set ~__ferry:*); "
        } else if why.starts_with("READONLY") || why.contains("replica") {
            "to measure end to end, replicate from the master; "
        } else {
            ""
        };
        self.status.warn("heartbeat_refused", format!(
            "source {} does not take the latency heartbeat's write ({why}): latency is estimated from when ferry reads the stream instead (without the source→ferry leg); \
             {fix}[sync] heartbeat = false turns the heartbeat off",
            self.endpoint.addr()));
    }
}

/// Connects to the master that takes the heartbeat: the source itself, or on a cluster the
/// master of the source node's shard, with the key in that shard's first slot.
async fn open(endpoint: &Endpoint, task: &str) -> Result<Writer, NoWriter> {
    let mut conn = Conn::connect(Role::Source, endpoint)
        .await
        .map_err(NoWriter::Link)?;
    let key = key(task);
    if !topology::is_cluster(&mut conn)
        .await
        .map_err(NoWriter::Link)?
    {
        // A replica does not pass its own writes on (even when it takes them): the heartbeat
        // would never come back.
        let info = conn
            .request_ok(&[&b"INFO"[..], b"replication"])
            .await
            .map_err(NoWriter::Link)?;
        let info = info.as_bytes().cloned().unwrap_or_default();
        if String::from_utf8_lossy(&info)
            .lines()
            .any(|l| l.trim() == "role:slave")
        {
            return Err(NoWriter::Refused(
                "it is a replica: its own writes do not reach its replication stream".into(),
            ));
        }
        return Ok(Writer {
            conn,
            key: Bytes::from(key),
        });
    }
    let map = Topology::discover(&mut conn, endpoint)
        .await
        .map_err(NoWriter::Link)?;
    let here = endpoint.addr();
    let Some(shard) = map
        .shards
        .iter()
        .find(|s| s.master.addr() == here || s.replicas.iter().any(|r| r.addr() == here))
    else {
        return Err(NoWriter::Refused(format!(
            "{here} serves no slots of the cluster"
        )));
    };
    let key = SlotTags::new().key_in_slot(&key, shard.first_slot(), b"");
    if shard.master.addr() != here {
        conn = Conn::connect(Role::Source, &shard.master)
            .await
            .map_err(NoWriter::Link)?;
    }
    Ok(Writer {
        conn,
        key: Bytes::from(key),
    })
}

/// A refusal that passes by itself (a server loading its data, busy with a script, a cluster
/// settling): the next beat tries again.
fn passing(msg: &[u8]) -> bool {
    ["LOADING", "BUSY", "TRYAGAIN", "MASTERDOWN", "CLUSTERDOWN"]
        .iter()
        .any(|p| msg.starts_with(p.as_bytes()))
}

/// 1 s doubling to 30 s.
fn backoff(failures: u32) -> Duration {
    EVERY
        .saturating_mul(1u32 << failures.min(5))
        .min(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::entry::OWN_KEY_PREFIX;

    #[test]
    fn key_is_ferrys_own_and_names_the_task() {
        assert_eq!(key("orders-eu"), b"__ferry:heartbeat:orders-eu");
        assert!(key("x").starts_with(OWN_KEY_PREFIX));
    }

    #[test]
    fn only_passing_refusals_are_tried_again_at_once() {
        assert!(passing(b"LOADING Redis is loading the dataset in memory"));
        assert!(passing(b"BUSY Redis is busy running a script"));
        assert!(!passing(
            b"READONLY You can't write against a read only replica."
        ));
        assert!(!passing(
            b"NOPERM this user has no permissions to run the 'set' command"
        ));
        assert!(!passing(
            b"MISCONF Redis is configured to save RDB snapshots"
        ));
    }

    #[test]
    fn backoff_grows_to_a_cap() {
        assert_eq!(backoff(0), Duration::from_secs(1));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(10), Duration::from_secs(30));
    }
}
