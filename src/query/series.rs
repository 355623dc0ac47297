//! `/v1/series`: the series that have data in a range — name, host, tags, and which archives
//! hold them there — from a `composite` aggregation on the documents' `series` keyword, in
//! pages ordered by series (`after` the last one of the page before).

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
    page: (usize, Option<&str>),
) -> Option<Value> {
    let (limit, after) = page;
    let mut q = stats_query(config, selector, from, to, spans)?;
    let mut composite =
        json!({"size": limit, "sources": [{"series": {"terms": {"field": "series"}}}]});
    if let Some(after) = after {
        composite["after"] = json!({"series": after});
    }
    q["aggs"] = json!({"series": {
        "composite": composite,
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
            json!({"series": b["key"]["series"], "name": sample["name"], "host": sample["host"], "tags": sample.get("tags").cloned().unwrap_or(json!({})), "archives": archives})
        })
        .collect()
}
