//! A local extension of the source's replication backlog: every entry of the command stream is
//! appended to segment files on disk as it arrives, and kept until the target has confirmed it
//! and the room is needed. When the target is slow, the writer is fed from here while the
//! source keeps being read; when the target is down, ferry keeps reading the source into the
//! spool (so the source does not drop the replica link), and on the target's return replays it
//! from the target's checkpoint. When the spool is full and nothing in it is confirmed, ferry
//! stops reading the source.
//!
//! A record: tag (1 command, 2 position only), db (u32), end offset (u64), raw length (u32),
//! then the command's RESP bytes exactly as received. Integers are little-endian.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use ferry_resp::{Decoder, Limits};

use crate::pipeline::entry::{Command, Entry};

const HEADER: usize = 1 + 4 + 8 + 4;
const TAG_COMMAND: u8 = 1;
const TAG_OFFSET: u8 = 2;
/// A stream command is one RESP frame; the source's own limit on a bulk is 512 MiB.
const MAX_RECORD: u32 = 1 << 30;
/// Bytes of commands read back at a time (at least one command), like a batch from the
/// source: 512 pieces of a huge SET were 128 MiB.
const READ_BYTES: usize = 512 * 1024;
/// Commands read back are cut from blocks of this size (one allocation for many commands, as
/// the source's are cut from its reads); a longer one gets a buffer of its own.
const BLOCK: usize = 64 * 1024;

/// What went wrong with the spool's files; names the file.
#[derive(thiserror::Error, Debug)]
#[error("spool file {}: {source}", path.display())]
pub struct SpoolError {
    pub path: PathBuf,
    pub source: io::Error,
}

type Result<T> = std::result::Result<T, SpoolError>;

/// One file of the spool: records whose stream positions run from `first` (where its first
/// record starts) to `last` (where its last record ends).
#[derive(Debug)]
struct Segment {
    path: PathBuf,
    first: u64,
    last: u64,
    bytes: u64,
}

/// Where the next record to read is.
struct Cursor {
    /// `first` of the segment it is in.
    segment: u64,
    reader: BufReader<File>,
    pos: u64,
}

pub struct Spool {
    dir: PathBuf,
    limit: u64,
    segment_bytes: u64,
    segments: VecDeque<Segment>,
    writer: BufWriter<File>,
    /// Total bytes in every segment.
    bytes: u64,
    cursor: Option<Cursor>,
    /// Where the records of the last `append` begin (segment, byte position).
    last_append: Option<(u64, u64)>,
    decoder: Decoder,
    /// What is left of the block the last commands read back were cut from.
    block: BytesMut,
}

