//! Stream commands in the form a plain master of the target's version takes.
//!
//! A source propagates some writes in forms only a replica accepts: `XADD`/`XTRIM` with
//! `MAXLEN|MINID = n LIMIT k` (a master refuses `LIMIT` without `~`; a replica ignores it, the
//! source having already decided where the trim ends). And a newer source sends options and
//! commands an older target does not know (`SET ... PXAT` from any `SET ... EX` since 7.0,
//! `PEXPIREAT ... GT`, `LPOP key count` from `LMPOP`, `XSETID ... ENTRIESADDED`...). Each is
//! rewritten here into commands with the same effect on that target, applied in the same
//! transaction as the original's checkpoint; what has no equivalent there is dropped with its
//! reason (counted in `dropped`).
//!
//! Rules that rely on the stream: a source propagates a conditional write (`NX`, `XX`, `GT`,
//! `NOMKSTREAM`, ...) only when it wrote, so on a target holding the same data the condition
//! holds, and dropping it keeps the effect.

use bytes::Bytes;

use super::caps::Caps;

/// What to apply for one stream command.
#[derive(Debug, PartialEq, Eq)]
pub enum Form {
    /// The command as received.
    Same,
    /// These commands instead, in one transaction, in this order.
    Commands(Vec<Vec<Bytes>>),
    /// These commands (none: nothing to apply), and something this target cannot hold, left
    /// out: `form` names the kind (said once per kind), `why` says what is lost.
    Lossy {
        commands: Vec<Vec<Bytes>>,
        form: &'static str,
        why: String,
    },
}

/// Nothing of the command can be applied.
fn dropped(form: &'static str, why: String) -> Form {
    Form::Lossy {
        commands: Vec::new(),
        form,
        why,
    }
}

/// The form of `args` (name first) for a target with `caps`.
pub fn for_target(args: &[Bytes], caps: &Caps) -> Form {
    let Some(name) = args.first() else {
        return Form::Same;
    };
    // A command whose huge arguments went in pieces: the command the script applies is
    // rewritten, each resulting command that takes a huge argument applied by the script
    // (which reads its temporary key and leaves it for the DEL that follows).
    if let Some((tmps, inner)) = crate::source::split::parse_arg_script(args) {
        let through_script = |commands: Vec<Vec<Bytes>>| -> Vec<Vec<Bytes>> {
            commands
                .into_iter()
                .map(|c| {
                    if !c.iter().any(|a| tmps.contains(a)) {
                        c
                    } else if c[0].eq_ignore_ascii_case(b"EVAL") {
                        // A rewrite that is a script of its own (ZADD GT before 6.2).
                        crate::source::split::nested_script(&tmps, &c).unwrap_or(c)
                    } else {
                        crate::source::split::arg_script(&tmps, &c).unwrap_or(c)
                    }
                })
                .collect()
        };
        return match for_target(&inner, caps) {
            Form::Same => Form::Same,
            Form::Commands(commands) => Form::Commands(through_script(commands)),
            Form::Lossy {
                commands,
                form,
                why,
            } => Form::Lossy {
                commands: through_script(commands),
                form,
                why,
            },
        };
    }
    if name.len() > 16 {
        return Form::Same;
    }
    // Every stream command passes here: its name is upper-cased on the stack.
    let mut upper = [0u8; 16];
    let name = &mut upper[..name.len()];
    name.copy_from_slice(args[0].as_ref());
    name.make_ascii_uppercase();
    let name = &*name;
    let t = Target(caps);
    match name {
        b"SET" => set(args, t),
        b"EXPIRE" | b"PEXPIRE" | b"EXPIREAT" | b"PEXPIREAT" if !t.at_least(7, 0) => {
            expire_flags(args)
        }
        b"LMOVE" | b"BLMOVE" if !t.at_least(6, 2) => lmove(args),
        b"LPOP" | b"RPOP" if args.len() == 3 && !t.at_least(6, 2) => pop_count(args),
        b"ZADD" if !t.at_least(6, 2) => zadd(args),
        b"XADD" => xadd(args, t),
        b"XTRIM" => xtrim(args, t),
        b"XSETID" if !t.at_least(7, 0) => xsetid(args),
        b"XGROUP" => xgroup(args, t),
        b"COPY" if !t.at_least(6, 2) => copy(args),
        b"ZRANGESTORE" if !t.at_least(6, 2) => zrangestore(args),
        b"ZDIFFSTORE" if !t.at_least(6, 2) => zdiffstore(args),
        b"GEOSEARCHSTORE" if !t.at_least(6, 2) => geosearchstore(args),
        b"FLUSHALL" | b"FLUSHDB" if !t.at_least(6, 2) => flush(args),
        b"SCRIPT" if !t.at_least(6, 2) => script_flush(args),
        b"FUNCTION" if !t.at_least(7, 0) => dropped(
            "FUNCTION",
            format!(
                "FUNCTION {}: the target is older than 7.0 and has no functions",
                String::from_utf8_lossy(args.get(1).map_or(&b""[..], |a| a.as_ref()))
                    .to_ascii_uppercase()
            ),
        ),
        b"SPUBLISH" if !t.at_least(7, 0) => {
            let mut cmd = args.to_vec();
            cmd[0] = Bytes::from_static(b"PUBLISH");
            Form::Commands(vec![cmd])
        }
        // Nothing to remove where no field has a TTL.
        b"HPERSIST" if !t.hash_field_ttl() => Form::Commands(Vec::new()),
        b"HPEXPIREAT" | b"HPEXPIRE" | b"HEXPIREAT" | b"HEXPIRE" if !t.hash_field_ttl() => dropped(
            "hash field TTL",
            format!(
                "{} of hash {}: the target is older than 7.4 and keeps no TTL per hash field (the fields are deleted when the source sends their expiry)",
                String::from_utf8_lossy(name),
                arg_text(args, 1)
            ),
        ),
        b"HSETEX" if !t.hash_field_commands() => hsetex(args, t),
        b"HGETEX" if !t.hash_field_commands() => hgetex(args, t),
        b"HGETDEL" if !t.hash_field_commands() => hgetdel(args),
        // Conditional deletes (Valkey 9, Redis 8.4): propagated only when they deleted. Valkey's
        // version does not tell who has DELIFEQ, so it always goes as DEL.
        b"DELIFEQ" if args.len() == 3 => Form::Commands(vec![vec![b("DEL"), args[1].clone()]]),
        b"DELEX" if args.len() >= 2 && !t.at_least(8, 4) => {
            Form::Commands(vec![vec![b("DEL"), args[1].clone()]])
        }
        b"MSETEX" if !t.at_least(8, 4) => msetex(args, t),
        b"XDELEX" | b"XACKDEL" if !t.at_least(8, 2) => xdelex(args, name == b"XACKDEL"),
        _ => Form::Same,
    }
}

