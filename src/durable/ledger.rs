//! Which closed buckets the node has not acknowledged yet, by the log position that closed
//! them. A checkpoint at position P becomes the restart point once no bucket closed at or
//! before P is outstanding: a replay from it then rebuilds every bucket the node may lack.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Counts of outstanding buckets per position; shared by the consolidator (hands over), the
/// writer (acknowledges) and the checkpoint keeper (asks).
#[derive(Debug, Default)]
pub struct Ledger(Mutex<BTreeMap<u64, u64>>);

impl Ledger {
    /// `n` buckets closed at `seq` were handed to the writer.
    pub fn handed(&self, seq: u64, n: u64) {
        if n > 0 {
            *self.lock().entry(seq).or_default() += n;
        }
    }

    /// The node holds these buckets (per position, how many).
    pub fn acknowledged(&self, done: &BTreeMap<u64, u64>) {
        let mut open = self.lock();
        for (&seq, &n) in done {
            if let Some(left) = open.get_mut(&seq) {
                *left = left.saturating_sub(n);
                if *left == 0 {
                    open.remove(&seq);
                }
            }
        }
    }

    /// The oldest position with a bucket not acknowledged yet.
    pub fn oldest_outstanding(&self) -> Option<u64> {
        self.lock().keys().next().copied()
    }

    /// Buckets not acknowledged yet.
    pub fn outstanding(&self) -> u64 {
        self.lock().values().sum()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, u64>> {
        // The map stays consistent even if a holder panicked: every change is one statement.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_is_outstanding_until_each_of_its_buckets_is_acknowledged() {
        let ledger = Ledger::default();
        ledger.handed(5, 2);
        ledger.handed(9, 1);
        ledger.handed(7, 0);
        assert_eq!(ledger.oldest_outstanding(), Some(5));
        ledger.acknowledged(&BTreeMap::from([(5, 1), (9, 1)]));
        assert_eq!(
            (ledger.oldest_outstanding(), ledger.outstanding()),
            (Some(5), 1)
        );
        ledger.acknowledged(&BTreeMap::from([(5, 1)]));
        assert_eq!(ledger.oldest_outstanding(), None);
    }
}
