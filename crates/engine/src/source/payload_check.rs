//! The check of a huge `RESTORE` payload from the command stream while its pieces pass, so
//! that it is never held whole: the value's bytes go to the RDB parser on a blocking thread
//! (behind a one-key RDB header it is given first, and an end it is given last), which checks
//! them as deeply as a snapshot's big values; the DUMP trailer's CRC64 is computed here.
//!
//! The payload is `<type> <value> <RDB version, 2 bytes> <CRC64, 8 bytes>`: its RDB version
//! comes last, so the parser reads the value as the newest Redis RDB version (13) does. Value
//! encodings do not change meaning between versions, except type 22, which a Valkey 9 payload
//! (version 80 and up) uses for another encoding than Redis 7.4's: a huge payload of type 22,
//! a type ferry does not know and a module value are left for the target to judge.

use bytes::Bytes;
use ferry_rdb::{Crc64, Event, Options, Parser, TypeByte};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::snapshot::ChunkReader;

/// Bytes of the one-key RDB put before the value: `REDIS0013`, then the type byte and a
/// one-byte key, so a payload's byte `n` (its type byte is byte 0) is the parser's `n + 11`.
const HEADER: usize = 9 + 1 + 2;
/// The DUMP trailer: RDB version (2 bytes), CRC64 (8 bytes).
const TRAILER: u64 = 10;

/// Checks one payload of known length as its pieces pass.
pub struct PayloadCheck {
    len: u64,
    /// The newest RDB version every target reads.
    max_version: u16,
    seen: u64,
    crc: Crc64,
    trailer: Vec<u8>,
    /// Value bytes for the parser, not sent yet.
    queue: Vec<Bytes>,
    tx: Option<mpsc::Sender<Bytes>>,
    parser: Option<JoinHandle<Result<(), ferry_rdb::Error>>>,
}

impl PayloadCheck {
    pub fn new(len: u64, max_version: u16) -> PayloadCheck {
        PayloadCheck {
            len,
            max_version,
            seen: 0,
            crc: Crc64::new(),
            trailer: Vec::with_capacity(TRAILER as usize),
            queue: Vec::new(),
            tx: None,
            parser: None,
        }
    }

    /// The next piece of the payload (bytes past its length are not its own, and ignored).
    pub fn push(&mut self, piece: &Bytes) {
        let take = (self.len - self.seen).min(piece.len() as u64) as usize;
        if take == 0 {
            return;
        }
        let piece = piece.slice(..take);
        let from = self.seen;
        let to = from + take as u64;
        if from == 0 {
            self.begin(piece[0]);
        }
        // The CRC covers everything before itself.
        let crc_end = self.len.saturating_sub(8);
        if from < crc_end {
            self.crc.update(&piece[..(crc_end.min(to) - from) as usize]);
        }
        let value = 1.max(from)..(self.len.saturating_sub(TRAILER)).min(to);
        if self.tx.is_some() && value.start < value.end {
            self.queue
                .push(piece.slice((value.start - from) as usize..(value.end - from) as usize));
        }
        let trailer_at = self.len.saturating_sub(TRAILER);
        if to > trailer_at {
            let at = trailer_at.max(from);
            self.trailer
                .extend_from_slice(&piece[(at - from) as usize..]);
        }
        self.seen = to;
    }

    /// Starts the parser, unless the payload's type is one it cannot judge here.
    fn begin(&mut self, type_byte: u8) {
        let ty = TypeByte(type_byte);
        if ty.0 == 22 || matches!(ty.kind(), None | Some(ferry_rdb::Kind::Module)) {
            return;
        }
        let (tx, rx) = mpsc::channel::<Bytes>(4);
        self.queue.push(Bytes::from(
            [&b"REDIS0013"[..], &[type_byte], b"\x01k"].concat(),
        ));
        let options = Options {
            // Small windows: the value is walked, then decoded in chunks, never held whole.
            big_value_bytes: 256 * 1024,
            chunk_bytes: 256 * 1024,
            verify_checksum: false,
            validate_values: true,
            ..Options::default()
        };
        self.parser = Some(tokio::task::spawn_blocking(move || {
            let mut parser = Parser::new(ChunkReader::new(rx), options)?;
            loop {
                match parser.next_event()? {
                    Some(Event::End { .. }) | None => return Ok(()),
                    Some(_) => {}
                }
            }
        }));
        self.tx = Some(tx);
    }

