//! A command with a huge argument in the command stream, passed on in pieces as its bytes
//! arrive instead of held whole (an argument of [`SPLIT_BYTES`] or more, in pieces of
//! [`PIECE_BYTES`]).
//!
//! `SET key value` and `APPEND key value`: `MULTI`, `SET key <piece>` (or `APPEND`), then
//! `APPEND key <piece>` for each further piece, then `EXEC` at the position just after the
//! source's command. The writer keeps a source transaction whole in one of its own, with the
//! checkpoint, so the target applies all pieces or none, and no checkpoint names a position
//! inside the command: a restart after any piece resumes before the command and writes it
//! whole again (the `SET` resets what an earlier attempt left; an `APPEND` of an aborted
//! attempt never applied). Inside a source transaction the pieces go without their own
//! `MULTI`/`EXEC`: the source's already holds them together.
//!
//! A `SET` with options after its value (`PXAT t`, how Redis 7 propagates any `SET` with an
//! expiry; `EX`, `PX`, `EXAT`, `KEEPTTL`, `NX`, `XX`, `GET`, `IFEQ v`) goes the same way: its
//! first piece is `SET key <piece> KEEPTTL`, and once the options have arrived one command
//! after the last piece gives the key the expiry they name (`PEXPIREAT`, ...), keeps it
//! (`KEEPTTL`) or removes it (`PERSIST`, what a plain `SET` does). `NX`, `XX`, `GET` and `IFEQ`
//! were decided by the source, which propagates a `SET` only when it wrote.
//!
//! Any other command whose keys are all known from the arguments before its first huge one
//! and lie in one slot (`ferry_keyspace::keys_before`: `RPUSH`, `LPUSH`, `SADD`, `HSET`,
//! `ZADD`, `LSET`, `LINSERT`, `SETEX`, `SETRANGE`, `XADD`, `PFADD`, `GEOADD`, `RESTORE`,
//! `MSET` whose keys precede the value, `SMOVE`...): each huge argument is built in a
//! temporary key of ferry's own, `__ferry:arg:{<tag>}:<n>`, whose tag puts it in the slot of
//! the command's keys (a cluster target takes the whole transaction on one node): `SET tmp
//! <piece> PX 3600000`, then `APPEND tmp <piece>`s. Once all the arguments are in, one `EVAL`
//! of [`ARG_SCRIPT`] reads the temporary keys and calls the command with their values in
//! place (`KEYS`: the temporary keys, then the command's keys; `ARGV`: the command, a
//! temporary key's name standing in for each huge argument), and a `DEL` removes them; all in
//! one transaction with the checkpoint (below), so a restart applies the command once. The
//! TTL only covers a crash between the pieces and the `EXEC`, which never applies. After the
//! first huge argument, any argument of 64 KiB or more goes through a temporary key too.
//!
//! Downstream, the command is judged as the source sent it: filters decide on the command the
//! script applies (its name, keys, type, db) and cut or extend it the same way; the pieces and
//! the `DEL` go wherever it goes (a dropped command's temporary keys are still deleted). The
//! rewrite for an older target rewrites that command; a rewrite that is a script of its own
//! (`ZADD ... GT` before 6.2) runs inside ferry's ([`nested_script`]).
//!
//! A huge `RESTORE` payload is checked as it passes (`payload_check`): the value goes to the
//! RDB parser on a blocking thread, the CRC64 is computed here, and the verdict comes before
//! the `EVAL`: a damaged payload stops the sync with the key and the byte, and its
//! transaction never gets its `EXEC`. It goes in pieces only where every target reads the
//! source's RDB version; otherwise it is read whole, to be rewritten as commands.
//!
//! These pieces come with no `MULTI`/`EXEC` of their own: a cluster target's router holds
//! what a `MULTI` bounds until its `EXEC` (up to 4096 commands), to regroup it by slot, and
//! would hold the whole value. The writer instead keeps them in one transaction from the
//! first piece to the `DEL` (`part_of_split`), as it keeps a source's, across its writes and
//! past its usual 512 commands. Not yet bounded on a cluster target (read in the code, not
//! measured): a huge argument inside a source `MULTI` (the router holds the source's
//! transaction), and a `SET`/`APPEND` in pieces (their `MULTI`/`EXEC`), which a master's
//! writer may moreover apply in several transactions, leaving a checkpoint inside the
//! command that a restart cannot go on from.
//!
//! Still read whole (by the RESP decoder, up to its limit of 512 MiB per argument): a
//! command whose keys are not all before its huge argument or span slots (`MSET k1 <huge> k2
//! v`, `DEL <huge key>`, a huge key itself), whose keys later arguments may name (`SORT ...
//! STORE`, `GEORADIUS ... STORE`), a script or function call (`EVAL`, `FCALL`: a script cannot
//! call another), a command of more than 4096 arguments (the script hands them to
//! `redis.call` with `unpack`), a module's command, and every command but `SET`/`APPEND`
//! when a transform script is configured (it needs the whole command). A command with many
//! small arguments is read whole too, however long.

use bytes::{Buf, Bytes, BytesMut};

use super::payload_check::PayloadCheck;
use crate::pipeline::entry::{Command, Entry, OWN_KEY_PREFIX};
use crate::text::escape;

/// A value at least this long is passed on in pieces.
pub const SPLIT_BYTES: u64 = 1024 * 1024;
/// Bytes of the value per piece.
pub const PIECE_BYTES: u64 = 256 * 1024;
/// A key longer than this is not looked for (the command is then read whole).
const MAX_KEY: usize = 64 * 1024;
/// A `SET` option longer than this (only `IFEQ`'s value can be) is refused.
const MAX_OPTION: usize = 64 * 1024;

