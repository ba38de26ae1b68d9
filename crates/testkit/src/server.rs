//! A real `redis-server` child process on a free loopback port, in its own temp dir.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, RedisConnectionInfo};

/// How long a server gets to answer `PING` after it was spawned.
const START_DEADLINE: Duration = Duration::from_secs(10);
/// How often a server is re-spawned on a new port when its port was taken meanwhile.
const START_ATTEMPTS: usize = 5;
const LOG_FILE: &str = "redis.log";
const STDIO_FILE: &str = "stdio.log";

/// Path of the `redis-server` binary: `$FERRY_REDIS_SERVER`, else `redis-server` on `PATH`.
///
/// Panics with a message saying how to install it when neither is found.
pub fn redis_server_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("FERRY_REDIS_SERVER") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "FERRY_REDIS_SERVER={} is not a file; point it at a redis-server binary",
            path.display()
        );
        return path;
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("redis-server"))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "redis-server not found on PATH: ferry's tests run real Redis servers. \
             Install it (`apt-get install redis-server`) or set FERRY_REDIS_SERVER to its path"
        )
    })
}

/// Polls `cond` every 20 ms until it returns true or `timeout` has passed.
///
/// Returns whether `cond` became true. `cond` is always called at least once, and once more
/// at the deadline.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        let now = Instant::now();
        if now >= deadline {
            return false;
        }
        std::thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

/// A running `redis-server` child process in its own temp dir.
///
/// Dropping it kills the process (SIGKILL), reaps it and removes the dir.
pub struct Server {
    child: Child,
    port: u16,
    password: Option<String>,
    version: (u32, u32, u32),
    /// How it was started, to start it again in [`Server::restart`].
    bin: PathBuf,
    extra: Vec<String>,
    // Declared last so the dir outlives the process that writes into it.
    dir: tempfile::TempDir,
}

impl Server {
    /// Starts `redis-server` with testkit's defaults (no persistence, debug commands on,
    /// loopback only) on a free port, and waits until it answers `PING`.
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    /// Like [`Server::start`], with extra command-line arguments appended (they win over the
    /// defaults), e.g. `&["--repl-diskless-sync", "yes", "--requirepass", "pw"]`.
    ///
    /// A `--requirepass` given here is remembered and used by [`Server::conn`].
    pub fn start_with(args: &[&str]) -> Server {
        Server::start_bin(&redis_server_bin(), args)
    }

    /// Like [`Server::start_with`], with a given `redis-server` binary (or launcher script
    /// that `exec`s one), e.g. one of [`crate::versions::available`]. Options an older
    /// server lacks are left out of the defaults (`--enable-debug-command` before 7.0), and
    /// [`Server::version`] is what its `INFO` reports (`redis_version`: Valkey 8 says 7.2.4).
    pub fn start_bin(bin: &Path, args: &[&str]) -> Server {
        Server::start_bin_ports(bin, args, &|_| (free_port(), Vec::new()))
    }

    /// Starts a replica of `master`: same binary, `--replicaof` it, and when `master` has a
    /// password the same one as `--masterauth` and `--requirepass`. Waits until the
    /// replica reports `master_link_status:up` (the initial sync is done).
    pub fn start_replica_of(master: &Server) -> Server {
        Server::start_replica_of_with(master, &[])
    }

    /// Like [`Server::start_replica_of`], with extra arguments appended.
    pub fn start_replica_of_with(master: &Server, args: &[&str]) -> Server {
        let port = master.port.to_string();
        let mut all = vec!["--replicaof", "127.0.0.1", &port];
        if let Some(pw) = master.password() {
            all.extend(["--masterauth", pw, "--requirepass", pw]);
        }
        all.extend(args);
        let replica = Server::start_bin(&master.bin, &all);
        let linked = wait_until(Duration::from_secs(30), || {
            replica
                .info("replication")
                .get("master_link_status")
                .map(String::as_str)
                == Some("up")
        });
        assert!(
            linked,
            "replica {} of {} did not link up; log tail:\n{}",
            replica.addr(),
            master.addr(),
            replica.log_tail(20)
        );
        replica
    }

