//! A task's settings as a user writes them: [`TaskSpec`], what `ferry sync --config` reads (flags
//! folded in by the command line) and what an API takes and returns, as TOML or JSON, both
//! ways. Every field is optional here; [`TaskSpec::validate`] (in `config`, pure: it reads no
//! file) says what is missing or wrong, and `config::TaskConfig::build` reads the files the
//! spec names. Passwords are held as [`Secret`]s: printing, logging or serializing a spec never
//! shows them; [`TaskSpec::secrets`] takes them out for a store that keeps them apart.

mod check;
mod secret;
pub mod shake;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::net::tls::TlsSection;

pub use check::{CheckConfig, CheckSection, DEFAULT_BACKLOG_MINUTES, Item};
pub use secret::{Secret, ServerUrl};

/// A task's settings, as written by users. Every field is optional here; `TaskConfig::build`
/// says what is missing.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    #[serde(default)]
    pub source: ServerSection,
    #[serde(default)]
    pub target: ServerSection,
    /// Further targets fed from the same replication stream (`[[more_targets]]`): one PSYNC,
    /// each target with its own writer, checkpoint, spool and status.
    #[serde(default)]
    pub more_targets: Vec<ServerSection>,
    #[serde(default)]
    pub sync: SyncSection,
    #[serde(default)]
    pub status: StatusSection,
    #[serde(default)]
    pub advanced: AdvancedSection,
    #[serde(default)]
    pub retry: RetrySection,
    #[serde(default)]
    pub spool: SpoolSection,
    #[serde(default)]
    pub limit: LimitSection,
    #[serde(default)]
    pub filter: FilterSection,
    #[serde(default)]
    pub transform: TransformSection,
    #[serde(default)]
    pub verify: VerifySection,
    #[serde(default)]
    pub check: CheckSection,
}

/// `[verify]`: checks made while `ferry sync` runs (`ferry verify` itself takes flags).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct VerifySection {
    /// Compare a sample of recently written keys on both sides every interval.
    pub continuous: Option<bool>,
    /// Time between checks, in ms (default 10000).
    pub interval_ms: Option<u64>,
    /// Keys compared per check, the most recently written (default 100).
    pub sample: Option<usize>,
}

impl VerifySection {
    /// The continuous checks' settings, or None when they are off.
    pub fn live(&self) -> Result<Option<LiveVerify>, Error> {
        if !self.continuous.unwrap_or(false) {
            if self.interval_ms.is_some() || self.sample.is_some() {
                return Err(Error::Config(
                    "[verify] sets interval_ms or sample but not continuous = true".into(),
                ));
            }
            return Ok(None);
        }
        let mut settings = LiveVerify::default();
        if let Some(ms) = self.interval_ms {
            positive("verify.interval_ms", ms)?;
            settings.interval = std::time::Duration::from_millis(ms);
        }
        if let Some(n) = self.sample {
            positive("verify.sample", n as u64)?;
            settings.sample = n;
        }
        Ok(Some(settings))
    }
}

/// `[verify] continuous`'s settings, checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LiveVerify {
    pub interval: std::time::Duration,
    /// Keys compared per interval, the most recently written first.
    pub sample: usize,
}

impl LiveVerify {
    pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);
    pub const DEFAULT_SAMPLE: usize = 100;
}

impl Default for LiveVerify {
    fn default() -> LiveVerify {
        LiveVerify {
            interval: LiveVerify::DEFAULT_INTERVAL,
            sample: LiveVerify::DEFAULT_SAMPLE,
        }
    }
}

