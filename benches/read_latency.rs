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
        let running = serve(config, ServeOptions { node_url: Some(node.clone()), listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() }, Arc::new(SystemClock)).await.unwrap();
        let year_ago = end - 365 * 24 * hour;
        // The same questions asked of the node directly, through the umbrella alias, as a
        // dashboard would: the floor strata's answers are measured against.
        let umbrella = format!("{node}/{prefix}all/_search");
        let histogram = serde_json::json!({"size": 0,
            "query": {"bool": {"filter": [{"term": {"name": "lat"}},
                {"range": {"@timestamp": {"gte": year_ago, "lte": end, "format": "epoch_millis"}}}]}},
            "aggs": {"points": {"date_histogram": {"field": "@timestamp", "fixed_interval": "1h", "min_doc_count": 0,
                "extended_bounds": {"min": year_ago, "max": end}},
                "aggs": {"count": {"sum": {"field": "count"}}, "sum": {"sum": {"field": "sum"}},
                    "min": {"min": {"field": "min"}}, "max": {"max": {"field": "max"}}}}}});
        let totals = serde_json::json!({"size": 0,
            "query": {"bool": {"filter": [{"term": {"name": "lat"}},
                {"range": {"@timestamp": {"gte": start, "lte": end, "format": "epoch_millis"}}}]}},
            "aggs": {"count": {"sum": {"field": "count"}}, "sum": {"sum": {"field": "sum"}},
                "min": {"min": {"field": "min"}}, "max": {"max": {"field": "max"}}}});
        enum Ask {
            Get(String),
            Post(String, serde_json::Value),
        }
        let cases = [
            ("/v1/metrics one year, step=1h", Ask::Get(format!("http://{}/v1/metrics?name=lat&from={year_ago}&to={end}&step=1h", running.addr))),
            ("node's own date histogram, one year at 1h (umbrella alias)", Ask::Post(umbrella.clone(), histogram)),
            ("/v1/stats ten years", Ask::Get(format!("http://{}/v1/stats?name=lat&start={start}&end={end}", running.addr))),
            ("node's own stats aggregation, ten years (umbrella alias)", Ask::Post(umbrella, totals)),
            ("node's _cat/indices (what each read listed first)", Ask::Get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index"))),
        ];
        println!("read latency: {} hourly documents for one series, {requests} sequential requests per case", summary.documents);
        for (label, ask) in cases {
            let mut took = Vec::with_capacity(requests);
            let mut bytes = 0;
            for _ in 0..requests {
                let t = Instant::now();
                let r = match &ask {
                    Ask::Get(url) => http.get(url).send().await.unwrap(),
                    Ask::Post(url, body) => http.post(url).json(body).send().await.unwrap(),
                };
                assert_eq!(r.status().as_u16(), 200);
                bytes = r.bytes().await.unwrap().len();
                took.push(t.elapsed());
            }
            took.sort();
            println!("read latency: {label}: p50 {:.1} ms, p99 {:.1} ms, {bytes} bytes", percentile(&took, 50.0), percentile(&took, 99.0));
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
