//! `ferry serve`'s alerts, end to end: the real binary, real redis-servers, and a webhook
//! receiver in the test (a small HTTP/1.1 server on a free loopback port that records every
//! request and checks its HMAC signature with the rule's secret). A `failed` rule fires once
//! for a task that fails and resolves once when it runs again; `lag_bytes` and `lag_seconds`
//! rules fire once while the target is frozen (SIGSTOP) under writes and resolve once when it
//! thaws; a
//! firing whose receiver is down survives a SIGKILL of the server and arrives exactly once
//! when the receiver comes up after the restart. The rules' secrets appear in no answer and
//! no log line.

mod common;
mod serving;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::{free_port, signal};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use serving::{Serve, WAIT};
use sha2::Sha256;
use testkit::Server;
use testkit::compare::{self, Options, Side};

const SECRET: &str = "alert-secret-0123456789-abcdef";

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Hook {
    /// Header names in lower case.
    headers: BTreeMap<String, String>,
    body: Value,
    /// The `X-Ferry-Signature` header is the HMAC-SHA256 of the body with `SECRET`.
    signed: bool,
}

/// A webhook receiver on 127.0.0.1 that answers 200 to every POST and keeps it.
struct Receiver {
    port: u16,
    got: Arc<Mutex<Vec<Hook>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    /// On a port chosen before (closed until now).
    fn on_port(port: u16) -> Receiver {
        Receiver::on(TcpListener::bind(("127.0.0.1", port)).unwrap())
    }

