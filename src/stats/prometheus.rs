//! `/metrics`: the counters of [`Stats`] in the OpenMetrics text format that Prometheus scrapes,
//! encoded by the `prometheus-client` crate from the live atomics at each scrape (nothing is
//! counted twice). Names follow Prometheus' conventions: `strata_` first, counters end in
//! `_total`, durations in seconds, sizes in bytes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use super::{Protocol, Stats};

/// The media type of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every metric, as of now.
pub fn render(stats: Arc<Stats>) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatsCollector(stats)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
    out
}

#[derive(Debug)]
struct StatsCollector(Arc<Stats>);

fn get(c: &AtomicU64) -> u64 {
    c.load(Ordering::Relaxed)
}

/// Label name and value of one sample.
type Labels = Vec<(&'static str, String)>;

/// One family of counters or gauges (`kind`): `name` (a counter's without `_total`) with a
/// sample per label set.
fn family(
    encoder: &mut DescriptorEncoder,
    kind: MetricType,
    name: &str,
    help: &str,
    samples: impl IntoIterator<Item = (Labels, u64)>,
) -> Result<(), std::fmt::Error> {
    let mut family = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, value) in samples {
        let sample = family.encode_family(&labels)?;
        match kind {
            MetricType::Gauge => ConstGauge::new(value as i64).encode(sample)?,
            _ => ConstCounter::new(value).encode(sample)?,
        }
    }
    Ok(())
}

/// One label.
fn label(name: &'static str, value: impl ToString) -> Labels {
    vec![(name, value.to_string())]
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstCounter::new(value).encode(encoder.encode_descriptor(
        name,
        help,
        None,
        MetricType::Counter,
    )?)
}

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    value: u64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value as i64).encode(encoder.encode_descriptor(
        name,
        help,
        unit,
        MetricType::Gauge,
    )?)
}

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        let e = &mut encoder;
        self.events(e)?;
        counter(
            e,
            "strata_events_unlogged",
            "Events refused because the write-ahead log could not take them.",
            get(&s.events_unlogged),
        )?;
        family(
            e,
            MetricType::Counter,
            "strata_bad_input",
            "Lines (statsd, Graphite) or messages (Riemann) refused as malformed or past a limit.",
            [
                (label("protocol", "statsd"), get(&s.statsd_bad_lines)),
                (label("protocol", "graphite"), get(&s.graphite_bad_lines)),
                (label("protocol", "riemann"), get(&s.riemann_bad)),
            ],
        )?;
        counter(
            e,
            "strata_riemann_events_skipped",
            "Riemann events without a metric (or a NaN one), skipped.",
            get(&s.riemann_skipped),
        )?;
        family(
            e,
            MetricType::Counter,
            "strata_udp_dropped",
            "UDP events the pipeline could not take (series limit, shutdown, a full queue).",
            [Protocol::Statsd, Protocol::Graphite, Protocol::Riemann].map(|p| {
                (
                    label("protocol", p.as_str()),
                    get(&s.protocol(p).udp_dropped),
                )
            }),
        )?;
        counter(
            e,
            "strata_udp_receive_buffer_drops",
            "Datagrams the kernel dropped on a full receive buffer.",
            get(&s.udp_receive_buffer_drops),
        )?;
        family(
            e,
            MetricType::Counter,
            "strata_http_requests_refused",
            "Ingest requests (POST /v1/metrics, PUT /agg, /track) answered with an error, by status.",
            s.http_refused.iter().enumerate().map(|(i, slot)| {
                let status = super::REFUSAL_STATUSES
                    .get(i)
                    .map_or("other".to_string(), u16::to_string);
                (label("status", status), get(slot))
            }),
        )?;
        counter(
            e,
            "strata_http_requests_refused_busy",
            "Ingest requests answered 503 while the pipeline pushed back.",
            get(&s.requests_refused_busy),
        )?;
        counter(
            e,
            "strata_statsd_gauges_evicted",
            "statsd gauges forgotten after gauge_idle without a value.",
            get(&s.statsd_gauges_evicted),
        )?;
        self.tasks(e)?;
        self.documents(e)?;
        self.gauges(e)?;
        self.maintenance(e)?;
        Ok(())
    }
}

