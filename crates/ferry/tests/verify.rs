//! `ferry verify` between real redis-servers: every kind of difference found and described,
//! none on data a real sync made equal (also while it runs under writes), exit codes,
//! `--repair`, filters, non-UTF-8 keys, and a big hash compared page by page.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Ferry, wait_caught_up};
use serde_json::{Value, json};
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

/// The outcome of one `ferry verify` run.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
    /// The `--out` lines.
    lines: Vec<Value>,
}

fn verify(source: &str, target: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("diff.jsonl");
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", "--source", source, "--target", target])
        .args(["--out", out.to_str().unwrap()])
        .args(extra)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let text = std::fs::read_to_string(&out).unwrap_or_default();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        lines: text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect(),
    }
}

impl Run {
    fn show(&self) -> String {
        format!(
            "exit {}\nstdout:\n{}\nstderr:\n{}\nlines:\n{}",
            self.code,
            self.stdout,
            self.stderr,
            self.lines
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        )
    }

    /// The line about `key` in `db` of `kind`; panics when there is not exactly one.
    fn line(&self, db: u64, key: &Value, kind: &str) -> &Value {
        let found: Vec<&Value> = self
            .lines
            .iter()
            .filter(|l| l["db"] == db && &l["key"] == key && l["kind"] == kind)
            .collect();
        assert_eq!(found.len(), 1, "{kind} {key} in db {db}:\n{}", self.show());
        found[0]
    }
}

fn run(server: &Server, db: i64, args: &[&str]) {
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query::<redis::Value>(&mut server.conn_db(db))
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
}

/// A full copy by the real `ferry sync`.
fn sync_once(source: &Server, target: &Server, extra: &[&str]) {
    let (source_url, target_url) = (source.url(), target.url());
    let mut args = vec![
        "--source",
        &source_url,
        "--target",
        &target_url,
        "--full-only",
    ];
    args.extend_from_slice(extra);
    let mut ferry = Ferry::start(&args);
    let code = ferry.wait(Duration::from_secs(120));
    assert!(code.success(), "ferry sync failed: {code}\n{}", ferry.log());
}

fn small_spec(seed: u64) -> Spec {
    Spec {
        seed,
        dbs: vec![0, 1],
        keys_per_db: 300,
        big_elements: 300,
        ..Spec::default()
    }
}

