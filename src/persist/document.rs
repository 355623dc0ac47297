//! The document written for each closed bucket, its deterministic `_id`, and the `_bulk` lines
//! that carry it. Pure encoding: no I/O.
//!
//! Besides the statistics a document keeps what merging needs (`merge`, an object the node
//! stores but does not index): the times of `first` and `last`, a set's members, and the token
//! of the write that stored it, so a writer that retries after an unclear answer can tell its
//! own write from someone else's (see `persist::merge`).
//!
//! With `[index] layout = "samplerr"` the bucket's document also carries samplerr's fields as
//! its `avg` document (`service` = `<name>/avg/<step>`, `metric`, `cfunc`, `tf`), and two
//! *companion* documents, `min` and `max`, repeat the bucket in samplerr's shape under the ids
//! `<id>-min` and `<id>-max`. Companions are derived from the bucket's document, never read
//! back; they carry no `name`, `series` or `archive`, so strata's own reads never see them.
//! They are written with the bucket's `count` as an external version (`external_gte`): every
//! later state of a bucket holds more events, so an older companion can never replace a newer
//! one, whichever writer sends it last.

use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;

use crate::calendar::{rfc3339, IndexPeriod};
use crate::clock::EpochMillis;
use crate::config::{Config, DocumentLayout};
use crate::consolidate::Closed;
use crate::event::{self, MetricKind};
use crate::naming::IndexNaming;
use crate::persist::token::token_text;
use crate::sketch::Sketch;

/// The statistics kept once, as doc values: the template leaves them (and the percentile
/// fields) out of `_source`, and reads that need them ask for their doc values. Storing each
/// value twice was a third of a bucket's bytes (BENCHMARKS.md, storage).
pub(crate) const STATISTICS_AS_DOC_VALUES: [&str; 9] = [
    "count", "sum", "min", "max", "avg", "first", "last", "rate", "unique",
];

/// A statistic of a search hit: from its doc values when the search asked for them
/// (`docvalue_fields`), else from its `_source` (indices made before the statistics left it).
pub(crate) fn hit_statistic(hit: &serde_json::Value, field: &str) -> Option<f64> {
    hit["fields"][field][0]
        .as_f64()
        .or_else(|| hit["_source"][field].as_f64())
}

/// What the encoder needs to know about an archive.
#[derive(Debug, Clone)]
struct ArchiveInfo {
    name: String,
    step_s: u64,
    period: IndexPeriod,
    /// Configured percentiles as (quantile 0–1, field name).
    percentiles: Vec<(f64, String)>,
    /// The last index name rendered, for the period [start, end).
    cached: Option<(EpochMillis, EpochMillis, String)>,
}

/// Turns closed buckets into `_bulk` action and document lines.
#[derive(Debug, Clone)]
pub(crate) struct DocumentEncoder {
    naming: IndexNaming,
    archives: Vec<ArchiveInfo>,
    /// The write-ahead log whose positions go in `merge.logs` (0: none).
    log_id: u64,
    layout: DocumentLayout,
    /// Indices made before ids led by the series: their documents keep [`IdForm::Hashed`] ids.
    hashed_ids: std::collections::HashSet<String>,
}

/// How a bucket's document id is made. Both are deterministic per (series, archive, bucket
/// start), which is what makes a write exactly once (a second `create` is a 409); an index
/// keeps the form it was made with, so a bucket is never stored under two ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdForm {
    /// 32 hex digits of a 128-bit hash of the three (indices made before 2026-12-01).
    Hashed,
    /// 16 characters of a 96-bit hash of series and archive, then the bucket's number (start
    /// over step, big-endian): a series' ids share their first 16 characters, which the node's
    /// terms dictionary and stored-field compression keep once (BENCHMARKS.md, storage).
    SeriesFirst,
}

/// The `_meta` key of the mapping that marks an index whose ids lead with the series (see
/// `persist::template`).
pub(crate) const SERIES_FIRST_IDS: &str = "strata_ids";

/// samplerr's consolidation functions written as companion documents (`avg` is the bucket's
/// own document).
const COMPANIONS: [Cfunc; 2] = [Cfunc::Min, Cfunc::Max];

