//! What ferry tells the user, run as the real binary: `check --help` lists only what check
//! reads, every default is shown one way, `--source` names every URL form, a db number in a
//! URL says how to map dbs, `verify` without `--out` prints the first differing keys, a port
//! that answers something other than Redis is named as such, and a binary key is printed the
//! same way by `ferry rdb` and `ferry verify`.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Command, Output, Stdio};

use testkit::Server;

fn ferry(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(args)
        .env("FERRY_LOG", "warn")
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn help(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--help");
    let out = ferry(&all);
    assert!(out.status.success(), "{all:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// The one `ferry: ` line of a run that must fail with this exit code.
fn error_line(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("ferry: "))
        .collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    lines[0].to_string()
}

/// Flags that only matter while a sync runs.
const RUN_ONLY: &[&str] = &[
    "--status-addr",
    "--big-value-elements",
    "--big-value-bytes",
    "--data-dir",
    "--spool-size-mb",
    "--transform",
    "--ignore-warnings",
    "--full-keys-per-sec",
    "--full-mb-per-sec",
    "--incremental-ops-per-sec",
    "--incremental-mb-per-sec",
];

/// Flags the precheck reads.
const CHECKED: &[&str] = &[
    "--source ",
    "--target ",
    "--config",
    "--full-only",
    "--name",
    "--full-resync",
    "--on-conflict",
    "--yes-flush-target",
    "--no-heartbeat",
    "--source-password-file",
    "--target-tls-ca",
    "--allow-db",
    "--db-map",
];

#[test]
fn check_help_lists_only_what_check_reads() {
    let check = help(&["check"]);
    let sync = help(&["sync"]);
    for flag in RUN_ONLY {
        assert!(!check.contains(flag), "check --help lists {flag}:\n{check}");
        assert!(sync.contains(flag), "sync --help lacks {flag}:\n{sync}");
    }
    for flag in CHECKED {
        assert!(check.contains(flag), "check --help lacks {flag}:\n{check}");
        assert!(sync.contains(flag), "sync --help lacks {flag}:\n{sync}");
    }
    assert!(check.contains("--json"), "{check}");
    assert!(!check.contains("While the sync runs"), "{check}");
    // Not listed, so not taken either.
    let out = ferry(&["check", "--status-addr", "127.0.0.1:1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

#[test]
fn defaults_are_shown_one_way() {
    let commands: &[&[&str]] = &[
        &[],
        &["sync"],
        &["check"],
        &["verify"],
        &["rdb", "inspect"],
        &["rdb", "stats"],
        &["serve"],
        &["cutover"],
        &["task"],
        &["cleanup"],
        &["config", "convert"],
        &["completions"],
        &["man"],
    ];
    for args in commands {
        let text = help(args);
        let lower = text.to_lowercase();
        for (at, _) in lower.match_indices("default") {
            assert!(
                lower[..at].ends_with('[') && lower[at..].starts_with("default: "),
                "{args:?}: a default not shown as [default: X] at {:?}:\n{text}",
                &text[at.saturating_sub(60)..(at + 30).min(text.len())]
            );
        }
    }
    // The ones sync resolves itself are shown as clap shows its own.
    let sync = help(&["sync"]);
    for shown in [
        "[default: ./ferry-data]",
        "[default: 1024]",
        "[default: stop]",
        "[default: fail]",
    ] {
        assert!(sync.contains(shown), "{shown}:\n{sync}");
    }
    assert!(help(&["verify"]).contains("[default: 1000]"));
}

#[test]
fn source_help_names_every_url_form() {
    for command in ["sync", "check"] {
        let text = help(&[command]);
        let source = &text[text.find("--source <").unwrap()..text.find("--target <").unwrap()];
        for form in [
            "redis://",
            "rediss://",
            "redis+sentinel://",
            "rediss+sentinel://",
            "RDB file",
            "--allow-db",
            "--db-map",
        ] {
            assert!(
                source.contains(form),
                "{command} --source lacks {form}:\n{source}"
            );
        }
        let target = &text[text.find("--target <").unwrap()..];
        assert!(target.contains("same URL forms"), "{target}");
    }
}

#[test]
fn a_db_number_in_a_url_says_how_to_map_dbs() {
    let closed = format!("redis://127.0.0.1:{}", common::free_port());
    let line = error_line(
        &ferry(&[
            "check",
            "--source",
            &format!("{closed}/3"),
            "--target",
            &closed,
        ]),
        1,
    );
    assert!(line.contains("source URL"), "{line}");
    assert!(line.contains("--allow-db 3"), "{line}");
    assert!(line.contains("--db-map 3=N"), "{line}");
    let line = error_line(
        &ferry(&[
            "sync",
            "--source",
            &closed,
            "--target",
            &format!("{closed}/5"),
        ]),
        1,
    );
    assert!(line.contains("target URL"), "{line}");
    assert!(line.contains("--db-map 0=5"), "{line}");
    // The file's settings are named as well as the flags.
    assert!(line.contains("[filter] db_map"), "{line}");
}

fn set(server: &Server, db: i64, key: &[u8]) {
    let mut conn = server.conn_db(db);
    redis::cmd("SET")
        .arg(key)
        .arg("v")
        .query::<()>(&mut conn)
        .unwrap();
}

#[test]
fn verify_without_out_prints_the_first_differing_keys() {
    let source = Server::start();
    let target = Server::start();
    for i in 0..12 {
        set(&source, 0, format!("missing:{i:02}").as_bytes());
    }
    set(&target, 2, b"extra:one");
    set(&source, 0, b"same");
    set(&target, 0, b"same");
    let out = ferry(&[
        "verify",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{out:?}");
    let keys: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("first differing keys:"))
        .skip(1)
        .collect();
    assert_eq!(
        keys.len(),
        11,
        "ten keys and the count of the rest:\n{stdout}"
    );
    for line in &keys[..10] {
        let line = line.trim();
        let missing = line.starts_with("missing  db 0 \"missing:");
        let extra = line == "extra    db 2 \"extra:one\"";
        assert!(missing || extra, "{line}\n{stdout}");
    }
    assert!(keys[10].contains("3 more"), "{stdout}");
    assert!(keys[10].contains("--out"), "{stdout}");
    assert!(!stdout.contains("\"same\""), "{stdout}");

    // With --out the keys go to the file, not the terminal.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("d.jsonl");
    let out = ferry(&[
        "verify",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--out",
        file.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(!stdout.contains("first differing keys"), "{stdout}");
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.lines().count(), 13, "{lines}");
}

/// A TCP server on a free loopback port that answers every connection with `reply` and closes
/// it, as a web server would answer a Redis command.
fn not_redis(reply: &'static [u8]) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 256];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(reply);
        }
    });
    port
}

#[test]
fn a_port_that_is_not_redis_is_named() {
    let target = Server::start();
    let http = not_redis(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
    let garbage = not_redis(b"\x00\x01hello from something else\n");
    for (port, shown) in [
        (http, "\"HTTP/1.1 400 Bad Request\""),
        (garbage, "\"\\x00\\x01hello from something else\""),
    ] {
        let url = format!("redis://127.0.0.1:{port}");
        let line = error_line(
            &ferry(&["verify", "--source", &url, "--target", &target.url()]),
            2,
        );
        assert!(line.contains("is this a Redis port?"), "{line}");
        assert!(line.contains(&format!("127.0.0.1:{port}")), "{line}");
        assert!(line.contains(shown), "{line}");
        // The same for a target, and from sync, which stops at once.
        let line = common::refused(&["--source", &target.url(), "--target", &url]);
        assert!(line.contains("is this a Redis port?"), "{line}");
    }
}

#[test]
fn a_binary_key_is_printed_the_same_by_rdb_and_verify() {
    let source = Server::start();
    let target = Server::start();
    let key: &[u8] = b"k\xff\x00\"q\\\n";
    let escaped = r#""k\xff\x00\"q\\\n""#;
    set(&source, 0, key);
    redis::cmd("SAVE").query::<()>(&mut source.conn()).unwrap();
    let file = source.dir().join("dump.rdb");
    let out = ferry(&["rdb", "stats", file.to_str().unwrap()]);
    let stats = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stats.contains(escaped), "{escaped} not in:\n{stats}");
    let out = ferry(&[
        "verify",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
    ]);
    let verify = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{verify}");
    assert!(
        verify.contains(&format!("missing  db 0 {escaped}")),
        "{escaped} not in:\n{verify}"
    );
}