/// What is left of a `SET`/`APPEND` being passed on in pieces.
pub struct ValueSplit {
    key: Bytes,
    append: bool,
    /// Value bytes not passed on yet.
    left: u64,
    first: bool,
    /// Wrapped in a MULTI/EXEC of its own (not inside a source transaction).
    wrap: bool,
    db: u32,
    /// Arguments after the value (a `SET`'s options), still to come once it is passed on.
    options: usize,
    /// The value is passed on; the options (if any) are what is left.
    value_done: bool,
    done: bool,
}

/// Reads `<digits>\r\n` at `at`; the number and where the next thing starts.
fn number(buf: &[u8], at: usize) -> Option<(u64, usize)> {
    // Read for every stream command: digits by hand, not through str::parse.
    let mut n: u64 = 0;
    let mut end = at;
    loop {
        match *buf.get(end)? {
            b'\r' if end > at => break,
            d @ b'0'..=b'9' => n = n.checked_mul(10)?.checked_add(u64::from(d - b'0'))?,
            _ => return None,
        }
        end += 1;
    }
    (buf.get(end + 1) == Some(&b'\n')).then_some((n, end + 2))
}

/// A bulk string `$<n>\r\n<bytes>\r\n` at `at`, whole in `buf`, of at most `max` bytes.
fn bulk(buf: &[u8], at: usize, max: usize) -> Option<(&[u8], usize)> {
    if buf.get(at) != Some(&b'$') {
        return None;
    }
    let (n, start) = number(buf, at + 1)?;
    let n = usize::try_from(n).ok().filter(|&n| n <= max)?;
    let end = start.checked_add(n)?;
    if buf.get(end..end + 2) != Some(&b"\r\n"[..]) {
        return None;
    }
    Some((&buf[start..end], end + 2))
}

impl ValueSplit {
    /// When `buf` starts with `SET key value` or `APPEND key value` (3 arguments) whose value
    /// is at least `SPLIT_BYTES` long, consumes its header (up to the value's first byte,
    /// counted into `offset`) and starts passing it on. `None` when it is anything else or its
    /// header has not all arrived.
    pub fn start(
        buf: &mut BytesMut,
        offset: &mut u64,
        db: u32,
        in_multi: bool,
        out: &mut Vec<Entry>,
    ) -> Option<ValueSplit> {
        if buf.first() != Some(&b'*') {
            return None;
        }
        let (argc, at) = number(buf, 1)?;
        let (name, at) = bulk(buf, at, 6)?;
        let append = if name.eq_ignore_ascii_case(b"SET") && (3..=9).contains(&argc) {
            false
        } else if name.eq_ignore_ascii_case(b"APPEND") && argc == 3 {
            true
        } else {
            return None;
        };
        let (key, at) = bulk(buf, at, MAX_KEY)?;
        if key.starts_with(OWN_KEY_PREFIX) || buf.get(at) != Some(&b'$') {
            return None;
        }
        let (len, header) = number(buf, at + 1)?;
        if len < SPLIT_BYTES {
            return None;
        }
        let key = Bytes::copy_from_slice(key);
        buf.advance(header);
        *offset += header as u64;
        if !in_multi {
            out.push(command(db, vec![Bytes::from_static(b"MULTI")], *offset));
        }
        Some(ValueSplit {
            key,
            append,
            left: len,
            first: true,
            wrap: !in_multi,
            db,
            options: argc as usize - 3,
            value_done: false,
            done: false,
        })
    }

    /// Passes on the pieces `buf` holds (a piece waits until it is whole). Err: the value is
    /// not followed by CRLF, the stream is damaged.
    pub fn feed(
        &mut self,
        buf: &mut BytesMut,
        offset: &mut u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        while !self.done {
            if self.value_done {
                return self.finish(buf, offset, out);
            }
            let n = self.left.min(PIECE_BYTES) as usize;
            let last = n as u64 == self.left;
            let need = if last { n + 2 } else { n };
            if buf.len() < need {
                return Ok(());
            }
            let piece = buf.split_to(n).freeze();
            self.left -= n as u64;
            *offset += n as u64;
            if last {
                if &buf[..2] != b"\r\n" {
                    return Err("a bulk string in the stream is not followed by CRLF".into());
                }
                buf.advance(2);
                *offset += 2;
                self.value_done = true;
            }
            let name: &'static [u8] = if self.first && !self.append {
                b"SET"
            } else {
                b"APPEND"
            };
            let mut args = vec![Bytes::from_static(name), self.key.clone(), piece];
            if self.first && self.options > 0 {
                // Whether the key keeps its expiry is known only once the options are in.
                args.push(Bytes::from_static(b"KEEPTTL"));
            }
            self.first = false;
            out.push(command(self.db, args, *offset));
        }
        Ok(())
    }

    /// After the value: reads the options (once all have arrived), gives the key the expiry
    /// they say, and ends the transaction.
    fn finish(
        &mut self,
        buf: &mut BytesMut,
        offset: &mut u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), String> {
        let mut options = Vec::with_capacity(self.options);
        let mut at = 0;
        for _ in 0..self.options {
            if buf.get(at).is_some_and(|&b| b != b'$') {
                return Err("a SET option in the stream is not a bulk string".into());
            }
            match bulk(buf, at, MAX_OPTION) {
                Some((option, next)) => {
                    options.push(Bytes::copy_from_slice(option));
                    at = next;
                }
                // Not all here yet (or an option too long to wait for).
                None if buf.len() < at + MAX_OPTION + 32 => return Ok(()),
                None => return Err("a SET option in the stream is too long".into()),
            }
        }
        buf.advance(at);
        *offset += at as u64;
        // A plain SET cleared the expiry with its first piece; an APPEND keeps it.
        if let Some(args) = self.expiry(&options)?.filter(|_| self.options > 0) {
            out.push(command(self.db, args, *offset));
        }
        if self.wrap {
            out.push(command(self.db, vec![Bytes::from_static(b"EXEC")], *offset));
        }
        self.done = true;
        Ok(())
    }

    /// The command that leaves the key with the expiry `options` give it, if one is needed
    /// (the first piece kept the one it had).
    fn expiry(&self, options: &[Bytes]) -> Result<Option<Vec<Bytes>>, String> {
        let mut keep = false;
        let mut i = 0;
        while i < options.len() {
            let o = options[i].to_ascii_uppercase();
            let command: &'static [u8] = match o.as_slice() {
                b"NX" | b"XX" | b"GET" => {
                    i += 1;
                    continue;
                }
                b"KEEPTTL" => {
                    keep = true;
                    i += 1;
                    continue;
                }
                b"IFEQ" => {
                    i += 2;
                    continue;
                }
                b"EX" => b"EXPIRE",
                b"PX" => b"PEXPIRE",
                b"EXAT" => b"EXPIREAT",
                b"PXAT" => b"PEXPIREAT",
                _ => {
                    return Err(format!(
                        "a SET in the stream has an option ferry does not know: {}",
                        String::from_utf8_lossy(&options[i])
                    ));
                }
            };
            let at = options
                .get(i + 1)
                .filter(|n| std::str::from_utf8(n).is_ok_and(|t| t.parse::<i64>().is_ok()))
                .ok_or_else(|| "a SET expiry in the stream is not a number".to_string())?;
            return Ok(Some(vec![
                Bytes::from_static(command),
                self.key.clone(),
                at.clone(),
            ]));
        }
        Ok((!keep).then(|| vec![Bytes::from_static(b"PERSIST"), self.key.clone()]))
    }

    /// The whole command has been passed on.
    pub fn done(&self) -> bool {
        self.done
    }
}

