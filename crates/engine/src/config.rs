//! A task's settings made ready to run: its spec validated, then the files it names read (TLS
//! material, the RDB file, the Lua script) and the objects the engine needs built (writer
//! options, filter rules, throttle).

use std::path::{Path, PathBuf};

use crate::error::Error;
use crate::net::endpoint::Endpoint;
use crate::net::tls::TlsSection;
use crate::spec::*;

/// Where and how much of the command stream is kept on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The data directory; the spool of a task is `<data_dir>/spool/<task name>`.
    pub data_dir: PathBuf,
    /// Bytes at most (0: no spool).
    pub limit: u64,
}

/// Retry windows, checked: `other` is shorter than `connection`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retry {
    pub connection: std::time::Duration,
    pub other: std::time::Duration,
}

impl Retry {
    fn build(section: &RetrySection) -> Result<Retry, Error> {
        let connection = section.connection.unwrap_or(720);
        let other = section.other.unwrap_or(10);
        if other >= connection {
            return Err(Error::Config(format!(
                "retry.other ({other} min) must be less than retry.connection ({connection} min)"
            )));
        }
        Ok(Retry {
            connection: std::time::Duration::from_secs(connection * 60),
            other: std::time::Duration::from_secs(other * 60),
        })
    }
}

/// Values serialized larger than this go as chunks. With 8 batches in the channel, each cut
/// after 512 KiB plus at most one value, this keeps the worst case near 25 MiB in all.
pub const DEFAULT_BIG_VALUE_BYTES: usize = 2 * 1024 * 1024;

/// A big string's parts (one APPEND each): half a batch, so a batch of them is cut at 512 KiB
/// like any other; with 1 MiB parts each of the ~24 batches queued between the snapshot and
/// the target held twice that (measured: 64 MiB peak with 256 MiB strings, debug build).
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Where the data comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// A live server, followed as a replica.
    Redis(Endpoint),
    /// A snapshot file, loaded once.
    RdbFile(PathBuf),
}

impl Source {
    fn parse(section: &ServerSection, url: &ServerUrl, files: Files) -> Result<Source, Error> {
        let tls = &section.tls.clone().unwrap_or_default();
        let text = url.expose();
        if text.contains("://") {
            return endpoint("source", "[source]", section, url, tls, files).map(Source::Redis);
        }
        if section.user.is_some()
            || section.password_file.is_some()
            || section.password_env.is_some()
        {
            return Err(Error::Config(format!(
                "[source] sets a user or password, but the source is the file {text:?}, not a redis:// URL"
            )));
        }
        let text = text.as_str();
        if !tls.is_empty() {
            return Err(Error::Config(format!(
                "TLS settings are given for the source but it is the file {text:?}, not a rediss:// URL"
            )));
        }
        let path = Path::new(text);
        let host_port = text
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if host_port && (files == Files::Leave || !path.exists()) {
            return Err(Error::Config(format!(
                "source {text:?} has no scheme: write it as redis://{text}"
            )));
        }
        if files == Files::Leave {
            return Ok(Source::RdbFile(path.to_path_buf()));
        }
        match std::fs::metadata(path) {
            Ok(m) if m.is_file() => Ok(Source::RdbFile(path.to_path_buf())),
            Ok(_) => Err(Error::Config(format!(
                "source {text:?} is a directory, not an RDB file"
            ))),
            Err(e) => Err(Error::Config(format!(
                "source {text:?} is neither a redis://host:port URL nor a readable RDB file ({e})"
            ))),
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Redis(e) => write!(f, "{e}"),
            Source::RdbFile(p) => write!(f, "{}", p.display()),
        }
    }
}

/// A complete, checked task.
#[derive(Clone, Debug)]
pub struct TaskConfig {
    pub source: Source,
    pub target: Endpoint,
    /// Further targets fed from the same stream (one-to-many).
    pub more_targets: Vec<Endpoint>,
    pub full_only: bool,
    /// Task name, for its checkpoint key.
    pub name: String,
    /// Task identity, for its local files (see [`TaskConfig::local_dir`]).
    pub id: TaskId,
    pub full_resync: crate::spec::FullResync,
    pub retry: Retry,
    /// Keep a checkpoint in the target (exactly once across restarts).
    pub checkpoint: bool,
    pub rdb: ferry_rdb::Options,
    pub writer: crate::sink::standalone::Options,
    /// A cluster source: which node of each shard to replicate from.
    pub read_from: ReadFrom,
    /// How the source is read: as a replica, by scanning, or whichever it allows.
    pub source_mode: SourceMode,
    /// How the target is written: as a client, or as ferry's replica.
    pub target_mode: TargetMode,
    /// Replica mode: where ferry listens for the target's replication link, and the address
    /// it tells the target to connect to (the listener's own when not set).
    pub replica_listen: std::net::SocketAddr,
    pub replica_announce: Option<(String, u16)>,
    pub spool: SpoolConfig,
    /// Silence from the source for this long ends the link (see `advanced.source_timeout`).
    pub source_timeout: std::time::Duration,
    /// What a first full copy does with keys the target already holds; None once settled
    /// for the whole target (the shards of a cluster source, checked once before any starts).
    /// `Flush` here has been confirmed.
    pub on_conflict: Option<OnConflict>,
    /// Forward PUBLISH and SPUBLISH from the source's stream.
    pub forward_publish: bool,
    /// Measure end-to-end latency with a heartbeat key written on the source.
    pub heartbeat: bool,
    /// The precheck `sync` runs first (`[check]`).
    pub check: crate::spec::CheckConfig,
}

/// Whether building a task reads the files its spec names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Files {
    Read,
    /// Only what can be told without them: [`TaskSpec::validate`].
    Leave,
}

impl TaskSpec {
    /// Checks everything that can be told without reading a file or reaching a server: URLs,
    /// numbers, combinations of settings, filter rules. What `TaskConfig::build` adds is
    /// reading the TLS material, the RDB file and the Lua script the spec names.
    pub fn validate(&self) -> Result<(), Error> {
        TaskConfig::build_with(self.clone(), Files::Leave).map(drop)
    }
}

