//! `ttl_extend`: adds time to every expiry written to the target. Pure: the current time is
//! passed in.
//!
//! A TTL that deletes the key (zero or negative, or an absolute time already past) is left as
//! it is, so it still deletes. Hash field TTLs (`HEXPIRE` and kin) are not extended.

use bytes::Bytes;

/// A snapshot key's absolute expiry (unix ms), extended.
pub fn extend_at(expire_ms: i64, ext_ms: i64, now_ms: i64) -> i64 {
    if expire_ms <= now_ms {
        // Expired already: the source deletes it; so does the target, as now.
        return expire_ms;
    }
    expire_ms.saturating_add(ext_ms)
}

/// How an expiry argument counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Unit {
    /// Relative, in seconds (`EX`, `EXPIRE`, `SETEX`).
    Seconds,
    /// Relative, in ms (`PX`, `PEXPIRE`, `PSETEX`, RESTORE's ttl).
    Millis,
    /// Absolute unix seconds (`EXAT`, `EXPIREAT`).
    AtSeconds,
    /// Absolute unix ms (`PXAT`, `PEXPIREAT`, RESTORE's ttl with `ABSTTL`).
    AtMillis,
}

/// The expiry argument `value`, extended; None when it is left as it is (it deletes the key,
/// or is not a number, which the target will refuse as the source did).
fn extend_value(value: &[u8], unit: Unit, ext_ms: i64, now_ms: i64) -> Option<Bytes> {
    let n: i64 = std::str::from_utf8(value).ok()?.parse().ok()?;
    let extended = match unit {
        Unit::Seconds if n > 0 => n.saturating_add(ext_ms / 1000),
        Unit::Millis if n > 0 => n.saturating_add(ext_ms),
        Unit::AtSeconds if n.saturating_mul(1000) > now_ms => n.saturating_add(ext_ms / 1000),
        Unit::AtMillis if n > now_ms => n.saturating_add(ext_ms),
        _ => return None,
    };
    Some(Bytes::from(extended.to_string()))
}

/// The unit of a `SET`/`GETEX`/`MSETEX` expiry option, if `token` is one.
fn option_unit(token: &[u8]) -> Option<Unit> {
    let is = |t: &[u8]| token.eq_ignore_ascii_case(t);
    if is(b"EX") {
        Some(Unit::Seconds)
    } else if is(b"PX") {
        Some(Unit::Millis)
    } else if is(b"EXAT") {
        Some(Unit::AtSeconds)
    } else if is(b"PXAT") {
        Some(Unit::AtMillis)
    } else {
        None
    }
}

/// Options from `from` on: extends the value of each expiry option; skips the value of the
/// options that take one (`IFEQ` and kin of Redis 8.4 / Valkey 8.1).
fn extend_options(args: &mut [Bytes], from: usize, ext_ms: i64, now_ms: i64) -> bool {
    let mut changed = false;
    let mut i = from;
    while i < args.len() {
        if let Some(unit) = option_unit(&args[i]) {
            if let Some(v) = args
                .get(i + 1)
                .and_then(|v| extend_value(v, unit, ext_ms, now_ms))
            {
                args[i + 1] = v;
                changed = true;
            }
            i += 2;
        } else if [&b"IFEQ"[..], b"IFNE", b"IFDEQ", b"IFDNE"]
            .iter()
            .any(|t| args[i].eq_ignore_ascii_case(t))
        {
            i += 2;
        } else {
            i += 1;
        }
    }
    changed
}