/// Companion documents per bucket in the samplerr layout.
pub(crate) const COMPANIONS_PER_BUCKET: usize = COMPANIONS.len();

#[derive(Debug, Clone, Copy)]
enum Cfunc {
    Avg,
    Min,
    Max,
}

impl Cfunc {
    fn as_str(self) -> &'static str {
        match self {
            Cfunc::Avg => "avg",
            Cfunc::Min => "min",
            Cfunc::Max => "max",
        }
    }
}

/// How a document is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Only if no document has the id (a 409 otherwise: merge).
    Create,
    /// Replaces the document read at this version (a 409 if it changed since: read again).
    Replace { seq_no: u64, primary_term: u64 },
}

#[derive(Serialize)]
enum Action<'a> {
    #[serde(rename = "create")]
    Create(ActionMeta<'a>),
    #[serde(rename = "index")]
    Index(ActionMeta<'a>),
}

#[derive(Serialize)]
struct ActionMeta<'a> {
    _index: &'a str,
    _id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    if_seq_no: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    if_primary_term: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_type: Option<&'static str>,
}

/// What merging needs, stored but not indexed.
#[derive(Serialize)]
struct MergeFields {
    first_at: EpochMillis,
    last_at: EpochMillis,
    /// The write's token (16 hex digits).
    w: String,
    /// A set's members (see [`crate::distinct::Distinct::to_base64`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    members: Option<String>,
    /// Per write-ahead log (16 hex digits), the position of the last record whose buckets the
    /// document holds: a replay skips what it finds here (see `persist::merge`).
    #[serde(skip_serializing_if = "Marks::is_empty")]
    logs: Marks,
}

/// `merge.logs`: log id → position.
struct Marks(Vec<(u64, u64)>);

impl Marks {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Marks {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (log, seq) in &self.0 {
            map.serialize_entry(&token_text(*log), seq)?;
        }
        map.end()
    }
}

#[derive(Serialize)]
struct Document<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    tags: Tags<'a>,
    /// Riemann's list of tags.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<&'a str>,
    /// The whole series key, readable: `name{host="h",k="v"}`; one keyword to group by.
    series: String,
    #[serde(rename = "type")]
    kind: &'static str,
    archive: &'a str,
    step: u64,
    count: u64,
    sum: f64,
    min: f64,
    max: f64,
    avg: f64,
    first: f64,
    last: f64,
    /// Counters: sum per second of step.
    #[serde(skip_serializing_if = "Option::is_none")]
    rate: Option<f64>,
    /// Sets: distinct members in the bucket.
    #[serde(skip_serializing_if = "Option::is_none")]
    unique: Option<u64>,
    #[serde(flatten)]
    percentiles: Percentiles<'a>,
    /// The bucket's quantile sketch (see [`crate::sketch`]), stored but not indexed.
    #[serde(skip_serializing_if = "Option::is_none")]
    sketch: Option<String>,
    merge: MergeFields,
    /// samplerr's fields of the `avg` document, in the samplerr layout.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    samplerr: Option<SamplerrFields>,
}

/// What samplerr wrote in each of its documents besides the time and the host.
#[derive(Serialize)]
struct SamplerrFields {
    /// `<name>/<cfunc>/<step seconds>`.
    service: String,
    metric: f64,
    cfunc: &'static str,
    /// The Joda date format of the index period, as samplerr's archives named it.
    tf: &'static str,
}

/// A companion document: one consolidation function of a bucket, in samplerr's shape.
#[derive(Serialize)]
struct CompanionDocument<'a> {
    #[serde(rename = "@timestamp")]
    timestamp: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    host: Option<&'a str>,
    tags: Tags<'a>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    labels: Vec<&'a str>,
    step: u64,
    #[serde(flatten)]
    samplerr: SamplerrFields,
}

/// `p<N>` fields, one per configured percentile, when the bucket has a sketch.
struct Percentiles<'a>(Vec<(&'a str, f64)>);

impl Serialize for Percentiles<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (field, v) in &self.0 {
            map.serialize_entry(field, v)?;
        }
        map.end()
    }
}

struct Tags<'a>(&'a str);

impl Serialize for Tags<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        for (k, v) in event::tags(self.0) {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl DocumentEncoder {
    /// Stamps each document with its bucket's position in the log `log_id`.
    pub(crate) fn with_log(mut self, log_id: u64) -> Self {
        self.log_id = log_id;
        self
    }

