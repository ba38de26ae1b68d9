//! Held TTLs: a snapshot key is written with its expiry pushed a day later while the copy
//! runs, and gets its own expiry back once that is safe.
//!
//! A replica never expires a key by itself: it waits for its master's `DEL`. The target of a
//! sync is a master, so a snapshot key whose TTL (absolute expiry T0) runs out while the copy
//! or the catch-up after it is still running would be expired by the target's clock (or
//! skipped by `RESTORE ... ABSTTL` as already expired), and a renewal the source made after
//! the snapshot (`PEXPIRE`, `PERSIST`, `SET`, `GETEX`, coming later in the stream) would find
//! no key. So while the copy runs, every key with a TTL is written to expire at T0 + `HOLD_MS`
//! and recorded as `T0 → key` in a sorted set in the target itself, beside the key (one per db,
//! or one per slot on a cluster, so a script touches one slot):
//! `__ferry:hold:<task>` (`__ferry:hold:<task>:{tag}` on a cluster). ferry never copies its
//! own keys, and the list is bounded by the target's memory, not ferry's.
//!
//! Once the snapshot is applied, every second the writer sends one small script per list, in
//! stream order with its other writes. For each held key, if the key still expires at
//! T0 + `HOLD_MS` (the stream has not set its TTL since: any stream command that does wins):
//! - T0 later than now + 2 × the current lag + `MARGIN_MS`: any renewal still in flight is
//!   applied before T0, so the key gets `PEXPIREAT T0` and leaves the list;
//! - otherwise it keeps its held expiry, as a replica would: the source expires it at T0 and
//!   propagates a `DEL`, which removes it on the target too; a renewal changes its TTL. The
//!   next pass then finds it gone or changed and drops it from the list.
//!
//! A task stopped for good leaves each held key to expire a day after the source's expiry.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use ferry_keyspace::SlotTags;

use crate::pipeline::entry::{Command, OWN_KEY_PREFIX};
use crate::status::Status;

/// How much later than the source's a held key expires on the target.
pub const HOLD_MS: i64 = 24 * 60 * 60 * 1000;
/// A held key gets its own expiry back only when that is this much further away than twice
/// the current lag.
const MARGIN_MS: i64 = 5_000;
/// How often the held lists are looked at.
const EVERY: Duration = Duration::from_secs(1);
/// Keys looked at per list and pass (the script blocks the target while it runs).
const BATCH: u64 = 1000;
/// Passes of a round written per write-out, at most.
const CHUNK: usize = 128;
/// Passes per round, at most: how many lists a writer looks at per second.
pub const ROUND_PASSES: usize = 2048;
/// Keys of the copy listed per ZADD, at most; and gathered in all, at most.
const GATHER: usize = 128;
const GATHER_ALL: usize = 1024;

/// What a writer needs to hold TTLs: the task's name, and where the stream's lag is measured.
#[derive(Clone)]
pub struct Setup {
    pub task: String,
    /// The task's status, whose latency probes say how far the target is behind.
    pub clock: Option<Arc<Status>>,
}

impl std::fmt::Debug for Setup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Setup").field("task", &self.task).finish()
    }
}

/// For the held keys of one list whose expiry is later than `ARGV[1]` and still the held one
/// (T0 + `ARGV[2]`), sets T0 back and drops them from the list; drops the keys the stream has
/// deleted or given another TTL. `ARGV[3]`: keys per pass; `ARGV[4]`: "1" when the target has
/// PEXPIRETIME (7.0), else the expiry is read as PTTL + TIME; `ARGV[5]`: "0" to look only at
/// the keys to release. Returns what the list holds after.
const RELEASE: &str = r#"
local hold = tonumber(ARGV[2])
local limit = tonumber(ARGV[3])
if redis.replicate_commands then redis.replicate_commands() end
local function held(k, t0)
  local e
  if ARGV[4] == '1' then
    e = redis.call('PEXPIRETIME', k)
  else
    e = redis.call('PTTL', k)
    if e >= 0 then
      local t = redis.call('TIME')
      e = e + tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
    end
  end
  return e >= 0 and math.abs(e - (t0 + hold)) <= 1000
end
local late = redis.call('ZREVRANGEBYSCORE', KEYS[1], '+inf', '(' .. ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #late, 2 do
  if held(late[i], tonumber(late[i + 1])) then
    redis.call('PEXPIREAT', late[i], late[i + 1])
  end
end
-- They are the highest-ranked.
if #late > 0 then redis.call('ZREMRANGEBYRANK', KEYS[1], -(#late / 2), -1) end
if ARGV[5] == '1' then
  local early = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'WITHSCORES', 'LIMIT', 0, limit)
  for i = 1, #early, 2 do
    if not held(early[i], tonumber(early[i + 1])) then
      redis.call('ZREM', KEYS[1], early[i])
    end
  end
