use super::*;
use crate::spec::{OnConflict, ReadFrom};

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
            "[scan_reader]\naddress = \"127.0.0.1:1\"\n[redis_writer]\naddress = \"127.0.0.1:2\"\n",
            "[scan_reader] (address): ferry has no scan source yet",
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
