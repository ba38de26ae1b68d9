//! Logins without passwords on the command line (`password_file`, `password_env`,
//! `REDISCLI_AUTH`), passwords never shown, and least privilege: the `ACL SETUSER` lines
//! `ferry check` prints are all a sync needs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use serde_json::Value;
use testkit::compare::Side;
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

const SOURCE_SECRET: &str = "src-Secret-7f3a9c";
const TARGET_SECRET: &str = "dst-Secret-51be2d";

fn ferry(args: &[&str], envs: &[(&str, &str)]) -> Output {
    // Its data directory (a sync's spool) goes in a temp dir of its own.
    let dir = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
    command
        .args(args)
        .env_remove("REDISCLI_AUTH")
        .current_dir(dir.path());
    for (k, v) in envs {
        command.env(k, v);
    }
    command.output().unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Fails naming where a secret showed.
fn hidden(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        assert!(
            !text.contains(secret),
            "{what} shows the password {secret:?}:\n{text}"
        );
    }
}

/// A `ferry sync` in the background with its own environment, its output in files.
struct Running {
    child: Child,
    dir: tempfile::TempDir,
    status_addr: String,
}

impl Running {
    fn start(args: &[&str], envs: &[(&str, &str)]) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let status_addr = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry"));
        command
            .arg("sync")
            .args(args)
            .args(["--status-addr", &status_addr])
            .env_remove("REDISCLI_AUTH")
            // Every log line there is, to grep them all.
            .env("FERRY_LOG", "debug")
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(dir.path().join("out")).unwrap())
            .stderr(std::fs::File::create(dir.path().join("err")).unwrap());
        for (k, v) in envs {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        Running {
            child,
            dir,
            status_addr,
        }
    }

    fn output(&self) -> String {
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap();
        format!("{}{}", read("out"), read("err"))
    }

    fn status_text(&self) -> Option<String> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.status_addr).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET /status HTTP/1.0\r\nHost: {}\r\n\r\n",
            self.status_addr
        )
        .ok()?;
        let mut text = String::new();
        s.read_to_string(&mut text).ok()?;
        Some(text.split("\r\n\r\n").nth(1)?.to_string())
    }

    /// Polls the status until the stream is applied up to the source's offset.
    fn caught_up(&mut self, source: &Server) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let want: u64 = source.info("replication")["master_repl_offset"]
                .parse()
                .unwrap();
            if let Some(body) = self.status_text()
                && let Ok(st) = serde_json::from_str::<Value>(&body)
                && st["phase"] == "incremental"
                && st["applied_offset"].as_u64().unwrap_or(0) >= want
            {
                return body;
            }
            if let Some(code) = self.child.try_wait().unwrap() {
                panic!("ferry exited ({code}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "not caught up in time:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Polls the status until the task follows the stream.
    fn incremental(&mut self) -> String {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(body) = self.status_text()
                && let Ok(st) = serde_json::from_str::<Value>(&body)
                && st["phase"] == "incremental"
            {
                return body;
            }
            if let Some(code) = self.child.try_wait().unwrap() {
                panic!("ferry exited ({code}):\n{}", self.output());
            }
            assert!(
                Instant::now() < deadline,
                "not incremental in time:\n{}",
                self.output()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What `ps` shows of the process: its command line.
    fn ps_args(&self) -> String {
        let out = Command::new("ps")
            .args(["-ww", "-o", "args=", "-p", &self.child.id().to_string()])
            .output()
            .unwrap();
        let args = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(args.contains("sync"), "ps did not show ferry: {args:?}");
        args
    }

    fn stop(mut self) -> String {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "ferry did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
        self.output()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn secret_file(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// Redis's replication stream does not carry consumer groups' read counters (its own
/// replicas drift there too); everything else must match.
fn stream_opts() -> Options {
    Options {
        group_read_counters: false,
        ..Options::default()
    }
}

fn small(seed: u64) -> Spec {
    Spec {
        seed,
        keys_per_db: 200,
        big_elements: 300,
        ..Spec::default()
    }
}

#[test]
fn passwords_from_a_file_and_the_environment_show_nowhere() {
    let source = Server::start_with(&["--requirepass", SOURCE_SECRET]);
    let target = Server::start_with(&["--requirepass", TARGET_SECRET]);
    workload::populate(&source, &small(1));
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "source.pw", SOURCE_SECRET);
    let file = file.to_str().unwrap();
    let env = [("FERRY_TEST_TARGET_PW", TARGET_SECRET)];
    let secrets = [SOURCE_SECRET, TARGET_SECRET];
    let login = [
        "--source",
        &source.url(),
        "--source-password-file",
        file,
        "--target",
        &target.url(),
        "--target-password-env",
        "FERRY_TEST_TARGET_PW",
    ];

    let check = ferry(&[&["check"][..], &login].concat(), &env);
    assert!(check.status.success(), "{}", text(&check));
    hidden("ferry check", &text(&check), &secrets);
    let json = ferry(&[&["check", "--json"][..], &login].concat(), &env);
    assert!(json.status.success(), "{}", text(&json));
    hidden("ferry check --json", &text(&json), &secrets);

    let background = workload::run_in_background(&source, small(2));
    let mut sync = Running::start(&login, &env);
    std::thread::sleep(Duration::from_millis(500));
    background.stop();
    let status = sync.caught_up(&source);
    hidden("GET /status", &status, &secrets);
    hidden("ps", &sync.ps_args(), &secrets);
    compare::eventually_equal(&source, &target, &stream_opts(), Duration::from_secs(30))
        .unwrap_or_else(|r| panic!("{r}"));
    let verify = ferry(&[&["verify"][..], &login].concat(), &env);
    assert!(verify.status.success(), "{}", text(&verify));
    hidden("ferry verify", &text(&verify), &secrets);
    let output = sync.stop();
    assert!(
        output.contains("DEBUG") || output.contains("INFO"),
        "{output}"
    );
    hidden("ferry sync's output", &output, &secrets);

    // Refusals name what is wrong, not the password.
    let wrong = secret_file(dir.path(), "wrong.pw", "not-the-Secret-9d1");
    let out = ferry(
        &[
            "sync",
            "--source",
            &source.url(),
            "--source-password-file",
            wrong.to_str().unwrap(),
            "--target",
            &target.url(),
            "--target-password-env",
            "FERRY_TEST_TARGET_PW",
        ],
        &env,
    );
    assert!(!out.status.success());
    let said = text(&out);
    assert!(said.contains("rejected the login"), "{said}");
    hidden(
        "a wrong password's error",
        &said,
        &["not-the-Secret-9d1", TARGET_SECRET],
    );
    // A URL the parser refuses is quoted without its password.
    let bad = format!("redis://:{SOURCE_SECRET}@127.0.0.1:99999");
    let out = ferry(&["check", "--source", &bad, "--target", &target.url()], &[]);
    let said = text(&out);
    assert!(
        !out.status.success() && said.contains("source URL"),
        "{said}"
    );
    hidden("a bad URL's error", &said, &secrets);
}

#[test]
fn rediscli_auth_serves_both_sides_when_nothing_else_is_given() {
    let shared = "shared-Secret-0c44";
    let source = Server::start_with(&["--requirepass", shared]);
    let target = Server::start_with(&["--requirepass", shared]);
    workload::populate(&source, &small(3));
    let args = [
        "sync",
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-only",
    ];
    let out = ferry(&args, &[("REDISCLI_AUTH", shared)]);
    assert!(out.status.success(), "{}", text(&out));
    hidden("ferry sync", &text(&out), &[shared]);
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    // Without it, the error says where a password can come from.
    let out = ferry(&args, &[]);
    let said = text(&out);
    assert!(
        !out.status.success()
            && said.contains("requires a password")
            && said.contains("password_file"),
        "{said}"
    );
}

#[test]
fn password_settings_that_clash_or_lead_nowhere_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = secret_file(dir.path(), "pw", "file-Secret-aa01");
    let file = file.to_str().unwrap();
    let missing = dir.path().join("missing.pw");
    let empty = secret_file(dir.path(), "empty.pw", "");
    let url_pw = "url-Secret-bb02";
    let source_url = format!("redis://:{url_pw}@127.0.0.1:{}", free_port());
    let target = format!("redis://127.0.0.1:{}", free_port());
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--source", &source_url, "--source-password-file", file],
            "[source] gives its password twice, as a password in the URL and as password_file",
        ),
        (
            vec![
                "--source",
                &target,
                "--source-password-env",
                "FERRY_TEST_UNSET_VAR",
            ],
            "[source] password_env names FERRY_TEST_UNSET_VAR, which is not set",
        ),
        (
            vec![
                "--source",
                &target,
                "--source-password-file",
                missing.to_str().unwrap(),
            ],
            "cannot read it",
        ),
        (
            vec![
                "--source",
                &target,
                "--source-password-file",
                empty.to_str().unwrap(),
            ],
            "is empty",
        ),
        (
            vec!["--source", &target, "--source-user", "alice"],
            "[source] sets user = \"alice\" but no password",
        ),
    ];
    // A file others may read is used, with a warning.
    let shared = dir.path().join("shared.pw");
    std::fs::write(&shared, "shared-Secret-cc03\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = ferry(
            &[
                "check",
                "--source",
                &target,
                "--source-password-file",
                shared.to_str().unwrap(),
                "--target",
                &format!("redis://127.0.0.1:{}", free_port()),
            ],
            &[],
        );
        let said = text(&out);
        assert!(
            said.contains("can be read by other users (mode 644); chmod 600 it"),
            "{said}"
        );
        hidden("the warning", &said, &["shared-Secret-cc03"]);
    }
    for (mut args, want) in cases {
        args.splice(0..0, ["check"]);
        let port = free_port().to_string();
        let other = format!("redis://127.0.0.1:{port}");
        args.extend(["--target", &other]);
        let out = ferry(&args, &[]);
        let said = text(&out);
        assert!(!out.status.success(), "{args:?}: {said}");
        assert!(said.contains(want), "{args:?}: wanted {want:?} in {said}");
        assert_eq!(said.trim().lines().count(), 1, "one line: {said}");
        hidden("a refusal", &said, &["file-Secret-aa01", url_pw]);
    }
}

/// The `ACL SETUSER` lines under `ferry check`'s table, by label.
fn acl_lines(table: &str) -> Vec<(String, String)> {
    let start = table
        .find("Least privilege")
        .unwrap_or_else(|| panic!("no ACL lines in:\n{table}"));
    table[start..]
        .lines()
        .skip(1)
        .filter_map(|l| l.trim().split_once(": ACL SETUSER "))
        .map(|(label, rest)| (label.to_string(), format!("ACL SETUSER {rest}")))
        .collect()
}

fn run_line(server: &Server, line: &str, password: &str) {
    let line = line.replace(">PASSWORD", &format!(">{password}"));
    let words: Vec<&str> = line.split(' ').collect();
    let _: () = redis::cmd(words[0])
        .arg(&words[1..])
        .query(&mut server.conn())
        .unwrap_or_else(|e| panic!("{line}: {e}"));
}

fn acl_log(server: &Server) -> Vec<redis::Value> {
    redis::cmd("ACL")
        .arg("LOG")
        .query(&mut server.conn())
        .unwrap()
}

/// The output of a sync that must end on its own, with exit code 1.
fn wait_refusal(mut sync: Running) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(code) = sync.child.try_wait().unwrap() {
            assert_eq!(code.code(), Some(1), "{}", sync.output());
            return sync.output();
        }
        assert!(Instant::now() < deadline, "sync did not refuse");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_printed_acl_lines_are_all_a_sync_needs() {
    // The default user keeps a password of its own (for the test's own reads); ferry logs in
    // as users made from the printed lines, and nothing else.
    let source = Server::start_with(&["--requirepass", "admin"]);
    let target = Server::start_with(&["--requirepass", "admin"]);
    if source.version().0 < 7 {
        eprintln!("skipped: ACL DRYRUN needs Redis 7");
        return;
    }
    workload::populate(&source, &small(4));
    let dir = tempfile::tempdir().unwrap();
    let source_pw = secret_file(dir.path(), "source.pw", SOURCE_SECRET);
    let target_pw = secret_file(dir.path(), "target.pw", TARGET_SECRET);
    let login = [
        "--source",
        &source.url(),
        "--source-user",
        "ferry",
        "--source-password-file",
        source_pw.to_str().unwrap(),
        "--target",
        &target.url(),
        "--target-user",
        "ferry",
        "--target-password-file",
        target_pw.to_str().unwrap(),
    ];
    // Before the users exist the login fails, but the lines are printed all the same.
    let before = ferry(&[&["check"][..], &login].concat(), &[]);
    assert!(!before.status.success());
    let lines = acl_lines(&String::from_utf8_lossy(&before.stdout));
    assert_eq!(
        lines.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        ["source", "target"],
        "{lines:?}"
    );
    let (source_line, target_line) = (lines[0].1.clone(), lines[1].1.clone());
    assert!(source_line.starts_with("ACL SETUSER ferry reset on >PASSWORD "));
    assert!(
        !source_line.contains("~*"),
        "the source's keys stay closed: {source_line}"
    );

    // One user missing one command: the item fails naming it, and the fix is the line.
    let short = source_line.replace(" +psync", "");
    run_line(&source, &short, SOURCE_SECRET);
    run_line(&target, &target_line, TARGET_SECRET);
    let (code, findings) = common::check_json(&login);
    assert_eq!(code, 1, "{findings:#?}");
    let repl = findings
        .iter()
        .find(|f| f["item"] == "source_replication")
        .unwrap();
    assert_eq!(repl["result"], "fail", "{repl:#}");
    assert!(
        repl["found"].as_str().unwrap().contains("psync"),
        "{repl:#}"
    );
    assert!(
        repl["fix"].as_str().unwrap().contains(&source_line),
        "{repl:#}"
    );
    let said = wait_refusal(Running::start(&login, &[]));
    let line = said
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or("");
    assert!(
        line.contains("psync") && line.contains(&source_line),
        "{said}"
    );

    // A right the precheck does not ask about, refused while syncing: the error names the
    // command and the line.
    run_line(&source, &source_line, SOURCE_SECRET);
    run_line(&target, &target_line.replace(" +role", ""), TARGET_SECRET);
    let said = wait_refusal(Running::start(&login, &[]));
    let line = said
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or("");
    assert!(
        line.contains("'role'")
            && line.ends_with(&format!("all ferry needs on the target: {target_line}")),
        "{said}"
    );

    // With the whole lines: every item passes, and the sync runs end to end.
    run_line(&target, &target_line, TARGET_SECRET);
    let (code, findings) = common::check_json(&login);
    assert_eq!(code, 0, "{findings:#?}");
    for f in &findings {
        assert_eq!(f["result"], "pass", "{f:#}");
    }
    let repl = findings
        .iter()
        .find(|f| f["item"] == "source_replication")
        .unwrap();
    assert_eq!(repl["acl"], source_line.as_str(), "{repl:#}");
    let write = findings
        .iter()
        .find(|f| f["item"] == "target_write")
        .unwrap();
    assert_eq!(write["acl"], target_line.as_str(), "{write:#}");
    let _: () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query(&mut source.conn())
        .unwrap();
    let _: () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query(&mut target.conn())
        .unwrap();
    let background = workload::run_in_background(&source, small(5));
    let mut sync = Running::start(&login, &[]);
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    sync.caught_up(&source);
    // Writes after the copy travel the stream alone.
    workload::Workload::new(&small(6)).run(&source, 2000);
    sync.caught_up(&source);
    compare::eventually_equal(&source, &target, &stream_opts(), Duration::from_secs(30))
        .unwrap_or_else(|r| panic!("{r}\n{}", sync.output()));
    let output = sync.stop();
    assert!(
        acl_log(&source).is_empty() && acl_log(&target).is_empty(),
        "refused: {:?} {:?}\n{output}",
        acl_log(&source),
        acl_log(&target)
    );
    hidden(
        "ferry sync's output",
        &output,
        &[SOURCE_SECRET, TARGET_SECRET],
    );
}

/// On clusters the lines go on every node, and the login from the environment reaches every
/// node ferry talks to.
#[test]
fn the_acl_lines_and_the_login_serve_every_node_of_a_cluster() {
    let args = ["--requirepass", "admin", "--repl-diskless-sync-delay", "0"];
    let source = Cluster::start_with(3, 0, &args);
    let target = Cluster::start_with(3, 0, &args);
    if source.nodes()[0].version().0 < 7 {
        eprintln!("skipped: ACL DRYRUN needs Redis 7");
        return;
    }
    let spec = Spec {
        dbs: vec![0],
        ..small(7)
    };
    workload::populate_cluster(&source, &spec);
    let env = [
        ("FERRY_TEST_SOURCE_PW", SOURCE_SECRET),
        ("FERRY_TEST_TARGET_PW", TARGET_SECRET),
    ];
    let login = [
        "--source",
        &source.url(),
        "--source-user",
        "ferry",
        "--source-password-env",
        "FERRY_TEST_SOURCE_PW",
        "--target",
        &target.url(),
        "--target-user",
        "ferry",
        "--target-password-env",
        "FERRY_TEST_TARGET_PW",
    ];
    let before = ferry(&[&["check"][..], &login].concat(), &env);
    let lines = acl_lines(&String::from_utf8_lossy(&before.stdout));
    for node in source.nodes() {
        run_line(node, &lines[0].1, SOURCE_SECRET);
    }
    for node in target.nodes() {
        run_line(node, &lines[1].1, TARGET_SECRET);
    }
    // The first check's refused logins (the users did not exist yet) are not the sync's.
    for node in source.nodes().iter().chain(target.nodes()) {
        let _: () = redis::cmd("ACL")
            .arg("LOG")
            .arg("RESET")
            .query(&mut node.conn())
            .unwrap();
    }
    let out = ferry(&[&["check", "--json"][..], &login].concat(), &env);
    let findings: Vec<Value> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    assert!(out.status.success(), "{findings:#?}");
    for f in &findings {
        assert_eq!(f["result"], "pass", "{f:#}");
    }
    hidden("ferry check", &text(&out), &[SOURCE_SECRET, TARGET_SECRET]);
    let background = workload::run_in_background_cluster(&source, spec.clone());
    let mut sync = Running::start(&login, &env);
    let status = sync.incremental();
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    let sides = |c: &Cluster| Side::cluster(&c.addrs(), Some("admin"));
    compare::eventually_equal_sides(
        &sides(&source),
        &sides(&target),
        &stream_opts(),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\n{}", sync.output()));
    let output = sync.stop();
    for node in source.nodes().iter().chain(target.nodes()) {
        assert!(
            acl_log(node).is_empty(),
            "{} refused: {:?}\n{output}",
            node.addr(),
            acl_log(node)
        );
    }
    hidden(
        "status and output",
        &format!("{status}{output}"),
        &[SOURCE_SECRET, TARGET_SECRET],
    );
}
