//! Benchmarks of the consolidation core (no network): throughput on one core with 100 000 series
//! × 3 archives, and resident memory per (series × archive) accumulator at 1 million series.
//!
//!   cargo bench --bench consolidate                 both
//!   cargo bench --bench consolidate -- throughput   one of them (throughput | sketches | memory | log | tasks)
//!
//! `sketches` is the throughput run with `percentiles` on every archive (a quantile sketch per
//! bucket). `tasks` is the consolidation thread in batches of 5 000 events, as the consolidator
//! task runs it, handing each batch to the stream tasks' feed, with a second thread running
//! the tasks as the runner does: no task, then 100 tasks of which 10 take the load's names
//! (each one name of the 100: a tenth of the events), then 100 of which 10 take every event
//! (a glob), alternated twice.

use std::time::Instant;

use strata::consolidate::{ArchiveSpec, Consolidator};
use strata::event::{Event, MetricKind, Sample, SeriesKey};

const ARCHIVES: [ArchiveSpec; 3] = [
    ArchiveSpec {
        step_ms: 20_000,
        lateness_ms: 10_000,
        sketches: false,
    },
    ArchiveSpec {
        step_ms: 600_000,
        lateness_ms: 10_000,
        sketches: false,
    },
    ArchiveSpec {
        step_ms: 3_600_000,
        lateness_ms: 10_000,
        sketches: false,
    },
];

fn key(i: usize) -> SeriesKey {
    let host = format!("host-{:04}", i % 1000);
    let series = format!("svc.requests.{}", i / 1000);
    SeriesKey::new(&series, Some(&host), &mut [("dc", "par1"), ("env", "prod")])
}

fn throughput(archives: &[ArchiveSpec], label: &str) {
    const SERIES: usize = 100_000;
    const EVENTS: usize = 30_000_000;
    // Every series reports every 10 s; the clock ticks every second of event time.
    let mut events: Vec<Event> = (0..SERIES)
        .map(|i| Event::value(key(i), MetricKind::Gauge, 0.0, 0))
        .collect();
    let per_event_ms = 10_000.0 / SERIES as f64;
    let base = 1_767_225_600_000i64;
    let mut c = Consolidator::new(archives, 2_000_000);
    let mut closed = Vec::with_capacity(1 << 20);
    let mut docs = 0usize;
    let mut next_tick = base + 1000;
    let start = Instant::now();
    for n in 0..EVENTS {
        let ts = base + (n as f64 * per_event_ms) as i64;
        let e = &mut events[n % SERIES];
        e.sample = Sample::Value((n % 97) as f64);
        e.timestamp = ts;
        c.record_event(e).expect("under the series limit");
        if ts >= next_tick {
            c.flush_due(ts, &mut closed);
            docs += closed.len();
            closed.clear();
            next_tick += 1000;
        }
    }
    c.flush_all(&mut closed);
    docs += closed.len();
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{label}: {EVENTS} events, {SERIES} series x {} archives, {docs} buckets closed in {secs:.2} s = {:.2} M events/s (one core)",
        archives.len(),
        EVENTS as f64 / secs / 1e6
    );
}

fn rss_bytes() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<usize>().ok())
        .map(|kb| kb * 1024)
        .unwrap_or(0)
}

fn memory() {
    const SERIES: usize = 1_000_000;
    let before = rss_bytes();
    let mut c = Consolidator::new(&ARCHIVES, SERIES);
    let ts = 1_767_225_600_000i64;
    for i in 0..SERIES {
        let e = Event::value(key(i), MetricKind::Gauge, i as f64, ts);
        c.record_event(&e).expect("under the series limit");
    }
    let after = rss_bytes();
    let accumulators = SERIES * ARCHIVES.len();
    println!(
        "memory: {SERIES} series x {} archives = {accumulators} open accumulators; RSS grew {:.1} MiB = {:.0} bytes per accumulator (series keys included)",
        ARCHIVES.len(),
        (after - before) as f64 / (1 << 20) as f64,
        (after - before) as f64 / accumulators as f64
    );
    assert_eq!(c.open_buckets(), accumulators);
}

