//! The consolidator's side of durability: every input is appended to the write-ahead log and
//! applied only once the log holds it, in log order; start-up restores the last checkpoint and
//! replays the log after it through the same [`apply`] functions, so the state, the closed
//! buckets and their positions come out as they were.
//!
//! Applying only what is durable is what makes the positions trustworthy: no bucket reaches the
//! node carrying a position that a crash could take back and hand to another record.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicU64;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::clock::EpochMillis;
use crate::config::Config;
use crate::consolidate::{BatchReport, Closed, ConsolidateError, Consolidator, SnapshotError};
use crate::durable::checkpoint::{self, CheckpointError, KeeperWork};
use crate::durable::ledger::Ledger;
use crate::durable::log::{self, Append, Committed, LogError, ReadBack};
use crate::durable::record::{self, Keys, Record};
use crate::event::Event;
use crate::ingest::handle::IngestBatch;
use crate::maintain::plan::retention_horizons;

use super::{archive_specs, LATE_TABLE_MAX};

/// Why the data directory could not be used at start-up.
#[derive(Debug, thiserror::Error)]
pub enum DurableError {
    #[error("cannot use the data directory {path} (durability.dir): {source}")]
    Dir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error("log record {seq} passed its checksum but does not read as a record (written by another version of strata?)")]
    Record { seq: u64 },
    #[error("the writer stopped during the replay of the log")]
    WriterGone,
}

/// An input the log holds (`Ok`), or one it could not take, with why.
pub(crate) type Ready = Result<Input, (Input, String)>;

/// One input of the consolidator.
pub(crate) enum Input {
    Batch(IngestBatch),
    Tick(EpochMillis),
    Shutdown,
}

/// Records `events` (all or nothing when `whole`, else each on its own); hands the late table
/// on when it is full. The refusal of `record_each` is returned beside its report.
pub(crate) fn apply_events(
    c: &mut Consolidator,
    events: &[Event],
    whole: bool,
    out: &mut Vec<Closed>,
) -> (
    Result<BatchReport, ConsolidateError>,
    Option<ConsolidateError>,
) {
    let result = if whole {
        (c.record_batch(events), None)
    } else {
        let (report, refusal) = c.record_each(events);
        (Ok(report), refusal)
    };
    if c.late_buckets() >= LATE_TABLE_MAX {
        c.drain_late(out);
    }
    result
}

/// The clock struck `now`: horizons move, due buckets close, the late table is handed on.
pub(crate) fn apply_tick(
    c: &mut Consolidator,
    config: &Config,
    now: EpochMillis,
    out: &mut Vec<Closed>,
) {
    c.set_horizons(&retention_horizons(config, now));
    c.flush_due(now, out);
    c.drain_late(out);
}

/// A graceful stop: every open bucket closes. The next run starts with the clock unknown, as a
/// fresh consolidator does, so its first tick sets it.
pub(crate) fn apply_shutdown(c: &mut Consolidator, out: &mut Vec<Closed>) {
    c.flush_all(out);
    c.drain_late(out);
    c.forget_time();
}

/// The data directory, opened: the log's identity and where to restart from.
pub(crate) struct DataDir {
    pub(crate) dir: PathBuf,
    pub(crate) log_id: u64,
    pub(crate) ledger: Arc<Ledger>,
    pub(crate) disk: Arc<AtomicU64>,
}

