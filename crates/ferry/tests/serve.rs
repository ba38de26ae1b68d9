//! `ferry serve`: the server run as the real binary, driven through its HTTP API, syncing
//! between real redis-servers. Each task's life (create, precheck, start, pause, resume,
//! stop), the token, passwords kept out of every answer, event and log line, a failed precheck
//! blocking the start, a SIGKILLed server resuming its task with a partial resync only, and
//! the OpenAPI document covering every route.

mod common;
mod serving;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{equal, get, incr, own_keys, resyncs};
use serde_json::{Value, json};
use serving::{PASSWORD, Serve, WAIT};
use testkit::compare::Side;
use testkit::workload::{self, Spec};
use testkit::{Cluster, Server};

#[test]
fn a_standalone_task_lives_through_the_api_without_showing_its_password() {
    let source = Server::start_with(&["--requirepass", PASSWORD]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 7,
            keys_per_db: 200,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());

    // Without the token, or with another, nothing under /api/.
    for token in [None, Some("not-the-token")] {
        let (code, body) = serve.try_call("GET", "/api/v1/tasks", token, None).unwrap();
        assert_eq!(code, 401, "{body}");
        assert!(body.contains("\"error\":\"unauthorized\""), "{body}");
    }
    let mode = std::fs::metadata(dir.path().join("api-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let source_url = format!("redis://:{PASSWORD}@{}", source.addr());
    let created = serve.ok(
        "POST",
        "/api/v1/tasks",
        Some(json!({
            "source": {"url": source_url},
            "target": {"url": target.url()},
            "labels": {"env": "test"},
        })),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["task"]["state"], "created");
    assert_eq!(
        created["task"]["spec"]["source"]["url"],
        format!("redis://{}", source.addr())
    );
    // The label filter.
    let listed = serve.ok("GET", "/api/v1/tasks?label=env=test", None);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let listed = serve.ok("GET", "/api/v1/tasks?label=env=prod", None);
    assert_eq!(listed.as_array().unwrap().len(), 0);

    let checked = serve.ok("POST", &format!("/api/v1/tasks/{id}/precheck"), None);
    assert_eq!(checked["failed"], false, "{checked}");
    assert_eq!(checked["task"]["state"], "ready");
    serve.ok("POST", &format!("/api/v1/tasks/{id}/start"), None);
    serve.wait_state(&id, "incremental");
    let (source_side, target_side) = (
        Side::standalone(&source.addr(), Some(PASSWORD)),
        Side::standalone(&target.addr(), None),
    );
    equal(&source_side, &target_side);
    let (mut src, mut dst) = (source.conn(), target.conn());
    incr(&mut src, "counter", 100);
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "counter"), Some(100));

    // A running task's servers cannot change; its limits and labels can.
    let (code, body) = serve.call(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"target": {"url": "redis://127.0.0.1:1"}})),
    );
    assert_eq!(code, 409, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("[target]"),
        "{body}"
    );
    let (code, body) = serve.call(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"limit": {"incremental_ops_per_sec": -1.0}})),
    );
    assert_eq!(code, 422, "{body}");
    let limited = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"limit": {"incremental_ops_per_sec": 20.0}})),
    );
    assert_eq!(limited["state"], "incremental", "{limited}");
    assert_eq!(limited["spec"]["limit"]["incremental_ops_per_sec"], 20.0);
    assert_eq!(limited["status"]["limit"]["incremental_ops_per_sec"], 20.0);
    assert_eq!(limited["last_precheck"]["failed"], false, "{limited}");
    // 200 writes at 20 a second: the writer is held back (the engine says so) and the target
    // is behind the source meanwhile.
    incr(&mut src, "limited", 200);
    serve.wait_task(&id, "writes held back by the new limit", |t| {
        t["status"]["limit"]["throttled_ms"].as_u64().unwrap_or(0) > 0
    });
    assert!(get(&mut dst, "limited").unwrap_or(0) < 200);
    // Lifted: the rest goes at once, each write applied once.
    let lifted = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"limit": {"incremental_ops_per_sec": null}})),
    );
    assert!(lifted["spec"]["limit"]["incremental_ops_per_sec"].is_null());
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "limited"), Some(200));
    let patched = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"labels": {"env": "staging"}})),
    );
    assert_eq!(patched["labels"]["env"], "staging");
    let (code, _) = serve.call("DELETE", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 409);

    // Paused: the source's writes reach ferry but not the target.
    let paused = serve.ok("POST", &format!("/api/v1/tasks/{id}/pause"), None);
    assert_eq!(paused["task"]["state"], "paused", "{paused}");
    incr(&mut src, "counter", 50);
    incr(&mut src, "while-paused", 30);
    let written = common::master_offset(&source);
    let task = serve.wait_task(&id, "the paused writes read from the source", |t| {
        t["status"]["source_offset"].as_u64().unwrap_or(0) >= written
    });
    assert!(
        task["status"]["applied_offset"].as_u64().unwrap() < written,
        "{task}"
    );
    assert_eq!(get(&mut dst, "while-paused"), None);
    assert_eq!(get(&mut dst, "counter"), Some(100));

    // Resumed: what the spool kept is written, once.
    let resumed = serve.ok("POST", &format!("/api/v1/tasks/{id}/resume"), None);
    assert_ne!(resumed["state"], "paused");
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "counter"), Some(150));
    assert_eq!(get(&mut dst, "while-paused"), Some(30));
    let verified = serve.ok("POST", &format!("/api/v1/tasks/{id}/verify"), None);
    assert_eq!(verified["failed"], false, "{verified}");
    assert_eq!(verified["task"]["last_verify"]["failed"], false);

    let stopped = serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert!(stopped["status"].is_null());

    // The history, in pages, and as Server-Sent Events.
    let events = serve.events(&id);
    let types: Vec<&str> = events.iter().filter_map(|e| e["type"].as_str()).collect();
    for t in [
        "state",
        "phase",
        "paused",
        "resumed",
        "precheck_report",
        "verify_report",
        "limits_changed",
    ] {
        assert!(types.contains(&t), "no {t} event in {types:?}");
    }
    let states: Vec<&str> = events
        .iter()
        .filter(|e| e["type"] == "state")
        .filter_map(|e| e["to"].as_str())
        .collect();
    for s in [
        "created",
        "prechecking",
        "ready",
        "incremental",
        "paused",
        "stopped",
    ] {
        assert!(states.contains(&s), "never {s}: {states:?}");
    }
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    let sse = sse_until(&serve, &id, "\"to\":\"stopped\"");
    assert!(sse.contains("id: "), "{sse}");
    serve.seen.borrow_mut().push_str(&sse);

    // A stopped task's settings can change (the password kept when the URL is not given).
    let patched = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"limit": {"incremental_ops_per_sec": 1000.0}})),
    );
    assert_eq!(patched["state"], "created");
    assert_eq!(patched["spec"]["limit"]["incremental_ops_per_sec"], 1000.0);
    let checked = serve.ok("POST", &format!("/api/v1/tasks/{id}/precheck"), None);
    assert_eq!(checked["failed"], false, "{checked}");

    // Deleted with its keys: the checkpoint, fence and lease in the target, the heartbeat in
    // the source (and its copy in the target) go; the data stays.
    assert!(!own_keys(&target).is_empty());
    assert!(!own_keys(&source).is_empty());
    // While a copy of the task holds its lease (as another process would), nothing goes.
    let lease = format!("__ferry:lease:{id}");
    let _: () = redis::cmd("SET")
        .arg(&lease)
        .arg("another-copy")
        .arg("PX")
        .arg(600_000)
        .query(&mut dst)
        .unwrap();
    let (code, body) = serve.call("DELETE", &format!("/api/v1/tasks/{id}?cleanup=true"), None);
    assert_eq!(code, 422, "{body}");
    assert!(body["message"].as_str().unwrap().contains(&lease), "{body}");
    serve.ok("GET", &format!("/api/v1/tasks/{id}"), None);
    let _: () = redis::cmd("DEL").arg(&lease).query(&mut dst).unwrap();
    let deleted = serve.ok("DELETE", &format!("/api/v1/tasks/{id}?cleanup=true"), None);
    let removed = &deleted["removed"];
    assert!(
        removed[format!("target {}", target.addr())]
            .as_u64()
            .unwrap()
            >= 2,
        "{deleted}"
    );
    assert_eq!(removed[format!("source {}", source.addr())], 1, "{deleted}");
    assert_eq!(own_keys(&target), Vec::<String>::new());
    assert_eq!(own_keys(&source), Vec::<String>::new());
    equal(&source_side, &target_side);
    assert_eq!(get(&mut dst, "limited"), Some(200));
    serve.assert_no_password();
    let (code, body) = serve.call("GET", &format!("/api/v1/tasks/{id}"), None);
    assert_eq!(code, 404, "{body}");
}

