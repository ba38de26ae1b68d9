//! The `ferry` command line.

mod api;
mod cli_docs;
mod config_file;
mod cutover;
mod progress;
mod rdbtool;
mod task_cli;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, CommandFactory, Parser, Subcommand};
use ferry_engine::config::TaskConfig;
use ferry_engine::net::tls::{TlsSection, TlsVersion};
use ferry_engine::spec::{OnConflict, TaskSpec};
use ferry_engine::task::Task;
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "ferry",
    version,
    about = "Keep one Redis in one-way sync with another"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Log lines as plain text or as one JSON object each (any subcommand).
    #[arg(long, global = true, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
}

#[derive(Subcommand)]
enum Command {
    /// Copy the source's data into the target, then apply every later write until stopped.
    Sync(Box<SyncArgs>),
    /// Compare a target with its source, key by key, as the sync would have written it.
    ///
    /// Exit status: 0 when they are equal, 1 when differences remain after every round,
    /// 2 when verification itself failed.
    Verify(Box<VerifyArgs>),
    /// Check that a sync would work, before running it: every item of the precheck, as a table
    /// (item, pass/warn/fail, what was found, how to fix it). Takes sync's settings, less
    /// those that only matter while it runs.
    /// Exits 1 when an item fails.
    Check(Box<CheckArgs>),
    /// Read an RDB file offline: print its keys as JSON, or count and size them.
    Rdb(RdbArgs),
    /// Run many sync tasks behind a REST API (/api/v1, OpenAPI at /openapi.json), kept in
    /// DIR/ferry.db; the API token is in DIR/api-token.
    Serve(ServeArgs),
    /// Drive the tasks of a `ferry serve` through its API: list, create -c FILE, get,
    /// precheck, start, pause, resume, stop, delete, events, verify. Tables, or --json.
    Task(task_cli::TaskArgs),
    /// End a migration: run the task (stop its `ferry sync` first; it resumes from its
    /// checkpoint), optionally pause the source's writes, wait until the target applied the
    /// source's last write, verify, stop, and remove ferry's keys. Exit 0 only when all held,
    /// 1 when the target differs, 2 when a step could not be taken.
    Cutover(Box<cutover::CutoverArgs>),
    /// Remove a stopped task's own keys (checkpoints, fences, lease, held-TTL lists) from its
    /// targets and its heartbeat from the source. Takes the same settings as sync.
    Cleanup(Box<cutover::CleanupArgs>),
    /// Config files: `ferry config convert FILE` prints a RedisShake config (shake.toml,
    /// redis-shake.conf) as a ferry config, with a comment on every setting.
    Config(config_file::ConfigArgs),
    /// Print a shell completion script, e.g. `ferry completions bash > /etc/bash_completion.d/ferry`.
    Completions(cli_docs::CompletionsArgs),
    /// Print the man page of ferry (roff), or write one page per subcommand with --dir.
    Man(cli_docs::ManArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Address to serve the API on; to expose it beyond loopback, put a TLS proxy in front.
    #[arg(long, default_value = "127.0.0.1:8480")]
    listen: std::net::SocketAddr,
    /// Where the task store, the API token and the tasks' local files (spools) live.
    #[arg(long, default_value = "ferry-server")]
    data: PathBuf,
}

#[derive(Args)]
struct RdbArgs {
    #[command(subcommand)]
    command: RdbCommand,
}

#[derive(Subcommand)]
enum RdbCommand {
    /// Print every key as one JSON object per line (JSON Lines)
    ///
    /// Each line: {"db":0,"key":..,"type":"hash","encoding":"listpack","expire_ms":..,"value":..}
    /// with expire_ms an absolute unix time in ms or null, then "idle" (LRU seconds) and
    /// "freq" (LFU counter) when the file has them.
    ///
    /// Byte strings (keys, values, members, fields) are lossless: valid UTF-8 prints as a
    /// JSON string, anything else as {"base64":"..."} (standard alphabet, padded).
    ///
    /// Values by type:
    ///   string  the string
    ///   list    [item, ...]                  set  [member, ...]   (file order)
    ///   zset    [[member, score], ...]       score a number, or "inf" / "-inf"
    ///   hash    [[field, value], ...]        [field, value, expire_ms] for a field TTL
    ///   stream  {"entries":[[id,[[field,value],...]],...],"meta":{...},
    ///            "groups":[{"name","last_id","entries_read","consumers":[...],"pending":[...]}]}
    ///   module  {"module":name,"encver":n,"raw_base64":...} (the value's bytes as in the file)
    ///
    /// Function libraries print as {"function":code} and module aux data as
    /// {"module_aux":name,"encver":n,"raw_base64":...}, unless a filter or --no-values is
    /// given. Big values are printed as they are read, so memory stays bounded.
    #[command(verbatim_doc_comment)]
    Inspect(RdbInspectArgs),
    /// Count keys and bytes per db, type and encoding, and list the biggest keys
    ///
    /// A key's bytes are what its entry takes in the file: expiry/LRU/LFU opcodes, type
    /// byte, key name and serialized value. Element counts (list items, set/zset members,
    /// hash fields, stream entries) are given for the biggest keys.
    ///
    /// Prints tables, or with --json one JSON object: file, rdb_version, file_bytes, keys,
    /// expiring_keys, key_bytes, functions, module_aux, aux, and arrays "dbs", "types",
    /// "encodings" (keys, expiring, bytes each) and "biggest" (db, key, type, encoding,
    /// bytes, elements, expire_ms), keys by the same lossless rule as inspect.
    #[command(verbatim_doc_comment)]
    Stats(RdbStatsArgs),
}

#[derive(Args)]
struct RdbInput {
    /// The RDB file.
    file: PathBuf,
    /// Only keys in this db (repeat for several).
    #[arg(long = "db", value_name = "N")]
    dbs: Vec<u64>,
    /// Only keys starting with this prefix (repeat for several).
    #[arg(long = "key-prefix", value_name = "PREFIX")]
    key_prefixes: Vec<std::ffi::OsString>,
    /// Values serialized larger than this are read in chunks [default: 1 MiB]
    #[arg(long, value_name = "BYTES", hide = true)]
    big_value_bytes: Option<usize>,
    /// Collections with more elements than this are read in chunks [default: 10000]
    #[arg(long, value_name = "N", hide = true)]
    big_value_elements: Option<u64>,
    /// Approximate bytes per chunk, and per part of a big string [default: 256 KiB]
    #[arg(long, value_name = "BYTES", hide = true)]
    chunk_bytes: Option<usize>,
}

impl RdbInput {
    fn split(self) -> (PathBuf, crate::rdbtool::Filter, crate::rdbtool::Limits) {
        let filter = crate::rdbtool::Filter {
            dbs: self.dbs,
            key_prefixes: self
                .key_prefixes
                .into_iter()
                .map(|p| p.into_encoded_bytes())
                .collect(),
        };
        let limits = crate::rdbtool::Limits {
            big_value_bytes: self.big_value_bytes,
            big_value_elements: self.big_value_elements,
            chunk_bytes: self.chunk_bytes,
        };
        (self.file, filter, limits)
    }
}

#[derive(Args)]
struct RdbInspectArgs {
    #[command(flatten)]
    input: RdbInput,
    /// Print metadata only, without "value".
    #[arg(long)]
    no_values: bool,
}

#[derive(Args)]
struct RdbStatsArgs {
    #[command(flatten)]
    input: RdbInput,
    /// How many of the biggest keys to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    top: usize,
    /// Print one JSON object instead of tables.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Print one JSON array of {"item","result","found","fix"} instead of a table.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    task: TaskArgs,
}

/// Everything `sync` takes: what its check reads too, then what matters only while it runs.
#[derive(Args)]
pub struct SyncArgs {
    #[command(flatten)]
    task: TaskArgs,
    #[command(flatten)]
    run: RunArgs,
}

/// The settings `check` reads: the servers, how the task starts, and what it syncs.
#[derive(Args)]
pub struct TaskArgs {
    /// Source: redis://[user:password@]host:port (any node of a cluster), rediss:// for TLS,
    /// redis+sentinel://[user:password@]host:port[,host:port...]/master-name
    /// (rediss+sentinel:// for TLS), or the path of an RDB file to load. No db number in the
    /// URL: every db is synced; pick dbs with --allow-db and --db-map. No unix sockets.
    #[arg(long, value_name = "URL|FILE")]
    source: Option<String>,
    /// Target server, in the same URL forms as --source (not a file); repeat to feed several
    /// targets from one replication stream.
    #[arg(long, value_name = "URL")]
    target: Vec<String>,
    /// Read settings from this TOML file (or a RedisShake config: shake.toml, redis-shake.conf);
    /// flags given here override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// How the source is read: psync (as a replica: every write once, in order), scan (SCAN +
    /// DUMP, then keyspace notifications, for servers that refuse replication: converges, see
    /// docs/guarantees.md) or auto (psync where allowed, else scan) [default: psync]
    #[arg(long, value_name = "psync|scan|auto", value_parser = ["psync", "scan", "auto"])]
    source_mode: Option<String>,
    /// How the target is written: commands (as a client, with a checkpoint key) or replica
    /// (the target replicates from ferry, which relays the source's snapshot and stream
    /// unchanged: a self-hosted standalone target, no filters; see docs/replica-mode.md)
    /// [default: commands]
    #[arg(long, value_name = "commands|replica", value_parser = ["commands", "replica"])]
    target_mode: Option<String>,
    /// Stop once the full copy is on the target (exit 0) instead of following writes.
    #[arg(long)]
    full_only: bool,
    /// The task's name: its checkpoint in the target is __ferry:checkpoint:<NAME>
    /// [default: the source's host:port]
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// When the target holds a copy the source can no longer continue: stop, or flush (empty
    /// the target, copy again) [default: stop]
    #[arg(long, value_name = "stop|flush", value_parser = ["stop", "flush"])]
    full_resync: Option<String>,
    /// A new task whose target already holds keys: fail (say what it holds), overwrite
    /// (replace keys of the same name, keep the rest) or flush (empty the synced dbs first;
    /// needs --yes-flush-target) [default: fail]
    #[arg(long, value_name = "fail|overwrite|flush", value_parser = ["fail", "overwrite", "flush"])]
    on_conflict: Option<String>,
    /// Confirms --on-conflict flush, which deletes the target's data.
    #[arg(long)]
    yes_flush_target: bool,
    /// Write nothing to the source: no heartbeat key, so no latency figures.
    #[arg(long)]
    no_heartbeat: bool,
    #[command(flatten)]
    login: LoginArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

/// What matters only while a sync runs (`check` takes none of these).
#[derive(Args, Default)]
#[command(next_help_heading = "While the sync runs")]
struct RunArgs {
    /// Serve GET /status as JSON on this address, e.g. 127.0.0.1:8080.
    #[arg(long, value_name = "HOST:PORT")]
    status_addr: Option<String>,
    /// Collections with more elements than this are written as chunked native commands.
    #[arg(long, value_name = "N")]
    big_value_elements: Option<u64>,
    /// Values serialized larger than this many bytes are written as chunked native commands.
    #[arg(long, value_name = "BYTES")]
    big_value_bytes: Option<usize>,
    /// Where ferry keeps its local files, the spool among them [default: ./ferry-data]
    #[arg(long, value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Most disk space the spool of the command stream takes, in MiB; 0: none [default: 1024]
    #[arg(long, value_name = "MIB")]
    spool_size_mb: Option<u64>,
    /// A Lua script that each key and command passes through: it defines transform(entry).
    #[arg(long, value_name = "FILE")]
    transform: Option<PathBuf>,
    /// Do not log the precheck's warnings (its failures still stop the sync).
    #[arg(long)]
    ignore_warnings: bool,
    /// Snapshot keys written to the target per second, at most.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Limits (per second; unlimited unless given)"
    )]
    full_keys_per_sec: Option<f64>,
    /// Megabytes (1,000,000 bytes) written per second while copying the snapshot, at most.
    #[arg(
        long,
        value_name = "MB",
        help_heading = "Limits (per second; unlimited unless given)"
    )]
    full_mb_per_sec: Option<f64>,
    /// Stream commands written to the target per second, at most.
    #[arg(
        long,
        value_name = "N",
        help_heading = "Limits (per second; unlimited unless given)"
    )]
    incremental_ops_per_sec: Option<f64>,
    /// Megabytes written per second while following the stream, at most.
    #[arg(
        long,
        value_name = "MB",
        help_heading = "Limits (per second; unlimited unless given)"
    )]
    incremental_mb_per_sec: Option<f64>,
}

