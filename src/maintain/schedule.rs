//! Standard 5-field cron expressions (minute hour day-of-month month day-of-week), evaluated in
//! UTC: `*`, numbers, ranges `a-b`, lists `a,b`, steps `*/n` and `a-b/n`; day of week 0–7 with 0
//! and 7 both Sunday; when both day fields are restricted, either may match (as in cron).

use chrono::{DateTime, Datelike, Duration, Timelike, Utc};

use crate::clock::EpochMillis;

/// A parsed schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronSchedule {
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_restricted: bool,
    weekdays_restricted: bool,
}

/// Parses `expr`, or says which field is wrong and why.
pub fn parse_cron(expr: &str) -> Result<CronSchedule, String> {
    let fields: Vec<&str> = expr.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected 5 fields (minute hour day-of-month month day-of-week), got {}",
            fields.len()
        ));
    }
    let mut weekdays = parse_field(fields[4], 0, 7, "day-of-week")?;
    if weekdays & (1 << 7) != 0 {
        weekdays = (weekdays | 1) & !(1 << 7);
    }
    Ok(CronSchedule {
        minutes: parse_field(fields[0], 0, 59, "minute")?,
        hours: parse_field(fields[1], 0, 23, "hour")?,
        days: parse_field(fields[2], 1, 31, "day-of-month")?,
        months: parse_field(fields[3], 1, 12, "month")?,
        weekdays,
        days_restricted: fields[2] != "*",
        weekdays_restricted: fields[4] != "*",
    })
}

fn parse_field(field: &str, min: u32, max: u32, name: &str) -> Result<u64, String> {
    let bad = |why: String| format!("{name} field {field:?}: {why}");
    let number = |s: &str| -> Result<u32, String> {
        let n: u32 = s
            .parse()
            .map_err(|_| bad(format!("{s:?} is not a number")))?;
        if n < min || n > max {
            return Err(bad(format!("{n} is outside {min}-{max}")));
        }
        Ok(n)
    };
    let mut bits = 0u64;
    for part in field.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (
                r,
                s.parse::<u32>()
                    .ok()
                    .filter(|&s| s > 0)
                    .ok_or_else(|| bad(format!("step {s:?} must be a positive number")))?,
            ),
            None => (part, 1),
        };
        let (lo, hi) = match range {
            "*" => (min, max),
            r => match r.split_once('-') {
                Some((a, b)) => (number(a)?, number(b)?),
                None if step > 1 => (number(r)?, max),
                None => (number(r)?, number(r)?),
            },
        };
        if lo > hi {
            return Err(bad(format!("range {lo}-{hi} is backwards")));
        }
        for v in (lo..=hi).step_by(step as usize) {
            bits |= 1 << v;
        }
    }
    Ok(bits)
}

impl CronSchedule {
    fn matches(&self, t: &DateTime<Utc>) -> bool {
        let has = |bits: u64, v: u32| bits & (1 << v) != 0;
        let day = has(self.days, t.day());
        let weekday = has(self.weekdays, t.weekday().num_days_from_sunday());
        let day_ok = match (self.days_restricted, self.weekdays_restricted) {
            (true, true) => day || weekday,
            (true, false) => day,
            (false, true) => weekday,
            (false, false) => true,
        };
        has(self.minutes, t.minute())
            && has(self.hours, t.hour())
            && has(self.months, t.month())
            && day_ok
    }

    /// The first whole minute strictly after `t` that the schedule names (`None` if none within
    /// five years, e.g. "0 0 30 2 *").
    pub fn next_after(&self, t: EpochMillis) -> Option<EpochMillis> {
        let start = DateTime::<Utc>::from_timestamp_millis(t)?;
        let mut candidate = start.with_second(0)?.with_nanosecond(0)? + Duration::minutes(1);
        let limit = start + Duration::days(5 * 366);
        while candidate < limit {
            if !self.matches(&candidate) {
                // Skip whole hours that cannot match, then minutes.
                candidate = if self.hours & (1 << candidate.hour()) == 0 {
                    candidate.with_minute(0)? + Duration::hours(1)
                } else {
                    candidate + Duration::minutes(1)
                };
                continue;
            }
            return Some(candidate.timestamp_millis());
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> EpochMillis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    #[test]
    fn daily_after_midnight() {
        let s = parse_cron("5 0 * * *").unwrap();
        assert_eq!(
            s.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-12T00:05:00Z"))
        );
        assert_eq!(
            s.next_after(at("2020-04-12T00:04:59Z")),
            Some(at("2020-04-12T00:05:00Z"))
        );
        assert_eq!(
            s.next_after(at("2020-04-12T00:05:00Z")),
            Some(at("2020-04-13T00:05:00Z"))
        );
    }

    #[test]
    fn steps_lists_ranges_and_weekdays() {
        let s = parse_cron("*/15 8-9 * * 1-5").unwrap();
        // 2020-04-11 is a Saturday: next is Monday 08:00.
        assert_eq!(
            s.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-13T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2020-04-13T08:00:00Z")),
            Some(at("2020-04-13T08:15:00Z"))
        );
        let sunday = parse_cron("0 12 * * 7").unwrap();
        assert_eq!(
            sunday.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-12T12:00:00Z"))
        );
        let either = parse_cron("0 0 1 * 0").unwrap();
        assert_eq!(
            either.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-12T00:00:00Z")),
            "Sunday 12th"
        );
    }

    #[test]
    fn bad_expressions_name_the_field() {
        assert!(parse_cron("5 0 * *")
            .unwrap_err()
            .contains("expected 5 fields"));
        assert!(parse_cron("60 0 * * *")
            .unwrap_err()
            .contains("minute field \"60\": 60 is outside 0-59"));
        assert!(parse_cron("0 0 * * mon")
            .unwrap_err()
            .contains("day-of-week"));
        assert!(parse_cron("*/0 0 * * *").unwrap_err().contains("step"));
        assert_eq!(parse_cron("0 0 30 2 *").unwrap().next_after(0), None);
    }
}
