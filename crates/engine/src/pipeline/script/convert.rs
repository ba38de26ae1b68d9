//! Entries to Lua tables and back. A snapshot key is shown as its db, name, type and expiry
//! (its value stays the RESTORE payload it is, untouched); a command as its db, name,
//! arguments and which arguments are keys. What comes back replaces the entry, or drops it.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferry_rdb::{KeyMeta, Record};
use mlua::{ChunkMode, Function, Table, Value};

use super::sandbox::{self, Failure, Limits, Sandbox};
use super::{FUNCTION, ScriptError};
use crate::pipeline::entry::{Batch, Command, Entry, OWN_KEY_PREFIX};
use crate::text::escape;

/// Command names a script may not produce: they would change how the stream around them is
/// applied (transactions, the selected db), which ferry tracks itself.
const RESERVED: &[&[u8]] = &[b"MULTI", b"EXEC", b"DISCARD", b"SELECT", b"SWAPDB"];

/// `MULTI` or `EXEC` around the commands a script made of `cmd`.
fn bound(cmd: &Command, name: &'static str) -> Command {
    Command {
        db: cmd.db,
        target_db: None,
        args: vec![Bytes::from_static(name.as_bytes())],
        raw: encoded(name),
        end_offset: cmd.end_offset,
        slot: None,
    }
}

fn encoded(name: &str) -> Bytes {
    let mut raw = BytesMut::new();
    ferry_resp::encode_command(&mut raw, &[name]);
    raw.freeze()
}

/// A script loaded in its own sandbox, applied entry by entry.
pub struct LuaTransform {
    sandbox: Sandbox,
    function: Function,
    path: String,
    /// Where `transform` is defined, for errors about what it returned.
    line: usize,
    /// The big key being written in chunks and what the script made of it at its start:
    /// every chunk and its end follow that one decision.
    big: Option<(Arc<KeyMeta>, Option<Arc<KeyMeta>>)>,
    /// Inside a transaction of the source's (its MULTI passed, its EXEC not yet).
    in_multi: bool,
}

/// What the script made of an entry.
enum Outcome {
    Drop,
    Keep(Table),
}

impl LuaTransform {
    pub(super) fn new(path: &str, code: &str, limits: Limits) -> Result<Self, ScriptError> {
        let sandbox = Sandbox::new(limits).map_err(|e| {
            ScriptError::Load(format!(
                "{path}: cannot set up Lua: {}",
                sandbox::message(&e)
            ))
        })?;
        // "@" names a file: Lua's messages then read "<path>:<line>: ...".
        let chunk = sandbox
            .lua
            .load(code)
            .set_name(format!("@{path}"))
            .set_mode(ChunkMode::Text);
        sandbox.timed(|| chunk.exec()).map_err(|f| match f {
            Failure::TimedOut { line } => ScriptError::TimedOut {
                at: at(path, line),
                limit_ms: limits.time.as_millis(),
                what: "its top level, run when it is loaded".into(),
            },
            Failure::Lua(e) => ScriptError::Load(sandbox::message(&e)),
        })?;
        let function = match sandbox.lua.globals().raw_get::<Value>(FUNCTION) {
            Ok(Value::Function(f)) => f,
            _ => {
                return Err(ScriptError::NoFunction {
                    path: path.to_string(),
                });
            }
        };
        let line = function.info().line_defined.unwrap_or(0);
        Ok(LuaTransform {
            sandbox,
            function,
            path: path.to_string(),
            line,
            big: None,
            in_multi: false,
        })
    }

    pub fn apply_batch(&mut self, batch: Batch) -> Result<Batch, ScriptError> {
        let mut out = Vec::with_capacity(batch.len());
        for entry in batch {
            self.apply_into(entry, &mut out)?;
        }
        Ok(out)
    }

    /// The entries to write for `entry`: itself (changed or not), none when the script
    /// dropped a snapshot key, or the commands it made of a command. A dropped command
    /// leaves its offset behind, so the checkpoint still moves past it.
    pub fn apply(&mut self, entry: Entry) -> Result<Vec<Entry>, ScriptError> {
        let mut out = Vec::new();
        self.apply_into(entry, &mut out)?;
        Ok(out)
    }

