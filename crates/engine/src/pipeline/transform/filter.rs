//! What to sync: key, db, type, command and command-group rules, checked once when the config
//! is read (`Rules::build`) and then asked per key and per command. Pure: no I/O.
//!
//! The rules follow RedisShake's `[filter]`: block rules win; an allow list, once given for a
//! kind, lets only what it names through; the key lists (`*_keys`, `*_key_prefix`,
//! `*_key_suffix`, `*_key_regex`) together make one allow and one block list.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use bytes::Bytes;
use ferry_keyspace::Group;
use regex::bytes::RegexSet;

use crate::error::Error;
use crate::spec::FilterSection;

/// Dbs a Redis server can have, at most (`databases` is capped far higher, but SELECT takes
/// what fits in an int and ferry's checkpoint names a db by number; 256 covers every real
/// deployment and keeps the tables small).
pub const MAX_DBS: u32 = 256;

/// Keys a list of exact names, prefixes, suffixes and regexes matches.
#[derive(Debug, Default)]
struct Patterns {
    exact: HashSet<Bytes>,
    prefix: Vec<Bytes>,
    suffix: Vec<Bytes>,
    regex: Option<RegexSet>,
}

impl Patterns {
    fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.prefix.is_empty()
            && self.suffix.is_empty()
            && self.regex.is_none()
    }

    fn matches(&self, key: &[u8]) -> bool {
        self.exact.contains(key)
            || self.prefix.iter().any(|p| key.starts_with(p))
            || self.suffix.iter().any(|s| key.ends_with(s))
            || self.regex.as_ref().is_some_and(|r| r.is_match(key))
    }
}

/// An allow list (None: not given, everything passes) and a block list.
#[derive(Debug)]
struct AllowBlock<T> {
    allow: Option<BTreeSet<T>>,
    block: BTreeSet<T>,
}

impl<T: Ord> Default for AllowBlock<T> {
    fn default() -> Self {
        AllowBlock {
            allow: None,
            block: BTreeSet::new(),
        }
    }
}

impl<T: Ord> AllowBlock<T> {
    fn passes(&self, item: &T) -> bool {
        !self.block.contains(item) && self.allow.as_ref().is_none_or(|a| a.contains(item))
    }

    fn is_empty(&self) -> bool {
        self.allow.is_none() && self.block.is_empty()
    }
}

/// Which db of the target each source db is written to.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DbMap {
    /// Source db → target db; a db not named keeps its number.
    map: BTreeMap<u32, u32>,
}

impl DbMap {
    pub fn new(map: BTreeMap<u32, u32>) -> DbMap {
        DbMap { map }
    }

    /// The target db of source db `db`.
    pub fn target(&self, db: u32) -> u32 {
        if self.map.is_empty() {
            return db;
        }
        self.map.get(&db).copied().unwrap_or(db)
    }

    pub fn is_identity(&self) -> bool {
        self.map.iter().all(|(s, t)| s == t)
    }

    /// The explicit entries, source → target.
    pub fn entries(&self) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.map.iter().map(|(s, t)| (*s, *t))
    }
}

/// What the `[filter]` table asks for, checked.
#[derive(Debug, Default)]
pub struct Rules {
    allow_keys: Patterns,
    block_keys: Patterns,
    dbs: AllowBlock<u32>,
    types: AllowBlock<String>,
    commands: AllowBlock<String>,
    groups: AllowBlock<&'static str>,
    pub db_map: DbMap,
    /// Added to every expiry written to the target, in ms.
    pub ttl_extend_ms: i64,
}

/// The types `allow_type`/`block_type` accept: what `TYPE` answers.
const TYPES: &[&str] = &["string", "list", "set", "zset", "hash", "stream", "module"];