/// Reads the task's SSE stream until `needle` shows up.
fn sse_until(serve: &Serve, id: &str, needle: &str) -> String {
    let mut s = TcpStream::connect(&serve.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    write!(
        s,
        "GET /api/v1/tasks/{id}/events HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
        serve.addr, serve.token
    )
    .unwrap();
    let deadline = Instant::now() + WAIT;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(_) => {}
        }
        if String::from_utf8_lossy(&text).contains(needle) {
            return String::from_utf8_lossy(&text).into_owned();
        }
    }
    panic!(
        "no {needle} in the event stream: {}",
        String::from_utf8_lossy(&text)
    );
}

#[test]
fn a_cluster_task_started_on_creation_pauses_and_resumes() {
    let source = Cluster::start(3, 0);
    let target = Cluster::start(3, 0);
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}})),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert!(created["precheck"].is_array(), "{created}");
    serve.wait_state(&id, "incremental");
    let (source_side, target_side) = (
        Side::cluster(&source.addrs(), None),
        Side::cluster(&target.addrs(), None),
    );
    let keys: Vec<String> = (0..12).map(|i| format!("counter:{{{i}}}")).collect();
    for key in &keys {
        incr(&mut source.conn_for(key.as_bytes()), key, 10);
    }
    equal(&source_side, &target_side);

    serve.ok("POST", &format!("/api/v1/tasks/{id}/pause"), None);
    for key in &keys {
        incr(&mut source.conn_for(key.as_bytes()), key, 5);
    }
    // Each shard's stream has been read past those writes, and none reached the target.
    let offsets: Vec<(u16, u64)> = source
        .masters()
        .iter()
        .map(|m| {
            let slot = keys
                .iter()
                .map(|k| Cluster::slot(k.as_bytes()))
                .find(|s| source.owner(*s).addr() == m.addr())
                .unwrap_or(0);
            (slot, common::master_offset(m))
        })
        .collect();
    serve.wait_task(&id, "every shard's paused writes read", |t| {
        let Some(shards) = t["status"]["shards"].as_array() else {
            return false;
        };
        offsets.iter().all(|(slot, offset)| {
            shards.iter().any(|p| {
                let first: u16 = p["name"]
                    .as_str()
                    .and_then(|n| n.rsplit_once('@'))
                    .and_then(|(_, s)| s.parse().ok())
                    .unwrap_or(u16::MAX);
                source.owner(first).addr() == source.owner(*slot).addr()
                    && p["source_offset"].as_u64().unwrap_or(0) >= *offset
            })
        })
    });
    for key in &keys {
        assert_eq!(get(&mut target.conn_for(key.as_bytes()), key), Some(10));
    }
    serve.ok("POST", &format!("/api/v1/tasks/{id}/resume"), None);
    equal(&source_side, &target_side);
    for key in &keys {
        assert_eq!(get(&mut target.conn_for(key.as_bytes()), key), Some(15));
    }
    // Paused and resumed on the same links: one full sync per shard, none since.
    for m in source.masters() {
        assert_eq!(resyncs(m), (1, 0), "{}", m.addr());
    }
    let stopped = serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);
    assert_eq!(stopped["state"], "stopped", "{stopped}");

    // Deleted with its keys: every master's checkpoints and fences, every shard's heartbeat.
    let deleted = serve.ok("DELETE", &format!("/api/v1/tasks/{id}?cleanup=true"), None);
    for m in target.masters() {
        assert!(
            deleted["removed"][format!("target {}", m.addr())]
                .as_u64()
                .unwrap_or(0)
                > 0,
            "{deleted}"
        );
    }
    for m in target.masters().into_iter().chain(source.masters()) {
        assert_eq!(own_keys(m), Vec::<String>::new(), "{}", m.addr());
    }
    equal(&source_side, &target_side);
}

