//! RedisShake configs read as ferry tasks: a v4 `shake.toml` (`[sync_reader]`, `[scan_reader]`,
//! `[rdb_reader]`, `[redis_writer]`, `[filter]`, `[advanced]`, `[module]`), a v3 TOML
//! (`type = "scan"` at the top in 3.1, `[source] type = "sync"` in 3.0, `[target] type =
//! "cluster"`) and the flat `redis-shake.conf` of
//! v1/v2 (`source.address = ...`). [`convert`] turns one into a [`TaskSpec`] and one [`Note`]
//! per setting it read, saying how it was carried over, why not, or why ferry refuses the file
//! (a setting whose meaning ferry cannot honour: running anyway would silently differ).
//! [`Converted::to_toml`] writes the ferry config with those notes as comments.
//!
//! Pure: no file is read and no environment is looked at here. RedisShake replaces `${VAR}` in
//! its files with the environment's value; the caller passes the lookup.

mod legacy;
mod v4;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use toml::{Table, Value};

use super::{ServerUrl, TaskSpec};
use crate::error::Error;

/// Which RedisShake config format a file is written in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dialect {
    /// `shake.toml` of RedisShake 4: `[sync_reader]`, `[redis_writer]`, ...
    V4,
    /// RedisShake 3's TOML: `type = "sync"` (3.1; `[source] type` in 3.0), `[target] type =
    /// "standalone"`.
    V3,
    /// The flat `redis-shake.conf` of RedisShake 1 and 2: `source.address = host:port`.
    Flat,
}

impl Dialect {
    pub fn describe(self) -> &'static str {
        match self {
            Dialect::V4 => "RedisShake v4 config (shake.toml)",
            Dialect::V3 => "RedisShake v3 config (redis-shake.toml)",
            Dialect::Flat => "RedisShake v2 config (redis-shake.conf)",
        }
    }
}

/// What became of one setting of the RedisShake file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Carried over with the same meaning: the ferry setting (`[sync] full_only = true`), or
    /// why none is needed.
    Mapped(String),
    /// Carried over, but ferry behaves differently in a way the user should know: where to,
    /// and the difference.
    Differs(String),
    /// Not carried over: no equivalent, and nothing about the data synced changes.
    Ignored(String),
    /// At RedisShake's default (or empty): nothing to carry over.
    Default,
    /// Not a RedisShake setting of this format; RedisShake ignores it too.
    Unknown,
    /// Cannot be honoured, and running without it would change what is synced: ferry refuses.
    Refused(String),
}

/// One setting of the RedisShake file and what became of it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    /// As written in the file: `[advanced] ncpu`, `source.address`.
    pub setting: String,
    pub outcome: Outcome,
}

impl Note {
    /// One line for a log or a comment.
    pub fn line(&self) -> String {
        match &self.outcome {
            Outcome::Mapped(to) => format!("{} → {to}", self.setting),
            Outcome::Differs(why) if why.starts_with('→') => format!("{} {why}", self.setting),
            Outcome::Differs(why) => format!("{}: {why}", self.setting),
            Outcome::Ignored(why) => format!("{}: not carried over: {why}", self.setting),
            Outcome::Default => format!("{}: at RedisShake's default", self.setting),
            Outcome::Unknown => format!(
                "{}: not a RedisShake setting ferry knows; ignored (RedisShake ignores it too)",
                self.setting
            ),
            Outcome::Refused(why) => format!("{}: {why}", self.setting),
        }
    }

    /// Whether a user running this file should be told (a log line), not just a comment.
    pub fn worth_telling(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Differs(_) | Outcome::Ignored(_) | Outcome::Unknown
        )
    }
}

/// Where a server's password came from in the RedisShake file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum PasswordFrom {
    #[default]
    None,
    /// Written in the file.
    File,
    /// From `${VAR}`, replaced by the environment.
    Env(String),
}

/// A RedisShake file as a ferry task.
#[derive(Clone, Debug)]
pub struct Converted {
    pub dialect: Dialect,
    /// The task, passwords included; settings refused are left out.
    pub spec: TaskSpec,
    /// Every setting read, in file order.
    pub notes: Vec<Note>,
    pub source_password: PasswordFrom,
    pub target_password: PasswordFrom,
}

impl Converted {
    pub fn refused(&self) -> impl Iterator<Item = &Note> {
        self.notes
            .iter()
            .filter(|n| matches!(n.outcome, Outcome::Refused(_)))
    }

