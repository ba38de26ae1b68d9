//! Which arguments of a command are keys, which of them it writes, and whether the command
//! can be cut per slot.
//!
//! The table covers every command a Redis (2.8 to 8.6) or Valkey (7.2 to 9.x) primary can
//! put in its replication stream, plus the read commands whose keys move with their
//! arguments (`SINTERCARD`, `ZUNION`, `XREAD`, `EVAL_RO`...). The facts (positions, arity,
//! which key is written) are those of the servers' own command tables; the integration
//! test `tests/getkeys.rs` checks them against `COMMAND GETKEYS` of real servers.

use crate::slot::slot;

/// What a command's keys are, as far as routing it is concerned.
///
/// Obtained with [`keys`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Keys {
    /// No keys and no effect on data: `PING`, `REPLCONF`, `SELECT`, `MULTI`, `EXEC`,
    /// `PUBLISH`, `SCRIPT EXISTS`... Which db is selected is the caller's business, not
    /// this crate's.
    NoEffect,
    /// No keys, but an effect on the whole server or db: `FLUSHALL`, `FLUSHDB`,
    /// `SCRIPT LOAD`/`FLUSH`, `FUNCTION LOAD`/`DELETE`/`FLUSH`/`RESTORE`. On a cluster it
    /// must go to every master.
    Global,
    /// The command has keys; see [`KeyArgs`].
    Keyed(KeyArgs),
    /// The keys cannot be known, or the command cannot be routed by key at all: the reason
    /// says which and why. `SWAPDB` (whole databases), `SORT` with a `BY`/`GET` pattern
    /// (keys named by the data), a script that declares no keys. A standalone target can
    /// still apply such a command as it is; a cluster cannot.
    Unsupported(&'static str),
    /// The arguments are not a valid invocation of a command this crate knows (too few
    /// arguments, a bad `numkeys`...): a server would have refused it, so it cannot come
    /// from a replication stream intact.
    Malformed(&'static str),
    /// A command this crate does not know: a module's (`JSON.SET`, `BF.ADD`) or one newer
    /// than the crate. Callers may assume the first argument is the key, and should say
    /// that they did.
    Unknown,
}

/// The key arguments of a command: never empty.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyArgs {
    keys: Vec<KeyArg>,
    kind: Kind,
    other_db: bool,
}

/// One key argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyArg {
    /// Its index in the command's arguments (the command name is index 0), so a caller can
    /// replace the key with another name.
    pub index: usize,
    /// What the command does to it.
    pub access: Access,
}

/// What a command does to one of its keys.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Access {
    /// Read only: a source the command does not change (`SUNIONSTORE`'s sources, `COPY`'s
    /// source, every key of `EXISTS` or `XREAD`).
    Read,
    /// Written: where the command puts its result. The destination of a multi-key command
    /// (`RENAME`'s new name, `SMOVE`'s and `LMOVE`'s target, `SUNIONSTORE`'s and
    /// `PFMERGE`'s destination, which some of them also read), and the key of every
    /// single-key write and of `DEL`, `MSET`...
    Write,
    /// A source that the command also changes: `RENAME`'s old name (deleted), the source of
    /// `SMOVE`, `RPOPLPUSH`, `LMOVE` (an element taken away), the keys `BLPOP` or `LMPOP`
    /// may pop from, the keys a script declares (it may write any of them).
    ReadWrite,
}

impl Access {
    /// Whether the command may change the key.
    pub fn is_written(self) -> bool {
        self != Access::Read
    }
}

/// How a command with keys relates to the slots its keys are in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// Exactly one key: it goes where that key is.
    Single,
    /// Several keys that the command treats one by one (`DEL`, `UNLINK`, `TOUCH`,
    /// `EXISTS`, `MGET`, `MSET`, `MSETNX`, `MSETEX`): one command per slot, each with the
    /// keys of that slot, has the same effect. See [`crate::split_by_slot`].
    Split,
    /// Several keys whose effect depends on each other (`RENAME`, `SUNIONSTORE`, `LMPOP`,
    /// `EVAL`...): it cannot be cut. When the keys are in different slots of a cluster, the
    /// caller has to compute each written key's new value and write them itself, in
    /// [`KeyArgs::written_in_apply_order`].
    Combine,
}

