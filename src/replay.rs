//! `strata replay`: NDJSON events from a file through the same validation and consolidation as
//! the HTTP API, with the events' own timestamps as the clock, everything flushed at the end.
//! The whole input is validated before anything is written (with `--partial`, bad lines are
//! skipped and counted instead, in one pass); `--dry-run` prints the `_bulk` body instead of
//! sending it. The input is streamed, never held whole; [`progress`] shows how far it is.
//!
//! A file's order does not matter: an event whose bucket the replay's clock has passed goes to
//! the late table and is merged into the stored document, as on the HTTP path. What is held open
//! is bounded (the open buckets within lateness, and at most
//! [`crate::pipeline::LATE_TABLE_MAX`] late buckets); events are read from the file a second
//! time rather than kept. A replay adds its events to what is stored: replaying a file twice
//! counts its events twice (documents are never duplicated: their ids are deterministic).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::config::{Config, NoNode};
use crate::consolidate::{BatchReport, Closed, ConsolidateError};
use crate::event::Event;
use crate::ingest::json::{parse_event, InvalidEvent, Location};
use crate::ingest::limits::Limits;
use crate::maintain::plan::retention_horizons;
use crate::persist::backend::{BackendError, HttpBackend};
use crate::persist::document::{DocumentEncoder, Op};
use crate::pipeline::{start_write_path, wait_for_node, ServeError, LATE_TABLE_MAX};
use crate::stats::Stats;

pub mod progress;
pub use progress::ProgressMode;
use progress::{Counted, Meter};

/// How a replay runs besides its input.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// Cancelled (the binary does on SIGINT/SIGTERM): stop waiting for an absent node, and
    /// bound the writer's retries by `persist.shutdown_timeout`.
    pub shutdown: CancellationToken,
    /// Skip bad lines (counted, the first few named) instead of refusing the whole input.
    pub partial: bool,
    pub progress: ProgressMode,
}

/// Bad lines a `--partial` replay skipped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Skipped {
    pub lines: u64,
    /// The first few, with their line number and why.
    pub first: Vec<String>,
}

/// Bad lines named in a [`Skipped`]; the rest are only counted.
const SKIPPED_NAMED: usize = 3;

impl Skipped {
    fn note(&mut self, why: InvalidEvent) {
        self.lines += 1;
        if self.first.len() < SKIPPED_NAMED {
            self.first.push(why.to_string());
        }
    }
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("cannot read the events: {0}")]
    Read(#[from] std::io::Error),
    /// Not a `#[source]`: the message already says it, and a shown chain would say it twice.
    #[error("{0}; nothing was written")]
    Invalid(InvalidEvent),
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

impl From<InvalidEvent> for ReplayError {
    fn from(e: InvalidEvent) -> Self {
        ReplayError::Invalid(e)
    }
}

/// What a replay did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplaySummary {
    pub events: u64,
    /// Where the events went, summed over archives: into buckets the replay closed itself, into
    /// the late table (merged into stored buckets), or nowhere (past the retention).
    pub recorded: u64,
    pub merged: u64,
    pub expired: u64,
    /// Buckets handed to the writer (a bucket merged in several slices counts each time).
    pub documents: u64,
    /// With `--partial`: the bad lines left out.
    pub skipped: Skipped,
}

impl ReplaySummary {
    fn new(report: &BatchReport, documents: u64, skipped: Skipped) -> Self {
        let total = |f: fn(&crate::consolidate::ArchiveCounts) -> u64| {
            report.archives.iter().map(f).sum::<u64>()
        };
        Self {
            events: report.accepted + report.expired,
            recorded: total(|a| a.recorded),
            merged: total(|a| a.merged),
            expired: total(|a| a.expired),
            documents,
            skipped,
        }
    }
}

/// Where a replay reads its events; opened twice (validation, then consolidation).
pub trait Source {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + '_>>;
    /// Its size in bytes, when known (for the time left).
    fn size(&self) -> Option<u64>;
}

/// A file, streamed, read twice.
impl Source for std::path::PathBuf {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + '_>> {
        Ok(Box::new(std::io::BufReader::with_capacity(
            1 << 16,
            std::fs::File::open(self)?,
        )))
    }

    fn size(&self) -> Option<u64> {
        std::fs::metadata(self).ok().map(|m| m.len())
    }
}

