//! Index naming: which time-named index a bucket goes to. Periods are UTC calendar periods; the
//! name is rendered from the configured template (`{prefix}`, `{archive}`, `{period}`).

use std::fmt;

use chrono::{DateTime, Datelike, NaiveDate, TimeZone, Timelike, Utc};
use serde::Deserialize;

use crate::clock::EpochMillis;

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// How much time one index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IndexPeriod {
    Hour,
    Day,
    Month,
    Year,
}

impl IndexPeriod {
    /// The chrono format of a period in an index name (samplerr's `YYYY.MM.dd` family).
    pub fn format_str(self) -> &'static str {
        match self {
            IndexPeriod::Hour => "%Y.%m.%d.%H",
            IndexPeriod::Day => "%Y.%m.%d",
            IndexPeriod::Month => "%Y.%m",
            IndexPeriod::Year => "%Y",
        }
    }

    /// Start of the period that contains `t`.
    pub fn start_of(self, t: EpochMillis) -> EpochMillis {
        match self {
            IndexPeriod::Hour => t.div_euclid(HOUR_MS) * HOUR_MS,
            IndexPeriod::Day => t.div_euclid(DAY_MS) * DAY_MS,
            IndexPeriod::Month => {
                let d = to_datetime(t);
                from_ymd(d.year(), d.month())
            }
            IndexPeriod::Year => from_ymd(to_datetime(t).year(), 1),
        }
    }

    /// Start of the period after the one that starts at `start`.
    pub fn next_start(self, start: EpochMillis) -> EpochMillis {
        match self {
            IndexPeriod::Hour => start + HOUR_MS,
            IndexPeriod::Day => start + DAY_MS,
            IndexPeriod::Month => {
                let d = to_datetime(start);
                let (y, m) = if d.month() == 12 {
                    (d.year() + 1, 1)
                } else {
                    (d.year(), d.month() + 1)
                };
                from_ymd(y, m)
            }
            IndexPeriod::Year => from_ymd(to_datetime(start).year() + 1, 1),
        }
    }

    /// The shortest this period can be, in milliseconds.
    pub fn min_len_ms(self) -> i64 {
        match self {
            IndexPeriod::Hour => HOUR_MS,
            IndexPeriod::Day => DAY_MS,
            IndexPeriod::Month => 28 * DAY_MS,
            IndexPeriod::Year => 365 * DAY_MS,
        }
    }

    /// The unit every period boundary is a multiple of: a step must divide it, or buckets would
    /// straddle two indices.
    pub fn boundary_unit_ms(self) -> i64 {
        match self {
            IndexPeriod::Hour => HOUR_MS,
            IndexPeriod::Day | IndexPeriod::Month | IndexPeriod::Year => DAY_MS,
        }
    }

    /// The period as it appears in index names.
    pub fn render(self, start: EpochMillis) -> String {
        to_datetime(start).format(self.format_str()).to_string()
    }

    /// Parses a rendered period back to its start (`None` when it is not one of ours).
    pub fn parse(self, s: &str) -> Option<EpochMillis> {
        let parts: Vec<&str> = s.split('.').collect();
        let digits = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| b.is_ascii_digit());
        let expected = match self {
            IndexPeriod::Hour => 4,
            IndexPeriod::Day => 3,
            IndexPeriod::Month => 2,
            IndexPeriod::Year => 1,
        };
        if parts.len() != expected
            || !digits(parts[0], 4)
            || !parts[1..].iter().all(|p| digits(p, 2))
        {
            return None;
        }
        let num = |i: usize| {
            parts
                .get(i)
                .map(|p| p.parse::<u32>().ok())
                .unwrap_or(Some(if i == 3 { 0 } else { 1 }))
        };
        let date = NaiveDate::from_ymd_opt(parts[0].parse().ok()?, num(1)?, num(2)?)?;
        let hour = num(3)?;
        let hour = if self == IndexPeriod::Hour { hour } else { 0 };
        let t = date.and_hms_opt(hour, 0, 0)?.and_utc().timestamp_millis();
        (self.render(t) == s).then_some(t)
    }
}

impl fmt::Display for IndexPeriod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IndexPeriod::Hour => "hour",
            IndexPeriod::Day => "day",
            IndexPeriod::Month => "month",
            IndexPeriod::Year => "year",
        })
    }
}

fn to_datetime(t: EpochMillis) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(t)
        .single()
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn from_ymd(year: i32, month: u32) -> EpochMillis {
    Utc.with_ymd_and_hms(year, month, 1, 0, 0, 0)
        .single()
        .map(|d| d.timestamp_millis())
        .unwrap_or(i64::MIN)
}

