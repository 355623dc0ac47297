//! Counters shared by the pipeline stages and shown by `/health` and, in Prometheus' format,
//! by `/metrics` ([`prometheus`]).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use prometheus_client::metrics::histogram::Histogram;
use serde::Serialize;

pub mod prometheus;

/// The doors events come in by, for the per-protocol counters. DaTtSs lines arrive on the
/// statsd listener and count as statsd; Kilometric's and cricket's routes as HTTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Protocol {
    #[default]
    Http,
    Statsd,
    Graphite,
    Riemann,
    /// Derived events a task's `emit` writes back.
    Task,
}

impl Protocol {
    pub const ALL: [Protocol; 5] = [
        Protocol::Http,
        Protocol::Statsd,
        Protocol::Graphite,
        Protocol::Riemann,
        Protocol::Task,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Statsd => "statsd",
            Protocol::Graphite => "graphite",
            Protocol::Riemann => "riemann",
            Protocol::Task => "task",
        }
    }
}

/// What became of the events of one protocol.
#[derive(Debug, Default)]
pub struct ProtocolCounters {
    /// Kept in at least one archive.
    pub accepted: AtomicU64,
    /// Of those, merged into a stored bucket in at least one archive.
    pub late: AtomicU64,
    /// Older than every archive's retention.
    pub expired: AtomicU64,
    /// Refused by the consolidator, by reason.
    pub refused_series_limit: AtomicU64,
    pub refused_type: AtomicU64,
    pub refused_tag_keys: AtomicU64,
    /// UDP events the pipeline could not take (series limit, shutdown, a full queue).
    pub udp_dropped: AtomicU64,
}

/// The answers refusing an ingest request that `/metrics` counts by status; others count as
/// `other`.
pub const REFUSAL_STATUSES: [u16; 8] = [400, 401, 408, 409, 413, 415, 429, 503];

/// A latency histogram with buckets from 1 ms to about 65 s.
#[derive(Debug)]
pub struct Latency(pub Histogram);

impl Default for Latency {
    fn default() -> Self {
        Self(Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.001, 2.0, 17),
        ))
    }
}

impl Latency {
    pub fn observe(&self, took: Duration) {
        self.0.observe(took.as_secs_f64());
    }
}

/// Monotonic counters and a few gauges, updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Stats {
    pub events_accepted: AtomicU64,
    /// Events that went to the late table of at least one archive (merged into stored buckets).
    pub events_merged: AtomicU64,
    /// Events older than every archive's retention.
    pub events_expired: AtomicU64,
    /// Buckets waiting in the late table.
    pub buckets_late: AtomicU64,
    /// Closed buckets waiting in the on-disk backlog (the writer's queue was full), the bytes
    /// of its files, and when the oldest was added (epoch ms; 0: none waits).
    pub backlog_docs: AtomicU64,
    pub backlog_bytes: AtomicU64,
    pub backlog_oldest_ms: AtomicU64,
    /// Bytes of the data directory (log, checkpoints, backlog).
    pub data_dir_bytes: AtomicU64,
    pub requests_refused_busy: AtomicU64,
    pub series_active: AtomicU64,
    pub buckets_open: AtomicU64,
    pub docs_written: AtomicU64,
    pub docs_rejected: AtomicU64,
    pub docs_retried: AtomicU64,
    pub docs_dropped: AtomicU64,
    /// Buckets merged into a document already stored.
    pub docs_merged: AtomicU64,
    /// Conditional writes that lost a race (409) and were read and merged again.
    pub write_conflicts: AtomicU64,
    pub bulk_requests: AtomicU64,
    pub statsd_bad_lines: AtomicU64,
    /// statsd gauges forgotten after `gauge_idle` without a value.
    pub statsd_gauges_evicted: AtomicU64,
    pub udp_dropped: AtomicU64,
    /// Events of the stream listeners refused one by one at the series limit.
    pub events_refused_series_limit: AtomicU64,
    /// Events refused for a type other than their series' (lines nobody answers).
    pub events_refused_type: AtomicU64,
    /// Events of the stream listeners refused for a new tag key past `consolidate.max_tag_keys`.
    pub events_refused_tag_keys: AtomicU64,
    /// Distinct tag keys in use (open series and indices kept).
    pub tag_keys: AtomicU64,
    /// Events refused because the write-ahead log could not take them.
    pub events_unlogged: AtomicU64,
    /// Datagrams the kernel dropped because a listener's receive buffer was full.
    pub udp_receive_buffer_drops: AtomicU64,
    pub graphite_bad_lines: AtomicU64,
    pub riemann_bad: AtomicU64,
    pub riemann_skipped: AtomicU64,
    /// Per protocol, in [`Protocol::ALL`] order.
    pub protocols: [ProtocolCounters; 5],
    /// Ingest requests (POST /v1/metrics, PUT /agg, /track) answered with an error, by status
    /// in [`REFUSAL_STATUSES`] order, then any other.
    pub http_refused: [AtomicU64; 9],
    /// Batches waiting for the consolidator, and closed buckets waiting for the writer.
    pub ingest_queue_batches: AtomicU64,
    pub writer_queue_docs: AtomicU64,
    /// `_bulk` requests, from sending to the answer.
    pub bulk_latency: Latency,
    /// Maintenance passes by outcome, and how long each took.
    pub maintenance_ok: AtomicU64,
    pub maintenance_failed: AtomicU64,
    pub maintenance_latency: Latency,
    /// What the tasks took, left out, raised and emitted.
    pub tasks: TaskCounters,
    /// Open buckets per archive (name, count), as of the last tick.
    buckets_open_by_archive: Mutex<Vec<(String, u64)>>,
    last_error: Mutex<Option<String>>,
    maintenance: Mutex<Option<MaintenanceStatus>>,
}