impl StatsCollector {
    fn tasks(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let t = &self.0.tasks;
        for (name, help, value) in [
            (
                "strata_task_events",
                "Events handed to the stream tasks.",
                &t.events,
            ),
            (
                "strata_task_events_dropped",
                "Events left out of the tasks because their queue was full (still archived).",
                &t.events_dropped,
            ),
            (
                "strata_task_events_late",
                "Events that came after their task window had closed.",
                &t.events_late,
            ),
            (
                "strata_task_events_over_groups",
                "Events of a task group past tasks.max_groups.",
                &t.events_over_groups,
            ),
            ("strata_alerts", "Alerts raised or cleared.", &t.alerts),
            (
                "strata_alert_handler_failures",
                "Alert deliveries that failed after their retries or timed out.",
                &t.handler_failures,
            ),
            (
                "strata_alert_handler_dropped",
                "Alerts not delivered because a handler's queue was full.",
                &t.handler_dropped,
            ),
            (
                "strata_task_emitted",
                "Derived events written back into ingest.",
                &t.emitted,
            ),
            (
                "strata_task_emit_refused",
                "Derived events ingest refused.",
                &t.emit_refused,
            ),
            ("strata_batch_runs", "Batch task runs.", &t.batch_runs),
            (
                "strata_batch_failures",
                "Batch task runs that failed.",
                &t.batch_failures,
            ),
        ] {
            counter(e, name, help, get(value))?;
        }
        Ok(())
    }

    fn events(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let per = |f: fn(&super::ProtocolCounters) -> &AtomicU64| {
            Protocol::ALL.map(|p| (label("protocol", p.as_str()), get(f(self.0.protocol(p)))))
        };
        for (name, help, values) in [
            (
                "strata_events_accepted",
                "Events kept in at least one archive.",
                per(|c| &c.accepted),
            ),
            (
                "strata_events_late",
                "Events merged into an already written bucket in at least one archive.",
                per(|c| &c.late),
            ),
            (
                "strata_events_expired",
                "Events older than every archive's retention, kept nowhere.",
                per(|c| &c.expired),
            ),
        ] {
            family(e, MetricType::Counter, name, help, values)?;
        }
        let refused = Protocol::ALL.into_iter().flat_map(|p| {
            let c = self.0.protocol(p);
            [
                ("series_limit", get(&c.refused_series_limit)),
                ("type", get(&c.refused_type)),
                ("tag_keys", get(&c.refused_tag_keys)),
            ]
            .map(|(reason, value)| {
                let labels = vec![
                    ("protocol", p.as_str().to_string()),
                    ("reason", reason.into()),
                ];
                (labels, value)
            })
        });
        family(
            e,
            MetricType::Counter,
            "strata_events_refused",
            "Events refused by the consolidator, by reason.",
            refused,
        )
    }

