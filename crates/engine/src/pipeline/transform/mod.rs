//! Transforms between source and target: what to sync (`filter`), which target db each source
//! db goes to (`filter::DbMap`, applied where the target's writer selects a db), commands
//! about whole dbs under those rules (`dbs`), and TTLs made longer (`ttl`). Applied once per
//! batch before a target's writer (or a cluster target's router) sees it, to snapshot keys
//! and stream commands alike.
//!
//! A stream command that is dropped still moves the stream position: it becomes an
//! `Entry::Offset`, so the checkpoint advances past it. `Command.db` and `Offset.db` keep the
//! *source* db, which the checkpoint records (a resume restarts the source's stream with that
//! db selected); the db map is applied only where the writer selects the target's db.

mod dbs;
pub mod filter;
pub mod ttl;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::{Bytes, BytesMut};
use ferry_keyspace::{Group, Keys, Kind};

use crate::error::Error;
use crate::pipeline::entry::{Batch, Command, Entry};
use crate::source::split;
use crate::status::Status;
use crate::text::escape;
pub use filter::{DbMap, Rules};

/// Dbs assumed on a target that does not say (`CONFIG GET databases` refused): Redis's default.
pub const DEFAULT_DBS: u32 = 16;

/// The filter rules applied to one stream of entries; keeps what it needs to know across
/// batches (whether a source transaction is open).
pub struct Transform {
    rules: Arc<Rules>,
    /// Dbs the target has: FLUSHALL with db rules becomes FLUSHDB on those that receive data.
    target_dbs: u32,
    /// Inside a source MULTI/EXEC.
    in_multi: bool,
}

impl Transform {
    pub fn new(rules: Arc<Rules>, target_dbs: u32) -> Transform {
        Transform {
            rules,
            target_dbs,
            in_multi: false,
        }
    }

    /// Checks the db map against the target's dbs (a cluster has only db 0).
    pub fn check_target(
        rules: &Rules,
        target_dbs: Option<u32>,
        cluster: bool,
    ) -> Result<(), Error> {
        let Some(dbs) = target_dbs else { return Ok(()) };
        for (source, target) in rules.db_map.entries() {
            if target >= dbs {
                let why = if cluster {
                    "a cluster target has only db 0".to_string()
                } else {
                    format!("the target has {dbs} dbs (its `databases` setting)")
                };
                return Err(Error::Config(format!(
                    "filter.db_map sends source db {source} to target db {target}, but {why}; map it to a db the target has"
                )));
            }
        }
        Ok(())
    }

    /// Applies the rules to a batch.
    pub fn apply(&mut self, batch: Batch, status: &Status) -> Result<Batch, Error> {
        if self.rules.is_noop() {
            return Ok(batch);
        }
        let now = now_ms();
        let ext = self.rules.ttl_extend_ms;
        let mut out = Vec::with_capacity(batch.len());
        for entry in batch {
            match entry {
                Entry::SyncStart { .. } => {
                    self.in_multi = false;
                    out.push(entry);
                }
                Entry::Key(mut record) => {
                    if !self.key_kept(&record.meta) {
                        status.filtered_keys.fetch_add(1, Relaxed);
                        continue;
                    }
                    if let Some(at) = record.meta.expire_ms.filter(|_| ext > 0) {
                        record.meta.expire_ms = Some(ttl::extend_at(at, ext, now));
                    }
                    out.push(Entry::Key(record));
                }
                Entry::BigStart(ref meta) => {
                    if !self.key_kept(meta) {
                        status.filtered_keys.fetch_add(1, Relaxed);
                        continue;
                    }
                    out.push(entry);
                }
                Entry::BigChunk(ref meta, _) => {
                    if self.key_kept(meta) {
                        out.push(entry);
                    }
                }
                Entry::BigEnd(meta) => {
                    if !self.key_kept(&meta) {
                        continue;
                    }
                    let meta = match meta.expire_ms.filter(|_| ext > 0) {
                        Some(at) => Arc::new(ferry_rdb::KeyMeta {
                            expire_ms: Some(ttl::extend_at(at, ext, now)),
                            ..(*meta).clone()
                        }),
                        None => meta,
                    };
                    out.push(Entry::BigEnd(meta));
                }
                Entry::Function(_)
                    if !self
                        .rules
                        .command_passes("FUNCTION", Some(Group::Scripting)) =>
                {
                    status.filtered_commands.fetch_add(1, Relaxed);
                }
                Entry::Command(cmd) => self.command(cmd, now, status, &mut out)?,
                other => out.push(other),
            }
        }
        Ok(out)
    }

