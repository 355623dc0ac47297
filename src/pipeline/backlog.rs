//! Closed buckets that do not fit the writer's queue (the node away, slow or refusing) wait
//! here, in files of the data directory, oldest first; a feeder task hands them to the writer as
//! it takes them. Ingest keeps being answered meanwhile, up to the disk bound.
//!
//! Order is kept whole: once one bucket waits here, every later one waits behind it until the
//! feeder has handed everything on. The merge relies on it — slices of one bucket must reach
//! the node in the order the log closed them (see `persist::merge`).
//!
//! Not crash-safe, on purpose: the write-ahead log holds what these buckets were built from,
//! and the ledger keeps that log until the node acknowledges them, so a restart rebuilds them.
//! The files are removed at start.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};

use crate::clock::EpochMillis;
use crate::codec::Reader;
use crate::consolidate::{decode_closed, encode_closed, Closed};
use crate::stats::Stats;

/// Buckets are gathered in memory up to this many bytes, then written as one file: the memory
/// the backlog holds besides the writer's queue.
const FILE_BYTES: usize = 4 << 20;

pub(crate) fn backlog_dir(data: &Path) -> PathBuf {
    data.join("backlog")
}

/// One file of waiting buckets.
struct Sealed {
    path: PathBuf,
    docs: u64,
    bytes: u64,
    since: EpochMillis,
}

#[derive(Default)]
struct State {
    /// Buckets wait here: later ones must too.
    active: bool,
    sealed: VecDeque<Sealed>,
    tail: Vec<u8>,
    tail_docs: u64,
    tail_since: EpochMillis,
    next_file: u64,
    /// When the buckets the feeder is handing on were added.
    in_hand_since: Option<EpochMillis>,
    /// The producer is done: the feeder stops once everything is handed on.
    finished: bool,
}

/// The backlog, shared by the consolidator task (which adds) and the feeder (which hands on).
#[derive(Clone)]
pub(crate) struct Backlog {
    state: Arc<Mutex<State>>,
    ready: Arc<Notify>,
    dir: PathBuf,
    disk: Arc<AtomicU64>,
    stats: Arc<Stats>,
}