/// The tasks' counters (all monotonic).
#[derive(Debug, Default)]
pub struct TaskCounters {
    /// Events handed to the stream tasks.
    pub events: AtomicU64,
    /// Events left out of the tasks because their queue was full (still archived).
    pub events_dropped: AtomicU64,
    /// Events that came after their task window had closed.
    pub events_late: AtomicU64,
    /// Events of a group past `tasks.max_groups`.
    pub events_over_groups: AtomicU64,
    /// Alerts raised or cleared (each sent to the task's handlers).
    pub alerts: AtomicU64,
    /// Handler deliveries that failed after their retries, or that timed out.
    pub handler_failures: AtomicU64,
    /// Alerts not delivered because a handler's queue was full.
    pub handler_dropped: AtomicU64,
    /// Derived events written back into ingest, and those it refused.
    pub emitted: AtomicU64,
    pub emit_refused: AtomicU64,
    /// Batch task runs, and those that failed (their error is logged).
    pub batch_runs: AtomicU64,
    pub batch_failures: AtomicU64,
}

/// A copy of [`TaskCounters`].
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct TaskCountersSnapshot {
    pub events: u64,
    pub events_dropped: u64,
    pub events_late: u64,
    pub events_over_groups: u64,
    pub alerts: u64,
    pub handler_failures: u64,
    pub handler_dropped: u64,
    pub emitted: u64,
    pub emit_refused: u64,
    pub batch_runs: u64,
    pub batch_failures: u64,
}

impl TaskCounters {
    pub fn snapshot(&self) -> TaskCountersSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        TaskCountersSnapshot {
            events: get(&self.events),
            events_dropped: get(&self.events_dropped),
            events_late: get(&self.events_late),
            events_over_groups: get(&self.events_over_groups),
            alerts: get(&self.alerts),
            handler_failures: get(&self.handler_failures),
            handler_dropped: get(&self.handler_dropped),
            emitted: get(&self.emitted),
            emit_refused: get(&self.emit_refused),
            batch_runs: get(&self.batch_runs),
            batch_failures: get(&self.batch_failures),
        }
    }
}

/// The last maintenance pass: when, and its error if it failed.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MaintenanceStatus {
    pub at: String,
    pub error: Option<String>,
}

/// A point-in-time copy for reports.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct StatsSnapshot {
    pub events_accepted: u64,
    pub events_merged: u64,
    pub events_expired: u64,
    pub buckets_late: u64,
    pub backlog_docs: u64,
    pub backlog_bytes: u64,
    pub backlog_oldest_ms: u64,
    pub data_dir_bytes: u64,
    pub requests_refused_busy: u64,
    pub series_active: u64,
    pub buckets_open: u64,
    pub docs_written: u64,
    pub docs_rejected: u64,
    pub docs_retried: u64,
    pub docs_dropped: u64,
    pub docs_merged: u64,
    pub write_conflicts: u64,
    pub bulk_requests: u64,
    pub statsd_bad_lines: u64,
    pub statsd_gauges_evicted: u64,
    pub udp_dropped: u64,
    pub events_refused_series_limit: u64,
    pub events_refused_type: u64,
    pub events_refused_tag_keys: u64,
    pub tag_keys: u64,
    pub events_unlogged: u64,
    pub udp_receive_buffer_drops: u64,
    pub graphite_bad_lines: u64,
    pub riemann_bad: u64,
    pub riemann_skipped: u64,
    pub last_bulk_error: Option<String>,
    pub maintenance: Option<MaintenanceStatus>,
    /// Events kept in at least one archive, per protocol.
    pub events_by_protocol: BTreeMap<&'static str, u64>,
    pub ingest_queue_batches: u64,
    pub writer_queue_docs: u64,
    /// Open buckets per archive, as of the last tick.
    pub buckets_open_by_archive: BTreeMap<String, u64>,
    pub tasks: TaskCountersSnapshot,
}

