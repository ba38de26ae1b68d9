//! Entries to commands. A snapshot key becomes `RESTORE key <abs-ms|0> <payload> REPLACE ABSTTL`
//! from its serialized bytes; a big key becomes DEL, chunked native commands and PEXPIREAT; a
//! stream command is passed through byte for byte. Each command is paired with an `Expect`, so
//! the reply reader knows what each reply confirms.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ferry_rdb::{Chunk, Element, KeyMeta};

use super::caps::Caps;
use crate::error::Error;
use crate::pipeline::entry::{Command, Entry};
use crate::sink::checkpoint::Checkpoint;
use crate::text::escape;

/// What a command's reply confirms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Whole snapshot keys (one for RESTORE, many for MSET).
    Keys(u32),
    /// Part of a big key, a function, a SELECT: nothing to count.
    Part,
    /// A command from the stream; when `offset` is set, the stream is applied up to it.
    Stream { offset: Option<u64> },
}

/// One reply to wait for, or a note to act on once every reply before it has arrived.
#[derive(Clone, Debug)]
pub enum Expect {
    Reply {
        kind: Kind,
        /// The command's name as sent (a label for ferry's own), for a refusal's message.
        command: Bytes,
        key: Bytes,
        db: u32,
    },
    /// The source's stream is applied up to here (bytes with no write in them).
    Offset(u64),
    /// A key written as several commands is whole: chunked because it is big, or rewritten
    /// because the target cannot read its encoding.
    KeyDone { chunked: bool },
    /// Something the target cannot hold was left out; logged and counted, never silent.
    Dropped(String),
    /// Every snapshot key is on the target; the stream continues from this offset.
    SnapshotApplied(u64),
    /// A cluster master confirmed every snapshot write sent to it: its base checkpoint can
    /// now name the copy's end (`SnapshotApplied` follows that checkpoint's reply, so the phase
    /// says "incremental" only once a restart would go on from the copy).
    SnapshotWritten(u64),
    /// `MULTI` of a ferry transaction: the replies that follow are `+QUEUED`, the results come
    /// in the `EXEC`'s array.
    Multi,
    /// `EXEC`: settles every expectation since `Multi`.
    Exec,
    /// `DISCARD`: drops them (a source transaction cut off by a stop).
    Discard,
    /// Everything before is confirmed: signal the one waiting.
    Barrier(crate::pipeline::entry::Barrier),
    /// The fence check before a transaction (`lease::GUARD_SCRIPT`): 1, or why the
    /// transaction that follows applies nothing.
    Guard,
    /// A pass over one list of held TTLs (see `hold`): its reply is what the list holds after.
    Hold {
        list: super::hold::ListId,
        pass: u64,
        key: Bytes,
        db: u32,
    },
}

impl Expect {
    /// Whether the target answers it with a reply of its own (the rest settle in order
    /// between replies).
    pub fn takes_reply(&self) -> bool {
        matches!(
            self,
            Expect::Reply { .. }
                | Expect::Multi
                | Expect::Exec
                | Expect::Discard
                | Expect::Guard
                | Expect::Hold { .. }
        )
    }
}

/// The name or key a reply is reported under. Of a big command, a copy: a slice would keep the
/// whole command's bytes alive until the reply, which inside a transaction is its EXEC (a
/// 256 MiB SET in 256 KiB pieces read back from the spool was held whole that way).
fn reply_arg(cmd: &Command, i: usize) -> Bytes {
    // A command whose huge arguments went in pieces is named as the source sent it, not
    // as the script that applies it.
    if let Some((_, inner)) = crate::source::split::parse_arg_script(&cmd.args) {
        return inner.get(i).cloned().unwrap_or_default();
    }
    match cmd.args.get(i) {
        Some(k) if cmd.raw.len() >= RAW_BY_REFERENCE => Bytes::copy_from_slice(k),
        Some(k) => k.clone(),
        None => Bytes::new(),
    }
}

/// A stream command at least this long is written from the bytes it came in, not copied.
const RAW_BY_REFERENCE: usize = 64 * 1024;

/// What a fenced writer checks before each transaction: the fence keys and this process's
/// token (see `lease`).
#[derive(Clone, Debug)]
pub struct Guard {
    pub token: Bytes,
    /// The standalone target's fence; on a cluster master, the fence in the slot of its base
    /// checkpoint.
    pub own: Bytes,
    /// On a cluster master, each slot's fence.
    pub slots: Option<Arc<Vec<Bytes>>>,
    /// On a cluster master, the slots it serves.
    pub owned: Arc<Vec<u16>>,
    /// The task's lease key, and this process's lease value.
    pub lease: Bytes,
    pub lease_value: Bytes,
}

/// Accumulates commands and their expectations between two flushes.
pub struct Encoder {
    pub out: BytesMut,
    /// Output before `out`: pieces of it, each big stream command among them as the bytes it
    /// came in (not copied: a 256 MiB SET would otherwise be held twice). See `put_raw`.
    parts: Vec<Bytes>,
    parts_len: usize,
    pub expects: Vec<Expect>,
    /// Replies among `expects`.
    pub replies: usize,
    db: u32,
    rdb_version: u16,
    in_multi: bool,
    /// Whether the big stream being written has received an entry yet.
    stream_started: bool,
    /// What the stream being written by commands says of itself, for its groups' counters.
    stream: StreamFacts,
    /// Plain strings gathered for one MSET.
    mset: Mset,
    caps: Caps,
    /// Write every snapshot value as plain commands, never RESTORE.
    rewrite_all: bool,
    /// The checkpoint key, when this target keeps one.
    checkpoint_key: Option<Bytes>,
    /// The source's replication id, once known.
    replid: Option<Bytes>,
    /// Stream writes are being wrapped in checkpointed transactions.
    checkpointing: bool,
    /// The open ferry transaction, if any.
    txn: Option<Txn>,
    /// Inside a transaction of the source's (its MULTI seen, its EXEC not yet).
    source_multi: bool,
    /// Inside the pieces of a command with huge arguments (its first piece seen, the DEL of
    /// its temporary keys not yet), kept in one transaction as a source's is.
    split_open: bool,
    /// A stream position past the last transaction (bytes with no write in them), to record.
    idle_position: Option<(u64, u32)>,
    /// Writing to one master of a cluster: a transaction holds one slot's commands and
    /// updates that slot's checkpoint (a cluster refuses transactions across slots).
    slot_checkpoints: Option<Arc<SlotCheckpoints>>,
    /// Writing to one master of a cluster.
    cluster: bool,
    /// Other streams write to the same target (see `standalone::Options::shared_target`).
    pub shared_target: bool,
    /// A cluster master's base checkpoint to write at the next flush: an offset up to which
    /// the target has confirmed every write sent here. (Written blindly after the pipelined
    /// writes it would also cover a transaction the cluster refused with MOVED or ASK.)
    confirmed: Option<u64>,
    confirmed_written: u64,
    /// A cluster master's copy ended here and no base checkpoint names it yet.
    snapshot_base: Option<u64>,
    /// Where the last write of the stream (or the snapshot) ended, for the checkpoint.
    last_write: Option<(u64, u32)>,
    /// The checkpoint value the last transaction wrote.
    txn_checkpoint: Option<Bytes>,
    /// Which target db each source db is written to. Entries keep the source's db (the
    /// checkpoint records it); only the SELECTs sent to the target are mapped.
    pub db_map: crate::pipeline::transform::DbMap,
    /// Every transaction is fenced (and, on a standalone target, the snapshot's writes go in
    /// transactions too).
    guard: Option<Guard>,
    /// The offset of the checkpoint this writer wrote last: the next transaction applies only
    /// if the target's checkpoint has reached it (an earlier one refused whole stops the rest).
    chain: Option<u64>,
    /// The same per slot, on a cluster master.
    slot_chain: std::collections::HashMap<u16, u64>,
    /// Kinds of stream command this target cannot hold that have been reported (each kind is
    /// said once, every one counted).
    said: std::collections::HashSet<&'static str>,
    /// TTLs of snapshot keys held until the stream can renew or delete the keys.
    hold: Option<super::hold::Hold>,
    /// A big key's element arriving in parts (see `Chunk::ElementPart`).
    pieces: Pieces,
}

/// An element too long to hold whole is built in a temporary key of ferry's own (`SET` of its
/// first part with an expiry, `APPEND`s), which one `EVAL` then moves into its key
/// (`ELEMENT_SCRIPT`). On a cluster the temporary key is in the key's slot, so the script's keys
/// are in one slot.
#[derive(Default)]
struct Pieces {
    /// The temporary key of the element being received, once its first part is written.
    open: Option<Bytes>,
    /// The temporary key of a hash field that came in parts: its value follows.
    field: Option<Bytes>,
}

/// How long a temporary key outlives a ferry stopped while it fills it.
const ELEMENT_KEY_TTL_MS: &str = "3600000";

/// Moves the element in KEYS[2] into KEYS[1] with ARGV[1] (`RPUSH`, `SADD`; `ZADD` with the
/// score ARGV[2]; `HSET` with the field ARGV[2], or the field in KEYS[3], and its expiry ARGV[3]
/// when not empty) and deletes the temporary keys. A missing key is the empty string (an
/// element of no parts). Its effects are what replicas get (a no-op from 5.0 on, where that is
/// the default; before, the script itself would go on, and a replica of the target, or a
/// ferry following it, has no temporary key to read).
const ELEMENT_SCRIPT: &str = "\
redis.replicate_commands()
local v = redis.call('GET', KEYS[2]) or ''
redis.call('DEL', KEYS[2])
local c = ARGV[1]
if c == 'HSET' then
  local f = ARGV[2]
  if KEYS[3] then
    f = redis.call('GET', KEYS[3]) or ''
    redis.call('DEL', KEYS[3])
  end
  local r = redis.call('HSET', KEYS[1], f, v)
  if ARGV[3] ~= '' then redis.call('HPEXPIREAT', KEYS[1], ARGV[3], 'FIELDS', 1, f) end
  return r
elseif c == 'ZADD' then
  return redis.call('ZADD', KEYS[1], ARGV[2], v)
end
return redis.call(c, KEYS[1], v)";

/// A name for a temporary element key no other writer uses: this process's own mark and a
/// count, in `slot` on a cluster.
fn element_key(slot: Option<u16>) -> Bytes {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNT: AtomicU64 = AtomicU64::new(0);
    static MARK: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mark = MARK.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        format!("{:x}{:x}", std::process::id(), nanos & 0xffff_ffff_ffff)
    });
    let n = COUNT.fetch_add(1, Ordering::Relaxed);
    let prefix = [crate::pipeline::entry::OWN_KEY_PREFIX, b"elem:"].concat();
    let suffix = format!(":{mark}:{n}");
    Bytes::from(match slot {
        Some(slot) => super::hold::tags().key_in_slot(&prefix, slot, suffix.as_bytes()),
        None => [&prefix[..], &suffix.as_bytes()[1..]].concat(),
    })
}

/// The highest db a command names in its arguments (`SWAPDB a b`, `MOVE key db`, `COPY ... DB
/// db`), if any.
fn db_argument(args: &[Bytes]) -> Option<u32> {
    let num = |a: &Bytes| std::str::from_utf8(a).ok()?.parse::<u32>().ok();
    let name = args.first()?;
    if name.eq_ignore_ascii_case(b"SWAPDB") {
        return args.get(1..3)?.iter().map(num).max().flatten();
    }
    if name.eq_ignore_ascii_case(b"MOVE") {
        return args.get(2).and_then(num);
    }
    if name.eq_ignore_ascii_case(b"COPY") {
        let at = args.iter().position(|a| a.eq_ignore_ascii_case(b"DB"))?;
        return args.get(at + 1).and_then(num);
    }
    None
}

/// Sets KEYS[1] to ARGV[2] only if it still holds ARGV[1].
const CHECKPOINT_IF_UNCHANGED: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2]) end return 0";

/// The same, and only while the fence KEYS[2] holds this writer's token ARGV[3].
const CHECKPOINT_IF_UNCHANGED_FENCED: &str = "if redis.call('GET', KEYS[2]) == ARGV[3] and redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('SET', KEYS[1], ARGV[2]) end return 0";

/// The per-slot checkpoint keys of a task on a cluster target: the key for slot `s` hashes to
/// `s`, so it can share a transaction with that slot's writes.
pub struct SlotCheckpoints {
    keys: Vec<Bytes>,
}

impl SlotCheckpoints {
    /// `keys[s]` is slot `s`'s key, for every slot.
    pub fn new(keys: Vec<Bytes>) -> Self {
        debug_assert_eq!(keys.len(), crate::net::topology::SLOTS);
        SlotCheckpoints { keys }
    }

    pub fn key(&self, slot: u16) -> &Bytes {
        &self.keys[slot as usize % self.keys.len().max(1)]
    }
}

/// A ferry transaction being written: the stream position its checkpoint will name.
#[derive(Default)]
struct Txn {
    /// On a cluster, the one slot its commands are in.
    slot: Option<u16>,
    /// Offset just after the last command in it, and the db selected there.
    last: Option<(u64, u32)>,
    /// The same for its last write (`last` may be later: bytes with no write in them).
    last_write: Option<(u64, u32)>,
    /// Commands in it so far.
    commands: usize,
    /// Bytes of the big-key commands in it so far (a snapshot transaction).
    bytes: usize,
}

/// Snapshot writes per transaction on a fenced standalone target, at most (each flush ends
/// one too): the target holds a transaction's commands until its EXEC.
const SNAPSHOT_TXN_COMMANDS: usize = 256;