    /// Like [`Server::start_bin`], with the port (and any arguments that go with it, e.g.
    /// a cluster bus port) chosen by `ports`, which gets the binary's version and is called
    /// again for each attempt.
    pub(crate) fn start_bin_ports(
        bin: &Path,
        args: &[&str],
        ports: &dyn Fn((u32, u32, u32)) -> (u16, Vec<String>),
    ) -> Server {
        let version = binary_version(bin);
        let password = args
            .windows(2)
            .rev()
            .find(|pair| pair[0] == "--requirepass")
            .map(|pair| pair[1].to_string())
            .filter(|pw| !pw.is_empty());
        let mut last_failure = String::new();
        for _ in 0..START_ATTEMPTS {
            let (port, port_args) = ports(version);
            let mut all: Vec<&str> = port_args.iter().map(String::as_str).collect();
            all.extend(args);
            match Server::spawn(bin, version, &all, port, password.clone()) {
                Ok(server) => return server,
                Err(Spawn::PortTaken(msg)) => last_failure = msg,
                Err(Spawn::Failed(msg)) => panic!("{msg}"),
            }
        }
        panic!(
            "redis-server could not get a free port in {START_ATTEMPTS} attempts: {last_failure}"
        )
    }

    /// Like [`Server::start_with`], with TLS on a second free port ([`Server::tls_port`]) using
    /// `files`' server certificate and CA, `--tls-auth-clients no` and `--tls-replication yes`;
    /// `args` come after and win (e.g. `--tls-auth-clients yes`, `--tls-protocols TLSv1.2`,
    /// another `--tls-cert-file`). The plain port stays open for the test's own connections
    /// ([`Server::conn`], readiness, comparison).
    pub fn start_tls(files: &crate::tls::TlsFiles, args: &[&str]) -> Server {
        let path = |p: &Path| p.to_str().expect("a UTF-8 temp path").to_string();
        let tls = |_| {
            let args = vec![
                "--tls-port".to_string(),
                free_port().to_string(),
                "--tls-cert-file".into(),
                path(&files.server_cert),
                "--tls-key-file".into(),
                path(&files.server_key),
                "--tls-ca-cert-file".into(),
                path(&files.ca),
                "--tls-auth-clients".into(),
                "no".into(),
                "--tls-replication".into(),
                "yes".into(),
            ];
            (free_port(), args)
        };
        Server::start_bin_ports(&redis_server_bin(), args, &tls)
    }

    fn spawn(
        bin: &Path,
        version: (u32, u32, u32),
        extra: &[&str],
        port: u16,
        password: Option<String>,
    ) -> Result<Server, Spawn> {
        let dir = tempfile::Builder::new()
            .prefix("ferry-redis-")
            .tempdir()
            .unwrap_or_else(|e| panic!("cannot create a temp dir for redis-server: {e}"));
        let child = Server::launch(bin, version, extra, port, dir.path());
        let mut server = Server {
            child,
            port,
            password,
            version,
            bin: bin.to_path_buf(),
            extra: extra.iter().map(|a| a.to_string()).collect(),
            dir,
        };
        server.await_ready()?;
        Ok(server)
    }

    /// Stops the server with `SHUTDOWN SAVE` (it writes its RDB, which holds its replication
    /// id and offset) and starts it again on the same port, in the same dir, with the same
    /// arguments: a restart with persistence, as an operator would do it.
    pub fn restart(&mut self) {
        self.stop();
        self.start_again();
    }

    /// Stops the server with `SHUTDOWN SAVE` and waits for the process to end; the port stays
    /// closed until [`Server::start_again`] (an outage, as clients see it).
    pub fn stop(&mut self) {
        let mut conn = self.conn();
        let _ = redis::cmd("SHUTDOWN").arg("SAVE").query::<()>(&mut conn);
        drop(conn);
        let _ = self.child.wait();
    }

    /// Starts a server stopped by [`Server::stop`] again: same port, dir and arguments, so it
    /// loads what it saved.
    pub fn start_again(&mut self) {
        let extra: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        self.child = Server::launch(&self.bin, self.version, &extra, self.port, self.dir.path());
        if let Err(Spawn::PortTaken(msg) | Spawn::Failed(msg)) = self.await_ready() {
            panic!("start again: {msg}");
        }
    }

