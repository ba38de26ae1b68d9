//! What a person sees: `ferry sync` under a pseudo-terminal shows the wait for a diskless
//! source, a copy bar of keys applied out of the source's key count with an ETA, then a line
//! with the lag in seconds; a resumed run shows no copy bar. Without a terminal the logs
//! carry no colour codes, and `--log-format json` gives JSON lines. Completions and man pages
//! are generated for every subcommand.

mod common;

use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};

/// `ferry` run on the slave side of a pseudo-terminal (as stdout and stderr), its screen
/// output collected from the master side.
struct OnTerminal {
    child: Child,
    screen: Arc<Mutex<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

impl OnTerminal {
    fn start(args: &[&str], dir: tempfile::TempDir) -> OnTerminal {
        let (mut master, mut slave) = (0, 0);
        // Wide enough that the bar's figures are never cut.
        let size = libc::winsize {
            ws_row: 50,
            ws_col: 250,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        // SAFETY: openpty writes two descriptors into the given ints and reads `size`; the
        // name and termios pointers may be null.
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                &size,
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: both descriptors were just opened by openpty and are owned here alone.
        let (master, slave) =
            unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(args)
            .env("TERM", "xterm")
            .env("FERRY_LOG", "info")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(slave.try_clone().unwrap())
            .stderr(slave)
            .spawn()
            .unwrap();
        // The child holds the only slave descriptors now: reading ends when it exits.
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut master = std::fs::File::from(master);
            let mut buf = [0u8; 8192];
            while let Ok(n) = master.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        OnTerminal {
            child,
            screen,
            _dir: dir,
        }
    }

    /// What was drawn so far, without terminal control sequences.
    fn text(&self) -> String {
        plain(&String::from_utf8_lossy(&self.screen.lock().unwrap()))
    }

    fn wait_for(&mut self, what: &str, timeout: Duration, cond: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.text();
            if cond(&text) {
                return text;
            }
            if let Some(code) = self.child.try_wait().unwrap() {
                panic!("ferry exited ({code}) before {what}; screen:\n{text}");
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{text}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM, as Ctrl-C would; ferry finishes the writes in flight and exits 0.
    fn stop(&mut self) -> String {
        common::signal(self.child.id(), "-TERM");
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.child.try_wait().unwrap().is_none() {
            assert!(
                Instant::now() < deadline,
                "ferry did not stop; screen:\n{}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let code = self.child.wait().unwrap();
        assert!(
            code.success(),
            "ferry exited {code}; screen:\n{}",
            self.text()
        );
        self.text()
    }
}

impl Drop for OnTerminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `text` without ANSI escape sequences (CSI `ESC [ ... final byte`, and two-byte ones).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\x1b' {
            out.push(c);
            continue;
        }
        if chars.next_if_eq(&'[').is_some() {
            // Parameters and intermediates, then one final byte in @..~.
            for c in chars.by_ref() {
                if ('@'..='~').contains(&c) {
                    break;
                }
            }
        } else {
            chars.next();
        }
    }
    out
}

/// Every `N/M keys` on the screen, as (N, M).
fn key_counts(text: &str) -> Vec<(u64, u64)> {
    let mut found = Vec::new();
    for (at, _) in text.match_indices(" keys") {
        let before = &text[..at];
        let start = before
            .rfind(|c: char| !(c.is_ascii_digit() || c == '/'))
            .map_or(0, |i| i + 1);
        if let Some((n, m)) = before[start..].split_once('/')
            && let (Ok(n), Ok(m)) = (n.parse(), m.parse())
        {
            found.push((n, m));
        }
    }
    found
}

/// Writes `n` string keys into `db` of `server`.
fn fill(server: &Server, db: i64, n: usize) {
    let mut conn = server.conn_db(db);
    for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
        let mut pipe = redis::pipe();
        for i in chunk {
            pipe.cmd("SET")
                .arg(format!("key:{db}:{i}"))
                .arg(format!("value {i}"))
                .ignore();
        }
        pipe.query::<()>(&mut conn).unwrap();
    }
}

/// The keys `INFO keyspace` counts, over every db.
fn source_keys(server: &Server) -> u64 {
    server
        .info("keyspace")
        .values()
        .filter_map(|v| {
            v.split(',')
                .find_map(|p| p.strip_prefix("keys="))?
                .parse::<u64>()
                .ok()
        })
        .sum()
}

#[test]
fn terminal_shows_the_diskless_wait_a_bar_of_keys_then_the_lag_and_no_bar_on_resume() {
    let source = Server::start_with(&[
        "--repl-diskless-sync",
        "yes",
        "--repl-diskless-sync-delay",
        "2",
    ]);
    let target = Server::start();
    fill(&source, 0, 15_000);
    fill(&source, 3, 5_000);
    let total = source_keys(&source);
    assert_eq!(total, 20_000);
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap().to_string();
    let (source_url, target_url) = (source.url(), target.url());
    let status_addr = format!("127.0.0.1:{}", common::free_port());
    let args = [
        "sync",
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--data-dir",
        &data_dir,
        "--status-addr",
        &status_addr,
        // A limit, so the copy lasts long enough to be drawn many times.
        "--full-keys-per-sec",
        "4000",
    ];

    let mut ferry = OnTerminal::start(&args, tempfile::tempdir().unwrap());
    ferry.wait_for("the copy bar", Duration::from_secs(60), |t| {
        key_counts(t).iter().any(|&(n, m)| n > 0 && n < m)
    });
    let screen = ferry.wait_for("the lag line", Duration::from_secs(120), |t| {
        t.lines()
            .any(|l| l.contains("incremental:") && lag_seconds(l).is_some())
    });
    // Some writes after the copy, applied through the stream.
    fill(&source, 0, 100);
    caught_up(&status_addr, &source);
    let end = ferry.stop();

    assert!(
        screen.contains("waiting for the source's diskless delay (repl-diskless-sync-delay 2 s)"),
        "no word of the diskless delay; screen:\n{screen}"
    );
    let counts = key_counts(&screen);
    assert!(!counts.is_empty(), "no N/M keys; screen:\n{screen}");
    for &(n, m) in &counts {
        assert_eq!(
            m, total,
            "the bar's length is not the source's key count: {n}/{m}"
        );
        assert!(n <= m, "{n}/{m}");
    }
    // An estimate from the apply rate: a number of seconds (or minutes), not only "?".
    assert!(
        screen
            .match_indices("ETA ")
            .any(|(at, _)| screen[at + 4..].starts_with(|c: char| c.is_ascii_digit())),
        "no ETA; screen:\n{screen}"
    );
    assert!(
        screen.contains(&format!("copied: {total} keys")),
        "the bar did not end at {total} keys; screen:\n{screen}"
    );
    assert!(end.contains("incremental:"), "{end}");
    compare::eventually_equal(
        &source,
        &target,
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));

