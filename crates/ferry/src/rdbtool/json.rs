//! Writing JSON by hand, straight into the output buffer: byte strings by the lossless rule
//! (valid UTF-8 as a JSON string, anything else as `{"base64":"..."}`), numbers, scores,
//! and the streaming pieces (base64 and UTF-8 checks across parts) that big values need.

use std::io::{self, Write};

const HEX: &[u8; 16] = b"0123456789abcdef";

/// 0: byte passes through; 1: needs `\u00XX`; other: the letter after a backslash.
const ESCAPE: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 0x20 {
        t[i] = 1;
        i += 1;
    }
    t[b'\n' as usize] = b'n';
    t[b'\r' as usize] = b'r';
    t[b'\t' as usize] = b't';
    t[0x08] = b'b';
    t[0x0c] = b'f';
    t[b'"' as usize] = b'"';
    t[b'\\' as usize] = b'\\';
    t
};

/// Writes the inside of a JSON string (no quotes). `s` must be valid UTF-8 as a whole, but
/// may be cut anywhere: only ASCII bytes are ever escaped.
pub fn escaped(out: &mut impl Write, s: &[u8]) -> io::Result<()> {
    let mut start = 0;
    for (i, &b) in s.iter().enumerate() {
        let e = ESCAPE[b as usize];
        if e == 0 {
            continue;
        }
        out.write_all(&s[start..i])?;
        if e == 1 {
            out.write_all(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[(b >> 4) as usize],
                HEX[(b & 15) as usize],
            ])?;
        } else {
            out.write_all(&[b'\\', e])?;
        }
        start = i + 1;
    }
    out.write_all(&s[start..])
}

/// A quoted JSON string from UTF-8 text.
pub fn string(out: &mut impl Write, s: &str) -> io::Result<()> {
    out.write_all(b"\"")?;
    escaped(out, s.as_bytes())?;
    out.write_all(b"\"")
}

/// A byte string by the lossless rule: valid UTF-8 as a JSON string, otherwise
/// `{"base64":"..."}` (standard alphabet, padded).
pub fn bytes(out: &mut impl Write, b: &[u8]) -> io::Result<()> {
    if std::str::from_utf8(b).is_ok() {
        out.write_all(b"\"")?;
        escaped(out, b)?;
        out.write_all(b"\"")
    } else {
        out.write_all(b"{\"base64\":\"")?;
        let mut enc = Base64::default();
        enc.write(out, b)?;
        enc.finish(out)?;
        out.write_all(b"\"}")
    }
}

/// The same rule into a `serde_json::Value` (for the stats report): the engine's, which
/// `ferry verify --out` uses too.
pub use ferry_engine::text::bytes_json as bytes_value;

/// Standard padded base64 of `b`.
pub use ferry_engine::text::base64;

pub fn u64(out: &mut impl Write, mut n: u64) -> io::Result<()> {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.write_all(&buf[i..])
}

pub fn i64(out: &mut impl Write, n: i64) -> io::Result<()> {
    if n < 0 {
        out.write_all(b"-")?;
    }
    u64(out, n.unsigned_abs())
}

pub fn opt_i64(out: &mut impl Write, n: Option<i64>) -> io::Result<()> {
    match n {
        Some(n) => i64(out, n),
        None => out.write_all(b"null"),
    }
}

pub fn opt_u64(out: &mut impl Write, n: Option<u64>) -> io::Result<()> {
    match n {
        Some(n) => u64(out, n),
        None => out.write_all(b"null"),
    }
}