/// What to sync, with RedisShake's names: block rules win; an allow list, once given, lets
/// only what it names through. Key rules apply to snapshot keys and to the keys of stream
/// commands alike.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSection {
    /// Keys with exactly these names.
    #[serde(default)]
    pub allow_keys: Vec<String>,
    #[serde(default)]
    pub block_keys: Vec<String>,
    /// Keys starting with one of these.
    #[serde(default)]
    pub allow_key_prefix: Vec<String>,
    #[serde(default)]
    pub block_key_prefix: Vec<String>,
    /// Keys ending with one of these.
    #[serde(default)]
    pub allow_key_suffix: Vec<String>,
    #[serde(default)]
    pub block_key_suffix: Vec<String>,
    /// Keys in which one of these regular expressions finds a match (anchor with ^ and $).
    #[serde(default)]
    pub allow_key_regex: Vec<String>,
    #[serde(default)]
    pub block_key_regex: Vec<String>,
    /// Source dbs, by number.
    #[serde(default)]
    pub allow_db: Vec<i64>,
    #[serde(default)]
    pub block_db: Vec<i64>,
    /// Stream commands, by name (any case).
    #[serde(default)]
    pub allow_command: Vec<String>,
    #[serde(default)]
    pub block_command: Vec<String>,
    /// Stream commands, by Redis command group (string, list, hash, set, sorted_set,
    /// stream, generic, scripting, pubsub, server, geo, hyperloglog, bitmap...).
    #[serde(default)]
    pub allow_command_group: Vec<String>,
    #[serde(default)]
    pub block_command_group: Vec<String>,
    /// Keys by type of value (string, list, hash, set, zset, stream, module); stream
    /// commands by the type their group writes.
    #[serde(default)]
    pub allow_type: Vec<String>,
    #[serde(default)]
    pub block_type: Vec<String>,
    /// Source db → target db, e.g. `{ "1" = 5 }`; dbs not named keep their number.
    #[serde(default)]
    pub db_map: std::collections::BTreeMap<String, i64>,
    /// Seconds added to every expiry written to the target.
    pub ttl_extend: Option<u64>,
    /// Copy PUBLISH and SPUBLISH from the stream to the target (default false); Sentinel's
    /// `__sentinel__:hello` never is.
    pub forward_publish: Option<bool>,
}

/// Limits on the load ferry puts on the target, per second; each is off when absent. The
/// full copy counts keys and bytes written, the stream commands and bytes (1 MB = 1,000,000
/// bytes). Writes are paced smoothly: at most a tenth of a second's worth goes out at once.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSection {
    /// Snapshot keys written per second.
    pub full_keys_per_sec: Option<f64>,
    /// Megabytes written per second while copying the snapshot.
    pub full_mb_per_sec: Option<f64>,
    /// Commands from the stream written per second.
    pub incremental_ops_per_sec: Option<f64>,
    /// Megabytes written per second while following the stream.
    pub incremental_mb_per_sec: Option<f64>,
}

/// The Lua transform step (see `crate::pipeline::script`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TransformSection {
    /// The script: it defines `transform(entry)`, called for each key and command.
    pub script: Option<PathBuf>,
    /// Longest one call of the script may run, in ms (default 100); longer stops the task.
    pub time_limit_ms: Option<u64>,
    /// Most memory the script's Lua state may use, in MiB (default 64).
    pub memory_mb: Option<usize>,
}

/// The local spool of the command stream (see `crate::pipeline::spool`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpoolSection {
    /// Most disk space the spool of one stream takes, in MiB (default 1024; 0: no spool, a
    /// target outage then goes back to the source's backlog).
    pub size_mb: Option<u64>,
}

/// The data directory when none is given: beside where ferry runs.
pub const DEFAULT_DATA_DIR: &str = "ferry-data";