impl DataDir {
    /// Creates the directory if needed and reads (or makes) the log's identity.
    pub(crate) fn open(dir: &Path) -> Result<Self, DurableError> {
        let fail = |source| DurableError::Dir {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(fail)?;
        let id_path = dir.join("log-id");
        let log_id = match std::fs::read_to_string(&id_path) {
            Ok(text) => u64::from_str_radix(text.trim(), 16).map_err(|_| {
                fail(std::io::Error::other(format!(
                    "{} does not hold a log id (16 hex digits)",
                    id_path.display()
                )))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let id = new_log_id();
                let tmp = dir.join("log-id.tmp");
                std::fs::write(&tmp, format!("{id:016x}\n")).map_err(fail)?;
                std::fs::rename(&tmp, &id_path).map_err(fail)?;
                id
            }
            Err(e) => return Err(fail(e)),
        };
        let disk = Arc::new(AtomicU64::new(checkpoint::disk_bytes(dir)));
        Ok(Self {
            dir: dir.to_path_buf(),
            log_id,
            ledger: Arc::default(),
            disk,
        })
    }
}

/// A log id no other data directory is likely to have: the time and the process, hashed with a
/// random key.
fn new_log_id() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let id = std::collections::hash_map::RandomState::new().hash_one((nanos, std::process::id()));
    id.max(1)
}

/// What start-up rebuilt.
pub(crate) struct Recovered {
    pub(crate) consolidator: Consolidator,
    pub(crate) from: u64,
    pub(crate) read: ReadBack,
    pub(crate) buckets: u64,
}

/// Restores the restart point and replays the log after it, handing the buckets it closes to
/// `hand` (false: the writer is gone). Blocking: run it off the runtime's threads.
pub(crate) fn recover(
    data: &DataDir,
    config: &Config,
    mut hand: impl FnMut(Closed) -> bool,
) -> Result<Recovered, DurableError> {
    let specs = archive_specs(config);
    let max_series = config.consolidate.max_series;
    let (from, mut c) = match checkpoint::restart_point(&data.dir)? {
        Some((seq, bytes)) => (
            seq,
            Consolidator::restore(&specs, max_series, &bytes)?
                .with_max_tag_keys(config.consolidate.max_tag_keys),
        ),
        None => (0, super::new_consolidator(config)),
    };
    let mut keys = Keys::default();
    let mut out = Vec::new();
    let mut failure = None;
    let mut buckets = 0;
    let read = log::read_back(&data.dir, from, |seq, payload| {
        if failure.is_some() {
            return;
        }
        match record::decode(payload, &mut keys) {
            Ok(Record::Batch { whole, events }) => {
                let _ = apply_events(&mut c, &events, whole, &mut out);
            }
            Ok(Record::Tick { now }) => apply_tick(&mut c, config, now, &mut out),
            Ok(Record::Shutdown) => apply_shutdown(&mut c, &mut out),
            Err(_) => failure = Some(DurableError::Record { seq }),
        }
        data.ledger.handed(seq, out.len() as u64);
        buckets += out.len() as u64;
        for mut bucket in out.drain(..) {
            bucket.seq = seq;
            if !hand(bucket) {
                failure = Some(DurableError::WriterGone);
                return;
            }
        }
    })?;
    if let Some(failure) = failure {
        return Err(failure);
    }
    Ok(Recovered {
        consolidator: c,
        from,
        read,
        buckets,
    })
}

/// The log as the consolidator task sees it: appends in, positions made durable out, and the
/// inputs waiting for them.
pub(crate) struct Journal {
    appends: mpsc::Sender<Append>,
    committed: mpsc::UnboundedReceiver<Committed>,
    next_seq: u64,
    /// Every position up to this one is durable.
    durable: u64,
    /// Positions the log thread could not write, with why.
    failed: VecDeque<(u64, u64, String)>,
    waiting: VecDeque<(u64, Input)>,
    pub(crate) ledger: Arc<Ledger>,
    keeper: SyncSender<KeeperWork>,
    /// The last position applied.
    applied: u64,
    checkpointed: u64,
    pub(crate) checkpoint_every: Duration,
    snapshot_size: usize,
    /// The data directory's size, as the log and checkpoint threads keep it.
    pub(crate) disk: Arc<AtomicU64>,
}

impl Journal {
    /// Starts the log thread at `next_seq` (after what recovery read) and the checkpoint keeper.
    pub(crate) fn start(
        data: &DataDir,
        config: &Config,
        next_seq: u64,
    ) -> Result<
        (
            Self,
            std::thread::JoinHandle<()>,
            std::thread::JoinHandle<()>,
        ),
        DurableError,
    > {
        let d = &config.durability;
        let sync = if d.fsync {
            log::Sync::Data
        } else {
            log::Sync::None
        };
        let writer = log::start_writer_with(
            &data.dir,
            next_seq,
            sync,
            config.consolidate.queue_batches,
            data.disk.clone(),
            log::segment_bytes(d.max_disk_bytes),
        )?;
        let (keeper, keeper_thread) = checkpoint::start_keeper(
            data.dir.clone(),
            data.ledger.clone(),
            data.disk.clone(),
            Duration::from_secs(1),
        );
        let journal = Self {
            appends: writer.appends,
            committed: writer.committed,
            next_seq,
            durable: next_seq - 1,
            failed: VecDeque::new(),
            waiting: VecDeque::new(),
            ledger: data.ledger.clone(),
            keeper,
            applied: next_seq - 1,
            checkpointed: 0,
            checkpoint_every: d.checkpoint_interval,
            snapshot_size: 1 << 16,
            disk: data.disk.clone(),
        };
        Ok((journal, writer.thread, keeper_thread))
    }

