//! The web console, end to end in a real headless browser: Debian's `chromium`, driven through
//! its `chromedriver` (WebDriver) by fantoccini, against the real `ferry serve` binary and real
//! redis-servers. A user signs in, creates a task through the form, sees its precheck fail
//! (the target holds keys), fixes it by choosing overwrite, starts it, watches it reach
//! incremental and the lag chart draw points, pauses and resumes it, verifies it, sees a
//! failed task's error on the list, and signs out. Each page is saved as a PNG under
//! `target/console-screenshots/`; the browser's console must stay free of errors.
//!
//! Skipped, with a note, when chromium or chromedriver is not installed (`apt-get install
//! chromium chromium-driver`; CI installs both).

mod common;
mod serving;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use serving::{Serve, WAIT};
use testkit::Server;
use testkit::compare::{self, Options};

fn on_path(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

/// chromedriver on a free loopback port, ended with the test, and with it the chromium it
/// started: a test that fails before closing its session leaves no browser behind.
struct Driver {
    child: Child,
    url: String,
    /// The browser's own profile dir, named in the command line of each of its processes.
    profile: PathBuf,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let mark = format!("--user-data-dir={}", self.profile.display());
        let Ok(procs) = std::fs::read_dir("/proc") else {
            return;
        };
        for entry in procs.flatten() {
            let pid = entry.file_name().to_string_lossy().to_string();
            if !pid.bytes().all(|b| b.is_ascii_digit()) {
                continue;
            }
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&mark) {
                let _ = Command::new("kill").args(["-9", &pid]).status();
            }
        }
    }
}

impl Driver {
    fn start(bin: &PathBuf, log: &std::path::Path, profile: PathBuf) -> Driver {
        let port = common::free_port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .arg(format!("--log-path={}", log.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
            profile,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        while raw(&format!("127.0.0.1:{port}"), "GET", "/status", &[], "").is_none() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
        driver
    }
}

/// One HTTP/1.1 request on loopback; the status and the body.
fn raw(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(WAIT)).ok()?;
    let extra: String = headers
        .iter()
        .map(|(k, v)| format!("{k}: {v}\r\n"))
        .collect();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{extra}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    // Read up to the body's length: chromedriver keeps the connection open.
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).ok()?;
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(usize::MAX);
            if n == 0 || body.len() >= length {
                let code = head.split(' ').nth(1)?.parse().ok()?;
                return Some((code, body.to_string()));
            }
        }
        if n == 0 {
            return None;
        }
    }
}

struct Browser {
    c: Client,
    shots: PathBuf,
    serve_log: String,
}

