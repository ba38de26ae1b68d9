//! Value encodings: walkers that find a value's end without decoding it, and decoders
//! that turn it into [`Chunk`](crate::Chunk)s.
//!
//! - `listpack`, `ziplist`, `intset`, `zipmap`: the compact blob encodings.
//! - `stream`: the entries inside a stream's listpack nodes.
//! - `walk`: skips a value while it is captured, deciding when it is big.
//! - `decode`: the chunk state machine for big values and `decode_value`.

pub(crate) mod decode;
pub(crate) mod intset;
pub(crate) mod listpack;
pub(crate) mod pieces;
pub(crate) mod stream;
pub(crate) mod validate;
pub(crate) mod walk;
pub(crate) mod ziplist;
pub(crate) mod zipmap;

use bytes::Bytes;

/// One element of a ziplist or listpack.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Elem<'a> {
    Str(&'a [u8]),
    Int(i64),
}

impl Elem<'_> {
    pub(crate) fn to_bytes(self) -> Bytes {
        match self {
            Elem::Str(s) => Bytes::copy_from_slice(s),
            Elem::Int(i) => Bytes::from(i.to_string()),
        }
    }

    pub(crate) fn as_i64(self) -> Option<i64> {
        match self {
            Elem::Int(i) => Some(i),
            Elem::Str(s) => std::str::from_utf8(s).ok()?.parse().ok(),
        }
    }

    pub(crate) fn as_f64(self) -> Option<f64> {
        match self {
            Elem::Int(i) => Some(i as f64),
            Elem::Str(s) => crate::string::parse_f64(s),
        }
    }

    /// The integer Redis reads from it (`lpGetIntegerIfValid`, `string2ll`): an integer
    /// entry, or a string in canonical decimal form (no sign but '-', no leading zero, no
    /// "-0", fits i64).
    pub(crate) fn strict_i64(self) -> Option<i64> {
        match self {
            Elem::Int(i) => Some(i),
            Elem::Str(s) => canonical_i64(s),
        }
    }

    pub(crate) fn len(self) -> usize {
        match self {
            Elem::Str(s) => s.len(),
            Elem::Int(_) => 8,
        }
    }
}

/// `s` as an i64 when it is exactly how Redis prints that integer (`string2ll`'s rules), so
/// "12" and the integer 12 are the same member but "012" and "+12" are not.
pub(crate) fn canonical_i64(s: &[u8]) -> Option<i64> {
    let (neg, digits) = match s {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, s),
    };
    match digits {
        [] => return None,
        [b'0'] if !neg => return Some(0),
        [b'0', ..] => return None,
        _ if digits.len() > 19 => return None,
        _ => {}
    }
    let mut v: i64 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        let d = i64::from(d - b'0');
        v = v.checked_mul(10).and_then(|v| {
            if neg {
                v.checked_sub(d)
            } else {
                v.checked_add(d)
            }
        })?;
    }
    Some(v)
}
