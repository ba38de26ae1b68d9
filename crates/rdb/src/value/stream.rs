//! Stream entries inside one listpack node (t_stream.c layout).
//!
//! The node starts with a master entry: `count, deleted, num-fields, field_1..field_N, 0`.
//! Each entry then is `flags, ms-diff, seq-diff`, followed by `value_1..value_N` when
//! flags has SAMEFIELDS (2) (field names are the master's), else by
//! `num-fields, field_1, value_1, ...`; and finally `lp-count`. Flag DELETED (1) marks a
//! deleted entry. Ids are deltas from the node's master id (the radix-tree key).

use bytes::Bytes;

use super::{Elem, listpack};
use crate::chunk::{StreamEntry, StreamId};

const FLAG_DELETED: i64 = 1;
const FLAG_SAMEFIELDS: i64 = 2;

/// Redis's `streamValidateListpackIntegrity` with `deep` set: every listpack entry (the
/// header count is not checked, as Redis does not), a master entry of integers ending in 0,
/// then exactly `count + deleted` entries, each with integer flags, id and field count, and
/// an `lp-count` equal to its number of elements; nothing after the last. Errors carry the
/// offset in the blob.
pub(crate) fn validate_node(lp: &[u8]) -> Result<(), (usize, &'static str)> {
    let mut it = listpack::iter_any_count(lp)?;
    let it = &mut it;
    let int = |(at, e): (usize, Elem<'_>)| {
        e.strict_i64()
            .ok_or((at, "stream node field is not an integer"))
    };
    let count = |(at, e): (usize, Elem<'_>)| {
        e.strict_i64()
            .and_then(|n| u64::try_from(n).ok())
            .ok_or((at, "stream node count is not a non-negative integer"))
    };
    let entries = count(next(it)?)?;
    let deleted = count(next(it)?)?;
    let master_fields = count(next(it)?)?;
    for _ in 0..master_fields {
        next(it)?;
    }
    let zero = next(it)?;
    if int(zero)? != 0 {
        return Err((zero.0, "stream master entry lacks its terminator"));
    }
    let total = entries
        .checked_add(deleted)
        .ok_or((0, "stream node entry counts overflow"))?;
    for _ in 0..total {
        let flags = int(next(it)?)?;
        int(next(it)?)?;
        int(next(it)?)?;
        let mut fields = master_fields;
        let mut extra = 3u64;
        if flags & FLAG_SAMEFIELDS == 0 {
            fields = count(next(it)?)?;
            for _ in 0..fields {
                next(it)?;
            }
            extra = extra.saturating_add(fields).saturating_add(1);
        }
        for _ in 0..fields {
            next(it)?;
        }
        let lp_count = next(it)?;
        if u64::try_from(int(lp_count)?).ok() != fields.checked_add(extra) {
            return Err((
                lp_count.0,
                "stream entry's lp-count differs from its elements",
            ));
        }
    }
    let at = it.pos();
    if it.next().is_some() {
        return Err((at, "stream node holds more entries than its counts say"));
    }
    Ok(())
}

type At<'a> = (usize, Elem<'a>);

fn next<'a>(it: &mut listpack::Iter<'a>) -> Result<At<'a>, (usize, &'static str)> {
    let at = it.pos();
    match it.next() {
        Some(Ok(e)) => Ok((at, e)),
        Some(Err(e)) => Err((at, e)),
        None => Err((at, "stream node ends inside an entry")),
    }
}

/// Appends the live entries of one node to `out`.
pub(crate) fn decode_node(
    master: StreamId,
    lp: &[u8],
    out: &mut Vec<StreamEntry>,
) -> Result<(), &'static str> {
    validate_node(lp).map_err(|(_, e)| e)?;
    let mut it = listpack::iter_any_count(lp).map_err(|(_, e)| e)?;
    let it = &mut it;
    let int = |e: Elem<'_>| e.as_i64().ok_or("stream node field is not an integer");
    let _count = int(pull(it)?)?;
    let _deleted = int(pull(it)?)?;
    let nfields = int(pull(it)?)?;
    let nfields = usize::try_from(nfields).map_err(|_| "stream master field count is negative")?;
    if nfields > it.remaining() / listpack::MIN_ENTRY {
        return Err("stream master field count exceeds the node");
    }
    let mut master_fields = Vec::with_capacity(nfields);
    for _ in 0..nfields {
        master_fields.push(pull(it)?.to_bytes());
    }
    if int(pull(it)?)? != 0 {
        return Err("stream master entry lacks its terminator");
    }
    while let Some(flags) = it.next() {
        let flags = int(flags?)?;
        let ms = int(pull(it)?)? as u64;
        let seq = int(pull(it)?)? as u64;
        let id = StreamId {
            ms: master.ms.wrapping_add(ms),
            seq: master.seq.wrapping_add(seq),
        };
        let mut fields = Vec::new();
        if flags & FLAG_SAMEFIELDS != 0 {
            if nfields > it.remaining() / listpack::MIN_ENTRY {
                return Err("stream entry field count exceeds the node");
            }
            fields.reserve(nfields);
            for f in &master_fields {
                fields.push((f.clone(), pull(it)?.to_bytes()));
            }
        } else {
            let n = int(pull(it)?)?;
            let n = usize::try_from(n).map_err(|_| "stream entry field count is negative")?;
            // A field and its value: two elements each.
            if n > it.remaining() / (2 * listpack::MIN_ENTRY) {
                return Err("stream entry field count exceeds the node");
            }
            fields.reserve(n);
            for _ in 0..n {
                let f = pull(it)?.to_bytes();
                let v = pull(it)?.to_bytes();
                fields.push((f, v));
            }
        }
        let _lp_count = int(pull(it)?)?;
        if flags & FLAG_DELETED == 0 {
            out.push(StreamEntry { id, fields });
        }
    }
    Ok(())
}

fn pull<'a>(it: &mut listpack::Iter<'a>) -> Result<Elem<'a>, &'static str> {
    it.next().ok_or("stream node ends inside an entry")?
}

/// Total size of an entry's fields, for chunk sizing.
pub(crate) fn entry_size(e: &StreamEntry) -> usize {
    16 + e
        .fields
        .iter()
        .map(|(f, v): &(Bytes, Bytes)| f.len() + v.len())
        .sum::<usize>()
}