/// `args` (a stream command, its name first) with `ext_ms` added to the expiry it sets;
/// None when it sets none, or one that deletes the key.
pub fn extend_command(args: &[Bytes], ext_ms: i64, now_ms: i64) -> Option<Vec<Bytes>> {
    if ext_ms == 0 || args.len() < 2 {
        return None;
    }
    let name = args[0].to_ascii_uppercase();
    let mut out = args.to_vec();
    let at = |out: &mut Vec<Bytes>, i: usize, unit: Unit| -> bool {
        match out
            .get(i)
            .and_then(|v| extend_value(v, unit, ext_ms, now_ms))
        {
            Some(v) => {
                out[i] = v;
                true
            }
            None => false,
        }
    };
    let changed = match name.as_slice() {
        b"EXPIRE" => at(&mut out, 2, Unit::Seconds),
        b"PEXPIRE" => at(&mut out, 2, Unit::Millis),
        b"EXPIREAT" => at(&mut out, 2, Unit::AtSeconds),
        b"PEXPIREAT" => at(&mut out, 2, Unit::AtMillis),
        b"SETEX" => at(&mut out, 2, Unit::Seconds),
        b"PSETEX" => at(&mut out, 2, Unit::Millis),
        b"SET" => extend_options(&mut out, 3, ext_ms, now_ms),
        b"GETEX" => extend_options(&mut out, 2, ext_ms, now_ms),
        b"MSETEX" => {
            // MSETEX numkeys key value [key value ...] [options].
            let keys: Option<usize> = std::str::from_utf8(&args[1])
                .ok()
                .and_then(|n| n.parse().ok());
            match keys.and_then(|n| n.checked_mul(2)?.checked_add(2)) {
                Some(from) => extend_options(&mut out, from, ext_ms, now_ms),
                None => false,
            }
        }
        b"RESTORE" | b"RESTORE-ASKING" => {
            let abs = args
                .iter()
                .skip(4)
                .any(|a| a.eq_ignore_ascii_case(b"ABSTTL"));
            at(&mut out, 2, if abs { Unit::AtMillis } else { Unit::Millis })
        }
        _ => false,
    };
    changed.then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000;
    const EXT: i64 = 60_000;

    fn ext(args: &[&str]) -> Option<Vec<String>> {
        let args: Vec<Bytes> = args.iter().map(|a| Bytes::from(a.to_string())).collect();
        extend_command(&args, EXT, NOW).map(|out| {
            out.iter()
                .map(|b| String::from_utf8(b.to_vec()).unwrap())
                .collect()
        })
    }

    #[test]
    fn relative_and_absolute_expiries_grow() {
        assert_eq!(ext(&["EXPIRE", "k", "10"]).unwrap(), ["EXPIRE", "k", "70"]);
        assert_eq!(
            ext(&["pexpire", "k", "1500", "NX"]).unwrap(),
            ["pexpire", "k", "61500", "NX"]
        );
        assert_eq!(
            ext(&["EXPIREAT", "k", "1700000100"]).unwrap(),
            ["EXPIREAT", "k", "1700000160"]
        );
        assert_eq!(
            ext(&["PEXPIREAT", "k", "1700000100000"]).unwrap(),
            ["PEXPIREAT", "k", "1700000160000"]
        );
        assert_eq!(
            ext(&["SETEX", "k", "5", "v"]).unwrap(),
            ["SETEX", "k", "65", "v"]
        );
        assert_eq!(
            ext(&["PSETEX", "k", "5", "v"]).unwrap(),
            ["PSETEX", "k", "60005", "v"]
        );
        assert_eq!(
            ext(&["SET", "k", "v", "NX", "GET", "ex", "5"]).unwrap(),
            ["SET", "k", "v", "NX", "GET", "ex", "65"]
        );
        assert_eq!(
            ext(&["SET", "k", "v", "PXAT", "1700000100000"]).unwrap(),
            ["SET", "k", "v", "PXAT", "1700000160000"]
        );
        assert_eq!(
            ext(&["SET", "k", "v", "EXAT", "1700000100"]).unwrap(),
            ["SET", "k", "v", "EXAT", "1700000160"]
        );
        // IFEQ's value is not an option, even when it reads like one.
        assert_eq!(
            ext(&["SET", "k", "v", "IFEQ", "PX", "PX", "10"]).unwrap(),
            ["SET", "k", "v", "IFEQ", "PX", "PX", "60010"]
        );
        assert_eq!(
            ext(&["GETEX", "k", "PX", "100"]).unwrap(),
            ["GETEX", "k", "PX", "60100"]
        );
        assert_eq!(
            ext(&["MSETEX", "2", "a", "EX", "b", "PX", "EX", "3"]).unwrap(),
            ["MSETEX", "2", "a", "EX", "b", "PX", "EX", "63"]
        );
        assert_eq!(
            ext(&["RESTORE", "k", "1000", "payload", "REPLACE"]).unwrap(),
            ["RESTORE", "k", "61000", "payload", "REPLACE"]
        );
        assert_eq!(
            ext(&["RESTORE", "k", "1700000100000", "payload", "ABSTTL"]).unwrap(),
            ["RESTORE", "k", "1700000160000", "payload", "ABSTTL"]
        );
    }

    #[test]
    fn expiries_that_delete_keep_deleting() {
        assert_eq!(ext(&["EXPIRE", "k", "0"]), None);
        assert_eq!(ext(&["EXPIRE", "k", "-5"]), None);
        assert_eq!(ext(&["PEXPIRE", "k", "-1"]), None);
        assert_eq!(ext(&["EXPIREAT", "k", "1600000000"]), None);
        assert_eq!(ext(&["PEXPIREAT", "k", "1700000000000"]), None);
        assert_eq!(ext(&["SET", "k", "v", "PXAT", "1"]), None);
        assert_eq!(ext(&["RESTORE", "k", "0", "payload"]), None);
        assert_eq!(ext(&["RESTORE", "k", "5", "payload", "ABSTTL"]), None);
        // Nothing to extend, or not a number (the target refuses it as the source would).
        assert_eq!(ext(&["SET", "k", "v"]), None);
        assert_eq!(ext(&["SET", "k", "v", "KEEPTTL"]), None);
        assert_eq!(ext(&["GETEX", "k", "PERSIST"]), None);
        assert_eq!(ext(&["EXPIRE", "k", "soon"]), None);
        assert_eq!(ext(&["PERSIST", "k"]), None);
        assert_eq!(ext(&["HEXPIRE", "k", "10", "FIELDS", "1", "f"]), None);
        assert_eq!(ext(&["EXPIRE"]), None);
    }

    #[test]
    fn snapshot_expiries() {
        assert_eq!(extend_at(NOW + 1, EXT, NOW), NOW + 1 + EXT);
        assert_eq!(extend_at(NOW, EXT, NOW), NOW);
        assert_eq!(extend_at(i64::MAX - 1, EXT, NOW), i64::MAX);
    }
}
