//! `/v1/series`: the series that have data in a range — name, host, tags, and which archives
//! hold them there — from a `terms` aggregation on the documents' `series` keyword.

use serde_json::{json, Value};

use crate::clock::EpochMillis;
use crate::config::Config;
use crate::query::filter::SeriesSelector;
use crate::query::stats::stats_query;

/// Most series one answer lists.
pub(crate) const MAX_SERIES: usize = 10_000;

/// The `_search` body.
pub(crate) fn series_query(
    config: &Config,
    selector: &SeriesSelector,
    from: EpochMillis,
    to: EpochMillis,
    spans: &[(usize, EpochMillis, EpochMillis)],
) -> Option<Value> {
    let mut q = stats_query(config, selector, from, to, spans)?;
    q["aggs"] = json!({"series": {
        "terms": {"field": "series", "size": MAX_SERIES, "order": {"_key": "asc"}},
        "aggs": {
            "archives": {"terms": {"field": "archive", "size": 64}},
            "sample": {"top_hits": {"size": 1, "_source": ["name", "host", "tags"]}}
        }
    }});
    Some(q)
}

/// `[{"series", "name", "host", "tags", "archives"}]`, ordered by series.
pub(crate) fn series_answer(response: &Value) -> Vec<Value> {
    let Some(buckets) = response["aggregations"]["series"]["buckets"].as_array() else {
        return Vec::new();
    };
    buckets
        .iter()
        .map(|b| {
            let sample = &b["sample"]["hits"]["hits"][0]["_source"];
            let archives: Vec<Value> = b["archives"]["buckets"].as_array().map(|a| a.iter().map(|x| x["key"].clone()).collect()).unwrap_or_default();
            json!({"series": b["key"], "name": sample["name"], "host": sample["host"], "tags": sample.get("tags").cloned().unwrap_or(json!({})), "archives": archives})
        })
        .collect()
}
