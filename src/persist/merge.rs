//! Merging a bucket into the document already stored for it. Pure: the writer reads the stored
//! documents (`_mget`), asks [`decide`] what to write for each, and writes it conditionally.
//!
//! The rules that make merging safe with several writers and unclear answers:
//! - Every write is conditional. A bucket with no document is written with `create`, a merged
//!   one replaces the version it was read at (`if_seq_no`/`if_primary_term`). Whoever loses a
//!   race gets a 409 and reads again, so no update is ever lost.
//! - Every document carries the token of the write that stored it (`merge.w`). A writer that
//!   sent a write, got no clear answer, and then finds its own token stored knows its write
//!   landed and does not merge it a second time.
//! - Every document carries, per write-ahead log, the position of the last record whose buckets
//!   it holds (`merge.logs`). A replay after a crash closes the same buckets at the same
//!   positions, so a slice at or below the stored position is in the document already and is
//!   not merged twice.
//! - A stored document that cannot be read back as strata's is never overwritten: the bucket is
//!   refused and logged instead.

use serde_json::Value;

use crate::clock::EpochMillis;
use crate::consolidate::{Closed, Extras, Summary};
use crate::distinct::Distinct;
use crate::event::{MetricKind, SeriesKey};
use crate::persist::backend::Fetched;
use crate::persist::document::Op;
use crate::sketch::Sketch;

/// One bucket on its way into its stored document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Pending {
    pub(crate) index: String,
    pub(crate) id: String,
    /// What this writer adds to the document.
    pub(crate) ours: Closed,
    /// Tokens of the writes of `ours` already sent: finding one stored means it landed.
    pub(crate) sent: Vec<u64>,
}

/// What to do with a [`Pending`] bucket, given its stored document.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// One of our writes of it is stored already: this is the stored bucket.
    Landed(Box<Closed>),
    /// Write this (ours, or ours merged into the stored document) with this operation.
    Write(Box<Closed>, Op),
    /// The stored document is not one strata can merge into; nothing is written.
    Unreadable(String),
}

/// Decides what to write for `pending`, given what `_mget` found.
pub(crate) fn decide(
    pending: &Pending,
    fetched: &Fetched,
    log_id: u64,
    archive_of: impl Fn(&str) -> Option<usize>,
) -> Step {
    let Fetched::Found {
        seq_no,
        primary_term,
        source,
    } = fetched
    else {
        return Step::Write(Box::new(pending.ours.clone()), Op::Create);
    };
    let Some(stored) = parse_document(source, archive_of) else {
        return Step::Unreadable(format!(
            "document {} in {} is not a strata bucket",
            pending.id, pending.index
        ));
    };
    if stored.token.is_some_and(|t| pending.sent.contains(&t)) {
        return Step::Landed(Box::new(stored.closed));
    }
    let ours = pending.ours.seq;
    let marked = stored
        .closed
        .foreign_marks
        .iter()
        .find(|(log, _)| *log == log_id);
    if log_id != 0 && ours != 0 && marked.is_some_and(|&(_, seq)| seq >= ours) {
        return Step::Landed(Box::new(stored.closed));
    }
    let mut merged = stored.closed;
    if merged.summary.start != pending.ours.summary.start || merged.archive != pending.ours.archive
    {
        return Step::Unreadable(format!(
            "document {} in {} holds another bucket",
            pending.id, pending.index
        ));
    }
    if merged.summary.kind != pending.ours.summary.kind {
        return Step::Unreadable(format!(
            "document {} in {} holds a {}, this bucket is a {}: types are not merged",
            pending.id,
            pending.index,
            merged.summary.kind.as_str(),
            pending.ours.summary.kind.as_str()
        ));
    }
    merged.absorb(pending.ours.clone());
    merged.series = pending.ours.series.clone();
    merged.late = pending.ours.late;
    merged.seq = ours;
    merged.foreign_marks.retain(|(log, _)| *log != log_id);
    Step::Write(
        Box::new(merged),
        Op::Replace {
            seq_no: *seq_no,
            primary_term: *primary_term,
        },
    )
}

/// A stored document read back as a bucket, with the token of the write that stored it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredBucket {
    pub(crate) closed: Closed,
    pub(crate) token: Option<u64>,
}