/// A command with a huge argument being passed on in pieces: a `SET`/`APPEND` value, or any
/// argument of another command whose keys come before it (through temporary keys and a
/// script).
pub enum Split {
    Value(ValueSplit),
    Args(ArgSplit),
}

/// Why a command being passed on in pieces cannot go on.
#[derive(Debug)]
pub enum Failure {
    /// The stream's bytes break the protocol.
    Protocol(String),
    /// A `RESTORE` whose payload is damaged: what and why, for [`crate::error::Error::CannotWrite`].
    Damaged { what: String, why: String },
}

impl From<String> for Failure {
    fn from(msg: String) -> Failure {
        Failure::Protocol(msg)
    }
}

impl Split {
    /// When `buf` starts with a command whose huge argument can be passed on as it arrives,
    /// consumes what precedes that argument's bytes and starts. `any`: any command whose keys
    /// come before the huge argument, not only `SET`/`APPEND` (off when a transform script
    /// needs whole commands). `restore`: a `RESTORE` too, its payload of this RDB version at
    /// most (what every target reads); None: a `RESTORE` is read whole.
    pub fn start(
        buf: &mut BytesMut,
        offset: &mut u64,
        (db, in_multi, any, restore): (u32, bool, bool, Option<u16>),
        out: &mut Vec<Entry>,
    ) -> Option<Split> {
        if let Some(s) = ValueSplit::start(buf, offset, db, in_multi, out) {
            return Some(Split::Value(s));
        }
        if any {
            return ArgSplit::start(buf, offset, db, restore).map(Split::Args);
        }
        None
    }

    /// Passes on what `buf` holds of the command.
    pub fn feed(
        &mut self,
        buf: &mut BytesMut,
        offset: &mut u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), Failure> {
        match self {
            Split::Value(s) => s.feed(buf, offset, out).map_err(Failure::Protocol),
            Split::Args(s) => s.feed(buf, offset, out),
        }
    }

    pub fn done(&self) -> bool {
        match self {
            Split::Value(s) => s.done(),
            Split::Args(s) => s.done,
        }
    }

    /// The check of a huge `RESTORE` payload running beside the pieces, if any.
    pub fn check_mut(&mut self) -> Option<&mut PayloadCheck> {
        match self {
            Split::Args(s) => s.check.as_mut(),
            Split::Value(_) => None,
        }
    }

    /// All the command is read and its payload check must give its verdict before the
    /// script that applies it is passed on.
    pub fn wants_verdict(&self) -> bool {
        matches!(self, Split::Args(s) if s.wants_verdict)
    }

    /// The payload check's verdict: a damaged payload ends the command here (its
    /// transaction never gets its `EXEC`).
    pub fn verdict(&mut self, verdict: Result<(), String>) -> Result<(), Failure> {
        let Split::Args(s) = self else { return Ok(()) };
        s.wants_verdict = false;
        s.check = None;
        verdict.map_err(|why| Failure::Damaged {
            what: format!(
                "RESTORE of key {} in db {} (the command ending at replication offset {})",
                escape(s.inner.get(1).map_or(&b""[..], |k| &k[..])),
                s.db,
                s.end_offset
            ),
            why,
        })
    }
}

/// Prefix of the temporary keys a huge argument is built in.
pub const ARG_KEY_PREFIX: &[u8] = b"__ferry:arg:";
/// How long a temporary key lives if its transaction never ran (only a safety net: the
/// pieces and the script that removes it go in one `MULTI`/`EXEC`).
const ARG_KEY_TTL_MS: &[u8] = b"3600000";
/// Most arguments a command passed on through the script may have: the script hands them
/// to `redis.call` with `unpack`, which Redis's Lua bounds at 8000 values.
const MAX_ARGS: u64 = 4096;
/// Once a command goes in pieces, a later argument at least this long goes through a
/// temporary key too, so what is held of the command stays small.
const LATER_BYTES: u64 = 64 * 1024;

