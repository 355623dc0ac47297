//! A mergeable quantile sketch (DDSketch): the percentiles of a bucket that still hold after
//! buckets are merged across time and resolutions.
//!
//! Values are counted in logarithmic bins: bin `i` holds |x| in (γ^(i-1), γ^i] with
//! γ = (1+α)/(1−α), so any quantile read back is within a relative error α of the exact
//! nearest-rank value, however many sketches were merged. α is [`RELATIVE_ACCURACY`] for every
//! sketch strata writes, so sketches of any archive merge with each other. Each sign keeps at most
//! [`MAX_BINS`] bins; past that the bins nearest zero are folded together (the accuracy of the
//! others is kept), so a sketch never grows beyond a few kilobytes.

use base64::Engine as _;

use crate::codec::{put_varint, Malformed, Reader};

/// The documented bound on the relative error of a quantile.
pub(crate) const RELATIVE_ACCURACY: f64 = 0.01;
/// Slightly tighter than documented, so that rounding in `ln` at bin edges stays inside the bound.
const INTERNAL_ACCURACY: f64 = 0.0099;
const _: () = assert!(INTERNAL_ACCURACY < RELATIVE_ACCURACY);
/// Bins per sign.
pub(crate) const MAX_BINS: usize = 2048;
/// Magnitudes below this count as zero.
const MIN_MAGNITUDE: f64 = 1e-12;
const FORMAT_VERSION: u8 = 1;

fn gamma() -> f64 {
    (1.0 + INTERNAL_ACCURACY) / (1.0 - INTERNAL_ACCURACY)
}

/// Why a stored sketch could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SketchError {
    #[error("sketch is not valid base64")]
    Base64,
    #[error("sketch is truncated or malformed")]
    Malformed,
    #[error("sketch format version {0} is not supported")]
    Version(u8),
}

impl From<Malformed> for SketchError {
    fn from(_: Malformed) -> Self {
        SketchError::Malformed
    }
}

/// Bins held as a short sorted list before the store turns dense: most buckets see few distinct
/// bins, and a list of a few entries costs far less than a dense span.
const SPARSE_MAX: usize = 24;

/// Counts per bin for one sign: a sorted list of (bin, count) while short, then dense from
/// `offset`.
#[derive(Debug, Clone, Default, PartialEq)]
struct Store {
    sparse: Vec<(i32, u64)>,
    offset: i32,
    counts: Vec<u64>,
}

impl Store {
    #[inline]
    fn add(&mut self, index: i32, n: u64) {
        if self.counts.is_empty() {
            match self.sparse.binary_search_by_key(&index, |&(i, _)| i) {
                Ok(at) => {
                    self.sparse[at].1 += n;
                    return;
                }
                Err(at) if self.sparse.len() < SPARSE_MAX => {
                    self.sparse.insert(at, (index, n));
                    return;
                }
                Err(_) => self.densify(),
            }
        }
        let slot = self.slot_for(index);
        self.counts[slot] += n;
    }

    fn densify(&mut self) {
        for (index, n) in std::mem::take(&mut self.sparse) {
            let slot = self.slot_for(index);
            self.counts[slot] += n;
        }
    }

    /// The slot of bin `index` in the dense form, growing it (and folding its lowest bins once
    /// it would exceed [`MAX_BINS`]).
    fn slot_for(&mut self, index: i32) -> usize {
        if self.counts.is_empty() {
            self.offset = index;
            self.counts.push(0);
            return 0;
        }
        let high = self.offset + self.counts.len() as i32 - 1;
        if index < self.offset {
            // Never grow downwards past the bound: fold into the lowest bin allowed.
            let lowest = (high - MAX_BINS as i32 + 1).max(index);
            let grow = (self.offset - lowest) as usize;
            if grow > 0 {
                self.counts.splice(0..0, std::iter::repeat_n(0, grow));
                self.offset = lowest;
            }
            return (index.max(lowest) - self.offset) as usize;
        }
        if index > high {
            let len = (index - self.offset + 1) as usize;
            if len > MAX_BINS {
                let fold = len - MAX_BINS;
                let folded: u64 = self.counts.iter().take(fold + 1).sum();
                self.counts.drain(..fold.min(self.counts.len()));
                self.offset += fold as i32;
                if self.counts.is_empty() {
                    self.counts.push(0);
                }
                self.counts[0] = folded;
            }
            self.counts.resize((index - self.offset + 1) as usize, 0);
        }
        (index - self.offset) as usize
    }

    /// Non-empty bins, ascending (at most one of the two forms holds any).
    fn bins(&self) -> impl DoubleEndedIterator<Item = (i32, u64)> + '_ {
        let dense = self
            .counts
            .iter()
            .enumerate()
            .filter(|(_, &c)| c > 0)
            .map(|(i, &c)| (self.offset + i as i32, c));
        self.sparse.iter().copied().chain(dense)
    }

    fn merge(&mut self, other: &Store) {
        for (index, n) in other.bins() {
            self.add(index, n);
        }
    }

    fn span(&self) -> usize {
        match (self.sparse.first(), self.sparse.last()) {
            (Some(lo), Some(hi)) => (hi.0 - lo.0 + 1) as usize,
            _ => self.counts.len(),
        }
    }
}