/// What the write-ahead log adds per event on the consolidator's thread (encoding a batch as a
/// record) and on the log thread (framing it with its CRC), and the bytes it writes.
fn log_cost() {
    const SERIES: usize = 100_000;
    const BATCH: usize = 5_000;
    const BATCHES: usize = 2_000;
    let batches: Vec<Vec<Event>> = (0..16)
        .map(|b| {
            (0..BATCH)
                .map(|i| {
                    let s = (b * BATCH + i) % SERIES;
                    Event::value(
                        key(s),
                        MetricKind::Gauge,
                        (i % 50) as f64 + 0.5,
                        1_767_225_600_000 + i as i64,
                    )
                })
                .collect()
        })
        .collect();
    let mut payload = Vec::new();
    let mut group = Vec::new();
    let (mut encode, mut frame, mut bytes) = (0.0, 0.0, 0usize);
    for n in 0..BATCHES {
        payload.clear();
        group.clear();
        let t = Instant::now();
        strata::durable::record::encode_batch(true, &batches[n % batches.len()], &mut payload);
        encode += t.elapsed().as_secs_f64();
        let t = Instant::now();
        strata::durable::log::frame(n as u64 + 1, &payload, &mut group);
        frame += t.elapsed().as_secs_f64();
        bytes += group.len();
    }
    let events = (BATCHES * BATCH) as f64;
    println!(
        "log: {} events in batches of {BATCH}: encoding {:.1} ns/event (consolidator thread), framing and CRC {:.1} ns/event (log thread), {:.1} bytes/event",
        BATCHES * BATCH,
        encode / events * 1e9,
        frame / events * 1e9,
        bytes as f64 / events
    );
}

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let wants = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    if wants("throughput") {
        throughput(&ARCHIVES, "throughput");
    }
    if wants("sketches") {
        let sketched = ARCHIVES.map(|a| ArchiveSpec {
            sketches: true,
            ..a
        });
        throughput(&sketched, "throughput with sketches");
    }
    if wants("memory") {
        memory();
    }
    if wants("log") {
        log_cost();
    }
    if wants("tasks") {
        for round in 1..=2 {
            for (label, matching) in [
                ("no task", Matching::None),
                ("100 tasks, 10 on one name each", Matching::OneNameEach),
                ("100 tasks, 10 on every event", Matching::Everything),
            ] {
                with_tasks(label, matching, round);
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Matching {
    None,
    OneNameEach,
    Everything,
}

/// The `[[task]]` tables: 90 on names the load never sends (half exact, half globs), and 10 on
/// the load as `matching` says; each a 10 s mean per host alerting below a threshold.
fn task_tables(matching: Matching) -> String {
    if matching == Matching::None {
        return String::new();
    }
    let mut text = String::new();
    for k in 0..100 {
        let names = match (k < 10, matching) {
            (true, Matching::OneNameEach) => format!("\"svc.requests.{k}\""),
            (true, _) => "\"svc.requests.*\"".to_string(),
            (false, _) if k % 2 == 0 => format!("\"other.metric.{k}\""),
            (false, _) => format!("\"other.{k}.*\""),
        };
        text.push_str(&format!(
            "[[task]]\nname = \"t{k}\"\nkind = \"stream\"\nnames = [{names}]\nscript = \"stream | window(10s) | groupby(host) | mean | alert(crit: < -1)\"\n"
        ));
    }
    text
}

fn with_tasks(label: &str, matching: Matching, round: u32) {
    use strata::tasks::feed::{task_feed, NameIndex};
    use strata::tasks::set::{StreamTask, StreamTasks};
    const SERIES: usize = 100_000;
    const EVENTS: usize = 30_000_000;
    const BATCH: usize = 5_000;
    let config = strata::config::Config::from_toml(
        &format!("[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n{}", task_tables(matching)),
        std::path::Path::new("bench.toml"),
    )
    .expect("a valid configuration");
    let stats = std::sync::Arc::new(strata::stats::Stats::default());
    let (feed, mut queue) = task_feed(
        NameIndex::of(&config.tasks.list),
        config.tasks.queue_events,
        stats.clone(),
    );
    let base = 1_767_225_600_000i64;
    let tasks: Vec<StreamTask> = config
        .tasks
        .list
        .iter()
        .map(|t| StreamTask::new(&config.tasks, t, base))
        .collect();
    // The runner's work on its own thread: record each batch, advance when a window is due.
    let runner = std::thread::spawn(move || {
        let mut set = StreamTasks::new(tasks);
        let (mut taken, mut alerts) = (0u64, 0u64);
        while let Some(events) = queue.events.blocking_recv() {
            queue.taken(events.len());
            let now = events.last().map_or(0, |e| e.timestamp);
            for e in &events {
                set.record(e, now);
            }
            taken += events.len() as u64;
            if set.next_due().is_some_and(|d| d <= now) {
                set.advance(now, |_, out| alerts += out.alerts.len() as u64);
            }
        }
        (taken, alerts)
    });
    let mut events: Vec<Event> = (0..SERIES)
        .map(|i| Event::value(key(i), MetricKind::Gauge, 0.0, 0))
        .collect();
    let per_event_ms = 10_000.0 / SERIES as f64;
    let mut c = Consolidator::new(&ARCHIVES, 2_000_000);
    let mut closed = Vec::with_capacity(1 << 20);
    let mut next_tick = base + 1000;
    let mut batch: Vec<Event> = Vec::with_capacity(BATCH);
    let start = Instant::now();
    for n in 0..EVENTS {
        let ts = base + (n as f64 * per_event_ms) as i64;
        let e = &mut events[n % SERIES];
        e.sample = Sample::Value((n % 97) as f64);
        e.timestamp = ts;
        c.record_event(e).expect("under the series limit");
        batch.push(e.clone());
        if batch.len() == BATCH {
            feed.offer(&batch);
            batch.clear();
        }
        if ts >= next_tick {
            c.flush_due(ts, &mut closed);
            closed.clear();
            next_tick += 1000;
        }
    }
    feed.offer(&batch);
    let secs = start.elapsed().as_secs_f64();
    drop(feed);
    let (taken, _alerts) = runner.join().expect("the runner thread");
    let s = stats.tasks.snapshot();
    println!(
        "tasks (round {round}), {label}: {EVENTS} events in {secs:.2} s = {:.2} M events/s on the consolidation thread; the tasks took {taken} events, {} left out (queue full)",
        EVENTS as f64 / secs / 1e6,
        s.events_dropped
    );
}
