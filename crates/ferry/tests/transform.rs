//! The Lua transform step end to end: the README's three examples through a full and an
//! incremental sync, a kill and restart mid-stream with a script moving keys to another db,
//! and scripts that fail (at load, at run time, running forever, reaching out of the sandbox).
//! The target is compared key by key with what the script makes of the source.

mod common;

use std::collections::HashSet;
use std::time::Duration;

use common::{Ferry, config_file, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, KeyMap, Options};
use testkit::workload::{self, Spec};

/// The Lua examples of the "Transform (Lua)" section of docs/configuration.md, in order, as
/// written there.
fn readme_examples() -> Vec<String> {
    let readme = include_str!("../../../docs/configuration.md");
    let section = readme
        .split("\n## Transform (Lua)")
        .nth(1)
        .expect("docs/configuration.md has a Transform (Lua) section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let examples: Vec<String> = section
        .split("```lua\n")
        .skip(1)
        .map(|block| block.split("```").next().unwrap_or_default().to_string())
        .collect();
    assert_eq!(examples.len(), 3, "the README shows three examples");
    examples
}

fn write_script(dir: &tempfile::TempDir, code: &str) -> String {
    let path = dir.path().join("transform.lua");
    std::fs::write(&path, code).unwrap();
    path.to_str().unwrap().to_string()
}

fn options(map: KeyMap) -> Options {
    // Redis's stream does not carry consumer groups' read counters (its replicas drift too).
    Options {
        group_read_counters: false,
        key_map: Some(map),
        ..Options::default()
    }
}

/// Populates the source, starts ferry with `script` while a workload runs (before, during and
/// after the snapshot), adds a last burst through the stream alone, then compares the target
/// with the source through `map` (made once the source is still). Collections over 500
/// elements (the populated big ones) are written in chunks, which follow the script's
/// decision on their key.
fn sync_through(script: &str, spec: Spec, map: impl FnOnce(&Server) -> KeyMap) -> (Server, Server) {
    let source = Server::start();
    let target = Server::start();
    workload::populate(&source, &spec);
    let background = workload::run_in_background(&source, spec.clone());
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, script);
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--transform",
        &path,
        "--big-value-elements",
        "500",
    ]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let st = ferry.status().unwrap();
    assert!(st["big_keys"].as_u64().unwrap_or(0) > 0, "{st}");
    std::thread::sleep(Duration::from_secs(2));
    background.stop();
    let mut tail = workload::Workload::new(&Spec {
        seed: spec.seed + 1000,
        ..spec.clone()
    });
    tail.run(&source, 2000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let opts = options(map(&source));
    let n = compare::eventually_equal(&source, &target, &opts, Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(n > 1000, "only {n} keys compared");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    (source, target)
}

fn keys_in(server: &Server, db: i64, pattern: &str, kind: Option<&str>) -> Vec<Vec<u8>> {
    let mut conn = server.conn_db(db);
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let mut c = redis::cmd("SCAN");
        c.arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1000);
        if let Some(kind) = kind {
            c.arg("TYPE").arg(kind);
        }
        let (next, batch): (u64, Vec<Vec<u8>>) = c.query(&mut conn).unwrap();
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            return keys;
        }
    }
}

#[test]
fn every_key_under_a_prefix() {
    let script = &readme_examples()[0];
    let spec = Spec {
        seed: 21,
        ..Spec::default()
    };
    let (_source, target) = sync_through(script, spec, |_| {
        KeyMap::new(|db, key| Some((db, [b"eu:".as_slice(), key].concat())))
    });
    // The map found every target key as some source key's image; and there are keys.
    for db in 0..3 {
        assert!(!keys_in(&target, db, "eu:*", None).is_empty(), "db {db}");
    }
}

#[test]
fn streams_left_behind() {
    let script = &readme_examples()[1];
    let spec = Spec {
        seed: 22,
        ..Spec::default()
    };
    let (source, target) = sync_through(script, spec, |source| {
        let streams: HashSet<(i64, Vec<u8>)> = (0..3)
            .flat_map(|db| {
                keys_in(source, db, "*", Some("stream"))
                    .into_iter()
                    .map(move |k| (db, k))
            })
            .collect();
        assert!(
            !streams.is_empty(),
            "the source holds no stream to leave behind"
        );
        KeyMap::new(move |db, key| {
            (!streams.contains(&(db, key.to_vec()))).then(|| (db, key.to_vec()))
        })
    });
    for db in 0..3 {
        assert!(
            keys_in(&target, db, "*", Some("stream")).is_empty(),
            "db {db}"
        );
        assert!(
            !keys_in(&source, db, "*", Some("stream")).is_empty(),
            "db {db}"
        );
    }
}