impl TaskConfig {
    /// This task's own local files: `<data_dir>/tasks/<id>`. No other task shares it.
    pub fn local_dir(&self) -> PathBuf {
        self.spool.data_dir.join("tasks").join(self.id.as_str())
    }

    /// The spec checked, its files read and the engine's objects built.
    pub fn build(spec: TaskSpec) -> Result<TaskConfig, Error> {
        TaskConfig::build_with(spec, Files::Read)
    }

    fn build_with(file: TaskSpec, files: Files) -> Result<TaskConfig, Error> {
        let source_url = file.source.url.clone().ok_or_else(|| {
            Error::Config(
                "no source: set [source] url (redis://host:port, or the path of an RDB file)"
                    .into(),
            )
        })?;
        let target_url = file.target.url.clone().ok_or_else(|| {
            Error::Config("no target: set [target] url (redis://host:port)".into())
        })?;
        let source = Source::parse(&file.source, &source_url, files)?;
        let target = endpoint(
            "target",
            "[target]",
            &file.target,
            &target_url,
            &file.target.tls.clone().unwrap_or_default(),
            files,
        )?;
        if source == Source::Redis(target.clone()) {
            return Err(Error::Config(format!(
                "source and target are the same server ({source}); ferry would copy it onto itself"
            )));
        }
        let more_targets = more_targets(&file.more_targets, &source, &target, files)?;
        let mut rdb = ferry_rdb::Options {
            big_value_bytes: DEFAULT_BIG_VALUE_BYTES,
            chunk_bytes: CHUNK_BYTES,
            ..ferry_rdb::Options::default()
        };
        let adv = file.advanced;
        if let Some(v) = adv.big_value_bytes {
            positive("advanced.big_value_bytes", v as u64)?;
            rdb.big_value_bytes = v;
        }
        if let Some(v) = adv.big_value_elements {
            positive("advanced.big_value_elements", v)?;
            rdb.big_value_elements = v;
        }
        if let Some(v) = adv.chunk_elements {
            positive("advanced.chunk_elements", v as u64)?;
            rdb.chunk_elements = v;
        }
        let mut writer = crate::sink::standalone::Options::default();
        if let Some(v) = adv.max_in_flight {
            positive("advanced.max_in_flight", v as u64)?;
            writer.max_in_flight = v;
        }
        writer.rewrite_values = adv.rewrite_values.unwrap_or(false);
        if file.source.on_error.is_some() {
            return Err(Error::Config(
                "on_error belongs in [target], not [source]".into(),
            ));
        }
        writer.on_error = file.target.on_error.unwrap_or_default();
        if file.target.read_from.is_some() {
            return Err(Error::Config(
                "read_from belongs in [source], not [target]".into(),
            ));
        }
        let read_from = file.source.read_from.unwrap_or_default();
        let source_mode = match file.source.mode {
            None | Some(Mode::Psync) => SourceMode::Psync,
            Some(Mode::Scan) => SourceMode::Scan,
            Some(Mode::Auto) => SourceMode::Auto,
            Some(m @ (Mode::Commands | Mode::Replica)) => {
                return Err(Error::Config(format!(
                    "[source] mode = \"{}\" says how a target is written; the source's mode is \"psync\", \"scan\" or \"auto\" (and [target] mode is \"commands\" or \"replica\")",
                    m.name()
                )));
            }
        };
        let target_mode = match file.target.mode {
            None | Some(Mode::Commands) => TargetMode::Commands,
            Some(Mode::Replica) => TargetMode::Replica,
            Some(m @ (Mode::Psync | Mode::Scan | Mode::Auto)) => {
                return Err(Error::Config(format!(
                    "[target] mode = \"{}\" says how a source is read; the target's mode is \"commands\" (default) or \"replica\"",
                    m.name()
                )));
            }
        };
        if matches!(source, Source::RdbFile(_)) && source_mode != SourceMode::Psync {
            return Err(Error::Config(format!(
                "[source] mode = \"{}\" reads a live server; the source is a snapshot file, which is loaded as it is: leave mode out",
                source_mode.name()
            )));
        }
        let rules = crate::pipeline::transform::Rules::build(&file.filter)?;
        if !rules.is_noop() {
            writer.db_map = rules.db_map.clone();
            writer.filter = Some(std::sync::Arc::new(rules));
        }
        let forward_publish = file.filter.forward_publish.unwrap_or(false);
        if file.source.replica_listen.is_some() || file.source.replica_announce.is_some() {
            return Err(Error::Config(
                "replica_listen and replica_announce belong in [target] (with mode = \"replica\"), not [source]".into(),
            ));
        }
        let (replica_listen, replica_announce) = replica_addresses(&file.target)?;
        if target_mode == TargetMode::Replica {
            replica_mode_fits(
                (&file.target, &file.filter, &file.transform, &file.limit),
                &source,
                &more_targets,
                source_mode,
                &writer,
            )?;
        }
        let retry = Retry::build(&file.retry)?;
        // Always there, limits or not: a running task's limits can be set later.
        writer.throttle = Some(std::sync::Arc::new(crate::status::throttle::Throttle::new(
            limits(&file.limit)?,
        )));
        let on_conflict = file.sync.on_conflict.unwrap_or_default();
        match (on_conflict, file.sync.confirm_flush.unwrap_or(false)) {
            (OnConflict::Flush, false) => {
                return Err(Error::Config(
                    "[sync] on_conflict = \"flush\" deletes every key in the target's synced dbs before the copy: confirm it with [sync] confirm_flush = true".into(),
                ));
            }
            (OnConflict::Fail | OnConflict::Overwrite, true) => {
                return Err(Error::Config(format!(
                    "[sync] confirm_flush confirms on_conflict = \"flush\", but on_conflict is \"{}\"; set [sync] on_conflict = \"flush\" or drop the confirmation",
                    on_conflict.name()
                )));
            }
            _ => {}
        }
        // A file holds no stream of writes to follow.
        let full_only =
            file.sync.full_only.unwrap_or(false) || matches!(source, Source::RdbFile(_));
        let name = match (file.sync.name, &source) {
            // Braces would act as a hash tag in the checkpoint keys on a cluster target.
            (Some(n), _)
                if n.is_empty()
                    || n.contains(|c: char| c.is_whitespace() || c == '{' || c == '}') =>
            {
                return Err(Error::Config(format!(
                    "sync.name {n:?} must be non-empty, without spaces or braces"
                )));
            }
            (Some(n), _) => n,
            // A master behind sentinels keeps its name across failovers; its address does not.
            (None, Source::Redis(e)) => match &e.sentinel {
                Some(s) => format!("sentinel-{}", s.master).replace(['{', '}'], "_"),
                None => e.addr(),
            },
            (None, Source::RdbFile(p)) => p.display().to_string(),
        };
        writer.transform = transform(&file.transform, files)?;
        // TTLs are held only where a stream follows the copy to renew or delete the keys.
        if !full_only {
            writer.ttl_hold = Some(crate::sink::hold::Setup {
                task: name.clone(),
                clock: None,
            });
        }
        if target_mode == TargetMode::Replica {
            // The target replicates the source's stream as it is: nothing to hold, and a
            // heartbeat key written on the source would reach the target.
            writer.ttl_hold = None;
        } else if file.target.replica_listen.is_some() || file.target.replica_announce.is_some() {
            return Err(Error::Config(
                "[target] replica_listen and replica_announce apply to mode = \"replica\"; set [target] mode = \"replica\" or drop them".into(),
            ));
        }
        let size_mb = file.spool.size_mb.unwrap_or(1024);
        let spool = SpoolConfig {
            data_dir: file
                .sync
                .data_dir
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            limit: size_mb
                .checked_mul(1 << 20)
                .ok_or_else(|| Error::Config(format!("spool.size_mb = {size_mb} is too large")))?,
        };
        let source_timeout = match adv.source_timeout {
            Some(s) => {
                positive("advanced.source_timeout", s)?;
                std::time::Duration::from_secs(s)
            }
            None => crate::source::psync::DEFAULT_IDLE_TIMEOUT,
        };
        Ok(TaskConfig {
            source_timeout,
            id: match file.sync.id {
                Some(id) => id,
                None => TaskId::derived(
                    &name,
                    &std::iter::once(&target)
                        .chain(&more_targets)
                        .map(|t| t.addr())
                        .collect::<Vec<_>>(),
                ),
            },
            more_targets,
            spool,
            name,
            full_resync: file.sync.full_resync.unwrap_or_default(),
            heartbeat: file.sync.heartbeat.unwrap_or(true) && target_mode == TargetMode::Commands,
            retry,
            checkpoint: adv.checkpoint.unwrap_or(true),
            source,
            target,
            full_only,
            rdb,
            writer,
            read_from,
            source_mode,
            target_mode,
            replica_listen,
            replica_announce,
            on_conflict: Some(on_conflict),
            check: crate::spec::CheckConfig::build(&file.check)?,
            forward_publish,
        })
    }
}

