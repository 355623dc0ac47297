//! The service: buckets written when the clock passes them, late events merged into them, a
//! restart that continues open buckets,
//! `/health`, `/v1/live` and `/`, and the binary writing everything on SIGTERM.

use std::time::Duration;

use serde_json::{json, Value};
use strata::clock::ManualClock;

use crate::support::*;

#[tokio::test]
async fn a_series_that_stops_still_gets_its_last_bucket() {
    let scope = Scope::new("stops");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = start(&scope, &archive_20s(), FAST, &clock).await;
    let (status, body, _) = post(&scope, &running, r#"{"name":"quiet","value":42}"#).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"accepted": 1, "merged": 0, "expired": 0, "archives": {"20s": {"recorded": 1, "merged": 0, "expired": 0}}})
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

    // An event for the written bucket is merged into its document, reported as such.
    let (status, body, _) = post(
        &scope,
        &running,
        r#"{"name":"quiet","value":1,"timestamp":"2026-03-01T10:00:10Z"}"#,
    )
    .await;
    assert_eq!(
        (status, &body["merged"], &body["accepted"]),
        (200, &json!(1), &json!(1)),
        "{body}"
    );
    running.stop().await.unwrap();
    let docs = scope.documents().await;
    assert_eq!(docs.len(), 1);
    assert_eq!(
        stats_of(&docs[0]),
        (2, 43.0, 1.0, 42.0, 21.5, 42.0, 1.0),
        "42 came at 10:00:05, 1 at 10:00:10"
    );
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
    terminate(child).await;
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

#[tokio::test]
async fn live_view_home_page_and_archives_come_from_memory() {
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
    assert!(html.contains("<script src=\"/assets/app.js\">"), "{html}");
    assert!(html.contains("href=\"/health\""));
    let (status, archives) = get_json(&scope, format!("http://{}/v1/archives", running.addr)).await;
    assert_eq!(status, 200);
    assert_eq!(
        archives,
        json!([{"name": "20s", "step_seconds": 20, "retention": "2 days", "index_period": "day",
            "lateness_seconds": 10.0, "percentiles": []}])
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

/// Forwards every connection to `addr` to the node, from when it is called.
async fn forward_to_node(listener: tokio::net::TcpListener, node: String) {
    let node_addr = node.trim_start_matches("http://").to_string();
    loop {
        let Ok((mut inbound, _)) = listener.accept().await else {
            return;
        };
        let node_addr = node_addr.clone();
        tokio::spawn(async move {
            if let Ok(mut outbound) = tokio::net::TcpStream::connect(&node_addr).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}

#[tokio::test]
async fn starting_with_the_node_away_listens_at_once_and_writes_once_it_comes() {
    use std::sync::Arc;
    use strata::pipeline::{serve, ServeOptions};

    let scope = Scope::new("away");
    // An address where nothing listens yet: the node is away.
    let addr = free_address();
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let options = ServeOptions {
        node_url: Some(format!("http://{addr}")),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let running = tokio::time::timeout(
        Duration::from_secs(10),
        serve(
            scope.config(&archive_20s(), FAST),
            options,
            Arc::new(clock.clone()),
        ),
    )
    .await
    .expect("serve returns without the node")
    .unwrap();
    eprintln!("listening {:?} after start, node away", started.elapsed());
    let (status, body, _) = post(
        &scope,
        &running,
        r#"[{"name":"waited","value":1},{"name":"waited","value":2}]"#,
    )
    .await;
    assert_eq!((status, &body["accepted"]), (200, &json!(2)), "{body}");
    let health = scope
        .http
        .get(format!("http://{}/health", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 503, "the node is away and /health says so");
    clock.set(ms("2026-03-01T10:00:30Z"));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(scope.documents().await.is_empty());

    // The node comes (at the address strata was given).
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let proxy = tokio::spawn(forward_to_node(listener, scope.node.clone()));
    let docs = scope.wait_for_documents(1).await;
    assert_eq!(docs.len(), 1, "written once the node answered");
    assert_eq!(
        (docs[0]["count"].as_u64(), docs[0]["sum"].as_f64()),
        (Some(2), Some(3.0))
    );
    let index = format!("{}20s-2026.03.01", scope.prefix);
    let (_, mapping) = scope.get(&format!("/{index}/_mapping")).await;
    assert_eq!(
        mapping[&index]["mappings"]["properties"]["sum"]["type"], "double",
        "the template was installed before the first write"
    );
    running.stop().await.unwrap();
    proxy.abort();
    scope.cleanup().await;
}

#[tokio::test]
async fn api_tokens_guard_writes_and_reads_but_not_health() {
    use std::sync::Arc;
    use strata::pipeline::{serve, ServeError, ServeOptions};

    let scope = Scope::new("tokens");
    let (write_var, read_var) = (
        format!("STRATA_TEST_WRITE_{}", std::process::id()),
        format!("STRATA_TEST_READ_{}", std::process::id()),
    );
    let extra = format!(
        "{FAST}[http]\nwrite_token_env = \"{write_var}\"\nread_token_env = \"{read_var}\"\n"
    );
    let cfg = scope.config(&archive_20s(), &extra);
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let options = || ServeOptions {
        node_url: None,
        listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Default::default()
    };
    let unset = serve(cfg.clone(), options(), Arc::new(clock.clone())).await;
    let Err(error) = unset else {
        panic!("started without its tokens")
    };
    assert!(matches!(error, ServeError::Preflight(_)), "{error:?}");
    let mut shown = error.to_string();
    let mut cause = std::error::Error::source(&error);
    while let Some(e) = cause {
        shown.push_str(&format!(": {e}"));
        cause = e.source();
    }
    assert!(
        shown.contains(&format!("environment variable {write_var} is not set")),
        "{shown}"
    );

    std::env::set_var(&write_var, "w-secret");
    std::env::set_var(&read_var, "r-secret");
    let running = serve(cfg, options(), Arc::new(clock.clone()))
        .await
        .unwrap();
    let base = format!("http://{}", running.addr);
    let send = |method: reqwest::Method, path: &str, token: Option<&str>| {
        let mut request = scope.http.request(method, format!("{base}{path}"));
        if let Some(t) = token {
            request = request.bearer_auth(t);
        }
        request
    };
    let event = r#"{"name":"guarded","value":1}"#;
    let status = |r: reqwest::Response| r.status().as_u16();
    let post = |token| send(reqwest::Method::POST, "/v1/metrics", token).body(event);
    assert_eq!(status(post(None).send().await.unwrap()), 401);
    assert_eq!(status(post(Some("r-secret")).send().await.unwrap()), 401);
    assert_eq!(status(post(Some("w-secret")).send().await.unwrap()), 200);
    let read = |token| send(reqwest::Method::GET, "/v1/live", token);
    assert_eq!(status(read(None).send().await.unwrap()), 401);
    assert_eq!(status(read(Some("w-secret")).send().await.unwrap()), 401);
    assert_eq!(status(read(Some("r-secret")).send().await.unwrap()), 200);
    let stats = send(reqwest::Method::GET, "/v1/series?from=0&to=1", None);
    assert_eq!(status(stats.send().await.unwrap()), 401);
    let health = send(reqwest::Method::GET, "/health", None);
    assert_eq!(
        status(health.send().await.unwrap()),
        200,
        "/health stays open"
    );
    running.stop().await.unwrap();
    scope.cleanup().await;
}

#[tokio::test]
async fn a_shutdown_that_drops_documents_says_how_many_and_fails() {
    use std::sync::Arc;
    use strata::pipeline::{serve, ServeError, ServeOptions};

    let scope = Scope::new("dropped");
    // The node stays away: nothing can be written.
    let addr = free_address();
    let extra = format!("{FAST}shutdown_timeout = \"1s\"\n");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let running = serve(
        scope.config(&archive_20s(), &extra),
        ServeOptions {
            node_url: Some(format!("http://{addr}")),
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        Arc::new(clock.clone()),
    )
    .await
    .unwrap();
    let (status, _, _) = post(
        &scope,
        &running,
        r#"[{"name":"a","value":1},{"name":"b","value":2}]"#,
    )
    .await;
    assert_eq!(status, 200);
    let stopped = running.stop().await;
    assert!(
        matches!(stopped, Err(ServeError::Dropped(2))),
        "{stopped:?}"
    );
    assert_eq!(
        stopped.unwrap_err().to_string(),
        "2 document(s) could not be written before persist.shutdown_timeout; see the log"
    );
}

#[tokio::test]
async fn secrets_never_appear_in_check_output_logs_or_health() {
    let scope = Scope::new("secrets");
    let dir = std::env::temp_dir().join(format!("strata-{}", scope.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = "s3cr3t-Pa55w0rd-never-shown";
    let token = "t0ken-never-shown-either";
    std::fs::write(dir.join("token"), token).unwrap();
    let config = |extra: &str| {
        format!(
            "[node]\nurl = \"{node}\"\nusername = \"strata\"\npassword_env = \"STRATA_TEST_SECRET\"\n{extra}\n[index]\nprefix = \"{p}\"\ntemplate = \"{p}tpl\"\nreplicas = 0\n[aliases]\nprefix = \"{p}alias-\"\numbrella = \"{p}all\"\n[http]\nwrite_token_file = \"{t}\"\n{archives}",
            node = scope.node,
            p = scope.prefix,
            t = dir.join("token").display(),
            archives = archive_20s()
        )
    };
    // `check` with a problem to report, and with none.
    for (name, extra) in [
        ("bad.toml", "ca_file = \"/nonexistent/ca.pem\""),
        ("good.toml", ""),
    ] {
        let path = dir.join(name);
        std::fs::write(&path, config(extra)).unwrap();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["check", "--config", path.to_str().unwrap()])
            .env("STRATA_TEST_SECRET", secret)
            .output()
            .await
            .unwrap();
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.success(), name == "good.toml", "{shown}");
        assert!(!shown.contains(secret) && !shown.contains(token), "{shown}");
    }
    // `serve`: its log and /health.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "serve",
            "--config",
            dir.join("good.toml").to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .env("STRATA_TEST_SECRET", secret)
        .env("STRATA_LOG", "debug")
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let addr = read_listen_addr_keeping(child.stderr.take().unwrap(), lines.clone()).await;
    let (status, health) = get_json(&scope, format!("http://{addr}/health")).await;
    assert_eq!(status, 200, "{health}");
    assert!(!health.to_string().contains(secret) && !health.to_string().contains(token));
    terminate(child).await;
    let log = lines.lock().unwrap().join("\n");
    assert!(!log.is_empty());
    assert!(!log.contains(secret) && !log.contains(token), "{log}");
    scope.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn metrics_scrape_parses_with_the_prometheus_client_parser_and_counts_per_protocol() {
    let python = std::env::var("STRATA_TEST_PYTHON").expect(
        "STRATA_TEST_PYTHON is not set: scripts/test installs prometheus-client and sets it",
    );
    let scope = Scope::new("promscrape");
    let clock = ManualClock::new(ms("2026-03-01T10:00:05Z"));
    let extra = format!("{FAST}\n[statsd]\nlisten = \"127.0.0.1:0\"\n");
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    let body = r#"[{"name":"a","value":1},{"name":"a","value":2},{"name":"b","value":3}]"#;
    assert_eq!(post(&scope, &running, body).await.0, 200);
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.send_to(
        b"hits:1|c\nhits:2|c\nnot a line",
        running.statsd_addr.unwrap(),
    )
    .unwrap();
    let stats = stats_when(&running, Duration::from_secs(10), |s| {
        s.events_accepted >= 5 && s.statsd_bad_lines >= 1
    })
    .await;
    assert_eq!((stats.events_accepted, stats.statsd_bad_lines), (5, 1));
    clock.set(ms("2026-03-01T10:00:31Z"));
    stats_when(&running, Duration::from_secs(10), |s| {
        s.docs_written >= 3 && s.maintenance.is_some()
    })
    .await;

    let answer = scope
        .http
        .get(format!("http://{}/metrics", running.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let content_type = answer.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    let text = answer.text().await.unwrap();
    running.stop().await.unwrap();

    // Prometheus' own Python client parses it; every sample comes back as name, labels, value.
    let script = r#"
import json, sys
from prometheus_client.openmetrics.parser import text_string_to_metric_families
out = []
for family in text_string_to_metric_families(sys.stdin.read()):
    for s in family.samples:
        out.append({"family": family.name, "type": family.type, "name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut parser = tokio::process::Command::new(&python)
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    let mut stdin = parser.stdin.take().unwrap();
    stdin.write_all(text.as_bytes()).await.unwrap();
    drop(stdin);
    let out = parser.wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    let value = |name: &str, labels: Value| {
        samples
            .iter()
            .find(|s| s["name"] == name && s["labels"] == labels)
            .and_then(|s| s["value"].as_f64())
            .unwrap_or_else(|| panic!("no sample {name} {labels} in\n{text}"))
    };
    assert_eq!(
        value("strata_events_accepted_total", json!({"protocol": "http"})),
        3.0
    );
    assert_eq!(
        value(
            "strata_events_accepted_total",
            json!({"protocol": "statsd"})
        ),
        2.0
    );
    assert_eq!(
        value(
            "strata_events_accepted_total",
            json!({"protocol": "riemann"})
        ),
        0.0
    );
    assert_eq!(
        value("strata_bad_input_total", json!({"protocol": "statsd"})),
        1.0
    );
    assert_eq!(value("strata_documents_written_total", json!({})), 3.0);
    assert!(value("strata_bulk_request_duration_seconds_count", json!({})) >= 1.0);
    assert_eq!(
        value(
            "strata_maintenance_passes_total",
            json!({"outcome": "failed"})
        ),
        0.0
    );
    assert!(value("strata_maintenance_passes_total", json!({"outcome": "ok"})) >= 1.0);
    let types: std::collections::BTreeMap<&str, &str> = samples
        .iter()
        .map(|s| (s["family"].as_str().unwrap(), s["type"].as_str().unwrap()))
        .collect();
    assert_eq!(types["strata_events_accepted"], "counter");
    assert_eq!(types["strata_bulk_request_duration_seconds"], "histogram");
    assert_eq!(types["strata_series_active"], "gauge");
    eprintln!(
        "/metrics: {} families, {} samples, parsed by prometheus_client",
        types.len(),
        samples.len()
    );
    scope.cleanup().await;
}

#[tokio::test]
async fn logs_are_json_lines_when_the_config_or_the_flag_says_so() {
    let scope = Scope::new("jsonlog");
    let dir = std::env::temp_dir().join(format!("strata-{}", scope.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("strata.toml");
    let text = scope.config_text(&archive_20s(), "[log]\nformat = \"json\"\n");
    std::fs::write(&path, text).unwrap();
    // [log] format = "json" alone, then the flag overriding it.
    for flag in [None, Some("text")] {
        let mut args = vec![
            "serve",
            "--config",
            path.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ];
        if let Some(format) = flag {
            args.extend(["--log-format", format]);
        }
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(&args)
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        read_listen_addr_keeping(child.stderr.take().unwrap(), lines.clone()).await;
        terminate(child).await;
        let lines = lines.lock().unwrap().clone();
        assert!(lines.len() >= 3, "{lines:?}");
        for line in &lines {
            let parsed = serde_json::from_str::<Value>(line);
            match flag {
                None => {
                    let event = parsed.unwrap_or_else(|e| panic!("{e}: {line}"));
                    assert!(
                        event["timestamp"].is_string() && event["level"].is_string(),
                        "{line}"
                    );
                    assert!(
                        event["message"].is_string() && event["target"].is_string(),
                        "{line}"
                    );
                }
                Some(_) => assert!(parsed.is_err(), "text wanted: {line}"),
            }
        }
    }
    scope.cleanup().await;
    let _ = std::fs::remove_dir_all(dir);
}