impl KeyArgs {
    /// The key arguments, in argument order.
    pub fn keys(&self) -> &[KeyArg] {
        &self.keys
    }

    /// The indexes of the key arguments, in argument order.
    pub fn positions(&self) -> impl Iterator<Item = usize> + '_ {
        self.keys.iter().map(|k| k.index)
    }

    /// The indexes of the keys the command may change, in argument order.
    pub fn written(&self) -> impl Iterator<Item = usize> + '_ {
        self.keys
            .iter()
            .filter(|k| k.access.is_written())
            .map(|k| k.index)
    }

    /// Whether the command can be cut per key, must stay whole, or has a single key.
    ///
    /// A command whose syntax allows several keys but that names one (`DEL k`, `BLPOP k 0`)
    /// is [`Kind::Single`].
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Whether the command also writes into another database (`MOVE`, `COPY ... DB n`).
    /// A Redis cluster has only db 0, so such a command has no equivalent there; a
    /// standalone target (or a Valkey 9 cluster with several dbs) can apply it as it is.
    pub fn other_db(&self) -> bool {
        self.other_db
    }

    /// The indexes of the written keys in the order their new values should be applied
    /// when a [`Kind::Combine`] command is carried out key by key (its keys in different
    /// slots of a cluster): destinations ([`Access::Write`]) first, then the sources the
    /// command also changes ([`Access::ReadWrite`]), each group in argument order.
    ///
    /// Why: until a source is changed, the command's inputs are all still there. If ferry
    /// stops between two writes and replays the command, it finds the same inputs and
    /// computes the same destination again. Changing a source first (deleting `RENAME`'s
    /// old name, popping `LMOVE`'s element) would lose the value the replay needs.
    /// For `RENAME a b`: `b` (written with `a`'s value), then `a` (deleted). For
    /// `SMOVE src dst m` and `LMOVE src dst ...`: `dst`, then `src`.
    ///
    /// The same key may appear twice (`LMOVE k k LEFT RIGHT`); callers compare names.
    pub fn written_in_apply_order(&self) -> Vec<usize> {
        let of = |access| {
            self.keys
                .iter()
                .filter(move |k| k.access == access)
                .map(|k| k.index)
        };
        of(Access::Write).chain(of(Access::ReadWrite)).collect()
    }

    /// The slot all the keys are in, or `None` when they are in several: then a
    /// [`Kind::Combine`] command cannot go to a cluster as it is, and a [`Kind::Split`] one
    /// has to be cut. `args` must be the arguments the keys were found in.
    pub fn slot<A: AsRef<[u8]>>(&self, args: &[A]) -> Option<u16> {
        let mut slots = self
            .keys
            .iter()
            .map(|k| args.get(k.index).map(|a| slot(a.as_ref())));
        let first = slots.next()??;
        slots.all(|s| s == Some(first)).then_some(first)
    }
}

/// The keys of the command `args` (its name first, in any case).
///
/// Never panics, whatever the arguments: short or hostile input gives
/// [`Keys::Malformed`].
///
/// ```
/// use ferry_keyspace::{Access, Keys, Kind, keys};
///
/// let Keys::Keyed(k) = keys(&["rename", "old", "new"]) else { panic!() };
/// assert_eq!(k.kind(), Kind::Combine);
/// assert_eq!(k.positions().collect::<Vec<_>>(), [1, 2]);
/// assert_eq!(k.keys()[0].access, Access::ReadWrite);
/// assert_eq!(k.written_in_apply_order(), [2, 1]); // write "new", then delete "old"
///
/// assert_eq!(keys(&["FLUSHALL"]), Keys::Global);
/// assert_eq!(keys(&["JSON.SET", "doc", "$", "{}"]), Keys::Unknown);
/// ```
pub fn keys<A: AsRef<[u8]>>(args: &[A]) -> Keys {
    let Some(name) = args.first() else {
        return Keys::Malformed("empty command");
    };
    let mut buf = [0u8; NAME_MAX];
    let Some(name) = upper(name.as_ref(), &mut buf) else {
        return Keys::Unknown;
    };
    let Some((arity, shape)) = rule(name) else {
        return Keys::Unknown;
    };
    with_arity(&Args(args), arity, shape)
}