#[test]
fn tasks_name_saved_connections_whose_passwords_stay_write_only() {
    let source = Server::start_with(&["--requirepass", PASSWORD]);
    let target = Server::start();
    workload::populate(
        &source,
        &Spec {
            seed: 11,
            keys_per_db: 100,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let saved = serve.ok(
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "src", "url": format!("redis://:{PASSWORD}@{}", source.addr()), "description": "the source"})),
    );
    assert_eq!(saved["has_password"], true, "{saved}");
    assert_eq!(saved["url"], format!("redis://{}", source.addr()));
    serve.ok(
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "dst", "url": target.url()})),
    );
    let (code, body) = serve.call(
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "dst", "url": target.url()})),
    );
    assert_eq!(code, 409, "{body}");
    let (code, body) = serve.call(
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "no spaces", "url": target.url()})),
    );
    assert_eq!(code, 400, "{body}");

    // The test button: reached and logged in; a wrong password and a closed port say so.
    let tested = serve.ok("POST", "/api/v1/connections/src/test", None);
    assert_eq!(tested["ok"], true, "{tested}");
    assert_eq!(tested["server"]["addr"], source.addr());
    serve.ok(
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "wrong-pw", "url": format!("redis://:not-it@{}", source.addr())})),
    );
    let tested = serve.ok("POST", "/api/v1/connections/wrong-pw/test", None);
    assert_eq!(tested["ok"], false, "{tested}");
    assert!(
        tested["error"].as_str().unwrap().contains("password"),
        "{tested}"
    );
    let closed = format!("127.0.0.1:{}", common::free_port());
    serve.ok(
        "POST",
        "/api/v1/connections",
        Some(json!({"name": "closed", "url": format!("redis://{closed}")})),
    );
    let tested = serve.ok("POST", "/api/v1/connections/closed/test?as=target", None);
    assert_eq!(tested["ok"], false, "{tested}");
    assert!(
        tested["error"].as_str().unwrap().contains(&closed),
        "{tested}"
    );

    // A task naming both: linked, shown without the password.
    let (code, body) = serve.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"source": {"connection": "src", "url": target.url()}, "target": {"connection": "dst"}})),
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = serve.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"source": {"connection": "nope"}, "target": {"connection": "dst"}})),
    );
    assert_eq!(code, 400, "{body}");
    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"connection": "src"}, "target": {"connection": "dst"}})),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    assert_eq!(created["task"]["spec"]["source"]["connection"], "src");
    assert_eq!(
        created["task"]["spec"]["source"]["url"],
        format!("redis://{}", source.addr())
    );
    serve.wait_state(&id, "incremental");
    let (source_side, target_side) = (
        Side::standalone(&source.addr(), Some(PASSWORD)),
        Side::standalone(&target.addr(), None),
    );
    equal(&source_side, &target_side);
    let used = serve.ok("GET", "/api/v1/connections/src", None);
    assert_eq!(used["used_by"], json!([id]));
    let (code, body) = serve.call("DELETE", "/api/v1/connections/src", None);
    assert_eq!(code, 409, "{body}");
    serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);

    // The source's password changes: changed once in the connection, the task starts with it.
    let new_password = format!("{PASSWORD}-2");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("requirepass")
        .arg(&new_password)
        .query(&mut source.conn())
        .unwrap();
    serve.ok(
        "PUT",
        "/api/v1/connections/src",
        Some(json!({"url": format!("redis://:{new_password}@{}", source.addr())})),
    );
    let mut src = redis::Client::open(format!("redis://:{new_password}@{}", source.addr()))
        .unwrap()
        .get_connection()
        .unwrap();
    incr(&mut src, "after-the-change", 25);
    serve.ok("POST", &format!("/api/v1/tasks/{id}/start"), None);
    let source_side = Side::standalone(&source.addr(), Some(&new_password));
    equal(&source_side, &target_side);
    assert_eq!(get(&mut target.conn(), "after-the-change"), Some(25));
    serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);

    // Given its own URL, the task no longer names the connection, which can then go.
    let patched = serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"target": {"url": target.url()}})),
    );
    assert!(
        patched["spec"]["target"]["connection"].is_null(),
        "{patched}"
    );
    assert_eq!(patched["spec"]["source"]["connection"], "src");
    let (code, _) = serve.call("DELETE", "/api/v1/connections/dst", None);
    assert_eq!(code, 204);
    let listed = serve.ok("GET", "/api/v1/connections", None);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["closed", "src", "wrong-pw"]);
    assert!(!serve.seen.borrow().contains(&new_password));
    assert!(!serve.log().contains(&new_password));
    serve.assert_no_password();
}

