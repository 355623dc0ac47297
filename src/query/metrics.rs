//! `/v1/metrics`: the points of a series over a range, each part of the range from the finest
//! archive that still holds it, each point saying which archive and step it came from. A
//! requested `step` coarser than the stored one re-aggregates exactly from the stored statistics
//! (avg = Σsum / Σcount); `min_coverage` (Graphite's xFilesFactor, applied at read time) nulls a
//! point whose share of non-empty stored buckets is below it. `stat=p99` (any percentile)
//! merges the stored quantile sketches of the buckets under each point, across resolutions.

use std::collections::BTreeMap;
use std::str::FromStr;

use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::EpochMillis;
use crate::config::Config;
use crate::persist::document::hit_statistic;
use crate::query::filter::SeriesSelector;
use crate::sketch::Sketch;

/// Which statistic a point carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stat {
    Avg,
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
    /// A percentile, in thousandths of a percent (`p99.9` is 99 900).
    Percentile(u32),
}

impl Stat {
    /// The stat as a request names it: `avg`, `p99`, `p99.9`.
    pub(crate) fn name(self) -> String {
        match self {
            Stat::Avg => "avg".into(),
            Stat::Min => "min".into(),
            Stat::Max => "max".into(),
            Stat::Sum => "sum".into(),
            Stat::Count => "count".into(),
            Stat::First => "first".into(),
            Stat::Last => "last".into(),
            Stat::Percentile(milli) if milli % 1000 == 0 => format!("p{}", milli / 1000),
            Stat::Percentile(milli) => {
                format!("p{}", f64::from(milli) / 1000.0)
            }
        }
    }

    /// The quantile (0–1) of a percentile stat.
    pub(crate) fn quantile(self) -> Option<f64> {
        match self {
            Stat::Percentile(milli) => Some(f64::from(milli) / 100_000.0),
            _ => None,
        }
    }
}

/// Parses `99`, `99.9` or `99_9` as a percentile in thousandths of a percent.
pub(crate) fn parse_percentile(text: &str) -> Result<u32, String> {
    let p = text
        .replace('_', ".")
        .parse::<f64>()
        .ok()
        .filter(|p| *p > 0.0 && *p <= 100.0)
        .ok_or_else(|| format!("{text:?} is not a percentile above 0 and at most 100"))?;
    Ok((p * 1000.0).round() as u32)
}

impl FromStr for Stat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "avg" => Stat::Avg,
            "min" => Stat::Min,
            "max" => Stat::Max,
            "sum" => Stat::Sum,
            "count" => Stat::Count,
            "first" => Stat::First,
            "last" => Stat::Last,
            other => match other.strip_prefix('p') {
                Some(p) => Stat::Percentile(parse_percentile(p)?),
                None => {
                    return Err(format!(
                        "{other:?} is not one of avg, min, max, sum, count, first, last or a percentile such as p99"
                    ))
                }
            },
        })
    }
}

/// The most statistics one request may ask for.
const MAX_STATS: usize = 12;

/// `stat=avg,min,max`: the statistics asked for, in order, each once.
pub(crate) fn parse_stats(text: &str) -> Result<Vec<Stat>, String> {
    let mut stats: Vec<Stat> = Vec::new();
    for part in text.split(',') {
        let stat = part.parse::<Stat>()?;
        if !stats.contains(&stat) {
            stats.push(stat);
        }
    }
    if stats.len() > MAX_STATS {
        return Err(format!(
            "asks for {} statistics, more than {MAX_STATS}",
            stats.len()
        ));
    }
    Ok(stats)
}

/// The most points one request may return.
pub(crate) const MAX_POINTS: i64 = 20_000;

/// The most points one grouped request may return over all its groups (the node's histogram
/// buckets, under its default `search.max_buckets` of 65 536).
pub(crate) const MAX_GROUPED_POINTS: i64 = 60_000;

/// The step of the points asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StepChoice {
    /// Each part at its archive's stored step.
    Stored,
    /// This step, or the stored one where that is coarser.
    Fixed(i64),
    /// About this many points over the range: each part at the smallest multiple of its
    /// stored step that gives no more.
    Auto(i64),
}

/// One part of the range, read from one archive at one interval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Segment {
    pub archive: usize,
    pub from: EpochMillis,
    pub to: EpochMillis,
    /// Histogram interval: the archive's step, or the requested step when coarser.
    pub interval_ms: i64,
    pub stored_step_ms: i64,
}

