//! A new task whose target already holds data (`[sync] on_conflict`): refused by default with
//! what is there, copied over, or flushed first only when confirmed; a resume is never
//! blocked. Real servers, the real binary, checked key by key.

mod common;

use std::time::Duration;

use common::{Ferry, config_file, fixture, wait_caught_up};
use testkit::compare::{self, Options, Side};
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

fn spec() -> Spec {
    Spec {
        seed: 61,
        keys_per_db: 300,
        big_elements: 300,
        ..Spec::default()
    }
}

/// Five of the source's keys in db 0 (to be overwritten), as the target's user holds them.
fn shared_names(source: &Server) -> Vec<String> {
    let keys: Vec<Vec<u8>> = redis::cmd("KEYS")
        .arg("*")
        .query(&mut source.conn())
        .unwrap();
    // Printable ones, so they read the same escaped.
    let mut names: Vec<String> = keys
        .into_iter()
        .filter_map(|k| String::from_utf8(k).ok())
        .filter(|k| {
            k.bytes()
                .all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\')
        })
        .collect();
    names.sort();
    names.truncate(5);
    assert_eq!(names.len(), 5);
    names
}

/// What the target holds before ferry starts: strings under five of the source's names, one
/// key of its own in db 0 and one in db 5 (a db the source does not use).
fn fill_target(target: &Server, shared: &[String]) {
    let mut c = target.conn();
    for name in shared {
        let _: () = redis::cmd("SET")
            .arg(name)
            .arg("target's own value")
            .query(&mut c)
            .unwrap();
    }
    let _: () = redis::cmd("SET")
        .arg("only-on-target")
        .arg("t")
        .query(&mut c)
        .unwrap();
    let _: () = redis::cmd("HSET")
        .arg("elsewhere\x00")
        .arg("f")
        .arg("v")
        .query(&mut target.conn_db(5))
        .unwrap();
}

fn full_copy(args: &[&str]) -> Ferry {
    let mut ferry = Ferry::start(args);
    let code = ferry.wait(Duration::from_secs(120));
    assert!(code.success(), "{code}; log:\n{}", ferry.log());
    ferry
}

/// Default `fail`: one line naming the target, the counts per db and examples; nothing written.
/// An RDB file source is refused the same way.
#[test]
fn fail_names_what_the_target_holds_and_touches_nothing() {
    let source = Server::start();
    workload::populate(&source, &spec());
    let shared = shared_names(&source);
    let target = Server::start();
    let reference = Server::start();
    fill_target(&target, &shared);
    fill_target(&reference, &shared);

    let line = Ferry::refusal(Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
    ]));
    let expected = format!(
        "ferry: target {} already holds 7 keys (db 0: 6, db 5: 1; e.g. ",
        target.addr()
    );
    assert!(line.starts_with(&expected), "{line}");
    // Examples are the target's own names, escaped.
    let examples = line
        .split("e.g. ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .unwrap();
    let mut named = 0;
    for name in shared
        .iter()
        .map(String::as_str)
        .chain(["only-on-target", "elsewhere\\x00"])
    {
        named += examples.matches(&format!("\"{name}\"")).count();
    }
    assert_eq!(named, 3, "{line}");
    assert!(line.contains("on_conflict = \"overwrite\""), "{line}");
    assert!(line.contains("--yes-flush-target"), "{line}");
    compare::compare(&reference, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));

    // A snapshot file follows the same policy.
    let file = fixture("redis-rdb-tools/multiple_databases.rdb");
    let line = Ferry::refusal(Ferry::start(&[
        "--source",
        file.to_str().unwrap(),
        "--target",
        &target.url(),
    ]));
    assert!(line.starts_with(&expected), "{line}");
    compare::compare(&reference, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
}