/// Input held in memory (tests).
impl Source for String {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + '_>> {
        Ok(Box::new(self.as_bytes()))
    }

    fn size(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

impl Source for Vec<u8> {
    fn open(&self) -> std::io::Result<Box<dyn BufRead + '_>> {
        Ok(Box::new(self.as_slice()))
    }

    fn size(&self) -> Option<u64> {
        Some(self.len() as u64)
    }
}

/// Calls `each` with every event of `input` in order (blank lines skipped), counting them on
/// `meter`; a bad line goes to `bad`, whose error (if any) stops the pass.
pub fn for_each_event(
    input: impl BufRead,
    limits: &Limits,
    meter: &mut Meter,
    mut bad: impl FnMut(InvalidEvent) -> Result<(), ReplayError>,
    mut each: impl FnMut(Event) -> Result<(), ReplayError>,
) -> Result<u64, ReplayError> {
    let mut count = 0;
    let input = Counted::new(input, meter.byte_counter());
    for (n, line) in input.lines().enumerate() {
        let line = line?;
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match parse_event(line, Location::Line(n + 1), limits) {
            Ok(event) => {
                each(event)?;
                count += 1;
                meter.event();
            }
            Err(why) => bad(why)?,
        }
    }
    Ok(count)
}

/// Refuses the whole input at its first bad line.
fn refuse(why: InvalidEvent) -> Result<(), ReplayError> {
    Err(why.into())
}

/// Reads and validates every line; the first bad line fails the whole input.
pub fn validate(
    source: &(impl Source + ?Sized),
    limits: &Limits,
    progress: ProgressMode,
) -> Result<u64, ReplayError> {
    let mut meter = Meter::new("validating", source.size(), progress);
    let count = for_each_event(source.open()?, limits, &mut meter, refuse, |_| Ok(()))?;
    meter.finish();
    Ok(count)
}

/// One pass of consolidation over `source` (the caller validated it, unless `partial`, which
/// skips bad lines into the returned [`Skipped`] instead).
fn consolidate_source(
    config: &Config,
    source: &(impl Source + ?Sized),
    limits: &Limits,
    options: &ReplayOptions,
    emit: impl FnMut(&mut Vec<Closed>) -> Result<(), ReplayError>,
) -> Result<(BatchReport, Skipped), ReplayError> {
    let mut meter = Meter::new("writing", source.size(), options.progress);
    let mut skipped = Skipped::default();
    let bad = |why: InvalidEvent| match options.partial {
        true => {
            skipped.note(why);
            Ok(())
        }
        false => refuse(why),
    };
    let report = consolidate_events(config, source.open()?, limits, &mut meter, bad, emit)?;
    meter.finish();
    Ok((report, skipped))
}

/// Consolidates the events of `input` in order with their own times as the clock and `now` for
/// the retention, passing closed and late buckets to `emit` as they come, the rest at the end.
pub fn consolidate_events(
    config: &Config,
    input: impl BufRead,
    limits: &Limits,
    meter: &mut Meter,
    bad: impl FnMut(InvalidEvent) -> Result<(), ReplayError>,
    mut emit: impl FnMut(&mut Vec<Closed>) -> Result<(), ReplayError>,
) -> Result<BatchReport, ReplayError> {
    let mut consolidator = crate::pipeline::new_consolidator(config);
    consolidator.set_horizons(&retention_horizons(config, limits.now));
    let mut report = BatchReport::new(config.archives.len());
    let mut clock = EpochMillis::MIN;
    let mut closed = Vec::new();
    for_each_event(input, limits, meter, bad, |event| {
        report.count(consolidator.record_event(&event)?);
        clock = clock.max(event.timestamp);
        consolidator.flush_due(clock, &mut closed);
        if consolidator.late_buckets() >= LATE_TABLE_MAX {
            consolidator.drain_late(&mut closed);
        }
        if !closed.is_empty() {
            emit(&mut closed)?;
        }
        Ok(())
    })?;
    consolidator.flush_all(&mut closed);
    consolidator.drain_late(&mut closed);
    emit(&mut closed)?;
    Ok(report)
}