impl Segment {
    /// The start of the segment's first point.
    pub(crate) fn first_point(&self) -> EpochMillis {
        self.from - self.from.rem_euclid(self.interval_ms)
    }

    /// The start of the segment's last point.
    pub(crate) fn last_point(&self) -> EpochMillis {
        (self.to - 1) - (self.to - 1).rem_euclid(self.interval_ms)
    }

    /// How many points the segment answers with (empty ones included).
    pub(crate) fn point_count(&self) -> i64 {
        (self.last_point() - self.first_point()) / self.interval_ms + 1
    }
}

/// Splits `[from, to)` over the archives' spans; `None` when the points would exceed [`MAX_POINTS`].
pub(crate) fn segments(
    config: &Config,
    from: EpochMillis,
    to: EpochMillis,
    step: StepChoice,
    spans: &[(usize, EpochMillis, EpochMillis)],
) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut points = 0;
    for &(a, span_from, span_to) in spans {
        let stored = config.archives[a].step.as_millis() as i64;
        let interval = match step {
            StepChoice::Stored => stored,
            StepChoice::Fixed(ms) => ms.max(stored),
            StepChoice::Auto(wanted) => {
                let target = (to - from).max(1) / wanted.max(1);
                stored * ((target + stored - 1) / stored).max(1)
            }
        };
        // A coarser point must cover whole stored buckets, or its statistics and coverage
        // would count a bucket that straddles two points in one of them only.
        if interval % stored != 0 {
            let steps = spans
                .iter()
                .map(|&(a, _, _)| humantime::format_duration(config.archives[a].step).to_string())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(format!(
                "{} is not a whole multiple of the {} step of archive '{}' that serves part of the range: ask for a multiple of every step in the range ({steps})",
                humantime::format_duration(std::time::Duration::from_millis(interval as u64)),
                humantime::format_duration(config.archives[a].step),
                config.archives[a].name
            ));
        }
        // Align to the interval so that re-aggregated points cover whole stored buckets.
        let lo = from.max(span_from);
        let hi = to.min(span_to);
        if lo >= hi {
            continue;
        }
        let seg = Segment {
            archive: a,
            from: lo,
            to: hi,
            interval_ms: interval,
            stored_step_ms: stored,
        };
        points += seg.point_count();
        out.push(seg);
    }
    if points > MAX_POINTS {
        return Err(format!("the range would give about {points} points, more than {MAX_POINTS}: ask for a coarser step"));
    }
    out.sort_by_key(|s| s.from);
    Ok(out)
}

/// The groups of a grouped read: the keyword field and the values kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Groups {
    pub field: String,
    pub keys: Vec<String>,
}

