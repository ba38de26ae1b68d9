//! Ziplist (Redis < 7 compact list): header `zlbytes:u32, zltail:u32, zllen:u16` (LE),
//! entries `prevlen, encoding, data`, then `0xFF`.

use super::Elem;

pub(crate) const HEADER: usize = 10;

/// Checks the header and terminator; returns the element count (`None` if >= 65535).
pub(crate) fn check(b: &[u8]) -> Result<Option<u64>, &'static str> {
    if b.len() < HEADER + 1 {
        return Err("ziplist shorter than its header");
    }
    let total = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
    if total != b.len() {
        return Err("ziplist header length differs from its size");
    }
    if b[b.len() - 1] != 0xFF {
        return Err("ziplist lacks its terminator");
    }
    Ok(count_from_header(b))
}

pub(crate) fn count_from_header(b: &[u8]) -> Option<u64> {
    let n = u16::from_le_bytes([*b.get(8)?, *b.get(9)?]);
    (n != u16::MAX).then_some(u64::from(n))
}

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

impl<'a> Iter<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        let end = self.pos.checked_add(n).ok_or("ziplist entry overflows")?;
        let s = self
            .b
            .get(self.pos..end)
            .ok_or("ziplist entry runs past its end")?;
        self.pos = end;
        Ok(s)
    }

    fn int(&mut self, n: usize) -> Result<i64, &'static str> {
        let s = self.take(n)?;
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(s);
        let shift = 64 - 8 * n as u32;
        Ok((i64::from_le_bytes(v) << shift) >> shift)
    }

    fn next_elem(&mut self) -> Result<Option<Elem<'a>>, &'static str> {
        let first = self.take(1)?[0];
        if first == 0xFF {
            if self.pos != self.b.len() {
                return Err("ziplist terminator before its end");
            }
            self.done = true;
            return Ok(None);
        }
        if first == 0xFE {
            self.take(4)?;
        }
        let enc = self.take(1)?[0];
        Ok(Some(match enc >> 6 {
            0 => Elem::Str(self.take(usize::from(enc & 0x3F))?),
            1 => {
                let lo = self.take(1)?[0];
                Elem::Str(self.take((usize::from(enc & 0x3F) << 8) | usize::from(lo))?)
            }
            2 => {
                let l = self.take(4)?;
                Elem::Str(self.take(u32::from_be_bytes([l[0], l[1], l[2], l[3]]) as usize)?)
            }
            _ => match enc {
                0xC0 => Elem::Int(self.int(2)?),
                0xD0 => Elem::Int(self.int(4)?),
                0xE0 => Elem::Int(self.int(8)?),
                0xF0 => Elem::Int(self.int(3)?),
                0xFE => Elem::Int(self.int(1)?),
                0xF1..=0xFD => Elem::Int(i64::from(enc & 0x0F) - 1),
                _ => return Err("ziplist entry has an unknown encoding"),
            },
        }))
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
