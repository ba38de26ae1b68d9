//! Continuous verification while `ferry sync` runs (`[verify] continuous = true`): the keys
//! the stream wrote most recently are kept (a bounded ring filled as commands are read), and
//! every interval a sample of them is compared on both sides once the target has confirmed
//! those writes. A key that differs is compared again a second later (a newer write may have
//! been in flight); the share that still differs is `GET /status`'s `verify.mismatch_ratio`.
//!
//! It runs on one of the shared workers (the Lua transform's state stays on one thread) and
//! never stops the sync: a failed check is logged and tried again at the next interval.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::Options;
use super::compare::{self, Images};
use super::image::Mapper;
use super::report::{Difference, Subject};
use super::side::Side;
use crate::error::{Result, Role};
use crate::spec::LiveVerify;
use crate::status::Status;
use crate::status::events::{EventKind, Events};
use crate::status::recent::RecentWrites;
use crate::text::escape;

/// How long a check waits for the target to confirm the sampled writes before it skips.
const CONFIRM_WAIT: Duration = Duration::from_secs(10);
/// The pause before a differing key is compared again.
const RECHECK_AFTER: Duration = Duration::from_secs(1);

/// Starts the checks on a shared worker (they may run the task's Lua script, which stays on
/// one thread); they end when `cancel` fires.
pub fn spawn(
    opts: Options,
    settings: LiveVerify,
    status: Arc<Status>,
    cancel: CancellationToken,
) -> Result<()> {
    let live = Arc::new(RecentWrites::new(settings));
    status.watch_writes(live.clone(), live.add_stream(&status));
    let events = status.events().clone();
    if !crate::workers::shared().spawn(move || run(opts, settings, live, cancel, events)) {
        return Err(crate::Error::Internal {
            what: "continuous verification",
            why: "no worker thread is running".into(),
        });
    }
    Ok(())
}

struct Sides {
    source: Side,
    target: Side,
    source_dbs: u32,
}

async fn run(
    opts: Options,
    settings: LiveVerify,
    live: Arc<RecentWrites>,
    cancel: CancellationToken,
    events: Events,
) {
    let mapper = match Mapper::new(
        opts.rules.clone(),
        opts.db_map.clone(),
        opts.script.as_deref(),
    ) {
        Ok(m) => m,
        Err(e) => {
            events.emit(EventKind::Warning {
                code: "verify_unavailable",
                message: format!("continuous verification cannot start: {e}"),
            });
            return;
        }
    };
    let mut sides: Option<Sides> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(settings.interval) => {}
        }
        let (sample, offsets) = live.take(settings.sample);
        if sample.is_empty() || !confirmed(&live, &offsets, &cancel).await {
            continue;
        }
        if sides.is_none() {
            match connect(&opts).await {
                Ok(s) => sides = Some(s),
                Err(e) => {
                    events.emit(EventKind::Warning {
                        code: "verify_unavailable",
                        message: format!(
                            "continuous verification: {e}; trying again in {:?}",
                            settings.interval
                        ),
                    });
                    continue;
                }
            }
        }
        let Some(s) = sides.as_mut() else { continue };
        match check(s, &mapper, &opts, &sample).await {
            Ok((compared, left)) => {
                live.checked(compared, left.len() as u64);
                events.emit(EventKind::Verified {
                    compared,
                    differing: left.len() as u64,
                });
                if let Some(d) = left.first() {
                    let (db, key) = match &d.subject {
                        Subject::Source { db, key, .. } | Subject::Target { db, key } => (db, key),
                    };
                    events.emit(EventKind::Warning {
                        code: "verify_differences",
                        message: format!(
                            "continuous verification: {} of {compared} recently written keys differ on the target, e.g. {} in db {db} ({}); run ferry verify for the whole data",
                            left.len(),
                            escape(key),
                            d.kind.name()
                        ),
                    });
                }
            }
            Err(e) => {
                events.emit(EventKind::Warning {
                    code: "verify_unavailable",
                    message: format!(
                        "continuous verification: {e}; trying again in {:?}",
                        settings.interval
                    ),
                });
                sides = None;
            }
        }
    }
}

/// Waits until the target has confirmed the streams up to `offsets`; false when it has not
/// within the wait (a lagging target: these keys are not checked this time).
async fn confirmed(
    live: &RecentWrites,
    offsets: &BTreeMap<usize, u64>,
    cancel: &CancellationToken,
) -> bool {
    let deadline = tokio::time::Instant::now() + CONFIRM_WAIT;
    while !live.confirmed(offsets) {
        if tokio::time::Instant::now() >= deadline || cancel.is_cancelled() {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

async fn connect(opts: &Options) -> Result<Sides> {
    let mut source = Side::connect(Role::Source, &opts.source).await?;
    let target = Side::connect(Role::Target, &opts.targets[0]).await?;
    let source_dbs = source.databases().await?;
    Ok(Sides {
        source,
        target,
        source_dbs,
    })
}

/// Compares the sampled keys, and the differing ones once more after a pause: how many were
/// compared and what still differs.
async fn check(
    s: &mut Sides,
    mapper: &Mapper,
    opts: &Options,
    sample: &[(u32, Bytes)],
) -> Result<(u64, Vec<Difference>)> {
    let mut by_db: BTreeMap<u32, Vec<Bytes>> = BTreeMap::new();
    for (db, key) in sample {
        by_db.entry(*db).or_default().push(key.clone());
    }
    let mut compared = 0;
    let mut diffs = Vec::new();
    for (db, keys) in by_db {
        let c = compare::source_keys(&mut s.source, &mut s.target, mapper, db, &keys, opts.limits)
            .await?;
        compared += c.compared;
        diffs.extend(c.differences);
    }
    if diffs.is_empty() {
        return Ok((compared, diffs));
    }
    tokio::time::sleep(RECHECK_AFTER).await;
    let seen: Option<&Images> = None;
    let left = super::again(
        &mut s.source,
        &mut s.target,
        mapper,
        &diffs,
        s.source_dbs,
        seen,
        opts,
    )
    .await?;
    Ok((compared, left))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_newest_distinct_keys() {
        let live = RecentWrites::new(LiveVerify {
            interval: Duration::from_secs(1),
            sample: 4,
        });
        let b = |s: &str| Bytes::copy_from_slice(s.as_bytes());
        for i in 0..40u64 {
            live.wrote(0, 0, &[b("SET"), b(&format!("k{}", i % 20)), b("v")], i);
        }
        live.wrote(1, 1, &[b("PING")], 99);
        live.wrote(1, 1, &[b("HSET"), b("h"), b("f"), b("v")], 100);
        let (keys, offsets) = live.take(4);
        assert_eq!(offsets, BTreeMap::from([(0, 39), (1, 100)]));
        let names: Vec<(u32, &[u8])> = keys.iter().map(|(d, k)| (*d, &k[..])).collect();
        assert_eq!(
            names,
            vec![(1, &b"h"[..]), (0, b"k19"), (0, b"k18"), (0, b"k17")]
        );
        assert!(live.take(4).0.is_empty());
        assert_eq!(live.report().mismatch_ratio, None);
    }
}
