use super::*;
use crate::spec::{Mode, OnConflict, ReadFrom};

fn no_env(_: &str) -> Option<String> {
    None
}

/// Every key of RedisShake 4's sample `shake.toml`, with values of our own.
const FULL_V4: &str = r#"
[sync_reader]
cluster = true
address = "127.0.0.1:7000"
username = "app"
password = "p@ss/word"
tls = false
sync_rdb = true
sync_aof = false
prefer_replica = true
try_diskless = true

[redis_writer]
cluster = false
sentinel = false
master = ""
address = "127.0.0.1:7100"
username = ""
password = "dst"
tls = false
off_reply = false

[filter]
allow_keys = ["exact"]
allow_key_prefix = ["user:"]
allow_key_suffix = []
allow_key_regex = [":\\d{11}:"]
block_keys = []
block_key_prefix = ["user:tmp:"]
block_key_suffix = [":old"]
block_key_regex = []
allow_db = [0, 1]
block_db = []
allow_command = []
block_command = ["FLUSHALL"]
allow_command_group = []
block_command_group = ["SCRIPTING", "CLUSTER"]
function = ""

[advanced]
dir = "/var/lib/shake"
ncpu = 4
pprof_port = 0
status_port = 8080
log_file = "shake.log"
log_level = "debug"
log_interval = 5
rdb_restore_command_behavior = "rewrite"
pipeline_count_limit = 512
target_redis_client_max_querybuf_len = 1073741824
target_redis_proto_max_bulk_len = 512_000_000
aws_psync = ""
empty_db_before_sync = false
no_such_key = 1

[module]
target_mbbloom_version = 20603
"#;

#[test]
fn every_key_of_a_v4_file_is_mapped_or_named() {
    assert_eq!(detect(FULL_V4), Some(Dialect::V4));
    let c = convert(FULL_V4, &no_env).unwrap();
    assert_eq!(c.refused().count(), 0, "{:?}", c.notes);
    let s = &c.spec;
    assert_eq!(
        s.source.url.as_ref().unwrap().expose(),
        "redis://app:p%40ss%2Fword@127.0.0.1:7000"
    );
    assert_eq!(
        s.target.url.as_ref().unwrap().expose(),
        "redis://:dst@127.0.0.1:7100"
    );
    assert_eq!(s.source.read_from, Some(ReadFrom::Replica));
    assert_eq!(s.sync.full_only, Some(true));
    assert_eq!(s.sync.on_conflict, Some(OnConflict::Overwrite));
    assert_eq!(
        s.sync.data_dir.as_deref(),
        Some(std::path::Path::new("/var/lib/shake"))
    );
    assert_eq!(s.status.addr.as_deref(), Some("127.0.0.1:8080"));
    assert_eq!(s.advanced.max_in_flight, Some(512));
    assert_eq!(s.filter.allow_keys, ["exact"]);
    assert_eq!(s.filter.allow_key_regex, [":\\d{11}:"]);
    assert_eq!(s.filter.allow_db, [0, 1]);
    assert_eq!(s.filter.block_command_group, ["scripting"]);
    let named: Vec<&str> = c.notes.iter().map(|n| n.setting.as_str()).collect();
    for key in [
        "[sync_reader] try_diskless",
        "[redis_writer] off_reply",
        "[advanced] ncpu = 4",
        "[advanced] log_level = \"debug\"",
        "[advanced] target_redis_client_max_querybuf_len",
        "[advanced] no_such_key",
        "[module] target_mbbloom_version = 20603",
    ] {
        assert!(named.contains(&key), "{key} not in {named:?}");
    }
    let unknown = c
        .notes
        .iter()
        .find(|n| n.setting == "[advanced] no_such_key")
        .unwrap();
    assert_eq!(unknown.outcome, Outcome::Unknown);
    // Passwords are never in a note.
    assert!(!format!("{:?}", c.notes).contains("p@ss"));
}

#[test]
fn the_converted_toml_reads_back_as_the_same_task() {
    let c = convert(FULL_V4, &no_env).unwrap();
    let text = c.to_toml();
    let back = TaskSpec::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, c.spec, "{text}");
    assert!(text.contains("ncpu = 4: not carried over"), "{text}");
    assert_eq!(detect(&text), None);
}

