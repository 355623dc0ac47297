//! The share of time reads of stored data may take, so that dashboards cannot starve ingest.
//!
//! On a small machine a read's cost is mostly the node's (a one-hour read took the node about
//! 1.6 ms of CPU here; twenty readers asking back to back cost HTTP ingest 21–39 % of its rate,
//! see BENCHMARKS.md), and bounding reads at once is not enough: one read after another keeps a
//! core busy. So reads also draw on a budget of time: it fills at `share` seconds per second up
//! to [`BURST_MS`], a read starts only while the budget is not in debt, and pays for the time it
//! took once it ends. Reads now and then (a dashboard loading its panels) never wait; readers
//! asking without pause are held to `share` of the clock together.

use crate::clock::EpochMillis;

/// The most read time saved up: a dashboard of twenty one-year panels (about 40 ms each) loads
/// at once, while a flood of reads is held to its share within a second.
pub(crate) const BURST_MS: f64 = 1_000.0;

/// The read-time budget: pure bookkeeping, on times given by the caller.
#[derive(Debug, Clone)]
pub(crate) struct ReadBudget {
    /// Seconds of read time allowed per second of clock, summed over concurrent reads.
    share: f64,
    /// Milliseconds of read time available; negative while reads owe time.
    balance_ms: f64,
    /// When `balance_ms` was last brought up to date.
    at: EpochMillis,
}

impl ReadBudget {
    /// A full budget at `now`.
    pub(crate) fn new(share: f64, now: EpochMillis) -> Self {
        Self {
            share,
            balance_ms: BURST_MS,
            at: now,
        }
    }

    /// When a read may start: `now` when the budget is not in debt, else the time at which it
    /// will have filled back to zero.
    pub(crate) fn start_at(&mut self, now: EpochMillis) -> EpochMillis {
        self.fill(now);
        if self.balance_ms >= 0.0 {
            return now;
        }
        now + (-self.balance_ms / self.share).ceil() as EpochMillis
    }

    /// A read that took `took_ms` pays for it.
    pub(crate) fn spend(&mut self, took_ms: EpochMillis, now: EpochMillis) {
        self.fill(now);
        self.balance_ms -= took_ms.max(0) as f64;
    }

    fn fill(&mut self, now: EpochMillis) {
        let elapsed = (now - self.at).max(0) as f64;
        self.balance_ms = (self.balance_ms + elapsed * self.share).min(BURST_MS);
        self.at = self.at.max(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_now_and_then_never_wait() {
        let mut b = ReadBudget::new(0.25, 0);
        for i in 0..20 {
            let now = i * 10_000;
            assert_eq!(b.start_at(now), now, "a dashboard's refresh every 10 s");
            b.spend(800, now + 800);
        }
    }

    #[test]
    fn a_burst_is_served_then_reads_are_held_to_their_share() {
        let mut b = ReadBudget::new(0.25, 0);
        let mut now = 0;
        let mut read_ms = 0;
        let mut waited = 0;
        while now < 60_000 {
            let start = b.start_at(now);
            waited += start - now;
            now = start + 4;
            b.spend(4, now);
            read_ms += 4;
        }
        // A second of burst plus a quarter of the minute.
        let allowed = BURST_MS as i64 + 60_000 / 4;
        assert!(
            (allowed - 8..=allowed + 8).contains(&read_ms),
            "read {read_ms} ms of {allowed}"
        );
        assert!(
            waited > 40_000,
            "the rest of the time was waiting: {waited}"
        );
    }

    #[test]
    fn the_budget_saves_up_to_the_burst_only() {
        let mut b = ReadBudget::new(0.5, 0);
        b.spend(1_000, 0);
        assert_eq!(b.start_at(0), 0, "a debt of zero is no debt");
        b.spend(500, 0);
        assert_eq!(
            b.start_at(0),
            1_000,
            "500 ms owed at half a second per second"
        );
        assert_eq!(b.start_at(3_600_000), 3_600_000);
        b.spend(1_500, 3_600_000);
        assert_eq!(
            b.start_at(3_600_000),
            3_600_000 + 1_000,
            "an hour idle saved one burst, not more"
        );
    }
}
