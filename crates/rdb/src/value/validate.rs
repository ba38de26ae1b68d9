//! Deep validation of a whole value's raw bytes (as captured for `RESTORE`), as strict as
//! Redis's `sanitize-dump-payload yes`: a value that passes cannot trip an assertion in the
//! server that restores it, whatever that server's own setting.
//!
//! The rules are those of Redis's `rdbLoadObject` with `deep_integrity_validation` and of
//! `lpValidateIntegrity`, `ziplistValidateIntegrity`, `zipmapValidateIntegrity`,
//! `intsetValidateIntegrity` and `streamValidateListpackIntegrity` (see the blob modules):
//! every blob entry inside its blob, counts that match, no duplicate member or field, no NaN
//! score, LZF data that decompresses to exactly its stated length, stream nodes and
//! consumer groups consistent (unique node keys, group names, consumers and PEL ids; every
//! consumer's pending id in its group's PEL and every group PEL entry owned).
//!
//! Memory: a blob stored LZF-compressed is decompressed (bounded by [`MAX_ELEMENT_BYTES`]);
//! duplicate checks keep one set of the value's members; plain strings are checked in place.

use std::borrow::Cow;
use std::collections::HashSet;

use super::{Elem, canonical_i64, intset, listpack, stream, ziplist, zipmap};
use crate::string::MAX_ELEMENT_BYTES;
use crate::types::{TypeByte, module_opcode};

