//! `strata status`: what the node holds per archive (indices, documents, bytes on disk, oldest
//! and newest bucket), which time range each archive serves through the aliases, and how the
//! aliases on the node differ from the plan. [`summarize`] is pure; [`read_status`] asks the
//! node for its inputs (three requests: index sizes, aliases, one aggregation).

use std::collections::BTreeMap;

use serde::Serialize;
use serde_json::{json, Value};

use crate::calendar::rfc3339;
use crate::clock::EpochMillis;
use crate::config::Config;
use crate::maintain::plan::{archive_spans, managed_indices, plan};
use crate::maintain::run::MaintainError;
use crate::persist::backend::{ExistingAlias, IndexSize, SearchBackend};

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    #[serde(serialize_with = "instant")]
    pub now: EpochMillis,
    pub archives: Vec<ArchiveStatus>,
    /// The `_aliases` actions a maintenance pass would send: empty when the aliases on the
    /// node are the plan's.
    pub alias_drift: Vec<Value>,
    /// Indices of the current or next period that do not exist yet.
    pub to_create: Vec<String>,
    /// Expired indices not deleted yet.
    pub to_delete: Vec<String>,
}

/// One archive's part.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArchiveStatus {
    pub name: String,
    pub step: String,
    pub retention: String,
    pub indices: usize,
    pub documents: u64,
    pub bytes: u64,
    #[serde(serialize_with = "optional_instant")]
    pub oldest_bucket: Option<EpochMillis>,
    #[serde(serialize_with = "optional_instant")]
    pub newest_bucket: Option<EpochMillis>,
    /// The range this archive serves through the aliases (`to` absent: up to now and on);
    /// absent when a finer archive serves all it holds.
    pub serves: Option<Served>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Served {
    #[serde(serialize_with = "instant")]
    pub from: EpochMillis,
    #[serde(serialize_with = "optional_instant")]
    pub to: Option<EpochMillis>,
}

fn instant<S: serde::Serializer>(t: &EpochMillis, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*t))
}

fn optional_instant<S: serde::Serializer>(
    t: &Option<EpochMillis>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match t {
        Some(t) => s.serialize_str(&rfc3339(*t)),
        None => s.serialize_none(),
    }
}

/// The oldest and newest bucket start per archive name.
pub type BucketRanges = BTreeMap<String, (EpochMillis, EpochMillis)>;

/// Builds the report from what the node said.
pub fn summarize(
    config: &Config,
    now: EpochMillis,
    sizes: &[IndexSize],
    aliases: &[ExistingAlias],
    buckets: &BucketRanges,
) -> Status {
    let names: Vec<String> = sizes.iter().map(|s| s.index.clone()).collect();
    let managed = managed_indices(config, &names);
    let spans = archive_spans(config, now, &names);
    let plan = plan(config, now, &names, aliases);
    let archives = config
        .archives
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let mine: Vec<&IndexSize> = managed
                .iter()
                .filter(|m| m.archive == i)
                .filter_map(|m| sizes.iter().find(|s| s.index == m.name))
                .collect();
            let range = buckets.get(&a.name);
            ArchiveStatus {
                name: a.name.clone(),
                step: humantime::format_duration(a.step).to_string(),
                retention: a.retention.to_string(),
                indices: mine.len(),
                documents: mine.iter().map(|s| s.documents).sum(),
                bytes: mine.iter().map(|s| s.bytes).sum(),
                oldest_bucket: range.map(|r| r.0),
                newest_bucket: range.map(|r| r.1),
                serves: spans
                    .iter()
                    .find(|(archive, _, _)| *archive == i)
                    .map(|&(_, from, to)| Served {
                        from,
                        to: (to != EpochMillis::MAX).then_some(to),
                    }),
            }
        })
        .collect();
    Status {
        now,
        archives,
        alias_drift: plan.actions,
        to_create: plan.create,
        to_delete: plan.delete,
    }
}

/// The aggregation that finds each archive's oldest and newest bucket.
pub fn bucket_range_query(config: &Config) -> Value {
    json!({
        "size": 0,
        "aggs": {"archives": {
            "terms": {"field": "archive", "size": config.archives.len().max(1)},
            "aggs": {"oldest": {"min": {"field": "@timestamp"}}, "newest": {"max": {"field": "@timestamp"}}}
        }}
    })
}

/// Reads [`bucket_range_query`]'s answer.
pub fn bucket_ranges(answer: &Value) -> BucketRanges {
    let mut ranges = BucketRanges::new();
    let buckets = answer["aggregations"]["archives"]["buckets"].as_array();
    for b in buckets.into_iter().flatten() {
        let (Some(name), Some(oldest), Some(newest)) = (
            b["key"].as_str(),
            b["oldest"]["value"].as_f64(),
            b["newest"]["value"].as_f64(),
        ) else {
            continue;
        };
        ranges.insert(
            name.to_string(),
            (oldest as EpochMillis, newest as EpochMillis),
        );
    }
    ranges
}

/// Asks the node and builds the report.
pub async fn read_status<B: SearchBackend>(
    backend: &B,
    config: &Config,
    now: EpochMillis,
) -> Result<Status, MaintainError> {
    let pattern = config.index.naming.wildcard();
    let sizes = backend.index_sizes(&pattern).await?;
    let aliases = backend.get_aliases(&pattern).await?;
    let buckets = if sizes.is_empty() {
        BucketRanges::new()
    } else {
        bucket_ranges(
            &backend
                .search(&pattern, &bucket_range_query(config))
                .await?,
        )
    };
    Ok(summarize(config, now, &sizes, &aliases, &buckets))
}