end
return redis.call('ZCARD', KEYS[1])
"#;

/// After a stream command that moves or copies a key with its TTL: if the source key
/// (`ARGV[1]`) is listed in `KEYS[1]`, lists the destination (`ARGV[2]`) in `KEYS[2]` with the
/// same expiry, in db `ARGV[3]` when not empty (MOVE, COPY ... DB).
const FOLLOW: &str = r#"
local t = redis.call('ZSCORE', KEYS[1], ARGV[1])
if t then
  if ARGV[3] ~= '' then redis.call('SELECT', ARGV[3]) end
  redis.call('ZADD', KEYS[2], t, ARGV[2])
end
return 0
"#;

/// One held list: the target db and, on a cluster, the slot.
pub type ListId = (u32, u16);

/// What the target said of each pass: the list, the pass's number, the keys left in it.
#[derive(Debug, Default)]
pub struct Reports(Mutex<Vec<(ListId, u64, i64)>>);

impl Reports {
    pub fn report(&self, list: ListId, pass: u64, left: i64) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((list, pass, left));
    }

    fn take(&self) -> Vec<(ListId, u64, i64)> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

/// One command for the encoder to write: its arguments, the list it is about.
pub struct Write {
    pub list: ListId,
    pub key: Bytes,
    pub args: Vec<Bytes>,
    /// The pass's number, for a release (None: the ZADD of a held key).
    pub pass: Option<u64>,
}

/// One round of passes over the held lists, written out a chunk at a time.
struct Round {
    /// The round's number: a list found empty by it is done unless a key came after it started.
    pass: u64,
    /// Keys expiring after this (unix ms) get their own expiry back.
    after: Bytes,
    /// The passes still to write: the list, and whether it is the list's first of the round.
    queue: VecDeque<(ListId, bool)>,
}

/// A writer's held lists.
pub struct Hold {
    setup: Setup,
    cluster: bool,
    pexpiretime: bool,
    /// The release script's SHA1 once the target has it loaded (`SCRIPT LOAD`): each pass
    /// then sends 40 bytes instead of its 1.2 KB body (a cluster task's writers each send up to
    /// `budget` passes a second).
    release_sha: Option<Bytes>,
    /// The snapshot is being written: keys with a TTL are held.
    copying: bool,
    /// The lists that may hold keys, each with the number of the last pass written before
    /// its last key was added.
    lists: HashMap<ListId, u64>,
    /// Keys added to each list during the copy, not yet looked at.
    copied: HashMap<ListId, u64>,
    /// Keys of the copy not yet listed: `expiry, key` pairs per list, `gathered` in all.
    gathering: HashMap<ListId, Vec<Bytes>>,
    gathered: usize,
    /// Passes written so far.
    passes: u64,
    /// Passes per round, at most (`ROUND_PASSES` in a writer).
    budget: usize,
    /// The round being written out, if any.
    round: Option<Round>,
    /// Where the next pass starts, when the budget cut the last one short.
    cursor: Option<ListId>,
    last_pass: Option<Instant>,
    reports: Arc<Reports>,
    /// Keys held since the writer started, for the log.
    pub held: u64,
    /// When the last copy started.
    copy_started: Option<Instant>,
    own_slots: Vec<(u16, u16)>,
    dbs: u32,
}

pub(super) fn tags() -> &'static SlotTags {
    static TAGS: OnceLock<SlotTags> = OnceLock::new();
    TAGS.get_or_init(SlotTags::new)
}

impl Hold {
    /// `budget`: passes per round, at most.
    pub fn new(setup: Setup, cluster: bool, pexpiretime: bool, budget: usize) -> Hold {
        Hold {
            setup,
            cluster,
            pexpiretime,
            release_sha: None,
            copying: false,
            lists: HashMap::new(),
            copied: HashMap::new(),
            gathering: HashMap::new(),
            gathered: 0,
            passes: 0,
            budget: budget.max(1),
            round: None,
            cursor: None,
            last_pass: None,
            reports: Arc::new(Reports::default()),
            held: 0,
            copy_started: None,
            own_slots: Vec::new(),
            dbs: 16,
        }
    }