/// How long failures are retried before the task gives up, in minutes. A window starts at a
/// failure and starts again once the sync makes progress.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySection {
    /// Lost or refused connections to the source or the target (default 720).
    pub connection: Option<u64>,
    /// Other errors: a write the target refuses, a reply that does not come (default 10; less
    /// than `connection`).
    pub other: Option<u64>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// `redis://[user:password@]host:port`, `rediss://` for TLS; for the source, also the path
    /// of an RDB file.
    pub url: Option<ServerUrl>,
    /// The user to log in as (ACL user), when the URL names none.
    pub user: Option<String>,
    /// A file holding the password, read when the task is built (a trailing newline is
    /// dropped): keeps it out of the URL, the command line and the shell history.
    pub password_file: Option<PathBuf>,
    /// An environment variable holding the password (of the process that runs the task: for
    /// `ferry serve`, the server's).
    pub password_env: Option<String>,
    /// TLS settings for a `rediss://` URL (`[source.tls]`, `[target.tls]`): CA file, client
    /// certificate and key, server name, lowest version. Files are read when the config is
    /// checked.
    pub tls: Option<TlsSection>,
    /// Target only: what a write the target refuses (WRONGTYPE, ...) does: "fail" (default:
    /// the task fails, naming the write), "skip" (counted), "log" (counted and logged). Out
    /// of memory always fails: a write is never dropped for lack of room.
    pub on_error: Option<OnError>,
    /// Source only, for a cluster: replicate each shard from "master" (default) or from one
    /// of its "replica"s, to keep the load off the masters.
    pub read_from: Option<ReadFrom>,
    /// Source only: how changes are read. "psync" (default): as a replica, every write once
    /// and in order. "scan": SCAN + DUMP, then keyspace notifications, for servers that refuse
    /// replication; it converges rather than replaying each write (see docs/guarantees.md).
    /// "auto": psync where the source allows it, else scan.
    /// Target only: how the target is written. "commands" (default): as a client, with a
    /// checkpoint key. "replica": ferry serves the target as its master does (REPLICAOF
    /// ferry), so it loads the snapshot at a replica's speed and its own replication offset is
    /// the checkpoint; for a self-hosted standalone target, data copied unchanged
    /// (see docs/replica-mode.md).
    pub mode: Option<Mode>,
    /// Target only, with mode = "replica": the address ferry listens on for the target's
    /// replication link (default 127.0.0.1:0, any free port on loopback).
    pub replica_listen: Option<String>,
    /// Target only, with mode = "replica": the host:port the target is told to replicate from,
    /// when it reaches ferry by another address than `replica_listen` (NAT, a container).
    pub replica_announce: Option<String>,
}

/// `mode` as written in `[source]` or `[target]`; which values each takes is checked when the
/// task is built ([`SourceMode`], [`TargetMode`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Psync,
    Scan,
    Auto,
    Commands,
    Replica,
}

impl Mode {
    /// As written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            Mode::Psync => "psync",
            Mode::Scan => "scan",
            Mode::Auto => "auto",
            Mode::Commands => "commands",
            Mode::Replica => "replica",
        }
    }
}

/// How the target is written (`[target] mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TargetMode {
    /// As a client: RESTORE, MSET and the stream's commands, with a checkpoint key.
    #[default]
    Commands,
    /// As its master: the target replicates from ferry, which relays the source's snapshot
    /// and stream to it unchanged.
    Replica,
}

/// How the source is read (`[source] mode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceMode {
    #[default]
    Psync,
    Scan,
    Auto,
}

impl SourceMode {
    /// As written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            SourceMode::Psync => "psync",
            SourceMode::Scan => "scan",
            SourceMode::Auto => "auto",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReadFrom {
    #[default]
    Master,
    Replica,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    #[default]
    Fail,
    Skip,
    Log,
}

/// What a new task does when the target already holds keys (not ferry's own) in the dbs it
/// writes, before its first full copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OnConflict {
    /// Refuse to start, naming what the target holds.
    #[default]
    Fail,
    /// Copy over them: keys of the same name are replaced, the others stay.
    Overwrite,
    /// Empty those dbs first. Only with `confirm_flush`.
    Flush,
}