#[test]
fn every_kind_of_difference_is_found_and_repair_makes_them_equal() {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &small_spec(3));
    run(&source, 0, &["SET", "v:str", "hello world"]);
    run(&source, 0, &["SET", "v:missing", "x"]);
    run(&source, 0, &["SET", "v:type", "x"]);
    run(
        &source,
        0,
        &["HSET", "v:hash", "f1", "a", "f2", "b", "f3", "c"],
    );
    run(&source, 0, &["RPUSH", "v:list", "a", "b", "c", "d"]);
    run(&source, 0, &["ZADD", "v:zset", "1", "m1", "2", "m2"]);
    run(&source, 0, &["SET", "v:ttl", "x", "EX", "100000"]);
    run(&source, 0, &["SET", "v:wrongdb", "x"]);
    sync_once(&source, &target, &[]);

    // Equal data made equal by a real sync: nothing.
    let equal = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(equal.code, 0, "{}", equal.show());
    assert!(equal.lines.is_empty(), "{}", equal.show());
    assert!(
        equal
            .stdout
            .contains("missing 0, extra 0, type 0, value 0, ttl 0"),
        "{}",
        equal.show()
    );

    run(&target, 0, &["DEL", "v:missing"]);
    run(&target, 0, &["SET", "v:extra", "x"]);
    run(&target, 0, &["DEL", "v:type"]);
    run(&target, 0, &["RPUSH", "v:type", "x"]);
    run(&target, 0, &["SET", "v:str", "hello wOrld"]);
    run(&target, 0, &["HSET", "v:hash", "f2", "B"]);
    run(&target, 0, &["LSET", "v:list", "2", "C"]);
    run(&target, 0, &["ZADD", "v:zset", "5", "m2"]);
    run(&target, 0, &["EXPIRE", "v:ttl", "50000"]);
    run(&target, 0, &["MOVE", "v:wrongdb", "1"]);

    let found = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "2", "--interval-ms", "50"],
    );
    assert_eq!(found.code, 1, "{}", found.show());
    let key = |k: &str| json!(k);
    let d = |db, k: &str, kind| found.line(db, &key(k), kind)["detail"].clone();
    assert_eq!(d(0, "v:missing", "missing")["target_key"], "v:missing");
    assert_eq!(d(0, "v:extra", "extra")["target_db"], 0);
    assert_eq!(
        d(0, "v:type", "type"),
        json!({"source": "string", "target": "list"})
    );
    assert_eq!(d(0, "v:str", "value")["offset"], 7);
    assert_eq!(
        d(0, "v:hash", "value"),
        json!({"field": "f2", "source": "b", "target": "B"})
    );
    let list = d(0, "v:list", "value");
    assert_eq!(
        (&list["index"], &list["source"], &list["target"]),
        (&json!(2), &json!("c"), &json!("C"))
    );
    let zset = d(0, "v:zset", "value");
    assert_eq!(zset["member"], "m2");
    assert_eq!(
        (&zset["source_score"], &zset["target_score"]),
        (&json!("2"), &json!("5"))
    );
    let ttl = d(0, "v:ttl", "ttl");
    let (s, t) = (
        ttl["source_ttl_ms"].as_i64().unwrap(),
        ttl["target_ttl_ms"].as_i64().unwrap(),
    );
    assert!(
        s > 90_000_000 && s <= 100_000_000 && t > 40_000_000 && t <= 50_000_000,
        "{ttl}"
    );
    // In the wrong db: missing where it belongs, extra where it is.
    assert_eq!(d(0, "v:wrongdb", "missing")["target_db"], 0);
    assert_eq!(d(1, "v:wrongdb", "extra")["target_db"], 1);
    assert_eq!(found.lines.len(), 10, "{}", found.show());
    assert!(
        found
            .stdout
            .contains("missing 2, extra 2, type 1, value 4, ttl 1"),
        "{}",
        found.show()
    );

    let repaired = verify(&source.url(), &target.url(), &["--rounds", "1", "--repair"]);
    assert_eq!(repaired.code, 0, "{}", repaired.show());
    assert!(
        repaired.stdout.contains("10 repaired"),
        "{}",
        repaired.show()
    );
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    let again = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(again.code, 0, "{}", again.show());
}

/// A server that refuses DEBUG is compared by reading values: the same findings.
#[test]
fn values_are_read_when_debug_is_refused() {
    let source = Server::start();
    let target = Server::start_with(&["--enable-debug-command", "no"]);
    run(&source, 0, &["HSET", "h", "a", "1", "b", "2"]);
    run(&source, 0, &["SADD", "s", "x", "y"]);
    run(&source, 0, &["XADD", "st", "1-1", "f", "v"]);
    run(&source, 0, &["XADD", "st", "2-1", "f", "v"]);
    sync_once(&source, &target, &[]);
    let equal = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(equal.code, 0, "{}", equal.show());
    assert!(
        equal.stdout.contains("values by reading them"),
        "{}",
        equal.show()
    );
    run(&target, 0, &["SADD", "s", "z"]);
    run(&target, 0, &["XADD", "st", "3-1", "f", "v"]);
    let found = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(found.code, 1, "{}", found.show());
    assert_eq!(
        found.line(0, &json!("s"), "value")["detail"],
        json!({"member": "z", "only_on": "target"})
    );
    assert_eq!(
        found.line(0, &json!("st"), "value")["detail"],
        json!({"id": "3-1", "source": null, "target": "3-1"})
    );
    assert_eq!(found.lines.len(), 2, "{}", found.show());
}

#[test]
fn writes_in_flight_during_a_live_sync_are_not_differences() {
    let source = Server::start();
    let target = Server::start();
    let spec = small_spec(11);
    workload::populate(&source, &spec);
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(120));
    let background = workload::run_in_background(&source, spec);
    // Let writes flow through the sync before and while verifying.
    let started = Instant::now();
    while background.ops_done() < 2000 && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let live = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "10", "--interval-ms", "300"],
    );
    let ops = background.stop().values().sum::<u64>();
    assert!(ops > 0);
    assert_eq!(live.code, 0, "{}\nferry log:\n{}", live.show(), ferry.log());
    assert!(live.lines.is_empty(), "{}", live.show());
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    ferry.terminate(Duration::from_secs(30));
}

