//! `ferry serve` run as the real binary on a free loopback port, with a small HTTP/1.1 client
//! of its API (no client library: the test sees exactly the bytes the server sends).

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::free_port;

pub const PASSWORD: &str = "s3cret-serve-pw";
pub const WAIT: Duration = Duration::from_secs(120);

/// A `ferry serve` process on a free loopback port, with its data dir.
pub struct Serve {
    child: Option<Child>,
    pub addr: String,
    pub data: PathBuf,
    log: PathBuf,
    pub token: String,
    /// Every response body seen, to look for passwords in.
    pub seen: std::cell::RefCell<String>,
}

impl Serve {
    pub fn start(data: &Path) -> Serve {
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

    pub fn spawn(&mut self) {
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

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, and wait for a clean exit.
    pub fn terminate(&mut self) {
        let mut child = self.child.take().unwrap();
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        assert!(status.success(), "{status}; log:\n{}", self.log());
    }

    pub fn try_call(
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
    pub fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
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

    pub fn ok(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let (code, json) = self.call(method, path, body);
        assert!(
            (200..300).contains(&code),
            "{method} {path}: {code} {json}; log:\n{}",
            self.log()
        );
        json
    }

    pub fn task(&self, id: &str) -> Value {
        self.ok("GET", &format!("/api/v1/tasks/{id}"), None)
    }

    pub fn wait_task(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
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

    pub fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_task(id, state, |t| t["state"] == state)
    }

    /// Every event of a task, through the pages.
    pub fn events(&self, id: &str) -> Vec<Value> {
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
    pub fn assert_no_password(&self) {
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