#[derive(Args)]
struct VerifyArgs {
    /// Source server: redis://[user:password@]host:port (any node of a cluster)
    #[arg(long)]
    source: Option<String>,
    /// Target server: redis://[user:password@]host:port; repeat to verify several targets
    #[arg(long)]
    target: Vec<String>,
    /// The sync's TOML config file: its servers, TLS, [filter] and [transform] are used;
    /// flags given here override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Rounds in all: the first compares every key, each later one only the keys that still
    /// differ (writes in flight during a live sync settle in between).
    #[arg(long, value_name = "N", default_value_t = ferry_engine::verify::DEFAULT_ROUNDS)]
    rounds: u32,
    /// Pause before each later round, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    interval_ms: u64,
    /// Keys read per second at most, on each side [default: no limit]
    #[arg(long, value_name = "N")]
    keys_per_sec: Option<f64>,
    /// Largest gap between the source's and the target's expiry that still counts as equal, in ms.
    #[arg(long, value_name = "MS", default_value_t = ferry_engine::verify::DEFAULT_TTL_TOLERANCE_MS)]
    ttl_tolerance_ms: i64,
    /// Keys per SCAN call and per pipelined batch of reads.
    #[arg(long, value_name = "N", default_value_t = ferry_engine::verify::DEFAULT_BATCH)]
    batch: usize,
    /// Stop once this many differences are found (they are held in memory).
    #[arg(long, value_name = "N", default_value_t = ferry_engine::verify::DEFAULT_MAX_DIFFERENCES)]
    max_differences: usize,
    /// Write each remaining difference to FILE as one JSON object per line.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Rewrite the target's differing keys from the source (DUMP + RESTORE, DEL for extra
    /// keys), then compare them once more.
    #[arg(long)]
    repair: bool,
    /// The sync's Lua transform script: keys are compared with what it makes of them.
    #[arg(long, value_name = "FILE")]
    transform: Option<PathBuf>,
    #[command(flatten)]
    login: LoginArgs,
    #[command(flatten)]
    tls: TlsArgs,
    #[command(flatten)]
    filter: FilterArgs,
}