/// The `_search` body of one segment: a date histogram of the statistics, under a `terms`
/// aggregation per group when `groups` is given.
pub(crate) fn segment_query(
    config: &Config,
    selector: &SeriesSelector,
    seg: &Segment,
    stats: &[Stat],
    groups: Option<&Groups>,
) -> Value {
    let mut aggs = json!({
        "count": {"sum": {"field": "count"}},
        "sum": {"sum": {"field": "sum"}},
        "min": {"min": {"field": "min"}},
        "max": {"max": {"field": "max"}}
    });
    if stats.contains(&Stat::First) {
        aggs["first_doc"] = json!({"top_hits": {"size": 1, "sort": [{"@timestamp": "asc"}], "_source": false, "docvalue_fields": ["first"]}})
    }
    if stats.contains(&Stat::Last) {
        aggs["last_doc"] = json!({"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}], "_source": false, "docvalue_fields": ["last"]}})
    }
    let (first_bucket, last_bucket) = (seg.first_point(), seg.last_point());
    let histogram = json!({
        "date_histogram": {"field": "@timestamp", "fixed_interval": format!("{}ms", seg.interval_ms), "min_doc_count": 0,
            "extended_bounds": {"min": first_bucket, "max": last_bucket}},
        "aggs": aggs
    });
    let mut query = segment_filter(config, selector, seg);
    let aggs = match groups {
        Some(g) => {
            if let Some(filters) = query["bool"]["filter"].as_array_mut() {
                filters.push(json!({"terms": {g.field.as_str(): g.keys}}));
            }
            json!({"groups": {"terms": {"field": g.field, "size": g.keys.len().max(1)},
                "aggs": {"points": histogram}}})
        }
        None => json!({"points": histogram}),
    };
    json!({"size": 0, "query": query, "aggs": aggs})
}

/// The per-group histograms of one segment's response: `("", histogram)` when not grouped.
pub(crate) fn histograms_of(response: &Value, grouped: bool) -> Vec<(String, &Value)> {
    let aggs = &response["aggregations"];
    if !grouped {
        return vec![(String::new(), &aggs["points"])];
    }
    aggs["groups"]["buckets"]
        .as_array()
        .map(|buckets| {
            buckets
                .iter()
                .filter_map(|b| Some((b["key"].as_str()?.to_string(), &b["points"])))
                .collect()
        })
        .unwrap_or_default()
}

/// One point of the answer: one value per statistic asked for, in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Point {
    pub timestamp: EpochMillis,
    pub values: Vec<Option<f64>>,
    /// The archive read, by configuration order.
    pub archive: usize,
    /// Seconds covered by the point.
    pub step: i64,
    /// Share of the stored buckets under the point that hold data.
    pub coverage: f64,
}

impl Point {
    /// The point of `seg` that starts at `t`.
    fn of_segment(seg: &Segment, t: EpochMillis, values: Vec<Option<f64>>, coverage: f64) -> Self {
        Point {
            timestamp: t,
            values,
            archive: seg.archive,
            step: seg.interval_ms / 1000,
            coverage,
        }
    }
}

/// Points as the answer writes them: `value` for one statistic, `values` (by name) for several.
pub(crate) struct PointsOut<'a> {
    pub points: &'a [Point],
    pub stats: &'a [Stat],
    pub config: &'a Config,
}

impl Serialize for PointsOut<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Values<'a>(&'a [Option<f64>], &'a [Stat]);
        impl Serialize for Values<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut map = s.serialize_map(Some(self.0.len()))?;
                for (v, stat) in self.0.iter().zip(self.1) {
                    map.serialize_entry(&stat.name(), v)?;
                }
                map.end()
            }
        }
        let mut seq = s.serialize_seq(Some(self.points.len()))?;
        for p in self.points {
            struct One<'a>(&'a Point, &'a [Stat], &'a Config);
            impl Serialize for One<'_> {
                fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    let (p, stats, config) = (self.0, self.1, self.2);
                    let mut map = s.serialize_map(Some(6))?;
                    let mut buf = [0u8; 24];
                    map.serialize_entry(
                        "time",
                        crate::calendar::rfc3339_into(p.timestamp, &mut buf),
                    )?;
                    map.serialize_entry("timestamp", &p.timestamp)?;
                    if stats.len() == 1 {
                        map.serialize_entry("value", &p.values[0])?;
                    } else {
                        map.serialize_entry("values", &Values(&p.values, stats))?;
                    }
                    map.serialize_entry("archive", &config.archives[p.archive].name)?;
                    map.serialize_entry("step", &p.step)?;
                    map.serialize_entry("coverage", &p.coverage)?;
                    map.end()
                }
            }
            seq.serialize_element(&One(p, self.stats, self.config))?;
        }
        seq.end()
    }
}

/// What the stored buckets under one point add up to.
#[derive(Debug, Clone, Copy, Default)]
struct Under {
    docs: f64,
    count: f64,
    sum: f64,
    min: Option<f64>,
    max: Option<f64>,
    first: Option<f64>,
    last: Option<f64>,
}

impl Under {
    /// The values of `stats` (percentiles `None`), or all `None` when the point is empty or
    /// covered less than `min_coverage`.
    fn values(&self, stats: &[Stat], coverage: f64, min_coverage: f64) -> Vec<Option<f64>> {
        let shown = self.docs > 0.0 && coverage >= min_coverage;
        stats
            .iter()
            .map(|stat| match stat {
                _ if !shown => None,
                Stat::Avg => (self.count > 0.0).then(|| self.sum / self.count),
                Stat::Sum => Some(self.sum),
                Stat::Count => Some(self.count),
                Stat::Min => self.min,
                Stat::Max => self.max,
                Stat::First => self.first,
                Stat::Last => self.last,
                Stat::Percentile(_) => None,
            })
            .collect()
    }

