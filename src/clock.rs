//! The only place that reads the wall clock. Everything that decides by time (which bucket is
//! due, which index is current) asks a [`Clock`], so tests and `strata replay` can supply their own.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMillis = i64;

/// A source of "now".
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> EpochMillis;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> EpochMillis {
        chrono::Utc::now().timestamp_millis()
    }
}

/// A clock that only moves when told to; shared between clones.
#[derive(Debug, Default, Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new(start: EpochMillis) -> Self {
        Self(Arc::new(AtomicI64::new(start)))
    }

    pub fn set(&self, now: EpochMillis) {
        self.0.store(now, Ordering::SeqCst);
    }

    pub fn advance(&self, by: std::time::Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> EpochMillis {
        self.0.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let clock = ManualClock::new(1_000);
        let shared = clock.clone();
        assert_eq!(shared.now(), 1_000);
        clock.advance(std::time::Duration::from_secs(2));
        assert_eq!(shared.now(), 3_000);
        clock.set(10);
        assert_eq!(shared.now(), 10);
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800_000);
    }
}