/// How each side logs in without a password on the command line, where `ps` and the shell's
/// history would show it. Each flag overrides the file's setting of the same name.
#[derive(Args)]
#[command(next_help_heading = "Login (a password in a URL shows in ps; these keep it out)")]
struct LoginArgs {
    /// User to log in to the source as (ACL user), when its URL names none.
    #[arg(long, value_name = "USER")]
    source_user: Option<String>,
    /// File holding the source's password (a trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    source_password_file: Option<PathBuf>,
    /// Environment variable holding the source's password.
    #[arg(long, value_name = "VAR")]
    source_password_env: Option<String>,
    /// User to log in to every target as, when its URL names none.
    #[arg(long, value_name = "USER")]
    target_user: Option<String>,
    /// File holding the targets' password (a trailing newline is dropped).
    #[arg(long, value_name = "FILE")]
    target_password_file: Option<PathBuf>,
    /// Environment variable holding the targets' password. When a side is given no password
    /// at all, REDISCLI_AUTH is used if it is set, as redis-cli does.
    #[arg(long, value_name = "VAR")]
    target_password_env: Option<String>,
}

/// redis-cli's variable for the password: used for any side given none.
const REDISCLI_AUTH: &str = "REDISCLI_AUTH";

impl LoginArgs {
    fn apply(self, file: &mut TaskSpec) {
        let set = |section: &mut ferry_engine::spec::ServerSection,
                   user: &Option<String>,
                   password_file: &Option<PathBuf>,
                   password_env: &Option<String>| {
            // A password flag replaces the file's password settings, so the two cannot clash.
            if password_file.is_some() || password_env.is_some() {
                section.password_file = password_file.clone();
                section.password_env = password_env.clone();
            }
            if user.is_some() {
                section.user = user.clone();
            }
        };
        set(
            &mut file.source,
            &self.source_user,
            &self.source_password_file,
            &self.source_password_env,
        );
        for section in std::iter::once(&mut file.target).chain(file.more_targets.iter_mut()) {
            set(
                section,
                &self.target_user,
                &self.target_password_file,
                &self.target_password_env,
            );
        }
        // REDISCLI_AUTH only where nothing else gives a password, and only for servers (a
        // source that is an RDB file takes none).
        if std::env::var_os(REDISCLI_AUTH).is_none() {
            return;
        }
        for section in std::iter::once(&mut file.source)
            .chain(std::iter::once(&mut file.target))
            .chain(file.more_targets.iter_mut())
        {
            let server = section
                .url
                .as_ref()
                .is_some_and(|u| u.shown().contains("://"));
            let none = section.url.as_ref().is_some_and(|u| u.password().is_none())
                && section.password_file.is_none()
                && section.password_env.is_none();
            if server && none {
                section.password_env = Some(REDISCLI_AUTH.to_string());
            }
        }
    }
}