/// A quantile sketch of the values of one bucket (or of many merged buckets).
#[derive(Debug, Clone, PartialEq)]
pub struct Sketch {
    positive: Store,
    negative: Store,
    zero: u64,
    count: u64,
    min: f64,
    max: f64,
}

impl Default for Sketch {
    fn default() -> Self {
        Self::new()
    }
}

impl Sketch {
    pub fn new() -> Self {
        Self {
            positive: Store::default(),
            negative: Store::default(),
            zero: 0,
            count: 0,
            min: f64::INFINITY,
            max: f64::NEG_INFINITY,
        }
    }

    /// Values counted.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Counts `value` once.
    #[inline]
    pub fn add(&mut self, value: f64) {
        self.add_n(value, 1);
    }

    /// Counts `value` `n` times. Non-finite values are ignored (ingest refuses them anyway).
    pub fn add_n(&mut self, value: f64, n: u64) {
        if n == 0 || !value.is_finite() {
            return;
        }
        let magnitude = value.abs();
        if magnitude < MIN_MAGNITUDE {
            self.zero += n;
        } else if value > 0.0 {
            self.positive.add(bin_index(magnitude), n);
        } else {
            self.negative.add(bin_index(magnitude), n);
        }
        self.count += n;
        self.min = self.min.min(value);
        self.max = self.max.max(value);
    }

    /// Adds every value counted by `other`.
    pub fn merge(&mut self, other: &Sketch) {
        self.positive.merge(&other.positive);
        self.negative.merge(&other.negative);
        self.zero += other.zero;
        self.count += other.count;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
    }