/// `[target] replica_listen` and `replica_announce`, checked (whatever the mode).
fn replica_addresses(
    target: &ServerSection,
) -> Result<(std::net::SocketAddr, Option<(String, u16)>), Error> {
    let listen = match &target.replica_listen {
        None => std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        Some(text) => text.parse().map_err(|_| {
            Error::Config(format!(
                "[target] replica_listen = {text:?} is not an address to listen on: give ip:port, e.g. \"127.0.0.1:0\" (0: any free port)"
            ))
        })?,
    };
    let announce = match &target.replica_announce {
        None => None,
        Some(text) => {
            let parsed = text
                .rsplit_once(':')
                .and_then(|(host, port)| Some((host, port.parse::<u16>().ok()?)))
                .filter(|(host, port)| !host.is_empty() && *port != 0);
            match parsed {
                Some((host, port)) => Some((host.trim_matches(['[', ']']).to_string(), port)),
                None => {
                    return Err(Error::Config(format!(
                        "[target] replica_announce = {text:?} is not host:port (a port other than 0): the address the target connects to to reach ferry"
                    )));
                }
            }
        }
    };
    Ok((listen, announce))
}

/// Replica mode relays one source's replication to one standalone target as it is: what would
/// change the data on its way, or needs a client's writes, is refused with what to do instead.
fn replica_mode_fits(
    (target, filter, transform, limit): (
        &ServerSection,
        &FilterSection,
        &TransformSection,
        &LimitSection,
    ),
    source: &Source,
    more_targets: &[Endpoint],
    source_mode: SourceMode,
    writer: &crate::sink::standalone::Options,
) -> Result<(), Error> {
    let refuse = |what: &str| {
        Err(Error::Config(format!(
            "[target] mode = \"replica\" relays the source's replication to the target unchanged, so {what}; use [target] mode = \"commands\" (the default) for that"
        )))
    };
    if matches!(source, Source::RdbFile(_)) {
        return refuse("it needs a live source, not a snapshot file");
    }
    if source_mode != SourceMode::Psync {
        return refuse("the source must be read with [source] mode = \"psync\"");
    }
    if !more_targets.is_empty() {
        return refuse("it feeds one target, not [[more_targets]]");
    }
    if writer.filter.is_some() || filter.forward_publish.is_some() {
        return refuse("[filter] (keys, dbs, types, commands, db map, TTL changes) cannot apply");
    }
    if *transform != TransformSection::default() {
        return refuse("a [transform] script cannot apply");
    }
    if writer.rewrite_values {
        return refuse("[advanced] rewrite_values cannot apply");
    }
    if *limit != LimitSection::default() {
        return refuse("[limit] rates cannot apply (the target loads at its own pace)");
    }
    if target.on_error.is_some() {
        return refuse("the target refuses no write and [target] on_error has nothing to decide");
    }
    Ok(())
}

