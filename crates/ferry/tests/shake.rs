//! RedisShake configs: `ferry sync --config shake.toml` runs them against real servers (the
//! target compared key by key with what the config asks for), settings ferry cannot honour are
//! refused in one line, and `ferry config convert` prints a ferry config that reads back as
//! the same task as the direct mapping. The configs are our own, written with the keys of
//! RedisShake's example files.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Ferry, fixture, server_loading, wait_caught_up};
use ferry_engine::spec::TaskSpec;
use ferry_engine::spec::shake;
use testkit::compare::{self, KeyFilter, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_string()
}

/// `ferry config convert FILE`: exit code, stdout, stderr.
fn convert(file: &str, env: &[(&str, &str)]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["config", "convert", file])
        .envs(env.iter().copied())
        .output()
        .unwrap();
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

/// The converted config read back by ferry is the task the direct mapping gives.
fn assert_converts_to_the_same_task(file: &str) -> String {
    let (code, out, err) = convert(file, &[]);
    assert_eq!(code, 0, "{err}\n{out}");
    let direct = shake::convert(&std::fs::read_to_string(file).unwrap(), &|_| None)
        .unwrap()
        .spec;
    let back = TaskSpec::from_toml(&out).unwrap_or_else(|e| panic!("{e}\n{out}"));
    assert_eq!(back, direct, "{out}");
    out
}

fn shake_v4(reader: &str, writer: &str, rest: &str) -> String {
    format!("{reader}\n\n{writer}\n\n{rest}\n")
}

/// A standalone source with a password, a sync that keeps following writes, RedisShake's
/// filters (allow prefixes, a blocking regex), "rewrite" over a target that
/// already holds one of the keys, and settings ferry names as not carried over.
#[test]
fn sync_reader_standalone_with_filters_and_rewrite() {
    let source = Server::start_with(&["--requirepass", "src-Secret-1"]);
    let target = Server::start();
    let populate = Spec {
        seed: 81,
        keys_per_db: 200,
        big_elements: 200,
        ..Spec::default()
    };
    workload::populate(&source, &populate);
    // A key the source also has, already on the target: "rewrite" replaces it.
    let (_, keys): (u64, Vec<Vec<u8>>) = redis::cmd("SCAN")
        .arg(0)
        .arg("MATCH")
        .arg("p:*")
        .arg("COUNT")
        .arg(1000)
        .query(&mut source.conn())
        .unwrap();
    let mut t = target.conn();
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg("stale")
        .query(&mut t)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!(
                "[sync_reader]\ncluster = false\naddress = \"{}\"\nusername = \"\"\npassword = \"src-Secret-1\"\ntls = false\nsync_rdb = true\nsync_aof = true\nprefer_replica = false\ntry_diskless = true",
                source.addr()
            ),
            &format!(
                "[redis_writer]\ncluster = false\naddress = \"{}\"\nusername = \"\"\npassword = \"\"\ntls = false\noff_reply = false",
                target.addr()
            ),
            "[filter]\nallow_key_prefix = [\"wl:\", \"p:\"]\nblock_key_regex = [\"^wl:h:\"]\nblock_keys = []\nfunction = \"\"\n\n[advanced]\ndir = \"data\"\nncpu = 2\nlog_level = \"warn\"\nrdb_restore_command_behavior = \"rewrite\"\npipeline_count_limit = 256\nsome_future_key = true",
        ),
    );
    let mut ferry = Ferry::start_with_status(&["--config", &file]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let mut tail = workload::Workload::new(&Spec {
        seed: 82,
        ..populate.clone()
    });
    tail.run(&source, 1000);
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    let allowed =
        |k: &[u8]| (k.starts_with(b"wl:") || k.starts_with(b"p:")) && !k.starts_with(b"wl:h:");
    let opts = Options {
        group_read_counters: false,
        expect: Some(KeyFilter::new(move |_, k, _| allowed(k))),
        ..Options::default()
    };
    let n = compare::eventually_equal(&source, &target, &opts, Duration::from_secs(20))
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    let all = compare::compare(&source, &source, &Options::default()).unwrap();
    assert!(n > 50 && n < all, "{n} keys compared of {all}");
    let log = ferry.log();
    for line in [
        "is a RedisShake v4 config (shake.toml)",
        "[advanced] ncpu = 2: not carried over",
        "[advanced] log_level = \"warn\": not carried over: set FERRY_LOG=warn",
        "[advanced] some_future_key: not a RedisShake setting ferry knows",
    ] {
        assert!(log.contains(line), "{line:?} not in the log:\n{log}");
    }
    assert!(!log.contains("src-Secret-1"), "{log}");
    let out = assert_converts_to_the_same_task(&file);
    assert!(out.contains("max_in_flight = 256"), "{out}");
    assert!(out.contains("on_conflict = \"overwrite\""), "{out}");
}