/// The TLS flags of both sides; each overrides the file's setting of the same name.
#[derive(Args)]
#[command(next_help_heading = "TLS (rediss:// URLs)")]
struct TlsArgs {
    /// PEM file of the CA that signs the source's certificate [default: public CAs]
    #[arg(long, value_name = "FILE")]
    source_tls_ca: Option<PathBuf>,
    /// PEM file of ferry's client certificate for the source (mutual TLS; needs --source-tls-key).
    #[arg(long, value_name = "FILE")]
    source_tls_cert: Option<PathBuf>,
    /// PEM file of the private key of --source-tls-cert.
    #[arg(long, value_name = "FILE")]
    source_tls_key: Option<PathBuf>,
    /// Name the source's certificate must carry [default: the host in its URL]
    #[arg(long, value_name = "NAME")]
    source_tls_server_name: Option<String>,
    /// Lowest TLS version offered to the source: 1.2 or 1.3 [default: 1.2]
    #[arg(long, value_name = "1.2|1.3")]
    source_tls_min_version: Option<TlsVersion>,
    /// PEM file of the CA that signs the target's certificate [default: public CAs]
    #[arg(long, value_name = "FILE")]
    target_tls_ca: Option<PathBuf>,
    /// PEM file of ferry's client certificate for the target (mutual TLS; needs --target-tls-key).
    #[arg(long, value_name = "FILE")]
    target_tls_cert: Option<PathBuf>,
    /// PEM file of the private key of --target-tls-cert.
    #[arg(long, value_name = "FILE")]
    target_tls_key: Option<PathBuf>,
    /// Name the target's certificate must carry [default: the host in its URL]
    #[arg(long, value_name = "NAME")]
    target_tls_server_name: Option<String>,
    /// Lowest TLS version offered to the target: 1.2 or 1.3 [default: 1.2]
    #[arg(long, value_name = "1.2|1.3")]
    target_tls_min_version: Option<TlsVersion>,
}