/// An error: the offset in the value's raw bytes and what is wrong there.
pub(crate) type Bad = (usize, &'static str);

/// Redis's `EB_EXPIRE_TIME_MAX`: the largest field expiry a listpack-ex hash may hold.
const EB_EXPIRE_TIME_MAX: i64 = (1 << 48) - 1;

/// Redis's `LISTPACK_MAX_SAFETY_SIZE`: a zipmap field and value together must fit.
const LISTPACK_MAX_SAFETY: u64 = 1 << 30;

/// A member as Redis compares them: integers and their canonical text are the same.
#[derive(PartialEq, Eq, Hash)]
enum Member<'a> {
    Int(i64),
    Bytes(Cow<'a, [u8]>),
}

impl<'a> Member<'a> {
    fn from_bytes(b: Cow<'a, [u8]>) -> Self {
        match canonical_i64(&b) {
            Some(i) => Member::Int(i),
            None => Member::Bytes(b),
        }
    }

    fn from_elem(e: Elem<'a>) -> Self {
        match e {
            Elem::Int(i) => Member::Int(i),
            Elem::Str(s) => Member::from_bytes(Cow::Borrowed(s)),
        }
    }
}

/// Members compared one by one while there are few of them, hashed past that.
const FEW: usize = 16;

/// Remembers members to refuse a duplicate. Most values are small: their members are
/// compared in place, without allocating; a set is built only for more than [`FEW`]. Never
/// sized from a count the bytes claim.
// The inline variant is the point: it lives on the stack for one value's check.
#[allow(clippy::large_enum_variant)]
enum Unique<'a> {
    Few([Option<Member<'a>>; FEW], usize),
    Many(HashSet<Member<'a>>),
}

impl<'a> Unique<'a> {
    fn new() -> Self {
        Unique::Few([const { None }; FEW], 0)
    }

    fn add(&mut self, m: Member<'a>, at: usize, what: &'static str) -> Result<(), Bad> {
        match self {
            Unique::Few(few, n) => {
                if few[..*n].iter().any(|x| x.as_ref() == Some(&m)) {
                    return Err((at, what));
                }
                if *n < FEW {
                    few[*n] = Some(m);
                    *n += 1;
                } else {
                    let mut all: HashSet<Member<'a>> =
                        few.iter_mut().filter_map(Option::take).collect();
                    all.insert(m);
                    *self = Unique::Many(all);
                }
                Ok(())
            }
            Unique::Many(all) => {
                if all.insert(m) {
                    Ok(())
                } else {
                    Err((at, what))
                }
            }
        }
    }
}

struct Cur<'a> {
    b: &'a [u8],
    pos: usize,
}

/// A string read from the value: where it starts and its bytes (decompressed if LZF).
type Str<'a> = (usize, Cow<'a, [u8]>);

impl<'a> Cur<'a> {
    fn truncated(&self) -> Bad {
        (self.pos, "value ends early")
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Bad> {
        let end = usize::try_from(n)
            .ok()
            .and_then(|n| self.pos.checked_add(n))
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| self.truncated())?;
        let s = &self.b[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }

    fn u64_le(&mut self) -> Result<u64, Bad> {
        let s = self.take(8)?;
        Ok(u64::from_le_bytes(s.try_into().expect("8 bytes")))
    }

    /// A length prefix: `Ok(Ok(n))` plain, `Ok(Err(enc))` a special string encoding.
    fn len_or_enc(&mut self) -> Result<Result<u64, u8>, Bad> {
        let at = self.pos;
        let b = self.u8()?;
        Ok(match b >> 6 {
            0 => Ok(u64::from(b & 0x3F)),
            1 => Ok(u64::from(b & 0x3F) << 8 | u64::from(self.u8()?)),
            2 => match b {
                0x80 => Ok(u64::from(u32::from_be_bytes(
                    self.take(4)?.try_into().expect("4 bytes"),
                ))),
                0x81 => Ok(u64::from_be_bytes(
                    self.take(8)?.try_into().expect("8 bytes"),
                )),
                _ => return Err((at, "unknown length encoding")),
            },
            _ => Err(b & 0x3F),
        })
    }

    fn len(&mut self) -> Result<u64, Bad> {
        let at = self.pos;
        self.len_or_enc()?
            .map_err(|_| (at, "string encoding where a length was expected"))
    }

    /// A string; LZF data is checked, and decompressed only when `need` asks for the bytes.
    fn string(&mut self, need: bool) -> Result<Str<'a>, Bad> {
        let at = self.pos;
        match self.len_or_enc()? {
            Ok(n) => Ok((at, Cow::Borrowed(self.take(n)?))),
            Err(w @ 0..=2) => {
                let n = [1u64, 2, 4][usize::from(w)];
                let s = self.take(n)?;
                let v = match w {
                    0 => i64::from(s[0] as i8),
                    1 => i64::from(i16::from_le_bytes([s[0], s[1]])),
                    _ => i64::from(i32::from_le_bytes([s[0], s[1], s[2], s[3]])),
                };
                Ok((at, Cow::Owned(v.to_string().into_bytes())))
            }
            Err(3) => {
                let clen = self.len()?;
                let ulen = self.len()?;
                if clen == 0 || ulen > MAX_ELEMENT_BYTES {
                    return Err((at, "LZF lengths are impossible"));
                }
                let data = self.take(clen)?;
                if !need || ulen == 0 {
                    lzf_check(data, ulen).map_err(|e| (at, e))?;
                    return Ok((at, Cow::Borrowed(&[][..])));
                }
                // A buffer the size of the data, not the stream's 64 KiB (zeroed for every
                // compressed string: 14% of a full copy's CPU).
                let mut rd = crate::reader::Reader::with_buffer(data, false, data.len());
                let out = crate::string::lzf_whole(&mut rd, clen, ulen)
                    .ok()
                    .filter(|o| o.len() as u64 == ulen)
                    .ok_or((at, "LZF data does not decompress to its stated length"))?;
                Ok((at, Cow::Owned(out)))
            }
            Err(_) => Err((at, "unknown string encoding")),
        }
    }

    /// A count of a collection, which Redis never writes as zero.
    fn count(&mut self, what: &'static str) -> Result<u64, Bad> {
        let at = self.pos;
        let n = self.len()?;
        if n == 0 {
            return Err((at, what));
        }
        Ok(n)
    }
}

/// Checks LZF data without producing output: every literal run and back reference inside
/// the input and the output, ending at exactly `ulen` bytes (liblzf's own checks).
fn lzf_check(data: &[u8], ulen: u64) -> Result<(), &'static str> {
    let bad = "LZF data does not decompress to its stated length";
    // Whatever data claims 0 bytes, Redis loads it as the empty string.
    if ulen == 0 {
        return Ok(());
    }
    let mut i = 0usize;
    let mut out = 0u64;
    while i < data.len() {
        let ctrl = usize::from(data[i]);
        i += 1;
        if ctrl < 32 {
            let n = ctrl + 1;
            if i + n > data.len() || out + n as u64 > ulen {
                return Err(bad);
            }
            i += n;
            out += n as u64;
        } else {
            let mut len = ctrl >> 5;
            if len == 7 {
                len += usize::from(*data.get(i).ok_or(bad)?);
                i += 1;
            }
            let back = ((ctrl & 0x1F) << 8) + usize::from(*data.get(i).ok_or(bad)?) + 1;
            i += 1;
            let len = len as u64 + 2;
            if back as u64 > out || out + len > ulen {
                return Err(bad);
            }
            out += len;
        }
    }
    if out == ulen { Ok(()) } else { Err(bad) }
}