/// Renders an instant as RFC 3339 UTC with second precision (`2020-04-09T00:00:00Z`), or with
/// milliseconds when it has them.
pub fn rfc3339(t: EpochMillis) -> String {
    let d = to_datetime(t);
    if d.nanosecond() == 0 {
        d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// One piece of an index name template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Literal(String),
    Archive,
    Period,
}

/// A parsed index name template such as `{prefix}{archive}-{period}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexNaming {
    pieces: Vec<Piece>,
}

/// Why an index name template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NamingError {
    #[error("unknown placeholder '{{{0}}}' (known: {{prefix}}, {{archive}}, {{period}})")]
    UnknownPlaceholder(String),
    #[error("unclosed '{{' in the template")]
    Unclosed,
    #[error("the template has no {{period}}: every period would write to the same index")]
    NoPeriod,
    #[error("index name '{name}' is invalid: {why}")]
    InvalidName { name: String, why: &'static str },
}

impl IndexNaming {
    /// Parses `template`, substituting `{prefix}` at once.
    pub fn parse(template: &str, prefix: &str) -> Result<Self, NamingError> {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            literal.push_str(&rest[..open]);
            let close = rest[open..].find('}').ok_or(NamingError::Unclosed)? + open;
            match &rest[open + 1..close] {
                "prefix" => literal.push_str(prefix),
                "archive" | "period" => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(if &rest[open + 1..close] == "archive" {
                        Piece::Archive
                    } else {
                        Piece::Period
                    });
                }
                other => return Err(NamingError::UnknownPlaceholder(other.to_string())),
            }
            rest = &rest[close + 1..];
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        if !pieces.contains(&Piece::Period) {
            return Err(NamingError::NoPeriod);
        }
        Ok(Self { pieces })
    }

    /// The index name for `archive`'s period that starts at `period_start`.
    pub fn render(&self, archive: &str, period: IndexPeriod, period_start: EpochMillis) -> String {
        let mut name = String::with_capacity(48);
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => name.push_str(s),
                Piece::Archive => name.push_str(archive),
                Piece::Period => name.push_str(&period.render(period_start)),
            }
        }
        name
    }

    /// The wildcard pattern that matches every index this template can produce.
    pub fn wildcard(&self) -> String {
        let mut pattern = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(s) => pattern.push_str(s),
                Piece::Archive | Piece::Period => {
                    if !pattern.ends_with('*') {
                        pattern.push('*')
                    }
                }
            }
        }
        pattern
    }

    /// Whether the template names the archive (without it, archives must differ in period).
    pub fn has_archive(&self) -> bool {
        self.pieces.contains(&Piece::Archive)
    }

    /// The period start encoded in `name` if it is the index of `archive`'s period, else `None`.
    pub fn parse_name(
        &self,
        name: &str,
        archive: &str,
        period: IndexPeriod,
    ) -> Option<EpochMillis> {
        let mut rest = name;
        let mut start = None;
        for piece in &self.pieces {
            rest = match piece {
                Piece::Literal(s) => rest.strip_prefix(s.as_str())?,
                Piece::Archive => rest.strip_prefix(archive)?,
                Piece::Period => {
                    let len = period.render(0).len();
                    let text = rest.get(..len)?;
                    start = Some(period.parse(text)?);
                    &rest[len..]
                }
            };
        }
        if rest.is_empty() {
            start
        } else {
            None
        }
    }
}

