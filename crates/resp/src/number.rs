//! Decimal text, both ways: reading integers and doubles from the wire, writing lengths to it.
//!
//! Integers follow Redis's own `string2ll`: an optional `-`, then digits without leading zeros,
//! within `i64`. So `0`, `-5` and `123` are accepted; ``, `-`, `+5`, `01`, `-0` are not.

use bytes::{BufMut, BytesMut};

/// Parses a whole integer the way Redis does (see the module doc).
pub(crate) fn parse_i64(text: &[u8]) -> Option<i64> {
    let (negative, digits) = split_sign(text);
    if !is_digits_prefix(negative, digits) || digits.is_empty() {
        return None;
    }
    // At most 19 digits: cannot overflow a u64.
    let magnitude = digits
        .iter()
        .fold(0u64, |acc, &d| acc * 10 + u64::from(d - b'0'));
    if negative {
        0i64.checked_sub_unsigned(magnitude)
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Whether `text` can still grow into an integer that [`parse_i64`] accepts.
///
/// Used on lines whose CRLF has not arrived yet, to fail early on garbage.
pub(crate) fn is_int_prefix(text: &[u8]) -> bool {
    let (negative, digits) = split_sign(text);
    is_digits_prefix(negative, digits)
}

/// Whether `text` is (a prefix of) a big number: an optional sign, then decimal digits.
pub(crate) fn is_big_number_prefix(text: &[u8]) -> bool {
    let digits = match text {
        [b'-' | b'+', rest @ ..] => rest,
        _ => text,
    };
    digits.iter().all(u8::is_ascii_digit)
}

/// Whether `text` is a whole big number.
pub(crate) fn is_big_number(text: &[u8]) -> bool {
    is_big_number_prefix(text) && text.last().is_some_and(u8::is_ascii_digit)
}

/// Parses a double: decimal and exponent forms, `inf`, `-inf` and `nan`.
pub(crate) fn parse_f64(text: &[u8]) -> Option<f64> {
    std::str::from_utf8(text).ok()?.parse().ok()
}

/// Appends `n` in decimal, without allocating.
pub(crate) fn put_u64(out: &mut BytesMut, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.put_slice(&buf[at..]);
}

/// Appends `n` in decimal, without allocating.
pub(crate) fn put_i64(out: &mut BytesMut, n: i64) {
    if n < 0 {
        out.put_u8(b'-');
    }
    put_u64(out, n.unsigned_abs());
}

fn split_sign(text: &[u8]) -> (bool, &[u8]) {
    match text {
        [b'-', rest @ ..] => (true, rest),
        _ => (false, text),
    }
}

/// Digits only, at most 19 of them, no leading zero (and no `-0`).
fn is_digits_prefix(negative: bool, digits: &[u8]) -> bool {
    digits.len() <= 19
        && digits.iter().all(u8::is_ascii_digit)
        && match digits {
            [b'0', ..] => digits.len() == 1 && !negative,
            _ => true,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_follow_redis_rules() {
        for (text, want) in [
            (&b"0"[..], Some(0)),
            (b"-5", Some(-5)),
            (b"123", Some(123)),
            (b"9223372036854775807", Some(i64::MAX)),
            (b"-9223372036854775808", Some(i64::MIN)),
            (b"9223372036854775808", None),
            (b"99999999999999999999", None),
            (b"", None),
            (b"-", None),
            (b"+5", None),
            (b"01", None),
            (b"-0", None),
            (b"1a", None),
            (b" 1", None),
        ] {
            assert_eq!(parse_i64(text), want, "{:?}", String::from_utf8_lossy(text));
        }
    }

    #[test]
    fn decimal_writing() {
        let mut out = BytesMut::new();
        for n in [0, 7, -7, 10, i64::MAX, i64::MIN] {
            out.clear();
            put_i64(&mut out, n);
            assert_eq!(&out[..], n.to_string().as_bytes());
        }
        out.clear();
        put_u64(&mut out, u64::MAX);
        assert_eq!(&out[..], u64::MAX.to_string().as_bytes());
    }

    #[test]
    fn doubles() {
        assert_eq!(parse_f64(b"1.5"), Some(1.5));
        assert_eq!(parse_f64(b"-2e3"), Some(-2000.0));
        assert_eq!(parse_f64(b"inf"), Some(f64::INFINITY));
        assert_eq!(parse_f64(b"-inf"), Some(f64::NEG_INFINITY));
        assert!(parse_f64(b"nan").is_some_and(f64::is_nan));
        assert_eq!(parse_f64(b""), None);
        assert_eq!(parse_f64(b"1.5x"), None);
    }
}
