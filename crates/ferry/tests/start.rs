//! The `start` item: `ferry check` says what a start of `sync` will do with the targets as
//! they are (a new copy, a resume, a full resync refused or done by `full_resync`), and `sync`
//! then does exactly that, in the same words. Real servers, the real binary.

mod common;

use std::time::Duration;

use common::{Ferry, check_item, config_file};
use serde_json::Value;
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

fn text(finding: &Value, field: &str) -> String {
    finding[field].as_str().unwrap().to_string()
}

/// Starts a throttled full copy and kills ferry once some keys are in the target: the target
/// then holds `<replid> loading`.
fn interrupted_copy(args: &[&str]) {
    let mut all = args.to_vec();
    all.extend(["--full-keys-per-sec", "2000"]);
    let mut ferry = Ferry::start_with_status(&all);
    ferry.wait_status(Duration::from_secs(60), "keys being written", |s| {
        s["phase"] == "full" && s["keys_written"].as_u64().unwrap_or(0) > 0
    });
    ferry.kill();
}

#[test]
fn after_an_interrupted_copy_check_says_what_sync_does() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("DEBUG")
        .arg("POPULATE")
        .arg(50_000)
        .query(&mut source.conn())
        .unwrap();
    workload::populate(
        &source,
        &Spec {
            seed: 9,
            keys_per_db: 200,
            ..Spec::default()
        },
    );
    let args = ["--source", &source.url(), "--target", &target.url()];
    // Before anything: a new task.
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 0, "{found:#?}");
    assert_eq!(found.len(), 1, "{found:#?}");
    assert!(
        text(&found[0], "found").contains("a new task, a full copy"),
        "{found:#?}"
    );

    interrupted_copy(&args);
    let held: String = redis::cmd("GET")
        .arg(format!("__ferry:checkpoint:{}", source.addr()))
        .query(&mut target.conn())
        .unwrap();
    assert!(held.ends_with(" loading"), "{held}");

    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 1, "{found:#?}");
    assert_eq!(found[0]["result"], "fail", "{found:#?}");
    let said = text(&found[0], "found");
    assert!(
        said.contains("a full resync from source")
            && said.contains("the previous full copy into the target was interrupted"),
        "{said}"
    );
    assert!(
        text(&found[0], "fix").contains("full_resync = \"flush\""),
        "{found:#?}"
    );

    // sync refuses, in the same words.
    let mut refused = Ferry::start(&args);
    assert_eq!(refused.wait(Duration::from_secs(60)).code(), Some(1));
    let log = refused.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    let reason = line.trim_start_matches("ferry: ");
    assert!(
        said.ends_with(reason),
        "check said {said:?}, sync said {reason:?}"
    );

    // With full_resync = "flush": check says it copies again, and sync does.
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "full_resync = \"flush\"",
    );
    let (code, found) = check_item(&["--config", &config], "start");
    assert_eq!(code, 0, "{found:#?}");
    assert_eq!(found[0]["result"], "warn", "{found:#?}");
    assert!(
        text(&found[0], "found").contains("empties the targets and copies the snapshot again"),
        "{found:#?}"
    );
    let mut ferry = Ferry::start_with_status(&["--config", &config]);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(ferry.log().contains("interrupted"), "{}", ferry.log());
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    assert!(ferry.terminate(Duration::from_secs(30)).success());

    // Stopped cleanly: the next start resumes, and check says so.
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 0, "{found:#?}");
    assert_eq!(found[0]["result"], "pass", "{found:#?}");
    assert!(
        text(&found[0], "found").contains("resumes from the targets' checkpoint"),
        "{found:#?}"
    );
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(
        ferry
            .log()
            .contains("source continues the stream from the checkpoint"),
        "{}",
        ferry.log()
    );
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A checkpoint the source's backlog no longer reaches: check predicts the full resync that
/// the source's answer to PSYNC makes sync refuse.
#[test]
fn a_checkpoint_past_the_backlog_is_a_full_resync_for_both() {
    let source = Server::start_with(&["--repl-backlog-size", "16kb"]);
    let target = Server::start();
    let args = ["--source", &source.url(), "--target", &target.url()];
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(ferry.terminate(Duration::from_secs(30)).success());
    // Far more than the backlog holds, while ferry is away.
    let value = "x".repeat(1000);
    for i in 0..100 {
        let _: () = redis::cmd("SET")
            .arg(format!("k{i}"))
            .arg(&value)
            .query(&mut source.conn())
            .unwrap();
    }
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 1, "{found:#?}");
    let said = text(&found[0], "found");
    assert!(
        said.contains("cannot continue from the target's checkpoint"),
        "{said}"
    );
    let mut refused = Ferry::start(&args);
    assert_eq!(refused.wait(Duration::from_secs(60)).code(), Some(1));
    let log = refused.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        said.ends_with(line.trim_start_matches("ferry: ")),
        "check said {said:?}, sync said {line:?}"
    );
}