/// Runs a command whose huge arguments were built in temporary keys. `KEYS`: the temporary
/// keys, then the command's own keys (so a cluster routes it to their slot).
/// `ARGV`: n (temporary keys), n 1-based positions in the command, then the command, each
/// huge argument stood in for by its temporary key's name.
pub const ARG_SCRIPT: &str = "-- ferry: a command with huge arguments passed on in pieces
local n = tonumber(ARGV[1])
local args = {}
for i = n + 2, #ARGV do args[#args + 1] = ARGV[i] end
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if not v then return redis.error_reply('ferry: temporary key ' .. KEYS[i] .. ' is missing') end
  args[tonumber(ARGV[i + 1])] = v
end
return redis.call(unpack(args))
";

/// The script call that runs `inner` (a command whose huge arguments are stood in for by
/// the names of the temporary keys `tmps` holding them; those it no longer names are left
/// out). None when `inner`'s keys cannot be found or it names none of `tmps`.
pub fn arg_script(tmps: &[Bytes], inner: &[Bytes]) -> Option<Vec<Bytes>> {
    let ferry_keyspace::Keys::Keyed(keys) = ferry_keyspace::keys(inner) else {
        return None;
    };
    let keys: Vec<Bytes> = keys.positions().map(|i| inner[i].clone()).collect();
    let mut args = vec![
        Bytes::from_static(b"EVAL"),
        Bytes::from_static(ARG_SCRIPT.as_bytes()),
        Bytes::from((tmps.len() + keys.len()).to_string()),
    ];
    // A filter that cut the command (MSET's keys it blocks) may have left some out.
    let at: Vec<(usize, &Bytes)> = tmps
        .iter()
        .filter_map(|t| Some((inner.iter().position(|a| a == t)?, t)))
        .collect();
    if at.is_empty() {
        return None;
    }
    args[2] = Bytes::from((at.len() + keys.len()).to_string());
    args.extend(at.iter().map(|(_, t)| (*t).clone()));
    args.extend(keys);
    args.push(Bytes::from(at.len().to_string()));
    for (i, _) in &at {
        args.push(Bytes::from((i + 1).to_string()));
    }
    args.extend(inner.iter().cloned());
    Some(args)
}

/// What runs a script of ferry's own (a rewrite for an older target, which receives the
/// command's arguments as its `ARGV`) with huge arguments taken from temporary keys: that
/// script's body inside a function whose `KEYS` and `ARGV` are the ones it was given, the
/// huge ones read from their keys. Layout as [`ARG_SCRIPT`]'s, the positions in its `ARGV`.
const NESTED_HEAD: &str = "-- ferry: a script with huge arguments passed on in pieces
local n = tonumber(ARGV[1])
local keys, argv = {}, {}
for i = n + 1, #KEYS do keys[#keys + 1] = KEYS[i] end
for i = n + 2, #ARGV do argv[#argv + 1] = ARGV[i] end
for i = 1, n do
  local v = redis.call('GET', KEYS[i])
  if not v then return redis.error_reply('ferry: temporary key ' .. KEYS[i] .. ' is missing') end
  argv[tonumber(ARGV[i + 1])] = v
end
local function run(KEYS, ARGV)
";
const NESTED_TAIL: &str = "
end
return run(keys, argv)
";

/// `EVAL <script> numkeys keys... argv...` (one of ferry's own scripts) with the huge
/// arguments among its `argv` stood in for by the temporary keys `tmps`: the same script,
/// run with those arguments read from their keys. None for another form.
pub fn nested_script(tmps: &[Bytes], eval: &[Bytes]) -> Option<Vec<Bytes>> {
    if !eval.first()?.eq_ignore_ascii_case(b"EVAL") {
        return None;
    }
    let numkeys: usize = std::str::from_utf8(eval.get(2)?).ok()?.parse().ok()?;
    let keys = eval.get(3..3usize.checked_add(numkeys)?)?;
    let argv = &eval[3 + numkeys..];
    let at: Vec<(usize, &Bytes)> = tmps
        .iter()
        .filter_map(|t| Some((argv.iter().position(|a| a == t)?, t)))
        .collect();
    let body = std::str::from_utf8(&eval[1]).ok()?;
    let mut args = vec![
        Bytes::from_static(b"EVAL"),
        Bytes::from(format!("{NESTED_HEAD}{body}{NESTED_TAIL}")),
        Bytes::from((at.len() + keys.len()).to_string()),
    ];
    args.extend(at.iter().map(|(_, t)| (*t).clone()));
    args.extend(keys.iter().cloned());
    args.push(Bytes::from(at.len().to_string()));
    args.extend(at.iter().map(|(i, _)| Bytes::from((i + 1).to_string())));
    args.extend(argv.iter().cloned());
    Some(args)
}

/// The temporary keys and the command (huge arguments stood in for by those keys' names)
/// of a call of [`ARG_SCRIPT`]; None for any other command.
pub fn parse_arg_script(args: &[Bytes]) -> Option<(Vec<Bytes>, Vec<Bytes>)> {
    if !args.first()?.eq_ignore_ascii_case(b"EVAL") || args.get(1)? != ARG_SCRIPT.as_bytes() {
        return None;
    }
    let numkeys: usize = std::str::from_utf8(args.get(2)?).ok()?.parse().ok()?;
    let argv = 3usize.checked_add(numkeys)?;
    let n: usize = std::str::from_utf8(args.get(argv)?).ok()?.parse().ok()?;
    if n > numkeys {
        return None;
    }
    let inner = args.get(argv + 1 + n..)?;
    Some((args[3..3 + n].to_vec(), inner.to_vec()))
}

