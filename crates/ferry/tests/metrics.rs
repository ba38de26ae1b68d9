//! `GET /metrics` of `ferry serve`, read two ways: parsed here from the server's own answer,
//! and scraped by a real Prometheus (Debian's `prometheus` package), which then answers PromQL
//! queries for the task's lag and copied keys. Also: the token guards it, a stopped task keeps
//! only its state, a deleted task's series are gone, `--log-format json` logs JSON lines, and
//! the systemd unit in deploy/ passes `systemd-analyze verify`.

mod common;
mod serving;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::{Value, json};
use serving::{Serve, WAIT};
use testkit::Server;
use testkit::compare::{self, Options, Side};

const KEYS: u64 = 300;
const INCRS: u64 = 100;

/// One sample: its labels, its value.
type Samples = Vec<(BTreeMap<String, String>, f64)>;

/// The text format parsed: samples by family, and each family's TYPE. Panics on a line that
/// is not the format (the point is to check it).
struct Scrape {
    families: BTreeMap<String, Samples>,
    types: BTreeMap<String, String>,
    text: String,
}

impl Scrape {
    fn parse(text: &str) -> Scrape {
        let mut families: BTreeMap<String, Samples> = BTreeMap::new();
        let mut types = BTreeMap::new();
        let mut helped = Vec::new();
        for line in text.lines().filter(|l| !l.is_empty()) {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').expect(line);
                assert!(!help.is_empty(), "{line}");
                helped.push(name.to_string());
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect(line);
                assert!(matches!(kind, "counter" | "gauge"), "{line}");
                assert_eq!(helped.last().map(String::as_str), Some(name), "{line}");
                types.insert(name.to_string(), kind.to_string());
                continue;
            }
            let (series, value) = line.rsplit_once(' ').expect(line);
            let value: f64 = value.parse().unwrap_or_else(|_| panic!("{line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series, BTreeMap::new()),
                Some((name, rest)) => (name, labels_of(rest.strip_suffix('}').expect(line))),
            };
            assert!(name.starts_with("ferry_"), "{line}");
            assert!(types.contains_key(name), "{line}: no TYPE before it");
            if types[name] == "counter" {
                assert!(name.ends_with("_total"), "{line}");
            }
            families
                .entry(name.to_string())
                .or_default()
                .push((labels, value));
        }
        Scrape {
            families,
            types,
            text: text.to_string(),
        }
    }

    /// The value of the one series of `name` whose labels include `labels`.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let found: Vec<f64> = self
            .families
            .get(name)?
            .iter()
            .filter(|(l, _)| {
                labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, v)| *v)
            .collect();
        assert!(found.len() <= 1, "{name} {labels:?}: {found:?}");
        found.first().copied()
    }

    fn of_task(&self, name: &str, task: &str) -> Option<f64> {
        self.get(name, &[("task", task)])
    }

    /// Every series that names this task.
    fn series_of(&self, task: &str) -> Vec<String> {
        let mut out = Vec::new();
        for (name, samples) in &self.families {
            for (labels, _) in samples {
                if labels.get("task").map(String::as_str) == Some(task) {
                    out.push(format!("{name}{labels:?}"));
                }
            }
        }
        out
    }
}