    fn documents(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        for (name, help, value) in [
            (
                "strata_documents_written",
                "Bucket documents the node stored.",
                &s.docs_written,
            ),
            (
                "strata_documents_rejected",
                "Bucket documents the node refused for good (lost).",
                &s.docs_rejected,
            ),
            (
                "strata_documents_retried",
                "Bucket documents sent again after a retryable answer.",
                &s.docs_retried,
            ),
            (
                "strata_documents_dropped",
                "Bucket documents not written before the shutdown timeout (lost).",
                &s.docs_dropped,
            ),
            (
                "strata_documents_merged",
                "Late buckets merged into a stored document.",
                &s.docs_merged,
            ),
            (
                "strata_write_conflicts",
                "Conditional writes that lost a race and were merged again.",
                &s.write_conflicts,
            ),
            (
                "strata_bulk_requests",
                "_bulk requests sent.",
                &s.bulk_requests,
            ),
        ] {
            counter(e, name, help, get(value))?;
        }
        s.bulk_latency.0.encode(e.encode_descriptor(
            "strata_bulk_request_duration",
            "_bulk requests, from sending to the node's answer.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)
    }

    fn gauges(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        gauge(
            e,
            "strata_series_active",
            "Series with at least one open bucket.",
            None,
            get(&s.series_active),
        )?;
        family(
            e,
            MetricType::Gauge,
            "strata_buckets_open",
            "Open buckets per archive.",
            s.buckets_open_by_archive()
                .into_iter()
                .map(|(archive, count)| (label("archive", archive), count)),
        )?;
        for (name, help, unit, value) in [
            (
                "strata_buckets_late",
                "Buckets waiting in the late table.",
                None,
                &s.buckets_late,
            ),
            (
                "strata_tag_keys",
                "Distinct tag keys in use (open series and indices kept).",
                None,
                &s.tag_keys,
            ),
            (
                "strata_ingest_queue_batches",
                "Batches waiting for the consolidator.",
                None,
                &s.ingest_queue_batches,
            ),
            (
                "strata_writer_queue_documents",
                "Closed buckets waiting for the writer.",
                None,
                &s.writer_queue_docs,
            ),
            (
                "strata_backlog_documents",
                "Closed buckets waiting in the on-disk backlog.",
                None,
                &s.backlog_docs,
            ),
            (
                "strata_backlog",
                "Size of the on-disk backlog's files.",
                Some(Unit::Bytes),
                &s.backlog_bytes,
            ),
            (
                "strata_data_dir",
                "Size of the data directory (log, checkpoints, backlog).",
                Some(Unit::Bytes),
                &s.data_dir_bytes,
            ),
        ] {
            gauge(e, name, help, unit.as_ref(), get(value))?;
        }
        Ok(())
    }

    fn maintenance(&self, e: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = &self.0;
        family(
            e,
            MetricType::Counter,
            "strata_maintenance_passes",
            "Maintenance passes (aliases, index creation, deletion) by outcome.",
            [
                (label("outcome", "ok"), get(&s.maintenance_ok)),
                (label("outcome", "failed"), get(&s.maintenance_failed)),
            ],
        )?;
        s.maintenance_latency.0.encode(e.encode_descriptor(
            "strata_maintenance_pass_duration",
            "Maintenance passes, start to end.",
            Some(&Unit::Seconds),
            MetricType::Histogram,
        )?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counters_gauges_and_histograms_come_out_in_the_text_format() {
        let stats = Arc::new(Stats::default());
        Stats::add(&stats.protocol(Protocol::Statsd).accepted, 7);
        Stats::add(&stats.protocol(Protocol::Http).refused_tag_keys, 2);
        Stats::add(&stats.docs_written, 3);
        stats.count_http_refusal(413);
        stats.count_http_refusal(418);
        stats.set_buckets_open_by_archive(vec![("20s".into(), 5), ("1h".into(), 1)]);
        stats.bulk_latency.observe(Duration::from_millis(3));
        stats.set_maintenance("t".into(), Some("down".into()), Duration::from_millis(40));
        let text = render(stats);
        for line in [
            "strata_events_accepted_total{protocol=\"statsd\"} 7",
            "strata_events_accepted_total{protocol=\"http\"} 0",
            "strata_events_refused_total{protocol=\"http\",reason=\"tag_keys\"} 2",
            "strata_documents_written_total 3",
            "strata_http_requests_refused_total{status=\"413\"} 1",
            "strata_http_requests_refused_total{status=\"other\"} 1",
            "strata_http_requests_refused_total{status=\"400\"} 0",
            "strata_buckets_open{archive=\"20s\"} 5",
            "strata_bulk_request_duration_seconds_count 1",
            "strata_bulk_request_duration_seconds_bucket{le=\"0.004\"} 1",
            "strata_maintenance_passes_total{outcome=\"failed\"} 1",
            "# TYPE strata_data_dir_bytes gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }
}
