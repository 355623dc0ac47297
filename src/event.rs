//! The event every protocol is turned into, and the series key that groups events.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::clock::EpochMillis;

/// How a series' values are meant to be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum MetricKind {
    /// A level sampled over time (temperature, queue length).
    #[default]
    Gauge,
    /// An increment (requests served since the last report).
    Counter,
    /// A duration measured per occurrence (statsd `ms`).
    Timer,
    /// Members of a set (statsd `s`): a bucket counts the distinct ones.
    Set,
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Timer => "timer",
            MetricKind::Set => "set",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gauge" => Some(MetricKind::Gauge),
            "counter" => Some(MetricKind::Counter),
            "timer" => Some(MetricKind::Timer),
            "set" => Some(MetricKind::Set),
            _ => None,
        }
    }
}

// Control characters are refused in every part of a key, so they can separate the parts.
const PART: char = '\u{1f}';
const PAIR: char = '\u{1e}';
const LABEL: char = '\u{1d}';

/// Where this thread packs keys, and the keys it built lately: a key seen again is shared, not
/// allocated again (a receiver sees the same few thousand series over and over).
#[derive(Default)]
struct KeyBuilder {
    packing: String,
    recent: hashbrown::HashSet<Arc<str>>,
}

thread_local! {
    static KEYS: std::cell::RefCell<KeyBuilder> = std::cell::RefCell::new(KeyBuilder::default());
}

impl KeyBuilder {
    /// The shared string for what was just packed.
    fn intern(&mut self) -> Arc<str> {
        if let Some(key) = self.recent.get(self.packing.as_str()) {
            return key.clone();
        }
        if self.recent.len() >= RECENT_KEYS_CAP {
            self.recent.clear();
        }
        let key: Arc<str> = Arc::from(self.packing.as_str());
        self.recent.insert(key.clone());
        key
    }
}

/// How many recent keys a thread keeps before it starts over.
const RECENT_KEYS_CAP: usize = 16_384;

/// Identifies a series: name, host, tags sorted by key and labels (Riemann's list of tags) sorted,
/// packed into one shared string so that the consolidator can hash it in one pass. Building one
/// costs at most one allocation, none when this thread built an equal key lately.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey(Arc<str>);

impl SeriesKey {
    /// Builds a key. The parts must not contain control characters (the ingest validator
    /// guarantees it); `tags` is sorted here.
    pub fn new(name: &str, host: Option<&str>, tags: &mut [(&str, &str)]) -> Self {
        Self::with_labels(name, host, tags, &mut [])
    }

    /// Builds a key that also carries labels (sorted and deduplicated here).
    pub fn with_labels(
        name: &str,
        host: Option<&str>,
        tags: &mut [(&str, &str)],
        labels: &mut [&str],
    ) -> Self {
        tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
        labels.sort_unstable();
        let len = name.len()
            + host.map_or(0, str::len)
            + tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + labels.iter().map(|l| l.len() + 2).sum::<usize>()
            + 1;
        // Packed in a reused buffer, then shared with an earlier equal key or copied once into
        // a new shared string (a `String` turned into an `Arc<str>` would be two allocations).
        KEYS.with_borrow_mut(|keys| {
            keys.packing.clear();
            keys.packing.reserve(len);
            Self::pack(&mut keys.packing, name, host, tags, labels);
            Self(keys.intern())
        })
    }

    fn pack(
        packed: &mut String,
        name: &str,
        host: Option<&str>,
        tags: &[(&str, &str)],
        labels: &[&str],
    ) {
        packed.push_str(name);
        packed.push(PART);
        packed.push_str(host.unwrap_or(""));
        for (k, v) in tags.iter() {
            packed.push(PART);
            packed.push_str(k);
            packed.push(PAIR);
            packed.push_str(v);
        }
        let mut previous = None;
        for &label in labels.iter() {
            if previous != Some(label) {
                packed.push(PART);
                packed.push(LABEL);
                packed.push_str(label);
            }
            previous = Some(label);
        }
    }

    /// The packed form, as used for hashing and document ids.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn shared(&self) -> Arc<str> {
        self.0.clone()
    }

    pub fn from_shared(packed: Arc<str>) -> Self {
        Self(packed)
    }

    pub fn name(&self) -> &str {
        parts(&self.0).0
    }

    pub fn host(&self) -> Option<&str> {
        parts(&self.0).1
    }

    pub fn tags(&self) -> impl Iterator<Item = (&str, &str)> + Clone {
        tags(&self.0)
    }

    pub fn labels(&self) -> impl Iterator<Item = &str> + Clone {
        labels(&self.0)
    }
}

