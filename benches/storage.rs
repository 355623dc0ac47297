//! Bytes on disk per stored bucket, on a real node, after a force merge to one segment: the
//! same data set written with strata's template and documents as they are, then with each
//! storage lever added in turn, and in samplerr's layout (three documents per bucket) for
//! comparison.
//!
//!   STRATA_BENCH_NODE=http://127.0.0.1:9200 cargo bench --bench storage
//!
//! The data set: BENCH_SERIES (50) series with one tag, a year of hourly buckets of three events
//! each, plus a day of 20-second buckets (three events each) for a fifth of them. The documents
//! are strata's own (`replay --dry-run`'s bulk body, each stamped with a write token as the
//! writer makes them); a lever that changes the documents rewrites them here, so a row measures
//! what that change would save before it is made, and the first rows rebuild what strata
//! stored before.
//! BENCH_SETTLE_SECONDS (0) waits that long before the force merge (see there). BENCH_ONLY
//! runs only the variants whose name contains it.
//! BENCH_DISK_USAGE=1 also prints where the bytes go, field by field (Elasticsearch's
//! `_disk_usage`; OpenSearch has no such API).

use std::path::Path;

use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::config::Config;
use strata::persist::template::index_template;
use strata::persist::token::{token_text, WriteTokens};
use strata::replay::{self, ReplayOptions};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The statistics, which nobody range-queries: aggregations read their doc values.
const STATISTICS: [&str; 9] = [
    "count", "sum", "min", "max", "avg", "first", "last", "rate", "unique",
];

/// One way of storing the data set.
struct Variant {
    name: &'static str,
    layout: &'static str,
    template: fn(&mut Value),
    document: fn(&mut Value, &mut Value),
}

fn unchanged_template(_: &mut Value) {}
fn unchanged_document(_: &mut Value, _: &mut Value) {}

/// The template before statistics became doc values only (2026-12-01): every one indexed.
fn statistics_indexed(t: &mut Value) {
    let props = &mut t["template"]["mappings"]["properties"];
    for f in STATISTICS {
        if let Some(p) = props[f].as_object_mut() {
            p.remove("index");
        }
    }
    if let Some(templates) = t["template"]["mappings"]["dynamic_templates"].as_array_mut() {
        for d in templates {
            if let Some(m) = d
                .get_mut("percentiles_as_doubles")
                .and_then(|p| p["mapping"].as_object_mut())
            {
                m.remove("index");
            }
        }
    }
}

fn sorted(t: &mut Value) {
    let index = &mut t["template"]["settings"]["index"];
    index["sort.field"] = json!(["series", "@timestamp"]);
    index["sort.order"] = json!(["asc", "asc"]);
}

fn without_series(t: &mut Value) {
    if let Some(p) = t["template"]["mappings"]["properties"].as_object_mut() {
        p.remove("series");
    }
}

fn drop_series(_: &mut Value, doc: &mut Value) {
    if let Some(d) = doc.as_object_mut() {
        d.remove("series");
    }
}

/// The id as indices made before 2026-12-01 hold it: 32 hex digits of a 128-bit hash of
/// series, archive and start (of the readable series here, which hashes alike).
fn hashed_id(action: &mut Value, doc: &mut Value) {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(doc["series"].as_str().unwrap().as_bytes());
    h.update(&[0]);
    h.update(doc["archive"].as_str().unwrap().as_bytes());
    h.update(&[0]);
    h.update(doc["@timestamp"].as_str().unwrap().as_bytes());
    let meta = action
        .as_object_mut()
        .and_then(|a| a.values_mut().next())
        .unwrap();
    meta["_id"] = json!(format!("{:032x}", h.digest128()));
}

fn random_token_hashed_id(action: &mut Value, doc: &mut Value) {
    random_token(action, doc);
    hashed_id(action, doc);
}

/// A random token per write, as the writer stamped them before (2026-12-01).
fn random_token(_: &mut Value, doc: &mut Value) {
    use std::hash::BuildHasher;
    if doc.get("merge").is_none() {
        return;
    }
    let n = doc["merge"]["w"].as_str().unwrap().to_string();
    let random = std::collections::hash_map::RandomState::new().hash_one(n);
    doc["merge"]["w"] = json!(token_text(random));
}

/// The template before statistics left `_source` (2026-12-01).
fn statistics_in_source(t: &mut Value) {
    if let Some(m) = t["template"]["mappings"].as_object_mut() {
        m.remove("_source");
    }
}

fn synthetic_source(t: &mut Value) {
    t["template"]["settings"]["index"]["mapping.source.mode"] = json!("synthetic");
}

/// The template of 2026-11-30: statistics indexed for search and in `_source`.
fn indexed_and_in_source(t: &mut Value) {
    statistics_indexed(t);
    statistics_in_source(t);
}

/// Synthetic source rebuilds `_source` from doc values; it takes no excludes.
fn synthetic_source_alone(t: &mut Value) {
    statistics_in_source(t);
    synthetic_source(t);
}

