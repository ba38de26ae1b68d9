//! RedisShake 4's `shake.toml`. The keys are those of its reader, writer, filter, advanced and
//! module option structs (v4.0 to v4.4), each carried over, named as not needed, or refused.

use std::path::Path;

use toml::{Table, Value};

use super::{Converted, Dialect, Login, Notes, Outcome, PasswordFrom, Section};
use crate::error::Error;
use crate::spec::{Mode, OnConflict, ReadFrom, TaskSpec};

/// Reader sections, in the order RedisShake picks the first present, with the `cluster` their
/// name implies (the v4.0 names).
pub(super) const READERS: &[(&str, Option<bool>)] = &[
    ("sync_reader", None),
    ("sync_standalone_reader", Some(false)),
    ("sync_cluster_reader", Some(true)),
    ("scan_reader", None),
    ("scan_standalone_reader", Some(false)),
    ("scan_cluster_reader", Some(true)),
    ("rdb_reader", None),
    ("aof_reader", None),
];

pub(super) const WRITERS: &[(&str, Option<bool>)] = &[
    ("redis_writer", None),
    ("redis_standalone_writer", Some(false)),
    ("redis_cluster_writer", Some(true)),
];

const FUNCTION_REFUSED: &str = "RedisShake's Lua functions (shake.call, DB, ARGV...) have no equivalent in ferry and running without it would sync other data: rewrite it as a ferry transform, a Lua script defining transform(entry) set as [transform] script (README: Transform (Lua)), and drop it from this file";