/// Splits a packed key into name, host and the rest (the tags).
fn parts(packed: &str) -> (&str, Option<&str>, &str) {
    let mut it = packed.splitn(3, PART);
    let name = it.next().unwrap_or("");
    let host = it.next().filter(|h| !h.is_empty());
    (name, host, it.next().unwrap_or(""))
}

/// The tags of a packed key, in key order.
pub fn tags(packed: &str) -> impl Iterator<Item = (&str, &str)> + Clone {
    let rest = parts(packed).2;
    rest.split(PART)
        .filter(|p| !p.is_empty() && !p.starts_with(LABEL))
        .map(|pair| pair.split_once(PAIR).unwrap_or((pair, "")))
}

/// The labels of a packed key, sorted.
pub fn labels(packed: &str) -> impl Iterator<Item = &str> + Clone {
    parts(packed)
        .2
        .split(PART)
        .filter_map(|p| p.strip_prefix(LABEL))
}

/// The name of a packed key.
pub fn name(packed: &str) -> &str {
    parts(packed).0
}

/// The host of a packed key.
pub fn host(packed: &str) -> Option<&str> {
    parts(packed).1
}

impl fmt::Debug for SeriesKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(h) = self.host() {
            write!(f, "@{h}")?;
        }
        for (k, v) in self.tags() {
            write!(f, ",{k}={v}")?;
        }
        for label in self.labels() {
            write!(f, ",#{label}")?;
        }
        Ok(())
    }
}

/// One validated measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub series: SeriesKey,
    pub kind: MetricKind,
    pub sample: Sample,
    pub timestamp: EpochMillis,
}

impl Event {
    /// An event of one plain value.
    pub fn value(series: SeriesKey, kind: MetricKind, value: f64, timestamp: EpochMillis) -> Self {
        Self {
            series,
            kind,
            sample: Sample::Value(value),
            timestamp,
        }
    }
}

/// What an event carries.
#[derive(Debug, Clone, PartialEq)]
pub enum Sample {
    /// One measured value.
    Value(f64),
    /// One member of a set, as a 64-bit hash of what the client sent.
    Member(u64),
    /// Many values already summarised by the client (DaTtSs partials): merged exactly.
    Partial(Box<Partial>),
}

impl Sample {
    /// The value of a single-value sample.
    pub fn as_value(&self) -> Option<f64> {
        match self {
            Sample::Value(v) => Some(*v),
            _ => None,
        }
    }
}

/// A client-side aggregate of `count` values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Partial {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
}

impl Partial {
    /// A partial from the numbers a client sent (the count as a JSON number), checked; the error
    /// names the field at fault.
    pub fn from_numbers(
        count: f64,
        sum: f64,
        min: f64,
        max: f64,
        first: f64,
        last: f64,
    ) -> Result<Self, PartialError> {
        if !(1.0..=9.0e15).contains(&count) || count.fract() != 0.0 {
            return Err(PartialError::Count(count));
        }
        let p = Partial {
            count: count as u64,
            sum,
            min,
            max,
            first,
            last,
        };
        p.check()?;
        Ok(p)
    }

    /// Checks what a client could get wrong: a count of at least one, finite numbers,
    /// min ≤ first, last, mean ≤ max. The error names the field at fault.
    pub fn check(&self) -> Result<(), PartialError> {
        let fields = [
            ("sum", self.sum),
            ("min", self.min),
            ("max", self.max),
            ("first", self.first),
            ("last", self.last),
        ];
        if let Some(&(field, value)) = fields.iter().find(|(_, v)| !in_range(*v)) {
            return Err(PartialError::NotFinite { field, value });
        }
        if self.count == 0 {
            return Err(PartialError::ZeroCount);
        }
        if self.min > self.max {
            return Err(PartialError::MinAboveMax {
                min: self.min,
                max: self.max,
            });
        }
        for (field, value) in [("first", self.first), ("last", self.last)] {
            if value < self.min || value > self.max {
                return Err(PartialError::OutsideRange { field, value });
            }
        }
        let mean = self.sum / self.count as f64;
        let slack = 1e-9 * mean.abs().max(1.0);
        if mean < self.min - slack || mean > self.max + slack {
            return Err(PartialError::MeanOutside {
                sum: self.sum,
                count: self.count,
            });
        }
        Ok(())
    }
}