/// `overwrite`: the source's keys replace the target's of the same name; the others stay.
#[test]
fn overwrite_replaces_same_names_and_keeps_the_rest() {
    let source = Server::start();
    workload::populate(&source, &spec());
    let target = Server::start();
    fill_target(&target, &shared_names(&source));
    let ferry = full_copy(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--full-only",
        "--on-conflict",
        "overwrite",
    ]);
    assert!(ferry.log().contains("copying over them"), "{}", ferry.log());
    let kept: String = redis::cmd("GET")
        .arg("only-on-target")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(kept, "t");
    let kept: String = redis::cmd("HGET")
        .arg("elsewhere\x00")
        .arg("f")
        .query(&mut target.conn_db(5))
        .unwrap();
    assert_eq!(kept, "v");
    // Without the target's own keys, the target is the source key by key.
    let _: () = redis::cmd("DEL")
        .arg("only-on-target")
        .query(&mut target.conn())
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg("elsewhere\x00")
        .query(&mut target.conn_db(5))
        .unwrap();
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
}

/// `flush` empties the target only when confirmed; unconfirmed, it is refused up front.
#[test]
fn flush_needs_a_confirmation_and_then_empties_the_target() {
    let source = Server::start();
    workload::populate(&source, &spec());
    let shared = shared_names(&source);
    let target = Server::start();
    let reference = Server::start();
    fill_target(&target, &shared);
    fill_target(&reference, &shared);

    let line = Ferry::refusal(Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--on-conflict",
        "flush",
    ]));
    assert!(
        line.contains("on_conflict = \"flush\"") && line.contains("--yes-flush-target"),
        "{line}"
    );
    compare::compare(&reference, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));

    // Confirmed in the config file this time.
    let dir = tempfile::tempdir().unwrap();
    let config = config_file(
        dir.path(),
        &source.url(),
        &target.url(),
        "full_only = true\non_conflict = \"flush\"\nconfirm_flush = true",
    );
    let ferry = full_copy(&["--config", &config]);
    assert!(ferry.log().contains("emptying it first"), "{}", ferry.log());
    // Same key set, types, values and TTLs: the target's own keys are gone.
    compare::compare(&source, &target, &Options::default()).unwrap_or_else(|r| panic!("{r}"));
    let gone: i64 = redis::cmd("EXISTS")
        .arg("only-on-target")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(gone, 0);
}