impl Backlog {
    /// The backlog in `data`, emptied of what an earlier run left (the log rebuilds it).
    pub(crate) fn open(
        data: &Path,
        disk: Arc<AtomicU64>,
        stats: Arc<Stats>,
    ) -> std::io::Result<Self> {
        let dir = backlog_dir(data);
        if dir.exists() {
            std::fs::remove_dir_all(&dir)?;
        }
        std::fs::create_dir_all(&dir)?;
        Ok(Self {
            state: Arc::default(),
            ready: Arc::new(Notify::new()),
            dir,
            disk,
            stats,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether buckets wait here (so a new one must wait behind them).
    pub(crate) fn is_active(&self) -> bool {
        self.lock().active
    }

    /// Adds `closed` behind everything waiting; `now` dates it for the oldest age.
    pub(crate) fn push(&self, closed: &Closed, now: EpochMillis) -> std::io::Result<()> {
        let mut s = self.lock();
        if s.tail.is_empty() {
            s.tail_since = now;
        }
        s.active = true;
        encode_closed(closed, &mut s.tail);
        s.tail_docs += 1;
        Stats::add(&self.stats.backlog_docs, 1);
        if s.tail.len() >= FILE_BYTES {
            self.seal(&mut s)?;
        }
        self.show_oldest(&s);
        drop(s);
        self.ready.notify_one();
        Ok(())
    }

    /// Writes the tail as a file.
    fn seal(&self, s: &mut State) -> std::io::Result<()> {
        let path = self.dir.join(format!("{:012}.bin", s.next_file));
        std::fs::write(&path, &s.tail)?;
        s.next_file += 1;
        let bytes = s.tail.len() as u64;
        s.sealed.push_back(Sealed {
            path,
            docs: s.tail_docs,
            bytes,
            since: s.tail_since,
        });
        self.disk.fetch_add(bytes, Ordering::Relaxed);
        Stats::add(&self.stats.backlog_bytes, bytes);
        s.tail.clear();
        s.tail_docs = 0;
        Ok(())
    }

    /// No more buckets will come: the feeder ends once it has handed everything on.
    pub(crate) fn finish(&self) {
        self.lock().finished = true;
        self.ready.notify_one();
    }

    /// Publishes when the oldest bucket not yet handed on was added (0: none).
    fn show_oldest(&self, s: &State) {
        let oldest = s
            .in_hand_since
            .or(s.sealed.front().map(|f| f.since))
            .or((s.tail_docs > 0).then_some(s.tail_since));
        Stats::set(
            &self.stats.backlog_oldest_ms,
            oldest.map_or(0, |t| t.max(1) as u64),
        );
    }

    /// The feeder has handed on the chunk it held.
    fn handed_on(&self) {
        let mut s = self.lock();
        s.in_hand_since = None;
        self.show_oldest(&s);
    }

    /// The next buckets to hand on, oldest first: a file's, else the tail's. `None` when none
    /// wait (the backlog is then inactive) and the producer is done.
    fn next_chunk(&self) -> Option<Option<Chunk>> {
        let mut s = self.lock();
        let chunk = if let Some(file) = s.sealed.pop_front() {
            s.in_hand_since = Some(file.since);
            Some(Chunk::File(file))
        } else if s.tail_docs > 0 {
            s.in_hand_since = Some(s.tail_since);
            let bytes = std::mem::take(&mut s.tail);
            let docs = std::mem::take(&mut s.tail_docs);
            Some(Chunk::Memory(bytes, docs))
        } else {
            s.active = false;
            None
        };
        self.show_oldest(&s);
        match chunk {
            None if s.finished => None,
            chunk => Some(chunk),
        }
    }
}

/// Hands `closed` to the writer's queue if nothing waits in the backlog and the queue has room,
/// else adds it to the backlog (order kept either way). From any thread. `Err` gives it back
/// when the writer is gone or the backlog cannot write.
pub(crate) fn offer(
    backlog: &Backlog,
    output: &mpsc::Sender<Closed>,
    closed: Closed,
    now: EpochMillis,
) -> Result<(), Offer> {
    if !backlog.is_active() {
        match output.try_reserve() {
            Ok(permit) => {
                permit.send(closed);
                return Ok(());
            }
            Err(mpsc::error::TrySendError::Closed(())) => return Err(Offer::WriterGone),
            Err(mpsc::error::TrySendError::Full(())) => {}
        }
    }
    backlog.push(&closed, now).map_err(|e| {
        tracing::error!(error = %e, "cannot write the backlog; waiting for the writer instead");
        Offer::Wait(Box::new(closed))
    })
}

/// Why [`offer`] did not take a bucket.
pub(crate) enum Offer {
    WriterGone,
    /// To be sent to the writer, waiting for room.
    Wait(Box<Closed>),
}

enum Chunk {
    File(Sealed),
    Memory(Vec<u8>, u64),
}

/// Hands the backlog's buckets to the writer, oldest first, waiting for room in its queue,
/// until the backlog is finished and empty.
pub(crate) async fn feed(backlog: Backlog, output: mpsc::Sender<Closed>) {
    loop {
        let chunk = match backlog.next_chunk() {
            None => return,
            Some(None) => {
                tokio::select! {
                    _ = backlog.ready.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                }
                continue;
            }
            Some(Some(chunk)) => chunk,
        };
        let (bytes, docs, file) = match chunk {
            Chunk::Memory(bytes, docs) => (bytes, docs, None),
            Chunk::File(sealed) => match std::fs::read(&sealed.path) {
                Ok(bytes) => (bytes, sealed.docs, Some(sealed)),
                Err(e) => {
                    // The log still holds these buckets (unacknowledged): a restart rebuilds them.
                    tracing::error!(error = %e, path = %sealed.path.display(), docs = sealed.docs, "cannot read a backlog file; its buckets wait for the next restart's replay");
                    continue;
                }
            },
        };
        let mut r = Reader(&bytes);
        let mut handed = 0;
        while !r.is_empty() {
            let Ok(closed) = decode_closed(&mut r) else {
                tracing::error!("a backlog file does not read back; its remaining buckets wait for the next restart's replay");
                break;
            };
            if output.send(closed).await.is_err() {
                return;
            }
            handed += 1;
            Stats::sub(&backlog.stats.backlog_docs, 1);
        }
        Stats::sub(&backlog.stats.backlog_docs, docs.saturating_sub(handed));
        if let Some(sealed) = file {
            let _ = std::fs::remove_file(&sealed.path);
            backlog.disk.fetch_sub(
                sealed.bytes.min(backlog.disk.load(Ordering::Relaxed)),
                Ordering::Relaxed,
            );
            Stats::sub(&backlog.stats.backlog_bytes, sealed.bytes);
        }
        backlog.handed_on();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consolidate::{ArchiveSpec, Consolidator};
    use crate::event::{Event, MetricKind, SeriesKey};

    /// `n` closed buckets of distinct series, numbered by their sum.
    fn buckets(n: usize) -> Vec<Closed> {
        let spec = ArchiveSpec {
            step_ms: 10_000,
            lateness_ms: 0,
            sketches: false,
        };
        let mut c = Consolidator::new(&[spec], n);
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let key =
                    SeriesKey::new(&format!("series-{i:06}-with-a-longer-name"), None, &mut []);
                Event::value(key, MetricKind::Gauge, i as f64, 5_000)
            })
            .collect();
        c.record_each(&events);
        let mut out = Vec::new();
        c.flush_all(&mut out);
        out.sort_by(|a, b| a.summary.sum.total_cmp(&b.summary.sum));
        out
    }

    #[tokio::test]
    async fn buckets_go_through_files_and_memory_and_come_out_in_order() {
        let dir = std::env::temp_dir().join(format!("strata-backlog-{}", std::process::id()));
        let disk = Arc::new(AtomicU64::new(0));
        let stats = Arc::new(Stats::default());
        let backlog = Backlog::open(&dir, disk.clone(), stats.clone()).unwrap();
        // Enough for two files and a tail.
        let all = buckets(100_000);
        for c in &all {
            backlog.push(c, 1_000).unwrap();
        }
        let files = std::fs::read_dir(backlog_dir(&dir)).unwrap().count();
        assert!(files >= 2, "{files} files");
        assert!(disk.load(Ordering::Relaxed) > 0);
        assert_eq!(stats.snapshot().backlog_docs, 100_000);
        assert_eq!(stats.snapshot().backlog_oldest_ms, 1_000);
        backlog.finish();
        let (tx, mut rx) = mpsc::channel(16);
        let feeder = tokio::spawn(feed(backlog.clone(), tx));
        for expected in &all {
            let got = rx.recv().await.unwrap();
            assert_eq!(got.summary.sum, expected.summary.sum, "oldest first");
        }
        assert!(
            rx.recv().await.is_none(),
            "the feeder ends once finished and empty"
        );
        feeder.await.unwrap();
        assert!(!backlog.is_active());
        let s = stats.snapshot();
        assert_eq!(
            (s.backlog_docs, s.backlog_bytes, s.backlog_oldest_ms),
            (0, 0, 0)
        );
        assert_eq!(
            std::fs::read_dir(backlog_dir(&dir)).unwrap().count(),
            0,
            "files removed"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