    fn key_kept(&self, meta: &ferry_rdb::KeyMeta) -> bool {
        let kind = meta
            .type_byte
            .kind()
            .map_or("module", ferry_rdb::Kind::name);
        self.rules.db_passes(meta.db as u32)
            && self.rules.key_passes(&meta.key)
            && self.rules.type_passes(kind)
    }

    fn command(
        &mut self,
        cmd: Command,
        now: i64,
        status: &Status,
        out: &mut Batch,
    ) -> Result<(), Error> {
        let upper = String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase();
        // The source's transaction bounds stay, whatever is dropped inside.
        match upper.as_str() {
            "MULTI" => self.in_multi = true,
            "EXEC" => self.in_multi = false,
            _ => {}
        }
        if matches!(upper.as_str(), "MULTI" | "EXEC") {
            out.push(Entry::Command(cmd));
            return Ok(());
        }
        // A command whose huge arguments went in pieces is judged as the source sent it:
        // kept, cut or dropped whole. A dropped one still has its temporary keys deleted
        // by the DEL after it.
        if let Some((tmps, inner)) = split::parse_arg_script(&cmd.args) {
            let probe = Command {
                args: inner,
                ..cmd.clone()
            };
            let mut kept = Vec::new();
            self.command(probe, now, status, &mut kept)?;
            for entry in kept {
                match entry {
                    // Cut down to keys whose values are all small, it goes as it is.
                    Entry::Command(c) if !c.args.iter().any(|a| tmps.contains(a)) => {
                        out.push(Entry::Command(rebuild(c.clone(), c.args)))
                    }
                    Entry::Command(c) => match split::arg_script(&tmps, &c.args) {
                        Some(args) => out.push(Entry::Command(rebuild(c, args))),
                        None => drop_command(c, status, out),
                    },
                    other => out.push(other),
                }
            }
            return Ok(());
        }
        // Its pieces, and the deletion of the keys they were built in, go wherever the
        // command goes; only a db left out leaves them out too.
        if cmd.args.get(1).is_some_and(|k| split::is_arg_key(k)) {
            if self.rules.db_passes(cmd.db) {
                out.push(Entry::Command(cmd));
            } else {
                out.push(Entry::Offset {
                    offset: cmd.end_offset,
                    db: cmd.db,
                });
            }
            return Ok(());
        }
        let group = ferry_keyspace::group(&cmd.args[0]);
        if !self.rules.command_passes(&upper, group) {
            drop_command(cmd, status, out);
            return Ok(());
        }
        let cmd = match upper.as_str() {
            "FLUSHALL" => return self.flushall(cmd, status, out),
            "FLUSHDB" => return self.flushdb(cmd, status, out),
            "SWAPDB" => return self.swapdb(cmd, status, out),
            "MOVE" => match self.move_key(cmd, status, out)? {
                Some(cmd) => cmd,
                None => return Ok(()),
            },
            "COPY" => match self.copy_db(cmd, status, out)? {
                Some(cmd) => cmd,
                None => return Ok(()),
            },
            // Not about a db's data: server-wide, or a message.
            "PUBLISH" | "SPUBLISH" | "SCRIPT" | "FUNCTION" => cmd,
            _ if !self.rules.db_passes(cmd.db) => {
                drop_command(cmd, status, out);
                return Ok(());
            }
            _ => cmd,
        };
        if self.rules.has_type_rules()
            && let Some(kind) = command_type(group, &cmd.args)
            && !self.rules.type_passes(kind)
        {
            drop_command(cmd, status, out);
            return Ok(());
        }
        let Some(cmd) = self.keys(cmd, status, out) else {
            return Ok(());
        };
        let cmd = match ttl::extend_command(&cmd.args, self.rules.ttl_extend_ms, now) {
            Some(args) => rebuild(cmd, args),
            None => cmd,
        };
        out.push(Entry::Command(cmd));
        Ok(())
    }

