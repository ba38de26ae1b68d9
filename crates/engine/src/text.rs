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