/// Validates the value of type `ty` whose serialized bytes are `raw` (as in
/// [`Record::raw`](crate::Record::raw)).
/// A string value's bytes (type 0): borrowed from `raw` when stored plain, made when stored as
/// an integer or LZF-compressed. Fails unless the string is all of `raw`.
pub(crate) fn string_value(raw: &[u8]) -> Result<Cow<'_, [u8]>, Bad> {
    let mut c = Cur { b: raw, pos: 0 };
    let (_, s) = c.string(true)?;
    if c.pos != raw.len() {
        return Err((c.pos, "trailing bytes after the value"));
    }
    Ok(s)
}

pub(crate) fn validate(ty: TypeByte, raw: &[u8], version: u16) -> Result<(), Bad> {
    let mut c = Cur { b: raw, pos: 0 };
    let c = &mut c;
    match ty.0 {
        0 => {
            c.string(false)?;
        }
        1 => {
            let n = c.count("empty list")?;
            for _ in 0..n {
                c.string(false)?;
            }
        }
        2 => {
            let n = c.count("empty set")?;
            let mut seen = Unique::new();
            for _ in 0..n {
                let (at, m) = c.string(true)?;
                seen.add(Member::from_bytes(m), at, "duplicate set member")?;
            }
        }
        3 | 5 => {
            let n = c.count("empty zset")?;
            let mut seen = Unique::new();
            for _ in 0..n {
                let (at, m) = c.string(true)?;
                let score_at = c.pos;
                let score = if ty.0 == 5 {
                    f64::from_bits(c.u64_le()?)
                } else {
                    match c.u8()? {
                        253 => f64::NAN,
                        254 => f64::INFINITY,
                        255 => f64::NEG_INFINITY,
                        l => crate::string::parse_f64(c.take(u64::from(l))?)
                            .ok_or((score_at, "zset score is not a number"))?,
                    }
                };
                if score.is_nan() {
                    return Err((score_at, "zset score is NaN"));
                }
                seen.add(Member::from_bytes(m), at, "duplicate zset member")?;
            }
        }
        4 => {
            let n = c.count("empty hash")?;
            let mut seen = Unique::new();
            for _ in 0..n {
                let (at, f) = c.string(true)?;
                c.string(false)?;
                seen.add(Member::from_bytes(f), at, "duplicate hash field")?;
            }
        }
        22 if ty.is_valkey_hash2(version) => {
            let n = c.count("empty hash")?;
            let mut seen = Unique::new();
            for _ in 0..n {
                let (at, f) = c.string(true)?;
                c.string(false)?;
                c.take(8)?;
                seen.add(Member::from_bytes(f), at, "duplicate hash field")?;
            }
        }
        22 | 24 => {
            if ty.0 == 24 {
                c.take(8)?;
            }
            let n = c.count("empty hash")?;
            let mut seen = Unique::new();
            for _ in 0..n {
                c.len()?;
                let (at, f) = c.string(true)?;
                c.string(false)?;
                seen.add(Member::from_bytes(f), at, "duplicate hash field")?;
            }
        }
        9..=13 | 16 | 17 | 20 | 23 | 25 => {
            if ty.0 == 25 {
                c.take(8)?;
            }
            let (at, blob) = c.string(true)?;
            // An offset inside a compressed blob means nothing in the file: name its start.
            let plain = raw
                .get(at..)
                .is_some_and(|r| r.first().is_some_and(|b| b >> 6 != 3));
            let data_at = if plain { c.pos - blob.len() } else { at };
            blob_value(ty.0, &blob).map_err(|(o, e)| (if plain { data_at + o } else { at }, e))?;
        }
        14 | 18 => {
            let n = c.count("empty list")?;
            for _ in 0..n {
                let plain_node = if ty.0 == 18 {
                    let at = c.pos;
                    match c.len()? {
                        1 => true,
                        2 => false,
                        _ => return Err((at, "unknown quicklist node container")),
                    }
                } else {
                    false
                };
                let (at, node) = c.string(!plain_node)?;
                if plain_node {
                    continue;
                }
                let compressed = raw[at] >> 6 == 3;
                let data_at = if compressed { at } else { c.pos - node.len() };
                let r = if ty.0 == 18 {
                    listpack::validate(&node, true).map(|_| ())
                } else {
                    ziplist::validate(&node).map(|_| ())
                };
                r.map_err(|(o, e)| (if compressed { at } else { data_at + o }, e))?;
            }
        }
        15 | 19 | 21 | 26 => stream_value(c, ty.0)?,
        7 => {
            c.len()?;
            loop {
                let at = c.pos;
                match c.len()? {
                    module_opcode::EOF => break,
                    module_opcode::SINT | module_opcode::UINT => {
                        c.len()?;
                    }
                    module_opcode::FLOAT => {
                        c.take(4)?;
                    }
                    module_opcode::DOUBLE => {
                        c.take(8)?;
                    }
                    module_opcode::STRING => {
                        c.string(false)?;
                    }
                    _ => return Err((at, "unknown module opcode")),
                }
            }
        }
        _ => return Err((0, "value type this validator does not know")),
    }
    if c.pos != raw.len() {
        return Err((c.pos, "trailing bytes after the value"));
    }
    Ok(())
}

