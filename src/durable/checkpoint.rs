//! Checkpoints: the consolidator's state (see `consolidate::snapshot`) as of a log position,
//! and the housekeeping that makes one the restart point and removes what it covers.
//!
//! ```text
//! <dir>/checkpoint/<seq, 20 digits>.pending   written, not yet the restart point
//! <dir>/checkpoint/<seq, 20 digits>.ckpt      the restart point: replay the log after <seq>
//! ```
//! A checkpoint at P is written as `.pending` (to a temporary name, synced, renamed). It becomes
//! the restart point — renamed `.ckpt` — once the [`Ledger`] has nothing outstanding at or
//! before P: every bucket closed before P is in the node, and everything after P is in the log.
//! Then older checkpoints and the segments holding only records up to P are removed. Until
//! then a restart replays from the previous restart point, which rebuilds the buckets the node
//! may lack; the documents' log positions keep it from adding any twice.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::durable::files::{self, sync_dir};
use crate::durable::ledger::Ledger;

const MAGIC: &[u8; 8] = b"strataK1";

/// Why a checkpoint could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot use the checkpoint {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the checkpoint {0} is damaged (its checksum does not match); move it aside to restart from the log alone if the log still starts at position 1")]
    Damaged(PathBuf),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CheckpointError + '_ {
    move |source| CheckpointError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn checkpoint_dir(dir: &Path) -> PathBuf {
    dir.join("checkpoint")
}

/// Checkpoint files with the given extension, by position.
fn listed(dir: &Path, extension: &str) -> Result<Vec<(u64, PathBuf)>, CheckpointError> {
    let path = checkpoint_dir(dir);
    files::listed(&path, extension).map_err(io(&path))
}

/// The restart point: its position and the snapshot it holds, or `None` (replay the whole log).
pub fn restart_point(dir: &Path) -> Result<Option<(u64, Vec<u8>)>, CheckpointError> {
    let Some((seq, path)) = listed(dir, "ckpt")?.pop() else {
        return Ok(None);
    };
    let bytes = std::fs::read(&path).map_err(io(&path))?;
    let body = bytes
        .get(..8)
        .filter(|m| m == MAGIC)
        .and_then(|_| bytes.get(8..12))
        .and_then(|crc| {
            let body = &bytes[12..];
            (u32::from_le_bytes(crc.try_into().ok()?) == crc32fast::hash(body)).then_some(body)
        })
        .ok_or_else(|| CheckpointError::Damaged(path.clone()))?;
    Ok(Some((seq, body.to_vec())))
}

/// Writes the snapshot taken at `seq` as a pending checkpoint.
pub fn write_pending(dir: &Path, seq: u64, snapshot: &[u8]) -> Result<u64, CheckpointError> {
    let at = checkpoint_dir(dir);
    std::fs::create_dir_all(&at).map_err(io(&at))?;
    let tmp = files::numbered(&at, seq, "tmp");
    let mut bytes = Vec::with_capacity(snapshot.len() + 12);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&crc32fast::hash(snapshot).to_le_bytes());
    bytes.extend_from_slice(snapshot);
    {
        use std::io::Write;
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        file.write_all(&bytes).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
    }
    let pending = files::numbered(&at, seq, "pending");
    std::fs::rename(&tmp, &pending).map_err(io(&pending))?;
    sync_dir(&at).map_err(io(&at))?;
    Ok(bytes.len() as u64)
}

/// What one housekeeping pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    /// The restart point it made, if any.
    pub promoted: Option<u64>,
    pub removed_segments: usize,
    pub removed_bytes: u64,
}

/// Makes the newest pending checkpoint that the ledger allows the restart point, then removes
/// older checkpoints and the segments it covers.
pub fn housekeep(dir: &Path, ledger: &Ledger) -> Result<Pass, CheckpointError> {
    let mut pass = Pass::default();
    let oldest = ledger.oldest_outstanding();
    let ready = listed(dir, "pending")?
        .into_iter()
        .rfind(|(seq, _)| oldest.is_none_or(|o| o > *seq));
    if let Some((seq, pending)) = ready {
        let ckpt = pending.with_extension("ckpt");
        std::fs::rename(&pending, &ckpt).map_err(io(&ckpt))?;
        let at = checkpoint_dir(dir);
        sync_dir(&at).map_err(io(&at))?;
        pass.promoted = Some(seq);
    }
    let Some((restart, _)) = listed(dir, "ckpt")?.pop() else {
        return Ok(pass);
    };
    for ext in ["ckpt", "pending"] {
        for (seq, path) in listed(dir, ext)? {
            if seq < restart {
                pass.removed_bytes += remove(&path)?;
            }
        }
    }
    let log = crate::durable::log::segment_dir(dir);
    let all = files::listed(&log, "wal").map_err(io(&log))?;
    // A segment holds only records up to the restart point when the next one begins at or
    // before the position after it. The last segment is being written: never removed.
    for pair in all.windows(2) {
        if pair[1].0 <= restart + 1 {
            pass.removed_bytes += remove(&pair[0].1)?;
            pass.removed_segments += 1;
        }
    }
    Ok(pass)
}