impl OnConflict {
    /// As written in the config file.
    pub fn name(self) -> &'static str {
        match self {
            OnConflict::Fail => "fail",
            OnConflict::Overwrite => "overwrite",
            OnConflict::Flush => "flush",
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SyncSection {
    /// Stop once the snapshot is on the target instead of following the write stream.
    pub full_only: Option<bool>,
    /// Names the task's checkpoint in the target (`__ferry:checkpoint:<name>`); default: the
    /// source's host:port. Give each task writing into one target its own name.
    pub name: Option<String>,
    /// The task's identity for its local files (`<data_dir>/tasks/<id>/`): letters, digits,
    /// `.`, `_`, `-`. Default: derived from the name and the targets, so two tasks that read
    /// one source into different targets never share (or empty) each other's files.
    pub id: Option<TaskId>,
    /// When the target holds a copy that the source can no longer bring up to date with a
    /// partial resync: "stop" (default; say so and exit) or "flush" (empty the target, copy again).
    pub full_resync: Option<FullResync>,
    /// Where ferry keeps its local files (the spool); default "ferry-data" in the directory
    /// ferry runs in.
    pub data_dir: Option<PathBuf>,
    /// A new task whose target already holds keys: "fail" (default), "overwrite" or "flush".
    pub on_conflict: Option<OnConflict>,
    /// Confirms `on_conflict = "flush"`, which deletes the target's data.
    pub confirm_flush: Option<bool>,
    /// Write `__ferry:heartbeat:<name>` on the source every second to measure end-to-end
    /// latency (default true); false writes nothing to the source.
    pub heartbeat: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StatusSection {
    /// Where `ferry sync` serves `GET /status`, e.g. "127.0.0.1:8080". Off when absent. A
    /// setting of the process running the task, not of the task: the engine does not read it.
    pub addr: Option<String>,
}

/// Limits that trade speed for memory; the defaults suit most datasets.
#[derive(Clone, Debug, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AdvancedSection {
    /// A value serialized larger than this is written as chunks of native commands (bytes).
    pub big_value_bytes: Option<usize>,
    /// A collection with more elements than this is written as chunks of native commands.
    pub big_value_elements: Option<u64>,
    /// Elements per chunked command.
    pub chunk_elements: Option<usize>,
    /// Commands sent to the target and not yet answered, at most.
    pub max_in_flight: Option<usize>,
    /// Write snapshot values as plain commands (RPUSH, HSET, ...) instead of RESTORE, for
    /// targets that refuse RESTORE. Slower. Values the target cannot read are rewritten anyway.
    pub rewrite_values: Option<bool>,
    /// Keep a checkpoint in the target (default true). Without it nothing of ferry's is written
    /// to the target, but a restart cannot continue: it copies everything again.
    pub checkpoint: Option<bool>,
    /// Seconds without a byte from the source (not even its pings) after which the link is
    /// taken for dead and reconnected (default 60, like a replica's repl-timeout; must be more
    /// than the source's repl-ping-replica-period, 10 s by default).
    pub source_timeout: Option<u64>,
}

impl TaskSpec {
    /// Reads a TOML file (`ferry sync --config`).
    pub fn load(path: &Path) -> Result<TaskSpec, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("cannot read config file {}: {e}", path.display()))
        })?;
        TaskSpec::from_toml(&text)
            .map_err(|e| Error::Config(format!("config file {}{e}", path.display())))
    }

    /// Parses TOML. The error starts with " at line N: " where the parser knows the line.
    pub fn from_toml(text: &str) -> Result<TaskSpec, String> {
        toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].lines().count().max(1))
                .map(|l| format!(" at line {l}"))
                .unwrap_or_default();
            format!("{line}: {msg}")
        })
    }

    /// As TOML, without its passwords.
    pub fn to_toml(&self) -> String {
        // Every field is a plain value, a table or an array of them: this cannot fail.
        toml::to_string(self).unwrap_or_default()
    }

    /// The passwords this spec holds, for a store that keeps them apart from the rest.
    pub fn secrets(&self) -> SpecSecrets {
        let password = |s: &ServerSection| s.url.as_ref().and_then(|u| u.password().cloned());
        SpecSecrets {
            source: password(&self.source),
            target: password(&self.target),
            more_targets: self.more_targets.iter().map(password).collect(),
        }
    }

    /// Puts back passwords kept apart by [`TaskSpec::secrets`]. A password for a URL that has
    /// no login part (or no URL) is an error naming the server.
    pub fn set_secrets(&mut self, secrets: SpecSecrets) -> Result<(), Error> {
        let put = |s: &mut ServerSection, p: Option<Secret>, what: &str| match &mut s.url {
            Some(url) => match url.set_password(p) {
                true => Ok(()),
                false => Err(Error::Config(format!(
                    "a password is kept for the {what}, but its URL has no place for one (redis://[user]:password@host:port)"
                ))),
            },
            None if p.is_none() => Ok(()),
            None => Err(Error::Config(format!(
                "a password is kept for the {what}, but it has no URL"
            ))),
        };
        put(&mut self.source, secrets.source, "source")?;
        put(&mut self.target, secrets.target, "target")?;
        for (i, (s, p)) in self
            .more_targets
            .iter_mut()
            .zip(
                secrets
                    .more_targets
                    .into_iter()
                    .chain(std::iter::repeat(None)),
            )
            .enumerate()
        {
            put(s, p, &format!("more_targets entry {}", i + 1))?;
        }
        Ok(())
    }
}

