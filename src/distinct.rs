//! Distinct members of a set bucket: counted exactly up to [`MAX_EXACT`] members, then by a
//! HyperLogLog (2^14 registers, 16 KiB, standard error 0.81 %), so that no client can grow a
//! bucket's memory without bound by sending ever new members.
//!
//! Invariant: a bucket's members never take more than 16 KiB. The exact phase is a sorted array
//! of 64-bit hashes (8 bytes a member, grown by doubling, so 2048 members fill exactly 16 KiB);
//! a hash set would take about 2.3 times as much for the same members (buckets at 7/8 load plus
//! a control byte each). Inserting shifts at most 16 KiB, and a member already present (the
//! common case) costs a binary search.

use base64::Engine;

use crate::codec::{put_varint, Reader};

/// Members counted exactly, at most; past this the count is an estimate.
pub(crate) const MAX_EXACT: usize = 2048;
const PRECISION: u32 = 14;
const REGISTERS: usize = 1 << PRECISION;

/// The distinct members (as 64-bit hashes) seen in one bucket.
#[derive(Debug, Clone, PartialEq)]
pub enum Distinct {
    /// Sorted, without duplicates.
    Exact(Vec<u64>),
    Estimated(Box<[u8; REGISTERS]>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(Vec::new())
    }
}

impl Distinct {
    /// Counts `hash` (a well-mixed 64-bit hash of the member).
    pub fn insert(&mut self, hash: u64) {
        match self {
            Distinct::Exact(set) => {
                let Err(at) = set.binary_search(&hash) else {
                    return;
                };
                if set.len() < MAX_EXACT {
                    set.insert(at, hash);
                } else {
                    let mut registers = registers_of(set);
                    observe(&mut registers, hash);
                    *self = Distinct::Estimated(registers);
                }
            }
            Distinct::Estimated(registers) => observe(registers, hash),
        }
    }

    /// Adds every member of `other`.
    pub fn merge(&mut self, other: Distinct) {
        match other {
            Distinct::Exact(set) => set.into_iter().for_each(|h| self.insert(h)),
            Distinct::Estimated(theirs) => {
                if let Distinct::Exact(set) = self {
                    *self = Distinct::Estimated(registers_of(set));
                }
                if let Distinct::Estimated(mine) = self {
                    for (m, t) in mine.iter_mut().zip(theirs.iter()) {
                        *m = (*m).max(*t);
                    }
                }
            }
        }
    }

    /// How many distinct members: exact up to [`MAX_EXACT`], estimated past it.
    pub fn count(&self) -> u64 {
        match self {
            Distinct::Exact(set) => set.len() as u64,
            Distinct::Estimated(registers) => estimate(registers),
        }
    }
}

impl Distinct {
    /// The stored form, base64: `0`, the count and the sorted hashes as varint differences
    /// (about 8 bytes a member), or `1` and the 16 KiB of registers.
    pub fn to_base64(&self) -> String {
        let mut out = Vec::new();
        self.encode(&mut out);
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(out)
    }

    /// The binary form of [`Distinct::to_base64`], appended to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Distinct::Exact(set) => {
                out.push(0);
                put_varint(out, set.len() as u64);
                let mut previous = 0;
                for &h in set {
                    put_varint(out, h - previous);
                    previous = h;
                }
            }
            Distinct::Estimated(registers) => {
                out.push(1);
                out.extend_from_slice(&registers[..]);
            }
        }
    }

    /// Reads back [`Distinct::to_base64`]; `None` when it is not that.
    pub fn from_base64(text: &str) -> Option<Self> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text.trim_end_matches('='))
            .ok()?;
        let mut r = Reader(&bytes);
        Self::decode(&mut r).filter(|_| r.is_empty())
    }

    /// Reads [`Distinct::encode`]'s form from the front of `r`.
    pub(crate) fn decode(r: &mut Reader<'_>) -> Option<Self> {
        match r.byte().ok()? {
            0 => {
                let n = r.varint().ok()? as usize;
                if n > MAX_EXACT {
                    return None;
                }
                let mut set = Vec::with_capacity(n);
                let mut previous = 0u64;
                for _ in 0..n {
                    previous = previous.checked_add(r.varint().ok()?)?;
                    set.push(previous);
                }
                let sorted = set.windows(2).all(|w| w[0] < w[1]);
                sorted.then_some(Distinct::Exact(set))
            }
            1 => {
                let block = r.0.get(..REGISTERS)?;
                r.0 = &r.0[REGISTERS..];
                let registers: Box<[u8; REGISTERS]> =
                    block.to_vec().into_boxed_slice().try_into().ok()?;
                Some(Distinct::Estimated(registers))
            }
            _ => None,
        }
    }
}

