//! Runs the RDB parser (synchronous, `std::io::Read`) on a blocking thread, fed by chunks of
//! snapshot bytes from the network, and sends entries to the target in batches.

use std::io::Read;
use std::sync::Arc;

use bytes::{Buf, Bytes};
use ferry_rdb::{Event, Options, Parser};
use tokio::sync::mpsc;

use crate::pipeline::entry::{Batch, Entry, OWN_KEY_PREFIX, weight};

/// Entries per batch and bytes per batch: small enough to keep memory low, big enough that the
/// channel costs nothing per key.
pub const BATCH_ENTRIES: usize = 512;
pub const BATCH_BYTES: usize = 512 * 1024;

/// A `Read` over chunks arriving on a channel; end of stream when the sender is dropped.
pub struct ChunkReader {
    rx: mpsc::Receiver<Bytes>,
    current: Bytes,
}

impl ChunkReader {
    pub fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChunkReader {
            rx,
            current: Bytes::new(),
        }
    }
}

impl Read for ChunkReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.rx.blocking_recv() {
                Some(chunk) => self.current = chunk,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        Ok(n)
    }
}

/// What the parser thread ends with.
pub enum Outcome {
    /// The snapshot was read to its end (and its checksum checked).
    Done { rdb_version: u16 },
    /// The receiving side went away (the target failed or the task stopped).
    Abandoned,
}

/// Parses a whole snapshot from `reader`, sending entries to `tx`. Blocking: run it on a
/// blocking thread.
pub fn parse_into<R: Read>(
    reader: R,
    options: Options,
    tx: &mpsc::Sender<Batch>,
) -> Result<Outcome, ferry_rdb::Error> {
    let mut parser = Parser::new(reader, options)?;
    let rdb_version = parser.rdb_version();
    let mut batch = Vec::with_capacity(BATCH_ENTRIES);
    batch.push(Entry::SnapshotStart { rdb_version });
    let mut batch_bytes = 0;
    // The big value being streamed, if any, and whether it is one of ferry's own keys.
    let mut big: Option<(Arc<ferry_rdb::KeyMeta>, bool)> = None;
    loop {
        let entry = match parser.next_event()? {
            None | Some(Event::End { .. }) => break,
            Some(Event::Key(record)) => {
                if record.meta.key.starts_with(OWN_KEY_PREFIX) {
                    continue;
                }
                Entry::Key(record)
            }
            Some(Event::BigValueStart(meta)) => {
                let own = meta.key.starts_with(OWN_KEY_PREFIX);
                let meta = Arc::new(meta);
                big = Some((meta.clone(), own));
                if own {
                    continue;
                }
                Entry::BigStart(meta)
            }
            Some(Event::BigValueChunk(chunk)) => match &big {
                Some((meta, false)) => Entry::BigChunk(meta.clone(), chunk),
                _ => continue,
            },
            Some(Event::BigValueEnd) => match big.take() {
                Some((meta, false)) => Entry::BigEnd(meta),
                _ => continue,
            },
            Some(Event::Function { code }) => Entry::Function(code),
            // A module's global state: only the module itself can load it.
            Some(Event::ModuleAux { module_id, .. }) => Entry::Unwritable(format!(
                "aux data of module type {}: no command can write it",
                ferry_rdb::ModuleType::from_id(module_id)
            )),
            // A cluster node's own state (Valkey 9's slot imports, slot size hints): no data.
            Some(Event::SlotImport { job, ranges }) => {
                tracing::debug!(
                    job = %String::from_utf8_lossy(&job),
                    ranges = ?ranges,
                    "snapshot: skipped a slot import record (the source node's migration state, no data)"
                );
                continue;
            }
            Some(Event::SlotInfo { slot, keys, .. }) => {
                tracing::debug!(slot, keys, "snapshot: skipped a slot size hint (no data)");
                continue;
            }
            // Aux fields, SELECTDB and RESIZEDB: each key carries its db; nothing to write.
            Some(_) => continue,
        };
        batch_bytes += weight(&entry);
        batch.push(entry);
        if batch.len() >= BATCH_ENTRIES || batch_bytes >= BATCH_BYTES {
            let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ENTRIES));
            if tx.blocking_send(full).is_err() {
                return Ok(Outcome::Abandoned);
            }
            batch_bytes = 0;
        }
    }
    if !batch.is_empty() && tx.blocking_send(batch).is_err() {
        return Ok(Outcome::Abandoned);
    }
    Ok(Outcome::Done { rdb_version })
}
