//! End-to-end tests against the real node in STRATA_TEST_NODE: replay, the HTTP service,
//! retries and back-pressure, and the binary's shutdown on SIGTERM.

mod integration {
    pub mod support;
}

use std::sync::Arc;
use std::time::Duration;

use integration::support::{archive, ms, Scope};
use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::pipeline::{serve, Running, ServeOptions};
use strata::replay::{self, ReplayError};
use strata::stats::StatsSnapshot;

const FAST: &str = "[consolidate]\ntick = \"20ms\"\n[persist]\nflush_interval = \"50ms\"\nretry_initial = \"50ms\"\nretry_max = \"200ms\"\n";

fn events_ndjson(name: &str, base: i64, points: &[(i64, f64)]) -> String {
    points.iter().map(|(t, v)| format!("{{\"name\":\"{name}\",\"host\":\"h1\",\"tags\":{{\"dc\":\"par\"}},\"value\":{v},\"timestamp\":{}}}\n", base + t * 1000)).collect()
}

fn stats_of(doc: &Value) -> (u64, f64, f64, f64, f64, f64, f64) {
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

#[tokio::test]
async fn issue_example_gives_three_documents_and_replay_is_idempotent() {
    let scope = Scope::new("example");
    let cfg = scope.config(&archive("20s", "20s", "2 days", "day", "10s"), FAST);
    let base = ms("2026-01-01T00:00:00Z");
    let input = events_ndjson(
        "m",
        base,
        &[(0, 1.0), (10, 3.0), (20, 5.0), (30, 7.0), (40, 2.0)],
    );
    let limits = replay::limits_now(&cfg, &strata::clock::SystemClock);

    for round in 0..2 {
        let events = replay::read_events(input.as_bytes(), &limits).unwrap();
        let summary = replay::to_node(&cfg, None, events).await.unwrap();
        assert_eq!(
            (summary.events, summary.documents, summary.late),
            (5, 3, 0),
            "round {round}"
        );
        let docs = scope.documents().await;
        assert_eq!(
            docs.len(),
            3,
            "round {round}: replaying again overwrites, it does not duplicate"
        );
        assert_eq!(stats_of(&docs[0]), (2, 4.0, 1.0, 3.0, 2.0, 1.0, 3.0));
        assert_eq!(stats_of(&docs[1]), (2, 12.0, 5.0, 7.0, 6.0, 5.0, 7.0));
        assert_eq!(stats_of(&docs[2]), (1, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0));
        let d = &docs[0];
        assert_eq!(
            (
                d["@timestamp"].as_str(),
                d["name"].as_str(),
                d["host"].as_str()
            ),
            (Some("2026-01-01T00:00:00Z"), Some("m"), Some("h1"))
        );
        assert_eq!(
            (
                d["tags"]["dc"].as_str(),
                d["type"].as_str(),
                d["archive"].as_str(),
                d["step"].as_u64()
            ),
            (Some("par"), Some("gauge"), Some("20s"), Some(20))
        );
    }
    let index = format!("{}20s-2026.01.01", scope.prefix);
    assert_eq!(scope.indices().await, vec![index.clone()]);

    // The template typed the fields: statistics are doubles, dimensions keywords.
    let (_, mapping) = scope.get(&format!("/{index}/_mapping")).await;
    let props = &mapping[&index]["mappings"]["properties"];
    assert_eq!(props["sum"]["type"], "double");
    assert_eq!(props["count"]["type"], "long");
    assert_eq!(props["name"]["type"], "keyword");
    assert_eq!(props["tags"]["properties"]["dc"]["type"], "keyword");
    assert_eq!(props["@timestamp"]["type"], "date");
    let (_, settings) = scope.get(&format!("/{index}/_settings")).await;
    assert_eq!(
        settings[&index]["settings"]["index"]["codec"],
        "best_compression"
    );
    assert_eq!(
        settings[&index]["settings"]["index"]["number_of_shards"],
        "1"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn replay_spreads_archives_over_their_own_indices() {
    let scope = Scope::new("archives");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("10m", "10m", "2 months", "month", "10s"),
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    // One event a minute for two hours across a day boundary.
    let base = ms("2025-12-31T23:00:00Z");
    let points: Vec<(i64, f64)> = (0..120).map(|i| (i * 60, i as f64)).collect();
    let events = replay::read_events(
        events_ndjson("cpu", base, &points).as_bytes(),
        &replay::limits_now(&cfg, &strata::clock::SystemClock),
    )
    .unwrap();
    let summary = replay::to_node(&cfg, None, events).await.unwrap();
    assert_eq!(summary.documents, 120 + 12 + 2);
    let p = &scope.prefix;
    assert_eq!(
        scope.indices().await,
        vec![
            format!("{p}10m-2025.12"),
            format!("{p}10m-2026.01"),
            format!("{p}1h-2025"),
            format!("{p}1h-2026"),
            format!("{p}20s-2025.12.31"),
            format!("{p}20s-2026.01.01")
        ]
    );
    let docs = scope.documents().await;
    for name in ["20s", "10m", "1h"] {
        let of: Vec<&Value> = docs.iter().filter(|d| d["archive"] == name).collect();
        assert_eq!(
            of.iter().map(|d| d["count"].as_u64().unwrap()).sum::<u64>(),
            120,
            "{name}"
        );
        assert_eq!(
            of.iter().map(|d| d["sum"].as_f64().unwrap()).sum::<f64>(),
            (0..120).sum::<i64>() as f64,
            "{name}"
        );
    }
    let hourly: Vec<(u64, f64, f64)> = docs
        .iter()
        .filter(|d| d["archive"] == "1h")
        .map(|d| {
            (
                d["count"].as_u64().unwrap(),
                d["min"].as_f64().unwrap(),
                d["max"].as_f64().unwrap(),
            )
        })
        .collect();
    assert_eq!(hourly, vec![(60, 0.0, 59.0), (60, 60.0, 119.0)]);
    scope.cleanup().await;
}

#[tokio::test]
async fn documents_the_node_refuses_are_counted_not_retried_forever() {
    let scope = Scope::new("poison");
    let cfg = scope.config(&archive("20s", "20s", "2 days", "day", "10s"), FAST);
    let index = format!("{}20s-2026.01.01", scope.prefix);
    // Install strata's template, then pre-create the index with a name mapping that cannot take
    // a document's name.
    let template = strata::persist::template::index_template(&cfg);
    assert_eq!(
        scope
            .send(
                reqwest::Method::PUT,
                &format!("/_index_template/{}", cfg.index.template),
                template
            )
            .await
            .0,
        200
    );
    let (status, v) = scope
        .send(
            reqwest::Method::PUT,
            &format!("/{index}"),
            json!({"mappings": {"properties": {"name": {"type": "long"}}}}),
        )
        .await;
    assert_eq!(status, 200, "{v}");
    let base = ms("2026-01-01T00:00:00Z");
    let mut input = events_ndjson("12", base, &[(0, 1.0)]);
    input.push_str(&events_ndjson("not-a-number", base, &[(0, 1.0)]));
    let events = replay::read_events(
        input.as_bytes(),
        &replay::limits_now(&cfg, &strata::clock::SystemClock),
    )
    .unwrap();
    let err = replay::to_node(&cfg, None, events).await.unwrap_err();
    assert!(
        matches!(
            err,
            ReplayError::Incomplete {
                rejected: 1,
                dropped: 0
            }
        ),
        "{err}"
    );
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1, "the good document was written");
    scope.cleanup().await;
}

fn archive_20s() -> String {
    archive("20s", "20s", "2 days", "day", "10s")
}

async fn start(scope: &Scope, archives: &str, extra: &str, clock: &ManualClock) -> Running {
    let cfg = scope.config(archives, extra);
    let listen = Some("127.0.0.1:0".parse().unwrap());
    serve(
        cfg,
        ServeOptions {
            node_url: None,
            listen,
        },
        Arc::new(clock.clone()),
    )
    .await
    .unwrap()
}

/// `start` with the 20 s archive and a statsd listener on a free port, its section extended by
/// `statsd_options` (lines of TOML).
async fn start_statsd(scope: &Scope, statsd_options: &str, clock: &ManualClock) -> Running {
    let extra = format!("{FAST}\n[statsd]\nlisten = \"127.0.0.1:0\"\n{statsd_options}");
    start(scope, &archive_20s(), &extra, clock).await
}

/// The service's counters once `done` holds for them, or once `limit` has passed (the caller
/// asserts what it expects).
async fn stats_when(
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

async fn post(scope: &Scope, running: &Running, body: &str) -> (u16, Value, Option<String>) {
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

#[tokio::test]
async fn a_series_that_stops_still_gets_its_last_bucket() {
    let scope = Scope::new("stops");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let (status, body, _) = post(&scope, &running, r#"{"name":"quiet","value":42}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "late": 0, "late_by_archive": {"20s": 0}})
    );

    // Just before end (10:00:20) + lateness (10 s): nothing may be written yet.
    clock.set(ms("2026-03-01T10:00:29.999Z"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running.stats.snapshot().buckets_open, 1);
    assert!(scope.documents().await.is_empty());

    // Past it: the bucket is written without any further event of that series.
    clock.set(ms("2026-03-01T10:00:30Z"));
    let docs = scope.wait_for_documents(1).await;
    assert_eq!(docs.len(), 1);
    assert_eq!(
        (
            docs[0]["@timestamp"].as_str(),
            docs[0]["count"].as_u64(),
            docs[0]["last"].as_f64()
        ),
        (Some("2026-03-01T10:00:00Z"), Some(1), Some(42.0))
    );

    // An event for the written bucket is late, reported, and does not overwrite it.
    let (status, body, _) = post(
        &scope,
        &running,
        r#"{"name":"quiet","value":1,"timestamp":"2026-03-01T10:00:10Z"}"#,
    )
    .await;
    assert_eq!(
        (status, &body["late"], &body["accepted"]),
        (200, &json!(1), &json!(0))
    );
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1);
    assert_eq!(docs[0]["count"], 1);
    scope.cleanup().await;
}

#[tokio::test]
async fn a_restart_continues_the_open_buckets_instead_of_overwriting_them() {
    let scope = Scope::new("restart");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let (status, _, _) = post(
        &scope,
        &running,
        r#"[{"name":"r","value":1},{"name":"r","value":3}]"#,
    )
    .await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();
    assert_eq!(
        scope.documents().await.len(),
        2,
        "shutdown wrote both partial buckets"
    );

    // Restart within the same 20 s bucket: both buckets continue.
    clock.set(ms("2026-03-01T10:00:12Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let (status, _, _) = post(&scope, &running, r#"{"name":"r","value":10}"#).await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();

    // Restart after the 20 s bucket closed: only the hourly one continues.
    clock.set(ms("2026-03-01T10:30:00Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let (status, _, _) = post(&scope, &running, r#"{"name":"r","value":-2}"#).await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();

    let docs = scope.documents().await;
    let by_archive = |a: &str| {
        docs.iter()
            .filter(|d| d["archive"] == a)
            .map(stats_of)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        by_archive("1h"),
        vec![(4, 12.0, -2.0, 10.0, 3.0, 1.0, -2.0)]
    );
    assert_eq!(
        by_archive("20s"),
        vec![
            (3, 14.0, 1.0, 10.0, 14.0 / 3.0, 1.0, 10.0),
            (1, -2.0, -2.0, -2.0, -2.0, -2.0, -2.0)
        ]
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn bad_input_gets_400_and_nothing_of_it_reaches_the_node() {
    let scope = Scope::new("badinput");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = format!("{FAST}\n[http]\nmax_body_bytes = 2048\n[ingest]\nmax_name_length = 64\n");
    let running = start(
        &scope,
        &archive("20s", "20s", "2 days", "day", "10s"),
        &extra,
        &clock,
    )
    .await;
    let good = r#"{"name":"poisoned","value":1}"#;
    let cases: Vec<(String, &str)> = vec![
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":1"),
            "malformed JSON",
        ),
        (
            format!("[{good}, {{\"value\":1}}]"),
            "item 1: field 'name': is required",
        ),
        (
            format!("[{good}, {{\"name\":\"x\"}}]"),
            "item 1: field 'value': is required",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":NaN}}]"),
            "malformed JSON",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":\"Infinity\"}}]"),
            "field 'value': must be a finite number",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":1e999}}]"),
            "field 'value': must be a finite number",
        ),
        (
            format!("[{good}, {{\"name\":\"\",\"value\":1}}]"),
            "field 'name': must not be empty",
        ),
        (
            format!("[{good}, {{\"name\":\"{}\",\"value\":1}}]", "n".repeat(65)),
            "field 'name': is 65 bytes long",
        ),
        (
            format!("[{good}, {{\"name\":\"a\\nb\",\"value\":1}}]"),
            "field 'name': must not contain control characters",
        ),
        (
            format!("[{good}, {{\"name\":\"x\",\"value\":1,\"timestamp\":\"noon\"}}]"),
            "field 'timestamp': \"noon\" is not an RFC 3339 time",
        ),
        (
            format!(
                "[{good}, {{\"name\":\"x\",\"value\":1,\"timestamp\":\"2026-03-01T11:00:00Z\"}}]"
            ),
            "ahead of the server clock",
        ),
        (
            format!("{good}\n{{\"name\":\"x\",\"value\":[1]}}\n"),
            "line 2: field 'value': must be a finite number",
        ),
    ];
    for (body, expected) in &cases {
        let (status, answer, _) = post(&scope, &running, body).await;
        assert_eq!(status, 400, "{body} -> {answer}");
        let message = answer["error"].as_str().unwrap();
        assert!(
            message.contains(expected),
            "{body}: expected {expected:?} in {message:?}"
        );
    }
    let (_, answer, _) = post(&scope, &running, &cases[1].0).await;
    assert_eq!(
        (answer["item"].as_u64(), answer["field"].as_str()),
        (Some(1), Some("name"))
    );

    let huge = format!("[{}]", vec![good; 100].join(","));
    let (status, answer, _) = post(&scope, &running, &huge).await;
    assert_eq!(status, 413, "{answer}");

    // One good request with another series, then stop: only it reaches the node.
    let (status, _, _) = post(&scope, &running, r#"{"name":"clean","value":7}"#).await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0]["name"], "clean");
    scope.cleanup().await;
}

#[tokio::test]
async fn new_series_over_the_limit_are_refused_whole() {
    let scope = Scope::new("limit");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = FAST.replace("[consolidate]\n", "[consolidate]\nmax_series = 2\n");
    let running = start(
        &scope,
        &archive("20s", "20s", "2 days", "day", "10s"),
        &extra,
        &clock,
    )
    .await;
    let (status, body, _) = post(
        &scope,
        &running,
        r#"[{"name":"a","value":1},{"name":"b","value":1},{"name":"c","value":1}]"#,
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("active series limit 2 reached: new series 'c' refused"),
        "{body}"
    );
    let (status, _, _) = post(
        &scope,
        &running,
        r#"[{"name":"a","value":1},{"name":"b","value":1}]"#,
    )
    .await;
    assert_eq!(status, 200);
    running.stop().await.unwrap();
    let names: Vec<Value> = scope
        .documents()
        .await
        .iter()
        .map(|d| d["name"].clone())
        .collect();
    assert_eq!(
        names,
        vec![json!("a"), json!("b")],
        "nothing of the refused request was recorded"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn replay_dry_run_prints_the_bulk_body_without_a_node() {
    let dir = std::env::temp_dir().join(format!("strata-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("archives.toml");
    std::fs::write(&config, archive("20s", "20s", "2 days", "day", "10s")).unwrap();
    let input = events_ndjson(
        "m",
        0,
        &[(0, 1.0), (10, 3.0), (20, 5.0), (30, 7.0), (40, 2.0)],
    );
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "replay",
            "--dry-run",
            "--config",
            config.to_str().unwrap(),
            "-",
        ])
        .env_remove("STRATA_NODE_URL")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .await
        .unwrap();
    let out = child.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 6, "three action lines and three documents");
    assert_eq!(lines[0]["index"]["_index"], "strata-20s-1970.01.01");
    assert_eq!(lines[1]["count"], 2);
    assert!(String::from_utf8_lossy(&out.stderr).contains("replayed 5 events: 3 documents, 0 late"));
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn health_is_ok_while_the_node_answers() {
    let scope = Scope::new("health");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let r = scope
        .http
        .get(format!("http://{}/health", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert!(
        matches!(body["node"]["status"].as_str(), Some("green" | "yellow")),
        "{body}"
    );
    // The start-up maintenance pass reports in the health details.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let maintenance = loop {
        let body: Value = scope
            .http
            .get(format!("http://{}/health", running.addr))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !body["pipeline"]["maintenance"].is_null() || std::time::Instant::now() > deadline {
            break body["pipeline"]["maintenance"].clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(maintenance["at"], "2026-03-01T10:00:05Z", "{maintenance}");
    assert!(maintenance["error"].is_null(), "{maintenance}");
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn a_blocked_node_pushes_back_with_503_and_loses_nothing() {
    let scope = Scope::new("pushback");
    let start_at = ms("2026-03-01T01:00:00Z");
    let clock = ManualClock::new(start_at);
    let extra = "[consolidate]\ntick = \"5ms\"\nqueue_batches = 1\n[persist]\nqueue_docs = 1\nbatch_docs = 1\nflush_interval = \"5ms\"\nretry_initial = \"20ms\"\nretry_max = \"50ms\"\n";
    let running = start(
        &scope,
        &archive("20s", "20s", "2 days", "day", "0s"),
        extra,
        &clock,
    )
    .await;
    // The day's index refuses writes with 429 until the block is lifted.
    let index = format!("{}20s-2026.03.01", scope.prefix);
    assert_eq!(
        scope
            .send(reqwest::Method::PUT, &format!("/{index}"), json!({}))
            .await
            .0,
        200
    );
    let block = |on: bool| json!({"index.blocks.read_only_allow_delete": if on { json!(true) } else { Value::Null }});
    assert_eq!(
        scope
            .send(
                reqwest::Method::PUT,
                &format!("/{index}/_settings"),
                block(true)
            )
            .await
            .0,
        200
    );

    let mut accepted = 0u64;
    let mut refused = None;
    for i in 0..400 {
        let (status, body, retry_after) = post(
            &scope,
            &running,
            &format!("{{\"name\":\"s{i}\",\"value\":{i}}}"),
        )
        .await;
        match status {
            200 => accepted += body["accepted"].as_u64().unwrap(),
            503 => {
                refused = Some((body, retry_after));
                break;
            }
            other => panic!("unexpected {other}: {body}"),
        }
        clock.advance(Duration::from_secs(20));
        tokio::time::sleep(Duration::from_millis(15)).await;
    }
    let (body, retry_after) =
        refused.expect("ingest never pushed back while the node refused writes");
    assert_eq!(retry_after.as_deref(), Some("1"));
    assert!(
        body["error"].as_str().unwrap().contains("queue is full"),
        "{body}"
    );
    // The writer is retrying the items the node answers 429 (it may still be on its first try).
    let stats = stats_when(&running, Duration::from_secs(20), |s| s.docs_retried > 0).await;
    assert!(
        stats.docs_retried > 0,
        "the writer retried the refused items"
    );

    assert_eq!(
        scope
            .send(
                reqwest::Method::PUT,
                &format!("/{index}/_settings"),
                block(false)
            )
            .await
            .0,
        200
    );
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(
        docs.len() as u64,
        accepted,
        "every accepted event's bucket was written once the node recovered"
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn sigterm_writes_every_open_bucket_before_exit() {
    let scope = Scope::new("sigterm");
    let dir = std::env::temp_dir().join(format!("strata-{}", scope.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("10m", "10m", "2 months", "month", "10s"),
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let config = format!(
        "[index]\nprefix = \"{p}\"\ntemplate = \"{p}tpl\"\nreplicas = 0\n[aliases]\nprefix = \"{p}alias-\"\numbrella = \"{p}all\"\n{archives}",
        p = scope.prefix
    );
    std::fs::write(dir.join("archives.toml"), config).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--config",
            dir.join("archives.toml").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "--node-url",
            &scope.node,
        ])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = read_listen_addr(child.stderr.take().unwrap()).await;
    let r = scope
        .http
        .post(format!("http://{addr}/v1/metrics"))
        .body(r#"[{"name":"open","value":1},{"name":"open","value":3}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let pid = child.id().unwrap().to_string();
    assert!(std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "{status}");
    let docs = scope.documents().await;
    assert_eq!(
        docs.len(),
        3,
        "one open bucket per archive, all written: {docs:?}"
    );
    assert!(docs.iter().all(|d| d["count"] == 2 && d["sum"] == 4.0));
    scope.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Reads the service's log until it says where it listens; keeps draining it afterwards.
async fn read_listen_addr(stderr: tokio::process::ChildStderr) -> String {
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
        if line.contains("listening") {
            let addr = line
                .split("addr=")
                .nth(1)
                .unwrap()
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            tokio::spawn(async move {
                while let Ok(Some(line)) = lines.next_line().await {
                    eprintln!("strata: {line}");
                }
            });
            return addr;
        }
    }
}

/// Grafana's `_msearch` for one panel: a date histogram summing `count` over [from, to], through
/// `index` (an alias, a wildcard or a comma list of names); returns the total.
async fn grafana_total(scope: &Scope, index: &str, from: i64, to: i64) -> f64 {
    let header =
        json!({"search_type": "query_then_fetch", "ignore_unavailable": true, "index": index});
    let body = json!({
        "size": 0,
        "query": {"bool": {"filter": [
            {"range": {"@timestamp": {"gte": from, "lte": to, "format": "epoch_millis"}}},
            {"query_string": {"analyze_wildcard": true, "query": "name:g"}}
        ]}},
        "aggs": {"2": {"date_histogram": {"field": "@timestamp", "fixed_interval": "86400000ms", "min_doc_count": 0,
            "extended_bounds": {"min": from, "max": to}, "format": "epoch_millis"},
            "aggs": {"1": {"sum": {"field": "count"}}}}}
    });
    let ndjson = format!("{header}\n{body}\n");
    let r = scope
        .http
        .post(format!(
            "{}/_msearch?max_concurrent_shard_requests=5",
            scope.node
        ))
        .header("content-type", "application/x-ndjson")
        .body(ndjson)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    let response = &v["responses"][0];
    assert!(response.get("error").is_none(), "{response}");
    response["aggregations"]["2"]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["1"]["value"].as_f64().unwrap_or(0.0))
        .sum()
}

#[tokio::test]
async fn maintenance_stitches_three_years_so_each_instant_counts_once() {
    use strata::maintain::run::{run_pass, MaintainError, PassOptions};
    use strata::persist::backend::{HttpBackend, SearchBackend};

    let scope = Scope::new("stitch");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
        archive("1d", "1d", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, "[maintain]\nmax_deletes = 1000\n");
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    let times = three_years_of_times(now);
    replay_into_node(&cfg, &gauge_ones(&times)).await;
    // An index that matches the wildcard but not the naming: never touched.
    let stranger = format!("{}10m-notadate", scope.prefix);
    assert_eq!(
        scope
            .send(reqwest::Method::PUT, &format!("/{stranger}"), json!({}))
            .await
            .0,
        200
    );

    let backend = HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    let pattern = cfg.index.naming.wildcard();
    let snapshot = || async {
        (
            backend.list_indices(&pattern).await.unwrap(),
            backend.get_aliases(&pattern).await.unwrap(),
        )
    };

    // Dry run and refused purge change nothing.
    let before = snapshot().await;
    let dry = PassOptions {
        dry_run: true,
        ..PassOptions::FULL
    };
    let planned = run_pass(&backend, &cfg, now, now, dry).await.unwrap();
    assert!(!planned.delete.is_empty() && !planned.actions.is_empty());
    let mut strict = cfg.clone();
    strict.maintain.max_deletes = 1;
    assert!(matches!(
        run_pass(&backend, &strict, now, now, PassOptions::FULL).await,
        Err(MaintainError::Refused(_))
    ));
    let younger = run_pass(&backend, &cfg, now + 400 * day, now, PassOptions::FULL).await;
    assert!(
        matches!(younger, Err(MaintainError::Refused(ref why)) if why.contains("younger than its retention")),
        "{younger:?}"
    );
    assert_eq!(
        snapshot().await,
        before,
        "dry run and refused passes changed nothing"
    );

    // The real pass, then a second one that has nothing to do.
    let done = run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    assert!(!done.delete.contains(&stranger));
    let again = run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    assert!(
        again.actions.is_empty() && again.delete.is_empty() && again.create.is_empty(),
        "{:?}",
        again.actions
    );
    assert!(backend
        .list_indices(&pattern)
        .await
        .unwrap()
        .contains(&stranger));

    // Through the umbrella, the alias wildcard and the per-period alias names: each event once.
    scope.refresh().await;
    let umbrella = cfg.aliases.umbrella.clone();
    let wildcard = format!("{}*", cfg.aliases.prefix);
    let mut names: Vec<String> = done
        .aliases
        .iter()
        .filter(|a| a.alias != umbrella)
        .map(|a| a.alias.clone())
        .collect();
    names.dedup();
    let per_period = names.join(",");
    let ranges = [
        (today - 3 * 365 * day, today + day),
        (today - 2 * day, today + day),
        (today - 90 * day, today - 30 * day),
        (today - 5 * day, today - 2 * day),
    ];
    for (from, to) in ranges {
        let expected = times.iter().filter(|&&t| t >= from && t < to).count() as f64;
        for index in [&umbrella, &wildcard, &per_period] {
            let label = if index.len() > 60 {
                "per-period names"
            } else {
                index.as_str()
            };
            assert_eq!(
                grafana_total(&scope, index, from, to - 1).await,
                expected,
                "{label} over [{from}, {to})"
            );
        }
    }
    scope.cleanup().await;
}

#[tokio::test]
async fn samplerr_mode_serves_a_grafana_daily_pattern_each_instant_once() {
    use strata::maintain::run::{run_pass, PassOptions};
    use strata::persist::backend::HttpBackend;

    let scope = Scope::new("daily");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
    ]
    .concat();
    let mut cfg = scope.config(&archives, "");
    cfg.aliases.mode = strata::config::AliasMode::Samplerr;
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    let times: Vec<i64> = (0..40)
        .map(|i| today - 35 * day + i * day + 7_200_000)
        .filter(|&t| t < now - 60_000)
        .collect();
    let input: String = times
        .iter()
        .map(|t| format!("{{\"name\":\"g\",\"value\":1,\"timestamp\":{t}}}\n"))
        .collect();
    replay_into_node(&cfg, &input).await;
    let backend = HttpBackend::connect(&scope.node, &cfg.node).unwrap();
    run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap();
    assert!(run_pass(&backend, &cfg, now, now, PassOptions::FULL)
        .await
        .unwrap()
        .actions
        .is_empty());
    scope.refresh().await;
    // Grafana with index pattern `[<alias prefix>]YYYY.MM.DD`, interval Daily: one name per day.
    let (from, to) = (today - 35 * day, today + day);
    let names: Vec<String> = (0..36)
        .map(|d| {
            format!(
                "{}{}",
                cfg.aliases.prefix,
                strata::calendar::IndexPeriod::Day.render(from + d * day)
            )
        })
        .collect();
    let expected = times.iter().filter(|&&t| t >= from && t < to).count() as f64;
    assert_eq!(
        grafana_total(&scope, &names.join(","), from, to - 1).await,
        expected
    );
    // One day served by the monthly index, through its day alias only.
    let old_day = today - 20 * day;
    let one = format!(
        "{}{}",
        cfg.aliases.prefix,
        strata::calendar::IndexPeriod::Day.render(old_day)
    );
    let expected = times
        .iter()
        .filter(|&&t| t >= old_day && t < old_day + day)
        .count() as f64;
    assert_eq!(grafana_total(&scope, &one, from, to - 1).await, expected);
    assert_eq!(expected, 1.0);
    scope.cleanup().await;
}

#[tokio::test]
async fn plan_works_offline_on_samplerr_naming() {
    let dir = std::env::temp_dir().join(format!("strata-plan-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = "[index]\nprefix = \".samplerr-\"\nname = \"{prefix}{period}\"\n[aliases]\nprefix = \"samplerr-\"\numbrella = \"samplerr\"\n".to_string()
        + &[archive("20s", "20s", "3 days", "day", "10s"), archive("10m", "10m", "2 months", "month", "10s"), archive("1h", "1h", "10 years", "year", "10s")].concat();
    std::fs::write(dir.join("archives.toml"), config).unwrap();
    let indices: String = [
        "1970",
        "2019",
        "2020",
        "2020.02",
        "2020.03",
        "2020.04",
        "2020.04.08",
        "2020.04.09",
        "2020.04.10",
        "2020.04.11",
    ]
    .iter()
    .map(|p| format!(".samplerr-{p}\n"))
    .collect();
    std::fs::write(dir.join("indices"), indices).unwrap();
    std::fs::write(dir.join("aliases"), "samplerr-2020.04.08 .samplerr-2020.04.08\nsamplerr-2020.04 .samplerr-2020.04 {\"range\":{\"@timestamp\":{\"lt\":\"2020-04-08T00:00:00Z\"}}}\n").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "plan",
            "--config",
            dir.join("archives.toml").to_str().unwrap(),
            "--now",
            "2020-04-11T15:13:26+02:00",
            "--format",
            "json",
        ])
        .args([
            "--indices",
            dir.join("indices").to_str().unwrap(),
            "--aliases",
            dir.join("aliases").to_str().unwrap(),
        ])
        .env_remove("STRATA_NODE_URL")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let plan: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["now"], "2020-04-11T13:13:26Z");
    assert_eq!(
        plan["delete"],
        json!([
            ".samplerr-1970",
            ".samplerr-2020.02",
            ".samplerr-2020.04.08"
        ])
    );
    let filter_of = |index: &str, alias: &str| {
        plan["aliases"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["index"] == index && a["alias"] == alias)
            .map(|a| a["filter"].clone())
    };
    assert_eq!(
        filter_of(".samplerr-2020.04", "samplerr"),
        Some(json!({"range": {"@timestamp": {"lt": "2020-04-09T00:00:00Z"}}}))
    );
    assert_eq!(
        filter_of(".samplerr-2020", "samplerr-2020"),
        Some(json!({"range": {"@timestamp": {"lt": "2020-03-01T00:00:00Z"}}}))
    );
    let actions = plan["actions"].as_array().unwrap();
    assert!(actions.contains(&json!({"add": {"index": ".samplerr-2020.04", "alias": "samplerr-2020.04", "filter": {"range": {"@timestamp": {"lt": "2020-04-09T00:00:00Z"}}}}})));
    assert!(
        !actions.iter().any(|a| a.get("remove").is_some()),
        "the expired index's alias goes with it: {actions:?}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// One event every 29 days for three years, and one every two hours over the last five days
/// (those not within the last minute), in time order.
fn three_years_of_times(now: i64) -> Vec<i64> {
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
fn gauge_ones(times: &[i64]) -> String {
    times
        .iter()
        .map(|t| format!("{{\"name\":\"g\",\"value\":1,\"timestamp\":{t}}}\n"))
        .collect()
}

/// Replays NDJSON events into the node through the same path as `strata replay`.
async fn replay_into_node(cfg: &strata::config::Config, ndjson: &str) {
    let limits = replay::limits_now(cfg, &strata::clock::SystemClock);
    replay::to_node(
        cfg,
        None,
        replay::read_events(ndjson.as_bytes(), &limits).unwrap(),
    )
    .await
    .unwrap();
}

async fn get_json(scope: &Scope, url: String) -> (u16, Value) {
    let r = scope.http.get(url).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn stats_answers_cricket_example_with_correct_min_and_max() {
    let scope = Scope::new("cricket");
    let archives = archive("1h", "1h", "50 years", "year", "10s");
    let cfg = scope.config(&archives, FAST);
    let input = [
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-01-01T00:00:00Z"}"#,
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-01-01T01:00:00Z"}"#,
        r#"{"name":"c1","type":"counter","value":1,"timestamp":"1990-06-01T00:00:00Z"}"#,
        r#"{"name":"c2","type":"counter","value":4.7,"timestamp":"1990-01-01T00:00:00Z"}"#,
    ]
    .join("\n");
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
    let running = start(&scope, &archives, FAST, &clock).await;
    let base = format!("http://{}/v1/stats", running.addr);
    let (status, body) = get_json(
        &scope,
        format!("{base}?name=c1&start=1980-12-31T22:49:50Z&end=2016-12-31T22:49:50Z"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"count": 3, "sum": 3.0, "min": 1.0, "max": 1.0, "average": 1.0})
    );
    let (status, body) =
        get_json(&scope, format!("{base}?name=c1&start=1980-12-31T22:49:50Z")).await;
    assert_eq!(
        (status, body["param"].as_str()),
        (400, Some("end")),
        "{body}"
    );
    let (status, _) = get_json(
        &scope,
        format!("{base}?name=c1&start=2000-01-01T00:00:00Z&end=2001-01-01T00:00:00Z"),
    )
    .await;
    assert_eq!(status, 404);
    let (status, body) = get_json(&scope, format!("{base}?name=c1&start=yesterday&end=0")).await;
    assert_eq!(status, 400, "{body}");
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn stats_over_two_resolutions_equal_the_raw_statistics() {
    let scope = Scope::new("twores");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let (hour, day) = (3_600_000i64, 86_400_000i64);
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    // Every 50 minutes for ten days, values that differ.
    let events: Vec<(i64, f64)> = (0..290)
        .map(|i| {
            (
                today - 10 * day + i * 3_000_000,
                ((i * 37) % 101) as f64 - 20.0,
            )
        })
        .filter(|&(t, _)| t < now - 60_000)
        .collect();
    let input: String = events
        .iter()
        .map(|(t, v)| format!("{{\"name\":\"t\",\"value\":{v},\"timestamp\":{t}}}\n"))
        .collect();
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    // From 8 days ago (hourly archive) to now (10-minute archive since two days ago), on hours.
    let (from, to) = (today - 8 * day + 5 * hour, now - now.rem_euclid(hour) - 1);
    let raw: Vec<f64> = events
        .iter()
        .filter(|&&(t, _)| t >= from && t <= to)
        .map(|&(_, v)| v)
        .collect();
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=t&start={from}&end={to}",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"].as_u64(), Some(raw.len() as u64));
    assert_eq!(body["sum"].as_f64(), Some(raw.iter().sum::<f64>()));
    assert_eq!(body["min"].as_f64(), raw.iter().cloned().reduce(f64::min));
    assert_eq!(body["max"].as_f64(), raw.iter().cloned().reduce(f64::max));
    let average = raw.iter().sum::<f64>() / raw.len() as f64;
    assert!(
        (body["average"].as_f64().unwrap() - average).abs() < 1e-9,
        "{body}"
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn metrics_read_each_part_of_three_years_from_the_finest_archive() {
    let scope = Scope::new("points");
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        archive("1h", "1h", "2 months", "month", "10s"),
        archive("1d", "1d", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let day = 86_400_000i64;
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    let times = three_years_of_times(now);
    replay_into_node(&cfg, &gauge_ones(&times)).await;
    scope.refresh().await;
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    let (from, to) = (today - 3 * 365 * day, today + day - 1);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=g&from={from}&to={to}&stat=count",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let points = body["points"].as_array().unwrap();
    let total: f64 = points.iter().filter_map(|p| p["value"].as_f64()).sum();
    assert_eq!(
        total,
        times.iter().filter(|&&t| t >= from && t <= to).count() as f64
    );
    // The resolution changes from daily to hourly to 10-minute points, in time order.
    let mut seen: Vec<(String, i64)> = Vec::new();
    for p in points {
        let key = (
            p["archive"].as_str().unwrap().to_string(),
            p["step"].as_i64().unwrap(),
        );
        if seen.last() != Some(&key) {
            seen.push(key);
        }
    }
    assert_eq!(
        seen,
        vec![
            ("1d".to_string(), 86_400),
            ("1h".to_string(), 3_600),
            ("10m".to_string(), 600)
        ]
    );
    assert!(points
        .windows(2)
        .all(|w| w[0]["timestamp"].as_i64() < w[1]["timestamp"].as_i64()));
    // A coarser step re-aggregates; bad parameters are named.
    let (_, coarse) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=g&from={from}&to={to}&stat=count&step=7d",
            running.addr
        ),
    )
    .await;
    let coarse_total: f64 = coarse["points"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["value"].as_f64())
        .sum();
    assert_eq!(coarse_total, total);
    for (query, param) in [
        ("&stat=median", "stat"),
        ("&stat=p101", "stat"),
        ("&min_coverage=2", "min_coverage"),
        ("&step=0s", "step"),
    ] {
        let (status, body) = get_json(
            &scope,
            format!(
                "http://{}/v1/metrics?name=g&from={from}&to={to}{query}",
                running.addr
            ),
        )
        .await;
        assert_eq!(
            (status, body["param"].as_str()),
            (400, Some(param)),
            "{body}"
        );
    }
    let (status, body) = get_json(
        &scope,
        format!("http://{}/v1/metrics?name=g&to={to}", running.addr),
    )
    .await;
    assert_eq!((status, body["param"].as_str()), (400, Some("from")));
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn min_coverage_nulls_points_with_too_few_stored_buckets() {
    let scope = Scope::new("coverage");
    let archives = archive("10m", "10m", "30 days", "day", "10s");
    let cfg = scope.config(&archives, FAST);
    let base = ms("2026-02-01T00:00:00Z");
    // One value in every other 10-minute bucket: half of the stored buckets are empty.
    let input: String = (0..12)
        .map(|i| {
            format!(
                "{{\"name\":\"half\",\"value\":{i},\"timestamp\":{}}}\n",
                base + i * 1_200_000
            )
        })
        .collect();
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let clock = ManualClock::new(ms("2026-02-02T00:00:00Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let url = |c: &str| {
        format!(
            "http://{}/v1/metrics?name=half&from={base}&to={}&step=20m&min_coverage={c}",
            running.addr,
            base + 4 * 3_600_000 - 1
        )
    };
    let values = |body: &Value| {
        body["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_f64())
            .collect::<Vec<_>>()
    };
    let (_, strict) = get_json(&scope, url("0.75")).await;
    assert_eq!(values(&strict).len(), 12);
    assert!(values(&strict).iter().all(Option::is_none), "{strict}");
    let (_, lenient) = get_json(&scope, url("0.25")).await;
    assert_eq!(
        values(&lenient),
        (0..12).map(|i| Some(i as f64)).collect::<Vec<_>>()
    );
    assert!(lenient["points"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["coverage"] == 0.5));
    // cricket's lookup of the stored points at one instant.
    let at = base + 1_200_000;
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=half&timestamp={at}",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([{"name": "half", "type": "gauge", "value": 1.0, "timestamp": "2026-02-01T00:20:00Z", "archive": "10m", "step": 600}])
    );
    let (status, _) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=half&timestamp={}",
            running.addr,
            base + 600_000
        ),
    )
    .await;
    assert_eq!(status, 404);
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn kilometric_track_and_read_counters_and_points() {
    let scope = Scope::new("kilo");
    let t0 = ms("2026-03-01T10:00:05Z");
    let clock = ManualClock::new(t0);
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let track = |query: String| {
        let url = format!("http://{}/track?{query}", running.addr);
        let http = scope.http.clone();
        async move { http.get(url).send().await.unwrap().status().as_u16() }
    };
    // Minute 10:00: 1 + 2.5 + 1; minute 10:01: 4 + 1; minute 10:02 nothing; 10:03: 7.
    let mut expected_total = 0.0;
    for (offset_s, value) in [
        (0, None),
        (10, Some(2.5)),
        (30, None),
        (60, Some(4.0)),
        (75, None),
        (180, Some(7.0)),
    ] {
        clock.set(t0 + offset_s * 1000);
        let query = match value {
            Some(v) => format!("key=visits&value={v}"),
            None => "key=visits".to_string(),
        };
        assert_eq!(track(query).await, 204);
        expected_total += value.unwrap_or(1.0);
    }
    assert_eq!(track("value=1".into()).await, 400);
    assert_eq!(track("key=visits&value=NaN".into()).await, 400);
    clock.set(t0 + 600_000);
    let docs = scope.wait_for_documents(5).await;
    assert_eq!(docs.len(), 5, "{docs:?}");
    assert!(docs.iter().all(|d| d["type"] == "counter"));

    let base = format!("http://{}/read?key=visits", running.addr);
    let (status, counter) = get_json(&scope, format!("{base}&type=counter")).await;
    assert_eq!(status, 200, "{counter}");
    assert_eq!(counter["name"], "visits");
    assert_eq!(counter["values"][0]["value"].as_f64(), Some(expected_total));
    assert_eq!(
        counter["values"][0]["from"].as_i64(),
        Some(ms("2026-03-01T10:00:00Z"))
    );
    assert_eq!(
        counter["values"][0]["to"].as_i64(),
        Some(ms("2026-03-01T10:03:00Z"))
    );
    let (_, points) = get_json(&scope, format!("{base}&type=points&period=60")).await;
    assert_eq!(
        points,
        json!({"name": "visits", "values": [
            {"from": ms("2026-03-01T10:00:00Z"), "value": 4.5},
            {"from": ms("2026-03-01T10:01:00Z"), "value": 5},
            {"from": ms("2026-03-01T10:03:00Z"), "value": 7}
        ]})
    );
    let (status, body) = get_json(&scope, format!("{base}&type=gauge")).await;
    assert_eq!((status, body["param"].as_str()), (400, Some("type")));
    let (_, empty) = get_json(
        &scope,
        format!("http://{}/read?key=nothing&type=counter", running.addr),
    )
    .await;
    assert_eq!(empty, json!({"name": "nothing", "values": []}));
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn series_lists_what_has_data_in_the_range() {
    let scope = Scope::new("series");
    let archives = [
        archive("20s", "20s", "2 days", "day", "10s"),
        archive("1h", "1h", "10 years", "year", "10s"),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let base = ms("2026-02-01T00:00:00Z");
    let input = [
        format!(
            r#"{{"name":"cpu","host":"a","tags":{{"dc":"par"}},"value":1,"timestamp":{base}}}"#
        ),
        format!(r#"{{"name":"cpu","host":"b","value":1,"timestamp":{base}}}"#),
        format!(
            r#"{{"name":"mem","host":"a","value":1,"timestamp":{}}}"#,
            base + 86_400_000
        ),
    ]
    .join("\n");
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let clock = ManualClock::new(ms("2026-02-02T12:00:00Z"));
    let running = start(&scope, &archives, FAST, &clock).await;
    let url = |q: &str| {
        format!(
            "http://{}/v1/series?from={base}&to={}{q}",
            running.addr,
            base + 3_600_000
        )
    };
    let (status, body) = get_json(&scope, url("")).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!([
            {"series": "cpu{host=\"a\",dc=\"par\"}", "name": "cpu", "host": "a", "tags": {"dc": "par"}, "archives": ["20s"]},
            {"series": "cpu{host=\"b\"}", "name": "cpu", "host": "b", "tags": {}, "archives": ["20s"]}
        ])
    );
    let (_, only_a) = get_json(&scope, url("&tag.dc=par")).await;
    assert_eq!(only_a.as_array().unwrap().len(), 1);
    let (status, _) = get_json(&scope, format!("http://{}/v1/series?to=1", running.addr)).await;
    assert_eq!(status, 400);
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn live_view_and_home_page_come_from_memory() {
    let scope = Scope::new("live");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let events = r#"[{"name":"req","type":"counter","value":10,"timestamp":"2026-03-01T10:00:01Z"},
        {"name":"req","type":"counter","value":20,"timestamp":"2026-03-01T10:00:04Z"},
        {"name":"temp","host":"h","value":3,"timestamp":"2026-03-01T10:00:02Z"},
        {"name":"temp","host":"h","value":5,"timestamp":"2026-03-01T10:00:03Z"}]"#;
    assert_eq!(post(&scope, &running, events).await.0, 200);
    let (status, live) = get_json(&scope, format!("http://{}/v1/live", running.addr)).await;
    assert_eq!(status, 200, "{live}");
    let series = live["series"].as_array().unwrap();
    let of = |name: &str| series.iter().find(|s| s["name"] == name).unwrap().clone();
    let req = of("req");
    assert_eq!(req["open"][0]["count"], 2);
    assert_eq!(req["last_60s"]["window_seconds"], 5.0);
    assert_eq!(
        req["last_60s"]["rate"], 6.0,
        "30 over the 5 s since the bucket began"
    );
    let temp = of("temp");
    assert_eq!(
        (
            temp["last_60s"]["last"].as_f64(),
            temp["last_60s"]["avg"].as_f64(),
            temp["last_60s"]["min"].as_f64(),
            temp["last_60s"]["max"].as_f64()
        ),
        (Some(5.0), Some(4.0), Some(3.0), Some(5.0))
    );
    let (_, only) = get_json(&scope, format!("http://{}/v1/live?name=temp", running.addr)).await;
    assert_eq!(only["series"].as_array().unwrap().len(), 1);
    let home = scope
        .http
        .get(format!("http://{}/", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(home.status().as_u16(), 200);
    let html = home.text().await.unwrap();
    assert!(
        html.contains("<td>20s</td><td>20s</td><td>2 days</td><td>day</td><td>10s</td>"),
        "{html}"
    );
    assert!(html.contains("href=\"/health\""));
    running.stop().await.unwrap();
    scope.cleanup().await;
}

/// 8 000 datagrams sent back to back, faster than one receiver drains them: they wait in the
/// socket's 8 MiB receive buffer (about 6.8 MB of the kernel's measure) and every one arrives.
/// (With the kernel's default buffer, `receive_buffer_bytes = 0`, this lost datagrams in two
/// runs of three.)
#[tokio::test]
async fn a_udp_burst_waits_in_the_receive_buffer_and_nothing_is_lost() {
    const BURST: u64 = 8_000;
    const KEYS: u64 = 8;
    let scope = Scope::new("udpburst");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start_statsd(&scope, "", &clock).await;
    let to = running.statsd_addr.unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..BURST {
        let line = format!("burst.k{}:1|c", i % KEYS);
        sender.send_to(line.as_bytes(), to).unwrap();
    }
    let stats = stats_when(&running, Duration::from_secs(10), |s| {
        s.events_accepted >= BURST
    })
    .await;
    assert_eq!(
        (
            stats.events_accepted,
            stats.udp_dropped,
            stats.udp_receive_buffer_drops
        ),
        (BURST, 0, 0)
    );
    clock.set(ms("2026-03-01T10:01:00Z"));
    let docs = scope.wait_for_documents(KEYS as usize).await;
    let counts: Vec<u64> = docs.iter().map(|d| d["count"].as_u64().unwrap()).collect();
    assert_eq!(counts, vec![BURST / KEYS; KEYS as usize], "{docs:?}");
    running.stop().await.unwrap();
    scope.cleanup().await;
}

/// A receive buffer too small for a burst: the kernel drops datagrams, and strata counts each one
/// it is told of (the kernel tells with the next datagram it queues), so that every datagram
/// sent was either consolidated or counted.
#[tokio::test]
async fn datagrams_a_full_receive_buffer_dropped_are_counted() {
    const DATAGRAMS: u64 = 2_000;
    /// The burst, then one more that carries the drop counter.
    const SENT: u64 = DATAGRAMS + 1;
    const LINES: u64 = 40;
    let scope = Scope::new("udpdrops");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start_statsd(&scope, "receive_buffer_bytes = 4096\n", &clock).await;
    let to = running.statsd_addr.unwrap();
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let datagram = "drops.k:1|c\n".repeat(LINES as usize);
    for _ in 0..DATAGRAMS {
        sender.send_to(datagram.as_bytes(), to).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Carries the socket's drop counter to the receiver.
    sender.send_to(datagram.as_bytes(), to).unwrap();
    let accounted = |s: &StatsSnapshot| s.events_accepted / LINES + s.udp_receive_buffer_drops;
    let stats = stats_when(&running, Duration::from_secs(10), |s| accounted(s) >= SENT).await;
    assert!(
        stats.udp_receive_buffer_drops > 0,
        "a 4 KiB buffer held every 500-byte datagram of a burst: {stats:?}"
    );
    assert_eq!(stats.events_accepted % LINES, 0, "datagrams arrive whole");
    assert_eq!(accounted(&stats), SENT, "{stats:?}");
    assert_eq!(stats.udp_dropped, 0);
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn python_statsd_client_counters_gauges_and_timers_arrive_exactly() {
    let python = std::env::var("STRATA_TEST_PYTHON").expect("STRATA_TEST_PYTHON is not set: scripts/test installs the Python statsd package and sets it");
    let scope = Scope::new("statsd");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start_statsd(&scope, "", &clock).await;
    let port = running.statsd_addr.unwrap().port();
    // Every sampled value is sent (the client's coin always lands), so the rate only scales.
    let script = format!(
        r#"
import random, statsd
random.random = lambda: 0.0
c = statsd.StatsClient("127.0.0.1", {port})
for _ in range(5):
    c.incr("hits")
c.incr("hits", 10)
c.incr("sampled", 3, rate=0.5)
c.gauge("queue", 7)
c.gauge("queue", 3, delta=True)
c.gauge("queue", -4, delta=True)
c.timing("lat", 12)
c.timing("lat", 30)
with c.pipeline() as p:
    p.incr("hits", 4)
    p.timing("lat", 18)
for member in ["alice", "bob", "alice", 42]:
    c.set("users", member)
c.timing("sampled_lat", 8, rate=0.5)
"#
    );
    let out = tokio::process::Command::new(&python)
        .args(["-c", &script])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = stats_when(&running, Duration::from_secs(10), |s| {
        s.events_accepted >= 19
    })
    .await;
    assert_eq!(stats.events_accepted, 19);
    // Then over TCP; the gauge delta applies to the value the UDP listener left.
    let tcp = format!("import statsd\nt = statsd.TCPStatsClient('127.0.0.1', {port})\nt.incr('hits', 2)\nt.gauge('queue', 1, delta=True)\nt.close()\n");
    let out = tokio::process::Command::new(&python)
        .args(["-c", &tcp])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = stats_when(&running, Duration::from_secs(10), |s| {
        s.events_accepted >= 21
    })
    .await;
    assert_eq!(stats.events_accepted, 21);
    assert_eq!(stats.statsd_bad_lines, 0);
    clock.set(ms("2026-03-01T10:01:00Z"));
    let docs = scope.wait_for_documents(6).await;
    let of = |name: &str| {
        docs.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {docs:?}"))
            .clone()
    };
    let users = of("users");
    assert_eq!(
        (
            users["type"].as_str(),
            users["count"].as_u64(),
            users["unique"].as_u64()
        ),
        (Some("set"), Some(4), Some(3)),
        "alice, bob, alice, 42"
    );
    let sampled_lat = of("sampled_lat");
    assert_eq!(
        (sampled_lat["count"].as_u64(), sampled_lat["sum"].as_f64()),
        (Some(1), Some(8.0)),
        "a sampled timing is one value: sampling does not change its distribution"
    );
    let hits = of("hits");
    assert_eq!(
        (
            hits["type"].as_str(),
            hits["count"].as_u64(),
            hits["sum"].as_f64()
        ),
        (Some("counter"), Some(8), Some(21.0)),
        "7 values over UDP and 1 over TCP"
    );
    assert_eq!(hits["rate"].as_f64(), Some(21.0 / 20.0));
    assert_eq!(
        of("sampled")["sum"].as_f64(),
        Some(6.0),
        "3 at rate 0.5 counts as 6"
    );
    let queue = of("queue");
    assert_eq!(
        (
            queue["count"].as_u64(),
            queue["min"].as_f64(),
            queue["max"].as_f64(),
            queue["last"].as_f64()
        ),
        (Some(4), Some(6.0), Some(10.0), Some(7.0))
    );
    let lat = of("lat");
    assert_eq!(
        (
            lat["type"].as_str(),
            lat["count"].as_u64(),
            lat["sum"].as_f64(),
            lat["min"].as_f64(),
            lat["max"].as_f64()
        ),
        (Some("timer"), Some(3), Some(60.0), Some(12.0), Some(30.0))
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn graphite_plaintext_over_tcp_and_udp() {
    use tokio::io::AsyncWriteExt;
    let scope = Scope::new("graphite");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = format!("{FAST}\n[graphite]\nlisten = \"127.0.0.1:0\"\n");
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    let addr = running.graphite_addr.unwrap();
    let t = ms("2026-03-01T10:00:00Z") / 1000;
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let lines = format!(
        "web1.cpu 1 {t}\nweb1.cpu 3 {}\nnot a number here\nweb1.cpu 5 {}\n",
        t + 5,
        t + 25
    );
    tcp.write_all(lines.as_bytes()).await.unwrap();
    tcp.shutdown().await.unwrap();
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.send_to(
        format!("web1.mem 7 {t}\nweb1.mem 9 {}\n", t + 1).as_bytes(),
        addr,
    )
    .await
    .unwrap();
    let s = stats_when(&running, Duration::from_secs(10), |s| {
        s.events_accepted >= 5
    })
    .await;
    assert_eq!((s.events_accepted, s.graphite_bad_lines), (5, 1));
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    let cpu: Vec<(u64, f64)> = docs
        .iter()
        .filter(|d| d["name"] == "web1.cpu")
        .map(|d| (d["count"].as_u64().unwrap(), d["sum"].as_f64().unwrap()))
        .collect();
    assert_eq!(cpu, vec![(2, 4.0), (1, 5.0)]);
    let mem: Vec<(u64, f64)> = docs
        .iter()
        .filter(|d| d["name"] == "web1.mem")
        .map(|d| (d["count"].as_u64().unwrap(), d["sum"].as_f64().unwrap()))
        .collect();
    assert_eq!(mem, vec![(2, 16.0)]);
    scope.cleanup().await;
}

#[tokio::test]
async fn riemann_client_events_over_tcp_and_udp() {
    let scope = Scope::new("riemann");
    let clock = ManualClock::new(chrono::Utc::now().timestamp_millis());
    let extra = format!("{FAST}\n[riemann]\nlisten = \"127.0.0.1:0\"\n");
    let running = start(
        &scope,
        &archive("1h", "1h", "2 days", "day", "10s"),
        &extra,
        &clock,
    )
    .await;
    let port = running.riemann_addr.unwrap().port().to_string();
    // The client waits for the server's answer: run it without blocking the test's runtime.
    let send = |args: &[&str]| {
        let mut all = vec!["send".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        all.extend(["127.0.0.1".to_string(), port.clone()]);
        tokio::process::Command::new("riemann-client")
            .args(all)
            .output()
    };
    for args in [
        vec![
            "-S", "cpu", "-h", "web-1", "-a", "dc=par", "-t", "prod", "-t", "edge", "-d", "0.5",
        ],
        vec![
            "-S", "cpu", "-h", "web-1", "-a", "dc=par", "-d", "1.5", "--udp",
        ],
        vec!["-S", "ints", "-h", "web-1", "-i", "42"],
        vec!["-S", "state-only", "-h", "web-1", "-s", "ok"],
    ] {
        let out = send(&args)
            .await
            .expect("riemann-client from Debian's riemann-c-client (scripts/setup installs it)");
        assert!(
            out.status.success(),
            "{args:?}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let s = stats_when(&running, Duration::from_secs(10), |s| {
        s.events_accepted >= 3 && s.riemann_skipped >= 1
    })
    .await;
    assert_eq!(
        (s.events_accepted, s.riemann_skipped, s.riemann_bad),
        (3, 1, 0)
    );
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    let of = |name: &str| {
        docs.iter()
            .filter(|d| d["name"] == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    // Riemann's tags are part of the series: the tagged and untagged events stay apart.
    let cpu = of("cpu");
    assert_eq!(cpu.len(), 2, "{docs:?}");
    let tagged = cpu.iter().find(|d| d.get("labels").is_some()).unwrap();
    let bare = cpu.iter().find(|d| d.get("labels").is_none()).unwrap();
    assert_eq!(tagged["labels"], json!(["edge", "prod"]));
    assert_eq!(
        (
            tagged["count"].as_u64(),
            tagged["sum"].as_f64(),
            tagged["host"].as_str(),
            tagged["tags"]["dc"].as_str()
        ),
        (Some(1), Some(0.5), Some("web-1"), Some("par"))
    );
    assert_eq!(
        (bare["count"].as_u64(), bare["sum"].as_f64()),
        (Some(1), Some(1.5))
    );
    assert_eq!(of("ints")[0]["sum"].as_f64(), Some(42.0));
    assert!(of("state-only").is_empty());
    scope.cleanup().await;
}

/// Values over four orders of magnitude, deterministic.
fn spread_values(n: usize) -> Vec<f64> {
    let mut x = 0x2545_f491_4f6c_dd1du64;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let u = (x >> 11) as f64 / (1u64 << 53) as f64;
            (u * 9.2).exp().round() / 10.0 + 0.1
        })
        .collect()
}

fn nearest_rank(values: &[f64], q: f64) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted[rank - 1]
}

fn within_one_percent(estimate: Option<f64>, exact: f64) -> bool {
    estimate.is_some_and(|e| (e - exact).abs() <= 0.01 * exact.abs())
}

#[tokio::test]
async fn percentiles_survive_downsampling_within_one_percent_of_nearest_rank() {
    let scope = Scope::new("pctl");
    let keep = "percentiles = [50, 90, 99]\n";
    let archives = [
        archive("10m", "10m", "3 days", "day", "10s"),
        keep.to_string(),
        archive("1h", "1h", "2 months", "month", "10s"),
        keep.to_string(),
    ]
    .concat();
    let cfg = scope.config(&archives, FAST);
    let (hour, day) = (3_600_000i64, 86_400_000i64);
    let now = chrono::Utc::now().timestamp_millis();
    let today = now - now.rem_euclid(day);
    // Every 5 minutes for ten days: several values per stored bucket, spread over 4 decades.
    let values = spread_values(2880);
    let events: Vec<(i64, f64)> = values
        .iter()
        .enumerate()
        .map(|(i, &v)| (today - 10 * day + i as i64 * 300_000 + 7_000, v))
        .filter(|&(t, _)| t < now - 60_000)
        .collect();
    let input: String = events
        .iter()
        .map(|(t, v)| {
            format!("{{\"name\":\"lat\",\"type\":\"timer\",\"value\":{v},\"timestamp\":{t}}}\n")
        })
        .collect();
    replay_into_node(&cfg, &input).await;
    scope.refresh().await;
    let docs = scope.documents().await;
    let hourly = docs.iter().find(|d| d["archive"] == "1h").unwrap();
    assert!(hourly["p99"].as_f64().is_some() && hourly["sketch"].as_str().is_some());
    let clock = ManualClock::new(now);
    let running = start(&scope, &archives, FAST, &clock).await;
    let in_range = |from: i64, to: i64| -> Vec<f64> {
        events
            .iter()
            .filter(|&&(t, _)| t >= from && t <= to)
            .map(|&(_, v)| v)
            .collect()
    };
    // Across both resolutions: from 8 days ago (hourly) to the last whole hour (10-minute).
    let (from, to) = (today - 8 * day + 5 * hour, now - now.rem_euclid(hour) - 1);
    let raw = in_range(from, to);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=lat&start={from}&end={to}",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["count"].as_u64(), Some(raw.len() as u64));
    for (field, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99)] {
        let exact = nearest_rank(&raw, q);
        assert!(
            within_one_percent(body[field].as_f64(), exact),
            "{field}: {} vs exact {exact}",
            body[field]
        );
    }
    let (_, other) = get_json(
        &scope,
        format!(
            "http://{}/v1/stats?name=lat&start={from}&end={to}&percentiles=99.9",
            running.addr
        ),
    )
    .await;
    assert!(within_one_percent(
        other["p99_9"].as_f64(),
        nearest_rank(&raw, 0.999)
    ));
    // Daily points over days the hourly archive holds: each merges 24 hourly sketches.
    let (from, to) = (today - 8 * day, today - 4 * day - 1);
    let (status, body) = get_json(
        &scope,
        format!(
            "http://{}/v1/metrics?name=lat&from={from}&to={to}&step=1d&stat=p99",
            running.addr
        ),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let points = body["points"].as_array().unwrap();
    assert_eq!(points.len(), 4, "{body}");
    for p in points {
        let t = p["timestamp"].as_i64().unwrap();
        let exact = nearest_rank(&in_range(t, t + day - 1), 0.99);
        assert_eq!(p["archive"], "1h");
        assert!(
            within_one_percent(p["value"].as_f64(), exact),
            "{p} vs exact {exact}"
        );
    }
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn partials_labels_sets_and_counter_rates_reach_the_node_exactly() {
    let scope = Scope::new("partials");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let t = ms("2026-03-01T10:00:01Z");
    let body = format!(
        r#"[{{"name":"lat","type":"timer","count":3,"sum":60,"min":10,"max":30,"first":30,"last":10,"timestamp":{t}}},
            {{"name":"lat","type":"timer","value":5,"timestamp":{}}},
            {{"name":"hits","type":"counter","value":30,"timestamp":{t},"labels":["web","edge"]}},
            {{"name":"users","type":"set","value":"alice","timestamp":{t}}},
            {{"name":"users","type":"set","value":"bob","timestamp":{t}}},
            {{"name":"users","type":"set","value":"alice","timestamp":{t}}}]"#,
        t + 5_000
    );
    let (status, answer, _) = post(&scope, &running, &body).await;
    assert_eq!(status, 200, "{answer}");
    // DaTtSs partials over PUT /agg: a counter partial is many increments at once.
    let agg = json!({"prt": {"c": [{"typ": "c", "pth": "app:hits", "sum": 12, "cnt": 4, "min": 1, "max": 6, "fst": 1, "lst": 6}],
        "ms": [{"typ": "ms", "pth": "app:lat", "sum": 9, "cnt": 2, "min": 4, "max": 5, "fst": 4, "lst": 5, "bot": 4, "top": 5}]}});
    let (status, answer) = put_agg(&scope, &running, agg).await;
    assert_eq!(status, 200, "{answer}");
    let bad = json!({"prt": {"g": [{"pth": "x", "sum": 50, "cnt": 1, "min": 1, "max": 1, "fst": 1, "lst": 1}]}});
    let (status, answer) = put_agg(&scope, &running, bad).await;
    assert_eq!(status, 400);
    assert_eq!(
        answer["error"],
        "prt.g[0]: field 'sum': 50 over count 1 is outside min..max"
    );
    clock.set(ms("2026-03-01T10:01:00Z"));
    let docs = scope.wait_for_documents(5).await;
    let of = |name: &str| {
        docs.iter()
            .find(|d| d["name"] == name)
            .unwrap_or_else(|| panic!("{name} in {docs:?}"))
            .clone()
    };
    let lat = of("lat");
    assert_eq!(
        stats_of(&lat),
        (4, 65.0, 5.0, 30.0, 16.25, 30.0, 5.0),
        "a partial of 3 plus one value: first and last by time"
    );
    let hits = of("hits");
    assert_eq!(hits["labels"], json!(["edge", "web"]));
    assert_eq!(hits["rate"].as_f64(), Some(1.5), "30 over 20 s");
    assert_eq!(hits["series"], "hits{#edge,#web}");
    let users = of("users");
    assert_eq!(
        (users["count"].as_u64(), users["unique"].as_u64()),
        (Some(3), Some(2))
    );
    let app_hits = of("app:hits");
    assert_eq!(
        (
            app_hits["count"].as_u64(),
            app_hits["sum"].as_f64(),
            app_hits["rate"].as_f64()
        ),
        (Some(4), Some(12.0), Some(0.6))
    );
    assert_eq!(stats_of(&of("app:lat")).0, 2);
    assert!(
        docs.iter().all(|d| d["name"] != "x"),
        "nothing of the bad body"
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

async fn put_agg(scope: &Scope, running: &Running, body: Value) -> (u16, Value) {
    let r = scope
        .http
        .put(format!("http://{}/agg", running.addr))
        .json(&body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// A collectd configuration `name` reading cpu, memory and load every second into `writer`.
fn collectd_conf(dir: &std::path::Path, name: &str, writer: &str) -> std::path::PathBuf {
    let conf = dir.join(format!("collectd-{name}.conf"));
    std::fs::write(
        &conf,
        format!(
            r#"Hostname "strata-test"
FQDNLookup false
Interval 1
WriteThreads 1
BaseDir "{dir}"
PIDFile "{dir}/collectd-{name}.pid"
PluginDir "/usr/lib/collectd"
TypesDB "/usr/share/collectd/types.db"
LoadPlugin cpu
LoadPlugin memory
LoadPlugin load
{writer}
"#,
            dir = dir.display(),
        ),
    )
    .unwrap();
    conf
}

/// Runs collectd on `conf` for `seconds` from its first value (its start-up is slow on a busy
/// machine), then SIGTERM; the seconds it really ran (it may die first: see the caller).
async fn run_collectd(conf: &std::path::Path, running: &Running, seconds: u64) -> f64 {
    let before = running.stats.snapshot().events_accepted;
    let mut collectd = tokio::process::Command::new("/usr/sbin/collectd")
        .args(["-f", "-C"])
        .arg(conf)
        .kill_on_drop(true)
        .spawn()
        .expect("collectd from Debian's collectd-core (scripts/setup installs it)");
    stats_when(running, Duration::from_secs(30), |s| {
        s.events_accepted != before
    })
    .await;
    let started = std::time::Instant::now();
    while started.elapsed() < Duration::from_secs(seconds) {
        if collectd.try_wait().unwrap().is_some() {
            return started.elapsed().as_secs_f64();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // SIGTERM, so that write_graphite sends what it buffers.
    let pid = collectd.id().unwrap().to_string();
    let term = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(term.success());
    let ran = started.elapsed().as_secs_f64();
    // write_riemann may hang collectd's shutdown waiting on its write thread: what it sent has
    // arrived by then (Batch false), so a kill loses nothing of the measure.
    if tokio::time::timeout(Duration::from_secs(5), collectd.wait())
        .await
        .is_err()
    {
        collectd.kill().await.unwrap();
    }
    ran
}

#[tokio::test]
async fn collectd_write_graphite_and_write_riemann_reach_the_node_at_its_interval() {
    let scope = Scope::new("collectd");
    let now = chrono::Utc::now().timestamp_millis();
    let clock = ManualClock::new(now);
    let extra = format!(
        "{FAST}\n[graphite]\nlisten = \"127.0.0.1:0\"\n[riemann]\nlisten = \"127.0.0.1:0\"\n"
    );
    let running = start(
        &scope,
        &archive("1h", "1h", "2 days", "day", "10s"),
        &extra,
        &clock,
    )
    .await;
    let dir = std::env::temp_dir().join(format!("strata-collectd-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let graphite = collectd_conf(
        &dir,
        "graphite",
        &format!(
            "LoadPlugin write_graphite\n<Plugin write_graphite>\n  <Node \"strata\">\n    Host \"127.0.0.1\"\n    Port \"{}\"\n    Protocol \"tcp\"\n    Prefix \"collectd.\"\n  </Node>\n</Plugin>",
            running.graphite_addr.unwrap().port()
        ),
    );
    // Each writer in its own collectd: Debian's collectd 5.12 write_riemann builds some events
    // without fields and crashes within seconds (collectd issue #4050, riemann-c-client ≥ 1.8),
    // which would take write_graphite's buffer down with it.
    let riemann = collectd_conf(
        &dir,
        "riemann",
        &format!(
            "LoadPlugin write_riemann\n<Plugin write_riemann>\n  <Node \"strata\">\n    Host \"127.0.0.1\"\n    Port \"{}\"\n    Protocol TCP\n    Batch false\n  </Node>\n  Tag \"collectd\"\n</Plugin>",
            running.riemann_addr.unwrap().port()
        ),
    );
    let graphite_ran = run_collectd(&graphite, &running, 10).await;
    let riemann_ran = run_collectd(&riemann, &running, 10).await;
    let s = running.stats.snapshot();
    assert_eq!(s.graphite_bad_lines, 0);
    clock.set(now + 2 * 3_600_000);
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    let count_of = |pick: &dyn Fn(&Value) -> bool| -> u64 {
        docs.iter()
            .filter(|d| pick(d))
            .map(|d| d["count"].as_u64().unwrap())
            .sum()
    };
    let graphite_load = count_of(&|d| d["name"] == "collectd.strata-test.load.load.shortterm");
    let graphite_memory = count_of(&|d| d["name"] == "collectd.strata-test.memory.memory-used");
    let graphite_cpu = count_of(&|d| {
        d["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("collectd.strata-test.cpu-0."))
    });
    let riemann_load = count_of(&|d| {
        d["name"] == "load/load/shortterm"
            && d["host"] == "strata-test"
            && d["labels"] == json!(["collectd"])
            && d["tags"]["plugin"] == "load"
    });
    // One value per interval (1 s) from its first values to its end, give or take one at each
    // end and a late tick.
    let per_interval = |ran: f64| ran.floor() as u64 + 1;
    let figures = format!("graphite ran {graphite_ran:.1} s: load {graphite_load}, memory {graphite_memory}, cpu-0 {graphite_cpu}; riemann ran {riemann_ran:.1} s: load {riemann_load}, messages refused {}", s.riemann_bad);
    for n in [graphite_load, graphite_memory] {
        let expected = per_interval(graphite_ran);
        assert!(n + 2 >= expected && n <= expected + 1, "{figures}");
    }
    assert!(graphite_cpu > 0, "{figures}");
    let expected = per_interval(riemann_ran);
    // The corrupt messages (garbage tags, empty fields) are refused whole and counted: each
    // interval's load value either arrived or was in a refused message.
    assert!(
        riemann_load >= 1
            && riemann_load + s.riemann_bad + 2 >= expected
            && riemann_load <= expected + 1,
        "{figures}"
    );
    eprintln!("collectd: {figures}");
    std::fs::remove_dir_all(&dir).ok();
    scope.cleanup().await;
}
