//! `ferry serve`: the server run as the real binary, driven through its HTTP API, syncing
//! between real redis-servers. Each task's life (create, precheck, start, pause, resume,
//! stop), the token, passwords kept out of every answer, event and log line, a failed precheck
//! blocking the start, a SIGKILLed server resuming its task with a partial resync only, and
//! the OpenAPI document covering every route.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{free_port, resyncs};
use serde_json::{Value, json};
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

const PASSWORD: &str = "s3cret-serve-pw";
const WAIT: Duration = Duration::from_secs(120);

/// A `ferry serve` process on a free loopback port, with its data dir.
struct Serve {
    child: Option<Child>,
    addr: String,
    data: PathBuf,
    log: PathBuf,
    token: String,
    /// Every response body seen, to look for passwords in.
    seen: std::cell::RefCell<String>,
}

impl Serve {
    fn start(data: &Path) -> Serve {
        let addr = format!("127.0.0.1:{}", free_port());
        let mut serve = Serve {
            child: None,
            addr,
            data: data.to_path_buf(),
            log: data.join(format!("serve-{}.log", free_port())),
            token: String::new(),
            seen: Default::default(),
        };
        serve.spawn();
        serve
    }

    fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_ferry"))
            .args(["serve", "--listen", &self.addr, "--data"])
            .arg(&self.data)
            .env(
                "FERRY_LOG",
                std::env::var("FERRY_TEST_LOG").unwrap_or("info".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&self.log)
                    .unwrap(),
            )
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = self.try_call("GET", "/readyz", None, None) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "ferry serve did not get ready; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.token = std::fs::read_to_string(self.data.join("api-token"))
            .unwrap()
            .trim()
            .to_string();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn try_call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Option<(u16, String)> {
        let mut s = TcpStream::connect(&self.addr).ok()?;
        s.set_read_timeout(Some(WAIT)).ok()?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.addr,
            body.len()
        );
        s.write_all(req.as_bytes()).ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        let code = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n")?.1.to_string();
        self.seen.borrow_mut().push_str(&body);
        Some((code, body))
    }

    /// A call with the token; the status and the body as JSON (null when empty).
    fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let (code, text) = self
            .try_call(method, path, Some(&self.token), body.as_ref())
            .unwrap_or_else(|| panic!("{method} {path}: no answer; log:\n{}", self.log()));
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{method} {path}: {text}"))
        };
        (code, json)
    }

    fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, json) = self.call(method, path, body);
        assert!(
            (200..300).contains(&code),
            "{method} {path}: {code} {json}; log:\n{}",
            self.log()
        );
        json
    }

    fn task(&self, id: &str) -> Value {
        self.ok("GET", &format!("/api/v1/tasks/{id}"), None)
    }

    fn wait_task(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let task = self.task(id);
            if cond(&task) {
                return task;
            }
            assert!(
                Instant::now() < deadline,
                "task {id}: no {what}; last {task}; log:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_task(id, state, |t| t["state"] == state)
    }

    /// Every event of a task, through the pages.
    fn events(&self, id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut after = 0;
        loop {
            let page = self.ok(
                "GET",
                &format!("/api/v1/tasks/{id}/events?after={after}&limit=2"),
                None,
            );
            all.extend(page["events"].as_array().unwrap().iter().cloned());
            match page["next_after"].as_i64() {
                Some(next) => after = next,
                None => return all,
            }
        }
    }

    /// Nothing the server answered or logged holds the password.
    fn assert_no_password(&self) {
        assert!(
            !self.seen.borrow().contains(PASSWORD),
            "a response holds the password"
        );
        assert!(!self.log().contains(PASSWORD), "the log holds the password");
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        self.kill();
    }
}

fn incr(conn: &mut redis::Connection, key: &str, times: u64) {
    for _ in 0..times {
        let _: i64 = redis::cmd("INCR").arg(key).query(conn).unwrap();
    }
}

fn get(conn: &mut redis::Connection, key: &str) -> Option<i64> {
    redis::cmd("GET").arg(key).query(conn).unwrap()
}

fn repl_offset(server: &Server) -> u64 {
    server.info("replication")["master_repl_offset"]
        .parse()
        .unwrap()
}

fn equal(source: &Side, target: &Side) {
    if let Err(report) =
        compare::eventually_equal_sides(source, target, &Options::default(), WAIT)
    {
        panic!("target differs from source: {report:?}");
    }
}