    /// Adds one stored bucket (a document of the series, `docs` 1), in time order.
    fn add(&mut self, doc: Under) {
        self.docs += doc.docs;
        self.count += doc.count;
        self.sum += doc.sum;
        self.min = match (self.min, doc.min) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max = match (self.max, doc.max) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.first = self.first.or(doc.first);
        self.last = doc.last.or(self.last);
    }
}

/// Reads one segment's histogram (the `points` aggregation) into points, with the values of
/// the statistics that are not percentiles (percentiles are `None`, see
/// [`points_from_sketches`]).
pub(crate) fn points_from_histogram(
    seg: &Segment,
    histogram: &Value,
    stats: &[Stat],
    min_coverage: f64,
) -> Vec<Point> {
    let Some(buckets) = histogram["buckets"].as_array() else {
        return Vec::new();
    };
    let expected = (seg.interval_ms / seg.stored_step_ms).max(1) as f64;
    buckets
        .iter()
        .filter_map(|b| {
            let t = b["key"].as_i64()?;
            let under = Under {
                docs: b["doc_count"].as_f64().unwrap_or(0.0),
                count: b["count"]["value"].as_f64().unwrap_or(0.0),
                sum: b["sum"]["value"].as_f64().unwrap_or(0.0),
                min: b["min"]["value"].as_f64(),
                max: b["max"]["value"].as_f64(),
                first: hit_statistic(&b["first_doc"]["hits"]["hits"][0], "first"),
                last: hit_statistic(&b["last_doc"]["hits"]["hits"][0], "last"),
            };
            let coverage = (under.docs / expected).min(1.0);
            let values = under.values(stats, coverage, min_coverage);
            Some(Point::of_segment(seg, t, values, coverage))
        })
        .collect()
}

/// The most documents one segment is read by directly (the node's default
/// `index.max_result_window`); a segment with more goes through the histogram.
pub(crate) const MAX_DIRECT_DOCS: usize = 10_000;

/// Whether `seg` can be read document by document: its points are its stored buckets, so
/// there is nothing to aggregate for one series (several series in one bucket are added up
/// here), and there are few enough of them.
pub(crate) fn readable_directly(seg: &Segment) -> bool {
    seg.interval_ms == seg.stored_step_ms && seg.point_count() < MAX_DIRECT_DOCS as i64
}

/// The `_search` body reading one segment's documents directly: their statistics as doc values
/// (no `_source`), in time order.
pub(crate) fn direct_query(
    config: &Config,
    selector: &SeriesSelector,
    seg: &Segment,
    stats: &[Stat],
) -> Value {
    let mut fields = vec![
        json!({"field": "@timestamp", "format": "epoch_millis"}),
        json!("count"),
        json!("sum"),
        json!("min"),
        json!("max"),
    ];
    if stats.contains(&Stat::First) {
        fields.push(json!("first"));
    }
    if stats.contains(&Stat::Last) {
        fields.push(json!("last"));
    }
    json!({
        "size": MAX_DIRECT_DOCS,
        "track_total_hits": false,
        "_source": false,
        "stored_fields": "_none_",
        "sort": [{"@timestamp": "asc"}],
        "docvalue_fields": fields,
        "query": segment_filter(config, selector, seg),
    })
}

/// A [`direct_query`]'s answer, read straight into what is used (it is the largest answer a
/// read gets: about 95 bytes a document).
#[derive(Debug, Default, serde::Deserialize)]
pub(crate) struct DirectAnswer {
    #[serde(default)]
    hits: DirectHits,
}

#[derive(Debug, Default, serde::Deserialize)]
struct DirectHits {
    #[serde(default)]
    hits: Vec<DirectHit>,
}

#[derive(Debug, serde::Deserialize)]
struct DirectHit {
    fields: DirectFields,
}

/// A document's doc values, each a one-element array.
#[derive(Debug, serde::Deserialize)]
struct DirectFields {
    #[serde(rename = "@timestamp")]
    timestamp: (Millis,),
    count: Option<(f64,)>,
    sum: Option<(f64,)>,
    min: Option<(f64,)>,
    max: Option<(f64,)>,
    first: Option<(f64,)>,
    last: Option<(f64,)>,
}

/// A time in epoch milliseconds, written as text (`format: epoch_millis`) or as a number.
#[derive(Debug)]
struct Millis(i64);

