//! The command group of each replicated command, as Redis names them in `COMMAND DOCS`
//! (`string`, `list`, `sorted_set`, `generic`...), and the type of value a group works on.

/// A command group, as Redis's command table names it.
///
/// Obtained with [`group`]; [`Group::parse`] reads a name as users write it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    /// Keys of any type: `DEL`, `EXPIRE`, `RENAME`, `RESTORE`, `COPY`, `SORT`...
    Generic,
    /// `SET`, `INCR`, `APPEND`, `MSET`...
    String,
    /// `SETBIT`, `BITFIELD`, `BITOP`.
    Bitmap,
    /// `LPUSH`, `LMOVE`, `BLPOP`...
    List,
    /// `SADD`, `SMOVE`, `SUNIONSTORE`...
    Set,
    /// `ZADD`, `ZUNIONSTORE`, `BZPOPMIN`...
    SortedSet,
    /// `HSET`, `HEXPIRE`...
    Hash,
    /// `XADD`, `XGROUP`, `XCLAIM`...
    Stream,
    /// `PFADD`, `PFMERGE`...
    Hyperloglog,
    /// `GEOADD`, `GEOSEARCHSTORE`...
    Geo,
    /// `EVAL`, `FCALL`, `SCRIPT`, `FUNCTION`.
    Scripting,
    /// `PUBLISH`, `SPUBLISH`.
    Pubsub,
    /// `MULTI`, `EXEC`, `DISCARD`.
    Transactions,
    /// `FLUSHALL`, `FLUSHDB`, `SWAPDB`, `REPLCONF`.
    Server,
    /// `PING`, `SELECT`, `ECHO`.
    Connection,
}

/// Every group, in the order of Redis's documentation.
pub const GROUPS: &[Group] = &[
    Group::Generic,
    Group::String,
    Group::Bitmap,
    Group::List,
    Group::Set,
    Group::SortedSet,
    Group::Hash,
    Group::Stream,
    Group::Hyperloglog,
    Group::Geo,
    Group::Scripting,
    Group::Pubsub,
    Group::Transactions,
    Group::Server,
    Group::Connection,
];

impl Group {
    /// The name Redis gives it (`sorted_set`, `hyperloglog`...).
    pub fn name(self) -> &'static str {
        match self {
            Group::Generic => "generic",
            Group::String => "string",
            Group::Bitmap => "bitmap",
            Group::List => "list",
            Group::Set => "set",
            Group::SortedSet => "sorted_set",
            Group::Hash => "hash",
            Group::Stream => "stream",
            Group::Hyperloglog => "hyperloglog",
            Group::Geo => "geo",
            Group::Scripting => "scripting",
            Group::Pubsub => "pubsub",
            Group::Transactions => "transactions",
            Group::Server => "server",
            Group::Connection => "connection",
        }
    }

    /// A group from its name, in any case; `None` for a name Redis does not use.
    pub fn parse(name: &str) -> Option<Group> {
        GROUPS
            .iter()
            .copied()
            .find(|g| g.name().eq_ignore_ascii_case(name))
    }

    /// The type of value (as `TYPE` names it) that every key the group's commands write
    /// holds afterwards, or `None` when it depends on the key (`generic`) or there are no
    /// keys. Bitmaps and HyperLogLogs are strings; geo sets are sorted sets.
    pub fn value_type(self) -> Option<&'static str> {
        match self {
            Group::String | Group::Bitmap | Group::Hyperloglog => Some("string"),
            Group::List => Some("list"),
            Group::Set => Some("set"),
            Group::SortedSet | Group::Geo => Some("zset"),
            Group::Hash => Some("hash"),
            Group::Stream => Some("stream"),
            _ => None,
        }
    }
}