    /// The task, or the error naming every setting ferry cannot honour.
    pub fn into_spec(self) -> Result<TaskSpec, Error> {
        let refused: Vec<String> = self.refused().map(Note::line).collect();
        if refused.is_empty() {
            return Ok(self.spec);
        }
        Err(Error::Config(format!(
            "this {} cannot run as it is: {}",
            self.dialect.describe(),
            refused.join("; ")
        )))
    }

    /// The ferry config, with a comment on every setting that did not carry over as it was.
    /// A password written in the RedisShake file is written here too (it is no more exposed
    /// than it was); one taken from the environment is not: a comment says where it went.
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "# ferry config written by `ferry config convert` from a {}.",
            self.dialect.describe()
        );
        let section = |out: &mut String, title: &str, keep: &dyn Fn(&Outcome) -> bool| {
            let lines: Vec<String> = self
                .notes
                .iter()
                .filter(|n| keep(&n.outcome))
                .map(Note::line)
                .collect();
            if !lines.is_empty() {
                let _ = writeln!(out, "#\n# {title}");
                for line in lines {
                    for (i, part) in wrap(&line, 92).into_iter().enumerate() {
                        let lead = if i == 0 { "#   " } else { "#       " };
                        let _ = writeln!(out, "{lead}{part}");
                    }
                }
            }
        };
        section(
            &mut out,
            "REFUSED: ferry sync refuses the RedisShake file for these, and this config runs without them:",
            &|o| matches!(o, Outcome::Refused(_)),
        );
        section(&mut out, "Carried over as they were:", &|o| {
            matches!(o, Outcome::Mapped(_))
        });
        section(&mut out, "Carried over, with a difference:", &|o| {
            matches!(o, Outcome::Differs(_))
        });
        section(
            &mut out,
            "Not carried over (no equivalent in ferry):",
            &|o| matches!(o, Outcome::Ignored(_) | Outcome::Unknown),
        );
        let defaults: Vec<&str> = self
            .notes
            .iter()
            .filter(|n| n.outcome == Outcome::Default)
            .map(|n| n.setting.as_str())
            .collect();
        if !defaults.is_empty() {
            let _ = writeln!(out, "#\n# At RedisShake's defaults, nothing to carry over:");
            for part in wrap(&defaults.join(", "), 92) {
                let _ = writeln!(out, "#   {part}");
            }
        }
        for (role, from) in [
            ("source", &self.source_password),
            ("target", &self.target_password),
        ] {
            if let PasswordFrom::Env(var) = from {
                let _ = writeln!(
                    out,
                    "#\n# The {role}'s password came from ${{{var}}} in the RedisShake file: it is read from there\n#   at start ([{role}] password_env), not written here."
                );
            }
        }
        out.push('\n');
        out.push_str(&self.body());
        out
    }

    /// The spec as TOML, with the passwords that were written in the RedisShake file: the
    /// servers first, then the other sections, each only with what it sets.
    fn body(&self) -> String {
        let Ok(Value::Table(mut table)) = Value::try_from(&self.spec) else {
            return self.spec.to_toml();
        };
        for (role, from) in [
            ("source", &self.source_password),
            ("target", &self.target_password),
        ] {
            let url = match role {
                "source" => &self.spec.source.url,
                _ => &self.spec.target.url,
            };
            let Some(Value::Table(section)) = table.get_mut(role) else {
                continue;
            };
            match (from, url) {
                (PasswordFrom::File, Some(url)) => {
                    section.insert("url".into(), Value::String(url.expose()));
                }
                // Read from the same variable when the task starts.
                (PasswordFrom::Env(var), Some(_)) => {
                    section.insert("password_env".into(), Value::String(var.clone()));
                }
                _ => {}
            }
        }
        prune(&mut table);
        let mut out = String::new();
        let first = [
            "source",
            "target",
            "more_targets",
            "sync",
            "filter",
            "limit",
            "advanced",
        ];
        let rest: Vec<String> = table
            .keys()
            .filter(|k| !first.contains(&k.as_str()))
            .cloned()
            .collect();
        for key in first.iter().map(|k| k.to_string()).chain(rest) {
            if let Some(v) = table.remove(&key) {
                let mut one = Table::new();
                one.insert(key, v);
                out.push_str(&toml::to_string(&one).unwrap_or_default());
                out.push('\n');
            }
        }
        out
    }
}