/// The `[[more_targets]]`: each a server of its own (its checkpoint key is the task's, in that
/// server), only a live source feeds several, and only one stream (not a cluster source's
/// several) is fanned out.
fn more_targets(
    sections: &[ServerSection],
    source: &Source,
    first: &Endpoint,
    files: Files,
) -> Result<Vec<Endpoint>, Error> {
    let mut seen = vec![first.clone()];
    let mut out = Vec::new();
    for (i, section) in sections.iter().enumerate() {
        let n = i + 2;
        let url = section
            .url
            .as_ref()
            .ok_or_else(|| Error::Config(format!("more_targets entry {} has no url", i + 1)))?;
        if section.on_error.is_some()
            || section.read_from.is_some()
            || section.mode.is_some()
            || section.replica_listen.is_some()
            || section.replica_announce.is_some()
        {
            return Err(Error::Config(format!(
                "more_targets entry {}: only url, tls, user and a password can be set per target; on_error in [target] applies to all",
                i + 1
            )));
        }
        let endpoint = endpoint(
            "target",
            &format!("more_targets entry {}", i + 1),
            section,
            url,
            &section.tls.clone().unwrap_or_default(),
            files,
        )?;
        if matches!(source, Source::RdbFile(_)) {
            return Err(Error::Config(
                "several targets need a live source (one replication stream fanned out); load a snapshot file into one target at a time".into(),
            ));
        }
        if *source == Source::Redis(endpoint.clone()) {
            return Err(Error::Config(format!(
                "target {n} ({endpoint}) is the source itself"
            )));
        }
        if seen.contains(&endpoint) {
            return Err(Error::Config(format!(
                "target {n} ({endpoint}) is given twice; each target must be another server"
            )));
        }
        seen.push(endpoint.clone());
        out.push(endpoint);
    }
    Ok(out)
}

/// The transform script, read and checked now so a mistake in it stops the task at start.
fn transform(
    section: &TransformSection,
    files: Files,
) -> Result<Option<std::sync::Arc<crate::pipeline::script::Script>>, Error> {
    let Some(path) = &section.script else {
        if section.time_limit_ms.is_some() || section.memory_mb.is_some() {
            return Err(Error::Config(
                "[transform] sets limits but no script: set [transform] script".into(),
            ));
        }
        return Ok(None);
    };
    let mut limits = crate::pipeline::script::Limits::default();
    if let Some(ms) = section.time_limit_ms {
        positive("transform.time_limit_ms", ms)?;
        limits.time = std::time::Duration::from_millis(ms);
    }
    if let Some(mb) = section.memory_mb {
        positive("transform.memory_mb", mb as u64)?;
        limits.memory = mb
            .checked_mul(1 << 20)
            .ok_or_else(|| Error::Config(format!("transform.memory_mb = {mb} is too large")))?;
    }
    if files == Files::Leave {
        return Ok(None);
    }
    let script = crate::pipeline::script::Script::load(path, limits)?;
    Ok(Some(std::sync::Arc::new(script)))
}

/// A server's URL with its TLS settings and its login; files (TLS material, a
/// `password_file`) and a `password_env` are read only when asked. `what` names the section
/// in messages (`[source]`).
fn endpoint(
    role: &'static str,
    what: &str,
    section: &ServerSection,
    url: &ServerUrl,
    tls: &TlsSection,
    files: Files,
) -> Result<Endpoint, Error> {
    let given: Vec<&str> = [
        url.password().map(|_| "a password in the URL"),
        section.password_file.as_ref().map(|_| "password_file"),
        section.password_env.as_ref().map(|_| "password_env"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let [first, second, ..] = given[..] {
        return Err(Error::Config(format!(
            "{what} gives its password twice, as {first} and as {second}; keep one"
        )));
    }
    let apart = section.password_file.is_some() || section.password_env.is_some();
    // A URL with a user and no password does not parse alone: it stands in for the password
    // kept apart while parsing, and is replaced right after.
    let mut parsed = url.clone();
    if apart && !parsed.set_password(Some(Secret::new("-"))) {
        return Err(Error::Config(format!(
            "{what} sets a password but its URL {url} has no place for a login"
        )));
    }
    let mut endpoint = match files {
        Files::Read => Endpoint::parse_with_tls(role, &parsed.expose(), tls),
        Files::Leave => Endpoint::parse_unloaded(role, &parsed.expose(), tls),
    }
    .map_err(|e| hide_password(e, url))?;
    if let Some(user) = &section.user {
        if let Some(in_url) = &endpoint.username {
            return Err(Error::Config(format!(
                "{what} names its user twice, as {in_url:?} in the URL and as user = {user:?}; keep one"
            )));
        }
        if user.is_empty() {
            return Err(Error::Config(format!(
                "{what} user is empty; leave it out to log in as the default user"
            )));
        }
        if !apart && url.password().is_none() {
            return Err(Error::Config(format!(
                "{what} sets user = {user:?} but no password: set password_file or password_env (or REDISCLI_AUTH for ferry's command line)"
            )));
        }
        endpoint.username = Some(user.clone());
    }
    if apart && files == Files::Read {
        endpoint.password = Some(password_apart(what, section)?);
    }
    Ok(endpoint)
}

/// The password named by `password_file` or `password_env`, read now.
fn password_apart(what: &str, section: &ServerSection) -> Result<String, Error> {
    let password = if let Some(path) = &section.password_file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!(
                "{what} password_file {}: cannot read it ({e})",
                path.display()
            ))
        })?;
        warn_if_shared(what, path);
        let line = text.strip_suffix('\n').unwrap_or(&text);
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.contains('\n') {
            return Err(Error::Config(format!(
                "{what} password_file {} holds more than one line; it must hold the password alone",
                path.display()
            )));
        }
        if line.is_empty() {
            return Err(Error::Config(format!(
                "{what} password_file {} is empty",
                path.display()
            )));
        }
        line.to_string()
    } else if let Some(name) = &section.password_env {
        match std::env::var(name) {
            Ok(p) if !p.is_empty() => p,
            Ok(_) => {
                return Err(Error::Config(format!(
                    "{what} password_env names {name}, which is empty"
                )));
            }
            Err(std::env::VarError::NotPresent) => {
                return Err(Error::Config(format!(
                    "{what} password_env names {name}, which is not set in ferry's environment"
                )));
            }
            Err(std::env::VarError::NotUnicode(_)) => {
                return Err(Error::Config(format!(
                    "{what} password_env names {name}, whose value is not valid UTF-8"
                )));
            }
        }
    } else {
        return Err(Error::Internal {
            what: "password_apart",
            why: "called without password_file or password_env".into(),
        });
    };
    Ok(password)
}

