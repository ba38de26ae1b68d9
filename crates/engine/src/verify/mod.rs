//! `ferry verify`: proves a target holds what the source holds, as the sync would have
//! written it. Both directions are walked (source keys missing on the target, target keys
//! from no source key), and each key's type, value and expiry are compared, through the
//! same db map, filters and transform as the sync. Keys that differ are compared again after
//! a pause, so writes in flight during a live sync do not count.
//!
//! - `side`: the connections to one side (standalone or cluster), pipelined reads;
//! - `image`: where the sync puts each source key (script, filter, db map, ttl_extend);
//! - `compare`: a batch of keys compared by type, expiry and digest;
//! - `value`: the first differing field, member, element or byte of two values, read in pages;
//! - `repair`: rewriting differing keys from the source;
//! - `live`: continuous checks of recently written keys while a sync runs;
//! - `pace`: the keys-per-second limit;
//! - `report`: differences, their JSON lines and the summary.

mod compare;
mod image;
pub mod live;
mod pace;
mod repair;
pub mod report;
mod side;
mod value;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use compare::Limits;
use compare::{Compared, Images};
use image::Mapper;
use pace::Pace;
pub use report::{Difference, Kind, Subject, Summary};
use side::Side;

use crate::config::{Source, TaskConfig};
use crate::error::{Error, Result, Role};
use crate::net::endpoint::Endpoint;
use crate::pipeline::script::Script;
use crate::pipeline::transform::{DbMap, Rules};

/// What to verify and how.
#[derive(Clone, Debug)]
pub struct Options {
    pub source: Endpoint,
    pub targets: Vec<Endpoint>,
    pub rules: Option<Arc<Rules>>,
    pub db_map: DbMap,
    pub script: Option<Arc<Script>>,
    pub limits: Limits,
    /// Rounds in all: the first compares every key, each later one the keys still differing.
    pub rounds: u32,
    /// Pause before each later round.
    pub interval: Duration,
    pub keys_per_sec: Option<f64>,
    /// Keys per SCAN call and per pipelined batch.
    pub batch: usize,
    /// Stop walking once this many differences are held (memory stays bounded).
    pub max_differences: usize,
    pub repair: bool,
}

pub const DEFAULT_TTL_TOLERANCE_MS: i64 = 1000;
pub const DEFAULT_ROUNDS: u32 = 3;
pub const DEFAULT_INTERVAL: Duration = Duration::from_millis(1000);
pub const DEFAULT_BATCH: usize = 500;
pub const DEFAULT_CHUNK: usize = 1000;
pub const DEFAULT_MAX_DIFFERENCES: usize = 100_000;
const PROGRESS_EVERY: Duration = Duration::from_secs(10);

impl Options {
    /// The sync's source, targets and transforms from its checked config; verify's own
    /// settings at their defaults.
    pub fn from_task(config: &TaskConfig) -> Result<Options> {
        let Source::Redis(source) = &config.source else {
            return Err(Error::Config(format!(
                "verify needs a live source server, not the file {}: load it into a server first, or set [source] url to redis://host:port",
                config.source
            )));
        };
        let mut targets = vec![config.target.clone()];
        targets.extend(config.more_targets.iter().cloned());
        Ok(Options {
            source: source.clone(),
            targets,
            rules: config.writer.filter.clone(),
            db_map: config.writer.db_map.clone(),
            script: config.writer.transform.clone(),
            limits: Limits {
                ttl_tolerance_ms: DEFAULT_TTL_TOLERANCE_MS,
                chunk: DEFAULT_CHUNK,
            },
            rounds: DEFAULT_ROUNDS,
            interval: DEFAULT_INTERVAL,
            keys_per_sec: None,
            batch: DEFAULT_BATCH,
            max_differences: DEFAULT_MAX_DIFFERENCES,
            repair: false,
        })
    }
}

/// Verifies every target in turn; one summary each.
pub async fn run(opts: &Options) -> Result<Vec<Summary>> {
    let mut source = Side::connect(Role::Source, &opts.source).await?;
    let mut out = Vec::with_capacity(opts.targets.len());
    for endpoint in &opts.targets {
        let mut target = Side::connect(Role::Target, endpoint).await?;
        out.push(verify_target(opts, &mut source, &mut target).await?);
    }
    Ok(out)
}

/// Ends a walk early once enough differences are held.
struct Found {
    differences: Vec<Difference>,
    max: usize,
}

impl Found {
    fn full(&self) -> bool {
        self.differences.len() >= self.max
    }

    fn add(&mut self, more: Vec<Difference>) {
        let room = self.max.saturating_sub(self.differences.len());
        self.differences.extend(more.into_iter().take(room));
    }
}

