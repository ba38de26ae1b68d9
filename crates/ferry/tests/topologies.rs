//! Topologies beyond one-to-one: a cascade A → B → C, two ferry tasks where the second reads
//! the first one's target, stays equal end to end (ferry's own keys never travel on).

mod common;

use std::time::Duration;

use common::{Ferry, wait_caught_up};
use testkit::Server;
use testkit::compare::{self, Options};
use testkit::workload::{self, Spec};

#[test]
fn a_cascade_stays_equal_end_to_end() {
    let a = Server::start();
    let b = Server::start();
    let c = Server::start();
    let spec = Spec {
        seed: 61,
        keys_per_db: 500,
        ..Spec::default()
    };
    workload::populate(&a, &spec);
    let mut first = Ferry::start_with_status(&[
        "--source",
        &a.url(),
        "--target",
        &b.url(),
        "--name",
        "a-to-b",
    ]);
    first.wait_status(Duration::from_secs(120), "A → B incremental", |s| {
        s["phase"] == "incremental"
    });
    let mut second = Ferry::start_with_status(&[
        "--source",
        &b.url(),
        "--target",
        &c.url(),
        "--name",
        "b-to-c",
    ]);
    second.wait_status(Duration::from_secs(120), "B → C incremental", |s| {
        s["phase"] == "incremental"
    });
    let background = workload::run_in_background(
        &a,
        Spec {
            seed: 62,
            ..spec.clone()
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    // The middle task restarts while writes flow through it.
    second.kill();
    second = Ferry::start_with_status(&[
        "--source",
        &b.url(),
        "--target",
        &c.url(),
        "--name",
        "b-to-c",
    ]);
    std::thread::sleep(Duration::from_secs(1));
    background.stop();
    wait_caught_up(&mut first, &a, Duration::from_secs(120));
    wait_caught_up(&mut second, &b, Duration::from_secs(120));
    // Redis's stream does not carry consumer groups' read counters (its replicas drift too).
    let options = Options {
        group_read_counters: false,
        ..Options::default()
    };
    compare::eventually_equal(&a, &c, &options, Duration::from_secs(10))
        .unwrap_or_else(|r| panic!("A vs C: {r}\nB → C log:\n{}", second.log()));
    // Each target holds its own task's checkpoint only: the first task's did not travel on.
    let own = |server: &Server| -> Vec<String> {
        redis::cmd("KEYS")
            .arg("__ferry:checkpoint:*")
            .query(&mut server.conn())
            .unwrap()
    };
    assert_eq!(own(&b), vec!["__ferry:checkpoint:a-to-b".to_string()]);
    assert_eq!(own(&c), vec!["__ferry:checkpoint:b-to-c".to_string()]);
    assert!(first.terminate(Duration::from_secs(30)).success());
    assert!(second.terminate(Duration::from_secs(30)).success());
}