/// Writes the `_bulk` body for the events of `source` to `out`, touching no node. The buckets
/// are merged here (a late slice into the bucket written before it), so each appears once; this
/// holds every bucket until the end.
pub fn dry_run(
    config: &Config,
    source: &(impl Source + ?Sized),
    limits: &Limits,
    options: &ReplayOptions,
    out: &mut impl Write,
) -> Result<ReplaySummary, ReplayError> {
    if !options.partial {
        validate(source, limits, options.progress)?;
    }
    let mut buckets: BTreeMap<(usize, EpochMillis, Arc<str>), Closed> = BTreeMap::new();
    let (report, skipped) = consolidate_source(config, source, limits, options, |closed| {
        for c in closed.drain(..) {
            let key = (c.archive, c.summary.start, c.series.clone());
            match buckets.get_mut(&key) {
                Some(earlier) => earlier.absorb(c),
                None => {
                    buckets.insert(key, c);
                }
            }
        }
        Ok(())
    })?;
    let mut encoder = DocumentEncoder::new(config);
    let mut buf = Vec::new();
    let mut ends = Vec::new();
    for c in buckets.values() {
        encoder.encode(c, Op::Create, 0, &mut buf);
        if encoder.writes_companions() {
            encoder.encode_companions(c, &mut buf, &mut ends);
        }
        out.write_all(&buf)?;
        buf.clear();
    }
    out.flush()?;
    Ok(ReplaySummary::new(&report, buckets.len() as u64, skipped))
}