/// A cluster source into a cluster target, both flagged `cluster = true`; `sync_aof = false`
/// is a full copy only: ferry exits 0 once the snapshot is on the target.
#[test]
fn sync_reader_cluster_into_redis_writer_cluster_full_only() {
    let source = Cluster::start(3, 0);
    let target = Cluster::start(3, 0);
    for i in 0..600 {
        let key = format!("k:{i}");
        let mut c = source.conn_for(key.as_bytes());
        let _: () = redis::cmd("SET").arg(&key).arg(i).query(&mut c).unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!(
                "[sync_reader]\ncluster = true\naddress = \"{}\"\nsync_aof = false",
                source.addrs()[1]
            ),
            &format!(
                "[redis_writer]\ncluster = true\naddress = \"{}\"",
                target.addrs()[2]
            ),
            "",
        ),
    );
    let mut ferry = Ferry::start(&["--config", &file]);
    let code = ferry.wait(Duration::from_secs(120));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    let n = compare::compare_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Options::default(),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert_eq!(n, 600);
    let out = assert_converts_to_the_same_task(&file);
    assert!(out.contains("full_only = true"), "{out}");
}

/// `[rdb_reader]` with a path relative to `[advanced] dir` (as RedisShake reads it), a blocked
/// db, and `empty_db_before_sync` emptying a target that held other data.
#[test]
fn rdb_reader_fixture_with_empty_db_before_sync() {
    let path = fixture("redis-rdb-tools/multiple_databases.rdb");
    let (reference, _ref_dir) = server_loading(&path);
    let target = Server::start();
    // Old data in a db the file writes (emptied), and in a db the filter leaves out (kept:
    // ferry empties only the dbs it writes).
    let _: () = redis::cmd("SET")
        .arg("junk")
        .arg("1")
        .query(&mut target.conn_db(2))
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("kept")
        .arg("1")
        .query(&mut target.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            "[rdb_reader]\nfilepath = \"multiple_databases.rdb\"",
            &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
            &format!(
                "[filter]\nblock_db = [0]\n\n[advanced]\ndir = {:?}\nempty_db_before_sync = true",
                path.parent().unwrap().to_str().unwrap()
            ),
        ),
    );
    let mut ferry = Ferry::start(&["--config", &file]);
    let code = ferry.wait(Duration::from_secs(60));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    let opts = Options {
        dbs: vec![2],
        ..Options::default()
    };
    let n = compare::compare(&reference, &target, &opts)
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(n >= 1, "{n}");
    let db0: Vec<String> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(db0, ["kept"]);
    assert_converts_to_the_same_task(&file);
}

