//! Wire newtypes: value type bytes and opcodes, kept as bytes so unknown ones survive.

use std::fmt;

/// RDB value type byte, a newtype so unknown values survive and print in hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct TypeByte(pub u8);

/// What a value is, whatever its encoding.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    String,
    List,
    Set,
    ZSet,
    Hash,
    Stream,
    Module,
}

impl Kind {
    /// The name `TYPE` gives it ("string", "list", "set", "zset", "hash", "stream"; "module").
    pub fn name(self) -> &'static str {
        match self {
            Kind::String => "string",
            Kind::List => "list",
            Kind::Set => "set",
            Kind::ZSet => "zset",
            Kind::Hash => "hash",
            Kind::Stream => "stream",
            Kind::Module => "module",
        }
    }
}

impl TypeByte {
    pub const STRING: Self = Self(0);
    pub const LIST: Self = Self(1);
    pub const SET: Self = Self(2);
    pub const ZSET: Self = Self(3);
    pub const HASH: Self = Self(4);
    pub const ZSET_2: Self = Self(5);
    pub const MODULE: Self = Self(6);
    pub const MODULE_2: Self = Self(7);
    pub const HASH_ZIPMAP: Self = Self(9);
    pub const LIST_ZIPLIST: Self = Self(10);
    pub const SET_INTSET: Self = Self(11);
    pub const ZSET_ZIPLIST: Self = Self(12);
    pub const HASH_ZIPLIST: Self = Self(13);
    pub const LIST_QUICKLIST: Self = Self(14);
    pub const STREAM_LISTPACKS: Self = Self(15);
    pub const HASH_LISTPACK: Self = Self(16);
    pub const ZSET_LISTPACK: Self = Self(17);
    pub const LIST_QUICKLIST_2: Self = Self(18);
    pub const STREAM_LISTPACKS_2: Self = Self(19);
    pub const SET_LISTPACK: Self = Self(20);
    pub const STREAM_LISTPACKS_3: Self = Self(21);
    /// Redis 7.4 release candidates: hash with field TTLs, absolute TTLs, no min-expire prefix.
    /// In a Valkey file (RDB version 80 and up) the same number is Valkey's "hash2", see
    /// [`TypeByte::is_valkey_hash2`].
    pub const HASH_METADATA_PRE_GA: Self = Self(22);
    /// Redis 7.4 release candidates: listpack hash with field TTLs, no min-expire prefix.
    pub const HASH_LISTPACK_EX_PRE_GA: Self = Self(23);
    pub const HASH_METADATA: Self = Self(24);
    pub const HASH_LISTPACK_EX: Self = Self(25);
    /// Redis 8.6 (RDB 13): a type-21 stream followed by its IDMP (idempotent producer)
    /// state: config, producers with their iid -> entry id maps, and two counters.
    pub const STREAM_LISTPACKS_4: Self = Self(26);

    /// The kind of value, or `None` for a byte that is not a value type.
    pub fn kind(self) -> Option<Kind> {
        Some(match self.0 {
            0 => Kind::String,
            1 | 10 | 14 | 18 => Kind::List,
            2 | 11 | 20 => Kind::Set,
            3 | 5 | 12 | 17 => Kind::ZSet,
            4 | 9 | 13 | 16 | 22..=25 => Kind::Hash,
            15 | 19 | 21 | 26 => Kind::Stream,
            6 | 7 => Kind::Module,
            _ => return None,
        })
    }

    /// The encoding's usual name ("quicklist", "listpack", "intset", ...).
    pub fn encoding_name(self) -> &'static str {
        match self.0 {
            0 => "string",
            1 => "linkedlist",
            2 | 4 => "hashtable",
            3 | 5 => "skiplist",
            6 | 7 => "module",
            9 => "zipmap",
            10 | 12 | 13 => "ziplist",
            11 => "intset",
            14 => "quicklist",
            18 => "quicklist2",
            15 | 19 | 21 | 26 => "stream",
            16 | 17 | 20 => "listpack",
            22 | 24 => "hashtable-ex",
            23 | 25 => "listpack-ex",
            _ => "unknown",
        }
    }

    /// True when this byte in a file of this RDB version is Valkey's hash with field
    /// expiry (type 22 in Valkey's RDB 80 and up) rather than Redis's pre-GA form.
    pub fn is_valkey_hash2(self, rdb_version: u16) -> bool {
        self.0 == 22 && rdb_version >= 80
    }

    /// Lower-case kind name used in messages ("hash", "list", ...).
    pub(crate) fn what(self) -> &'static str {
        match self.kind() {
            Some(Kind::Module) => "module value",
            Some(kind) => kind.name(),
            None => "value",
        }
    }
}

impl fmt::Display for TypeByte {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#04x} ({})", self.0, self.encoding_name())
    }
}

/// Opcodes that may appear where a value type byte is expected.
pub(crate) mod opcode {
    /// Valkey RDB 81 (`RDB_OPCODE_UPDATE`): a replication command written inline by a
    /// forkless save.
    pub const INLINE_COMMAND: u8 = 0xF2;
    /// Redis 8.6 (RDB 13): module key metadata for the key that follows. In a Valkey file
    /// (RDB 80+) the same number is [`SLOT_IMPORT`].
    pub const KEY_META: u8 = 0xF3;
    /// Valkey 9 (RDB 80+, `RDB_OPCODE_SLOT_IMPORT`): a slot import in progress.
    pub const SLOT_IMPORT: u8 = 0xF3;
    pub const SLOT_INFO: u8 = 0xF4;
    pub const FUNCTION2: u8 = 0xF5;
    pub const FUNCTION_PRE_GA: u8 = 0xF6;
    pub const MODULE_AUX: u8 = 0xF7;
    pub const IDLE: u8 = 0xF8;
    pub const FREQ: u8 = 0xF9;
    pub const AUX: u8 = 0xFA;
    pub const RESIZEDB: u8 = 0xFB;
    pub const EXPIRETIME_MS: u8 = 0xFC;
    pub const EXPIRETIME: u8 = 0xFD;
    pub const SELECTDB: u8 = 0xFE;
    pub const EOF: u8 = 0xFF;
}

/// Opcodes inside a MODULE_2 value or a MODULE_AUX section.
pub(crate) mod module_opcode {
    pub const EOF: u64 = 0;
    pub const SINT: u64 = 1;
    pub const UINT: u64 = 2;
    pub const FLOAT: u64 = 3;
    pub const DOUBLE: u64 = 4;
    pub const STRING: u64 = 5;
}
