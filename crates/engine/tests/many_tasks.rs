//! The engine as a library: many tasks in one process, each driven through its handle, against
//! real servers. Twenty source/target pairs (standalone and cluster on either side, some with
//! filters, some with a Lua script) go through the full copy and the command stream; half are
//! paused while writes go on (nothing reaches their targets, the stream goes into their
//! spools), then resumed; all are stopped and every target is compared key by key.

use std::time::{Duration, Instant};

use ferry_engine::config::TaskConfig;
use ferry_engine::spec::TaskSpec;
use ferry_engine::status::Phase;
use ferry_engine::task::{Task, TaskHandle};
use redis::Commands;
use testkit::compare::{self, KeyFilter, KeyMap, Options, Side};
use testkit::workload::{self, Spec, Workload};
use testkit::{Cluster, Server, wait_until};

enum End {
    One(Server),
    Many(Cluster),
}

impl End {
    fn url(&self) -> String {
        match self {
            End::One(s) => s.url(),
            End::Many(c) => c.url(),
        }
    }

    fn side(&self) -> Side {
        match self {
            End::One(s) => s.into(),
            End::Many(c) => c.into(),
        }
    }

    /// A key only this test writes, set through the right node.
    fn set(&self, key: &str, value: &str) {
        let mut conn = match self {
            End::One(s) => s.conn(),
            End::Many(c) => c.conn_for(key.as_bytes()),
        };
        let _: () = redis::cmd("SET")
            .arg(key)
            .arg(value)
            .query(&mut conn)
            .unwrap();
    }

    fn exists(&self, key: &str) -> bool {
        let mut conn = match self {
            End::One(s) => s.conn(),
            End::Many(c) => c.conn_for(key.as_bytes()),
        };
        redis::cmd("EXISTS")
            .arg(key)
            .query::<i64>(&mut conn)
            .unwrap()
            == 1
    }
}

/// What a pair is set up with, besides its servers.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Plain,
    /// `[filter] block_db = [1]`.
    NoDb1,
    /// `[filter] allow_key_prefix = ["wl:"]`: only the workload's keys.
    OnlyWorkload,
    /// The README's Lua script that puts every key under `eu:`.
    Prefixed,
}

struct Pair {
    kind: Kind,
    source: End,
    target: End,
    seed: u64,
}

impl Pair {
    /// The data and writes of this pair: db 0 only where either side is a cluster; elsewhere
    /// db 1 too, which gives the db filter something to leave out.
    fn spec(&self, seed: u64) -> Spec {
        let one_db = matches!(self.source, End::Many(_)) || matches!(self.target, End::Many(_));
        spec(seed, one_db)
    }
}

fn spec(seed: u64, one_db: bool) -> Spec {
    Spec {
        seed,
        dbs: if one_db { vec![0] } else { vec![0, 1] },
        keys_per_db: 150,
        ttl_fraction: 0.2,
        big_elements: 300,
    }
}

const PREFIX_SCRIPT: &str = r#"
function transform(entry)
  if entry.kind == "key" then
    entry.key = "eu:" .. entry.key
  else
    for _, i in ipairs(entry.keys) do
      entry.args[i] = "eu:" .. entry.args[i]
    end
  end
  return entry
end
"#;

fn config(pair: &Pair, i: usize, data_dir: &std::path::Path) -> TaskConfig {
    let mut text = format!(
        "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[sync]\nname = \"task{i}\"\ndata_dir = \"{}\"\n",
        pair.source.url(),
        pair.target.url(),
        data_dir.display()
    );
    match pair.kind {
        Kind::Plain => {}
        Kind::NoDb1 => text.push_str("[filter]\nblock_db = [1]\n"),
        Kind::OnlyWorkload => text.push_str("[filter]\nallow_key_prefix = [\"wl:\"]\n"),
        Kind::Prefixed => {
            let script = data_dir.join(format!("prefix{i}.lua"));
            std::fs::write(&script, PREFIX_SCRIPT).unwrap();
            text.push_str(&format!("[transform]\nscript = \"{}\"\n", script.display()));
        }
    }
    let spec = TaskSpec::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    spec.validate().unwrap();
    TaskConfig::build(spec).unwrap()
}

