//! When maintenance runs: a standard 5-field cron expression (minute hour day-of-month month
//! day-of-week), evaluated in UTC, parsed once into a [`Schedule`] that `Config` keeps.
//!
//! Parsing and matching are `croner`'s, set to Vixie cron's meaning: five fields (no seconds, no
//! year) or a nickname (`@daily`), 0 and 7 both Sunday, and when both day fields are restricted
//! either may match. The
//! `cron` crate was not used: it needs a seconds field and numbers Sunday 1, so an existing
//! schedule would silently change meaning. Steps need a range or `*` (`5-59/2`, `*/15`): a bare
//! `5/2` is refused rather than guessed at.

use std::fmt;

use chrono::{DateTime, Utc};
use croner::parser::{CronParser, Seconds, Year};
use croner::Cron;

use crate::clock::EpochMillis;

/// A parsed maintenance schedule.
#[derive(Clone)]
pub struct Schedule {
    expr: String,
    cron: Cron,
}

/// Why a schedule was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScheduleError {
    #[error("expected 5 fields (minute hour day-of-month month day-of-week), got {0}")]
    FieldCount(usize),
    #[error("{0}")]
    Invalid(String),
}

impl Schedule {
    /// Parses `expr`, or says what is wrong with it.
    pub fn parse(expr: &str) -> Result<Self, ScheduleError> {
        let fields = expr.split_whitespace().count();
        let nickname = expr.trim_start().starts_with('@');
        if fields != 5 && !nickname {
            return Err(ScheduleError::FieldCount(fields));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .year(Year::Disallowed)
            .build()
            .parse(expr)
            .map_err(|e| ScheduleError::Invalid(e.to_string()))?;
        Ok(Self {
            expr: expr.trim().to_string(),
            cron,
        })
    }

    /// The first whole minute strictly after `t` that the schedule names (`None` when there is
    /// none, e.g. "0 0 30 2 *").
    pub fn next_after(&self, t: EpochMillis) -> Option<EpochMillis> {
        let start = DateTime::<Utc>::from_timestamp_millis(t)?;
        self.cron
            .find_next_occurrence(&start, false)
            .ok()
            .map(|next| next.timestamp_millis())
    }
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Schedule({:?})", self.expr)
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expr)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> EpochMillis {
        DateTime::parse_from_rfc3339(s).unwrap().timestamp_millis()
    }

    fn parse(expr: &str) -> Schedule {
        Schedule::parse(expr).unwrap()
    }

    #[test]
    fn daily_after_midnight() {
        let s = parse("5 0 * * *");
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
        let s = parse("*/15 8-9 * * 1-5");
        // 2020-04-11 is a Saturday: next is Monday 08:00.
        assert_eq!(
            s.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-13T08:00:00Z"))
        );
        assert_eq!(
            s.next_after(at("2020-04-13T08:00:00Z")),
            Some(at("2020-04-13T08:15:00Z"))
        );
        let sunday = parse("0 12 * * 7");
        assert_eq!(
            sunday.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-12T12:00:00Z"))
        );
        let either = parse("0 0 1 * 0");
        assert_eq!(
            either.next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-12T00:00:00Z")),
            "Sunday 12th"
        );
        let list = parse("0,30 6 * * *");
        assert_eq!(
            list.next_after(at("2020-04-11T06:00:00Z")),
            Some(at("2020-04-11T06:30:00Z"))
        );
    }

    #[test]
    fn names_mean_what_cron_says() {
        // croner reads month and weekday names as Vixie cron does (our own parser refused them).
        assert_eq!(
            parse("0 0 * * mon").next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-13T00:00:00Z"))
        );
        assert_eq!(
            parse("0 0 1 jan *").next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2021-01-01T00:00:00Z"))
        );
    }

    #[test]
    fn nicknames_are_the_usual_five_fields() {
        assert_eq!(
            parse("@daily").next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-12T00:00:00Z"))
        );
        assert_eq!(
            parse("@hourly").next_after(at("2020-04-11T13:13:26Z")),
            Some(at("2020-04-11T14:00:00Z"))
        );
    }

    #[test]
    fn a_bare_start_with_a_step_is_refused_whatever_the_step() {
        // The hand-written parser read `5/1` as minute 5 but `5/2` as 5-59/2.
        for expr in ["5/1 * * * *", "5/2 * * * *"] {
            assert!(
                matches!(Schedule::parse(expr), Err(ScheduleError::Invalid(_))),
                "{expr}"
            );
        }
        assert_eq!(
            parse("5-59/2 * * * *").next_after(at("2020-04-11T13:05:00Z")),
            Some(at("2020-04-11T13:07:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_why() {
        assert_eq!(
            Schedule::parse("5 0 * *").unwrap_err(),
            ScheduleError::FieldCount(4)
        );
        assert_eq!(
            Schedule::parse("0 0 0 * * *").unwrap_err(),
            ScheduleError::FieldCount(6)
        );
        for expr in ["60 0 * * *", "*/0 0 * * *", "0 24 * * *", "0 0 * * 8"] {
            let e = Schedule::parse(expr).unwrap_err();
            assert!(matches!(e, ScheduleError::Invalid(_)), "{expr}: {e}");
            assert!(!e.to_string().is_empty());
        }
        assert_eq!(parse("0 0 30 2 *").next_after(0), None);
    }
}
