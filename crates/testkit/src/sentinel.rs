//! Redis Sentinel: `redis-server <conf> --sentinel` processes monitoring a [`Server`] and
//! its replicas, for tests of a source or target behind Sentinel.
//!
//! [`Sentinel::start`] writes each sentinel's config in its own temp dir (sentinels rewrite
//! it), starts them on free loopback ports, and returns once every sentinel sees the
//! master's replicas and the other sentinels: a failover needs both.
//! [`Sentinels::failover`] forces one with `SENTINEL FAILOVER` and waits until every
//! sentinel reports the new master and that master answers `ROLE` as a master.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use redis::{Value, cmd};

use crate::server::free_port;
use crate::{Server, wait_until, wire};

/// How long a sentinel gets to answer `PING`, and the sentinels to see each other, the
/// replicas and a failover through.
const DEADLINE: Duration = Duration::from_secs(60);
const CONF: &str = "sentinel.conf";
const LOG: &str = "sentinel.log";
const START_ATTEMPTS: usize = 5;

/// One running sentinel process; dropping it kills it and removes its dir.
pub struct Sentinel {
    child: Child,
    port: u16,
    // Declared last so the dir outlives the process that writes into it.
    dir: tempfile::TempDir,
}

/// Sentinels monitoring one master; see [`Sentinel::start`].
pub struct Sentinels {
    sentinels: Vec<Sentinel>,
    /// The master's (and replicas') password, for `ROLE` on whichever is master.
    password: Option<String>,
}

impl Sentinel {
    /// Starts `count` sentinels (same binary as `master`) monitoring `master` as `name`
    /// with `quorum`, `down-after-milliseconds` 1000, `failover-timeout` 5000 and, when the
    /// master has a password, `auth-pass`. Returns once every sentinel lists each replica
    /// the master reports (`connected_slaves`) as a healthy replica and knows the other
    /// sentinels. Build the replicas first, e.g. with [`Server::start_replica_of`].
    pub fn start(master: &Server, name: &str, quorum: u32, count: usize) -> Sentinels {
        assert!(count >= 1, "at least one sentinel");
        let mut conf = format!(
            "sentinel monitor {name} 127.0.0.1 {port} {quorum}\n\
             sentinel down-after-milliseconds {name} 1000\n\
             sentinel failover-timeout {name} 5000\n",
            port = master.port()
        );
        if let Some(pw) = master.password() {
            conf.push_str(&format!("sentinel auth-pass {name} {}\n", quote(pw)));
        }
        let sentinels: Vec<Sentinel> = (0..count)
            .map(|_| Sentinel::spawn(master.bin(), &conf))
            .collect();
        let group = Sentinels {
            sentinels,
            password: master.password().map(str::to_string),
        };
        let replicas: usize = master
            .info("replication")
            .get("connected_slaves")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut why = String::new();
        let ready = wait_until(DEADLINE, || {
            group.sentinels.iter().all(|s| {
                let seen = s.count_healthy(name, "slaves");
                let peers = s.count_healthy(name, "sentinels");
                why = format!("{} sees {seen:?} replicas, {peers:?} sentinels", s.addr());
                seen == Ok(replicas) && peers == Ok(count - 1)
            })
        });
        assert!(
            ready,
            "sentinels not ready within {DEADLINE:?}: {why} (want {replicas} replicas, {} \
             sentinels); log tail:\n{}",
            count - 1,
            group.sentinels[0].log_tail(20)
        );
        group
    }

    fn spawn(bin: &Path, monitor: &str) -> Sentinel {
        let mut last = String::new();
        for _ in 0..START_ATTEMPTS {
            let dir = tempfile::Builder::new()
                .prefix("ferry-sentinel-")
                .tempdir()
                .unwrap_or_else(|e| panic!("cannot create a temp dir for a sentinel: {e}"));
            let port = free_port();
            let conf = format!(
                "port {port}\nbind 127.0.0.1\nprotected-mode no\ndaemonize no\n\
                 dir {dir}\nlogfile {log}\n{monitor}",
                dir = quote(&dir.path().display().to_string()),
                log = quote(&dir.path().join(LOG).display().to_string()),
            );
            let path = dir.path().join(CONF);
            std::fs::write(&path, conf)
                .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
            let stdio = std::fs::File::create(dir.path().join("stdio.log"))
                .unwrap_or_else(|e| panic!("cannot create a log file: {e}"));
            let stdio2 = stdio
                .try_clone()
                .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
            let child = Command::new(bin)
                .arg(&path)
                .arg("--sentinel")
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .stdout(stdio)
                .stderr(stdio2)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {} --sentinel: {e}", bin.display()));
            let mut sentinel = Sentinel { child, port, dir };
            match sentinel.await_ready() {
                Ok(()) => return sentinel,
                Err(msg) if msg.contains("Address already in use") => last = msg,
                Err(msg) => panic!("{msg}"),
            }
        }
        panic!("a sentinel could not get a free port in {START_ATTEMPTS} attempts: {last}")
    }