/// The README's example moves `session:` keys; the workload writes hashes as `wl:h:...`.
fn moving_script() -> String {
    let example = &readme_examples()[2];
    let script = example.replace(
        r#"PREFIX, DB = "session:", 5"#,
        r#"PREFIX, DB = "wl:h:", 5"#,
    );
    assert_ne!(&script, example, "the example's prefix line changed");
    script
}

fn moved(db: i64, key: &[u8]) -> Option<(i64, Vec<u8>)> {
    match key.starts_with(b"wl:h:") {
        true => Some((5, key.to_vec())),
        false => Some((db, key.to_vec())),
    }
}

/// One db: `SWAPDB` and `MOVE` (which the workload issues with several) name dbs, which the
/// example leaves as they are.
fn one_db(seed: u64) -> Spec {
    Spec {
        seed,
        dbs: vec![0],
        keys_per_db: 2000,
        ..Spec::default()
    }
}

#[test]
fn a_prefix_moved_to_another_db() {
    let (source, target) = sync_through(&moving_script(), one_db(23), |_| KeyMap::new(moved));
    assert!(!keys_in(&source, 0, "wl:h:*", None).is_empty());
    assert!(!keys_in(&target, 5, "wl:h:*", None).is_empty());
    assert!(keys_in(&target, 0, "wl:h:*", None).is_empty());
}

/// Killed with SIGKILL while writes flow, with a script moving keys to db 5: each restart
/// continues from the checkpoint, which names the source's db, not the one written into, so
/// nothing lands in the wrong db, and nothing is lost or applied twice.
#[test]
fn killed_mid_stream_with_a_db_moving_script_continues_exactly_once() {
    let source = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let target = Server::start();
    let spec = one_db(24);
    workload::populate(&source, &spec);
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, &moving_script());
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--transform",
        &path,
    ];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(&source, spec.clone());
    for round in 0..3 {
        std::thread::sleep(Duration::from_millis(700));
        ferry.kill();
        std::thread::sleep(Duration::from_millis(300));
        ferry = Ferry::start_with_status(&args);
        ferry.wait_status(Duration::from_secs(60), "the restarted stream", |s| {
            s["phase"] == "incremental"
        });
        assert!(
            ferry
                .log()
                .contains("source continues the stream from the checkpoint"),
            "round {round}:\n{}",
            ferry.log()
        );
    }
    std::thread::sleep(Duration::from_millis(500));
    background.stop();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    compare::eventually_equal(
        &source,
        &target,
        &options(KeyMap::new(moved)),
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(!keys_in(&target, 5, "wl:h:*", None).is_empty());
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// Runs ferry with `script` (and `[transform]` lines) until it exits; its last line.
fn failing(
    script: &str,
    transform: &str,
    after_start: impl FnOnce(&Server, &mut Ferry),
) -> (String, String) {
    let source = Server::start();
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, script);
    let config = config_file(dir.path(), &source.url(), &target.url(), "");
    let config_text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        format!("{config_text}[transform]\nscript = \"{path}\"\n{transform}\n"),
    )
    .unwrap();
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    after_start(&source, &mut ferry);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert_eq!(code.code(), Some(1), "{code}; log:\n{log}");
    let last = log.lines().last().unwrap_or_default().to_string();
    assert!(last.starts_with("ferry: transform script "), "{log}");
    (last, path)
}

/// Nothing to do after the start: the script fails as it loads.
fn at_start(_: &Server, _: &mut Ferry) {}

/// Waits for the stream, then writes `key`, which the script fails on.
fn on_write(key: &'static str) -> impl FnOnce(&Server, &mut Ferry) {
    move |source, ferry| {
        ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
            s["phase"] == "incremental"
        });
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(1)
            .query(&mut source.conn())
            .unwrap();
    }
}

#[test]
fn an_error_in_the_script_stops_the_task_naming_file_and_line() {
    let script = "function transform(e)\n  if e.kind == \"command\" and e.args[1] == \"boom\" then\n    error(\"no boom here\")\n  end\n  return e\nend\n";
    let (last, path) = failing(script, "", on_write("boom"));
    assert!(
        last.starts_with(&format!(
            "ferry: transform script {path}:3: no boom here (in command SET \"boom\" in db 0)"
        )),
        "{last}"
    );
}

#[test]
fn a_syntax_error_stops_the_start_naming_file_and_line() {
    let (last, path) = failing("function transform(e)\n  return e\nen\n", "", at_start);
    assert!(
        last.starts_with(&format!("ferry: transform script {path}:3: 'end' expected")),
        "{last}"
    );
}

