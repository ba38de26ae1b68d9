//! Running the real `ferry` binary against testkit's servers.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub struct Ferry {
    child: Child,
    log: PathBuf,
    _dir: tempfile::TempDir,
    pub status_addr: Option<String>,
}

impl Ferry {
    /// Starts `ferry sync` with these arguments; stderr goes to a file read by `log()`.
    pub fn start(args: &[&str]) -> Ferry {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("ferry.log");
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .arg("sync")
            .args(args)
            .env(
                "FERRY_LOG",
                std::env::var("FERRY_TEST_LOG").unwrap_or("info".into()),
            )
            // Its data directory (the spool) goes in the test's own temp dir.
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        Ferry {
            child,
            log,
            _dir: dir,
            status_addr: None,
        }
    }

    /// Starts `ferry sync` with a status API on a free port.
    pub fn start_with_status(args: &[&str]) -> Ferry {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut all = vec!["--status-addr", addr.as_str()];
        all.extend_from_slice(args);
        let mut ferry = Ferry::start(&all);
        ferry.status_addr = Some(addr);
        ferry
    }

    /// The process id of this ferry.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its exit status if it has exited, without waiting.
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "ferry did not exit within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL, as a crash would: no chance to finish anything.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM, then wait.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.wait(timeout)
    }

    /// `GET /status` as JSON.
    pub fn status(&self) -> Option<serde_json::Value> {
        let addr = self.status_addr.as_ref()?;
        let mut s = TcpStream::connect(addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        s.write_all(format!("GET /status HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
            .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let body = text.split("\r\n\r\n").nth(1)?;
        serde_json::from_str(body).ok()
    }

    /// Polls the status until `cond` holds; panics with the log when it does not in time.
    pub fn wait_status(
        &mut self,
        timeout: Duration,
        what: &str,
        mut cond: impl FnMut(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            if let Some(st) = self.status() {
                if cond(&st) {
                    return st;
                }
                last = Some(st);
            }
            if let Some(code) = self.child.try_wait().unwrap() {
                panic!(
                    "ferry exited ({code}) while waiting for {what}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out waiting for {what}; last status {last:?}; log:\n{}",
            self.log()
        );
    }
}

impl Drop for Ferry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends `sig` (e.g. "-STOP", "-CONT") to process `pid`: a server that stalls, as a network
/// cut or an overloaded host would make it.
pub fn signal(pid: u32, sig: &str) {
    let sent = Command::new("kill")
        .args([sig, &pid.to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill {sig} {pid}");
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The source's replication offset, from INFO.
pub fn master_offset(server: &testkit::Server) -> u64 {
    server.info("replication")["master_repl_offset"]
        .parse()
        .unwrap()
}

/// Waits until ferry has applied everything the source has produced (lag 0 at the source's
/// current offset).
pub fn wait_caught_up(ferry: &mut Ferry, source: &testkit::Server, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        let want = master_offset(source);
        let st = ferry.wait_status(
            deadline.saturating_duration_since(Instant::now()),
            "the stream to be applied",
            |s| s["applied_offset"].as_u64().unwrap_or(0) >= want && s["phase"] == "incremental",
        );
        // Nothing new arrived meanwhile: caught up.
        if master_offset(source) <= st["applied_offset"].as_u64().unwrap_or(0) {
            return;
        }
    }
}

/// Writes a config file for `source` → `target` with extra `[sync]` lines; returns its path.
pub fn config_file(dir: &std::path::Path, source: &str, target: &str, sync: &str) -> String {
    let path = dir.join(format!("ferry-{}.toml", free_port()));
    std::fs::write(
        &path,
        format!("[source]\nurl = \"{source}\"\n[target]\nurl = \"{target}\"\n[sync]\n{sync}\n"),
    )
    .unwrap();
    path.to_str().unwrap().to_string()
}

/// How often the source's log says it served a full resync and a partial one.
pub fn resyncs(source: &testkit::Server) -> (usize, usize) {
    let log = source.log_tail(100_000);
    (
        log.matches("Full resync requested by replica").count(),
        log.matches("Partial resynchronization request from")
            .count(),
    )
}

/// A fixture file from `../shared/fixtures/rdb` (never copied into the project).
pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/rdb"
    ))
    .join(name)
}

/// Fixtures that redis-server 7.0 loads (no modules, no encodings newer than RDB 10).
pub const LOADABLE_FIXTURES: &[&str] = &[
    "redis/encodings.rdb",
    "redis/hash-ziplist.rdb",
    "redis/hash-zipmap.rdb",
    "redis/list-quicklist.rdb",
    "redis/zset-ziplist.rdb",
    "redis-rdb-tools/dictionary.rdb",
    "redis-rdb-tools/easily_compressible_string_key.rdb",
    "redis-rdb-tools/integer_keys.rdb",
    "redis-rdb-tools/intset_16.rdb",
    "redis-rdb-tools/intset_64.rdb",
    "redis-rdb-tools/linkedlist.rdb",
    "redis-rdb-tools/multiple_databases.rdb",
    "redis-rdb-tools/non_ascii_values.rdb",
    "redis-rdb-tools/parser_filters.rdb",
    "redis-rdb-tools/rdb_version_5_with_checksum.rdb",
    "redis-rdb-tools/rdb_version_8_with_64b_length_and_scores.rdb",
    "redis-rdb-tools/redis_50_with_streams.rdb",
    "redis-rdb-tools/regular_sorted_set.rdb",
    "redis-rdb-tools/uncompressible_string_keys.rdb",
    "redis-rdb-tools/ziplist_with_integers.rdb",
    "redis-rdb-tools/zipmap_with_big_values.rdb",
    "redis-replicator/dumpV7.rdb",
    "redis-replicator/dumpV9.rdb",
    "redis-replicator/dumpV10.rdb",
    "redis-replicator/dump-stream.rdb",
    "redis-replicator/function2.rdb",
];

/// A redis-server that loaded `file` at start-up, with the temp dir holding its copy.
pub fn server_loading(file: &std::path::Path) -> (testkit::Server, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(file, dir.path().join("dump.rdb")).unwrap();
    let server = testkit::Server::start_with(&[
        "--dir",
        dir.path().to_str().unwrap(),
        "--dbfilename",
        "dump.rdb",
    ]);
    (server, dir)
}

impl Ferry {
    /// Waits for a run that must fail and returns its one `ferry: ` line (the error).
    pub fn refusal(mut self) -> String {
        let code = self.wait(Duration::from_secs(60));
        let log = self.log();
        assert_eq!(
            code.code(),
            Some(1),
            "ferry should have refused; log:\n{log}"
        );
        let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("ferry: ")).collect();
        assert_eq!(lines.len(), 1, "{log}");
        lines[0].to_string()
    }
}

/// The one `ferry: ` line of a `ferry sync` with these arguments that must fail.
pub fn refused(args: &[&str]) -> String {
    Ferry::start(args).refusal()
}

/// The `ferry: ` line of a log, or "" when there is none.
pub fn ferry_line(log: &str) -> &str {
    log.lines().find(|l| l.starts_with("ferry: ")).unwrap_or("")
}

/// Runs `ferry check --json` with these arguments: its exit code and its findings, each with
/// the four fields checked.
pub fn check_json(args: &[&str]) -> (i32, Vec<serde_json::Value>) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("check")
        .arg("--json")
        .args(args)
        .env("FERRY_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    let findings: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON array ({e}): {stdout}\nstderr: {stderr}"));
    let findings = findings.as_array().unwrap().clone();
    for f in &findings {
        for field in ["item", "result", "found", "fix"] {
            assert!(f[field].is_string(), "{field} missing in {f}");
        }
    }
    (out.status.code().unwrap(), findings)
}