/// Drops empty lists and tables: a setting left at its default says nothing.
fn prune(table: &mut Table) {
    for (_, v) in table.iter_mut() {
        if let Value::Table(t) = v {
            prune(t);
        }
    }
    table.retain(|_, v| match v {
        Value::Table(t) => !t.is_empty(),
        Value::Array(a) => !a.is_empty(),
        _ => true,
    });
}

/// Which RedisShake format `text` is in, or `None` when it is not a RedisShake file (a ferry
/// config, or not a config at all).
pub fn detect(text: &str) -> Option<Dialect> {
    match text.parse::<Table>() {
        Ok(table) => {
            if v4::READERS
                .iter()
                .chain(v4::WRITERS)
                .any(|(name, _)| table.contains_key(*name))
            {
                return Some(Dialect::V4);
            }
            let has = |section: &str, keys: &[&str]| {
                table
                    .get(section)
                    .and_then(Value::as_table)
                    .is_some_and(|t| keys.iter().any(|k| t.contains_key(*k)))
            };
            if has("source", &["type", "address", "rdb_file_path"])
                || has("target", &["type", "address"])
            {
                return Some(Dialect::V3);
            }
            None
        }
        // The flat format is not TOML (`source.type = standalone`): known keys say it is one.
        Err(_) => text
            .lines()
            .filter_map(|l| l.split_once('='))
            .any(|(k, _)| {
                let k = k.trim();
                k == "conf.version" || k == "source.address" || k == "target.address"
            })
            .then_some(Dialect::Flat),
    }
}

/// Reads a RedisShake file. `env` looks up `${VAR}`s (RedisShake replaces them with the
/// environment's values; an unset one stays as written). An error is a file that cannot be
/// read as its format (a value of the wrong type, no reader or writer); settings ferry cannot
/// honour are notes, which [`Converted::into_spec`] turns into an error.
pub fn convert(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Converted, Error> {
    match detect(text) {
        Some(Dialect::V4) => v4::convert(parse(text)?, env),
        Some(Dialect::V3) => legacy::convert_v3(parse(text)?, env),
        Some(Dialect::Flat) => legacy::convert_flat(text, env),
        None => Err(Error::Config(
            "not a RedisShake config: no [sync_reader], [scan_reader], [rdb_reader] or [redis_writer] (v4), no [source] type (v3), no source.address (v2)"
                .into(),
        )),
    }
}

fn parse(text: &str) -> Result<Table, Error> {
    text.parse::<Table>()
        .map_err(|e| Error::Config(format!("not valid TOML: {}", e.message().trim())))
}

/// RedisShake's `${VAR}` replacement: set and non-empty variables only; others stay as written.
/// Returns the text and the first variable replaced.
pub(crate) fn substitute(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> (String, Option<String>) {
    let mut out = String::new();
    let mut first = None;
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let name_len = after.find('}').filter(|&n| {
            n > 0
                && after[..n].chars().enumerate().all(|(i, c)| {
                    c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit())
                })
        });
        match name_len.and_then(|n| Some((n, env(&after[..n]).filter(|v| !v.is_empty())?))) {
            Some((n, value)) => {
                out.push_str(&value);
                first.get_or_insert_with(|| after[..n].to_string());
                rest = &after[n + 1..];
            }
            None => {
                out.push_str("${");
                rest = after;
            }
        }
    }
    out.push_str(rest);
    (out, first)
}

/// A server's address and login as RedisShake gives them, as a ferry URL.
pub(crate) struct Login<'a> {
    pub address: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub tls: bool,
}

impl Login<'_> {
    pub fn url(&self) -> ServerUrl {
        self.url_with(if self.tls { "rediss" } else { "redis" }, self.address)
    }

    /// `redis+sentinel://[login@]sentinels/master`.
    pub fn sentinel_url(&self, master: &str) -> ServerUrl {
        let scheme = if self.tls {
            "rediss+sentinel"
        } else {
            "redis+sentinel"
        };
        self.url_with(scheme, &format!("{}/{master}", self.address))
    }

    fn url_with(&self, scheme: &str, rest: &str) -> ServerUrl {
        let login = match (self.username.is_empty(), self.password.is_empty()) {
            // No password (with or without a user): RedisShake then sends no AUTH at all.
            (_, true) => String::new(),
            (true, false) => format!(":{}@", encode(self.password)),
            (false, false) => format!("{}:{}@", encode(self.username), encode(self.password)),
        };
        ServerUrl::new(&format!("{scheme}://{login}{rest}"))
    }
}