    /// Hands the parser what has passed (waiting while it is busy).
    pub async fn flush(&mut self) {
        let Some(tx) = &self.tx else {
            self.queue.clear();
            return;
        };
        for bytes in self.queue.drain(..) {
            // A parser that stopped has found the damage; its verdict says which.
            if tx.send(bytes).await.is_err() {
                break;
            }
        }
    }

    /// Once the whole payload has passed: Ok when it is sound (or of a type left to the
    /// target), else what is wrong, naming the byte of the payload.
    pub async fn verdict(&mut self) -> Result<(), String> {
        if self.seen < self.len || self.trailer.len() != TRAILER as usize {
            return Err("the payload ended early".into());
        }
        let file = u64::from_le_bytes(self.trailer[2..].try_into().unwrap_or_default());
        let computed = std::mem::take(&mut self.crc).finish();
        if self.tx.is_some() {
            // The end of the one-key RDB: EOF opcode, no checksum.
            self.queue.push(Bytes::from_static(b"\xff\0\0\0\0\0\0\0\0"));
            self.flush().await;
        }
        self.tx = None;
        if let Some(parser) = self.parser.take() {
            match parser.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    return Err(format!(
                        "its payload is damaged at byte {} of the payload ({}); the source took it (its sanitize-dump-payload is not yes), a target can crash reading it: delete or rewrite that key on the source, then copy anew (a resume applies this command again)",
                        e.offset().saturating_sub(HEADER as u64 - 1),
                        e.kind()
                    ));
                }
                Err(join) => return Err(format!("its payload check stopped: {join}")),
            }
        }
        if file != computed {
            return Err(format!(
                "its payload's checksum is wrong (CRC64 {file:#018x}, computed {computed:#018x}): the bytes were damaged on the way; copy anew"
            ));
        }
        let version = u16::from_le_bytes([self.trailer[0], self.trailer[1]]);
        if version > self.max_version {
            return Err(format!(
                "its payload is in RDB version {version}, newer than a target reads ({}), and a huge payload is not rewritten as commands: upgrade the target",
                self.max_version
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn check(payload: &[u8], piece: usize) -> Result<(), String> {
        let mut c = PayloadCheck::new(payload.len() as u64, 13);
        for p in payload.chunks(piece) {
            c.push(&Bytes::copy_from_slice(p));
            c.flush().await;
        }
        c.verdict().await
    }

    #[tokio::test]
    async fn sound_payloads_pass_and_damage_is_found_at_its_byte() {
        // A list of 3 listpack nodes (quicklist 2) built by the rdb crate's own helper is
        // more than this test needs: a plain string value, big enough to be walked in chunks.
        let value = vec![b'x'; 600 * 1024];
        let mut raw = vec![0x80u8];
        raw.extend_from_slice(&(value.len() as u32).to_be_bytes());
        raw.extend_from_slice(&value);
        let payload = ferry_rdb::dump::payload(TypeByte::STRING, &raw, 11);
        for piece in [1000, 256 * 1024, payload.len()] {
            check(&payload, piece).await.unwrap();
        }
        let mut bad = payload.to_vec();
        bad[100] ^= 1;
        let e = check(&bad, 4096).await.unwrap_err();
        assert!(e.contains("checksum"), "{e}");
        // A length that runs past the value: the parser finds it, whatever the CRC says.
        let mut short = raw.clone();
        short[1..5].copy_from_slice(&((value.len() + 5) as u32).to_be_bytes());
        let payload = ferry_rdb::dump::payload(TypeByte::STRING, &short, 11);
        let e = check(&payload, 4096).await.unwrap_err();
        assert!(e.contains("damaged at byte"), "{e}");
    }
}
