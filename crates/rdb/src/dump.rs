//! DUMP/RESTORE payloads and Redis's CRC64.
//!
//! A payload is: type byte, the value's RDB bytes, the RDB version (2 bytes LE), and the
//! CRC64 (LE) of everything before it. From Redis 8.6 (RDB 13) a key with module metadata
//! has its KEY_META record ([`KeyMeta::key_metadata`](crate::KeyMeta::key_metadata)) before
//! the type byte.

use bytes::{BufMut, Bytes, BytesMut};
use crc::{CRC_64_REDIS, Crc, Digest, Table};

use crate::error::{Error, ErrorKind};
use crate::types::TypeByte;

static CRC64: Crc<u64, Table<16>> = Crc::<u64, Table<16>>::new(&CRC_64_REDIS);

/// Redis's CRC64 (Jones polynomial, reflected) of `data`.
pub fn crc64(data: &[u8]) -> u64 {
    CRC64.checksum(data)
}

/// A running CRC64, fed piece by piece.
#[derive(Clone)]
pub struct Crc64(Digest<'static, u64, Table<16>>);

impl Crc64 {
    pub fn new() -> Self {
        Self(CRC64.digest())
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> u64 {
        self.0.finalize()
    }
}

impl Default for Crc64 {
    fn default() -> Self {
        Self::new()
    }
}

/// Builds a DUMP/RESTORE payload from a value's raw RDB bytes.
pub fn payload(type_byte: TypeByte, raw: &[u8], rdb_version: u16) -> Bytes {
    payload_with_meta(&[], type_byte, raw, rdb_version)
}

/// Builds a payload for a key with RDB 13 key metadata: `key_metadata` (the bytes of
/// [`KeyMeta::key_metadata`](crate::KeyMeta::key_metadata), opcode included; empty for none)
/// goes first, as Redis 8.6's DUMP writes it and its RESTORE reads it.
pub fn payload_with_meta(
    key_metadata: &[u8],
    type_byte: TypeByte,
    raw: &[u8],
    rdb_version: u16,
) -> Bytes {
    let mut b = BytesMut::with_capacity(key_metadata.len() + raw.len() + 11);
    b.put_slice(key_metadata);
    b.put_u8(type_byte.0);
    b.put_slice(raw);
    b.put_u16_le(rdb_version);
    let crc = crc64(&b);
    b.put_u64_le(crc);
    b.freeze()
}

/// Splits and verifies a payload (layout and CRC); returns (type, raw value, version). A
/// payload with RDB 13 key metadata is refused as unsupported rather than split with its
/// metadata dropped.
pub fn parse_payload(p: &[u8]) -> Result<(TypeByte, &[u8], u16), Error> {
    let bad = |what| Error::new(ErrorKind::BadPayload(what), 0);
    if p.len() < 11 {
        return Err(bad("shorter than type, version and checksum"));
    }
    let (body, crc) = p.split_at(p.len() - 8);
    let file = u64::from_le_bytes(crc.try_into().map_err(|_| bad("checksum"))?);
    let computed = crc64(body);
    if file != computed {
        return Err(Error::new(
            ErrorKind::ChecksumMismatch { file, computed },
            0,
        ));
    }
    let version = u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]);
    let ty = TypeByte(body[0]);
    if ty.0 == crate::types::opcode::KEY_META {
        return Err(Error::new(
            ErrorKind::Unsupported("DUMP payload with key metadata (RDB 13 KEY_META)"),
            0,
        ));
    }
    if ty.kind().is_none() {
        return Err(Error::new(ErrorKind::UnknownType(ty.0), 0));
    }
    Ok((ty, &body[1..body.len() - 2], version))
}

/// [`parse_payload`], then the value checked as deeply as Redis's `sanitize-dump-payload
/// yes` checks it ([`validate_value`](crate::validate_value)): what a `RESTORE` arriving in a
/// replication stream must pass before it is sent on. The error's offset is the byte in the
/// payload.
pub fn validate_payload(p: &[u8]) -> Result<(TypeByte, &[u8], u16), Error> {
    let (ty, raw, version) = parse_payload(p)?;
    crate::value::validate::validate(ty, raw, version)
        .map_err(|(at, what)| Error::new(ErrorKind::Corrupt(what), 1 + at as u64))?;
    Ok((ty, raw, version))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc64_check_value() {
        assert_eq!(crc64(b"123456789"), 0xe9c6_d914_c4b8_d9ca);
        let mut d = Crc64::new();
        d.update(b"1234");
        d.update(b"56789");
        assert_eq!(d.finish(), 0xe9c6_d914_c4b8_d9ca);
    }

    #[test]
    fn payload_round_trip() {
        let raw = b"\x05hello";
        let p = payload(TypeByte::STRING, raw, 10);
        assert_eq!(p.len(), 1 + raw.len() + 2 + 8);
        let (t, r, v) = parse_payload(&p).unwrap();
        assert_eq!((t, r, v), (TypeByte::STRING, &raw[..], 10));
        let mut bad = p.to_vec();
        bad[2] ^= 1;
        assert!(matches!(
            parse_payload(&bad).unwrap_err().kind(),
            ErrorKind::ChecksumMismatch { .. }
        ));
        assert!(parse_payload(&p[..5]).is_err());
    }
}
