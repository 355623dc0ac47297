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

use crate::calendar::rfc3339;
use crate::clock::EpochMillis;
use crate::config::Config;
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

/// The most points one request may return.
pub(crate) const MAX_POINTS: i64 = 20_000;

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

/// Splits `[from, to)` over the archives' spans; `None` when the points would exceed [`MAX_POINTS`].
pub(crate) fn segments(
    config: &Config,
    from: EpochMillis,
    to: EpochMillis,
    step_ms: Option<i64>,
    spans: &[(usize, EpochMillis, EpochMillis)],
) -> Result<Vec<Segment>, String> {
    let mut out = Vec::new();
    let mut points = 0;
    for &(a, span_from, span_to) in spans {
        let stored = config.archives[a].step.as_millis() as i64;
        let interval = step_ms.map_or(stored, |s| s.max(stored));
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
        points += (hi - lo) / interval + 1;
        out.push(Segment {
            archive: a,
            from: lo,
            to: hi,
            interval_ms: interval,
            stored_step_ms: stored,
        });
    }
    if points > MAX_POINTS {
        return Err(format!("the range would give about {points} points, more than {MAX_POINTS}: ask for a coarser step"));
    }
    out.sort_by_key(|s| s.from);
    Ok(out)
}

/// The `_search` body of one segment.
pub(crate) fn segment_query(
    config: &Config,
    selector: &SeriesSelector,
    seg: &Segment,
    stat: Stat,
) -> Value {
    let mut aggs = json!({
        "count": {"sum": {"field": "count"}},
        "sum": {"sum": {"field": "sum"}},
        "min": {"min": {"field": "min"}},
        "max": {"max": {"field": "max"}}
    });
    match stat {
        Stat::First => {
            aggs["edge"] = json!({"top_hits": {"size": 1, "sort": [{"@timestamp": "asc"}], "_source": ["first"]}})
        }
        Stat::Last => {
            aggs["edge"] = json!({"top_hits": {"size": 1, "sort": [{"@timestamp": "desc"}], "_source": ["last"]}})
        }
        _ => {}
    }
    let first_bucket = seg.from - seg.from.rem_euclid(seg.interval_ms);
    let last_bucket = (seg.to - 1) - (seg.to - 1).rem_euclid(seg.interval_ms);
    json!({
        "size": 0,
        "query": segment_filter(config, selector, seg),
        "aggs": {"points": {
            "date_histogram": {"field": "@timestamp", "fixed_interval": format!("{}ms", seg.interval_ms), "min_doc_count": 0,
                "extended_bounds": {"min": first_bucket, "max": last_bucket}},
            "aggs": aggs
        }}
    })
}

/// One point of the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Point {
    pub time: String,
    pub timestamp: EpochMillis,
    pub value: Option<f64>,
    pub archive: String,
    /// Seconds covered by the point.
    pub step: i64,
    /// Share of the stored buckets under the point that hold data.
    pub coverage: f64,
}

impl Point {
    /// The point of `seg` that starts at `t`.
    fn of_segment(
        config: &Config,
        seg: &Segment,
        t: EpochMillis,
        value: Option<f64>,
        coverage: f64,
    ) -> Self {
        Point {
            time: rfc3339(t),
            timestamp: t,
            value,
            archive: config.archives[seg.archive].name.clone(),
            step: seg.interval_ms / 1000,
            coverage,
        }
    }
}

