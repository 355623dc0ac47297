//! Test support: the real node named by STRATA_TEST_NODE (started by scripts/test), a unique
//! index prefix per test, and small helpers to query the node directly.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::config::Config;
use strata::pipeline::{serve, Running, ServeOptions};
use strata::replay;
use strata::stats::StatsSnapshot;

/// The node under test; scripts/test starts it and sets the variable.
pub fn node_url() -> String {
    std::env::var("STRATA_TEST_NODE")
        .expect(
            "STRATA_TEST_NODE is not set: run scripts/test, which starts a real node and sets it",
        )
        .trim_end_matches('/')
        .to_string()
}

/// A test's own corner of the node: a unique prefix and template name.
pub struct Scope {
    pub prefix: String,
    pub node: String,
    pub http: reqwest::Client,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Scope {
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!(
            "t{}-{}{}-{}-",
            std::process::id(),
            nanos % 100_000,
            n,
            test.replace('_', "-")
        );
        Self {
            prefix,
            node: node_url(),
            http: reqwest::Client::new(),
        }
    }

    /// A config using this scope's prefix and template, with `archives` (TOML) and `extra` sections.
    pub fn config(&self, archives: &str, extra: &str) -> Config {
        Config::from_toml(&self.config_text(archives, extra), Path::new("test.toml")).unwrap()
    }

    /// One search through `_msearch`, as Grafana's data source sends it (header with
    /// `ignore_unavailable`, NDJSON); its response, which must not be an error.
    pub async fn grafana_search(&self, index: &str, body: &Value) -> Value {
        let header =
            json!({"search_type": "query_then_fetch", "ignore_unavailable": true, "index": index});
        let r = self
            .http
            .post(format!(
                "{}/_msearch?max_concurrent_shard_requests=5",
                self.node
            ))
            .header("content-type", "application/x-ndjson")
            .body(format!("{header}\n{body}\n"))
            .send()
            .await
            .unwrap();
        let v: Value = r.json().await.unwrap();
        let response = v["responses"][0].clone();
        assert!(response.get("error").is_none(), "{response}");
        response
    }