impl<'de> serde::Deserialize<'de> for Millis {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl serde::de::Visitor<'_> for Visit {
            type Value = Millis;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("epoch milliseconds")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Millis, E> {
                v.parse::<f64>()
                    .map(|t| Millis(t as i64))
                    .map_err(|_| E::custom(format!("{v:?} is not epoch milliseconds")))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Millis, E> {
                Ok(Millis(v))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Millis, E> {
                Ok(Millis(v as i64))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Millis, E> {
                Ok(Millis(v as i64))
            }
        }
        d.deserialize_any(Visit)
    }
}

/// Points from a [`direct_query`]'s answer, one per bucket of the segment (empty ones `None`);
/// `None` when the answer holds [`MAX_DIRECT_DOCS`] documents (there may be more: read the
/// histogram instead).
pub(crate) fn points_from_documents(
    seg: &Segment,
    answer: &DirectAnswer,
    stats: &[Stat],
    min_coverage: f64,
) -> Option<Vec<Point>> {
    let hits = &answer.hits.hits;
    if hits.len() >= MAX_DIRECT_DOCS {
        return None;
    }
    let first_bucket = seg.first_point();
    let slots = seg.point_count().max(0) as usize;
    let mut under = vec![Under::default(); slots];
    for hit in hits {
        let f = &hit.fields;
        let t = f.timestamp.0 .0;
        let slot = (t - t.rem_euclid(seg.interval_ms) - first_bucket) / seg.interval_ms;
        if let Some(u) = usize::try_from(slot).ok().and_then(|i| under.get_mut(i)) {
            u.add(Under {
                docs: 1.0,
                count: f.count.map_or(0.0, |v| v.0),
                sum: f.sum.map_or(0.0, |v| v.0),
                min: f.min.map(|v| v.0),
                max: f.max.map(|v| v.0),
                first: f.first.map(|v| v.0),
                last: f.last.map(|v| v.0),
            });
        }
    }
    Some(
        under
            .iter()
            .enumerate()
            .map(|(i, u)| {
                let coverage = u.docs.min(1.0);
                let t = first_bucket + i as i64 * seg.interval_ms;
                Point::of_segment(seg, t, u.values(stats, coverage, min_coverage), coverage)
            })
            .collect(),
    )
}

/// The query of one segment's documents: the series, the archive, the range. Also what a scroll
/// reads the sketches with.
pub(crate) fn segment_filter(config: &Config, selector: &SeriesSelector, seg: &Segment) -> Value {
    let mut filters = selector.filters();
    filters.push(json!({"term": {"archive": config.archives[seg.archive].name}}));
    filters.push(
        json!({"range": {"@timestamp": {"gte": seg.from, "lt": seg.to, "format": "epoch_millis"}}}),
    );
    // No `exists` on `sketch`: a binary field is neither indexed nor in doc values, so `exists`
    // never matches it. Documents without one are skipped when read.
    json!({"bool": {"filter": filters}})
}

/// The bucket start and sketch of a stored document.
pub(crate) fn document_sketch(doc: &Value) -> Option<(EpochMillis, Sketch)> {
    let start = chrono::DateTime::parse_from_rfc3339(doc["@timestamp"].as_str()?)
        .ok()?
        .timestamp_millis();
    Some((start, Sketch::from_base64(doc["sketch"].as_str()?).ok()?))
}

/// Points of one segment from its documents' sketches: each point merges the sketches of the
/// stored buckets under it and reads each percentile of `stats` (other statistics are `None`).
pub(crate) fn points_from_sketches<'d>(
    seg: &Segment,
    docs: impl IntoIterator<Item = &'d Value>,
    stats: &[Stat],
    min_coverage: f64,
) -> Vec<Point> {
    let mut merged: BTreeMap<EpochMillis, (u64, Sketch)> = BTreeMap::new();
    for (start, sketch) in docs.into_iter().filter_map(document_sketch) {
        let key = start - start.rem_euclid(seg.interval_ms);
        let (n, into) = merged.entry(key).or_default();
        *n += 1;
        into.merge(&sketch);
    }
    let expected = (seg.interval_ms / seg.stored_step_ms).max(1) as f64;
    let first_bucket = seg.first_point();
    let mut points = Vec::new();
    let mut t = first_bucket;
    while t < seg.to {
        let (docs, sketch) = merged
            .get(&t)
            .map_or((0.0, None), |(n, s)| (*n as f64, Some(s)));
        let coverage = (docs / expected).min(1.0);
        let shown = sketch.filter(|_| coverage >= min_coverage);
        let values = stats
            .iter()
            .map(|stat| shown.zip(stat.quantile()).and_then(|(s, q)| s.quantile(q)))
            .collect();
        points.push(Point::of_segment(seg, t, values, coverage));
        t += seg.interval_ms;
    }
    points
}