/// The keys of a command of `argc` arguments of which only the first `head.len()` have
/// been read, when they are already known: every key is among those arguments, and no later
/// argument can change which arguments are keys (the command's keys follow from its name,
/// its argument count and a `numkeys` already read). `None` otherwise: commands whose
/// options name keys (`SORT ... STORE`, `GEORADIUS ... STORE`, `XREAD ... STREAMS`,
/// `MIGRATE ... KEYS`), that write into another db (`MOVE`, `COPY`), that have no keys, or
/// a key at or after `head.len()`.
///
/// For a reader that passes a huge argument on before the command has all arrived: it must
/// know the keys from the arguments before it.
///
/// ```
/// use ferry_keyspace::keys_before;
///
/// // RPUSH list <huge element>: the key is argument 1.
/// let k = keys_before(&["RPUSH", "list"], 3).unwrap();
/// assert_eq!(k.positions().collect::<Vec<_>>(), [1]);
/// // MSET a <huge> b v: key b comes after the huge value.
/// assert!(keys_before(&["MSET", "a"], 5).is_none());
/// // SORT's STORE may come later.
/// assert!(keys_before(&["SORT", "k"], 4).is_none());
/// ```
pub fn keys_before<A: AsRef<[u8]>>(head: &[A], argc: usize) -> Option<KeyArgs> {
    let name = head.first()?;
    if argc < head.len() {
        return None;
    }
    let mut buf = [0u8; NAME_MAX];
    let name = upper(name.as_ref(), &mut buf)?;
    let (arity, shape) = rule(name)?;
    if let Shape::NumKeys { at, .. } = shape
        && at >= head.len()
    {
        return None;
    }
    if !matches!(
        shape,
        Shape::One(..)
            | Shape::Range { .. }
            | Shape::Fixed(_)
            | Shape::DestSources { .. }
            | Shape::NumKeys { .. }
    ) {
        return None;
    }
    // Arguments not read yet stand in as empty strings: none of these shapes looks at them.
    let empty: &[u8] = &[];
    let args: Vec<&[u8]> = head
        .iter()
        .map(AsRef::as_ref)
        .chain(std::iter::repeat_n(empty, argc - head.len()))
        .collect();
    match with_arity(&Args(&args), arity, shape) {
        Keys::Keyed(k) if k.keys.iter().all(|a| a.index < head.len()) => Some(k),
        _ => None,
    }
}

/// Longer than any command name this crate knows; a longer name is unknown.
const NAME_MAX: usize = 24;

/// `s` in upper case, in `buf`; `None` when it cannot be a known name.
fn upper<'b>(s: &[u8], buf: &'b mut [u8; NAME_MAX]) -> Option<&'b [u8]> {
    let out = buf.get_mut(..s.len())?;
    out.copy_from_slice(s);
    out.make_ascii_uppercase();
    Some(out)
}

use Access::{Read as R, ReadWrite as RW, Write as W};

