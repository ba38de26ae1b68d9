//! One writer per task, whatever runs: a lease and a fence, kept in each target beside the
//! checkpoint (so they work across machines).
//!
//! - The **lease** (`__ferry:lease:<task>`, `<token> <pid> <since ms> <host>`, with a TTL of
//!   `LEASE`) says which process runs the task. It is taken with `SET NX` and renewed every
//!   `RENEW`. A second copy finds it held, watches it for `OBSERVE`: renewed means the holder
//!   is alive and the copy refuses; not renewed means the holder is gone (killed, frozen, cut
//!   off), and the copy waits for the lease to run out and takes it.
//! - The **fence** (`__ferry:fence:<task>`, on a cluster one per slot, `__ferry:fence:<task>:
//!   {tag}`, without TTL) holds the token of the process that took the lease last. Every
//!   transaction a writer sends is preceded by `WATCH <fence>` and a script that checks the
//!   fence still holds the writer's token (and that the checkpoint has reached what the
//!   writer's previous transaction wrote); when not, the script touches the fence, so the
//!   `EXEC` that follows applies nothing. A copy frozen for minutes that wakes after another
//!   took over cannot apply a single write: the new holder wrote its own token into the fence
//!   before it read the checkpoint.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::Duration;

use bytes::Bytes;
use ferry_keyspace::SlotTags;
use ferry_resp::Frame;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::net::endpoint::Endpoint;
use crate::net::topology::SLOTS;
use crate::pipeline::entry::OWN_KEY_PREFIX;
use crate::sink::Target;

/// How long a lease lasts without renewal: a copy that stopped (killed, frozen, cut off from
/// the target) is replaced at most this long after its last renewal.
pub const LEASE: Duration = Duration::from_secs(10);
/// How often the holder renews it.
pub const RENEW: Duration = Duration::from_secs(2);
/// How long a starting copy watches a lease held by another for a renewal.
pub const OBSERVE: Duration = Duration::from_secs(3);
const POLL: Duration = Duration::from_millis(250);

/// Renews the lease if it is ours; takes it again if it ran out while the fence is still ours
/// (the target was away for longer than the lease) or both are gone (the target lost its data
/// or was emptied, e.g. by a FLUSHALL the source sent). Returns 1 (renewed), 2 (taken again),
/// or the value of the lease another holds (or 0: gone, and the fence names another). A fence
/// that is already ours is not written: that would abort this process's own transactions
/// between their WATCH and EXEC.
const RENEW_SCRIPT: &str = "\
local v = redis.call('GET', KEYS[1]) \
if v == ARGV[1] then redis.call('PEXPIRE', KEYS[1], ARGV[2]) return 1 end \
if v then return v end \
local f = redis.call('GET', KEYS[2]) \
if f == ARGV[3] then redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) return 2 end \
if not f then \
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2]) \
  redis.call('SET', KEYS[2], ARGV[3]) return 2 end \
return 0";

/// Replaces the lease ARGV[1] (of a process known to be gone) with ARGV[2], only if it still
/// holds ARGV[1].
const TAKE_OVER_SCRIPT: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) return 1 end return 0";

/// Sets the fence KEYS[1] to ARGV[1] unless it holds it already: a fence rewritten with the
/// same token would still abort this process's own transactions between WATCH and EXEC (the
/// shards of a cluster source claim the same target one after another).
const SET_IF_OTHER: &str = "if redis.call('GET', KEYS[1]) ~= ARGV[1] then return redis.call('SET', KEYS[1], ARGV[1]) end return 0";

/// Deletes the lease only if it is ours.
const RELEASE_SCRIPT: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

/// Run before each transaction, after `WATCH KEYS[1] KEYS[3]` (the fence, and a key of this
/// writer's own): 1 when the fence holds ARGV[1] (this writer's token) and, if ARGV[2] is not
/// empty, the checkpoint KEYS[2] has reached offset ARGV[2] (the writer's previous transaction
/// was applied). Otherwise touches KEYS[3], so the transaction's EXEC applies nothing (and
/// nobody else's is disturbed), and returns -1 (another copy took over), -2 (an earlier
/// transaction was not applied) or -3 (the fence is gone: the target lost its data or was
/// emptied).
pub const GUARD_SCRIPT: &str = "\
local f = redis.call('GET', KEYS[1]) \
local bad = 0 \
if not f then bad = 3 \
elseif f ~= ARGV[1] then bad = 1 \
elseif ARGV[2] ~= '' then \
  local cp = redis.call('GET', KEYS[2]) \
  local off = cp and tonumber(string.match(cp, '^%S+ (%d+)')) \
  if not off or off < tonumber(ARGV[2]) then bad = 2 end \
end \
if bad == 0 then return 1 end \
redis.call('SET', KEYS[3], '1') \
redis.call('DEL', KEYS[3]) \
return -bad";