/// RedisShake 2's flat redis-shake.conf: a dump file restored with `target.db` (every db into
/// one) and with `target.dbmap`.
#[test]
fn flat_conf_target_db_and_dbmap() {
    let dir = tempfile::tempdir().unwrap();
    for (name, mapping, map) in [
        ("redis/encodings.rdb", "target.db = 4", vec![(0, 4)]),
        (
            "redis-rdb-tools/multiple_databases.rdb",
            "target.db = -1\ntarget.dbmap = 0-3;2-7",
            vec![(0, 3), (2, 7)],
        ),
    ] {
        let path = fixture(name);
        let (reference, _ref_dir) = server_loading(&path);
        let target = Server::start();
        let file = write(
            dir.path(),
            "redis-shake.conf",
            &format!(
                "conf.version = 1\nid = redis-shake\nlog.file =\nparallel = 32\nsource.type = standalone\nsource.address =\nsource.password_raw =\nsource.rdb.input = {}\ntarget.type = standalone\ntarget.address = {}\ntarget.password_raw =\n{mapping}\nkey_exists = none\nfilter.db.whitelist =\nbig_key_threshold = 524288000\n",
                path.display(),
                target.addr()
            ),
        );
        let mut ferry = Ferry::start(&["--config", &file]);
        let code = ferry.wait(Duration::from_secs(60));
        assert!(code.success(), "{name}: {code}; log:\n{}", ferry.log());
        let opts = Options {
            db_map: map,
            ..Options::default()
        };
        let n = compare::compare(&reference, &target, &opts)
            .unwrap_or_else(|r| panic!("{name}: {r}\nferry log:\n{}", ferry.log()));
        assert!(n >= 2, "{name}: {n}");
        assert!(
            ferry
                .log()
                .contains("is a RedisShake v2 config (redis-shake.conf)"),
            "{}",
            ferry.log()
        );
        assert_converts_to_the_same_task(&file);
    }
}

/// `rdb_restore_command_behavior`: "panic" refuses a target that holds keys (before writing
/// anything, where RedisShake would stop midway); "skip" has no equivalent and is refused.
#[test]
fn restore_behaviors_map_to_on_conflict() {
    let path = fixture("redis/encodings.rdb");
    let target = Server::start();
    let mut t = target.conn();
    let _: () = redis::cmd("SET")
        .arg("mine")
        .arg("1")
        .query(&mut t)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    for (behavior, expect) in [
        ("panic", "already holds"),
        (
            "skip",
            "rdb_restore_command_behavior: ferry cannot keep the target's value",
        ),
    ] {
        let file = write(
            dir.path(),
            &format!("{behavior}.toml"),
            &shake_v4(
                &format!("[rdb_reader]\nfilepath = {:?}", path.to_str().unwrap()),
                &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
                &format!("[advanced]\nrdb_restore_command_behavior = \"{behavior}\""),
            ),
        );
        let line = Ferry::start(&["--config", &file]).refusal();
        assert!(line.contains(expect), "{behavior}: {line}");
    }
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut t).unwrap();
    assert_eq!(keys, ["mine"]);
}

/// What ferry cannot do is refused in one line naming the setting and what to do instead; and
/// `convert` still prints the config, with the refusal at the top, and exits 1.
#[test]
fn functions_are_refused_clearly() {
    let target = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let function = write(
        dir.path(),
        "function.toml",
        &shake_v4(
            "[sync_reader]\naddress = \"127.0.0.1:1\"",
            &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
            "[filter]\nfunction = \"\"\"\nshake.call(DB, ARGV)\n\"\"\"",
        ),
    );
    let line = Ferry::start(&["--config", &function]).refusal();
    assert!(
        line.contains("[filter] function") && line.contains("[transform] script"),
        "{line}"
    );
    let (code, out, err) = convert(&function, &[]);
    assert_eq!(code, 1, "{err}");
    assert!(
        out.contains("# REFUSED") && out.contains("[filter] function"),
        "{out}"
    );
    assert!(err.contains("ferry sync refuses this file"), "{err}");
}

/// A source that refuses to serve replicas, as managed services do: what RedisShake's
/// `[scan_reader]` is for.
fn source_refusing_replication() -> Server {
    let source = Server::start_with(&[
        "--rename-command",
        "PSYNC",
        "",
        "--rename-command",
        "SYNC",
        "",
    ]);
    let refused: redis::RedisResult<redis::Value> = redis::cmd("PSYNC")
        .arg("?")
        .arg(-1)
        .query(&mut source.conn());
    assert!(refused.is_err(), "PSYNC should be refused: {refused:?}");
    source
}