    pub(crate) fn log_id(&self) -> u64 {
        self.log_id
    }

    pub(crate) fn new(config: &Config) -> Self {
        Self {
            naming: config.index.naming.clone(),
            archives: config
                .archives
                .iter()
                .map(|a| ArchiveInfo {
                    name: a.name.clone(),
                    step_s: a.step.as_secs(),
                    period: a.index_period,
                    percentiles: a
                        .percentiles
                        .iter()
                        .map(|&p| (p / 100.0, crate::config::percentile_field(p)))
                        .collect(),
                    cached: None,
                })
                .collect(),
            log_id: 0,
            layout: config.index.layout,
            hashed_ids: Default::default(),
        }
    }

    /// Names the indices whose documents keep [`IdForm::Hashed`] ids (made before ids led by
    /// the series); every other index gets [`IdForm::SeriesFirst`].
    pub(crate) fn keep_hashed_ids(&mut self, indices: impl IntoIterator<Item = String>) {
        self.hashed_ids = indices.into_iter().collect();
    }

    /// The index and the id of `closed`'s document.
    fn index_and_id(&mut self, closed: &Closed) -> (String, String) {
        let s = &closed.summary;
        let index = self.index_for(closed.archive, s.start).to_string();
        let form = if self.hashed_ids.contains(&index) {
            IdForm::Hashed
        } else {
            IdForm::SeriesFirst
        };
        let info = &self.archives[closed.archive];
        let id = document_id(form, &closed.series, &info.name, info.step_s, s.start);
        (index, id)
    }

    /// The pattern every index of the archives matches.
    pub(crate) fn index_pattern(&self) -> String {
        self.naming.wildcard()
    }

    /// Whether each bucket also has companion documents (see the module's doc).
    pub(crate) fn writes_companions(&self) -> bool {
        self.layout == DocumentLayout::Samplerr
    }

    /// The index a bucket of `archive` starting at `start` belongs to.
    pub(crate) fn index_for(&mut self, archive: usize, start: EpochMillis) -> &str {
        let info = &mut self.archives[archive];
        let fresh = matches!(&info.cached, Some((from, to, _)) if (*from..*to).contains(&start));
        if !fresh {
            let from = info.period.start_of(start);
            let to = info.period.next_start(from);
            info.cached = Some((from, to, self.naming.render(&info.name, info.period, from)));
        }
        info.cached
            .as_ref()
            .map(|(_, _, name)| name.as_str())
            .unwrap_or_default()
    }

    /// The archive named `name`, by configuration order.
    pub(crate) fn archive_named(&self, name: &str) -> Option<usize> {
        self.archives.iter().position(|a| a.name == name)
    }

    /// The index and id of the document of `closed`.
    pub(crate) fn target(&mut self, closed: &Closed) -> (String, String) {
        self.index_and_id(closed)
    }

