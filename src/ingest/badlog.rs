//! Bad input is counted always and logged at a rate limit: one warning per protocol per interval,
//! carrying the problem, a bounded excerpt of the input and how many were not logged since — so a
//! misbehaving client is visible without flooding the log.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

use crate::clock::EpochMillis;

/// At most one warning per protocol per this many milliseconds.
pub(crate) const LOG_INTERVAL_MS: i64 = 10_000;
const EXCERPT: usize = 160;

/// The rate-limited warning of one protocol.
pub(crate) struct BadInputLog {
    protocol: &'static str,
    next_at: AtomicI64,
    suppressed: AtomicU64,
}

pub(crate) static STATSD: BadInputLog = BadInputLog::new("statsd");
pub(crate) static GRAPHITE: BadInputLog = BadInputLog::new("graphite");
pub(crate) static RIEMANN: BadInputLog = BadInputLog::new("riemann");
/// Events of the stream listeners (statsd, Graphite, Riemann over UDP; statsd and Graphite over
/// TCP) refused one by one at `consolidate.max_series`.
pub(crate) static SERIES_LIMIT: BadInputLog = BadInputLog::new("statsd/graphite/riemann");

impl BadInputLog {
    pub(crate) const fn new(protocol: &'static str) -> Self {
        Self {
            protocol,
            next_at: AtomicI64::new(i64::MIN),
            suppressed: AtomicU64::new(0),
        }
    }

    /// Reports one bad input seen at `now`; true when it was logged.
    pub(crate) fn report(
        &self,
        now: EpochMillis,
        problem: &dyn std::fmt::Display,
        input: &str,
    ) -> bool {
        let next = self.next_at.load(Ordering::Relaxed);
        let due = now >= next
            && self
                .next_at
                .compare_exchange(
                    next,
                    now.saturating_add(LOG_INTERVAL_MS),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                )
                .is_ok();
        if !due {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let suppressed = self.suppressed.swap(0, Ordering::Relaxed);
        tracing::warn!(
            protocol = self.protocol,
            %problem,
            input = excerpt(input),
            not_logged_since_last = suppressed,
            "bad input skipped"
        );
        true
    }
}

/// The start of `input`, cut on a character boundary.
fn excerpt(input: &str) -> &str {
    if input.len() <= EXCERPT {
        return input;
    }
    let mut end = EXCERPT;
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    &input[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_warning_per_interval_and_the_rest_counted() {
        let log = BadInputLog::new("test");
        assert!(log.report(1_000, &"bad", "x"));
        assert!(!log.report(1_001, &"bad", "x"));
        assert!(!log.report(10_999, &"bad", "x"));
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 2);
        assert!(log.report(11_000, &"bad", "x"));
        assert_eq!(log.suppressed.load(Ordering::Relaxed), 0);
        assert_eq!(excerpt(&"é".repeat(200)).len(), EXCERPT);
    }
}
