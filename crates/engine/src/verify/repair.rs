//! `--repair`: each differing key is written again from the source: `DUMP` there, `RESTORE
//! ... REPLACE ABSTTL` of its image on the target (with the expiry the sync would give it),
//! or `DEL` of the image when the source no longer has the key, and `DEL` of an extra key.

use ferry_resp::Frame;

use super::compare::now_ms;
use super::image::Mapper;
use super::report::{Difference, Subject};
use super::side::Side;
use crate::error::{Error, Result};
use crate::text::escape;

/// Rewrites the keys of `diffs` on the target; returns how many were written or deleted.
pub async fn repair(
    source: &mut Side,
    target: &mut Side,
    mapper: &Mapper,
    diffs: &[Difference],
) -> Result<usize> {
    let mut done = 0;
    for diff in diffs {
        match &diff.subject {
            Subject::Target { db, key } => {
                del(target, *db, key).await?;
            }
            Subject::Source {
                db,
                key,
                target_db,
                target_key,
            } => {
                let cmds: Vec<Vec<&[u8]>> =
                    vec![vec![b"TYPE", key], vec![b"PTTL", key], vec![b"DUMP", key]];
                let now = now_ms();
                let replies = source.pipeline(*db, &cmds).await?;
                if let Some(e) = replies.iter().find(|f| f.is_error()) {
                    return Err(source.failed("DUMP", e));
                }
                let kind = replies[0]
                    .as_bytes()
                    .map(|b| String::from_utf8_lossy(b).into_owned())
                    .unwrap_or_default();
                let payload = match &replies[2] {
                    Frame::Bulk(p) if kind != "none" => p.clone(),
                    // Gone from the source since it was compared: so goes its image.
                    _ => {
                        del(target, *target_db, target_key).await?;
                        done += 1;
                        continue;
                    }
                };
                let pttl = replies[1].as_integer().unwrap_or(-1);
                let expire = (pttl >= 0).then_some(now + pttl);
                let Some(image) = mapper.image(*db, key, &kind, expire, now)? else {
                    // The sync would no longer copy it (a script's answer changed).
                    continue;
                };
                if (image.db, &image.key) != (*target_db, target_key) {
                    continue;
                }
                let at = image.expire_ms.unwrap_or(0).to_string();
                let reply = target
                    .request(
                        image.db,
                        vec![
                            &b"RESTORE"[..],
                            &image.key,
                            at.as_bytes(),
                            &payload,
                            b"REPLACE",
                            b"ABSTTL",
                        ],
                    )
                    .await?;
                if let Frame::Error(msg) = reply {
                    return Err(Error::Server {
                        role: target.role,
                        addr: target.label.clone(),
                        msg: format!(
                            "RESTORE of {} in db {} (repairing it) failed: {}",
                            escape(&image.key),
                            image.db,
                            String::from_utf8_lossy(&msg)
                        ),
                    });
                }
            }
        }
        done += 1;
    }
    Ok(done)
}

async fn del(target: &mut Side, db: u32, key: &[u8]) -> Result<()> {
    let reply = target.request(db, vec![&b"DEL"[..], key]).await?;
    if reply.is_error() {
        return Err(target.failed("DEL", &reply));
    }
    Ok(())
}