#[test]
fn a_failed_precheck_blocks_the_start() {
    let source = Server::start();
    let target = Server::start();
    // A target that already holds keys fails `target_keys` for a new task.
    let _: () = redis::cmd("SET")
        .arg("already-here")
        .arg("1")
        .query(&mut target.conn())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let spec = json!({"source": {"url": source.url()}, "target": {"url": target.url()}});
    let (code, body) = serve.call("POST", "/api/v1/tasks?start=true", Some(spec.clone()));
    assert_eq!(code, 409, "{body}");
    let tasks = serve.ok("GET", "/api/v1/tasks", None);
    let id = tasks[0]["id"].as_str().unwrap().to_string();
    // Started without a precheck of its own, the engine's precheck fails it: `failed`, with
    // the error.
    let other = serve.ok("POST", "/api/v1/tasks", Some(spec.clone()));
    let other = other["task"]["id"].as_str().unwrap().to_string();
    serve.ok("POST", &format!("/api/v1/tasks/{other}/start"), None);
    let failed = serve.wait_state(&other, "failed");
    assert!(
        failed["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("already holds"),
        "{failed}"
    );
    serve.ok("DELETE", &format!("/api/v1/tasks/{other}"), None);
    assert_eq!(tasks[0]["state"], "precheck_failed", "{tasks}");
    assert_eq!(tasks[0]["last_precheck"]["failed"], true);
    let (code, body) = serve.call("POST", &format!("/api/v1/tasks/{id}/start"), None);
    assert_eq!(code, 409, "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("target_keys"), "{message}");
    assert_eq!(serve.task(&id)["state"], "precheck_failed");
    // Fixed (copy over what the target holds), it passes and starts.
    serve.ok(
        "PATCH",
        &format!("/api/v1/tasks/{id}"),
        Some(json!({"sync": {"on_conflict": "overwrite"}})),
    );
    let checked = serve.ok("POST", &format!("/api/v1/tasks/{id}/precheck"), None);
    assert_eq!(checked["failed"], false, "{checked}");
    serve.ok("POST", &format!("/api/v1/tasks/{id}/start"), None);
    serve.wait_state(&id, "incremental");
    serve.ok("POST", &format!("/api/v1/tasks/{id}/stop"), None);
    // A full-only task ends by itself: `finished`.
    let full = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}, "sync": {"full_only": true, "on_conflict": "overwrite"}})),
    );
    let full = full["task"]["id"].as_str().unwrap().to_string();
    serve.wait_state(&full, "finished");
    // A bad spec is refused with one line naming it.
    let (code, body) = serve.call(
        "POST",
        "/api/v1/tasks",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}, "limit": {"nope": 1}})),
    );
    assert_eq!(code, 400, "{body}");
    assert!(body["message"].as_str().unwrap().contains("nope"), "{body}");
}

