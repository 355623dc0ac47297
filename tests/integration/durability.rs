//! The fault tests of durability (issue 12), against the real node: strata killed with -9 under
//! load, the node away for a minute, the disk bound reached, a torn log tail. Each sends a
//! steady load of acknowledged HTTP events over distinct series and values, then compares the
//! node with what was acknowledged: per series and archive, the sums of `count` and `sum`, and
//! no bucket stored twice. Each is bounded in time and stops by itself.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::Child;

use crate::support::*;

/// Series per request: every request carries one event of each, all with the request's number
/// as value, so a series' count and sum say exactly which requests the node holds.
const SERIES: usize = 20;
const WORKERS: usize = 4;

/// A test's data directory, config file and listening port.
struct Setup {
    scope: Scope,
    dir: PathBuf,
    config: PathBuf,
    port: u16,
}

impl Setup {
    /// `node` is where strata writes (the node, or a gate in front of it); `extra` is appended
    /// to the config.
    fn new(test: &str, node: &str, extra: &str) -> Self {
        Self::with_persist(test, node, extra, "")
    }

    /// [`Setup::new`] with more `[persist]` settings.
    fn with_persist(test: &str, node: &str, extra: &str, persist: &str) -> Self {
        let scope = Scope::new(test);
        let dir = std::env::temp_dir().join(format!("strata-{}", scope.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let archives = [
            archive("2s", "2s", "2 days", "day", "1s"),
            archive("1m", "1m", "2 months", "month", "1s"),
            archive("1h", "1h", "10 years", "year", "1s"),
        ]
        .concat();
        let config = format!(
            "[node]\nurl = \"{node}\"\n[index]\nprefix = \"{p}\"\ntemplate = \"{p}tpl\"\nreplicas = 0\n\
             [aliases]\nprefix = \"{p}alias-\"\numbrella = \"{p}all\"\n\
             [persist]\nflush_interval = \"200ms\"\nretry_max = \"1s\"\n{persist}\n\
             [durability]\ndir = \"{data}\"\ncheckpoint_interval = \"1s\"\n{extra}\n{archives}",
            p = scope.prefix,
            data = dir.join("data").display(),
        );
        let path = dir.join("archives.toml");
        std::fs::write(&path, config).unwrap();
        let port = free_address().port();
        Self {
            scope,
            dir,
            config: path,
            port,
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Starts `strata serve`; returns it, its log lines, and how long it took to listen.
    async fn start(&self) -> (Child, Arc<Mutex<Vec<String>>>, Duration) {
        let started = Instant::now();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "serve",
                "--config",
                self.config.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{}", self.port),
            ])
            .env("RUST_LOG", "info")
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        read_listen_addr_keeping(child.stderr.take().unwrap(), lines.clone()).await;
        (child, lines, started.elapsed())
    }

    async fn cleanup(self) {
        self.scope.cleanup().await;
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn kill_9(mut child: Child) {
    signal(&child, "-KILL");
    let _ = child.wait().await;
}

/// What the load saw: requests answered 200, refused (503, connection refused: nothing kept),
/// and those whose answer was lost (the connection broke mid-request: kept or not).
#[derive(Default, Debug)]
struct Tally {
    acked: Vec<u64>,
    refused: u64,
    refused_disk_full: u64,
    uncertain: Vec<u64>,
}

/// A steady load of requests from [`WORKERS`] clients until `stop` is set.
struct Load {
    stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
    workers: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(port: u16) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let next = Arc::new(AtomicU64::new(1));
        let workers = (0..WORKERS)
            .map(|_| {
                let (stop, tally, next) = (stop.clone(), tally.clone(), next.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .build()
                        .unwrap();
                    while !stop.load(Ordering::Relaxed) {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        let body = request_body(id);
                        let answer = http
                            .post(format!("http://127.0.0.1:{port}/v1/metrics"))
                            .body(body)
                            .send()
                            .await;
                        match answer {
                            Ok(r) if r.status().as_u16() == 200 => {
                                tally.lock().unwrap().acked.push(id)
                            }
                            Ok(r) if r.status().as_u16() == 503 => {
                                let body = r.text().await.unwrap_or_default();
                                {
                                    let mut t = tally.lock().unwrap();
                                    t.refused += 1;
                                    if body.contains("data directory is full") {
                                        t.refused_disk_full += 1;
                                    }
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Ok(r) => panic!("unexpected answer {}", r.status()),
                            Err(e) if e.is_connect() => {
                                tally.lock().unwrap().refused += 1;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(_) => tally.lock().unwrap().uncertain.push(id),
                        }
                    }
                })
            })
            .collect();
        Self {
            stop,
            tally,
            workers,
        }
    }

    fn acked(&self) -> usize {
        self.tally.lock().unwrap().acked.len()
    }

    fn disk_full_refusals(&self) -> u64 {
        self.tally.lock().unwrap().refused_disk_full
    }

    async fn finish(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.await.unwrap();
        }
        Arc::try_unwrap(self.tally).unwrap().into_inner().unwrap()
    }
}

fn request_body(id: u64) -> String {
    let events: Vec<String> = (0..SERIES)
        .map(|s| format!(r#"{{"name":"load","tags":{{"s":"{s}"}},"value":{id}}}"#))
        .collect();
    format!("[{}]", events.join(","))
}

/// (archive, series) → (Σ count, Σ sum).
type Totals = BTreeMap<(String, String), (u64, f64)>;

/// Per (archive, series): the sums of `count` and `sum` over its documents; and the buckets
/// stored more than once.
fn totals(docs: &[Value]) -> (Totals, usize) {
    let mut out = Totals::new();
    let mut seen = HashSet::new();
    let mut twice = 0;
    for d in docs {
        let key = (
            d["archive"].as_str().unwrap().to_string(),
            d["tags"]["s"].as_str().unwrap().to_string(),
        );
        if !seen.insert((key.clone(), d["@timestamp"].as_str().unwrap().to_string())) {
            twice += 1;
        }
        let e = out.entry(key).or_default();
        e.0 += d["count"].as_u64().unwrap();
        e.1 += d["sum"].as_f64().unwrap();
    }
    (out, twice)
}

/// Checks that every series of every archive holds exactly the acknowledged requests, plus
/// the same subset of the uncertain ones everywhere; returns how many uncertain ones landed.
fn assert_exactly_acknowledged(docs: &[Value], tally: &Tally) -> usize {
    let (totals, twice) = totals(docs);
    assert_eq!(twice, 0, "no bucket is stored twice");
    assert_eq!(
        totals.len(),
        3 * SERIES,
        "every series in every archive: {totals:?}"
    );
    let acked_count = tally.acked.len() as u64;
    let acked_sum: f64 = tally.acked.iter().map(|&id| id as f64).sum();
    let first = *totals.values().next().unwrap();
    for (key, &t) in &totals {
        assert_eq!(t, first, "{key:?} holds what every other series holds");
    }
    let (count, sum) = first;
    let landed = count.checked_sub(acked_count).unwrap_or_else(|| {
        panic!("acknowledged events lost: {count} in the node, {acked_count} acknowledged")
    }) as usize;
    // Which requests whose answer was lost landed: a subset of that size with that sum.
    let u = &tally.uncertain;
    assert!(u.len() <= 16, "few answers are lost at a kill");
    let found = (0u32..1 << u.len()).any(|mask| {
        mask.count_ones() as usize == landed
            && (0..u.len())
                .filter(|i| mask & (1 << i) != 0)
                .map(|i| u[i] as f64)
                .sum::<f64>()
                + acked_sum
                == sum
    });
    assert!(
        found,
        "the node holds the acknowledged requests and {landed} of the {} unanswered ones: sum {sum}, acknowledged sum {acked_sum}",
        u.len()
    );
    landed
}

#[tokio::test]
async fn kill_9_under_load_loses_no_acknowledged_event_and_writes_none_twice() {
    let setup = Setup::new("kill9", &node_url(), "");
    let (first, _, _) = setup.start().await;
    let load = Load::start(setup.port);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let acked_before = load.acked();
    kill_9(first).await;
    let (second, _, recovery) = setup.start().await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.finish().await;
    terminate(second).await;
    let docs = setup.scope.documents().await;
    let landed = assert_exactly_acknowledged(&docs, &tally);
    eprintln!(
        "kill -9: {} requests ({} events) acknowledged ({} before the kill), {} unanswered of which {landed} landed, {} refused; {} documents, 0 twice; listening again {} ms after the restart",
        tally.acked.len(),
        tally.acked.len() * SERIES,
        acked_before,
        tally.uncertain.len(),
        tally.refused,
        docs.len(),
        recovery.as_millis()
    );
    assert!(acked_before > 0);
    setup.cleanup().await;
}

#[tokio::test]
async fn a_torn_log_tail_is_cut_at_start_and_everything_acknowledged_is_kept() {
    let setup = Setup::new("torn", &node_url(), "");
    let (first, _, _) = setup.start().await;
    let http = reqwest::Client::new();
    let mut tally = Tally::default();
    for id in 1..=30u64 {
        let r = http
            .post(format!("http://127.0.0.1:{}/v1/metrics", setup.port))
            .body(request_body(id))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        tally.acked.push(id);
    }
    kill_9(first).await;
    // Power lost mid-write: the last segment ends in the first bytes of a record (a header
    // that promises 1000 bytes, and 5 of them).
    let mut torn = std::fs::OpenOptions::new()
        .append(true)
        .open(last_segment(&setup.data()))
        .unwrap();
    let mut partial = Vec::new();
    partial.extend_from_slice(&1000u32.to_le_bytes());
    partial.extend_from_slice(&0u32.to_le_bytes());
    partial.extend_from_slice(&1_000_000u64.to_le_bytes());
    partial.extend_from_slice(b"event");
    std::io::Write::write_all(&mut torn, &partial).unwrap();
    drop(torn);
    let (second, lines, _) = setup.start().await;
    let cut = lines
        .lock()
        .unwrap()
        .iter()
        .any(|l| l.contains("torn or damaged record") && l.contains("bytes=21"));
    assert!(cut, "start-up says what it cut off");
    terminate(second).await;
    let docs = setup.scope.documents().await;
    assert_eq!(assert_exactly_acknowledged(&docs, &tally), 0);
    setup.cleanup().await;
}

/// The newest log segment in a data directory.
fn last_segment(data: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(data.join("log"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segments.sort();
    segments.pop().unwrap()
}

/// A TCP forwarder to the node that can be closed (new connections refused, open ones cut)
/// and opened again: the node away, as strata sees it.
struct Gate {
    open: tokio::sync::watch::Sender<bool>,
    addr: String,
}

impl Gate {
    async fn start(node: String, open: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = tokio::sync::watch::channel(open);
        let node_addr = node.trim_start_matches("http://").to_string();
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !*rx.borrow() {
                    continue;
                }
                let (node_addr, mut rx) = (node_addr.clone(), rx.clone());
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&node_addr).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|open| !open) => {}
                    }
                });
            }
        });
        Self { open: tx, addr }
    }