#[test]
fn settings_ferry_cannot_honour_refuse_the_file_in_one_line() {
    for (text, expect) in [
        (
            "[scan_reader]\naddress = \"127.0.0.1:1\"\nscan = false\nksn = true\n[redis_writer]\naddress = \"127.0.0.1:2\"\n",
            "[scan_reader] scan: ferry always copies every key",
        ),
        (
            "[scan_reader]\naddress = \"127.0.0.1:1\"\ndbs = [1, 2]\n[redis_writer]\naddress = \"127.0.0.1:2\"\n[filter]\nallow_db = [3]\n",
            "[filter] allow_db: no db is both here and in the reader's dbs",
        ),
        (
            "[sync_reader]\naddress = \"127.0.0.1:1\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\n[filter]\nfunction = \"shake.call(DB, ARGV)\"\n",
            "[filter] function: RedisShake's Lua functions",
        ),
        (
            "[sync_reader]\naddress = \"127.0.0.1:1\"\nsync_rdb = false\n[redis_writer]\naddress = \"127.0.0.1:2\"\n",
            "[sync_reader] sync_rdb: ferry always copies the snapshot",
        ),
        (
            "[rdb_reader]\nfilepath = \"/d.rdb\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\n[advanced]\nrdb_restore_command_behavior = \"skip\"\n",
            "rdb_restore_command_behavior: ferry cannot keep the target's value",
        ),
        (
            "[aof_reader]\nfilepath = \"/a.aof\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\n",
            "ferry cannot read AOF files",
        ),
    ] {
        let err = convert(text, &no_env)
            .unwrap()
            .into_spec()
            .unwrap_err()
            .to_string();
        assert!(err.contains(expect), "{err}");
        assert!(!err.contains('\n'), "{err}");
    }
}

#[test]
fn bad_values_name_the_setting() {
    for (text, expect) in [
        (
            "[sync_reader]\naddress = \"a:1\"\ncluster = \"yes\"\n[redis_writer]\naddress = \"b:2\"\n",
            "[sync_reader] cluster must be true or false",
        ),
        (
            "[sync_reader]\n[redis_writer]\naddress = \"b:2\"\n",
            "[sync_reader] address is missing",
        ),
        ("[sync_reader]\naddress = \"a:1\"\n", "no writer"),
        (
            "[sync_reader]\naddress = \"a:1\"\n[redis_writer]\naddress = \"b:2\"\nsentinel = true\n",
            "needs [redis_writer] master",
        ),
    ] {
        let err = convert(text, &no_env).unwrap_err().to_string();
        assert!(err.contains(expect), "{err}");
    }
}

#[test]
fn environment_variables_fill_values_and_their_passwords_stay_out_of_the_output() {
    let text = "[sync_reader]\naddress = \"${SRC}\"\npassword = \"${PW}\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\nusername = \"${UNSET}\"\n";
    let env = |v: &str| match v {
        "SRC" => Some("127.0.0.1:1".to_string()),
        "PW" => Some("from-env".to_string()),
        _ => None,
    };
    let c = convert(text, &env).unwrap();
    assert_eq!(
        c.spec.source.url.as_ref().unwrap().expose(),
        "redis://:from-env@127.0.0.1:1"
    );
    assert_eq!(c.source_password, PasswordFrom::Env("PW".into()));
    let out = c.to_toml();
    assert!(!out.contains("from-env"), "{out}");
    assert!(out.contains("${PW}"), "{out}");
    // An unset variable stays as written, as RedisShake leaves it; with no password it sends no login.
    assert_eq!(
        c.spec.target.url.as_ref().unwrap().expose(),
        "redis://127.0.0.1:2"
    );
}

#[test]
fn sentinel_writer_and_relative_rdb_paths() {
    let text = "[rdb_reader]\nfilepath = \"dump.rdb\"\n[redis_writer]\nsentinel = true\nmaster = \"mymaster\"\naddress = \"127.0.0.1:26379\"\npassword = \"pw\"\ntls = true\n[advanced]\ndir = \"/work\"\nempty_db_before_sync = true\n";
    let c = convert(text, &no_env).unwrap();
    assert_eq!(
        c.spec.source.url.as_ref().unwrap().expose(),
        "/work/dump.rdb"
    );
    assert_eq!(
        c.spec.target.url.as_ref().unwrap().expose(),
        "rediss+sentinel://:pw@127.0.0.1:26379/mymaster"
    );
    assert_eq!(c.spec.sync.on_conflict, Some(OnConflict::Flush));
    assert_eq!(c.spec.sync.confirm_flush, Some(true));
}