/// Percent-encodes all but unreserved characters, so a password with `@`, `/` or `:` survives
/// the URL (ferry decodes it again).
fn encode(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => {
                let _ = write!(out, "%{b:02X}");
            }
        }
    }
    out
}

/// Values of one table read one key at a time; what is left at the end was not recognised.
/// Strings have `${VAR}` replaced.
pub(crate) struct Section<'a> {
    /// `[sync_reader]` as written in notes.
    pub name: String,
    table: BTreeMap<String, Value>,
    env: &'a dyn Fn(&str) -> Option<String>,
    /// Where each string's first `${VAR}` came from.
    pub env_vars: BTreeMap<String, String>,
}

impl<'a> Section<'a> {
    pub fn new(name: &str, table: Table, env: &'a dyn Fn(&str) -> Option<String>) -> Section<'a> {
        Section {
            name: name.to_string(),
            table: table.into_iter().collect(),
            env,
            env_vars: BTreeMap::new(),
        }
    }

    pub fn setting(&self, key: &str) -> String {
        if self.name.is_empty() {
            key.to_string()
        } else {
            format!("{} {key}", self.name)
        }
    }

    fn wrong(&self, key: &str, expected: &str, found: &Value) -> Error {
        Error::Config(format!(
            "{} must be {expected}, not {found}",
            self.setting(key)
        ))
    }

    pub fn has(&self, key: &str) -> bool {
        self.table.contains_key(key)
    }

    pub fn str(&mut self, key: &str) -> Result<Option<String>, Error> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::String(s)) => {
                let (text, var) = substitute(&s, self.env);
                if let Some(var) = var {
                    self.env_vars.insert(key.to_string(), var);
                }
                Ok(Some(text))
            }
            Some(v) => Err(self.wrong(key, "a string", &v)),
        }
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, Error> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(b)),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
            Some(v) => Err(self.wrong(key, "true or false", &v)),
        }
    }

    pub fn int(&mut self, key: &str) -> Result<Option<i64>, Error> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(Value::Integer(i)) => Ok(Some(i)),
            Some(v) => Err(self.wrong(key, "a whole number", &v)),
        }
    }

    pub fn strings(&mut self, key: &str) -> Result<Vec<String>, Error> {
        match self.table.remove(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::String(s) => Ok(substitute(&s, self.env).0),
                    v => Err(self.wrong(key, "a list of strings", &v)),
                })
                .collect(),
            Some(v) => Err(self.wrong(key, "a list of strings", &v)),
        }
    }

    pub fn ints(&mut self, key: &str) -> Result<Vec<i64>, Error> {
        match self.table.remove(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .into_iter()
                .map(|v| match v {
                    Value::Integer(i) => Ok(i),
                    v => Err(self.wrong(key, "a list of numbers", &v)),
                })
                .collect(),
            Some(v) => Err(self.wrong(key, "a list of numbers", &v)),
        }
    }

    /// Takes a key whatever its value, and whether it holds something other than `default`
    /// (the value as RedisShake writes its default) or emptiness.
    pub fn raw(&mut self, key: &str, default: Option<Value>) -> Option<(Value, bool)> {
        let v = self.table.remove(key)?;
        let empty = match &v {
            Value::String(s) => s.is_empty(),
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        let set = !empty && default.as_ref() != Some(&v);
        Some((v, set))
    }

    /// Takes every key left, named in one string (for a section refused as a whole).
    pub fn keys(&mut self) -> String {
        let keys: Vec<String> = std::mem::take(&mut self.table).into_keys().collect();
        match keys.is_empty() {
            true => "empty".into(),
            false => keys.join(", "),
        }
    }

    /// The keys no one took, as notes.
    pub fn leftovers(&mut self, notes: &mut Vec<Note>) {
        for key in std::mem::take(&mut self.table).into_keys() {
            notes.push(Note {
                setting: self.setting(&key),
                outcome: Outcome::Unknown,
            });
        }
    }
}

/// Builds notes for one section.
pub(crate) struct Notes(pub Vec<Note>);

impl Notes {
    pub fn add(&mut self, setting: String, outcome: Outcome) {
        self.0.push(Note { setting, outcome });
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split(' ') {
        let line = lines.last_mut().expect("never empty");
        if !line.is_empty() && line.len() + 1 + word.len() > width {
            lines.push(word.to_string());
        } else {
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests;
