//! `/v1/stats` (cricket's shape): count, sum, min, max and average of a series over a range,
//! exact from the stored per-bucket statistics of whichever archives cover each part of it. A
//! bucket counts when its start lies in the range, so results are exact for ranges on bucket
//! boundaries of the archives involved.

use serde::Serialize;
use serde_json::{json, Value};

use crate::clock::EpochMillis;
use crate::config::Config;
use crate::query::filter::SeriesSelector;

/// cricket's statistics object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct RangeStats {
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub average: f64,
    /// `p<N>` from the merged sketches, when asked for and stored.
    #[serde(flatten)]
    pub percentiles: std::collections::BTreeMap<String, f64>,
}

/// The `_search` body for `selector` over `[from, to)`, split across `spans` (archive, from, to).
pub(crate) fn stats_query(
    config: &Config,
    selector: &SeriesSelector,
    from: EpochMillis,
    to: EpochMillis,
    spans: &[(usize, EpochMillis, EpochMillis)],
) -> Option<Value> {
    let parts: Vec<Value> = spans
        .iter()
        .filter_map(|&(a, span_from, span_to)| {
            let (lo, hi) = (from.max(span_from), to.min(span_to));
            (lo < hi).then(|| {
                json!({"bool": {"filter": [
                    {"term": {"archive": config.archives[a].name}},
                    {"range": {"@timestamp": {"gte": lo, "lt": hi, "format": "epoch_millis"}}}
                ]}})
            })
        })
        .collect();
    if parts.is_empty() {
        return None;
    }
    let mut filters = selector.filters();
    filters.push(json!({"bool": {"should": parts, "minimum_should_match": 1}}));
    Some(json!({
        "size": 0,
        "query": {"bool": {"filter": filters}},
        "aggs": {
            "count": {"sum": {"field": "count"}},
            "sum": {"sum": {"field": "sum"}},
            "min": {"min": {"field": "min"}},
            "max": {"max": {"field": "max"}}
        }
    }))
}

/// Reads the aggregations; `None` when nothing was in range.
pub(crate) fn stats_from_response(response: &Value) -> Option<RangeStats> {
    let aggs = &response["aggregations"];
    let count = aggs["count"]["value"].as_f64()? as u64;
    if count == 0 {
        return None;
    }
    let sum = aggs["sum"]["value"].as_f64()?;
    Some(RangeStats {
        count,
        sum,
        min: aggs["min"]["value"].as_f64()?,
        max: aggs["max"]["value"].as_f64()?,
        average: sum / count as f64,
        percentiles: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn query_splits_the_range_by_archive_and_response_reads_back() {
        let text = "[[archive]]\nname=\"a\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n[[archive]]\nname=\"b\"\nstep=\"1h\"\nretention=\"1 year\"\nindex_period=\"year\"\n";
        let cfg = Config::from_toml(text, Path::new("t")).unwrap();
        let sel = SeriesSelector {
            name: "c1".into(),
            matching: None,
            host: None,
            tags: vec![],
        };
        let q = stats_query(&cfg, &sel, 0, 1000, &[(0, 500, i64::MAX), (1, 0, 500)]).unwrap();
        let parts = q["query"]["bool"]["filter"][1]["bool"]["should"]
            .as_array()
            .unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(
            parts[0]["bool"]["filter"][1]["range"]["@timestamp"]["gte"],
            500
        );
        assert_eq!(
            parts[1]["bool"]["filter"][1]["range"]["@timestamp"]["lt"],
            500
        );
        assert!(stats_query(&cfg, &sel, 0, 100, &[(0, 500, i64::MAX)]).is_none());
        let r = json!({"aggregations": {"count": {"value": 3.0}, "sum": {"value": 3.0}, "min": {"value": 1.0}, "max": {"value": 1.0}}});
        assert_eq!(
            stats_from_response(&r),
            Some(RangeStats {
                count: 3,
                sum: 3.0,
                min: 1.0,
                max: 1.0,
                average: 1.0,
                percentiles: Default::default(),
            })
        );
        let empty = json!({"aggregations": {"count": {"value": 0.0}, "sum": {"value": 0.0}, "min": {"value": null}, "max": {"value": null}}});
        assert_eq!(stats_from_response(&empty), None);
    }
}