    fn set(&self, open: bool) {
        self.open.send_replace(open);
    }
}

#[tokio::test]
async fn the_node_away_for_a_minute_under_load_loses_nothing() {
    let gate = Gate::start(node_url(), true).await;
    // A writer queue of 40 documents: the outage's buckets go to the on-disk backlog.
    let setup = Setup::with_persist("away60", &gate.addr, "", "queue_docs = 40");
    let (strata, _, _) = setup.start().await;
    let load = Load::start(setup.port);
    tokio::time::sleep(Duration::from_secs(2)).await;
    gate.set(false);
    let away = Instant::now();
    tokio::time::sleep(Duration::from_secs(60)).await;
    let acked_while_away = load.acked();
    let (_, health) = get_json(
        &setup.scope,
        format!("http://127.0.0.1:{}/health", setup.port),
    )
    .await;
    let backlog = &health["backlog"];
    assert!(backlog["documents"].as_u64().unwrap_or(0) > 0, "{health}");
    assert!(
        backlog["oldest_age_seconds"].as_u64().unwrap() >= 50,
        "{health}"
    );
    assert!(backlog["why"].as_str().is_some(), "{health}");
    gate.set(true);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let tally = load.finish().await;
    let back = Instant::now();
    terminate(strata).await;
    let docs = setup.scope.documents().await;
    assert_eq!(assert_exactly_acknowledged(&docs, &tally), 0);
    assert_eq!(tally.refused, 0, "ingest answered 200 throughout");
    eprintln!(
        "node away {} s (backlog {} documents, {} bytes, oldest {} s): {} requests ({} events) acknowledged ({} by the end of the outage), {} refused; {} documents, 0 twice; all written {} ms after it came back",
        away.elapsed().as_secs() - 3,
        backlog["documents"],
        backlog["bytes"],
        backlog["oldest_age_seconds"],
        tally.acked.len(),
        tally.acked.len() * SERIES,
        acked_while_away,
        tally.refused,
        docs.len(),
        back.elapsed().as_millis()
    );
    setup.cleanup().await;
}

