//! Listpack (Redis 5+ compact list): header `total_bytes:u32 LE, count:u16 LE`, entries,
//! `0xFF`. Each entry is an encoding byte, data and a backward length.

use super::Elem;

pub(crate) const HEADER: usize = 6;

/// Checks the header and terminator; returns the element count (`None` if >= 65535).
pub(crate) fn check(b: &[u8]) -> Result<Option<u64>, &'static str> {
    if b.len() < HEADER + 1 {
        return Err("listpack shorter than its header");
    }
    let total = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if total != b.len() {
        return Err("listpack header length differs from its size");
    }
    if b[b.len() - 1] != 0xFF {
        return Err("listpack lacks its terminator");
    }
    Ok(count_from_header(b))
}

/// Element count from the first bytes of a listpack (if it fits in the u16 field).
pub(crate) fn count_from_header(b: &[u8]) -> Option<u64> {
    let n = u16::from_le_bytes([*b.get(4)?, *b.get(5)?]);
    (n != u16::MAX).then_some(u64::from(n))
}

/// Iterator over a checked listpack's elements.
pub(crate) struct Iter<'a> {
    b: &'a [u8],
    pos: usize,
    done: bool,
}

pub(crate) fn iter(b: &[u8]) -> Result<Iter<'_>, &'static str> {
    check(b)?;
    Ok(Iter {
        b,
        pos: HEADER,
        done: false,
    })
}

fn backlen_size(l: usize) -> usize {
    match l {
        0..=127 => 1,
        128..=16383 => 2,
        16384..=2_097_151 => 3,
        2_097_152..=268_435_455 => 4,
        _ => 5,
    }
}

/// The smallest listpack entry: an encoding byte and a one-byte backward length.
pub(crate) const MIN_ENTRY: usize = 2;

impl<'a> Iter<'a> {
    /// Bytes not yet read (the terminator included): at most `remaining() / MIN_ENTRY`
    /// more elements can follow.
    pub(crate) fn remaining(&self) -> usize {
        self.b.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("listpack entry overflows")?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or("listpack entry runs past its end")?;
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self, n: usize) -> Result<i64, &'static str> {
        let s = self.take(n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(s);
        let raw = i64::from_le_bytes(v);
        let shift = 64 - 8 * n as u32;
        Ok((raw << shift) >> shift)
    }

    fn next_elem(&mut self) -> Result<Option<Elem<'a>>, &'static str> {
        let start = self.pos;
        let enc = *self
            .take(1)?
            .first()
            .ok_or("listpack entry runs past its end")?;
        let elem = match enc {
            0x00..=0x7F => Elem::Int(i64::from(enc)),
            0x80..=0xBF => Elem::Str(self.take(usize::from(enc & 0x3F))?),
            0xC0..=0xDF => {
                let lo = self.take(1)?[0];
                let v = (i64::from(enc & 0x1F) << 8) | i64::from(lo);
                Elem::Int(if v >= 1 << 12 { v - (1 << 13) } else { v })
            }
            0xE0..=0xEF => {
                let lo = self.take(1)?[0];
                Elem::Str(self.take((usize::from(enc & 0x0F) << 8) | usize::from(lo))?)
            }
            0xF0 => {
                let l = self.take(4)?;
                let n = u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize;
                Elem::Str(self.take(n)?)
            }
            0xF1 => Elem::Int(self.int(2)?),
            0xF2 => Elem::Int(self.int(3)?),
            0xF3 => Elem::Int(self.int(4)?),
            0xF4 => Elem::Int(self.int(8)?),
            0xFF => {
                if self.pos != self.b.len() {
                    return Err("listpack terminator before its end");
                }
                self.done = true;
                return Ok(None);
            }
            _ => return Err("listpack entry has an unknown encoding"),
        };
        let l = self.pos - start;
        self.take(backlen_size(l))?;
        Ok(Some(elem))
    }
}

impl<'a> Iterator for Iter<'a> {
    type Item = Result<Elem<'a>, &'static str>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_elem() {
            Ok(Some(e)) => Some(Ok(e)),
            Ok(None) => None,
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