/// The target's version, for the options each command gained over time.
#[derive(Clone, Copy)]
struct Target<'a>(&'a Caps);

impl Target<'_> {
    fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.0.version.0, self.0.version.1) >= (major, minor)
    }

    /// `HPEXPIREAT`, `HPERSIST` (Redis 7.4; Valkey 9.0, which reports 7.2.4 and writes RDB 80).
    fn hash_field_ttl(&self) -> bool {
        self.0.hash_field_ttl()
    }

    /// `HSETEX`, `HGETEX`, `HGETDEL` (Redis 8.0; Valkey 9.0).
    fn hash_field_commands(&self) -> bool {
        self.at_least(8, 0) || self.0.rdb_version >= 80
    }
}

fn is(arg: &[u8], word: &str) -> bool {
    arg.eq_ignore_ascii_case(word.as_bytes())
}

fn arg_text(args: &[Bytes], i: usize) -> String {
    args.get(i)
        .map(|a| crate::text::escape(a))
        .unwrap_or_default()
}

fn num<T: std::str::FromStr>(arg: &[u8]) -> Option<T> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

fn b(text: &'static str) -> Bytes {
    Bytes::from_static(text.as_bytes())
}

fn n(value: impl ToString) -> Bytes {
    Bytes::from(value.to_string())
}

/// `EVAL script numkeys keys... args...`.
fn eval(script: &'static str, keys: &[Bytes], argv: &[Bytes]) -> Vec<Bytes> {
    let mut cmd = vec![b("EVAL"), b(script), n(keys.len())];
    cmd.extend_from_slice(keys);
    cmd.extend_from_slice(argv);
    cmd
}

/// `SET key value [NX|XX] [GET] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]`: `GET` (6.2, with `NX`
/// 7.0) only changes the reply; `EXAT`/`PXAT` (6.2) become `PEXPIREAT`; `KEEPTTL` (6.0,
/// also what `INCRBYFLOAT` propagates as) keeps the TTL through a script.
fn set(args: &[Bytes], t: Target) -> Form {
    // `IFEQ` (Valkey 8.1) cannot be told from the version (Valkey reports 7.2.4): since the
    // source wrote, it held, and it goes whatever the target.
    let ifeq = || args[3..].iter().any(|a| is(a, "IFEQ"));
    if args.len() <= 3 || (t.at_least(7, 0) && !ifeq()) {
        return Form::Same;
    }
    let (key, value) = (&args[1], &args[2]);
    let mut kept: Vec<Bytes> = Vec::new();
    let mut at_ms: Option<i64> = None;
    let mut keepttl = false;
    let mut changed = false;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        if is(a, "GET") {
            changed = true;
        } else if is(a, "IFEQ") && i + 1 < args.len() {
            changed = true;
            i += 1;
        } else if is(a, "KEEPTTL") {
            keepttl = true;
            kept.push(a.clone());
        } else if (is(a, "EXAT") || is(a, "PXAT")) && i + 1 < args.len() {
            let Some(when) = num::<i64>(&args[i + 1]) else {
                return Form::Same;
            };
            at_ms = Some(if is(a, "EXAT") {
                when.saturating_mul(1000)
            } else {
                when
            });
            i += 1;
        } else if (is(a, "EX") || is(a, "PX")) && i + 1 < args.len() {
            kept.push(a.clone());
            kept.push(args[i + 1].clone());
            i += 1;
        } else {
            kept.push(a.clone());
        }
        i += 1;
    }
    if let Some(at) = at_ms.filter(|_| !t.at_least(6, 2)) {
        // The source wrote (it propagates nothing else), so NX/XX held: a plain SET then the
        // absolute expiry, together.
        return Form::Commands(vec![
            vec![b("SET"), key.clone(), value.clone()],
            vec![b("PEXPIREAT"), key.clone(), n(at)],
        ]);
    }
    if keepttl && !t.at_least(6, 0) {
        return Form::Commands(vec![eval(
            SET_KEEPTTL,
            std::slice::from_ref(key),
            std::slice::from_ref(value),
        )]);
    }
    if !changed {
        return Form::Same;
    }
    let mut cmd = vec![b("SET"), key.clone(), value.clone()];
    cmd.extend(kept);
    if let Some(at) = at_ms {
        cmd.push(b("PXAT"));
        cmd.push(n(at));
    }
    Form::Commands(vec![cmd])
}

/// SET that keeps the key's TTL, before 6.0 (millisecond precision: PTTL then PEXPIRE in the
/// same script, with no time passing between them that a millisecond clock shows).
const SET_KEEPTTL: &str = "local t = redis.call('PTTL', KEYS[1]) redis.call('SET', KEYS[1], ARGV[1]) if t > 0 then redis.call('PEXPIRE', KEYS[1], t) end return 'OK'";

/// `EXPIRE`-family `NX|XX|GT|LT` (7.0): propagated only when the expiry was set, so dropped.
fn expire_flags(args: &[Bytes]) -> Form {
    if args.len() <= 3 {
        return Form::Same;
    }
    Form::Commands(vec![args[..3].to_vec()])
}

/// `LMOVE src dst LEFT|RIGHT LEFT|RIGHT` (6.2; `BLMOVE` with a timeout): `RPOPLPUSH` where it
/// is one, else a script popping and pushing.
fn lmove(args: &[Bytes]) -> Form {
    if args.len() < 5 {
        return Form::Same;
    }
    let (from, to) = (&args[3], &args[4]);
    if is(from, "RIGHT") && is(to, "LEFT") {
        return Form::Commands(vec![vec![b("RPOPLPUSH"), args[1].clone(), args[2].clone()]]);
    }
    let pop = if is(from, "LEFT") { "LPOP" } else { "RPOP" };
    let push = if is(to, "LEFT") { "LPUSH" } else { "RPUSH" };
    Form::Commands(vec![eval(
        LMOVE,
        &[args[1].clone(), args[2].clone()],
        &[b(pop), b(push)],
    )])
}