    fn await_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!(
                    "sentinel on port {} exited at start ({status}); log tail:\n{}",
                    self.port,
                    self.log_tail(30)
                ));
            }
            if let Ok(mut conn) = self.conn()
                && cmd("PING").query::<String>(&mut conn).is_ok()
            {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "sentinel on port {} did not answer PING; log tail:\n{}",
                    self.port,
                    self.log_tail(30)
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The TCP port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:P"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The sentinel's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// A new connection to the sentinel.
    pub fn conn(&self) -> Result<redis::Connection, String> {
        crate::server::connect(&self.addr(), None, 0)
    }

    /// The last `lines` lines of its log (and of its stdout/stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in ["stdio.log", LOG] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// `SENTINEL get-master-addr-by-name`, as `ip:port`.
    fn master_addr(&self, name: &str) -> Result<String, String> {
        let mut conn = self.conn()?;
        let reply: Option<(String, u16)> = cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg(name)
            .query(&mut conn)
            .map_err(|e| format!("SENTINEL get-master-addr-by-name on {}: {e}", self.addr()))?;
        let (ip, port) = reply.ok_or_else(|| format!("{} does not monitor {name}", self.addr()))?;
        Ok(format!("{ip}:{port}"))
    }

    /// How many entries of `SENTINEL <what> name` (`slaves`, `sentinels`) have no flag
    /// beyond their kind (no `s_down`, `disconnected`...).
    fn count_healthy(&self, name: &str, what: &str) -> Result<usize, String> {
        let mut conn = self.conn()?;
        // `SLAVES`, not `REPLICAS`: every version has it.
        let reply: Value = cmd("SENTINEL")
            .arg(what)
            .arg(name)
            .query(&mut conn)
            .map_err(|e| format!("SENTINEL {what} on {}: {e}", self.addr()))?;
        let healthy = wire::items(&reply)
            .unwrap_or_default()
            .iter()
            .filter(|entry| {
                let fields = wire::items(entry).unwrap_or_default();
                let flags = fields
                    .chunks(2)
                    .find(|kv| wire::text(&kv[0]).as_deref() == Some("flags"))
                    .and_then(|kv| kv.get(1).and_then(wire::text))
                    .unwrap_or_default();
                flags == "slave" || flags == "sentinel"
            })
            .count();
        Ok(healthy)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Sentinel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sentinel")
            .field("addr", &self.addr())
            .field("pid", &self.child.id())
            .field("dir", &self.dir.path())
            .finish()
    }
}

impl Sentinels {
    /// Each sentinel.
    pub fn sentinels(&self) -> &[Sentinel] {
        &self.sentinels
    }

    /// `127.0.0.1:P` of each sentinel.
    pub fn addrs(&self) -> Vec<String> {
        self.sentinels.iter().map(Sentinel::addr).collect()
    }

    /// `redis+sentinel://127.0.0.1:P1,127.0.0.1:P2/<name>`.
    pub fn url(&self, name: &str) -> String {
        format!("redis+sentinel://{}/{name}", self.addrs().join(","))
    }

    /// The master's `ip:port` as the first answering sentinel reports it.
    pub fn master_addr(&self, name: &str) -> String {
        let mut last = String::new();
        for sentinel in &self.sentinels {
            match sentinel.master_addr(name) {
                Ok(addr) => return addr,
                Err(e) => last = e,
            }
        }
        panic!("no sentinel reported the master of {name}: {last}")
    }

    /// Forces a failover of `name` (`SENTINEL FAILOVER`), and waits until every sentinel
    /// reports another master and that master answers `ROLE` as a master. Returns the new
    /// master's `ip:port`.
    pub fn failover(&self, name: &str) -> String {
        let old = self.master_addr(name);
        // "INPROG" or "NOGOODSLAVE" right after a change: ask again until it is accepted.
        let mut last = String::new();
        let asked = wait_until(DEADLINE, || {
            let result = self.sentinels[0].conn().and_then(|mut conn| {
                cmd("SENTINEL")
                    .arg("FAILOVER")
                    .arg(name)
                    .query::<()>(&mut conn)
                    .map_err(|e| e.to_string())
            });
            match result {
                Ok(()) => true,
                Err(e) => {
                    last = e;
                    std::thread::sleep(Duration::from_millis(200));
                    false
                }
            }
        });
        assert!(asked, "SENTINEL FAILOVER {name} refused: {last}");
        let mut seen = Vec::new();
        let moved = wait_until(DEADLINE, || {
            seen = self
                .sentinels
                .iter()
                .map(|s| s.master_addr(name).unwrap_or_else(|e| e))
                .collect();
            let new = &seen[0];
            *new != old && seen.iter().all(|a| a == new) && self.is_master(new)
        });
        assert!(
            moved,
            "failover of {name} from {old} did not complete: sentinels report {seen:?}; log \
             tail:\n{}",
            self.sentinels[0].log_tail(30)
        );
        seen.swap_remove(0)
    }

    fn is_master(&self, addr: &str) -> bool {
        crate::server::connect(addr, self.password.as_deref(), 0).is_ok_and(|mut conn| {
            cmd("ROLE").query::<Value>(&mut conn).is_ok_and(|role| {
                wire::items(&role)
                    .and_then(|r| r.first())
                    .and_then(wire::text)
                    .as_deref()
                    == Some("master")
            })
        })
    }
}

impl std::fmt::Debug for Sentinels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.sentinels).finish()
    }
}

/// A config value in double quotes, with `\` and `"` escaped.
fn quote(value: &str) -> String {
    format!("\"{}\"", value.replace('\\', "\\\\").replace('"', "\\\""))
}