/// Bytes of big-key commands per snapshot transaction, about: the target holds what is queued
/// until the EXEC, and 256 pieces of a huge value would be 64 MiB.
const SNAPSHOT_TXN_BYTES: usize = 4 * 1024 * 1024;

/// Commands per ferry transaction, at most (a source transaction stays whole whatever its
/// size): the EXEC reply is an array of one result each, and a small one is read in one go.
const TXN_COMMANDS: usize = 512;

/// Strings without expiry or eviction data, gathered into one MSET: the target spends less than
/// half the time per key on a 100-key MSET than on a RESTORE.
#[derive(Default)]
struct Mset {
    db: u32,
    keys: u32,
    first_key: Bytes,
    body: BytesMut,
}

const MSET_KEYS: u32 = 128;
const MSET_BYTES: usize = 256 * 1024;

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    pub fn new() -> Self {
        Self::for_target(Caps::LATEST, false)
    }

    /// An encoder for a target with these capabilities; `rewrite_all` writes every value as
    /// plain commands (for targets that refuse RESTORE).
    pub fn for_target(caps: Caps, rewrite_all: bool) -> Self {
        Encoder {
            // Small to start, grown by what is written: a cluster task has a writer per source
            // stream and target master (9 for 3 -> 3), most of them carrying little.
            out: BytesMut::with_capacity(64 * 1024),
            parts: Vec::new(),
            parts_len: 0,
            expects: Vec::with_capacity(256),
            replies: 0,
            db: 0,
            rdb_version: 0,
            in_multi: false,
            stream_started: false,
            stream: StreamFacts::default(),
            mset: Mset::default(),
            caps,
            rewrite_all,
            checkpoint_key: None,
            replid: None,
            checkpointing: false,
            txn: None,
            source_multi: false,
            split_open: false,
            idle_position: None,
            slot_checkpoints: None,
            cluster: false,
            shared_target: false,
            confirmed: None,
            confirmed_written: 0,
            snapshot_base: None,
            last_write: None,
            txn_checkpoint: None,
            db_map: crate::pipeline::transform::DbMap::default(),
            guard: None,
            chain: None,
            slot_chain: std::collections::HashMap::new(),
            said: Default::default(),
            hold: None,
            pieces: Pieces::default(),
        }
    }

    /// Fences every transaction (see `lease`); on a standalone target the snapshot's writes
    /// then go in transactions too.
    pub fn with_guard(mut self, guard: Guard) -> Self {
        self.guard = Some(guard);
        self
    }

    /// Snapshot writes go in fenced transactions (a cluster's are spread over slots, which no
    /// transaction can span).
    fn fenced_snapshot(&self) -> bool {
        self.guard.is_some() && !self.cluster
    }

    /// Refuses an entry that would write into a db the target does not have, before anything
    /// of it is written: inside a transaction the target would refuse only the SELECT, and
    /// apply what follows it in the db selected before.
    fn check_dbs(&self, entry: &Entry) -> Result<(), Error> {
        let Some(dbs) = self.caps.databases.filter(|_| !self.cluster) else {
            return Ok(());
        };
        let (db, mapped) = match entry {
            Entry::Key(record) => (record.meta.db as u32, None),
            Entry::BigStart(meta) => (meta.db as u32, None),
            Entry::Command(cmd) => (cmd.db_on_target(), db_argument(&cmd.args)),
            _ => return Ok(()),
        };
        let target = self.db_map.target(db);
        let Some(missing) = [Some(target), mapped]
            .into_iter()
            .flatten()
            .find(|&d| d >= dbs)
        else {
            return Ok(());
        };
        let what = match entry {
            Entry::Command(cmd) => format!(
                "{} from the source's db {db}",
                String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase()
            ),
            Entry::Key(record) => {
                format!("key {} of the source's db {db}", escape(&record.meta.key))
            }
            Entry::BigStart(meta) => format!("key {} of the source's db {db}", escape(&meta.key)),
            _ => String::new(),
        };
        Err(Error::CannotWrite {
            what,
            why: format!(
                "it goes to db {missing} and the target has {dbs} dbs (its `databases` setting); nothing from it on was written and the checkpoint names the position before it: raise `databases` on the target (a restart of it), or map the db to one the target has with [filter] db_map, then run ferry again"
            ),
        })
    }

    /// Opens a fenced transaction for snapshot writes if none is open.
    fn snapshot_txn(&mut self) {
        if self.fenced_snapshot() && self.txn.is_none() {
            self.open_txn(None);
        }
    }

    /// Ends a snapshot transaction that has grown to its bound.
    fn snapshot_txn_bound(&mut self) {
        if self.fenced_snapshot()
            && !self.checkpointing
            && self.txn.as_ref().is_some_and(|t| {
                t.commands >= SNAPSHOT_TXN_COMMANDS || t.bytes >= SNAPSHOT_TXN_BYTES
            })
        {
            self.close_txn();
        }
    }

    /// On a cluster master: the target has confirmed every write sent here up to `offset`,
    /// so the base checkpoint can say so at the next flush.
    pub fn confirmed(&mut self, offset: u64) {
        if self.cluster && self.checkpointing && offset > self.confirmed_written {
            self.confirmed = Some(offset);
            self.confirmed_written = offset;
        }
    }

    /// The reply reader confirmed every write of the copy (`Expect::SnapshotWritten`): the
    /// next write-out names the copy's end in the base checkpoint, also when the source had
    /// written nothing yet (a copy ending at offset 0 confirms no later position).
    pub fn snapshot_confirmed(&mut self) {
        if let Some(end) = self.snapshot_base {
            if self.confirmed.is_none_or(|c| c < end) {
                self.confirmed = Some(end);
            }
            self.confirmed_written = self.confirmed_written.max(end);
        }
    }

    /// A cluster master's base checkpoint is due (the target confirmed a later position): the
    /// next write-out names it even with nothing else to write.
    pub fn checkpoint_due(&self) -> bool {
        self.confirmed.is_some() && !self.source_multi
    }

    /// Writes to one master of a cluster: no MSET (its keys would span slots), stream writes
    /// in one transaction per run of one slot's commands, each with that slot's checkpoint.
    /// The checkpoint key given by `with_checkpoint` then holds this master's position over
    /// bytes with no write in them.
    pub fn for_cluster(mut self, slots: Option<Arc<SlotCheckpoints>>) -> Self {
        self.slot_checkpoints = slots;
        self.cluster = true;
        self
    }

    /// Keeps a checkpoint in `key`: stream writes then go in MULTI/EXEC with its update.
    pub fn with_checkpoint(mut self, key: Vec<u8>) -> Self {
        self.checkpoint_key = Some(Bytes::from(key));
        self
    }

    /// Hands over the output so far, as one buffer (the tests' view; the writer takes parts).
    /// Strings still being gathered stay for the next call; `finish` first when nothing more
    /// will come.
    #[cfg(test)]
    pub fn take(&mut self) -> (Bytes, Vec<Expect>) {
        let (parts, expects) = self.take_parts();
        let out = match parts.len() {
            1 => parts.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(parts.concat()),
        };
        (out, expects)
    }

    /// Bytes held for the next write.
    pub fn pending_len(&self) -> usize {
        self.parts_len + self.out.len()
    }

    /// As `take`, the output in pieces to be written one after the other.
    pub fn take_parts(&mut self) -> (Vec<Bytes>, Vec<Expect>) {
        // A source transaction stays whole in one ferry transaction, even across writes.
        if !self.source_multi {
            self.close_txn();
            // Past the last write: one SET, atomic by itself.
            if let Some((offset, db)) = self.idle_position.take() {
                self.write_idle_checkpoint(Some((offset, db)));
            }
            if let Some(offset) = self.confirmed.take() {
                let fenced = self.guard.is_some();
                if fenced {
                    self.open_txn(None);
                }
                self.write_checkpoint(Some((offset, 0)));
                if fenced {
                    self.close_txn();
                }
                if let Some(end) = self.snapshot_base.filter(|&end| offset >= end) {
                    self.snapshot_base = None;
                    self.expects.push(Expect::SnapshotApplied(end));
                }
            }
        }
        self.replies = 0;
        let mut parts = std::mem::take(&mut self.parts);
        self.parts_len = 0;
        if !self.out.is_empty() || parts.is_empty() {
            parts.push(self.out.split().freeze());
        }
        // The next batch is sized like this one: a copy's batches are thousands long, a
        // stream's often a few entries, and each batch waits in the reply reader's queue (an
        // expectation is 88 bytes: room for 4096 of them, 352 KiB, was held for three commands).
        let next = self.expects.len().clamp(16, 4096);
        (
            parts,
            std::mem::replace(&mut self.expects, Vec::with_capacity(next)),
        )
    }

    /// Holds the TTLs of snapshot keys (see `hold`).
    pub fn with_hold(mut self, hold: super::hold::Hold) -> Self {
        self.hold = Some(hold);
        self
    }

    /// A stream command's bytes as received: a big one is kept by reference, after what is
    /// gathered so far.
    fn put_raw(&mut self, raw: &Bytes) {
        if raw.len() < RAW_BY_REFERENCE {
            self.out.extend_from_slice(raw);
            return;
        }
        if !self.out.is_empty() {
            let before = self.out.split().freeze();
            self.parts_len += before.len();
            self.parts.push(before);
        }
        self.parts_len += raw.len();
        self.parts.push(raw.clone());
    }

    /// Adds an entry's commands. Fails only for a value the target can neither RESTORE nor
    /// receive as plain commands (a module value in an encoding too new for it).
    pub fn push(&mut self, mut entry: Entry) -> Result<(), Error> {
        // Before anything of it, the hold's writes included, is written.
        self.check_dbs(&entry)?;
        let held = match &mut self.hold {
            Some(hold) => hold_entry(hold, &mut entry, &self.db_map, self.cluster),
            None => None,
        };
        let follow = match (&mut self.hold, &entry) {
            (Some(hold), Entry::Command(cmd)) => {
                let db_map = &self.db_map;
                let db = if self.cluster {
                    0
                } else {
                    db_map.target(cmd.db_on_target())
                };
                hold.follow(cmd, db, |d| db_map.target(d))
            }
            _ => None,
        };
        let from_stream = matches!(entry, Entry::Command(_));
        if matches!(entry, Entry::SnapshotEnd { .. }) {
            self.flush_mset();
            if let Some(hold) = &mut self.hold {
                for write in hold.gathered() {
                    self.hold_write(write);
                }
            }
            self.hold_passes(true);
        }
        self.push_entry(entry)?;
        if let Some(write) = follow {
            self.select_target(write.list.0);
            ferry_resp::encode_command(&mut self.out, &write.args);
            self.expect(Kind::Part, "EVAL (ttl hold)", write.key, write.list.0);
        }
        if let (Some((db, key, t0)), Some(hold)) = (held, &mut self.hold) {
            for write in hold.add(db, &key, t0, !from_stream) {
                self.hold_write(write);
            }
        }
        self.snapshot_txn_bound();
        Ok(())
    }

    /// A ZADD listing held keys.
    fn hold_write(&mut self, write: super::hold::Write) {
        // In the fenced transaction of the snapshot's writes, while they go on.
        if !self.checkpointing {
            self.snapshot_txn();
        }
        let db = write.list.0;
        self.select_target(db);
        ferry_resp::encode_command(&mut self.out, &write.args);
        self.expect(Kind::Part, "ZADD (ttl hold)", write.key, db);
    }

    /// The passes over held lists that are due (a round at most once a second, a chunk of it
    /// per write-out), written before what is gathered goes out; none inside a source
    /// transaction.
    pub fn hold_tick(&mut self) {
        self.hold_passes(false);
    }

    /// A round of passes has more to write (and may: not inside a source transaction).
    pub fn hold_round_left(&self) -> bool {
        !self.source_multi && self.hold.as_ref().is_some_and(|h| h.round_left())
    }

    fn hold_passes(&mut self, end_of_copy: bool) {
        if self.source_multi || self.hold.is_none() {
            return;
        }
        let writes = match &mut self.hold {
            Some(hold) => hold.due(
                std::time::Instant::now(),
                crate::status::latency::unix_ms(),
                end_of_copy,
            ),
            None => return,
        };
        if writes.is_empty() {
            return;
        }
        // A pass is no part of a ferry transaction (on a cluster it would span slots); fenced,
        // each goes in a transaction of its own, in its list's slot.
        self.close_txn();
        let fenced = self.guard.is_some();
        for w in writes {
            if fenced {
                self.open_txn(self.cluster.then_some(w.list.1));
            }
            let db = w.list.0;
            self.select_target(db);
            ferry_resp::encode_command(&mut self.out, &w.args);
            self.expects.push(Expect::Hold {
                list: w.list,
                pass: w.pass.unwrap_or_default(),
                key: w.key,
                db,
            });
            self.replies += 1;
            if fenced {
                self.close_txn();
            }
        }
    }

    fn push_entry(&mut self, entry: Entry) -> Result<(), Error> {
        let entry = match entry {
            Entry::Key(record) => match plain_string(&record).filter(|_| !self.cluster) {
                Some(value) => {
                    self.mset_add(&record.meta, &value);
                    return Ok(());
                }
                None => Entry::Key(record),
            },
            other => other,
        };
        let snapshot_data = matches!(
            entry,
            Entry::Key(_)
                | Entry::BigStart(_)
                | Entry::BigChunk(..)
                | Entry::BigEnd(_)
                | Entry::Function(_)
        );
        if snapshot_data {
            self.snapshot_txn();
        } else {
            // A snapshot holds each key once, so gathered strings may wait while other
            // snapshot keys go ahead of them; anything after the snapshot must not overtake
            // them.
            self.flush_mset();
        }
        match entry {
            Entry::SyncStart {
                replid,
                snapshot,
                clear_target,
                ..
            } => {
                self.replid = Some(replid);
                if clear_target && self.shared_target {
                    return Err(Error::CannotWrite {
                        what: "emptying the target for a full resync of one shard".into(),
                        why: "the target also holds the other shards' keys of this cluster source and would lose them too; empty the target by hand (FLUSHALL) and start the task again: it copies every shard anew".into(),
                    });
                }
                if clear_target {
                    // A cluster master's flush goes in a fenced transaction of its own.
                    if self.cluster && self.guard.is_some() {
                        self.open_txn(None);
                    }
                    self.snapshot_txn();
                    ferry_resp::encode_command(&mut self.out, &[&b"FLUSHALL"[..]]);
                    self.expect(Kind::Part, "FLUSHALL", Bytes::new(), self.db);
                    self.refence_after(&[Bytes::from_static(b"FLUSHALL")]);
                }
                if snapshot {
                    // Until the snapshot is whole, the target cannot be continued from.
                    self.snapshot_txn();
                    self.write_checkpoint(None);
                }
                self.checkpointing = !snapshot && self.checkpoint_key.is_some();
            }
            Entry::SnapshotStart { rdb_version } => self.rdb_version = rdb_version,
            Entry::Unwritable(what) => self.expects.push(Expect::Dropped(what)),
            Entry::Key(record) => {
                let meta = &record.meta;
                self.select(meta.db as u32);
                if self.rewrite_all || self.rdb_version > self.caps.rdb_version {
                    return self.rewrite(record);
                }
                if self.caps.restore_abs_ttl() {
                    restore(&mut self.out, meta, &record.raw, self.rdb_version);
                    self.expect(Kind::Keys(1), "RESTORE", meta.key.clone(), meta.db as u32);
                } else {
                    // Before 5.0 RESTORE takes only a relative TTL: restore without one, then
                    // set the absolute expiry.
                    let plain = KeyMeta {
                        expire_ms: None,
                        idle: None,
                        freq: None,
                        ..meta.clone()
                    };
                    restore_relative(&mut self.out, &plain, &record.raw, self.rdb_version);
                    match meta.expire_ms {
                        Some(at) => {
                            self.expect(Kind::Part, "RESTORE", meta.key.clone(), meta.db as u32);
                            let at = at.to_string();
                            self.command(
                                Kind::Keys(1),
                                "PEXPIREAT",
                                meta,
                                &[&b"PEXPIREAT"[..], &meta.key, at.as_bytes()],
                            );
                        }
                        None => {
                            self.expect(Kind::Keys(1), "RESTORE", meta.key.clone(), meta.db as u32)
                        }
                    }
                }
            }
            Entry::BigStart(meta) => {
                self.select(meta.db as u32);
                self.drop_key_metadata(&meta);
                self.pieces = Pieces::default();
                self.stream_started = false;
                self.stream = StreamFacts::default();
                self.command(Kind::Part, "DEL", &meta, &[&b"DEL"[..], &meta.key]);
            }
            Entry::BigChunk(meta, chunk) => self.chunk(&meta, chunk),
            Entry::BigEnd(meta) => {
                if let Some(at) = meta.expire_ms {
                    let at = at.to_string();
                    self.command(
                        Kind::Part,
                        "PEXPIREAT",
                        &meta,
                        &[&b"PEXPIREAT"[..], &meta.key, at.as_bytes()],
                    );
                }
                self.expects.push(Expect::KeyDone { chunked: true });
            }
            Entry::Function(code) if !self.caps.functions() => {
                let name = library_name(&code);
                self.expects.push(Expect::Dropped(format!(
                    "function library {name}: the target is older than 7.0 and has no functions"
                )));
            }
            Entry::Function(code) => {
                ferry_resp::encode_command(
                    &mut self.out,
                    &[&b"FUNCTION"[..], b"LOAD", b"REPLACE", &code],
                );
                self.expect(Kind::Part, "FUNCTION LOAD", Bytes::new(), self.db);
            }
            Entry::SnapshotEnd { offset } => {
                // After every snapshot write on this connection, so it names a whole copy. The
                // source SELECTs before its first command, so db 0 here is only a placeholder.
                // (A cluster master's base checkpoint follows confirmed replies instead.)
                self.last_write = Some((offset, 0));
                if !self.cluster {
                    self.snapshot_txn();
                    self.write_checkpoint(Some((offset, 0)));
                    self.close_txn();
                }
                self.checkpointing = self.checkpoint_key.is_some() && self.replid.is_some();
                if self.cluster && self.checkpointing {
                    self.snapshot_base = Some(offset);
                    self.expects.push(Expect::SnapshotWritten(offset));
                } else {
                    self.expects.push(Expect::SnapshotApplied(offset));
                }
            }
            Entry::Command(cmd)
                if self.shared_target
                    && (cmd.args[0].eq_ignore_ascii_case(b"FLUSHALL")
                        || cmd.args[0].eq_ignore_ascii_case(b"FLUSHDB")) =>
            {
                return Err(Error::CannotWrite {
                    what: format!(
                        "{} from one shard of the cluster source",
                        String::from_utf8_lossy(&cmd.args[0]).to_ascii_uppercase()
                    ),
                    why: "the target also holds the other shards' keys and would lose them too; to follow it, empty the target by hand (FLUSHALL) and start the task again: it copies every shard anew".into(),
                });
            }
            Entry::Command(cmd) if self.checkpointing => self.checkpointed_command(cmd)?,
            Entry::Command(cmd) => self.stream_command(cmd)?,
            Entry::Offset { offset, db } if self.checkpointing => {
                // The checkpoint follows the stream over bytes with no write in them too (with
                // the db selected there): a source restarted from its RDB has no backlog before
                // its own offset, so a resume must ask for exactly where the stream is.
                match &mut self.txn {
                    Some(txn) => txn.last = Some((offset, db)),
                    None if !self.cluster => self.idle_position = Some((offset, db)),
                    None => {}
                }
                self.expects.push(Expect::Offset(offset));
            }
            Entry::Barrier(barrier) => {
                if !self.source_multi {
                    self.close_txn();
                }
                self.expects.push(Expect::Barrier(barrier));
            }
            Entry::Offset { offset, .. } => {
                // Inside MULTI nothing is applied until EXEC.
                if !self.in_multi {
                    self.expects.push(Expect::Offset(offset));
                }
            }
        }
        Ok(())
    }

    /// Writes a snapshot value as plain commands (DEL, the elements in chunks, PEXPIREAT),
    /// for a target that cannot read its encoding.
    fn rewrite(&mut self, record: ferry_rdb::Record) -> Result<(), Error> {
        self.drop_key_metadata(&record.meta);
        let expiry = record.meta.expire_ms.map(Expiry::At);
        let meta = Arc::new(record.meta);
        self.write_value(&meta, &record.raw, self.rdb_version, expiry)?;
        self.expects.push(Expect::KeyDone { chunked: false });
        Ok(())
    }

    /// A value's serialized bytes (in `rdb_version`'s encodings) as plain commands.
    fn write_value(
        &mut self,
        meta: &Arc<KeyMeta>,
        raw: &Bytes,
        rdb_version: u16,
        expiry: Option<Expiry>,
    ) -> Result<(), Error> {
        let chunks = ferry_rdb::decode_value(meta.type_byte, raw, rdb_version).map_err(|e| Error::CannotWrite {
            what: format!("key {} in db {}", escape(&meta.key), meta.db),
            why: format!(
                "the target reads RDB {} at most and this {} value (RDB {rdb_version}) cannot be rewritten as commands ({e})",
                self.caps.rdb_version,
                meta.type_byte.encoding_name()
            ),
        })?;
        self.stream_started = false;
        self.stream = StreamFacts::default();
        if meta.type_byte.kind() == Some(ferry_rdb::Kind::String) {
            // One SET, which also covers the empty string (no chunk at all).
            let value: Vec<u8> = chunks
                .iter()
                .filter_map(|c| match c {
                    Chunk::StringPart(part) => Some(part.as_ref()),
                    _ => None,
                })
                .collect::<Vec<_>>()
                .concat();
            self.command(Kind::Part, "SET", meta, &[&b"SET"[..], &meta.key, &value]);
        } else {
            self.command(Kind::Part, "DEL", meta, &[&b"DEL"[..], &meta.key]);
            for chunk in chunks {
                self.chunk(meta, chunk);
            }
        }
        match expiry {
            Some(Expiry::At(at)) => {
                let at = at.to_string();
                self.command(
                    Kind::Part,
                    "PEXPIREAT",
                    meta,
                    &[&b"PEXPIREAT"[..], &meta.key, at.as_bytes()],
                );
            }
            Some(Expiry::In(ms)) => {
                let ms = ms.to_string();
                self.command(
                    Kind::Part,
                    "PEXPIRE",
                    meta,
                    &[&b"PEXPIRE"[..], &meta.key, ms.as_bytes()],
                );
            }
            None => {}
        }
        Ok(())
    }

    /// A RESTORE from the stream whose payload the target cannot read (a newer source's
    /// encoding), written as plain commands instead. False when it can be passed as it is.
    fn rewrite_restore(&mut self, cmd: &Command) -> Result<bool, Error> {
        let args = &cmd.args;
        if !args[0].eq_ignore_ascii_case(b"RESTORE") || args.len() < 4 {
            return Ok(false);
        }
        let Ok((type_byte, raw, version)) = ferry_rdb::dump::parse_payload(&args[3]) else {
            // Let the target judge a payload ferry cannot read either.
            return Ok(false);
        };
        // A source with sanitize-dump-payload no keeps a damaged payload and passes it on; a
        // target that trusts it can crash on its first read.
        if let Err(e) = ferry_rdb::validate_value(type_byte, raw, version) {
            return Err(Error::CannotWrite {
                what: format!(
                    "RESTORE of key {} in db {} (the command ending at replication offset {})",
                    escape(&args[1]),
                    cmd.db,
                    cmd.end_offset
                ),
                why: format!(
                    "its payload is damaged at byte {} of the payload ({}); the source took it (its sanitize-dump-payload is not yes), a target can crash reading it: delete or rewrite that key on the source, then copy anew (a resume applies this command again)",
                    e.offset() + 1,
                    e.kind()
                ),
            });
        }
        if version <= self.caps.rdb_version && !self.rewrite_all {
            return Ok(false);
        }
        let flag = |name: &[u8]| args[4..].iter().any(|a| a.eq_ignore_ascii_case(name));
        let ttl: i64 = std::str::from_utf8(&args[2])
            .ok()
            .and_then(|t| t.parse().ok())
            .unwrap_or(0);
        let expiry = match (ttl, flag(b"ABSTTL")) {
            (t, _) if t <= 0 => None,
            (t, true) => Some(Expiry::At(t)),
            (t, false) => Some(Expiry::In(t)),
        };
        let meta = Arc::new(KeyMeta {
            db: cmd.db_on_target() as u64,
            key: args[1].clone(),
            expire_ms: None,
            idle: None,
            freq: None,
            type_byte,
            key_metadata: None,
        });
        self.select(cmd.db_on_target());
        self.write_value(&meta, &Bytes::copy_from_slice(raw), version, expiry)?;
        Ok(true)
    }

    /// A stream command inside a ferry transaction; the source's own MULTI/EXEC become the
    /// bounds of one.
    fn checkpointed_command(&mut self, cmd: Command) -> Result<(), Error> {
        if self.cluster {
            // The router has split the source's transactions by slot already.
            if self.txn.as_ref().is_some_and(|t| t.slot != cmd.slot) {
                self.close_txn();
            }
            if self.txn.is_none() {
                self.open_txn(cmd.slot);
            }
        }
        let name = cmd.args[0].as_ref();
        if name.eq_ignore_ascii_case(b"MULTI") {
            self.close_txn();
            self.open_txn(cmd.slot.filter(|_| self.cluster));
            self.source_multi = true;
            return Ok(());
        }
        // The pieces of a command with huge arguments open a transaction as a source's MULTI
        // would (none comes with them: a cluster's router would hold all it bounds), so no
        // checkpoint names a position inside the command.
        let (piece, end) = crate::source::split::part_of_split(&cmd.args);
        if piece && !self.source_multi {
            self.close_txn();
            self.open_txn(cmd.slot.filter(|_| self.cluster));
            self.source_multi = true;
            self.split_open = true;
        }
        let end = end && self.split_open;
        if self.txn.is_none() {
            self.open_txn(cmd.slot.filter(|_| self.cluster));
        }
        if let Some(txn) = &mut self.txn {
            // The source's db, not the one written into: a resume selects it on the source.
            txn.last = Some((cmd.end_offset, cmd.db));
            txn.last_write = txn.last;
        }
        if name.eq_ignore_ascii_case(b"EXEC") {
            self.source_multi = false;
            self.expects.push(Expect::Offset(cmd.end_offset));
            self.close_txn();
            return Ok(());
        }
        if self.rewrite_restore(&cmd)? {
            self.expects.push(Expect::Offset(cmd.end_offset));
            return Ok(());
        }
        if let Some(written) = self.rewritten(&cmd, Some(cmd.end_offset)) {
            if let Some(txn) = &mut self.txn {
                txn.commands += written;
            }
            self.refence_after(&cmd.args);
            return Ok(());
        }
        self.select(cmd.db_on_target());
        self.put_raw(&cmd.raw);
        let key = reply_arg(&cmd, 1);
        self.expects.push(Expect::Reply {
            kind: Kind::Stream {
                offset: Some(cmd.end_offset),
            },
            command: reply_arg(&cmd, 0),
            key,
            db: cmd.db_on_target(),
        });
        self.replies += 1;
        self.refence_after(&cmd.args);
        if let Some(txn) = &mut self.txn {
            txn.commands += 1;
            if txn.commands >= TXN_COMMANDS && !self.source_multi {
                self.close_txn();
            }
        }
        if end {
            self.split_open = false;
            self.source_multi = false;
            self.close_txn();
        }
        Ok(())
    }

    fn stream_command(&mut self, cmd: Command) -> Result<(), Error> {
        if self.rewrite_restore(&cmd)? {
            if !self.in_multi {
                self.expects.push(Expect::Offset(cmd.end_offset));
            }
            return Ok(());
        }
        self.select(cmd.db_on_target());
        let name = cmd.args[0].as_ref();
        let offset = if name.eq_ignore_ascii_case(b"MULTI") {
            self.in_multi = true;
            None
        } else if name.eq_ignore_ascii_case(b"EXEC") {
            self.in_multi = false;
            Some(cmd.end_offset)
        } else if self.in_multi {
            None
        } else {
            Some(cmd.end_offset)
        };
        if self.rewritten(&cmd, offset).is_some() {
            return Ok(());
        }
        self.put_raw(&cmd.raw);
        let key = reply_arg(&cmd, 1);
        self.expects.push(Expect::Reply {
            kind: Kind::Stream { offset },
            command: reply_arg(&cmd, 0),
            key,
            db: cmd.db_on_target(),
        });
        self.replies += 1;
        Ok(())
    }

    /// Writes `cmd` in the form this target takes when that is not the form received (see
    /// `rewrite`): several commands go in one transaction (the open one, if any), and what
    /// cannot be held is counted. Returns the commands written, or None when `cmd` is to be
    /// passed as it is.
    fn rewritten(&mut self, cmd: &Command, offset: Option<u64>) -> Option<usize> {
        let (commands, lost) = match super::rewrite::for_target(&cmd.args, &self.caps) {
            super::rewrite::Form::Same => return None,
            super::rewrite::Form::Commands(commands) => (commands, None),
            super::rewrite::Form::Lossy {
                commands,
                form,
                why,
            } => (commands, Some((form, why))),
        };
        if let Some((form, why)) = lost {
            let said = !self.said.insert(form);
            self.expects.push(Expect::Dropped(if said {
                String::new()
            } else {
                format!("{why} (said once for {form}; each later one is counted in dropped)")
            }));
        }
        let db = cmd.db_on_target();
        self.select(db);
        let wrap = commands.len() > 1 && self.txn.is_none() && !self.in_multi;
        if wrap {
            ferry_resp::encode_command(&mut self.out, &[&b"MULTI"[..]]);
            self.expects.push(Expect::Multi);
            self.replies += 1;
        }
        let last = commands.len().saturating_sub(1);
        for (i, args) in commands.iter().enumerate() {
            ferry_resp::encode_command(&mut self.out, args);
            self.expects.push(Expect::Reply {
                kind: if i == last {
                    Kind::Stream { offset }
                } else {
                    Kind::Part
                },
                // Named as received, for a refusal's message.
                command: if args[0] == cmd.args[0] {
                    reply_arg(cmd, 0)
                } else {
                    Bytes::from(format!(
                        "{} (as {})",
                        String::from_utf8_lossy(&reply_arg(cmd, 0)),
                        String::from_utf8_lossy(&args[0])
                    ))
                },
                key: reply_arg(cmd, 1),
                db,
            });
            self.replies += 1;
        }
        if wrap {
            ferry_resp::encode_command(&mut self.out, &[&b"EXEC"[..]]);
            self.expects.push(Expect::Exec);
            self.replies += 1;
        }
        if let (true, Some(offset)) = (commands.is_empty(), offset) {
            self.expects.push(Expect::Offset(offset));
        }
        Some(commands.len())
    }

    fn mset_add(&mut self, meta: &KeyMeta, value: &[u8]) {
        let db = meta.db as u32;
        if self.mset.keys > 0 && self.mset.db != db {
            self.flush_mset();
        }
        if self.mset.keys == 0 {
            self.mset.db = db;
            self.mset.first_key = meta.key.clone();
        }
        bulk(&mut self.mset.body, &meta.key);
        bulk(&mut self.mset.body, value);
        self.mset.keys += 1;
        if self.mset.keys >= MSET_KEYS || self.mset.body.len() >= MSET_BYTES {
            self.flush_mset();
        }
    }

    /// Writes out everything still held back. A source transaction cut off by a stop is
    /// discarded, never applied in part.
    pub fn finish(&mut self) {
        self.flush_mset();
        if self.source_multi && self.txn.is_some() {
            ferry_resp::encode_command(&mut self.out, &[&b"DISCARD"[..]]);
            self.expects.push(Expect::Discard);
            self.replies += 1;
            self.txn = None;
            self.source_multi = false;
            self.split_open = false;
        }
        self.close_txn();
    }

    /// Opens a ferry transaction (on a cluster, of slot `slot`), fenced when guarded.
    fn open_txn(&mut self, slot: Option<u16>) {
        // The transaction's checkpoint will name a later position.
        self.idle_position = None;
        self.write_guard(slot);
        ferry_resp::encode_command(&mut self.out, &[&b"MULTI"[..]]);
        self.expects.push(Expect::Multi);
        self.replies += 1;
        self.txn = Some(Txn {
            slot,
            ..Txn::default()
        });
    }

    /// A command that empties or swaps db 0 takes the fence with it: set it again in the same
    /// transaction (a cluster master's are set again when the task claims them anew).
    fn refence_after(&mut self, args: &[Bytes]) {
        let name = args.first().map_or(&b""[..], |a| a);
        let emptied = [&b"FLUSHALL"[..], b"FLUSHDB", b"SWAPDB"]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c));
        let Some(guard) = self.guard.clone().filter(|_| emptied) else {
            return;
        };
        // A swap with db 0 took ferry's keys of this task (lease, fence, checkpoint) to the
        // other db: delete them there, or a later swap would bring a stale lease back.
        if name.eq_ignore_ascii_case(b"SWAPDB") && !self.cluster {
            let db = |i: usize| {
                args.get(i)
                    .and_then(|a| std::str::from_utf8(a).ok()?.parse::<u32>().ok())
            };
            let other = match (db(1), db(2)) {
                (Some(0), Some(b)) | (Some(b), Some(0)) if b != 0 => Some(b),
                _ => None,
            };
            if let Some(other) = other {
                self.select_target(other);
                let mut del: Vec<&[u8]> = vec![b"DEL", &guard.lease, &guard.own];
                let checkpoint = self.checkpoint_key.clone();
                if let Some(key) = &checkpoint {
                    del.push(key);
                }
                ferry_resp::encode_command(&mut self.out, &del);
                self.expect(
                    Kind::Part,
                    "DEL (ferry's keys swapped out of db 0)",
                    guard.own.clone(),
                    other,
                );
                // What came into db 0 in their place is not this task's: its lease again.
                self.select_target(0);
                let ms = super::lease::LEASE.as_millis().to_string();
                ferry_resp::encode_command(
                    &mut self.out,
                    &[
                        &b"SET"[..],
                        &guard.lease,
                        &guard.lease_value,
                        b"PX",
                        ms.as_bytes(),
                    ],
                );
                self.expect(Kind::Part, "SET (lease)", guard.lease.clone(), 0);
            }
        }
        self.select_target(0);
        ferry_resp::encode_command(&mut self.out, &[&b"SET"[..], &guard.own, &guard.token]);
        self.expect(Kind::Part, "SET (fence)", guard.own.clone(), 0);
        // A cluster master's other slots: one fenced transaction each (a transaction cannot
        // span slots). Inside a source's transaction they wait: the next transaction's guard
        // finds a fence gone, and the task claims them all again.
        if !self.cluster || self.source_multi {
            return;
        }
        self.close_txn();
        let Some(fences) = guard.slots.clone() else {
            return;
        };
        for &slot in guard.owned.iter() {
            let fence = &fences[slot as usize % fences.len().max(1)];
            if *fence == guard.own {
                continue;
            }
            self.open_txn(None);
            ferry_resp::encode_command(&mut self.out, &[&b"SET"[..], fence, &guard.token]);
            self.expect(Kind::Part, "SET (fence)", fence.clone(), 0);
            self.close_txn();
        }
    }

    /// `WATCH <fence>` and the guard script, before a transaction's MULTI: the EXEC then
    /// applies nothing unless the fence holds this writer's token and the checkpoint has
    /// reached what this writer last wrote into it.
    fn write_guard(&mut self, slot: Option<u16>) {
        let Some(guard) = &self.guard else { return };
        let (fence, checkpoint, chain) = match (slot, &guard.slots, &self.slot_checkpoints) {
            (Some(s), Some(fences), Some(keys)) => (
                fences[s as usize % fences.len().max(1)].clone(),
                Some(keys.key(s).clone()),
                self.slot_chain.get(&s).copied(),
            ),
            _ => (guard.own.clone(), self.checkpoint_key.clone(), self.chain),
        };
        let token = guard.token.clone();
        // ferry's own keys live in db 0.
        self.select_target(0);
        let own = super::lease::own_key(&fence, &token);
        ferry_resp::encode_command(&mut self.out, &[&b"WATCH"[..], &fence, &own]);
        self.expect(Kind::Part, "WATCH", fence.clone(), 0);
        let chain = chain.map(|o| o.to_string()).unwrap_or_default();
        let checkpoint = checkpoint.unwrap_or_else(|| fence.clone());
        ferry_resp::encode_command(
            &mut self.out,
            &[
                &b"EVAL"[..],
                super::lease::GUARD_SCRIPT.as_bytes(),
                b"3",
                &fence,
                &checkpoint,
                &own,
                &token,
                chain.as_bytes(),
            ],
        );
        self.expects.push(Expect::Guard);
        self.replies += 1;
    }

    /// Ends the open transaction with the checkpoint of its last command.
    fn close_txn(&mut self) {
        let Some(txn) = self.txn.take() else { return };
        if txn.last_write.is_some() {
            self.last_write = txn.last_write;
        }
        if let Some((offset, db)) = txn.last {
            match (&self.slot_checkpoints, txn.slot) {
                (Some(slots), Some(slot)) => {
                    let key = Some(slots.key(slot).clone());
                    if self.write_checkpoint_to(key, Some((offset, db))).is_some() {
                        self.slot_chain.insert(slot, offset);
                    }
                }
                _ => {
                    let key = self.checkpoint_key.clone();
                    self.txn_checkpoint = self.write_checkpoint_to(key, Some((offset, db)));
                    if self.txn_checkpoint.is_some() {
                        self.chain = Some(offset);
                    }
                }
            }
        }
        ferry_resp::encode_command(&mut self.out, &[&b"EXEC"[..]]);
        self.expects.push(Expect::Exec);
        self.replies += 1;
    }

    /// `SET <checkpoint key> "<replid> <position>"` in db 0.
    fn write_checkpoint(&mut self, position: Option<(u64, u32)>) {
        if self
            .write_checkpoint_to(self.checkpoint_key.clone(), position)
            .is_some()
        {
            self.chain = position.map(|(offset, _)| offset);
        }
        // A plain SET is no transaction's: an idle checkpoint after it needs no condition.
        self.txn_checkpoint = None;
    }

    /// The checkpoint past the last transaction, only if that transaction's checkpoint is
    /// what the key holds: a transaction the target refused as a whole (EXECABORT) left the
    /// older one, and moving past it would skip its writes on a resume.
    fn write_idle_checkpoint(&mut self, position: Option<(u64, u32)>) {
        let Some(expected) = self.txn_checkpoint.clone() else {
            return self.write_checkpoint(position);
        };
        let (Some(key), Some(value)) =
            (self.checkpoint_key.clone(), self.checkpoint_value(position))
        else {
            return;
        };
        self.select_target(0);
        match self
            .guard
            .as_ref()
            .map(|g| (g.own.clone(), g.token.clone()))
        {
            Some((fence, token)) => ferry_resp::encode_command(
                &mut self.out,
                &[
                    &b"EVAL"[..],
                    CHECKPOINT_IF_UNCHANGED_FENCED.as_bytes(),
                    b"2",
                    &key,
                    &fence,
                    &expected,
                    &value,
                    &token,
                ],
            ),
            None => ferry_resp::encode_command(
                &mut self.out,
                &[
                    &b"EVAL"[..],
                    CHECKPOINT_IF_UNCHANGED.as_bytes(),
                    b"1",
                    &key,
                    &expected,
                    &value,
                ],
            ),
        }
        self.expect(Kind::Part, "SET (checkpoint)", key, 0);
        if let Some((offset, _)) = position {
            self.chain = Some(offset);
        }
        // The next one follows this one (which holds unless the transaction was refused).
        self.txn_checkpoint = Some(value);
    }

    /// The checkpoint's text at `position` (offset, db), or "loading" without one; with the
    /// last write's position when only writeless bytes follow it.
    fn checkpoint_value(&self, position: Option<(u64, u32)>) -> Option<Bytes> {
        let replid = String::from_utf8_lossy(self.replid.as_ref()?).into_owned();
        let checkpoint = match position {
            None => Checkpoint::Loading { replid },
            Some((offset, db)) => Checkpoint::Applied {
                replid,
                offset,
                db,
                last_write: self
                    .last_write
                    .filter(|&(w, _)| w < offset && !self.cluster),
            },
        };
        Some(Bytes::from(checkpoint.to_string()))
    }

    /// `SET <key> <checkpoint>` in db 0; returns the value written.
    fn write_checkpoint_to(
        &mut self,
        key: Option<Bytes>,
        position: Option<(u64, u32)>,
    ) -> Option<Bytes> {
        let (Some(key), Some(value)) = (key, self.checkpoint_value(position)) else {
            return None;
        };
        self.select_target(0);
        ferry_resp::encode_command(&mut self.out, &[&b"SET"[..], &key, &value]);
        self.expect(Kind::Part, "SET (checkpoint)", key, 0);
        Some(value)
    }

    /// Writes out the gathered MSET, if any.
    fn flush_mset(&mut self) {
        if self.mset.keys == 0 {
            return;
        }
        self.snapshot_txn();
        let db = self.mset.db;
        self.select(db);
        let keys = std::mem::take(&mut self.mset.keys);
        self.out.extend_from_slice(b"*");
        self.out
            .extend_from_slice(itoa(1 + 2 * keys as u64).as_bytes());
        self.out.extend_from_slice(b"\r\n$4\r\nMSET\r\n");
        self.out.extend_from_slice(&self.mset.body);
        self.mset.body.clear();
        let key = std::mem::take(&mut self.mset.first_key);
        self.expect(Kind::Keys(keys), "MSET", key, db);
        self.snapshot_txn_bound();
    }

    /// Selects the target db that source db `db` is written to.
    fn select(&mut self, db: u32) {
        let target = self.db_map.target(db);
        self.select_target(target);
    }

    /// Selects db `db` of the target itself (ferry's own keys live in db 0).
    fn select_target(&mut self, db: u32) {
        if db != self.db {
            let n = db.to_string();
            ferry_resp::encode_command(&mut self.out, &[&b"SELECT"[..], n.as_bytes()]);
            self.expect(Kind::Part, "SELECT", Bytes::new(), db);
            self.db = db;
        }
    }

    fn expect(&mut self, kind: Kind, command: &'static str, key: Bytes, db: u32) {
        self.expects.push(Expect::Reply {
            kind,
            command: Bytes::from_static(command.as_bytes()),
            key,
            db,
        });
        self.replies += 1;
        self.count_snapshot_command();
    }

    /// Counts a command of a snapshot transaction (stream transactions count their own).
    fn count_snapshot_command(&mut self) {
        if !self.checkpointing
            && let Some(txn) = &mut self.txn
        {
            txn.commands += 1;
        }
    }

    fn command(&mut self, kind: Kind, label: &'static str, meta: &KeyMeta, args: &[&[u8]]) {
        // The key's db may no longer be selected: a fenced transaction that ended between two
        // of a big key's chunks went back to db 0 for the next one's fence check.
        self.select(meta.db as u32);
        ferry_resp::encode_command(&mut self.out, args);
        if !self.checkpointing
            && let Some(txn) = &mut self.txn
        {
            txn.bytes += args.iter().map(|a| a.len()).sum::<usize>();
        }
        self.expects.push(Expect::Reply {
            kind,
            command: Bytes::from_static(label.as_bytes()),
            key: meta.key.clone(),
            db: meta.db as u32,
        });
        self.replies += 1;
        self.count_snapshot_command();
    }

    /// Module key metadata (RDB 13) rides only in a RESTORE payload: a key written as commands
    /// loses it, which is reported.
    fn drop_key_metadata(&mut self, meta: &KeyMeta) {
        if meta.key_metadata.is_some() {
            self.expects.push(Expect::Dropped(format!(
                "module key metadata of key {} in db {}: only RESTORE carries it and this key is written as commands",
                escape(&meta.key),
                meta.db
            )));
        }
    }

    /// `XCFGSET` and `XIDMPRECORD` (Redis 8.6).
    fn stream_idmp(&self) -> bool {
        (self.caps.version.0, self.caps.version.1) >= (8, 6)
    }

    /// A temporary key for an element of `meta`'s key (in its slot on a cluster).
    fn element_key(&self, meta: &KeyMeta) -> Bytes {
        element_key(self.cluster.then(|| ferry_keyspace::slot(&meta.key)))
    }

    /// The element whose parts are in the temporary key goes into its key.
    fn element_end(&mut self, meta: &Arc<KeyMeta>, element: Element) {
        let tmp = match self.pieces.open.take() {
            Some(tmp) => tmp,
            // No part: the empty string, which the script reads for a missing key.
            None => self.element_key(meta),
        };
        let key: &[u8] = &meta.key;
        let (name, arg, field_key, expire) = match element {
            Element::HashField => {
                self.pieces.field = Some(tmp);
                return;
            }
            Element::ListItem => ("RPUSH", Bytes::new(), None, None),
            Element::SetMember => ("SADD", Bytes::new(), None, None),
            Element::ZSetMember { score } => ("ZADD", Bytes::from(format_score(score)), None, None),
            Element::HashValue { field, expire_ms } => {
                let field_key = match field {
                    Some(_) => None,
                    None => self.pieces.field.take(),
                };
                ("HSET", field.unwrap_or_default(), field_key, expire_ms)
            }
        };
        let expire = match expire {
            Some(_) if !self.caps.hash_field_ttl() => {
                self.expects.push(Expect::Dropped(format!(
                    "TTLs of 1 field of hash {} in db {}: the target is older than 7.4",
                    escape(key),
                    meta.db
                )));
                String::new()
            }
            Some(at) => at.to_string(),
            None => String::new(),
        };
        let mut args: Vec<&[u8]> = vec![b"EVAL", ELEMENT_SCRIPT.as_bytes()];
        let n = if field_key.is_some() { "3" } else { "2" };
        args.extend([n.as_bytes(), key, &tmp]);
        if let Some(f) = &field_key {
            args.push(f);
        }
        args.extend([name.as_bytes(), &arg, expire.as_bytes()]);
        self.command(Kind::Part, "EVAL (element in parts)", meta, &args);
    }

    fn chunk(&mut self, meta: &Arc<KeyMeta>, chunk: Chunk) {
        let key: &[u8] = &meta.key;
        match chunk {
            Chunk::StringPart(part) => {
                self.command(Kind::Part, "APPEND", meta, &[&b"APPEND"[..], key, &part]);
            }
            Chunk::ListItems(items) => {
                let mut args: Vec<&[u8]> = vec![b"RPUSH", key];
                args.extend(items.iter().map(|i| i.as_ref()));
                self.command(Kind::Part, "RPUSH", meta, &args);
            }
            Chunk::SetMembers(members) => {
                let mut args: Vec<&[u8]> = vec![b"SADD", key];
                args.extend(members.iter().map(|i| i.as_ref()));
                self.command(Kind::Part, "SADD", meta, &args);
            }
            Chunk::ZSetEntries(entries) => {
                let scores: Vec<String> = entries.iter().map(|(_, s)| format_score(*s)).collect();
                let mut args: Vec<&[u8]> = vec![b"ZADD", key];
                for ((member, _), score) in entries.iter().zip(&scores) {
                    args.push(score.as_bytes());
                    args.push(member);
                }
                self.command(Kind::Part, "ZADD", meta, &args);
            }
            Chunk::HashFields(fields) => {
                let mut args: Vec<&[u8]> = vec![b"HSET", key];
                for f in &fields {
                    args.push(&f.field);
                    args.push(&f.value);
                }
                self.command(Kind::Part, "HSET", meta, &args);
                let with_ttl = fields.iter().filter(|f| f.expire_ms.is_some()).count();
                if with_ttl > 0 && !self.caps.hash_field_ttl() {
                    self.expects.push(Expect::Dropped(format!(
                        "TTLs of {with_ttl} fields of hash {} in db {}: the target is older than 7.4",
                        escape(key),
                        meta.db
                    )));
                    return;
                }
                for f in fields.iter().filter(|f| f.expire_ms.is_some()) {
                    let at = f.expire_ms.unwrap_or_default().to_string();
                    self.command(
                        Kind::Part,
                        "HPEXPIREAT",
                        meta,
                        &[
                            &b"HPEXPIREAT"[..],
                            key,
                            at.as_bytes(),
                            b"FIELDS",
                            b"1",
                            &f.field,
                        ],
                    );
                }
            }
            Chunk::StreamEntries(entries) => {
                for e in entries {
                    let id = e.id.to_string();
                    let mut args: Vec<&[u8]> = vec![b"XADD", key, id.as_bytes()];
                    for (f, v) in &e.fields {
                        args.push(f);
                        args.push(v);
                    }
                    self.command(Kind::Part, "XADD", meta, &args);
                    self.stream_started = true;
                    self.stream.first_id.get_or_insert(e.id);
                }
            }
            Chunk::StreamMeta(m) => {
                if !self.stream_started {
                    // Every entry was deleted: create the stream empty, then set its ids.
                    self.command(
                        Kind::Part,
                        "XGROUP CREATE",
                        meta,
                        &[
                            &b"XGROUP"[..],
                            b"CREATE",
                            key,
                            b"__ferry:tmp",
                            b"$",
                            b"MKSTREAM",
                        ],
                    );
                    self.command(
                        Kind::Part,
                        "XGROUP DESTROY",
                        meta,
                        &[&b"XGROUP"[..], b"DESTROY", key, b"__ferry:tmp"],
                    );
                    self.stream_started = true;
                }
                // The oldest stream encoding has no counters; Redis derives them on load as
                // the entries it holds, and so does ferry.
                let old_format = meta.type_byte == ferry_rdb::TypeByte::STREAM_LISTPACKS;
                let entries_added = m.entries_added.or(old_format.then_some(m.length));
                self.stream.last_id = m.last_id;
                self.stream.length = m.length;
                self.stream.entries_added = entries_added;
                self.stream.max_deleted_id = m.max_deleted_id.unwrap_or_default();
                self.stream.estimate_reads = old_format;
                let last = m.last_id.to_string();
                let mut args: Vec<Vec<u8>> =
                    vec![b"XSETID".to_vec(), key.to_vec(), last.into_bytes()];
                if let Some(added) = entries_added.filter(|_| self.caps.stream_counters()) {
                    args.push(b"ENTRIESADDED".to_vec());
                    args.push(added.to_string().into_bytes());
                    args.push(b"MAXDELETEDID".to_vec());
                    args.push(
                        m.max_deleted_id
                            .unwrap_or_default()
                            .to_string()
                            .into_bytes(),
                    );
                }
                self.command(
                    Kind::Part,
                    "XSETID",
                    meta,
                    &args.iter().map(|a| a.as_slice()).collect::<Vec<_>>(),
                );
            }
            Chunk::StreamGroup(g) => {
                let last = g.last_id.to_string();
                let mut args: Vec<Vec<u8>> = vec![
                    b"XGROUP".to_vec(),
                    b"CREATE".to_vec(),
                    key.to_vec(),
                    g.name.to_vec(),
                    last.into_bytes(),
                ];
                let entries_read = g
                    .entries_read
                    .or_else(|| self.stream.estimate_entries_read(g.last_id));
                if let Some(read) = entries_read.filter(|_| self.caps.stream_counters()) {
                    args.push(b"ENTRIESREAD".to_vec());
                    args.push(read.to_string().into_bytes());
                }
                self.command(
                    Kind::Part,
                    "XGROUP CREATE",
                    meta,
                    &args.iter().map(|a| a.as_slice()).collect::<Vec<_>>(),
                );
                if !self.caps.xgroup_createconsumer() && !g.consumers.is_empty() {
                    // Consumers with pending entries come back through XCLAIM; the others
                    // cannot be created before 6.2.
                    self.expects.push(Expect::Dropped(format!(
                        "consumers without pending entries of group {} of stream {} in db {}: the target is older than 6.2",
                        escape(&g.name),
                        escape(key),
                        meta.db
                    )));
                }
                let create_consumers = self.caps.xgroup_createconsumer();
                for c in g.consumers.iter().filter(|_| create_consumers) {
                    self.command(
                        Kind::Part,
                        "XGROUP CREATECONSUMER",
                        meta,
                        &[&b"XGROUP"[..], b"CREATECONSUMER", key, &g.name, &c.name],
                    );
                }
            }
            Chunk::StreamIdmp(idmp) if self.stream_idmp() => {
                // Before the iids: on a change of settings Redis clears the stream's maps.
                let duration = idmp.duration_s.to_string();
                let max_size = idmp.max_size.to_string();
                self.command(
                    Kind::Part,
                    "XCFGSET",
                    meta,
                    &[
                        &b"XCFGSET"[..],
                        key,
                        b"IDMP-DURATION",
                        duration.as_bytes(),
                        b"IDMP-MAXSIZE",
                        max_size.as_bytes(),
                    ],
                );
            }
            Chunk::StreamIdmp(idmp) => {
                // Default settings and no producer: nothing is lost.
                if idmp.producers > 0 || !idmp.is_default() {
                    self.expects.push(Expect::Dropped(format!(
                        "idempotent-producer state of stream {} in db {} (IDMP-DURATION {}, IDMP-MAXSIZE {}, {} producers): the target is older than 8.6",
                        escape(key),
                        meta.db,
                        idmp.duration_s,
                        idmp.max_size,
                        idmp.producers
                    )));
                }
            }
            Chunk::StreamIdmpEntries { producer, entries } if self.stream_idmp() => {
                for e in entries {
                    let id = e.id.to_string();
                    self.command(
                        Kind::Part,
                        "XIDMPRECORD",
                        meta,
                        &[&b"XIDMPRECORD"[..], key, &producer, &e.iid, id.as_bytes()],
                    );
                }
            }
            Chunk::ElementPart(part) => match self.pieces.open.clone() {
                Some(tmp) => {
                    self.command(Kind::Part, "APPEND", meta, &[&b"APPEND"[..], &tmp, &part])
                }
                None => {
                    let tmp = self.element_key(meta);
                    self.command(
                        Kind::Part,
                        "SET (element part)",
                        meta,
                        &[
                            &b"SET"[..],
                            &tmp,
                            &part,
                            b"PX",
                            ELEMENT_KEY_TTL_MS.as_bytes(),
                        ],
                    );
                    self.pieces.open = Some(tmp);
                }
            },
            Chunk::ElementEnd(element) => self.element_end(meta, element),
            // Reported with its StreamIdmp chunk.
            Chunk::StreamIdmpEntries { .. } => {}
            // All-time counters (XINFO's iids-added, iids-duplicates): no command sets them.
            Chunk::StreamIdmpCounters { .. } => {}
            Chunk::StreamPending { group, entries } => {
                for p in entries {
                    let id = p.id.to_string();
                    let time = p.delivery_time_ms.to_string();
                    let count = p.delivery_count.to_string();
                    self.command(
                        Kind::Part,
                        "XCLAIM",
                        meta,
                        &[
                            &b"XCLAIM"[..],
                            key,
                            &group,
                            &p.consumer,
                            b"0",
                            id.as_bytes(),
                            b"TIME",
                            time.as_bytes(),
                            b"RETRYCOUNT",
                            count.as_bytes(),
                            b"FORCE",
                            b"JUSTID",
                        ],
                    );
                }
            }
        }
    }
}