/// Whether `args` is a piece of a command passed on through temporary keys (a `SET` or
/// `APPEND` of one), and whether it is the `DEL` of them that ends it.
pub fn part_of_split(args: &[Bytes]) -> (bool, bool) {
    let (Some(name), Some(key)) = (args.first(), args.get(1)) else {
        return (false, false);
    };
    if !is_arg_key(key) {
        return (false, false);
    }
    let piece = name.eq_ignore_ascii_case(b"SET") || name.eq_ignore_ascii_case(b"APPEND");
    (piece, name.eq_ignore_ascii_case(b"DEL"))
}

/// Whether `key` is one of the temporary keys huge arguments are built in.
pub fn is_arg_key(key: &[u8]) -> bool {
    key.starts_with(ARG_KEY_PREFIX)
}

fn slot_tags() -> &'static ferry_keyspace::SlotTags {
    static TAGS: std::sync::OnceLock<ferry_keyspace::SlotTags> = std::sync::OnceLock::new();
    TAGS.get_or_init(ferry_keyspace::SlotTags::new)
}

/// One huge argument on its way into its temporary key.
struct Huge {
    tmp: Bytes,
    left: u64,
    first: bool,
}

/// What is left of a command with huge arguments other than a `SET`/`APPEND` value: each
/// huge argument is built in a temporary key in its keys' slot (`SET tmp <piece> PX`, then
/// `APPEND`s), then [`ARG_SCRIPT`] applies the command with those values and the temporary
/// keys are deleted, all in one transaction with the checkpoint.
pub struct ArgSplit {
    db: u32,
    argc: usize,
    /// The arguments read so far, a huge one stood in for by its temporary key's name.
    inner: Vec<Bytes>,
    tmps: Vec<Bytes>,
    slot: u16,
    current: Option<Huge>,
    /// A huge `RESTORE` payload's check, fed as its pieces pass.
    check: Option<PayloadCheck>,
    wants_verdict: bool,
    end_offset: u64,
    done: bool,
}

impl ArgSplit {
    /// No `MULTI`/`EXEC` of its own: the writer keeps the pieces in one transaction from the
    /// first to the `DEL` (see `part_of_split`), which a cluster's router, holding what a
    /// `MULTI` bounds to regroup it by slot, would otherwise hold whole.
    fn start(
        buf: &mut BytesMut,
        offset: &mut u64,
        db: u32,
        restore_max: Option<u16>,
    ) -> Option<ArgSplit> {
        if buf.first() != Some(&b'*') {
            return None;
        }
        let (argc, mut at) = number(buf, 1)?;
        if !(3..=MAX_ARGS).contains(&argc) {
            return None;
        }
        let mut head: Vec<&[u8]> = Vec::new();
        let len = loop {
            if head.len() as u64 == argc || buf.get(at) != Some(&b'$') {
                return None;
            }
            let (len, start) = number(buf, at + 1)?;
            if len >= SPLIT_BYTES {
                at = start;
                break len;
            }
            let (arg, next) = bulk(buf, at, SPLIT_BYTES as usize)?;
            head.push(arg);
            at = next;
        };
        let name = head.first()?;
        // A script cannot call another script.
        if head.len() < 2
            || [
                &b"EVAL"[..],
                b"EVALSHA",
                b"EVAL_RO",
                b"EVALSHA_RO",
                b"FCALL",
                b"FCALL_RO",
            ]
            .iter()
            .any(|n| name.eq_ignore_ascii_case(n))
        {
            return None;
        }
        let keys = ferry_keyspace::keys_before(&head, argc as usize)?;
        let slot = keys.slot(&head)?;
        if keys
            .positions()
            .any(|i| head[i].starts_with(OWN_KEY_PREFIX))
        {
            return None;
        }
        let inner: Vec<Bytes> = head.iter().map(|a| Bytes::copy_from_slice(a)).collect();
        let restore =
            name.eq_ignore_ascii_case(b"RESTORE") || name.eq_ignore_ascii_case(b"RESTORE-ASKING");
        let check = match (restore, restore_max) {
            (false, _) => None,
            (true, None) => return None,
            // A huge key or ttl: not a RESTORE a server took.
            (true, Some(_)) if head.len() != 3 => return None,
            (true, Some(max)) => Some(PayloadCheck::new(len, max)),
        };
        buf.advance(at);
        *offset += at as u64;
        let mut split = ArgSplit {
            db,
            argc: argc as usize,
            inner,
            tmps: Vec::new(),
            slot,
            current: None,
            check,
            wants_verdict: false,
            end_offset: 0,
            done: false,
        };
        split.begin_huge(len);
        Some(split)
    }

    fn begin_huge(&mut self, len: u64) {
        let tmp = slot_tags().key_in_slot(
            ARG_KEY_PREFIX,
            self.slot,
            format!(":{}", self.tmps.len()).as_bytes(),
        );
        let tmp = Bytes::from(tmp);
        self.tmps.push(tmp.clone());
        self.inner.push(tmp.clone());
        self.current = Some(Huge {
            tmp,
            left: len,
            first: true,
        });
    }

