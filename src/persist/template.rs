//! The composable index template installed at start: explicit types for every field strata
//! writes (samplerr relied on dynamic mapping and got floats and longs by accident).

use std::collections::BTreeSet;

use serde_json::{json, Value};

use crate::config::{percentile_field, Config, DocumentLayout};
use crate::persist::document::{SERIES_FIRST_IDS, STATISTICS_AS_DOC_VALUES};

/// The template body for the configured naming and replicas.
pub fn index_template(config: &Config) -> Value {
    // Statistics are aggregated (from doc values), never searched: no points index for them.
    // Measured: 168.8 → 147.3 bytes per bucket on Elasticsearch 8.17 (BENCHMARKS.md).
    let statistic = json!({"type": "double", "index": false});
    let count = json!({"type": "long", "index": false});
    let double = json!({"type": "double"});
    let keyword = json!({"type": "keyword"});
    let mut template = json!({
        "index_patterns": [config.index.naming.wildcard()],
        "priority": config.index.template_priority,
        "_meta": {"managed_by": "strata", "version": env!("CARGO_PKG_VERSION")},
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": 1,
                    "number_of_replicas": config.index.replicas,
                    "codec": "best_compression"
                }
            },
            "mappings": {
                // Each statistic is kept once, as doc values (what aggregations read), not also
                // in `_source`; reads that need a document's statistics ask for its doc values.
                "_source": {"excludes": source_excludes(config)},
                // Marks an index whose document ids lead with the series (see
                // `persist::document::IdForm`); indices without it keep hashed ids.
                "_meta": {SERIES_FIRST_IDS: "series-first"},
                "dynamic_templates": [
                    {"tags_as_keywords": {"path_match": "tags.*", "mapping": {"type": "keyword"}}},
                    {"percentiles_as_doubles": {"match_pattern": "regex", "match": "^p[0-9]+(_[0-9]+)?$", "mapping": {"type": "double", "index": false}}},
                    {"strings_as_keywords": {"match_mapping_type": "string", "mapping": {"type": "keyword"}}}
                ],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "name": keyword, "host": keyword, "series": keyword, "type": keyword, "archive": keyword,
                    "tags": {"type": "object"},
                    "step": {"type": "long"},
                    "count": count, "unique": count,
                    "sum": statistic, "min": statistic, "max": statistic, "avg": statistic,
                    "first": statistic, "last": statistic, "rate": statistic,
                    "labels": keyword,
                    "sketch": {"type": "binary"},
                    // What merging needs (times of first and last, set members, write token):
                    // kept in _source, never indexed.
                    "merge": {"type": "object", "enabled": false}
                }
            }
        }
    });
    if config.index.layout == DocumentLayout::Samplerr {
        let properties = &mut template["template"]["mappings"]["properties"];
        for field in ["service", "cfunc", "tf"] {
            properties[field] = keyword.clone();
        }
        properties["metric"] = double.clone();
    }
    let limit = field_limit(config, &template["template"]["mappings"]["properties"]);
    template["template"]["settings"]["index"]["mapping"] =
        json!({"total_fields": {"limit": limit}});
    template
}

/// The fields left out of `_source`: the statistics and the configured percentile fields.
fn source_excludes(config: &Config) -> Vec<String> {
    STATISTICS_AS_DOC_VALUES
        .iter()
        .map(|f| f.to_string())
        .chain(percentile_fields(config))
        .collect()
}

/// The `p<N>` fields of every archive's percentiles.
fn percentile_fields(config: &Config) -> BTreeSet<String> {
    config
        .archives
        .iter()
        .flat_map(|a| a.percentiles.iter().map(|&p| percentile_field(p)))
        .collect()
}

/// The node's field limit per index: strata's own fields, the percentile fields, and twice
/// `consolidate.max_tag_keys` — the bound ingest keeps the distinct tag keys under, doubled for
/// the keys an index may already hold when strata restarts with neither a log nor the node
/// answering (it then counts from zero). Past this limit the node would refuse documents that
/// strata has acknowledged.
fn field_limit(config: &Config, properties: &Value) -> usize {
    let own = properties.as_object().map_or(0, |p| p.len());
    own + percentile_fields(config).len() + 2 * config.consolidate.max_tag_keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn template_matches_the_naming_and_types_every_field() {
        let text = "[index]\nreplicas=0\n[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n";
        let t = index_template(&Config::from_toml(text, Path::new("t")).unwrap());
        assert_eq!(t["index_patterns"][0], "strata-*-*");
        assert_eq!(t["template"]["settings"]["index"]["number_of_replicas"], 0);
        let props = &t["template"]["mappings"]["properties"];
        for f in [
            "count",
            "sum",
            "min",
            "max",
            "avg",
            "first",
            "last",
            "@timestamp",
            "name",
            "host",
            "type",
            "archive",
            "step",
            "rate",
            "unique",
            "labels",
            "sketch",
            "merge",
        ] {
            assert!(props.get(f).is_some(), "{f} is mapped");
        }
    }

    #[test]
    fn the_samplerr_layout_maps_samplerrs_fields() {
        let text = "[index]\nlayout=\"samplerr\"\n[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n";
        let t = index_template(&Config::from_toml(text, Path::new("t")).unwrap());
        let props = &t["template"]["mappings"]["properties"];
        for (field, kind) in [
            ("service", "keyword"),
            ("cfunc", "keyword"),
            ("tf", "keyword"),
            ("metric", "double"),
        ] {
            assert_eq!(props[field]["type"], kind, "{field}");
        }
        let plain =
            "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n";
        let t = index_template(&Config::from_toml(plain, Path::new("t")).unwrap());
        assert!(t["template"]["mappings"]["properties"]
            .get("metric")
            .is_none());
    }
}