/// Writes the events of `source` to the node at `url` (or the configured one); see
/// [`ReplayOptions`].
pub async fn to_node(
    config: &Config,
    url: Option<String>,
    source: Arc<dyn Source + Send + Sync>,
    limits: Limits,
    options: ReplayOptions,
) -> Result<ReplaySummary, ReplayError> {
    if !options.partial {
        validate(source.as_ref(), &limits, options.progress)?;
    }
    let shutdown = options.shutdown.clone();
    let url = config.node.url_or(url)?;
    let backend = Arc::new(HttpBackend::connect(&url, &config.node)?);
    wait_for_node(backend.as_ref(), &shutdown).await?;
    let stats = Arc::new(Stats::default());
    let new_index = Arc::new(tokio::sync::Notify::new());
    let write = start_write_path(config, backend, stats.clone(), shutdown, new_index, None).await?;
    // Consolidation is synchronous; a thread feeds the writer through the bounded channel, so a
    // slow node slows the replay instead of filling memory.
    let tx = write.closed;
    let cfg = config.clone();
    let feeder = tokio::task::spawn_blocking(move || {
        let mut documents = 0u64;
        let (report, skipped) =
            consolidate_source(&cfg, source.as_ref(), &limits, &options, |closed| {
                for c in closed.drain(..) {
                    documents += 1;
                    if tx.blocking_send(c).is_err() {
                        break;
                    }
                }
                Ok(())
            })?;
        Ok::<_, ReplayError>((report, documents, skipped))
    });
    let (report, documents, skipped) = feeder.await.map_err(ReplayError::Panicked)??;
    let _ = write.writer.await;
    let s = stats.snapshot();
    if s.docs_rejected > 0 || s.docs_dropped > 0 {
        return Err(ReplayError::Incomplete {
            rejected: s.docs_rejected,
            dropped: s.docs_dropped,
        });
    }
    Ok(ReplaySummary::new(&report, documents, skipped))
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
            now: 86_400_000 + 3_600_000,
            max_future_skew_ms: 0,
            max_name_length: 100,
            max_tags: 4,
        }
    }

    #[test]
    fn bad_line_is_named_and_nothing_is_kept() {
        let input =
            "{\"name\":\"a\",\"value\":1,\"timestamp\":0}\n\n{\"name\":\"a\"}\n".to_string();
        let err = validate(&input, &limits(), ProgressMode::Off).unwrap_err();
        assert_eq!(
            crate::errors::Chain(&err).to_string(),
            "line 3: field 'value': is required (or the partial fields count, sum, min, max, first, last); nothing was written",
            "said once, not again as its cause"
        );
        assert!(
            refused_whole(&input),
            "nothing printed before the whole input is valid"
        );
    }

    #[test]
    fn partial_skips_bad_lines_naming_the_first_three_and_keeps_the_rest() {
        let mut input = ndjson(&[("m", 0, 1.0), ("m", 10, 3.0)]);
        for n in 0..5 {
            input.push_str(&format!("{{\"name\":\"bad{n}\"}}\n"));
        }
        input.push_str(&ndjson(&[("m", 20, 5.0)]));
        let options = ReplayOptions {
            partial: true,
            ..Default::default()
        };
        let mut out = Vec::new();
        let summary = dry_run(&config(), &input, &limits(), &options, &mut out).unwrap();
        assert_eq!((summary.events, summary.skipped.lines), (3, 5));
        assert_eq!(summary.skipped.first.len(), 3);
        assert!(
            summary.skipped.first[0].starts_with("line 3: field 'value'"),
            "{:?}",
            summary.skipped
        );
        assert!(summary.skipped.first[2].starts_with("line 5:"));
        // Without --partial the same input writes nothing.
        assert!(refused_whole(&input));
    }

    /// Whether a dry run refuses `input` without printing anything.
    fn refused_whole(input: &String) -> bool {
        let mut out = Vec::new();
        let result = dry_run(
            &config(),
            input,
            &limits(),
            &ReplayOptions::default(),
            &mut out,
        );
        result.is_err() && out.is_empty()
    }

    fn ndjson(points: &[(&str, i64, f64)]) -> String {
        points
            .iter()
            .map(|(name, t, v)| {
                format!(
                    "{{\"name\":\"{name}\",\"value\":{v},\"timestamp\":{}}}\n",
                    t * 1000
                )
            })
            .collect()
    }

    /// The dry run's documents, as JSON.
    fn dry_documents(input: &String) -> (ReplaySummary, Vec<serde_json::Value>) {
        let mut out = Vec::new();
        let summary = dry_run(
            &config(),
            input,
            &limits(),
            &ReplayOptions::default(),
            &mut out,
        )
        .unwrap();
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        (summary, lines.into_iter().skip(1).step_by(2).collect())
    }

    #[test]
    fn dry_run_prints_the_bulk_body_of_the_issue_example() {
        let input = ndjson(&[
            ("m", 0, 1.0),
            ("m", 10, 3.0),
            ("m", 20, 5.0),
            ("m", 30, 7.0),
            ("m", 40, 2.0),
        ]);
        let mut out = Vec::new();
        let summary = dry_run(
            &config(),
            &input,
            &limits(),
            &ReplayOptions::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(
            summary,
            ReplaySummary {
                events: 5,
                recorded: 5,
                documents: 3,
                ..ReplaySummary::default()
            }
        );
        let lines: Vec<serde_json::Value> = String::from_utf8(out)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 6);
        assert_eq!(lines[0]["create"]["_index"], "strata-20s-1970.01.01");
        let counts: Vec<u64> = lines
            .iter()
            .skip(1)
            .step_by(2)
            .map(|d| d["count"].as_u64().unwrap())
            .collect();
        assert_eq!(counts, vec![2, 2, 1]);
    }

    #[test]
    fn a_file_grouped_by_series_gives_what_time_order_gives() {
        let mut points = Vec::new();
        for name in ["a", "b"] {
            for t in 0..100 {
                points.push((name, t * 7, (t % 13) as f64));
            }
        }
        let grouped = ndjson(&points);
        points.sort_by_key(|&(name, t, _)| (t, name));
        let sorted = ndjson(&points);
        points.reverse();
        let reversed = ndjson(&points);
        let (in_order, docs) = dry_documents(&sorted);
        assert_eq!(in_order.merged, 0);
        let (by_series, grouped_docs) = dry_documents(&grouped);
        assert!(by_series.merged > 0, "series b came after a's clock");
        assert_eq!(grouped_docs, docs);
        let (backwards, reversed_docs) = dry_documents(&reversed);
        assert!(backwards.merged > 0);
        assert_eq!(reversed_docs, docs);
    }

    #[test]
    fn events_older_than_the_retention_expire() {
        // now is 1970-01-02T01:00:00Z; the retention is 2 days of daily indices, so the index
        // of 1970-01-01 is kept until 1970-01-03, and that of 1969-12-31 expired at 01-02.
        let input = ndjson(&[("a", -10, 1.0), ("a", 5, 1.0)]);
        let (summary, docs) = dry_documents(&input);
        assert_eq!(
            (summary.recorded, summary.merged, summary.expired),
            (1, 0, 1)
        );
        assert_eq!(docs.len(), 1);
    }
}