/// The passwords of a spec, taken out of it: the only form in which they serialize, for a store
/// that keeps them apart from the spec's other fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpecSecrets {
    pub source: Option<Secret>,
    pub target: Option<Secret>,
    pub more_targets: Vec<Option<Secret>>,
}

impl SpecSecrets {
    /// As JSON, in clear: only for a store's own use.
    pub fn expose_json(&self) -> String {
        let one = |s: &Option<Secret>| s.as_ref().map(|s| s.expose().to_string());
        serde_json::json!({
            "source": one(&self.source),
            "target": one(&self.target),
            "more_targets": self.more_targets.iter().map(one).collect::<Vec<_>>(),
        })
        .to_string()
    }

    /// Reads what [`SpecSecrets::expose_json`] wrote.
    pub fn from_json(text: &str) -> Result<SpecSecrets, String> {
        #[derive(Deserialize)]
        struct Raw {
            source: Option<String>,
            target: Option<String>,
            #[serde(default)]
            more_targets: Vec<Option<String>>,
        }
        let raw: Raw = serde_json::from_str(text).map_err(|e| e.to_string())?;
        Ok(SpecSecrets {
            source: raw.source.map(Secret::new),
            target: raw.target.map(Secret::new),
            more_targets: raw
                .more_targets
                .into_iter()
                .map(|p| p.map(Secret::new))
                .collect(),
        })
    }
}

/// A task's identity, distinct from its display name: what its local state (the spool) is
/// keyed by, and what a server names it by. 1 to 64 of `A-Z a-z 0-9 . _ -`, not starting with
/// `.`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaskId(String);

impl TaskId {
    pub fn new(text: impl Into<String>) -> Result<TaskId, Error> {
        let text = text.into();
        let ok = !text.is_empty()
            && text.len() <= 64
            && !text.starts_with('.')
            && text
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
        match ok {
            true => Ok(TaskId(text)),
            false => Err(Error::Config(format!(
                "task id {text:?} must be 1 to 64 letters, digits, '.', '_' or '-', not starting with '.'"
            ))),
        }
    }

