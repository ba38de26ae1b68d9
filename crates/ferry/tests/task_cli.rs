//! `ferry task ...`: the CLI run as the real binary against a real `ferry serve` (the serving
//! harness), syncing between real redis-servers. A task's whole life through the CLI (create
//! from a TOML file with a password, precheck, start, get, pause, resume, events, follow,
//! verify, stop, delete, list), the data equal key by key, the password never printed; and
//! each way of getting it wrong (a wrong or missing token, no server at the URL, a server that
//! is not ferry serve, a bad file, an unknown task) answered with one line and a non-zero exit.

mod common;
mod serving;

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{equal, get, incr};
use serde_json::Value;
use serving::{PASSWORD, Serve, WAIT};
use testkit::Server;
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};

/// What a `ferry task` run gave back.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", self.stdout, self.stderr))
    }

    /// The one line of a refusal.
    fn error_line(&self) -> &str {
        assert_ne!(self.code, 0, "{}", self.stdout);
        assert!(self.stdout.is_empty(), "{}", self.stdout);
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "not one line: {}", self.stderr);
        assert!(lines[0].starts_with("ferry: "), "{}", self.stderr);
        lines[0]
    }
}

/// Runs `ferry task` against one server, keeping everything it printed.
struct Cli<'a> {
    serve: &'a Serve,
    printed: RefCell<String>,
}

impl Cli<'_> {
    fn new(serve: &Serve) -> Cli<'_> {
        Cli {
            serve,
            printed: RefCell::default(),
        }
    }

    fn server(&self) -> String {
        format!("http://{}", self.serve.addr)
    }

    /// `ferry task ARGS --server URL --data DIR`, FERRY_TOKEN and FERRY_SERVER unset.
    fn command(&self, args: &[&str]) -> Command {
        self.command_at(&self.server(), args)
    }

    /// The same at another server URL.
    fn command_at(&self, server: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
        cmd.arg("task")
            .args(args)
            .arg("--server")
            .arg(server)
            .arg("--data")
            .arg(&self.serve.data)
            .env_remove("FERRY_TOKEN")
            .env_remove("FERRY_SERVER")
            .stdin(Stdio::null());
        cmd
    }

    fn run_command(&self, mut cmd: Command) -> Run {
        let out = cmd.output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        let mut printed = self.printed.borrow_mut();
        printed.push_str(&run.stdout);
        printed.push_str(&run.stderr);
        run
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_command(self.command(args))
    }

    /// A run that must work.
    fn ok(&self, args: &[&str]) -> Run {
        let run = self.run(args);
        assert_eq!(
            run.code,
            0,
            "ferry task {args:?}: {}{}; server log:\n{}",
            run.stdout,
            run.stderr,
            self.serve.log()
        );
        run
    }

    fn task(&self, id: &str) -> Value {
        self.ok(&["get", id, "--json"]).json()
    }

    fn wait_task(&self, id: &str, what: &str, cond: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let task = self.task(id);
            if cond(&task) {
                return task;
            }
            assert!(Instant::now() < deadline, "task {id}: no {what}; {task}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn assert_no_password(&self) {
        assert!(
            !self.printed.borrow().contains(PASSWORD),
            "the CLI printed the password"
        );
        self.serve.assert_no_password();
    }
}

fn write_file(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

/// The server's data dir, apart from the test's files.
fn server_dir(dir: &Path) -> PathBuf {
    let data = dir.join("server");
    std::fs::create_dir(&data).unwrap();
    data
}

/// The lines of a child's stdout, as they come.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// Reads lines until one is an event of this type after `after`; every line read is kept in
/// `seen`.
fn until_event(
    lines: &mpsc::Receiver<String>,
    kind: &str,
    after: i64,
    seen: &mut Vec<Value>,
) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no {kind} event followed; got {seen:?}"));
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{line}"));
        seen.push(event.clone());
        if event["type"] == kind && event["seq"].as_i64().unwrap() > after {
            return event;
        }
    }
}

