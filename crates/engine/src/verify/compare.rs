//! Comparing a batch of keys: the source keys of one db against their images on the target,
//! or target keys of one db against the source (extras). Metadata (type, PTTL, digest) is
//! read for the whole batch in one pipeline per side; values are walked only for keys whose
//! digests differ, or for every key when a side has no digests.

use bytes::Bytes;
use ferry_resp::Frame;
use serde_json::json;

use super::image::{Image, Mapper};
use super::report::{Difference, Kind, Subject, bytes};
use super::side::Side;
use super::value::{self, At};
use crate::error::Result;

/// Settings of a comparison.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest gap between the expected and the target's expiry that still counts as equal.
    pub ttl_tolerance_ms: i64,
    /// Elements per page when a value is read (KiB per page of a string).
    pub chunk: usize,
}

/// What `TYPE`, `PTTL` and the digest say of one key.
#[derive(Debug)]
struct Meta {
    kind: String,
    /// Absolute unix ms, from PTTL at `now`.
    expire_ms: Option<i64>,
    digest: Option<Frame>,
}

/// Reads TYPE, PTTL (and the digest when `digest`) of `keys` in `db`, in one pipeline.
async fn metas(side: &mut Side, db: u32, keys: &[&Bytes], digest: bool) -> Result<Vec<Meta>> {
    let per = if digest { 3 } else { 2 };
    let mut cmds: Vec<Vec<&[u8]>> = Vec::with_capacity(keys.len() * per);
    for key in keys {
        cmds.push(vec![b"TYPE", key]);
        cmds.push(vec![b"PTTL", key]);
        if digest {
            cmds.push(vec![b"DEBUG", b"DIGEST-VALUE", key]);
        }
    }
    let now = now_ms();
    let replies = side.pipeline(db, &cmds).await?;
    let mut out = Vec::with_capacity(keys.len());
    for r in replies.chunks(per) {
        if let Some(e) = r.iter().find(|f| f.is_error()) {
            return Err(side.failed("reading keys", e));
        }
        let kind = r[0]
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| side.bad_reply("TYPE"))?;
        let pttl = r[1].as_integer().ok_or_else(|| side.bad_reply("PTTL"))?;
        out.push(Meta {
            kind,
            expire_ms: (pttl >= 0).then_some(now + pttl),
            digest: r.get(2).cloned(),
        });
    }
    Ok(out)
}

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// The result of comparing a batch of source keys.
#[derive(Default)]
pub struct Compared {
    pub differences: Vec<Difference>,
    /// Keys compared (their images were looked up).
    pub compared: u64,
    /// Keys the sync leaves out.
    pub filtered: u64,
    /// (target db, hash of the key) of every image, for finding extras when a script
    /// renames keys.
    pub images: Vec<(u32, u64)>,
    /// Keys the source no longer holds (deleted or expired since they were found).
    pub gone: Vec<Bytes>,
}

/// A key's name hashed (the same in every run of the process), for the set of images.
fn key_hash(key: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    key.hash(&mut h);
    h.finish()
}

/// The images of the source keys seen, as (target db, hash of the key): what tells a target
/// key's origin when a script renames keys and it cannot be worked out backwards. 16 bytes
/// a key (and the set's overhead); two keys of one hash may hide an extra key, with odds of
/// about n²/2⁶⁵.
#[derive(Default)]
pub struct Images(std::collections::HashSet<(u32, u64)>);

impl Images {
    pub fn extend(&mut self, images: Vec<(u32, u64)>) {
        self.0.extend(images);
    }

    fn contains(&self, db: u32, key: &[u8]) -> bool {
        self.0.contains(&(db, key_hash(key)))
    }
}