impl Browser {
    /// Evaluates `expr` in the page until it is truthy.
    async fn until(&self, what: &str, expr: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let got = self
                .c
                .execute(&format!("return ({expr});"), vec![])
                .await
                .unwrap_or(Value::Null);
            let truthy = match &got {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::Number(n) => n.as_f64() != Some(0.0),
                Value::String(s) => !s.is_empty(),
                _ => true,
            };
            if truthy {
                return got;
            }
            if Instant::now() > deadline {
                self.shot("timed-out").await;
                let text = self
                    .c
                    .execute("return document.body.innerText;", vec![])
                    .await
                    .unwrap_or(Value::Null);
                panic!(
                    "console: no {what} ({expr}); the page says:\n{}\nserver log:\n{}",
                    text.as_str().unwrap_or(""),
                    std::fs::read_to_string(&self.serve_log).unwrap_or_default()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn text(&self, css: &str) -> String {
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("{css}: {e}"))
            .text()
            .await
            .unwrap()
    }

    async fn click(&self, css: &str) {
        self.until(
            &format!("{css} to click"),
            &format!("(e => e && !e.disabled)(document.querySelector({css:?}))"),
        )
        .await;
        self.c
            .find(Locator::Css(css))
            .await
            .unwrap()
            .click()
            .await
            .unwrap_or_else(|e| panic!("click {css}: {e}"));
    }

    async fn fill(&self, css: &str, text: &str) {
        let field = self.c.find(Locator::Css(css)).await.unwrap();
        field.clear().await.unwrap();
        field.send_keys(text).await.unwrap();
    }

    async fn shot(&self, name: &str) {
        // Fonts and the last poll settle first; a passing notice would hide part of the page.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let _ = self
            .c
            .execute("document.getElementById('flash').textContent = '';", vec![])
            .await;
        let png = self.c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{name}.png")), png).unwrap();
    }

    /// The whole of a long page.
    async fn tall_shot(&self, name: &str, height: u32) {
        self.c.set_window_size(1280, height).await.unwrap();
        self.shot(name).await;
        self.c.set_window_size(1280, 1000).await.unwrap();
    }

    /// Entries the browser logged at level SEVERE (errors) since the last call.
    async fn console_errors(&self, driver: &Driver) -> Vec<Value> {
        let session = self.c.session_id().await.unwrap().unwrap();
        let addr = driver.url.trim_start_matches("http://");
        let (code, body) = raw(
            addr,
            "POST",
            &format!("/session/{session}/se/log"),
            &[],
            r#"{"type":"browser"}"#,
        )
        .expect("chromedriver answers");
        assert_eq!(code, 200, "{body}");
        let logs: Value = serde_json::from_str(&body).unwrap();
        logs["value"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e["level"] == "SEVERE")
            .collect()
    }
}

fn state_of(serve: &Serve, id: &str) -> String {
    serve.task(id)["state"].as_str().unwrap_or("").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_drives_a_task_from_sign_in_to_sign_out() {
    let (Some(chromium), Some(chromedriver)) = (
        on_path(&["chromium", "chromium-browser"]),
        on_path(&["chromedriver"]),
    ) else {
        eprintln!(
            "note: chromium or chromedriver is not installed (apt-get install chromium chromium-driver): the console test is skipped"
        );
        return;
    };
    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/console-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    let source = Server::start();
    let target = Server::start();
    let other_target = Server::start();
    {
        let mut src = source.conn();
        for i in 0..500 {
            let _: () = redis::cmd("SET")
                .arg(format!("user:{i}"))
                .arg(format!("value-{i}"))
                .query(&mut src)
                .unwrap();
        }
        let _: () = redis::cmd("SET")
            .arg("shared")
            .arg("from-source")
            .query(&mut src)
            .unwrap();
        // The target holds a key of the same name: a new task's precheck fails on it.
        let _: () = redis::cmd("SET")
            .arg("shared")
            .arg("old-in-target")
            .query(&mut target.conn())
            .unwrap();
        let _: () = redis::cmd("SET")
            .arg("mine")
            .arg("1")
            .query(&mut other_target.conn())
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let serve_log = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().contains("serve-"))
        .unwrap();
    let base = format!("http://{}", serve.addr);

    let profile = dir.path().join("chromium-profile");
    let driver = Driver::start(
        &chromedriver,
        &dir.path().join("chromedriver.log"),
        profile.clone(),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,1000", "--hide-scrollbars",
                format!("--user-data-dir={}", profile.display()),
            ],
        }),
    );
    caps.insert("goog:loggingPrefs".into(), json!({"browser": "ALL"}));
    let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("chromedriver starts a chromium session");
    let b = Browser {
        c: client,
        shots: shots.clone(),
        serve_log: serve_log.display().to_string(),
    };

    // Sign in: a wrong token is refused next to the field, the right one lets in.
    b.c.goto(&format!("{base}/")).await.unwrap();
    b.until(
        "the sign-in form, without the navigation",
        "document.querySelector('#token') && getComputedStyle(document.querySelector('#top')).display === 'none'",
    )
    .await;
    b.fill("#token", "not-the-token").await;
    b.click("#signin").await;
    b.until(
        "a refusal",
        "document.querySelector('#login-error').textContent.includes('wrong API token')",
    )
    .await;
    b.shot("01-sign-in").await;
    // The refusal is the one error the browser logs (a 401 answer): this also shows the log
    // is read.
    let errors = b.console_errors(&driver).await;
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert!(
        errors[0]["message"].as_str().unwrap_or("").contains(
            "/console/session - Failed to load resource: the server responded with a status of 401"
        ),
        "{errors:#?}"
    );
    b.fill("#token", &serve.token).await;
    b.click("#signin").await;
    b.until("the task list", "document.querySelector('table#tasks')")
        .await;