    /// Appends the action line (`op`) and the document line of `closed`, stamped with `token`,
    /// to `out`.
    pub(crate) fn encode(&mut self, closed: &Closed, op: Op, token: u64, out: &mut Vec<u8>) {
        let s = &closed.summary;
        let archive_name = self.archives[closed.archive].name.clone();
        let (index, id) = self.index_and_id(closed);
        let index = index.as_str();
        let (if_seq_no, if_primary_term) = match op {
            Op::Create => (None, None),
            Op::Replace {
                seq_no,
                primary_term,
            } => (Some(seq_no), Some(primary_term)),
        };
        let meta = ActionMeta {
            _index: index,
            _id: &id,
            if_seq_no,
            if_primary_term,
            version: None,
            version_type: None,
        };
        write_json(
            out,
            &match op {
                Op::Create => Action::Create(meta),
                Op::Replace { .. } => Action::Index(meta),
            },
        );
        let timestamp = rfc3339(s.start);
        let info = &self.archives[closed.archive];
        let sketch = closed.extras.as_ref().and_then(|e| e.sketch.as_ref());
        let percentiles = match sketch {
            Some(sketch) => info
                .percentiles
                .iter()
                .filter_map(|(q, field)| Some((field.as_str(), sketch.quantile(*q)?)))
                .collect(),
            None => Vec::new(),
        };
        let doc = Document {
            timestamp: &timestamp,
            name: event::name(&closed.series),
            host: event::host(&closed.series),
            tags: Tags(&closed.series),
            labels: event::labels(&closed.series).collect(),
            series: series_label(&closed.series),
            kind: s.kind.as_str(),
            archive: &archive_name,
            step: info.step_s,
            count: s.count,
            sum: s.sum,
            min: s.min,
            max: s.max,
            avg: s.avg(),
            first: s.first,
            last: s.last,
            rate: (s.kind == MetricKind::Counter).then(|| s.sum / info.step_s as f64),
            unique: closed.extras.as_ref().and_then(|e| e.unique()),
            percentiles: Percentiles(percentiles),
            sketch: sketch.map(Sketch::to_base64),
            merge: MergeFields {
                first_at: s.first_at(),
                last_at: s.last_at(),
                w: token_text(token),
                members: closed
                    .extras
                    .as_ref()
                    .and_then(|e| e.members.as_ref())
                    .map(crate::distinct::Distinct::to_base64),
                logs: self.marks_of(closed),
            },
            samplerr: (self.layout == DocumentLayout::Samplerr)
                .then(|| samplerr_fields(closed, info, Cfunc::Avg)),
        };
        write_json(out, &doc);
    }