#[tokio::test]
async fn at_the_disk_bound_ingest_answers_503_and_recovers_once_the_node_drains() {
    let gate = Gate::start(node_url(), false).await;
    let setup = Setup::new("diskbound", &gate.addr, "max_disk_bytes = 8388608\n");
    let (strata, _, _) = setup.start().await;
    let load = Load::start(setup.port);
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.disk_full_refusals() == 0 {
        assert!(Instant::now() < deadline, "the bound was not reached");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let at_bound = load.acked();
    let full = Instant::now();
    gate.set(true);
    // Ingest recovers: acknowledged requests grow well past where the bound stopped them.
    let deadline = Instant::now() + Duration::from_secs(60);
    while load.acked() < at_bound + 200 {
        assert!(Instant::now() < deadline, "ingest did not recover");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_after = full.elapsed();
    let tally = load.finish().await;
    terminate(strata).await;
    let docs = setup.scope.documents().await;
    assert_eq!(assert_exactly_acknowledged(&docs, &tally), 0);
    eprintln!(
        "disk bound 8 MiB, node away: {at_bound} requests acknowledged before 503s ({} refused for the disk); taking again {} ms after the node came back; {} acknowledged in all, {} documents, 0 twice",
        tally.refused_disk_full,
        recovered_after.as_millis(),
        tally.acked.len(),
        docs.len()
    );
    setup.cleanup().await;
}

#[tokio::test]
async fn bulk_items_answered_429_the_whole_run_are_retried_until_written() {
    let setup = Setup::new("retry429", &node_url(), "");
    let (strata, _, _) = setup.start().await;
    let load = Load::start(setup.port);
    // The 2 s archive's index, once strata created it.
    let deadline = Instant::now() + Duration::from_secs(30);
    let index = loop {
        let found = setup
            .scope
            .indices()
            .await
            .into_iter()
            .find(|i| i.contains("-2s-"));
        match found {
            Some(index) => break index,
            None => {
                assert!(Instant::now() < deadline, "no index for the 2s archive");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    // The node's flood-stage block: writes to that index get 429, the others go through. On
    // for 2.5 s, off for 0.5 s, for the whole run. Each window on is longer than the archive's
    // 2 s step, so at least one bucket's flush meets the block whatever the phase (shorter
    // windows once fell between the flushes every time and nothing was retried).
    let settings = format!("/{index}/_settings");
    let block = |on: bool| {
        let value = if on { Value::Bool(true) } else { Value::Null };
        setup.scope.send(
            reqwest::Method::PUT,
            &settings,
            serde_json::json!({"index.blocks.read_only_allow_delete": value}),
        )
    };
    for _ in 0..3 {
        assert_eq!(block(true).await.0, 200);
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert_eq!(block(false).await.0, 200);
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let tally = load.finish().await;
    let (_, health) = get_json(
        &setup.scope,
        format!("http://127.0.0.1:{}/health", setup.port),
    )
    .await;
    terminate(strata).await;
    let retried = health["pipeline"]["docs_retried"].as_u64().unwrap();
    assert!(retried > 0, "the 429s show as retries: {health}");
    assert_eq!(health["pipeline"]["docs_rejected"], 0, "{health}");
    let docs = setup.scope.documents().await;
    assert_eq!(assert_exactly_acknowledged(&docs, &tally), 0);
    eprintln!(
        "429s for 7.5 of 9 s on one index: {} requests ({} events) acknowledged, {retried} documents retried, {} documents, 0 twice",
        tally.acked.len(),
        tally.acked.len() * SERIES,
        docs.len()
    );
    setup.cleanup().await;
}