/// How to find a command's keys once its arity is checked.
#[derive(Clone, Copy)]
enum Shape {
    NoEffect,
    Global,
    Unsupported(&'static str),
    /// One key, at this index.
    One(usize, Access),
    /// Keys from `first` up to the last `trailing` arguments, every `step` arguments
    /// (the arguments between are values).
    Range {
        first: usize,
        step: usize,
        trailing: usize,
        access: Access,
        kind: Kind,
    },
    /// Keys at fixed indexes.
    Fixed(&'static [(usize, Access)]),
    /// A destination, then every argument after it is a source that is read.
    DestSources {
        dest: usize,
    },
    /// A count at `at`, then that many keys (`step` apart), and a destination before the
    /// count when there is one; at least `after` arguments must follow the keys (`LMPOP`'s
    /// `LEFT|RIGHT`), or the count took them for keys.
    NumKeys {
        at: usize,
        step: usize,
        after: usize,
        dest: Option<usize>,
        access: Access,
        kind: Kind,
        zero: Zero,
    },
    /// Commands whose options must be read to find their keys.
    Parse(Special),
}

/// What a count of zero keys means.
#[derive(Clone, Copy)]
enum Zero {
    /// The server refuses it.
    Malformed,
    /// A script that declares no keys: it may still write some, which nobody can know.
    Unknowable,
    /// A read-only script with no keys.
    NoEffect,
}

#[derive(Clone, Copy)]
enum Special {
    Sort { store_allowed: bool },
    GeoRadius { options_from: usize },
    XRead { streams_from: usize, access: Access },
    Migrate,
    Copy,
    Move,
    XGroup,
    Script,
    Function,
    PfCount,
}

/// The arity (as Redis counts it: the name included, negative for "at least") and the
/// shape of every command this crate knows.
fn rule(name: &[u8]) -> Option<(i8, Shape)> {
    use Shape::*;
    let one = |arity| Some((arity, One(1, W)));
    let split = |arity, step, access| {
        Some((
            arity,
            Range {
                first: 1,
                step,
                trailing: 0,
                access,
                kind: Kind::Split,
            },
        ))
    };
    let blocking_pop = Some((
        -3,
        Range {
            first: 1,
            step: 1,
            trailing: 1,
            access: RW,
            kind: Kind::Combine,
        },
    ));
    let numkeys = |arity, at, dest, access, zero| {
        Some((
            arity,
            NumKeys {
                at,
                step: 1,
                after: 0,
                dest,
                access,
                kind: Kind::Combine,
                zero,
            },
        ))
    };
    // LMPOP and kin: the keys, then LEFT|RIGHT or MIN|MAX.
    let pop_many = |arity, at| {
        Some((
            arity,
            NumKeys {
                at,
                step: 1,
                after: 1,
                dest: None,
                access: RW,
                kind: Kind::Combine,
                zero: Zero::Malformed,
            },
        ))
    };
    const MOVE_ELEMENT: &[(usize, Access)] = &[(1, RW), (2, W)];
    const STORE_FROM_ONE: &[(usize, Access)] = &[(1, W), (2, R)];
    match name {
        // No keys, no data.
        b"PING" | b"REPLCONF" => Some((-1, NoEffect)),
        b"MULTI" | b"EXEC" | b"DISCARD" => Some((1, NoEffect)),
        b"SELECT" | b"ECHO" => Some((2, NoEffect)),
        b"PUBLISH" | b"SPUBLISH" | b"WAIT" => Some((3, NoEffect)),
        b"WAITAOF" => Some((4, NoEffect)),
        // The whole server or db.
        b"FLUSHALL" | b"FLUSHDB" => Some((-1, Global)),
        b"SCRIPT" => Some((-2, Parse(Special::Script))),
        b"FUNCTION" => Some((-2, Parse(Special::Function))),
        b"SWAPDB" => Some((
            3,
            Unsupported("SWAPDB exchanges two whole databases; a cluster has only db 0"),
        )),

        // Strings.
        b"SET" => one(-3),
        b"GETEX" => one(-2),
        b"GETSET" | b"SETNX" | b"APPEND" | b"INCRBY" | b"DECRBY" | b"INCRBYFLOAT" => one(3),
        b"GETDEL" | b"INCR" | b"DECR" => one(2),
        b"SETEX" | b"PSETEX" | b"SETRANGE" => one(4),
        // Redis 8.4: DEL with a condition on the value.
        b"DELEX" => one(-2),
        // Valkey 9: DEL if the value is equal.
        b"DELIFEQ" => one(3),
        // Bits.
        b"SETBIT" => one(4),
        b"BITFIELD" => one(-2),
        // Lists.
        b"LPUSH" | b"RPUSH" | b"LPUSHX" | b"RPUSHX" => one(-3),
        b"LPOP" | b"RPOP" => one(-2),
        b"LINSERT" => one(5),
        b"LSET" | b"LREM" | b"LTRIM" => one(4),
        // Sets.
        b"SADD" | b"SREM" => one(-3),
        b"SPOP" => one(-2),
        // Sorted sets.
        b"ZADD" => one(-4),
        b"ZINCRBY" | b"ZREMRANGEBYLEX" | b"ZREMRANGEBYRANK" | b"ZREMRANGEBYSCORE" => one(4),
        b"ZREM" => one(-3),
        b"ZPOPMIN" | b"ZPOPMAX" => one(-2),
        // Hashes, with the field-TTL commands of Redis 7.4 / 8.0 and Valkey 9.
        b"HSET" | b"HMSET" => one(-4),
        b"HSETNX" | b"HINCRBY" | b"HINCRBYFLOAT" => one(4),
        b"HDEL" => one(-3),
        b"HEXPIRE" | b"HPEXPIRE" | b"HEXPIREAT" | b"HPEXPIREAT" | b"HSETEX" => one(-6),
        b"HPERSIST" | b"HGETDEL" | b"HGETEX" => one(-5),
        // Only in Redis 7.4 release candidates, replaced by HGETEX/HSETEX; a stream from
        // such a server may still hold them.
        b"HGETF" | b"HSETF" => one(-2),
        // Streams.
        b"XADD" | b"XDELEX" => one(-5),
        b"XDEL" | b"XSETID" => one(-3),
        b"XTRIM" | b"XACK" => one(-4),
        b"XCLAIM" | b"XAUTOCLAIM" | b"XACKDEL" => one(-6),
        // Redis 8.6: a stream's idempotent-producer settings (`src/commands/xcfgset.json`).
        b"XCFGSET" => one(-2),
        b"XGROUP" => Some((-2, Parse(Special::XGroup))),
        // HyperLogLog. PFCOUNT of one key rewrites its cached cardinality, and that change
        // is replicated; PFDEBUG can convert the encoding.
        b"PFADD" => one(-2),
        b"PFCOUNT" => Some((-2, Parse(Special::PfCount))),
        b"PFDEBUG" => Some((3, One(2, W))),
        // Geo.
        b"GEOADD" => one(-5),
        // Keyspace.
        b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" => one(-3),
        b"PERSIST" => one(2),
        b"RESTORE" | b"RESTORE-ASKING" => one(-4),
        b"MOVE" => Some((3, Parse(Special::Move))),
        // Vector sets: a module, but one shipped inside Redis 8.
        b"VADD" | b"VREM" | b"VSETATTR" => one(-2),

        // Cut per slot.
        b"DEL" | b"UNLINK" => split(-2, 1, W),
        b"TOUCH" | b"EXISTS" | b"MGET" => split(-2, 1, R),
        b"MSET" | b"MSETNX" => split(-3, 2, W),
        // Redis 8.4: MSETEX numkeys key value [key value ...] [options].
        b"MSETEX" => Some((
            -4,
            NumKeys {
                at: 1,
                step: 2,
                after: 0,
                dest: None,
                access: W,
                kind: Kind::Split,
                zero: Zero::Malformed,
            },
        )),

        // Whole, several keys.
        b"RENAME" | b"RENAMENX" | b"RPOPLPUSH" => Some((3, Fixed(MOVE_ELEMENT))),
        b"SMOVE" | b"BRPOPLPUSH" => Some((4, Fixed(MOVE_ELEMENT))),
        b"LMOVE" => Some((5, Fixed(MOVE_ELEMENT))),
        b"BLMOVE" => Some((6, Fixed(MOVE_ELEMENT))),
        b"ZRANGESTORE" => Some((-5, Fixed(STORE_FROM_ONE))),
        b"GEOSEARCHSTORE" => Some((-8, Fixed(STORE_FROM_ONE))),
        b"SUNIONSTORE" | b"SINTERSTORE" | b"SDIFFSTORE" => Some((-3, DestSources { dest: 1 })),
        b"PFMERGE" => Some((-2, DestSources { dest: 1 })),
        b"BITOP" => Some((-4, DestSources { dest: 2 })),
        b"COPY" => Some((-3, Parse(Special::Copy))),
        b"BLPOP" | b"BRPOP" | b"BZPOPMIN" | b"BZPOPMAX" => blocking_pop,
        b"ZUNIONSTORE" | b"ZINTERSTORE" | b"ZDIFFSTORE" => {
            numkeys(-4, 2, Some(1), R, Zero::Malformed)
        }
        b"LMPOP" | b"ZMPOP" => pop_many(-4, 1),
        b"BLMPOP" | b"BZMPOP" => pop_many(-5, 2),
        b"SINTERCARD" | b"ZINTERCARD" | b"ZUNION" | b"ZINTER" | b"ZDIFF" => {
            numkeys(-3, 1, None, R, Zero::Malformed)
        }
        b"EVAL" | b"EVALSHA" | b"FCALL" => numkeys(-3, 2, None, RW, Zero::Unknowable),
        b"EVAL_RO" | b"EVALSHA_RO" | b"FCALL_RO" => numkeys(-3, 2, None, R, Zero::NoEffect),
        b"SORT" => Some((
            -2,
            Parse(Special::Sort {
                store_allowed: true,
            }),
        )),
        b"SORT_RO" => Some((
            -2,
            Parse(Special::Sort {
                store_allowed: false,
            }),
        )),
        b"GEORADIUS" => Some((-6, Parse(Special::GeoRadius { options_from: 6 }))),
        b"GEORADIUSBYMEMBER" => Some((-5, Parse(Special::GeoRadius { options_from: 5 }))),
        b"XREADGROUP" => Some((
            -7,
            Parse(Special::XRead {
                streams_from: 4,
                access: RW,
            }),
        )),
        b"XREAD" => Some((
            -4,
            Parse(Special::XRead {
                streams_from: 1,
                access: R,
            }),
        )),
        b"MIGRATE" => Some((-6, Parse(Special::Migrate))),
        _ => None,
    }
}

/// The arguments, with the few ways of reading them the shapes need.
struct Args<'a, A>(&'a [A]);

impl<A: AsRef<[u8]>> Args<'_, A> {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn get(&self, i: usize) -> Option<&[u8]> {
        self.0.get(i).map(AsRef::as_ref)
    }

    /// Whether argument `i` is `token`, in any case.
    fn is(&self, i: usize, token: &str) -> bool {
        self.get(i)
            .is_some_and(|a| a.eq_ignore_ascii_case(token.as_bytes()))
    }

    /// Argument `i` as a count of keys, when it is a decimal number no larger than the
    /// number of arguments (a larger one cannot be satisfied anyway, and is never trusted
    /// for arithmetic).
    fn count(&self, i: usize) -> Option<usize> {
        let a = self.get(i)?;
        if a.is_empty() || a.len() > 20 || !a.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = std::str::from_utf8(a).ok()?.parse::<u64>().ok()?;
        usize::try_from(n).ok().filter(|&n| n <= self.len())
    }
}