/// A compact blob value (zipmap, ziplist, intset, listpack) with its type's element rules.
fn blob_value(ty: u8, b: &[u8]) -> Result<(), Bad> {
    match ty {
        9 => {
            zipmap::validate(b)?;
            let mut seen = Unique::new();
            for (k, v) in zipmap::pairs(b).map_err(|e| (0, e))? {
                if k.len() as u64 + v.len() as u64 > LISTPACK_MAX_SAFETY {
                    return Err((0, "zipmap entry too big for a listpack"));
                }
                seen.add(
                    Member::from_bytes(Cow::Borrowed(k)),
                    0,
                    "duplicate hash field",
                )?;
            }
            Ok(())
        }
        11 => intset::validate(b).map(|_| ()),
        10 => ziplist::validate(b).map(|_| ()),
        12 | 13 => {
            ziplist::validate(b)?;
            // The ziplist iterator does not say where each entry starts: name the blob.
            let mut it = ziplist::iter_validated(b);
            tuples(ty, || {
                it.next().map(|e| e.map(|e| (0, e)).map_err(|e| (0, e)))
            })
        }
        _ => {
            listpack::validate(b, true)?;
            let mut it = listpack::iter_validated(b);
            tuples(ty, || {
                let at = it.pos();
                it.next().map(|e| e.map(|e| (at, e)).map_err(|e| (at, e)))
            })
        }
    }
}

/// The elements of a ziplist or listpack value, as its type's tuples: member (or field)
/// unique, a zset's score a number, a listpack-ex hash's expiry a valid time in Redis's
/// order.
fn tuples<'a>(
    ty: u8,
    mut next: impl FnMut() -> Option<Result<(usize, Elem<'a>), Bad>>,
) -> Result<(), Bad> {
    let tuple = match ty {
        20 => 1,
        23 | 25 => 3,
        _ => 2,
    };
    let what = match ty {
        20 => "duplicate set member",
        12 | 17 => "duplicate zset member",
        _ => "duplicate hash field",
    };
    let mut seen = Unique::new();
    let mut last_ttl = -1i64;
    let mut i = 0usize;
    while let Some(e) = next() {
        let (at, e) = e?;
        match i % tuple {
            0 => seen.add(Member::from_elem(e), at, what)?,
            1 if matches!(ty, 12 | 17) => match e.as_f64() {
                Some(s) if !s.is_nan() => {}
                _ => return Err((at, "zset score is not a number")),
            },
            2 => {
                let ttl = e
                    .strict_i64()
                    .filter(|t| (0..=EB_EXPIRE_TIME_MAX).contains(t))
                    .ok_or((at, "hash field expiry is not a valid time"))?;
                // Fields with an expiry come first, in ascending expiry (Redis's own order).
                if ttl != 0 && (last_ttl == 0 || ttl < last_ttl) {
                    return Err((at, "hash field expiries are out of order"));
                }
                last_ttl = ttl;
            }
            _ => {}
        }
        i += 1;
    }
    if !i.is_multiple_of(tuple) {
        return Err((
            0,
            "compact encoding has an element count that is not whole tuples",
        ));
    }
    Ok(())
}