/// `[scan_reader]` without `ksn` (RedisShake's default: scan once) on a source that refuses
/// PSYNC: ferry scans it, copies the dbs `dbs` names, and exits by itself; the target equals
/// the source in those dbs key by key and holds nothing of the others.
#[test]
fn scan_reader_copies_a_source_that_refuses_psync_once() {
    let source = source_refusing_replication();
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 91,
            dbs: vec![0, 1, 2],
            keys_per_db: 200,
            big_elements: 300,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!(
                "[scan_reader]\ncluster = false\naddress = \"{}\"\nusername = \"\"\npassword = \"\"\ntls = false\ndbs = [0, 2]\nscan = true\ncount = 50",
                source.addr()
            ),
            &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
            "[advanced]\nrdb_restore_command_behavior = \"panic\"",
        ),
    );
    let mut ferry = Ferry::start(&["--config", &file]);
    let code = ferry.wait(Duration::from_secs(180));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    let opts = Options {
        dbs: vec![0, 2],
        ..Options::default()
    };
    let n = compare::compare(&source, &target, &opts)
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(n >= 400, "only {n} keys compared");
    let db1: u64 = redis::cmd("DBSIZE").query(&mut target.conn_db(1)).unwrap();
    assert_eq!(db1, 0, "db 1 is not in the reader's dbs");
    let out = assert_converts_to_the_same_task(&file);
    for line in ["mode = \"scan\"", "full_only = true", "allow_db = [0, 2]"] {
        assert!(out.contains(line), "{line:?} not in:\n{out}");
    }
    assert!(
        out.contains("ferry picks its own SCAN count"),
        "the count is named:\n{out}"
    );
}

/// `[scan_reader]` with `ksn = true` keeps following the source by keyspace notifications:
/// after a random workload stops, the target converges to the source key by key.
#[test]
fn scan_reader_with_ksn_follows_changes() {
    let source = source_refusing_replication();
    let target = Server::start();
    // One db: a workload over several issues SWAPDB, which no keyspace notification reports.
    let spec = Spec {
        seed: 93,
        dbs: vec![0],
        keys_per_db: 300,
        big_elements: 300,
        ..Spec::default()
    };
    workload::populate(&source, &spec);
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!("[scan_reader]\naddress = \"{}\"\nksn = true", source.addr()),
            &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
            "",
        ),
    );
    let mut ferry = Ferry::start_with_status(&["--config", &file]);
    ferry.wait_status(Duration::from_secs(180), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let status = ferry.status().expect("a status");
    assert_eq!(status["source_mode"], "scan", "{status}");
    let mut tail = workload::Workload::new(&Spec { seed: 94, ..spec });
    tail.run(&source, 2000);
    // Scan mode converges rather than replaying each write: poll until equal (the deadline
    // only bounds a hang).
    let n = compare::eventually_equal(
        &source,
        &target,
        &Options::default(),
        Duration::from_secs(180),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(n >= 300, "only {n} keys compared");
    let code = ferry.terminate(Duration::from_secs(30));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    let out = assert_converts_to_the_same_task(&file);
    assert!(
        out.contains("mode = \"scan\"") && !out.contains("full_only"),
        "{out}"
    );
}

/// Passwords: one written in the file goes into the converted URL; one RedisShake took from
/// the environment does not, and the comment names the variable. Running the file with the
/// variable set logs in with it, and no output shows it.
#[test]
fn passwords_from_the_environment_stay_out_of_every_output() {
    let source = Server::start_with(&["--requirepass", "env-Secret-7"]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 5,
            dbs: vec![0],
            keys_per_db: 50,
            big_elements: 50,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!(
                "[sync_reader]\naddress = \"{}\"\npassword = \"${{FERRY_TEST_SHAKE_PW}}\"\nsync_aof = false",
                source.addr()
            ),
            &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
            "",
        ),
    );
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["sync", "--config", &file])
        .env("FERRY_TEST_SHAKE_PW", "env-Secret-7")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(!all.contains("env-Secret-7"), "{all}");
    compare::compare(&source, &target, &Options::default()).unwrap();
    let (code, text, err) = convert(&file, &[("FERRY_TEST_SHAKE_PW", "env-Secret-7")]);
    assert_eq!(code, 0, "{err}");
    assert!(
        !text.contains("env-Secret-7") && !err.contains("env-Secret-7"),
        "{text}"
    );
    assert!(text.contains("${FERRY_TEST_SHAKE_PW}"), "{text}");
    assert!(
        text.contains("password_env = \"FERRY_TEST_SHAKE_PW\""),
        "{text}"
    );
    // The converted config logs in as it is, the password read from the same variable.
    let converted = write(dir.path(), "ferry.toml", &text);
    let out = Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args(["check", "--json", "--config", &converted])
        .env("FERRY_TEST_SHAKE_PW", "env-Secret-7")
        .current_dir(dir.path())
        .output()
        .unwrap();
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        all.contains("\"item\":\"authenticated\",\"result\":\"pass\""),
        "{all}"
    );
    assert!(!all.contains("env-Secret-7"), "{all}");
}