/// Reads one of strata's documents back: its series, bucket, statistics, what merging needs and
/// the token of its write. `archive_of` maps an archive's name to its index. A document from
/// before strata stored `merge` reads with both times at the bucket's start and its set's
/// distinct count carried as a number.
pub(crate) fn parse_document(
    doc: &Value,
    archive_of: impl Fn(&str) -> Option<usize>,
) -> Option<StoredBucket> {
    let start = chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str()?)
        .ok()?
        .timestamp_millis();
    let archive = archive_of(doc["archive"].as_str()?)?;
    let kind = MetricKind::parse(doc["type"].as_str().unwrap_or("gauge"))?;
    let f = |field: &str| doc[field].as_f64();
    let merge = &doc["merge"];
    let at = |field: &str| -> Option<EpochMillis> {
        match &merge[field] {
            Value::Null => Some(start),
            v => v.as_i64(),
        }
    };
    let summary = Summary::stored(
        start,
        kind,
        doc["count"].as_u64()?,
        f("sum")?,
        f("min")?,
        f("max")?,
        (f("first")?, at("first_at")?),
        (f("last")?, at("last_at")?),
    );
    let sketch = match doc["sketch"].as_str() {
        Some(text) => Some(Sketch::from_base64(text).ok()?),
        None => None,
    };
    let members = match merge["members"].as_str() {
        Some(text) => Some(Distinct::from_base64(text)?),
        None => None,
    };
    let carried_unique = match members {
        Some(_) => 0,
        None => doc["unique"].as_u64().unwrap_or(0),
    };
    let extras = (sketch.is_some() || members.is_some() || carried_unique > 0).then(|| {
        Box::new(Extras {
            sketch,
            members,
            carried_unique,
        })
    });
    let token = match merge["w"].as_str() {
        Some(text) => Some(u64::from_str_radix(text, 16).ok()?),
        None => None,
    };
    let marks = match merge["logs"].as_object() {
        Some(map) => map
            .iter()
            .map(|(log, seq)| Some((u64::from_str_radix(log, 16).ok()?, seq.as_u64()?)))
            .collect::<Option<Vec<_>>>()?,
        None => Vec::new(),
    };
    Some(StoredBucket {
        closed: Closed {
            series: series_of(doc)?.shared(),
            archive,
            summary,
            extras,
            late: false,
            seq: 0,
            // Every log's position, ours included: `decide` compares ours and keeps the others.
            foreign_marks: marks,
        },
        token,
    })
}

