//! Late events merged into stored buckets, end to end against a real node: a replay stores
//! BENCH_BUCKETS one-minute buckets of yesterday (100 series), then the whole service takes
//! BENCH_LATE_EVENTS events for those buckets over HTTP and merges them (read, merge,
//! conditional write). Timed from the first request until the node holds every event.
//!
//!   STRATA_BENCH_NODE=http://127.0.0.1:9200 cargo bench --bench late_merge
//!   (scripts/bench starts a node and runs every benchmark)

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use strata::clock::SystemClock;
use strata::config::Config;
use strata::pipeline::{serve, ServeOptions};
use strata::replay;

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

const SERIES: u64 = 100;
const BATCH: u64 = 5_000;

fn main() {
    let node = std::env::var("STRATA_BENCH_NODE")
        .expect("set STRATA_BENCH_NODE to a node URL (scripts/bench does)");
    let (buckets, late) = (
        knob("BENCH_BUCKETS", 10_000),
        knob("BENCH_LATE_EVENTS", 100_000),
    );
    let prefix = format!("bench-late-{}-", std::process::id());
    let text = format!(
        "[index]\nprefix = \"{prefix}\"\ntemplate = \"{prefix}tpl\"\nreplicas = 0\n\
         [[archive]]\nname = \"1m\"\nstep = \"1m\"\nretention = \"30 days\"\nindex_period = \"day\"\n"
    );
    let config = Config::from_toml(&text, Path::new("bench.toml")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let now = chrono::Utc::now().timestamp_millis();
        let day = 86_400_000;
        let base = now - now.rem_euclid(day) - day;
        let minutes = buckets / SERIES;
        // Bucket b: series b % 100, minute b / 100 of yesterday.
        let event = |b: u64, k: u64| {
            let t = base + (b / SERIES) as i64 * 60_000 + 1_000 + k as i64 * 97;
            format!(r#"{{"name":"late.{}","value":{},"timestamp":{t}}}"#, b % SERIES, k % 7)
        };
        let stored: String = (0..SERIES * minutes).map(|b| event(b, 0) + "\n").collect();
        let limits = replay::limits_now(&config, &SystemClock);
        let summary = replay::to_node(&config, Some(node.clone()), Arc::new(stored), limits, Default::default())
            .await
            .unwrap();
        assert_eq!(summary.documents, buckets);

        let options = ServeOptions { node_url: Some(node.clone()), listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
        let running = serve(config, options, Arc::new(SystemClock)).await.unwrap();
        let url = format!("http://{}/v1/metrics", running.addr);
        // Every request spreads over all buckets, as a backfill of many series would.
        let per_bucket = late / buckets;
        let bodies: Vec<String> = (0..late)
            .map(|i| event(i % buckets, 1 + i / buckets % per_bucket.max(1)))
            .collect::<Vec<_>>()
            .chunks(BATCH as usize)
            .map(|chunk| format!("[{}]", chunk.join(",")))
            .collect();
        let http = reqwest::Client::new();
        let started = Instant::now();
        let mut merged_events = 0;
        for body in bodies {
            loop {
                let r = http.post(&url).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
                match r.status().as_u16() {
                    200 => {
                        let v: Value = r.json().await.unwrap();
                        merged_events += v["merged"].as_u64().unwrap();
                        break;
                    }
                    503 => tokio::time::sleep(Duration::from_millis(20)).await,
                    other => panic!("unexpected status {other}: {}", r.text().await.unwrap()),
                }
            }
        }
        let posted = started.elapsed().as_secs_f64();
        let want = buckets + late;
        let query = json!({"size": 0, "aggs": {"n": {"sum": {"field": "count"}}}});
        loop {
            http.post(format!("{node}/{prefix}*/_refresh")).send().await.unwrap();
            let v: Value = http.post(format!("{node}/{prefix}*/_search")).json(&query).send().await.unwrap().json().await.unwrap();
            if v["aggregations"]["n"]["value"].as_f64().unwrap_or(0.0) as u64 >= want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let elapsed = started.elapsed().as_secs_f64();
        let stats = running.stats.clone();
        running.stop().await.unwrap();
        let s = stats.snapshot();
        println!(
            "late merge: {late} late events over {buckets} stored buckets merged in {elapsed:.2} s = {:.0} events/s \
             (posted in {posted:.2} s; {merged_events} reported merged; {} merging writes, {} conflicts, {} bulk requests, {} rejected, {} dropped)",
            late as f64 / elapsed,
            s.docs_merged,
            s.write_conflicts,
            s.bulk_requests,
            s.docs_rejected,
            s.docs_dropped
        );
        let indices: Value = http.get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index")).send().await.unwrap().json().await.unwrap();
        let names: Vec<&str> = indices.as_array().unwrap().iter().filter_map(|i| i["index"].as_str()).collect();
        if !names.is_empty() {
            http.delete(format!("{node}/{}", names.join(","))).send().await.unwrap();
        }
        http.delete(format!("{node}/_index_template/{prefix}tpl")).send().await.unwrap();
    });
}