impl Stats {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// Lowers a gauge, never below zero.
    pub fn sub(gauge: &AtomicU64, n: u64) {
        let _ = gauge.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
            Some(v.saturating_sub(n))
        });
    }

    pub fn set(gauge: &AtomicU64, n: u64) {
        gauge.store(n, Ordering::Relaxed);
    }

    /// Records the latest write failure (`None` once writes succeed again).
    pub fn set_last_error(&self, error: Option<String>) {
        if let Ok(mut slot) = self.last_error.lock() {
            *slot = error;
        }
    }

    /// Records the outcome of a maintenance pass and how long it took.
    pub fn set_maintenance(&self, at: String, error: Option<String>, took: Duration) {
        let outcome = match error {
            None => &self.maintenance_ok,
            Some(_) => &self.maintenance_failed,
        };
        Stats::add(outcome, 1);
        self.maintenance_latency.observe(took);
        if let Ok(mut slot) = self.maintenance.lock() {
            *slot = Some(MaintenanceStatus { at, error });
        }
    }

    /// Counts `n` UDP events of `protocol` the pipeline could not take.
    pub fn count_udp_dropped(&self, protocol: Protocol, n: u64) {
        Stats::add(&self.udp_dropped, n);
        Stats::add(&self.protocol(protocol).udp_dropped, n);
    }

    /// Counts an ingest request answered with `status` (>= 400).
    pub fn count_http_refusal(&self, status: u16) {
        let slot = REFUSAL_STATUSES
            .iter()
            .position(|&s| s == status)
            .unwrap_or(REFUSAL_STATUSES.len());
        Stats::add(&self.http_refused[slot], 1);
    }

    /// The counters of `protocol`.
    pub fn protocol(&self, protocol: Protocol) -> &ProtocolCounters {
        &self.protocols[protocol as usize]
    }

    /// Records the open buckets of each archive.
    pub fn set_buckets_open_by_archive(&self, counts: Vec<(String, u64)>) {
        if let Ok(mut slot) = self.buckets_open_by_archive.lock() {
            *slot = counts;
        }
    }

    /// The open buckets of each archive, as of the last tick.
    pub fn buckets_open_by_archive(&self) -> Vec<(String, u64)> {
        self.buckets_open_by_archive
            .lock()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        StatsSnapshot {
            events_accepted: get(&self.events_accepted),
            events_merged: get(&self.events_merged),
            events_expired: get(&self.events_expired),
            buckets_late: get(&self.buckets_late),
            backlog_docs: get(&self.backlog_docs),
            backlog_bytes: get(&self.backlog_bytes),
            backlog_oldest_ms: get(&self.backlog_oldest_ms),
            data_dir_bytes: get(&self.data_dir_bytes),
            requests_refused_busy: get(&self.requests_refused_busy),
            series_active: get(&self.series_active),
            buckets_open: get(&self.buckets_open),
            docs_written: get(&self.docs_written),
            docs_rejected: get(&self.docs_rejected),
            docs_retried: get(&self.docs_retried),
            docs_dropped: get(&self.docs_dropped),
            docs_merged: get(&self.docs_merged),
            write_conflicts: get(&self.write_conflicts),
            bulk_requests: get(&self.bulk_requests),
            statsd_bad_lines: get(&self.statsd_bad_lines),
            statsd_gauges_evicted: get(&self.statsd_gauges_evicted),
            udp_dropped: get(&self.udp_dropped),
            events_refused_series_limit: get(&self.events_refused_series_limit),
            events_refused_type: get(&self.events_refused_type),
            events_refused_tag_keys: get(&self.events_refused_tag_keys),
            tag_keys: get(&self.tag_keys),
            events_unlogged: get(&self.events_unlogged),
            udp_receive_buffer_drops: get(&self.udp_receive_buffer_drops),
            graphite_bad_lines: get(&self.graphite_bad_lines),
            riemann_bad: get(&self.riemann_bad),
            riemann_skipped: get(&self.riemann_skipped),
            last_bulk_error: self.last_error.lock().ok().and_then(|e| e.clone()),
            maintenance: self.maintenance.lock().ok().and_then(|m| m.clone()),
            events_by_protocol: Protocol::ALL
                .iter()
                .map(|&p| (p.as_str(), get(&self.protocol(p).accepted)))
                .collect(),
            ingest_queue_batches: get(&self.ingest_queue_batches),
            writer_queue_docs: get(&self.writer_queue_docs),
            buckets_open_by_archive: self.buckets_open_by_archive().into_iter().collect(),
            tasks: self.tasks.snapshot(),
        }
    }
}