    /// The release script, for `SCRIPT LOAD` on the writer's connection.
    pub fn release_script() -> &'static str {
        RELEASE
    }

    /// The target has the release script loaded under `sha`: passes use `EVALSHA`.
    pub fn set_release_sha(&mut self, sha: Bytes) {
        self.release_sha = Some(sha);
    }

    /// Where the reply reader tells what each pass left.
    pub fn reports(&self) -> Arc<Reports> {
        self.reports.clone()
    }

    /// The list's key: `__ferry:hold:<task>` in its db, or `...:<task>:{tag}` in its slot.
    fn list_key(&self, (_, slot): ListId) -> Bytes {
        let prefix = [OWN_KEY_PREFIX, b"hold:", self.setup.task.as_bytes()].concat();
        if self.cluster {
            Bytes::from(tags().key_in_slot(&[&prefix[..], b":"].concat(), slot, b""))
        } else {
            Bytes::from(prefix)
        }
    }

    fn list_of(&self, db: u32, key: &[u8]) -> ListId {
        if self.cluster {
            (0, ferry_keyspace::slot(key))
        } else {
            (db, 0)
        }
    }

    /// A snapshot starts (or ends): while it is written, keys with a TTL are held.
    pub fn copying(&mut self, on: bool) {
        self.copying = on;
        if on {
            self.copy_started = Some(Instant::now());
        }
    }

    /// The expiry to write instead of `t0` for a snapshot key, if it is to be held.
    pub fn held_expiry(&self, t0: i64) -> Option<i64> {
        self.copying.then(|| t0.saturating_add(HOLD_MS))
    }

    /// Records `key` (in target db `db`) as held until `t0`: the ZADDs to write after the key.
    /// With `gather` (a snapshot key: nothing reads the lists before the copy ends), keys are
    /// listed many per ZADD; `gathered` writes out the rest.
    pub fn add(&mut self, db: u32, key: &Bytes, t0: i64, gather: bool) -> Vec<Write> {
        let list = self.list_of(db, key);
        self.lists.insert(list, self.passes);
        *self.copied.entry(list).or_default() += 1;
        self.held += 1;
        if !gather {
            let pair = vec![Bytes::from(t0.to_string()), key.clone()];
            return vec![self.zadd(list, pair)];
        }
        // A copy: a snapshot's key names are cut from the parser's 64 KiB blocks, and the
        // keys gathered here (up to GATHER_ALL, scattered over the snapshot when few keys
        // have a TTL) would each keep a whole block alive until their ZADD is written.
        let pair = [Bytes::from(t0.to_string()), Bytes::copy_from_slice(key)];
        let members = self.gathering.entry(list).or_default();
        members.extend(pair);
        self.gathered += 1;
        if members.len() / 2 >= GATHER {
            let members = self.gathering.remove(&list).unwrap_or_default();
            self.gathered -= members.len() / 2;
            return vec![self.zadd(list, members)];
        }
        if self.gathered >= GATHER_ALL {
            return self.gathered();
        }
        Vec::new()
    }

    /// The ZADDs of every key gathered and not yet listed.
    pub fn gathered(&mut self) -> Vec<Write> {
        self.gathered = 0;
        let mut lists: Vec<(ListId, Vec<Bytes>)> = self.gathering.drain().collect();
        lists.sort_unstable_by_key(|(l, _)| *l);
        lists
            .into_iter()
            .map(|(list, members)| self.zadd(list, members))
            .collect()
    }

    fn zadd(&self, list: ListId, members: Vec<Bytes>) -> Write {
        let key = self.list_key(list);
        let mut args = Vec::with_capacity(2 + members.len());
        args.push(Bytes::from_static(b"ZADD"));
        args.push(key.clone());
        args.extend(members);
        Write {
            list,
            key,
            args,
            pass: None,
        }
    }

    /// Where an earlier run may have left lists: the slots this master serves (on a cluster),
    /// the number of dbs (standalone).
    pub fn set_own_slots(&mut self, slots: Vec<(u16, u16)>, dbs: u32) {
        self.own_slots = slots;
        self.dbs = dbs;
    }

    /// A writer continuing an earlier run's stream: the lists it may have left are looked at
    /// too (every db of a standalone target; on a cluster, the slots this master serves).
    pub fn resume(&mut self) {
        if self.cluster {
            for &(a, b) in &self.own_slots {
                for slot in a..=b {
                    self.lists.entry((0, slot)).or_insert(0);
                }
            }
        } else {
            for db in 0..self.dbs {
                self.lists.entry((db, 0)).or_insert(0);
            }
        }
    }

    /// The releases to write now. A round of passes (one script per list that may hold keys,
    /// `budget` at most) starts at most once a second, never while the snapshot is written;
    /// with `end_of_copy` at once, with as many passes as the keys held during the copy need.
    /// A round goes out `CHUNK` passes per call, that is per write-out: a cluster task's
    /// writers each start theirs in the same second, and each pass is a fenced transaction of
    /// its own (about 1 KB of commands and expectations), so a whole round written at once was
    /// megabytes per writer at the same moment.
    pub fn due(&mut self, now: Instant, unix_ms: u64, end_of_copy: bool) -> Vec<Write> {
        for (list, pass, left) in self.reports.take() {
            // Empty after a pass written after its last key was added: nothing left to do.
            // Negative: the list is no longer on this master (its slot moved).
            if left < 0 || (left == 0 && self.lists.get(&list).is_some_and(|&added| added < pass)) {
                self.lists.remove(&list);
            }
        }
        if self.copying || self.lists.is_empty() {
            self.round = None;
            return Vec::new();
        }
        let round_over = self.round.as_ref().is_none_or(|r| r.queue.is_empty());
        if end_of_copy
            || (round_over
                && self
                    .last_pass
                    .is_none_or(|t| now.saturating_duration_since(t) >= EVERY))
        {
            self.round = Some(self.start_round(now, unix_ms, end_of_copy));
        }
        let Some(mut round) = self.round.take() else {
            return Vec::new();
        };
        let (call, script) = match &self.release_sha {
            Some(sha) => (Bytes::from_static(b"EVALSHA"), sha.clone()),
            None => (
                Bytes::from_static(b"EVAL"),
                Bytes::from_static(RELEASE.as_bytes()),
            ),
        };
        let mut writes = Vec::new();
        while writes.len() < CHUNK {
            let Some((list, first)) = round.queue.pop_front() else {
                break;
            };
            // Dropped since the round started (found empty, or its slot moved).
            if !self.lists.contains_key(&list) {
                continue;
            }
            let key = self.list_key(list);
            writes.push(Write {
                list,
                key: key.clone(),
                args: vec![
                    call.clone(),
                    script.clone(),
                    Bytes::from_static(b"1"),
                    key,
                    round.after.clone(),
                    Bytes::from(HOLD_MS.to_string()),
                    Bytes::from(BATCH.to_string()),
                    Bytes::from_static(if self.pexpiretime { b"1" } else { b"0" }),
                    // The keys left waiting are looked at once per list and round.
                    Bytes::from_static(if first { b"1" } else { b"0" }),
                ],
                pass: Some(round.pass),
            });
        }
        self.round = Some(round);
        writes
    }

    /// The current round has passes left to write.
    pub fn round_left(&self) -> bool {
        self.round.as_ref().is_some_and(|r| !r.queue.is_empty())
    }

    /// The passes of a new round, in round robin from where the budget stopped the last one.
    fn start_round(&mut self, now: Instant, unix_ms: u64, end_of_copy: bool) -> Round {
        self.last_pass = Some(now);
        self.passes += 1;
        // Before the first latency probe comes back (a short copy) or without any (no
        // heartbeat): the time since the copy started, which no position after the snapshot
        // can lag by more.
        let lag = self
            .lag(now)
            .or_else(|| Some(now.saturating_duration_since(self.copy_started?)));
        let after = match lag {
            Some(lag) => {
                let lag = i64::try_from(lag.as_millis()).unwrap_or(i64::MAX / 4);
                (unix_ms as i64 + 2 * lag + MARGIN_MS).to_string()
            }
            // A run that continued a stream, without a measure of the lag: no key gets its
            // expiry back before the source's DEL or renewal, a replica's behaviour.
            None => "+inf".to_string(),
        };
        let mut lists: Vec<ListId> = self.lists.keys().copied().collect();
        lists.sort_unstable();
        let start = self
            .cursor
            .take()
            .map_or(0, |c| lists.partition_point(|&l| l < c));
        lists.rotate_left(start);
        let copied = if end_of_copy {
            if self.held > 0 {
                tracing::info!(
                    keys = self.held,
                    release_after = %after,
                    "TTLs held during the copy: those expiring after release_after (unix ms) get theirs back now, the others wait for the stream"
                );
            }
            std::mem::take(&mut self.copied)
        } else {
            HashMap::new()
        };
        let mut queue = VecDeque::new();
        for list in lists {
            if queue.len() >= self.budget {
                self.cursor = Some(list);
                break;
            }
            let passes = copied.get(&list).map_or(1, |n| n.div_ceil(BATCH).max(1));
            for n in 0..passes {
                if queue.len() >= self.budget {
                    break;
                }
                queue.push_back((list, n == 0));
            }
        }
        Round {
            pass: self.passes,
            after: Bytes::from(after),
            queue,
        }
    }

    fn lag(&self, now: Instant) -> Option<Duration> {
        self.setup.clock.as_ref()?.latency.lag_bound(now)
    }

    /// A stream command that gives a key's TTL to another key (`RENAME`, `RENAMENX`, `COPY`,
    /// `MOVE`) while keys are held: the script that lists the destination too, to write
    /// right after it, in the command's db (`db`; `target_db` maps a source db).
    pub fn follow(
        &mut self,
        cmd: &Command,
        db: u32,
        target_db: impl Fn(u32) -> u32,
    ) -> Option<Write> {
        if self.lists.is_empty() {
            return None;
        }
        let args = &cmd.args;
        let is = |n: &[u8]| args[0].eq_ignore_ascii_case(n);
        let (from, to, to_db) = if (is(b"RENAME") || is(b"RENAMENX")) && args.len() == 3 {
            (&args[1], &args[2], None)
        } else if is(b"COPY") && args.len() >= 3 {
            let at =
                (3..args.len().saturating_sub(1)).find(|&i| args[i].eq_ignore_ascii_case(b"DB"));
            let to_db = match at {
                Some(i) => Some(std::str::from_utf8(&args[i + 1]).ok()?.parse().ok()?),
                None => None,
            };
            (&args[1], &args[2], to_db)
        } else if is(b"MOVE") && args.len() == 3 && !self.cluster {
            let to_db: u32 = std::str::from_utf8(&args[2]).ok()?.parse().ok()?;
            (&args[1], &args[1], Some(to_db))
        } else {
            return None;
        };
        let to_db = to_db.map(target_db).filter(|&d| d != db);
        let from_list = self.list_of(db, from);
        let to_list = self.list_of(to_db.unwrap_or(db), to);
        // The destination's list is looked at from now on (its number: no pass saw it yet).
        self.lists.insert(to_list, self.passes);
        let from_key = self.list_key(from_list);
        Some(Write {
            list: from_list,
            key: from_key.clone(),
            args: vec![
                Bytes::from_static(b"EVAL"),
                Bytes::from_static(FOLLOW.as_bytes()),
                Bytes::from_static(b"2"),
                from_key,
                self.list_key(to_list),
                from.clone(),
                to.clone(),
                Bytes::from(to_db.map(|d| d.to_string()).unwrap_or_default()),
            ],
            pass: None,
        })
    }

    /// A stream command that sets an absolute expiry (what a 7.0+ source propagates for
    /// every TTL it sets) closer than twice the lag: written with the held expiry instead,
    /// so a renewal still behind it in the stream finds the key. Returns the key and its own
    /// expiry, to list once the command is written.
    /// `clock`: now, as an instant and in unix ms; read only for a command with an expiry (a
    /// clock read for every command was 5% of ferry's CPU in a catch-up).
    pub fn hold_command(
        &self,
        cmd: &mut Command,
        clock: impl FnOnce() -> (Instant, u64),
    ) -> Option<(Bytes, i64)> {
        let (index, seconds) = absolute_expiry(&cmd.args)?;
        let (now, unix_ms) = clock();
        let at: i64 = std::str::from_utf8(&cmd.args[index]).ok()?.parse().ok()?;
        let t0 = if seconds { at.checked_mul(1000)? } else { at };
        // Twice the lag; before it is measured (a run continuing a stream, no heartbeat), the
        // margin: a source never sends an expiry already past (it sends DEL), so one that is
        // past here, or close, lags.
        let horizon = match self.lag(now) {
            Some(lag) => 2 * i64::try_from(lag.as_millis()).unwrap_or(i64::MAX / 4),
            None => MARGIN_MS,
        };
        if t0 <= 0 || t0 >= (unix_ms as i64).saturating_add(horizon) {
            return None;
        }
        // Seconds become milliseconds: EXPIREAT → PEXPIREAT, EXAT → PXAT.
        if seconds {
            if cmd.args[0].eq_ignore_ascii_case(b"EXPIREAT") {
                cmd.args[0] = Bytes::from_static(b"PEXPIREAT");
            } else {
                cmd.args[index - 1] = Bytes::from_static(b"PXAT");
            }
        }
        cmd.args[index] = Bytes::from(t0.saturating_add(HOLD_MS).to_string());
        let mut raw = bytes::BytesMut::new();
        ferry_resp::encode_command(&mut raw, &cmd.args);
        cmd.raw = raw.freeze();
        Some((cmd.args[1].clone(), t0))
    }
}