    fn apply_into(&mut self, entry: Entry, out: &mut Batch) -> Result<(), ScriptError> {
        match entry {
            Entry::Key(record) if !own(&record.meta.key) => {
                if let Some(meta) = self.key(&record.meta)? {
                    out.push(Entry::Key(Record { meta, ..record }));
                }
            }
            Entry::BigStart(meta) if !own(&meta.key) => {
                let to = self.key(&meta)?.map(Arc::new);
                self.big = Some((meta, to.clone()));
                out.extend(to.map(Entry::BigStart));
            }
            Entry::BigChunk(meta, chunk) => {
                out.extend(self.big_part(meta).map(|m| Entry::BigChunk(m, chunk)));
            }
            Entry::BigEnd(meta) => {
                out.extend(self.big_part(meta).map(Entry::BigEnd));
                self.big = None;
            }
            Entry::Command(cmd) if cmd.args[0].eq_ignore_ascii_case(b"MULTI") => {
                self.in_multi = true;
                out.push(Entry::Command(cmd));
            }
            Entry::Command(cmd) if cmd.args[0].eq_ignore_ascii_case(b"EXEC") => {
                self.in_multi = false;
                out.push(Entry::Command(cmd));
            }
            Entry::Command(cmd) => self.command(cmd, out)?,
            other => out.push(other),
        }
        Ok(())
    }

    /// What the script makes of a snapshot key with this db, name, type and expiry: the key
    /// the target should hold, or None when the script drops it. `ferry verify` asks this to
    /// find each source key's image on the target.
    pub fn key_image(&self, meta: &KeyMeta) -> Result<Option<KeyMeta>, ScriptError> {
        if own(&meta.key) {
            return Ok(Some(meta.clone()));
        }
        self.key(meta)
    }

    /// A chunk or the end of the big key in hand follows what the script made of its start.
    fn big_part(&self, meta: Arc<KeyMeta>) -> Option<Arc<KeyMeta>> {
        match &self.big {
            Some((from, to)) if Arc::ptr_eq(from, &meta) => to.clone(),
            // A key the script did not see (ferry's own): as it is.
            _ => Some(meta),
        }
    }

    fn key(&self, meta: &KeyMeta) -> Result<Option<KeyMeta>, ScriptError> {
        let what = || format!("key {} in db {}", escape(&meta.key), meta.db);
        let lua = &self.sandbox.lua;
        let build = || -> mlua::Result<Table> {
            let t = lua.create_table_with_capacity(0, 5)?;
            t.raw_set("kind", "key")?;
            t.raw_set("db", meta.db)?;
            t.raw_set("key", lua.create_string(&meta.key)?)?;
            let kind = meta.type_byte.kind().map_or("unknown", |k| k.name());
            t.raw_set("type", kind)?;
            t.raw_set("expire_ms", meta.expire_ms)?;
            Ok(t)
        };
        let table = match self.call(build, &what)? {
            Outcome::Drop => return Ok(None),
            Outcome::Keep(t) => t,
        };
        let bad = |problem: String| self.returned(problem, what());
        if matches!(field(&table, "kind"), Value::Nil) {
            return Err(bad(
                "returned a table without kind: a key stays one entry (only a command may become a list of commands)".into(),
            ));
        }
        expect_str(&table, "kind", "key").map_err(&bad)?;
        let kind = meta.type_byte.kind().map_or("unknown", |k| k.name());
        expect_str(&table, "type", kind).map_err(&bad)?;
        let db = db(&table).map_err(&bad)?;
        let key = match field(&table, "key") {
            Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
            v => {
                return Err(bad(format!(
                    "returned an entry whose key is {}, not a string",
                    show(&v)
                )));
            }
        };
        if own(&key) && key != meta.key {
            return Err(bad(format!(
                "renamed the key to {}, a name ferry keeps for its own keys (__ferry:...)",
                escape(&key)
            )));
        }
        let expire_ms = match field(&table, "expire_ms") {
            Value::Nil => None,
            v => Some(integer(&v).ok_or_else(|| {
                bad(format!(
                    "returned an entry whose expire_ms is {}, neither nil nor an integer (unix time in ms)",
                    show(&v)
                ))
            })?),
        };
        Ok(Some(KeyMeta {
            db: u64::from(db),
            key,
            expire_ms,
            ..meta.clone()
        }))
    }