/// The `--source` and `--target` flags over the file's servers. Target flags name every target:
/// they replace the file's further ones, keeping their TLS.
fn set_servers(file: &mut TaskSpec, source: Option<String>, targets: Vec<String>) {
    if source.is_some() {
        file.source.url = source.map(Into::into);
    }
    let mut targets = targets.into_iter();
    if let Some(first) = targets.next() {
        file.target.url = Some(first.into());
        let more: Vec<String> = targets.collect();
        file.more_targets.resize_with(more.len(), Default::default);
        for (section, url) in file.more_targets.iter_mut().zip(more) {
            section.url = Some(url.into());
        }
    }
}

impl TlsArgs {
    fn apply(self, file: &mut TaskSpec) {
        override_tls(
            &mut file.source.tls,
            self.source_tls_ca,
            self.source_tls_cert,
            self.source_tls_key,
            self.source_tls_server_name,
            self.source_tls_min_version,
        );
        for tls in std::iter::once(&mut file.target.tls)
            .chain(file.more_targets.iter_mut().map(|t| &mut t.tls))
        {
            override_tls(
                tls,
                self.target_tls_ca.clone(),
                self.target_tls_cert.clone(),
                self.target_tls_key.clone(),
                self.target_tls_server_name.clone(),
                self.target_tls_min_version,
            );
        }
    }
}

/// The common `[filter]` settings as flags; each replaces the file's list of the same name.
#[derive(Args)]
#[command(next_help_heading = "Filters (more in the config file's [filter])")]
struct FilterArgs {
    /// Sync only keys starting with PREFIX (repeat for several).
    #[arg(long, value_name = "PREFIX")]
    allow_key_prefix: Vec<String>,
    /// Leave out keys starting with PREFIX (repeat for several).
    #[arg(long, value_name = "PREFIX")]
    block_key_prefix: Vec<String>,
    /// Sync only keys in which this regular expression finds a match (repeat for several).
    #[arg(long, value_name = "REGEX")]
    allow_key_regex: Vec<String>,
    /// Leave out keys in which this regular expression finds a match (repeat for several).
    #[arg(long, value_name = "REGEX")]
    block_key_regex: Vec<String>,
    /// Sync only this source db (repeat for several).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    allow_db: Vec<i64>,
    /// Leave out this source db (repeat for several).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    block_db: Vec<i64>,
    /// Write source db S into target db T, e.g. 1=5 (repeat for several).
    #[arg(long, value_name = "S=T")]
    db_map: Vec<String>,
    /// Sync only keys of this type: string, list, hash, set, zset, stream, module (repeat).
    #[arg(long, value_name = "TYPE")]
    allow_type: Vec<String>,
    /// Leave out keys of this type (repeat for several).
    #[arg(long, value_name = "TYPE")]
    block_type: Vec<String>,
    /// Leave out this command from the stream, e.g. FLUSHALL (repeat for several).
    #[arg(long, value_name = "NAME")]
    block_command: Vec<String>,
    /// Add this many seconds to every expiry written to the target.
    #[arg(long, value_name = "SECONDS")]
    ttl_extend: Option<u64>,
    /// Copy PUBLISH and SPUBLISH from the source's stream to the target.
    #[arg(long)]
    forward_publish: bool,
}

impl FilterArgs {
    fn apply(self, filter: &mut ferry_engine::spec::FilterSection) -> ferry_engine::Result<()> {
        let replace = |list: &mut Vec<String>, flag: Vec<String>| {
            if !flag.is_empty() {
                *list = flag;
            }
        };
        replace(&mut filter.allow_key_prefix, self.allow_key_prefix);
        replace(&mut filter.block_key_prefix, self.block_key_prefix);
        replace(&mut filter.allow_key_regex, self.allow_key_regex);
        replace(&mut filter.block_key_regex, self.block_key_regex);
        replace(&mut filter.allow_type, self.allow_type);
        replace(&mut filter.block_type, self.block_type);
        replace(&mut filter.block_command, self.block_command);
        if !self.allow_db.is_empty() {
            filter.allow_db = self.allow_db;
        }
        if !self.block_db.is_empty() {
            filter.block_db = self.block_db;
        }
        if !self.db_map.is_empty() {
            filter.db_map.clear();
            for pair in self.db_map {
                let parsed = pair
                    .split_once('=')
                    .and_then(|(s, t)| Some((s.trim().to_string(), t.trim().parse().ok()?)));
                let Some((source, target)) = parsed else {
                    return Err(ferry_engine::Error::Config(format!(
                        "--db-map {pair:?} is not SOURCE=TARGET, e.g. --db-map 1=5"
                    )));
                };
                filter.db_map.insert(source, target);
            }
        }
        if self.ttl_extend.is_some() {
            filter.ttl_extend = self.ttl_extend;
        }
        if self.forward_publish {
            filter.forward_publish = Some(true);
        }
        Ok(())
    }
}