/// The lease and fence of one running task, shared by everything that writes for it.
#[derive(Debug)]
pub struct Fence {
    task: String,
    /// This process's lease value: `<token> <pid> <since ms> <host>`.
    value: Bytes,
    token: Bytes,
    tags: SlotTags,
    /// Targets (by URL address) whose lease this process holds, for the renewals.
    claimed: Mutex<HashSet<String>>,
    /// Every slot's fence key, made once.
    slot_keys: std::sync::OnceLock<std::sync::Arc<Vec<Bytes>>>,
    /// Set when another copy took the task over: nothing more may be written.
    lost: AtomicBool,
    lost_why: Mutex<Option<String>>,
}

impl Fence {
    /// A new holder for `task`, with a token no other process has.
    pub fn new(task: &str) -> Fence {
        let token = token();
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        let value = format!(
            "{token} {} {since} {} {}",
            std::process::id(),
            hostname(),
            machine_id()
        );
        Fence {
            task: task.to_string(),
            value: Bytes::from(value),
            token: Bytes::from(token),
            tags: SlotTags::new(),
            claimed: Mutex::new(HashSet::new()),
            slot_keys: std::sync::OnceLock::new(),
            lost: AtomicBool::new(false),
            lost_why: Mutex::new(None),
        }
    }

    pub fn token(&self) -> &Bytes {
        &self.token
    }

    /// This process's lease value.
    pub fn value(&self) -> &Bytes {
        &self.value
    }

    pub fn lease_key(&self) -> Bytes {
        Bytes::from([OWN_KEY_PREFIX, b"lease:", self.task.as_bytes()].concat())
    }

    /// The fence of a standalone target.
    pub fn key(&self) -> Bytes {
        Bytes::from([OWN_KEY_PREFIX, b"fence:", self.task.as_bytes()].concat())
    }

    /// The fence of slot `slot` on a cluster target.
    pub fn slot_key(&self, slot: u16) -> Bytes {
        Bytes::from(self.tags.key_in_slot(&self.slot_prefix(), slot, b""))
    }

    fn slot_prefix(&self) -> Vec<u8> {
        [OWN_KEY_PREFIX, b"fence:", self.task.as_bytes(), b":"].concat()
    }

    /// Every slot's fence key, slot by slot.
    pub fn slot_keys(&self) -> std::sync::Arc<Vec<Bytes>> {
        self.slot_keys
            .get_or_init(|| {
                std::sync::Arc::new((0..SLOTS as u16).map(|s| self.slot_key(s)).collect())
            })
            .clone()
    }

    /// The fence checked together with the lease when it is renewed: in the lease's slot.
    fn key_near_lease(&self, cluster: bool) -> Bytes {
        match cluster {
            true => self.slot_key(ferry_keyspace::slot(&self.lease_key())),
            false => self.key(),
        }
    }

    /// Err once another copy has taken the task over.
    pub fn check(&self) -> Result<()> {
        match self.lost.load(Relaxed) {
            false => Ok(()),
            true => Err(self.lost_error()),
        }
    }

    fn lost_error(&self) -> Error {
        let why = self
            .lost_why
            .lock()
            .ok()
            .and_then(|w| w.clone())
            .unwrap_or_else(|| "another copy holds its lease".into());
        Error::LeaseLost {
            task: self.task.clone(),
            why,
        }
    }

    fn lose(&self, why: String) {
        if let Ok(mut w) = self.lost_why.lock() {
            w.get_or_insert(why);
        }
        self.lost.store(true, Relaxed);
    }

