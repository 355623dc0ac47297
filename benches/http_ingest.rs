//! End-to-end HTTP ingest benchmark against a real node: the whole service (parse, validate,
//! consolidate, bulk-write) in this process, load from client tasks in the same process over
//! loopback, all on this machine's cores.
//!
//!   STRATA_BENCH_NODE=http://127.0.0.1:9200 cargo bench --bench http_ingest
//!   (scripts/bench starts a node and runs every benchmark)
//!
//! Knobs (environment): BENCH_SECONDS (20), BENCH_CLIENTS (4), BENCH_BATCH (5000 events per
//! request), BENCH_SERIES (10000), BENCH_FORMAT (`array`, the default, or `ndjson`: the same
//! events one per line), BENCH_LOG (`off`, the default; `on`: the write-ahead log with fsync, in
//! a temporary directory; `nosync`: the log without fsync), BENCH_READERS (0: tasks reading
//! `/v1/metrics` for one series over the last hour, one request after another, meanwhile),
//! BENCH_READ_TURNS (2: `http.max_concurrent_reads`), BENCH_READ_SHARE (`http.read_share`, its default
//! when unset).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use strata::clock::SystemClock;
use strata::config::Config;
use strata::pipeline::{serve, ServeOptions};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let node = std::env::var("STRATA_BENCH_NODE")
        .expect("set STRATA_BENCH_NODE to a node URL (scripts/bench does)");
    let (seconds, clients, batch, series) = (
        knob("BENCH_SECONDS", 20),
        knob("BENCH_CLIENTS", 4),
        knob("BENCH_BATCH", 5000),
        knob("BENCH_SERIES", 10_000),
    );
    let ndjson = match std::env::var("BENCH_FORMAT").as_deref() {
        Ok("ndjson") => true,
        Ok("array") | Err(_) => false,
        Ok(other) => panic!("BENCH_FORMAT is array or ndjson, not {other:?}"),
    };
    let prefix = format!("bench-{}-", std::process::id());
    let data = std::env::temp_dir().join(format!("strata-bench-log-{}", std::process::id()));
    let log = std::env::var("BENCH_LOG").unwrap_or_else(|_| "off".into());
    let durability = match log.as_str() {
        "off" => String::new(),
        "on" => format!("[durability]\ndir = \"{}\"\n", data.display()),
        "nosync" => format!(
            "[durability]\ndir = \"{}\"\nfsync = false\n",
            data.display()
        ),
        other => panic!("BENCH_LOG is off, on or nosync, not {other:?}"),
    };
    let turns = knob("BENCH_READ_TURNS", 2);
    // The default share unless asked (`http.read_share`).
    let share = std::env::var("BENCH_READ_SHARE")
        .map(|s| format!("read_share = {s}"))
        .unwrap_or_default();
    let text = format!(
        r#"{durability}[http]
max_concurrent_reads = {turns}
{share}
[index]
prefix = "{prefix}"
template = "{prefix}tpl"
replicas = 0
[[archive]]
name = "20s"
step = "20s"
retention = "2 days"
index_period = "day"
[[archive]]
name = "10m"
step = "10m"
retention = "2 months"
index_period = "month"
[[archive]]
name = "1h"
step = "1h"
retention = "10 years"
index_period = "year"
"#
    );
    let config = Config::from_toml(&text, Path::new("bench.toml")).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let options = ServeOptions { node_url: Some(node.clone()), listen: Some("127.0.0.1:0".parse().unwrap()), ..Default::default() };
        let running = serve(config, options, Arc::new(SystemClock)).await.unwrap();
        let url = format!("http://{}/v1/metrics", running.addr);
        // Bodies are built once; every request sends the same series with the server's clock.
        let bodies: Vec<bytes::Bytes> = (0..16)
            .map(|b| {
                let items: Vec<String> = (0..batch)
                    .map(|i| {
                        let s = (b * batch + i) % series;
                        format!(r#"{{"name":"bench.metric.{}","host":"host-{}","value":{}.5}}"#, s % 100, s / 100, i % 50)
                    })
                    .collect();
                if ndjson {
                    bytes::Bytes::from(items.join("\n"))
                } else {
                    bytes::Bytes::from(format!("[{}]", items.join(",")))
                }
            })
            .collect();
        let accepted = Arc::new(AtomicU64::new(0));
        let busy = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        let reads = Arc::new(AtomicU64::new(0));
        let failed_reads = Arc::new(AtomicU64::new(0));
        let mut readers = Vec::new();
        for _ in 0..knob("BENCH_READERS", 0) {
            let (addr, reads, failed_reads) = (running.addr, reads.clone(), failed_reads.clone());
            readers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                while Instant::now() < deadline {
                    let now = chrono::Utc::now().timestamp_millis();
                    let url = format!("http://{addr}/v1/metrics?name=bench.metric.0&host=host-0&from={}&to={now}", now - 3_600_000);
                    let r = http.get(&url).send().await.unwrap();
                    let status = r.status().as_u16();
                    let _ = r.bytes().await.unwrap();
                    // A read while the node is still starting the day's new index is a 502
                    // ("all shards failed", no shard named): counted, not fatal.
                    let counter = if status == 200 { &reads } else { &failed_reads };
                    counter.fetch_add(1, Ordering::Relaxed);
                }
            }));
        }
        for c in 0..clients {
            let (url, bodies, accepted, busy) = (url.clone(), bodies.clone(), accepted.clone(), busy.clone());
            tasks.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                let mut n = c as usize;
                while Instant::now() < deadline {
                    let r = http.post(&url).header("content-type", "application/json").body(bodies[n % bodies.len()].clone()).send().await.unwrap();
                    n += 1;
                    match r.status().as_u16() {
                        200 => {
                            let v: serde_json::Value = r.json().await.unwrap();
                            accepted.fetch_add(v["accepted"].as_u64().unwrap(), Ordering::Relaxed);
                        }
                        503 => {
                            busy.fetch_add(1, Ordering::Relaxed);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        other => panic!("unexpected status {other}: {}", r.text().await.unwrap()),
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        for r in readers {
            r.await.unwrap();
        }
        let stats = running.stats.clone();
        running.stop().await.unwrap();
        let s = stats.snapshot();
        let total = accepted.load(Ordering::Relaxed);
        println!(
            "http ingest ({}, log {log}): {total} events accepted in {elapsed:.1} s = {:.0} events/s ({clients} clients, {batch} events/request, {series} series x 3 archives); {} reads by {} readers ({} failed); 503 answers: {}; documents written: {}, rejected: {}, dropped: {}",
            if ndjson { "ndjson" } else { "array" },
            total as f64 / elapsed,
            reads.load(Ordering::Relaxed),
            knob("BENCH_READERS", 0),
            failed_reads.load(Ordering::Relaxed),
            busy.load(Ordering::Relaxed),
            s.docs_written,
            s.docs_rejected,
            s.docs_dropped
        );
        // Remove the benchmark's indices and template.
        let http = reqwest::Client::new();
        let indices: serde_json::Value = http.get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index")).send().await.unwrap().json().await.unwrap();
        let names: Vec<&str> = indices.as_array().unwrap().iter().filter_map(|i| i["index"].as_str()).collect();
        if !names.is_empty() {
            http.delete(format!("{node}/{}", names.join(","))).send().await.unwrap();
        }
        http.delete(format!("{node}/_index_template/{prefix}tpl")).send().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&data);
}