/// The group of the command named `name` (in any case), for every command a replication
/// stream can hold; `None` for one this crate does not know (a module's).
///
/// ```
/// use ferry_keyspace::{Group, group};
///
/// assert_eq!(group(b"zadd"), Some(Group::SortedSet));
/// assert_eq!(group(b"GEOADD").and_then(Group::value_type), Some("zset"));
/// assert_eq!(group(b"JSON.SET"), None);
/// ```
pub fn group(name: &[u8]) -> Option<Group> {
    let mut buf = [0u8; 24];
    let upper = buf.get_mut(..name.len())?;
    upper.copy_from_slice(name);
    upper.make_ascii_uppercase();
    use Group::*;
    Some(match &*upper {
        b"DEL" | b"UNLINK" | b"TOUCH" | b"EXISTS" | b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT"
        | b"PEXPIREAT" | b"PERSIST" | b"RESTORE" | b"RESTORE-ASKING" | b"MOVE" | b"RENAME"
        | b"RENAMENX" | b"COPY" | b"SORT" | b"SORT_RO" | b"MIGRATE" | b"WAIT" | b"WAITAOF" => {
            Generic
        }
        b"SET" | b"SETNX" | b"SETEX" | b"PSETEX" | b"GETSET" | b"GETEX" | b"GETDEL" | b"APPEND"
        | b"INCR" | b"DECR" | b"INCRBY" | b"DECRBY" | b"INCRBYFLOAT" | b"SETRANGE" | b"MSET"
        | b"MSETNX" | b"MSETEX" | b"MGET" | b"DELEX" | b"DELIFEQ" => String,
        b"SETBIT" | b"BITFIELD" | b"BITOP" => Bitmap,
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" | b"LPOP" | b"RPOP" | b"LINSERT" | b"LSET"
        | b"LREM" | b"LTRIM" | b"RPOPLPUSH" | b"BRPOPLPUSH" | b"LMOVE" | b"BLMOVE" | b"BLPOP"
        | b"BRPOP" | b"LMPOP" | b"BLMPOP" => List,
        b"SADD" | b"SREM" | b"SPOP" | b"SMOVE" | b"SUNIONSTORE" | b"SINTERSTORE"
        | b"SDIFFSTORE" | b"SINTERCARD" => Set,
        b"ZADD" | b"ZINCRBY" | b"ZREM" | b"ZREMRANGEBYLEX" | b"ZREMRANGEBYRANK"
        | b"ZREMRANGEBYSCORE" | b"ZPOPMIN" | b"ZPOPMAX" | b"BZPOPMIN" | b"BZPOPMAX" | b"ZMPOP"
        | b"BZMPOP" | b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" | b"ZRANGESTORE"
        | b"ZINTERCARD" | b"ZUNION" | b"ZINTER" | b"ZDIFF" => SortedSet,
        b"HSET" | b"HMSET" | b"HSETNX" | b"HINCRBY" | b"HINCRBYFLOAT" | b"HDEL" | b"HEXPIRE"
        | b"HPEXPIRE" | b"HEXPIREAT" | b"HPEXPIREAT" | b"HPERSIST" | b"HGETDEL" | b"HGETEX"
        | b"HSETEX" | b"HGETF" | b"HSETF" => Hash,
        b"XADD" | b"XDEL" | b"XDELEX" | b"XSETID" | b"XTRIM" | b"XACK" | b"XACKDEL" | b"XCLAIM"
        | b"XAUTOCLAIM" | b"XGROUP" | b"XREAD" | b"XREADGROUP" | b"XCFGSET" => Stream,
        b"PFADD" | b"PFCOUNT" | b"PFDEBUG" | b"PFMERGE" => Hyperloglog,
        b"GEOADD" | b"GEORADIUS" | b"GEORADIUSBYMEMBER" | b"GEOSEARCHSTORE" => Geo,
        b"EVAL" | b"EVALSHA" | b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL" | b"FCALL_RO" | b"SCRIPT"
        | b"FUNCTION" => Scripting,
        b"PUBLISH" | b"SPUBLISH" => Pubsub,
        b"MULTI" | b"EXEC" | b"DISCARD" => Transactions,
        b"FLUSHALL" | b"FLUSHDB" | b"SWAPDB" | b"REPLCONF" => Server,
        b"PING" | b"SELECT" | b"ECHO" => Connection,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for g in GROUPS {
            assert_eq!(Group::parse(g.name()), Some(*g));
            assert_eq!(Group::parse(&g.name().to_ascii_uppercase()), Some(*g));
        }
        assert_eq!(Group::parse("sortedset"), None);
    }

    /// Every command the key table knows has a group (and the vector-set commands, a
    /// module's in all but name, have none), so a group filter never lets a known command
    /// through by accident.
    #[test]
    fn every_known_command_has_a_group() {
        let rules = include_str!("keys.rs");
        let table =
            &rules[rules.find("fn rule(").unwrap()..rules.find("/// The arguments, with").unwrap()];
        let mut names = Vec::new();
        for part in table.split("b\"").skip(1) {
            let name = &part[..part.find('"').unwrap()];
            if name
                .chars()
                .all(|c| c.is_ascii_uppercase() || c == '_' || c == '-')
                && name.len() > 1
            {
                names.push(name.to_string());
            }
        }
        assert!(names.len() > 140, "{names:?}");
        for name in names {
            match name.as_str() {
                "VADD" | "VREM" | "VSETATTR" => assert_eq!(group(name.as_bytes()), None),
                _ => assert!(group(name.as_bytes()).is_some(), "{name} has no group"),
            }
        }
        assert_eq!(group(b"a-name-longer-than-any-command"), None);
    }
}
