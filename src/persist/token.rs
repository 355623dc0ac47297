//! The tokens of writes, stored in each document's `merge.w` (see `persist::merge`): a writer
//! that got no clear answer to a write and then finds its own token stored knows it landed.

use std::hash::BuildHasher;

/// Tokens distinct per write (a count) and unlike another run's or another writer's (a random
/// start). Consecutive tokens share their leading digits, so the node's block compression keeps
/// one in about a byte: random tokens (a hash per write, as before) cost about 11 bytes of each
/// stored bucket (BENCHMARKS.md, storage).
pub struct WriteTokens {
    last: u64,
}

impl WriteTokens {
    pub fn new() -> Self {
        Self {
            last: std::collections::hash_map::RandomState::new().hash_one(std::process::id()),
        }
    }

    pub fn next_token(&mut self) -> u64 {
        self.last = self.last.wrapping_add(1);
        self.last
    }
}

impl Default for WriteTokens {
    fn default() -> Self {
        Self::new()
    }
}

/// A token as stored in `merge.w` (and a log's id in `merge.logs`): 16 hex digits.
pub fn token_text(token: u64) -> String {
    format!("{token:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_distinct_per_write_and_differ_between_runs() {
        let mut a = WriteTokens::new();
        let first: Vec<u64> = (0..1000).map(|_| a.next_token()).collect();
        let mut sorted = first.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), first.len(), "distinct per write");
        let mut b = WriteTokens::new();
        assert!(
            !first.contains(&b.next_token()),
            "another writer's start is elsewhere"
        );
        assert_eq!(token_text(0xab), "00000000000000ab");
    }
}
