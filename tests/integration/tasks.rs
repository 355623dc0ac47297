//! Stream tasks against the real node: Kapacitor's example alerting through a real webhook
//! server (with a hanging and a failing handler beside it), a restart in the middle of a raised
//! alert, a deadman, and a derived series archived in every archive.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::post as route_post;
use axum::{Json, Router};
use serde_json::Value;
use strata::clock::ManualClock;

use crate::support::*;

/// A webhook receiver: `/hook` keeps every body, `/hang` answers after 10 s, `/fail` answers 500.
async fn webhook_server() -> (String, Arc<Mutex<Vec<Value>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let kept = received.clone();
    let app = Router::new()
        .route(
            "/hook",
            route_post(move |Json(body): Json<Value>| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push(body);
                    "ok"
                }
            }),
        )
        .route(
            "/hang",
            route_post(|| async {
                tokio::time::sleep(Duration::from_secs(10)).await;
                "late"
            }),
        )
        .route(
            "/fail",
            route_post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "no") }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}"), received)
}

/// This test's alert index prefix: outside the archives' pattern (which starts with the
/// scope's prefix), and its own.
fn alerts_index_of(scope: &Scope) -> String {
    format!("alerts-{}", scope.prefix.trim_end_matches('-'))
}

/// Deletes the test's archive indices, its alert indices and their template.
async fn cleanup_with_alerts(scope: &Scope, alerts_index: &str) {
    for path in [
        format!("{alerts_index}-*"),
        format!("_index_template/{alerts_index}"),
    ] {
        scope
            .http
            .delete(format!("{}/{path}", scope.node))
            .send()
            .await
            .unwrap();
    }
    scope.cleanup().await;
}