/// Builds [`Keys::Keyed`]; a command that names a single key is [`Kind::Single`].
fn keyed(keys: Vec<KeyArg>, kind: Kind, other_db: bool) -> Keys {
    if keys.is_empty() {
        return Keys::Malformed("no key");
    }
    let kind = if keys.len() == 1 { Kind::Single } else { kind };
    Keys::Keyed(KeyArgs {
        keys,
        kind,
        other_db,
    })
}

fn key(index: usize, access: Access) -> KeyArg {
    KeyArg { index, access }
}

impl Shape {
    fn apply<A: AsRef<[u8]>>(self, args: &Args<'_, A>) -> Keys {
        let len = args.len();
        match self {
            Shape::NoEffect => Keys::NoEffect,
            Shape::Global => Keys::Global,
            Shape::Unsupported(why) => Keys::Unsupported(why),
            Shape::One(i, access) => keyed(vec![key(i, access)], Kind::Single, false),
            Shape::Range {
                first,
                step,
                trailing,
                access,
                kind,
            } => {
                // Arity already guarantees room for one key; checked all the same, so a
                // wrong table entry gives Malformed rather than a panic.
                let span = len.saturating_sub(trailing + first);
                if span == 0 || !span.is_multiple_of(step) {
                    return Keys::Malformed("a key without its value");
                }
                let end = first + span;
                let keys = (first..end).step_by(step).map(|i| key(i, access));
                keyed(keys.collect(), kind, false)
            }
            Shape::Fixed(list) => {
                let keys = list.iter().map(|&(i, access)| key(i, access));
                keyed(keys.collect(), Kind::Combine, false)
            }
            Shape::DestSources { dest } => {
                let sources = (dest + 1..len).map(|i| key(i, R));
                let keys = std::iter::once(key(dest, W)).chain(sources);
                keyed(keys.collect(), Kind::Combine, false)
            }
            Shape::NumKeys {
                at,
                step,
                after,
                dest,
                access,
                kind,
                zero,
            } => {
                let Some(n) = args.count(at) else {
                    return Keys::Malformed("numkeys is not a valid count");
                };
                if n == 0 {
                    return match zero {
                        Zero::Malformed => Keys::Malformed("numkeys must be positive"),
                        Zero::Unknowable => Keys::Unsupported(
                            "a script that declares no keys may still write some, which cannot be known",
                        ),
                        Zero::NoEffect => Keys::NoEffect,
                    };
                }
                // n <= len, so this cannot overflow.
                let end = at + 1 + n * step;
                if end + after > len {
                    return Keys::Malformed("numkeys is larger than the keys given");
                }
                let dest = dest.map(|d| key(d, W));
                let keys = (at + 1..end).step_by(step).map(|i| key(i, access));
                keyed(dest.into_iter().chain(keys).collect(), kind, false)
            }
            Shape::Parse(special) => special.apply(args),
        }
    }
}

