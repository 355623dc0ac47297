//! The validation every protocol shares: how long a name may be, which characters it may hold,
//! how many tags an event may carry, how far ahead of the clock its time may be. HTTP, statsd,
//! Graphite, Riemann and DaTtSs apply the same rules, so that a series accepted by one door is
//! accepted by every other.

use crate::calendar::rfc3339;
use crate::clock::EpochMillis;
use crate::config::IngestConfig;
use crate::event::SeriesKey;

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

    /// Refuses a time further ahead of `now` than the allowed skew (a bucket that far ahead
    /// would not close for as long) or before the year 1 (index names carry four-digit years,
    /// and bucket arithmetic near `i64::MIN` would overflow).
    pub(crate) fn check_time(&self, at: EpochMillis) -> Result<(), TimeError> {
        if at > self.now.saturating_add(self.max_future_skew_ms) {
            return Err(TimeError::Ahead {
                at,
                skew_ms: self.max_future_skew_ms,
            });
        }
        if at < EARLIEST {
            return Err(TimeError::BeforeYearOne(at));
        }
        Ok(())
    }
}

/// 0001-01-01T00:00:00Z: the earliest time an event may carry.
pub(crate) const EARLIEST: EpochMillis = -62_135_596_800_000;

/// A time strata does not take.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TimeError {
    #[error("{} is more than {} ahead of the server clock", rfc3339(*at), skew(*skew_ms))]
    Ahead { at: EpochMillis, skew_ms: i64 },
    #[error("{0} ms is before the year 1")]
    BeforeYearOne(EpochMillis),
}

fn skew(ms: i64) -> humantime::FormattedDuration {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64))
}

#[cfg(test)]
impl Limits {
    /// The defaults of `[ingest]` (a minute of skew, 255-byte names, 32 tags) at `now`.
    pub(crate) fn defaults_at(now: EpochMillis) -> Self {
        Self::new(&IngestConfig::default(), now)
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

/// Why a tag (a key and its value) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum TagError {
    #[error("key {key:?} {why}")]
    Key {
        key: String,
        #[source]
        why: TextError,
    },
    #[error("key {0:?} is blank (the node refuses such a field name)")]
    BlankKey(String),
    #[error("key {0:?} must not contain '.' (it would nest fields in the index)")]
    DottedKey(String),
    #[error("value of {key:?} is longer than {max} bytes or has control characters")]
    Value { key: String, max: usize },
}

/// Checks one tag as every protocol must before it reaches a series key: the key a non-blank
/// name without '.', the value at most `max_len` bytes without control characters (they would
/// forge separators in the packed series key).
pub(crate) fn check_tag(key: &str, value: &str, max_len: usize) -> Result<(), TagError> {
    check_text(key, max_len).map_err(|why| TagError::Key {
        key: key.to_string(),
        why,
    })?;
    if key.trim().is_empty() {
        return Err(TagError::BlankKey(key.to_string()));
    }
    if key.contains('.') {
        return Err(TagError::DottedKey(key.to_string()));
    }
    if value.len() > max_len || value.chars().any(char::is_control) {
        return Err(TagError::Value {
            key: key.to_string(),
            max: max_len,
        });
    }
    Ok(())
}

/// The node's limit on one keyword term, in bytes (Lucene's): the document's `series` keyword
/// must fit in it.
pub(crate) const MAX_TERM_BYTES: usize = 32_766;

/// Below this packed length the readable series cannot reach [`MAX_TERM_BYTES`] (quoting at most
/// multiplies a part by 2.5, plus a few bytes per tag), so it is not built to be measured.
const SURELY_SHORT: usize = 12 * 1024;

/// Why a whole series was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SeriesError {
    #[error("tag key {0:?} given twice (a document's tags are an object, whose keys the node requires to be unique)")]
    DuplicateKey(String),
    #[error("the series is {len} bytes long as stored (the `series` keyword), more than the node's limit of {MAX_TERM_BYTES}")]
    TooLong { len: usize },
}

/// Checks a series as the node will need it: each tag key once, and a `series` keyword the node
/// can index. Within every other limit (32 tags of 255-byte values, 32 labels) a series could
/// still exceed the term limit, and the node refused its documents after strata had accepted
/// the events.
pub(crate) fn check_series(key: &SeriesKey) -> Result<(), SeriesError> {
    let mut previous = None;
    for (k, _) in key.tags() {
        if previous == Some(k) {
            return Err(SeriesError::DuplicateKey(k.to_string()));
        }
        previous = Some(k);
    }
    if key.as_str().len() > SURELY_SHORT {
        let len = crate::persist::document::series_label(key.as_str()).len();
        if len > MAX_TERM_BYTES {
            return Err(SeriesError::TooLong { len });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_series_needs_unique_tag_keys_and_a_term_the_node_can_index() {
        let dup = SeriesKey::new("m", None, &mut [("a", "1"), ("b", "2"), ("a", "3")]);
        assert_eq!(
            check_series(&dup),
            Err(SeriesError::DuplicateKey("a".into()))
        );
        // 255-byte keys and values of characters the stored form escapes (`\u{e000}`).
        let value = "\u{e000}".repeat(85);
        let keys: Vec<String> = (0..32).map(|i| format!("k{i:0254}")).collect();
        let labels: Vec<String> = (0..32).map(|i| format!("{i:0255}")).collect();
        let mut tags: Vec<(&str, &str)> =
            keys.iter().map(|k| (k.as_str(), value.as_str())).collect();
        let mut label_refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let long = SeriesKey::with_labels("m", Some("h"), &mut tags, &mut label_refs);
        assert!(matches!(
            check_series(&long),
            Err(SeriesError::TooLong { len }) if len > MAX_TERM_BYTES
        ));
        let mut tags: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(check_series(&SeriesKey::new("m", None, &mut tags)), Ok(()));
    }

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

    #[test]
    fn tags_are_checked_as_the_node_needs_them() {
        assert_eq!(check_tag("dc", "par1", 10), Ok(()));
        assert!(matches!(check_tag("", "v", 10), Err(TagError::Key { .. })));
        assert_eq!(check_tag(" ", "v", 10), Err(TagError::BlankKey(" ".into())));
        assert_eq!(
            check_tag("a.b", "v", 10),
            Err(TagError::DottedKey("a.b".into()))
        );
        let forged = check_tag("k", "v\u{1f}injected=1", 100).unwrap_err();
        assert_eq!(
            forged.to_string(),
            "value of \"k\" is longer than 100 bytes or has control characters"
        );
        assert!(matches!(
            check_tag("k", &"v".repeat(11), 10),
            Err(TagError::Value { .. })
        ));
    }
}