#[test]
fn v3_toml_and_the_flat_conf_are_read_too() {
    let v3 = "[source]\ntype = \"sync\"\naddress = \"127.0.0.1:1\"\npassword = \"\"\ntls = false\nelasticache_psync = \"\"\n[target]\ntype = \"cluster\"\naddress = \"127.0.0.1:2\"\n[advanced]\nncpu = 3\n";
    assert_eq!(detect(v3), Some(Dialect::V3));
    let c = convert(v3, &no_env).unwrap();
    // v3's default was rewrite.
    assert_eq!(c.spec.sync.on_conflict, Some(OnConflict::Overwrite));
    assert_eq!(
        c.spec.target.url.as_ref().unwrap().expose(),
        "redis://127.0.0.1:2"
    );

    let flat = "conf.version = 1\nid = redis-shake\nsource.type = cluster\nsource.address = 127.0.0.1:1;127.0.0.1:3\nsource.password_raw = s\ntarget.type = standalone\ntarget.address = 127.0.0.1:2\ntarget.db = 4\nkey_exists = rewrite\nfilter.db.whitelist = 0;1\nfilter.key.blacklist = tmp:;cache:\nparallel = 8\nmystery = 1\n";
    assert_eq!(detect(flat), Some(Dialect::Flat));
    let c = convert(flat, &no_env).unwrap();
    assert_eq!(c.refused().count(), 0, "{:?}", c.notes);
    assert_eq!(
        c.spec.source.url.as_ref().unwrap().expose(),
        "redis://:s@127.0.0.1:1"
    );
    assert_eq!(c.spec.filter.db_map.get("3"), Some(&4));
    assert_eq!(c.spec.filter.allow_db, [0, 1]);
    assert_eq!(c.spec.filter.block_key_prefix, ["tmp:", "cache:"]);
    assert_eq!(c.spec.sync.on_conflict, Some(OnConflict::Overwrite));
    assert!(
        c.notes
            .iter()
            .any(|n| n.setting == "mystery" && n.outcome == Outcome::Unknown)
    );
    assert!(c.notes.iter().any(|n| n.setting == "parallel = 8"));
}

#[test]
fn a_ferry_config_is_not_taken_for_a_redisshake_one() {
    assert_eq!(
        detect("[source]\nurl = \"redis://127.0.0.1:1\"\n[filter]\nallow_db = [0]\n"),
        None
    );
    assert_eq!(detect("not = [valid"), None);
}

#[test]
fn command_groups_ferry_does_not_have() {
    let file = |filter: &str| {
        format!(
            "[sync_reader]\naddress = \"127.0.0.1:1\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\n[filter]\n{filter}\n"
        )
    };
    let c = convert(
        &file("block_command_group = [\"SENTINEL\", \"STRING\"]"),
        &no_env,
    )
    .unwrap();
    assert_eq!(c.spec.filter.block_command_group, ["string"]);
    assert_eq!(c.refused().count(), 0);
    for refused in [
        "allow_command_group = [\"CLUSTER\"]",
        "block_command_group = [\"TAIRHASH\"]",
    ] {
        let err = convert(&file(refused), &no_env)
            .unwrap()
            .into_spec()
            .unwrap_err();
        assert!(err.to_string().contains("command_group"), "{err}");
    }
}

#[test]
fn early_v3_lists_of_target_nodes() {
    let text = "[source]\naddress = \"127.0.0.1:1\"\n[target]\ntype = \"cluster\"\naddresses = [\"127.0.0.1:2\", \"127.0.0.1:3\"]\n";
    let c = convert(text, &no_env).unwrap();
    assert_eq!(
        c.spec.target.url.as_ref().unwrap().expose(),
        "redis://127.0.0.1:2"
    );
}