#[test]
fn a_task_lives_through_the_cli_without_printing_its_password() {
    let source = Server::start_with(&["--requirepass", PASSWORD]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 11,
            keys_per_db: 200,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&server_dir(dir.path()));
    let cli = Cli::new(&serve);
    let file = write_file(
        dir.path(),
        "task.toml",
        &format!(
            "[source]\nurl = \"redis://:{PASSWORD}@{}\"\n\n[target]\nurl = \"{}\"\n",
            source.addr(),
            target.url()
        ),
    );
    let file = file.to_str().unwrap();

    // Created from the file: the server has the password (it prechecks and syncs with it), the
    // answer shows the URL without it.
    let created = cli
        .ok(&["create", "-c", file, "--label", "env=test", "--json"])
        .json();
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["task"]["state"], "created", "{created}");
    assert_eq!(
        created["task"]["spec"]["source"]["url"],
        format!("redis://{}", source.addr())
    );
    assert_eq!(created["task"]["labels"]["env"], "test");

    let checked = cli.ok(&["precheck", &id]);
    assert!(
        checked.stdout.contains(&format!("task {id} is ready")),
        "{}",
        checked.stdout
    );
    assert!(checked.stdout.contains("ITEM"), "{}", checked.stdout);
    let started = cli.ok(&["start", &id]);
    assert!(started.stdout.starts_with("ID "), "{}", started.stdout);
    assert!(started.stdout.contains(&id), "{}", started.stdout);
    cli.wait_task(&id, "incremental state", |t| t["state"] == "incremental");
    let (source_side, target_side) = (
        Side::standalone(&source.addr(), Some(PASSWORD)),
        Side::standalone(&target.addr(), None),
    );
    equal(&source_side, &target_side);
    let (mut src, mut dst) = (source.conn(), target.conn());
    incr(&mut src, "counter", 100);
    equal(&source_side, &target_side);

    // The table: the task's state and servers, the source without its password.
    let shown = cli.ok(&["get", &id]).stdout;
    for want in [
        format!("id        {id}"),
        "incremental since".to_string(),
        format!("source    redis://{}", source.addr()),
        format!("target    {}", target.url()),
        "labels    env=test".to_string(),
        "precheck  passed at".to_string(),
    ] {
        assert!(shown.contains(&want), "no {want:?} in:\n{shown}");
    }

    // Paused: the source's writes reach ferry but not the target.
    let paused = cli.ok(&["pause", &id]);
    assert!(paused.stdout.contains("paused"), "{}", paused.stdout);
    incr(&mut src, "while-paused", 30);
    let written = common::master_offset(&source);
    let task = cli.wait_task(&id, "the paused writes read from the source", |t| {
        t["status"]["source_offset"].as_u64().unwrap_or(0) >= written
    });
    assert_eq!(task["state"], "paused");
    assert!(
        task["status"]["applied_offset"].as_u64().unwrap() < written,
        "{task}"
    );
    assert_eq!(get(&mut dst, "while-paused"), None);
    let resumed = cli.ok(&["resume", &id]);
    assert!(!resumed.stdout.contains("paused"), "{}", resumed.stdout);
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "while-paused"), Some(30));
    assert_eq!(get(&mut dst, "counter"), Some(100));

    // The history: as a table, and as JSON lines in order.
    let table = cli.ok(&["events", &id]).stdout;
    for want in ["created", "ready", "paused", "resumed", "precheck_report"] {
        assert!(table.contains(want), "no {want} in:\n{table}");
    }
    let events: Vec<Value> = cli
        .ok(&["events", &id, "--json"])
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // The table's rows are those events (the JSON, asked for later, may have more).
    let rows: Vec<i64> = table
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(seqs[..rows.len()], rows[..], "{table}");
    let last = *seqs.last().unwrap();
    let later = cli.ok(&["events", &id, "--json", "--after", &last.to_string()]);
    for line in later.stdout.lines() {
        let e: Value = serde_json::from_str(line).unwrap();
        assert!(e["seq"].as_i64().unwrap() > last, "{line}");
    }

    // Followed: what happens after the history, as it happens.
    let mut follow = cli.command(&["events", &id, "--follow", "--json"]);
    follow.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = follow.spawn().unwrap();
    let lines = lines_of(&mut child);
    let mut followed = Vec::new();
    cli.ok(&["pause", &id]);
    until_event(&lines, "paused", last, &mut followed);
    cli.ok(&["resume", &id]);
    until_event(&lines, "resumed", last, &mut followed);
    // The history first, then the new events, each once.
    let followed_seqs: Vec<i64> = followed
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(followed_seqs[..seqs.len()], seqs[..], "{followed:?}");
    assert!(
        followed_seqs.windows(2).all(|w| w[0] < w[1]),
        "{followed_seqs:?}"
    );
    let _ = child.kill();
    let _ = child.wait();
    cli.printed
        .borrow_mut()
        .push_str(&serde_json::to_string(&followed).unwrap());

    // Listed, with and without the label filter.
    let listed = cli.ok(&["list"]).stdout;
    assert!(listed.starts_with("ID "), "{listed}");
    assert!(
        listed.contains(&id) && listed.contains("env=test"),
        "{listed}"
    );
    let listed = cli.ok(&["list", "--label", "env=test", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    let listed = cli.ok(&["list", "--label", "env=prod", "--json"]).json();
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");

    let verified = cli.ok(&["verify", &id]);
    assert!(
        verified.stdout.contains("the targets equal the source"),
        "{}",
        verified.stdout
    );

    // A running task is not deleted: the server's message, one line.
    let refused = cli.run(&["delete", &id]);
    assert_eq!(refused.code, 1);
    assert!(refused.error_line().contains("stop"), "{}", refused.stderr);

    let stopped = cli.ok(&["stop", &id, "--json"]).json();
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    equal(&source_side, &target_side);
    let deleted = cli.ok(&["delete", &id]);
    assert_eq!(deleted.stdout, format!("task {id} deleted\n"));
    let gone = cli.run(&["get", &id]);
    assert_eq!(gone.code, 1);
    assert!(
        gone.error_line().contains("no task with id"),
        "{}",
        gone.stderr
    );
    let listed = cli.ok(&["list", "--json"]).json();
    assert_eq!(listed, Value::Array(vec![]));

    cli.assert_no_password();
}

#[test]
fn each_mistake_is_one_clear_line_and_a_failing_exit() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&server_dir(dir.path()));
    let cli = Cli::new(&serve);
    let target = Server::start();

    // A wrong token from FERRY_TOKEN, then from a file: each named.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["task", "list", "--server", &cli.server()])
        .env("FERRY_TOKEN", "not-the-token")
        .env_remove("FERRY_SERVER");
    let wrong = cli.run_command(cmd);
    assert_eq!(wrong.code, 1);
    let line = wrong.error_line();
    assert!(
        line.contains("refused the API token") && line.contains("FERRY_TOKEN"),
        "{line}"
    );
    let token_file = write_file(dir.path(), "token", "not-the-token\n");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["task", "list", "--server", &cli.server(), "--token-file"])
        .arg(&token_file)
        .env_remove("FERRY_TOKEN");
    let wrong = cli.run_command(cmd);
    assert_eq!(wrong.code, 1);
    let line = wrong.error_line();
    assert!(
        line.contains("refused the API token") && line.contains(token_file.to_str().unwrap()),
        "{line}"
    );
    // The right one from FERRY_TOKEN, the server from FERRY_SERVER.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["task", "list", "--json"])
        .env("FERRY_TOKEN", &serve.token)
        .env("FERRY_SERVER", cli.server());
    let listed = cli.run_command(cmd);
    assert_eq!(listed.code, 0, "{}", listed.stderr);
    assert_eq!(listed.json(), Value::Array(vec![]));

    // No token file where --data says.
    let missing = dir.path().join("nowhere");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ferry"));
    cmd.args(["task", "list", "--server", &cli.server(), "--data"])
        .arg(&missing)
        .env_remove("FERRY_TOKEN");
    let run = cli.run_command(cmd);
    assert_eq!(run.code, 1);
    let line = run.error_line();
    assert!(
        line.contains(&missing.join("api-token").display().to_string()) && line.contains("--data"),
        "{line}"
    );

    // No server at the URL (a closed port on loopback), and a URL that is not one.
    let closed = format!("http://127.0.0.1:{}", common::free_port());
    let run = cli.run_command(cli.command_at(&closed, &["list"]));
    assert_eq!(run.code, 1);
    let line = run.error_line();
    assert!(
        line.contains(&format!("cannot reach ferry serve at {closed}"))
            && line.contains("--server"),
        "{line}"
    );
    let run = cli.run_command(cli.command_at(&closed, &["verify", "t-1"]));
    assert_eq!(run.code, 2, "verify: 2 when it could not tell");
    // A server that does not speak HTTP (a redis-server).
    let run = cli.run_command(cli.command_at(&format!("http://{}", target.addr()), &["list"]));
    assert_eq!(run.code, 1);
    let line = run.error_line();
    assert!(
        line.contains("is --server the address of ferry serve"),
        "{line}"
    );
    let line = cli
        .run_command(cli.command_at("127.0.0.1:8480", &["list"]))
        .error_line()
        .to_string();
    assert!(line.contains("not an http:// or https:// URL"), "{line}");

    // A file that is not a task's settings: named with its line, nothing created.
    let bad = write_file(
        dir.path(),
        "bad.toml",
        "[source]\nurl = \"redis://127.0.0.1:1\"\nspeed = 3\n",
    );
    let run = cli.run(&["create", "-c", bad.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    let line = run.error_line();
    assert!(
        line.contains("bad.toml at line") && line.contains("speed"),
        "{line}"
    );
    let run = cli.run(&["create", "-c", "/nonexistent/task.toml"]);
    assert!(run.error_line().contains("/nonexistent/task.toml"));
    // One the server refuses: its own message.
    let no_target = write_file(
        dir.path(),
        "no-target.toml",
        &format!("[target]\nurl = \"{}\"\n", target.url()),
    );
    let run = cli.run(&["create", "-c", no_target.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.error_line().contains("source"), "{}", run.stderr);
    assert_eq!(cli.ok(&["list", "--json"]).json(), Value::Array(vec![]));

    // A precheck that fails (no source on the closed port): the table and exit 1; `create
    // --start` keeps the task but does not start it.
    let unreachable = write_file(
        dir.path(),
        "unreachable.toml",
        &format!(
            "[source]\nurl = \"redis://127.0.0.1:{}\"\n[target]\nurl = \"{}\"\n",
            common::free_port(),
            target.url()
        ),
    );
    let run = cli.run(&["create", "-c", unreachable.to_str().unwrap(), "--start"]);
    assert_eq!(run.code, 1);
    let line = run.error_line();
    assert!(line.contains("precheck failed"), "{line}");
    let listed = cli.ok(&["list", "--json"]).json();
    let id = listed[0]["id"].as_str().unwrap().to_string();
    assert_eq!(listed[0]["state"], "precheck_failed", "{listed}");
    let run = cli.run(&["precheck", &id]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("fail"), "{}", run.stdout);
    assert!(
        run.stdout
            .contains(&format!("task {id} is precheck_failed")),
        "{}",
        run.stdout
    );
    let run = cli.run(&["start", &id]);
    assert!(
        run.error_line().contains("precheck failed"),
        "{}",
        run.stderr
    );

    // An unknown task.
    let run = cli.run(&["pause", "t-nope"]);
    assert!(
        run.error_line().contains("no task with id"),
        "{}",
        run.stderr
    );
}

#[test]
fn files_the_task_names_are_found_where_the_cli_runs() {
    let fixture = common::fixture("redis-rdb-tools/multiple_databases.rdb");
    let (loaded, _copy) = common::server_loading(&fixture);
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(&server_dir(dir.path()));
    let cli = Cli::new(&serve);
    // A relative path, as `ferry sync --config` takes it: from the directory it runs in (the
    // server runs elsewhere).
    let here = dir.path().join("here");
    std::fs::create_dir(&here).unwrap();
    std::fs::copy(&fixture, here.join("dump.rdb")).unwrap();
    write_file(
        &here,
        "task.toml",
        &format!(
            "[source]\nurl = \"dump.rdb\"\n[target]\nurl = \"{}\"\n",
            target.url()
        ),
    );
    let mut create = cli.command(&["create", "-c", "task.toml", "--start", "--json"]);
    create.current_dir(&here);
    let created = cli.run_command(create);
    assert_eq!(created.code, 0, "{}{}", created.stdout, created.stderr);
    let created = created.json();
    let id = created["task"]["id"].as_str().unwrap();
    assert_eq!(
        created["task"]["spec"]["source"]["url"],
        here.join("dump.rdb").to_str().unwrap()
    );
    cli.wait_task(id, "finished state", |t| t["state"] == "finished");
    let report = compare::compare_sides(
        &Side::standalone(&loaded.addr(), None),
        &Side::standalone(&target.addr(), None),
        &Options::default(),
    );
    let keys = report.unwrap_or_else(|r| panic!("target differs from the file: {r:?}"));
    assert!(keys > 0);
}
