//! Graphite's plaintext protocol, `<dotted.path> <value> <unix seconds>` one point per line, over
//! TCP and UDP (collectd's `write_graphite` speaks it). Points become gauge events named by the
//! path. A bad line is counted and skipped. TCP connections push back: while the pipeline is
//! full a connection stops reading; UDP can only drop, and counts what it drops.

use std::sync::Arc;

use tokio::net::TcpListener;

use crate::clock::{Clock, EpochMillis};
use crate::config::IngestConfig;
use crate::event::{Event, MetricKind, SeriesKey};
use crate::ingest::context::ListenerContext;
use crate::ingest::datagrams::{spawn_receiver, BoundUdp, ParseDatagram};
use crate::ingest::limits::{check_text, Limits, TextError, TimeError};
use crate::ingest::lines::{serve_tcp_lines, ParseLine};
use crate::ingest::number::{parse_finite, parse_value};
use crate::stats::Stats;

/// Why a Graphite line was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum GraphiteError {
    #[error("expected `path value timestamp`")]
    Shape,
    #[error("path {0}")]
    Path(#[source] TextError),
    #[error("bad value {0:?}")]
    Value(String),
    #[error("bad timestamp {0:?}")]
    Timestamp(String),
    #[error("more than three fields")]
    TooManyFields,
    #[error("timestamp: {0}")]
    Time(#[from] TimeError),
}

/// Parses one line; `limits.now` stands in for a missing or negative timestamp, and points
/// further ahead of it than the configured skew are refused, as on the HTTP API. Fields are
/// separated by whitespace (Unicode's, as carbon splits them; ASCII lines take the cheaper
/// ASCII split, which finds the same fields in them).
pub(crate) fn parse_line(line: &str, limits: &Limits) -> Result<Option<Event>, GraphiteError> {
    if line.is_ascii() {
        parse_fields(line.split_ascii_whitespace(), limits)
    } else {
        parse_fields(line.split_whitespace(), limits)
    }
}

fn parse_fields<'a>(
    mut parts: impl Iterator<Item = &'a str>,
    limits: &Limits,
) -> Result<Option<Event>, GraphiteError> {
    let (now, max_name_length) = (limits.now, limits.max_name_length);
    let (Some(path), Some(value)) = (parts.next(), parts.next()) else {
        return Err(GraphiteError::Shape);
    };
    check_text(path, max_name_length).map_err(GraphiteError::Path)?;
    if value.eq_ignore_ascii_case("nan") {
        // collectd's way of saying "no value this interval" (a rate's first reading).
        return Ok(None);
    }
    let value = parse_value(value).ok_or_else(|| GraphiteError::Value(value.to_string()))?;
    let timestamp = match parts.next() {
        None => now,
        Some(t) => {
            let secs = parse_finite(t).ok_or_else(|| GraphiteError::Timestamp(t.to_string()))?;
            if secs < 0.0 {
                now
            } else {
                (secs * 1000.0) as EpochMillis
            }
        }
    };
    if parts.next().is_some() {
        return Err(GraphiteError::TooManyFields);
    }
    limits.check_time(timestamp).map_err(GraphiteError::Time)?;
    Ok(Some(Event::value(
        SeriesKey::new(path, None, &mut []),
        MetricKind::Gauge,
        value,
        timestamp,
    )))
}

/// Parses every line of `text` into `out`; returns the number of bad lines.
pub(crate) fn parse_lines(text: &str, limits: &Limits, out: &mut Vec<Event>) -> u64 {
    let mut bad = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        match parse_line(line, limits) {
            Ok(Some(e)) => out.push(e),
            Ok(None) => {}
            Err(why) => {
                crate::ingest::badlog::GRAPHITE.report(limits.now, &why, line);
                bad += 1;
            }
        }
    }
    bad
}