/// Every key of RedisShake 4's `[scan_reader]` (v4.1 on), with values of our own.
const SCAN_V4: &str = r#"
[scan_reader]
cluster = true
address = "127.0.0.1:7000"
username = "app"
password = "scan-pw"
tls = false
dbs = [0, 3]
scan = true
ksn = true
count = 100
prefer_replica = true

[redis_writer]
address = "127.0.0.1:7100"

[advanced]
aws_psync = "127.0.0.1:6379@nameOfPsync"
"#;

#[test]
fn a_scan_reader_is_ferrys_scan_mode() {
    let c = convert(SCAN_V4, &no_env).unwrap();
    assert_eq!(c.refused().count(), 0, "{:?}", c.notes);
    let s = &c.spec;
    assert_eq!(s.source.mode, Some(Mode::Scan));
    // Login, TLS, cluster and prefer_replica as [sync_reader] maps them.
    assert_eq!(
        s.source.url.as_ref().unwrap().expose(),
        "redis://app:scan-pw@127.0.0.1:7000"
    );
    assert_eq!(c.source_password, PasswordFrom::File);
    // Scan mode reads the masters: prefer_replica is named, not carried over.
    assert_eq!(s.source.read_from, None);
    assert_eq!(s.filter.allow_db, [0, 3]);
    // ksn = true follows changes: ferry's default.
    assert_eq!(s.sync.full_only, None);
    let outcome = |setting: &str| {
        c.notes
            .iter()
            .find(|n| n.setting == setting)
            .unwrap_or_else(|| panic!("no note for {setting}: {:?}", c.notes))
            .outcome
            .clone()
    };
    for key in ["cluster", "address", "username", "password", "dbs", "ksn"] {
        let setting = format!("[scan_reader] {key}");
        assert!(
            matches!(outcome(&setting), Outcome::Mapped(_)),
            "{setting}: {:?}",
            outcome(&setting)
        );
    }
    assert!(
        matches!(outcome("[scan_reader]"), Outcome::Mapped(m) if m.contains("mode = \"scan\""))
    );
    assert!(
        matches!(outcome("[scan_reader] count"), Outcome::Mapped(m) if m.contains("ferry picks its own SCAN count"))
    );
    assert_eq!(outcome("[scan_reader] scan"), Outcome::Default);
    assert!(
        matches!(outcome("[scan_reader] prefer_replica"), Outcome::Differs(d) if d.contains("master"))
    );
    // A scan sends no PSYNC: ElastiCache's renamed one does not matter.
    assert!(matches!(
        outcome("[advanced] aws_psync"),
        Outcome::Ignored(_)
    ));
    assert!(
        !c.notes.iter().any(|n| n.outcome == Outcome::Unknown),
        "{:?}",
        c.notes
    );
    assert!(!format!("{:?}", c.notes).contains("scan-pw"));

    // The converted config says mode = "scan" and reads back as the same task.
    let text = c.to_toml();
    assert!(text.contains("mode = \"scan\""), "{text}");
    let back = TaskSpec::from_toml(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back, c.spec, "{text}");
}

#[test]
fn a_scan_reader_without_ksn_copies_once() {
    for (ksn, setting) in [
        (
            "",
            "[scan_reader] ksn (not set: RedisShake's default, false)",
        ),
        ("ksn = false\n", "[scan_reader] ksn"),
    ] {
        let text = format!(
            "[scan_reader]\naddress = \"127.0.0.1:1\"\n{ksn}[redis_writer]\naddress = \"127.0.0.1:2\"\n"
        );
        let c = convert(&text, &no_env).unwrap();
        assert_eq!(c.refused().count(), 0, "{:?}", c.notes);
        assert_eq!(c.spec.source.mode, Some(Mode::Scan));
        assert_eq!(c.spec.sync.full_only, Some(true), "{ksn:?}");
        let note = c.notes.iter().find(|n| n.setting == setting).unwrap();
        assert!(
            note.line().contains("[sync] full_only = true"),
            "{}",
            note.line()
        );
        assert!(c.to_toml().contains("full_only = true"));
    }
}

