//! Decoded pieces of a value: what a big value is emitted as, and what
//! [`decode_value`](crate::decode_value) returns.

use std::fmt;

use bytes::Bytes;

/// A piece of a value, in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Chunk {
    /// In order; concatenated they are the value.
    StringPart(Bytes),
    /// In order, head to tail.
    ListItems(Vec<Bytes>),
    SetMembers(Vec<Bytes>),
    ZSetEntries(Vec<(Bytes, f64)>),
    HashFields(Vec<HashField>),
    /// Ascending ids, deleted entries skipped.
    StreamEntries(Vec<StreamEntry>),
    /// After all entries.
    StreamMeta(StreamMeta),
    /// One consumer group with its consumers; its pending entries follow.
    StreamGroup(StreamGroup),
    /// Pending entries of a group, ascending ids; may repeat for a long PEL.
    StreamPending {
        group: Bytes,
        entries: Vec<PendingEntry>,
    },
    /// Type 26 only (Redis 8.6+), after the last group: the stream's IDMP (idempotent
    /// producer) settings, as `XCFGSET` sets them. Its producers' maps follow.
    StreamIdmp(StreamIdmp),
    /// Type 26 only: iid -> entry id mappings of one IDMP producer, in file order, as
    /// `XIDMPRECORD` records them; may repeat for a producer with many. A producer whose map
    /// is empty comes as one chunk with no entries.
    StreamIdmpEntries {
        producer: Bytes,
        entries: Vec<IdmpEntry>,
    },
    /// Type 26 only, last: the stream's all-time IDMP counters (`iids-added`,
    /// `iids-duplicates` in `XINFO STREAM`). No command sets them.
    StreamIdmpCounters {
        iids_added: u64,
        iids_duplicates: u64,
    },
    /// Part of one element of a list, set, sorted set or hash too long to hold whole (longer
    /// than [`Options::huge_element_bytes`](crate::Options)), in order: concatenated, the
    /// parts before the next [`Chunk::ElementEnd`] are the element. Only big values have
    /// them; the elements before and after come in the usual chunks.
    ElementPart(Bytes),
    /// Ends the element whose parts came just before, and says which element it was. An
    /// empty hash value (after a field in parts) comes with no part at all.
    ElementEnd(Element),
}

/// Which element came in [`Chunk::ElementPart`]s, with what completes it. The RDB stores a
/// member's score and (in Valkey) a field's expiry after the element, so they are here, at
/// its end.
#[derive(Clone, Debug, PartialEq)]
pub enum Element {
    /// A list item, between the items of the chunks before and after it.
    ListItem,
    SetMember,
    ZSetMember {
        score: f64,
    },
    /// A hash field's name. Its value follows in parts too, whatever its length, ended by
    /// `HashValue { field: None, .. }`.
    HashField,
    /// A hash field's value: of `field`, or, when `None`, of the field that came in parts just
    /// before it.
    HashValue {
        field: Option<Bytes>,
        /// Absolute unix ms of the field's own expiry (Redis 7.4+ / Valkey 9+).
        expire_ms: Option<i64>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HashField {
    pub field: Bytes,
    pub value: Bytes,
    /// Absolute unix ms of the field's own expiry (Redis 7.4+ / Valkey 9+).
    pub expire_ms: Option<i64>,
}

/// A stream entry id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct StreamId {
    pub ms: u64,
    pub seq: u64,
}

impl StreamId {
    /// From the 16-byte big-endian form used as radix-tree key and in PELs.
    pub fn from_be_bytes(b: &[u8; 16]) -> Self {
        let mut ms = [0u8; 8];
        let mut seq = [0u8; 8];
        ms.copy_from_slice(&b[..8]);
        seq.copy_from_slice(&b[8..]);
        Self {
            ms: u64::from_be_bytes(ms),
            seq: u64::from_be_bytes(seq),
        }
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.ms, self.seq)
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamEntry {
    pub id: StreamId,
    pub fields: Vec<(Bytes, Bytes)>,
}

/// Stream-wide fields; `None` where the format version lacks them (type 15).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMeta {
    pub length: u64,
    pub last_id: StreamId,
    pub first_id: Option<StreamId>,
    pub max_deleted_id: Option<StreamId>,
    pub entries_added: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamGroup {
    pub name: Bytes,
    pub last_id: StreamId,
    /// `None` in type 15, or when Redis stored it as unknown.
    pub entries_read: Option<u64>,
    pub consumers: Vec<Consumer>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    pub name: Bytes,
    pub seen_time_ms: i64,
    /// Only in type 21 (Redis 7.2+).
    pub active_time_ms: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingEntry {
    pub id: StreamId,
    pub delivery_time_ms: i64,
    pub delivery_count: u64,
    pub consumer: Bytes,
}

/// A type-26 stream's IDMP settings (Redis 8.6 `XCFGSET key IDMP-DURATION d IDMP-MAXSIZE n`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamIdmp {
    /// How long an iid is remembered, in seconds (`IDMP-DURATION`).
    pub duration_s: u64,
    /// How many iids are remembered per producer (`IDMP-MAXSIZE`).
    pub max_size: u64,
    /// How many producers follow (each as one or more `StreamIdmpEntries` chunks).
    pub producers: u64,
}

impl StreamIdmp {
    /// Redis 8.6's defaults for `stream-idmp-duration` and `stream-idmp-maxsize`.
    pub const DEFAULT_DURATION_S: u64 = 100;
    pub const DEFAULT_MAX_SIZE: u64 = 100;

    /// True when these are Redis's built-in defaults (a stream nobody ran `XCFGSET` on, on a
    /// server with default config).
    pub fn is_default(&self) -> bool {
        self.duration_s == Self::DEFAULT_DURATION_S && self.max_size == Self::DEFAULT_MAX_SIZE
    }
}

/// One idempotent id of an IDMP producer and the entry it was recorded for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdmpEntry {
    pub iid: Bytes,
    pub id: StreamId,
}