/// Flags override the file's settings one by one.
fn override_tls(
    section: &mut Option<TlsSection>,
    ca: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    server_name: Option<String>,
    min_version: Option<TlsVersion>,
) {
    let mut tls = section.take().unwrap_or_default();
    tls.ca_file = ca.or(tls.ca_file);
    tls.cert_file = cert.or(tls.cert_file);
    tls.key_file = key.or(tls.key_file);
    tls.server_name = server_name.or(tls.server_name);
    tls.min_version = min_version.or(tls.min_version);
    *section = (!tls.is_empty()).then_some(tls);
}

/// Config keys a library message may name, with the flag that sets each on the command line.
const FLAGS: &[(&str, &str)] = &[
    ("[source] url", "--source"),
    ("[source] user", "--source-user"),
    ("[source] password_file", "--source-password-file"),
    ("[source] password_env", "--source-password-env"),
    ("[target] user", "--target-user"),
    ("[target] password_file", "--target-password-file"),
    ("[target] password_env", "--target-password-env"),
    ("[target] url", "--target"),
    ("on_conflict", "--on-conflict"),
    ("confirm_flush", "--yes-flush-target"),
    ("full_resync", "--full-resync"),
    ("[transform] script", "--transform"),
    ("[sync] heartbeat", "--no-heartbeat"),
    ("[sync] name", "--name"),
    ("[sync] data_dir", "--data-dir"),
    ("[spool] size_mb", "--spool-size-mb"),
    ("[source.tls] server_name", "--source-tls-server-name"),
    ("[target.tls] server_name", "--target-tls-server-name"),
    ("advanced.big_value_bytes", "--big-value-bytes"),
    ("advanced.big_value_elements", "--big-value-elements"),
];

/// A library message with the command-line flags for the settings it names added, e.g.
/// "... set [sync] full_resync = \"flush\" (command line: --full-resync)".
fn with_flags(message: String) -> String {
    let flags: Vec<&str> = FLAGS
        .iter()
        .filter(|(key, flag)| message.contains(key) && !message.contains(flag))
        .map(|(_, flag)| *flag)
        .collect();
    match flags.is_empty() {
        true => message,
        false => format!("{message} (command line: {})", flags.join(", ")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let logs = tracing_subscriber::fmt()
        // Above the progress bar when one is drawn.
        .with_writer(|| progress::LogWriter)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("FERRY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        // Colour codes only for a person at a terminal, never into a file or a journal.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match cli.log_format.as_str() {
        "json" => logs.json().init(),
        _ => logs.init(),
    }
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::Sync(args) => sync(*args),
        Command::Check(args) => return check(*args),
        Command::Rdb(args) => return rdb(args),
        Command::Verify(args) => return verify(*args),
        Command::Task(args) => return task_cli::run(args),
        Command::Cutover(args) => return cutover::run_cutover(*args),
        Command::Cleanup(args) => return cutover::run_cleanup(*args),
        Command::Config(args) => return config_file::run(args),
        Command::Completions(args) => return cli_docs::completions(args, Cli::command()),
        Command::Man(args) => return cli_docs::man(args, Cli::command()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {}", with_flags(e.to_string()));
            ExitCode::FAILURE
        }
    }
}

fn serve(args: ServeArgs) -> ferry_engine::Result<()> {
    let opts = ferry_server::Options {
        listen: args.listen,
        data_dir: args.data,
    };
    runtime()?.block_on(async move {
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        ferry_server::serve(opts, stop)
            .await
            .map_err(|e| ferry_engine::Error::Config(e.to_string()))
    })
}

fn rdb(args: RdbArgs) -> ExitCode {
    use crate::rdbtool::{inspect, stats, to_stdout};
    let result = match args.command {
        RdbCommand::Inspect(a) => {
            let (file, filter, limits) = a.input.split();
            let opts = inspect::InspectOptions {
                file,
                filter,
                values: !a.no_values,
                limits,
            };
            to_stdout(|out| inspect::run(&opts, out).map(drop))
        }
        RdbCommand::Stats(a) => {
            let (file, filter, limits) = a.input.split();
            let opts = stats::StatsOptions {
                file,
                filter,
                top: a.top,
                limits,
            };
            to_stdout(|out| {
                let report = stats::collect(&opts)?;
                if a.json {
                    report.write_json(out)?;
                } else {
                    report.write_table(out)?;
                }
                Ok(())
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e}");
            ExitCode::FAILURE
        }
    }
}

fn check(args: CheckArgs) -> ExitCode {
    let sync = SyncArgs {
        task: args.task,
        run: RunArgs::default(),
    };
    let report = task_config(sync).and_then(|(config, _, _)| {
        runtime()?.block_on(ferry_engine::check::run(
            &config,
            ferry_engine::check::Mode::Check,
        ))
    });
    let mut report = match report {
        Ok(report) => report,
        Err(e) => {
            eprintln!("ferry: {}", with_flags(e.to_string()));
            return ExitCode::FAILURE;
        }
    };
    // The same words as `sync` prints for the same case.
    report.reword(with_flags);
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        report.write_json(&mut out)
    } else {
        report.write_table(&mut out)
    };
    if let Err(e) = written {
        eprintln!("ferry: cannot write the report: {e}");
        return ExitCode::FAILURE;
    }
    if report.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn runtime() -> ferry_engine::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| ferry_engine::Error::Config(format!("cannot start the async runtime: {e}")))
}

