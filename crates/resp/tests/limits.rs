//! Lengths and counts from the peer are held to the limits before anything is reserved.

use ferry_resp::{Bytes, DEPTH_CEILING, Error, Limits, check, parse};

#[test]
fn defaults_are_documented_values() {
    let limits = Limits::default();
    assert_eq!(limits.max_bulk, 512 * 1024 * 1024);
    assert_eq!(limits.max_elements, i32::MAX as usize);
    assert_eq!(limits.max_depth, 32);
    assert_eq!(limits.max_line, 64 * 1024);
}

#[test]
fn oversized_bulk_rejected_before_its_payload() {
    let limits = Limits::default();
    assert_eq!(check(b"$536870912\r\n", &limits), Ok(None));
    assert_eq!(
        check(b"$536870913\r\n", &limits),
        Err(Error::BulkTooLarge {
            len: 536_870_913,
            limit: 536_870_912
        })
    );
    assert_eq!(
        check(b"$9223372036854775807\r\n", &limits),
        Err(Error::BulkTooLarge {
            len: i64::MAX as u64,
            limit: 536_870_912
        })
    );
}

#[test]
fn unlimited_bulk_length_does_not_overflow() {
    let limits = Limits {
        max_bulk: usize::MAX,
        ..Limits::default()
    };
    assert_eq!(check(b"$9223372036854775807\r\nabc", &limits), Ok(None));
    assert_eq!(
        parse(&Bytes::from_static(b"$9223372036854775807\r\nabc")),
        Err(Error::Incomplete)
    );
}

#[test]
fn huge_counts_with_tiny_buffers_cost_nothing() {
    let limits = Limits::default();
    assert_eq!(check(b"*2147483647\r\n", &limits), Ok(None));
    assert_eq!(check(b"*2147483647\r\n:1\r\n:2\r\n", &limits), Ok(None));
    assert!(matches!(
        check(b"*2147483648\r\n", &limits),
        Err(Error::TooManyElements { .. })
    ));
    assert!(matches!(
        check(b"%9223372036854775807\r\n", &limits),
        Err(Error::TooManyElements { .. })
    ));
    // parse applies no size limit, but reserves only what the bytes present could hold.
    assert_eq!(
        parse(&Bytes::from_static(b"*9223372036854775807\r\n:1\r\n")),
        Err(Error::Incomplete)
    );
    assert_eq!(
        parse(&Bytes::from_static(b"%9223372036854775807\r\n")),
        Err(Error::Incomplete)
    );
}

#[test]
fn depth_limit() {
    let nested = |levels: usize| {
        let mut wire = b"*1\r\n".repeat(levels);
        wire.extend_from_slice(b":1\r\n");
        wire
    };
    let limits = Limits::default();
    let ok = nested(32);
    assert_eq!(check(&ok, &limits), Ok(Some(ok.len())));
    assert_eq!(
        check(&nested(33), &limits),
        Err(Error::TooDeep { limit: 32 })
    );
    let flat = Limits {
        max_depth: 0,
        ..Limits::default()
    };
    assert_eq!(check(b"*0\r\n", &flat), Err(Error::TooDeep { limit: 0 }));
    assert_eq!(check(b":1\r\n", &flat), Ok(Some(4)));
}

#[test]
fn attributes_count_as_a_level() {
    // A chain of attributes cannot recurse without bound.
    let chain = b"|0\r\n".repeat(100_000);
    assert_eq!(
        check(&chain, &Limits::default()),
        Err(Error::TooDeep { limit: 32 })
    );
}

#[test]
fn depth_is_capped_by_the_ceiling() {
    let limits = Limits {
        max_depth: usize::MAX,
        ..Limits::default()
    };
    let deep = b"*1\r\n".repeat(1_000_000);
    assert_eq!(
        check(&deep, &limits),
        Err(Error::TooDeep {
            limit: DEPTH_CEILING
        })
    );
    assert_eq!(
        parse(&Bytes::from(deep)),
        Err(Error::TooDeep {
            limit: DEPTH_CEILING
        })
    );
}

#[test]
fn long_lines_rejected_before_their_end() {
    let limits = Limits::default();
    let mut line = vec![b'+'];
    line.extend(std::iter::repeat_n(b'a', 64 * 1024));
    assert_eq!(check(&line, &limits), Ok(None));
    line.extend_from_slice(b"\r\n");
    assert_eq!(check(&line, &limits), Ok(Some(line.len())));
    line.insert(1, b'a');
    assert_eq!(
        check(&line, &limits),
        Err(Error::LineTooLong { limit: 64 * 1024 })
    );
}