impl Rules {
    /// Checks the section: every regex compiles, every db, type and group exists, and no item
    /// is both allowed and blocked. Errors name the option.
    pub fn build(section: &FilterSection) -> Result<Rules, Error> {
        let s = section;
        let allow_keys = patterns(
            "allow",
            &s.allow_keys,
            &s.allow_key_prefix,
            &s.allow_key_suffix,
            &s.allow_key_regex,
        )?;
        let block_keys = patterns(
            "block",
            &s.block_keys,
            &s.block_key_prefix,
            &s.block_key_suffix,
            &s.block_key_regex,
        )?;
        for (kind, allow, block) in [
            ("keys", &s.allow_keys, &s.block_keys),
            ("key_prefix", &s.allow_key_prefix, &s.block_key_prefix),
            ("key_suffix", &s.allow_key_suffix, &s.block_key_suffix),
            ("key_regex", &s.allow_key_regex, &s.block_key_regex),
        ] {
            both_lists(kind, allow, block)?;
        }
        let db =
            |name: &str, list: &[i64]| -> Result<Vec<u32>, Error> {
                list.iter()
                    .map(|&d| {
                        u32::try_from(d).ok().filter(|d| *d < MAX_DBS).ok_or_else(|| {
                        Error::Config(format!(
                            "filter.{name}: db {d} does not exist; dbs are numbered 0 to {}",
                            MAX_DBS - 1
                        ))
                    })
                    })
                    .collect()
            };
        let dbs = allow_block(
            "db",
            db("allow_db", &s.allow_db)?,
            db("block_db", &s.block_db)?,
        )?;
        let types = |name: &str, list: &[String]| -> Result<Vec<String>, Error> {
            list.iter()
                .map(|t| {
                    let lower = t.to_ascii_lowercase();
                    TYPES
                        .contains(&lower.as_str())
                        .then_some(lower)
                        .ok_or_else(|| {
                            Error::Config(format!(
                                "filter.{name}: {t:?} is not a type; write one of {}",
                                TYPES.join(", ")
                            ))
                        })
                })
                .collect()
        };
        let types = allow_block(
            "type",
            types("allow_type", &s.allow_type)?,
            types("block_type", &s.block_type)?,
        )?;
        let upper = |list: &[String]| list.iter().map(|c| c.to_ascii_uppercase()).collect();
        let commands = allow_block("command", upper(&s.allow_command), upper(&s.block_command))?;
        let group = |name: &str, list: &[String]| -> Result<Vec<&'static str>, Error> {
            list.iter()
                .map(|g| {
                    Group::parse(g).map(Group::name).ok_or_else(|| {
                        Error::Config(format!(
                            "filter.{name}: {g:?} is not a Redis command group; write one of {}",
                            ferry_keyspace::GROUPS
                                .iter()
                                .map(|g| g.name())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ))
                    })
                })
                .collect()
        };
        let groups = allow_block(
            "command_group",
            group("allow_command_group", &s.allow_command_group)?,
            group("block_command_group", &s.block_command_group)?,
        )?;
        let mut map = BTreeMap::new();
        for (from, &to) in &s.db_map {
            let source = from.trim().parse::<u32>().ok().filter(|d| *d < MAX_DBS);
            let target = u32::try_from(to).ok().filter(|d| *d < MAX_DBS);
            match (source, target) {
                (Some(source), Some(target)) => {
                    map.insert(source, target);
                }
                _ => {
                    return Err(Error::Config(format!(
                        "filter.db_map: \"{from}\" = {to} is not a pair of dbs: write source = target with numbers 0 to {}, e.g. {{ \"1\" = 5 }}",
                        MAX_DBS - 1
                    )));
                }
            }
        }
        let ttl_extend_ms = match s.ttl_extend {
            None => 0,
            // Ten years: beyond that an absolute expiry in ms starts to look like a mistake.
            Some(secs) if secs <= 10 * 365 * 86_400 => (secs * 1000) as i64,
            Some(secs) => {
                return Err(Error::Config(format!(
                    "filter.ttl_extend = {secs} s is more than ten years; give the seconds to add to every expiry"
                )));
            }
        };
        Ok(Rules {
            allow_keys,
            block_keys,
            dbs,
            types,
            commands,
            groups,
            db_map: DbMap::new(map),
            ttl_extend_ms,
        })
    }

    /// Whether the rules change nothing: every entry passes as it is.
    pub fn is_noop(&self) -> bool {
        self.allow_keys.is_empty()
            && self.block_keys.is_empty()
            && self.dbs.is_empty()
            && self.types.is_empty()
            && self.commands.is_empty()
            && self.groups.is_empty()
            && self.db_map.is_identity()
            && self.ttl_extend_ms == 0
    }

    /// Whether some key rule is given (else every key passes, and commands need no look at
    /// their keys).
    pub fn has_key_rules(&self) -> bool {
        !self.allow_keys.is_empty() || !self.block_keys.is_empty()
    }

    pub fn key_passes(&self, key: &[u8]) -> bool {
        !self.block_keys.matches(key)
            && (self.allow_keys.is_empty() || self.allow_keys.matches(key))
    }

    pub fn db_passes(&self, db: u32) -> bool {
        self.dbs.passes(&db)
    }

    /// Whether some db rule or map is given (FLUSHALL then has to name the dbs it empties).
    pub fn has_db_rules(&self) -> bool {
        !self.dbs.is_empty() || !self.db_map.is_identity()
    }

    pub fn type_passes(&self, kind: &str) -> bool {
        self.types.passes(&kind.to_string())
    }

    pub fn has_type_rules(&self) -> bool {
        !self.types.is_empty()
    }

    /// By name (upper case) and by the command's group; a command without a known group (a
    /// module's) passes only when no group is allowed explicitly.
    pub fn command_passes(&self, upper_name: &str, group: Option<Group>) -> bool {
        if !self.commands.passes(&upper_name.to_string()) {
            return false;
        }
        match group {
            Some(g) => self.groups.passes(&g.name()),
            None => self.groups.allow.is_none(),
        }
    }

    /// The source dbs that pass, among `0..dbs`.
    pub fn passing_dbs(&self, dbs: u32) -> impl Iterator<Item = u32> + '_ {
        (0..dbs.min(MAX_DBS)).filter(|d| self.db_passes(*d))
    }

    /// Other source dbs that pass and are written into the same target db as `db`, among
    /// `0..dbs`: a FLUSHDB or SWAPDB of `db` on the target would touch their keys too.
    pub fn sharing_target(&self, db: u32, dbs: u32) -> Vec<u32> {
        let target = self.db_map.target(db);
        self.passing_dbs(dbs)
            .filter(|&d| d != db && self.db_map.target(d) == target)
            .collect()
    }
}