    /// The command with only the keys the key rules let through, or None when it is
    /// dropped (then its position is in `out` already).
    fn keys(&self, cmd: Command, status: &Status, out: &mut Batch) -> Option<Command> {
        if !self.rules.has_key_rules() {
            return Some(cmd);
        }
        let positions: Vec<usize> = match ferry_keyspace::keys(&cmd.args) {
            Keys::Keyed(k) => k.positions().collect(),
            // A module's command: its first argument is its key by convention.
            Keys::Unknown if cmd.args.len() > 1 => vec![1],
            _ => return Some(cmd),
        };
        let passing = positions
            .iter()
            .filter(|&&i| self.rules.key_passes(&cmd.args[i]))
            .count();
        if passing == positions.len() {
            return Some(cmd);
        }
        if passing == 0 {
            drop_command(cmd, status, out);
            return None;
        }
        let kind = match ferry_keyspace::keys(&cmd.args) {
            Keys::Keyed(k) => k.kind(),
            _ => Kind::Single,
        };
        if kind == Kind::Split
            && let Some(Some(args)) =
                ferry_keyspace::retain_keys(&cmd.args, |k| self.rules.key_passes(k))
        {
            status.split_commands.fetch_add(1, Relaxed);
            return Some(rebuild(cmd, args));
        }
        // Keys allowed and blocked in one command whose effect ties them together (RENAME
        // from an allowed key to a blocked one, SUNIONSTORE over both...): neither applying
        // it (a blocked key would reach the target) nor dropping it is exact. Dropped, so no
        // blocked key is ever written, and said.
        status.unsplittable_commands.fetch_add(1, Relaxed);
        let keys: Vec<String> = positions
            .iter()
            .take(8)
            .map(|&i| {
                let key = escape(&cmd.args[i]);
                match self.rules.key_passes(&cmd.args[i]) {
                    true => format!("{key} (allowed)"),
                    false => format!("{key} (blocked)"),
                }
            })
            .collect();
        status.warn("unsplittable_command", format!(
            "{} in db {} names keys the filter allows and keys it blocks, and cannot be cut per key: not applied; the allowed keys may now differ from the source's: {}",
            upper_name(&cmd),
            cmd.db,
            keys.join(", ")
        ));
        drop_command(cmd, status, out);
        None
    }
}

/// The type of value a command leaves in its keys, when it says: by its group, a RESTORE's
/// payload, SORT ... STORE (a list), and "module" for a command ferry does not know (a
/// module's).
fn command_type(group: Option<Group>, args: &[Bytes]) -> Option<&'static str> {
    let name = &args[0];
    if name.eq_ignore_ascii_case(b"SORT")
        && let Keys::Keyed(k) = ferry_keyspace::keys(args)
        && k.written().next().is_some()
    {
        return Some("list");
    }
    if name.eq_ignore_ascii_case(b"RESTORE") || name.eq_ignore_ascii_case(b"RESTORE-ASKING") {
        let (type_byte, _, _) = ferry_rdb::dump::parse_payload(args.get(3)?).ok()?;
        return Some(type_byte.kind().map_or("module", ferry_rdb::Kind::name));
    }
    match group {
        Some(g) => g.value_type(),
        None => Some("module"),
    }
}

/// The command's place in the stream, without the command.
fn drop_command(cmd: Command, status: &Status, out: &mut Batch) {
    status.filtered_commands.fetch_add(1, Relaxed);
    out.push(Entry::Offset {
        offset: cmd.end_offset,
        db: cmd.db,
    });
}

/// `cmd` with other arguments, re-encoded.
fn rebuild(cmd: Command, args: Vec<Bytes>) -> Command {
    Command {
        raw: encode(&args),
        args,
        ..cmd
    }
}

fn encode(args: &[Bytes]) -> Bytes {
    let mut out = BytesMut::new();
    ferry_resp::encode_command(&mut out, args);
    out.freeze()
}

fn upper_name(cmd: &Command) -> String {
    String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase()
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

#[cfg(test)]
mod tests;