impl Special {
    fn apply<A: AsRef<[u8]>>(self, args: &Args<'_, A>) -> Keys {
        match self {
            Special::Sort { store_allowed } => sort(args, store_allowed),
            Special::GeoRadius { options_from } => {
                let mut keys = vec![key(1, R)];
                let mut i = options_from;
                while i < args.len() {
                    // COUNT, ANY and the WITH* flags take no key and no value that could
                    // read STORE, so looking for the keyword is enough (as Redis does).
                    if args.is(i, "STORE") || args.is(i, "STOREDIST") {
                        if i + 1 >= args.len() {
                            return Keys::Malformed("STORE without a key");
                        }
                        keys.push(key(i + 1, W));
                        i += 1;
                    }
                    i += 1;
                }
                keyed(keys, Kind::Combine, false)
            }
            Special::XRead {
                streams_from,
                access,
            } => {
                if streams_from > 1 && !args.is(1, "GROUP") {
                    return Keys::Malformed("XREADGROUP without GROUP");
                }
                let Some(s) = (streams_from..args.len()).find(|&i| args.is(i, "STREAMS")) else {
                    return Keys::Malformed("no STREAMS");
                };
                let rest = args.len() - (s + 1);
                if rest == 0 || !rest.is_multiple_of(2) {
                    return Keys::Malformed("STREAMS needs as many ids as keys");
                }
                let keys = (s + 1..s + 1 + rest / 2).map(|i| key(i, access));
                keyed(keys.collect(), Kind::Combine, false)
            }
            Special::Migrate => migrate(args),
            Special::Copy => {
                let mut other_db = false;
                let mut i = 3;
                while i < args.len() {
                    if args.is(i, "DB") && i + 1 < args.len() {
                        other_db = true;
                        i += 2;
                    } else if args.is(i, "REPLACE") {
                        i += 1;
                    } else {
                        return Keys::Malformed("COPY: syntax error");
                    }
                }
                keyed(vec![key(1, R), key(2, W)], Kind::Combine, other_db)
            }
            Special::Move => keyed(vec![key(1, RW)], Kind::Single, true),
            Special::XGroup => {
                let arity: i8 = if args.is(1, "CREATE") || args.is(1, "SETID") {
                    -5
                } else if args.is(1, "DESTROY") {
                    4
                } else if args.is(1, "CREATECONSUMER") || args.is(1, "DELCONSUMER") {
                    5
                } else if args.is(1, "HELP") {
                    return Keys::NoEffect;
                } else {
                    return Keys::Unsupported("an XGROUP subcommand this crate does not know");
                };
                with_arity(args, arity, Shape::One(2, W))
            }
            Special::Script => {
                if args.is(1, "LOAD") || args.is(1, "FLUSH") {
                    Keys::Global
                } else if ["EXISTS", "KILL", "HELP", "DEBUG", "SHOW"]
                    .iter()
                    .any(|s| args.is(1, s))
                {
                    Keys::NoEffect
                } else {
                    Keys::Unsupported("a SCRIPT subcommand this crate does not know")
                }
            }
            Special::Function => {
                if ["LOAD", "DELETE", "FLUSH", "RESTORE"]
                    .iter()
                    .any(|s| args.is(1, s))
                {
                    Keys::Global
                } else if ["LIST", "DUMP", "STATS", "KILL", "HELP"]
                    .iter()
                    .any(|s| args.is(1, s))
                {
                    Keys::NoEffect
                } else {
                    Keys::Unsupported("a FUNCTION subcommand this crate does not know")
                }
            }
            Special::PfCount => {
                // Only the one-key form updates (and replicates) the cached count.
                let access = if args.len() == 2 { W } else { R };
                let keys = (1..args.len()).map(|i| key(i, access));
                keyed(keys.collect(), Kind::Combine, false)
            }
        }
    }
}