/// A password file others may read is a password others know: said once, not refused, since
/// some secret stores mount files readable by all (Kubernetes' default mode is 0644).
fn warn_if_shared(what: &str, path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                "{what} password_file {} can be read by other users (mode {:o}); chmod 600 it",
                path.display(),
                meta.permissions().mode() & 0o777
            );
        }
    }
    #[cfg(not(unix))]
    let _ = (what, path);
}

/// A URL parser's message quotes the URL it was given: it is shown without its password.
fn hide_password(error: Error, url: &ServerUrl) -> Error {
    let Some(password) = url.password() else {
        return error;
    };
    match error {
        Error::Config(text) => Error::Config(
            text.replace(
                &format!("{:?}", url.expose()),
                &format!("{:?}", url.shown()),
            )
            .replace(&url.expose(), &url.shown())
            .replace(password.expose(), "<hidden>"),
        ),
        other => other,
    }
}

/// The limits, checked.
pub fn limits(section: &LimitSection) -> Result<crate::status::throttle::Limits, Error> {
    let check = |name: &str, v: Option<f64>| match v {
        Some(v) if !(v.is_finite() && v > 0.0) => Err(Error::Config(format!(
            "limit.{name} = {v} must be a number greater than 0 (leave it out for no limit)"
        ))),
        _ => Ok(v),
    };
    Ok(crate::status::throttle::Limits {
        full_keys_per_sec: check("full_keys_per_sec", section.full_keys_per_sec)?,
        full_mb_per_sec: check("full_mb_per_sec", section.full_mb_per_sec)?,
        incremental_ops_per_sec: check("incremental_ops_per_sec", section.incremental_ops_per_sec)?,
        incremental_mb_per_sec: check("incremental_mb_per_sec", section.incremental_mb_per_sec)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_named() {
        let err = toml::from_str::<TaskSpec>("[source]\nurll = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("urll"), "{err}");
    }

    #[test]
    fn builds_from_a_full_file() {
        let file: TaskSpec = toml::from_str(
            r#"
            [source]
            url = "redis://127.0.0.1:7000"
            [target]
            url = "redis://:pw@127.0.0.1:7001"
            [sync]
            full_only = true
            [status]
            addr = "127.0.0.1:9000"
            [advanced]
            big_value_elements = 10
            "#,
        )
        .unwrap();
        let cfg = TaskConfig::build(file).unwrap();
        assert!(cfg.full_only);
        assert!(matches!(cfg.source, Source::Redis(_)));
        assert_eq!(cfg.rdb.big_value_elements, 10);
        assert_eq!(cfg.target.password.as_deref(), Some("pw"));
    }

    #[test]
    fn a_source_path_is_a_snapshot_file_loaded_once() {
        let dir = std::env::temp_dir().join(format!("ferry-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("dump.rdb");
        std::fs::write(&path, b"REDIS0010").unwrap();
        let mut file = TaskSpec::default();
        file.source.url = Some(path.to_string_lossy().into_owned().into());
        file.target.url = Some("redis://127.0.0.1:7000".into());
        let cfg = TaskConfig::build(file).unwrap();
        assert_eq!(cfg.source, Source::RdbFile(path.clone()));
        assert!(cfg.full_only);
        let parse = |text: &str| {
            Source::parse(
                &ServerSection::default(),
                &ServerUrl::new(text),
                Files::Read,
            )
        };
        let missing = parse("no/such/dump.rdb").unwrap_err().to_string();
        assert!(
            missing.contains("neither a redis://host:port URL nor a readable RDB file"),
            "{missing}"
        );
        assert!(
            parse(dir.to_str().unwrap())
                .unwrap_err()
                .to_string()
                .contains("directory")
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_password_comes_from_one_place_and_never_shows() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret-file\r\n").unwrap();
        let spec = |source: &str, target: &str| {
            TaskSpec::from_toml(&format!("[source]\n{source}\n[target]\n{target}\n",)).unwrap()
        };
        let with_file = format!("password_file = {:?}", file.display().to_string());
        let cfg = TaskConfig::build(spec(
            &format!("url = \"redis://alice@127.0.0.1:7000\"\n{with_file}"),
            &format!("url = \"redis://127.0.0.1:7001\"\nuser = \"bob\"\n{with_file}"),
        ))
        .unwrap();
        let Source::Redis(source) = &cfg.source else {
            panic!("a server source")
        };
        assert_eq!(source.username.as_deref(), Some("alice"));
        assert_eq!(source.password.as_deref(), Some("s3cret-file"));
        assert_eq!(cfg.target.username.as_deref(), Some("bob"));
        assert_eq!(cfg.target.password.as_deref(), Some("s3cret-file"));
        assert!(!format!("{cfg:?}").contains("s3cret"));

        let err = |source: &str, target: &str| {
            TaskConfig::build(spec(source, target))
                .unwrap_err()
                .to_string()
        };
        let plain = "url = \"redis://127.0.0.1:7001\"";
        let e = err(
            &format!("url = \"redis://:s3cret-url@127.0.0.1:7000\"\n{with_file}"),
            plain,
        );
        assert!(
            e.contains(
                "[source] gives its password twice, as a password in the URL and as password_file"
            ),
            "{e}"
        );
        assert!(!e.contains("s3cret"), "{e}");
        let e = err(
            "url = \"redis://127.0.0.1:7000\"\npassword_file = \"a\"\npassword_env = \"B\"",
            plain,
        );
        assert!(e.contains("as password_file and as password_env"), "{e}");
        let e = err(
            &format!("url = \"redis://alice@127.0.0.1:7000\"\nuser = \"bob\"\n{with_file}"),
            plain,
        );
        assert!(e.contains("[source] names its user twice"), "{e}");
        let e = err(
            "url = \"redis://127.0.0.1:7000\"\npassword_env = \"FERRY_CONFIG_TEST_NEVER_SET\"",
            plain,
        );
        assert!(
            e.contains("FERRY_CONFIG_TEST_NEVER_SET, which is not set"),
            "{e}"
        );
        let e = err(
            "url = \"redis://127.0.0.1:7000\"",
            "url = \"redis://127.0.0.1:7001\"\npassword_file = \"/nonexistent/pw\"",
        );
        assert!(
            e.starts_with("[target] password_file /nonexistent/pw: cannot read it"),
            "{e}"
        );
        let e = err(&format!("url = \"dump.rdb\"\n{with_file}"), plain);
        assert!(e.contains("not a redis:// URL"), "{e}");
        // A URL the parser refuses is quoted without its password.
        let e = err("url = \"redis://:s3cret-url@127.0.0.1:99999\"", plain);
        assert!(e.contains("source URL \"redis://127.0.0.1:99999\""), "{e}");
        assert!(!e.contains("s3cret"), "{e}");

        // Each further target has a login of its own.
        let cfg = TaskConfig::build(
            TaskSpec::from_toml(&format!(
                "[source]\nurl = \"redis://127.0.0.1:7000\"\n[target]\nurl = \"redis://127.0.0.1:7001\"\n\
                 [[more_targets]]\nurl = \"redis://127.0.0.1:7002\"\nuser = \"carol\"\n{with_file}\n"
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(cfg.target.password, None);
        assert_eq!(cfg.more_targets[0].username.as_deref(), Some("carol"));
        assert_eq!(cfg.more_targets[0].password.as_deref(), Some("s3cret-file"));

        // Validation reads neither the file nor the environment.
        spec(
            "url = \"redis://127.0.0.1:7000\"\npassword_file = \"/nonexistent/pw\"",
            "url = \"redis://127.0.0.1:7001\"\npassword_env = \"FERRY_CONFIG_TEST_NEVER_SET\"",
        )
        .validate()
        .unwrap();
    }

    #[test]
    fn retry_windows_are_checked() {
        let file: TaskSpec = toml::from_str(
            "[source]\nurl = \"redis://a:1\"\n[target]\nurl = \"redis://b:1\"\non_error = \"log\"\n[retry]\nconnection = 5\nother = 5\n",
        )
        .unwrap();
        let err = TaskConfig::build(file).unwrap_err().to_string();
        assert!(
            err.contains("retry.other (5 min) must be less than retry.connection (5 min)"),
            "{err}"
        );
        let file: TaskSpec = toml::from_str(
            "[source]\nurl = \"redis://a:1\"\n[target]\nurl = \"redis://b:1\"\non_error = \"log\"\n",
        )
        .unwrap();
        let cfg = TaskConfig::build(file).unwrap();
        assert_eq!(cfg.retry.connection.as_secs(), 720 * 60);
        assert_eq!(cfg.retry.other.as_secs(), 600);
        assert_eq!(cfg.writer.on_error, OnError::Log);
    }

    #[test]
    fn a_transform_script_is_read_and_checked_when_configured() {
        let build = |transform: &str| {
            let text = format!(
                "[source]\nurl = \"redis://a:1\"\n[target]\nurl = \"redis://b:1\"\n[transform]\n{transform}\n"
            );
            let file: TaskSpec = toml::from_str(&text).map_err(|e| Error::Config(e.to_string()))?;
            TaskConfig::build(file)
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.lua");
        std::fs::write(&path, "function transform(e) return e end").unwrap();
        let cfg = build(&format!(
            "script = {:?}\ntime_limit_ms = 250\nmemory_mb = 16",
            path.display().to_string()
        ))
        .unwrap();
        let script = cfg.writer.transform.expect("a script");
        assert_eq!(script.limits.time, std::time::Duration::from_millis(250));
        assert_eq!(script.limits.memory, 16 << 20);
        let err = |t: &str| build(t).unwrap_err().to_string();
        assert!(
            err("script = \"/nonexistent/t.lua\"")
                .starts_with("cannot read transform script /nonexistent/t.lua")
        );
        assert!(err("time_limit_ms = 5").contains("no script"));
        let zero = format!(
            "script = {:?}\ntime_limit_ms = 0",
            path.display().to_string()
        );
        assert!(err(&zero).contains("transform.time_limit_ms must be greater than 0"));
    }

    /// The README's example config is a real one.
    #[test]
    fn the_readme_example_builds() {
        let readme = include_str!("../../../README.md");
        let start = readme
            .find("```toml\n")
            .expect("a toml block in the README")
            + 8;
        let block = &readme[start..start + readme[start..].find("```").unwrap()];
        let file: TaskSpec = toml::from_str(block).unwrap_or_else(|e| panic!("{e}"));
        let cfg = TaskConfig::build(file).unwrap();
        assert_eq!(cfg.name, "orders-eu");
        assert_eq!(cfg.writer.max_in_flight, 16384);
        // Every later example parses too (the TLS one names files that exist only there).
        for block in readme.split("```toml\n").skip(2) {
            let block = &block[..block.find("```").unwrap()];
            toml::from_str::<TaskSpec>(block).unwrap_or_else(|e| panic!("{e}\n{block}"));
        }
    }

    fn tls_config(source_tls: &str, target_tls: &str) -> Result<TaskConfig, Error> {
        let text = format!(
            "[source]\nurl = \"rediss://127.0.0.1:7000\"\n[source.tls]\n{source_tls}\n\
             [target]\nurl = \"rediss://127.0.0.1:7001\"\n[target.tls]\n{target_tls}\n"
        );
        let file: TaskSpec = toml::from_str(&text).map_err(|e| Error::Config(e.to_string()))?;
        TaskConfig::build(file)
    }

    #[test]
    fn tls_settings_are_read_and_checked_when_loaded() {
        let files = testkit::tls::TlsFiles::generate();
        let p = |p: &Path| p.display().to_string();
        let cfg = tls_config(
            &format!(
                "ca_file = \"{}\"\ncert_file = \"{}\"\nkey_file = \"{}\"\nserver_name = \"redis.test\"\nmin_version = \"1.3\"",
                p(&files.ca),
                p(&files.client_cert),
                p(&files.client_key)
            ),
            "",
        )
        .unwrap();
        let Source::Redis(source) = &cfg.source else {
            panic!("a server source")
        };
        let tls = source.tls.as_ref().unwrap().settings();
        assert_eq!(tls.min_version, Some(crate::net::tls::TlsVersion::Tls13));
        assert_eq!(tls.server_name.as_deref(), Some("redis.test"));
        // An empty [target.tls] with rediss:// is TLS with the public CAs.
        assert!(cfg.target.tls.as_ref().unwrap().settings().is_empty());

        let err = |source_tls: String| tls_config(&source_tls, "").unwrap_err().to_string();
        let e = err(format!("cert_file = \"{}\"", p(&files.client_cert)));
        assert!(e.contains("cert_file is given without key_file"), "{e}");
        let e = err(format!("key_file = \"{}\"", p(&files.client_key)));
        assert!(e.contains("key_file is given without cert_file"), "{e}");
        let missing = files.dir().join("missing.pem");
        let e = err(format!("ca_file = \"{}\"", p(&missing)));
        assert!(
            e.starts_with("source TLS ca_file")
                && e.contains(&p(&missing))
                && e.contains("cannot read it"),
            "{e}"
        );
        let bad = files.dir().join("bad.pem");
        std::fs::write(
            &bad,
            "-----BEGIN CERTIFICATE-----\nnot base64 !!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let e = err(format!("ca_file = \"{}\"", p(&bad)));
        assert!(
            e.contains(&p(&bad)) && e.contains("is not valid PEM"),
            "{e}"
        );
        let text = files.dir().join("text.pem");
        std::fs::write(&text, "hello\n").unwrap();
        let e = err(format!("ca_file = \"{}\"", p(&text)));
        assert!(
            e.contains(&p(&text)) && e.contains("holds no PEM certificate"),
            "{e}"
        );
        // A certificate where the key should be, and a key that is not the certificate's.
        let e = err(format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"",
            p(&files.client_cert),
            p(&files.client_cert)
        ));
        assert!(
            e.contains("key_file") && e.contains("holds no PEM private key"),
            "{e}"
        );
        let e = err(format!(
            "cert_file = \"{}\"\nkey_file = \"{}\"",
            p(&files.client_cert),
            p(&files.server_key)
        ));
        assert!(e.contains("does not go with cert_file"), "{e}");
        let e = err("server_name = \"not a name!\"".into());
        assert!(e.contains("server_name"), "{e}");
        let e = err("min_version = \"1.1\"".into());
        assert!(e.contains("1.1") || e.contains("variant"), "{e}");
        let e = err("verify = false".into());
        assert!(e.contains("verify"), "{e}");
    }

    #[test]
    fn tls_settings_need_a_rediss_url() {
        let file: TaskSpec = toml::from_str(
            "[source]\nurl = \"redis://a:1\"\n[target]\nurl = \"redis://b:1\"\n[target.tls]\nserver_name = \"b\"\n",
        )
        .unwrap();
        let e = TaskConfig::build(file).unwrap_err().to_string();
        assert!(e.contains("target") && e.contains("write rediss://"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        let rdb = dir.path().join("dump.rdb");
        std::fs::write(&rdb, b"REDIS0010").unwrap();
        let mut file = TaskSpec::default();
        file.source.url = Some(rdb.display().to_string().into());
        file.source.tls = Some(TlsSection {
            server_name: Some("x".into()),
            ..TlsSection::default()
        });
        file.target.url = Some("redis://b:1".into());
        let e = TaskConfig::build(file).unwrap_err().to_string();
        assert!(e.contains("not a rediss:// URL"), "{e}");
    }

    fn sync_config(extra: &str) -> Result<TaskConfig, Error> {
        let text = format!(
            "[source]\nurl = \"redis://127.0.0.1:7000\"\n[target]\nurl = \"redis://127.0.0.1:7001\"\n{extra}\n"
        );
        let file: TaskSpec = toml::from_str(&text).map_err(|e| Error::Config(e.to_string()))?;
        TaskConfig::build(file)
    }

    #[test]
    fn flushing_the_target_on_conflict_needs_a_confirmation() {
        assert_eq!(sync_config("").unwrap().on_conflict, Some(OnConflict::Fail));
        let cfg = sync_config("[sync]\non_conflict = \"overwrite\"").unwrap();
        assert_eq!(cfg.on_conflict, Some(OnConflict::Overwrite));
        let e = sync_config("[sync]\non_conflict = \"flush\"")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("on_conflict = \"flush\"") && e.contains("[sync] confirm_flush = true"),
            "{e}"
        );
        let cfg = sync_config("[sync]\non_conflict = \"flush\"\nconfirm_flush = true").unwrap();
        assert_eq!(cfg.on_conflict, Some(OnConflict::Flush));
        let e = sync_config("[sync]\nconfirm_flush = true")
            .unwrap_err()
            .to_string();
        assert!(e.contains("but on_conflict is \"fail\""), "{e}");
        let e = sync_config("[sync]\non_conflict = \"replace\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("replace"), "{e}");
    }

    #[test]
    fn limits_are_positive_numbers() {
        assert!(
            !sync_config("")
                .unwrap()
                .writer
                .throttle
                .unwrap()
                .is_limited()
        );
        let cfg =
            sync_config("[limit]\nfull_keys_per_sec = 500\nincremental_mb_per_sec = 0.5").unwrap();
        let limits = cfg.writer.throttle.unwrap().limits();
        assert_eq!(limits.full_keys_per_sec, Some(500.0));
        assert_eq!(limits.incremental_mb_per_sec, Some(0.5));
        assert_eq!(limits.full_mb_per_sec, None);
        for bad in [
            "full_mb_per_sec = 0",
            "incremental_ops_per_sec = -3",
            "full_keys_per_sec = nan",
        ] {
            let e = sync_config(&format!("[limit]\n{bad}"))
                .unwrap_err()
                .to_string();
            assert!(e.contains("must be a number greater than 0"), "{bad}: {e}");
        }
        let e = sync_config("[limit]\nkeys_per_sec = 5")
            .unwrap_err()
            .to_string();
        assert!(e.contains("keys_per_sec"), "{e}");
    }

    fn with_filter(filter: &str) -> Result<TaskConfig, String> {
        let text = format!(
            "[source]\nurl = \"redis://a:1\"\n[target]\nurl = \"redis://b:1\"\n[filter]\n{filter}\n"
        );
        let file: TaskSpec = toml::from_str(&text).map_err(|e| e.message().to_string())?;
        TaskConfig::build(file).map_err(|e| e.to_string())
    }

    #[test]
    fn filter_section_is_checked_when_loaded() {
        let cfg = with_filter(
            "allow_key_prefix = [\"user:\"]\nblock_key_regex = [\"^user:tmp\"]\ndb_map = { \"1\" = 5 }\nforward_publish = true",
        )
        .unwrap();
        let rules = cfg
            .writer
            .filter
            .as_ref()
            .expect("rules given to the writer");
        assert!(rules.key_passes(b"user:1") && !rules.key_passes(b"user:tmp1"));
        assert_eq!(cfg.writer.db_map.target(1), 5);
        assert!(cfg.forward_publish);
        // No rules: nothing for the writer to apply.
        let cfg = with_filter("forward_publish = false").unwrap();
        assert!(cfg.writer.filter.is_none() && !cfg.forward_publish);

        let e = with_filter("allow_key_prefixes = [\"a\"]").unwrap_err();
        assert!(e.contains("allow_key_prefixes"), "{e}");
        let e = with_filter("block_key_regex = [\"[a-\"]").unwrap_err();
        assert!(
            e.starts_with("filter.block_key_regex[0] \"[a-\" is not a valid regular expression:")
                && !e.contains('\n'),
            "{e}"
        );
        let e = with_filter("allow_db = [0]\nblock_db = [0]").unwrap_err();
        assert!(
            e.contains("filter.allow_db and filter.block_db both name 0"),
            "{e}"
        );
        let e = with_filter("allow_command_group = [\"strings\"]").unwrap_err();
        assert!(e.contains("filter.allow_command_group"), "{e}");
        let e = with_filter("db_map = { \"1\" = -2 }").unwrap_err();
        assert!(e.contains("filter.db_map"), "{e}");
        let e = with_filter("ttl_extend = -5").unwrap_err();
        assert!(
            e.contains("ttl_extend") || e.contains("invalid value"),
            "{e}"
        );
    }

    /// The documented [filter] example (docs/configuration.md) is a real one.
    #[test]
    fn the_readme_filter_example_builds() {
        let readme = include_str!("../../../docs/configuration.md");
        let block = readme
            .split("```toml\n")
            .map(|b| &b[..b.find("```").unwrap_or(0)])
            .find(|b| b.starts_with("[filter]"))
            .expect("a [filter] example in docs/configuration.md");
        let cfg = with_filter(block.trim_start_matches("[filter]\n")).unwrap();
        let rules = cfg.writer.filter.unwrap();
        assert!(rules.key_passes(b"order:1") && !rules.key_passes(b"order:1:tmp"));
        assert!(!rules.db_passes(15));
        assert_eq!(rules.ttl_extend_ms, 3_600_000);
    }

    #[test]
    fn refuses_syncing_a_server_onto_itself() {
        let mut file = TaskSpec::default();
        file.source.url = Some("redis://127.0.0.1:7000".into());
        file.target.url = Some("redis://127.0.0.1:7000".into());
        assert!(
            TaskConfig::build(file)
                .unwrap_err()
                .to_string()
                .contains("same server")
        );
    }

    #[test]
    fn validation_reads_no_file_and_building_reads_them_all() {
        let dir = tempfile::tempdir().unwrap();
        let missing = |name: &str| dir.path().join(name).display().to_string();
        let spec = TaskSpec::from_toml(&format!(
            r#"
[source]
url = "{}"
[target]
url = "rediss://127.0.0.1:7001"
[target.tls]
ca_file = "{}"
[transform]
script = "{}"
"#,
            missing("dump.rdb"),
            missing("ca.pem"),
            missing("t.lua")
        ))
        .unwrap();
        spec.validate().unwrap();
        let err = TaskConfig::build(spec.clone()).unwrap_err().to_string();
        assert!(err.contains("dump.rdb"), "{err}");

        // What validation alone still refuses.
        let mut bad = spec.clone();
        bad.target.url = Some("redis://127.0.0.1:7001".into());
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("TLS settings"), "{err}");
        let mut bad = spec;
        bad.advanced.max_in_flight = Some(0);
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("advanced.max_in_flight"), "{err}");
    }
}
