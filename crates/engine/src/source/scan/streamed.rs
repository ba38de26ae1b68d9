//! A big value read with one `DUMP` whose reply is never held whole: its bytes go from the
//! socket through the snapshot parser (on a blocking thread) as they arrive, framed as a
//! one-key RDB file, so a 256 MiB value — even one 256 MiB list element — is written in
//! bounded pieces exactly as psync mode writes a snapshot's big keys. `DUMP` costs the source
//! far less than reading the value type by type, and carries everything the value holds
//! (stream groups and pending entries, hash field TTLs) in the source's own encoding.

use bytes::{Buf, Bytes, BytesMut};
use tokio::sync::mpsc;

use crate::error::{Error, Result};
use crate::net::conn::Conn;
use crate::pipeline::entry::{Batch, Entry};
use crate::source::snapshot::{self, ChunkReader};

/// Bytes handed to the parser at a time.
const PIECE: usize = 64 * 1024;

/// How a streamed `DUMP` ended.
pub(super) enum Streamed {
    /// The value was written (as `BigStart`, chunks, `BigEnd`), `bytes` long.
    Written { bytes: u64 },
    /// The key was gone by the time it was asked for.
    Gone,
    /// The payload starts with what a one-key file cannot frame (a module's key metadata):
    /// to be read another way.
    NotFramed,
    /// The writers have gone.
    Stopped,
}

/// Sends `DUMP key` and streams its payload through the parser into `out` (entries of db
/// `db`, expiring at `expire_ms`), values in RDB `version`'s encodings.
pub(super) async fn dump(
    conn: &mut Conn,
    db: u32,
    key: &Bytes,
    expire_ms: Option<i64>,
    version: u16,
    rdb: &ferry_rdb::Options,
    out: &mut super::Out,
) -> Result<Streamed> {
    let mut command = BytesMut::new();
    ferry_resp::encode_command(&mut command, &[&b"DUMP"[..], key]);
    conn.write_all(&command).await?;
    let header = conn.read_line("the reply to DUMP").await?;
    let len = match header.first() {
        Some(b'$') if header.as_ref() == b"$-1" => return Ok(Streamed::Gone),
        Some(b'$') => std::str::from_utf8(&header[1..])
            .ok()
            .and_then(|n| n.parse::<u64>().ok())
            .filter(|&n| n >= 11),
        Some(b'-') => return Err(conn.server_error(&header[1..])),
        _ => None,
    };
    let Some(len) = len else {
        return Err(conn.server_error(b"answered DUMP with a reply of an unexpected shape"));
    };
    // [type] value... [version: 2] [crc: 8], then CRLF.
    let type_byte = take(conn, 1).await?[0];
    let mut value_left = len - 11;
    if type_byte == 0xF3 {
        // Key metadata first: the reply is still read (and dropped) to keep the link in step.
        skip(conn, value_left + 10 + 2).await?;
        return Ok(Streamed::NotFramed);
    }
    let prefix = frame_prefix(db, key, expire_ms, version, type_byte);
    let mut options = rdb.clone();
    // Every value as chunks (the caller chose to stream it because it is big), and the file's
    // checksum is ferry's own framing: the payload's CRC is the source's business.
    options.big_value_bytes = 0;
    options.big_value_elements = 0;
    options.verify_checksum = false;
    let (chunk_tx, chunk_rx) = mpsc::channel::<Bytes>(4);
    let (batch_tx, mut batch_rx) = mpsc::channel::<Batch>(2);
    let parser = tokio::task::spawn_blocking(move || {
        snapshot::parse_into(ChunkReader::new(chunk_rx), options, &batch_tx)
    });
    let mut feeding = Some(chunk_tx);
    let mut pending = Some(prefix);
    let mut written = true;
    // The reply's last bytes (version, CRC, CRLF) have been read past.
    let mut ended = false;
    loop {
        tokio::select! {
            batch = batch_rx.recv() => {
                let Some(batch) = batch else { break };
                for entry in batch {
                    // The parser announces its file's version; the caller has already.
                    if matches!(entry, Entry::SnapshotStart { .. }) {
                        continue;
                    }
                    if written && !out.push(entry).await {
                        written = false;
                    }
                }
            }
            permit = reserve(feeding.clone()), if feeding.is_some() => {
                let Ok(permit) = permit else {
                    // The parser stopped early: its error is reported below.
                    feeding = None;
                    continue;
                };
                let piece = match pending.take() {
                    Some(p) => p,
                    None if value_left > 0 => {
                        let n = value_left.min(PIECE as u64) as usize;
                        value_left -= n as u64;
                        take(conn, n).await?
                    }
                    None => {
                        // The payload's version and CRC, and the reply's CRLF, are not the
                        // file's; the file ends with its EOF opcode and an unchecked checksum.
                        skip(conn, 10 + 2).await?;
                        ended = true;
                        feeding = None;
                        Bytes::from_static(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 0])
                    }
                };
                drop(permit.send(piece));
            }
        }
    }
    let parsed = parser.await.map_err(|join| Error::Internal {
        what: "the parser of a DUMP payload",
        why: join.to_string(),
    })?;
    if !ended {
        // The parser ended before the payload did: read the rest so the link stays in step.
        skip(conn, value_left + 12).await?;
    }
    match parsed {
        Ok(_) if !written => Ok(Streamed::Stopped),
        Ok(_) => Ok(Streamed::Written { bytes: len }),
        Err(source) => Err(Error::Snapshot {
            addr: format!(
                "{} (DUMP of key {} in db {db})",
                conn.addr,
                crate::text::escape(key)
            ),
            source,
        }),
    }
}