async fn verify_target(opts: &Options, source: &mut Side, target: &mut Side) -> Result<Summary> {
    let mapper = Mapper::new(
        opts.rules.clone(),
        opts.db_map.clone(),
        opts.script.as_deref(),
    )?;
    let mut pace = Pace::new(opts.keys_per_sec);
    let mut summary = Summary {
        target: target.label.clone(),
        digest: source.digest && target.digest,
        ..Summary::default()
    };
    let mut found = Found {
        differences: Vec::new(),
        max: opts.max_differences,
    };
    // With a script, a target key's source cannot be worked out backwards: the images seen
    // on the way are remembered instead (a hash per key).
    let mut images: Option<Images> = (!mapper.invertible()).then(Images::default);

    let source_dbs = source.databases().await?;
    // A long walk says how far it got now and then, on stderr.
    let mut next_note = std::time::Instant::now() + PROGRESS_EVERY;
    'source: for db in source.dbs().await? {
        for node in 0..source.node_count() {
            let mut cursor = 0;
            loop {
                let (next, keys) = source.scan(node, db, cursor, opts.batch).await?;
                pace.take(keys.len()).await;
                let c: Compared =
                    compare::source_keys(source, target, &mapper, db, &keys, opts.limits).await?;
                summary.source_keys += c.compared;
                summary.filtered += c.filtered;
                if let Some(images) = &mut images {
                    images.extend(c.images);
                }
                found.add(c.differences);
                if found.full() {
                    break 'source;
                }
                if std::time::Instant::now() >= next_note {
                    next_note += PROGRESS_EVERY;
                    tracing::info!(
                        "verify {}: {} source keys compared (db {db}), {} differ so far",
                        summary.target,
                        summary.source_keys,
                        found.differences.len()
                    );
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
    }
    let seen = images.as_ref();
    let target_dbs: Vec<u32> = target.dbs().await?.into_iter().collect();
    'target: for &db in &target_dbs {
        if found.full() {
            break;
        }
        for node in 0..target.node_count() {
            let mut cursor = 0;
            loop {
                let (next, keys) = target.scan(node, db, cursor, opts.batch).await?;
                pace.take(keys.len()).await;
                summary.target_keys += keys.len() as u64;
                let extra =
                    compare::target_keys(source, target, &mapper, db, &keys, source_dbs, seen)
                        .await?;
                found.add(extra);
                if found.full() {
                    break 'target;
                }
                cursor = next;
                if cursor == 0 {
                    break;
                }
            }
        }
    }
    summary.first_round = found.differences.len();
    summary.stopped_early = found.full();
    summary.rounds = 1;
    let mut diffs = found.differences;
    while summary.rounds < opts.rounds && !diffs.is_empty() {
        tracing::info!(
            "verify {}: {} keys differ after round {}; comparing them again in {} ms",
            summary.target,
            diffs.len(),
            summary.rounds,
            opts.interval.as_millis()
        );
        tokio::time::sleep(opts.interval).await;
        diffs = again(source, target, &mapper, &diffs, source_dbs, seen, opts).await?;
        summary.rounds += 1;
    }
    if opts.repair && !diffs.is_empty() {
        summary.repaired = repair::repair(source, target, &mapper, &diffs).await?;
        diffs = again(source, target, &mapper, &diffs, source_dbs, seen, opts).await?;
    }
    summary.differences = diffs;
    Ok(summary)
}

/// Compares the keys of `diffs` once more; what still differs.
async fn again(
    source: &mut Side,
    target: &mut Side,
    mapper: &Mapper,
    diffs: &[Difference],
    source_dbs: u32,
    seen: Option<&Images>,
    opts: &Options,
) -> Result<Vec<Difference>> {
    let mut by_source: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
    let mut by_target: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
    // Source key → where its image is.
    let mut images: HashMap<(u32, Bytes), (u32, Bytes)> = HashMap::new();
    for d in diffs {
        match &d.subject {
            Subject::Source {
                db,
                key,
                target_db,
                target_key,
            } => {
                by_source.entry(*db).or_default().push(key.clone());
                images.insert((*db, key.clone()), (*target_db, target_key.clone()));
            }
            Subject::Target { db, key } => by_target.entry(*db).or_default().push(key.clone()),
        }
    }
    let mut pace = Pace::new(opts.keys_per_sec);
    let mut out = Vec::new();
    for (db, keys) in by_source {
        for batch in keys.chunks(opts.batch) {
            pace.take(batch.len()).await;
            let c = compare::source_keys(source, target, mapper, db, batch, opts.limits).await?;
            out.extend(c.differences);
            // A source key deleted since: its image on the target must go too, so it is
            // looked at as a target key (extra if the deletion never arrives).
            for gone in c.gone {
                if let Some((tdb, tkey)) = images.get(&(db, gone)) {
                    by_target.entry(*tdb).or_default().push(tkey.clone());
                }
            }
        }
    }
    for (db, keys) in by_target {
        for batch in keys.chunks(opts.batch) {
            pace.take(batch.len()).await;
            out.extend(
                compare::target_keys(source, target, mapper, db, batch, source_dbs, seen).await?,
            );
        }
    }
    Ok(out)
}

/// Writes one JSON line per difference; `several` adds each line's target.
pub fn write_lines(out: &mut impl std::io::Write, summaries: &[Summary]) -> std::io::Result<()> {
    let several = summaries.len() > 1;
    for s in summaries {
        for d in &s.differences {
            let target = several.then_some(s.target.as_str());
            writeln!(out, "{}", d.to_json(target))?;
        }
    }
    out.flush()
}