fn remove(path: &Path) -> Result<u64, CheckpointError> {
    let len = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    std::fs::remove_file(path).map_err(io(path))?;
    Ok(len)
}

/// Bytes the data directory's log segments, checkpoints and backlog take.
pub fn disk_bytes(dir: &Path) -> u64 {
    let sum = |path: PathBuf| -> u64 {
        std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok()?.metadata().ok())
                    .map(|m| m.len())
                    .sum()
            })
            .unwrap_or(0)
    };
    sum(crate::durable::log::segment_dir(dir)) + sum(checkpoint_dir(dir)) + sum(dir.join("backlog"))
}

/// What the keeper thread is given to do.
pub enum KeeperWork {
    /// Write this snapshot, taken at this position, as a pending checkpoint.
    Write { seq: u64, snapshot: Vec<u8> },
}

/// Runs housekeeping every `every` and writes the checkpoints it is sent, on a thread of its
/// own, until the sender is dropped; then one last pass. `disk` is kept at the directory's size.
pub fn start_keeper(
    dir: PathBuf,
    ledger: Arc<Ledger>,
    disk: Arc<AtomicU64>,
    every: Duration,
) -> (
    std::sync::mpsc::SyncSender<KeeperWork>,
    std::thread::JoinHandle<()>,
) {
    // One snapshot in flight at most: the consolidator skips a checkpoint rather than queue a
    // second copy of its state.
    let (tx, rx) = std::sync::mpsc::sync_channel::<KeeperWork>(1);
    let thread = std::thread::Builder::new()
        .name("strata-checkpoint".into())
        .spawn(move || {
            let pass = |dir: &Path| match housekeep(dir, &ledger) {
                Ok(p) => {
                    if let Some(seq) = p.promoted {
                        tracing::debug!(seq, removed_segments = p.removed_segments, removed_bytes = p.removed_bytes, "checkpoint is the restart point now");
                    }
                    disk.store(disk_bytes(dir), Ordering::Relaxed);
                }
                Err(e) => tracing::error!(error = %e, "checkpoint housekeeping failed; will try again"),
            };
            loop {
                match rx.recv_timeout(every) {
                    Ok(KeeperWork::Write { seq, snapshot }) => {
                        let started = std::time::Instant::now();
                        match write_pending(&dir, seq, &snapshot) {
                            Ok(bytes) => tracing::debug!(seq, bytes, took_ms = started.elapsed().as_millis() as u64, "checkpoint written"),
                            Err(e) => tracing::error!(error = %e, "cannot write a checkpoint; the log keeps growing until one is written"),
                        }
                    }
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
                    Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                }
                pass(&dir);
            }
            pass(&dir);
        })
        .expect("spawn the checkpoint thread");
    (tx, thread)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::log::{segments, start_writer, Append, Committed, Sync};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-ckpt-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn segment_with(dir: &Path, seqs: std::ops::RangeInclusive<u64>) {
        let mut w = start_writer(dir, *seqs.start(), Sync::None, 16, Arc::default()).unwrap();
        for seq in seqs.clone() {
            w.appends
                .blocking_send(Append {
                    seq,
                    payload: vec![1],
                })
                .unwrap();
        }
        while w.committed.blocking_recv() != Some(Committed::Through(*seqs.end())) {}
        drop(w.appends);
        w.thread.join().unwrap();
    }

    #[test]
    fn a_checkpoint_becomes_the_restart_point_once_nothing_before_it_is_outstanding() {
        let dir = temp_dir("promote");
        segment_with(&dir, 1..=10);
        segment_with(&dir, 11..=20);
        segment_with(&dir, 21..=25);
        let ledger = Ledger::default();
        ledger.handed(12, 3);
        write_pending(&dir, 20, b"state at 20").unwrap();
        assert_eq!(restart_point(&dir).unwrap(), None);
        assert_eq!(
            housekeep(&dir, &ledger).unwrap(),
            Pass::default(),
            "12 is outstanding"
        );
        assert_eq!(segments(&dir).unwrap().len(), 3);

        ledger.acknowledged(&std::collections::BTreeMap::from([(12, 3)]));
        let pass = housekeep(&dir, &ledger).unwrap();
        assert_eq!((pass.promoted, pass.removed_segments), (Some(20), 2));
        assert_eq!(
            restart_point(&dir).unwrap(),
            Some((20, b"state at 20".to_vec()))
        );
        assert_eq!(
            segments(&dir).unwrap()[0].0,
            21,
            "the segment after 20 stays"
        );

        write_pending(&dir, 24, b"later").unwrap();
        housekeep(&dir, &ledger).unwrap();
        assert_eq!(
            listed(&dir, "ckpt").unwrap().len(),
            1,
            "older restart points go"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_damaged_checkpoint_is_refused_by_name() {
        let dir = temp_dir("damaged");
        write_pending(&dir, 7, b"state").unwrap();
        housekeep(&dir, &Ledger::default()).unwrap();
        let (_, path) = listed(&dir, "ckpt").unwrap().pop().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert!(matches!(restart_point(&dir), Err(CheckpointError::Damaged(p)) if p == path));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