fn options(kind: Kind) -> Options {
    // Fed by the replication stream: Redis propagates XREADGROUP without the group's read
    // counter, so its own replicas differ there too (see testkit's compare::Options).
    let mut opts = Options {
        group_read_counters: false,
        ..Options::default()
    };
    match kind {
        Kind::Plain => {}
        Kind::NoDb1 => opts.expect = Some(KeyFilter::new(|db, _, _| db != 1)),
        Kind::OnlyWorkload => {
            opts.expect = Some(KeyFilter::new(|_, key, _| key.starts_with(b"wl:")));
        }
        Kind::Prefixed => {
            opts.key_map = Some(KeyMap::new(|db, key| {
                Some((db, [&b"eu:"[..], key].concat()))
            }));
        }
    }
    opts
}

fn pairs() -> Vec<Pair> {
    let kinds = [
        Kind::Plain,
        Kind::Plain,
        Kind::Plain,
        Kind::Plain,
        Kind::Plain,
        Kind::Plain,
        Kind::Plain,
        Kind::Plain,
        Kind::NoDb1,
        Kind::NoDb1,
        Kind::OnlyWorkload,
        Kind::OnlyWorkload,
        Kind::Prefixed,
        Kind::Prefixed,
    ];
    let mut pairs: Vec<Pair> = std::thread::scope(|scope| {
        let started: Vec<_> = kinds
            .iter()
            .map(|&kind| scope.spawn(move || (kind, Server::start(), Server::start())))
            .collect();
        started
            .into_iter()
            .map(|h| {
                let (kind, s, t) = h.join().unwrap();
                (kind, End::One(s), End::One(t))
            })
            .map(|(kind, source, target)| Pair {
                kind,
                source,
                target,
                seed: 0,
            })
            .collect()
    });
    for _ in 0..3 {
        pairs.push(Pair {
            kind: Kind::Plain,
            source: End::One(Server::start()),
            target: End::Many(Cluster::start(2, 0)),
            seed: 0,
        });
    }
    for _ in 0..3 {
        pairs.push(Pair {
            kind: Kind::Plain,
            source: End::Many(Cluster::start(2, 0)),
            target: End::One(Server::start()),
            seed: 0,
        });
    }
    for (i, p) in pairs.iter_mut().enumerate() {
        p.seed = 1000 + i as u64;
        match &p.source {
            End::One(s) => workload::populate(s, &p.spec(p.seed)),
            End::Many(c) => workload::populate_cluster(c, &p.spec(p.seed)),
        }
    }
    pairs
}

/// Writes on every source at once, `ops` each.
fn write_all(pairs: &[Pair], ops: usize) {
    std::thread::scope(|scope| {
        for p in pairs {
            scope.spawn(move || {
                let mut spec = p.spec(p.seed + 7);
                // SWAPDB or MOVE between db 0 and the filtered db 1 would stop the task (as the
                // README says): the writes keep to db 0 there.
                if matches!(p.kind, Kind::NoDb1) {
                    spec.dbs = vec![0];
                }
                match &p.source {
                    End::One(s) => drop(Workload::new(&spec).run(s, ops)),
                    End::Many(c) => drop(Workload::for_cluster(&spec).run_cluster(c, ops)),
                }
            });
        }
    });
}

/// Its phase, after checking that it has not failed.
fn not_failed(t: &TaskHandle) -> Phase {
    let st = t.status();
    assert!(
        st.status.phase != Phase::Failed,
        "task {} failed: {:?}",
        st.id,
        st.status.last_error
    );
    st.status.phase
}

