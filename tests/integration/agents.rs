//! Real agents that report on their own schedule: collectd's `write_graphite` and
//! `write_riemann`, each in its own collectd, feeding strata for several seconds. The slowest
//! test of the suite; its module sorts first so that libtest starts it first and the rest of the
//! suite runs beside it (the suite's wall time is then about this test's length).

use std::time::Duration;

use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::pipeline::Running;

use crate::support::*;

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