#[test]
fn verification_that_fails_exits_2_with_one_line() {
    let source = Server::start();
    let port = common::free_port();
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["verify", "--source", &source.url()])
        .args(["--target", &format!("redis://127.0.0.1:{port}")])
        .current_dir(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with(&format!("ferry: cannot connect to target 127.0.0.1:{port}")),
        "{stderr}"
    );
    let output = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "verify",
            "--source",
            &source.url(),
            "--target",
            "redis://127.0.0.1:1",
        ])
        .args(["--rounds", "0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim(), "ferry: --rounds must be greater than 0");
}

#[test]
fn keys_the_filter_leaves_out_are_not_differences() {
    let source = Server::start();
    let target = Server::start();
    for i in 0..50 {
        run(&source, 0, &["SET", &format!("user:{i}"), "u"]);
        run(&source, 0, &["SET", &format!("tmp:{i}"), "t"]);
    }
    sync_once(&source, &target, &["--allow-key-prefix", "user:"]);
    // The target's own key outside the filter is not the sync's business either.
    run(&target, 0, &["SET", "tmp:local", "x"]);
    let filtered = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "1", "--allow-key-prefix", "user:"],
    );
    assert_eq!(filtered.code, 0, "{}", filtered.show());
    assert!(
        filtered.stdout.contains("(50 filtered out)"),
        "{}",
        filtered.show()
    );
    // A user: key the target lacks is still found.
    run(&target, 0, &["DEL", "user:7"]);
    let one = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "1", "--allow-key-prefix", "user:"],
    );
    assert_eq!(one.code, 1, "{}", one.show());
    one.line(0, &json!("user:7"), "missing");
    assert_eq!(one.lines.len(), 1, "{}", one.show());
    // Without the filter the left-out keys are differences.
    let all = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(all.code, 1, "{}", all.show());
    assert_eq!(all.lines.len(), 52, "{}", all.show());
    all.line(0, &json!("tmp:3"), "missing");
    all.line(0, &json!("tmp:local"), "extra");
}

#[test]
fn a_mapped_db_is_compared_with_its_image() {
    let source = Server::start();
    let target = Server::start();
    run(&source, 1, &["SET", "k", "v"]);
    run(&source, 0, &["SET", "j", "v"]);
    sync_once(&source, &target, &["--db-map", "1=3"]);
    let mapped = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "1", "--db-map", "1=3"],
    );
    assert_eq!(mapped.code, 0, "{}", mapped.show());
    run(&target, 3, &["SET", "k", "changed"]);
    let found = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "1", "--db-map", "1=3"],
    );
    let detail = &found.line(1, &json!("k"), "value")["detail"];
    assert_eq!(detail["offset"], 0, "{}", found.show());
}

#[test]
fn a_key_that_is_not_utf8_is_printed_in_base64_as_rdb_prints_it() {
    let source = Server::start();
    let target = Server::start();
    redis::cmd("SET")
        .arg(&b"\xff\xfek"[..])
        .arg("v")
        .query::<()>(&mut source.conn())
        .unwrap();
    let found = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(found.code, 1, "{}", found.show());
    found.line(0, &json!({"base64": "//5r"}), "missing");
}

