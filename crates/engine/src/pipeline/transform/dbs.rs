//! Commands about whole dbs (FLUSHALL, FLUSHDB, SWAPDB) or that move keys between dbs (MOVE,
//! COPY ... DB), under db rules and the db map: rewritten where that is exact, refused with
//! the reason where the target cannot follow.

use bytes::Bytes;

use super::{Transform, drop_command, encode, filter, rebuild};
use crate::error::Error;
use crate::pipeline::entry::{Batch, Command, Entry};
use crate::status::Status;
use crate::text::escape;

impl Transform {
    /// FLUSHALL: as it is without db rules; with them, FLUSHDB of each target db that
    /// receives a synced source db (in one transaction, so it stays one write).
    pub(super) fn flushall(
        &mut self,
        cmd: Command,
        status: &Status,
        out: &mut Batch,
    ) -> Result<(), Error> {
        if !self.rules.has_db_rules() {
            out.push(Entry::Command(cmd));
            return Ok(());
        }
        // Target db → one source db written into it (the encoder maps it back).
        let mut targets = std::collections::BTreeMap::new();
        for source in self.rules.passing_dbs(filter::MAX_DBS) {
            let target = self.rules.db_map.target(source);
            if target < self.target_dbs {
                targets.entry(target).or_insert(source);
            }
        }
        if targets.is_empty() {
            drop_command(cmd, status, out);
            return Ok(());
        }
        let part = |args: Vec<Bytes>, db: u32| {
            Entry::Command(Command {
                db,
                target_db: None,
                raw: encode(&args),
                args,
                end_offset: cmd.end_offset,
                slot: None,
            })
        };
        let wrap = !self.in_multi;
        if wrap {
            out.push(part(vec![Bytes::from_static(b"MULTI")], cmd.db));
        }
        for &source in targets.values() {
            let mut args = vec![Bytes::from_static(b"FLUSHDB")];
            args.extend(cmd.args[1..].iter().cloned());
            out.push(part(args, source));
        }
        if wrap {
            // Last, with the source's own db: its position is what the checkpoint records.
            out.push(part(vec![Bytes::from_static(b"EXEC")], cmd.db));
        }
        Ok(())
    }

    pub(super) fn flushdb(
        &self,
        cmd: Command,
        status: &Status,
        out: &mut Batch,
    ) -> Result<(), Error> {
        if !self.rules.db_passes(cmd.db) {
            drop_command(cmd, status, out);
            return Ok(());
        }
        let sharing = self.rules.sharing_target(cmd.db, self.target_dbs);
        if !sharing.is_empty() {
            return Err(Error::CannotWrite {
                what: format!("FLUSHDB of source db {} from the source", cmd.db),
                why: format!(
                    "filter.db_map writes source dbs {} into the same target db {}, and FLUSHDB there would delete their keys too; block those dbs (filter.block_db) or map them apart, then run ferry again",
                    list(&sharing),
                    self.rules.db_map.target(cmd.db)
                ),
            });
        }
        out.push(Entry::Command(cmd));
        Ok(())
    }

    /// SWAPDB of two synced dbs: both mapped. Touching a db that is not synced: the target
    /// cannot take the data it does not have.
    pub(super) fn swapdb(
        &self,
        cmd: Command,
        status: &Status,
        out: &mut Batch,
    ) -> Result<(), Error> {
        let db =
            |i: usize| -> Option<u32> { std::str::from_utf8(cmd.args.get(i)?).ok()?.parse().ok() };
        let (Some(a), Some(b)) = (db(1), db(2)) else {
            // Malformed: let the target refuse it as the source would have.
            out.push(Entry::Command(cmd));
            return Ok(());
        };
        let what = || format!("SWAPDB {a} {b} from the source");
        match (self.rules.db_passes(a), self.rules.db_passes(b)) {
            (false, false) => {
                drop_command(cmd, status, out);
                Ok(())
            }
            (true, true) => {
                for d in [a, b] {
                    let sharing = self.rules.sharing_target(d, self.target_dbs);
                    if !sharing.is_empty() {
                        return Err(Error::CannotWrite {
                            what: what(),
                            why: format!(
                                "target db {} also receives source dbs {}: swapping it would move their keys too; block those dbs (filter.block_db) or map them apart, then copy again",
                                self.rules.db_map.target(d),
                                list(&sharing)
                            ),
                        });
                    }
                }
                let (ta, tb) = (self.rules.db_map.target(a), self.rules.db_map.target(b));
                let args = vec![
                    cmd.args[0].clone(),
                    Bytes::from(ta.to_string()),
                    Bytes::from(tb.to_string()),
                ];
                out.push(Entry::Command(rebuild(cmd, args)));
                Ok(())
            }
            (pa, _) => Err(Error::CannotWrite {
                what: what(),
                why: format!(
                    "db {} is filtered out, so the target does not hold the data that would move into db {}; sync both dbs or neither (filter.allow_db / block_db), then copy again (full_resync = \"flush\")",
                    if pa { b } else { a },
                    if pa { a } else { b }
                ),
            }),
        }
    }