/// Checks the rules both Elasticsearch and OpenSearch apply to index names.
pub fn validate_index_name(name: &str) -> Result<(), NamingError> {
    let invalid = |why| {
        Err(NamingError::InvalidName {
            name: name.to_string(),
            why,
        })
    };
    if name.is_empty() {
        return invalid("it is empty");
    }
    if name.len() > 255 {
        return invalid("it is longer than 255 bytes");
    }
    if name.chars().any(|c| c.is_uppercase()) {
        return invalid("it has upper-case letters");
    }
    if name.chars().any(|c| {
        matches!(
            c,
            '\\' | '/' | '*' | '?' | '"' | '<' | '>' | '|' | ',' | '#' | ' ' | ':'
        ) || c.is_control()
    }) {
        return invalid("it contains one of \\ / * ? \" < > | , # : space or a control character");
    }
    if name.starts_with(['-', '_', '+']) {
        return invalid("it starts with '-', '_' or '+'");
    }
    if name == "." || name == ".." {
        return invalid("it is '.' or '..'");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> EpochMillis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn periods_start_on_utc_calendar_boundaries() {
        let t = at("2020-04-11T13:13:26Z");
        assert_eq!(IndexPeriod::Hour.start_of(t), at("2020-04-11T13:00:00Z"));
        assert_eq!(IndexPeriod::Day.start_of(t), at("2020-04-11T00:00:00Z"));
        assert_eq!(IndexPeriod::Month.start_of(t), at("2020-04-01T00:00:00Z"));
        assert_eq!(IndexPeriod::Year.start_of(t), at("2020-01-01T00:00:00Z"));
        assert_eq!(
            IndexPeriod::Month.next_start(at("2020-12-01T00:00:00Z")),
            at("2021-01-01T00:00:00Z")
        );
        assert_eq!(IndexPeriod::Day.start_of(-1), -86_400_000);
    }

    #[test]
    fn periods_render_and_parse_back() {
        let t = at("2016-03-17T05:00:00Z");
        for (p, s) in [
            (IndexPeriod::Hour, "2016.03.17.05"),
            (IndexPeriod::Day, "2016.03.17"),
            (IndexPeriod::Month, "2016.03"),
            (IndexPeriod::Year, "2016"),
        ] {
            let start = p.start_of(t);
            assert_eq!(p.render(start), s);
            assert_eq!(p.parse(s), Some(start));
        }
        assert_eq!(IndexPeriod::Day.parse("2016.02.30"), None);
        assert_eq!(IndexPeriod::Day.parse("2016.3.17"), None);
        assert_eq!(IndexPeriod::Month.parse("2016.03.17"), None);
    }

    #[test]
    fn samplerr_naming_is_expressible() {
        let naming = IndexNaming::parse("{prefix}{period}", ".samplerr-").unwrap();
        let t = at("2016-03-17T10:00:00Z");
        assert_eq!(
            naming.render("20s", IndexPeriod::Day, IndexPeriod::Day.start_of(t)),
            ".samplerr-2016.03.17"
        );
        assert_eq!(
            naming.render("1h", IndexPeriod::Year, IndexPeriod::Year.start_of(t)),
            ".samplerr-2016"
        );
        assert_eq!(naming.wildcard(), ".samplerr-*");
        assert!(!naming.has_archive());
    }

    #[test]
    fn names_parse_back_only_for_their_archive_and_period() {
        let naming = IndexNaming::parse("{prefix}{archive}-{period}", "strata-").unwrap();
        let day = at("2020-04-09T00:00:00Z");
        assert_eq!(
            naming.parse_name("strata-20s-2020.04.09", "20s", IndexPeriod::Day),
            Some(day)
        );
        assert_eq!(
            naming.parse_name("strata-20s-2020.04.09", "10m", IndexPeriod::Day),
            None
        );
        assert_eq!(
            naming.parse_name("strata-20s-2020.04", "20s", IndexPeriod::Day),
            None
        );
        assert_eq!(
            naming.parse_name("strata-20s-2020.04.09x", "20s", IndexPeriod::Day),
            None
        );
        let samplerr = IndexNaming::parse("{prefix}{period}", ".samplerr-").unwrap();
        assert_eq!(
            samplerr.parse_name(".samplerr-2020.04", "10m", IndexPeriod::Month),
            Some(at("2020-04-01T00:00:00Z"))
        );
        assert_eq!(
            samplerr.parse_name(".samplerr-2020.04", "20s", IndexPeriod::Day),
            None
        );
        assert_eq!(
            samplerr.parse_name("samplerr-2020.04", "10m", IndexPeriod::Month),
            None
        );
    }

    #[test]
    fn default_naming_renders_archive_and_period() {
        let naming = IndexNaming::parse("{prefix}{archive}-{period}", "strata-").unwrap();
        let t = at("2026-11-23T10:00:00Z");
        assert_eq!(
            naming.render("10m", IndexPeriod::Month, IndexPeriod::Month.start_of(t)),
            "strata-10m-2026.11"
        );
        assert_eq!(naming.wildcard(), "strata-*-*");
    }

    #[test]
    fn bad_templates_are_refused() {
        assert_eq!(
            IndexNaming::parse("{prefix}{archive}", "x-"),
            Err(NamingError::NoPeriod)
        );
        assert_eq!(
            IndexNaming::parse("{prefix}{day}", "x-"),
            Err(NamingError::UnknownPlaceholder("day".into()))
        );
        assert_eq!(
            IndexNaming::parse("{prefix{period}", "x-"),
            Err(NamingError::UnknownPlaceholder("prefix{period".into()))
        );
    }

    #[test]
    fn index_name_rules() {
        assert!(validate_index_name("strata-20s-2020.01.01").is_ok());
        assert!(validate_index_name(".samplerr-2020").is_ok());
        assert!(validate_index_name("Strata-2020").is_err());
        assert!(validate_index_name("_strata").is_err());
        assert!(validate_index_name("a b").is_err());
    }

    #[test]
    fn rfc3339_is_utc_with_seconds() {
        assert_eq!(rfc3339(at("2020-04-09T00:00:00Z")), "2020-04-09T00:00:00Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.001Z");
    }
}
