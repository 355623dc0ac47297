//! The validation every protocol shares: how long a name may be, which characters it may hold,
//! how many tags an event may carry, how far ahead of the clock its time may be. HTTP, statsd,
//! Graphite, Riemann and DaTtSs apply the same rules, so that a series accepted by one door is
//! accepted by every other.

use crate::clock::EpochMillis;
use crate::config::IngestConfig;

/// What validation needs to know besides the event.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Used for events without a timestamp and for the future-skew check.
    pub now: EpochMillis,
    pub max_future_skew_ms: i64,
    pub max_name_length: usize,
    pub max_tags: usize,
}

impl Limits {
    pub fn new(cfg: &IngestConfig, now: EpochMillis) -> Self {
        Self {
            now,
            max_future_skew_ms: cfg.max_future_skew.as_millis() as i64,
            max_name_length: cfg.max_name_length,
            max_tags: cfg.max_tags,
        }
    }
}

/// Why a name, host, tag key or label was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TextError {
    #[error("must not be empty")]
    Empty,
    #[error("is {len} bytes long, more than the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("must not contain control characters")]
    ControlCharacters,
}

/// Checks a name, host or tag key: non-empty, at most `max_len` bytes, no control characters.
pub(crate) fn check_text(s: &str, max_len: usize) -> Result<(), TextError> {
    if s.is_empty() {
        return Err(TextError::Empty);
    }
    if s.len() > max_len {
        return Err(TextError::TooLong {
            len: s.len(),
            max: max_len,
        });
    }
    let printable_ascii = s.bytes().all(|b| (0x20..0x7f).contains(&b));
    if !printable_ascii && s.chars().any(char::is_control) {
        return Err(TextError::ControlCharacters);
    }
    Ok(())
}

/// Too many entries in a list of tags or labels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("has {count} {what}, more than the limit of {limit}")]
pub(crate) struct TooMany {
    pub what: &'static str,
    pub count: usize,
    pub limit: usize,
}

/// Checks that a list of `what` (tags, labels) has at most `limit` entries.
pub(crate) fn check_count(what: &'static str, count: usize, limit: usize) -> Result<(), TooMany> {
    if count > limit {
        return Err(TooMany { what, count, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_refused_with_its_reason() {
        assert_eq!(check_text("", 10), Err(TextError::Empty));
        assert_eq!(
            check_text("abcdef", 5).unwrap_err().to_string(),
            "is 6 bytes long, more than the limit of 5"
        );
        assert_eq!(
            check_text("a\u{1f}b", 10),
            Err(TextError::ControlCharacters)
        );
        assert_eq!(check_text("café ✓", 20), Ok(()));
    }

    #[test]
    fn counts_over_the_limit_are_named() {
        assert_eq!(check_count("tags", 2, 2), Ok(()));
        assert_eq!(
            check_count("tags", 3, 2).unwrap_err().to_string(),
            "has 3 tags, more than the limit of 2"
        );
    }
}
