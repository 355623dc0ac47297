//! The built-in page in a real browser: Debian's Chromium, headless, driven over WebDriver by
//! `chromedriver` (both installed by `scripts/setup`), against a strata on the real node in
//! STRATA_TEST_NODE with data replayed over three resolutions plus live events. Checked on the
//! rendered page, after its scripts ran: the series list, a chart whose points are those of
//! `/v1/metrics` across the three resolutions, zooming by dragging, the live view's count
//! growing while events are sent, and the status panel's event rate. A script error on the page
//! fails the test. Screenshots of each view land in `target/tmp/page-screenshots/` (not kept).
//! `scripts/test` runs this once, against the first node of the matrix.

use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::config::Config;
use strata::pipeline::{serve, Running, ServeOptions};
use tokio::process::{Child, Command};

const WAIT: Duration = Duration::from_secs(20);

/// Series besides the three charted ones, listed 50 to a page.
const SERIES_TO_PAGE: usize = 1_200;

fn node() -> String {
    std::env::var("STRATA_TEST_NODE")
        .unwrap_or_else(|_| panic!("STRATA_TEST_NODE is not set: run scripts/test"))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A browser session over WebDriver.
struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
}

impl Browser {
    async fn start() -> Self {
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver (Debian's chromium-driver, installed by scripts/setup)");
        let http = reqwest::Client::new();
        let root = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + WAIT;
        while http.get(format!("{root}/status")).send().await.is_err() {
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/lib/chromium/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,860"]
            },
            "goog:loggingPrefs": {"browser": "ALL"}
        }}});
        let answer: Value = http
            .post(format!("{root}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = answer["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"));
        Self {
            driver,
            base: format!("{root}/session/{session}"),
            http,
        }
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let request = self.http.request(method, format!("{}{path}", self.base));
        let request = if body.is_null() {
            request
        } else {
            request.json(&body)
        };
        let answer: Value = request.send().await.unwrap().json().await.unwrap();
        assert!(
            answer["value"].get("error").is_none(),
            "{path}: {}",
            answer["value"]
        );
        answer["value"].clone()
    }

    async fn open(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", json!({"url": url}))
            .await;
    }

    /// Runs `script` (a function body) in the page; its return value.
    async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            "/execute/sync",
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// Waits until `script` returns something other than null, false or undefined.
    async fn until(&self, what: &str, script: &str) -> Value {
        let deadline = Instant::now() + WAIT;
        loop {
            let v = self.run(script).await;
            if !(v.is_null() || v == json!(false)) {
                return v;
            }
            assert!(Instant::now() < deadline, "waited {WAIT:?} for {what}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .call(
                reqwest::Method::POST,
                "/element",
                json!({"using": "css selector", "value": css}),
            )
            .await;
        found
            .as_object()
            .and_then(|o| o.values().next())
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no element {css}"))
            .to_string()
    }

    /// Replaces the text of an input.
    async fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/clear"),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/value"),
            json!({"text": text}),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let id = self.element(css).await;
        self.call(
            reqwest::Method::POST,
            &format!("/element/{id}/click"),
            json!({}),
        )
        .await;
    }

    /// Presses the mouse at (x1, y1) of the element and lets go at (x2, y2) (offsets from its
    /// centre).
    async fn drag(&self, css: &str, from: (i64, i64), to: (i64, i64)) {
        let id = self.element(css).await;
        let origin = json!({"element-6066-11e4-a52e-4f735466cecf": id});
        let actions = json!({"actions": [{"type": "pointer", "id": "mouse", "parameters": {"pointerType": "mouse"}, "actions": [
            {"type": "pointerMove", "duration": 0, "origin": origin, "x": from.0, "y": from.1},
            {"type": "pointerDown", "button": 0},
            {"type": "pointerMove", "duration": 200, "origin": origin, "x": (from.0 + to.0) / 2, "y": to.1},
            {"type": "pointerMove", "duration": 200, "origin": origin, "x": to.0, "y": to.1},
            {"type": "pointerUp", "button": 0}
        ]}]});
        self.call(reqwest::Method::POST, "/actions", actions).await;
    }

    async fn screenshot(&self, name: &str) {
        let png = self
            .call(reqwest::Method::GET, "/screenshot", Value::Null)
            .await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().unwrap())
            .unwrap();
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("page-screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, bytes).unwrap();
        eprintln!("screenshot: {}", path.display());
    }

    /// Script errors: those the page collected and those the browser logged (network answers
    /// such as a 404 are not script errors).
    async fn script_errors(&self) -> Vec<String> {
        let mut errors: Vec<String> = self
            .run("return window.strataErrors || ['the page did not start']")
            .await
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.to_string())
            .collect();
        let log = self
            .call(reqwest::Method::POST, "/se/log", json!({"type": "browser"}))
            .await;
        for entry in log.as_array().into_iter().flatten() {
            let message = entry["message"].as_str().unwrap_or_default();
            let network =
                entry["source"] == "network" || message.contains("Failed to load resource");
            if entry["level"] == "SEVERE" && !network {
                errors.push(message.to_string());
            }
        }
        errors
    }

    async fn close(mut self) {
        let _ = self.http.delete(&self.base).send().await;
        let _ = self.driver.kill().await;
    }
}