    fn feed(
        &mut self,
        buf: &mut BytesMut,
        offset: &mut u64,
        out: &mut Vec<Entry>,
    ) -> Result<(), Failure> {
        while !self.done && !self.wants_verdict {
            if let Some(h) = &mut self.current {
                let n = h.left.min(PIECE_BYTES) as usize;
                let last = n as u64 == h.left;
                if buf.len() < if last { n + 2 } else { n } {
                    return Ok(());
                }
                let piece = buf.split_to(n).freeze();
                h.left -= n as u64;
                *offset += n as u64;
                if last {
                    if &buf[..2] != b"\r\n" {
                        return Err("a bulk string in the stream is not followed by CRLF"
                            .to_string()
                            .into());
                    }
                    buf.advance(2);
                    *offset += 2;
                }
                // Only the first huge argument of a RESTORE is its payload; the check
                // takes no more than the payload's length.
                if let Some(check) = &mut self.check {
                    check.push(&piece);
                }
                let args = if h.first {
                    vec![
                        Bytes::from_static(b"SET"),
                        h.tmp.clone(),
                        piece,
                        Bytes::from_static(b"PX"),
                        Bytes::from_static(ARG_KEY_TTL_MS),
                    ]
                } else {
                    vec![Bytes::from_static(b"APPEND"), h.tmp.clone(), piece]
                };
                h.first = false;
                out.push(command_sharing(self.db, args, *offset, 2));
                if last {
                    self.current = None;
                }
                continue;
            }
            if self.inner.len() == self.argc {
                self.end_offset = *offset;
                if self.check.is_some() {
                    self.wants_verdict = true;
                    return Ok(());
                }
                self.finish(*offset, out)?;
                return Ok(());
            }
            if buf.is_empty() {
                return Ok(());
            }
            if buf[0] != b'$' {
                return Err("an argument in the stream is not a bulk string"
                    .to_string()
                    .into());
            }
            let Some((len, start)) = number(buf, 1) else {
                if buf.len() > 32 {
                    return Err("a bulk string length in the stream is malformed"
                        .to_string()
                        .into());
                }
                return Ok(());
            };
            if len >= LATER_BYTES {
                buf.advance(start);
                *offset += start as u64;
                self.begin_huge(len);
                continue;
            }
            let Some((arg, next)) = bulk(buf, 0, LATER_BYTES as usize) else {
                if buf.len() >= start + len as usize + 2 {
                    return Err("a bulk string in the stream is not followed by CRLF"
                        .to_string()
                        .into());
                }
                return Ok(());
            };
            self.inner.push(Bytes::copy_from_slice(arg));
            buf.advance(next);
            *offset += next as u64;
        }
        Ok(())
    }

    /// All the arguments are in (and a payload found sound): the script, then the temporary
    /// keys' removal, then the end of the transaction.
    fn finish(&mut self, offset: u64, out: &mut Vec<Entry>) -> Result<(), Failure> {
        let script = arg_script(&self.tmps, &self.inner).ok_or_else(|| {
            Failure::Protocol("a command passed on in pieces lost track of its keys".into())
        })?;
        out.push(command(self.db, script, offset));
        let mut del = vec![Bytes::from_static(b"DEL")];
        del.extend(self.tmps.iter().cloned());
        out.push(command(self.db, del, offset));
        self.done = true;
        Ok(())
    }
}

fn command(db: u32, args: Vec<Bytes>, end_offset: u64) -> Entry {
    let last = args.len().saturating_sub(1);
    command_sharing(db, args, end_offset, last)
}