    fn command(&self, cmd: Command, out: &mut Batch) -> Result<(), ScriptError> {
        let name = cmd.args[0].to_ascii_uppercase();
        let what = || {
            let first = cmd.args.get(1).map(|a| format!(" {}", escape(a)));
            format!(
                "command {}{} in db {}",
                String::from_utf8_lossy(&name),
                first.unwrap_or_default(),
                cmd.db
            )
        };
        let lua = &self.sandbox.lua;
        let build = || -> mlua::Result<Table> {
            let t = lua.create_table_with_capacity(0, 5)?;
            t.raw_set("kind", "command")?;
            t.raw_set("db", cmd.db)?;
            t.raw_set("command", lua.create_string(&name)?)?;
            let args = lua.create_table_with_capacity(cmd.args.len() - 1, 0)?;
            for (i, a) in cmd.args[1..].iter().enumerate() {
                args.raw_seti(i + 1, lua.create_string(a)?)?;
            }
            t.raw_set("args", args)?;
            // Indexes into `args`, whose first element is the command's first argument: the
            // same numbers keyspace counts from the command name.
            let keys = lua.create_sequence_from(key_positions(&cmd.args))?;
            t.raw_set("keys", keys)?;
            Ok(t)
        };
        let dropped = Entry::Offset {
            offset: cmd.end_offset,
            db: cmd.db,
        };
        let table = match self.call(build, &what)? {
            Outcome::Drop => {
                out.push(dropped);
                return Ok(());
            }
            Outcome::Keep(t) => t,
        };
        let bad = |problem: String| self.returned(problem, what());
        if !matches!(field(&table, "kind"), Value::Nil) {
            out.push(Entry::Command(self.changed(&cmd, &table).map_err(bad)?));
            return Ok(());
        }
        // A list of commands in place of this one.
        let mut made = Vec::with_capacity(table.raw_len());
        for i in 1..=table.raw_len() {
            match field(&table, i) {
                Value::Table(t) => made.push(self.changed(&cmd, &t).map_err(|p| {
                    bad(format!(
                        "returned a list whose item {i} {}",
                        p.trim_start_matches("returned ")
                    ))
                })?),
                v => {
                    return Err(bad(format!(
                        "returned a list whose item {i} is {}, not a command (a table)",
                        show(&v)
                    )));
                }
            }
        }
        match made.len() {
            0 => out.push(dropped),
            1 => out.extend(made.into_iter().map(Entry::Command)),
            // Inside the source's transaction they are applied with it.
            _ if self.in_multi => out.extend(made.into_iter().map(Entry::Command)),
            // Otherwise in one of their own, so a stop cannot apply half of them; the
            // checkpoint moves past the source's command only at its EXEC.
            _ => {
                out.push(Entry::Command(bound(&cmd, "MULTI")));
                out.extend(made.into_iter().map(Entry::Command));
                out.push(Entry::Command(bound(&cmd, "EXEC")));
            }
        }
        Ok(())
    }

    /// The command `table` describes, made from `cmd`; or what is wrong with it.
    fn changed(&self, cmd: &Command, table: &Table) -> Result<Command, String> {
        expect_str(table, "kind", "command")?;
        let db = db(table)?;
        let new_name = match field(table, "command") {
            Value::String(s) if !s.as_bytes().is_empty() => s.as_bytes().to_vec(),
            v => {
                return Err(format!(
                    "returned a command whose name is {}, not a non-empty string",
                    show(&v)
                ));
            }
        };
        if RESERVED.iter().any(|r| new_name.eq_ignore_ascii_case(r))
            && !new_name.eq_ignore_ascii_case(&cmd.args[0])
        {
            return Err(format!(
                "returned a {} command, which ferry does not let a script write",
                String::from_utf8_lossy(&new_name).to_ascii_uppercase()
            ));
        }
        let mut args = Vec::with_capacity(cmd.args.len());
        // The name as the source sent it, unless the script changed more than its case.
        args.push(match new_name.eq_ignore_ascii_case(&cmd.args[0]) {
            true => cmd.args[0].clone(),
            false => Bytes::from(new_name),
        });
        let list = match field(table, "args") {
            Value::Table(t) => t,
            v => {
                return Err(format!(
                    "returned a command whose args is {}, not a list",
                    show(&v)
                ));
            }
        };
        for i in 1..=list.raw_len() {
            let arg = match field(&list, i) {
                Value::String(s) => Bytes::copy_from_slice(&s.as_bytes()),
                v => match integer(&v) {
                    Some(n) => Bytes::from(n.to_string()),
                    None => {
                        return Err(format!(
                            "returned a command whose args[{i}] is {}, not a string",
                            show(&v)
                        ));
                    }
                },
            };
            args.push(arg);
        }
        let raw = if args == cmd.args {
            cmd.raw.clone()
        } else {
            if let Some(k) = key_positions(&args).into_iter().find_map(|i| {
                let k = &args[i];
                (own(k) && !cmd.args.contains(k)).then_some(k)
            }) {
                return Err(format!(
                    "returned a command that writes the key {}, a name ferry keeps for its own keys (__ferry:...)",
                    escape(k)
                ));
            }
            let mut raw = BytesMut::new();
            ferry_resp::encode_command(&mut raw, &args);
            raw.freeze()
        };
        Ok(Command {
            target_db: (db != cmd.db).then_some(db),
            args,
            raw,
            ..cmd.clone()
        })
    }