    fn launch(
        bin: &Path,
        version: (u32, u32, u32),
        extra: &[&str],
        port: u16,
        dir: &Path,
    ) -> Child {
        let stdio = std::fs::File::create(dir.join(STDIO_FILE))
            .unwrap_or_else(|e| panic!("cannot create {STDIO_FILE} in {}: {e}", dir.display()));
        let stdio2 = stdio
            .try_clone()
            .unwrap_or_else(|e| panic!("cannot duplicate a file handle: {e}"));
        let mut cmd = Command::new(bin);
        cmd.arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--protected-mode", "no", "--daemonize", "no"]);
        if version.0 >= 7 {
            cmd.args(["--enable-debug-command", "yes"]);
        }
        cmd.arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(dir.join(LOG_FILE))
            .args(extra)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(stdio)
            .stderr(stdio2);
        cmd.spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()))
    }

    /// Waits until the server answers `PING` and checks that it is our process on that port.
    fn await_ready(&mut self) -> Result<(), Spawn> {
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let tail = self.log_tail(30);
                let msg = format!(
                    "redis-server on port {} exited at start ({status}); log tail:\n{tail}",
                    self.port
                );
                return Err(if tail.contains("Address already in use") {
                    Spawn::PortTaken(msg)
                } else {
                    Spawn::Failed(msg)
                });
            }
            if ping(self.port) {
                break;
            }
            if Instant::now() >= deadline {
                return Err(Spawn::Failed(format!(
                    "redis-server on port {} did not answer PING within {:?}; log tail:\n{}",
                    self.port,
                    START_DEADLINE,
                    self.log_tail(30)
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // Another process may have taken the port between our probe and redis-server's bind:
        // make sure the server that answered is ours.
        let info = self.info("server");
        let pid = info.get("process_id").and_then(|p| p.parse::<u32>().ok());
        if pid != Some(self.child.id()) {
            return Err(Spawn::PortTaken(format!(
                "port {} answered from process {pid:?}, not from ours ({})",
                self.port,
                self.child.id()
            )));
        }
        if let Some(v) = info.get("redis_version").and_then(|v| parse_version(v)) {
            self.version = v;
        }
        Ok(())
    }

    /// The TCP port the server listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `"127.0.0.1:P"`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `"redis://127.0.0.1:P"`, without the password even when the server has one.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The TLS port (on 127.0.0.1) of a server from [`Server::start_tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.extra
            .windows(2)
            .rev()
            .find(|pair| pair[0] == "--tls-port")
            .and_then(|pair| pair[1].parse().ok())
    }

    /// `"rediss://127.0.0.1:T"` with the TLS port; panics for a server without TLS.
    pub fn tls_url(&self) -> String {
        let port = self
            .tls_port()
            .unwrap_or_else(|| panic!("{} was not started with TLS", self.addr()));
        format!("rediss://127.0.0.1:{port}")
    }

    /// The password given with `--requirepass`, if any.
    pub fn password(&self) -> Option<&str> {
        self.password.as_deref()
    }

    /// A new connection on db 0, authenticated when the server has a password.
    pub fn conn(&self) -> redis::Connection {
        self.conn_db(0)
    }

    /// A new connection on `db`, authenticated when the server has a password.
    pub fn conn_db(&self, db: i64) -> redis::Connection {
        connect(&self.addr(), self.password.as_deref(), db)
            .unwrap_or_else(|e| panic!("{e}; server log tail:\n{}", self.log_tail(20)))
    }

    /// The server's working dir (a temp dir removed on drop).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last `lines` lines of the server log (and of its stdout/stderr, which only hold
    /// anything when it failed before opening the log).
    pub fn log_tail(&self, lines: usize) -> String {
        let mut out = String::new();
        for name in [STDIO_FILE, LOG_FILE] {
            let text = std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
            let all: Vec<&str> = text.lines().collect();
            for line in &all[all.len().saturating_sub(lines)..] {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// `INFO <section>` as a map of field to value (section headers and blanks skipped).
    pub fn info(&self, section: &str) -> HashMap<String, String> {
        let mut conn = self.conn();
        let text: String = redis::cmd("INFO")
            .arg(section)
            .query(&mut conn)
            .unwrap_or_else(|e| panic!("INFO {section} on {} failed: {e}", self.addr()));
        parse_info(&text)
    }

    /// The server's version, e.g. `(7, 0, 15)`.
    pub fn version(&self) -> (u32, u32, u32) {
        self.version
    }

    /// The `redis-server` binary (or launcher) it was started with.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // SIGKILL; errors mean it is already gone.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.addr())
            .field("pid", &self.child.id())
            .field("version", &self.version)
            .field("dir", &self.dir.path())
            .finish()
    }
}

enum Spawn {
    /// The port was taken by someone else: worth another try on another port.
    PortTaken(String),
    Failed(String),
}

/// Opens a connection to `addr` ("host:port") on `db`, with `AUTH` when a password is given.
pub(crate) fn connect(
    addr: &str,
    password: Option<&str>,
    db: i64,
) -> Result<redis::Connection, String> {
    let (host, port) = addr
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.to_string(), p.parse::<u16>().ok()?)))
        .ok_or_else(|| format!("bad address {addr:?}: expected host:port"))?;
    let info = ConnectionInfo {
        addr: ConnectionAddr::Tcp(host, port),
        redis: RedisConnectionInfo {
            db,
            password: password.map(str::to_string),
            ..Default::default()
        },
    };
    let client = redis::Client::open(info).map_err(|e| format!("bad address {addr}: {e}"))?;
    let conn = client
        .get_connection_with_timeout(Duration::from_secs(5))
        .map_err(|e| format!("cannot connect to redis at {addr} (db {db}): {e}"))?;
    // Generous, but a hung server fails the test instead of hanging it.
    let timeout = Some(Duration::from_secs(60));
    conn.set_read_timeout(timeout)
        .and_then(|()| conn.set_write_timeout(timeout))
        .map_err(|e| format!("cannot set timeouts on connection to {addr}: {e}"))?;
    Ok(conn)
}