/// Accepts TCP connections until `shutdown`, each read line by line (see [`crate::ingest::lines`]).
pub(crate) async fn run_tcp<C: Clock>(
    listener: TcpListener,
    cfg: IngestConfig,
    ctx: ListenerContext<C>,
) {
    let parse: ParseLine =
        Arc::new(
            move |line, now, out| match parse_line(line, &Limits::new(&cfg, now)) {
                Ok(e) => {
                    out.extend(e);
                    true
                }
                Err(why) => {
                    crate::ingest::badlog::GRAPHITE.report(now, &why, line);
                    false
                }
            },
        );
    serve_tcp_lines(listener, parse, |s| &s.graphite_bad_lines, ctx).await;
}

/// Starts the thread that receives UDP datagrams of lines until `shutdown` (see
/// [`crate::ingest::datagrams`]).
pub(crate) fn spawn_udp<C: Clock>(
    udp: BoundUdp,
    cfg: IngestConfig,
    ctx: ListenerContext<C>,
) -> std::io::Result<()> {
    let counters = ctx.stats.clone();
    let parse: ParseDatagram = Box::new(move |bytes, now, out| {
        let bad = match std::str::from_utf8(bytes) {
            Ok(text) => parse_lines(text, &Limits::new(&cfg, now), out),
            Err(_) => 1,
        };
        Stats::add(&counters.graphite_bad_lines, bad);
    });
    spawn_receiver("graphite", udp, parse, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(now: EpochMillis) -> Limits {
        Limits {
            now,
            max_future_skew_ms: 60_000,
            max_name_length: 255,
            max_tags: 0,
        }
    }

    #[test]
    fn values_beyond_the_range_and_times_before_year_one_are_refused() {
        let l = limits(1_700_000_000_000);
        assert_eq!(
            parse_line("a.b 1e300 1700000000", &l).unwrap_err(),
            GraphiteError::Value("1e300".into())
        );
        assert!(
            matches!(
                parse_line("a.b 1 -1e300", &l),
                Ok(Some(e)) if e.timestamp == l.now
            ),
            "a negative time stands for now, as before"
        );
    }

    #[test]
    fn lines_parse_with_seconds_and_bad_ones_are_counted() {
        let e = parse_line(
            "servers.web1.cpu 0.5 1700000000",
            &limits(1_700_000_000_000),
        )
        .unwrap()
        .unwrap();
        assert_eq!(
            (
                e.series.name(),
                e.sample.as_value().unwrap(),
                e.timestamp,
                e.kind
            ),
            (
                "servers.web1.cpu",
                0.5,
                1_700_000_000_000,
                MetricKind::Gauge
            )
        );
        let stamp = |line: &str, now| parse_line(line, &limits(now)).unwrap().unwrap().timestamp;
        assert_eq!(stamp("a.b 1 -1", 42), 42);
        assert_eq!(
            stamp("a.b 1 1700000000.5", 1_700_000_000_000),
            1_700_000_000_500
        );
        let mut out = Vec::new();
        let bad = parse_lines(
            "ok 1 1\nnovalue\nx inf 1\ny 1 soon\nz 1 2 3\n\nok 2 2\nfuture 1 99999999999\n",
            &limits(1_700_000_000_000),
            &mut out,
        );
        assert_eq!((out.len(), bad), (2, 5));
        assert_eq!(
            parse_line("cpu nan 1", &limits(1_700_000_000_000)),
            Ok(None),
            "collectd's nan is no value, not a bad line"
        );
    }

    /// A line cut short by a disconnect (`x 123` arriving as `x 12`) is not a point: it would
    /// store a wrong value. (It was stored as a complete one.)
    #[tokio::test]
    async fn a_last_line_without_newline_over_tcp_is_bad_not_stored() {
        let start = |listener, ctx| run_tcp(listener, IngestConfig::default(), ctx);
        let bytes = b"whole.point 1 1700000000\ncut.point 12";
        let (names, stats) = crate::testing::names_from_tcp(start, bytes).await;
        assert_eq!(names, ["whole.point"]);
        assert_eq!(stats.snapshot().graphite_bad_lines, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let start = |listener, ctx| run_tcp(listener, IngestConfig::default(), ctx);
        crate::testing::assert_idle_connections_close(start).await;
    }
}