/// The series key of a document, from its name, host, tags and labels.
fn series_of(doc: &Value) -> Option<SeriesKey> {
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
    Some(SeriesKey::with_labels(name, host, &mut tags, &mut labels))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::persist::document::DocumentEncoder;
    use serde_json::json;
    use std::path::Path;

    const START: EpochMillis = 1_767_225_620_000;

    fn encoder() -> DocumentEncoder {
        let text = "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\npercentiles=[50]\n";
        DocumentEncoder::new(&Config::from_toml(text, Path::new("t")).unwrap())
    }

    fn archive_of(name: &str) -> Option<usize> {
        (name == "20s").then_some(0)
    }

    /// A bucket of `cpu` holding `values` taken at the given offsets (ms) from [`START`].
    fn bucket(values: &[(f64, i64)]) -> Closed {
        let mut summary: Option<Summary> = None;
        let mut sketch = Sketch::new();
        for &(v, at) in values {
            let one = Summary::new(START, MetricKind::Gauge, v, START + at);
            match &mut summary {
                Some(s) => s.merge(&one),
                None => summary = Some(one),
            }
            sketch.add(v);
        }
        Closed {
            series: SeriesKey::new("cpu", Some("h"), &mut [("dc", "par")]).shared(),
            archive: 0,
            summary: summary.unwrap(),
            extras: Some(Box::new(Extras {
                sketch: Some(sketch),
                ..Extras::default()
            })),
            late: true,
            seq: 0,
            foreign_marks: Vec::new(),
        }
    }

    /// The document the encoder writes for `closed`, with `token`.
    fn stored(closed: &Closed, token: u64) -> Value {
        let mut out = Vec::new();
        encoder().encode(closed, Op::Create, token, &mut out);
        let text = String::from_utf8(out).unwrap();
        serde_json::from_str(text.lines().nth(1).unwrap()).unwrap()
    }

    /// The stored form of a bucket's sketch (its bins may be held sparse or dense).
    fn sketch_of(c: &Closed) -> Option<String> {
        c.extras.as_ref()?.sketch.as_ref().map(Sketch::to_base64)
    }

    fn found(source: Value) -> Fetched {
        Fetched::Found {
            seq_no: 4,
            primary_term: 1,
            source,
        }
    }

    fn pending(ours: Closed, sent: Vec<u64>) -> Pending {
        Pending {
            index: "i".into(),
            id: "d".into(),
            ours,
            sent,
        }
    }

    #[test]
    fn a_document_reads_back_as_the_bucket_it_was_written_from() {
        let closed = bucket(&[(3.0, 5_000), (1.0, 1_000), (7.0, 9_000)]);
        let back = parse_document(&stored(&closed, 42), archive_of).unwrap();
        assert_eq!(back.token, Some(42));
        assert_eq!(back.closed.summary, closed.summary);
        assert_eq!(back.closed.series, closed.series);
        assert_eq!(sketch_of(&back.closed), sketch_of(&closed));
    }

    #[test]
    fn a_missing_document_is_created_and_a_stored_one_replaced_at_its_version() {
        let ours = bucket(&[(2.0, 3_000)]);
        assert_eq!(
            decide(
                &pending(ours.clone(), vec![]),
                &Fetched::Missing,
                0,
                archive_of,
            ),
            Step::Write(Box::new(ours.clone()), Op::Create)
        );
        let before = bucket(&[(1.0, 1_000), (9.0, 19_000)]);
        let Step::Write(merged, op) = decide(
            &pending(ours, vec![]),
            &found(stored(&before, 1)),
            0,
            archive_of,
        ) else {
            panic!("a merge")
        };
        assert_eq!(
            op,
            Op::Replace {
                seq_no: 4,
                primary_term: 1
            }
        );
        let in_order = bucket(&[(1.0, 1_000), (2.0, 3_000), (9.0, 19_000)]);
        assert_eq!(merged.summary, in_order.summary, "as if in time order");
        assert_eq!(sketch_of(&merged), sketch_of(&in_order), "sketches merged");
    }

    #[test]
    fn finding_our_own_token_means_the_write_landed() {
        let ours = bucket(&[(2.0, 3_000)]);
        let step = decide(
            &pending(ours.clone(), vec![5, 9]),
            &found(stored(&ours, 9)),
            0,
            archive_of,
        );
        assert!(matches!(step, Step::Landed(stored) if stored.summary.count == ours.summary.count));
    }

    /// The document written for `closed` by a writer stamping positions of log `log`.
    fn stored_by_log(closed: &Closed, log: u64) -> Value {
        let mut out = Vec::new();
        encoder()
            .with_log(log)
            .encode(closed, Op::Create, 1, &mut out);
        let text = String::from_utf8(out).unwrap();
        serde_json::from_str(text.lines().nth(1).unwrap()).unwrap()
    }

    #[test]
    fn a_replayed_slice_at_or_below_the_stored_position_is_there_already() {
        let mut first = bucket(&[(1.0, 1_000)]);
        first.seq = 40;
        first.foreign_marks = vec![(7, 3)];
        let doc = stored_by_log(&first, 0xab);
        assert_eq!(
            doc["merge"]["logs"],
            json!({"0000000000000007": 3, "00000000000000ab": 40})
        );
        for (seq, landed) in [(39, true), (40, true), (41, false)] {
            let mut replayed = bucket(&[(2.0, 3_000)]);
            replayed.seq = seq;
            let step = decide(
                &pending(replayed, vec![]),
                &found(doc.clone()),
                0xab,
                archive_of,
            );
            match step {
                Step::Landed(_) => assert!(landed, "slice {seq}"),
                Step::Write(merged, _) => {
                    assert!(!landed, "slice {seq}");
                    assert_eq!((merged.summary.count, merged.seq), (2, 41));
                    assert_eq!(
                        merged.foreign_marks,
                        vec![(7, 3)],
                        "another log's position is kept"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let mut other_log = bucket(&[(2.0, 3_000)]);
        other_log.seq = 5;
        assert!(matches!(
            decide(&pending(other_log, vec![]), &found(doc), 0xcd, archive_of),
            Step::Write(..)
        ));
    }

    #[test]
    fn a_bucket_of_another_type_is_not_merged_into_the_document() {
        let gauge = bucket(&[(1.0, 1_000)]);
        let mut timer = bucket(&[(2.0, 3_000)]);
        timer.summary.kind = MetricKind::Timer;
        let step = decide(
            &pending(timer, vec![]),
            &found(stored(&gauge, 1)),
            0,
            archive_of,
        );
        assert!(
            matches!(&step, Step::Unreadable(why) if why.contains("holds a gauge, this bucket is a timer")),
            "{step:?}"
        );
    }

    #[test]
    fn a_foreign_document_is_never_overwritten() {
        let step = decide(
            &pending(bucket(&[(2.0, 3_000)]), vec![]),
            &found(json!({"@timestamp": "2026-01-01T00:00:20Z", "value": 3})),
            0,
            archive_of,
        );
        assert!(matches!(step, Step::Unreadable(_)), "{step:?}");
    }

    #[test]
    fn a_document_from_before_merge_fields_reads_with_times_at_the_start() {
        let doc = json!({"@timestamp": "2026-01-01T00:00:20Z", "name": "cpu", "host": "h", "tags": {"b": "2", "a": "1"},
            "type": "counter", "archive": "20s", "step": 20, "count": 2, "sum": 4.0, "min": 1.0, "max": 3.0, "avg": 2.0,
            "first": 1.0, "last": 3.0, "unique": 4, "labels": ["y", "x"]});
        let back = parse_document(&doc, archive_of).unwrap();
        let s = back.closed.summary;
        assert_eq!(back.token, None);
        assert_eq!(
            (s.start, s.count, s.sum, s.first_at(), s.last_at(), s.kind),
            (START, 2, 4.0, START, START, MetricKind::Counter)
        );
        assert_eq!(
            &*back.closed.series,
            SeriesKey::with_labels(
                "cpu",
                Some("h"),
                &mut [("a", "1"), ("b", "2")],
                &mut ["x", "y"]
            )
            .as_str()
        );
        assert_eq!(back.closed.extras.unwrap().unique(), Some(4));
        assert!(parse_document(&json!({"name": "x"}), archive_of).is_none());
    }
}