fn allow_block<T: Ord + Clone + std::fmt::Debug>(
    kind: &str,
    allow: Vec<T>,
    block: Vec<T>,
) -> Result<AllowBlock<T>, Error> {
    let allow: BTreeSet<T> = allow.into_iter().collect();
    let block: BTreeSet<T> = block.into_iter().collect();
    if let Some(both) = allow.intersection(&block).next() {
        return Err(Error::Config(format!(
            "filter.allow_{kind} and filter.block_{kind} both name {both:?}; block rules win, so remove it from one of them"
        )));
    }
    Ok(AllowBlock {
        allow: (!allow.is_empty()).then_some(allow),
        block,
    })
}

fn both_lists(kind: &str, allow: &[String], block: &[String]) -> Result<(), Error> {
    match allow.iter().find(|a| block.contains(a)) {
        Some(both) => Err(Error::Config(format!(
            "filter.allow_{kind} and filter.block_{kind} both name {both:?}; block rules win, so remove it from one of them"
        ))),
        None => Ok(()),
    }
}

fn patterns(
    side: &str,
    exact: &[String],
    prefix: &[String],
    suffix: &[String],
    regex: &[String],
) -> Result<Patterns, Error> {
    let bytes = |l: &[String]| l.iter().map(|s| Bytes::from(s.clone())).collect::<Vec<_>>();
    for (i, r) in regex.iter().enumerate() {
        if let Err(e) = regex::bytes::Regex::new(r) {
            let why = e.to_string();
            let why = why.lines().last().unwrap_or("").trim();
            return Err(Error::Config(format!(
                "filter.{side}_key_regex[{i}] {r:?} is not a valid regular expression: {why}"
            )));
        }
    }
    let regex = match regex {
        [] => None,
        list => Some(RegexSet::new(list).map_err(|e| {
            Error::Config(format!(
                "filter.{side}_key_regex: {}",
                e.to_string().lines().last().unwrap_or("").trim()
            ))
        })?),
    };
    Ok(Patterns {
        exact: bytes(exact).into_iter().collect(),
        prefix: bytes(prefix),
        suffix: bytes(suffix),
        regex,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(toml_text: &str) -> Result<Rules, String> {
        let s: FilterSection = toml::from_str(toml_text).map_err(|e| e.to_string())?;
        Rules::build(&s).map_err(|e| e.to_string())
    }

    #[test]
    fn keys_pass_by_allow_lists_and_block_lists_win() {
        let r = rules(
            r#"
            allow_key_prefix = ["user:", "order:"]
            allow_keys = ["config"]
            block_key_suffix = [":tmp"]
            block_key_regex = ["^user:\\d+:secret"]
            "#,
        )
        .unwrap();
        assert!(r.key_passes(b"user:1"));
        assert!(r.key_passes(b"config"));
        assert!(!r.key_passes(b"configx"));
        assert!(!r.key_passes(b"cache:1"));
        assert!(!r.key_passes(b"user:1:tmp"));
        assert!(!r.key_passes(b"user:42:secret"));
        assert!(r.key_passes(b"user:x:secret"));
        // Regexes search anywhere in the key, as RedisShake's (Go's MatchString) do.
        let r = rules(r#"allow_key_regex = [":\\d{3}:"]"#).unwrap();
        assert!(r.key_passes(b"a:123:b") && !r.key_passes(b"a:12:b"));
        // Nothing given: everything passes, and the rules do nothing.
        let r = rules("").unwrap();
        assert!(r.key_passes(b"anything") && r.is_noop());
    }

    #[test]
    fn dbs_types_commands_and_groups() {
        let r = rules(
            r#"
            block_db = [3]
            allow_type = ["string", "HASH"]
            block_command = ["flushall"]
            block_command_group = ["SCRIPTING"]
            "#,
        )
        .unwrap();
        assert!(r.db_passes(0) && !r.db_passes(3));
        assert!(r.type_passes("hash") && !r.type_passes("list"));
        assert!(!r.command_passes("FLUSHALL", Some(Group::Server)));
        assert!(r.command_passes("FLUSHDB", Some(Group::Server)));
        assert!(!r.command_passes("EVAL", Some(Group::Scripting)));
        assert!(r.command_passes("JSON.SET", None));
        let r = rules(r#"allow_command_group = ["string"]"#).unwrap();
        assert!(r.command_passes("SET", Some(Group::String)));
        assert!(!r.command_passes("JSON.SET", None));
        assert!(!r.command_passes("LPUSH", Some(Group::List)));
    }

    #[test]
    fn db_map_and_sharing() {
        let r = rules("allow_db = [1, 2]\ndb_map = { \"1\" = 5, \"2\" = 5 }").unwrap();
        assert_eq!(r.db_map.target(1), 5);
        assert_eq!(r.db_map.target(0), 0);
        assert_eq!(r.sharing_target(1, 16), [2]);
        let r = rules("db_map = { \"1\" = 5 }").unwrap();
        // Source db 5 still goes to target db 5, with source db 1.
        assert_eq!(r.sharing_target(1, 16), [5]);
        assert!(r.sharing_target(2, 16).is_empty());
        assert!(!r.is_noop());
    }

    #[test]
    fn errors_name_the_option() {
        let e = rules(r#"allow_key_regex = ["user:(\\d+"]"#).unwrap_err();
        assert!(
            e.starts_with(
                "filter.allow_key_regex[0] \"user:(\\\\d+\" is not a valid regular expression"
            ),
            "{e}"
        );
        assert!(!e.contains('\n'), "{e}");
        let e = rules("allow_db = [1]\nblock_db = [1, 2]").unwrap_err();
        assert!(
            e.contains("filter.allow_db and filter.block_db both name 1"),
            "{e}"
        );
        let e = rules("allow_key_prefix = [\"a\"]\nblock_key_prefix = [\"a\"]").unwrap_err();
        assert!(
            e.contains("allow_key_prefix and filter.block_key_prefix"),
            "{e}"
        );
        let e = rules("block_db = [300]").unwrap_err();
        assert!(e.contains("filter.block_db: db 300 does not exist"), "{e}");
        let e = rules("allow_db = [-1]").unwrap_err();
        assert!(e.contains("filter.allow_db: db -1"), "{e}");
        let e = rules("block_type = [\"vector\"]").unwrap_err();
        assert!(
            e.contains("filter.block_type: \"vector\" is not a type"),
            "{e}"
        );
        let e = rules("allow_command_group = [\"strings\"]").unwrap_err();
        assert!(
            e.contains("\"strings\" is not a Redis command group"),
            "{e}"
        );
        let e = rules("db_map = { \"one\" = 5 }").unwrap_err();
        assert!(e.contains("filter.db_map: \"one\" = 5"), "{e}");
        let e = rules("db_map = { \"1\" = 256 }").unwrap_err();
        assert!(e.contains("filter.db_map"), "{e}");
        let e = rules("ttl_extend = 999999999999").unwrap_err();
        assert!(e.contains("filter.ttl_extend"), "{e}");
        // Allow and block of one kind together are fine (RedisShake: block first, then allow).
        rules("allow_key_prefix = [\"user:\"]\nblock_key_prefix = [\"user:tmp:\"]").unwrap();
    }
}
