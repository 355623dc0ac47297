//! Numbers in the text protocols (statsd values, Graphite values and times): plain decimal
//! integers, what most clients send, skip the general float parser.

/// A finite number, parsed as Rust's float parser would.
pub(crate) fn parse_finite(s: &str) -> Option<f64> {
    let (negative, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    // 15 digits stay below 2^53: exact as an f64.
    if (1..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        let n = digits
            .bytes()
            .fold(0u64, |n, b| n * 10 + u64::from(b - b'0')) as f64;
        return Some(if negative { -n } else { n });
    }
    s.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A value within [`crate::event::MAX_MAGNITUDE`].
pub(crate) fn parse_value(s: &str) -> Option<f64> {
    parse_finite(s).filter(|v| crate::event::in_range(*v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_parse_like_the_float_parser() {
        for s in [
            "0",
            "7",
            "-3",
            "+5",
            "-0",
            "123456789012345",
            "1234567890123456789",
            "1.5",
            "-2.25e3",
            "1e400",
            "nan",
            "inf",
            "",
            "+",
            "-",
            "1x",
            "0x10",
        ] {
            let general = s.parse::<f64>().ok().filter(|v| v.is_finite());
            assert_eq!(
                parse_finite(s).map(f64::to_bits),
                general.map(f64::to_bits),
                "{s:?}"
            );
        }
    }

    #[test]
    fn values_stay_within_the_magnitude_events_allow() {
        assert_eq!(parse_value("1e300"), None);
        assert_eq!(parse_finite("1e300"), Some(1e300));
        assert_eq!(parse_value("-12"), Some(-12.0));
    }
}