/// Waits until `done` holds (or 10 s passed) and returns what `read` gives then.
async fn until<T>(read: impl Fn() -> T, done: impl Fn(&T) -> bool) -> T {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = read();
        if done(&v) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn tasks_config(hooks: &str, log: &std::path::Path, alerts_index: &str) -> String {
    format!(
        r#"{FAST}
[tasks]
grace = "0s"
alerts_index = "{alerts_index}"
[[handler]]
name = "hook"
kind = "http"
url = "{hooks}/hook"
[[handler]]
name = "hang"
kind = "http"
url = "{hooks}/hang"
timeout = "300ms"
retries = 1
backoff = "50ms"
[[handler]]
name = "fail"
kind = "http"
url = "{hooks}/fail"
retries = 1
backoff = "50ms"
[[handler]]
name = "file"
kind = "log"
path = "{log}"
[[task]]
name = "cpu_low"
kind = "stream"
names = ["cpu_idle"]
handlers = ["hook", "hang", "fail"]
script = """
// Kapacitor: stream.window(period: 10s, every: 10s).groupBy('host').mapReduce(mean('value')).alert().crit(lambda: "mean" < 30)
stream
  | window(period: 10s, every: 10s)
  | groupby(host)
  | mean()
  | alert(crit: < 30)
"""
[[task]]
name = "silent"
kind = "stream"
names = ["cpu_idle"]
handlers = ["file"]
script = "stream | groupby(host) | deadman(period: 25s)"
"#,
        log = log.display()
    )
}

/// Posts ten seconds of `cpu_idle` for hosts a and b, one event a second each, and returns how
/// long the slowest request took.
async fn post_window(
    scope: &Scope,
    running: &strata::pipeline::Running,
    start: i64,
    a: f64,
    b: f64,
) -> Duration {
    let mut slowest = Duration::ZERO;
    for s in 0..10 {
        let t = start + s * 1000;
        let body = format!(
            "{{\"name\":\"cpu_idle\",\"host\":\"a\",\"value\":{a},\"timestamp\":{t}}}\n{{\"name\":\"cpu_idle\",\"host\":\"b\",\"value\":{b},\"timestamp\":{t}}}\n"
        );
        let asked = Instant::now();
        let (status, answer, _) = post(scope, running, &body).await;
        slowest = slowest.max(asked.elapsed());
        assert_eq!(status, 200, "{answer}");
    }
    slowest
}

#[tokio::test]
async fn kapacitors_example_alerts_once_for_the_host_that_drops_even_across_a_restart() {
    let scope = Scope::new("tasks_kapacitor");
    let (hooks, received) = webhook_server().await;
    let log = std::env::temp_dir().join(format!("{}alerts.ndjson", scope.prefix));
    let alerts_index = alerts_index_of(&scope);
    let extra = tasks_config(&hooks, &log, &alerts_index);
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(60_000) - 120_000;
    let clock = ManualClock::new(t0);
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    let alerts_of = |r: &Arc<Mutex<Vec<Value>>>| r.lock().unwrap().clone();

    // Windows 0 and 1: both hosts well; window 2: host a drops below 30.
    let mut slowest = Duration::ZERO;
    for (w, a) in [(0, 80.0), (1, 80.0), (2, 10.0)] {
        let start_of = t0 + w * 10_000;
        slowest = slowest.max(post_window(&scope, &running, start_of, a, 70.0).await);
        let fed = 20 * (w as u64 + 1);
        stats_when(&running, Duration::from_secs(10), |s| s.tasks.events >= fed).await;
        clock.set(start_of + 10_000);
    }
    let got = until(|| alerts_of(&received), |v| !v.is_empty()).await;
    assert_eq!(got.len(), 1, "{got:#?}");
    let critical = &got[0];
    assert_eq!(critical["task"], "cpu_low");
    assert_eq!(critical["group"], serde_json::json!({"host": "a"}));
    assert_eq!(critical["level"], "critical");
    assert_eq!(critical["value"], 10.0);
    assert_eq!(critical["time_ms"], t0 + 20_000);
    let (status, current) = get_json(&scope, format!("http://{}/v1/alerts", running.addr)).await;
    assert_eq!(status, 200);
    let ids: Vec<_> = current["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].clone())
        .collect();
    assert_eq!(ids, ["cpu_low,host=a"]);

    // The hanging and the failing handler each fail, counted, while ingest answered at once.
    let stats = stats_when(&running, Duration::from_secs(10), |s| {
        s.tasks.handler_failures >= 2
    })
    .await;
    assert_eq!(stats.tasks.handler_failures, 2);
    println!("slowest ingest request while a handler hung: {slowest:?}");
    assert!(
        slowest < Duration::from_secs(2),
        "ingest waited for a handler: {slowest:?}"
    );

    // A restart while host a is critical: the level is read back, not sent again.
    running.stop().await.unwrap();
    let clock = ManualClock::new(t0 + 30_000);
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    post_window(&scope, &running, t0 + 30_000, 10.0, 70.0).await;
    stats_when(&running, Duration::from_secs(10), |s| s.tasks.events >= 20).await;
    clock.set(t0 + 40_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        alerts_of(&received).len(),
        1,
        "the raised alert was not sent again"
    );
    post_window(&scope, &running, t0 + 40_000, 80.0, 70.0).await;
    stats_when(&running, Duration::from_secs(10), |s| s.tasks.events >= 40).await;
    clock.set(t0 + 50_000);
    let got = until(|| alerts_of(&received), |v| v.len() >= 2).await;
    let seen: Vec<_> = got
        .iter()
        .map(|a| {
            (
                a["group"]["host"].clone(),
                a["level"].clone(),
                a["time_ms"].clone(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("a".into(), "critical".into(), (t0 + 20_000).into()),
            ("a".into(), "ok".into(), (t0 + 40_000).into())
        ]
    );
    let (_, current) = get_json(&scope, format!("http://{}/v1/alerts", running.addr)).await;
    assert_eq!(current["alerts"], serde_json::json!([]));
    let (_, history) = get_json(
        &scope,
        format!(
            "http://{}/v1/alerts/history?from={}&to={}",
            running.addr,
            t0,
            t0 + 60_000
        ),
    )
    .await;
    let levels: Vec<_> = history["transitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["level"].clone())
        .collect();
    assert_eq!(levels, ["critical", "ok"], "{history}");

    // Deadman: both hosts silent for 25 s by the clock, then host a sends again.
    clock.set(t0 + 80_000);
    let lines = || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| {
                (
                    v["group"]["host"].as_str().unwrap().to_string(),
                    v["level"].as_str().unwrap().to_string(),
                )
            })
            .collect::<Vec<_>>()
    };
    let silent = until(lines, |l| l.len() >= 2).await;
    assert_eq!(
        silent,
        [
            ("a".into(), "critical".into()),
            ("b".into(), "critical".into())
        ]
    );
    let body = format!(
        "{{\"name\":\"cpu_idle\",\"host\":\"a\",\"value\":50,\"timestamp\":{}}}\n",
        t0 + 80_000
    );
    post(&scope, &running, &body).await;
    let back = until(lines, |l| l.len() >= 3).await;
    assert_eq!(back[2], ("a".into(), "ok".into()));
    assert_eq!(
        alerts_of(&received).len(),
        2,
        "the deadman's alerts go only to its own handler"
    );

    running.stop().await.unwrap();
    let _ = std::fs::remove_file(&log);
    cleanup_with_alerts(&scope, &alerts_index).await;
}

#[tokio::test]
async fn a_mean_per_dc_is_emitted_and_archived_in_every_archive_and_feeds_another_task() {
    let scope = Scope::new("tasks_emit");
    let log = std::env::temp_dir().join(format!("{}dc_high.ndjson", scope.prefix));
    let alerts_index = alerts_index_of(&scope);
    let extra = format!(
        r#"{FAST}
[tasks]
grace = "0s"
alerts_index = "{alerts_index}"
[[task]]
name = "dc_mean"
kind = "stream"
names = ["cpu_idle"]
script = 'stream | window(period: 20s) | groupby(dc) | mean() | emit("cpu_idle.dc_mean")'
# Fed by dc_mean: its window waits for points emitted after their own window's end.
[[handler]]
name = "file"
kind = "log"
path = "{log}"
[[task]]
name = "dc_high"
kind = "stream"
names = ["cpu_idle.dc_mean"]
handlers = ["file"]
script = 'stream | window(period: 20s) | groupby(dc) | max() | alert(crit: > 40)'
"#,
        log = log.display()
    );
    let archives = format!(
        "{}{}",
        archive_20s(),
        archive("10m", "10m", "2 months", "month", "1m")
    );
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(600_000) - 600_000;
    let clock = ManualClock::new(t0);
    let running = start(&scope, &archives, &extra, &clock).await;
    let mut body = String::new();
    for (host, dc, v) in [("a", "eu", 10.0), ("b", "eu", 30.0), ("c", "us", 50.0)] {
        for s in [1, 5, 9] {
            body.push_str(&format!(
                "{{\"name\":\"cpu_idle\",\"host\":\"{host}\",\"tags\":{{\"dc\":\"{dc}\"}},\"value\":{v},\"timestamp\":{}}}\n",
                t0 + s * 1000
            ));
        }
    }
    let (status, answer, _) = post(&scope, &running, &body).await;
    assert_eq!(status, 200, "{answer}");
    stats_when(&running, Duration::from_secs(10), |s| s.tasks.events >= 9).await;
    clock.set(t0 + 20_000);
    let stats = stats_when(&running, Duration::from_secs(10), |s| s.tasks.emitted >= 2).await;
    assert_eq!(stats.tasks.emitted, 2);
    // dc_high took both derived points into its window [t0, t0 + 20 s), which closes 20 s
    // later than its own grace alone would (dc_mean's window).
    stats_when(&running, Duration::from_secs(10), |s| s.tasks.events >= 11).await;
    clock.set(t0 + 39_999);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(logged(&log), [], "not closed yet");
    clock.set(t0 + 40_000);
    let alerts = until(|| logged(&log), |l| !l.is_empty()).await;
    assert_eq!(alerts, [("critical".to_string(), 50.0)]);
    assert_eq!(running.stats.snapshot().tasks.events_late, 0);
    let _ = std::fs::remove_file(&log);
    running.stop().await.unwrap();
    scope.refresh().await;
    let derived: Vec<(String, String, u64, f64, i64)> = scope
        .documents()
        .await
        .iter()
        .filter(|d| d["name"] == "cpu_idle.dc_mean")
        .map(|d| {
            (
                d["archive"].as_str().unwrap().to_string(),
                d["tags"]["dc"].as_str().unwrap().to_string(),
                d["count"].as_u64().unwrap(),
                d["avg"].as_f64().unwrap(),
                ms(d["@timestamp"].as_str().unwrap()),
            )
        })
        .collect();
    let mut derived = derived;
    derived.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert_eq!(
        derived,
        vec![
            ("10m".into(), "eu".into(), 1, 20.0, t0),
            ("10m".into(), "us".into(), 1, 50.0, t0),
            ("20s".into(), "eu".into(), 1, 20.0, t0),
            ("20s".into(), "us".into(), 1, 50.0, t0),
        ]
    );
    cleanup_with_alerts(&scope, &alerts_index).await;
}

/// The transitions a log handler wrote: (level, value).
fn logged(path: &std::path::Path) -> Vec<(String, f64)> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|v| {
            (
                v["level"].as_str().unwrap().to_string(),
                v["value"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_batch_task_with_hysteresis_raises_once_where_its_hourly_mean_oscillates() {
    let scope = Scope::new("tasks_batch");
    let alerts_index = alerts_index_of(&scope);
    let dir = std::env::temp_dir();
    let (flappy_log, steady_log) = (
        dir.join(format!("{}flappy.ndjson", scope.prefix)),
        dir.join(format!("{}steady.ndjson", scope.prefix)),
    );
    let task = |name: &str, log: &std::path::Path, alert: &str| {
        format!(
            r#"
[[handler]]
name = "{name}_log"
kind = "log"
path = "{log}"
[[task]]
name = "{name}"
kind = "batch"
names = ["load"]
every = "1m"
range = "1h"
archive = "10m"
handlers = ["{name}_log"]
script = "batch | groupby(host) | mean() | alert({alert})"
"#,
            log = log.display()
        )
    };
    let extra = format!(
        "{FAST}\n[tasks]\nalerts_index = \"{alerts_index}\"\n{}{}",
        task("flappy", &flappy_log, "crit: > 52"),
        task("steady", &steady_log, "crit: > 52, crit_reset: < 40")
    );
    let archives = format!(
        "{}{}",
        archive_20s(),
        archive("10m", "10m", "2 months", "month", "1m")
    );
    // Four hours of 10-minute buckets: six at 44, six at 56, twice over; the mean of the last
    // hour climbs from 44 to 56 and back, crossing 52 both ways.
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(3_600_000) - 86_400_000;
    let ndjson: String = (0..24)
        .map(|i| {
            let v = if i % 12 < 6 { 44 } else { 56 };
            format!(
                "{{\"name\":\"load\",\"host\":\"a\",\"value\":{v},\"timestamp\":{}}}\n",
                t0 + i * 600_000 + 5_000
            )
        })
        .collect();
    replay_into_node(&scope.config(&archives, ""), &ndjson).await;
    scope.refresh().await;

    let clock = ManualClock::new(t0 + 3_600_000 - 1);
    let running = start(&scope, &archives, &extra, &clock).await;
    for run in 0..19u64 {
        clock.set(t0 + 3_600_000 + run as i64 * 600_000);
        let stats = stats_when(&running, Duration::from_secs(10), |s| {
            s.tasks.batch_runs >= 2 * (run + 1)
        })
        .await;
        assert_eq!(
            stats.tasks.batch_runs,
            2 * (run + 1),
            "one run of each task per step"
        );
    }
    let flappy = until(|| logged(&flappy_log), |l| l.len() >= 3).await;
    assert_eq!(
        flappy,
        [
            ("critical".to_string(), 54.0),
            ("ok".to_string(), 52.0),
            ("critical".to_string(), 54.0)
        ],
        "without hysteresis the level follows the mean across 52"
    );
    let steady = logged(&steady_log);
    assert_eq!(
        steady,
        [("critical".to_string(), 54.0)],
        "with crit_reset < 40: raised once"
    );
    assert_eq!(running.stats.snapshot().tasks.batch_failures, 0);
    running.stop().await.unwrap();

    // The same runs replayed offline by `strata task test --from --to` give the same alerts.
    let config_file = dir.join(format!("{}batch.toml", scope.prefix));
    std::fs::write(&config_file, scope.config_text(&archives, &extra)).unwrap();
    let rfc = |t: i64| {
        chrono::DateTime::from_timestamp_millis(t)
            .unwrap()
            .to_rfc3339()
    };
    for (name, live) in [("flappy", &flappy), ("steady", &steady)] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "task",
                "test",
                name,
                "--from",
                &rfc(t0 + 3_600_000 - 1_000),
                "--to",
                &rfc(t0 + 4 * 3_600_000),
            ])
            .arg("--config")
            .arg(&config_file)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let offline: Vec<(String, f64)> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Value>(l).unwrap())
            .map(|v| {
                (
                    v["level"].as_str().unwrap().to_string(),
                    v["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(&offline, live, "{name}");
        println!("{}", String::from_utf8_lossy(&out.stderr).trim());
    }
    let _ = std::fs::remove_file(&config_file);
    for log in [&flappy_log, &steady_log] {
        let _ = std::fs::remove_file(log);
    }
    cleanup_with_alerts(&scope, &alerts_index).await;
}

#[tokio::test]
async fn task_test_on_a_recording_gives_the_alerts_of_the_live_run() {
    let scope = Scope::new("tasks_record");
    let (hooks, received) = webhook_server().await;
    let alerts_index = alerts_index_of(&scope);
    let extra = format!(
        r#"{FAST}
[tasks]
grace = "0s"
alerts_index = "{alerts_index}"
[[handler]]
name = "hook"
kind = "http"
url = "{hooks}/hook"
[[task]]
name = "cpu_low"
kind = "stream"
names = ["cpu_idle"]
handlers = ["hook"]
script = "stream | window(period: 10s) | groupby(host) | mean() | alert(crit: < 30, crit_reset: > 35)"
"#
    );
    let now = chrono::Utc::now().timestamp_millis();
    let t0 = now - now.rem_euclid(60_000) - 120_000;
    let clock = ManualClock::new(t0);
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    // The recording is registered once the answer's headers are in.
    let recording = scope
        .http
        .get(format!(
            "http://{}/v1/record?names=cpu_idle&count=80",
            running.addr
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(recording.status(), 200);
    let recorded = tokio::spawn(recording.text());
    for (w, a) in [(0, 80.0), (1, 10.0), (2, 33.0), (3, 80.0)] {
        post_window(&scope, &running, t0 + w * 10_000, a, 70.0).await;
        let fed = 20 * (w as u64 + 1);
        stats_when(&running, Duration::from_secs(10), |s| s.tasks.events >= fed).await;
        clock.set(t0 + (w + 1) * 10_000);
    }
    let live = until(|| received.lock().unwrap().clone(), |v| v.len() >= 2).await;
    let recorded = tokio::time::timeout(Duration::from_secs(10), recorded)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(recorded.lines().count(), 80);
    running.stop().await.unwrap();

    let dir = std::env::temp_dir().join(format!("{}record", scope.prefix));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("events.ndjson"), &recorded).unwrap();
    std::fs::write(
        dir.join("archives.toml"),
        scope.config_text(&archive_20s(), &extra),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["task", "test", "cpu_low", "--events"])
        .arg(dir.join("events.ndjson"))
        .arg("--config")
        .arg(dir.join("archives.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Vec<Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let key = |a: &Value| {
        (
            a["id"].clone(),
            a["level"].clone(),
            a["value"].clone(),
            a["time_ms"].clone(),
        )
    };
    let live: Vec<_> = live.iter().map(key).collect();
    let offline: Vec<_> = offline
        .iter()
        .filter(|l| l["kind"] == "alert")
        .map(key)
        .collect();
    // a: critical at 10 (window 1), kept at 33 by the reset (> 35), ok at 80 (window 3).
    assert_eq!(live.len(), 2, "{live:?}");
    assert_eq!(offline, live);
    println!(
        "task test stderr: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    std::fs::remove_dir_all(&dir).unwrap();
    cleanup_with_alerts(&scope, &alerts_index).await;
}

#[tokio::test]
async fn tasks_change_without_a_restart_by_cli_api_and_sighup_and_a_bad_file_changes_nothing() {
    let scope = Scope::new("tasks_reload");
    let dir = std::env::temp_dir().join(format!("{}reload", scope.prefix));
    std::fs::create_dir_all(dir.join("tasks")).unwrap();
    let alerts_index = alerts_index_of(&scope);
    let extra = format!("[tasks]\ndir = \"tasks\"\nalerts_index = \"{alerts_index}\"\n");
    std::fs::write(
        dir.join("archives.toml"),
        scope.config_text(&archive_20s(), &extra),
    )
    .unwrap();
    let task_file = |name: &str, script: &str| {
        format!("[[task]]\nname = \"{name}\"\nkind = \"stream\"\nnames = [\"cpu_idle\"]\nscript = \"{script}\"\n")
    };
    std::fs::write(
        dir.join("tasks/low.toml"),
        task_file("low", "stream | window(10s) | mean | alert(crit: < 30)"),
    )
    .unwrap();
    let strata = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(args)
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).to_string()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let config = dir.join("archives.toml");
    let config = config.to_str().unwrap();
    let (ok, listed) = strata(&["task", "list", "--config", config]);
    assert!(
        ok && listed.starts_with("low\tstream\tenabled\tnames cpu_idle"),
        "{listed}"
    );

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["serve", "--config", config, "--listen", "127.0.0.1:0"])
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let addr = read_listen_addr(child.stderr.take().unwrap()).await;
    let url = format!("http://{addr}");
    let tasks = || async {
        let (_, v) = get_json(&scope, format!("{url}/v1/tasks")).await;
        v["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["name"].as_str().unwrap().to_string(),
                    t["enabled"].as_bool().unwrap(),
                )
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(tasks().await, [("low".to_string(), true)]);
    let (ok, said) = strata(&["task", "disable", "low", "--url", &url]);
    assert!(ok, "{said}");
    assert_eq!(said.trim(), "low: disabled");
    assert_eq!(tasks().await, [("low".to_string(), false)]);
    let (ok, listed) = strata(&["task", "list", "--url", &url]);
    assert!(
        ok && listed.starts_with("low\tstream\tdisabled"),
        "{listed}"
    );
    let (ok, shown) = strata(&["task", "show", "low", "--url", &url]);
    assert!(
        ok && shown.contains("enabled: false") && shown.contains("script:\nstream | window(10s)"),
        "{shown}"
    );
    let (ok, said) = strata(&["task", "enable", "nope", "--url", &url]);
    assert!(
        !ok && said.contains("404") && said.contains("no task named"),
        "{said}"
    );
    let (ok, _) = strata(&["task", "enable", "low", "--url", &url]);
    assert!(ok);
    assert_eq!(tasks().await, [("low".to_string(), true)]);

    // A file with a mistake: refused with its line and column, the running tasks as they were.
    std::fs::write(
        dir.join("tasks/low.toml"),
        task_file("low", "stream | window(10s) | mean | alert(crit: 30)"),
    )
    .unwrap();
    let r = scope
        .http
        .post(format!("{url}/v1/tasks/reload"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let why = r.text().await.unwrap();
    assert!(why.contains("task.low.script = line 1, column 37"), "{why}");
    assert_eq!(tasks().await, [("low".to_string(), true)]);

    // SIGHUP reads the files again.
    std::fs::write(
        dir.join("tasks/low.toml"),
        task_file("high", "stream | window(10s) | mean | alert(crit: > 90)"),
    )
    .unwrap();
    signal(&child, "-HUP");
    let deadline = Instant::now() + Duration::from_secs(10);
    while tasks().await != [("high".to_string(), true)] && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(tasks().await, [("high".to_string(), true)]);
    terminate(child).await;
    std::fs::remove_dir_all(&dir).unwrap();
    cleanup_with_alerts(&scope, &alerts_index).await;
}

#[tokio::test]
async fn maintenance_deletes_alert_history_past_its_retention() {
    let scope = Scope::new("tasks_history");
    let alerts_index = alerts_index_of(&scope);
    let (old, kept) = (
        format!("{alerts_index}-history-2020.01"),
        format!("{alerts_index}-history-2026.11"),
    );
    for index in [&old, &kept] {
        let r = scope
            .http
            .put(format!("{}/{index}", scope.node))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    }
    let extra = format!(
        "[tasks]\nalerts_index = \"{alerts_index}\"\nalerts_retention = \"1 year\"\n[[task]]\nname = \"t\"\nkind = \"stream\"\nnames = [\"x\"]\nscript = \"stream | window(10s) | mean | alert(crit: < 1)\"\n"
    );
    let clock = ManualClock::new(ms("2026-12-01T10:00:00Z"));
    let running = start(&scope, &archive_20s(), &extra, &clock).await;
    let stats = stats_when(&running, Duration::from_secs(10), |s| {
        s.maintenance.is_some()
    })
    .await;
    assert!(
        stats
            .maintenance
            .as_ref()
            .is_some_and(|m| m.error.is_none()),
        "{:?}",
        stats.maintenance
    );
    let (_, listed) = scope
        .get(&format!("/_cat/indices/{alerts_index}-*?format=json"))
        .await;
    let names: Vec<_> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["index"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [kept]);
    running.stop().await.unwrap();
    cleanup_with_alerts(&scope, &alerts_index).await;
}
