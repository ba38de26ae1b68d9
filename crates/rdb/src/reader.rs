//! A buffered byte reader over any `std::io::Read` that tracks the absolute offset, feeds
//! the consumed bytes to a running CRC64 and can capture a value's raw bytes as they pass.
//!
//! Bytes "consumed" are those before `pos`. Two side consumers follow behind `pos`: the
//! checksum (`crc_pos`) and the capture (`cap_pos`); both are brought up to `pos` by
//! [`Reader::flush`] before the buffer is compacted. [`Reader::replay`] puts captured bytes
//! back in front of the buffer so a value can be read again from its start (the checksum
//! does not see them twice).
//!
//! The checksum is brought up only when the buffer is compacted or finished, over large
//! spans: fed key by key, a few dozen bytes at a time, it cost 3% of a full copy's CPU.
//! Captures are cut from one shared arena, so a small value costs no allocation of its own.

use std::io::{self, Read};

use bytes::{Bytes, BytesMut};

use crate::dump::Crc64;
use crate::error::{Error, ErrorKind};

/// Size of the internal read buffer.
pub(crate) const BUF_SIZE: usize = 64 * 1024;

/// Size of each block the captures are cut from: a block is freed once every value cut from
/// it is dropped, which the pipeline does a batch at a time.
const ARENA_SIZE: usize = 64 * 1024;

pub(crate) struct Reader<R> {
    inner: R,
    buf: Vec<u8>,
    pos: usize,
    end: usize,
    /// Absolute offset of `buf[0]` in the input.
    base: u64,
    /// Highest absolute offset consumed so far (monotonic, for progress).
    high: u64,
    crc: Option<Crc64>,
    crc_pos: usize,
    /// Capturing: what is captured so far sits in `arena` (empty when not capturing).
    capturing: bool,
    arena: BytesMut,
    cap_pos: usize,
}

impl<R: Read> Reader<R> {
    pub(crate) fn new(inner: R, checksum: bool) -> Self {
        Self::with_buffer(inner, checksum, BUF_SIZE)
    }

    /// A reader whose buffer starts at `size` bytes (it grows when a read needs more): for
    /// short inputs such as one value's bytes, where zeroing 64 KiB per value would cost more
    /// than the decoding.
    pub(crate) fn with_buffer(inner: R, checksum: bool, size: usize) -> Self {
        Self {
            inner,
            buf: vec![0; size.clamp(16, BUF_SIZE)],
            pos: 0,
            end: 0,
            base: 0,
            high: 0,
            crc: checksum.then(Crc64::new),
            crc_pos: 0,
            capturing: false,
            arena: BytesMut::new(),
            cap_pos: 0,
        }
    }