    /// [`Scope::config`] as TOML text, for a `strata` process to read from a file.
    pub fn config_text(&self, archives: &str, extra: &str) -> String {
        format!(
            "[node]\nurl = \"{}\"\n[index]\nprefix = \"{p}\"\ntemplate = \"{p}tpl\"\nreplicas = 0\n[aliases]\nprefix = \"{p}alias-\"\numbrella = \"{p}all\"\n{archives}\n{extra}\n",
            self.node,
            p = self.prefix
        )
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.node))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.node))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn refresh(&self) {
        let r = self
            .http
            .post(format!(
                "{}/{}*/_refresh?ignore_unavailable=true&allow_no_indices=true",
                self.node, self.prefix
            ))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "refresh failed: {}",
            r.text().await.unwrap()
        );
    }

    /// Every document under the prefix, sorted by archive, name and time.
    pub async fn documents(&self) -> Vec<Value> {
        match self.try_documents().await {
            Ok(docs) => docs,
            Err(answer) => panic!("search failed: {answer}"),
        }
    }

    /// The documents, or the node's answer when the search failed (e.g. a shard still starting).
    pub async fn try_documents(&self) -> Result<Vec<Value>, Value> {
        self.refresh().await;
        let body = json!({"size": 10000, "sort": [{"archive": "asc"}, {"name": "asc"}, {"@timestamp": "asc"}], "query": {"match_all": {}}, "docvalue_fields": STATISTICS});
        let path = format!(
            "/{}*/_search?ignore_unavailable=true&allow_no_indices=true",
            self.prefix
        );
        let (status, v) = self.send(reqwest::Method::POST, &path, body).await;
        if status != 200 {
            return Err(v);
        }
        Ok(v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(document_of)
            .collect())
    }

    /// Every document under the prefix as (`_id`, `_source`), sorted by id.
    pub async fn documents_by_id(&self) -> Vec<(String, Value)> {
        self.refresh().await;
        // Sorted here: Elasticsearch 8 refuses to sort on `_id`.
        let body =
            json!({"size": 10000, "query": {"match_all": {}}, "docvalue_fields": STATISTICS});
        let path = format!(
            "/{}*/_search?ignore_unavailable=true&allow_no_indices=true",
            self.prefix
        );
        let (status, v) = self.send(reqwest::Method::POST, &path, body).await;
        assert_eq!(status, 200, "{v}");
        v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h["_id"].as_str().unwrap().to_string(), document_of(h)))
            .collect::<std::collections::BTreeMap<_, _>>()
            .into_iter()
            .collect()
    }

    /// Indices under the prefix, sorted.
    pub async fn indices(&self) -> Vec<String> {
        let (_, v) = self
            .get(&format!(
                "/_cat/indices/{}*?format=json&h=index",
                self.prefix
            ))
            .await;
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["index"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Polls until `docs` documents are searchable (the writer flushes on its own schedule).
    pub async fn wait_for_documents(&self, docs: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = match self.try_documents().await {
                Ok(found) => found,
                Err(_) if std::time::Instant::now() < deadline => Vec::new(),
                Err(answer) => panic!("search failed: {answer}"),
            };
            if found.len() >= docs || std::time::Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes this scope's indices (by explicit name) and template.
    pub async fn cleanup(&self) {
        let names = self.indices().await;
        for chunk in names.chunks(50) {
            self.http
                .delete(format!("{}/{}", self.node, chunk.join(",")))
                .send()
                .await
                .unwrap();
        }
        self.http
            .delete(format!("{}/_index_template/{}tpl", self.node, self.prefix))
            .send()
            .await
            .unwrap();
    }
}

/// An archive table in TOML.
pub fn archive(name: &str, step: &str, retention: &str, period: &str, lateness: &str) -> String {
    format!("[[archive]]\nname = \"{name}\"\nstep = \"{step}\"\nretention = \"{retention}\"\nindex_period = \"{period}\"\nlateness = \"{lateness}\"\n")
}

/// Milliseconds of an RFC 3339 instant.
pub fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}

// Helpers shared by several areas of the suite.

pub const FAST: &str = "[consolidate]\ntick = \"20ms\"\n[persist]\nflush_interval = \"50ms\"\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\n";

pub fn events_ndjson(name: &str, base: i64, points: &[(i64, f64)]) -> String {
    points.iter().map(|(t, v)| format!("{{\"name\":\"{name}\",\"host\":\"h1\",\"tags\":{{\"dc\":\"par\"}},\"value\":{v},\"timestamp\":{}}}\n", base + t * 1000)).collect()
}

pub fn stats_of(doc: &Value) -> (u64, f64, f64, f64, f64, f64, f64) {
    let f = |k: &str| doc[k].as_f64().unwrap();
    (
        doc["count"].as_u64().unwrap(),
        f("sum"),
        f("min"),
        f("max"),
        f("avg"),
        f("first"),
        f("last"),
    )
}

pub fn archive_20s() -> String {
    archive("20s", "20s", "2 days", "day", "10s")
}

pub async fn start(scope: &Scope, archives: &str, extra: &str, clock: &ManualClock) -> Running {
    let cfg = scope.config(archives, extra);
    let listen = Some("127.0.0.1:0".parse().unwrap());
    serve(
        cfg,
        ServeOptions {
            node_url: None,
            listen,
            ..Default::default()
        },
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// The service's counters once `done` holds for them, or once `limit` has passed (the caller
/// asserts what it expects).
pub async fn stats_when(
    running: &Running,
    limit: Duration,
    done: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let deadline = std::time::Instant::now() + limit;
    loop {
        let stats = running.stats.snapshot();
        if done(&stats) || std::time::Instant::now() >= deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub async fn post(scope: &Scope, running: &Running, body: &str) -> (u16, Value, Option<String>) {
    let r = scope
        .http
        .post(format!("http://{}/v1/metrics", running.addr))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let retry_after = r
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().to_string());
    (status, r.json().await.unwrap_or(Value::Null), retry_after)
}

/// One event every 29 days for three years, and one every two hours over the last five days
/// (those not within the last minute), in time order.
pub fn three_years_of_times(now: i64) -> Vec<i64> {
    let day = 86_400_000i64;
    let today = now - now.rem_euclid(day);
    let mut times: Vec<i64> = (1..=38).map(|i| today - i * 29 * day + 3_600_000).collect();
    times.extend(
        (0..60)
            .map(|i| today - 5 * day + i * 2 * 3_600_000)
            .filter(|&t| t < now - 60_000),
    );
    times.sort();
    times
}

/// NDJSON of the gauge `g` with value 1 at each of `times`.
pub fn gauge_ones(times: &[i64]) -> String {
    times
        .iter()
        .map(|t| format!("{{\"name\":\"g\",\"value\":1,\"timestamp\":{t}}}\n"))
        .collect()
}

/// Replays NDJSON events into the node through the same path as `strata replay`.
pub async fn replay_ndjson(
    cfg: &strata::config::Config,
    ndjson: &str,
) -> Result<replay::ReplaySummary, replay::ReplayError> {
    replay_ndjson_at(cfg, ndjson, chrono::Utc::now().timestamp_millis()).await
}

/// [`replay_ndjson`] as if it were `now` (for the retention and the future-skew check).
pub async fn replay_ndjson_at(
    cfg: &strata::config::Config,
    ndjson: &str,
    now: i64,
) -> Result<replay::ReplaySummary, replay::ReplayError> {
    let limits = replay::limits_now(cfg, &ManualClock::new(now));
    let source = std::sync::Arc::new(ndjson.to_string());
    replay::to_node(cfg, None, source, limits, Default::default()).await
}

/// [`replay_ndjson`], which must succeed.
pub async fn replay_into_node(cfg: &strata::config::Config, ndjson: &str) -> replay::ReplaySummary {
    replay_ndjson(cfg, ndjson).await.unwrap()
}

pub async fn get_json(scope: &Scope, url: String) -> (u16, Value) {
    let r = scope.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Reads the service's log until it says where it listens; keeps draining it afterwards.
pub async fn read_listen_addr(stderr: tokio::process::ChildStderr) -> String {
    read_listen_addr_keeping(stderr, Arc::default()).await
}

/// [`read_listen_addr`], keeping every line of the log in `kept` too.
pub async fn read_listen_addr_keeping(
    stderr: tokio::process::ChildStderr,
    kept: Arc<std::sync::Mutex<Vec<String>>>,
) -> String {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut lines = BufReader::new(stderr).lines();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let line = tokio::time::timeout_at(deadline, lines.next_line())
            .await
            .expect("service did not start")
            .unwrap()
            .expect("service exited");
        eprintln!("strata: {line}");
        kept.lock().unwrap().push(line.clone());
        if let Some(addr) = listening_addr(&line) {
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("strata: {line}");
                    kept.lock().unwrap().push(line);
                }
            });
            return addr;
        }
    }
}

/// The address in the log line that says strata listens, in the text or the JSON format.
fn listening_addr(line: &str) -> Option<String> {
    if let Ok(event) = serde_json::from_str::<Value>(line) {
        return (event["message"] == "listening")
            .then(|| event["addr"].as_str().map(String::from))
            .flatten();
    }
    let rest = line.split_once("listening addr=")?.1;
    rest.split_whitespace().next().map(String::from)
}

/// A loopback address nothing listens on now (bound, read, released): a node away, or a port
/// for a process started later.
pub fn free_address() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Sends `sig` (`-TERM`, `-KILL`) to a child process.
pub fn signal(child: &tokio::process::Child, sig: &str) {
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args([sig, &pid])
        .status()
        .unwrap()
        .success());
}

/// Stops a `strata serve` child with SIGTERM and checks that it exits with success.
pub async fn terminate(mut child: tokio::process::Child) {
    signal(&child, "-TERM");
    let status = tokio::time::timeout(Duration::from_secs(90), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
}

/// The statistics strata keeps as doc values only (not in `_source`), and the percentile
/// fields: what the document helpers ask the node for besides `_source`.
const STATISTICS: [&str; 10] = [
    "count", "sum", "min", "max", "avg", "first", "last", "rate", "unique", "p*",
];

/// A hit as the document strata wrote: its `_source` with the statistics from its doc values.
pub fn document_of(hit: &Value) -> Value {
    let mut doc = hit["_source"].clone();
    if let (Some(d), Some(fields)) = (doc.as_object_mut(), hit["fields"].as_object()) {
        for (field, values) in fields {
            if let Some(v) = values.as_array().and_then(|v| v.first()) {
                d.insert(field.clone(), v.clone());
            }
        }
    }
    doc
}