const LMOVE: &str =
    "local v = redis.call(ARGV[1], KEYS[1]) if v then redis.call(ARGV[2], KEYS[2], v) end return v";

/// `LPOP|RPOP key count` (6.2; what `LMPOP`/`BLMPOP` propagate as from 7.0): `LTRIM` removes
/// the same elements, and the key with the last of them.
fn pop_count(args: &[Bytes]) -> Form {
    let Some(count) = num::<u64>(&args[2]) else {
        return Form::Same;
    };
    let key = args[1].clone();
    let cmd = if is(&args[0], "LPOP") {
        vec![b("LTRIM"), key, n(count), b("-1")]
    } else {
        vec![b("LTRIM"), key, b("0"), n(-(count as i128) - 1)]
    };
    Form::Commands(vec![cmd])
}

/// `ZADD key [NX|XX] [GT|LT] [CH] [INCR] score member...` with `GT`/`LT` (6.2): a script that
/// compares with each member's score first. Scores pass as the source's text, never through a
/// Lua number, so none loses precision.
fn zadd(args: &[Bytes]) -> Form {
    let mut i = 2;
    let (mut gt, mut lt, mut xx, mut incr) = (false, false, false, false);
    while i < args.len() {
        let a = &args[i];
        if is(a, "GT") {
            gt = true;
        } else if is(a, "LT") {
            lt = true;
        } else if is(a, "XX") {
            xx = true;
        } else if is(a, "INCR") {
            incr = true;
        } else if !(is(a, "NX") || is(a, "CH")) {
            break;
        }
        i += 1;
    }
    if !gt && !lt {
        return Form::Same;
    }
    let mut argv = vec![
        b(if gt { "GT" } else { "LT" }),
        b(if xx { "XX" } else { "-" }),
        b(if incr { "INCR" } else { "-" }),
    ];
    argv.extend_from_slice(&args[i..]);
    Form::Commands(vec![eval(ZADD_GT_LT, &[args[1].clone()], &argv)])
}

const ZADD_GT_LT: &str = "local gt, xx, incr = ARGV[1] == 'GT', ARGV[2] == 'XX', ARGV[3] == 'INCR' \
for i = 4, #ARGV, 2 do \
  local cur = redis.call('ZSCORE', KEYS[1], ARGV[i + 1]) \
  if cur then \
    local old, new = tonumber(cur), tonumber(ARGV[i]) \
    if incr then new = old + new end \
    if (gt and new > old) or ((not gt) and new < old) then \
      if incr then redis.call('ZINCRBY', KEYS[1], ARGV[i], ARGV[i + 1]) \
      else redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) end \
    end \
  elseif not xx then \
    redis.call('ZADD', KEYS[1], ARGV[i], ARGV[i + 1]) \
  end \
end \
return 0";

/// Where an `XADD`/`XTRIM` trim clause is, and what it says.
struct Trim {
    minid: bool,
    /// The `=` or `~` given, if any.
    mark: Option<Bytes>,
    threshold: Bytes,
    /// `LIMIT n`, if given.
    limit: Option<Bytes>,
}

/// The options of `XADD`/`XTRIM` before the id: the trim clause, `NOMKSTREAM`, options kept
/// as they are (`KEEPREF|DELREF|ACKED` from 8.2, `IDMP`/`IDMPAUTO` from 8.6), and where the
/// rest (`XADD`'s id and fields) starts. None when the command does not parse.
struct AddOptions {
    trim: Option<Trim>,
    nomkstream: bool,
    kept: Vec<Bytes>,
    rest: usize,
}

fn parse_trim(args: &[Bytes], xadd: bool) -> Option<AddOptions> {
    let mut trim = None;
    let mut nomkstream = false;
    let mut kept = Vec::new();
    let mut i = 2;
    while i < args.len() {
        let a = &args[i];
        let takes = if is(a, "KEEPREF") || is(a, "DELREF") || is(a, "ACKED") {
            Some(0)
        } else if is(a, "IDMPAUTO") && xadd {
            Some(1)
        } else if is(a, "IDMP") && xadd {
            Some(2)
        } else {
            None
        };
        if let Some(takes) = takes {
            kept.extend_from_slice(args.get(i..=i + takes)?);
            i += takes;
        } else if is(a, "MAXLEN") || is(a, "MINID") {
            i += 1;
            let mark = args
                .get(i)
                .filter(|m| m.as_ref() == b"=" || m.as_ref() == b"~")
                .cloned();
            if mark.is_some() {
                i += 1;
            }
            let threshold = args.get(i)?.clone();
            trim = Some(Trim {
                minid: is(a, "MINID"),
                mark,
                threshold,
                limit: None,
            });
        } else if is(a, "LIMIT") {
            i += 1;
            trim.as_mut()?.limit = Some(args.get(i)?.clone());
        } else if is(a, "NOMKSTREAM") && xadd {
            nomkstream = true;
        } else {
            break;
        }
        i += 1;
    }
    Some(AddOptions {
        trim,
        nomkstream,
        kept,
        rest: i,
    })
}

/// The trim clause as a target of this version takes it: `LIMIT` only with `~` (a replica
/// ignores it, and the source sends `=` with the length or id its own trim reached), `=` and
/// `LIMIT` from 6.2. None when only a script can do it (`MINID` before 6.2).
fn trim_clause(trim: &Trim, t: Target) -> Option<Vec<Bytes>> {
    let approx = trim.mark.as_deref() == Some(b"~");
    if trim.minid && !t.at_least(6, 2) {
        return None;
    }
    let mut out = vec![b(if trim.minid { "MINID" } else { "MAXLEN" })];
    match &trim.mark {
        Some(mark) if approx || t.at_least(6, 2) => out.push(mark.clone()),
        _ => {}
    }
    out.push(trim.threshold.clone());
    if let Some(limit) = trim.limit.as_ref().filter(|_| approx && t.at_least(6, 2)) {
        out.push(b("LIMIT"));
        out.push(limit.clone());
    }
    Some(out)
}