/// Reads one segment's histogram into points.
pub(crate) fn points_from_response(
    config: &Config,
    seg: &Segment,
    response: &Value,
    stat: Stat,
    min_coverage: f64,
) -> Vec<Point> {
    let Some(buckets) = response["aggregations"]["points"]["buckets"].as_array() else {
        return Vec::new();
    };
    let expected = (seg.interval_ms / seg.stored_step_ms).max(1) as f64;
    buckets
        .iter()
        .filter_map(|b| {
            let t = b["key"].as_i64()?;
            let docs = b["doc_count"].as_f64().unwrap_or(0.0);
            let coverage = (docs / expected).min(1.0);
            let count = b["count"]["value"].as_f64().unwrap_or(0.0);
            let value = if docs == 0.0 || coverage < min_coverage {
                None
            } else {
                match stat {
                    Stat::Avg => {
                        (count > 0.0).then(|| b["sum"]["value"].as_f64().unwrap_or(0.0) / count)
                    }
                    Stat::Sum => b["sum"]["value"].as_f64(),
                    Stat::Count => Some(count),
                    Stat::Min => b["min"]["value"].as_f64(),
                    Stat::Max => b["max"]["value"].as_f64(),
                    Stat::First => b["edge"]["hits"]["hits"][0]["_source"]["first"].as_f64(),
                    Stat::Last => b["edge"]["hits"]["hits"][0]["_source"]["last"].as_f64(),
                    Stat::Percentile(_) => None,
                }
            };
            Some(Point::of_segment(config, seg, t, value, coverage))
        })
        .collect()
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
/// stored buckets under it and reads quantile `q`.
pub(crate) fn points_from_sketches(
    config: &Config,
    seg: &Segment,
    docs: &[Value],
    q: f64,
    min_coverage: f64,
) -> Vec<Point> {
    let mut merged: BTreeMap<EpochMillis, (u64, Sketch)> = BTreeMap::new();
    for (start, sketch) in docs.iter().filter_map(document_sketch) {
        let key = start - start.rem_euclid(seg.interval_ms);
        let (n, into) = merged.entry(key).or_default();
        *n += 1;
        into.merge(&sketch);
    }
    let expected = (seg.interval_ms / seg.stored_step_ms).max(1) as f64;
    let first_bucket = seg.from - seg.from.rem_euclid(seg.interval_ms);
    let mut points = Vec::new();
    let mut t = first_bucket;
    while t < seg.to {
        let (docs, sketch) = merged
            .get(&t)
            .map_or((0.0, None), |(n, s)| (*n as f64, Some(s)));
        let coverage = (docs / expected).min(1.0);
        let value = sketch
            .filter(|_| coverage >= min_coverage)
            .and_then(|s| s.quantile(q));
        points.push(Point::of_segment(config, seg, t, value, coverage));
        t += seg.interval_ms;
    }
    points
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
        let segs = segments(&cfg, 0, 10_800_000, Some(60_000), &spans).unwrap();
        assert_eq!(
            segs.iter()
                .map(|s| (s.archive, s.from, s.to, s.interval_ms))
                .collect::<Vec<_>>(),
            vec![
                (1, 0, 7_200_000, 3_600_000),
                (0, 7_200_000, 10_800_000, 60_000)
            ]
        );
        assert!(
            segments(&cfg, 0, 10 * 86_400_000, None, &[(0, 0, i64::MAX)])
                .unwrap_err()
                .contains("coarser step")
        );
    }

    #[test]
    fn a_step_that_is_not_a_multiple_of_a_stored_step_is_refused_naming_the_steps() {
        let cfg = config();
        let spans = [(0, 0, 3_600_000), (1, 3_600_000, 10_800_000)];
        let why = segments(&cfg, 0, 10_800_000, Some(30_000), &spans).unwrap_err();
        assert!(
            why.contains("30s is not a whole multiple of the 20s step of archive 'a'"),
            "{why}"
        );
        assert!(why.contains("(20s, 1h)"), "{why}");
        // Finer than a stored step: that part is served at its own step (each point says so).
        let segs = segments(&cfg, 0, 10_800_000, Some(40_000), &spans).unwrap();
        assert_eq!(
            segs.iter().map(|s| s.interval_ms).collect::<Vec<_>>(),
            vec![40_000, 3_600_000]
        );
    }

    #[test]
    fn points_re_aggregate_exactly_and_respect_min_coverage() {
        let cfg = config();
        let seg = segment_of_20s_buckets(120_000);
        let response = json!({"aggregations": {"points": {"buckets": [
            {"key": 0, "doc_count": 2, "count": {"value": 3.0}, "sum": {"value": 9.0}, "min": {"value": 1.0}, "max": {"value": 5.0}},
            {"key": 40000, "doc_count": 1, "count": {"value": 2.0}, "sum": {"value": 2.0}, "min": {"value": 1.0}, "max": {"value": 1.0}},
            {"key": 80000, "doc_count": 0, "count": {"value": 0.0}, "sum": {"value": 0.0}, "min": {"value": null}, "max": {"value": null}}
        ]}}});
        let avg = points_from_response(&cfg, &seg, &response, Stat::Avg, 0.0);
        assert_eq!(
            avg.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![Some(3.0), Some(1.0), None]
        );
        assert_eq!(avg[1].coverage, 0.5);
        assert_eq!(avg[0].step, 40);
        let strict = points_from_response(&cfg, &seg, &response, Stat::Max, 0.75);
        assert_eq!(
            strict.iter().map(|p| p.value).collect::<Vec<_>>(),
            vec![Some(5.0), None, None]
        );
        assert_eq!("p99".parse::<Stat>(), Ok(Stat::Percentile(99_000)));
        assert_eq!("p99.9".parse::<Stat>(), Ok(Stat::Percentile(99_900)));
        assert_eq!("p99_9".parse::<Stat>(), Ok(Stat::Percentile(99_900)));
        assert!("p0".parse::<Stat>().is_err());
        assert!("median".parse::<Stat>().is_err());
    }

    #[test]
    fn percentile_points_merge_the_sketches_under_each_point() {
        let cfg = config();
        let seg = segment_of_20s_buckets(80_000);
        let doc = |t: i64, values: std::ops::RangeInclusive<i32>| {
            let mut s = Sketch::new();
            values.for_each(|v| s.add(f64::from(v)));
            json!({"@timestamp": rfc3339(t), "sketch": s.to_base64()})
        };
        let docs = [doc(0, 1..=50), doc(20_000, 51..=100)];
        let points = points_from_sketches(&cfg, &seg, &docs, 0.9, 0.0);
        assert_eq!(points.len(), 2);
        let p90 = points[0].value.unwrap();
        assert!((p90 - 90.0).abs() <= 0.9, "{p90}");
        assert_eq!(points[0].coverage, 1.0);
        assert_eq!(points[1].value, None);
    }
}
