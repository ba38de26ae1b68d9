//! What flows from a source to a target: whole keys and big-key chunks from the snapshot, then
//! commands from the replication stream, each carrying the offset it ends at.

use std::sync::Arc;

use bytes::Bytes;
use ferry_rdb::{Chunk, KeyMeta, Record};

/// Prefix of the keys ferry writes for itself; never copied, so cascades stay clean.
pub const OWN_KEY_PREFIX: &[u8] = b"__ferry:";

/// One write command from the replication stream.
#[derive(Clone, Debug)]
pub struct Command {
    /// The db the source had selected for it: what the checkpoint records, so a resume
    /// selects it again on the source.
    pub db: u32,
    /// The db to write it into on the target when a transform moved it elsewhere; `None`:
    /// the source's `db`.
    pub target_db: Option<u32>,
    /// Arguments, the name first, as sent.
    pub args: Vec<Bytes>,
    /// The exact RESP bytes received; written to the target as they are.
    pub raw: Bytes,
    /// Replication offset just after this command.
    pub end_offset: u64,
    /// On a cluster target, the slot of its keys (the router sends only single-slot commands
    /// on); None for a standalone target and for commands about the whole server.
    pub slot: Option<u16>,
}

impl Command {
    /// The db the target applies it in.
    pub fn db_on_target(&self) -> u32 {
        self.target_db.unwrap_or(self.db)
    }
}

#[derive(Clone, Debug)]
pub enum Entry {
    /// Replication from `replid` starts: with a snapshot (`snapshot`), else continuing at
    /// `offset`. `clear_target` asks to empty the target first (a full resync over a target
    /// that holds an older copy, when configured to).
    SyncStart {
        replid: Bytes,
        offset: u64,
        snapshot: bool,
        clear_target: bool,
    },
    /// The snapshot starts; its values are in this RDB version's encodings.
    SnapshotStart {
        rdb_version: u16,
    },
    /// A whole key from the snapshot, written with RESTORE.
    Key(Record),
    /// A key too big for one command: delete what the target has, then the chunks, then the end.
    BigStart(Arc<KeyMeta>),
    BigChunk(Arc<KeyMeta>, Chunk),
    BigEnd(Arc<KeyMeta>),
    /// A function library's code.
    Function(Bytes),
    /// The snapshot has been read whole; the command stream continues from this offset.
    SnapshotEnd {
        offset: u64,
    },
    /// A write from the replication stream.
    Command(Command),
    /// Snapshot data with no command to write it (a module's aux data): reported as dropped.
    Unwritable(String),
    /// Source bytes with no write in them (PING, SELECT, REPLCONF): applied once all before is.
    /// `db` is the db the source has selected after them.
    Offset {
        offset: u64,
        db: u32,
    },
    /// Write out what is gathered and signal once everything before is confirmed.
    Barrier(Barrier),
}

/// Signals once a writer has had every entry before it confirmed by the target: a cluster
/// router waits on it before work that reads the target's state.
#[derive(Clone, Debug)]
pub struct Barrier(pub Arc<tokio::sync::Semaphore>);

impl Barrier {
    pub fn release(&self) {
        self.0.add_permits(1);
    }
}

/// Entries travel in batches so the channel costs little per key.
pub type Batch = Vec<Entry>;

/// Rough bytes an entry holds, to bound batches by size as well as count.
pub fn weight(entry: &Entry) -> usize {
    match entry {
        Entry::Key(r) => r.raw.len() + r.meta.key.len() + 64,
        Entry::BigChunk(_, c) => chunk_weight(c),
        Entry::Function(code) => code.len(),
        Entry::Command(c) => c.raw.len() + 32 * c.args.len(),
        _ => 64,
    }
}

fn chunk_weight(c: &Chunk) -> usize {
    match c {
        Chunk::StringPart(b) | Chunk::ElementPart(b) => b.len(),
        Chunk::ListItems(v) | Chunk::SetMembers(v) => v.iter().map(|b| b.len() + 16).sum(),
        Chunk::ZSetEntries(v) => v.iter().map(|(m, _)| m.len() + 24).sum(),
        Chunk::HashFields(v) => v.iter().map(|f| f.field.len() + f.value.len() + 32).sum(),
        Chunk::StreamEntries(v) => v
            .iter()
            .map(|e| {
                e.fields
                    .iter()
                    .map(|(f, v)| f.len() + v.len() + 32)
                    .sum::<usize>()
                    + 32
            })
            .sum(),
        _ => 256,
    }
}
