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
pub(crate) mod stream;
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

    pub(crate) fn len(self) -> usize {
        match self {
            Elem::Str(s) => s.len(),
            Elem::Int(_) => 8,
        }
    }
}