/// Each lever is measured alone on top of today's template and documents; the first rows are
/// the steps that led to today's.
const VARIANTS: [Variant; 10] = [
    Variant {
        name: "2026-11-30: statistics indexed and in _source, random tokens, hashed ids",
        layout: "strata",
        template: indexed_and_in_source,
        document: random_token_hashed_id,
    },
    Variant {
        name: "statistics as doc values only (not indexed)",
        layout: "strata",
        template: statistics_in_source,
        document: random_token_hashed_id,
    },
    Variant {
        name: "+ write tokens from a count",
        layout: "strata",
        template: statistics_in_source,
        document: hashed_id,
    },
    Variant {
        name: "+ statistics out of _source (doc values only)",
        layout: "strata",
        template: unchanged_template,
        document: hashed_id,
    },
    Variant {
        name: "strata now: + ids led by the series (16 + 7 characters)",
        layout: "strata",
        template: unchanged_template,
        document: unchanged_document,
    },
    Variant {
        name: "strata now, again (the noise)",
        layout: "strata",
        template: unchanged_template,
        document: unchanged_document,
    },
    Variant {
        name: "+ index sorted by series, time",
        layout: "strata",
        template: sorted,
        document: unchanged_document,
    },
    Variant {
        name: "+ no `series` field (it repeats name, host, tags)",
        layout: "strata",
        template: without_series,
        document: drop_series,
    },
    Variant {
        name: "synthetic _source instead (Elasticsearch 8; a paid feature)",
        layout: "strata",
        template: synthetic_source_alone,
        document: unchanged_document,
    },
    Variant {
        name: "samplerr's layout (avg, min, max documents)",
        layout: "samplerr",
        template: unchanged_template,
        document: unchanged_document,
    },
];

fn events(series: u64, now: i64) -> (String, u64) {
    let hour = 3_600_000i64;
    let end = now - now.rem_euclid(hour) - hour;
    let start = end - 365 * 24 * hour;
    let mut out = String::new();
    let mut n = 0;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut value = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        (x % 10_000) as f64 / 100.0
    };
    let mut buckets = |series: &mut dyn Iterator<Item = u64>,
                       from: i64,
                       step: i64,
                       spacing: i64| {
        for s in series {
            let dc = if s % 2 == 0 { "par" } else { "ams" };
            let mut t = from;
            while t < end {
                for k in 0..3 {
                    out.push_str(&format!(
                        "{{\"name\":\"app.latency.{s}\",\"host\":\"web-{}\",\"tags\":{{\"dc\":\"{dc}\"}},\"value\":{},\"timestamp\":{}}}\n",
                        s % 10,
                        value(),
                        t + k * spacing
                    ));
                    n += 1;
                }
                t += step;
            }
        }
    };
    buckets(&mut (0..series), start, hour, 1_200_000);
    // A day of 20-second buckets for a fifth of the series.
    buckets(&mut (0..series).step_by(5), end - 24 * hour, 20_000, 6_000);
    (out, n)
}