/// The server is SIGKILLed while the source takes writes, and started again on the same data
/// dir: the task runs again by itself, continues with a partial resync (the source served one
/// full resync in all), and every write reaches the target exactly once.
#[test]
fn a_killed_server_resumes_its_tasks_with_a_partial_resync() {
    let source = Server::start_with(&["--repl-backlog-size", "64mb"]);
    let target = Server::start();
    let cluster_source = Cluster::start(3, 0);
    let cluster_target = Cluster::start(3, 0);
    workload::populate(
        &source,
        &Spec {
            seed: 11,
            keys_per_db: 200,
            ..Spec::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let mut serve = Serve::start(dir.path());
    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"url": source.url()}, "target": {"url": target.url()}})),
    );
    let id = created["task"]["id"].as_str().unwrap().to_string();
    let created = serve.ok(
        "POST",
        "/api/v1/tasks?start=true",
        Some(json!({"source": {"url": cluster_source.url()}, "target": {"url": cluster_target.url()}})),
    );
    let cluster_id = created["task"]["id"].as_str().unwrap().to_string();
    serve.wait_state(&id, "incremental");
    serve.wait_state(&cluster_id, "incremental");

    // Writes into both sources all along: before, during and after the kill.
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let cluster_count = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, count) = (stop.clone(), count.clone());
        let mut conn = source.conn();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                incr(&mut conn, "writes", 1);
                count.fetch_add(1, Ordering::SeqCst);
            }
        })
    };
    let keys: Vec<String> = (0..6).map(|i| format!("writes:{{{i}}}")).collect();
    let cluster_writer = {
        let (stop, count) = (stop.clone(), cluster_count.clone());
        let mut conns: Vec<_> = keys
            .iter()
            .map(|k| (k.clone(), cluster_source.conn_for(k.as_bytes())))
            .collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                for (key, conn) in &mut conns {
                    incr(conn, key, 1);
                    count.fetch_add(1, Ordering::SeqCst);
                }
            }
        })
    };
    let at = count.load(Ordering::SeqCst);
    testkit::wait_until(WAIT, || count.load(Ordering::SeqCst) > at + 500);
    serve.kill();
    let at = count.load(Ordering::SeqCst);
    testkit::wait_until(WAIT, || count.load(Ordering::SeqCst) > at + 2000);
    serve.spawn();
    for id in [&id, &cluster_id] {
        serve.wait_task(id, "the task running again", |t| {
            t["state"] == "incremental" && t["status"]["phase"] == "incremental"
        });
    }
    let at = count.load(Ordering::SeqCst);
    testkit::wait_until(WAIT, || count.load(Ordering::SeqCst) > at + 500);
    stop.store(true, Ordering::SeqCst);
    writer.join().unwrap();
    cluster_writer.join().unwrap();
    equal(
        &Side::standalone(&source.addr(), None),
        &Side::standalone(&target.addr(), None),
    );
    equal(
        &Side::cluster(&cluster_source.addrs(), None),
        &Side::cluster(&cluster_target.addrs(), None),
    );
    let written = count.load(Ordering::SeqCst) as i64;
    assert_eq!(get(&mut target.conn(), "writes"), Some(written));
    let cluster_written: i64 = keys
        .iter()
        .map(|k| get(&mut cluster_target.conn_for(k.as_bytes()), k).unwrap_or(0))
        .sum();
    assert_eq!(cluster_written, cluster_count.load(Ordering::SeqCst) as i64);
    let (full, partial) = resyncs(&source);
    assert_eq!(full, 1, "full resyncs served");
    assert!(partial >= 1, "no partial resync");
    for m in cluster_source.masters() {
        let (full, partial) = resyncs(m);
        assert_eq!(full, 1, "full resyncs served by {}", m.addr());
        assert!(partial >= 1, "no partial resync from {}", m.addr());
    }
    let log = serve.log();
    assert!(log.contains("starting the task again"), "{log}");
    // SIGTERM stops the task cleanly but keeps it running for the next server.
    serve.terminate();
    serve.spawn();
    serve.wait_task(&id, "the task running again after SIGTERM", |t| {
        t["state"] == "incremental" && t["status"]["phase"] == "incremental"
    });
    assert_eq!(serve.log().matches("starting the task again").count(), 4);
    assert!(
        !serve
            .events(&id)
            .iter()
            .any(|e| e["type"] == "state" && e["to"] == "stopped"),
        "a server shutdown is not a stop of its tasks"
    );
    assert_eq!(resyncs(&source).0, 1, "full resyncs served");
}