    /// What a guard's refusal means, as the error that ends the writer.
    pub fn refused(&self, addr: &str, code: i64) -> Error {
        match code {
            -2 => Error::TargetRefused {
                addr: addr.to_string(),
                what: "a transaction".into(),
                msg:
                    "an earlier transaction of this writer was not applied, so nothing after it is"
                        .into(),
                retryable: true,
            },
            -3 => Error::TargetRefused {
                addr: addr.to_string(),
                what: "a transaction".into(),
                msg: format!(
                    "the target no longer holds the task's fence {} (it lost its data, or was emptied): nothing is written until the task has claimed it again",
                    String::from_utf8_lossy(&self.key())
                ),
                retryable: true,
            },
            _ => {
                self.lose(format!(
                    "target {addr} names another holder in its fence {}",
                    String::from_utf8_lossy(&self.key())
                ));
                self.lost_error()
            }
        }
    }

    /// Takes the task's lease on `target` (waiting for a stopped holder's lease to run out),
    /// then writes this process's token into its fence(s). Before anything is read or written
    /// for the task there.
    pub async fn claim(&self, target: &mut Target, url_addr: &str) -> Result<()> {
        self.check()?;
        let lease = self.lease_key();
        let addr = target.addr();
        let cluster = matches!(target, Target::Cluster(_));
        let conn = target.conn_for_key(&lease);
        let mut waited_said = false;
        loop {
            let set = conn
                .request_ok(&[
                    &b"SET"[..],
                    &lease,
                    &self.value,
                    b"NX",
                    b"PX",
                    LEASE.as_millis().to_string().as_bytes(),
                ])
                .await?;
            if matches!(set, Frame::Simple(_)) {
                break;
            }
            let Some((held, mut ttl)) = lease_state(conn, &lease).await? else {
                continue;
            };
            if ttl > 2 * LEASE.as_millis() as i64 {
                return Err(Error::Config(format!(
                    "target {addr} holds {} without an expiry, which ferry never writes; if no copy of task {} runs, delete it (DEL {0}) and start again",
                    String::from_utf8_lossy(&lease),
                    self.task
                )));
            }
            if held == self.value {
                conn.request_ok(&[
                    &b"PEXPIRE"[..],
                    &lease,
                    LEASE.as_millis().to_string().as_bytes(),
                ])
                .await?;
                break;
            }
            // A holder on this machine whose process is gone (killed, crashed): take over now.
            if let Some(pid) = self.dead_local_holder(&held) {
                let taken = conn
                    .request_ok(&[
                        &b"EVAL"[..],
                        TAKE_OVER_SCRIPT.as_bytes(),
                        b"1",
                        &lease,
                        &held,
                        &self.value,
                        LEASE.as_millis().to_string().as_bytes(),
                    ])
                    .await?;
                if matches!(taken, Frame::Integer(1)) {
                    tracing::info!(
                        "task {} on target {addr}: the copy that held it (pid {pid} on this machine) is gone; taking over",
                        self.task
                    );
                    break;
                }
                continue;
            }
            // Watch it: a live holder renews it within OBSERVE.
            let started = tokio::time::Instant::now();
            let freed = loop {
                tokio::time::sleep(POLL).await;
                let Some((now, left)) = lease_state(conn, &lease).await? else {
                    break true;
                };
                if now != held || left > ttl + POLL.as_millis() as i64 {
                    return Err(Error::AlreadyRunning {
                        task: self.task.clone(),
                        target: addr,
                        holder: describe_holder(&now),
                    });
                }
                ttl = left;
                if started.elapsed() >= OBSERVE && !waited_said {
                    waited_said = true;
                    tracing::warn!(
                        "task {} on target {addr}: the copy that held it ({}) stopped renewing its lease; taking over when it runs out in {:.1} s",
                        self.task,
                        describe_holder(&held),
                        left as f64 / 1000.0
                    );
                }
            };
            debug_assert!(freed);
        }
        self.write_fences(target, cluster).await?;
        if let Ok(mut c) = self.claimed.lock() {
            c.insert(url_addr.to_string());
        }
        tracing::debug!(task = %self.task, target = %addr, "lease taken");
        Ok(())
    }