    /// Appends `input` to the log (waiting while the log thread is behind: push-back); it is
    /// applied once durable. Gives the input back if the log thread is gone.
    pub(crate) async fn append(&mut self, input: Input) -> Result<(), Input> {
        let mut payload = Vec::new();
        match &input {
            Input::Batch(b) => {
                payload.reserve(16 + b.events.len() * 48);
                record::encode_batch(b.whole, &b.events, &mut payload);
            }
            Input::Tick(now) => record::encode_tick(*now, &mut payload),
            Input::Shutdown => record::encode_shutdown(&mut payload),
        }
        let seq = self.next_seq;
        if self.appends.send(Append { seq, payload }).await.is_err() {
            return Err(input);
        }
        self.next_seq += 1;
        self.waiting.push_back((seq, input));
        Ok(())
    }

    /// Waits for the log thread's next report.
    pub(crate) async fn committed(&mut self) -> Option<Committed> {
        self.committed.recv().await
    }

    pub(crate) fn note(&mut self, committed: Committed) {
        match committed {
            Committed::Through(seq) => self.durable = self.durable.max(seq),
            Committed::Failed {
                from,
                through,
                error,
            } => self.failed.push_back((from, through, error)),
        }
    }

    /// The oldest waiting input, once the log holds it (`Ok`) or failed to (`Err`, with why).
    pub(crate) fn next_ready(&mut self) -> Option<(u64, Ready)> {
        let &(seq, _) = self.waiting.front()?;
        while self
            .failed
            .front()
            .is_some_and(|(_, through, _)| *through < seq)
        {
            self.failed.pop_front();
        }
        let failed = self
            .failed
            .front()
            .filter(|(from, _, _)| *from <= seq)
            .map(|(_, _, why)| why.clone());
        if failed.is_none() && seq > self.durable {
            return None;
        }
        let (seq, input) = self.waiting.pop_front()?;
        Some(match failed {
            Some(why) => (seq, Err((input, why))),
            None => {
                self.applied = seq;
                (seq, Ok(input))
            }
        })
    }

    /// Whether inputs wait for the log.
    pub(crate) fn has_waiting(&self) -> bool {
        !self.waiting.is_empty()
    }

    /// Hands a snapshot of `c` (as of the last position applied) to the keeper, unless nothing
    /// was applied since the last one or the keeper is still writing the previous one.
    pub(crate) fn checkpoint(&mut self, c: &Consolidator) {
        if self.applied == self.checkpointed {
            return;
        }
        let started = std::time::Instant::now();
        let mut snapshot = Vec::with_capacity(self.snapshot_size);
        c.snapshot(&mut snapshot);
        self.snapshot_size = snapshot.len() + snapshot.len() / 8;
        let bytes = snapshot.len();
        match self.keeper.try_send(KeeperWork::Write {
            seq: self.applied,
            snapshot,
        }) {
            Ok(()) => {
                tracing::debug!(
                    seq = self.applied,
                    bytes,
                    took_ms = started.elapsed().as_millis() as u64,
                    "checkpoint taken (the consolidator paused this long)"
                );
                self.checkpointed = self.applied;
            }
            Err(_) => tracing::warn!(
                "the previous checkpoint is still being written; this one is skipped"
            ),
        }
    }
}