/// A restart finds the target full of keys that its own earlier run wrote: it continues from
/// its checkpoint under the default `fail`.
#[test]
fn a_resume_is_not_a_conflict() {
    let source = Server::start_with(&["--repl-diskless-sync-delay", "0"]);
    workload::populate(&source, &spec());
    let target = Server::start();
    let args = ["--source", &source.url(), "--target", &target.url()];
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(ferry.terminate(Duration::from_secs(30)).success());
    workload::Workload::new(&Spec { seed: 62, ..spec() }).run(&source, 500);

    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    wait_caught_up(&mut ferry, &source, Duration::from_secs(60));
    assert!(
        ferry
            .log()
            .contains("source continues the stream from the checkpoint"),
        "{}",
        ferry.log()
    );
    compare::eventually_equal(
        &source,
        &target,
        &Options {
            group_read_counters: false,
            ..Options::default()
        },
        Duration::from_secs(10),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// A cluster target: keys are counted on every master, and `flush` empties every master.
#[test]
fn a_cluster_target_is_checked_and_flushed_on_every_master() {
    let source = Server::start();
    workload::populate(
        &source,
        &Spec {
            dbs: vec![0],
            ..spec()
        },
    );
    let target = Cluster::start(3, 0);
    // One key on each master.
    let mut names = Vec::new();
    for i in 0.. {
        let name = format!("user:{i}");
        let owner = target.owner(Cluster::slot(name.as_bytes())).addr();
        if !names.iter().any(|(_, o)| *o == owner) {
            let _: () = redis::cmd("SET")
                .arg(&name)
                .arg("x")
                .query(&mut target.conn_for(name.as_bytes()))
                .unwrap();
            names.push((name, owner));
        }
        if names.len() == 3 {
            break;
        }
    }
    let url = target.url();
    let line = Ferry::refusal(Ferry::start(&["--source", &source.url(), "--target", &url]));
    for (_, owner) in &names {
        assert!(line.contains(owner.as_str()), "{line}");
    }
    assert!(
        line.contains("already holds 3 keys (db 0: 3; e.g. "),
        "{line}"
    );
    for (name, _) in &names {
        let kept: String = redis::cmd("GET")
            .arg(name)
            .query(&mut target.conn_for(name.as_bytes()))
            .unwrap();
        assert_eq!(kept, "x");
    }

    full_copy(&[
        "--source",
        &source.url(),
        "--target",
        &url,
        "--full-only",
        "--on-conflict",
        "flush",
        "--yes-flush-target",
    ]);
    compare::compare_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Options::default(),
    )
    .unwrap_or_else(|r| panic!("{r}"));
}

/// A cluster source: its shards write into one target, looked at once before any starts. Data
/// there is refused in one line; with `overwrite` every shard copies over it, and a later
/// start resumes each shard from its checkpoint.
#[test]
fn a_cluster_source_checks_its_target_once() {
    let source = Cluster::start_with(3, 0, &["--repl-diskless-sync-delay", "0"]);
    workload::populate_cluster(
        &source,
        &Spec {
            dbs: vec![0],
            ..spec()
        },
    );
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("only-on-target")
        .arg("t")
        .query(&mut target.conn())
        .unwrap();
    let args = ["--source", &source.url(), "--target", &target.url()];
    let line = Ferry::refusal(Ferry::start(&args));
    assert!(
        line.starts_with(&format!(
            "ferry: target {} already holds 1 key (db 0: 1; e.g. \"only-on-target\" in db 0)",
            target.addr()
        )),
        "{line}"
    );

    let mut overwrite = args.to_vec();
    overwrite.extend(["--on-conflict", "overwrite"]);
    let mut ferry = Ferry::start_with_status(&overwrite);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    assert!(ferry.terminate(Duration::from_secs(30)).success());
    // Each shard has its checkpoint now: the default policy resumes them all.
    let mut ferry = Ferry::start_with_status(&args);
    ferry.wait_status(Duration::from_secs(120), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let kept: String = redis::cmd("GET")
        .arg("only-on-target")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(kept, "t");
    let _: () = redis::cmd("DEL")
        .arg("only-on-target")
        .query(&mut target.conn())
        .unwrap();
    compare::eventually_equal_sides(
        &Side::from(&source),
        &Side::from(&target),
        &Options::default(),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|r| panic!("{r}\nferry log:\n{}", ferry.log()));
    assert!(ferry.terminate(Duration::from_secs(30)).success());
}

/// Only the target dbs the task writes into are looked at: keys in a db that `[filter]`
/// leaves alone are no conflict, keys in the db another is mapped to are.
#[test]
fn only_the_synced_dbs_are_a_conflict() {
    let source = Server::start();
    let target = Server::start();
    let _: () = redis::cmd("SET")
        .arg("user:1")
        .arg("s")
        .query(&mut source.conn())
        .unwrap();
    let _: () = redis::cmd("SET")
        .arg("theirs")
        .arg("t")
        .query(&mut target.conn_db(5))
        .unwrap();
    // db 0 into db 5, which holds a key: refused, naming db 5.
    let mut mapped = Ferry::start(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--db-map",
        "0=5",
    ]);
    assert!(!mapped.wait(Duration::from_secs(60)).success());
    let log = mapped.log();
    assert!(log.contains("db 5: 1"), "{log}");
    // db 0 into db 0: db 5 is not the task's, so it starts and leaves db 5 alone.
    let mut plain = Ferry::start_with_status(&[
        "--source",
        &source.url(),
        "--target",
        &target.url(),
        "--allow-db",
        "0",
    ]);
    plain.wait_status(Duration::from_secs(60), "the incremental phase", |s| {
        s["phase"] == "incremental"
    });
    let theirs: Option<String> = redis::cmd("GET")
        .arg("theirs")
        .query(&mut target.conn_db(5))
        .unwrap();
    assert_eq!(theirs.as_deref(), Some("t"));
    let copied: Option<String> = redis::cmd("GET")
        .arg("user:1")
        .query(&mut target.conn())
        .unwrap();
    assert_eq!(copied.as_deref(), Some("s"));
    assert!(plain.terminate(Duration::from_secs(30)).success());
}
