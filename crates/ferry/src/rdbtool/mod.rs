//! `ferry rdb inspect` and `ferry rdb stats`: read an RDB file offline, without a server.
//!
//! - [`inspect`]: one JSON object per key, one per line (JSON Lines), values included.
//! - [`stats`]: counts and sizes per db, type and encoding, and the biggest keys.
//! - `json`: the hand-written JSON output and the lossless byte-string rule.
//!
//! Both read the file with [`ferry_rdb::Parser`] in chunk mode: a value over the
//! big-value thresholds arrives in chunks and is written (or counted) as they arrive, so
//! memory stays bounded whatever the size of a key.
//!
//! Byte strings (keys, values, members, fields, stream ids' fields) are printed by one
//! lossless rule: valid UTF-8 becomes a JSON string, anything else `{"base64":"..."}`
//! (standard alphabet, padded).
//!
//! Errors: a file that cannot be opened, is not an RDB file, or is truncated or corrupt
//! gives one [`Error`] naming the file and, for parse errors, the byte offset. Output that
//! cannot be written because the reader went away (`| head`) is not an error.

pub mod inspect;
mod json;
pub mod stats;

use std::fmt;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use ferry_rdb::{Kind, Options, Parser, TypeByte};

/// Which keys to look at.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only these dbs (all when empty).
    pub dbs: Vec<u64>,
    /// Only keys starting with one of these (all when empty).
    pub key_prefixes: Vec<Vec<u8>>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.dbs.is_empty() && self.key_prefixes.is_empty()
    }

    pub fn matches(&self, db: u64, key: &[u8]) -> bool {
        (self.dbs.is_empty() || self.dbs.contains(&db))
            && (self.key_prefixes.is_empty()
                || self.key_prefixes.iter().any(|p| key.starts_with(p)))
    }
}

/// Parser thresholds; `None` keeps this tool's defaults (1 MiB or 10,000 elements make a
/// value big; chunks of at most 1000 elements or about 256 KiB).
#[derive(Clone, Debug, Default)]
pub struct Limits {
    pub big_value_bytes: Option<usize>,
    pub big_value_elements: Option<u64>,
    pub chunk_bytes: Option<usize>,
}

impl Limits {
    fn options(&self) -> Options {
        Options {
            big_value_bytes: self.big_value_bytes.unwrap_or(1024 * 1024),
            big_value_elements: self.big_value_elements.unwrap_or(10_000),
            chunk_elements: 1000,
            chunk_bytes: self.chunk_bytes.unwrap_or(256 * 1024).max(1),
            // The JSON of an element says whether it is text or base64 before its first byte:
            // elements are read whole here.
            huge_element_bytes: usize::MAX,
            verify_checksum: true,
            validate_values: true,
        }
    }
}

/// What went wrong; `Display` is the line the CLI prints after `ferry: `.
#[derive(Debug)]
pub enum Error {
    /// The input: cannot open, not RDB, truncated, corrupt. `what` ends with the byte
    /// offset when there is one.
    Input { file: PathBuf, what: String },
    /// Writing the output failed (other than a closed pipe).
    Output(io::Error),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Input { file, what } => write!(f, "{}: {what}", file.display()),
            Error::Output(e) => write!(f, "cannot write the output: {e}"),
        }
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Self {
        Error::Output(e)
    }
}

impl Error {
    /// True when the output's reader went away (`ferry rdb inspect f | head`): the tool
    /// stops quietly and successfully.
    pub fn is_closed_output(&self) -> bool {
        matches!(self, Error::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
    }

    fn input(file: &Path, what: String) -> Self {
        Error::Input {
            file: file.to_path_buf(),
            what,
        }
    }

    /// A parser error, with its offset (the checksum message lacks one).
    fn parse(file: &Path, e: &ferry_rdb::Error) -> Self {
        let what = match e.kind() {
            ferry_rdb::ErrorKind::ChecksumMismatch { .. } => {
                format!("{e} at byte {}", e.offset())
            }
            _ => e.to_string(),
        };
        Self::input(file, what)
    }

    /// An error from [`ferry_rdb::decode_value`], whose offset counts from the value's
    /// first byte: moved to the file's offset `value_start`, with the key named.
    fn decode(file: &Path, e: &ferry_rdb::Error, key: &[u8], value_start: u64) -> Self {
        let msg = e.to_string();
        let suffix = format!(" at byte {}", e.offset());
        let head = msg.strip_suffix(&suffix).unwrap_or(&msg);
        let what = format!(
            "{head} in key {} at byte {}",
            ferry_engine::text::escape(key),
            value_start + e.offset()
        );
        Self::input(file, what)
    }
}

/// Runs `f` with a buffered stdout, flushes it, and treats a closed pipe as success.
pub fn to_stdout(
    f: impl FnOnce(&mut BufWriter<io::StdoutLock<'static>>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut out = BufWriter::with_capacity(256 * 1024, io::stdout().lock());
    let r = f(&mut out).and_then(|()| out.flush().map_err(Error::Output));
    match r {
        Err(e) if e.is_closed_output() => Ok(()),
        Err(e) => {
            // What was printed before the error still goes out, ahead of the message.
            let _ = out.flush();
            Err(e)
        }
        Ok(()) => Ok(()),
    }
}

/// Opens `file` and reads its header.
fn open(file: &Path, limits: &Limits) -> Result<Parser<File>, Error> {
    let f = File::open(file).map_err(|e| Error::input(file, format!("cannot open: {e}")))?;
    Parser::new(f, limits.options()).map_err(|e| Error::parse(file, &e))
}

/// The lower-case type name users know from `TYPE`.
fn type_name(t: TypeByte) -> &'static str {
    t.kind().map_or("unknown", Kind::name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = Filter {
            dbs: vec![0, 2],
            key_prefixes: vec![b"user:".to_vec()],
        };
        assert!(f.matches(2, b"user:1"));
        assert!(!f.matches(1, b"user:1"));
        assert!(!f.matches(0, b"order:1"));
        assert!(Filter::default().matches(9, b""));
    }

    #[test]
    fn printable_keys() {
        assert_eq!(ferry_engine::text::escape(b"a\"\x00"), "\"a\\\"\\x00\"");
        assert!(ferry_engine::text::escape(&[b'k'; 300]).ends_with("...\""));
    }
}