impl Spool {
    /// A new, empty spool in `dir` (whatever an earlier process left there is removed: it
    /// cannot be trusted to continue this stream) for the stream from `start` on, holding at
    /// most about `limit` bytes.
    pub fn create(dir: &Path, start: u64, limit: u64) -> Result<Spool> {
        let err = |source| SpoolError {
            path: dir.to_path_buf(),
            source,
        };
        match std::fs::remove_dir_all(dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(err(e)),
            _ => {}
        }
        std::fs::create_dir_all(dir).map_err(err)?;
        let segment_bytes = (limit / 8).clamp(64 * 1024, 64 * 1024 * 1024);
        let (segment, writer) = new_segment(dir, start)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            limit,
            segment_bytes,
            segments: VecDeque::from([segment]),
            writer,
            bytes: 0,
            cursor: None,
            last_append: None,
            decoder: Decoder::new(Limits::default()),
            block: BytesMut::new(),
        })
    }

    /// Bytes on disk now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// The stream position where the oldest record kept starts.
    pub fn start(&self) -> u64 {
        self.segments.front().map_or(0, |s| s.first)
    }

    /// The stream position where the newest record ends.
    pub fn end(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.last)
    }

    /// Full: at its limit with nothing the target has confirmed left to drop.
    pub fn is_full(&self) -> bool {
        self.bytes >= self.limit
    }

    /// Appends the stream entries of `batch` (commands and writeless positions; anything else
    /// is not part of the stream and is not kept) and writes them out.
    pub fn append(&mut self, batch: &[Entry]) -> Result<()> {
        self.last_append = None;
        for entry in batch {
            let (tag, db, end, raw): (u8, u32, u64, &[u8]) = match entry {
                Entry::Command(c) => (TAG_COMMAND, c.db, c.end_offset, &c.raw),
                Entry::Offset { offset, db } => (TAG_OFFSET, *db, *offset, &[]),
                _ => continue,
            };
            if self
                .segments
                .back()
                .is_some_and(|s| s.bytes >= self.segment_bytes)
            {
                self.rotate()?;
            }
            let mut header = [0u8; HEADER];
            header[0] = tag;
            header[1..5].copy_from_slice(&db.to_le_bytes());
            header[5..13].copy_from_slice(&end.to_le_bytes());
            header[13..17].copy_from_slice(&(raw.len() as u32).to_le_bytes());
            let segment = self.segments.back_mut().expect("a spool has a segment");
            self.last_append
                .get_or_insert((segment.first, segment.bytes));
            let path = &segment.path;
            let write = |w: &mut BufWriter<File>| -> io::Result<()> {
                w.write_all(&header)?;
                w.write_all(raw)
            };
            write(&mut self.writer).map_err(|source| SpoolError {
                path: path.clone(),
                source,
            })?;
            let n = (HEADER + raw.len()) as u64;
            segment.bytes += n;
            segment.last = end;
            self.bytes += n;
        }
        let path = &self.segments.back().expect("a spool has a segment").path;
        self.writer.flush().map_err(|source| SpoolError {
            path: path.clone(),
            source,
        })
    }

    /// Drops the oldest segments that the target has confirmed (`confirmed` is the applied
    /// offset), as long as the spool is at its limit: more history is kept than strictly
    /// needed, for a target that comes back with an older checkpoint than it had confirmed.
    pub fn trim(&mut self, confirmed: u64) -> Result<()> {
        while self.bytes >= self.limit && self.segments.len() > 1 {
            let oldest = &self.segments[0];
            if oldest.last > confirmed {
                break;
            }
            if let Some(c) = &self.cursor
                && c.segment == oldest.first
            {
                // Everything in it is confirmed, so it has been read: go on to the next.
                let next = self.segments[1].first;
                self.cursor = Some(self.open_at(next, 0)?);
            }
            let oldest = self.segments.pop_front().expect("checked above");
            std::fs::remove_file(&oldest.path).map_err(|source| SpoolError {
                path: oldest.path.clone(),
                source,
            })?;
            self.bytes -= oldest.bytes;
        }
        Ok(())
    }

    /// Reads from just after stream position `offset`, which must be where a record ends (or
    /// where the spool starts). False when the spool does not hold that position.
    pub fn seek_after(&mut self, offset: u64) -> Result<bool> {
        self.cursor = None;
        let Some(index) = self
            .segments
            .iter()
            .rposition(|s| s.first <= offset && offset <= s.last.max(s.first))
        else {
            return Ok(false);
        };
        let first = self.segments[index].first;
        let mut cursor = self.open_at(first, 0)?;
        // Past every record that ends at or before `offset` (a writeless position may end
        // where the command before it does).
        let mut reached = offset == first;
        loop {
            let before = cursor.pos;
            let Some((_, _, end, len)) = self.read_header(&mut cursor)? else {
                break;
            };
            if end > offset {
                cursor = self.open_at(first, before)?;
                break;
            }
            reached = end == offset;
            self.skip(&mut cursor, len)?;
        }
        // Otherwise `offset` falls inside a record: not a position to continue from.
        if reached {
            self.cursor = Some(cursor);
        }
        Ok(reached)
    }

    /// Reads from the first record of the last `append` on (its batch could not be handed
    /// over from memory). Cheaper than `seek_after`, which searches.
    pub fn rewind_to_last_append(&mut self) -> Result<()> {
        self.cursor = match self.last_append {
            Some((segment, pos)) => Some(self.open_at(segment, pos)?),
            None => {
                let end = self.end();
                self.seek_after(end)?;
                self.cursor.take()
            }
        };
        Ok(())
    }

    /// Up to `max` entries (and about `READ_BYTES`) from the cursor on, in stream order, and
    /// the position the last one ends at; empty when everything appended has been read.
    pub fn read(&mut self, max: usize) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        let Some(mut cursor) = self.cursor.take() else {
            return Ok(out);
        };
        let result = self.read_into(&mut cursor, max, &mut out);
        self.cursor = Some(cursor);
        result.map(|()| out)
    }

    fn read_into(&mut self, cursor: &mut Cursor, max: usize, out: &mut Vec<Entry>) -> Result<()> {
        let mut bytes = 0;
        while out.len() < max && bytes < READ_BYTES {
            let Some((tag, db, end, len)) = self.read_header(cursor)? else {
                // The end of this segment: on to the next one, if there is one.
                match self.segments.iter().find(|s| s.first > cursor.segment) {
                    Some(next) => {
                        let next = next.first;
                        *cursor = self.open_at(next, 0)?;
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            if tag == TAG_OFFSET {
                out.push(Entry::Offset { offset: end, db });
                continue;
            }
            bytes += len as usize;
            let mut buf = self.buffer(len as usize);
            cursor
                .reader
                .read_exact(&mut buf)
                .map_err(|source| SpoolError {
                    path: self.path_of(cursor.segment),
                    source,
                })?;
            cursor.pos += u64::from(len);
            let (raw, args) = self.parse(buf).ok_or_else(|| {
                corrupt(
                    &self.path_of(cursor.segment),
                    "a command that is not one RESP array",
                )
            })?;
            out.push(Entry::Command(Command {
                db,
                target_db: None,
                args,
                raw,
                end_offset: end,
                slot: None,
            }));
        }
        Ok(())
    }

    /// Room for a command of `len` bytes: cut from the current block while it has room.
    fn buffer(&mut self, len: usize) -> BytesMut {
        if len > BLOCK / 4 {
            return BytesMut::zeroed(len);
        }
        if self.block.capacity() < len {
            self.block = BytesMut::with_capacity(BLOCK);
        }
        self.block.resize(len, 0);
        self.block.split()
    }

    /// The command in `buf` (exactly one RESP frame): its bytes and its arguments, which
    /// share the buffer.
    fn parse(&mut self, mut buf: BytesMut) -> Option<(Bytes, Vec<Bytes>)> {
        let (args, raw) = self.decoder.decode_command(&mut buf).ok()??;
        if !buf.is_empty() {
            return None;
        }
        Some((raw, args.ok()?))
    }

    /// The next record's header, or None at the end of the segment's written data (a record
    /// is read only once it is whole: the writer flushes whole batches).
    fn read_header(&self, cursor: &mut Cursor) -> Result<Option<(u8, u32, u64, u32)>> {
        let segment = self.segments.iter().find(|s| s.first == cursor.segment);
        let written = segment.map_or(0, |s| s.bytes);
        if cursor.pos + HEADER as u64 > written {
            return Ok(None);
        }
        let mut header = [0u8; HEADER];
        cursor
            .reader
            .read_exact(&mut header)
            .map_err(|source| SpoolError {
                path: self.path_of(cursor.segment),
                source,
            })?;
        cursor.pos += HEADER as u64;
        let tag = header[0];
        let db = u32::from_le_bytes(header[1..5].try_into().expect("4 bytes"));
        let end = u64::from_le_bytes(header[5..13].try_into().expect("8 bytes"));
        let len = u32::from_le_bytes(header[13..17].try_into().expect("4 bytes"));
        let valid = match tag {
            TAG_COMMAND => len > 0 && len <= MAX_RECORD,
            TAG_OFFSET => len == 0,
            _ => false,
        };
        if !valid || cursor.pos + u64::from(len) > written {
            return Err(corrupt(
                &self.path_of(cursor.segment),
                "a record header that makes no sense",
            ));
        }
        Ok(Some((tag, db, end, len)))
    }

    fn skip(&self, cursor: &mut Cursor, len: u32) -> Result<()> {
        cursor
            .reader
            .seek_relative(i64::from(len))
            .map_err(|source| SpoolError {
                path: self.path_of(cursor.segment),
                source,
            })?;
        cursor.pos += u64::from(len);
        Ok(())
    }

    fn open_at(&self, first: u64, pos: u64) -> Result<Cursor> {
        let path = self.path_of(first);
        let err = |source| SpoolError {
            path: path.clone(),
            source,
        };
        let mut file = File::open(&path).map_err(err)?;
        file.seek(SeekFrom::Start(pos)).map_err(err)?;
        Ok(Cursor {
            segment: first,
            reader: BufReader::with_capacity(256 * 1024, file),
            pos,
        })
    }

    fn path_of(&self, first: u64) -> PathBuf {
        segment_path(&self.dir, first)
    }

    fn rotate(&mut self) -> Result<()> {
        let start = self.end();
        let (segment, writer) = new_segment(&self.dir, start)?;
        self.writer = writer;
        self.segments.push_back(segment);
        Ok(())
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        // The spool continues nothing after this process: leave no files behind.
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn segment_path(dir: &Path, first: u64) -> PathBuf {
    dir.join(format!("{first:020}.spool"))
}

fn new_segment(dir: &Path, first: u64) -> Result<(Segment, BufWriter<File>)> {
    let path = segment_path(dir, first);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|source| SpoolError {
            path: path.clone(),
            source,
        })?;
    Ok((
        Segment {
            path,
            first,
            last: first,
            bytes: 0,
        },
        BufWriter::with_capacity(256 * 1024, file),
    ))
}

fn corrupt(path: &Path, what: &str) -> SpoolError {
    SpoolError {
        path: path.to_path_buf(),
        source: io::Error::new(
            io::ErrorKind::InvalidData,
            format!("holds {what}; it was changed by something other than ferry"),
        ),
    }
}

/// The spool directory of the stream named `task` under a task's own directory (see
/// `TaskConfig::local_dir`): one per stream (a cluster
/// source's shards each have their own), named so any task name makes one path component.
pub fn dir_for(data_dir: &Path, task: &str) -> PathBuf {
    let name: String = task
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_' | '@' | ':' => c,
            _ => '_',
        })
        .collect();
    // Never "", "." or "..": the directory is emptied when a spool starts.
    let name = match name.starts_with('.') || name.is_empty() {
        true => format!("_{name}"),
        false => name,
    };
    data_dir.join("spool").join(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str], end: u64, db: u32) -> Entry {
        let mut raw = BytesMut::new();
        let parts: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        ferry_resp::encode_command(&mut raw, &parts);
        Entry::Command(Command {
            db,
            target_db: None,
            args: args.iter().map(|a| Bytes::from(a.to_string())).collect(),
            raw: raw.freeze(),
            end_offset: end,
            slot: None,
        })
    }

    fn ends(entries: &[Entry]) -> Vec<u64> {
        entries
            .iter()
            .map(|e| match e {
                Entry::Command(c) => c.end_offset,
                Entry::Offset { offset, .. } => *offset,
                _ => panic!("not a stream entry"),
            })
            .collect()
    }

    /// `n` commands from position 100 on, each ending 40 bytes after the last, with a
    /// writeless position after every tenth.
    fn stream(n: u64) -> Vec<Entry> {
        let mut out = Vec::new();
        for i in 0..n {
            out.push(cmd(&["SET", &format!("k{i}"), "v"], 100 + 40 * (i + 1), 3));
            if i % 10 == 9 {
                out.push(Entry::Offset {
                    offset: 100 + 40 * (i + 1),
                    db: 3,
                });
            }
        }
        out
    }

    #[test]
    fn reads_back_what_was_appended_in_order_across_segments() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(&dir.path().join("s"), 100, 1 << 20).unwrap();
        let all = stream(5000);
        for batch in all.chunks(300) {
            spool.append(batch).unwrap();
        }
        assert!(spool.segments.len() > 1, "{:?}", spool.segments);
        assert!(spool.seek_after(100).unwrap());
        let mut read = Vec::new();
        loop {
            let part = spool.read(512).unwrap();
            if part.is_empty() {
                break;
            }
            read.extend(part);
        }
        assert_eq!(ends(&read), ends(&all));
        match (&read[7], &all[7]) {
            (Entry::Command(a), Entry::Command(b)) => {
                assert_eq!(a.raw, b.raw);
                assert_eq!(a.args, b.args);
                assert_eq!(a.db, 3);
            }
            _ => panic!("expected commands"),
        }
    }

    #[test]
    fn seeks_only_to_record_boundaries_it_holds() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(&dir.path().join("s"), 100, 1 << 20).unwrap();
        spool.append(&stream(3000)).unwrap();
        assert!(spool.seek_after(100 + 40 * 1234).unwrap());
        let next = spool.read(2).unwrap();
        assert_eq!(ends(&next), vec![100 + 40 * 1235, 100 + 40 * 1236]);
        // Inside a record, before the spool, after its end.
        assert!(!spool.seek_after(100 + 40 * 1234 + 7).unwrap());
        assert!(!spool.seek_after(99).unwrap());
        assert!(!spool.seek_after(100 + 40 * 3001).unwrap());
        // At the very end: nothing to read yet, then what is appended next.
        assert!(spool.seek_after(100 + 40 * 3000).unwrap());
        assert!(spool.read(10).unwrap().is_empty());
        spool
            .append(&[cmd(&["DEL", "x"], 100 + 40 * 3000 + 20, 0)])
            .unwrap();
        assert_eq!(ends(&spool.read(10).unwrap()), vec![100 + 40 * 3000 + 20]);
    }

    #[test]
    fn trims_only_confirmed_segments_and_only_when_full() {
        let dir = tempfile::tempdir().unwrap();
        let limit = 256 * 1024;
        let mut spool = Spool::create(&dir.path().join("s"), 100, limit).unwrap();
        let all = stream(20_000);
        let mut appended = 0;
        for batch in all.chunks(100) {
            if spool.is_full() {
                break;
            }
            spool.append(batch).unwrap();
            appended += batch.len();
        }
        assert!(spool.is_full());
        // Nothing confirmed: nothing can go.
        spool.trim(100).unwrap();
        assert!(spool.is_full());
        assert_eq!(spool.start(), 100);
        // Confirmed up to the middle, and read that far: old segments go until there is
        // room, no further, and the reader goes on where it was.
        let middle = ends(&all[..appended / 2]).last().copied().unwrap();
        assert!(spool.seek_after(middle).unwrap());
        spool.trim(middle).unwrap();
        assert!(!spool.is_full());
        assert!(spool.start() <= middle);
        assert!(spool.start() > 100);
        let mut rest = Vec::new();
        loop {
            let part = spool.read(1000).unwrap();
            if part.is_empty() {
                break;
            }
            rest.extend(ends(&part));
        }
        let want: Vec<u64> = ends(&all[..appended])
            .into_iter()
            .filter(|&e| e > middle)
            .collect();
        assert_eq!(rest, want);
        let files = std::fs::read_dir(dir.path().join("s")).unwrap().count();
        assert_eq!(files, spool.segments.len());
    }

    #[test]
    fn rewinds_to_the_batch_that_could_not_be_handed_over() {
        let dir = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(&dir.path().join("s"), 100, 1 << 20).unwrap();
        let all = stream(4000);
        let (before, last) = all.split_at(3700);
        for batch in before.chunks(200) {
            spool.append(batch).unwrap();
        }
        spool.append(last).unwrap();
        spool.rewind_to_last_append().unwrap();
        let mut read = Vec::new();
        loop {
            let part = spool.read(64).unwrap();
            if part.is_empty() {
                break;
            }
            read.extend(part);
        }
        assert_eq!(ends(&read), ends(last));
    }

    #[test]
    fn leaves_no_files_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        std::fs::create_dir_all(&path).unwrap();
        std::fs::write(path.join("stale.spool"), b"old").unwrap();
        let mut spool = Spool::create(&path, 0, 1 << 20).unwrap();
        assert!(!path.join("stale.spool").exists());
        spool.append(&stream(10)).unwrap();
        drop(spool);
        assert!(!path.exists());
    }

    #[test]
    fn task_names_make_one_path_component() {
        let d = dir_for(Path::new("/data"), "127.0.0.1:6379@0");
        assert_eq!(d, Path::new("/data/spool/127.0.0.1:6379@0"));
        let d = dir_for(Path::new("/data"), "../x/y");
        assert_eq!(d, Path::new("/data/spool/_.._x_y"));
        assert_eq!(dir_for(Path::new("/d"), ".."), Path::new("/d/spool/_.."));
    }
}
