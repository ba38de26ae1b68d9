//! Listpack (Redis 5+ compact list): header `total_bytes:u32 LE, count:u16 LE`, entries,
//! `0xFF`. Each entry is an encoding byte, data and a backward length.

use super::Elem;

pub(crate) const HEADER: usize = 6;

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

/// An iterator over a listpack that passed [`validate`] (header count included).
pub(crate) fn iter(b: &[u8]) -> Result<Iter<'_>, &'static str> {
    validate(b, true).map_err(|(_, e)| e)?;
    Ok(Iter {
        b,
        pos: HEADER,
        done: false,
    })
}

/// Bytes of the backward length of an entry of `l` bytes. The bounds are Redis's own
/// (`lpEncodeBacklen`: exclusive at 16383, 2097151 and 268435455), which a validator must
/// follow exactly or it refuses entries Redis wrote.
pub(crate) fn backlen_size(l: u64) -> u64 {
    match l {
        0..=127 => 1,
        128..=16382 => 2,
        16383..=2_097_150 => 3,
        2_097_151..=268_435_454 => 4,
        _ => 5,
    }
}

/// Size of the encoding byte plus length bytes, and of the data after them; `None` for an
/// encoding byte nobody defined.
pub(crate) fn entry_sizes(b: &[u8], p: usize) -> Option<(u64, Option<u64>)> {
    let e = b[p];
    let len = |n: usize| b.get(p + 1..p + 1 + n);
    Some(match e {
        0x00..=0x7F => (1, Some(0)),
        0x80..=0xBF => (1, Some(u64::from(e & 0x3F))),
        0xC0..=0xDF => (1, Some(1)),
        0xE0..=0xEF => (
            2,
            len(1).map(|l| (u64::from(e & 0x0F) << 8) | u64::from(l[0])),
        ),
        0xF0 => (
            5,
            len(4).map(|l| u64::from(u32::from_le_bytes([l[0], l[1], l[2], l[3]]))),
        ),
        0xF1 => (1, Some(2)),
        0xF2 => (1, Some(3)),
        0xF3 => (1, Some(4)),
        0xF4 => (1, Some(8)),
        _ => return None,
    })
}

/// Redis's `lpValidateIntegrity` with `deep` set: header size and terminator, then every
/// entry inside the blob with a backward length that matches it, the entries ending
/// exactly at the terminator, and (with `check_count`) the header's count right unless it
/// is the "unknown" 65535. Stream nodes are checked by Redis without the count. Returns the
/// number of entries; an error carries the offset in the blob where it was found.
pub(crate) fn validate(b: &[u8], check_count: bool) -> Result<u64, (usize, &'static str)> {
    if b.len() < HEADER + 1 {
        return Err((0, "listpack shorter than its header"));
    }
    if u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize != b.len() {
        return Err((0, "listpack header length differs from its size"));
    }
    let last = b.len() - 1;
    if b[last] != 0xFF {
        return Err((last, "listpack lacks its terminator"));
    }
    let mut p = HEADER;
    let mut count = 0u64;
    while b[p] != 0xFF {
        let Some((head, data)) = entry_sizes(b, p) else {
            return Err((p, "listpack entry has an unknown encoding"));
        };
        let Some(data) = data.filter(|_| p as u64 + head <= last as u64) else {
            return Err((p, "listpack entry header runs past its end"));
        };
        let len = head + data;
        let back = backlen_size(len);
        let end = p as u64 + len + back;
        if end > last as u64 {
            return Err((p, "listpack entry runs past its end"));
        }
        let end = end as usize;
        // The backward length, read from its last byte towards the entry.
        let mut val = 0u64;
        let mut shift = 0;
        let mut i = end - 1;
        loop {
            val |= u64::from(b[i] & 127) << shift;
            if b[i] & 128 == 0 {
                break;
            }
            shift += 7;
            if shift > 28 || i == p {
                return Err((p, "listpack entry has a bad backward length"));
            }
            i -= 1;
        }
        if val != len {
            return Err((p, "listpack entry's backward length differs from its size"));
        }
        p = end;
        count += 1;
    }
    if p != last {
        return Err((p, "listpack terminator before its end"));
    }
    if check_count
        && let Some(n) = count_from_header(b)
        && n != count
    {
        return Err((4, "listpack header count differs from its entries"));
    }
    Ok(count)
}

/// The element of one entry from its bytes (encoding, data and backward length), which the
/// caller has checked.
pub(crate) fn entry_elem(b: &[u8]) -> Result<Elem<'_>, &'static str> {
    let mut it = Iter {
        b,
        pos: 0,
        done: false,
    };
    it.next_elem()?.ok_or("listpack terminator before its end")
}

/// An iterator over a listpack the caller has just run [`validate`] on.
pub(crate) fn iter_validated(b: &[u8]) -> Iter<'_> {
    Iter {
        b,
        pos: HEADER,
        done: false,
    }
}

/// An iterator over a listpack whose entries passed [`validate`] without the count (a
/// stream node).
pub(crate) fn iter_any_count(b: &[u8]) -> Result<Iter<'_>, (usize, &'static str)> {
    validate(b, false)?;
    Ok(Iter {
        b,
        pos: HEADER,
        done: false,
    })
}

/// The smallest listpack entry: an encoding byte and a one-byte backward length.
pub(crate) const MIN_ENTRY: usize = 2;

impl<'a> Iter<'a> {
    /// Offset in the blob of the next entry.
    pub(crate) fn pos(&self) -> usize {
        self.pos
    }

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
        let l = (self.pos - start) as u64;
        self.take(backlen_size(l) as usize)?;
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