/// The value of a string key that MSET can write with no loss: no expiry, no LRU/LFU data, no
/// key metadata.
fn plain_string(record: &ferry_rdb::Record) -> Option<Bytes> {
    let meta = &record.meta;
    if meta.type_byte != ferry_rdb::TypeByte::STRING
        || meta.expire_ms.is_some()
        || meta.idle.is_some()
        || meta.freq.is_some()
        || meta.key_metadata.is_some()
        || record.raw.len() > MSET_BYTES
    {
        return None;
    }
    // A slice of the raw bytes: no reader, chunk list or copy per key.
    ferry_rdb::string_value(&record.raw).ok()
}

/// Gives a snapshot key with a TTL its held expiry, if the hold takes it, and says which key
/// (target db, key, its own expiry) is to be listed once written. Starts and ends the hold
/// with the snapshot, and on a continued stream looks at the lists an earlier run left.
fn hold_entry(
    hold: &mut super::hold::Hold,
    entry: &mut Entry,
    db_map: &crate::pipeline::transform::DbMap,
    cluster: bool,
) -> Option<(u32, Bytes, i64)> {
    let target_db = |db: u64| if cluster { 0 } else { db_map.target(db as u32) };
    match entry {
        Entry::SyncStart {
            snapshot: false, ..
        } => hold.resume(),
        Entry::SnapshotStart { .. } => hold.copying(true),
        Entry::SnapshotEnd { .. } => hold.copying(false),
        Entry::Key(record) => {
            let t0 = record.meta.expire_ms?;
            record.meta.expire_ms = Some(hold.held_expiry(t0)?);
            return Some((target_db(record.meta.db), record.meta.key.clone(), t0));
        }
        Entry::BigEnd(meta) => {
            let t0 = meta.expire_ms?;
            let held = hold.held_expiry(t0)?;
            let mut m = (**meta).clone();
            m.expire_ms = Some(held);
            *meta = Arc::new(m);
            return Some((target_db(meta.db), meta.key.clone(), t0));
        }
        Entry::Command(cmd) => {
            let (key, t0) = hold.hold_command(cmd, || {
                (std::time::Instant::now(), crate::status::latency::unix_ms())
            })?;
            let db = if cluster {
                0
            } else {
                db_map.target(cmd.db_on_target())
            };
            return Some((db, key, t0));
        }
        _ => {}
    }
    None
}