    /// Absolute offset of the next byte to be read.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    pub(crate) fn high_water(&self) -> u64 {
        self.high.max(self.offset())
    }

    pub(crate) fn err(&self, kind: ErrorKind) -> Error {
        Error::new(kind, self.offset())
    }

    fn truncated(&self) -> Error {
        self.err(ErrorKind::Truncated("snapshot"))
    }

    /// Brings the checksum and the capture up to `pos`.
    fn flush(&mut self) {
        if self.pos > self.crc_pos {
            if let Some(crc) = &mut self.crc {
                crc.update(&self.buf[self.crc_pos..self.pos]);
            }
            self.crc_pos = self.pos;
        }
        self.flush_capture();
    }

    fn flush_capture(&mut self) {
        if self.capturing && self.pos > self.cap_pos {
            let new = &self.buf[self.cap_pos..self.pos];
            if self.arena.capacity() - self.arena.len() < new.len() {
                // A fresh block (the old one stays with the values cut from it); a value
                // larger than a block gets a block of its size.
                let mut block =
                    BytesMut::with_capacity(ARENA_SIZE.max(self.arena.len() + new.len()));
                block.extend_from_slice(&self.arena);
                self.arena = block;
            }
            self.arena.extend_from_slice(new);
            self.cap_pos = self.pos;
        }
    }

    /// Makes at least `n` bytes available after `pos` (n is small: at most a few KiB, or
    /// BUF_SIZE). Fails with a truncation error if the input ends first.
    fn fill(&mut self, n: usize) -> Result<(), Error> {
        if self.end - self.pos >= n {
            return Ok(());
        }
        if self.buf.len() - self.pos < n {
            self.flush();
            self.high = self.high_water();
            let pos = self.pos;
            self.buf.copy_within(pos..self.end, 0);
            self.end -= pos;
            self.base += pos as u64;
            self.crc_pos = self.crc_pos.saturating_sub(pos);
            self.cap_pos = self.cap_pos.saturating_sub(pos);
            self.pos = 0;
            if self.buf.len() < n {
                self.buf.resize(n, 0);
            } else if self.buf.len() > 2 * BUF_SIZE && self.end < BUF_SIZE && n <= BUF_SIZE {
                self.buf.truncate(BUF_SIZE);
                self.buf.shrink_to_fit();
            }
        }
        while self.end - self.pos < n {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => return Err(self.truncated()),
                Ok(k) => self.end += k,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Err(self.truncated()),
                Err(e) => return Err(self.err(ErrorKind::Io(e.kind()))),
            }
        }
        Ok(())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, Error> {
        if self.pos == self.end {
            self.fill(1)?;
        }
        let b = self.buf[self.pos];
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], Error> {
        self.fill(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(&self.buf[self.pos..self.pos + N]);
        self.pos += N;
        Ok(out)
    }

    /// Up to `n` (<= BUF_SIZE) bytes ahead without consuming them; fewer if the input ends.
    pub(crate) fn peek(&mut self, n: usize) -> &[u8] {
        let n = n.min(BUF_SIZE);
        if self.fill(n).is_err() {
            return &self.buf[self.pos..self.end];
        }
        &self.buf[self.pos..self.pos + n]
    }

    /// Consumes `n` bytes without copying them out (they still reach checksum and capture).
    pub(crate) fn skip(&mut self, mut n: u64) -> Result<(), Error> {
        while n > 0 {
            if self.pos == self.end {
                self.fill(1)?;
            }
            let take = ((self.end - self.pos) as u64).min(n) as usize;
            self.pos += take;
            n -= take as u64;
        }
        Ok(())
    }

    /// Reads exactly `n` bytes into a new vector, growing it only as bytes arrive.
    pub(crate) fn vec(&mut self, n: u64) -> Result<Vec<u8>, Error> {
        let n = usize::try_from(n).map_err(|_| self.err(ErrorKind::TooLarge("length")))?;
        let mut out = Vec::with_capacity(n.min(BUF_SIZE));
        while out.len() < n {
            if self.pos == self.end {
                self.fill(1)?;
            }
            let take = (self.end - self.pos).min(n - out.len());
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
        }
        Ok(out)
    }

    /// Reads exactly `n` bytes: a small string (a key name) is cut from the capture arena
    /// rather than given an allocation of its own.
    pub(crate) fn bytes(&mut self, n: u64) -> Result<Bytes, Error> {
        if self.capturing || n > (ARENA_SIZE / 16) as u64 {
            return self.vec(n).map(Bytes::from);
        }
        let n = n as usize;
        self.fill(n)?;
        if self.arena.capacity() - self.arena.len() < n {
            self.arena = BytesMut::with_capacity(ARENA_SIZE);
        }
        self.arena
            .extend_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(self.arena.split().freeze())
    }

    /// Appends exactly `n` bytes to `out`.
    pub(crate) fn extend_into(&mut self, out: &mut Vec<u8>, mut n: usize) -> Result<(), Error> {
        while n > 0 {
            if self.pos == self.end {
                self.fill(1)?;
            }
            let take = (self.end - self.pos).min(n);
            out.extend_from_slice(&self.buf[self.pos..self.pos + take]);
            self.pos += take;
            n -= take;
        }
        Ok(())
    }

    /// True when the input has no more bytes (used to reject trailing bytes in a payload).
    pub(crate) fn at_end(&mut self) -> bool {
        self.fill(1).is_err()
    }

    /// Starts capturing the bytes consumed from here on.
    pub(crate) fn start_capture(&mut self) {
        self.arena.clear();
        self.capturing = true;
        self.cap_pos = self.pos;
    }

    pub(crate) fn captured_len(&self) -> usize {
        if self.capturing {
            self.arena.len() + (self.pos - self.cap_pos)
        } else {
            0
        }
    }

    /// Stops capturing and returns what was captured.
    pub(crate) fn take_capture(&mut self) -> Bytes {
        self.flush_capture();
        self.capturing = false;
        self.arena.split().freeze()
    }

    /// Puts `prefix` (bytes already consumed just before `pos`) back in front of the unread
    /// bytes, so they are read again. The checksum does not see them a second time.
    pub(crate) fn replay(&mut self, prefix: &[u8]) {
        self.flush();
        self.high = self.high_water();
        let l = prefix.len();
        let mut buf = Vec::with_capacity((l + self.end - self.pos).max(BUF_SIZE));
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(&self.buf[self.pos..self.end]);
        let end = buf.len();
        if buf.len() < BUF_SIZE {
            buf.resize(BUF_SIZE, 0);
        }
        self.base = self.offset() - l as u64;
        self.buf = buf;
        self.pos = 0;
        self.end = end;
        self.crc_pos = l;
        self.cap_pos = 0;
    }

    /// Finishes the running checksum over everything consumed so far.
    pub(crate) fn finish_crc(&mut self) -> Option<u64> {
        self.flush();
        self.crc.take().map(Crc64::finish)
    }
}
