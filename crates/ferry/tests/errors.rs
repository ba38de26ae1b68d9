//! Bad input ends in one clear line and a non-zero exit, never a panic.

mod common;

use std::time::Duration;

use common::{Ferry, free_port};
use testkit::Server;

fn fails_with(args: &[&str], expect: &[&str]) -> String {
    let mut ferry = Ferry::start(args);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert!(!code.success(), "ferry should fail; log:\n{log}");
    assert!(!log.contains("panicked"), "ferry panicked:\n{log}");
    let last = log
        .lines()
        .filter(|l| l.starts_with("ferry: "))
        .collect::<Vec<_>>();
    assert_eq!(last.len(), 1, "want exactly one error line, log:\n{log}");
    for e in expect {
        assert!(
            last[0].contains(e),
            "error line {:?} should mention {e:?}",
            last[0]
        );
    }
    last[0].to_string()
}

#[test]
fn wrong_source_password() {
    let source = Server::start_with(&["--requirepass", "right"]);
    let target = Server::start();
    let url = format!("redis://:wrong@{}", source.addr());
    fails_with(
        &["--source", &url, "--target", &target.url()],
        &["source", &source.addr(), "password"],
    );
    // And no password at all.
    fails_with(
        &["--source", &source.url(), "--target", &target.url()],
        &["source", &source.addr(), "requires a password"],
    );
}

#[test]
fn unreachable_hosts() {
    let target = Server::start();
    let nowhere = format!("redis://127.0.0.1:{}", free_port());
    fails_with(
        &["--source", &nowhere, "--target", &target.url()],
        &["cannot connect to source", "refused"],
    );
    let source = Server::start();
    fails_with(
        &["--source", &source.url(), "--target", &nowhere],
        &["cannot connect to target"],
    );
}

#[test]
fn bad_urls_and_config() {
    fails_with(
        &["--source", "localhost:6379", "--target", "redis://x:1"],
        &["write it as redis://localhost:6379"],
    );
    fails_with(
        &[
            "--source",
            "redis://localhost:6379",
            "--target",
            "localhost:6380",
        ],
        &["target URL", "no scheme"],
    );
    fails_with(&["--target", "redis://127.0.0.1:1"], &["no source"]);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ferry.toml");
    std::fs::write(
        &path,
        "[source]\nurl = \"redis://127.0.0.1:1\"\nspeed = 3\n",
    )
    .unwrap();
    fails_with(
        &["--config", path.to_str().unwrap()],
        &["config file", "speed"],
    );
}

#[test]
fn target_that_refuses_writes() {
    let source = Server::start();
    let target = Server::start_with(&["--maxmemory", "2mb", "--maxmemory-policy", "noeviction"]);
    {
        let mut c = source.conn();
        let mut p = redis::pipe();
        for i in 0..20_000 {
            p.cmd("SET")
                .arg(format!("key:{i}"))
                .arg("v".repeat(200))
                .ignore();
        }
        p.query::<()>(&mut c).unwrap();
    }
    fails_with(
        &[
            "--source",
            &source.url(),
            "--target",
            &target.url(),
            "--full-only",
        ],
        &["target", &target.addr(), "OOM", "maxmemory"],
    );
}