/// Whether `trim_clause` changes anything.
fn trim_changes(trim: &Trim, t: Target) -> bool {
    let approx = trim.mark.as_deref() == Some(b"~");
    (trim.limit.is_some() && (!approx || !t.at_least(6, 2)))
        || (!t.at_least(6, 2) && (trim.minid || trim.mark.as_deref() == Some(b"=")))
}

/// `XADD key [NOMKSTREAM] [MAXLEN|MINID [=|~] n [LIMIT k]] id field value...`.
fn xadd(args: &[Bytes], t: Target) -> Form {
    let Some(AddOptions {
        trim,
        nomkstream,
        kept,
        rest,
    }) = parse_trim(args, true)
    else {
        return Form::Same;
    };
    let old = !t.at_least(6, 2);
    let trim_changed = trim.as_ref().is_some_and(|tr| trim_changes(tr, t));
    if !(trim_changed || nomkstream && old) {
        return Form::Same;
    }
    let key = args[1].clone();
    let mut cmd = vec![b("XADD"), key.clone()];
    if nomkstream && !old {
        // The source wrote, so the stream existed: kept for the same reply only.
        cmd.push(b("NOMKSTREAM"));
    }
    cmd.extend(kept);
    let mut script_minid = None;
    if let Some(tr) = &trim {
        match trim_clause(tr, t) {
            Some(clause) => cmd.extend(clause),
            None => script_minid = Some(tr.threshold.clone()),
        }
    }
    cmd.extend_from_slice(&args[rest..]);
    match script_minid {
        None => Form::Commands(vec![cmd]),
        Some(minid) => Form::Commands(vec![cmd, eval(XTRIM_MINID, &[key], &[minid])]),
    }
}

/// `XTRIM key MAXLEN|MINID [=|~] n [LIMIT k]`.
fn xtrim(args: &[Bytes], t: Target) -> Form {
    let Some(AddOptions {
        trim: Some(trim),
        kept,
        rest,
        ..
    }) = parse_trim(args, false)
    else {
        return Form::Same;
    };
    if rest < args.len() || !trim_changes(&trim, t) {
        return Form::Same;
    }
    let key = args[1].clone();
    match trim_clause(&trim, t) {
        Some(clause) => {
            let mut cmd = vec![b("XTRIM"), key];
            cmd.extend(clause);
            cmd.extend(kept);
            Form::Commands(vec![cmd])
        }
        None => Form::Commands(vec![eval(XTRIM_MINID, &[key], &[trim.threshold])]),
    }
}

/// `MINID = id` before 6.2: deletes the entries below `id`, oldest first, in batches.
const XTRIM_MINID: &str = "local n = 0 \
while true do \
  local r = redis.call('XRANGE', KEYS[1], '-', ARGV[1], 'COUNT', 1000) \
  local ids = {} \
  for _, e in ipairs(r) do if e[1] ~= ARGV[1] then ids[#ids + 1] = e[1] end end \
  if #ids == 0 then return n end \
  n = n + redis.call('XDEL', KEYS[1], unpack(ids)) \
end";

/// `XSETID key id [ENTRIESADDED n] [MAXDELETEDID id]` (7.0): counters an older stream has not.
fn xsetid(args: &[Bytes]) -> Form {
    if args.len() <= 3 {
        return Form::Same;
    }
    Form::Commands(vec![args[..3].to_vec()])
}

/// `XGROUP CREATE|SETID ... ENTRIESREAD n` (7.0) without the counter; `XGROUP
/// CREATECONSUMER` (6.2: XREADGROUP's consumer with nothing pending) dropped before 6.2.
fn xgroup(args: &[Bytes], t: Target) -> Form {
    let Some(sub) = args.get(1) else {
        return Form::Same;
    };
    if is(sub, "CREATECONSUMER") && !t.at_least(6, 2) {
        return dropped(
            "XGROUP CREATECONSUMER",
            format!(
                "consumer {} of group {} of stream {} (XGROUP CREATECONSUMER): the target is older than 6.2 and creates a consumer only with a pending entry",
                arg_text(args, 4),
                arg_text(args, 3),
                arg_text(args, 2)
            ),
        );
    }
    if (is(sub, "CREATE") || is(sub, "SETID"))
        && !t.at_least(7, 0)
        && let Some(at) = args.iter().position(|a| is(a, "ENTRIESREAD"))
    {
        let mut cmd = args[..at].to_vec();
        cmd.extend_from_slice(args.get(at + 2..).unwrap_or_default());
        return Form::Commands(vec![cmd]);
    }
    Form::Same
}

/// `COPY src dst [DB n] [REPLACE]` (6.2): DUMP and RESTORE in a script, TTL kept. Into another
/// db it cannot be written before 6.2.
fn copy(args: &[Bytes]) -> Form {
    if args.len() < 3 {
        return Form::Same;
    }
    if args[3..].iter().any(|a| is(a, "DB")) {
        return dropped(
            "COPY ... DB",
            format!(
                "COPY {} {} into another db: the target is older than 6.2",
                arg_text(args, 1),
                arg_text(args, 2)
            ),
        );
    }
    let replace = args[3..].iter().any(|a| is(a, "REPLACE"));
    Form::Commands(vec![eval(
        COPY,
        &[args[1].clone(), args[2].clone()],
        &[b(if replace { "REPLACE" } else { "-" })],
    )])
}

const COPY: &str = "if ARGV[1] ~= 'REPLACE' and redis.call('EXISTS', KEYS[2]) == 1 then return 0 end \
local v = redis.call('DUMP', KEYS[1]) \
if not v then return 0 end \
local t = redis.call('PTTL', KEYS[1]) \
if t < 0 then t = 0 end \
redis.call('RESTORE', KEYS[2], t, v, 'REPLACE') \
return 1";