fn sync(args: SyncArgs) -> ferry_engine::Result<()> {
    let (config, live_verify, status_addr) = task_config(args)?;
    runtime()?.block_on(async move {
        let task = Task::start(config, live_verify)?;
        let status = task.live_status().clone();
        let ui_cancel = CancellationToken::new();
        let api = match status_addr {
            Some(addr) => Some(crate::api::serve(addr, status.clone(), ui_cancel.clone()).await?),
            None => None,
        };
        let ui = crate::progress::spawn(status, ui_cancel.clone());
        let stop = CancellationToken::new();
        tokio::spawn(stop_on_signal(stop.clone()));
        tokio::select! {
            () = stop.cancelled() => task.stop(),
            () = task.ended() => {}
        }
        let result = task.join().await;
        ui_cancel.cancel();
        let _ = ui.await;
        if let Some(api) = api {
            let _ = api.await;
        }
        result
    })
}

/// The settings of a sync (or of its check): the config file, then the flags over it.
/// With them, the continuous verification's settings when `[verify] continuous` is on, and
/// where to serve `GET /status`.
fn task_config(
    args: SyncArgs,
) -> ferry_engine::Result<(
    TaskConfig,
    Option<ferry_engine::spec::LiveVerify>,
    Option<std::net::SocketAddr>,
)> {
    let SyncArgs { task: args, run } = args;
    let mut file = match &args.config {
        Some(path) => config_file::load(path)?,
        None => TaskSpec::default(),
    };
    set_servers(&mut file, args.source, args.target);
    file.source.mode = match args.source_mode.as_deref() {
        Some("scan") => Some(ferry_engine::spec::Mode::Scan),
        Some("auto") => Some(ferry_engine::spec::Mode::Auto),
        Some(_) => Some(ferry_engine::spec::Mode::Psync),
        None => file.source.mode,
    };
    file.target.mode = match args.target_mode.as_deref() {
        Some("replica") => Some(ferry_engine::spec::Mode::Replica),
        Some(_) => Some(ferry_engine::spec::Mode::Commands),
        None => file.target.mode,
    };
    if args.full_only {
        file.sync.full_only = Some(true);
    }
    if args.no_heartbeat {
        file.sync.heartbeat = Some(false);
    }
    if run.status_addr.is_some() {
        file.status.addr = run.status_addr;
    }
    if run.big_value_elements.is_some() {
        file.advanced.big_value_elements = run.big_value_elements;
    }
    if run.big_value_bytes.is_some() {
        file.advanced.big_value_bytes = run.big_value_bytes;
    }
    if args.name.is_some() {
        file.sync.name = args.name;
    }
    if run.data_dir.is_some() {
        file.sync.data_dir = run.data_dir;
    }
    if run.spool_size_mb.is_some() {
        file.spool.size_mb = run.spool_size_mb;
    }
    if run.transform.is_some() {
        file.transform.script = run.transform;
    }
    match args.full_resync.as_deref() {
        Some("flush") => file.sync.full_resync = Some(ferry_engine::spec::FullResync::Flush),
        Some(_) => file.sync.full_resync = Some(ferry_engine::spec::FullResync::Stop),
        None => {}
    }
    file.sync.on_conflict = match args.on_conflict.as_deref() {
        Some("overwrite") => Some(OnConflict::Overwrite),
        Some("flush") => Some(OnConflict::Flush),
        Some(_) => Some(OnConflict::Fail),
        None => file.sync.on_conflict,
    };
    if args.yes_flush_target {
        file.sync.confirm_flush = Some(true);
    }
    let limit = &mut file.limit;
    limit.full_keys_per_sec = run.full_keys_per_sec.or(limit.full_keys_per_sec);
    limit.full_mb_per_sec = run.full_mb_per_sec.or(limit.full_mb_per_sec);
    limit.incremental_ops_per_sec = run
        .incremental_ops_per_sec
        .or(limit.incremental_ops_per_sec);
    limit.incremental_mb_per_sec = run.incremental_mb_per_sec.or(limit.incremental_mb_per_sec);
    args.login.apply(&mut file);
    args.tls.apply(&mut file);
    args.filter.apply(&mut file.filter)?;
    let live_verify = file.verify.live()?;
    let status_addr = match &file.status.addr {
        None => None,
        Some(a) => Some(a.parse().map_err(|_| {
            ferry_engine::Error::Config(format!(
                "status address {a:?} is not HOST:PORT with a numeric IP, e.g. 127.0.0.1:8080"
            ))
        })?),
    };
    let mut config = TaskConfig::build(file)?;
    config.check.ignore_warnings = run.ignore_warnings;
    Ok((config, live_verify, status_addr))
}