/// The bytes per document of each field, largest first (Elasticsearch's `_disk_usage`).
async fn print_disk_usage(http: &reqwest::Client, node: &str, prefix: &str, docs: u64) {
    let usage: Value = http
        .post(format!(
            "{node}/{prefix}*/_disk_usage?run_expensive_tasks=true"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut fields: std::collections::BTreeMap<String, u64> = Default::default();
    for (index, u) in usage.as_object().into_iter().flatten() {
        if index == "_shards" {
            continue;
        }
        for (field, f) in u["fields"].as_object().into_iter().flatten() {
            *fields.entry(field.clone()).or_default() += f["total_in_bytes"].as_u64().unwrap_or(0);
        }
    }
    let mut sorted: Vec<_> = fields.into_iter().collect();
    sorted.sort_by_key(|(_, bytes)| std::cmp::Reverse(*bytes));
    let shown: Vec<String> = sorted
        .iter()
        .take(12)
        .map(|(field, bytes)| format!("{field} {:.1}", *bytes as f64 / docs as f64))
        .collect();
    println!(
        "storage:     bytes per document by field: {}",
        shown.join(", ")
    );
}

fn config(prefix: &str, layout: &str) -> Config {
    let text = format!(
        "[index]\nprefix = \"{prefix}\"\ntemplate = \"{prefix}tpl\"\nreplicas = 0\nlayout = \"{layout}\"\n\
         [[archive]]\nname = \"20s\"\nstep = \"20s\"\nretention = \"2 days\"\nindex_period = \"day\"\n\
         [[archive]]\nname = \"1h\"\nstep = \"1h\"\nretention = \"10 years\"\nindex_period = \"year\"\n"
    );
    Config::from_toml(&text, Path::new("bench.toml")).unwrap()
}

fn main() {
    let node = std::env::var("STRATA_BENCH_NODE")
        .expect("set STRATA_BENCH_NODE to a node URL (scripts/bench does)");
    let series = knob("BENCH_SERIES", 50);
    let now = chrono::Utc::now().timestamp_millis();
    let (input, raw_events) = events(series, now);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let http = reqwest::Client::new();
    let info: Value =
        runtime.block_on(async { http.get(&node).send().await.unwrap().json().await.unwrap() });
    println!(
        "storage: {} {} — {series} series, {raw_events} raw events (3 per bucket)",
        info["version"]["distribution"]
            .as_str()
            .unwrap_or("elasticsearch"),
        info["version"]["number"]
    );
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    for variant in VARIANTS.iter().filter(|v| v.name.contains(only.as_str())) {
        let prefix = format!("bstore-{}-", std::process::id());
        let cfg = config(&prefix, variant.layout);
        let mut body = Vec::new();
        let limits = replay::limits_now(&cfg, &ManualClock::new(now));
        replay::dry_run(&cfg, &input, &limits, &ReplayOptions::default(), &mut body).unwrap();
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        let mut template = index_template(&cfg);
        (variant.template)(&mut template);
        runtime.block_on(async {
            let r = http
                .put(format!("{node}/_index_template/{prefix}tpl"))
                .json(&template)
                .send()
                .await
                .unwrap();
            if !r.status().is_success() {
                println!(
                    "storage: {:<62} refused by this node: {}",
                    variant.name,
                    r.text().await.unwrap().chars().take(300).collect::<String>()
                );
                return;
            }
            let mut docs = 0u64;
            let mut tokens = WriteTokens::new();
            for chunk in lines.chunks(2 * 5_000) {
                let mut out = String::new();
                for pair in chunk.chunks(2) {
                    let mut action: Value = serde_json::from_slice(pair[0]).unwrap();
                    let mut doc: Value = serde_json::from_slice(pair[1]).unwrap();
                    // As the writer stamps each write (the dry run stamps none).
                    if doc.get("merge").is_some() {
                        doc["merge"]["w"] = json!(token_text(tokens.next_token()));
                    }
                    (variant.document)(&mut action, &mut doc);
                    out.push_str(&action.to_string());
                    out.push('\n');
                    out.push_str(&doc.to_string());
                    out.push('\n');
                    docs += 1;
                }
                let r: Value = http
                    .post(format!("{node}/_bulk?filter_path=errors,items.*.error"))
                    .header("content-type", "application/x-ndjson")
                    .body(out)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                assert_eq!(r["errors"], false, "{r}");
            }
            http.post(format!("{node}/{prefix}*/_refresh")).send().await.unwrap();
            // With BENCH_SETTLE_SECONDS, the force merge waits for the shard's retention lease to
            // move past the documents (synced every 30 s), so that the merge can drop the
            // original source a node keeps for recovery when `_source` is filtered: the figure
            // then is what a written index costs for the rest of its retention.
            let settle = knob("BENCH_SETTLE_SECONDS", 0);
            if settle > 0 {
                tokio::time::sleep(std::time::Duration::from_secs(settle)).await;
                // A flush commits the retained sequence number the merge policy reads.
                http.post(format!("{node}/{prefix}*/_flush?force=true")).send().await.unwrap();
            }
            let merged = http
                .post(format!("{node}/{prefix}*/_forcemerge?max_num_segments=1"))
                .timeout(std::time::Duration::from_secs(600))
                .send()
                .await
                .unwrap();
            assert!(merged.status().is_success());
            // Until every shard is one segment and the merged-away files are gone.
            for _ in 0..600 {
                http.post(format!("{node}/{prefix}*/_flush")).send().await.unwrap();
                http.post(format!("{node}/{prefix}*/_refresh")).send().await.unwrap();
                let segments: Value = http
                    .get(format!("{node}/{prefix}*/_stats/segments"))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                let shards = segments["_shards"]["successful"].as_u64().unwrap_or(0);
                let count = segments["_all"]["primaries"]["segments"]["count"].as_u64().unwrap_or(0);
                if count <= shards {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
            }
            let stats: Value = http
                .get(format!("{node}/{prefix}*/_stats/store,docs"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let bytes = stats["_all"]["primaries"]["store"]["size_in_bytes"].as_f64().unwrap();
            let stored = stats["_all"]["primaries"]["docs"]["count"].as_f64().unwrap();
            assert_eq!(stored as u64, docs, "every document stored");
            if knob("BENCH_DISK_USAGE", 0) == 1 {
                print_disk_usage(&http, &node, &prefix, docs).await;
            }
            let buckets = if variant.layout == "samplerr" { docs / 3 } else { docs };
            println!(
                "storage: {:<62} {docs:>8} documents, {:>6.1} MB, {:>6.1} bytes per bucket, {:>5.1} per raw event",
                variant.name,
                bytes / 1e6,
                bytes / buckets as f64,
                bytes / raw_events as f64
            );
        });
        runtime.block_on(async {
            // By name: Elasticsearch 8 refuses to delete by wildcard.
            let listed: Value = http
                .get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap_or(json!([]));
            let names: Vec<&str> = listed
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|i| i["index"].as_str())
                .collect();
            if !names.is_empty() {
                let _ = http
                    .delete(format!("{node}/{}", names.join(",")))
                    .send()
                    .await;
            }
            let _ = http
                .delete(format!("{node}/_index_template/{prefix}tpl"))
                .send()
                .await;
        });
    }
}