    /// An id for a task known by its name and targets: the name made safe for a file name,
    /// then a hash of the name and the targets, so another target makes another id.
    pub fn derived(name: &str, targets: &[String]) -> TaskId {
        let mut safe: String = name
            .chars()
            .map(|c| match c {
                'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '_' | '-' => c,
                _ => '_',
            })
            .take(40)
            .collect();
        if safe.starts_with('.') {
            safe.replace_range(..1, "_");
        }
        // FNV-1a: stable across builds and platforms, unlike std's hasher.
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for part in std::iter::once(name).chain(targets.iter().map(String::as_str)) {
            for b in part.bytes().chain([0]) {
                hash = (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
            }
        }
        TaskId(format!("{safe}-{:08x}", hash >> 32))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TaskId {
    type Error = String;
    fn try_from(text: String) -> Result<TaskId, String> {
        TaskId::new(text).map_err(|e| e.to_string())
    }
}

impl From<TaskId> for String {
    fn from(id: TaskId) -> String {
        id.0
    }
}

impl std::fmt::Display for TaskId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What to do when the target holds a copy the source can only replace with a full one (its
/// replication id changed, the backlog no longer reaches the target's position, or an earlier
/// copy was interrupted).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FullResync {
    /// Stop and say so: nothing on the target is removed unless asked.
    #[default]
    Stop,
    /// Empty the target (FLUSHALL), then copy the snapshot.
    Flush,
}

pub(crate) fn positive(name: &str, v: u64) -> Result<(), Error> {
    if v == 0 {
        return Err(Error::Config(format!("{name} must be greater than 0")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPEC: &str = r#"
[source]
url = "redis://app:s3cret-src@127.0.0.1:7000"
read_from = "replica"

[target]
url = "rediss://:s3cret-dst@127.0.0.1:7001"
on_error = "log"
[target.tls]
ca_file = "ca.pem"
min_version = "1.3"

[[more_targets]]
url = "redis://127.0.0.1:7002"

[sync]
name = "orders"
full_resync = "flush"

[filter]
block_key_prefix = ["tmp:"]
db_map = { "1" = 5 }

[limit]
full_mb_per_sec = 20.5

[check]
ignore = ["eviction_policy"]
"#;

    #[test]
    fn a_spec_goes_both_ways_through_toml_and_json_without_its_passwords() {
        let spec = TaskSpec::from_toml(SPEC).unwrap();
        let toml_text = spec.to_toml();
        let json_text = serde_json::to_string(&spec).unwrap();
        for text in [&toml_text, &json_text] {
            assert!(!text.contains("s3cret"), "{text}");
        }
        assert!(!format!("{spec:?}").contains("s3cret"));

        // Back in, with the passwords put back from where a store kept them.
        let secrets = spec.secrets();
        assert!(!format!("{secrets:?}").contains("s3cret"));
        let kept = SpecSecrets::from_json(&secrets.expose_json()).unwrap();
        for mut back in [
            TaskSpec::from_toml(&toml_text).unwrap(),
            serde_json::from_str::<TaskSpec>(&json_text).unwrap(),
        ] {
            assert_ne!(back, spec);
            back.set_secrets(kept.clone()).unwrap();
            assert_eq!(back, spec);
            assert_eq!(
                back.target.url.as_ref().unwrap().expose(),
                "rediss://:s3cret-dst@127.0.0.1:7001"
            );
        }
    }

    #[test]
    fn a_kept_password_needs_a_url_with_a_login() {
        let mut spec = TaskSpec::from_toml("[source]\nurl = \"dump.rdb\"\n").unwrap();
        let secrets = SpecSecrets {
            source: Some(Secret::new("x")),
            ..SpecSecrets::default()
        };
        let err = spec.set_secrets(secrets).unwrap_err().to_string();
        assert!(err.contains("source"), "{err}");
    }

    #[test]
    fn task_ids_are_safe_file_names_and_differ_by_target() {
        let a = TaskId::derived("127.0.0.1:6379", &["redis://127.0.0.1:7001".into()]);
        let b = TaskId::derived("127.0.0.1:6379", &["redis://127.0.0.1:7002".into()]);
        assert_ne!(a, b);
        assert!(a.as_str().starts_with("127.0.0.1_6379-"), "{a}");
        assert_eq!(TaskId::new(a.as_str()).unwrap(), a);
        assert_eq!(
            TaskId::derived("..", &[]).as_str().chars().next(),
            Some('_')
        );
        for bad in ["", ".x", "a/b", "a b", &"x".repeat(65)] {
            assert!(TaskId::new(bad).is_err(), "{bad}");
        }
        let spec = TaskSpec::from_toml("[sync]\nid = \"../x\"\n").unwrap_err();
        assert!(spec.contains("task id"), "{spec}");
    }

    #[test]
    fn toml_errors_name_the_line() {
        let err = TaskSpec::from_toml("[sync]\nname = \"a\"\n\n[limit]\nfull_mb_per_sec = \"x\"\n")
            .unwrap_err();
        assert!(err.starts_with(" at line 5: "), "{err}");
    }
}