/// `ZRANGESTORE dst src min max [BYSCORE|BYLEX] [REV] [LIMIT offset count]` (6.2): the range
/// read with the older commands, then stored, in a script.
fn zrangestore(args: &[Bytes]) -> Form {
    if args.len() < 5 {
        return Form::Same;
    }
    let (mut by, mut rev, mut limit) = ("RANK", false, None);
    let mut i = 5;
    while i < args.len() {
        let a = &args[i];
        if is(a, "BYSCORE") {
            by = "BYSCORE";
        } else if is(a, "BYLEX") {
            by = "BYLEX";
        } else if is(a, "REV") {
            rev = true;
        } else if is(a, "LIMIT") && i + 2 < args.len() {
            limit = Some((args[i + 1].clone(), args[i + 2].clone()));
            i += 2;
        } else {
            return Form::Same;
        }
        i += 1;
    }
    let (offset, count) = limit.unwrap_or_else(|| (b("-"), b("-")));
    Form::Commands(vec![eval(
        ZRANGESTORE,
        &[args[1].clone(), args[2].clone()],
        &[
            args[3].clone(),
            args[4].clone(),
            b(by),
            b(if rev { "REV" } else { "-" }),
            offset,
            count,
        ],
    )])
}

const ZRANGESTORE: &str = "local by, rev = ARGV[3], ARGV[4] == 'REV' \
local lim = {} \
if ARGV[5] ~= '-' then lim = {'LIMIT', ARGV[5], ARGV[6]} end \
local r, scored = nil, true \
if by == 'BYSCORE' then \
  r = redis.call(rev and 'ZREVRANGEBYSCORE' or 'ZRANGEBYSCORE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES', unpack(lim)) \
elseif by == 'BYLEX' then \
  r = redis.call(rev and 'ZREVRANGEBYLEX' or 'ZRANGEBYLEX', KEYS[2], ARGV[1], ARGV[2], unpack(lim)) \
  scored = false \
else \
  r = redis.call(rev and 'ZREVRANGE' or 'ZRANGE', KEYS[2], ARGV[1], ARGV[2], 'WITHSCORES') \
end \
local out = {} \
if scored then \
  for i = 1, #r, 2 do out[#out + 1] = r[i + 1] out[#out + 1] = r[i] end \
else \
  for i = 1, #r do out[#out + 1] = redis.call('ZSCORE', KEYS[2], r[i]) out[#out + 1] = r[i] end \
end \
redis.call('DEL', KEYS[1]) \
for i = 1, #out, 1000 do \
  redis.call('ZADD', KEYS[1], unpack(out, i, math.min(i + 999, #out))) \
end \
return #out / 2";

/// `ZDIFFSTORE dst numkeys key...` (6.2): the first set's members in none of the others.
fn zdiffstore(args: &[Bytes]) -> Form {
    let Some(count) = args.get(2).and_then(|a| num::<usize>(a)) else {
        return Form::Same;
    };
    if count == 0 || args.len() != 3 + count {
        return Form::Same;
    }
    let mut keys = vec![args[1].clone()];
    keys.extend_from_slice(&args[3..]);
    Form::Commands(vec![eval(ZDIFFSTORE, &keys, &[])])
}

const ZDIFFSTORE: &str = "local r = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES') \
local out = {} \
for i = 1, #r, 2 do \
  local keep = true \
  for k = 3, #KEYS do \
    if redis.call('ZSCORE', KEYS[k], r[i]) then keep = false break end \
  end \
  if keep then out[#out + 1] = r[i + 1] out[#out + 1] = r[i] end \
end \
redis.call('DEL', KEYS[1]) \
for i = 1, #out, 1000 do \
  redis.call('ZADD', KEYS[1], unpack(out, i, math.min(i + 999, #out))) \
end \
return #out / 2";

/// `GEOSEARCHSTORE dst src FROMMEMBER m|FROMLONLAT lon lat BYRADIUS r unit [ASC|DESC]
/// [COUNT n] [STOREDIST]` (6.2) as `GEORADIUS[BYMEMBER] ... STORE|STOREDIST`; `BYBOX` and
/// `COUNT ... ANY` have no older form.
fn geosearchstore(args: &[Bytes]) -> Form {
    let no_form = || {
        dropped(
            "GEOSEARCHSTORE",
            format!(
                "GEOSEARCHSTORE into {} with BYBOX or ANY: the target is older than 6.2 and has no such search",
                arg_text(args, 1)
            ),
        )
    };
    let (dst, src) = match (args.get(1), args.get(2)) {
        (Some(d), Some(s)) => (d.clone(), s.clone()),
        _ => return Form::Same,
    };
    let mut from: Option<Vec<Bytes>> = None;
    let mut radius: Option<Vec<Bytes>> = None;
    let mut tail: Vec<Bytes> = Vec::new();
    let mut storedist = false;
    let mut i = 3;
    while i < args.len() {
        let a = &args[i];
        let rest = |k: usize| args.get(i + 1..i + 1 + k).map(|s| s.to_vec());
        if is(a, "FROMMEMBER") {
            from = rest(1);
            i += 1;
        } else if is(a, "FROMLONLAT") {
            from = rest(2);
            i += 2;
        } else if is(a, "BYRADIUS") {
            radius = rest(2);
            i += 2;
        } else if is(a, "BYBOX") || is(a, "ANY") {
            return no_form();
        } else if is(a, "COUNT") {
            let Some(count) = rest(1) else {
                return Form::Same;
            };
            tail.push(b("COUNT"));
            tail.extend(count);
            i += 1;
        } else if is(a, "ASC") || is(a, "DESC") {
            tail.push(a.clone());
        } else if is(a, "STOREDIST") {
            storedist = true;
        } else {
            return Form::Same;
        }
        i += 1;
    }
    let (Some(from), Some(radius)) = (from, radius) else {
        return Form::Same;
    };
    let name = if from.len() == 1 {
        "GEORADIUSBYMEMBER"
    } else {
        "GEORADIUS"
    };
    let mut cmd = vec![b(name), src];
    cmd.extend(from);
    cmd.extend(radius);
    cmd.extend(tail);
    cmd.push(b(if storedist { "STOREDIST" } else { "STORE" }));
    cmd.push(dst);
    Form::Commands(vec![cmd])
}

