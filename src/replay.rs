//! `strata replay`: NDJSON events from a file through the same validation and consolidation as
//! the HTTP API, with the events' own timestamps as the clock, everything flushed at the end.
//! The whole input is validated before anything is written; `--dry-run` prints the `_bulk` body
//! instead of sending it.

use std::io::{BufRead, Write};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::config::{Config, NoNode};
use crate::consolidate::{BatchReport, Closed, ConsolidateError, Consolidator};
use crate::event::Event;
use crate::ingest::json::{parse_event, InvalidEvent, Location};
use crate::ingest::limits::Limits;
use crate::persist::backend::{BackendError, HttpBackend};
use crate::persist::document::DocumentEncoder;
use crate::pipeline::{archive_specs, start_write_path, wait_for_node, ServeError};
use crate::stats::Stats;

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the events: {0}")]
    Read(#[from] std::io::Error),
    #[error("{0}; nothing was written")]
    Invalid(#[from] InvalidEvent),
    #[error(transparent)]
    Consolidate(#[from] ConsolidateError),
    #[error(transparent)]
    Serve(#[from] ServeError),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("{0} (or use --dry-run)")]
    NoNode(#[from] NoNode),
    #[error("the consolidation thread panicked")]
    Panicked(#[source] tokio::task::JoinError),
    #[error(
        "{rejected} document(s) were rejected and {dropped} could not be written; see the log"
    )]
    Incomplete { rejected: u64, dropped: u64 },
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplaySummary {
    pub events: u64,
    pub late: u64,
    pub documents: u64,
}

/// Reads and validates every line (blank lines skipped); the first bad line fails the whole input.
pub fn read_events(input: impl BufRead, limits: &Limits) -> Result<Vec<Event>, ReplayError> {
    let mut events = Vec::new();
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if !line.is_empty() {
            events.push(parse_event(line, Location::Line(n + 1), limits)?);
        }
    }
    Ok(events)
}

/// Consolidates `events` in order with their own times as the clock, passing every closed bucket
/// to `emit` as soon as it closes, and the rest at the end.
pub fn consolidate_events(
    config: &Config,
    events: &[Event],
    mut emit: impl FnMut(&mut Vec<Closed>),
) -> Result<BatchReport, ConsolidateError> {
    let mut consolidator = Consolidator::new(&archive_specs(config), config.consolidate.max_series);
    let mut report = BatchReport::new(config.archives.len());
    let mut clock = EpochMillis::MIN;
    let mut closed = Vec::new();
    for event in events {
        report.count(consolidator.record_event(event)?);
        clock = clock.max(event.timestamp);
        consolidator.flush_due(clock, &mut closed);
        if !closed.is_empty() {
            emit(&mut closed);
        }
    }
    consolidator.flush_all(&mut closed);
    emit(&mut closed);
    Ok(report)
}

/// Writes the `_bulk` body for `events` to `out`, touching no node.
pub fn dry_run(
    config: &Config,
    events: &[Event],
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    let mut encoder = DocumentEncoder::new(config);
    let mut buf = Vec::new();
    let mut documents = 0;
    let mut io_error = None;
    let report = consolidate_events(config, events, |closed| {
        for c in closed.drain(..) {
            encoder.encode(&c, &mut buf);
            documents += 1;
        }
        if io_error.is_none() {
            io_error = out.write_all(&buf).err();
        }
        buf.clear();
    })?;
    if let Some(e) = io_error {
        return Err(e.into());
    }
    out.flush()?;
    Ok(ReplaySummary {
        events: events.len() as u64,
        late: report.late,
        documents,
    })
}

/// Writes `events` to the node at `url` (or the configured one). Cancelling `shutdown` (the
/// binary does on SIGINT/SIGTERM) stops waiting for an absent node and bounds the writer's
/// retries by `persist.shutdown_timeout`.
pub async fn to_node(
    config: &Config,
    url: Option<String>,
    events: Vec<Event>,
    shutdown: CancellationToken,
) -> Result<ReplaySummary, ReplayError> {
    let url = config.node.url_or(url)?;
    let backend = Arc::new(HttpBackend::connect(&url, &config.node)?);
    wait_for_node(backend.as_ref(), &shutdown).await?;
    let stats = Arc::new(Stats::default());
    let write = start_write_path(config, backend, stats.clone(), shutdown).await?;
    // Consolidation is synchronous; a thread feeds the writer through the bounded channel, so a
    // slow node slows the replay instead of filling memory.
    let tx = write.closed;
    let cfg = config.clone();
    let total = events.len() as u64;
    let feeder = tokio::task::spawn_blocking(move || {
        let mut documents = 0u64;
        let report = consolidate_events(&cfg, &events, |closed| {
            for c in closed.drain(..) {
                documents += 1;
                if tx.blocking_send(c).is_err() {
                    return;
                }
            }
        })?;
        Ok::<_, ConsolidateError>((report, documents))
    });
    let (report, documents) = feeder.await.map_err(ReplayError::Panicked)??;
    let _ = write.writer.await;
    let s = stats.snapshot();
    if s.docs_rejected > 0 || s.docs_dropped > 0 {
        return Err(ReplayError::Incomplete {
            rejected: s.docs_rejected,
            dropped: s.docs_dropped,
        });
    }
    Ok(ReplaySummary {
        events: total,
        late: report.late,
        documents,
    })
}

/// `now` for events without a timestamp and the future-skew check.
pub fn limits_now<C: Clock>(config: &Config, clock: &C) -> Limits {
    Limits::new(&config.ingest, clock.now())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn config() -> Config {
        let text =
            "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n";
        Config::from_toml(text, Path::new("t")).unwrap()
    }

    fn limits() -> Limits {
        Limits {
            now: 1_700_000_000_000,
            max_future_skew_ms: 0,
            max_name_length: 100,
            max_tags: 4,
        }
    }

    #[test]
    fn bad_line_is_named_and_nothing_is_kept() {
        let input = "{\"name\":\"a\",\"value\":1,\"timestamp\":0}\n\n{\"name\":\"a\"}\n";
        let err = read_events(input.as_bytes(), &limits())
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "line 3: field 'value': is required (or the partial fields count, sum, min, max, first, last); nothing was written"
        );
    }

    #[test]
    fn dry_run_prints_the_bulk_body_of_the_issue_example() {
        let input: String = [(0, 1), (10, 3), (20, 5), (30, 7), (40, 2)]
            .iter()
            .map(|(t, v)| {
                format!(
                    "{{\"name\":\"m\",\"value\":{v},\"timestamp\":{}}}\n",
                    t * 1000
                )
            })
            .collect();
        let events = read_events(input.as_bytes(), &limits()).unwrap();
        let mut out = Vec::new();
        let summary = dry_run(&config(), &events, &mut out).unwrap();
        assert_eq!(
            summary,
            ReplaySummary {
                events: 5,
                late: 0,
                documents: 3
            }
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0]["index"]["_index"], "strata-20s-1970.01.01");
        let counts: Vec<u64> = lines
            .iter()
            .skip(1)
            .step_by(2)
            .map(|d| d["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![2, 2, 1]);
    }

    #[test]
    fn out_of_order_events_beyond_lateness_are_late() {
        let input = "{\"name\":\"a\",\"value\":1,\"timestamp\":100000}\n{\"name\":\"a\",\"value\":1,\"timestamp\":0}\n";
        let events = read_events(input.as_bytes(), &limits()).unwrap();
        let mut docs = 0;
        let report =
            consolidate_events(&config(), &events, |c| docs += c.drain(..).count()).unwrap();
        assert_eq!(
            (report.accepted, report.late),
            (1, 1),
            "t=0 arrives after the clock reached 100 s"
        );
        assert_eq!(docs, 1);
    }
}
