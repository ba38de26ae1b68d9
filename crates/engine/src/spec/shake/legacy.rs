//! The formats before v4: RedisShake 3's TOML (`[source] type`, `[target] type`,
//! `[advanced]`), and the flat `redis-shake.conf` of versions 1 and 2, whose mode (sync,
//! restore, ...) was given on the command line (`-type=sync`), not in the file.

use std::path::Path;

use toml::{Table, Value};

use super::v4::{advanced, login_notes, password_from};
use super::{Converted, Dialect, Login, Notes, Outcome, PasswordFrom, Section};
use crate::error::Error;
use crate::spec::{Mode, OnConflict, TaskSpec};

pub(super) fn convert_v3(
    mut table: Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Converted, Error> {
    let mut notes = Notes(Vec::new());
    let mut spec = TaskSpec::default();
    let dir = table
        .get("advanced")
        .and_then(|a| a.get("dir"))
        .and_then(Value::as_str)
        .unwrap_or("data")
        .to_string();
    let mut take = |name: &str| match table.remove(name) {
        Some(Value::Table(t)) => Ok(t),
        None => Ok(Table::new()),
        Some(v) => Err(Error::Config(format!(
            "{name} must be a table ([{name}]), not {v}"
        ))),
    };
    let (source, target, adv) = (take("source")?, take("target")?, take("advanced")?);
    // RedisShake 3.1 names the mode at the top (`type = "scan"`), 3.0 in `[source]`.
    let top_type = match table.remove("type") {
        None => None,
        Some(Value::String(t)) => Some(t),
        Some(v) => {
            return Err(Error::Config(format!(
                "type must be \"sync\", \"restore\" or \"scan\", not {v}"
            )));
        }
    };

    let mut sec = Section::new("[source]", source, env);
    let (kind, kind_setting) = match top_type {
        Some(t) => (t, "type".to_string()),
        None => (
            sec.str("type")?.unwrap_or_else(|| "sync".into()),
            sec.setting("type"),
        ),
    };
    let mut source_password = PasswordFrom::None;
    match kind.as_str() {
        "sync" | "scan" => {
            let address = sec.str("address")?.unwrap_or_default();
            if address.is_empty() {
                return Err(Error::Config(
                    "[source] address is missing: the source's host:port".into(),
                ));
            }
            let username = sec.str("username")?.unwrap_or_default();
            let password = sec.str("password")?.unwrap_or_default();
            let tls = sec.bool("tls")?.unwrap_or(false);
            let login = Login {
                address: &address,
                username: &username,
                password: &password,
                tls,
            };
            spec.source.url = Some(login.url());
            if kind == "scan" {
                spec.source.mode = Some(Mode::Scan);
                spec.sync.full_only = Some(true);
                notes.add(
                    kind_setting.clone(),
                    Outcome::Mapped(
                        "[source] mode = \"scan\" and [sync] full_only = true: RedisShake 3 reads every key once by SCAN + DUMP and stops; so does ferry, then it exits".into(),
                    ),
                );
            } else {
                notes.add(
                    kind_setting.clone(),
                    Outcome::Mapped("[source] url (a replica of it)".into()),
                );
            }
            login_notes(
                &sec,
                &mut notes,
                "source",
                &login,
                ["address", "username", "password", "tls"],
            );
            source_password = password_from(&sec, &password);
        }
        "restore" => {
            let path = sec.str("rdb_file_path")?.unwrap_or_default();
            if path.is_empty() {
                return Err(Error::Config(
                    "[source] rdb_file_path is missing: the RDB file to restore".into(),
                ));
            }
            let full = match Path::new(&path).is_absolute() {
                true => path,
                false => Path::new(&dir).join(&path).to_string_lossy().into_owned(),
            };
            notes.add(
                sec.setting("rdb_file_path"),
                Outcome::Mapped(format!("[source] url = {full:?} (relative paths are inside [advanced] dir, as RedisShake reads them)")),
            );
            notes.add(
                kind_setting.clone(),
                Outcome::Mapped("[source] url (the file)".into()),
            );
            spec.source.url = Some(full.as_str().into());
        }
        other => {
            let keys = sec.keys();
            notes.add(
                format!("{kind_setting} = {other:?} ([source] {keys})"),
                Outcome::Refused(
                    "RedisShake 3 knows type = \"sync\" (ferry follows the source as a replica), \"scan\" (ferry scans it) and \"restore\" (ferry loads the dump file)".into(),
                ),
            );
        }
    }
    if let Some(psync) = sec.str("elasticache_psync")? {
        notes.add(
            sec.setting("elasticache_psync"),
            match (psync.is_empty(), kind == "scan") {
                (true, _) => Outcome::Default,
                (false, true) => Outcome::Ignored(
                    "used by type = \"sync\" only; a scan sends no PSYNC, in RedisShake as in ferry".into(),
                ),
                (false, false) => Outcome::Refused(
                    "ferry cannot send ElastiCache's renamed PSYNC command: sync from a server that accepts PSYNC".into(),
                ),
            },
        );
    }
    version_note(&mut sec, &mut notes);
    sec.leftovers(&mut notes.0);

    let mut sec = Section::new("[target]", target, env);
    if sec.str("type")?.is_some() {
        notes.add(
            sec.setting("type"),
            Outcome::Mapped("no setting: ferry asks the server whether it is a cluster".into()),
        );
    }
    let mut address = sec.str("address")?.unwrap_or_default();
    // v3.0's first releases listed a cluster's nodes: ferry needs one.
    if sec.has("addresses") {
        let nodes = sec.strings("addresses")?;
        if address.is_empty() {
            address = nodes.first().cloned().unwrap_or_default();
        }
        notes.add(
            sec.setting("addresses"),
            Outcome::Mapped("[target] url = the first node; ferry finds the others".into()),
        );
    }
    if address.is_empty() {
        return Err(Error::Config(
            "[target] address is missing: the target's host:port".into(),
        ));
    }
    let username = sec.str("username")?.unwrap_or_default();
    let password = sec.str("password")?.unwrap_or_default();
    let tls = sec.bool("tls")?.unwrap_or(false);
    let login = Login {
        address: &address,
        username: &username,
        password: &password,
        tls,
    };
    spec.target.url = Some(login.url());
    login_notes(
        &sec,
        &mut notes,
        "target",
        &login,
        ["address", "username", "password", "tls"],
    );
    let target_password = password_from(&sec, &password);
    version_note(&mut sec, &mut notes);
    sec.leftovers(&mut notes.0);

    let mut sec = Section::new("[advanced]", adv, env);
    // RedisShake 3.1's Prometheus port.
    if let Some((v, set)) = sec.raw("metrics_port", Some(Value::Integer(0))) {
        match set {
            true => notes.add(
                format!("{} = {v}", sec.setting("metrics_port")),
                Outcome::Ignored(
                    "ferry's figures are in GET /status ([status] addr) and in ferry serve's /metrics".into(),
                ),
            ),
            false => notes.add(sec.setting("metrics_port"), Outcome::Default),
        }
    }
    // v3's default was "rewrite": a file without the key overwrote.
    advanced(&mut sec, OnConflict::Overwrite, &mut spec, &mut notes)?;
    sec.leftovers(&mut notes.0);
    for key in table.keys() {
        notes.add(key.clone(), Outcome::Unknown);
    }
    Ok(Converted {
        dialect: Dialect::V3,
        spec,
        notes: notes.0,
        source_password,
        target_password,
    })
}

/// RedisShake 3.1's `version` of a server (5.0, 7.0...), which it was told and ferry asks.
fn version_note(sec: &mut Section, notes: &mut Notes) {
    if sec.raw("version", None).is_some() {
        notes.add(
            sec.setting("version"),
            Outcome::Mapped("no setting: ferry asks the server its version".into()),
        );
    }
}

/// RedisShake 2's scan mode, rump, is chosen on its command line (`-type=rump`), not in the file.
const RUMP: &str = "used by rump mode (-type=rump on RedisShake's command line); its ferry equivalent is a scan that copies once: ferry sync --config this-file --source-mode scan --full-only";

/// Keys of the flat format with nothing to carry over, and why.
const FLAT_IGNORED: &[(&str, &str)] = &[
    ("conf.version", "the format's version"),
    (
        "id",
        "ferry names a task by [sync] name (default: the source's host:port)",
    ),
    ("log.file", "ferry logs to stderr: redirect it"),
    ("log.level", "set FERRY_LOG in ferry's environment"),
    (
        "log.maxbackups",
        "ferry logs to stderr: rotate where you redirect it",
    ),
    ("pid_path", "ferry writes no pid file"),
    ("system_profile", "ferry has no Go profiler"),
    ("http_profile", "ferry serves its status at [status] addr"),
    (
        "parallel",
        "ferry writes in pipelines ([advanced] max_in_flight)",
    ),
    ("ncpu", "ferry runs on as many threads as there are cores"),
    (
        "source.auth_type",
        "ferry logs in with AUTH [user] password",
    ),
    (
        "target.auth_type",
        "ferry logs in with AUTH [user] password",
    ),
    ("source.password_encoding", "give the password itself"),
    ("target.password_encoding", "give the password itself"),
    ("source.rdb.parallel", "ferry loads one file"),
    ("source.rdb.start_segment", "ferry loads whole files"),
    ("target.rdb.output", "ferry has no dump mode"),
    ("target.version", "ferry asks the target its version"),
    (
        "fake_time",
        "ferry copies expiry times as they are; [filter] ttl_extend moves them",
    ),
    (
        "big_key_threshold",
        "ferry writes values over [advanced] big_value_bytes in chunks",
    ),
    (
        "metric",
        "ferry's figures are in GET /status and ferry serve's /metrics",
    ),
    ("metric.print_log", "ferry's figures are in GET /status"),
    (
        "sender.size",
        "ferry pipelines up to [advanced] max_in_flight commands",
    ),
    (
        "sender.count",
        "ferry pipelines up to [advanced] max_in_flight commands",
    ),
    (
        "sender.delay_channel_size",
        "ferry pipelines up to [advanced] max_in_flight commands",
    ),
    (
        "keep_alive",
        "ferry pings and times out the link itself ([advanced] source_timeout)",
    ),
    ("scan.key_number", RUMP),
    ("scan.special_cloud", RUMP),
    ("scan.key_file", RUMP),
    (
        "qps",
        "used by rump mode; ferry's limits are in [limit] (full_keys_per_sec)",
    ),
    (
        "resume_from_break_point",
        "ferry always resumes from its checkpoint in the target",
    ),
    (
        "psync",
        "ferry replicates with PSYNC; a source that refuses it can be scanned (--source-mode scan)",
    ),
    (
        "replace_hash_tag",
        "ferry routes keys by their hash tags itself",
    ),
    (
        "heartbeat.url",
        "ferry writes its own heartbeat ([sync] heartbeat)",
    ),
    (
        "heartbeat.interval",
        "ferry writes its own heartbeat ([sync] heartbeat)",
    ),
    (
        "heartbeat.external",
        "ferry writes its own heartbeat ([sync] heartbeat)",
    ),
    (
        "heartbeat.network_interface",
        "ferry writes its own heartbeat ([sync] heartbeat)",
    ),
    (
        "source.tls_skip_verify",
        "ferry checks certificates: give your CA's PEM file as [source.tls] ca_file",
    ),
    (
        "target.tls_skip_verify",
        "ferry checks certificates: give your CA's PEM file as [target.tls] ca_file",
    ),
];

/// Values that mean "nothing" in the flat format.
fn is_default(key: &str, value: &str) -> bool {
    value.is_empty()
        || matches!(
            (key, value),
            ("conf.version", "1")
                | ("id", "redis-shake")
                | ("log.level", "info")
                | ("metric", "true")
                | ("metric.print_log", "false")
                | ("resume_from_break_point", "false")
                | ("replace_hash_tag", "false")
                | ("psync", "true")
                | ("source.auth_type" | "target.auth_type", "auth")
                | ("source.tls_skip_verify" | "target.tls_skip_verify", "false")
                | ("keep_alive", "0")
                | ("fake_time", "")
                // The values of RedisShake 2's sample file.
                | ("parallel", "32")
                | ("system_profile", "9310")
                | ("http_profile", "9320")
                | ("source.rdb.parallel", "0")
                | ("target.rdb.output", "local_dump")
                | ("big_key_threshold", "524288000")
                | ("sender.size", "104857600")
                | ("sender.count", "4095")
                | ("sender.delay_channel_size", "65535")
                | ("scan.key_number", "50")
                | ("qps", "200000")
        )
}

pub(super) fn convert_flat(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Converted, Error> {
    let mut table = Table::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(Error::Config(format!(
                "line {}: {line:?} is not key = value",
                n + 1
            )));
        };
        table.insert(
            key.trim().to_string(),
            Value::String(value.trim().to_string()),
        );
    }
    let mut notes = Notes(Vec::new());
    let mut spec = TaskSpec::default();
    let mut sec = Section::new("", table, env);
    let flat_bool = |sec: &mut Section, key: &str| -> Result<bool, Error> {
        match sec.str(key)?.as_deref() {
            None | Some("") | Some("false") => Ok(false),
            Some("true") => Ok(true),
            Some(v) => Err(Error::Config(format!(
                "{key} = {v:?} must be true or false"
            ))),
        }
    };
    let dbs = |sec: &mut Section, key: &str| -> Result<Vec<i64>, Error> {
        let text = sec.str(key)?.unwrap_or_default();
        text.split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|d| {
                d.parse().map_err(|_| {
                    Error::Config(format!(
                        "{key} = {text:?}: {d:?} is not a db number (write 0;5)"
                    ))
                })
            })
            .collect()
    };
    let list = |sec: &mut Section, key: &str| -> Result<Vec<String>, Error> {
        Ok(sec
            .str(key)?
            .unwrap_or_default()
            .split(';')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect())
    };

    // The servers. A cluster is given as several addresses (any one will do for ferry); a
    // Sentinel as master:role@sentinel;sentinel.
    let mut passwords = [PasswordFrom::None, PasswordFrom::None];
    let rdb_input = sec.str("source.rdb.input")?.unwrap_or_default();
    for (i, role) in ["source", "target"].into_iter().enumerate() {
        let kind = sec
            .str(&format!("{role}.type"))?
            .unwrap_or_else(|| "standalone".into());
        let address = sec.str(&format!("{role}.address"))?.unwrap_or_default();
        let username = sec.str(&format!("{role}.username"))?.unwrap_or_default();
        let password = sec
            .str(&format!("{role}.password_raw"))?
            .unwrap_or_default();
        let tls = flat_bool(&mut sec, &format!("{role}.tls_enable"))?;
        passwords[i] = match sec.env_vars.get(&format!("{role}.password_raw")) {
            Some(var) => PasswordFrom::Env(var.clone()),
            None if password.is_empty() => PasswordFrom::None,
            None => PasswordFrom::File,
        };
        if role == "source" && address.is_empty() && !rdb_input.is_empty() {
            if rdb_input.contains(';') {
                notes.add(
                    "source.rdb.input".into(),
                    Outcome::Refused(
                        "ferry loads one RDB file per task: run one task per file".into(),
                    ),
                );
            } else {
                spec.source.url = Some(rdb_input.as_str().into());
                notes.add(
                    "source.rdb.input".into(),
                    Outcome::Mapped("[source] url (the file; RedisShake's -type=restore)".into()),
                );
            }
            // A file needs no login: whatever the other source.* keys say goes unused.
            passwords[i] = PasswordFrom::None;
            notes.add("source.type".into(), Outcome::Default);
            continue;
        }
        if address.is_empty() {
            return Err(Error::Config(format!(
                "{role}.address is missing: the {role}'s host:port"
            )));
        }
        let first = address
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        let url = match kind.as_str() {
            "standalone" | "cluster" => {
                if first.contains('@') {
                    notes.add(
                        format!("{role}.address"),
                        Outcome::Refused("a cluster found through Sentinel (master@sentinel) has no ferry form: give a node's host:port".into()),
                    );
                    continue;
                }
                let login = Login {
                    address: &first,
                    username: &username,
                    password: &password,
                    tls,
                };
                notes.add(
                    format!("{role}.type"),
                    Outcome::Mapped(
                        "no setting: ferry asks the server whether it is a cluster".into(),
                    ),
                );
                notes.add(
                    format!("{role}.address"),
                    Outcome::Mapped(match address.contains(';') {
                        true => format!(
                            "[{role}] url = the first node ({first}); ferry finds the others"
                        ),
                        false => format!("[{role}] url"),
                    }),
                );
                login.url()
            }
            "sentinel" => {
                let Some((master, sentinels)) = address.split_once('@') else {
                    return Err(Error::Config(format!(
                        "{role}.address = {address:?}: a sentinel address is master_name:master@sentinel;sentinel"
                    )));
                };
                let (name, node_role) = master.split_once(':').unwrap_or((master, "master"));
                if node_role != "master" {
                    notes.add(
                        format!("{role}.address"),
                        Outcome::Refused(format!(
                            "ferry reads and writes the master behind Sentinel, not a {node_role}"
                        )),
                    );
                    continue;
                }
                let sentinels = sentinels.replace(';', ",");
                let login = Login {
                    address: &sentinels,
                    username: &username,
                    password: &password,
                    tls,
                };
                notes.add(
                    format!("{role}.type"),
                    Outcome::Mapped(format!("[{role}] url = \"redis+sentinel://...\"")),
                );
                notes.add(
                    format!("{role}.address"),
                    Outcome::Mapped(format!("[{role}] url")),
                );
                login.sentinel_url(name)
            }
            other => {
                notes.add(
                    format!("{role}.type = {other:?}"),
                    Outcome::Refused("ferry talks to standalone servers, clusters and Sentinel, not proxies: give a server's host:port".into()),
                );
                continue;
            }
        };
        if !password.is_empty() {
            notes.add(
                format!("{role}.password_raw"),
                Outcome::Mapped(format!("[{role}] url")),
            );
        }
        if tls {
            notes.add(
                format!("{role}.tls_enable"),
                Outcome::Differs(format!(
                    "→ rediss:// in [{role}] url; ferry checks the server's certificate (public CAs, or [{role}.tls] ca_file)"
                )),
            );
        }
        match role {
            "source" => spec.source.url = Some(url),
            _ => spec.target.url = Some(url),
        }
    }
    if !rdb_input.is_empty()
        && spec
            .source
            .url
            .as_ref()
            .is_some_and(|u| u.to_string() != rdb_input)
    {
        notes.add(
            "source.rdb.input".into(),
            Outcome::Ignored("used only by -type=restore; with source.address given, ferry syncs from the server".into()),
        );
    }
    if let Some(cloud) = sec.str("source.rdb.special_cloud")?
        && !cloud.is_empty()
    {
        notes.add(
            "source.rdb.special_cloud".into(),
            Outcome::Refused("ferry cannot send a cloud's renamed PSYNC command".into()),
        );
    }

    // target.db puts every db into one; target.dbmap moves some.
    let target_db = sec.str("target.db")?.unwrap_or_default();
    match target_db.trim().parse::<i64>() {
        _ if target_db.is_empty() => {}
        Ok(-1) => notes.add("target.db".into(), Outcome::Default),
        Ok(db @ 0..) => {
            for from in 0..16 {
                spec.filter.db_map.insert(from.to_string(), db);
            }
            notes.add(
                "target.db".into(),
                Outcome::Mapped(format!(
                    "[filter] db_map of dbs 0 to 15 into {db} (add any db above 15 the source has)"
                )),
            );
        }
        _ => {
            return Err(Error::Config(format!(
                "target.db = {target_db:?} must be a db number, or -1 to keep each key's db"
            )));
        }
    }
    for pair in list(&mut sec, "target.dbmap")? {
        let parsed = pair.split_once('-').and_then(|(a, b)| {
            Some((a.trim().parse::<i64>().ok()?, b.trim().parse::<i64>().ok()?))
        });
        let Some((from, to)) = parsed else {
            return Err(Error::Config(format!(
                "target.dbmap entry {pair:?} is not SOURCE-TARGET (write 0-5;1-3)"
            )));
        };
        spec.filter.db_map.insert(from.to_string(), to);
        notes.add(
            format!("target.dbmap {pair}"),
            Outcome::Mapped(format!("[filter] db_map {{ \"{from}\" = {to} }}")),
        );
    }

    match sec.str("key_exists")?.as_deref() {
        None => {}
        Some("") | Some("none") => notes.add("key_exists".into(), Outcome::Differs(
            "→ [sync] on_conflict = \"fail\": ferry refuses to start when the target already holds keys, where RedisShake stops at the first key that exists".into(),
        )),
        Some("rewrite") => {
            spec.sync.on_conflict = Some(OnConflict::Overwrite);
            notes.add("key_exists".into(), Outcome::Mapped("[sync] on_conflict = \"overwrite\"".into()));
        }
        Some("ignore") => notes.add("key_exists".into(), Outcome::Refused(
            "ferry cannot keep the target's value of a key the source also has: use rewrite (on_conflict = \"overwrite\") or none (\"fail\")".into(),
        )),
        Some(other) => {
            return Err(Error::Config(format!(
                "key_exists = {other:?}: RedisShake knows none, rewrite and ignore"
            )));
        }
    }

    for (key, to) in [
        ("filter.db.whitelist", "allow_db"),
        ("filter.db.blacklist", "block_db"),
    ] {
        let list = dbs(&mut sec, key)?;
        if !list.is_empty() {
            notes.add(key.into(), Outcome::Mapped(format!("[filter] {to}")));
            match to {
                "allow_db" => spec.filter.allow_db = list,
                _ => spec.filter.block_db = list,
            }
        }
    }
    for (key, to) in [
        ("filter.key.whitelist", "allow_key_prefix"),
        ("filter.key.blacklist", "block_key_prefix"),
        ("filter.command.whitelist", "allow_command"),
        ("filter.command.blacklist", "block_command"),
    ] {
        let items = list(&mut sec, key)?;
        if items.is_empty() {
            continue;
        }
        notes.add(key.into(), Outcome::Mapped(format!("[filter] {to}")));
        let f = &mut spec.filter;
        match to {
            "allow_key_prefix" => f.allow_key_prefix = items,
            "block_key_prefix" => f.block_key_prefix = items,
            "allow_command" => f.allow_command = items,
            _ => f.block_command = items,
        }
    }
    if !list(&mut sec, "filter.slot")?.is_empty() {
        notes.add(
            "filter.slot".into(),
            Outcome::Refused("ferry filters by key, not by slot: list the keys' prefixes in [filter] allow_key_prefix, or a regex in allow_key_regex".into()),
        );
    }
    if flat_bool(&mut sec, "filter.lua")? {
        notes.add(
            "filter.lua".into(),
            Outcome::Refused("RedisShake's Lua filter has no equivalent: rewrite it as a ferry transform ([transform] script, README: Transform (Lua))".into()),
        );
    }
    for (key, why) in FLAT_IGNORED {
        if let Some(v) = sec.str(key)? {
            match is_default(key, &v) {
                true => notes.add((*key).into(), Outcome::Default),
                false => notes.add(format!("{key} = {v}"), Outcome::Ignored((*why).into())),
            }
        }
    }
    sec.leftovers(&mut notes.0);
    let [source_password, target_password] = passwords;
    Ok(Converted {
        dialect: Dialect::Flat,
        spec,
        notes: notes.0,
        source_password,
        target_password,
    })
}