#[test]
fn an_endless_loop_is_stopped_by_the_time_limit() {
    let script = "function transform(e)\n  if e.kind == \"command\" and e.args[1] == \"spin\" then\n    while true do end\n  end\n  return e\nend\n";
    let (last, path) = failing(script, "time_limit_ms = 200", on_write("spin"));
    assert!(
        last.starts_with(&format!("ferry: transform script {path}:3: a call ran longer than 200 ms (in command SET \"spin\" in db 0)")),
        "{last}"
    );
}

#[test]
fn files_processes_and_modules_are_out_of_reach() {
    let (last, path) = failing(
        "local f = io.open(\"/etc/passwd\")\nfunction transform(e) return e end\n",
        "",
        at_start,
    );
    assert!(
        last.starts_with(&format!(
            "ferry: transform script {path}:1: io is not available"
        )),
        "{last}"
    );
    let (last, path) = failing(
        "\nlocal json = require(\"cjson\")\nfunction transform(e) return e end\n",
        "",
        at_start,
    );
    assert!(
        last.starts_with(&format!(
            "ferry: transform script {path}:2: require is not available"
        )),
        "{last}"
    );
    let script = "function transform(e)\n  if e.kind == \"command\" then\n    os.execute(\"touch /tmp/ferry-was-here\")\n  end\n  return e\nend\n";
    let (last, path) = failing(script, "", on_write("anything"));
    assert!(
        last.starts_with(&format!(
            "ferry: transform script {path}:3: os is not available"
        )),
        "{last}"
    );
}

/// The same hook serves a cluster target: renamed keys and commands are routed by their new
/// names (other slots than the source's names), multi-key commands split or computed there.
#[test]
fn every_key_under_a_prefix_into_a_cluster() {
    let script = &readme_examples()[0];
    let source = Server::start();
    let target = testkit::Cluster::start(3, 0);
    let spec = Spec {
        seed: 25,
        dbs: vec![0],
        keys_per_db: 1500,
        big_elements: 500,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let background = workload::run_in_background(&source, spec.clone());
    std::thread::sleep(Duration::from_millis(300));
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, script);
    let node = target.urls()[1].clone();
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &node,
        "--transform",
        &path,
    ]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let opts = options(KeyMap::new(|db, key| {
        Some((db, [b"eu:".as_slice(), key].concat()))
    }));
    let n = compare::eventually_equal_sides(
        &compare::Side::from(&source),
        &compare::Side::from(&target),
        &opts,
        Duration::from_secs(60),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(n > 1000, "only {n} keys compared");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
}

/// A snapshot file goes through the same step: every db of it, under the prefix.
#[test]
fn a_snapshot_file_under_a_prefix() {
    let file = common::fixture("redis-rdb-tools/multiple_databases.rdb");
    let (source, _dir) = common::server_loading(&file);
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(&dir, &readme_examples()[0]);
    let mut ferry = Ferry::start(&[
        "--source",
        file.to_str().unwrap(),
        "--target",
        &target.url(),
        "--transform",
        &path,
    ]);
    let code = ferry.wait(Duration::from_secs(60));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    let opts = options(KeyMap::new(|db, key| {
        Some((db, [b"eu:".as_slice(), key].concat()))
    }));
    let n = compare::compare(&source, &target, &opts).unwrap_or_else(|r| panic!("{r}"));
    assert!(n > 0, "no keys compared");
    let dbs: Vec<i64> = (0..16)
        .filter(|&db| !keys_in(&target, db, "eu:*", None).is_empty())
        .collect();
    assert!(dbs.len() > 1, "keys in dbs {dbs:?} only");
}

/// `[filter]` runs before the script: the script sees only what the filter lets through, by its
/// source name, so a prefix filter and a renaming script work together.
#[test]
fn the_filter_runs_before_the_script() {
    let source = Server::start();
    let target = Server::start();
    let set = |key: &str| {
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg("v")
            .query(&mut source.conn())
            .unwrap();
    };
    for key in ["user:1", "user:2", "other:1"] {
        set(key);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = write_script(
        &dir,
        "function transform(entry)\n  if entry.kind == \"key\" then\n    entry.key = \"eu:\" .. entry.key\n  else\n    for _, i in ipairs(entry.keys) do entry.args[i] = \"eu:\" .. entry.args[i] end\n  end\n  return entry\nend\n",
    );
    let mut ferry = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--transform",
        &path,
        "--allow-key-prefix",
        "user:",
    ]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    set("user:3");
    set("other:2");
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let map = KeyMap::new(|db, key| {
        key.starts_with(b"user:")
            .then(|| (db, [&b"eu:"[..], key].concat()))
    });
    compare::eventually_equal(&source, &target, &options(map), Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}