/// A full-only run into a target that holds its copy already would go on from the checkpoint
/// and follow the stream forever: check and sync both refuse it, in the same words, naming
/// what to do; after `ferry cleanup` (and with on_conflict = overwrite) it copies again.
#[test]
fn a_full_only_run_does_not_go_on_from_its_checkpoint() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("a")
        .arg("1")
        .query(&mut source.conn())
        .unwrap();
    let args = [
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-only",
    ];
    let mut first = Ferry::start(&args);
    assert!(
        first.wait(Duration::from_secs(60)).success(),
        "{}",
        first.log()
    );
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 1, "{found:#?}");
    let said = text(&found[0], "found");
    assert!(said.contains("a full-only run copies once"), "{said}");
    let mut again = Ferry::start(&args);
    assert_eq!(again.wait(Duration::from_secs(60)).code(), Some(1));
    let log = again.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(line.contains("ferry cleanup"), "{line}");
    assert!(
        said.ends_with(line.trim_start_matches("ferry: ")) || line.contains(&said),
        "check said {said:?}, sync said {line:?}"
    );
    // Cleaned up, it copies again over what is there.
    let cleaned = std::process::Command::new(env!("CARGO_BIN_EXE_ferry"))
        .args([
            "cleanup",
            "--source",
            &source.url(),
            "--target",
            &target.url(),
        ])
        .output()
        .unwrap();
    assert!(cleaned.status.success(), "{cleaned:?}");
    let _: () = redis::cmd("SET")
        .arg("b")
        .arg("2")
        .query(&mut source.conn())
        .unwrap();
    let mut args = args.to_vec();
    args.extend(["--on-conflict", "overwrite"]);
    let mut third = Ferry::start(&args);
    assert!(
        third.wait(Duration::from_secs(60)).success(),
        "{}",
        third.log()
    );
    compare::compare(&source, &target, &Options::default()).unwrap();
}

/// A cluster source: one stream, and one checkpoint, per shard. After a clean stop every
/// shard resumes; after one shard's checkpoint is made `loading`, check names that shard's
/// task as needing a full resync, as sync does.
#[test]
fn a_cluster_source_is_decided_per_shard() {
    let cluster = Cluster::start(3, 0);
    let target = Server::start();
    let args = ["--source", &cluster.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(60), "every shard streaming", |s| {
        s["shards"]
            .as_array()
            .is_some_and(|a| a.len() == 3 && a.iter().all(|p| p["phase"] == "incremental"))
    });
    assert!(ferry.terminate(Duration::from_secs(30)).success());
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 0, "{found:#?}");
    assert_eq!(found.len(), 3, "{found:#?}");
    assert!(found.iter().all(|f| f["result"] == "pass"), "{found:#?}");

    // The shard of slot 0 as if its copy had been cut short.
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("__ferry:checkpoint:*@0")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    let value: String = redis::cmd("GET")
        .arg(&keys[0])
        .query(&mut target.conn())
        .unwrap();
    let replid = value.split(' ').next().unwrap();
    let _: () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(format!("{replid} loading"))
        .query(&mut target.conn())
        .unwrap();
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 1, "{found:#?}");
    let failed: Vec<&Value> = found.iter().filter(|f| f["result"] == "fail").collect();
    assert_eq!(failed.len(), 1, "{found:#?}");
    let said = text(failed[0], "found");
    let task = keys[0].trim_start_matches("__ferry:checkpoint:");
    assert!(
        said.starts_with(&format!("task {task}: "))
            && said.contains("the previous full copy into the target was interrupted"),
        "{said}"
    );
    let mut refused = Ferry::start(&args);
    assert_eq!(refused.wait(Duration::from_secs(60)).code(), Some(1));
    let log = refused.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        said.ends_with(line.trim_start_matches("ferry: ")),
        "check said {said:?}, sync said {line:?}"
    );
}

/// Two targets, one holding the task's copy and one new: one stream cannot continue both, so
/// check fails with the reason sync stops with.
#[test]
fn targets_one_stream_cannot_continue_together_fail_as_sync_does() {
    let source = Server::start();
    let first = Server::start();
    let second = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 12,
            keys_per_db: 100,
            ..Spec::default()
        },
    );
    let mut ferry = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &first.url(),
        "--full-only",
    ]);
    assert!(
        ferry.wait(Duration::from_secs(60)).success(),
        "{}",
        ferry.log()
    );
    let args = [
        "--source",
        &source.url(),
        "--target",
        &first.url(),
        "--target",
        &second.url(),
    ];
    let (code, found) = check_item(&args, "start");
    assert_eq!(code, 1, "{found:#?}");
    let said = text(&found[0], "found");
    assert!(
        said.contains("one stream cannot continue together")
            && said.contains(&format!("{} holds none", second.addr())),
        "{said}"
    );
    let mut refused = Ferry::start(&args);
    assert_eq!(refused.wait(Duration::from_secs(60)).code(), Some(1));
    let log = refused.log();
    let line = log
        .lines()
        .find(|l| l.starts_with("ferry: "))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        said.ends_with(line.trim_start_matches("ferry: ")),
        "check said {said:?}, sync said {line:?}"
    );
}
