//! The UTC calendar strata counts in: index periods (hour, day, month, year: which index a
//! bucket goes to, how its name renders), calendar spans (retentions such as "3 months", added
//! with month and year arithmetic) and instants rendered as RFC 3339. Pure: no clock reads.

use std::fmt;
use std::str::FromStr;

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
    /// The same format in Joda's tokens, as samplerr's archives wrote it (`tf`).
    pub fn joda_format(self) -> &'static str {
        match self {
            IndexPeriod::Hour => "YYYY.MM.dd.HH",
            IndexPeriod::Day => "YYYY.MM.dd",
            IndexPeriod::Month => "YYYY.MM",
            IndexPeriod::Year => "YYYY",
        }
    }

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
/// [`rfc3339`] without its allocation and format parsing, for the many points of a read:
/// written into a fixed buffer, returned as text.
pub fn rfc3339_into(t: EpochMillis, buf: &mut [u8; 24]) -> &str {
    let d = to_datetime(t);
    let digits = |out: &mut [u8], mut v: u32| {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    let year = d.year().clamp(0, 9999) as u32;
    digits(&mut buf[0..4], year);
    buf[4] = b'-';
    digits(&mut buf[5..7], d.month());
    buf[7] = b'-';
    digits(&mut buf[8..10], d.day());
    buf[10] = b'T';
    digits(&mut buf[11..13], d.hour());
    buf[13] = b':';
    digits(&mut buf[14..16], d.minute());
    buf[16] = b':';
    digits(&mut buf[17..19], d.second());
    let end = if d.nanosecond() == 0 {
        19
    } else {
        buf[19] = b'.';
        digits(&mut buf[20..23], d.nanosecond() / 1_000_000);
        23
    };
    buf[end] = b'Z';
    // Only ASCII digits and separators were written.
    std::str::from_utf8(&buf[..=end]).unwrap_or_default()
}

pub fn rfc3339(t: EpochMillis) -> String {
    let d = to_datetime(t);
    if d.nanosecond() == 0 {
        d.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
    }
}

/// A calendar-aware length of time ("3 days", "2 months"), added in UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CalendarSpan {
    pub count: u32,
    pub unit: CalendarUnit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CalendarUnit {
    Hour,
    Day,
    Week,
    Month,
    Year,
}

/// Why a calendar span was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanError {
    #[error("expected a whole number followed by a unit, e.g. \"3 days\"")]
    NoNumber,
    #[error("unknown unit '{0}' (hours, days, weeks, months or years)")]
    UnknownUnit(String),
    /// A humantime unit shorter than an hour (the other duration fields take them).
    #[error("'{0}' is shorter than an hour: a retention is calendar time, in h, d, w, M (months) or y (\"30 days\", \"3 months\"), and at least one index period")]
    SubHour(String),
    #[error("must be longer than zero")]
    Zero,
}

impl FromStr for CalendarSpan {
    type Err = SpanError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (number, unit) = (&s[..split], s[split..].trim());
        let count: u32 = number.parse().map_err(|_| SpanError::NoNumber)?;
        let unit = match unit {
            "h" | "hour" | "hours" => CalendarUnit::Hour,
            "d" | "day" | "days" => CalendarUnit::Day,
            "w" | "week" | "weeks" => CalendarUnit::Week,
            "M" | "month" | "months" => CalendarUnit::Month,
            "y" | "year" | "years" => CalendarUnit::Year,
            "m" | "min" | "mins" | "minute" | "minutes" | "s" | "sec" | "secs" | "second"
            | "seconds" | "ms" => return Err(SpanError::SubHour(s.to_string())),
            other => return Err(SpanError::UnknownUnit(other.to_string())),
        };
        if count == 0 {
            return Err(SpanError::Zero);
        }
        Ok(Self { count, unit })
    }
}

impl fmt::Display for CalendarSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.unit {
            CalendarUnit::Hour => "hour",
            CalendarUnit::Day => "day",
            CalendarUnit::Week => "week",
            CalendarUnit::Month => "month",
            CalendarUnit::Year => "year",
        };
        write!(
            f,
            "{} {unit}{}",
            self.count,
            if self.count == 1 { "" } else { "s" }
        )
    }
}

impl CalendarSpan {
    /// `t` plus this span, month and year arithmetic on the UTC calendar (clamped to month end).
    pub fn add_to(self, t: EpochMillis) -> EpochMillis {
        use chrono::Months;
        let n = i64::from(self.count);
        match self.unit {
            CalendarUnit::Hour => t + n * 3_600_000,
            CalendarUnit::Day => t + n * 86_400_000,
            CalendarUnit::Week => t + n * 7 * 86_400_000,
            CalendarUnit::Month | CalendarUnit::Year => {
                let months = if self.unit == CalendarUnit::Year {
                    self.count * 12
                } else {
                    self.count
                };
                Utc.timestamp_millis_opt(t)
                    .single()
                    .and_then(|d| d.checked_add_months(Months::new(months)))
                    .map(|d| d.timestamp_millis())
                    .unwrap_or(i64::MAX)
            }
        }
    }

    /// The shortest this span can be, in milliseconds.
    pub fn min_len_ms(self) -> i64 {
        let day = 86_400_000i64;
        let n = i64::from(self.count);
        match self.unit {
            CalendarUnit::Hour => n * 3_600_000,
            CalendarUnit::Day => n * day,
            CalendarUnit::Week => n * 7 * day,
            CalendarUnit::Month => n * 28 * day,
            CalendarUnit::Year => n * 365 * day,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_into_writes_what_rfc3339_does() {
        let mut buf = [0u8; 24];
        for t in [
            0,
            1_458_172_800_000,
            1_458_172_800_123,
            4_102_444_799_999,
            951_782_400_000,
        ] {
            assert_eq!(rfc3339_into(t, &mut buf), rfc3339(t), "{t}");
        }
    }

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
    fn rfc3339_is_utc_with_seconds() {
        assert_eq!(rfc3339(at("2020-04-09T00:00:00Z")), "2020-04-09T00:00:00Z");
        assert_eq!(rfc3339(1), "1970-01-01T00:00:00.001Z");
    }
    #[test]
    fn calendar_spans_parse_and_add() {
        let s: CalendarSpan = "2 months".parse().unwrap();
        let jan31 = at("2020-01-31T00:00:00Z");
        let mar31 = at("2020-03-31T00:00:00Z");
        assert_eq!(s.add_to(jan31), mar31);
        assert_eq!("3d".parse::<CalendarSpan>().unwrap().to_string(), "3 days");
        assert!("0 days".parse::<CalendarSpan>().is_err());
        assert!("days".parse::<CalendarSpan>().is_err());
    }
}