#[test]
fn a_standalone_task_lives_through_the_api_without_showing_its_password() {
    let source = Server::start_with(&["--requirepass", PASSWORD]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 7,
            keys_per_db: 200,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());

    // Without the token, or with another, nothing under /api/.
    for token in [None, Some("not-the-token")] {
        let (code, body) = serve
            .try_call("GET", "/api/v1/tasks", token, None)
            .unwrap();
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("\"error\":\"unauthorized\""), "{body}");
    }
    let mode = std::fs::metadata(dir.path().join("api-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let source_url = format!("redis://:{PASSWORD}@{}", source.addr());
    let created = serve.ok(
        "POST",
        "/api/v1/tasks",
        Some(json!({
            "source": {"url": source_url},
            "target": {"url": target.url()},
            "labels": {"env": "test"},
        })),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["task"]["state"], "created");
    assert_eq!(
        created["task"]["spec"]["source"]["url"],
        format!("redis://{}", source.addr())
    );
    // The label filter.
    let listed = serve.ok("GET", "/api/v1/tasks?label=env=test", None);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let listed = serve.ok("GET", "/api/v1/tasks?label=env=prod", None);
    assert_eq!(listed.as_array().unwrap().len(), 0);

    let checked = serve.ok("POST", &format!("/api/v1/tasks/{id}/precheck"), None);
    assert_eq!(checked["failed"], false, "{checked}");
    assert_eq!(checked["task"]["state"], "ready");
    serve.ok("POST", &format!("/api/v1/tasks/{id}/start"), None);
    serve.wait_state(&id, "incremental");
    let (source_side, target_side) = (
        Side::standalone(&source.addr(), Some(PASSWORD)),
        Side::standalone(&target.addr(), None),
    );
    equal(&source_side, &target_side);
    let (mut src, mut dst) = (source.conn(), target.conn());
    incr(&mut src, "counter", 100);
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "counter"), Some(100));

    // A running task's settings cannot change; its labels can.
    let (code, body) = serve.call(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"limit": {"incremental_ops_per_sec": 10.0}})),
    );
    assert_eq!(code, 409, "{body}");
    assert!(body["message"].as_str().unwrap().contains("[limit]"), "{body}");
    let patched = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"labels": {"env": "staging"}})),
    );
    assert_eq!(patched["labels"]["env"], "staging");
    let (code, _) = serve.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 409);

    // Paused: the source's writes reach ferry but not the target.
    let paused = serve.ok("POST", &format!("/api/v1/tasks/{id}/pause"), None);
    assert_eq!(paused["task"]["state"], "paused", "{paused}");
    incr(&mut src, "counter", 50);
    incr(&mut src, "while-paused", 30);
    let written = repl_offset(&source);
    let task = serve.wait_task(&id, "the paused writes read from the source", |t| {
        t["status"]["source_offset"].as_u64().unwrap_or(0) >= written
    });
    assert!(
        task["status"]["applied_offset"].as_u64().unwrap() < written,
        "{task}"
    );
    assert_eq!(get(&mut dst, "while-paused"), None);
    assert_eq!(get(&mut dst, "counter"), Some(100));

    // Resumed: what the spool kept is written, once.
    let resumed = serve.ok("POST", &format!("/api/v1/tasks/{id}/resume"), None);
    assert_ne!(resumed["state"], "paused");
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "counter"), Some(150));
    assert_eq!(get(&mut dst, "while-paused"), Some(30));

    let stopped = serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(stopped["status"].is_null());

    // The history, in pages, and as Server-Sent Events.
    let events = serve.events(&id);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for t in ["state", "phase", "paused", "resumed", "precheck_report"] {
        assert!(types.contains(&t), "no {t} event in {types:?}");
    }
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "state")
        .filter_map(|e| e["to"].as_str())
        .collect();
    for s in ["created", "prechecking", "ready", "incremental", "paused", "stopped"] {
        assert!(states.contains(&s), "never {s}: {states:?}");
    }
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let sse = sse_until(&serve, &id, "\"to\":\"stopped\"");
    assert!(sse.contains("id: "), "{sse}");
    serve.seen.borrow_mut().push_str(&sse);

    // A stopped task's settings can change (the password kept when the URL is not given).
    let patched = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"limit": {"incremental_ops_per_sec": 1000.0}})),
    );
    assert_eq!(patched["state"], "created");
    assert_eq!(patched["spec"]["limit"]["incremental_ops_per_sec"], 1000.0);
    let checked = serve.ok("POST", &format!("/api/v1/tasks/{id}/precheck"), None);
    assert_eq!(checked["failed"], false, "{checked}");

    serve.assert_no_password();
    let (code, _) = serve.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 204);
    let (code, body) = serve.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 404, "{body}");
}

/// Reads the task's SSE stream until `needle` shows up.
fn sse_until(serve: &Serve, id: &str, needle: &str) -> String {
    let mut s = TcpStream::connect(&serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
    write!(
        s,
        "GET /api/v1/tasks/{id}/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        serve.addr, serve.token
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&text).contains(needle) {
            return String::from_utf8_lossy(&text).into_owned();
        }
    }
    panic!(
        "no {needle} in the event stream: {}",
        String::from_utf8_lossy(&text)
    );
}