/// `ferry check --json`: its exit code and the findings of one item.
pub fn check_item(args: &[&str], item: &str) -> (i32, Vec<serde_json::Value>) {
    let (code, findings) = check_json(args);
    (
        code,
        findings.into_iter().filter(|f| f["item"] == item).collect(),
    )
}

/// `INCR key`, `times` times.
pub fn incr(conn: &mut redis::Connection, key: &str, times: u64) {
    for _ in 0..times {
        let _: i64 = redis::cmd("INCR").arg(key).query(conn).unwrap();
    }
}

/// A counter's value (`None`: no such key).
pub fn get(conn: &mut redis::Connection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query(conn).unwrap()
}

/// Waits (up to two minutes) for the target to equal the source key by key.
pub fn equal(source: &testkit::compare::Side, target: &testkit::compare::Side) {
    let opts = testkit::compare::Options::default();
    if let Err(report) =
        testkit::compare::eventually_equal_sides(source, target, &opts, Duration::from_secs(120))
    {
        panic!("target differs from source: {report:?}");
    }
}

/// ferry's own keys (`__ferry:*`) on a server, in every db it has.
pub fn own_keys(server: &testkit::Server) -> Vec<String> {
    let mut conn = server.conn();
    let mut keys = Vec::new();
    for db in 0..16 {
        // A cluster node has db 0 only.
        if db > 0 && redis::cmd("SELECT").arg(db).query::<()>(&mut conn).is_err() {
            break;
        }
        let found: Vec<String> = redis::cmd("KEYS")
            .arg("__ferry:*")
            .query(&mut conn)
            .unwrap();
        keys.extend(found);
    }
    keys
}