    /// Calls the script with the table `build` makes, under the limits.
    fn call(
        &self,
        build: impl FnOnce() -> mlua::Result<Table>,
        what: &dyn Fn() -> String,
    ) -> Result<Outcome, ScriptError> {
        let entry = build().map_err(|e| ScriptError::Runtime {
            message: format!(
                "{}: cannot hand the entry over: {}",
                self.path,
                sandbox::message(&e)
            ),
            what: what(),
        })?;
        let value = self
            .sandbox
            .timed(|| self.function.call::<Value>(entry))
            .map_err(|f| match f {
                Failure::TimedOut { line } => ScriptError::TimedOut {
                    at: at(&self.path, line),
                    limit_ms: self.sandbox.limits.time.as_millis(),
                    what: what(),
                },
                Failure::Lua(mlua::Error::MemoryError(_)) => ScriptError::Runtime {
                    message: format!(
                        "{}: ran out of memory (limit {} MiB)",
                        self.path,
                        self.sandbox.limits.memory >> 20
                    ),
                    what: what(),
                },
                Failure::Lua(e) => ScriptError::Runtime {
                    message: sandbox::message(&e),
                    what: what(),
                },
            })?;
        match value {
            Value::Nil => Ok(Outcome::Drop),
            Value::Table(t) => Ok(Outcome::Keep(t)),
            other => Err(self.returned(
                format!(
                    "returned a {}; return the entry (a table), changed or not, or nil to drop it",
                    other.type_name()
                ),
                what(),
            )),
        }
    }

    fn returned(&self, problem: String, what: String) -> ScriptError {
        ScriptError::Returned {
            path: self.path.clone(),
            line: self.line,
            problem,
            what,
        }
    }
}

/// `<file>:<line>`, or the file alone when the line is unknown.
fn at(path: &str, line: Option<usize>) -> String {
    match line {
        Some(l) => format!("{path}:{l}"),
        None => path.to_string(),
    }
}

fn own(key: &[u8]) -> bool {
    key.starts_with(OWN_KEY_PREFIX)
}

/// Positions of the key arguments, counted from the command name (0). Commands whose keys
/// cannot be known (a module's, `SORT ... BY`) list none.
fn key_positions(args: &[Bytes]) -> Vec<usize> {
    match ferry_keyspace::keys(args) {
        ferry_keyspace::Keys::Keyed(k) => k.positions().collect(),
        _ => Vec::new(),
    }
}

/// An integer, or a float with an integral value (Lua 5.4 keeps them apart).
fn integer(v: &Value) -> Option<i64> {
    match v {
        Value::Integer(n) => Some(*n),
        Value::Number(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Some(*f as i64),
        _ => None,
    }
}

fn db(table: &Table) -> Result<u32, String> {
    let v = field(table, "db");
    integer(&v)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| {
            format!(
                "returned an entry whose db is {}, not a db number",
                show(&v)
            )
        })
}

/// The field `field` must still read `expected`: the kind of an entry and the type of a key
/// cannot be changed by renaming.
fn expect_str(table: &Table, name: &str, expected: &str) -> Result<(), String> {
    match field(table, name) {
        Value::String(s) if s.as_bytes().as_ref() == expected.as_bytes() => Ok(()),
        v => Err(format!(
            "returned an entry whose {name} is {}, not {expected:?}; it cannot be changed",
            show(&v)
        )),
    }
}

/// A field as it is (nil when absent; a raw read converts nothing, so it only fails when Lua
/// itself does, and nil then leads to a clear complaint about the field).
fn field(table: &Table, key: impl mlua::IntoLua) -> Value {
    table.raw_get(key).unwrap_or(Value::Nil)
}

/// A Lua value in a message.
fn show(v: &Value) -> String {
    match v {
        Value::Nil => "nil".into(),
        Value::Integer(n) => n.to_string(),
        Value::Number(f) => f.to_string(),
        Value::String(s) => escape(&s.as_bytes()),
        other => format!("a {}", other.type_name()),
    }
}