    // The session cookie is out of the page's reach, and alone it changes nothing.
    let cookies = b.c.get_all_cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name() == "ferry_session")
        .expect("a session cookie");
    assert_eq!(session.http_only(), Some(true));
    assert_eq!(format!("{:?}", session.same_site()), "Some(Strict)");
    let seen_by_page =
        b.c.execute("return document.cookie;", vec![])
            .await
            .unwrap();
    assert!(
        !seen_by_page
            .as_str()
            .unwrap_or("")
            .contains("ferry_session"),
        "{seen_by_page}"
    );
    let cookie = format!("ferry_session={}", session.value());
    let with_cookie = [("Cookie", cookie.as_str())];
    let (code, _) = raw(&serve.addr, "GET", "/api/v1/tasks", &with_cookie, "").unwrap();
    assert_eq!(code, 200, "a session cookie reads the API");
    let spec = json!({"source": {"url": source.url()}, "target": {"url": target.url()}});
    let (code, body) = raw(
        &serve.addr,
        "POST",
        "/api/v1/tasks",
        &with_cookie,
        &spec.to_string(),
    )
    .unwrap();
    assert_eq!(code, 403, "a cookie without its CSRF token: {body}");
    let (code, _) = raw(
        &serve.addr,
        "POST",
        "/api/v1/tasks",
        &[("Cookie", cookie.as_str()), ("X-CSRF-Token", "guessed")],
        &spec.to_string(),
    )
    .unwrap();
    assert_eq!(code, 403, "a cookie with a wrong CSRF token");
    assert_eq!(
        serve.ok("GET", "/api/v1/tasks", None),
        json!([]),
        "nothing was created"
    );

    // The form: a missing target is named next to its field, before anything is sent.
    b.click("a[href='#/new']").await;
    b.until("the form", "document.querySelector('#task-form')")
        .await;
    b.fill("#f-name", "orders-to-dr").await;
    b.fill("#f-source-url", &source.url()).await;
    b.fill("#f-labels", "env=test, team=cache").await;
    b.click("#create").await;
    b.until(
        "the target's error",
        "document.querySelector('#f-target-url-err').textContent.includes('target is needed')",
    )
    .await;
    // The target as a saved connection, added from the form and picked there.
    b.click("#new-connection summary").await;
    b.fill("#c-name", "dr-target").await;
    b.fill("#c-url", &target.url()).await;
    b.click("#c-save").await;
    b.until(
        "the new connection to pick",
        "document.querySelector('#f-target-connection option[value=dr-target]')",
    )
    .await;
    b.c.find(Locator::Css("#f-target-connection"))
        .await
        .unwrap()
        .select_by_value("dr-target")
        .await
        .unwrap();
    b.fill("#f-extra", "[advanced]\nmax_in_flight = 32").await;
    b.click("#show-api").await;
    let preview = b
        .until(
            "the API request",
            "document.querySelector('#preview').textContent",
        )
        .await;
    let preview = preview.as_str().unwrap();
    assert!(preview.starts_with("POST /api/v1/tasks"), "{preview}");
    assert!(preview.contains("\"max_in_flight\": 32"), "{preview}");
    assert!(preview.contains("\"env\": \"test\""), "{preview}");
    assert!(
        preview.contains("\"connection\": \"dr-target\""),
        "{preview}"
    );
    b.click("#show-toml").await;
    b.until(
        "the TOML",
        "document.querySelector('#preview').textContent.includes('[source]')",
    )
    .await;
    b.tall_shot("02-new-task", 2400).await;
    b.click("#create").await;

    // The precheck fails on the target's key; overwrite fixes it; start.
    b.until(
        "a failing target_keys",
        "document.querySelector('#findings tr[data-item=target_keys][data-result=fail]')",
    )
    .await;
    let id = b
        .until("the task id in the address", "location.hash.split('/')[2]")
        .await
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(state_of(&serve, &id), "precheck_failed");
    let start_disabled =
        b.c.execute("return document.querySelector('#start').disabled;", vec![])
            .await
            .unwrap();
    assert_eq!(
        start_disabled,
        json!(true),
        "start while a failure blocks it"
    );
    b.until(
        "a button to ignore target_keys",
        "document.querySelector('button.ignore[data-item=target_keys]')",
    )
    .await;
    b.shot("03-precheck-failed").await;
    b.click("#overwrite").await;
    b.until(
        "a passing precheck",
        "document.querySelector('#findings tr[data-item=target_keys]:not([data-result=fail])') && !document.querySelector('#start').disabled",
    )
    .await;
    assert_eq!(serve.task(&id)["spec"]["sync"]["on_conflict"], "overwrite");
    assert_eq!(serve.task(&id)["spec"]["target"]["connection"], "dr-target");
    b.shot("04-precheck-passed").await;
    b.click("#start").await;

    // The task page: incremental, with the lag chart drawing the server's samples.
    b.until(
        "the task page in incremental",
        "document.querySelector('#state') && document.querySelector('#state').textContent === 'incremental'",
    )
    .await;
    // The copy counted against the source's key count.
    b.until(
        "keys copied out of the source's keys",
        "(e => e && / of \\d/.test(e.textContent))(document.querySelector('#stat-keys'))",
    )
    .await;
    // Writes go on while the chart fills, so it has something to show.
    let writing = Arc::new(AtomicBool::new(true));
    let writer = {
        let writing = writing.clone();
        let mut conn = source.conn();
        std::thread::spawn(move || {
            let mut i = 0u64;
            while writing.load(Ordering::SeqCst) {
                let _: () = redis::cmd("INCR")
                    .arg(format!("counter:{}", i % 10))
                    .query(&mut conn)
                    .unwrap();
                i += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    b.until(
        "6 points on the lag chart",
        "document.querySelectorAll('svg#lag-chart circle.pt').length >= 6",
    )
    .await;
    writing.store(false, Ordering::SeqCst);
    writer.join().unwrap();
    let mut src = source.conn();
    b.until(
        "points on the latency chart",
        "document.querySelectorAll('svg#latency-chart circle.pt').length >= 1",
    )
    .await;
    b.until(
        "the state timeline",
        "document.querySelector('#timeline').textContent.includes('incremental')",
    )
    .await;
    compare::eventually_equal(&source, &target, &Options::default(), WAIT)
        .unwrap_or_else(|r| panic!("target differs from source: {r:?}"));
    b.tall_shot("05-task-incremental", 1500).await;

    // Pause (after saying what happens to the target), then resume.
    b.click("#pause").await;
    let said = b.text("#confirm-text").await;
    assert!(said.contains("target"), "{said}");
    b.shot("06-confirm-pause").await;
    b.click("#confirm-ok").await;
    b.until(
        "paused",
        "document.querySelector('#state').textContent === 'paused'",
    )
    .await;
    assert_eq!(state_of(&serve, &id), "paused");
    let _: () = redis::cmd("SET")
        .arg("written-while-paused")
        .arg("1")
        .query(&mut src)
        .unwrap();
    b.click("#resume").await;
    b.until(
        "incremental again",
        "document.querySelector('#state').textContent === 'incremental'",
    )
    .await;
    compare::eventually_equal(&source, &target, &Options::default(), WAIT)
        .unwrap_or_else(|r| panic!("target differs from source after resume: {r:?}"));

    // Verify, and read its report.
    b.click("#verify").await;
    b.until(
        "the verify report",
        "document.querySelector('#verify-table')",
    )
    .await;
    let report = b.text("#verify-report").await;
    assert!(report.contains("identical"), "{report}");
    let href =
        b.c.execute("return document.querySelector('#download').href;", vec![])
            .await
            .unwrap();
    assert!(href.as_str().unwrap().starts_with("blob:"), "{href}");
    b.tall_shot("07-task-verified", 1500).await;

    // What the page drew is the server's: its sampled history, and the kept report.
    let history = serve.ok("GET", &format!("/api/v1/tasks/{id}/history"), None);
    let samples = history["samples"].as_array().unwrap();
    assert!(samples.len() >= 6, "{history}");
    assert!(
        samples
            .iter()
            .any(|x| x["state"] == "incremental" && x["lag_s"].is_number()),
        "{history}"
    );
    assert!(
        samples
            .windows(2)
            .all(|w| w[0]["at_ms"].as_u64() < w[1]["at_ms"].as_u64()),
        "{history}"
    );
    let kept = serve.ok("GET", &format!("/api/v1/tasks/{id}/reports/verify"), None);
    assert_eq!(kept["failed"], false, "{kept}");
    assert_eq!(kept["report"][0]["differences"], 0, "{kept}");
    let (code, _) = serve.call("GET", &format!("/api/v1/tasks/{id}/reports/nope"), None);
    assert_eq!(code, 400);
    let doc = serve.ok("GET", "/openapi.json", None);
    assert!(doc["paths"]["/api/v1/tasks/{id}/history"]["get"].is_object());
    assert!(doc["paths"]["/api/v1/tasks/{id}/reports/{kind}"]["get"].is_object());

    // A task that failed: its error is on the list.
    let failing = serve.ok(
        "POST",
        "/api/v1/tasks",
        Some(json!({"source": {"url": source.url()}, "target": {"url": other_target.url()}, "sync": {"name": "fails-on-keys"}, "labels": {"env": "test"}})),
    );
    let failing = failing["task"]["id"].as_str().unwrap().to_string();
    serve.ok("POST", &format!("/api/v1/tasks/{failing}/start"), None);
    serve.wait_state(&failing, "failed");
    serve.ok(
        "POST",
        "/api/v1/alerts",
        Some(json!({"kind": "failed", "webhook_url": "http://127.0.0.1:9/hook", "secret": "console-test-secret"})),
    );
    b.click("a[href='#/tasks']").await;
    b.until(
        "the failed task's error on the list",
        &format!("(r => r && r.querySelector('td.err').textContent.includes('already holds'))(document.querySelector('tr[data-id={failing:?}]'))"),
    )
    .await;
    b.until(
        "the running task on the list",
        &format!("(r => r && r.dataset.state === 'incremental')(document.querySelector('tr[data-id={id:?}]'))"),
    )
    .await;
    b.shot("08-task-list").await;
    b.c.execute(
        "const f = document.querySelector('#state-filter'); f.value = 'failed'; f.dispatchEvent(new Event('change'));",
        vec![],
    )
    .await
    .unwrap();
    b.until(
        "only the failed task",
        "document.querySelectorAll('#task-rows tr').length === 1 && document.querySelector('#task-rows tr').dataset.state === 'failed'",
    )
    .await;

    // The alerts page shows the rule firing for the failed task.
    b.click("a[href='#/alerts']").await;
    b.until(
        "a firing rule",
        "document.querySelector('#alerts .badge') && document.querySelector('#alerts .badge').textContent === 'firing'",
    )
    .await;
    b.shot("09-alerts").await;

    // On a phone's screen.
    b.c.set_window_size(390, 844).await.unwrap();
    b.click("a[href='#/tasks']").await;
    b.until(
        "the list on a phone",
        "document.querySelectorAll('#task-rows tr').length >= 1",
    )
    .await;
    b.c.goto(&format!("{base}/#/task/{id}")).await.unwrap();
    b.until(
        "the task page on a phone",
        "document.querySelectorAll('svg#lag-chart circle.pt').length >= 1",
    )
    .await;
    b.shot("10-task-phone").await;
    b.c.set_window_size(1280, 1000).await.unwrap();

    // Stop, then delete, each after saying what happens to the target.
    b.click("#stop").await;
    let said = b.text("#confirm-text").await;
    assert!(
        said.contains("The target keeps everything copied so far"),
        "{said}"
    );
    b.click("#confirm-ok").await;
    b.until(
        "stopped",
        "document.querySelector('#state').textContent === 'stopped'",
    )
    .await;
    b.click("#delete").await;
    let said = b.text("#confirm-text").await;
    assert!(said.contains("stays there, untouched"), "{said}");
    b.shot("11-confirm-delete").await;
    b.click("#confirm-ok").await;
    b.until(
        "the list without the deleted task",
        &format!("document.querySelector('#task-rows') && !document.querySelector('tr[data-id={id:?}]') && document.querySelector('tr[data-id={failing:?}]')"),
    )
    .await;
    let (code, _) = serve.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 404, "deleted");
    compare::eventually_equal(&source, &target, &Options::default(), WAIT)
        .unwrap_or_else(|r| panic!("the target kept its copy: {r:?}"));

    let errors = b.console_errors(&driver).await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");

    // Sign out: back to the form, and the old cookie no longer reads the API.
    b.click("#signout").await;
    b.until(
        "the sign-in form, without the navigation",
        "document.querySelector('#token') && getComputedStyle(document.querySelector('#top')).display === 'none'",
    )
    .await;
    let (code, _) = raw(&serve.addr, "GET", "/api/v1/tasks", &with_cookie, "").unwrap();
    assert_eq!(code, 401, "a signed-out session");
    let errors = b.console_errors(&driver).await;
    assert!(errors.is_empty(), "the browser logged errors: {errors:#?}");
    b.c.close().await.unwrap();
    eprintln!("console screenshots in {}", shots.display());
}