    // Again, from the checkpoint: the stream continues, no copy and so no bar.
    fill(&source, 0, 50);
    let mut again = OnTerminal::start(&args, tempfile::tempdir().unwrap());
    caught_up(&status_addr, &source);
    let screen = again.wait_for("the lag line", Duration::from_secs(60), |t| {
        t.lines()
            .any(|l| l.contains("incremental:") && lag_seconds(l).is_some())
    });
    let screen = screen + &again.stop();
    assert!(
        !screen.contains("full copy [") && key_counts(&screen).is_empty(),
        "a resumed run drew a copy bar; screen:\n{screen}"
    );
    assert!(
        !screen.contains("diskless delay"),
        "a resumed run waited for a snapshot; screen:\n{screen}"
    );
    compare::eventually_equal(
        &source,
        &target,
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
}

/// Waits until the ferry serving `GET /status` on `addr` has applied all the source has
/// written (its replication offset now).
fn caught_up(addr: &str, source: &Server) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want = common::master_offset(source);
        let applied = status(addr)
            .filter(|s| s["phase"] == "incremental")
            .and_then(|s| s["applied_offset"].as_u64());
        if applied.is_some_and(|a| a >= want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up at {want}: {applied:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /status` of a ferry sync, as JSON.
fn status(addr: &str) -> Option<serde_json::Value> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /status HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split("\r\n\r\n").nth(1)?).ok()
}

/// The seconds of `lag 0.4 s` or `lag ~0.4 s` in a status line.
fn lag_seconds(line: &str) -> Option<f64> {
    let rest = &line[line.find("lag ")? + 4..];
    let number = rest.trim_start_matches('~').split(" s").next()?;
    number.parse().ok()
}

#[test]
fn logs_into_a_file_carry_no_colour_codes_and_json_when_asked() {
    let source = Server::start();
    let target = Server::start();
    fill(&source, 0, 500);
    for json in [false, true] {
        let (source_url, target_url) = (source.url(), target.url());
        let name = if json { "json" } else { "text" };
        let mut args = vec![
            "--source",
            &source_url,
            "--target",
            &target_url,
            "--name",
            name,
            "--on-conflict",
            "overwrite",
        ];
        if json {
            args.extend(["--log-format", "json"]);
        }
        let mut ferry = Ferry::start_with_status(&args);
        wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
        let code = ferry.terminate(Duration::from_secs(60));
        assert!(code.success(), "{code}; log:\n{}", ferry.log());
        let log = ferry.log();
        assert!(log.contains("full sync"), "{log}");
        assert!(
            !log.contains('\x1b'),
            "colour codes in a log file:\n{log:?}"
        );
        if json {
            for line in log.lines() {
                let v: serde_json::Value = serde_json::from_str(line)
                    .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
                assert!(v["level"].is_string(), "{line}");
            }
        }
    }
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
}

/// The subcommands `ferry --help` lists.
fn subcommands() -> Vec<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8(out.stdout).unwrap();
    let names: Vec<String> = help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(String::from)
        .collect();
    for expected in [
        "sync",
        "verify",
        "check",
        "serve",
        "task",
        "completions",
        "man",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not in:\n{help}"
        );
    }
    names
}

fn ferry(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ferry {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn completions_and_man_pages_cover_every_subcommand() {
    let names = subcommands();
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        let script = ferry(&["completions", shell]);
        assert!(script.len() > 1000, "{shell}: a short script:\n{script}");
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell}: no {name}");
        }
        // Options of subcommands too, not only their names.
        assert!(
            script.contains("full-keys-per-sec"),
            "{shell}: no sync flags"
        );
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["completions", "tcsh"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("tcsh") && err.contains("bash"), "{err}");

    let page = ferry(&["man"]);
    assert!(
        page.starts_with(".ie") || page.contains(".TH ferry"),
        "{page}"
    );
    for name in &names {
        assert!(page.contains(name.as_str()), "man page: no {name}");
    }

    let dir = tempfile::tempdir().unwrap();
    let pages = dir.path().join("man1");
    ferry(&["man", "--dir", pages.to_str().unwrap()]);
    let top = std::fs::read_to_string(pages.join("ferry.1")).unwrap();
    assert!(top.contains(".TH ferry"), "{top}");
    for name in &names {
        let page = std::fs::read_to_string(pages.join(format!("ferry-{name}.1")))
            .unwrap_or_else(|e| panic!("ferry-{name}.1: {e}"));
        assert!(page.contains(".SH"), "ferry-{name}.1:\n{page}");
    }
    let sync = std::fs::read_to_string(pages.join("ferry-sync.1")).unwrap();
    assert!(sync.contains("full\\-keys\\-per\\-sec"), "{sync}");
}

/// A cluster source: each shard counts its own keys (its master's `INFO keyspace`), and the
/// task's count, the bar's length, is their sum.
#[test]
fn a_cluster_source_is_counted_per_shard() {
    let source = testkit::Cluster::start_with(3, 0, &["--repl-diskless-sync-delay", "0"]);
    let target = Server::start();
    for i in 0..3000 {
        let key = format!("key:{i}");
        redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .exec(&mut source.conn_for(key.as_bytes()))
            .unwrap();
    }
    let mut per_master: Vec<u64> = source.masters().into_iter().map(source_keys).collect();
    per_master.sort();
    assert_eq!(per_master.iter().sum::<u64>(), 3000);
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    let st = ferry.wait_status(Duration::from_secs(120), "the copy to end", |s| {
        s["phase"] == "incremental"
    });
    assert_eq!(st["source_keys"], 3000, "{st}");
    assert_eq!(st["keys_written"], 3000, "{st}");
    let mut per_shard: Vec<u64> = st["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["source_keys"].as_u64().unwrap_or_else(|| panic!("{s}")))
        .collect();
    per_shard.sort();
    assert_eq!(per_shard, per_master, "{st}");
    compare::eventually_equal_sides(
        &compare::Side::cluster(&source.addrs(), None),
        &compare::Side::standalone(&target.addr(), None),
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}"));
}