fn wait_phase(tasks: &[TaskHandle], phase: Phase, timeout: Duration) {
    let ok = wait_until(timeout, || tasks.iter().all(|t| not_failed(t) == phase));
    let phases: Vec<_> = tasks.iter().map(|t| t.status().status.phase).collect();
    assert!(ok, "not all tasks reached {phase:?}: {phases:?}");
}

/// Every target equals its source key by key (after the writes have settled), and no task has
/// failed.
fn all_equal(pairs: &[Pair], tasks: &[TaskHandle], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    for t in tasks {
        not_failed(t);
    }
    for (i, p) in pairs.iter().enumerate() {
        let opts = options(p.kind);
        loop {
            match compare::compare_sides(&p.source.side(), &p.target.side(), &opts) {
                Ok(n) => {
                    assert!(n > 0, "pair {i}: nothing compared");
                    break;
                }
                Err(report) if Instant::now() > deadline => {
                    panic!("pair {i} ({:?}): {report}", p.kind)
                }
                Err(_) => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

#[test]
fn twenty_tasks_in_one_process_full_copy_stream_pause_resume_and_stop() {
    let data = tempfile::tempdir().unwrap();
    let pairs = pairs();
    assert_eq!(pairs.len(), 20);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = runtime.enter();
    let tasks: Vec<TaskHandle> = pairs
        .iter()
        .enumerate()
        .map(|(i, p)| Task::start(config(p, i, data.path()), None).unwrap())
        .collect();
    // Every task has its own id, and so its own local files.
    let ids: std::collections::BTreeSet<_> = tasks.iter().map(|t| t.id().clone()).collect();
    assert_eq!(ids.len(), tasks.len());

    wait_phase(&tasks, Phase::Incremental, Duration::from_secs(180));
    write_all(&pairs, 400);

    // Half paused while writes go on.
    let paused: Vec<usize> = (0..tasks.len()).step_by(2).collect();
    for &i in &paused {
        let report = tasks[i].pause();
        assert!(report.paused, "{report:?}");
        assert!(report.spool_room_bytes.is_some_and(|r| r > 0), "{report:?}");
    }
    // What was handed to the writers before the pause is finished; then nothing moves.
    let settled = |i: usize| {
        let mut last = tasks[i].status().status.applied_offset;
        loop {
            std::thread::sleep(Duration::from_millis(500));
            let now = tasks[i].status().status.applied_offset;
            if now == last {
                return now;
            }
            last = now;
        }
    };
    let applied: Vec<(usize, u64)> = paused.iter().map(|&i| (i, settled(i))).collect();
    write_all(&pairs, 400);
    for &i in &paused {
        pairs[i]
            .source
            .set(&format!("wl:paused:{i}"), "written while paused");
    }
    std::thread::sleep(Duration::from_secs(2));
    for &(i, before) in &applied {
        let st = tasks[i].status();
        assert!(st.paused, "task {i}");
        assert_eq!(
            st.status.applied_offset, before,
            "task {i} wrote while paused"
        );
        for key in [format!("wl:paused:{i}"), format!("eu:wl:paused:{i}")] {
            assert!(
                !pairs[i].target.exists(&key),
                "task {i}: a write made while paused reached the target ({key})"
            );
        }
        // The stream went on being read (into the spool).
        assert!(
            st.status.source_offset > before,
            "task {i}: the source was not read while paused ({} <= {before})",
            st.status.source_offset
        );
    }
    for &i in &paused {
        tasks[i].resume();
    }
    write_all(&pairs, 200);
    // Key by key, the writes made while paused among them.
    all_equal(&pairs, &tasks, Duration::from_secs(120));

    for t in &tasks {
        t.stop();
    }
    for t in tasks {
        let id = t.id().clone();
        runtime
            .block_on(t.join())
            .unwrap_or_else(|e| panic!("task {id}: {e}"));
    }
    // Stopped tasks keep their checkpoints; the data stays equal.
    all_equal(&pairs, &[], Duration::from_secs(10));
}

/// Two tasks read one source into two targets, with the default name (the source's address)
/// and one data directory: each has its own id and its own spool, and a target that goes away
/// for a while is fed from its own spool when it is back, while the other goes on.
#[test]
fn two_tasks_reading_one_source_keep_apart() {
    let data = tempfile::tempdir().unwrap();
    let source = Server::start();
    let (first, mut second) = (Server::start(), Server::start());
    workload::populate(&source, &spec(7, false));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = runtime.enter();
    let config = |target: &Server| {
        let text = format!(
            "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[sync]\ndata_dir = \"{}\"\n",
            source.url(),
            target.url(),
            data.path().display()
        );
        TaskConfig::build(TaskSpec::from_toml(&text).unwrap()).unwrap()
    };
    let (a, b) = (config(&first), config(&second));
    assert_eq!(a.name, b.name);
    assert_ne!(a.id, b.id);
    let (dir_a, dir_b) = (a.local_dir(), b.local_dir());
    let tasks = [Task::start(a, None).unwrap(), Task::start(b, None).unwrap()];
    wait_phase(&tasks, Phase::Incremental, Duration::from_secs(60));
    Workload::new(&spec(8, false)).run(&source, 300);

    // The second target goes away; the stream goes on into its task's spool only.
    second.stop();
    Workload::new(&spec(9, false)).run(&source, 300);
    let segments = |dir: &std::path::Path| {
        walk(dir)
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "spool"))
            .count()
    };
    assert!(wait_until(Duration::from_secs(30), || {
        tasks[1].status().status.spool_bytes > 0
    }));
    // Each task spools its own stream, in its own directory.
    assert_ne!(dir_a, dir_b);
    assert!(
        segments(&dir_a) > 0 && segments(&dir_b) > 0,
        "{:?} {:?}",
        walk(&dir_a),
        walk(&dir_b)
    );
    second.start_again();
    Workload::new(&spec(10, false)).run(&source, 300);

    let opts = options(Kind::Plain);
    for target in [&first, &second] {
        let equal = wait_until(Duration::from_secs(60), || {
            compare::compare(&source, target, &opts).is_ok()
        });
        if !equal {
            compare::compare(&source, target, &opts).unwrap_or_else(|r| panic!("{r}"));
        }
    }
    for t in &tasks {
        t.stop();
    }
    for t in tasks {
        runtime.block_on(t.join()).unwrap();
    }
    // Neither emptied the other's directory.
    assert!(dir_a.join("lock").exists() && dir_b.join("lock").exists());
}

/// A second task with the same id on this machine is refused: its local files are in use.
#[test]
fn the_same_task_twice_on_one_machine_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let (source, target) = (Server::start(), Server::start());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let _enter = runtime.enter();
    let text = format!(
        "[source]\nurl = \"{}\"\n[target]\nurl = \"{}\"\n[sync]\nid = \"orders\"\ndata_dir = \"{}\"\n",
        source.url(),
        target.url(),
        data.path().display()
    );
    let config = || TaskConfig::build(TaskSpec::from_toml(&text).unwrap()).unwrap();
    let first = Task::start(config(), None).unwrap();
    wait_phase(
        std::slice::from_ref(&first),
        Phase::Incremental,
        Duration::from_secs(60),
    );
    let second = Task::start(config(), None).unwrap();
    let err = runtime.block_on(second.join()).unwrap_err();
    assert_eq!(err.code(), "local_files", "{err}");
    assert!(
        err.to_string()
            .contains("task orders is already running on this machine"),
        "{err}"
    );
    // The first goes on untouched.
    source.conn().set::<_, _, ()>("after", "1").unwrap();
    assert!(wait_until(Duration::from_secs(30), || target
        .conn()
        .exists::<_, bool>("after")
        .unwrap()));
    first.stop();
    runtime.block_on(first.join()).unwrap();
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            }
            out.push(p);
        }
    }
    out
}
