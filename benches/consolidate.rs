//! Benchmarks of the consolidation core (no network): throughput on one core with 100 000 series
//! × 3 archives, and resident memory per (series × archive) accumulator at 1 million series.
//!
//!   cargo bench --bench consolidate                 both
//!   cargo bench --bench consolidate -- throughput   one of them (throughput | sketches | memory | log)
//!
//! `sketches` is the throughput run with `percentiles` on every archive (a quantile sketch per
//! bucket).

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
}