/// When a rewritten value expires.
#[derive(Clone, Copy, Debug)]
enum Expiry {
    /// At this unix time in ms.
    At(i64),
    /// In this many ms from when the target applies it (a RESTORE without ABSTTL).
    In(i64),
}

/// A stream's ids and counters, as its StreamMeta chunk gives them.
#[derive(Default)]
struct StreamFacts {
    first_id: Option<ferry_rdb::StreamId>,
    last_id: ferry_rdb::StreamId,
    length: u64,
    entries_added: Option<u64>,
    max_deleted_id: ferry_rdb::StreamId,
    /// The snapshot did not store groups' read counters: estimate them as Redis does on load.
    estimate_reads: bool,
}

impl StreamFacts {
    /// How many entries a group at `id` has read, where that is certain (Redis's own estimate
    /// when it loads a stream saved without counters); None when it is not.
    fn estimate_entries_read(&self, id: ferry_rdb::StreamId) -> Option<u64> {
        if !self.estimate_reads {
            return None;
        }
        let added = self.entries_added?;
        let zero = ferry_rdb::StreamId { ms: 0, seq: 0 };
        if added == 0 {
            return Some(0);
        }
        if self.length == 0 && id <= self.last_id {
            return Some(added);
        }
        if id == self.last_id {
            return Some(added);
        }
        if id > self.last_id {
            return None;
        }
        let first = self.first_id?;
        if self.max_deleted_id == zero || self.max_deleted_id < first {
            if id < first {
                return Some(added - self.length);
            }
            if id == first {
                return Some(added - self.length + 1);
            }
        }
        None
    }
}