pub(super) fn convert(
    mut table: Table,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Converted, Error> {
    let mut notes = Notes(Vec::new());
    let mut spec = TaskSpec::default();
    let mut passwords = (PasswordFrom::None, PasswordFrom::None);

    // RedisShake reads everything after moving into [advanced] dir: a relative RDB path is
    // found there.
    let dir = table
        .get("advanced")
        .and_then(|a| a.get("dir"))
        .and_then(Value::as_str)
        .map(|d| super::substitute(d, env).0)
        .unwrap_or_else(|| "data".into());

    // v4.0 kept the function at the top.
    for key in ["function", "transform"] {
        if let Some(v) = table.remove(key) {
            let set = !matches!(&v, Value::String(s) if s.is_empty());
            notes.add(
                key.to_string(),
                match set {
                    true => Outcome::Refused(FUNCTION_REFUSED.into()),
                    false => Outcome::Default,
                },
            );
        }
    }

    let reader = READERS
        .iter()
        .find(|(name, _)| table.contains_key(*name))
        .copied();
    let Some((reader, reader_cluster)) = reader else {
        return Err(Error::Config(
            "no reader: write a [sync_reader] (a live source) or an [rdb_reader] (a dump file)"
                .into(),
        ));
    };
    let writer = WRITERS
        .iter()
        .find(|(name, _)| table.contains_key(*name))
        .copied();
    let Some((writer, writer_cluster)) = writer else {
        return Err(Error::Config(
            "no writer: write a [redis_writer] with the target's address".into(),
        ));
    };
    for (name, _) in READERS.iter().chain(WRITERS) {
        if *name != reader && *name != writer && table.remove(*name).is_some() {
            notes.add(
                format!("[{name}]"),
                Outcome::Ignored(format!(
                    "RedisShake uses only the first of its readers and writers, here [{reader}] and [{writer}]"
                )),
            );
        }
    }

    let section = |table: &mut Table, name: &str| -> Result<Table, Error> {
        match table.remove(name) {
            None => Ok(Table::new()),
            Some(Value::Table(t)) => Ok(t),
            Some(v) => Err(Error::Config(format!(
                "{name} must be a table ([{name}]), not {v}"
            ))),
        }
    };

    let mut sec = Section::new(&format!("[{reader}]"), section(&mut table, reader)?, env);
    match reader {
        "rdb_reader" => rdb_reader(&mut sec, &dir, &mut spec, &mut notes)?,
        "aof_reader" => {
            let keys = sec.keys();
            notes.add(
                format!("[aof_reader] ({keys})"),
                Outcome::Refused(
                    "ferry cannot read AOF files: start a redis-server on the AOF (appendonly yes) and sync from it with a [sync_reader]".into(),
                ),
            );
        }
        r if r.starts_with("scan_") => {
            passwords.0 = scan_reader(&mut sec, reader_cluster, &mut spec, &mut notes)?;
        }
        _ => {
            passwords.0 = sync_reader(&mut sec, reader_cluster, &mut spec, &mut notes)?;
        }
    }
    sec.leftovers(&mut notes.0);

    let mut sec = Section::new(&format!("[{writer}]"), section(&mut table, writer)?, env);
    passwords.1 = redis_writer(&mut sec, writer_cluster, &mut spec, &mut notes)?;
    sec.leftovers(&mut notes.0);

    let mut sec = Section::new("[filter]", section(&mut table, "filter")?, env);
    filter(&mut sec, &mut spec, &mut notes)?;
    sec.leftovers(&mut notes.0);

    let mut sec = Section::new("[advanced]", section(&mut table, "advanced")?, env);
    advanced(&mut sec, OnConflict::Fail, &mut spec, &mut notes)?;
    sec.leftovers(&mut notes.0);

    let mut sec = Section::new("[module]", section(&mut table, "module")?, env);
    module(&mut sec, &mut notes);
    sec.leftovers(&mut notes.0);

    for key in table.keys() {
        notes.add(key.clone(), Outcome::Unknown);
    }
    Ok(Converted {
        dialect: Dialect::V4,
        spec,
        notes: notes.0,
        source_password: passwords.0,
        target_password: passwords.1,
    })
}

/// Where a password came from, for `convert`'s output.
pub(super) fn password_from(sec: &Section, password: &str) -> PasswordFrom {
    match sec.env_vars.get("password") {
        Some(var) => PasswordFrom::Env(var.clone()),
        None if password.is_empty() => PasswordFrom::None,
        None => PasswordFrom::File,
    }
}

/// The notes of a server's address, login and TLS flag.
pub(super) fn login_notes(
    sec: &Section,
    notes: &mut Notes,
    role: &str,
    login: &Login,
    keys: [&str; 4],
) {
    let [address, username, password, tls] = keys;
    notes.add(
        sec.setting(address),
        Outcome::Mapped(format!("[{role}] url")),
    );
    for (key, value) in [(username, login.username), (password, login.password)] {
        if !value.is_empty() && !login.password.is_empty() {
            notes.add(
                sec.setting(key),
                Outcome::Mapped(format!("[{role}] url (redis://user:password@host:port)")),
            );
        }
    }
    if !login.username.is_empty() && login.password.is_empty() {
        notes.add(
            sec.setting(username),
            Outcome::Ignored(
                "a user without a password sends no AUTH, in RedisShake as in ferry".into(),
            ),
        );
    }
    if login.tls {
        notes.add(
            sec.setting(tls),
            Outcome::Differs(format!(
                "→ rediss:// in [{role}] url; ferry checks the server's certificate (against the public CAs, or your CA's PEM file in [{role}.tls] ca_file), where RedisShake checks none"
            )),
        );
    }
}

/// What `[sync_reader]` and `[scan_reader]` share: the source's address, login, TLS and cluster
/// flag; returns where the password came from, and whether the source is said to be a cluster.
fn source_reader(
    sec: &mut Section,
    implied_cluster: Option<bool>,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<(PasswordFrom, bool), Error> {
    let given = sec.has("cluster");
    let cluster = sec.bool("cluster")?.or(implied_cluster).unwrap_or(false);
    if given || implied_cluster.is_some() {
        notes.add(
            sec.setting("cluster"),
            Outcome::Mapped("no setting: ferry asks the server whether it is a cluster".into()),
        );
    }
    let address = sec.str("address")?.unwrap_or_default();
    if address.is_empty() {
        return Err(Error::Config(format!(
            "{} is missing: the source's host:port",
            sec.setting("address")
        )));
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
    login_notes(
        sec,
        notes,
        "source",
        &login,
        ["address", "username", "password", "tls"],
    );
    Ok((password_from(sec, &password), cluster))
}

fn sync_reader(
    sec: &mut Section,
    implied_cluster: Option<bool>,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<PasswordFrom, Error> {
    let (password, cluster) = source_reader(sec, implied_cluster, spec, notes)?;
    match sec.bool("prefer_replica")? {
        Some(true) => {
            spec.source.read_from = Some(ReadFrom::Replica);
            notes.add(
                sec.setting("prefer_replica"),
                match cluster {
                    true => Outcome::Mapped("[source] read_from = \"replica\"".into()),
                    false => Outcome::Differs(
                        "→ [source] read_from = \"replica\", which ferry uses on a cluster source; a standalone source is read at the address given: write a replica's address there to keep the load off the master".into(),
                    ),
                },
            );
        }
        Some(false) => notes.add(sec.setting("prefer_replica"), Outcome::Default),
        None => {}
    }
    let sync_rdb = sec.bool("sync_rdb")?;
    let sync_aof = sec.bool("sync_aof")?;
    match sync_rdb {
        Some(false) => notes.add(
            sec.setting("sync_rdb"),
            Outcome::Refused(
                "ferry always copies the snapshot before following the stream and cannot skip it (its checkpoint starts from a full copy): remove sync_rdb = false to copy everything"
                    .into(),
            ),
        ),
        Some(true) => notes.add(sec.setting("sync_rdb"), Outcome::Default),
        None => {}
    }
    match sync_aof {
        Some(false) => {
            spec.sync.full_only = Some(true);
            notes.add(
                sec.setting("sync_aof"),
                Outcome::Mapped("[sync] full_only = true".into()),
            );
        }
        Some(true) => notes.add(sec.setting("sync_aof"), Outcome::Default),
        None => {}
    }
    match sec.bool("try_diskless")? {
        Some(true) => notes.add(
            sec.setting("try_diskless"),
            Outcome::Mapped(
                "no setting: ferry takes the snapshot as the source sends it, from disk or over the socket".into(),
            ),
        ),
        Some(false) => notes.add(sec.setting("try_diskless"), Outcome::Default),
        None => {}
    }
    Ok(password)
}

/// `[scan_reader]` (v4.0's `scan_standalone_reader`, `scan_cluster_reader`): the source read by
/// `SCAN` + `DUMP`, as ferry's scan mode does. RedisShake scans once and stops unless `ksn`
/// follows keyspace notifications; ferry follows them unless told to copy once.
fn scan_reader(
    sec: &mut Section,
    implied_cluster: Option<bool>,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<PasswordFrom, Error> {
    spec.source.mode = Some(Mode::Scan);
    notes.add(
        sec.name.clone(),
        Outcome::Mapped(
            "[source] mode = \"scan\": SCAN + DUMP for the copy, keyspace notifications for the changes; the target converges to the source rather than replaying each write (docs/guarantees.md)".into(),
        ),
    );
    let (password, _) = source_reader(sec, implied_cluster, spec, notes)?;
    match sec.bool("prefer_replica")? {
        // Keyspace notifications and the keys' owners are the masters: ferry reads those.
        Some(true) => notes.add(
            sec.setting("prefer_replica"),
            Outcome::Differs(
                "ferry's scan mode reads the address given (each master of a cluster), where RedisShake scans a replica: the SCAN and DUMP load falls on the master".into(),
            ),
        ),
        Some(false) => notes.add(sec.setting("prefer_replica"), Outcome::Default),
        None => {}
    }
    match sec.bool("scan")? {
        Some(false) => notes.add(
            sec.setting("scan"),
            Outcome::Refused(
                "ferry always copies every key before following changes and cannot only follow them (its checkpoint starts from a full copy): remove scan = false to copy everything".into(),
            ),
        ),
        Some(true) => notes.add(sec.setting("scan"), Outcome::Default),
        None => {}
    }
    // Absent is RedisShake's default, false: scan once and stop, which ferry must be told.
    match sec.bool("ksn")? {
        Some(true) => notes.add(
            sec.setting("ksn"),
            Outcome::Mapped(
                "no setting: ferry follows the source's keyspace notifications after the copy by default (it turns notify-keyspace-events on with CONFIG SET where the source allows it)".into(),
            ),
        ),
        given => {
            spec.sync.full_only = Some(true);
            let setting = match given {
                Some(_) => sec.setting("ksn"),
                None => format!("{} (not set: RedisShake's default, false)", sec.setting("ksn")),
            };
            notes.add(
                setting,
                Outcome::Mapped(
                    "[sync] full_only = true: RedisShake scans once and stops without keyspace notifications; ferry copies once, checks the copy key by key, and exits (write ksn = true to keep following changes)".into(),
                ),
            );
        }
    }
    let dbs_given = sec.has("dbs");
    let dbs = sec.ints("dbs")?;
    if !dbs.is_empty() {
        notes.add(
            sec.setting("dbs"),
            Outcome::Mapped("[filter] allow_db (only these dbs are copied and followed)".into()),
        );
        spec.filter.allow_db = dbs;
    } else if dbs_given {
        notes.add(sec.setting("dbs"), Outcome::Default);
    }
    match sec.int("count")? {
        Some(1) => notes.add(sec.setting("count"), Outcome::Default),
        Some(_) => notes.add(
            sec.setting("count"),
            Outcome::Mapped(
                "no setting: ferry picks its own SCAN count (it changes how many keys each SCAN asks for, not what is copied)".into(),
            ),
        ),
        None => {}
    }
    Ok(password)
}

fn rdb_reader(
    sec: &mut Section,
    dir: &str,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<(), Error> {
    let path = sec.str("filepath")?.unwrap_or_default();
    if path.is_empty() {
        return Err(Error::Config(format!(
            "{} is missing: the RDB file to load",
            sec.setting("filepath")
        )));
    }
    let full = match Path::new(&path).is_absolute() {
        true => path.clone(),
        false => Path::new(dir).join(&path).to_string_lossy().into_owned(),
    };
    notes.add(
        sec.setting("filepath"),
        Outcome::Mapped(match full == path {
            true => "[source] url (the file)".into(),
            false => format!(
                "[source] url = {full:?} (RedisShake reads a relative path inside [advanced] dir)"
            ),
        }),
    );
    spec.source.url = Some(full.as_str().into());
    Ok(())
}

fn redis_writer(
    sec: &mut Section,
    implied_cluster: Option<bool>,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<PasswordFrom, Error> {
    let cluster = sec.bool("cluster")?.or(implied_cluster);
    if cluster.is_some() {
        notes.add(
            sec.setting("cluster"),
            Outcome::Mapped("no setting: ferry asks the server whether it is a cluster".into()),
        );
    }
    let sentinel = sec.bool("sentinel")?.unwrap_or(false);
    let master = sec.str("master")?.unwrap_or_default();
    let address = sec.str("address")?.unwrap_or_default();
    if address.is_empty() {
        return Err(Error::Config(format!(
            "{} is missing: the target's host:port",
            sec.setting("address")
        )));
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
    if sentinel {
        if master.is_empty() {
            return Err(Error::Config(format!(
                "{} = true needs {}: the name of the master the sentinels watch",
                sec.setting("sentinel"),
                sec.setting("master")
            )));
        }
        spec.target.url = Some(login.sentinel_url(&master));
        for key in ["sentinel", "master"] {
            notes.add(
                sec.setting(key),
                Outcome::Mapped("[target] url = \"redis+sentinel://host:port/master\"".into()),
            );
        }
    } else {
        spec.target.url = Some(login.url());
        if !master.is_empty() {
            notes.add(
                sec.setting("master"),
                Outcome::Ignored("used only with sentinel = true, in RedisShake too".into()),
            );
        }
    }
    login_notes(
        sec,
        notes,
        "target",
        &login,
        ["address", "username", "password", "tls"],
    );
    match sec.bool("off_reply")? {
        Some(true) => notes.add(
            sec.setting("off_reply"),
            Outcome::Ignored(
                "ferry reads every reply: each confirms the writes its checkpoint covers (exactly once); it pipelines instead ([advanced] max_in_flight)".into(),
            ),
        ),
        Some(false) => notes.add(sec.setting("off_reply"), Outcome::Default),
        None => {}
    }
    Ok(password_from(sec, &password))
}

/// RedisShake's groups that ferry does not have: commands of CLUSTER and SENTINEL never reach
/// a replication stream; Tair's are module commands ferry cannot tell apart.
fn group_outside(group: &str) -> Option<bool> {
    match group.to_ascii_uppercase().as_str() {
        "CLUSTER" | "SENTINEL" => Some(true),
        "TAIRHASH" | "TAIRSTRING" | "TAIRZSET" => Some(false),
        _ => None,
    }
}

pub(super) fn filter(
    sec: &mut Section,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<(), Error> {
    let f = &mut spec.filter;
    for (key, list) in [
        ("allow_keys", &mut f.allow_keys),
        ("block_keys", &mut f.block_keys),
        ("allow_key_prefix", &mut f.allow_key_prefix),
        ("block_key_prefix", &mut f.block_key_prefix),
        ("allow_key_suffix", &mut f.allow_key_suffix),
        ("block_key_suffix", &mut f.block_key_suffix),
        ("allow_key_regex", &mut f.allow_key_regex),
        ("block_key_regex", &mut f.block_key_regex),
        ("allow_command", &mut f.allow_command),
        ("block_command", &mut f.block_command),
    ] {
        if !sec.has(key) {
            continue;
        }
        *list = sec.strings(key)?;
        notes.add(
            sec.setting(key),
            match list.is_empty() {
                true => Outcome::Default,
                false if key.ends_with("regex") => Outcome::Mapped(format!(
                    "[filter] {key} (Rust regex syntax, close to Go's; unanchored, as in RedisShake)"
                )),
                false => Outcome::Mapped(format!("[filter] {key}")),
            },
        );
    }
    // A scan reader's `dbs` came first: RedisShake scans only those, then filters.
    let scanned = std::mem::take(&mut f.allow_db);
    for (key, list) in [("allow_db", &mut f.allow_db), ("block_db", &mut f.block_db)] {
        if sec.has(key) {
            *list = sec.ints(key)?;
            let outcome = match list.is_empty() {
                true => Outcome::Default,
                false if key == "allow_db" && !scanned.is_empty() => {
                    list.retain(|db| scanned.contains(db));
                    match list.is_empty() {
                        true => Outcome::Refused(
                            "no db is both here and in the reader's dbs: RedisShake would sync nothing; list the dbs to sync in one of them".into(),
                        ),
                        false => Outcome::Mapped(format!(
                            "[filter] allow_db = {list:?} (the dbs both here and in the reader's dbs)"
                        )),
                    }
                }
                false => Outcome::Mapped(format!("[filter] {key}")),
            };
            notes.add(sec.setting(key), outcome);
        }
    }
    if f.allow_db.is_empty() {
        f.allow_db = scanned;
    }
    for key in ["allow_command_group", "block_command_group"] {
        if !sec.has(key) {
            continue;
        }
        let given = sec.strings(key)?;
        let mut kept = Vec::new();
        let mut outcome = None;
        for g in &given {
            match group_outside(g) {
                None => kept.push(g.to_ascii_lowercase()),
                Some(true) => {
                    outcome.get_or_insert(Outcome::Differs(format!(
                        "→ [filter] {key} without {g}: its commands never reach a replication stream"
                    )));
                }
                Some(false) => {
                    outcome = Some(Outcome::Refused(format!(
                        "ferry does not know Tair's commands ({g}): name them in [filter] allow_command / block_command instead"
                    )));
                }
            }
        }
        if key.starts_with("allow") && kept.is_empty() && !given.is_empty() {
            outcome = Some(Outcome::Refused(
                "it names only groups ferry does not have, and an empty allow list would let everything through".into(),
            ));
        }
        let outcome = outcome.unwrap_or(match kept.is_empty() {
            true => Outcome::Default,
            false => Outcome::Mapped(format!("[filter] {key} (lower case)")),
        });
        notes.add(sec.setting(key), outcome);
        match key {
            "allow_command_group" => spec.filter.allow_command_group = kept,
            _ => spec.filter.block_command_group = kept,
        }
    }
    if let Some(function) = sec.str("function")? {
        notes.add(
            sec.setting("function"),
            match function.trim().is_empty() {
                true => Outcome::Default,
                false => Outcome::Refused(FUNCTION_REFUSED.into()),
            },
        );
    }
    Ok(())
}

/// `[advanced]`, shared with v3, whose default `rdb_restore_command_behavior` was "rewrite".
pub(super) fn advanced(
    sec: &mut Section,
    default_conflict: OnConflict,
    spec: &mut TaskSpec,
    notes: &mut Notes,
) -> Result<(), Error> {
    if let Some(dir) = sec.str("dir")? {
        if dir.is_empty() || dir == "data" {
            notes.add(sec.setting("dir"), Outcome::Default);
        } else {
            notes.add(
                sec.setting("dir"),
                Outcome::Mapped(
                    "[sync] data_dir (ferry keeps its spool there; its logs go to stderr)".into(),
                ),
            );
            spec.sync.data_dir = Some(dir.into());
        }
    }
    let ignored: &[(&str, Value, &str)] = &[
        (
            "ncpu",
            Value::Integer(0),
            "ferry runs on as many threads as there are cores",
        ),
        (
            "pprof_port",
            Value::Integer(0),
            "ferry has no Go profiler; its status is at [status] addr",
        ),
        (
            "log_file",
            Value::String("shake.log".into()),
            "ferry logs to stderr: redirect it, or run it under systemd (deploy/)",
        ),
        (
            "log_interval",
            Value::Integer(5),
            "ferry shows its progress continuously, and in GET /status",
        ),
        (
            "log_rotation",
            Value::Boolean(true),
            "ferry logs to stderr; rotate where you redirect it",
        ),
        (
            "log_max_size",
            Value::Integer(512),
            "ferry logs to stderr; rotate where you redirect it",
        ),
        (
            "log_max_age",
            Value::Integer(7),
            "ferry logs to stderr; rotate where you redirect it",
        ),
        (
            "log_max_backups",
            Value::Integer(3),
            "ferry logs to stderr; rotate where you redirect it",
        ),
        (
            "log_compress",
            Value::Boolean(true),
            "ferry logs to stderr; rotate where you redirect it",
        ),
        (
            "target_redis_client_max_querybuf_len",
            Value::Integer(1_024_000_000),
            "ferry's commands stay far below it: big values are written in chunks ([advanced] big_value_bytes)",
        ),
    ];
    for (key, default, why) in ignored {
        if let Some((v, set)) = sec.raw(key, Some(default.clone())) {
            // RedisShake's own samples write 1 GiB where its code defaults to 1 GB.
            let set = set && !(key.ends_with("querybuf_len") && v == Value::Integer(1 << 30));
            match set {
                true => notes.add(
                    format!("{} = {v}", sec.setting(key)),
                    Outcome::Ignored((*why).into()),
                ),
                false => notes.add(sec.setting(key), Outcome::Default),
            }
        }
    }
    match sec.int("status_port")? {
        Some(port @ 1..=65535) => {
            spec.status.addr = Some(format!("127.0.0.1:{port}"));
            notes.add(
                sec.setting("status_port"),
                Outcome::Differs(format!(
                    "→ [status] addr = \"127.0.0.1:{port}\": ferry serves GET /status (JSON, its own fields) on loopback only"
                )),
            );
        }
        Some(0) => notes.add(sec.setting("status_port"), Outcome::Default),
        Some(p) => {
            return Err(Error::Config(format!(
                "{} = {p} is not a port (1 to 65535, or 0 for none)",
                sec.setting("status_port")
            )));
        }
        None => {}
    }
    if let Some(level) = sec.str("log_level")? {
        match level.as_str() {
            "" | "info" => notes.add(sec.setting("log_level"), Outcome::Default),
            _ => notes.add(
                format!("{} = {level:?}", sec.setting("log_level")),
                Outcome::Ignored(format!(
                    "set FERRY_LOG={level} in ferry's environment instead"
                )),
            ),
        }
    }
    let mut on_conflict = None;
    if let Some(behavior) = sec.str("rdb_restore_command_behavior")? {
        let setting = sec.setting("rdb_restore_command_behavior");
        match behavior.as_str() {
            "panic" => {
                on_conflict = Some(OnConflict::Fail);
                notes.add(setting, Outcome::Differs(
                    "→ [sync] on_conflict = \"fail\": ferry refuses to start when the target already holds keys (naming them), where RedisShake stops at the first key that exists".into(),
                ));
            }
            "rewrite" => {
                on_conflict = Some(OnConflict::Overwrite);
                notes.add(setting, Outcome::Mapped("[sync] on_conflict = \"overwrite\"".into()));
            }
            "skip" | "ignore" => notes.add(setting, Outcome::Refused(format!(
                "ferry cannot keep the target's value of a key the source also has (\"{behavior}\"): use \"rewrite\" (ferry's on_conflict = \"overwrite\") or \"panic\" (\"fail\")"
            ))),
            other => {
                return Err(Error::Config(format!(
                    "{setting} = {other:?}: RedisShake knows panic, rewrite and skip"
                )));
            }
        }
    } else if default_conflict != OnConflict::Fail {
        on_conflict = Some(default_conflict);
    }
    if let Some(n) = sec.int("pipeline_count_limit")? {
        match n {
            1024 => notes.add(sec.setting("pipeline_count_limit"), Outcome::Default),
            1.. => {
                spec.advanced.max_in_flight = Some(n as usize);
                notes.add(
                    sec.setting("pipeline_count_limit"),
                    Outcome::Mapped(format!("[advanced] max_in_flight = {n}")),
                );
            }
            _ => {
                return Err(Error::Config(format!(
                    "{} = {n} must be greater than 0",
                    sec.setting("pipeline_count_limit")
                )));
            }
        }
    }
    if let Some(qps) = sec.int("target_redis_max_qps")? {
        match qps {
            300_000 => notes.add(sec.setting("target_redis_max_qps"), Outcome::Default),
            1.. => {
                spec.limit.full_keys_per_sec = Some(qps as f64);
                spec.limit.incremental_ops_per_sec = Some(qps as f64);
                notes.add(
                    sec.setting("target_redis_max_qps"),
                    Outcome::Mapped(format!(
                        "[limit] full_keys_per_sec = {qps} and incremental_ops_per_sec = {qps}"
                    )),
                );
            }
            _ => notes.add(sec.setting("target_redis_max_qps"), Outcome::Default),
        }
    }
    if let Some(bulk) = sec.int("target_redis_proto_max_bulk_len")? {
        let setting = sec.setting("target_redis_proto_max_bulk_len");
        if bulk > 0 && (bulk as u64) < crate::config::DEFAULT_BIG_VALUE_BYTES as u64 {
            spec.advanced.big_value_bytes = Some(bulk as usize);
            notes.add(
                setting,
                Outcome::Mapped(format!(
                    "[advanced] big_value_bytes = {bulk} (larger values are written in chunks)"
                )),
            );
        } else {
            notes.add(setting, Outcome::Default);
        }
    }
    if let Some(aws) = sec.str("aws_psync")? {
        let scan = spec.source.mode == Some(Mode::Scan);
        notes.add(
            sec.setting("aws_psync"),
            match (aws.is_empty(), scan) {
                (true, _) => Outcome::Default,
                (false, true) => Outcome::Ignored(
                    "used by a sync reader only; a scan reader sends no PSYNC, in RedisShake as in ferry".into(),
                ),
                (false, false) => Outcome::Refused(
                    "ferry cannot send ElastiCache's renamed PSYNC command: read this source by scanning instead ([scan_reader] with the same address, username, password and tls, and ksn = true to follow changes)".into(),
                ),
            },
        );
    }
    match sec.bool("empty_db_before_sync")? {
        Some(true) => {
            on_conflict = Some(OnConflict::Flush);
            spec.sync.confirm_flush = Some(true);
            notes.add(
                sec.setting("empty_db_before_sync"),
                Outcome::Differs(
                    "→ [sync] on_conflict = \"flush\" and confirm_flush = true: ferry empties the dbs it writes (every db, unless [filter] leaves some out: those keep their data, where RedisShake runs FLUSHALL) before a new task's first copy, and not again when it resumes from its checkpoint".into(),
                ),
            );
        }
        Some(false) => notes.add(sec.setting("empty_db_before_sync"), Outcome::Default),
        None => {}
    }
    // ferry's default is "fail": written out only when it is something else.
    spec.sync.on_conflict = on_conflict.filter(|c| *c != OnConflict::Fail);
    Ok(())
}

fn module(sec: &mut Section, notes: &mut Notes) {
    if let Some((v, set)) = sec.raw("target_mbbloom_version", Some(Value::Integer(0))) {
        // RedisShake's sample file writes 20603 (RedisBloom 2.6.3): no choice made there.
        let set = set && v != Value::Integer(20603);
        notes.add(
            format!("{} = {v}", sec.setting("target_mbbloom_version")),
            match set {
                true => Outcome::Ignored(
                    "ferry copies module values (RedisBloom's among them) as the source serialized them, with RESTORE; the target must run a RedisBloom that reads them".into(),
                ),
                false => Outcome::Default,
            },
        );
    }
}
