//! Ziplist (Redis < 7 compact list): header `zlbytes:u32, zltail:u32, zllen:u16` (LE),
//! entries `prevlen, encoding, data`, then `0xFF`.

use super::Elem;

pub(crate) const HEADER: usize = 10;

pub(crate) fn count_from_header(b: &[u8]) -> Option<u64> {
    let n = u16::from_le_bytes([*b.get(8)?, *b.get(9)?]);
    (n != u16::MAX).then_some(u64::from(n))
}

pub(crate) struct Iter<'a> {
    b: &'a [u8],
    pos: usize,
    done: bool,
}

/// Redis's `ziplistValidateIntegrity` with `deep` set: header size, terminator and tail
/// offset, then every entry inside the blob, each entry's `prevlen` equal to the size of the
/// one before, the entries ending exactly at the terminator, the tail offset pointing at the
/// last entry, and the header's count right unless it is the "unknown" 65535. Returns the
/// number of entries; an error carries the offset in the blob where it was found.
pub(crate) fn validate(b: &[u8]) -> Result<u64, (usize, &'static str)> {
    if b.len() < HEADER + 1 {
        return Err((0, "ziplist shorter than its header"));
    }
    let u32_at = |i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    if u32_at(0) != b.len() as u64 {
        return Err((0, "ziplist header length differs from its size"));
    }
    let last = b.len() - 1;
    if b[last] != 0xFF {
        return Err((last, "ziplist lacks its terminator"));
    }
    let tail = u32_at(4);
    if tail > last as u64 {
        return Err((4, "ziplist tail offset is past its end"));
    }
    let mut p = HEADER;
    let mut prev_size = 0u64;
    let mut prev_at = None;
    let mut count = 0u64;
    while b[p] != 0xFF {
        let (prevlen_size, prevlen) = if b[p] < 254 {
            (1, u64::from(b[p]))
        } else {
            if p + 5 > last {
                return Err((p, "ziplist entry header runs past its end"));
            }
            (5, u32_at(p + 1))
        };
        let q = p + prevlen_size;
        let e = b[q];
        let (len_size, len) = match e >> 6 {
            0 => (1, Some(u64::from(e & 0x3F))),
            1 => (
                2,
                b.get(q + 1)
                    .map(|&lo| (u64::from(e & 0x3F) << 8) | u64::from(lo)),
            ),
            2 => (
                5,
                b.get(q + 1..q + 5)
                    .map(|l| u64::from(u32::from_be_bytes([l[0], l[1], l[2], l[3]]))),
            ),
            _ => match e {
                0xC0 => (1, Some(2)),
                0xD0 => (1, Some(4)),
                0xE0 => (1, Some(8)),
                0xF0 => (1, Some(3)),
                0xFE => (1, Some(1)),
                0xF1..=0xFD => (1, Some(0)),
                _ => return Err((p, "ziplist entry has an unknown encoding")),
            },
        };
        let Some(len) = len.filter(|_| q + len_size <= last) else {
            return Err((p, "ziplist entry header runs past its end"));
        };
        let size = (prevlen_size + len_size) as u64 + len;
        if p as u64 + size > last as u64 {
            return Err((p, "ziplist entry runs past its end"));
        }
        if prevlen != prev_size {
            return Err((
                p,
                "ziplist entry's previous length differs from the entry before",
            ));
        }
        prev_size = size;
        prev_at = Some(p);
        p += size as usize;
        count += 1;
    }
    if p != last {
        return Err((p, "ziplist terminator before its end"));
    }
    if let Some(at) = prev_at
        && at as u64 != tail
    {
        return Err((4, "ziplist tail offset does not point at its last entry"));
    }
    if let Some(n) = count_from_header(b)
        && n != count
    {
        return Err((8, "ziplist header count differs from its entries"));
    }
    Ok(count)
}

/// The element of one entry from its bytes (previous length, encoding and data), which the
/// caller has checked.
pub(crate) fn entry_elem(b: &[u8]) -> Result<Elem<'_>, &'static str> {
    let mut it = Iter {
        b,
        pos: 0,
        done: false,
    };
    it.next_elem()?.ok_or("ziplist terminator before its end")
}

/// An iterator over a ziplist the caller has just run [`validate`] on.
pub(crate) fn iter_validated(b: &[u8]) -> Iter<'_> {
    Iter {
        b,
        pos: HEADER,
        done: false,
    }
}

/// An iterator over a ziplist that passed [`validate`].
pub(crate) fn iter(b: &[u8]) -> Result<Iter<'_>, &'static str> {
    validate(b).map_err(|(_, e)| e)?;
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