/// Where a command's absolute expiry is (argument index, in seconds rather than ms):
/// `PEXPIREAT k ms`, `EXPIREAT k s` (without NX/XX/GT/LT), `SET`/`GETEX` with `PXAT`/`EXAT`,
/// `RESTORE k ms payload ... ABSTTL`.
fn absolute_expiry(args: &[Bytes]) -> Option<(usize, bool)> {
    let name = args.first()?;
    let is = |n: &[u8]| name.eq_ignore_ascii_case(n);
    if (is(b"PEXPIREAT") || is(b"EXPIREAT")) && args.len() == 3 {
        return Some((2, is(b"EXPIREAT")));
    }
    if is(b"RESTORE") && args.len() >= 5 {
        let abs = args[4..].iter().any(|a| a.eq_ignore_ascii_case(b"ABSTTL"));
        return abs.then_some((2, false));
    }
    let from = if is(b"SET") {
        3
    } else if is(b"GETEX") {
        2
    } else {
        return None;
    };
    let i = (from..args.len().saturating_sub(1)).find(|&i| {
        args[i].eq_ignore_ascii_case(b"PXAT") || args[i].eq_ignore_ascii_case(b"EXAT")
    })?;
    Some((i + 1, args[i].eq_ignore_ascii_case(b"EXAT")))
}

