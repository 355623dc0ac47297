//! The only place that reads the wall clock or waits on it. Everything that decides by time
//! (which bucket is due, which index is current, when maintenance runs next) asks a [`Clock`], so
//! tests and `strata replay` can supply their own: a [`ManualClock`] moves only when told to and
//! wakes whoever waits on it, so a background task is tested in milliseconds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

/// Milliseconds since the Unix epoch, UTC.
pub type EpochMillis = i64;

/// A source of "now", and a way to wait for a later instant.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> EpochMillis;

    /// Resolves once `now() >= deadline` (at once when it already is).
    fn sleep_until(&self, deadline: EpochMillis) -> impl Future<Output = ()> + Send + '_;
}

/// The system's real-time clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> EpochMillis {
        chrono::Utc::now().timestamp_millis()
    }

    async fn sleep_until(&self, deadline: EpochMillis) {
        // Re-checked after each sleep: the wall clock may be stepped while we wait.
        loop {
            let left = deadline - self.now();
            if left <= 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(left as u64)).await;
        }
    }
}

/// A clock that only moves when told to; shared between clones. Moving it wakes every
/// [`Clock::sleep_until`] whose deadline it reaches.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<watch::Sender<EpochMillis>>);

impl Default for ManualClock {
    fn default() -> Self {
        Self::new(0)
    }
}

impl ManualClock {
    pub fn new(start: EpochMillis) -> Self {
        Self(Arc::new(watch::Sender::new(start)))
    }

    pub fn set(&self, now: EpochMillis) {
        self.0.send_replace(now);
    }

    pub fn advance(&self, by: Duration) {
        self.0.send_modify(|now| *now += by.as_millis() as i64);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> EpochMillis {
        *self.0.borrow()
    }

    async fn sleep_until(&self, deadline: EpochMillis) {
        let mut moves = self.0.subscribe();
        // The sender lives in `self`, so `changed` cannot fail while we borrow it.
        while *moves.borrow_and_update() < deadline {
            if moves.changed().await.is_err() {
                return;
            }
        }
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
        clock.advance(Duration::from_secs(2));
        assert_eq!(shared.now(), 3_000);
        clock.set(10);
        assert_eq!(shared.now(), 10);
    }

    #[tokio::test]
    async fn a_manual_sleep_ends_when_the_clock_reaches_its_deadline() {
        let clock = ManualClock::new(1_000);
        let sleeper = tokio::spawn({
            let clock = clock.clone();
            async move { clock.sleep_until(5_000).await }
        });
        clock.advance(Duration::from_secs(2));
        tokio::task::yield_now().await;
        assert!(!sleeper.is_finished(), "3 000 is before the deadline");
        clock.set(5_000);
        sleeper.await.unwrap();
        clock.sleep_until(4_000).await; // already past: at once
    }

    #[test]
    fn system_clock_is_after_2020() {
        assert!(SystemClock.now() > 1_577_836_800_000);
    }
}