/// The largest magnitude of a value strata takes. A bucket adds its values, and 2^60 values of
/// this size still sum to a finite `f64` (the largest is 1.8e308): no statistic can overflow to
/// infinity, which JSON cannot carry (the node would store null and reads would say 0).
pub const MAX_MAGNITUDE: f64 = 1e290;

/// Whether `v` is a value strata takes: finite and within ±[`MAX_MAGNITUDE`].
#[inline]
pub fn in_range(v: f64) -> bool {
    v.is_finite() && v.abs() <= MAX_MAGNITUDE
}

/// Why a partial aggregate was refused; [`PartialError::field`] names the field at fault.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PartialError {
    #[error("must be a whole number of at least 1, got {0}")]
    Count(f64),
    #[error("must be a finite number within ±1e290, got {value}")]
    NotFinite { field: &'static str, value: f64 },
    #[error("must be at least 1")]
    ZeroCount,
    #[error("{min} is above max {max}")]
    MinAboveMax { min: f64, max: f64 },
    #[error("{value} is outside min..max")]
    OutsideRange { field: &'static str, value: f64 },
    #[error("{sum} over count {count} is outside min..max")]
    MeanOutside { sum: f64, count: u64 },
}

impl PartialError {
    /// The field at fault: `count`, `sum`, `min`, `max`, `first` or `last`.
    pub fn field(&self) -> &'static str {
        match self {
            PartialError::Count(_) | PartialError::ZeroCount => "count",
            PartialError::NotFinite { field, .. } | PartialError::OutsideRange { field, .. } => {
                field
            }
            PartialError::MinAboveMax { .. } => "min",
            PartialError::MeanOutside { .. } => "sum",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_built_again_shares_the_first_ones_string() {
        let a = SeriesKey::new("cpu", Some("h1"), &mut [("dc", "x")]);
        let b = SeriesKey::new("cpu", Some("h1"), &mut [("dc", "x")]);
        let other = SeriesKey::new("cpu", Some("h2"), &mut [("dc", "x")]);
        assert!(Arc::ptr_eq(&a.0, &b.0));
        assert!(!Arc::ptr_eq(&a.0, &other.0));
        assert_ne!(a, other);
    }

    #[test]
    fn key_parts_round_trip_and_tags_are_sorted() {
        let k = SeriesKey::new("cpu", Some("web-1"), &mut [("zone", "b"), ("dc", "paris")]);
        assert_eq!(k.name(), "cpu");
        assert_eq!(k.host(), Some("web-1"));
        assert_eq!(
            k.tags().collect::<Vec<_>>(),
            vec![("dc", "paris"), ("zone", "b")]
        );
        let same = SeriesKey::new("cpu", Some("web-1"), &mut [("dc", "paris"), ("zone", "b")]);
        assert_eq!(k, same);
    }

    #[test]
    fn host_and_tags_are_optional() {
        let k = SeriesKey::new("load", None, &mut []);
        assert_eq!(k.host(), None);
        assert_eq!(k.tags().count(), 0);
        assert_ne!(k, SeriesKey::new("load", Some("h"), &mut []));
    }

    #[test]
    fn labels_are_sorted_deduplicated_and_apart_from_tags() {
        let k = SeriesKey::with_labels("m", None, &mut [("a", "1")], &mut ["web", "db", "web"]);
        assert_eq!(k.labels().collect::<Vec<_>>(), vec!["db", "web"]);
        assert_eq!(k.tags().collect::<Vec<_>>(), vec![("a", "1")]);
        assert_ne!(k, SeriesKey::new("m", None, &mut [("a", "1")]));
        assert_eq!(format!("{k:?}"), "m,a=1,#db,#web");
    }

    #[test]
    fn partial_checks_name_what_is_inconsistent() {
        let ok = Partial {
            count: 3,
            sum: 6.0,
            min: 1.0,
            max: 3.0,
            first: 1.0,
            last: 3.0,
        };
        assert_eq!(ok.check(), Ok(()));
        assert_eq!(
            Partial { count: 0, ..ok }.check().unwrap_err().field(),
            "count"
        );
        assert_eq!(
            Partial { min: 4.0, ..ok }.check().unwrap_err().field(),
            "min"
        );
        assert_eq!(
            Partial { last: 9.0, ..ok }.check().unwrap_err().field(),
            "last"
        );
        assert_eq!(
            Partial { sum: 60.0, ..ok }.check().unwrap_err().field(),
            "sum"
        );
    }

    #[test]
    fn empty_tag_value_survives() {
        let k = SeriesKey::new("x", None, &mut [("k", "")]);
        assert_eq!(k.tags().collect::<Vec<_>>(), vec![("k", "")]);
    }
}