    fn on(listener: TcpListener) -> Receiver {
        let port = listener.local_addr().unwrap().port();
        listener.set_nonblocking(true).unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (got, stop) = (got.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((conn, _)) => {
                            if let Some(hook) = serve_one(conn) {
                                got.lock().unwrap().push(hook);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(20));
                        }
                        Err(e) => panic!("receiver: {e}"),
                    }
                }
            })
        };
        Receiver {
            port,
            got,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn hooks(&self) -> Vec<Hook> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until `n` requests have come; returns them all.
    fn wait_for(&self, n: usize, what: &str, serve: &Serve) -> Vec<Hook> {
        self.wait_until(what, serve, |hooks| hooks.len() >= n)
    }

    /// Waits until the requests so far pass `cond`; returns them all.
    fn wait_until(&self, what: &str, serve: &Serve, cond: impl Fn(&[Hook]) -> bool) -> Vec<Hook> {
        let deadline = Instant::now() + WAIT;
        loop {
            let hooks = self.hooks();
            if cond(&hooks) {
                return hooks;
            }
            assert!(
                Instant::now() < deadline,
                "no {what}: got {hooks:?}; log:\n{}",
                serve.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request (headers, then `Content-Length` bytes), answers 200 and closes.
fn serve_one(mut conn: TcpStream) -> Option<Hook> {
    conn.set_nonblocking(false).ok()?;
    conn.set_read_timeout(Some(WAIT)).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&data[..head_end]).to_string();
    let mut headers = BTreeMap::new();
    for line in head.lines().skip(1) {
        if let Some((k, v)) = line.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers.get("content-length")?.parse().ok()?;
    let mut body = data[head_end + 4..].to_vec();
    while body.len() < len {
        let n = conn.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buf[..n]);
    }
    conn.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(&body);
    let want: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let signed = headers.get("x-ferry-signature") == Some(&format!("sha256={want}"));
    Some(Hook {
        headers,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        signed,
    })
}

/// Every hook is signed, names its delivery in the header as in the body, and no delivery
/// came twice.
fn check_hooks(hooks: &[Hook]) {
    let mut ids = Vec::new();
    for h in hooks {
        assert!(h.signed, "a bad signature: {h:?}");
        assert_eq!(
            h.headers["x-ferry-delivery"],
            h.body["delivery"].to_string(),
            "{h:?}"
        );
        assert_eq!(h.headers["x-ferry-timestamp"], h.body["at"].to_string());
        assert_eq!(h.headers["content-type"], "application/json");
        ids.push(h.body["delivery"].as_i64().unwrap());
    }
    let n = ids.len();
    ids.dedup();
    assert_eq!(ids.len(), n, "a delivery came twice: {hooks:?}");
}

fn rule(serve: &Serve, body: Value) -> String {
    let (code, created) = serve.call("POST", "/api/v1/alerts", Some(body));
    assert_eq!(code, 201, "{created}; log:\n{}", serve.log());
    created["id"].as_str().unwrap().to_string()
}

fn deliveries(serve: &Serve, rule: &str) -> Vec<Value> {
    let d = serve.ok("GET", &format!("/api/v1/alerts/{rule}/deliveries"), None);
    d.as_array().unwrap().clone()
}

fn wait_deliveries(
    serve: &Serve,
    rule: &str,
    what: &str,
    cond: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let d = deliveries(serve, rule);
        if cond(&d) {
            return d;
        }
        assert!(
            Instant::now() < deadline,
            "no {what}: {d:?}; log:\n{}",
            serve.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Gives the server's once-a-second look several more turns, for a duplicate to show if
/// there were one (the test passes as well on a slow machine: it can only miss a bug).
fn a_few_more_looks() {
    std::thread::sleep(Duration::from_secs(4));
}

fn no_secret(serve: &Serve) {
    assert!(
        !serve.seen.borrow().contains(SECRET),
        "an answer holds the secret"
    );
    assert!(!serve.log().contains(SECRET), "the log holds the secret");
}

/// A target that already holds a key fails a new task (the engine's own precheck).
fn failing_task(serve: &Serve, source: &Server, target: &Server) -> String {
    let _: () = redis::cmd("SET")
        .arg("already-here")
        .arg("1")
        .query(&mut target.conn())
        .unwrap();
    let created = serve.ok(
        "POST",
        "/api/v1/tasks",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}})),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    serve.ok("POST", &format!("/api/v1/tasks/{id}/start"), None);
    serve.wait_state(&id, "failed");
    id
}

#[test]
fn a_failed_task_fires_once_and_resolves_once_when_it_runs_again() {
    let source = Server::start();
    let target = Server::start();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());

    // Bad rules are refused, each with one line naming the field.
    for (body, needle) in [
        (
            json!({"kind": "failed", "webhook_url": receiver.url()}),
            "secret",
        ),
        (
            json!({"kind": "lag_bytes", "webhook_url": receiver.url(), "secret": SECRET}),
            "threshold",
        ),
        (
            json!({"kind": "lag", "threshold": 1, "webhook_url": receiver.url(), "secret": SECRET}),
            "unknown variant",
        ),
        (
            json!({"kind": "failed", "webhook_url": "ftp://127.0.0.1/x", "secret": SECRET}),
            "webhook_url",
        ),
        (
            json!({"kind": "failed", "task": "t-none", "webhook_url": receiver.url(), "secret": SECRET}),
            "no task",
        ),
        (
            json!({"kind": "failed", "webhook_url": receiver.url(), "secret": "short"}),
            "secret: 5 characters",
        ),
    ] {
        let (code, answer) = serve.call("POST", "/api/v1/alerts", Some(body.clone()));
        assert_eq!(code, 400, "{body} -> {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body} -> {message}");
        assert!(!message.contains('\n'), "{message}");
    }

    // A rule on every task, also those created later.
    let rule_id = rule(
        &serve,
        json!({"kind": "failed", "webhook_url": receiver.url(), "secret": SECRET}),
    );
    let id = failing_task(&serve, &source, &target);
    let hooks = receiver.wait_for(1, "firing", &serve);
    let fired = &hooks[0].body;
    assert_eq!(fired["state"], "firing", "{fired}");
    assert_eq!(fired["rule"], rule_id.as_str());
    assert_eq!(fired["kind"], "failed");
    assert_eq!(fired["task"], id.as_str());
    assert_eq!(fired["task_name"], id.as_str());
    assert_eq!(fired["value"], 1.0);
    let rules = serve.ok("GET", "/api/v1/alerts", None);
    assert_eq!(rules[0]["firing"][0]["task"], id.as_str(), "{rules}");
    assert!(rules[0].get("secret").is_none(), "{rules}");

    // Running again (told to write over what the target holds), it resolves.
    serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"sync": {"on_conflict": "overwrite"}})),
    );
    serve.ok("POST", &format!("/api/v1/tasks/{id}/start"), None);
    serve.wait_state(&id, "incremental");
    let hooks = receiver.wait_for(2, "resolution", &serve);
    assert_eq!(hooks[1].body["state"], "resolved", "{:?}", hooks[1]);
    assert_eq!(hooks[1].body["task"], id.as_str());
    assert_eq!(hooks[1].body["value"], 0.0);
    a_few_more_looks();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 2, "{hooks:?}");
    check_hooks(&hooks);
    let kept = deliveries(&serve, &rule_id);
    assert_eq!(kept.len(), 2, "{kept:?}");
    for (d, state) in kept.iter().zip(["firing", "resolved"]) {
        assert_eq!(d["state"], state, "{d}");
        assert_eq!(d["http_status"], 200, "{d}");
        assert_eq!(d["attempts"], 1, "{d}");
        assert!(d["delivered"].is_u64(), "{d}");
        assert!(d["next_attempt"].is_null(), "{d}");
    }
    assert!(
        serve.ok("GET", "/api/v1/alerts", None)[0]["firing"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The routes and the payload's shape are in the OpenAPI document.
    let (_, doc) = serve.try_call("GET", "/openapi.json", None, None).unwrap();
    let doc: Value = serde_json::from_str(&doc).unwrap();
    for path in [
        "/api/v1/alerts",
        "/api/v1/alerts/{id}",
        "/api/v1/alerts/{id}/deliveries",
    ] {
        assert!(doc["paths"].get(path).is_some(), "{path} not documented");
    }
    let payload = &doc["components"]["schemas"]["AlertPayload"]["properties"];
    for field in fired.as_object().unwrap().keys() {
        assert!(payload.get(field).is_some(), "{field} not documented");
    }

    // A deleted rule is gone with its deliveries.
    serve.ok("DELETE", &format!("/api/v1/alerts/{rule_id}"), None);
    let (code, _) = serve.call("GET", &format!("/api/v1/alerts/{rule_id}/deliveries"), None);
    assert_eq!(code, 404);
    let (code, _) = serve.call("DELETE", &format!("/api/v1/alerts/{rule_id}"), None);
    assert_eq!(code, 404);
    no_secret(&serve);
}

/// The hooks of one rule.
fn of_rule(hooks: &[Hook], rule: &str) -> Vec<Hook> {
    hooks
        .iter()
        .filter(|h| h.body["rule"] == rule)
        .cloned()
        .collect()
}

#[test]
fn lag_from_a_frozen_target_fires_once_and_resolves_once_when_it_thaws() {
    let source = Server::start();
    let target = Server::start();
    let receiver = Receiver::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}})),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    serve.wait_state(&id, "incremental");
    let bytes = rule(
        &serve,
        json!({"task": id, "kind": "lag_bytes", "threshold": 65536, "for_seconds": 2,
               "webhook_url": receiver.url(), "secret": SECRET}),
    );
    let seconds = rule(
        &serve,
        json!({"task": id, "kind": "lag_seconds", "threshold": 5, "for_seconds": 2,
               "webhook_url": receiver.url(), "secret": SECRET}),
    );

    // Writes of 1 KiB values go on throughout.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, count) = (stop.clone(), count.clone());
        let mut conn = source.conn();
        let value = "v".repeat(1024);
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let _: () = redis::cmd("SET")
                    .arg(format!("key:{}", n % 5000))
                    .arg(&value)
                    .query(&mut conn)
                    .unwrap();
            }
        })
    };
    signal(target.pid(), "-STOP");
    let hooks = receiver.wait_until("both firing while the target is frozen", &serve, |h| {
        !of_rule(h, &bytes).is_empty() && !of_rule(h, &seconds).is_empty()
    });
    for (rule, kind, threshold) in [
        (&bytes, "lag_bytes", 65536.0),
        (&seconds, "lag_seconds", 5.0),
    ] {
        let fired = &of_rule(&hooks, rule)[0].body;
        assert_eq!(fired["state"], "firing", "{fired}");
        assert_eq!(fired["kind"], kind);
        assert_eq!(fired["threshold"], threshold);
        assert!(fired["value"].as_f64().unwrap() > threshold, "{fired}");
    }
    let firing = serve.ok("GET", "/api/v1/alerts", None);
    for r in firing.as_array().unwrap() {
        assert_eq!(r["firing"][0]["task"], id.as_str(), "{firing}");
    }
    signal(target.pid(), "-CONT");
    let hooks = receiver.wait_until("both resolved once the target thaws", &serve, |h| {
        of_rule(h, &bytes).len() >= 2 && of_rule(h, &seconds).len() >= 2
    });
    for rule in [&bytes, &seconds] {
        let resolved = &of_rule(&hooks, rule)[1].body;
        assert_eq!(resolved["state"], "resolved", "{resolved}");
        assert!(resolved["value"].is_number(), "{resolved}");
    }
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    if let Err(report) = compare::eventually_equal_sides(
        &Side::standalone(&source.addr(), None),
        &Side::standalone(&target.addr(), None),
        &Options::default(),
        WAIT,
    ) {
        panic!("target differs from source: {report:?}");
    }
    a_few_more_looks();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 4, "{hooks:?}");
    check_hooks(&hooks);
    assert_eq!(deliveries(&serve, &bytes).len(), 2);
    assert_eq!(deliveries(&serve, &seconds).len(), 2);
    no_secret(&serve);
}