/// `FLUSHALL|FLUSHDB SYNC` (6.2): the same, waited for.
fn flush(args: &[Bytes]) -> Form {
    match args.get(1) {
        Some(a) if is(a, "SYNC") => Form::Commands(vec![vec![args[0].clone()]]),
        _ => Form::Same,
    }
}

/// `SCRIPT FLUSH SYNC|ASYNC` (6.2).
fn script_flush(args: &[Bytes]) -> Form {
    match (args.get(1), args.len()) {
        (Some(sub), 3) if is(sub, "FLUSH") => Form::Commands(vec![args[..2].to_vec()]),
        _ => Form::Same,
    }
}

/// The `FIELDS n f...` part of a hash field command: the field names (and values, for
/// `HSETEX`), or None when it does not parse.
fn fields(args: &[Bytes], from: usize, with_values: bool) -> Option<(usize, Vec<Bytes>)> {
    let at = (from..args.len()).find(|&i| is(&args[i], "FIELDS"))?;
    let count: usize = num(args.get(at + 1)?)?;
    let per = if with_values { 2 } else { 1 };
    let items = args.get(at + 2..at + 2 + count * per)?.to_vec();
    Some((at, items))
}

/// A field expiry clause (`EX s|PX ms|EXAT s|PXAT ms`) as the 7.4 command setting it.
fn field_expiry(args: &[Bytes], upto: usize) -> Option<(&'static str, Bytes)> {
    (2..upto).find_map(|i| {
        let a = &args[i];
        let v = args.get(i + 1)?.clone();
        if is(a, "EX") {
            Some(("HEXPIRE", v))
        } else if is(a, "PX") {
            Some(("HPEXPIRE", v))
        } else if is(a, "EXAT") {
            Some(("HEXPIREAT", v))
        } else if is(a, "PXAT") {
            Some(("HPEXPIREAT", v))
        } else {
            None
        }
    })
}

fn field_ttl_lost(command: &str, args: &[Bytes]) -> String {
    format!(
        "{command} of hash {}: the target is older than 7.4 and keeps no TTL per hash field (the fields are deleted when the source sends their expiry)",
        arg_text(args, 1)
    )
}

/// `HSETEX key [FNX|FXX] [EX|PX|EXAT|PXAT t|KEEPTTL] FIELDS n f v...` (8.0): `HSET`, then the
/// fields' expiry from 7.4 (before, the TTL is dropped and counted).
fn hsetex(args: &[Bytes], t: Target) -> Form {
    let Some((at, items)) = fields(args, 2, true) else {
        return Form::Same;
    };
    let key = args[1].clone();
    let mut hset = vec![b("HSET"), key.clone()];
    hset.extend(items.iter().cloned());
    let mut cmds = vec![hset];
    match field_expiry(args, at) {
        Some((command, when)) if t.hash_field_ttl() => {
            let names: Vec<Bytes> = items.iter().step_by(2).cloned().collect();
            let mut cmd = vec![b(command), key, when, b("FIELDS"), n(names.len())];
            cmd.extend(names);
            cmds.push(cmd);
        }
        Some(_) => {
            // The values still go; the TTL is what is lost.
            return Form::Lossy {
                commands: cmds,
                form: "hash field TTL",
                why: field_ttl_lost("HSETEX", args),
            };
        }
        None if args[2..at].iter().any(|a| is(a, "KEEPTTL")) && t.hash_field_ttl() => {
            return dropped(
                "HSETEX KEEPTTL",
                format!(
                    "HSETEX ... KEEPTTL of hash {}: the target is older than 8.0 and cannot set fields keeping their TTLs",
                    arg_text(args, 1)
                ),
            );
        }
        None => {}
    }
    Form::Commands(cmds)
}

/// `HGETEX key [EX|PX|EXAT|PXAT t|PERSIST] FIELDS n f...` (8.0): only the expiry writes.
fn hgetex(args: &[Bytes], t: Target) -> Form {
    let Some((at, names)) = fields(args, 2, false) else {
        return Form::Same;
    };
    let expiry = field_expiry(args, at);
    if !t.hash_field_ttl() {
        return match expiry {
            Some(_) => dropped("hash field TTL", field_ttl_lost("HGETEX", args)),
            // PERSIST, or a plain read: nothing where no field has a TTL.
            None => Form::Commands(Vec::new()),
        };
    }
    let key = args[1].clone();
    let (command, when) = match expiry {
        Some((command, when)) => (command, Some(when)),
        None if args[2..at].iter().any(|a| is(a, "PERSIST")) => ("HPERSIST", None),
        None => return Form::Commands(Vec::new()),
    };
    let mut cmd = vec![b(command), key];
    cmd.extend(when);
    cmd.push(b("FIELDS"));
    cmd.push(n(names.len()));
    cmd.extend(names);
    Form::Commands(vec![cmd])
}

