//! Zipmap (Redis < 2.6 small hash): `zmlen:u8`, then `len key len free value [free bytes]`
//! repeated, then `0xFF`. A length is one byte below 254, or 254 and a u32 LE.

pub(crate) fn check(b: &[u8]) -> Result<Option<u64>, &'static str> {
    if b.len() < 2 || b[b.len() - 1] != 0xFF {
        return Err("zipmap lacks its terminator");
    }
    Ok(count_from_header(b))
}

pub(crate) fn count_from_header(b: &[u8]) -> Option<u64> {
    let n = *b.first()?;
    (n < 254).then_some(u64::from(n))
}

/// The (field, value) pairs of a zipmap.
/// A (field, value) pair borrowed from the blob.
pub(crate) type Pair<'a> = (&'a [u8], &'a [u8]);

pub(crate) fn pairs(b: &[u8]) -> Result<Vec<Pair<'_>>, &'static str> {
    check(b)?;
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
