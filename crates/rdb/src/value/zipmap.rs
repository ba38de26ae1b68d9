//! Zipmap (Redis < 2.6 small hash): `zmlen:u8`, then `len key len free value [free bytes]`
//! repeated, then `0xFF`. A length is one byte below 254, or 254 and a u32 LE.

pub(crate) fn count_from_header(b: &[u8]) -> Option<u64> {
    let n = *b.first()?;
    (n < 254).then_some(u64::from(n))
}

/// Redis's `zipmapValidateIntegrity` with `deep` set: terminator, every entry inside the
/// blob, at least one entry, and the header's count right unless it is 254 ("unknown").
/// Errors carry the offset in the blob.
pub(crate) fn validate(b: &[u8]) -> Result<u64, (usize, &'static str)> {
    if b.len() < 2 {
        return Err((0, "zipmap shorter than its header"));
    }
    let last = b.len() - 1;
    if b[last] != 0xFF {
        return Err((last, "zipmap lacks its terminator"));
    }
    let out = |p: u64| p > last as u64;
    // A length: one byte below 254, else a u32 LE after it.
    let len = |p: usize| -> Result<(u64, u64), (usize, &'static str)> {
        let s = if b[p] < 254 { 1 } else { 5 };
        if out(p as u64 + s) {
            return Err((p, "zipmap entry runs past its end"));
        }
        let l = if s == 1 {
            u64::from(b[p])
        } else {
            u64::from(u32::from_le_bytes([b[p + 1], b[p + 2], b[p + 3], b[p + 4]]))
        };
        Ok((s, l))
    };
    let mut p = 1usize;
    let mut count = 0u64;
    while b[p] != 0xFF {
        let at = p;
        let (s, l) = len(p)?;
        let q = p as u64 + s + l;
        if out(q) {
            return Err((at, "zipmap entry runs past its end"));
        }
        p = q as usize;
        let (s, l) = len(p)?;
        let free_at = p as u64 + s;
        let free = u64::from(b[free_at as usize]);
        let q = free_at + 1 + l + free;
        if out(q) {
            return Err((at, "zipmap entry runs past its end"));
        }
        p = q as usize;
        count += 1;
    }
    if count == 0 {
        return Err((0, "zipmap has no entries"));
    }
    if b[0] != 254 && u64::from(b[0]) != count {
        return Err((0, "zipmap header count differs from its entries"));
    }
    Ok(count)
}

/// A (field, value) pair borrowed from the blob.
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

/// The (field, value) pairs of a zipmap that passes [`validate`].
pub(crate) fn pairs(b: &[u8]) -> Result<Vec<Pair<'_>>, &'static str> {
    validate(b).map_err(|(_, e)| e)?;
    let mut pos = 1usize;
    let mut out = Vec::new();
    let take = |pos: &mut usize, n: usize| -> Result<&[u8], &'static str> {
        let end = pos.checked_add(n).ok_or("zipmap entry overflows")?;
        let s = b.get(*pos..end).ok_or("zipmap entry runs past its end")?;
        *pos = end;
        Ok(s)
    };
    let len = |pos: &mut usize| -> Result<Option<usize>, &'static str> {
        let first = take(pos, 1)?[0];
        Ok(match first {
            0..=253 => Some(usize::from(first)),
            254 => {
                let l = take(pos, 4)?;
                Some(u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize)
            }
            255 => None,
        })
    };
    while let Some(klen) = len(&mut pos)? {
        let key = take(&mut pos, klen)?;
        let vlen = len(&mut pos)?.ok_or("zipmap ends inside an entry")?;
        let free = usize::from(take(&mut pos, 1)?[0]);
        let value = take(&mut pos, vlen)?;
        take(&mut pos, free)?;
        out.push((key, value));
    }
    if pos != b.len() {
        return Err("zipmap terminator before its end");
    }
    Ok(out)
}