#[test]
fn a_firing_not_yet_delivered_survives_a_killed_server_and_arrives_once() {
    let source = Server::start();
    let target = Server::start();
    // Nobody listens there yet.
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path());
    let rule_id = rule(
        &serve,
        json!({"kind": "failed", "webhook_url": format!("http://127.0.0.1:{port}/hook"), "secret": SECRET}),
    );
    let id = failing_task(&serve, &source, &target);
    let pending = wait_deliveries(&serve, &rule_id, "a failed attempt", |d| {
        d.len() == 1 && d[0]["attempts"].as_u64() >= Some(1)
    });
    assert!(pending[0]["delivered"].is_null(), "{pending:?}");
    assert!(pending[0]["http_status"].is_null(), "{pending:?}");
    assert!(pending[0]["next_attempt"].is_u64(), "{pending:?}");
    let error = pending[0]["last_error"].as_str().unwrap();
    assert!(!error.is_empty() && !error.contains(SECRET), "{error}");

    serve.kill();
    serve.spawn();
    let receiver = Receiver::on_port(port);
    let hooks = receiver.wait_for(1, "the firing after the restart", &serve);
    assert_eq!(hooks[0].body["state"], "firing", "{:?}", hooks[0]);
    assert_eq!(hooks[0].body["task"], id.as_str());
    let done = wait_deliveries(&serve, &rule_id, "the delivery recorded", |d| {
        d.len() == 1 && d[0]["delivered"].is_u64()
    });
    assert_eq!(done[0]["http_status"], 200);
    assert!(done[0]["attempts"].as_u64().unwrap() >= 2, "{done:?}");
    assert_eq!(done[0]["id"], hooks[0].body["delivery"]);
    // Still failed after the restart: not fired again.
    a_few_more_looks();
    let hooks = receiver.hooks();
    assert_eq!(hooks.len(), 1, "{hooks:?}");
    check_hooks(&hooks);
    assert_eq!(deliveries(&serve, &rule_id).len(), 1);
    assert_eq!(serve.task(&id)["state"], "failed");
    no_secret(&serve);
}