/// `a="x",b="y\"z"` → {a: x, b: y"z}.
fn labels_of(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut chars = text.chars().peekable();
    while chars.peek().is_some() {
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        assert_eq!(chars.next(), Some('"'), "{text}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => panic!("{text}"),
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.insert(key, value);
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

fn scrape(serve: &Serve) -> Scrape {
    let (code, text) = serve
        .try_call("GET", "/metrics", Some(&serve.token), None)
        .expect("GET /metrics: no answer");
    assert_eq!(code, 200, "{text}");
    Scrape::parse(&text)
}

fn scrape_until(serve: &Serve, what: &str, cond: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = Instant::now() + WAIT;
    loop {
        let s = scrape(serve);
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "/metrics never showed {what}; last:\n{}",
            s.text
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn metrics_show_a_tasks_progress_and_a_real_prometheus_scrapes_them() {
    let source = Server::start();
    let mut target = Server::start();
    let mut src = source.conn();
    for i in 0..KEYS {
        let _: () = redis::cmd("SET")
            .arg(format!("k:{i}"))
            .arg(i)
            .query(&mut src)
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());

    // The token guards it, as it does the API.
    for token in [None, Some("not-the-token")] {
        let (code, body) = serve.try_call("GET", "/metrics", token, None).unwrap();
        assert_eq!(code, 401, "{body}");
    }
    let empty = scrape(&serve);
    assert!(empty.families.is_empty(), "{}", empty.text);

    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({
            "source": {"url": source.url()},
            "target": {"url": target.url()},
        })),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    serve.wait_state(&id, "incremental");
    for _ in 0..INCRS {
        let _: i64 = redis::cmd("INCR").arg("counter").query(&mut src).unwrap();
    }
    let (source_side, target_side) = (
        Side::standalone(&source.addr(), None),
        Side::standalone(&target.addr(), None),
    );
    if let Err(report) =
        compare::eventually_equal_sides(&source_side, &target_side, &Options::default(), WAIT)
    {
        panic!("target differs from source: {report:?}");
    }

    // The task's figures, as the server reads them from the engine.
    let s = scrape_until(&serve, "the writes applied and a latency sample", |s| {
        s.of_task("ferry_ops_applied_total", &id)
            .is_some_and(|v| v >= INCRS as f64)
            && s.of_task("ferry_latency_p99_seconds", &id).is_some()
    });
    let state =
        |s: &Scrape, state: &str| s.get("ferry_task_state", &[("task", &id), ("state", state)]);
    assert_eq!(state(&s, "incremental"), Some(1.0), "{}", s.text);
    for other in ["created", "full_sync", "paused", "failed", "stopped"] {
        assert_eq!(state(&s, other), Some(0.0), "{other}");
    }
    assert_eq!(
        s.families["ferry_task_state"].len(),
        11,
        "one series per state"
    );
    assert_eq!(
        s.of_task("ferry_full_copy_keys_total", &id),
        Some(KEYS as f64)
    );
    assert_eq!(s.of_task("ferry_full_copy_progress_ratio", &id), Some(1.0));
    assert!(s.of_task("ferry_full_copy_bytes_total", &id).unwrap() > 0.0);
    let source_offset = s.of_task("ferry_source_offset_bytes", &id).unwrap();
    let applied = s.of_task("ferry_applied_offset_bytes", &id).unwrap();
    assert_eq!(
        s.of_task("ferry_lag_bytes", &id),
        Some(source_offset - applied)
    );
    let (p50, p99) = (
        s.of_task("ferry_latency_p50_seconds", &id).unwrap(),
        s.of_task("ferry_latency_p99_seconds", &id).unwrap(),
    );
    assert!(0.0 <= p50 && p50 <= p99, "{p50} {p99}");
    assert!(s.of_task("ferry_latency_samples", &id).unwrap() >= 1.0);
    assert!(s.of_task("ferry_lag_seconds", &id).unwrap() >= 0.0);
    assert_eq!(s.of_task("ferry_spool_full", &id), Some(0.0));
    assert_eq!(s.of_task("ferry_skipped_writes_total", &id), Some(0.0));
    // No limits: no throttle series.
    assert_eq!(s.of_task("ferry_throttled_seconds_total", &id), None);
    // The engine's own counters come in the same answer.
    let entered = s.get(
        "ferry_phase_changes_total",
        &[("task", &id), ("phase", "incremental")],
    );
    assert!(entered.is_some_and(|n| n >= 1.0), "{}", s.text);
    assert_eq!(s.types["ferry_phase_changes_total"], "counter");
    assert_eq!(s.types["ferry_lag_bytes"], "gauge");
    promtool_accepts(&s.text);

    // A real Prometheus scrapes the server every second, with the token from its file.
    let prom = Prometheus::start(dir.path(), &serve.addr, &dir.path().join("api-token"));
    match &prom {
        None => eprintln!(
            "note: the prometheus binary is not installed (apt-get install prometheus): the scrape by a real Prometheus is not tested"
        ),
        Some(prom) => {
            let up = prom.query_until(
                &format!("up{{job=\"ferry\",instance=\"{}\"}}", serve.addr),
                |v| v == 1.0,
            );
            assert_eq!(up, 1.0);
            let lag = prom.query_until(&format!("ferry_lag_bytes{{task=\"{id}\"}}"), |v| v >= 0.0);
            let now = scrape(&serve);
            eprintln!(
                "prometheus: ferry_lag_bytes{{task={id}}} = {lag} (server now: {:?})",
                now.of_task("ferry_lag_bytes", &id)
            );
            let keys = prom.query_until(
                &format!("ferry_full_copy_keys_total{{task=\"{id}\"}}"),
                |v| v == KEYS as f64,
            );
            assert_eq!(keys, KEYS as f64);
            // A PromQL expression over the task's series, as the dashboard's panels use.
            prom.query_until(
                &format!("sum by (task) (ferry_task_state{{task=\"{id}\",state=\"incremental\"}})"),
                |v| v == 1.0,
            );
            prom.query_until(&format!("ferry_lag_seconds{{task=\"{id}\"}} >= 0"), |v| {
                v >= 0.0
            });
        }
    }

    // The target goes away: the task retries, and says why by code.
    target.stop();
    let s = scrape_until(&serve, "a retry", |s| {
        state(s, "retrying") == Some(1.0)
            && s.families
                .get("ferry_retries_total")
                .is_some_and(|f| f.iter().any(|(l, v)| l["task"] == id && *v >= 1.0))
    });
    let retries = &s.families["ferry_retries_total"];
    assert!(
        retries
            .iter()
            .all(|(l, _)| l.get("code").is_some_and(|c| !c.is_empty())),
        "{retries:?}"
    );
    assert!(
        s.of_task("ferry_retry_left_seconds", &id).is_some(),
        "{}",
        s.text
    );
    eprintln!("while the target was down: ferry_retries_total {retries:?}");
    // Back: the task goes on from its checkpoint, and the writes made meanwhile arrive.
    for _ in 0..INCRS {
        let _: i64 = redis::cmd("INCR").arg("counter").query(&mut src).unwrap();
    }
    target.start_again();
    serve.wait_state(&id, "incremental");
    if let Err(report) =
        compare::eventually_equal_sides(&source_side, &target_side, &Options::default(), WAIT)
    {
        panic!("target differs from source after the outage: {report:?}");
    }
    if let Some(prom) = &prom {
        prom.query_until(&format!("sum(ferry_retries_total{{task=\"{id}\"}})"), |v| {
            v >= 1.0
        });
    }
    if let Some(prom) = &prom {
        // Every query of the Grafana dashboard parses and runs on this Prometheus, and those
        // over the task's progress find its series.
        let exprs = dashboard_queries(&id);
        assert!(exprs.len() >= 10, "{exprs:?}");
        let mut answered = 0;
        for expr in &exprs {
            answered += usize::from(prom.query(expr).is_some());
        }
        assert!(answered >= exprs.len() / 2, "{answered} of {exprs:?}");
        eprintln!(
            "the dashboard's {} queries run; {answered} found series",
            exprs.len()
        );
        for expr in exprs
            .iter()
            .filter(|e| e.contains("ferry_lag_bytes") || e.contains("ferry_ops_applied_total"))
        {
            prom.query_until(expr, |v| v >= 0.0);
        }
    }
    drop(prom);

    // Stopped: its state only (it no longer runs, so no progress figures); its counters stay.
    serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);
    let s = scrape(&serve);
    assert_eq!(state(&s, "stopped"), Some(1.0), "{}", s.text);
    assert_eq!(state(&s, "incremental"), Some(0.0));
    assert_eq!(s.of_task("ferry_lag_bytes", &id), None, "{}", s.text);
    assert!(
        s.get(
            "ferry_phase_changes_total",
            &[("task", &id), ("phase", "incremental")]
        )
        .is_some()
    );

    // Deleted: nothing of it is left.
    let (code, _) = serve.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 204);
    let s = scrape(&serve);
    assert_eq!(s.series_of(&id), Vec::<String>::new(), "{}", s.text);
}

/// Prometheus's own linter of the text format (`promtool check metrics`, from the same
/// package) finds nothing to say: syntax, names, units, HELP.
fn promtool_accepts(text: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        eprintln!(
            "note: promtool is not installed (apt-get install prometheus): the text is not linted by it"
        );
        return;
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool: {said}\n{text}"
    );
}

/// The PromQL of deploy/grafana/ferry.json, with Grafana's variables filled in for `task`.
fn dashboard_queries(task: &str) -> Vec<String> {
    fn walk(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    match (k.as_str(), v) {
                        ("expr", Value::String(e)) => out.push(e.clone()),
                        _ => walk(v, out),
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/grafana/ferry.json"
    ))
    .unwrap();
    let mut out = Vec::new();
    walk(&serde_json::from_str(&text).unwrap(), &mut out);
    out.iter()
        .map(|e| e.replace("$task", task).replace("$__rate_interval", "1m"))
        .collect()
}

/// A Prometheus server of our own (not the system's service), on a free loopback port, with
/// its storage in a temp dir.
struct Prometheus {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Prometheus {
    /// None when the `prometheus` binary is not installed.
    fn start(dir: &Path, target: &str, token_file: &Path) -> Option<Prometheus> {
        let found = Command::new("prometheus")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return None;
        }
        let home = dir.join("prometheus");
        std::fs::create_dir_all(home.join("data")).unwrap();
        let config = home.join("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
                 scrape_configs:\n  - job_name: ferry\n    authorization:\n      type: Bearer\n      credentials_file: {}\n    static_configs:\n      - targets: ['{target}']\n",
                token_file.display()
            ),
        )
        .unwrap();
        let addr = format!("127.0.0.1:{}", free_port());
        let log = home.join("prometheus.log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                home.join("data").display()
            ))
            .arg(format!("--web.listen-address={addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .current_dir(&home)
            .spawn()
            .unwrap();
        Some(Prometheus { child, addr, log })
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// An instant query through the HTTP API: the first result's value, if any.
    fn query(&self, promql: &str) -> Option<f64> {
        let path = format!("/api/v1/query?query={}", percent_encode(promql));
        let (code, body) = http_get(&self.addr, &path)?;
        // 400 and 422: the query does not parse or cannot run (503: still starting).
        assert!(![400, 422].contains(&code), "{promql}: {code} {body}");
        let v: Value = serde_json::from_str(&body).ok()?;
        assert_ne!(v["status"], "error", "{promql}: {body}");
        v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
    }

    /// Asks until the answer satisfies `cond` (Prometheus needs a scrape or two first).
    fn query_until(&self, promql: &str, cond: impl Fn(f64) -> bool) -> f64 {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self.query(promql);
            if let Some(v) = got.filter(|v| cond(*v)) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "prometheus: {promql} answered {got:?}; its log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A plain HTTP/1.1 GET; the status and the body.
fn http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    let code = head.split(' ').nth(1)?.parse().ok()?;
    // Prometheus's API answers are small; a chunked one is de-chunked here.
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        return Some((code, dechunk(body)));
    }
    Some((code, body.to_string()))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// `ferry serve --log-format json` logs one JSON object per line, and stops cleanly on
/// SIGTERM.
#[test]
fn serve_logs_json_lines() {
    let dir = tempfile::tempdir().unwrap();
    let addr = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["serve", "--listen", &addr, "--log-format", "json", "--data"])
        .arg(dir.path().join("data"))
        .env("FERRY_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    while http_get(&addr, "/readyz").is_none_or(|(code, _)| code != 200) {
        assert!(Instant::now() < deadline, "ferry serve did not get ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    common::signal(child.id(), "-TERM");
    let status = child.wait().unwrap();
    assert!(status.success(), "{status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines.len() >= 2, "{text}");
    for line in lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|_| panic!("not JSON: {line}"));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["fields"]["message"].is_string(), "{line}");
    }
}

/// The unit in deploy/ is one systemd reads without a complaint (when `systemd-analyze` is
/// there), with its ExecStart pointed at the binary under test.
#[test]
fn the_systemd_unit_verifies() {
    let unit = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../deploy/ferry.service"
    ))
    .unwrap();
    assert!(unit.contains(
        "ExecStart=/usr/local/bin/ferry serve --listen 127.0.0.1:8480 --data /var/lib/ferry --log-format json"
    ));
    assert!(unit.contains("KillSignal=SIGTERM"));
    let found = Command::new("systemd-analyze")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!("note: systemd-analyze is not installed: the unit is not verified by systemd");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ferry.service");
    std::fs::write(
        &file,
        unit.replace("/usr/local/bin/ferry", env!("CARGO_BIN_EXE_ferry")),
    )
    .unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&file)
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    // Unknown or bad settings are only warnings to systemd: any word about the file fails.
    assert!(!said.contains("ferry.service"), "{said}");
}
