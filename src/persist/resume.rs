//! Resuming after a restart: a graceful shutdown writes every open bucket, partial ones too. At
//! start, the documents of buckets that are still open at "now" are read back and reopened in the
//! consolidator, so that the events of the rest of the bucket are merged into them rather than
//! overwriting them (the document ids are the same).

use serde_json::{json, Value};

use crate::clock::EpochMillis;
use crate::config::Config;
use crate::consolidate::{ConsolidateError, Consolidator, Extras, Summary};
use crate::event::{MetricKind, SeriesKey};
use crate::persist::backend::{BackendError, SearchBackend};
use crate::sketch::Sketch;

/// Why resuming failed.
#[derive(Debug, thiserror::Error)]
pub enum ResumeError {
    #[error("cannot read back open buckets: {0}")]
    Backend(#[from] BackendError),
    #[error("cannot reopen buckets: {0}")]
    Consolidate(#[from] ConsolidateError),
}

/// The query for documents of `archive` whose bucket is still open at `now`: start + step +
/// lateness > now.
pub(crate) fn open_bucket_query(
    archive: &str,
    step_ms: i64,
    lateness_ms: i64,
    now: EpochMillis,
) -> Value {
    let from = now - step_ms - lateness_ms + 1;
    json!({"bool": {"filter": [
        {"term": {"archive": archive}},
        {"range": {"@timestamp": {"gte": from, "format": "epoch_millis"}}}
    ]}})
}

/// Parses one of our documents back into its series key, bucket summary and what it kept besides
/// (its sketch, its count of distinct set members).
pub(crate) fn summary_of(doc: &Value) -> Option<(SeriesKey, Summary, Option<Extras>)> {
    let start = chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str()?)
        .ok()?
        .timestamp_millis();
    let name = doc["name"].as_str()?;
    let host = doc["host"].as_str();
    let mut tags: Vec<(&str, &str)> = match doc["tags"].as_object() {
        Some(map) => map
            .iter()
            .filter_map(|(k, v)| Some((k.as_str(), v.as_str()?)))
            .collect(),
        None => Vec::new(),
    };
    let mut labels: Vec<&str> = match doc["labels"].as_array() {
        Some(list) => list.iter().filter_map(Value::as_str).collect(),
        None => Vec::new(),
    };
    let kind = MetricKind::parse(doc["type"].as_str().unwrap_or("gauge"))?;
    let f = |field: &str| doc[field].as_f64();
    let summary = Summary::restored(
        start,
        kind,
        doc["count"].as_u64()?,
        f("sum")?,
        f("min")?,
        f("max")?,
        f("first")?,
        f("last")?,
    );
    let sketch = match doc["sketch"].as_str() {
        Some(text) => Some(Sketch::from_base64(text).ok()?),
        None => None,
    };
    let carried_unique = doc["unique"].as_u64().unwrap_or(0);
    let extras = (sketch.is_some() || carried_unique > 0).then_some(Extras {
        sketch,
        members: None,
        carried_unique,
    });
    Some((
        SeriesKey::with_labels(name, host, &mut tags, &mut labels),
        summary,
        extras,
    ))
}

/// Reopens in `consolidator` every bucket of every archive still open at `now`; returns how
/// many were reopened.
pub(crate) async fn reopen_buckets<B: SearchBackend>(
    backend: &B,
    config: &Config,
    consolidator: &mut Consolidator,
    now: EpochMillis,
) -> Result<usize, ResumeError> {
    let pattern = config.index.naming.wildcard();
    backend.refresh(&pattern).await?;
    let mut reopened = 0;
    for (i, archive) in config.archives.iter().enumerate() {
        let (step, lateness) = (
            archive.step.as_millis() as i64,
            archive.lateness.as_millis() as i64,
        );
        let docs = backend
            .search_all(
                &pattern,
                &open_bucket_query(&archive.name, step, lateness, now),
            )
            .await?;
        for doc in &docs {
            match summary_of(doc) {
                Some((key, summary, extras)) => {
                    reopened += usize::from(consolidator.restore(&key, i, summary, extras)?)
                }
                None => {
                    tracing::warn!(document = %doc, "cannot read back a document; its bucket will be overwritten")
                }
            }
        }
    }
    Ok(reopened)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_reads_back_into_its_key_and_summary() {
        let doc = json!({"@timestamp": "2026-01-01T00:00:20Z", "name": "cpu", "host": "h", "tags": {"b": "2", "a": "1"},
            "type": "counter", "archive": "20s", "step": 20, "count": 2, "sum": 4.0, "min": 1.0, "max": 3.0, "avg": 2.0, "first": 1.0, "last": 3.0});
        let (key, s, extras) = summary_of(&doc).unwrap();
        assert_eq!(extras, None);
        assert_eq!(
            key,
            SeriesKey::new("cpu", Some("h"), &mut [("a", "1"), ("b", "2")])
        );
        assert_eq!(
            (s.start, s.count, s.sum, s.min, s.max, s.first, s.last, s.kind),
            (
                1_767_225_620_000,
                2,
                4.0,
                1.0,
                3.0,
                1.0,
                3.0,
                MetricKind::Counter
            )
        );
        assert!(summary_of(&json!({"name": "x"})).is_none());
    }

    #[test]
    fn labels_sketch_and_unique_count_read_back() {
        let mut sketch = Sketch::new();
        (1..=10).for_each(|v| sketch.add(f64::from(v)));
        let doc = json!({"@timestamp": "2026-01-01T00:00:20Z", "name": "lat", "labels": ["b", "a"],
            "type": "timer", "count": 10, "sum": 55.0, "min": 1.0, "max": 10.0, "first": 1.0, "last": 10.0,
            "sketch": sketch.to_base64(), "unique": 4});
        let (key, _, extras) = summary_of(&doc).unwrap();
        assert_eq!(key.labels().collect::<Vec<_>>(), vec!["a", "b"]);
        let extras = extras.unwrap();
        assert_eq!(extras.sketch.unwrap().count(), 10);
        assert_eq!(extras.carried_unique, 4);
    }

    #[test]
    fn query_covers_exactly_the_buckets_still_open() {
        let q = open_bucket_query("20s", 20_000, 10_000, 100_000);
        // Bucket 60..80 s is due at 90 s (closed at 100 s); bucket 80..100 s is open until 110 s.
        assert_eq!(q["bool"]["filter"][1]["range"]["@timestamp"]["gte"], 70_001);
    }
}