/// Room for one more piece on the parser's channel (never ready without a channel).
async fn reserve(
    tx: Option<mpsc::Sender<Bytes>>,
) -> std::result::Result<mpsc::OwnedPermit<Bytes>, mpsc::error::SendError<()>> {
    match tx {
        Some(tx) => tx.reserve_owned().await,
        None => std::future::pending().await,
    }
}

/// The start of a one-key RDB file: header, db, expiry, type byte and key name.
fn frame_prefix(db: u32, key: &[u8], expire_ms: Option<i64>, version: u16, type_byte: u8) -> Bytes {
    let mut out = Vec::with_capacity(32 + key.len());
    match version {
        v if v >= 80 => out.extend_from_slice(format!("VALKEY{v:03}").as_bytes()),
        v => out.extend_from_slice(format!("REDIS{v:04}").as_bytes()),
    }
    out.push(0xFE);
    length(&mut out, db as u64);
    if let Some(at) = expire_ms {
        out.push(0xFC);
        out.extend_from_slice(&at.to_le_bytes());
    }
    out.push(type_byte);
    length(&mut out, key.len() as u64);
    out.extend_from_slice(key);
    Bytes::from(out)
}

/// RDB's length encoding.
fn length(out: &mut Vec<u8>, n: u64) {
    match n {
        0..64 => out.push(n as u8),
        64..16384 => out.extend_from_slice(&[0x40 | (n >> 8) as u8, n as u8]),
        16384..=0xFFFF_FFFF => {
            out.push(0x80);
            out.extend_from_slice(&(n as u32).to_be_bytes());
        }
        _ => {
            out.push(0x81);
            out.extend_from_slice(&n.to_be_bytes());
        }
    }
}

/// The next `n` bytes of the connection.
async fn take(conn: &mut Conn, n: usize) -> Result<Bytes> {
    while conn.buf.len() < n {
        conn.fill(" in the middle of a DUMP reply").await?;
    }
    Ok(conn.buf.split_to(n).freeze())
}

/// Reads past `n` bytes of the connection.
async fn skip(conn: &mut Conn, mut n: u64) -> Result<()> {
    loop {
        let here = (conn.buf.len() as u64).min(n);
        conn.buf.advance(here as usize);
        n -= here;
        if n == 0 {
            return Ok(());
        }
        conn.fill(" in the middle of a DUMP reply").await?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_as_rdb_writes_them() {
        let enc = |n| {
            let mut v = Vec::new();
            length(&mut v, n);
            v
        };
        assert_eq!(enc(5), vec![5]);
        assert_eq!(enc(300), vec![0x41, 0x2C]);
        assert_eq!(enc(70_000), vec![0x80, 0, 1, 0x11, 0x70]);
        assert_eq!(enc(1 << 33)[0], 0x81);
    }

    #[test]
    fn a_framed_key_reads_back() {
        // A DUMP payload of the string "hello" (type 0, RDB 10), framed, then EOF.
        let mut file = frame_prefix(3, b"k", Some(1_900_000_000_000), 10, 0).to_vec();
        file.extend_from_slice(&[5, b'h', b'e', b'l', b'l', b'o']);
        file.extend_from_slice(&[0xFF, 0, 0, 0, 0, 0, 0, 0, 0]);
        let options = ferry_rdb::Options {
            verify_checksum: false,
            ..Default::default()
        };
        let mut parser = ferry_rdb::Parser::new(&file[..], options).unwrap();
        let mut found = None;
        while let Some(event) = parser.next_event().unwrap() {
            if let ferry_rdb::Event::Key(record) = event {
                found = Some(record);
            }
        }
        let record = found.unwrap();
        assert_eq!(record.meta.db, 3);
        assert_eq!(record.meta.key.as_ref(), b"k");
        assert_eq!(record.meta.expire_ms, Some(1_900_000_000_000));
        assert_eq!(record.raw.as_ref(), &[5, b'h', b'e', b'l', b'l', b'o']);
    }
}