/// The slot ranges of the node marked `myself` in a `CLUSTER NODES` reply (slots being
/// migrated, `[...]`, left out).
pub fn own_slots(nodes: &str) -> Vec<(u16, u16)> {
    let Some(line) = nodes.lines().find(|l| {
        l.split(' ')
            .nth(2)
            .is_some_and(|f| f.split(',').any(|f| f == "myself"))
    }) else {
        return Vec::new();
    };
    line.split(' ')
        .skip(8)
        .filter(|r| !r.starts_with('['))
        .filter_map(|r| match r.split_once('-') {
            Some((a, b)) => Some((a.parse().ok()?, b.parse().ok()?)),
            None => r.parse().ok().map(|s| (s, s)),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> Setup {
        Setup {
            task: "t".into(),
            clock: None,
        }
    }

    #[test]
    fn the_end_of_the_copy_releases_in_batches_within_the_budget() {
        let mut hold = Hold::new(setup(), false, true, 4);
        hold.copying(true);
        let mut zadds = 0;
        for i in 0..2500 {
            zadds += hold.add(0, &Bytes::from(format!("a{i}")), 1, true).len();
        }
        // 128 keys per ZADD.
        assert_eq!(zadds, 2500 / GATHER);
        assert_eq!(hold.gathered().len(), 1);
        hold.add(1, &Bytes::from_static(b"b"), 1, false);
        hold.add(2, &Bytes::from_static(b"c"), 1, false);
        hold.copying(false);
        let now = Instant::now();
        let writes = hold.due(now, 0, true);
        let lists: Vec<ListId> = writes.iter().map(|w| w.list).collect();
        // db 0 needs three passes (1000 keys each), the budget leaves one for db 1.
        assert_eq!(lists, vec![(0, 0), (0, 0), (0, 0), (1, 0)]);
        let early: Vec<&[u8]> = writes.iter().map(|w| &w.args[8][..]).collect();
        assert_eq!(early, vec![&b"1"[..], b"0", b"0", b"1"]);
        // The next call goes on from db 2.
        let writes = hold.due(now + EVERY, 0, false);
        let lists: Vec<ListId> = writes.iter().map(|w| w.list).collect();
        assert_eq!(lists, vec![(2, 0), (0, 0), (1, 0)]);
    }

    #[test]
    fn a_round_goes_out_a_chunk_per_write_out() {
        let mut hold = Hold::new(setup(), true, true, 300);
        hold.copying(true);
        for slot in 0..400u16 {
            let key = Bytes::from(tags().key_in_slot(b"k", slot, b""));
            hold.add(0, &key, 1, false);
        }
        hold.copying(false);
        let now = Instant::now();
        let first = hold.due(now, 0, true);
        assert_eq!(first.len(), CHUNK);
        assert!(hold.round_left());
        // The same round goes on at the next write-out, with the same number and threshold.
        let second = hold.due(now, 0, false);
        assert_eq!(second.len(), CHUNK);
        assert!(second.iter().all(|w| w.pass == first[0].pass));
        assert_eq!(second[0].args[4], first[0].args[4]);
        // A list dropped meanwhile is skipped; the budget (300) ends the round.
        let dropped = hold.list_of(0, &tags().key_in_slot(b"k", 299, b""));
        hold.reports().report(dropped, first[0].pass.unwrap(), -1);
        assert_eq!(hold.due(now, 0, false).len(), 300 - 2 * CHUNK - 1);
        assert!(!hold.round_left());
        // The next round waits for its second and starts where the budget stopped.
        assert!(hold.due(now, 0, false).is_empty());
        let next = hold.due(now + EVERY, 0, false);
        assert_eq!(next[0].list, (0, 300));
        assert!(next[0].pass > first[0].pass);
    }

    #[test]
    fn gathered_keys_do_not_share_the_snapshot_buffer() {
        let mut hold = Hold::new(setup(), false, true, 4);
        hold.copying(true);
        let block = Bytes::from(vec![b'k'; 64 * 1024]);
        let key = block.slice(100..110);
        assert!(hold.add(0, &key, 1, true).is_empty());
        let gathered = hold.gathered();
        let listed = &gathered[0].args[3];
        assert_eq!(listed, &key);
        let within = |b: &Bytes| block.as_ptr_range().contains(&b.as_ptr());
        assert!(within(&key) && !within(listed), "the key was not copied");
    }

    #[test]
    fn absolute_expiries_are_found_where_each_command_has_them() {
        let args = |s: &str| -> Vec<Bytes> {
            s.split(' ')
                .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                .collect()
        };
        assert_eq!(absolute_expiry(&args("PEXPIREAT k 5")), Some((2, false)));
        assert_eq!(absolute_expiry(&args("expireat k 5")), Some((2, true)));
        assert_eq!(absolute_expiry(&args("PEXPIREAT k 5 GT")), None);
        assert_eq!(absolute_expiry(&args("SET k v PXAT 5")), Some((4, false)));
        assert_eq!(absolute_expiry(&args("SET k v NX exat 5")), Some((5, true)));
        // A value that reads "PXAT" is a value.
        assert_eq!(absolute_expiry(&args("SET k PXAT")), None);
        assert_eq!(absolute_expiry(&args("SET k v PX 5")), None);
        assert_eq!(absolute_expiry(&args("GETEX k PXAT 5")), Some((3, false)));
        assert_eq!(
            absolute_expiry(&args("RESTORE k 5 p REPLACE ABSTTL")),
            Some((2, false))
        );
        assert_eq!(absolute_expiry(&args("RESTORE k 5 p REPLACE")), None);
    }

    fn command(s: &str) -> Command {
        let args: Vec<Bytes> = s
            .split(' ')
            .map(|a| Bytes::copy_from_slice(a.as_bytes()))
            .collect();
        let mut raw = bytes::BytesMut::new();
        ferry_resp::encode_command(&mut raw, &args);
        Command {
            db: 0,
            target_db: None,
            args,
            raw: raw.freeze(),
            end_offset: 1,
            slot: None,
        }
    }

    #[test]
    fn a_moved_or_copied_key_is_listed_where_it_went() {
        let mut hold = Hold::new(setup(), false, true, 100);
        // Nothing held: nothing to follow.
        assert!(hold.follow(&command("RENAME a b"), 0, |d| d).is_none());
        hold.copying(true);
        hold.add(0, &Bytes::from_static(b"a"), 5, false);
        let w = hold.follow(&command("RENAME a b"), 0, |d| d).unwrap();
        assert_eq!(&w.args[5][..], b"a");
        assert_eq!(&w.args[6][..], b"b");
        assert_eq!(&w.args[7][..], b"");
        // MOVE to db 3, which the db map writes into db 4: that db's list is looked at too.
        let w = hold.follow(&command("MOVE a 3"), 0, |d| d + 1).unwrap();
        assert_eq!(&w.args[7][..], b"4");
        assert!(hold.lists.contains_key(&(4, 0)));
        let w = hold
            .follow(&command("COPY a b DB 2 REPLACE"), 0, |d| d)
            .unwrap();
        assert_eq!(&w.args[7][..], b"2");
        assert!(hold.follow(&command("SET a b"), 0, |d| d).is_none());
    }

    #[test]
    fn held_stream_expiries_are_rewritten_in_milliseconds() {
        let status = Arc::new(Status::default());
        let mut hold = Hold::new(
            Setup {
                task: "t".into(),
                clock: Some(status.clone()),
            },
            false,
            true,
            100,
        );
        hold.copying(false);
        // No lag measured yet: held when past or within the margin.
        let mut later = command("EXPIREAT k 300");
        assert!(
            hold.hold_command(&mut later, || (Instant::now(), 200_000))
                .is_none()
        );
        let mut cmd = command("EXPIREAT k 100");
        assert!(
            hold.hold_command(&mut cmd.clone(), || (Instant::now(), 200_000))
                .is_some()
        );
        status.latency.begin();
        status.latency.confirmed(0);
        let lat = &status.latency;
        // One probe waiting: the lag is its age.
        lat.set_key(1, Bytes::from_static(b"__ferry:heartbeat:t"));
        lat.own_key_seen(
            &[
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"__ferry:heartbeat:t"),
                Bytes::from(
                    crate::status::latency::unix_ms()
                        .saturating_sub(10_000)
                        .to_string(),
                ),
            ],
            50,
        );
        let (key, t0) = hold
            .hold_command(&mut cmd, || (Instant::now(), 200_000))
            .unwrap();
        assert_eq!((&key[..], t0), (&b"k"[..], 100_000));
        assert_eq!(&cmd.args[0][..], b"PEXPIREAT");
        assert_eq!(cmd.args[2], Bytes::from((100_000 + HOLD_MS).to_string()));
        assert_eq!(
            &cmd.raw[..],
            &command(&format!("PEXPIREAT k {}", 100_000 + HOLD_MS)).raw[..]
        );
        // Far enough away: as it is.
        let mut far = command("SET k v PXAT 999999999");
        assert!(
            hold.hold_command(&mut far, || (Instant::now(), 200_000))
                .is_none()
        );
        let mut near = command("SET k v EXAT 210");
        hold.hold_command(&mut near, || (Instant::now(), 200_000))
            .unwrap();
        assert_eq!(&near.args[3][..], b"PXAT");
    }

    #[test]
    fn own_slots_come_from_the_myself_line() {
        let nodes = "a 127.0.0.1:1@2 master - 0 0 1 connected 0-10\n\
                     b 127.0.0.1:3@4 myself,master - 0 0 2 connected 11-20 25 [30->-a]\n";
        assert_eq!(own_slots(nodes), vec![(11, 20), (25, 25)]);
    }

    #[test]
    fn only_keys_of_the_copy_are_held() {
        let mut hold = Hold::new(setup(), false, true, 100);
        assert_eq!(hold.held_expiry(1000), None);
        hold.copying(true);
        assert_eq!(hold.held_expiry(1000), Some(1000 + HOLD_MS));
        assert!(
            hold.add(3, &Bytes::from_static(b"k"), 1000, true)
                .is_empty()
        );
        let w = hold.gathered().pop().unwrap();
        assert_eq!(w.list, (3, 0));
        assert_eq!(
            w.args,
            vec![
                Bytes::from_static(b"ZADD"),
                Bytes::from_static(b"__ferry:hold:t"),
                Bytes::from_static(b"1000"),
                Bytes::from_static(b"k"),
            ]
        );
        // Nothing is released while the copy runs.
        assert!(hold.due(Instant::now(), 0, false).is_empty());
    }

    #[test]
    fn a_list_is_looked_at_until_a_later_pass_finds_it_empty() {
        let mut hold = Hold::new(setup(), true, false, 100);
        hold.copying(true);
        let key = Bytes::from_static(b"{a}x");
        let w = hold.add(0, &key, 5, false).pop().unwrap();
        assert_eq!(w.list, (0, ferry_keyspace::slot(b"a")));
        assert_eq!(ferry_keyspace::slot(&w.key), ferry_keyspace::slot(b"a"));
        hold.copying(false);
        let now = Instant::now();
        let passes = hold.due(now, 0, true);
        assert_eq!(passes.len(), 1);
        // No lag measured: at most the time since the copy started, plus the margin.
        let after: i64 = std::str::from_utf8(&passes[0].args[4])
            .unwrap()
            .parse()
            .unwrap();
        assert!((MARGIN_MS..MARGIN_MS + 60_000).contains(&after), "{after}");
        // A run that continued a stream and measured no lag releases nothing.
        let mut resumed = Hold::new(setup(), false, true, 100);
        resumed.resume();
        assert_eq!(&resumed.due(now, 0, false)[0].args[4][..], b"+inf");
        // Added again after the pass: its "empty" does not count.
        hold.add(0, &key, 6, false);
        hold.reports().report(w.list, 1, 0);
        let passes = hold.due(now + EVERY, 0, false);
        assert_eq!(passes.len(), 1);
        hold.reports().report(w.list, 2, 0);
        assert!(hold.due(now + 2 * EVERY, 0, false).is_empty());
    }
}