/// Peak resident memory of a process in KiB (VmHWM), while it runs.
fn peak_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[test]
fn one_changed_field_of_a_big_hash_is_found_with_bounded_memory() {
    const FIELDS: usize = 200_000;
    let source = Server::start();
    let target = Server::start();
    let value = "v".repeat(300);
    for server in [&source, &target] {
        let mut conn = server.conn();
        for start in (0..FIELDS).step_by(5000) {
            let mut cmd = redis::cmd("HSET");
            cmd.arg("big");
            for i in start..start + 5000 {
                cmd.arg(format!("field:{i}")).arg(&value);
            }
            cmd.query::<()>(&mut conn).unwrap();
        }
    }
    run(&target, 0, &["HSET", "big", "field:123456", "changed"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("diff.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "verify",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .args(["--rounds", "1", "--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut peak = 0;
    let code = loop {
        if let Some(kib) = peak_kib(child.id()) {
            peak = peak.max(kib);
        }
        if let Some(code) = child.try_wait().unwrap() {
            break code;
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    assert_eq!(code.code(), Some(1));
    let text = std::fs::read_to_string(&out).unwrap();
    let line: Value = serde_json::from_str(text.trim()).unwrap();
    assert_eq!(line["key"], "big");
    assert_eq!(line["detail"]["field"], "field:123456");
    assert_eq!(line["detail"]["target"], "changed");
    // The hash is over 60 MB; verify reads it a page of 1000 fields at a time.
    let hash_kib = (FIELDS * (value.len() + 12) / 1024) as u64;
    assert!(
        peak > 0 && peak < hash_kib / 2,
        "peak RSS {peak} KiB for a hash of {hash_kib} KiB"
    );
    eprintln!("peak RSS {peak} KiB for a hash of {hash_kib} KiB");
}

/// `--keys-per-sec` is an upper bound: the walk of both sides takes at least as long as the
/// keys it reads allow (10% slack; the last batch goes without waiting for a next one).
#[test]
fn keys_per_sec_bounds_the_read_rate() {
    let source = Server::start();
    let target = Server::start();
    let mut conn = source.conn();
    let mut mset = redis::cmd("MSET");
    for i in 0..1000 {
        mset.arg(format!("k:{i}")).arg(i);
    }
    mset.query::<()>(&mut conn).unwrap();
    sync_once(&source, &target, &[]);
    let started = Instant::now();
    let run = verify(
        &source.url(),
        &target.url(),
        &["--rounds", "1", "--keys-per-sec", "500", "--batch", "50"],
    );
    let elapsed = started.elapsed();
    assert_eq!(run.code, 0, "{}", run.show());
    // 1000 source keys and 1000 target keys (and the checkpoint) at 500 a second.
    let least = Duration::from_secs_f64((2000.0 - 50.0) / 500.0 * 0.9);
    assert!(
        elapsed >= least,
        "took {elapsed:?}, at least {least:?} expected"
    );
}

/// A cluster on the target side: keys are scanned on every master and read where their slot
/// lives.
#[test]
fn a_cluster_target_is_verified_across_its_masters() {
    let source = Server::start();
    let target = Cluster::start(3, 0);
    let mut mset = redis::cmd("MSET");
    for i in 0..300 {
        mset.arg(format!("k:{i}")).arg(i);
    }
    mset.query::<()>(&mut source.conn()).unwrap();
    run(&source, 0, &["HSET", "h", "a", "1", "b", "2"]);
    sync_once(&source, target.masters()[0], &[]);
    let equal = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(equal.code, 0, "{}", equal.show());
    assert!(
        equal.stdout.contains("compared 301 source keys"),
        "{}",
        equal.show()
    );
    redis::cmd("HSET")
        .arg("h")
        .arg("b")
        .arg("3")
        .query::<()>(&mut target.conn_for(b"h"))
        .unwrap();
    redis::cmd("SET")
        .arg("only-here")
        .arg("x")
        .query::<()>(&mut target.conn_for(b"only-here"))
        .unwrap();
    redis::cmd("DEL")
        .arg("k:17")
        .query::<()>(&mut target.conn_for(b"k:17"))
        .unwrap();
    let found = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(found.code, 1, "{}", found.show());
    assert_eq!(
        found.line(0, &json!("h"), "value")["detail"],
        json!({"field": "b", "source": "2", "target": "3"})
    );
    found.line(0, &json!("only-here"), "extra");
    found.line(0, &json!("k:17"), "missing");
    assert_eq!(found.lines.len(), 3, "{}", found.show());
}

/// A db the source no longer has keys in is still walked on the target: what is left there
/// came from no source key.
#[test]
fn keys_left_in_a_db_the_source_emptied_are_extra() {
    let source = Server::start();
    let target = Server::start();
    run(&source, 0, &["SET", "a", "1"]);
    run(&source, 4, &["SET", "b", "1"]);
    sync_once(&source, &target, &[]);
    run(&source, 4, &["FLUSHDB"]);
    let found = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(found.code, 1, "{}", found.show());
    assert_eq!(
        found.line(4, &json!("b"), "extra")["detail"],
        json!({"target_db": 4})
    );
    assert_eq!(found.lines.len(), 1, "{}", found.show());
}

/// Keys a Lua transform renamed, moved or dropped are compared with what the script makes of
/// them; a target key no source key became is extra.
#[test]
fn keys_are_compared_through_the_transform_script() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("t.lua");
    std::fs::write(
        &script,
        "function transform(e)\n  if e.kind ~= \"key\" then return e end\n  if e.key:sub(1, 4) == \"tmp:\" then return nil end\n  e.key = \"eu:\" .. e.key\n  e.db = 2\n  return e\nend\n",
    )
    .unwrap();
    let script = script.to_str().unwrap();
    for i in 0..20 {
        run(&source, 0, &["SET", &format!("k:{i}"), "v"]);
        run(&source, 0, &["SET", &format!("tmp:{i}"), "v"]);
    }
    run(&source, 1, &["HSET", "h", "f", "v"]);
    sync_once(&source, &target, &["--transform", script]);
    let args = ["--rounds", "1", "--transform", script];
    let equal = verify(&source.url(), &target.url(), &args);
    assert_eq!(equal.code, 0, "{}", equal.show());
    assert!(
        equal
            .stdout
            .contains("compared 21 source keys (20 filtered out)"),
        "{}",
        equal.show()
    );
    run(&target, 2, &["DEL", "eu:k:3"]);
    run(&target, 2, &["HSET", "eu:h", "f", "changed"]);
    run(&target, 2, &["SET", "eu:nobody", "x"]);
    let found = verify(&source.url(), &target.url(), &args);
    assert_eq!(found.code, 1, "{}", found.show());
    assert_eq!(
        found.line(0, &json!("k:3"), "missing")["detail"],
        json!({"target_db": 2, "target_key": "eu:k:3"})
    );
    assert_eq!(
        found.line(1, &json!("h"), "value")["detail"]["target"],
        "changed"
    );
    found.line(2, &json!("eu:nobody"), "extra");
    assert_eq!(found.lines.len(), 3, "{}", found.show());
    // Repaired through the same mapping.
    let repaired = verify(
        &source.url(),
        &target.url(),
        &[&args[..], &["--repair"]].concat(),
    );
    assert_eq!(repaired.code, 0, "{}", repaired.show());
    assert!(verify(&source.url(), &target.url(), &args).lines.is_empty());
}

/// `[verify] continuous = true`: while the sync runs, recently written keys are compared on
/// both sides; a key the target holds differently shows in `verify` of the status.
#[test]
fn continuous_verification_reports_the_share_of_differing_recent_keys() {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "[verify]\ncontinuous = true\ninterval_ms = 200\nsample = 50",
    );
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    // Keys written once each: every check finds them equal.
    for i in 0..200 {
        run(&source, 0, &["SET", &format!("k:{i}"), "v"]);
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let st = ferry.wait_status(Duration::from_secs(60), "keys to be verified", |s| {
        s["verify"]["compared"].as_u64().unwrap_or(0) >= 50
    });
    assert_eq!(st["verify"]["mismatched"], 0, "{st}");
    assert_eq!(st["verify"]["mismatch_ratio"], 0.0, "{st}");
    // A key changed behind the sync's back, then touched on the source (an expiry, which
    // leaves the value as the target has it): the next check finds it.
    run(&source, 0, &["SET", "bad", "source"]);
    testkit::wait_until(Duration::from_secs(30), || {
        redis::cmd("GET")
            .arg("bad")
            .query::<Option<String>>(&mut target.conn())
            .unwrap()
            .is_some()
    });
    run(&target, 0, &["SET", "bad", "target"]);
    run(&source, 0, &["EXPIRE", "bad", "100000"]);
    let st = ferry.wait_status(Duration::from_secs(60), "a mismatch", |s| {
        s["verify"]["mismatched"].as_u64().unwrap_or(0) >= 1
    });
    let ratio = st["verify"]["mismatch_ratio"].as_f64().unwrap();
    assert!(ratio > 0.0 && ratio <= 1.0, "{st}");
    assert!(
        ferry
            .log()
            .contains("recently written keys differ on the target, e.g. \"bad\" in db 0 (value)"),
        "{}",
        ferry.log()
    );
    ferry.terminate(Duration::from_secs(30));
}

/// A key deleted on the source between rounds is no longer compared as a source key; its
/// image on the target, which the deletion never reached, is then extra.
#[test]
fn a_key_deleted_on_the_source_between_rounds_leaves_an_extra_image() {
    use std::io::{BufRead, BufReader};
    let source = Server::start();
    let target = Server::start();
    run(&source, 0, &["SET", "v", "source"]);
    run(&target, 0, &["SET", "v", "target"]);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("diff.jsonl");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "verify",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .args(["--rounds", "2", "--interval-ms", "1000"])
        .args(["--out", out.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while !line.contains("keys differ after round 1") {
        line.clear();
        assert!(stderr.read_line(&mut line).unwrap() > 0, "no round 2");
    }
    run(&source, 0, &["DEL", "v"]);
    let code = child.wait().unwrap();
    assert_eq!(code.code(), Some(1));
    let text = std::fs::read_to_string(&out).unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines,
        vec![json!({"db": 0, "key": "v", "kind": "extra", "detail": {"target_db": 0}})]
    );
}

/// A cluster on the source side: every master is scanned; a target key no shard holds is
/// extra.
#[test]
fn a_cluster_source_is_verified_across_its_masters() {
    let source = Cluster::start(3, 0);
    let target = Server::start();
    for i in 0..300 {
        let key = format!("k:{i}");
        redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query::<()>(&mut source.conn_for(key.as_bytes()))
            .unwrap();
    }
    let mut ferry =
        Ferry::start_with_status(&["--source", &source.url(), "--target", &target.url()]);
    let keys: Vec<String> = (0..300).map(|i| format!("k:{i}")).collect();
    let copied = testkit::wait_until(Duration::from_secs(60), || {
        redis::cmd("EXISTS")
            .arg(&keys)
            .query::<u64>(&mut target.conn())
            .unwrap()
            == 300
    });
    assert!(
        copied,
        "the sync did not copy the keys; log:\n{}",
        ferry.log()
    );
    ferry.terminate(Duration::from_secs(30));
    let equal = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(equal.code, 0, "{}", equal.show());
    assert!(
        equal.stdout.contains("compared 300 source keys"),
        "{}",
        equal.show()
    );
    run(&target, 0, &["SET", "k:5", "changed"]);
    run(&target, 0, &["SET", "stray", "x"]);
    let found = verify(&source.url(), &target.url(), &["--rounds", "1"]);
    assert_eq!(found.code, 1, "{}", found.show());
    found.line(0, &json!("k:5"), "value");
    found.line(0, &json!("stray"), "extra");
    assert_eq!(found.lines.len(), 2, "{}", found.show());
}

/// Several targets are verified one after the other; each line names its target.
#[test]
fn each_of_several_targets_is_verified() {
    let source = Server::start();
    let (a, b) = (Server::start(), Server::start());
    run(&source, 0, &["SET", "k", "v"]);
    run(&source, 0, &["SADD", "s", "x", "y"]);
    sync_once(&source, &a, &[]);
    sync_once(&source, &b, &[]);
    run(&b, 0, &["SREM", "s", "y"]);
    let found = verify(
        &source.url(),
        &a.url(),
        &["--rounds", "1", "--target", &b.url()],
    );
    assert_eq!(found.code, 1, "{}", found.show());
    assert_eq!(
        found.lines,
        vec![json!({
            "db": 0, "key": "s", "kind": "value", "target": b.addr(),
            "detail": {"member": "y", "only_on": "source"},
        })],
        "{}",
        found.show()
    );
    assert!(
        found.stdout.contains(&format!("target {}:", a.addr()))
            && found.stdout.contains(&format!("target {}:", b.addr())),
        "{}",
        found.show()
    );
}

/// A cluster source: each shard's stream feeds the continuous checks, each confirmed by its
/// own offset.
#[test]
fn continuous_verification_samples_every_shard_of_a_cluster_source() {
    let source = Cluster::start(3, 0);
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let config = common::config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "[verify]\ncontinuous = true\ninterval_ms = 200\nsample = 50",
    );
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    for i in 0..200 {
        let key = format!("k:{i}");
        redis::cmd("SET")
            .arg(&key)
            .arg(i)
            .query::<()>(&mut source.conn_for(key.as_bytes()))
            .unwrap();
        if i % 20 == 0 {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let st = ferry.wait_status(Duration::from_secs(60), "keys to be verified", |s| {
        s["verify"]["compared"].as_u64().unwrap_or(0) >= 50
    });
    assert_eq!(st["verify"]["mismatched"], 0, "{st}");
    // Once, at the top.
    assert!(
        st["shards"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("verify").is_none()),
        "{st}"
    );
    ferry.terminate(Duration::from_secs(30));
}