/// Events every 10 minutes for 80 days on three series, plus one a minute over the last day
/// on one: the hourly archive serves the oldest part, the 10-minute one the middle, the
/// 20-second one the last day.
fn history(now: i64) -> String {
    let mut lines = Vec::new();
    let day = 86_400_000;
    let start = now - now.rem_euclid(600_000) - 80 * day;
    let mut t = start;
    let mut i = 0u64;
    while t < now - 120_000 {
        for (name, host) in [("cpu.user", "a"), ("cpu.user", "b"), ("mem.used", "a")] {
            let v = 40.0 + 30.0 * ((i as f64) / 50.0).sin() + if host == "b" { 10.0 } else { 0.0 };
            lines.push(format!(
                r#"{{"name":"{name}","host":"{host}","value":{v:.3},"timestamp":{t}}}"#
            ));
        }
        t += 600_000;
        i += 1;
    }
    // Many more series, to page through (sorted after the three above).
    for n in 0..SERIES_TO_PAGE {
        lines.push(format!(
            r#"{{"name":"zz.load.s{n:04}","value":{n},"timestamp":{}}}"#,
            now - 3_600_000
        ));
    }
    let mut t = now - day;
    while t < now - 120_000 {
        lines.push(format!(
            r#"{{"name":"cpu.user","host":"a","value":{:.3},"timestamp":{t}}}"#,
            50.0 + ((t / 60_000) % 17) as f64
        ));
        t += 60_000;
    }
    lines.join("\n")
}

async fn start_strata(prefix: &str, now: i64) -> (Running, Config) {
    let text = format!(
        r#"[node]
url = "{node}"
[index]
prefix = "{prefix}"
template = "{prefix}tpl"
replicas = 0
[aliases]
prefix = "{prefix}alias-"
umbrella = "{prefix}all"
[consolidate]
tick = "20ms"
[persist]
flush_interval = "50ms"
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
"#,
        node = node()
    );
    let cfg = Config::from_toml(&text, std::path::Path::new("page.toml")).unwrap();
    let limits = strata::replay::limits_now(&cfg, &ManualClock::new(now));
    strata::replay::to_node(
        &cfg,
        None,
        Arc::new(history(now)),
        limits,
        Default::default(),
    )
    .await
    .unwrap();
    // The clock stands still: the live events all fall in the same open buckets.
    let running = serve(
        cfg.clone(),
        ServeOptions {
            node_url: None,
            listen: Some("127.0.0.1:0".parse().unwrap()),
            ..Default::default()
        },
        Arc::new(ManualClock::new(now)),
    )
    .await
    .unwrap();
    (running, cfg)
}

