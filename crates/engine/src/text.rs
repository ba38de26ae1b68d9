//! Bytes in messages: keys and values may be binary, messages are one readable line.

/// Shows binary key names the way redis-cli does: printable ASCII as is, the rest as \xNN.
pub fn escape(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() + 2);
    out.push('"');
    for &b in bytes.iter().take(200) {
        match b {
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b'\n' => out.push_str("\\n"),
            b'\r' => out.push_str("\\r"),
            b'\t' => out.push_str("\\t"),
            0x20..=0x7e => out.push(b as char),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    if bytes.len() > 200 {
        out.push_str("...");
    }
    out.push('"');
    out
}

/// Bytes in JSON by the one lossless rule every ferry output follows (`ferry verify --out`,
/// `ferry rdb`): valid UTF-8 as a JSON string, anything else as `{"base64":"..."}`.
pub fn bytes_json(bytes: &[u8]) -> serde_json::Value {
    match std::str::from_utf8(bytes) {
        Ok(s) => serde_json::Value::String(s.to_owned()),
        Err(_) => serde_json::json!({ "base64": base64(bytes) }),
    }
}

/// Standard padded base64.
pub fn base64(bytes: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [
            group[0],
            *group.get(1).unwrap_or(&0),
            *group.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= group.len() {
                out.push(B64[(v >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_pads_like_the_standard() {
        for (plain, encoded) in [
            (&b""[..], ""),
            (b"f", "Zg=="),
            (b"fo", "Zm8="),
            (b"foo", "Zm9v"),
            (b"foob", "Zm9vYg=="),
            (b"\xff\xfek", "//5r"),
        ] {
            assert_eq!(base64(plain), encoded);
        }
        assert_eq!(bytes_json(b"caf\xc3\xa9"), serde_json::json!("café"));
        assert_eq!(
            bytes_json(b"\xff\x00"),
            serde_json::json!({ "base64": "/wA=" })
        );
    }

    #[test]
    fn escape_shows_binary_as_redis_cli_does() {
        assert_eq!(escape(b"k\xff\x00\"q\\\n"), r#""k\xff\x00\"q\\\n""#);
    }
}