/// Checks the arity (as Redis counts it: the name included, negative for "at least"),
/// then applies the shape. Subcommands have their own, also counted from the name.
fn with_arity<A: AsRef<[u8]>>(args: &Args<'_, A>, arity: i8, shape: Shape) -> Keys {
    let fits = match usize::try_from(arity) {
        Ok(exact) => args.len() == exact,
        Err(_) => args.len() >= usize::from(arity.unsigned_abs()),
    };
    if !fits {
        return Keys::Malformed("wrong number of arguments");
    }
    shape.apply(args)
}

/// `SORT key [BY pattern] [LIMIT offset count] [GET pattern ...] [ASC|DESC] [ALPHA]
/// [STORE destination]`.
fn sort<A: AsRef<[u8]>>(args: &Args<'_, A>, store_allowed: bool) -> Keys {
    let mut keys = vec![key(1, R)];
    let mut patterns_read_keys = false;
    // A pattern reads other keys only when it has a `*` to substitute: `#` is the element
    // itself, and a pattern without `*` (`BY nosort`) skips sorting and looks nothing up.
    let reads_keys = |i: usize| args.get(i).is_some_and(|p| p != b"#" && p.contains(&b'*'));
    let mut i = 2;
    while i < args.len() {
        let has = |n: usize| i + n < args.len();
        if args.is(i, "ASC") || args.is(i, "DESC") || args.is(i, "ALPHA") {
            i += 1;
        } else if args.is(i, "LIMIT") && has(2) {
            i += 3;
        } else if (args.is(i, "BY") || args.is(i, "GET")) && has(1) {
            patterns_read_keys |= reads_keys(i + 1);
            i += 2;
        } else if store_allowed && args.is(i, "STORE") && has(1) {
            keys.push(key(i + 1, W));
            i += 2;
        } else {
            return Keys::Malformed("SORT: syntax error");
        }
    }
    if patterns_read_keys {
        return Keys::Unsupported(
            "SORT with a BY or GET pattern reads keys named by the data, which cannot be known from the command",
        );
    }
    keyed(keys, Kind::Combine, false)
}

/// `MIGRATE host port key|"" db timeout [COPY] [REPLACE] [AUTH password]
/// [AUTH2 username password] [KEYS key ...]`.
///
/// A primary replicates the `DEL` of what it migrated, not `MIGRATE` itself; the keys are
/// given for completeness, read-write unless `COPY` keeps them.
fn migrate<A: AsRef<[u8]>>(args: &Args<'_, A>) -> Keys {
    let mut access = RW;
    let mut i = 6;
    while i < args.len() {
        if args.is(i, "COPY") {
            access = R;
        } else if args.is(i, "AUTH") {
            i += 1;
        } else if args.is(i, "AUTH2") {
            i += 2;
        } else if args.is(i, "KEYS") {
            if args.get(3).is_some_and(|k| !k.is_empty()) {
                return Keys::Malformed("MIGRATE KEYS needs an empty key argument");
            }
            let keys = (i + 1..args.len()).map(|j| key(j, access));
            return keyed(keys.collect(), Kind::Combine, false);
        }
        i += 1;
    }
    keyed(vec![key(3, access)], Kind::Single, false)
}

#[cfg(test)]
mod tests;
