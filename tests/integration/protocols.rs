//! The other doors, with their real clients: statsd (the Python package), Graphite and Riemann
//! (riemann-client), DaTtSs partials, and UDP under bursts (collectd: see `agents`).

use std::time::Duration;

use serde_json::{json, Value};
use strata::clock::ManualClock;
use strata::pipeline::Running;
use strata::stats::StatsSnapshot;

use crate::support::*;

/// `start` with the 20 s archive and a statsd listener on a free port, its section extended by
/// `statsd_options` (lines of TOML).
async fn start_statsd(scope: &Scope, statsd_options: &str, clock: &ManualClock) -> Running {
    let extra = format!("{FAST}\n[statsd]\nlisten = \"127.0.0.1:0\"\n{statsd_options}");
    start(scope, &archive_20s(), &extra, clock).await
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