/// The command of `args`, argument `share` kept as a slice of the command's bytes: one copy
/// of a piece, not two, and none of the read buffer it came from kept alive.
fn command_sharing(db: u32, mut args: Vec<Bytes>, end_offset: u64, share: usize) -> Entry {
    let mut raw = BytesMut::new();
    ferry_resp::encode_command(&mut raw, &args);
    let raw = raw.freeze();
    if share < args.len() {
        // Where argument `share` lies in the encoding: after the ones before it, each
        // `$<len>\r\n<bytes>\r\n`, behind the `*<n>\r\n` header.
        let mut at = format!("*{}\r\n", args.len()).len();
        for a in &args[..share] {
            at += format!("${}\r\n", a.len()).len() + a.len() + 2;
        }
        at += format!("${}\r\n", args[share].len()).len();
        let len = args[share].len();
        args[share] = raw.slice(at..at + len);
    }
    Entry::Command(Command {
        db,
        target_db: None,
        args,
        raw,
        end_offset,
        slot: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(out: &[Entry]) -> Vec<(String, usize, u64)> {
        out.iter()
            .map(|e| match e {
                Entry::Command(c) => (
                    String::from_utf8_lossy(&c.args[0]).into_owned(),
                    c.args.get(2).map_or(0, Bytes::len),
                    c.end_offset,
                ),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn a_huge_set_goes_in_pieces_whatever_the_reads() {
        let value = vec![b'v'; (SPLIT_BYTES + PIECE_BYTES / 2) as usize];
        let mut wire = BytesMut::new();
        ferry_resp::encode_command(&mut wire, &[&b"SET"[..], b"k", &value]);
        let total = wire.len() as u64;
        for cut in [1usize, 7, 1000, 100_000, wire.len()] {
            let mut buf = BytesMut::new();
            let mut offset = 100;
            let mut out = Vec::new();
            let mut split = None;
            for part in wire.chunks(cut) {
                buf.extend_from_slice(part);
                if split.is_none() {
                    split = Split::start(&mut buf, &mut offset, (0, false, false, None), &mut out);
                }
                if let Some(s) = &mut split {
                    s.feed(&mut buf, &mut offset, &mut out).unwrap();
                }
            }
            assert!(split.unwrap().done() && buf.is_empty());
            let got = names(&out);
            assert_eq!(got[0].0, "MULTI");
            assert_eq!(got[1].0, "SET");
            assert!(got[2..got.len() - 1].iter().all(|g| g.0 == "APPEND"));
            let last = got.last().unwrap();
            assert_eq!((last.0.as_str(), last.2), ("EXEC", 100 + total));
            let sum: usize = got.iter().map(|g| g.1).sum();
            assert_eq!(sum, value.len());
            assert!(got.windows(2).all(|w| w[0].2 <= w[1].2));
            assert!(got.iter().all(|g| g.1 as u64 <= PIECE_BYTES));
        }
    }

    #[test]
    fn a_huge_set_with_options_keeps_its_expiry_for_the_end() {
        let value = vec![b'v'; SPLIT_BYTES as usize];
        for (options, last) in [
            (
                vec![&b"PXAT"[..], b"1700000000000"],
                vec!["PEXPIREAT", "k", "1700000000000"],
            ),
            (vec![&b"ex"[..], b"100", b"NX"], vec!["EXPIRE", "k", "100"]),
            (vec![&b"KEEPTTL"[..]], vec![]),
            (vec![&b"XX"[..], b"GET"], vec!["PERSIST", "k"]),
        ] {
            let mut args = vec![&b"SET"[..], b"k", &value];
            args.extend(options.iter().copied());
            let mut wire = BytesMut::new();
            ferry_resp::encode_command(&mut wire, &args);
            let total = wire.len() as u64;
            for cut in [1000usize, wire.len()] {
                let (mut buf, mut offset, mut out) = (BytesMut::new(), 0, Vec::new());
                let mut split = None;
                for part in wire.chunks(cut) {
                    buf.extend_from_slice(part);
                    if split.is_none() {
                        split =
                            Split::start(&mut buf, &mut offset, (0, false, false, None), &mut out);
                    }
                    if let Some(s) = &mut split {
                        s.feed(&mut buf, &mut offset, &mut out).unwrap();
                    }
                }
                assert!(split.unwrap().done() && buf.is_empty() && offset == total);
                let cmds: Vec<Vec<String>> = out
                    .iter()
                    .map(|e| match e {
                        Entry::Command(c) => c
                            .args
                            .iter()
                            .map(|a| String::from_utf8_lossy(&a[..a.len().min(20)]).into_owned())
                            .collect(),
                        _ => unreachable!(),
                    })
                    .collect();
                assert_eq!(cmds[1][0], "SET");
                assert_eq!(cmds[1].last().unwrap(), "KEEPTTL");
                assert_eq!(cmds.last().unwrap(), &vec!["EXEC".to_string()]);
                let before_exec = &cmds[cmds.len() - 2];
                if last.is_empty() {
                    assert_eq!(before_exec[0], "APPEND");
                } else {
                    assert_eq!(before_exec, &last);
                }
            }
        }
    }

    #[test]
    fn small_or_other_commands_are_left_alone() {
        let mut out = Vec::new();
        let mut offset = 0;
        for args in [
            vec![&b"SET"[..], b"k", b"small"],
            vec![&b"RPUSH"[..], b"k", b"v"],
            vec![&b"SET"[..], b"k", b"v", b"KEEPTTL"],
        ] {
            let mut buf = BytesMut::new();
            ferry_resp::encode_command(&mut buf, &args);
            assert!(
                Split::start(&mut buf, &mut offset, (0, false, false, None), &mut out).is_none()
            );
        }
        // Inside a source transaction: no MULTI/EXEC of its own; an APPEND stays APPEND.
        let mut buf = BytesMut::new();
        let value = vec![b'a'; SPLIT_BYTES as usize];
        ferry_resp::encode_command(&mut buf, &[&b"append"[..], b"k", &value]);
        let mut s = Split::start(&mut buf, &mut offset, (3, true, false, None), &mut out).unwrap();
        s.feed(&mut buf, &mut offset, &mut out).unwrap();
        let got = names(&out);
        assert!(got.iter().all(|g| g.0 == "APPEND"), "{got:?}");
        assert_eq!(got.len(), 4);
    }

    /// Feeds `wire` in the parts `cuts` make, as reads would bring it.
    fn run(wire: &[u8], cuts: &[usize], in_multi: bool) -> (Vec<Entry>, u64, bool) {
        let (mut buf, mut offset, mut out) = (BytesMut::new(), 0u64, Vec::new());
        let mut split = None;
        let mut last = 0;
        for &cut in cuts.iter().chain(std::iter::once(&wire.len())) {
            buf.extend_from_slice(&wire[last..cut]);
            last = cut;
            if split.is_none() {
                split = Split::start(
                    &mut buf,
                    &mut offset,
                    (7, in_multi, true, Some(13)),
                    &mut out,
                );
            }
            if let Some(s) = &mut split {
                s.feed(&mut buf, &mut offset, &mut out).unwrap();
            }
        }
        let done = split.is_some_and(|s| s.done()) && buf.is_empty();
        (out, offset, done)
    }

    /// Applies what the split passed on as a target would (temporary keys built from their
    /// pieces, then the script's command with their values) and returns that command.
    fn replay(out: &[Entry], in_multi: bool) -> Vec<Bytes> {
        let cmds: Vec<&Command> = out
            .iter()
            .map(|e| match e {
                Entry::Command(c) => c,
                _ => unreachable!(),
            })
            .collect();
        assert!(cmds.iter().all(|c| c.db == 7));
        assert!(cmds.windows(2).all(|w| w[0].end_offset <= w[1].end_offset));
        // No MULTI/EXEC of its own, in a source transaction or not: the writer keeps the
        // pieces together from the first to the DEL.
        let _ = in_multi;
        let body = &cmds[..];
        assert_eq!(
            crate::source::split::part_of_split(&body[0].args),
            (true, false)
        );
        assert_eq!(
            crate::source::split::part_of_split(&body[body.len() - 1].args),
            (false, true)
        );
        let mut tmps: std::collections::HashMap<Bytes, Vec<u8>> = Default::default();
        let (script, del) = (body[body.len() - 2], body[body.len() - 1]);
        for c in &body[..body.len() - 2] {
            assert!(is_arg_key(&c.args[1]));
            assert!(c.args[2].len() as u64 <= PIECE_BYTES);
            // What is written is what the arguments say.
            let mut raw = BytesMut::new();
            ferry_resp::encode_command(&mut raw, &c.args);
            assert_eq!(raw, c.raw);
            match &c.args[0][..] {
                b"SET" => {
                    assert_eq!(&c.args[3..], [&b"PX"[..], ARG_KEY_TTL_MS]);
                    assert!(tmps.insert(c.args[1].clone(), c.args[2].to_vec()).is_none());
                }
                b"APPEND" => tmps
                    .get_mut(&c.args[1])
                    .unwrap()
                    .extend_from_slice(&c.args[2]),
                other => panic!("{}", String::from_utf8_lossy(other)),
            }
        }
        let (names, mut inner) = parse_arg_script(&script.args).unwrap();
        assert_eq!(names.len(), tmps.len());
        assert_eq!(&del.args[0][..], b"DEL");
        assert_eq!(&del.args[1..], &names[..]);
        // Every temporary key is in the slot of the command's keys.
        let ferry_keyspace::Keys::Keyed(k) = ferry_keyspace::keys(&script.args) else {
            panic!()
        };
        assert!(k.slot(&script.args).is_some());
        for name in &names {
            let at = inner.iter().position(|a| a == name).unwrap();
            inner[at] = Bytes::from(tmps.remove(name).unwrap());
        }
        inner
    }

    #[test]
    fn a_huge_argument_of_any_command_goes_through_a_temporary_key_whatever_the_reads() {
        let big = |n: usize, c: u8| vec![c; n];
        let huge = (SPLIT_BYTES + PIECE_BYTES / 2 + 3) as usize;
        let cases: Vec<Vec<Vec<u8>>> = vec![
            vec![b"RPUSH".to_vec(), b"list".to_vec(), big(huge, b'a')],
            vec![
                b"HSET".to_vec(),
                b"h".to_vec(),
                big(huge, b'f'),
                big(huge + 1, b'v'),
            ],
            vec![
                b"lset".to_vec(),
                b"l".to_vec(),
                b"0".to_vec(),
                big(huge, b'x'),
            ],
            vec![
                b"SETEX".to_vec(),
                b"{t}k".to_vec(),
                b"100".to_vec(),
                big(huge, b's'),
            ],
            vec![
                b"XADD".to_vec(),
                b"s".to_vec(),
                b"1-1".to_vec(),
                b"f".to_vec(),
                big(huge, b'x'),
                b"g".to_vec(),
                big(LATER_BYTES as usize, b'y'),
                b"h".to_vec(),
                b"small".to_vec(),
            ],
        ];
        for args in cases {
            let mut wire = BytesMut::new();
            ferry_resp::encode_command(&mut wire, &args);
            let total = wire.len() as u64;
            // Every cut near where something starts or ends: headers, piece boundaries,
            // the CRLFs, the arguments after a huge one.
            let mut cuts: Vec<usize> = (0..200).collect();
            let mut at = 0;
            for a in &args {
                at += format!("${}\r\n", a.len()).len();
                let mut p = at;
                while p < at + a.len() {
                    cuts.extend(p.saturating_sub(3)..p + 4);
                    p += PIECE_BYTES as usize;
                }
                at += a.len() + 2;
                cuts.extend(at.saturating_sub(4)..at + 4);
            }
            cuts.extend(wire.len() - 30..wire.len());
            cuts.retain(|&c| c <= wire.len());
            for in_multi in [false, true] {
                for &cut in &cuts {
                    let (out, offset, done) = run(&wire, &[cut], in_multi);
                    assert!(done, "cut {cut}");
                    assert_eq!(offset, total, "cut {cut}");
                    let cmds: Vec<u64> = out
                        .iter()
                        .map(|e| match e {
                            Entry::Command(c) => c.end_offset,
                            _ => 0,
                        })
                        .collect();
                    assert_eq!(*cmds.last().unwrap(), total);
                    let got = replay(&out, in_multi);
                    assert!(got == args, "cut {cut}: not the same command");
                }
                let (out, _, done) = run(
                    &wire,
                    &(1..wire.len()).step_by(9973).collect::<Vec<_>>(),
                    in_multi,
                );
                assert!(done);
                assert!(replay(&out, in_multi) == args);
            }
        }
    }

    #[test]
    fn commands_whose_keys_are_not_all_before_the_huge_argument_stay_whole() {
        let huge = vec![b'v'; SPLIT_BYTES as usize];
        for args in [
            vec![&b"MSET"[..], b"a", &huge, b"b", b"v"],
            vec![&b"MSET"[..], b"{a}1", b"v", b"{b}2", &huge],
            vec![&b"EVAL"[..], b"return 1", b"1", b"k", &huge],
            vec![&b"RPUSH"[..], b"__ferry:x", &huge],
            vec![&b"DEL"[..], &huge],
            vec![&b"SORT"[..], b"k", b"BY", &huge],
        ] {
            let mut buf = BytesMut::new();
            ferry_resp::encode_command(&mut buf, &args);
            let (mut offset, mut out) = (0, Vec::new());
            assert!(
                Split::start(&mut buf, &mut offset, (0, false, true, Some(13)), &mut out).is_none(),
                "{}",
                String::from_utf8_lossy(args[0])
            );
            assert!(out.is_empty() && offset == 0);
        }
        // Without `any` (a transform script wants whole commands), only SET and APPEND.
        let mut buf = BytesMut::new();
        ferry_resp::encode_command(&mut buf, &[&b"RPUSH"[..], b"k", &huge]);
        assert!(Split::start(&mut buf, &mut 0, (0, false, false, None), &mut Vec::new()).is_none());
    }
}