    /// Appends the companion documents of `closed` (the state its own document was written
    /// in) to `out`, [`COMPANIONS_PER_BUCKET`] items whose ends go in `ends`, each replacing
    /// an older state of itself only.
    pub(crate) fn encode_companions(
        &mut self,
        closed: &Closed,
        out: &mut Vec<u8>,
        ends: &mut Vec<usize>,
    ) {
        let s = &closed.summary;
        let (index, id) = self.index_and_id(closed);
        let timestamp = rfc3339(s.start);
        let info = &self.archives[closed.archive];
        for cfunc in COMPANIONS {
            let companion_id = format!("{id}-{}", cfunc.as_str());
            write_json(
                out,
                &Action::Index(ActionMeta {
                    _index: &index,
                    _id: &companion_id,
                    if_seq_no: None,
                    if_primary_term: None,
                    version: Some(s.count),
                    version_type: Some("external_gte"),
                }),
            );
            write_json(
                out,
                &CompanionDocument {
                    timestamp: &timestamp,
                    host: event::host(&closed.series),
                    tags: Tags(&closed.series),
                    labels: event::labels(&closed.series).collect(),
                    step: info.step_s,
                    samplerr: samplerr_fields(closed, info, cfunc),
                },
            );
            ends.push(out.len());
        }
    }
}

fn samplerr_fields(closed: &Closed, info: &ArchiveInfo, cfunc: Cfunc) -> SamplerrFields {
    let s = &closed.summary;
    SamplerrFields {
        service: format!(
            "{}/{}/{}",
            event::name(&closed.series),
            cfunc.as_str(),
            info.step_s
        ),
        metric: match cfunc {
            Cfunc::Avg => s.avg(),
            Cfunc::Min => s.min,
            Cfunc::Max => s.max,
        },
        cfunc: cfunc.as_str(),
        tf: info.period.joda_format(),
    }
}

impl DocumentEncoder {
    fn marks_of(&self, closed: &Closed) -> Marks {
        let mut marks = closed.foreign_marks.clone();
        if self.log_id != 0 && closed.seq != 0 {
            marks.retain(|(log, _)| *log != self.log_id);
            marks.push((self.log_id, closed.seq));
        }
        Marks(marks)
    }
}

fn write_json<T: Serialize>(out: &mut Vec<u8>, value: &T) {
    // Serializing these plain structs into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("serialize bulk line");
    out.push(b'\n');
}

/// The readable form of a packed series key: `name{host="h",k="v",#label}` (just `name` when
/// bare).
pub(crate) fn series_label(packed: &str) -> String {
    let mut labels: Vec<String> = Vec::new();
    if let Some(h) = event::host(packed) {
        labels.push(format!("host={h:?}"));
    }
    labels.extend(event::tags(packed).map(|(k, v)| format!("{k}={v:?}")));
    labels.extend(event::labels(packed).map(|l| format!("#{l}")));
    let name = event::name(packed);
    if labels.is_empty() {
        name.to_string()
    } else {
        format!("{name}{{{}}}", labels.join(","))
    }
}

/// A stable id for (series, archive, bucket start): a retried or replayed write overwrites the
/// same document instead of adding another.
pub(crate) fn document_id(
    form: IdForm,
    series: &str,
    archive: &str,
    step_s: u64,
    start: EpochMillis,
) -> String {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(series.as_bytes());
    h.update(&[0]);
    h.update(archive.as_bytes());
    match form {
        IdForm::Hashed => {
            h.update(&[0]);
            h.update(&start.to_le_bytes());
            format!("{:032x}", h.digest128())
        }
        IdForm::SeriesFirst => {
            use base64::Engine;
            let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
            let series_hash = h.digest128().to_be_bytes();
            // Buckets before 1970 (negative starts) keep their order too: offset by 2^39 steps.
            let number = (start.div_euclid((step_s.max(1) * 1000) as i64) + (1 << 39)) as u64;
            let mut id = b64.encode(&series_hash[..12]);
            b64.encode_string(&number.to_be_bytes()[3..], &mut id);
            id
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consolidate::Summary;
    use crate::event::{MetricKind, SeriesKey};
    use std::path::Path;

    fn config() -> Config {
        let text =
            "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n";
        Config::from_toml(text, Path::new("t")).unwrap()
    }

    fn closed(start: EpochMillis) -> Closed {
        let key = SeriesKey::new("cpu", Some("web-1"), &mut [("dc", "par")]);
        Closed {
            series: key.shared(),
            archive: 0,
            summary: {
                let mut s = Summary::new(start, MetricKind::Gauge, 1.0, start);
                s.count = 2;
                s.sum = 4.0;
                s.max = 3.0;
                s.last = 3.0;
                s
            },
            extras: None,
            late: false,
            seq: 0,
            foreign_marks: Vec::new(),
        }
    }

    #[test]
    fn bulk_lines_carry_index_id_and_all_statistics() {
        let mut enc = DocumentEncoder::new(&config());
        let mut out = Vec::new();
        enc.encode(&closed(1_458_172_800_000), Op::Create, 7, &mut out);
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["create"]["_index"], "strata-20s-2016.03.17");
        assert_eq!(lines[0]["create"]["_id"].as_str().unwrap().len(), 23);
        let doc = &lines[1];
        assert_eq!(doc["@timestamp"], "2016-03-17T00:00:00Z");
        assert_eq!(doc["name"], "cpu");
        assert_eq!(doc["host"], "web-1");
        assert_eq!(doc["tags"]["dc"], "par");
        assert_eq!(doc["series"], r#"cpu{host="web-1",dc="par"}"#);
        assert_eq!(doc["type"], "gauge");
        assert_eq!(doc["archive"], "20s");
        assert_eq!(doc["step"], 20);
        assert_eq!(
            (
                doc["count"].as_u64(),
                doc["sum"].as_f64(),
                doc["avg"].as_f64()
            ),
            (Some(2), Some(4.0), Some(2.0))
        );
        assert_eq!(
            (
                doc["min"].as_f64(),
                doc["max"].as_f64(),
                doc["first"].as_f64(),
                doc["last"].as_f64()
            ),
            (Some(1.0), Some(3.0), Some(1.0), Some(3.0))
        );
        assert_eq!(
            doc["merge"],
            serde_json::json!({"first_at": 1_458_172_800_000i64, "last_at": 1_458_172_800_000i64, "w": "0000000000000007"})
        );
        assert!(text.ends_with('\n'));
        for absent in ["labels", "rate", "unique", "sketch", "p50"] {
            assert!(doc.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn the_samplerr_layout_adds_samplerrs_fields_and_a_min_and_a_max_document() {
        let text = "[index]\nlayout=\"samplerr\"\n[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n";
        let mut enc = DocumentEncoder::new(&Config::from_toml(text, Path::new("t")).unwrap());
        assert!(enc.writes_companions());
        let bucket = closed(1_458_172_800_000);
        let (mut own, mut companions, mut ends) = (Vec::new(), Vec::new(), Vec::new());
        enc.encode(&bucket, Op::Create, 7, &mut own);
        enc.encode_companions(&bucket, &mut companions, &mut ends);
        let lines = |bytes: &[u8]| -> Vec<serde_json::Value> {
            std::str::from_utf8(bytes)
                .unwrap()
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect()
        };
        let own = lines(&own);
        let id = own[0]["create"]["_id"].as_str().unwrap().to_string();
        let avg = &own[1];
        assert_eq!(
            (&avg["service"], &avg["metric"], &avg["cfunc"], &avg["tf"]),
            (
                &serde_json::json!("cpu/avg/20"),
                &serde_json::json!(2.0),
                &serde_json::json!("avg"),
                &serde_json::json!("YYYY.MM.dd")
            )
        );
        assert_eq!(
            (avg["count"].as_u64(), avg["name"].as_str()),
            (Some(2), Some("cpu"))
        );

        assert_eq!(ends.len(), COMPANIONS_PER_BUCKET);
        assert_eq!(ends.last(), Some(&companions.len()));
        let items = lines(&companions);
        assert_eq!(items.len(), 2 * COMPANIONS_PER_BUCKET);
        for (pair, (cfunc, metric)) in items.chunks(2).zip([("min", 1.0), ("max", 3.0)]) {
            let action = &pair[0]["index"];
            assert_eq!(action["_index"], "strata-20s-2016.03.17");
            assert_eq!(action["_id"], format!("{id}-{cfunc}"));
            assert_eq!(
                (&action["version"], &action["version_type"]),
                (&serde_json::json!(2), &serde_json::json!("external_gte")),
                "the bucket's count orders its states"
            );
            let doc = &pair[1];
            assert_eq!(doc["service"], format!("cpu/{cfunc}/20"));
            assert_eq!(
                (doc["metric"].as_f64(), doc["cfunc"].as_str()),
                (Some(metric), Some(cfunc))
            );
            assert_eq!(
                (doc["host"].as_str(), doc["tags"]["dc"].as_str()),
                (Some("web-1"), Some("par"))
            );
            assert_eq!(doc["@timestamp"], "2016-03-17T00:00:00Z");
            for invisible_to_reads in ["name", "series", "archive", "count", "merge"] {
                assert!(
                    doc.get(invisible_to_reads).is_none(),
                    "{invisible_to_reads}"
                );
            }
        }
    }

    #[test]
    fn the_default_layout_writes_no_samplerr_field() {
        let mut enc = DocumentEncoder::new(&config());
        assert!(!enc.writes_companions());
        let mut out = Vec::new();
        enc.encode(&closed(0), Op::Create, 7, &mut out);
        let doc: serde_json::Value =
            serde_json::from_str(std::str::from_utf8(&out).unwrap().lines().nth(1).unwrap())
                .unwrap();
        for absent in ["service", "metric", "cfunc", "tf"] {
            assert!(doc.get(absent).is_none(), "{absent}");
        }
    }

    #[test]
    fn counters_sets_labels_and_sketches_add_their_fields() {
        let text = "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\npercentiles=[50, 99.9]\n";
        let mut enc = DocumentEncoder::new(&Config::from_toml(text, Path::new("t")).unwrap());
        let encode = |enc: &mut DocumentEncoder, c: &Closed| {
            let mut out = Vec::new();
            enc.encode(c, Op::Create, 0, &mut out);
            let text = String::from_utf8(out).unwrap();
            serde_json::from_str::<serde_json::Value>(text.lines().nth(1).unwrap()).unwrap()
        };
        let mut counter = closed(0);
        counter.summary.kind = MetricKind::Counter;
        counter.series = SeriesKey::with_labels("c", None, &mut [], &mut ["b", "a"]).shared();
        let doc = encode(&mut enc, &counter);
        assert_eq!(doc["rate"], 0.2, "4 over 20 s");
        assert_eq!(doc["labels"], serde_json::json!(["a", "b"]));
        assert_eq!(doc["series"], "c{#a,#b}");

        let mut timer = closed(0);
        let mut sketch = Sketch::new();
        (1..=1000).for_each(|v| sketch.add(v as f64));
        let mut members = crate::distinct::Distinct::default();
        [1, 2, 3].into_iter().for_each(|h| members.insert(h));
        timer.extras = Some(Box::new(crate::consolidate::Extras {
            sketch: Some(sketch),
            members: Some(members),
            carried_unique: 0,
        }));
        let doc = encode(&mut enc, &timer);
        let p50 = doc["p50"].as_f64().unwrap();
        let p999 = doc["p99_9"].as_f64().unwrap();
        assert!((p50 - 500.0).abs() <= 5.0, "{p50}");
        assert!((p999 - 999.0).abs() <= 9.99, "{p999}");
        assert_eq!(doc["unique"], 3);
        let members = doc["merge"]["members"].as_str().unwrap();
        assert_eq!(
            crate::distinct::Distinct::from_base64(members).map(|d| d.count()),
            Some(3)
        );
        let back = Sketch::from_base64(doc["sketch"].as_str().unwrap()).unwrap();
        assert_eq!(back.count(), 1000);
    }

    #[test]
    fn a_replacement_names_the_version_it_replaces() {
        let mut enc = DocumentEncoder::new(&config());
        let mut out = Vec::new();
        let op = Op::Replace {
            seq_no: 12,
            primary_term: 3,
        };
        enc.encode(&closed(0), op, 1, &mut out);
        let action: serde_json::Value =
            serde_json::from_str(String::from_utf8(out).unwrap().lines().next().unwrap()).unwrap();
        assert_eq!(action["index"]["if_seq_no"], 12);
        assert_eq!(action["index"]["if_primary_term"], 3);
    }

    #[test]
    fn ids_are_stable_and_distinct_in_both_forms() {
        for form in [IdForm::Hashed, IdForm::SeriesFirst] {
            let id = |series, archive, start| document_id(form, series, archive, 20, start);
            let a = id("cpu", "20s", 0);
            assert_eq!(a, id("cpu", "20s", 0));
            assert_ne!(a, id("cpu", "20s", 20_000));
            assert_ne!(a, id("cpu", "10m", 0));
            assert_ne!(a, id("cpu2", "20s", 0));
        }
        let hashed = document_id(IdForm::Hashed, "cpu", "20s", 20, 0);
        assert_eq!(
            hashed.len(),
            32,
            "as indices made before store them: {hashed}"
        );
    }

    #[test]
    fn series_first_ids_share_the_series_and_sort_by_time() {
        let id = |series, start| document_id(IdForm::SeriesFirst, series, "20s", 20, start);
        let t = 1_764_547_200_000;
        let (a, b, before_1970) = (id("cpu", t), id("cpu", t + 20_000), id("cpu", -20_000));
        assert_eq!((a.len(), b.len(), before_1970.len()), (23, 23, 23));
        assert_eq!(a[..16], b[..16], "one series, one prefix");
        assert_ne!(a[..16], id("mem", t)[..16]);
        assert!(
            before_1970 < id("cpu", 0) && a < b,
            "the bucket's number is big-endian"
        );
        assert_eq!(
            id("cpu", t + 19_999),
            a,
            "any instant of the bucket names it"
        );
    }

    #[test]
    fn an_index_made_before_keeps_hashed_ids() {
        let mut enc = DocumentEncoder::new(&config());
        let c = closed(1_458_172_800_000);
        let (index, new_id) = enc.target(&c);
        assert_eq!(new_id.len(), 23);
        enc.keep_hashed_ids([index.clone()]);
        let (same_index, old_id) = enc.target(&c);
        assert_eq!((same_index, old_id.len()), (index, 32));
        let mut out = Vec::new();
        enc.encode(&c, Op::Create, 1, &mut out);
        assert!(String::from_utf8(out).unwrap().contains(&old_id));
    }

    #[test]
    fn index_name_follows_the_period_of_the_bucket() {
        let mut enc = DocumentEncoder::new(&config());
        assert_eq!(enc.index_for(0, 1_458_172_800_000), "strata-20s-2016.03.17");
        assert_eq!(
            enc.index_for(0, 1_458_172_800_000 + 86_400_000),
            "strata-20s-2016.03.18"
        );
        assert_eq!(
            enc.index_for(0, 1_458_172_800_000 - 1),
            "strata-20s-2016.03.16"
        );
    }
}