/// `ferry verify`: exit 0 when equal, 1 when differences remain, 2 when it could not tell.
fn verify(args: VerifyArgs) -> ExitCode {
    match run_verify(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("ferry: {}", with_flags(e.to_string()));
            ExitCode::from(2)
        }
    }
}

/// Whether every target equals the source.
fn run_verify(args: VerifyArgs) -> ferry_engine::Result<bool> {
    let mut file = match &args.config {
        Some(path) => config_file::load(path)?,
        None => TaskSpec::default(),
    };
    set_servers(&mut file, args.source, args.target);
    if args.transform.is_some() {
        file.transform.script = args.transform;
    }
    args.login.apply(&mut file);
    args.tls.apply(&mut file);
    args.filter.apply(&mut file.filter)?;
    // Verify writes nothing unless told to repair: the sync's conflict settings do not apply.
    file.sync.on_conflict = None;
    file.sync.confirm_flush = None;
    let config = TaskConfig::build(file)?;
    let mut opts = ferry_engine::verify::Options::from_task(&config)?;
    let positive = |name: &str, ok: bool| match ok {
        true => Ok(()),
        false => Err(ferry_engine::Error::Config(format!(
            "--{name} must be greater than 0"
        ))),
    };
    positive("rounds", args.rounds > 0)?;
    positive("batch", args.batch > 0)?;
    positive("max-differences", args.max_differences > 0)?;
    positive(
        "keys-per-sec",
        args.keys_per_sec.is_none_or(|r| r.is_finite() && r > 0.0),
    )?;
    if args.ttl_tolerance_ms < 0 {
        return Err(ferry_engine::Error::Config(
            "--ttl-tolerance-ms must be 0 or more".into(),
        ));
    }
    opts.rounds = args.rounds;
    opts.interval = std::time::Duration::from_millis(args.interval_ms);
    opts.keys_per_sec = args.keys_per_sec;
    opts.limits.ttl_tolerance_ms = args.ttl_tolerance_ms;
    opts.batch = args.batch;
    opts.max_differences = args.max_differences;
    opts.repair = args.repair;
    // Created before the work starts, so a path that cannot be written fails at once.
    let mut out = match &args.out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| {
                ferry_engine::Error::Config(format!("cannot write --out {}: {e}", path.display()))
            })?,
        )),
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ferry_engine::Error::Config(format!("cannot start the async runtime: {e}")))?;
    let summaries = runtime.block_on(ferry_engine::verify::run(&opts))?;
    let mut stdout = std::io::stdout().lock();
    for s in &summaries {
        s.print(&mut stdout)
            .and_then(|()| match args.out {
                // Without a file for them, the keys themselves are the useful part.
                None => s.print_first(&mut stdout, 10),
                Some(_) => Ok(()),
            })
            .map_err(|e| ferry_engine::Error::Config(format!("cannot write to stdout: {e}")))?;
    }
    if let (Some(out), Some(path)) = (&mut out, &args.out) {
        ferry_engine::verify::write_lines(out, &summaries).map_err(|e| {
            ferry_engine::Error::Config(format!("cannot write --out {}: {e}", path.display()))
        })?;
    }
    Ok(summaries.iter().all(|s| s.differences.is_empty()))
}

/// Ctrl-C or SIGTERM: stop reading the source; the writer finishes what is in flight.
async fn stop_on_signal(cancel: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    cancel.cancel();
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("stopping: finishing the writes in flight");
    cancel.cancel();
}