async fn cleanup(prefix: &str) {
    let http = reqwest::Client::new();
    let node = node();
    let indices: Value = http
        .get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap_or(json!([]));
    for index in indices.as_array().into_iter().flatten() {
        let _ = http
            .delete(format!("{node}/{}", index["index"].as_str().unwrap()))
            .send()
            .await;
    }
    let _ = http
        .delete(format!("{node}/_index_template/{prefix}tpl"))
        .send()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_browses_charts_across_resolutions_shows_live_counts_and_status() {
    let prefix = format!("tpage{}-", std::process::id());
    let now = chrono::Utc::now().timestamp_millis();
    let (running, _cfg) = start_strata(&prefix, now).await;
    let _ = reqwest::Client::new()
        .post(format!("{}/{prefix}*/_refresh", node()))
        .send()
        .await;
    let page = format!("http://{}/", running.addr);
    let browser = Browser::start().await;
    browser.open(&page).await;

    // The series list, as rendered: the first page of 50.
    let listed = browser
        .until(
            "the series list",
            "const rows = [...document.querySelectorAll('#series-list tbody tr')].map(r => r.dataset.series);\
             return rows.length >= 3 ? rows : null;",
        )
        .await;
    let listed = listed.as_array().unwrap();
    assert_eq!(listed.len(), 50);
    assert_eq!(
        listed[..4],
        [
            json!(r#"cpu.user{host="a"}"#),
            json!(r#"cpu.user{host="b"}"#),
            json!(r#"mem.used{host="a"}"#),
            json!("zz.load.s0000")
        ]
    );
    // Paging through 1 200 more, then narrowing them with a glob.
    let after_render = |listings: Value| {
        format!(
            "return window.strata.listings > {listings} ? [document.getElementById('page-info').textContent, document.querySelector('#series-list tbody tr').dataset.series] : null;"
        )
    };
    let listings = browser.run("return window.strata.listings").await;
    browser.click("#next").await;
    let second = browser
        .until("the second page", &after_render(listings))
        .await;
    assert_eq!(
        second,
        json!(["series 51–100 (more on the next page)", "zz.load.s0047"])
    );
    let listings = browser.run("return window.strata.listings").await;
    browser.type_into("#q", "zz.load.s11*").await;
    browser.click("#search button[type=submit]").await;
    let narrowed = browser
        .until("the glob's first page", &after_render(listings))
        .await;
    assert_eq!(
        narrowed,
        json!(["series 1–50 (more on the next page)", "zz.load.s1100"])
    );
    browser.type_into("#q", "*").await;

    // A year of one series: three resolutions, values as /v1/metrics gives them.
    let listings = browser.run("return window.strata.listings").await;
    browser.click("#range option[value='31536000']").await;
    browser.click("#search button[type=submit]").await;
    browser
        .until(
            "the list for a year",
            &format!("return window.strata.listings > {listings} && document.querySelectorAll('#series-list tbody tr').length === 50"),
        )
        .await;
    browser
        .click(r#"#series-list tr[data-series='cpu.user{host="a"}'] a"#)
        .await;
    let chart = browser
        .until(
            "the chart",
            "const c = window.strata.chart; const p = window.strata.plot;\
             return c && p && document.querySelector('#chart canvas') && c.title.startsWith('cpu.user{host=\"a\"}')\
               ? {query: c.query, xs: p.data[0], avg: p.data[1], min: p.data[2], max: p.data[3],\
                  parts: c.parts.map(x => x.archive), text: document.getElementById('resolutions').textContent}\
               : null;",
        )
        .await;
    let (status, api) = get(&format!(
        "http://{}{}",
        running.addr,
        chart["query"].as_str().unwrap()
    ))
    .await;
    assert_eq!(status, 200, "{api}");
    let points = api["points"].as_array().unwrap();
    assert_eq!(chart["xs"].as_array().unwrap().len(), points.len());
    for (i, p) in points.iter().enumerate() {
        assert_eq!(
            chart["xs"][i].as_f64().unwrap() * 1000.0,
            p["timestamp"].as_f64().unwrap()
        );
        for stat in ["avg", "min", "max"] {
            assert_eq!(
                chart[stat][i].as_f64(),
                p["values"][stat].as_f64(),
                "{stat} at point {i}"
            );
        }
    }
    let drawn = points
        .iter()
        .filter(|p| !p["values"]["avg"].is_null())
        .count();
    assert!(drawn > 100, "{drawn} points with data");
    assert_eq!(
        chart["parts"],
        json!(["1h", "10m", "20s"]),
        "{}",
        chart["text"]
    );
    browser.screenshot("series").await;

    // Dragging across the last fifth of the chart zooms in: a narrower range, read finer.
    browser.drag(".u-over", (150, 0), (300, 0)).await;
    let zoomed = browser
        .until(
            "the zoomed chart",
            &format!(
                "const c = window.strata.chart; return c && c.to - c.from < {} ? {{from: c.from, to: c.to, step: c.parts.length ? Math.min(...c.parts.map(x => x.step)) : null}} : null;",
                365 * 86_400_000i64 / 3
            ),
        )
        .await;
    assert!(
        zoomed["step"].as_i64().is_some_and(|s| s < 86_400),
        "finer points after zooming: {zoomed}"
    );
    browser.screenshot("zoomed").await;

    // A group: the series whose name has `cpu`, one line per host, in one request.
    browser.type_into("#q", "cpu").await;
    browser.click("#group-by option[value='host']").await;
    browser.click("#draw-group").await;
    let group = browser
        .until(
            "the group chart",
            "const c = window.strata.chart; return c && c.title.includes('by host')\
               ? {title: c.title, labels: c.lines.map(l => l.label), filled: c.lines.map(l => l.values.filter(v => v !== null).length)} : null;",
        )
        .await;
    assert_eq!(group["labels"], json!(["a", "b"]), "{group}");
    assert!(
        group["filled"]
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n.as_u64() > Some(100)),
        "{group}"
    );
    browser.screenshot("group").await;

    // The live view: its count grows while events are sent.
    browser.click("button[data-view='live']").await;
    let sender = tokio::spawn(send_live_events(running.addr, now));
    let count_of = "const r = document.querySelector('#live-list tr[data-series=\"live.requests\"]'); return r ? Number(r.dataset.count) : null;";
    let first = browser
        .until("live.requests in the live view", count_of)
        .await;
    let grown = browser
        .until(
            "a larger count",
            &format!("const r = document.querySelector('#live-list tr[data-series=\"live.requests\"]'); return r && Number(r.dataset.count) > {first} ? Number(r.dataset.count) : null;"),
        )
        .await;
    eprintln!("live view: count {first} then {grown}");
    browser.screenshot("live").await;

    // The status panel: a non-zero event rate while events arrive.
    browser.click("button[data-view='status']").await;
    let rate = browser
        .until(
            "a non-zero event rate",
            "const r = document.querySelector('#rates tr[data-protocol=\"total\"]'); return r && Number(r.dataset.rate) > 0 ? Number(r.dataset.rate) : null;",
        )
        .await;
    let (_, health) = get(&format!("http://{}/health", running.addr)).await;
    let (_, live) = get(&format!("http://{}/v1/live", running.addr)).await;
    eprintln!(
        "status panel: {rate} events/s; accepted {} by /health, live {}",
        health["pipeline"]["events_accepted"], live["series"][0]["open"]
    );
    let alerts = browser
        .until(
            "the alerts card",
            "const p = document.querySelector('#alerts-info'); return p && p.textContent ? p.textContent : null;",
        )
        .await;
    assert!(
        alerts.as_str().is_some_and(|t| t.starts_with("all ok")),
        "{alerts}"
    );
    browser.screenshot("status").await;
    sender.abort();

    let errors = browser.script_errors().await;
    assert!(errors.is_empty(), "script errors on the page: {errors:?}");
    browser.close().await;
    running.stop().await.unwrap();
    cleanup(&prefix).await;
}

async fn get(url: &str) -> (u16, Value) {
    let r = reqwest::get(url).await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// Posts a few events every 200 ms, stamped at the (still) clock's time.
async fn send_live_events(addr: std::net::SocketAddr, now: i64) {
    let http = reqwest::Client::new();
    loop {
        let body = format!(
            r#"[{{"name":"live.requests","type":"counter","value":1,"timestamp":{now}}},{{"name":"live.requests","type":"counter","value":2,"timestamp":{now}}}]"#
        );
        let _ = http
            .post(format!("http://{addr}/v1/metrics"))
            .body(body)
            .send()
            .await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