    /// The value of nearest rank ⌈q·n⌉ (q from 0 to 1), within [`RELATIVE_ACCURACY`] of the exact
    /// one; `None` when empty.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        if rank == 1 && q <= 0.0 {
            return Some(self.min);
        }
        if rank >= self.count {
            return Some(self.max);
        }
        let mut seen = 0;
        for (index, n) in self.negative.bins().rev() {
            seen += n;
            if seen >= rank {
                return Some(self.clamp(-bin_value(index)));
            }
        }
        seen += self.zero;
        if seen >= rank {
            return Some(0.0_f64.clamp(self.min, self.max));
        }
        for (index, n) in self.positive.bins() {
            seen += n;
            if seen >= rank {
                return Some(self.clamp(bin_value(index)));
            }
        }
        Some(self.max)
    }

    fn clamp(&self, v: f64) -> f64 {
        v.clamp(self.min, self.max)
    }

    /// The compact binary form, base64 for a JSON document.
    pub fn to_base64(&self) -> String {
        base64::engine::general_purpose::STANDARD_NO_PAD.encode(self.encode())
    }

    pub fn from_base64(text: &str) -> Result<Self, SketchError> {
        let bytes = base64::engine::general_purpose::STANDARD_NO_PAD
            .decode(text.trim_end_matches('='))
            .map_err(|_| SketchError::Base64)?;
        Self::decode(&bytes)
    }

    /// Version, zero count, min and max, then each store as offset, length and counts
    /// (varints; offsets zigzag).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.positive.span() + self.negative.span());
        out.push(FORMAT_VERSION);
        put_varint(&mut out, self.zero);
        out.extend_from_slice(&self.min.to_le_bytes());
        out.extend_from_slice(&self.max.to_le_bytes());
        for store in [&self.positive, &self.negative] {
            let (Some((first, _)), Some((last, _))) =
                (store.bins().next(), store.bins().next_back())
            else {
                put_varint(&mut out, 0);
                continue;
            };
            put_varint(&mut out, (last - first + 1) as u64);
            put_varint(&mut out, zigzag(first));
            let mut next = first;
            for (index, c) in store.bins() {
                (next..index).for_each(|_| put_varint(&mut out, 0));
                put_varint(&mut out, c);
                next = index + 1;
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, SketchError> {
        let mut r = Reader(bytes);
        let version = r.byte()?;
        if version != FORMAT_VERSION {
            return Err(SketchError::Version(version));
        }
        let mut sketch = Sketch::new();
        sketch.zero = r.varint()?;
        sketch.min = f64::from_le_bytes(r.array()?);
        sketch.max = f64::from_le_bytes(r.array()?);
        sketch.count = sketch.zero;
        for negative in [false, true] {
            let len = r.varint()? as usize;
            if len == 0 {
                continue;
            }
            if len > MAX_BINS {
                return Err(SketchError::Malformed);
            }
            let offset = unzigzag(r.varint()?).ok_or(SketchError::Malformed)?;
            let mut counts = Vec::with_capacity(len);
            for _ in 0..len {
                let c = r.varint()?;
                sketch.count = sketch.count.checked_add(c).ok_or(SketchError::Malformed)?;
                counts.push(c);
            }
            // Rebuilt bin by bin, so a sketch of few bins is sparse again (as small as before
            // it was stored) rather than a dense span.
            let mut store = Store::default();
            for (i, &c) in counts.iter().enumerate().filter(|(_, &c)| c > 0) {
                store.add(offset.saturating_add(i as i32), c);
            }
            if negative {
                sketch.negative = store;
            } else {
                sketch.positive = store;
            }
        }
        // A non-empty sketch needs min ≤ max (false for NaN too).
        let bounds_ok = sketch.count == 0 || sketch.min <= sketch.max;
        if !r.0.is_empty() || !bounds_ok {
            return Err(SketchError::Malformed);
        }
        Ok(sketch)
    }
}

#[inline]
fn bin_index(magnitude: f64) -> i32 {
    (magnitude.ln() / gamma().ln()).ceil() as i32
}

/// The value that represents bin `index`: within the relative accuracy of anything in it.
fn bin_value(index: i32) -> f64 {
    let g = gamma();
    2.0 * g.powi(index) / (1.0 + g)
}

fn zigzag(v: i32) -> u64 {
    ((v << 1) ^ (v >> 31)) as u32 as u64
}

fn unzigzag(v: u64) -> Option<i32> {
    let v = u32::try_from(v).ok()?;
    Some(((v >> 1) as i32) ^ -((v & 1) as i32))
}

/// The exact nearest-rank quantile of `sorted` (the definition the sketch approximates).
#[cfg(test)]
fn nearest_rank(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize).max(1);
    Some(sorted[rank.min(sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic spread of values over several orders of magnitude, both signs.
    fn values(n: usize, seed: u64) -> Vec<f64> {
        let mut x = seed;
        (0..n)
            .map(|_| {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let u = (x >> 11) as f64 / (1u64 << 53) as f64;
                let v = (u * 12.0 - 4.0).exp();
                if x & 0x1_0000 != 0 && x % 7 == 0 {
                    -v
                } else {
                    v
                }
            })
            .collect()
    }

    fn within_bound(estimate: f64, exact: f64) -> bool {
        (estimate - exact).abs() <= RELATIVE_ACCURACY * exact.abs() + 1e-12
    }

    #[test]
    fn quantiles_are_within_one_percent_of_nearest_rank() {
        let vals = values(20_000, 7);
        let mut sketch = Sketch::new();
        vals.iter().for_each(|&v| sketch.add(v));
        let mut sorted = vals.clone();
        sorted.sort_by(f64::total_cmp);
        for q in [0.0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 0.999, 1.0] {
            let exact = nearest_rank(&sorted, q).unwrap();
            let estimate = sketch.quantile(q).unwrap();
            assert!(
                within_bound(estimate, exact),
                "q={q}: {estimate} vs exact {exact}"
            );
        }
    }

    #[test]
    fn merged_sketches_equal_one_sketch_of_all_values() {
        let vals = values(5_000, 3);
        let mut whole = Sketch::new();
        vals.iter().for_each(|&v| whole.add(v));
        let mut merged = Sketch::new();
        for chunk in vals.chunks(333) {
            let mut part = Sketch::new();
            chunk.iter().for_each(|&v| part.add(v));
            merged.merge(&part);
        }
        for q in [0.5, 0.9, 0.99] {
            assert_eq!(merged.quantile(q), whole.quantile(q));
        }
        assert_eq!(merged.count(), 5_000);
    }

    #[test]
    fn encoding_round_trips_and_is_compact() {
        let mut s = Sketch::new();
        values(10_000, 11).iter().for_each(|&v| s.add(v));
        s.add(0.0);
        let text = s.to_base64();
        let back = Sketch::from_base64(&text).unwrap();
        assert_eq!(back.quantile(0.5), s.quantile(0.5));
        assert_eq!(back.count(), s.count());
        assert!(text.len() < 4_000, "{} bytes", text.len());
        assert_eq!(Sketch::decode(&[9]), Err(SketchError::Version(9)));
        assert_eq!(Sketch::decode(&[1, 0]), Err(SketchError::Malformed));
        assert_eq!(Sketch::from_base64("!!"), Err(SketchError::Base64));
    }

    #[test]
    fn size_is_bounded_and_high_quantiles_stay_accurate() {
        let mut s = Sketch::new();
        for i in 0..200_000 {
            s.add(1e-10 * 1.001_f64.powi(i));
        }
        assert!(s.positive.counts.len() <= MAX_BINS);
        let exact = 1e-10 * 1.001_f64.powi((0.99_f64 * 200_000.0).ceil() as i32 - 1);
        assert!(within_bound(s.quantile(0.99).unwrap(), exact));
    }

    #[test]
    fn single_value_and_repeats_are_exact_at_the_edges() {
        let mut s = Sketch::new();
        s.add_n(42.0, 10);
        assert_eq!(s.quantile(0.5), Some(42.0));
        assert_eq!(Sketch::new().quantile(0.5), None);
    }
}