/// The HyperLogLog registers of exact members.
fn registers_of(members: &[u64]) -> Box<[u8; REGISTERS]> {
    let mut registers = Box::new([0u8; REGISTERS]);
    members.iter().for_each(|&h| observe(&mut registers, h));
    registers
}

fn observe(registers: &mut [u8; REGISTERS], hash: u64) {
    let index = (hash >> (64 - PRECISION)) as usize;
    // The rank of the first 1 bit in the remaining 50 bits (a sentinel bit bounds it).
    let rest = (hash << PRECISION) | (1 << (PRECISION - 1));
    let rank = rest.leading_zeros() as u8 + 1;
    registers[index] = registers[index].max(rank);
}

fn estimate(registers: &[u8; REGISTERS]) -> u64 {
    let m = REGISTERS as f64;
    let alpha = 0.7213 / (1.0 + 1.079 / m);
    let sum: f64 = registers.iter().map(|&r| 2f64.powi(-i32::from(r))).sum();
    let raw = alpha * m * m / sum;
    let zeros = registers.iter().filter(|&&r| r == 0).count();
    let value = if raw <= 2.5 * m && zeros > 0 {
        // Linear counting is the better estimate while many registers are still empty.
        m * (m / zeros as f64).ln()
    } else {
        raw
    };
    value.round() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(i: u64) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes())
    }

    #[test]
    fn both_phases_read_back_as_stored() {
        let mut d = Distinct::default();
        (0..100).for_each(|i| d.insert(hash(i)));
        let text = d.to_base64();
        assert!(
            text.len() < 100 * 12,
            "{} bytes for 100 members",
            text.len()
        );
        assert_eq!(Distinct::from_base64(&text), Some(d.clone()));
        (100..5000).for_each(|i| d.insert(hash(i)));
        assert!(matches!(d, Distinct::Estimated(_)));
        assert_eq!(Distinct::from_base64(&d.to_base64()), Some(d));
        assert_eq!(Distinct::from_base64("AQ"), None, "registers cut short");
        assert_eq!(Distinct::from_base64("!"), None);
    }

    #[test]
    fn exact_up_to_the_limit_then_estimated_within_three_percent() {
        let mut d = Distinct::default();
        for i in 0..MAX_EXACT as u64 {
            d.insert(hash(i));
            d.insert(hash(i));
        }
        assert_eq!(d.count(), MAX_EXACT as u64);
        let Distinct::Exact(members) = &d else {
            panic!("still exact at the limit")
        };
        assert!(
            members.capacity() * 8 <= REGISTERS,
            "the exact phase holds {} bytes, more than the 16 KiB HyperLogLog",
            members.capacity() * 8
        );
        d.insert(hash(MAX_EXACT as u64));
        assert!(matches!(d, Distinct::Estimated(_)));
        let error = (d.count() as f64 - (MAX_EXACT + 1) as f64).abs() / (MAX_EXACT + 1) as f64;
        assert!(error < 0.02, "just past the limit: {} ({error})", d.count());
        for n in [10_000u64, 100_000, 1_000_000] {
            let mut d = Distinct::default();
            (0..n).for_each(|i| d.insert(hash(i)));
            assert!(matches!(d, Distinct::Estimated(_)));
            let error = (d.count() as f64 - n as f64).abs() / n as f64;
            assert!(error < 0.03, "{n}: {} ({error})", d.count());
        }
    }

    #[test]
    fn merging_counts_the_union() {
        let (mut a, mut b) = (Distinct::default(), Distinct::default());
        (0..50_000).for_each(|i| a.insert(hash(i)));
        (25_000..75_000).for_each(|i| b.insert(hash(i)));
        a.merge(b);
        let error = (a.count() as f64 - 75_000.0).abs() / 75_000.0;
        assert!(error < 0.03, "{}", a.count());
        let (mut c, mut d) = (Distinct::default(), Distinct::default());
        (0..10).for_each(|i| c.insert(hash(i)));
        (5..20).for_each(|i| d.insert(hash(i)));
        c.merge(d);
        assert_eq!(c.count(), 20);
    }
}