/// A stream (types 15, 19, 21, 26): its nodes, metadata and consumer groups.
fn stream_value(c: &mut Cur<'_>, ty: u8) -> Result<(), Bad> {
    let nodes = c.len()?;
    let mut keys = HashSet::new();
    for _ in 0..nodes {
        let (at, key) = c.string(true)?;
        if key.len() != 16 {
            return Err((at, "stream node key is not 16 bytes"));
        }
        if !keys.insert(<[u8; 16]>::try_from(&key[..]).expect("16 bytes")) {
            return Err((at, "stream node key appears twice"));
        }
        let (at, lp) = c.string(true)?;
        let compressed = c.b[at] >> 6 == 3;
        let data_at = if compressed { at } else { c.pos - lp.len() };
        stream::validate_node(&lp)
            .map_err(|(o, e)| (if compressed { at } else { data_at + o }, e))?;
    }
    let meta_at = c.pos;
    let length = c.len()?;
    for _ in 0..if ty >= 19 { 7 } else { 2 } {
        c.len()?;
    }
    if length > 0 && nodes == 0 {
        return Err((meta_at, "stream length is not zero but it has no entries"));
    }
    let groups = c.len()?;
    let mut names = HashSet::new();
    for _ in 0..groups {
        let (at, name) = c.string(true)?;
        if !names.insert(name) {
            return Err((at, "consumer group name appears twice"));
        }
        c.len()?;
        c.len()?;
        if ty >= 19 {
            c.len()?;
        }
        let pel = c.len()?;
        // Pending id -> owned yet. Grows with what is read, never with what is claimed.
        let mut pending = std::collections::HashMap::new();
        for _ in 0..pel {
            let at = c.pos;
            let id = c.take(16)?;
            c.take(8)?;
            c.len()?;
            if pending.insert(id, false).is_some() {
                return Err((at, "group PEL holds an id twice"));
            }
        }
        let consumers = c.len()?;
        let mut cnames = HashSet::new();
        for _ in 0..consumers {
            let (at, cname) = c.string(true)?;
            if !cnames.insert(cname) {
                return Err((at, "consumer appears twice in a group"));
            }
            c.take(if ty >= 21 { 16 } else { 8 })?;
            let own = c.len()?;
            let mut mine = HashSet::new();
            for _ in 0..own {
                let at = c.pos;
                let id = c.take(16)?;
                match pending.get_mut(id) {
                    Some(owned) => *owned = true,
                    None => return Err((at, "consumer PEL entry missing from the group PEL")),
                }
                if !mine.insert(id) {
                    return Err((at, "consumer PEL holds an id twice"));
                }
            }
        }
        if pending.values().any(|owned| !owned) {
            return Err((at, "group PEL entry has no consumer"));
        }
    }
    if ty == 26 {
        c.len()?;
        c.len()?;
        let producers = c.len()?;
        for _ in 0..producers {
            c.string(false)?;
            let n = c.len()?;
            for _ in 0..n {
                c.string(false)?;
                c.len()?;
                c.len()?;
            }
        }
        c.len()?;
        c.len()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lzf_check_agrees_with_decompression() {
        let data = b"abcabcabcabcabcabcabcabcabcabc hello hello hello";
        let c = lzf::compress(data).unwrap();
        assert!(lzf_check(&c, data.len() as u64).is_ok());
        assert!(lzf_check(&c, data.len() as u64 + 1).is_err());
        assert!(lzf_check(&c[..c.len() - 1], data.len() as u64).is_err());
        // A back reference before the start of the output.
        assert!(lzf_check(&[0x20, 0x05], 3).is_err());
    }

    #[test]
    fn canonical_integers() {
        assert_eq!(canonical_i64(b"0"), Some(0));
        assert_eq!(canonical_i64(b"-12"), Some(-12));
        assert_eq!(canonical_i64(b"9223372036854775807"), Some(i64::MAX));
        assert_eq!(canonical_i64(b"-9223372036854775808"), Some(i64::MIN));
        for s in [
            &b"012"[..],
            b"+1",
            b"-0",
            b"",
            b"-",
            b"9223372036854775808",
            b"1a",
        ] {
            assert_eq!(canonical_i64(s), None, "{s:?}");
        }
    }
}
