//! Intset: `encoding:u32 LE` (2, 4 or 8), `length:u32 LE`, then sorted little-endian
//! signed integers of that width.

pub(crate) const HEADER: usize = 8;

/// Checks the layout; returns the element count.
pub(crate) fn check(b: &[u8]) -> Result<u64, &'static str> {
    if b.len() < HEADER {
        return Err("intset shorter than its header");
    }
    let width = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    if !matches!(width, 2 | 4 | 8) {
        return Err("intset has an unknown encoding");
    }
    let n = u64::from(u32::from_le_bytes([b[4], b[5], b[6], b[7]]));
    if (HEADER as u64).checked_add(n * u64::from(width)) != Some(b.len() as u64) {
        return Err("intset length differs from its size");
    }
    Ok(n)
}

pub(crate) fn count_from_header(b: &[u8]) -> Option<u64> {
    Some(u64::from(u32::from_le_bytes(b.get(4..8)?.try_into().ok()?)))
}

fn raw_values(b: &[u8]) -> impl Iterator<Item = i64> + '_ {
    let width = b[0] as usize;
    b[HEADER..].chunks_exact(width).map(move |c| match width {
        2 => i64::from(i16::from_le_bytes([c[0], c[1]])),
        4 => i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        _ => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
    })
}

/// Redis's `intsetValidateIntegrity` with `deep` set: the layout, at least one element, and
/// the elements strictly ascending (no duplicates). Errors carry the offset in the blob.
pub(crate) fn validate(b: &[u8]) -> Result<u64, (usize, &'static str)> {
    let n = check(b).map_err(|e| (0, e))?;
    if n == 0 {
        return Err((4, "intset has no elements"));
    }
    let width = b[0] as usize;
    let mut prev = None;
    for (i, v) in raw_values(b).enumerate() {
        if prev.is_some_and(|p| v <= p) {
            return Err((
                HEADER + i * width,
                "intset elements are not strictly ascending",
            ));
        }
        prev = Some(v);
    }
    Ok(n)
}

/// The integers of a valid intset.
pub(crate) fn values(b: &[u8]) -> Result<impl Iterator<Item = i64> + '_, &'static str> {
    validate(b).map_err(|(_, e)| e)?;
    Ok(raw_values(b))
}