/// Compares source keys `keys` of source db `db` with their images on the target.
pub async fn source_keys(
    source: &mut Side,
    target: &mut Side,
    mapper: &Mapper,
    db: u32,
    keys: &[Bytes],
    limits: Limits,
) -> Result<Compared> {
    let digest = source.digest && target.digest;
    let refs: Vec<&Bytes> = keys.iter().collect();
    let metas_src = metas(source, db, &refs, digest).await?;
    let now = now_ms();
    let mut out = Compared::default();
    // (source key, its meta, its image)
    let mut pending: Vec<(&Bytes, Meta, Image)> = Vec::new();
    for (key, meta) in keys.iter().zip(metas_src) {
        // Ferry's own keys are no data.
        if key.starts_with(crate::pipeline::entry::OWN_KEY_PREFIX) {
            continue;
        }
        // Gone since it was found: nothing to compare.
        if meta.kind == "none" {
            out.gone.push(key.clone());
            continue;
        }
        match mapper.image(db, key, &meta.kind, meta.expire_ms, now)? {
            Some(image) => pending.push((key, meta, image)),
            None => out.filtered += 1,
        }
    }
    out.compared = pending.len() as u64;
    out.images = pending
        .iter()
        .map(|p| (p.2.db, key_hash(&p.2.key)))
        .collect();
    // The images, one pipeline per target db.
    let mut target_dbs: Vec<u32> = pending.iter().map(|p| p.2.db).collect();
    target_dbs.sort_unstable();
    target_dbs.dedup();
    let mut found: Vec<Option<Meta>> = (0..pending.len()).map(|_| None).collect();
    for tdb in target_dbs {
        let idx: Vec<usize> = (0..pending.len())
            .filter(|&i| pending[i].2.db == tdb)
            .collect();
        let tkeys: Vec<&Bytes> = idx.iter().map(|&i| &pending[i].2.key).collect();
        for (i, m) in idx
            .into_iter()
            .zip(metas(target, tdb, &tkeys, digest).await?)
        {
            found[i] = Some(m);
        }
    }
    for ((key, src, image), tgt) in pending.into_iter().zip(found) {
        let Some(tgt) = tgt else { continue };
        let subject = Subject::Source {
            db,
            key: key.clone(),
            target_db: image.db,
            target_key: image.key.clone(),
        };
        let diff = |kind, detail| Difference {
            kind,
            subject: subject.clone(),
            detail,
        };
        if tgt.kind == "none" {
            out.differences.push(diff(
                Kind::Missing,
                json!({ "target_db": image.db, "target_key": bytes(&image.key) }),
            ));
            continue;
        }
        if tgt.kind != src.kind {
            out.differences.push(diff(
                Kind::Type,
                json!({ "source": src.kind, "target": tgt.kind }),
            ));
            continue;
        }
        let digests_differ = digest && src.digest != tgt.digest;
        if digests_differ || !digest {
            let mut a = At {
                side: source,
                db,
                key,
            };
            let mut b = At {
                side: target,
                db: image.db,
                key: &image.key,
            };
            let first = value::first_difference(&src.kind, &mut a, &mut b, limits.chunk).await?;
            match first {
                Some(detail) => {
                    out.differences.push(diff(Kind::Value, detail));
                    continue;
                }
                None if digests_differ => {
                    out.differences.push(diff(
                        Kind::Value,
                        json!({ "what": "the digests differ but no element read does: the value changed while it was read" }),
                    ));
                    continue;
                }
                None => {}
            }
        }
        let ttl_ok = match (image.expire_ms, tgt.expire_ms) {
            (None, None) => true,
            (Some(a), Some(b)) => (a - b).abs() <= limits.ttl_tolerance_ms,
            _ => false,
        };
        if !ttl_ok {
            let ms = |at: Option<i64>| at.map(|at| at - now);
            out.differences.push(diff(
                Kind::Ttl,
                json!({ "source_ttl_ms": ms(image.expire_ms), "target_ttl_ms": ms(tgt.expire_ms) }),
            ));
        }
    }
    Ok(out)
}

/// Looks at target keys `keys` of target db `db`: those the sync could have written and that
/// no source key explains are extra. `source_dbs` is how many dbs the source has; `seen`
/// (given when a script renames keys) holds the images of the source keys.
pub async fn target_keys(
    source: &mut Side,
    target: &mut Side,
    mapper: &Mapper,
    db: u32,
    keys: &[Bytes],
    source_dbs: u32,
    seen: Option<&Images>,
) -> Result<Vec<Difference>> {
    let cmds: Vec<Vec<&[u8]>> = keys.iter().map(|k| vec![&b"TYPE"[..], k]).collect();
    let types = target.pipeline(db, &cmds).await?;
    let mut out = Vec::new();
    // (key, source db to look in)
    let mut lookups: Vec<(usize, u32)> = Vec::new();
    let mut unexplained: Vec<bool> = vec![false; keys.len()];
    for (i, (key, t)) in keys.iter().zip(&types).enumerate() {
        if t.is_error() {
            return Err(target.failed("TYPE", t));
        }
        let kind = t
            .as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned());
        let Some(kind) = kind.filter(|k| k != "none") else {
            continue;
        };
        if key.starts_with(crate::pipeline::entry::OWN_KEY_PREFIX) {
            continue;
        }
        match seen {
            Some(seen) => unexplained[i] = !seen.contains(db, key),
            None => {
                let origins = mapper.origins(db, key, &kind, source_dbs);
                if !origins.is_empty() {
                    unexplained[i] = true;
                    lookups.extend(origins.into_iter().map(|s| (i, s)));
                }
            }
        }
    }
    let mut sdbs: Vec<u32> = lookups.iter().map(|l| l.1).collect();
    sdbs.sort_unstable();
    sdbs.dedup();
    for sdb in sdbs {
        let idx: Vec<usize> = lookups.iter().filter(|l| l.1 == sdb).map(|l| l.0).collect();
        let cmds: Vec<Vec<&[u8]>> = idx
            .iter()
            .map(|&i| vec![&b"EXISTS"[..], &keys[i]])
            .collect();
        for (i, reply) in idx.into_iter().zip(source.pipeline(sdb, &cmds).await?) {
            if reply.is_error() {
                return Err(source.failed("EXISTS", &reply));
            }
            if reply.as_integer() == Some(1) {
                unexplained[i] = false;
            }
        }
    }
    for (key, _) in keys.iter().zip(unexplained).filter(|(_, u)| *u) {
        out.push(Difference {
            kind: Kind::Extra,
            subject: Subject::Target {
                db,
                key: key.clone(),
            },
            detail: json!({ "target_db": db }),
        });
    }
    Ok(out)
}