/// Every operation of the OpenAPI document is served (none is missing from the router), and a
/// path it does not list is not; every /api/ operation documents 401 and its errors' shape.
#[test]
fn the_openapi_document_and_the_router_agree() {
    let dir = tempfile::tempdir().unwrap();
    let serve = Serve::start(dir.path());
    let (code, text) = serve.try_call("GET", "/openapi.json", None, None).unwrap();
    assert_eq!(code, 200);
    let doc: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().unwrap();
    let mut operations = 0;
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let concrete = path.replace("{id}", "no-such-task");
            let (code, body) = serve
                .try_call(
                    &method.to_uppercase(),
                    &concrete,
                    Some(&serve.token),
                    Some(&json!({})),
                )
                .unwrap();
            // The router's own "no route" is an empty 404 or a 405; ours carry a JSON body.
            assert_ne!(code, 405, "{method} {path} is documented, not served");
            assert!(
                code != 404 || body.contains("\"error\""),
                "{method} {path} is documented, not served"
            );
            let responses = op["responses"].as_object().unwrap();
            assert!(!responses.is_empty(), "{method} {path}");
            if path.starts_with("/api/") {
                assert!(responses.contains_key("401"), "{method} {path}");
                assert!(
                    responses.keys().any(|k| k.starts_with('4')
                        && responses[k]["content"]["application/json"]["schema"]["$ref"]
                            == "#/components/schemas/ErrorBody"),
                    "{method} {path}"
                );
            }
        }
    }
    assert!(operations >= 14, "{operations} operations");
    for path in [
        "/api/v1/tasks",
        "/api/v1/tasks/{id}",
        "/api/v1/tasks/{id}/precheck",
        "/api/v1/tasks/{id}/start",
        "/api/v1/tasks/{id}/pause",
        "/api/v1/tasks/{id}/resume",
        "/api/v1/tasks/{id}/stop",
        "/api/v1/tasks/{id}/verify",
        "/api/v1/tasks/{id}/events",
        "/healthz",
        "/readyz",
        "/openapi.json",
    ] {
        assert!(paths.contains_key(path), "{path} not documented");
    }
    let (code, body) = serve
        .try_call("GET", "/api/v1/nothing-here", Some(&serve.token), None)
        .unwrap();
    assert_eq!((code, body.as_str()), (404, ""));
    if let Some(validator) = openapi_validator() {
        let file = dir.path().join("openapi.json");
        std::fs::write(&file, &text).unwrap();
        let out = Command::new(validator).arg(&file).output().unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// The `openapi-spec-validator` command (PyPI package of that name), when installed.
fn openapi_validator() -> Option<PathBuf> {
    let found = Command::new("openapi-spec-validator")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        eprintln!(
            "note: openapi-spec-validator is not installed (pip install openapi-spec-validator): the document is not validated by it"
        );
    }
    found.then(|| PathBuf::from("openapi-spec-validator"))
}