/// Parses `INFO` output into field -> value.
pub(crate) fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// "7.0.15" -> (7, 0, 15).
pub(crate) fn parse_version(text: &str) -> Option<(u32, u32, u32)> {
    let mut parts = text.trim().split('.').map(|p| p.parse::<u32>().ok());
    Some((
        parts.next()??,
        parts.next()?.unwrap_or(0),
        parts.next().flatten().unwrap_or(0),
    ))
}

/// The version `redis-server --version` reports ("Redis server v=7.0.15 ..."), cached per path.
fn binary_version(bin: &Path) -> (u32, u32, u32) {
    type Version = (u32, u32, u32);
    static CACHE: OnceLock<Mutex<HashMap<PathBuf, Version>>> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Some(v) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(bin) {
        return *v;
    }
    let out = Command::new(bin)
        .arg("--version")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} --version: {e}", bin.display()));
    let text = String::from_utf8_lossy(&out.stdout);
    let version = text
        .split_whitespace()
        .find_map(|word| word.strip_prefix("v="))
        .and_then(parse_version)
        .unwrap_or_else(|| panic!("cannot read the version of {}: {text:?}", bin.display()));
    cache
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(bin.to_path_buf(), version);
    version
}

/// A loopback port that was free a moment ago and that this process has not handed out before.
pub(crate) fn free_port() -> u16 {
    loop {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .unwrap_or_else(|e| panic!("cannot bind a loopback port: {e}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("cannot read a bound port: {e}"))
            .port();
        if claim(port) {
            return port;
        }
    }
}

/// A port `p` as [`free_port`] gives, such that `p + 10000` (the cluster bus port of a
/// server older than 7.0, which cannot be set apart) was free a moment ago too.
pub(crate) fn free_port_with_bus() -> u16 {
    loop {
        let port = free_port();
        let Some(bus) = port.checked_add(10_000) else {
            continue;
        };
        if TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, bus))).is_ok() && claim(bus) {
            return port;
        }
    }
}

/// Records `port` as handed out; false when it was already.
fn claim(port: u16) -> bool {
    static GIVEN: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    let given = GIVEN.get_or_init(Default::default);
    given.lock().unwrap_or_else(|e| e.into_inner()).insert(port)
}

/// Whether something on the loopback port answers an inline `PING` (a `NOAUTH` error counts:
/// the server is up, it just wants a password).
fn ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"PING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    if BufReader::new(stream).read_line(&mut line).is_err() {
        return false;
    }
    line.starts_with("+PONG") || line.starts_with("-NOAUTH")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse() {
        assert_eq!(parse_version("7.0.15"), Some((7, 0, 15)));
        assert_eq!(parse_version("255.255.255"), Some((255, 255, 255)));
        assert_eq!(parse_version("6.2"), Some((6, 2, 0)));
        assert_eq!(parse_version("x"), None);
    }

    #[test]
    fn info_parses() {
        let map = parse_info("# Server\r\nredis_version:7.0.15\r\n\r\ndb0:keys=1,expires=0\r\n");
        assert_eq!(map["redis_version"], "7.0.15");
        assert_eq!(map["db0"], "keys=1,expires=0");
    }

    #[test]
    fn wait_until_reports_timeout_and_success() {
        assert!(!wait_until(Duration::from_millis(50), || false));
        let mut n = 0;
        assert!(wait_until(Duration::from_secs(5), || {
            n += 1;
            n == 3
        }));
    }
}
