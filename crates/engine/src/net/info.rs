//! Reading what a server says of itself: `INFO` fields and `CONFIG GET` values, and sizes in
//! words.

use std::collections::HashMap;

use ferry_resp::Frame;

use crate::error::Result;
use crate::net::conn::Conn;

/// The `field:value` lines of one `INFO` section.
pub async fn info(conn: &mut Conn, section: &str) -> Result<HashMap<String, String>> {
    let reply = conn.request_ok(&[&b"INFO"[..], section.as_bytes()]).await?;
    let text = reply.as_bytes().cloned().unwrap_or_default();
    Ok(parse_info(&String::from_utf8_lossy(&text)))
}

pub fn parse_info(text: &str) -> HashMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A number field of an `INFO` section, if there.
pub fn number(fields: &HashMap<String, String>, name: &str) -> Option<u64> {
    fields.get(name)?.parse().ok()
}

/// One `CONFIG GET` value; None when the server refuses `CONFIG` (managed services often do)
/// or does not know the setting.
pub async fn config_get(conn: &mut Conn, name: &str) -> Result<Option<String>> {
    match conn
        .request(&[&b"CONFIG"[..], b"GET", name.as_bytes()])
        .await?
    {
        Frame::Array(items) => Ok(items
            .get(1)
            .and_then(|f| f.as_bytes())
            .map(|b| String::from_utf8_lossy(b).into_owned())),
        _ => Ok(None),
    }
}

/// `1.5 MiB`, `12 KiB`, `800 B`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if value >= 100.0 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A size for a `CONFIG SET` line: whole megabytes, rounded up (`64mb`).
pub fn config_size(bytes: u64) -> String {
    format!("{}mb", bytes.div_ceil(1 << 20).max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_fields_and_writes_sizes() {
        let fields = parse_info("# Memory\r\nused_memory:1024\r\nmaxmemory_policy:noeviction\r\n");
        assert_eq!(number(&fields, "used_memory"), Some(1024));
        assert_eq!(fields["maxmemory_policy"], "noeviction");
        assert_eq!(size(800), "800 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(300 << 20), "300 MiB");
        assert_eq!(config_size(1), "1mb");
        assert_eq!(config_size((64 << 20) + 1), "65mb");
    }
}