#[test]
fn v4_0_scan_reader_names_and_dbs_with_a_db_filter() {
    // v4.0's names imply the cluster flag; dbs and [filter] allow_db both narrow the dbs.
    let text = "[scan_cluster_reader]\naddress = \"127.0.0.1:1\"\nksn = true\ndbs = [0, 1, 2]\n[redis_writer]\naddress = \"127.0.0.1:2\"\n[filter]\nallow_db = [2, 1, 9]\n";
    let c = convert(text, &no_env).unwrap();
    assert_eq!(c.refused().count(), 0, "{:?}", c.notes);
    assert_eq!(c.spec.source.mode, Some(Mode::Scan));
    assert_eq!(c.spec.filter.allow_db, [2, 1]);
    assert!(
        c.notes
            .iter()
            .any(|n| n.setting == "[scan_cluster_reader] cluster")
    );
    // A [sync_reader] leaves the mode to ferry's default.
    let c = convert(
        "[sync_reader]\naddress = \"127.0.0.1:1\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(c.spec.source.mode, None);
}

#[test]
fn v3_1_names_its_mode_at_the_top() {
    // RedisShake 3.1's scan.toml: type at the top, versions, metrics_port.
    let scan = "type = \"scan\"\n[source]\nversion = 5.0\naddress = \"127.0.0.1:1\"\nusername = \"\"\npassword = \"pw\"\ntls = false\n[target]\ntype = \"standalone\"\nversion = 7.0\naddress = \"127.0.0.1:2\"\n[advanced]\nmetrics_port = 0\nrdb_restore_command_behavior = \"rewrite\"\n";
    assert_eq!(detect(scan), Some(Dialect::V3));
    let c = convert(scan, &no_env).unwrap();
    assert_eq!(c.refused().count(), 0, "{:?}", c.notes);
    assert_eq!(c.spec.source.mode, Some(Mode::Scan));
    // RedisShake 3 scans once and stops.
    assert_eq!(c.spec.sync.full_only, Some(true));
    assert_eq!(
        c.spec.source.url.as_ref().unwrap().expose(),
        "redis://:pw@127.0.0.1:1"
    );
    assert!(
        !c.notes.iter().any(|n| n.outcome == Outcome::Unknown),
        "{:?}",
        c.notes
    );
    let note = c.notes.iter().find(|n| n.setting == "type").unwrap();
    assert!(note.line().contains("mode = \"scan\""), "{}", note.line());

    let restore = "type = \"restore\"\n[source]\nrdb_file_path = \"dump.rdb\"\n[target]\naddress = \"127.0.0.1:2\"\n[advanced]\ndir = \"/d\"\nmetrics_port = 9000\n";
    let c = convert(restore, &no_env).unwrap();
    assert_eq!(c.spec.source.url.as_ref().unwrap().expose(), "/d/dump.rdb");
    assert_eq!(c.spec.source.mode, None);
    assert!(
        c.notes
            .iter()
            .any(|n| n.setting == "[advanced] metrics_port = 9000"
                && matches!(n.outcome, Outcome::Ignored(_)))
    );

    // v3.0's [source] type still works; an unknown mode is refused in one line.
    let c = convert(
        "[source]\ntype = \"sync\"\naddress = \"127.0.0.1:1\"\n[target]\naddress = \"127.0.0.1:2\"\n",
        &no_env,
    )
    .unwrap();
    assert_eq!(c.spec.source.mode, None);
    assert_eq!(c.spec.sync.full_only, None);
    let err = convert(
        "type = \"dump\"\n[source]\naddress = \"127.0.0.1:1\"\n[target]\naddress = \"127.0.0.1:2\"\n",
        &no_env,
    )
    .unwrap()
    .into_spec()
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("type = \"dump\"") && err.contains("\"scan\""),
        "{err}"
    );
}

#[test]
fn rump_mode_keys_of_the_flat_conf_point_at_scan_mode() {
    let flat =
        "source.address = 127.0.0.1:1\ntarget.address = 127.0.0.1:2\nscan.key_number = 100\n";
    let c = convert(flat, &no_env).unwrap();
    let note = c
        .notes
        .iter()
        .find(|n| n.setting == "scan.key_number = 100")
        .unwrap();
    assert!(
        note.line().contains("--source-mode scan --full-only"),
        "{}",
        note.line()
    );
}