/// `tls = true`: RedisShake checks no certificate, ferry does. A source signed by a private CA
/// is refused in one line saying how to give the CA; given with `--source-tls-ca` over the
/// RedisShake file, the same file runs.
#[test]
fn tls_sources_are_checked_against_their_ca() {
    let files = testkit::tls::TlsFiles::generate();
    let source = Server::start_tls(&files, &[]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 9,
            dbs: vec![0],
            keys_per_db: 50,
            big_elements: 50,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!(
                "[sync_reader]\naddress = \"127.0.0.1:{}\"\ntls = true\nsync_aof = false",
                source.tls_port().unwrap()
            ),
            &format!("[redis_writer]\naddress = \"{}\"", target.addr()),
            "",
        ),
    );
    let line = Ferry::start(&["--config", &file]).refusal();
    assert!(
        line.contains("not trusted") && line.contains("--source-tls-ca"),
        "{line}"
    );
    let ca = files.ca.to_str().unwrap();
    let mut ferry = Ferry::start(&["--config", &file, "--source-tls-ca", ca]);
    let code = ferry.wait(Duration::from_secs(60));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    assert!(
        ferry.log().contains("[sync_reader] tls → rediss://"),
        "{}",
        ferry.log()
    );
    compare::compare(&source, &target, &Options::default())
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
}

/// `[redis_writer] sentinel = true` with `master`: the target is the master the sentinel names,
/// logged in with the writer's password.
#[test]
fn redis_writer_behind_sentinel() {
    let source = Server::start();
    let target = Server::start_with(&["--requirepass", "dst-Secret-3"]);
    let sentinels = testkit::Sentinel::start(&target, "shakemaster", 1, 1);
    workload::populate(
        &source,
        &Spec {
            seed: 13,
            dbs: vec![0, 1],
            keys_per_db: 50,
            big_elements: 50,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "shake.toml",
        &shake_v4(
            &format!(
                "[sync_reader]\naddress = \"{}\"\nsync_aof = false",
                source.addr()
            ),
            &format!(
                "[redis_writer]\nsentinel = true\nmaster = \"shakemaster\"\naddress = \"{}\"\npassword = \"dst-Secret-3\"",
                sentinels.addrs()[0]
            ),
            "",
        ),
    );
    let mut ferry = Ferry::start(&["--config", &file]);
    let code = ferry.wait(Duration::from_secs(60));
    let log = ferry.log();
    assert!(code.success(), "{code}; log:\n{log}");
    assert!(!log.contains("dst-Secret-3"), "{log}");
    compare::compare(&source, &target, &Options::default())
        .unwrap_or_else(|r| panic!("{r}\nferry log:\n{log}"));
    let out = assert_converts_to_the_same_task(&file);
    assert!(
        out.contains(&format!(
            "url = \"redis+sentinel://:dst-Secret-3@{}/shakemaster\"",
            sentinels.addrs()[0]
        )),
        "{out}"
    );
}
