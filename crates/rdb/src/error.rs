//! The crate's error: what went wrong, at which byte, and (when known) in which key.

use std::fmt;

/// What went wrong. Small and `Copy`, with static context only.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input ended in the middle of something (named).
    Truncated(&'static str),
    /// The reader failed with something other than an end of input.
    Io(std::io::ErrorKind),
    /// The first bytes are not `REDIS` + 4 digits (or `VALKEY` + 3 digits).
    BadMagic,
    /// A version this parser does not know.
    UnsupportedVersion(u16),
    /// A value type byte (or opcode) nobody defined.
    UnknownType(u8),
    /// An opcode inside a module value that is not one of EOF/SINT/UINT/FLOAT/DOUBLE/STRING.
    UnknownModuleOpcode(u64),
    /// The trailing CRC64 does not match the bytes.
    ChecksumMismatch { file: u64, computed: u64 },
    /// A structure is malformed (static description).
    Corrupt(&'static str),
    /// A collection with no elements, which Redis never writes (named by kind).
    EmptyValue(&'static str),
    /// Valid but not something this crate can handle (static description).
    Unsupported(&'static str),
    /// A length above a documented hard cap.
    TooLarge(&'static str),
    /// A DUMP payload that is malformed (static description).
    BadPayload(&'static str),
}

/// What went wrong, without where: "listpack entry runs past its end".
impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ErrorKind::Truncated(what) => write!(f, "input ends inside {what}"),
            ErrorKind::Io(kind) => write!(f, "read error ({kind})"),
            ErrorKind::BadMagic => f.write_str("not an RDB file (bad magic)"),
            ErrorKind::UnsupportedVersion(v) => write!(f, "unsupported RDB version {v}"),
            ErrorKind::UnknownType(t) => write!(f, "unknown value type {t:#04x}"),
            ErrorKind::UnknownModuleOpcode(op) => write!(f, "unknown module opcode {op}"),
            ErrorKind::ChecksumMismatch { file, computed } => write!(
                f,
                "checksum mismatch: says {file:#018x}, computed {computed:#018x}"
            ),
            ErrorKind::Corrupt(what) => f.write_str(what),
            ErrorKind::EmptyValue(what) => write!(f, "empty {what} (Redis never writes one)"),
            ErrorKind::Unsupported(what) => write!(f, "unsupported: {what}"),
            ErrorKind::TooLarge(what) => write!(f, "{what} exceeds the hard size cap"),
            ErrorKind::BadPayload(what) => write!(f, "bad DUMP payload: {what}"),
        }
    }
}

/// An error with the byte offset it was found at and, when known, the key being read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    kind: ErrorKind,
    offset: u64,
    key: Option<Box<[u8]>>,
    db: Option<u64>,
}

impl Error {
    pub(crate) fn new(kind: ErrorKind, offset: u64) -> Self {
        Self {
            kind,
            offset,
            key: None,
            db: None,
        }
    }

    /// The db of the key being read, when the error names a key of a snapshot.
    pub fn db(&self) -> Option<u64> {
        self.db
    }

    /// Names the db of the key (a snapshot's; a DUMP payload has none).
    pub(crate) fn in_db(mut self, db: u64) -> Self {
        if self.key.is_some() && self.db.is_none() {
            self.db = Some(db);
        }
        self
    }

    /// What went wrong.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// Byte offset in the input where it was found.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The key being read, if the error happened inside a key's value.
    pub fn key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// True if the input simply ended too early.
    pub fn is_truncated(&self) -> bool {
        matches!(self.kind, ErrorKind::Truncated(_))
    }

    /// Names the key and (for a truncation) the thing being read, unless already named.
    pub(crate) fn within(mut self, what: &'static str, key: &[u8]) -> Self {
        if self.key.is_none() {
            self.key = Some(key.into());
            if let ErrorKind::Truncated(_) = self.kind {
                self.kind = ErrorKind::Truncated(what);
            }
        }
        self
    }
}

impl std::error::Error for Error {}

fn write_key(f: &mut fmt::Formatter<'_>, key: &[u8]) -> fmt::Result {
    f.write_str("\"")?;
    for &b in key.iter().take(64) {
        match b {
            b'"' => f.write_str("\\\"")?,
            b'\\' => f.write_str("\\\\")?,
            0x20..=0x7e => write!(f, "{}", b as char)?,
            _ => write!(f, "\\x{b:02x}")?,
        }
    }
    if key.len() > 64 {
        f.write_str("...")?;
    }
    f.write_str("\"")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            ErrorKind::Truncated(what) => {
                write!(f, "snapshot truncated inside {what}")?;
                if let Some(key) = &self.key {
                    f.write_str(" ")?;
                    write_key(f, key)?;
                    if let Some(db) = self.db {
                        write!(f, " in db {db}")?;
                    }
                }
                return write!(f, " at byte {}", self.offset);
            }
            ErrorKind::ChecksumMismatch { file, computed } => {
                return write!(
                    f,
                    "checksum mismatch: file says {file:#018x}, computed {computed:#018x}"
                );
            }
            ErrorKind::Io(kind) => write!(f, "read error ({kind})")?,
            ErrorKind::BadMagic => f.write_str("not an RDB file (bad magic)")?,
            ErrorKind::UnsupportedVersion(v) => write!(f, "unsupported RDB version {v}")?,
            ErrorKind::UnknownType(t) => write!(f, "unknown value type {t:#04x}")?,
            ErrorKind::UnknownModuleOpcode(op) => write!(f, "unknown module opcode {op}")?,
            ErrorKind::Corrupt(what) => write!(f, "corrupt snapshot: {what}")?,
            ErrorKind::EmptyValue(what) => write!(f, "empty {what} (Redis never writes one)")?,
            ErrorKind::Unsupported(what) => write!(f, "unsupported: {what}")?,
            ErrorKind::TooLarge(what) => write!(f, "{what} exceeds the hard size cap")?,
            ErrorKind::BadPayload(what) => write!(f, "bad DUMP payload: {what}")?,
        }
        if let Some(key) = &self.key {
            f.write_str(" in key ")?;
            write_key(f, key)?;
            if let Some(db) = self.db {
                write!(f, " in db {db}")?;
            }
        }
        write!(f, " at byte {}", self.offset)
    }
}

impl Error {
    /// Names what was being read when the input ended (outside any key).
    pub(crate) fn reading(mut self, what: &'static str) -> Self {
        if let ErrorKind::Truncated(_) = self.kind
            && self.key.is_none()
        {
            self.kind = ErrorKind::Truncated(what);
        }
        self
    }
}