/// Fills the percentile columns of `points` from `from` (the same segment's points from the
/// sketches), by point start.
pub(crate) fn fill_percentiles(points: &mut [Point], from: &[Point], stats: &[Stat]) {
    let by_start: BTreeMap<EpochMillis, &Point> = from.iter().map(|p| (p.timestamp, p)).collect();
    for p in points {
        if let Some(other) = by_start.get(&p.timestamp) {
            for (i, stat) in stats.iter().enumerate() {
                if stat.quantile().is_some() {
                    p.values[i] = other.values[i];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Archive 0 (20 s buckets) from 0 to `to`, read as 40 s points.
    fn segment_of_20s_buckets(to: i64) -> Segment {
        Segment {
            archive: 0,
            from: 0,
            to,
            interval_ms: 40_000,
            stored_step_ms: 20_000,
        }
    }

    fn config() -> Config {
        let text = "[[archive]]\nname=\"a\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n[[archive]]\nname=\"b\"\nstep=\"1h\"\nretention=\"1 year\"\nindex_period=\"year\"\n";
        Config::from_toml(text, Path::new("t")).unwrap()
    }

    #[test]
    fn segments_take_the_coarser_of_stored_and_requested_step() {
        let cfg = config();
        let spans = [(0, 7_200_000, i64::MAX), (1, 0, 7_200_000)];
        let segs = segments(&cfg, 0, 10_800_000, StepChoice::Fixed(60_000), &spans).unwrap();
        assert_eq!(
            segs.iter()
                .map(|s| (s.archive, s.from, s.to, s.interval_ms))
                .collect::<Vec<_>>(),
            vec![
                (1, 0, 7_200_000, 3_600_000),
                (0, 7_200_000, 10_800_000, 60_000)
            ]
        );
        assert!(segments(
            &cfg,
            0,
            10 * 86_400_000,
            StepChoice::Stored,
            &[(0, 0, i64::MAX)]
        )
        .unwrap_err()
        .contains("coarser step"));
    }

    #[test]
    fn a_step_that_is_not_a_multiple_of_a_stored_step_is_refused_naming_the_steps() {
        let cfg = config();
        let spans = [(0, 0, 3_600_000), (1, 3_600_000, 10_800_000)];
        let why = segments(&cfg, 0, 10_800_000, StepChoice::Fixed(30_000), &spans).unwrap_err();
        assert!(
            why.contains("30s is not a whole multiple of the 20s step of archive 'a'"),
            "{why}"
        );
        assert!(why.contains("(20s, 1h)"), "{why}");
        // Finer than a stored step: that part is served at its own step (each point says so).
        let segs = segments(&cfg, 0, 10_800_000, StepChoice::Fixed(40_000), &spans).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.interval_ms).collect::<Vec<_>>(),
            vec![40_000, 3_600_000]
        );
    }

    #[test]
    fn points_re_aggregate_exactly_and_respect_min_coverage() {
        let cfg = config();
        let seg = segment_of_20s_buckets(120_000);
        let histogram = json!({"buckets": [
            {"key": 0, "doc_count": 2, "count": {"value": 3.0}, "sum": {"value": 9.0}, "min": {"value": 1.0}, "max": {"value": 5.0}},
            {"key": 40000, "doc_count": 1, "count": {"value": 2.0}, "sum": {"value": 2.0}, "min": {"value": 1.0}, "max": {"value": 1.0}},
            {"key": 80000, "doc_count": 0, "count": {"value": 0.0}, "sum": {"value": 0.0}, "min": {"value": null}, "max": {"value": null}}
        ]});
        let avg = points_from_histogram(&seg, &histogram, &[Stat::Avg], 0.0);
        assert_eq!(
            avg.iter().map(|p| p.values[0]).collect::<Vec<_>>(),
            vec![Some(3.0), Some(1.0), None]
        );
        assert_eq!(avg[1].coverage, 0.5);
        assert_eq!(avg[0].step, 40);
        let strict = points_from_histogram(&seg, &histogram, &[Stat::Max], 0.75);
        assert_eq!(
            strict.iter().map(|p| p.values[0]).collect::<Vec<_>>(),
            vec![Some(5.0), None, None]
        );
        let several = points_from_histogram(
            &seg,
            &histogram,
            &[Stat::Avg, Stat::Min, Stat::Max, Stat::Percentile(99_000)],
            0.0,
        );
        assert_eq!(
            several[0].values,
            vec![Some(3.0), Some(1.0), Some(5.0), None]
        );
        let stats = parse_stats("avg,min,max,p99.9,avg").unwrap();
        let text = serde_json::to_value(PointsOut {
            points: &several[..1],
            stats: &stats[..3],
            config: &cfg,
        })
        .unwrap();
        assert_eq!(
            text[0]["values"],
            json!({"avg": 3.0, "min": 1.0, "max": 5.0}),
            "several statistics by name"
        );
        let one = serde_json::to_value(PointsOut {
            points: &avg[..1],
            stats: &[Stat::Avg],
            config: &cfg,
        })
        .unwrap();
        assert_eq!(
            one[0],
            json!({"time": "1970-01-01T00:00:00Z", "timestamp": 0, "value": 3.0, "archive": "a", "step": 40, "coverage": 1.0})
        );
        assert_eq!(
            stats.iter().map(|s| s.name()).collect::<Vec<_>>(),
            vec!["avg", "min", "max", "p99.9"]
        );
        assert_eq!("p99".parse::<Stat>(), Ok(Stat::Percentile(99_000)));
        assert_eq!("p99.9".parse::<Stat>(), Ok(Stat::Percentile(99_900)));
        assert_eq!("p99_9".parse::<Stat>(), Ok(Stat::Percentile(99_900)));
        assert!("p0".parse::<Stat>().is_err());
        assert!("median".parse::<Stat>().is_err());
    }

    #[test]
    fn percentile_points_merge_the_sketches_under_each_point() {
        let seg = segment_of_20s_buckets(80_000);
        let doc = |t: i64, values: std::ops::RangeInclusive<i32>| {
            let mut s = Sketch::new();
            values.for_each(|v| s.add(f64::from(v)));
            json!({"@timestamp": crate::calendar::rfc3339(t), "sketch": s.to_base64()})
        };
        let docs = [doc(0, 1..=50), doc(20_000, 51..=100)];
        let stats = [Stat::Avg, Stat::Percentile(90_000)];
        let points = points_from_sketches(&seg, &docs, &stats, 0.0);
        assert_eq!(points.len(), 2);
        let p90 = points[0].values[1].unwrap();
        assert!((p90 - 90.0).abs() <= 0.9, "{p90}");
        assert_eq!(points[0].values[0], None, "not from the sketches");
        assert_eq!(points[0].coverage, 1.0);
        assert_eq!(points[1].values[1], None);
        let mut from_histogram = vec![
            Point::of_segment(&seg, 0, vec![Some(50.5), None], 1.0),
            Point::of_segment(&seg, 40_000, vec![None, None], 0.0),
        ];
        fill_percentiles(&mut from_histogram, &points, &stats);
        assert_eq!(from_histogram[0].values, vec![Some(50.5), Some(p90)]);
    }

    #[test]
    fn documents_read_directly_give_the_histograms_points() {
        let cfg = config();
        let seg = Segment {
            archive: 0,
            from: 0,
            to: 80_000,
            interval_ms: 20_000,
            stored_step_ms: 20_000,
        };
        assert!(readable_directly(&seg));
        let q = direct_query(
            &cfg,
            &SeriesSelector::from_params(
                &[("name".to_string(), "c".to_string())]
                    .into_iter()
                    .collect(),
                "name",
            )
            .unwrap(),
            &seg,
            &[Stat::Avg, Stat::Last],
        );
        assert_eq!(q["_source"], false);
        assert!(q["docvalue_fields"]
            .as_array()
            .unwrap()
            .contains(&json!("last")));
        let doc = |t: i64, count: f64, sum: f64, min: f64, max: f64| json!({"fields": {"@timestamp": [t.to_string()], "count": [count], "sum": [sum], "min": [min], "max": [max], "last": [max]}});
        // Two series in the first bucket, none in the second, one in the third.
        let response = json!({"hits": {"hits": [
            doc(0, 2.0, 6.0, 1.0, 5.0), doc(0, 1.0, 3.0, 3.0, 3.0), doc(40_000, 1.0, 7.0, 7.0, 7.0)
        ]}});
        let stats = [Stat::Avg, Stat::Min, Stat::Max, Stat::Count, Stat::Last];
        let response: DirectAnswer = serde_json::from_value(response).unwrap();
        let points = points_from_documents(&seg, &response, &stats, 0.0).unwrap();
        assert_eq!(
            points
                .iter()
                .map(|p| (p.timestamp, p.values.clone(), p.coverage))
                .collect::<Vec<_>>(),
            vec![
                (
                    0,
                    vec![Some(3.0), Some(1.0), Some(5.0), Some(3.0), Some(3.0)],
                    1.0
                ),
                (20_000, vec![None; 5], 0.0),
                (
                    40_000,
                    vec![Some(7.0), Some(7.0), Some(7.0), Some(1.0), Some(7.0)],
                    1.0
                ),
                (60_000, vec![None; 5], 0.0),
            ]
        );
        // The same buckets as a histogram answer give the same points.
        let histogram = json!({"buckets": [
            {"key": 0, "doc_count": 2, "count": {"value": 3.0}, "sum": {"value": 9.0}, "min": {"value": 1.0}, "max": {"value": 5.0},
                "last_doc": {"hits": {"hits": [{"_source": {"last": 3.0}}]}}},
            {"key": 20000, "doc_count": 0, "count": {"value": 0.0}, "sum": {"value": 0.0}, "min": {"value": null}, "max": {"value": null}},
            {"key": 40000, "doc_count": 1, "count": {"value": 1.0}, "sum": {"value": 7.0}, "min": {"value": 7.0}, "max": {"value": 7.0},
                "last_doc": {"hits": {"hits": [{"_source": {"last": 7.0}}]}}},
            {"key": 60000, "doc_count": 0, "count": {"value": 0.0}, "sum": {"value": 0.0}, "min": {"value": null}, "max": {"value": null}}
        ]});
        assert_eq!(points_from_histogram(&seg, &histogram, &stats, 0.0), points);
        let full: DirectAnswer = serde_json::from_value(
            json!({"hits": {"hits": vec![doc(0, 1.0, 1.0, 1.0, 1.0); MAX_DIRECT_DOCS]}}),
        )
        .unwrap();
        assert!(
            points_from_documents(&seg, &full, &stats, 0.0).is_none(),
            "maybe more: read the histogram"
        );
        let long = Segment {
            to: 20_000 * MAX_DIRECT_DOCS as i64,
            ..seg
        };
        assert!(!readable_directly(&long));
        assert!(!readable_directly(&Segment {
            interval_ms: 40_000,
            ..seg
        }));
    }

    #[test]
    fn an_automatic_step_is_a_multiple_of_each_stored_step_near_the_points_asked() {
        let cfg = config();
        // 3 days: 20 s buckets for the last 2 hours, 1 h before. About 100 points asked.
        let (from, to) = (0, 3 * 86_400_000);
        let spans = [(0, to - 7_200_000, i64::MAX), (1, 0, to - 7_200_000)];
        let segs = segments(&cfg, from, to, StepChoice::Auto(100), &spans).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.interval_ms).collect::<Vec<_>>(),
            vec![3_600_000, 2_600_000],
            "2 592 s wanted: 1 h over hours, 2 600 s (130 buckets) over 20 s buckets"
        );
        for seg in &segs {
            assert_eq!(seg.interval_ms % seg.stored_step_ms, 0);
        }
        let groups = Groups {
            field: "host".into(),
            keys: vec!["a".into(), "b".into()],
        };
        let q = segment_query(
            &cfg,
            &SeriesSelector::one_or_several(
                &[("match".to_string(), "cpu*".to_string())]
                    .into_iter()
                    .collect(),
            )
            .unwrap(),
            &segs[0],
            &[Stat::Last],
            Some(&groups),
        );
        assert_eq!(
            q["aggs"]["groups"]["terms"],
            json!({"field": "host", "size": 2})
        );
        assert!(q["aggs"]["groups"]["aggs"]["points"]["aggs"]["last_doc"].is_object());
        assert!(q["query"]["bool"]["filter"]
            .as_array()
            .unwrap()
            .contains(&json!({"terms": {"host": ["a", "b"]}})));
    }
}
