//! Read latency against a real node: p50 and p99 of `/v1/metrics` over one year at step=1h for
//! one series, and of `/v1/stats` over ten years. Ten years of hourly data for one series are
//! replayed first; the service runs in this process; requests are sequential over loopback.
//!
//!   STRATA_BENCH_NODE=http://127.0.0.1:9200 cargo bench --bench read_latency
//!
//! Knob: BENCH_REQUESTS (200 per endpoint).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::clock::SystemClock;
use strata::config::Config;
use strata::pipeline::{serve, ServeOptions};
use strata::replay;

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let k = ((p / 100.0 * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[k - 1].as_secs_f64() * 1000.0
}

fn main() {
    let node = std::env::var("STRATA_BENCH_NODE")
        .expect("set STRATA_BENCH_NODE to a node URL (scripts/bench does)");
    let requests: usize = std::env::var("BENCH_REQUESTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let prefix = format!("benchr-{}-", std::process::id());
    let text = format!(
        "[index]\nprefix = \"{prefix}\"\ntemplate = \"{prefix}tpl\"\nreplicas = 0\n[aliases]\nprefix = \"{prefix}alias-\"\numbrella = \"{prefix}all\"\n\
         [[archive]]\nname = \"1h\"\nstep = \"1h\"\nretention = \"11 years\"\nindex_period = \"year\"\n"
    );
    let config = Config::from_toml(&text, Path::new("bench.toml")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let hour = 3_600_000i64;
        let now = chrono::Utc::now().timestamp_millis();
        let end = now - now.rem_euclid(hour) - hour;
        let start = end - 10 * 365 * 24 * hour;
        let input: String = (0..10 * 365 * 24).map(|i| format!("{{\"name\":\"lat\",\"value\":{},\"timestamp\":{}}}\n", i % 100, start + i * hour)).collect();
        let limits = replay::limits_now(&config, &SystemClock);
        let summary = replay::to_node(&config, Some(node.clone()), Arc::new(input), limits, Default::default()).await.unwrap();
        let http = reqwest::Client::new();
        http.post(format!("{node}/{prefix}*/_refresh")).send().await.unwrap();
        let running = serve(config, ServeOptions { node_url: Some(node.clone()), listen: Some("127.0.0.1:0".parse().unwrap()) }, Arc::new(SystemClock)).await.unwrap();
        let year_ago = end - 365 * 24 * hour;
        let cases = [
            ("/v1/metrics one year, step=1h", format!("http://{}/v1/metrics?name=lat&from={year_ago}&to={end}&step=1h", running.addr)),
            ("/v1/stats ten years", format!("http://{}/v1/stats?name=lat&start={start}&end={end}", running.addr)),
        ];
        println!("read latency: {} hourly documents for one series, {requests} sequential requests per endpoint", summary.documents);
        for (label, url) in cases {
            let mut took = Vec::with_capacity(requests);
            for _ in 0..requests {
                let t = Instant::now();
                let r = http.get(&url).send().await.unwrap();
                assert_eq!(r.status().as_u16(), 200);
                let _ = r.bytes().await.unwrap();
                took.push(t.elapsed());
            }
            took.sort();
            println!("read latency: {label}: p50 {:.1} ms, p99 {:.1} ms", percentile(&took, 50.0), percentile(&took, 99.0));
        }
        running.stop().await.unwrap();
        let indices: serde_json::Value = http.get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index")).send().await.unwrap().json().await.unwrap();
        let names: Vec<&str> = indices.as_array().unwrap().iter().filter_map(|i| i["index"].as_str()).collect();
        if !names.is_empty() {
            http.delete(format!("{node}/{}", names.join(","))).send().await.unwrap();
        }
        http.delete(format!("{node}/_index_template/{prefix}tpl")).send().await.unwrap();
    });
}