/// A zset score: a JSON number when finite (shortest form that reads back exactly),
/// else the strings `"inf"`, `"-inf"` or `"nan"` (JSON has no infinity).
pub fn score(out: &mut impl Write, s: f64) -> io::Result<()> {
    if s.is_finite() {
        serde_json::to_writer(out, &s).map_err(io::Error::other)
    } else if s.is_nan() {
        out.write_all(b"\"nan\"")
    } else if s > 0.0 {
        out.write_all(b"\"inf\"")
    } else {
        out.write_all(b"\"-inf\"")
    }
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Base64 over bytes that arrive in parts: up to two bytes wait for the next part.
#[derive(Default)]
pub struct Base64 {
    carry: [u8; 2],
    n: usize,
}

fn quad(a: u8, b: u8, c: u8) -> [u8; 4] {
    let v = (u32::from(a) << 16) | (u32::from(b) << 8) | u32::from(c);
    [
        B64[(v >> 18) as usize & 63],
        B64[(v >> 12) as usize & 63],
        B64[(v >> 6) as usize & 63],
        B64[v as usize & 63],
    ]
}

impl Base64 {
    pub fn write(&mut self, out: &mut impl Write, mut b: &[u8]) -> io::Result<()> {
        while self.n > 0 && !b.is_empty() {
            if self.n == 2 {
                out.write_all(&quad(self.carry[0], self.carry[1], b[0]))?;
                self.n = 0;
            } else {
                self.carry[self.n] = b[0];
                self.n += 1;
            }
            b = &b[1..];
        }
        let mut block = [0u8; 4 * 256];
        let mut triples = b.chunks_exact(3);
        loop {
            let mut len = 0;
            for t in triples.by_ref().take(256) {
                block[len..len + 4].copy_from_slice(&quad(t[0], t[1], t[2]));
                len += 4;
            }
            if len == 0 {
                break;
            }
            out.write_all(&block[..len])?;
        }
        for &c in triples.remainder() {
            self.carry[self.n] = c;
            self.n += 1;
        }
        Ok(())
    }

    /// Writes the last (padded) group.
    pub fn finish(&mut self, out: &mut impl Write) -> io::Result<()> {
        let r = match self.n {
            0 => return Ok(()),
            1 => {
                let q = quad(self.carry[0], 0, 0);
                [q[0], q[1], b'=', b'=']
            }
            _ => {
                let q = quad(self.carry[0], self.carry[1], 0);
                [q[0], q[1], q[2], b'=']
            }
        };
        self.n = 0;
        out.write_all(&r)
    }
}

/// Checks that parts form valid UTF-8 together, a character may be cut between parts.
#[derive(Default)]
pub struct Utf8Check {
    carry: [u8; 4],
    n: usize,
    bad: bool,
}

impl Utf8Check {
    pub fn feed(&mut self, mut b: &[u8]) {
        if self.bad {
            return;
        }
        if self.n > 0 {
            let want = match self.carry[0] {
                0xC0..=0xDF => 2,
                0xE0..=0xEF => 3,
                _ => 4,
            };
            while self.n < want && !b.is_empty() {
                self.carry[self.n] = b[0];
                self.n += 1;
                b = &b[1..];
            }
            if self.n < want {
                return;
            }
            if std::str::from_utf8(&self.carry[..self.n]).is_err() {
                self.bad = true;
                return;
            }
            self.n = 0;
        }
        if let Err(e) = std::str::from_utf8(b) {
            if e.error_len().is_some() {
                self.bad = true;
            } else {
                let tail = &b[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.n = tail.len();
            }
        }
    }

    /// True if everything fed is valid UTF-8.
    pub fn finish(&self) -> bool {
        !self.bad && self.n == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64_parts(parts: &[&[u8]]) -> String {
        let mut out = Vec::new();
        let mut e = Base64::default();
        for p in parts {
            e.write(&mut out, p).unwrap();
        }
        e.finish(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn base64_known_values() {
        for (i, o) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(i.as_bytes()), o);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0x00]), "//4A");
    }

    #[test]
    fn base64_in_parts_equals_whole() {
        let data: Vec<u8> = (0..2000u32).map(|i| (i * 7 + 3) as u8).collect();
        let whole = base64(&data);
        for cut in [1, 2, 3, 4, 5, 7, 100, 767, 768, 769, 1999] {
            let parts: Vec<&[u8]> = data.chunks(cut).collect();
            assert_eq!(b64_parts(&parts), whole, "cut {cut}");
        }
        // A byte left over after a two-byte carry was used must not see the old carry.
        assert_eq!(b64_parts(&[&[0xff, 0xff], &[0xff, 0x00]]), "////AA==");
    }

    #[test]
    fn utf8_across_parts() {
        let s = "aé€😀z\u{0}".repeat(5);
        let b = s.as_bytes();
        for cut in 1..9 {
            let mut c = Utf8Check::default();
            for p in b.chunks(cut) {
                c.feed(p);
            }
            assert!(c.finish(), "cut {cut}");
        }
        let mut bad = b.to_vec();
        bad.insert(3, 0xff);
        for cut in 1..9 {
            let mut c = Utf8Check::default();
            for p in bad.chunks(cut) {
                c.feed(p);
            }
            assert!(!c.finish(), "cut {cut}");
        }
        let mut c = Utf8Check::default();
        c.feed(&[0xe2, 0x82]);
        assert!(!c.finish(), "cut-off character at the end");
    }

    #[test]
    fn escaping_and_rule() {
        let mut out = Vec::new();
        bytes(&mut out, "a\"b\\c\n\u{1}é".as_bytes()).unwrap();
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001é\"");
        let v: serde_json::Value = serde_json::from_str(&s).unwrap();
        assert_eq!(v, "a\"b\\c\n\u{1}é");
        let mut out = Vec::new();
        bytes(&mut out, &[b'a', 0xff]).unwrap();
        assert_eq!(out, b"{\"base64\":\"Yf8=\"}");
        // Every byte escapes to valid JSON.
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut out = Vec::new();
        bytes(&mut out, all.as_bytes()).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v, all.as_str());
    }

    #[test]
    fn numbers() {
        let mut out = Vec::new();
        for n in [0, -1, i64::MIN, i64::MAX, 1700000000000] {
            out.clear();
            i64(&mut out, n).unwrap();
            assert_eq!(out, n.to_string().as_bytes());
        }
        for (s, want) in [
            (1.5, "1.5"),
            (f64::INFINITY, "\"inf\""),
            (f64::NEG_INFINITY, "\"-inf\""),
            (1e300, "1e+300"),
        ] {
            out.clear();
            score(&mut out, s).unwrap();
            assert_eq!(String::from_utf8_lossy(&out), want);
        }
    }
}