    /// MOVE between dbs: both synced, the target db is mapped; out of the synced dbs, the key
    /// leaves them (a DEL); into them from a db not synced, the value is not on the target.
    pub(super) fn move_key(
        &self,
        cmd: Command,
        status: &Status,
        out: &mut Batch,
    ) -> Result<Option<Command>, Error> {
        let Some(to) = cmd
            .args
            .get(2)
            .and_then(|d| std::str::from_utf8(d).ok()?.parse::<u32>().ok())
        else {
            return Ok(Some(cmd));
        };
        if !self.rules.key_passes(&cmd.args[1]) {
            drop_command(cmd, status, out);
            return Ok(None);
        }
        let map = &self.rules.db_map;
        match (self.rules.db_passes(cmd.db), self.rules.db_passes(to)) {
            (false, false) => {
                drop_command(cmd, status, out);
                Ok(None)
            }
            // Two source dbs written into one target db: the key stays where it is.
            (true, true) if map.target(cmd.db) == map.target(to) => {
                drop_command(cmd, status, out);
                Ok(None)
            }
            (true, true) => {
                let args = vec![
                    cmd.args[0].clone(),
                    cmd.args[1].clone(),
                    Bytes::from(map.target(to).to_string()),
                ];
                Ok(Some(rebuild(cmd, args)))
            }
            (true, false) => {
                let args = vec![Bytes::from_static(b"DEL"), cmd.args[1].clone()];
                Ok(Some(rebuild(cmd, args)))
            }
            (false, true) => Err(Error::CannotWrite {
                what: format!(
                    "MOVE of key {} from source db {} to db {to}",
                    escape(&cmd.args[1]),
                    cmd.db
                ),
                why: format!(
                    "db {} is filtered out, so the target does not have the key's value; sync db {} too (filter.allow_db / block_db), then copy again (full_resync = \"flush\")",
                    cmd.db, cmd.db
                ),
            }),
        }
    }

    /// COPY ... DB n: like MOVE, except that copying out of the synced dbs changes nothing
    /// in them.
    pub(super) fn copy_db(
        &self,
        cmd: Command,
        status: &Status,
        out: &mut Batch,
    ) -> Result<Option<Command>, Error> {
        let at = (3..cmd.args.len()).find(|&i| cmd.args[i].eq_ignore_ascii_case(b"DB"));
        let Some((at, to)) = at.and_then(|i| {
            let d = std::str::from_utf8(cmd.args.get(i + 1)?)
                .ok()?
                .parse::<u32>()
                .ok()?;
            Some((i, d))
        }) else {
            return Ok(Some(cmd));
        };
        let map = &self.rules.db_map;
        match (self.rules.db_passes(cmd.db), self.rules.db_passes(to)) {
            (true, true) => {
                let mut args = cmd.args.clone();
                args[at + 1] = Bytes::from(map.target(to).to_string());
                Ok(Some(rebuild(cmd, args)))
            }
            (_, false) => {
                drop_command(cmd, status, out);
                Ok(None)
            }
            (false, true) => Err(Error::CannotWrite {
                what: format!(
                    "COPY of key {} from source db {} to db {to}",
                    escape(&cmd.args[1]),
                    cmd.db
                ),
                why: format!(
                    "db {} is filtered out, so the target does not have the key's value; sync db {} too (filter.allow_db / block_db), then copy again (full_resync = \"flush\")",
                    cmd.db, cmd.db
                ),
            }),
        }
    }
}

fn list(dbs: &[u32]) -> String {
    dbs.iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