/// The report as a table per archive, then the aliases' state.
pub fn render_text(status: &Status) -> String {
    let or_dash = |t: Option<EpochMillis>| t.map_or("-".to_string(), rfc3339);
    let mut rows = vec![[
        "archive".to_string(),
        "step".into(),
        "retention".into(),
        "indices".into(),
        "documents".into(),
        "size".into(),
        "oldest bucket".into(),
        "newest bucket".into(),
        "serves through the aliases".into(),
    ]];
    for a in &status.archives {
        let serves = match a.serves {
            Some(Served { from, to }) => format!(
                "{} .. {}",
                rfc3339(from),
                to.map_or("now".to_string(), rfc3339)
            ),
            None => "nothing (a finer archive covers it)".into(),
        };
        rows.push([
            a.name.clone(),
            a.step.clone(),
            a.retention.clone(),
            a.indices.to_string(),
            a.documents.to_string(),
            human_bytes(a.bytes),
            or_dash(a.oldest_bucket),
            or_dash(a.newest_bucket),
            serves,
        ]);
    }
    let widths: Vec<usize> = (0..9)
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!("strata status at {}\n", rfc3339(status.now));
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    if status.alias_drift.is_empty() {
        out.push_str("aliases: as planned\n");
    } else {
        out.push_str(&format!(
            "aliases: {} change(s) from the plan (`strata maintain` applies them):\n",
            status.alias_drift.len()
        ));
        for action in &status.alias_drift {
            out.push_str(&format!("  {action}\n"));
        }
    }
    let list = |title: &str, items: &[String]| match items {
        [] => format!("{title}: none\n"),
        _ => format!("{title}: {}\n", items.join(", ")),
    };
    out.push_str(&list("indices to create", &status.to_create));
    out.push_str(&list("expired indices not deleted yet", &status.to_delete));
    out
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    match unit {
        0 => format!("{bytes} B"),
        _ => format!("{value:.1} {}", UNITS[unit]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::maintain::plan::parse_alias_lines;
    use crate::testing::at;
    use std::path::Path;

    const CONFIG: &str = "[index]\nreplicas=0\n\
        [[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n\
        [[archive]]\nname=\"1h\"\nstep=\"1h\"\nretention=\"1 year\"\nindex_period=\"month\"\n";

    fn size(index: &str, documents: u64, bytes: u64) -> IndexSize {
        IndexSize {
            index: index.into(),
            documents,
            bytes,
        }
    }

    #[test]
    fn each_archive_sums_its_indices_and_shows_the_range_it_serves() {
        let config = Config::from_toml(CONFIG, Path::new("t")).unwrap();
        let now = at("2026-03-10T12:00:00Z");
        let sizes = [
            size("strata-20s-2026.03.09", 100, 4096),
            size("strata-20s-2026.03.10", 50, 2048),
            size("strata-1h-2026.02", 700, 65536),
            size("strata-1h-2026.03", 200, 8192),
            size("unrelated", 5, 5),
        ];
        let mut buckets = BucketRanges::new();
        let t = at;
        buckets.insert(
            "1h".into(),
            (t("2026-02-01T00:00:00Z"), t("2026-03-10T11:00:00Z")),
        );
        let status = summarize(&config, now, &sizes, &[], &buckets);
        let fine = &status.archives[0];
        assert_eq!((fine.indices, fine.documents, fine.bytes), (2, 150, 6144));
        assert_eq!(fine.oldest_bucket, None);
        assert_eq!(
            fine.serves,
            Some(Served {
                from: t("2026-03-09T00:00:00Z"),
                to: None
            })
        );
        let coarse = &status.archives[1];
        assert_eq!((coarse.indices, coarse.documents), (2, 900));
        assert_eq!(coarse.newest_bucket, Some(t("2026-03-10T11:00:00Z")));
        assert_eq!(
            coarse.serves,
            Some(Served {
                from: t("2026-02-01T00:00:00Z"),
                to: Some(t("2026-03-09T00:00:00Z"))
            })
        );
        // No alias on the node: every planned alias is drift.
        assert!(!status.alias_drift.is_empty());
        let text = render_text(&status);
        assert!(text.contains("2026-03-09T00:00:00Z .. now"), "{text}");
        assert!(text.contains("6.0 KiB"), "{text}");
        assert!(text.contains("change(s) from the plan"), "{text}");
    }

    #[test]
    fn aliases_as_planned_show_no_drift() {
        let config = Config::from_toml(CONFIG, Path::new("t")).unwrap();
        let now = at("2026-03-10T12:00:00Z");
        let sizes = [size("strata-20s-2026.03.10", 1, 1)];
        let names: Vec<String> = sizes.iter().map(|s| s.index.clone()).collect();
        let planned = plan(&config, now, &names, &[]);
        let lines: Vec<String> = planned
            .aliases
            .iter()
            .map(|a| match &a.filter {
                Some(f) => format!("{} {} {f}", a.alias, a.index),
                None => format!("{} {}", a.alias, a.index),
            })
            .collect();
        let existing = parse_alias_lines(&lines).unwrap();
        let status = summarize(&config, now, &sizes, &existing, &BucketRanges::new());
        assert_eq!(status.alias_drift, Vec::<Value>::new());
        assert!(render_text(&status).contains("aliases: as planned"));
    }

    #[test]
    fn an_aggregation_answer_gives_each_archive_its_range() {
        let answer = json!({"aggregations": {"archives": {"buckets": [
            {"key": "20s", "oldest": {"value": 1000.0}, "newest": {"value": 5000.0}},
            {"key": "empty", "oldest": {"value": null}, "newest": {"value": null}}
        ]}}});
        let ranges = bucket_ranges(&answer);
        assert_eq!(ranges.len(), 1);
        assert_eq!(ranges["20s"], (1000, 5000));
    }
}
