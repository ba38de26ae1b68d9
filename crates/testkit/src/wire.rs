//! Small helpers over redis-rs: pipelines whose replies keep per-command errors, reply
//! accessors, and key escaping for messages.

use redis::{ConnectionLike, Pipeline, Value};

/// Sends `pipe` (not a transaction) and returns one reply per command; a command's error
/// is its reply (`Value::ServerError`), not a failure of the whole call. `Err` means the
/// connection failed.
pub(crate) fn send(
    conn: &mut redis::Connection,
    pipe: &Pipeline,
) -> redis::RedisResult<Vec<Value>> {
    if pipe.is_empty() {
        return Ok(Vec::new());
    }
    conn.req_packed_commands(&pipe.get_packed_pipeline(), 0, pipe.len())
}

/// The error text of a reply, if it is an error.
pub(crate) fn error_text(v: &Value) -> Option<String> {
    match v {
        Value::ServerError(e) => Some(format!("{}: {}", e.code(), e.details().unwrap_or(""))),
        _ => None,
    }
}

/// A reply as bytes, for bulk and simple strings (and integers, as Redis prints them).
pub(crate) fn bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::BulkString(b) => Some(b.clone()),
        Value::SimpleString(s) => Some(s.as_bytes().to_vec()),
        Value::Okay => Some(b"OK".to_vec()),
        Value::Int(i) => Some(i.to_string().into_bytes()),
        _ => None,
    }
}

/// A reply as text (lossy), for status and bulk replies.
pub(crate) fn text(v: &Value) -> Option<String> {
    bytes(v).map(|b| String::from_utf8_lossy(&b).into_owned())
}

/// A reply as an integer.
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        other => text(other)?.parse().ok(),
    }
}

/// A reply as its items, for arrays (and RESP3 sets).
pub(crate) fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::Array(a) | Value::Set(a) => Some(a),
        _ => None,
    }
}

/// A key name as it appears in messages: printable ASCII as is, `"` and `\` escaped, other
/// bytes as `\xNN`, `\r`, `\n`, `\t`.
pub fn escape(key: &[u8]) -> String {
    let mut out = String::with_capacity(key.len());
    for &b in key {
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
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_binary_keys() {
        assert_eq!(escape(b"foo"), "foo");
        assert_eq!(escape(b"a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(escape(b"\x00\xff\r\n"), "\\x00\\xff\\r\\n");
    }
}
