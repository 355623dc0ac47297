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
}

impl MetricKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MetricKind::Gauge => "gauge",
            MetricKind::Counter => "counter",
            MetricKind::Timer => "timer",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "gauge" => Some(MetricKind::Gauge),
            "counter" => Some(MetricKind::Counter),
            "timer" => Some(MetricKind::Timer),
            _ => None,
        }
    }
}

// Control characters are refused in every part of a key, so they can separate the parts.
const PART: char = '\u{1f}';
const PAIR: char = '\u{1e}';

/// Identifies a series: name, host and tags sorted by key, packed into one shared string so that
/// an event costs one allocation and the consolidator can hash it in one pass.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SeriesKey(Arc<str>);

impl SeriesKey {
    /// Builds a key. The parts must not contain control characters (the ingest validator
    /// guarantees it); `tags` is sorted here.
    pub fn new(name: &str, host: Option<&str>, tags: &mut [(&str, &str)]) -> Self {
        tags.sort_unstable_by(|a, b| a.0.cmp(b.0));
        let len = name.len()
            + host.map_or(0, str::len)
            + tags
                .iter()
                .map(|(k, v)| k.len() + v.len() + 2)
                .sum::<usize>()
            + 1;
        let mut packed = String::with_capacity(len);
        packed.push_str(name);
        packed.push(PART);
        packed.push_str(host.unwrap_or(""));
        for (k, v) in tags.iter() {
            packed.push(PART);
            packed.push_str(k);
            packed.push(PAIR);
            packed.push_str(v);
        }
        Self(packed.into())
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
        .filter(|p| !p.is_empty())
        .map(|pair| pair.split_once(PAIR).unwrap_or((pair, "")))
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
        Ok(())
    }
}

/// One validated measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub series: SeriesKey,
    pub kind: MetricKind,
    pub value: f64,
    pub timestamp: EpochMillis,
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn empty_tag_value_survives() {
        let k = SeriesKey::new("x", None, &mut [("k", "")]);
        assert_eq!(k.tags().collect::<Vec<_>>(), vec![("k", "")]);
    }
}