    /// The pid of `held`'s process when it ran on this machine (same boot, same pid
    /// namespace) and no longer exists.
    fn dead_local_holder(&self, held: &[u8]) -> Option<u32> {
        let held = std::str::from_utf8(held).ok()?;
        let ours = std::str::from_utf8(&self.value).ok()?;
        let fields: Vec<&str> = held.split(' ').collect();
        let mine: Vec<&str> = ours.split(' ').collect();
        if fields.len() != 5 || mine.len() != 5 || fields[3..] != mine[3..] {
            return None;
        }
        let pid: u32 = fields[1].parse().ok()?;
        let proc_fs = std::path::Path::new("/proc/self").exists();
        (proc_fs && !std::path::Path::new(&format!("/proc/{pid}")).exists()).then_some(pid)
    }

    async fn write_fences(&self, target: &mut Target, cluster: bool) -> Result<()> {
        if !cluster {
            let key = self.key();
            let conn = target.conn_for_key(&key);
            conn.request_ok(&[
                &b"EVAL"[..],
                SET_IF_OTHER.as_bytes(),
                b"1",
                &key,
                &self.token,
            ])
            .await?;
            return Ok(());
        }
        // One key per slot, each written on the master serving it, pipelined.
        let Target::Cluster(cluster) = target else {
            return Ok(());
        };
        let owners = cluster.slot_owners();
        let conns = cluster.control_mut();
        for (i, conn) in conns.iter_mut().enumerate() {
            let mut out = bytes::BytesMut::new();
            let mut n = 0;
            let keys = self.slot_keys();
            for slot in (0..SLOTS).filter(|&s| owners[s] == i) {
                ferry_resp::encode_command(
                    &mut out,
                    &[
                        &b"EVAL"[..],
                        SET_IF_OTHER.as_bytes(),
                        b"1",
                        &keys[slot],
                        &self.token,
                    ],
                );
                n += 1;
            }
            conn.write_all(&out).await?;
            for _ in 0..n {
                let (frame, _) = conn.read_frame().await?;
                if let Frame::Error(msg) = frame {
                    return Err(conn.server_error(&msg));
                }
            }
        }
        Ok(())
    }

    /// Renews the leases this process holds every `RENEW` until `stop`; marks the fence lost
    /// and cancels `task` when another copy holds one.
    pub async fn keep(
        &self,
        targets: Vec<Endpoint>,
        task: CancellationToken,
        stop: CancellationToken,
    ) {
        let mut conns: Vec<Option<Target>> = targets.iter().map(|_| None).collect();
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(RENEW) => {}
            }
            for (endpoint, conn) in targets.iter().zip(conns.iter_mut()) {
                let claimed = self
                    .claimed
                    .lock()
                    .is_ok_and(|c| c.contains(&endpoint.addr()));
                if !claimed {
                    continue;
                }
                match self.renew(endpoint, conn).await {
                    Ok(None) => {}
                    Ok(Some(why)) => {
                        tracing::error!("task {}: {why}; stopping this copy", self.task);
                        self.lose(why);
                        task.cancel();
                        return;
                    }
                    Err(e) => {
                        // The writers see the same trouble; a lease that runs out meanwhile
                        // is taken again at the next renewal if nobody else took it.
                        tracing::debug!("lease renewal on {}: {e}", endpoint.addr());
                        *conn = None;
                    }
                }
            }
        }
    }

    /// One renewal; Some(why) when another copy holds the task.
    async fn renew(
        &self,
        endpoint: &Endpoint,
        target: &mut Option<Target>,
    ) -> Result<Option<String>> {
        let target = match target {
            Some(t) => t,
            None => target.insert(Target::connect(endpoint).await?),
        };
        let lease = self.lease_key();
        let fence = self.key_near_lease(matches!(target, Target::Cluster(_)));
        let ms = LEASE.as_millis().to_string();
        let conn = target.conn_for_key(&lease);
        let reply = conn
            .request_ok(&[
                &b"EVAL"[..],
                RENEW_SCRIPT.as_bytes(),
                b"2",
                &lease,
                &fence,
                &self.value,
                ms.as_bytes(),
                &self.token,
            ])
            .await?;
        Ok(match reply {
            Frame::Integer(1) => None,
            Frame::Integer(2) => {
                tracing::info!(task = %self.task, target = %endpoint.addr(), "lease taken again after it ran out");
                None
            }
            Frame::Bulk(other) => Some(format!(
                "target {} names another copy as running it: {}",
                endpoint.addr(),
                describe_holder(&other)
            )),
            Frame::Integer(_) => Some(format!(
                "its lease on target {} ran out and another copy took the task over meanwhile",
                endpoint.addr()
            )),
            other => Some(format!(
                "target {} answered {other} to the lease renewal",
                endpoint.addr()
            )),
        })
    }

    /// Gives the leases back (only where they are still this process's), so a next copy can
    /// start at once.
    pub async fn release(&self, targets: &[Endpoint]) {
        for endpoint in targets {
            let claimed = self
                .claimed
                .lock()
                .is_ok_and(|c| c.contains(&endpoint.addr()));
            if !claimed {
                continue;
            }
            let released = async {
                let mut target = Target::connect(endpoint).await?;
                let lease = self.lease_key();
                let conn = target.conn_for_key(&lease);
                conn.request_ok(&[
                    &b"EVAL"[..],
                    RELEASE_SCRIPT.as_bytes(),
                    b"1",
                    &lease,
                    &self.value,
                ])
                .await
            }
            .await;
            if let Err(e) = released {
                tracing::debug!("could not give back the lease on {}: {e}", endpoint.addr());
            }
        }
    }
}