/// `MSETEX numkeys key value... [NX|XX] [EX s|PX ms|EXAT s|PXAT ms|KEEPTTL]` (8.4): `MSET`,
/// then each key's expiry (or `SET ... KEEPTTL` per key).
fn msetex(args: &[Bytes], t: Target) -> Form {
    let Some(count) = args.get(1).and_then(|a| num::<usize>(a)) else {
        return Form::Same;
    };
    let Some(pairs) = args.get(2..2 + 2 * count) else {
        return Form::Same;
    };
    let options = &args[2 + 2 * count..];
    let mut expiry: Option<(&'static str, i64)> = None;
    let mut keepttl = false;
    let mut i = 0;
    while i < options.len() {
        let a = &options[i];
        let value = || options.get(i + 1).and_then(|v| num::<i64>(v));
        if is(a, "NX") || is(a, "XX") {
        } else if is(a, "KEEPTTL") {
            keepttl = true;
        } else if is(a, "EX") || is(a, "PX") || is(a, "EXAT") || is(a, "PXAT") {
            let Some(v) = value() else {
                return Form::Same;
            };
            expiry = Some(if is(a, "EX") {
                ("PEXPIRE", v.saturating_mul(1000))
            } else if is(a, "PX") {
                ("PEXPIRE", v)
            } else if is(a, "EXAT") {
                ("PEXPIREAT", v.saturating_mul(1000))
            } else {
                ("PEXPIREAT", v)
            });
            i += 1;
        } else {
            return Form::Same;
        }
        i += 1;
    }
    if keepttl {
        let cmds = pairs
            .chunks(2)
            .map(
                |kv| match set(&[b("SET"), kv[0].clone(), kv[1].clone(), b("KEEPTTL")], t) {
                    Form::Commands(mut c) if c.len() == 1 => c.remove(0),
                    _ => vec![b("SET"), kv[0].clone(), kv[1].clone(), b("KEEPTTL")],
                },
            )
            .collect();
        return Form::Commands(cmds);
    }
    let mut mset = vec![b("MSET")];
    mset.extend_from_slice(pairs);
    let mut cmds = vec![mset];
    if let Some((command, value)) = expiry {
        for kv in pairs.chunks(2) {
            cmds.push(vec![b(command), kv[0].clone(), n(value)]);
        }
    }
    Form::Commands(cmds)
}

/// `XDELEX key [KEEPREF|DELREF|ACKED] IDS n id...` and `XACKDEL key group [...] IDS n id...`
/// (8.2): with `KEEPREF` (the default) `XDEL` (after `XACK` for `XACKDEL`); the other modes
/// depend on every group's pending lists and have no older form.
fn xdelex(args: &[Bytes], ack: bool) -> Form {
    let from = if ack { 3 } else { 2 };
    let Some(at) = (from..args.len()).find(|&i| is(&args[i], "IDS")) else {
        return Form::Same;
    };
    let Some(count) = args.get(at + 1).and_then(|a| num::<usize>(a)) else {
        return Form::Same;
    };
    let Some(ids) = args.get(at + 2..at + 2 + count) else {
        return Form::Same;
    };
    if args[from..at].iter().any(|a| !is(a, "KEEPREF")) {
        return dropped(
            "XDELEX/XACKDEL DELREF|ACKED",
            format!(
                "{} of stream {} with DELREF or ACKED: the target is older than 8.2",
                if ack { "XACKDEL" } else { "XDELEX" },
                arg_text(args, 1)
            ),
        );
    }
    let key = args[1].clone();
    let mut cmds = Vec::new();
    if ack {
        let mut xack = vec![b("XACK"), key.clone(), args[2].clone()];
        xack.extend_from_slice(ids);
        cmds.push(xack);
    }
    let mut xdel = vec![b("XDEL"), key];
    xdel.extend_from_slice(ids);
    cmds.push(xdel);
    Form::Commands(cmds)
}

/// `HGETDEL key FIELDS n f...` (8.0): `HDEL`.
fn hgetdel(args: &[Bytes]) -> Form {
    let Some((_, names)) = fields(args, 2, false) else {
        return Form::Same;
    };
    let mut cmd = vec![b("HDEL"), args[1].clone()];
    cmd.extend(names);
    Form::Commands(vec![cmd])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(version: (u32, u32, u32)) -> Caps {
        Caps {
            version,
            rdb_version: super::super::caps::rdb_version_of(version),
            databases: None,
        }
    }

    fn args(text: &str) -> Vec<Bytes> {
        text.split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect()
    }

    fn form(text: &str, version: (u32, u32, u32)) -> Form {
        for_target(&args(text), &caps(version))
    }

    fn commands(lines: &[&str]) -> Form {
        Form::Commands(lines.iter().map(|l| args(l)).collect())
    }

    #[test]
    fn trims_a_source_decided_apply_without_limit_on_a_master() {
        let v7 = (7, 0, 15);
        assert_eq!(
            form("XADD s MAXLEN = 3 LIMIT 2 1-1 f v", v7),
            commands(&["XADD s MAXLEN = 3 1-1 f v"])
        );
        assert_eq!(
            form("xtrim s minid = 5-0 limit 100", v7),
            commands(&["XTRIM s MINID = 5-0"])
        );
        assert_eq!(form("XADD s MAXLEN ~ 3 LIMIT 2 1-1 f v", v7), Form::Same);
        assert_eq!(form("XADD s MAXLEN = 3 1-1 f v", v7), Form::Same);
        // 8.2's reference options and 8.6's idempotent producers stay as they are.
        let v86 = (8, 6, 0);
        assert_eq!(
            form("XADD s ACKED IDMP p i1 MAXLEN = 3 LIMIT 2 1-1 f v", v86),
            commands(&["XADD s ACKED IDMP p i1 MAXLEN = 3 1-1 f v"])
        );
        assert_eq!(
            form("XTRIM s MAXLEN = 3 LIMIT 2 DELREF", v86),
            commands(&["XTRIM s MAXLEN = 3 DELREF"])
        );
        assert_eq!(form("XADD s 1-1 f v", v7), Form::Same);
        // 5.0 knows neither `=` nor LIMIT nor MINID.
        let v5 = (5, 0, 6);
        assert_eq!(
            form("XADD s MAXLEN = 3 LIMIT 2 1-1 f v", v5),
            commands(&["XADD s MAXLEN 3 1-1 f v"])
        );
        assert_eq!(
            form("XADD s NOMKSTREAM 1-1 f v", v5),
            commands(&["XADD s 1-1 f v"])
        );
        let Form::Commands(c) = form("XADD s MINID = 5-0 LIMIT 9 9-1 f v", v5) else {
            panic!()
        };
        assert_eq!(c[0], args("XADD s 9-1 f v"));
        assert_eq!(c[1][0], "EVAL");
        assert_eq!(&c[1][3..], &args("s 5-0")[..]);
    }

    #[test]
    fn set_forms_follow_the_target() {
        let v5 = (5, 0, 6);
        assert_eq!(
            form("SET k v PXAT 1700000000000", v5),
            commands(&["SET k v", "PEXPIREAT k 1700000000000"])
        );
        assert_eq!(
            form("SET k v NX GET EXAT 1700000000", v5),
            commands(&["SET k v", "PEXPIREAT k 1700000000000"])
        );
        assert_eq!(form("SET k v GET", v5), commands(&["SET k v"]));
        assert_eq!(
            form("SET k v XX GET", (6, 2, 14)),
            commands(&["SET k v XX"])
        );
        assert_eq!(form("SET k v PXAT 17", (6, 2, 14)), Form::Same);
        assert_eq!(form("SET k v EX 10", v5), Form::Same);
        assert_eq!(form("SET k v KEEPTTL", (6, 0, 0)), Form::Same);
        let Form::Commands(c) = form("SET k v KEEPTTL", v5) else {
            panic!()
        };
        assert_eq!(c[0][0], "EVAL");
        assert_eq!(form("SET k v NX GET", (7, 0, 15)), Form::Same);
        assert_eq!(
            form("SET k v IFEQ old GET", (7, 2, 4)),
            commands(&["SET k v"])
        );
        assert_eq!(
            form("SET k v IFEQ old PXAT 17", (5, 0, 6)),
            commands(&["SET k v", "PEXPIREAT k 17"])
        );
    }

    #[test]
    fn older_targets_get_older_commands() {
        let v5 = (5, 0, 6);
        assert_eq!(form("PEXPIREAT k 17 GT", v5), commands(&["PEXPIREAT k 17"]));
        assert_eq!(form("PEXPIREAT k 17 GT", (7, 0, 15)), Form::Same);
        assert_eq!(form("LPOP l 3", v5), commands(&["LTRIM l 3 -1"]));
        assert_eq!(form("RPOP l 3", v5), commands(&["LTRIM l 0 -4"]));
        assert_eq!(form("LPOP l", v5), Form::Same);
        assert_eq!(
            form("LMOVE a b RIGHT LEFT", v5),
            commands(&["RPOPLPUSH a b"])
        );
        assert_eq!(
            form("XSETID s 5-0 ENTRIESADDED 9 MAXDELETEDID 2-0", (6, 2, 14)),
            commands(&["XSETID s 5-0"])
        );
        assert_eq!(
            form("XGROUP SETID s g 5-0 ENTRIESREAD 3", (6, 2, 14)),
            commands(&["XGROUP SETID s g 5-0"])
        );
        assert_eq!(
            form("XGROUP CREATE s g 0 MKSTREAM ENTRIESREAD 3", v5),
            commands(&["XGROUP CREATE s g 0 MKSTREAM"])
        );
        assert!(matches!(
            form("XGROUP CREATECONSUMER s g c", v5),
            Form::Lossy { ref commands, .. } if commands.is_empty()
        ));
        assert_eq!(form("XGROUP CREATECONSUMER s g c", (6, 2, 14)), Form::Same);
        assert_eq!(form("FLUSHALL SYNC", v5), commands(&["FLUSHALL"]));
        assert_eq!(
            form(
                "GEOSEARCHSTORE d s FROMMEMBER m BYRADIUS 10 km ASC COUNT 3 STOREDIST",
                v5
            ),
            commands(&["GEORADIUSBYMEMBER s m 10 km ASC COUNT 3 STOREDIST d"])
        );
        assert_eq!(
            form("SPUBLISH ch m", (6, 2, 14)),
            commands(&["PUBLISH ch m"])
        );
    }

    #[test]
    fn commands_of_8_2_and_later_for_older_targets() {
        let v80 = (8, 0, 2);
        assert_eq!(form("DELIFEQ k v", v80), commands(&["DEL k"]));
        assert_eq!(form("DELEX k IFEQ v", v80), commands(&["DEL k"]));
        assert_eq!(form("DELEX k IFEQ v", (8, 4, 0)), Form::Same);
        assert_eq!(
            form("MSETEX 2 a 1 b 2 NX PXAT 99", v80),
            commands(&["MSET a 1 b 2", "PEXPIREAT a 99", "PEXPIREAT b 99"])
        );
        assert_eq!(
            form("MSETEX 1 a 1 EX 9", v80),
            commands(&["MSET a 1", "PEXPIRE a 9000"])
        );
        assert_eq!(
            form("MSETEX 1 a 1 KEEPTTL", v80),
            commands(&["SET a 1 KEEPTTL"])
        );
        assert_eq!(
            form("XDELEX s KEEPREF IDS 2 1-1 2-1", v80),
            commands(&["XDEL s 1-1 2-1"])
        );
        assert_eq!(
            form("XACKDEL s g IDS 1 1-1", v80),
            commands(&["XACK s g 1-1", "XDEL s 1-1"])
        );
        assert!(matches!(
            form("XACKDEL s g ACKED IDS 1 1-1", v80),
            Form::Lossy { ref commands, .. } if commands.is_empty()
        ));
        assert_eq!(form("XDELEX s IDS 1 1-1", (8, 2, 0)), Form::Same);
    }

    #[test]
    fn hash_field_commands_before_8_0() {
        let v74 = (7, 4, 0);
        assert_eq!(
            form("HSETEX h PXAT 99 FIELDS 2 a 1 b 2", v74),
            commands(&["HSET h a 1 b 2", "HPEXPIREAT h 99 FIELDS 2 a b"])
        );
        assert_eq!(
            form("HGETEX h PERSIST FIELDS 1 a", v74),
            commands(&["HPERSIST h FIELDS 1 a"])
        );
        assert_eq!(
            form("HGETDEL h FIELDS 2 a b", v74),
            commands(&["HDEL h a b"])
        );
        assert_eq!(form("HSETEX h PXAT 99 FIELDS 1 a 1", (8, 0, 2)), Form::Same);
        let Form::Lossy { commands: c, .. } = form("HSETEX h EX 9 FIELDS 1 a 1", (7, 2, 4)) else {
            panic!()
        };
        assert_eq!(c, vec![args("HSET h a 1")]);
        assert_eq!(
            form("HPERSIST h FIELDS 1 a", (7, 2, 4)),
            Form::Commands(Vec::new())
        );
        assert!(matches!(
            form("HPEXPIREAT h 99 FIELDS 1 a", (7, 2, 4)),
            Form::Lossy { ref commands, .. } if commands.is_empty()
        ));
        // Valkey 9 reports 7.2.4 but writes RDB 80, and has field TTLs.
        let valkey9 = Caps {
            version: (7, 2, 4),
            rdb_version: 80,
            databases: None,
        };
        assert_eq!(
            for_target(&args("HPEXPIREAT h 99 FIELDS 1 a"), &valkey9),
            Form::Same
        );
    }
}