/// `RESTORE key 0 <payload> REPLACE`, as servers before 5.0 take it.
fn restore_relative(out: &mut BytesMut, meta: &KeyMeta, raw: &[u8], rdb_version: u16) {
    let payload = ferry_rdb::dump::payload_with_meta(
        meta.key_metadata.as_deref().unwrap_or_default(),
        meta.type_byte,
        raw,
        rdb_version,
    );
    ferry_resp::encode_command(
        out,
        &[&b"RESTORE"[..], &meta.key, b"0", &payload, b"REPLACE"],
    );
}

/// The `name=` from a library's `#!lua name=<name>` first line, for messages.
fn library_name(code: &[u8]) -> String {
    let first = code.split(|&b| b == b'\n').next().unwrap_or_default();
    let name = first
        .split(|&b| b == b' ')
        .find_map(|w| w.strip_prefix(b"name="))
        .unwrap_or(b"?");
    escape(name)
}

/// Appends `RESTORE key <abs-ms|0> <payload> REPLACE ABSTTL [IDLETIME s | FREQ f]`, building the
/// DUMP payload (key metadata if any, type, raw value, RDB version, CRC64) in place rather than
/// in a buffer of its own.
pub fn restore(out: &mut BytesMut, meta: &KeyMeta, raw: &[u8], rdb_version: u16) {
    let ttl = itoa(meta.expire_ms.unwrap_or(0).max(0) as u64);
    let lru = match (meta.idle, meta.freq) {
        (Some(idle), _) => Some((&b"IDLETIME"[..], itoa(idle))),
        (None, Some(freq)) => Some((&b"FREQ"[..], itoa(freq as u64))),
        (None, None) => None,
    };
    let argc = if lru.is_some() { 8 } else { 6 };
    // RDB 13 module key metadata goes before the type byte, as Redis 8.6's DUMP puts it.
    let key_metadata: &[u8] = meta.key_metadata.as_deref().unwrap_or_default();
    out.reserve(key_metadata.len() + raw.len() + meta.key.len() + 96);
    out.extend_from_slice(b"*");
    out.extend_from_slice(itoa(argc).as_bytes());
    out.extend_from_slice(b"\r\n$7\r\nRESTORE\r\n");
    bulk(out, &meta.key);
    bulk(out, ttl.as_bytes());
    let version = rdb_version.to_le_bytes();
    let mut crc = ferry_rdb::Crc64::new();
    crc.update(key_metadata);
    crc.update(&[meta.type_byte.0]);
    crc.update(raw);
    crc.update(&version);
    out.extend_from_slice(b"$");
    out.extend_from_slice(itoa((key_metadata.len() + raw.len()) as u64 + 11).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(key_metadata);
    out.extend_from_slice(&[meta.type_byte.0]);
    out.extend_from_slice(raw);
    out.extend_from_slice(&version);
    out.extend_from_slice(&crc.finish().to_le_bytes());
    out.extend_from_slice(b"\r\n$7\r\nREPLACE\r\n$6\r\nABSTTL\r\n");
    if let Some((name, value)) = lru {
        bulk(out, name);
        bulk(out, value.as_bytes());
    }
}

fn bulk(out: &mut BytesMut, data: &[u8]) {
    out.extend_from_slice(b"$");
    out.extend_from_slice(itoa(data.len() as u64).as_bytes());
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
}

/// Decimal digits of `n` without a heap allocation.
fn itoa(mut n: u64) -> Digits {
    let mut d = Digits {
        buf: [0; 20],
        start: 20,
    };
    loop {
        d.start -= 1;
        d.buf[d.start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return d;
        }
    }
}

struct Digits {
    buf: [u8; 20],
    start: usize,
}

impl Digits {
    fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// Shortest text that reads back as the same double; `inf` and `-inf` as Redis writes them.
pub fn format_score(score: f64) -> String {
    if score.is_infinite() {
        return if score > 0.0 {
            "inf".into()
        } else {
            "-inf".into()
        };
    }
    format!("{score:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restore_carries_a_valid_dump_payload() {
        let meta = KeyMeta {
            db: 0,
            key: Bytes::from_static(b"k"),
            expire_ms: Some(1_700_000_000_123),
            idle: Some(5),
            freq: None,
            type_byte: ferry_rdb::TypeByte::STRING,
            key_metadata: None,
        };
        let raw = b"\x03abc";
        let mut out = BytesMut::new();
        restore(&mut out, &meta, raw, 10);
        let frame = ferry_resp::parse(&out.freeze()).unwrap();
        let args = frame.command_args().unwrap();
        let want: Vec<&[u8]> = vec![
            b"RESTORE",
            b"k",
            b"1700000000123",
            b"",
            b"REPLACE",
            b"ABSTTL",
            b"IDLETIME",
            b"5",
        ];
        assert_eq!(args.len(), want.len());
        for (i, (a, w)) in args.iter().zip(&want).enumerate() {
            if i != 3 {
                assert_eq!(&a[..], *w);
            }
        }
        assert_eq!(
            &args[3][..],
            &ferry_rdb::dump::payload(meta.type_byte, raw, 10)[..]
        );
        assert_eq!(itoa(0).as_bytes(), b"0");
        assert_eq!(itoa(u64::MAX).as_bytes(), u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn plain_strings_are_gathered_into_one_mset_per_db() {
        let key = |db: u64, k: &'static [u8], expire_ms: Option<i64>| {
            Entry::Key(ferry_rdb::Record {
                meta: KeyMeta {
                    db,
                    key: Bytes::from_static(k),
                    expire_ms,
                    idle: None,
                    freq: None,
                    type_byte: ferry_rdb::TypeByte::STRING,
                    key_metadata: None,
                },
                // RDB string: 6-bit length 1, then the byte.
                raw: Bytes::from_static(b"\x01v"),
            })
        };
        let mut enc = Encoder::new();
        enc.push(Entry::SnapshotStart { rdb_version: 10 }).unwrap();
        enc.push(key(0, b"a", None)).unwrap();
        enc.push(key(0, b"b", None)).unwrap();
        enc.push(key(0, b"t", Some(4_000_000_000_000))).unwrap();
        enc.push(key(1, b"c", None)).unwrap();
        enc.finish();
        let (out, expects) = enc.take();
        let text = String::from_utf8_lossy(&out);
        // The strings wait for more while the key with an expiry goes ahead; the db change
        // ends the first batch.
        let restore = text.find("RESTORE\r\n$1\r\nt\r\n$13\r\n4000000000000");
        let first = text.find("*5\r\n$4\r\nMSET\r\n$1\r\na\r\n$1\r\nv\r\n$1\r\nb\r\n");
        assert!(
            restore.is_some() && first.is_some() && restore < first,
            "{text}"
        );
        assert!(
            text.ends_with("$6\r\nSELECT\r\n$1\r\n1\r\n*3\r\n$4\r\nMSET\r\n$1\r\nc\r\n$1\r\nv\r\n"),
            "{text}"
        );
        let kinds: Vec<_> = expects
            .iter()
            .filter_map(|e| match e {
                Expect::Reply { kind, command, .. } => {
                    Some((*kind, std::str::from_utf8(command).unwrap()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                (Kind::Keys(1), "RESTORE"),
                (Kind::Keys(2), "MSET"),
                (Kind::Part, "SELECT"),
                (Kind::Keys(1), "MSET")
            ]
        );
    }

    #[test]
    fn gathered_strings_never_overtake_the_stream() {
        let mut enc = Encoder::new();
        enc.push(Entry::SnapshotStart { rdb_version: 10 }).unwrap();
        enc.push(Entry::Key(ferry_rdb::Record {
            meta: KeyMeta {
                db: 0,
                key: Bytes::from_static(b"a"),
                expire_ms: None,
                idle: None,
                freq: None,
                type_byte: ferry_rdb::TypeByte::STRING,
                key_metadata: None,
            },
            raw: Bytes::from_static(b"\x01v"),
        }))
        .unwrap();
        enc.push(Entry::SnapshotEnd { offset: 7 }).unwrap();
        let (out, expects) = enc.take();
        assert!(String::from_utf8_lossy(&out).contains("MSET"));
        assert!(matches!(expects.last(), Some(Expect::SnapshotApplied(7))));
    }

    #[test]
    fn scores_read_back_exactly() {
        for s in [
            0.1,
            -2.5,
            1e300,
            3.0,
            f64::MIN_POSITIVE,
            123_456_789.123_456_79,
        ] {
            assert_eq!(format_score(s).parse::<f64>().unwrap(), s);
        }
        assert_eq!(format_score(f64::INFINITY), "inf");
        assert_eq!(format_score(f64::NEG_INFINITY), "-inf");
    }

    /// The checkpoint past a transaction moves only if the transaction's own checkpoint is
    /// there: a transaction refused whole must not be skipped on a resume.
    #[test]
    fn idle_checkpoint_follows_only_an_applied_transaction() {
        let mut enc = Encoder::new().with_checkpoint(b"cp".to_vec());
        let id = "0123456789012345678901234567890123456789";
        enc.push(Entry::SyncStart {
            replid: Bytes::from(id),
            offset: 5,
            snapshot: false,
            clear_target: false,
        })
        .unwrap();
        let args = vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"a")];
        let mut raw = BytesMut::new();
        ferry_resp::encode_command(&mut raw, &args);
        enc.push(Entry::Command(Command {
            db: 0,
            target_db: None,
            args,
            raw: raw.freeze(),
            end_offset: 10,
            slot: None,
        }))
        .unwrap();
        let _ = enc.take();
        enc.push(Entry::Offset { offset: 24, db: 0 }).unwrap();
        let (out, _) = enc.take();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with("*6\r\n$4\r\nEVAL\r\n"), "{text}");
        // Expects the transaction's value, sets the new one (with the last write's position).
        assert!(text.contains(&format!("{id} 10 0\r\n")), "{text}");
        assert!(text.ends_with(&format!("{id} 24 0 10 0\r\n")), "{text}");
    }

    /// A big stream command is written from the bytes it came in (the same allocation), in
    /// its place between the commands around it, inside the checkpointed transaction.
    #[test]
    fn a_big_stream_command_is_written_from_its_own_bytes() {
        let mut enc = Encoder::new().with_checkpoint(b"cp".to_vec());
        let id = "0123456789012345678901234567890123456789";
        enc.push(Entry::SyncStart {
            replid: Bytes::from(id),
            offset: 5,
            snapshot: false,
            clear_target: false,
        })
        .unwrap();
        let mut end = 5;
        let mut raws = Vec::new();
        for value in [vec![b'a'; 3], vec![b'b'; RAW_BY_REFERENCE], vec![b'c'; 3]] {
            let args = vec![
                Bytes::from_static(b"SET"),
                Bytes::from_static(b"k"),
                Bytes::from(value),
            ];
            let mut raw = BytesMut::new();
            ferry_resp::encode_command(&mut raw, &args);
            let raw = raw.freeze();
            end += raw.len() as u64;
            raws.push(raw.clone());
            enc.push(Entry::Command(Command {
                db: 0,
                target_db: None,
                args,
                raw,
                end_offset: end,
                slot: None,
            }))
            .unwrap();
        }
        assert!(enc.pending_len() > RAW_BY_REFERENCE);
        let (parts, _) = enc.take_parts();
        assert_eq!(parts.len(), 3, "before, the big command, after");
        assert_eq!(parts[1].as_ptr(), raws[1].as_ptr(), "not copied");
        let text = String::from_utf8_lossy(&parts.concat()).into_owned();
        let a = text.find("$3\r\naaa").unwrap();
        let c = text.find("$3\r\nccc").unwrap();
        assert!(
            text.starts_with("*1\r\n$5\r\nMULTI\r\n") && a < c,
            "{text:.200}"
        );
        let cp = text.find(&format!("{id} {end} 0")).unwrap();
        assert!(c < cp && text.ends_with("*1\r\n$4\r\nEXEC\r\n"));
        assert_eq!(enc.pending_len(), 0);
    }

    /// A command a transform moved to another db is written there, while the checkpoint
    /// keeps the source's db: a resume selects that one on the source.
    #[test]
    fn a_moved_command_is_written_in_its_target_db_and_checkpointed_with_its_source_db() {
        let mut enc = Encoder::new().with_checkpoint(b"cp".to_vec());
        let id = "0123456789012345678901234567890123456789";
        enc.push(Entry::SyncStart {
            replid: Bytes::from(id),
            offset: 5,
            snapshot: false,
            clear_target: false,
        })
        .unwrap();
        let args = vec![Bytes::from_static(b"INCR"), Bytes::from_static(b"a")];
        let mut raw = BytesMut::new();
        ferry_resp::encode_command(&mut raw, &args);
        enc.push(Entry::Command(Command {
            db: 2,
            target_db: Some(9),
            args,
            raw: raw.freeze(),
            end_offset: 10,
            slot: None,
        }))
        .unwrap();
        enc.finish();
        let (out, _) = enc.take();
        let text = String::from_utf8_lossy(&out);
        let select = text.find("$6\r\nSELECT\r\n$1\r\n9\r\n");
        let incr = text.find("$4\r\nINCR\r\n");
        assert!(select.is_some() && select < incr, "{text}");
        assert!(!text.contains("SELECT\r\n$1\r\n2\r\n"), "{text}");
        assert!(text.contains(&format!("{id} 10 2")), "{text}");
    }

    /// On a cluster master a transaction holds one slot's commands and updates that slot's
    /// checkpoint; no MSET (its keys would span slots).
    #[test]
    fn cluster_transactions_stay_within_one_slot() {
        let keys = (0..crate::net::topology::SLOTS)
            .map(|s| Bytes::from(format!("cp{s}")))
            .collect();
        let mut enc = Encoder::new()
            .with_checkpoint(b"base".to_vec())
            .for_cluster(Some(Arc::new(SlotCheckpoints::new(keys))));
        let id = Bytes::from_static(b"0123456789012345678901234567890123456789");
        enc.push(Entry::SyncStart {
            replid: id,
            offset: 5,
            snapshot: false,
            clear_target: false,
        })
        .unwrap();
        let cmd = |key: &str, slot: u16, off: u64| {
            let args = vec![
                Bytes::from_static(b"INCR"),
                Bytes::copy_from_slice(key.as_bytes()),
            ];
            let mut raw = BytesMut::new();
            ferry_resp::encode_command(&mut raw, &args);
            Entry::Command(Command {
                db: 0,
                target_db: None,
                args,
                raw: raw.freeze(),
                end_offset: off,
                slot: Some(slot),
            })
        };
        enc.push(cmd("a", 7, 10)).unwrap();
        enc.push(cmd("b", 7, 20)).unwrap();
        enc.push(cmd("c", 9, 30)).unwrap();
        let (out, _) = enc.take();
        let text = String::from_utf8_lossy(&out).replace("\r\n", " ");
        let id = "0123456789012345678901234567890123456789";
        assert_eq!(
            text,
            format!(
                "*1 $5 MULTI *2 $4 INCR $1 a *2 $4 INCR $1 b *3 $3 SET $3 cp7 $45 {id} 20 0 *1 $4 EXEC \
                 *1 $5 MULTI *2 $4 INCR $1 c *3 $3 SET $3 cp9 $45 {id} 30 0 *1 $4 EXEC "
            )
        );
    }

    /// A cluster master's copy that ended at offset 0 (a source with no writes yet): once its
    /// writes are confirmed the base names it, and only that base's reply says it is applied.
    #[test]
    fn a_cluster_masters_base_names_the_copys_end_once_confirmed() {
        let mut enc = Encoder::new()
            .with_checkpoint(b"base".to_vec())
            .for_cluster(None);
        let id = "0123456789012345678901234567890123456789";
        enc.push(Entry::SyncStart {
            replid: Bytes::from_static(id.as_bytes()),
            offset: 0,
            snapshot: true,
            clear_target: false,
        })
        .unwrap();
        enc.push(Entry::SnapshotEnd { offset: 0 }).unwrap();
        let (_, expects) = enc.take();
        assert!(matches!(expects.last(), Some(Expect::SnapshotWritten(0))));
        assert!(
            !expects
                .iter()
                .any(|e| matches!(e, Expect::SnapshotApplied(_)))
        );
        // Nothing confirmed yet: nothing due.
        enc.confirmed(0);
        assert!(!enc.checkpoint_due());
        enc.snapshot_confirmed();
        assert!(enc.checkpoint_due());
        let (out, expects) = enc.take();
        let text = String::from_utf8_lossy(&out).replace("\r\n", " ");
        assert!(
            text.ends_with(&format!("SET $4 base $44 {id} 0 0 ")),
            "{text}"
        );
        assert!(matches!(expects.last(), Some(Expect::SnapshotApplied(0))));
    }

    #[test]
    fn stream_commands_pass_through_and_multi_defers_the_offset() {
        let mut enc = Encoder::new();
        let cmd = |args: &[&str], raw: &str, off| {
            Entry::Command(Command {
                db: 0,
                target_db: None,
                args: args
                    .iter()
                    .map(|a| Bytes::copy_from_slice(a.as_bytes()))
                    .collect(),
                raw: Bytes::copy_from_slice(raw.as_bytes()),
                end_offset: off,
                slot: None,
            })
        };
        enc.push(cmd(&["MULTI"], "*1\r\n$5\r\nMULTI\r\n", 10))
            .unwrap();
        enc.push(cmd(&["INCR", "a"], "*2\r\n$4\r\nINCR\r\n$1\r\na\r\n", 20))
            .unwrap();
        enc.push(cmd(&["EXEC"], "*1\r\n$4\r\nEXEC\r\n", 30))
            .unwrap();
        let (out, expects) = enc.take();
        assert_eq!(
            &out[..],
            b"*1\r\n$5\r\nMULTI\r\n*2\r\n$4\r\nINCR\r\n$1\r\na\r\n*1\r\n$4\r\nEXEC\r\n"
        );
        let offsets: Vec<_> = expects
            .iter()
            .map(|e| match e {
                Expect::Reply {
                    kind: Kind::Stream { offset },
                    ..
                } => *offset,
                _ => panic!("unexpected {e:?}"),
            })
            .collect();
        assert_eq!(offsets, vec![None, None, Some(30)]);
    }

    fn stream_meta(key: &'static [u8], key_metadata: Option<Bytes>) -> Arc<KeyMeta> {
        Arc::new(KeyMeta {
            db: 0,
            key: Bytes::from_static(key),
            expire_ms: None,
            idle: None,
            freq: None,
            type_byte: ferry_rdb::TypeByte::STREAM_LISTPACKS_4,
            key_metadata,
        })
    }

    /// Fenced, a standalone target's snapshot goes in transactions, each after `WATCH` and the
    /// guard script; a big key in db 1 whose chunks span several transactions has every chunk
    /// written in db 1, though each guard goes back to db 0.
    #[test]
    fn fenced_snapshot_transactions_keep_each_chunk_in_its_db() {
        let guard = Guard {
            token: Bytes::from_static(b"tok"),
            own: Bytes::from_static(b"__ferry:fence:t"),
            slots: None,
            owned: Arc::default(),
            lease: Bytes::from_static(b"__ferry:lease:t"),
            lease_value: Bytes::from_static(b"tok 1 0 host machine"),
        };
        let mut enc = Encoder::new()
            .with_checkpoint(b"cp".to_vec())
            .with_guard(guard);
        enc.push(Entry::SyncStart {
            replid: Bytes::from("a".repeat(40)),
            offset: 0,
            snapshot: true,
            clear_target: false,
        })
        .unwrap();
        let meta = Arc::new(KeyMeta {
            db: 1,
            key: Bytes::from_static(b"big"),
            expire_ms: None,
            idle: None,
            freq: None,
            type_byte: ferry_rdb::TypeByte::LIST_QUICKLIST_2,
            key_metadata: None,
        });
        enc.push(Entry::BigStart(meta.clone())).unwrap();
        for i in 0..600 {
            let item = Bytes::from(format!("item{i}"));
            enc.push(Entry::BigChunk(meta.clone(), Chunk::ListItems(vec![item])))
                .unwrap();
        }
        enc.push(Entry::BigEnd(meta)).unwrap();
        enc.push(Entry::SnapshotEnd { offset: 10 }).unwrap();
        let (out, _) = enc.take();
        let (mut db, mut in_multi, mut pushes, mut guards) = (0, false, 0, 0);
        for c in commands(&out) {
            match c[0].as_slice() {
                b"SELECT" => db = String::from_utf8_lossy(&c[1]).parse().unwrap(),
                b"WATCH" => {
                    assert!(!in_multi && db == 0);
                    assert_eq!(c[1], b"__ferry:fence:t");
                }
                b"EVAL" => {
                    assert!(!in_multi && db == 0);
                    guards += 1;
                }
                b"MULTI" => in_multi = true,
                b"EXEC" => in_multi = false,
                b"RPUSH" | b"DEL" => {
                    assert!(in_multi, "snapshot writes are in transactions");
                    assert_eq!(
                        db,
                        1,
                        "{:?} went to db {db}",
                        String::from_utf8_lossy(&c[0])
                    );
                    pushes += usize::from(c[0] == b"RPUSH");
                }
                b"SET" => assert!(in_multi && db == 0),
                other => panic!("unexpected {}", String::from_utf8_lossy(other)),
            }
        }
        assert_eq!(pushes, 600);
        assert!(
            guards >= 3,
            "the chunks span several transactions: {guards}"
        );
        assert!(!in_multi);
    }

    /// A big type-26 stream's IDMP chunks, after its entries and meta.
    fn idmp_stream(enc: &mut Encoder, meta: &Arc<KeyMeta>, producers: u64) {
        let id = |seq| ferry_rdb::StreamId { ms: 5, seq };
        enc.push(Entry::SnapshotStart { rdb_version: 13 }).unwrap();
        enc.push(Entry::BigStart(meta.clone())).unwrap();
        let chunks = vec![
            Chunk::StreamEntries(vec![ferry_rdb::StreamEntry {
                id: id(1),
                fields: vec![(Bytes::from_static(b"f"), Bytes::from_static(b"v"))],
            }]),
            Chunk::StreamMeta(ferry_rdb::StreamMeta {
                length: 1,
                last_id: id(1),
                first_id: Some(id(1)),
                max_deleted_id: Some(id(0)),
                entries_added: Some(1),
            }),
            Chunk::StreamIdmp(ferry_rdb::StreamIdmp {
                duration_s: 7200,
                max_size: 1000,
                producers,
            }),
            Chunk::StreamIdmpEntries {
                producer: Bytes::from_static(b"p1"),
                entries: vec![ferry_rdb::IdmpEntry {
                    iid: Bytes::from_static(b"i1"),
                    id: id(1),
                }],
            },
            Chunk::StreamIdmpCounters {
                iids_added: 1,
                iids_duplicates: 0,
            },
        ];
        for c in chunks {
            enc.push(Entry::BigChunk(meta.clone(), c)).unwrap();
        }
        enc.push(Entry::BigEnd(meta.clone())).unwrap();
        enc.finish();
    }

    fn commands(out: &[u8]) -> Vec<Vec<Vec<u8>>> {
        let mut buf = BytesMut::from(out);
        let mut dec = ferry_resp::Decoder::default();
        let mut cmds = Vec::new();
        while let Some((frame, _)) = dec.decode(&mut buf).unwrap() {
            let args = frame.command_args().unwrap();
            cmds.push(args.iter().map(|a| a.to_vec()).collect());
        }
        assert!(buf.is_empty());
        cmds
    }

    /// An element in parts: its first part `SET` into a temporary key with an expiry, the
    /// others `APPEND`ed, then one `EVAL` moves it into the key; a hash field in parts and its
    /// value go through two. On a cluster every temporary key is in its key's slot.
    #[test]
    fn elements_in_parts_go_through_temporary_keys() {
        for cluster in [false, true] {
            let mut enc = Encoder::new();
            if cluster {
                enc = enc.for_cluster(None);
            }
            let meta = Arc::new(KeyMeta {
                type_byte: ferry_rdb::TypeByte::HASH,
                ..(*stream_meta(b"user:{42}", None)).clone()
            });
            let part = |b: &'static [u8]| {
                Entry::BigChunk(meta.clone(), Chunk::ElementPart(Bytes::from_static(b)))
            };
            let end = |e: Element| Entry::BigChunk(meta.clone(), Chunk::ElementEnd(e));
            for e in [
                Entry::BigStart(meta.clone()),
                part(b"fie"),
                part(b"ld"),
                end(Element::HashField),
                part(b"value"),
                end(Element::HashValue {
                    field: None,
                    expire_ms: Some(7),
                }),
                part(b"v2"),
                end(Element::HashValue {
                    field: Some(Bytes::from_static(b"f2")),
                    expire_ms: None,
                }),
                end(Element::HashValue {
                    field: Some(Bytes::from_static(b"empty")),
                    expire_ms: None,
                }),
                Entry::BigEnd(meta.clone()),
            ] {
                enc.push(e).unwrap();
            }
            let (out, _) = enc.take();
            let cmds = commands(&out);
            let names: Vec<&[u8]> = cmds.iter().map(|c| &c[0][..]).collect();
            assert_eq!(
                names,
                [
                    &b"DEL"[..],
                    b"SET",
                    b"APPEND",
                    b"SET",
                    b"EVAL",
                    b"SET",
                    b"EVAL",
                    b"EVAL"
                ]
            );
            let (field, value) = (&cmds[1][1], &cmds[3][1]);
            assert_eq!(&cmds[1][2..], [&b"fie"[..], b"PX", b"3600000"]);
            assert_eq!(cmds[2][1..], [field.clone(), b"ld".to_vec()]);
            assert_ne!(field, value);
            let eval = &cmds[4];
            assert_eq!(eval[2], b"3");
            assert_eq!(
                eval[3..6],
                [b"user:{42}".to_vec(), value.clone(), field.clone()]
            );
            assert_eq!(eval[6..], [b"HSET".to_vec(), Vec::new(), b"7".to_vec()]);
            assert_eq!(cmds[6][2], b"2");
            assert_eq!(cmds[6][5..], [b"HSET".to_vec(), b"f2".to_vec(), Vec::new()]);
            // No part: a temporary key never written, read as the empty string.
            assert_eq!(
                cmds[7][5..],
                [b"HSET".to_vec(), b"empty".to_vec(), Vec::new()]
            );
            for tmp in [field, value, &cmds[5][1], &cmds[7][4]] {
                assert!(tmp.starts_with(b"__ferry:elem:"), "{tmp:?}");
                if cluster {
                    assert_eq!(
                        ferry_keyspace::slot(tmp),
                        ferry_keyspace::slot(b"user:{42}")
                    );
                }
            }
        }
    }

    /// Fenced, the pieces of a huge element go in transactions of a few MiB each (the target
    /// holds a transaction's commands until its EXEC), and the element's EVAL in one of them.
    #[test]
    fn fenced_pieces_go_in_transactions_bounded_by_bytes() {
        let guard = Guard {
            token: Bytes::from_static(b"tok"),
            own: Bytes::from_static(b"__ferry:fence:t"),
            slots: None,
            owned: Arc::default(),
            lease: Bytes::from_static(b"__ferry:lease:t"),
            lease_value: Bytes::from_static(b"tok 1 0 host machine"),
        };
        let mut enc = Encoder::new()
            .with_checkpoint(b"cp".to_vec())
            .with_guard(guard);
        enc.push(Entry::SyncStart {
            replid: Bytes::from("a".repeat(40)),
            offset: 0,
            snapshot: true,
            clear_target: false,
        })
        .unwrap();
        let meta = Arc::new(KeyMeta {
            type_byte: ferry_rdb::TypeByte::LIST_QUICKLIST_2,
            ..(*stream_meta(b"big", None)).clone()
        });
        let piece = Bytes::from(vec![b'x'; 256 << 10]);
        enc.push(Entry::BigStart(meta.clone())).unwrap();
        for _ in 0..40 {
            let part = Chunk::ElementPart(piece.clone());
            enc.push(Entry::BigChunk(meta.clone(), part)).unwrap();
        }
        let end = Chunk::ElementEnd(Element::ListItem);
        enc.push(Entry::BigChunk(meta.clone(), end)).unwrap();
        enc.push(Entry::BigEnd(meta)).unwrap();
        enc.push(Entry::SnapshotEnd { offset: 10 }).unwrap();
        let (out, _) = enc.take();
        let (mut in_multi, mut bytes, mut most, mut execs, mut parts) = (false, 0, 0, 0, 0);
        let mut moved = 0;
        for c in commands(&out) {
            match c[0].as_slice() {
                b"MULTI" => (in_multi, bytes) = (true, 0),
                b"EXEC" => {
                    (in_multi, most, execs) = (false, most.max(bytes), execs + 1);
                }
                b"SET" | b"APPEND" if c[1].starts_with(b"__ferry:elem:") => {
                    assert!(in_multi);
                    parts += 1;
                    bytes += c[2].len();
                }
                b"EVAL" if in_multi => {
                    assert_eq!(c[5..7], [b"RPUSH".to_vec(), Vec::new()][..]);
                    moved += 1;
                }
                _ => {}
            }
        }
        assert_eq!((parts, moved), (40, 1));
        assert!(execs >= 3, "{execs} transactions");
        assert!(
            most <= (4 << 20) + (256 << 10),
            "{most} bytes in one transaction"
        );
    }

    #[test]
    fn stream_idmp_state_goes_to_a_86_target_as_xcfgset_then_xidmprecord() {
        let caps = Caps {
            version: (8, 6, 0),
            rdb_version: 13,
            databases: None,
        };
        let mut enc = Encoder::for_target(caps, false);
        idmp_stream(&mut enc, &stream_meta(b"st", None), 1);
        let (out, expects) = enc.take();
        let cmds = commands(&out);
        let names: Vec<&[u8]> = cmds.iter().map(|c| &c[0][..]).collect();
        assert_eq!(
            names,
            vec![&b"DEL"[..], b"XADD", b"XSETID", b"XCFGSET", b"XIDMPRECORD"]
        );
        let want = |args: &[&[u8]]| args.iter().map(|a| a.to_vec()).collect::<Vec<_>>();
        assert_eq!(
            cmds[3],
            want(&[
                b"XCFGSET",
                b"st",
                b"IDMP-DURATION",
                b"7200",
                b"IDMP-MAXSIZE",
                b"1000"
            ])
        );
        assert_eq!(
            cmds[4],
            want(&[b"XIDMPRECORD", b"st", b"p1", b"i1", b"5-1"])
        );
        assert!(!expects.iter().any(|e| matches!(e, Expect::Dropped(_))));
    }

    #[test]
    fn stream_idmp_state_is_reported_dropped_on_an_older_target() {
        let caps = Caps {
            version: (8, 4, 0),
            rdb_version: 12,
            databases: None,
        };
        let mut enc = Encoder::for_target(caps, false);
        idmp_stream(&mut enc, &stream_meta(b"st", None), 1);
        let (out, expects) = enc.take();
        let text = String::from_utf8_lossy(&out);
        assert!(
            !text.contains("XCFGSET") && !text.contains("XIDMPRECORD"),
            "{text}"
        );
        let dropped: Vec<&String> = expects
            .iter()
            .filter_map(|e| match e {
                Expect::Dropped(d) => Some(d),
                _ => None,
            })
            .collect();
        assert_eq!(dropped.len(), 1, "{dropped:?}");
        assert!(
            dropped[0].contains("stream \"st\" in db 0") && dropped[0].contains("older than 8.6"),
            "{}",
            dropped[0]
        );

        // Default settings and no producers: nothing lost, nothing reported.
        let mut enc = Encoder::for_target(caps, false);
        let meta = stream_meta(b"st", None);
        enc.push(Entry::BigStart(meta.clone())).unwrap();
        enc.push(Entry::BigChunk(
            meta.clone(),
            Chunk::StreamIdmp(ferry_rdb::StreamIdmp {
                duration_s: 100,
                max_size: 100,
                producers: 0,
            }),
        ))
        .unwrap();
        let (_, expects) = enc.take();
        assert!(!expects.iter().any(|e| matches!(e, Expect::Dropped(_))));
    }

    #[test]
    fn key_metadata_rides_restore_and_is_reported_when_rewritten() {
        let km = Bytes::from_static(b"\xF3\x01KMT0\x02\x2a\x00");
        let meta = KeyMeta {
            type_byte: ferry_rdb::TypeByte::STRING,
            ..(*stream_meta(b"s", Some(km.clone()))).clone()
        };
        let raw = b"\x01v";
        let mut out = BytesMut::new();
        restore(&mut out, &meta, raw, 13);
        let cmds = commands(&out);
        assert_eq!(
            cmds[0][3],
            ferry_rdb::dump::payload_with_meta(&km, meta.type_byte, raw, 13).to_vec()
        );
        assert!(cmds[0][3].starts_with(&km));

        // A string with metadata is not gathered into MSET, which would lose it.
        let mut enc = Encoder::new();
        enc.push(Entry::SnapshotStart { rdb_version: 13 }).unwrap();
        enc.push(Entry::Key(ferry_rdb::Record {
            meta: meta.clone(),
            raw: Bytes::from_static(raw),
        }))
        .unwrap();
        enc.finish();
        let (out, _) = enc.take();
        assert_eq!(&commands(&out)[0][0][..], b"RESTORE");

        // An older target gets the value rewritten, and the metadata reported lost.
        let caps = Caps {
            version: (8, 4, 0),
            rdb_version: 12,
            databases: None,
        };
        let mut enc = Encoder::for_target(caps, false);
        enc.push(Entry::SnapshotStart { rdb_version: 13 }).unwrap();
        enc.push(Entry::Key(ferry_rdb::Record {
            meta,
            raw: Bytes::from_static(raw),
        }))
        .unwrap();
        let (out, expects) = enc.take();
        assert_eq!(&commands(&out)[0][0][..], b"SET");
        assert!(expects.iter().any(
            |e| matches!(e, Expect::Dropped(d) if d.contains("module key metadata of key \"s\""))
        ));
    }
}
