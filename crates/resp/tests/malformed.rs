//! Each protocol violation, from a specific input, with a message that names it.

use ferry_resp::{Bytes, Error, Limits, check, parse};

fn check_err(input: &[u8]) -> Error {
    match check(input, &Limits::default()) {
        Err(error) => error,
        other => panic!("{} gave {other:?}", input.escape_ascii()),
    }
}

#[test]
fn each_error_from_its_input() {
    let cases: &[(&[u8], Error, &str)] = &[
        (
            b"?",
            Error::InvalidTypeByte(b'?'),
            "invalid RESP type byte 0x3f",
        ),
        (b"\x00abc", Error::InvalidTypeByte(0), "0x00"),
        (b"+OK\rX", Error::MissingCrlf, "CRLF"),
        (b"$3\r\nfooXY", Error::MissingCrlf, "CRLF"),
        (b"$3\r\nfoo\rX", Error::MissingCrlf, "CRLF"),
        (b"_X", Error::MissingCrlf, "CRLF"),
        (b":12a", Error::BadInteger, "invalid integer"),
        (b":\r\n", Error::BadInteger, "invalid integer"),
        (b":+5\r\n", Error::BadInteger, "invalid integer"),
        (b":01\r\n", Error::BadInteger, "invalid integer"),
        (
            b":9223372036854775808\r\n",
            Error::BadInteger,
            "invalid integer",
        ),
        (b"$-2\r\n", Error::BadLength, "invalid length"),
        (b"*-5\r\n", Error::BadLength, "invalid length"),
        (b"$x", Error::BadLength, "invalid length"),
        (b"$\r\n", Error::BadLength, "invalid length"),
        (b"~-1\r\n", Error::BadLength, "invalid length"),
        (b"!-1\r\n", Error::BadLength, "invalid length"),
        (b",abc\r\n", Error::BadDouble, "invalid double"),
        (b",\r\n", Error::BadDouble, "invalid double"),
        (b"#x", Error::BadBoolean, "boolean"),
        (b"(12x", Error::BadBigNumber, "big number"),
        (b"(-\r\n", Error::BadBigNumber, "big number"),
        (b"=3\r\ntxt\r\n", Error::BadVerbatim, "verbatim"),
        (b"=5\r\ntxt-a", Error::BadVerbatim, "verbatim"),
    ];
    for (input, want, text) in cases {
        let got = check_err(input);
        assert_eq!(&got, want, "{}", input.escape_ascii());
        assert!(got.to_string().contains(text), "{got}");
    }
}

#[test]
fn limit_errors_name_the_limit() {
    let small = Limits {
        max_line: 8,
        max_bulk: 10,
        max_elements: 4,
        max_depth: 2,
    };
    let cases: &[(&[u8], Error, &str)] = &[
        (
            b"+123456789",
            Error::LineTooLong { limit: 8 },
            "longer than 8 bytes",
        ),
        (
            b"$11\r\n",
            Error::BulkTooLarge { len: 11, limit: 10 },
            "bulk length 11 exceeds the limit of 10",
        ),
        (
            b"*5\r\n",
            Error::TooManyElements { count: 5, limit: 4 },
            "5 elements exceeds the limit of 4",
        ),
        (
            b"%5\r\n",
            Error::TooManyElements { count: 5, limit: 4 },
            "limit of 4",
        ),
        (
            b"*1\r\n*1\r\n*",
            Error::TooDeep { limit: 2 },
            "deeper than 2",
        ),
    ];
    for (input, want, text) in cases {
        let got = check(input, &small).unwrap_err();
        assert_eq!(&got, want, "{}", input.escape_ascii());
        assert!(got.to_string().contains(text), "{got}");
    }
}

#[test]
fn parse_rejects_trailing_and_missing_bytes() {
    let trailing = parse(&Bytes::from_static(b"+OK\r\n+"));
    assert_eq!(trailing, Err(Error::TrailingBytes));
    assert!(Error::TrailingBytes.to_string().contains("trailing bytes"));
    assert_eq!(
        parse(&Bytes::from_static(b"*2\r\n:1\r\n")),
        Err(Error::Incomplete)
    );
    assert!(Error::Incomplete.to_string().contains("incomplete"));
    assert_eq!(parse(&Bytes::new()), Err(Error::Incomplete));
    assert_eq!(
        parse(&Bytes::from_static(b"*1\r\n?")),
        Err(Error::InvalidTypeByte(b'?'))
    );
}

#[test]
fn errors_come_early_inside_aggregates() {
    // The array is far from complete, but its second item is already known to be wrong.
    assert_eq!(
        check(b"*3\r\n:1\r\n@", &Limits::default()),
        Err(Error::InvalidTypeByte(b'@'))
    );
}
