//! Checkpoint and recovery at scale, with the real binary and a real node: 1 000 000 series are
//! posted to `strata serve` (three archives, the finest with percentiles, as archives.toml
//! ships), a checkpoint is taken, strata is killed with -9 and started again on the same data
//! directory. Prints the checkpoint's size and how long taking and writing it took (from
//! strata's log), the resident memory before the kill and after the restart, and how long the
//! restart took until strata listened.
//!
//!   STRATA_BENCH_NODE=http://127.0.0.1:9200 cargo bench --bench recovery
//!   (scripts/bench starts a node and runs every benchmark)
//!
//! Knobs (environment): BENCH_SERIES (1000000), BENCH_BATCH (5000 events per request),
//! BENCH_VERBOSE (set: strata's log on stderr).

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running `strata serve` and every line it logged.
struct Strata {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Strata {
    /// Starts it and waits until it listens; returns it and how long that took.
    fn start(config: &str, port: u16) -> (Self, Duration) {
        let started = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "serve",
                "--config",
                config,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let kept = lines.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if std::env::var_os("BENCH_VERBOSE").is_some() {
                    eprintln!("strata: {line}");
                }
                if line.contains("listening addr=") {
                    let _ = tx.send(());
                }
                kept.lock().unwrap().push(line);
            }
        });
        rx.recv_timeout(Duration::from_secs(600))
            .expect("strata listens");
        (Self { child, lines }, started.elapsed())
    }

    fn rss_mb(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap();
        kb / 1024.0
    }

    /// The first logged line containing `what`, waiting up to `wait` for it.
    fn wait_for_line(&self, what: &str, after: usize, wait: Duration) -> String {
        let deadline = Instant::now() + wait;
        loop {
            if let Some(l) = self
                .lines
                .lock()
                .unwrap()
                .iter()
                .skip(after)
                .find(|l| l.contains(what))
            {
                return l.clone();
            }
            assert!(Instant::now() < deadline, "strata did not log {what:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        let _ = self.child.wait();
    }
}

/// The value of `field=` in a log line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split(&format!("{name}="))
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .unwrap_or("?")
}

fn main() {
    let node = std::env::var("STRATA_BENCH_NODE")
        .expect("set STRATA_BENCH_NODE to a node URL (scripts/bench does)");
    let (series, batch) = (knob("BENCH_SERIES", 1_000_000), knob("BENCH_BATCH", 5000));
    let dir = std::env::temp_dir().join(format!("strata-bench-recovery-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let prefix = format!("bench-{}-", std::process::id());
    let config = dir.join("archives.toml");
    std::fs::write(
        &config,
        format!(
            r#"[node]
url = "{node}"
[index]
prefix = "{prefix}"
template = "{prefix}tpl"
replicas = 0
[consolidate]
max_series = 2000000
[durability]
dir = "data"
checkpoint_interval = "5s"
[[archive]]
name = "20s"
step = "20s"
retention = "2 days"
index_period = "day"
lateness = "10m"
percentiles = [50, 90, 99]
[[archive]]
name = "10m"
step = "10m"
retention = "2 months"
index_period = "month"
lateness = "10m"
[[archive]]
name = "1h"
step = "1h"
retention = "10 years"
index_period = "year"
lateness = "10m"
"#
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_string();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (first, _) = Strata::start(&config, port);

    let http = reqwest::blocking::Client::new();
    let started = Instant::now();
    for b in 0..series.div_ceil(batch) {
        let items: Vec<String> = (b * batch..((b + 1) * batch).min(series))
            .map(|s| {
                format!(
                    r#"{{"name":"bench.recovery.{}","host":"host-{}","value":{}.5}}"#,
                    s % 100,
                    s / 100,
                    s % 50
                )
            })
            .collect();
        let r = http
            .post(format!("http://127.0.0.1:{port}/v1/metrics"))
            .body(format!("[{}]", items.join(",")))
            .send()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200, "{}", r.text().unwrap());
    }
    let load = started.elapsed();
    // The next checkpoint holds every series.
    let seen = first.lines.lock().unwrap().len();
    let taken = first.wait_for_line("checkpoint taken", seen, Duration::from_secs(60));
    let written = first.wait_for_line("checkpoint written", seen, Duration::from_secs(120));
    let rss_before = first.rss_mb();
    first.kill_9();

    let (second, restart) = Strata::start(&config, port);
    let rss_after = second.rss_mb();
    let replayed = second.wait_for_line("log replayed", 0, Duration::from_secs(1));
    second.kill_9();
    println!(
        "recovery ({series} series x 3 archives, the finest with percentiles; loaded in {:.1} s): checkpoint {} bytes, consolidator paused {} ms to take it, written (with fsync) in {} ms; RSS {rss_before:.0} MB before kill -9, {rss_after:.0} MB after the restart; restart to listening {} ms (checkpoint restored, {} log records replayed in {} ms)",
        load.as_secs_f64(),
        field(&taken, "bytes"),
        field(&taken, "took_ms"),
        field(&written, "took_ms"),
        restart.as_millis(),
        field(&replayed, "records"),
        field(&replayed, "took_ms"),
    );

    let indices: serde_json::Value = http
        .get(format!("{node}/_cat/indices/{prefix}*?format=json&h=index"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    let names: Vec<&str> = indices
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["index"].as_str())
        .collect();
    if !names.is_empty() {
        http.delete(format!("{node}/{}", names.join(",")))
            .send()
            .unwrap();
    }
    http.delete(format!("{node}/_index_template/{prefix}tpl"))
        .send()
        .unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