/// A key of one writer's own beside fence `fence` (in the same slot: the fence's hash tag
/// comes first), which only that writer WATCHes: a failed guard touches it.
pub fn own_key(fence: &[u8], token: &[u8]) -> Bytes {
    Bytes::from([fence, b":", token].concat())
}

/// The lease's value and milliseconds left, None when there is none.
async fn lease_state(conn: &mut Conn, lease: &[u8]) -> Result<Option<(Bytes, i64)>> {
    let value = match conn.request_ok(&[&b"GET"[..], lease]).await? {
        Frame::Bulk(v) => v,
        _ => return Ok(None),
    };
    let ttl = match conn.request_ok(&[&b"PTTL"[..], lease]).await? {
        Frame::Integer(t) if t >= 0 => t,
        // Gone meanwhile, or (set by hand) without a TTL.
        Frame::Integer(-2) => return Ok(None),
        _ => i64::MAX / 2,
    };
    Ok(Some((value, ttl)))
}

/// "host H, pid P, since DATE" from a lease value.
fn describe_holder(value: &[u8]) -> String {
    let text = String::from_utf8_lossy(value);
    let mut parts = text.split(' ');
    let (_token, pid, since, host) = (parts.next(), parts.next(), parts.next(), parts.next());
    match (pid, since.and_then(|s| s.parse::<u64>().ok()), host) {
        (Some(pid), Some(since), Some(host)) => format!(
            "host {host}, pid {pid}, since {}",
            crate::net::tls::utc(since / 1000)
        ),
        _ => format!("lease {text:?}"),
    }
}

/// 128 random bits as hex, from the OS (a hash of time and pid if it cannot be read).
pub(crate) fn token() -> String {
    let mut bytes = [0u8; 16];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes));
    if read.is_err() {
        use std::hash::{BuildHasher, Hasher};
        for chunk in bytes.chunks_mut(8) {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u128(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos()),
            );
            h.write_u32(std::process::id());
            chunk.copy_from_slice(&h.finish().to_le_bytes());
        }
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// This machine's boot and pid namespace: two processes with the same id see the same pids.
fn machine_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let pid_ns = std::fs::read_link("/proc/self/ns/pid")
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    if boot.trim().is_empty() || pid_ns.is_empty() {
        // Unknown: never taken for the same machine.
        return format!("unknown-{}", token());
    }
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (boot.trim(), &pid_ns).hash(&mut h);
    format!("{:016x}", h.finish())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().replace(' ', "_"))
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown-host".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_are_described_from_the_lease() {
        assert_eq!(
            describe_holder(b"abc 4242 978307200000 db-1 0123456789abcdef"),
            "host db-1, pid 4242, since 2001-01-01 00:00:00 UTC"
        );
        assert_eq!(describe_holder(b"junk"), "lease \"junk\"");
    }

    #[test]
    fn tokens_differ() {
        let a = Fence::new("t");
        let b = Fence::new("t");
        assert_ne!(a.token(), b.token());
        assert_eq!(a.token().len(), 32);
        assert!(a.value.starts_with(a.token()));
        assert_eq!(&a.lease_key()[..], b"__ferry:lease:t");
        assert_eq!(&a.key()[..], b"__ferry:fence:t");
        let k = a.slot_key(42);
        assert_eq!(ferry_keyspace::slot(&k), 42);
    }
}
