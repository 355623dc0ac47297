//! The write-ahead log on disk: numbered records in segment files, each framed with its length
//! and a CRC, appended by one thread with group commit, read back at start-up.
//!
//! ```text
//! <dir>/log/<first seq, 20 digits>.wal   frames: len u32 | crc32 u32 | seq u64 | payload
//! ```
//! Group commit: the thread takes every append waiting, writes them in one go and syncs once,
//! then reports the last position it made durable. So a sync covers as many requests as arrived
//! during the previous one, and its cost is shared. A frame is whole or it is not there: a
//! torn or corrupt tail (power lost mid-write) fails its CRC and is cut off at start-up; only
//! records nobody was told about can be in it, since nothing is answered before its sync.

use std::fs::{File, OpenOptions};

use crate::durable::files::{listed, numbered, sync_dir};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::sync::mpsc;

/// A segment is closed and a new one begun past this size (or an eighth of the disk bound, when
/// that is smaller), so that whole files can be removed once a checkpoint covers them.
pub const SEGMENT_BYTES: u64 = 64 << 20;

/// The segment size for a disk bound of `max_disk_bytes`.
pub fn segment_bytes(max_disk_bytes: u64) -> u64 {
    (max_disk_bytes / 8).clamp(1 << 20, SEGMENT_BYTES)
}
/// One group's writes at most: appends past this wait for the next sync.
const GROUP_BYTES: usize = 16 << 20;
/// Frame header: length, CRC, position.
const HEADER: usize = 16;
/// A record larger than this is damage, not a record (a batch is bounded by the HTTP body
/// limit, far below).
const MAX_RECORD: usize = 1 << 30;

/// Why the log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("cannot use the log directory {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "log segment {path} is damaged at byte {offset}, and later segments follow it: the \
         records after it cannot be trusted; move the segment aside to start without them"
    )]
    Corrupt { path: PathBuf, offset: u64 },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LogError + '_ {
    move |source| LogError::Io {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn segment_dir(dir: &Path) -> PathBuf {
    dir.join("log")
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    numbered(&segment_dir(dir), first_seq, "wal")
}

/// The segments in `dir`, by first position.
pub(crate) fn segments(dir: &Path) -> Result<Vec<(u64, PathBuf)>, LogError> {
    let path = segment_dir(dir);
    listed(&path, "wal").map_err(io(&path))
}

/// Appends one framed record to `out`.
pub fn frame(seq: u64, payload: &[u8], out: &mut Vec<u8>) {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&seq.to_le_bytes());
    crc.update(payload);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc.finalize().to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(payload);
}

/// The next whole frame of `bytes` at `at`: (position, payload, end), or `None` where the
/// bytes stop being a frame.
fn next_frame(bytes: &[u8], at: usize) -> Option<(u64, &[u8], usize)> {
    let header = bytes.get(at..at + HEADER)?;
    let len = u32::from_le_bytes(header[0..4].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(header[4..8].try_into().ok()?);
    let seq = u64::from_le_bytes(header[8..16].try_into().ok()?);
    if len > MAX_RECORD {
        return None;
    }
    let payload = bytes.get(at + HEADER..at + HEADER + len)?;
    let mut check = crc32fast::Hasher::new();
    check.update(&header[8..16]);
    check.update(payload);
    (check.finalize() == crc).then_some((seq, payload, at + HEADER + len))
}

/// What reading the log back found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReadBack {
    /// The last position found (0: none).
    pub last_seq: u64,
    /// Records handed to the caller (those after `from`).
    pub records: u64,
    /// Bytes cut off the end of the last segment: a torn or corrupt tail.
    pub truncated_bytes: u64,
}

/// Hands every record after position `from` to `each`, oldest first. A damaged tail of the
/// last segment is cut off (and reported in [`ReadBack::truncated_bytes`]); damage in an
/// earlier segment is an error, since acknowledged records follow it.
pub fn read_back(
    dir: &Path,
    from: u64,
    mut each: impl FnMut(u64, &[u8]),
) -> Result<ReadBack, LogError> {
    let mut out = ReadBack::default();
    let all = segments(dir)?;
    for (i, (_, path)) in all.iter().enumerate() {
        let last_segment = i + 1 == all.len();
        // A segment whose successor starts at or before `from + 1` holds nothing to replay.
        if let Some((next, _)) = all.get(i + 1).filter(|(next, _)| *next <= from + 1) {
            out.last_seq = out.last_seq.max(next - 1);
            continue;
        }
        let bytes = std::fs::read(path).map_err(io(path))?;
        let mut at = 0;
        while at < bytes.len() {
            // Positions only grow: a whole frame out of order is damage too (a sector of old
            // data behind a torn write).
            let frame = next_frame(&bytes, at).filter(|(seq, _, _)| *seq > out.last_seq);
            match frame {
                Some((seq, payload, end)) => {
                    out.last_seq = seq;
                    if seq > from {
                        each(seq, payload);
                        out.records += 1;
                    }
                    at = end;
                }
                None if last_segment => {
                    out.truncated_bytes = (bytes.len() - at) as u64;
                    cut(path, at as u64)?;
                    break;
                }
                None => {
                    return Err(LogError::Corrupt {
                        path: path.clone(),
                        offset: at as u64,
                    })
                }
            }
        }
    }
    Ok(out)
}

fn cut(path: &Path, len: u64) -> Result<(), LogError> {
    let file = OpenOptions::new()
        .write(true)
        .open(path)
        .map_err(io(path))?;
    file.set_len(len).map_err(io(path))?;
    file.sync_all().map_err(io(path))
}

/// One record to append.
pub struct Append {
    pub seq: u64,
    pub payload: Vec<u8>,
}

/// What the log thread reports after each group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Committed {
    /// Every record up to this position is on disk (synced, unless syncing is off).
    Through(u64),
    /// These records could not be written; nothing of them is in the log.
    Failed {
        from: u64,
        through: u64,
        error: String,
    },
}

/// How appends reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sync {
    /// `fdatasync` after each group: an answered event survives power loss.
    Data,
    /// Written to the kernel only: survives a crash of strata, not of the machine.
    None,
}

/// The appending side: where records go, and what was made durable.
pub struct LogWriter {
    pub appends: mpsc::Sender<Append>,
    pub committed: mpsc::UnboundedReceiver<Committed>,
    pub thread: std::thread::JoinHandle<()>,
}

/// Starts the log thread, appending from position `next_seq` in a new segment. `disk_bytes`
/// is raised by what it writes.
pub fn start_writer(
    dir: &Path,
    next_seq: u64,
    sync: Sync,
    queue: usize,
    disk_bytes: Arc<AtomicU64>,
) -> Result<LogWriter, LogError> {
    start_writer_with(dir, next_seq, sync, queue, disk_bytes, SEGMENT_BYTES)
}

/// [`start_writer`] with segments of `segment_limit` bytes.
pub fn start_writer_with(
    dir: &Path,
    next_seq: u64,
    sync: Sync,
    queue: usize,
    disk_bytes: Arc<AtomicU64>,
    segment_limit: u64,
) -> Result<LogWriter, LogError> {
    let segment = Segment::create(dir, next_seq)?;
    let (appends, mut rx) = mpsc::channel::<Append>(queue);
    let (done, committed) = mpsc::unbounded_channel();
    let dir = dir.to_path_buf();
    let thread = std::thread::Builder::new()
        .name("strata-log".into())
        .spawn(move || {
            let mut segment = segment;
            let mut group = Vec::with_capacity(1 << 20);
            while let Some(first) = rx.blocking_recv() {
                group.clear();
                let from = first.seq;
                let mut through = first.seq;
                frame(first.seq, &first.payload, &mut group);
                while group.len() < GROUP_BYTES {
                    let Ok(next) = rx.try_recv() else { break };
                    through = next.seq;
                    frame(next.seq, &next.payload, &mut group);
                }
                let verdict = match segment.append(&group, sync) {
                    Ok(()) => {
                        disk_bytes.fetch_add(group.len() as u64, Ordering::Relaxed);
                        Committed::Through(through)
                    }
                    Err(e) => {
                        tracing::error!(error = %e, from, through, "cannot write the log: these records are refused");
                        Committed::Failed {
                            from,
                            through,
                            error: e.to_string(),
                        }
                    }
                };
                if done.send(verdict).is_err() {
                    break;
                }
                if segment.len >= segment_limit {
                    match Segment::create(&dir, through + 1) {
                        Ok(next) => segment = next,
                        Err(e) => tracing::error!(error = %e, "cannot begin a new log segment; the current one grows"),
                    }
                }
            }
        })
        .map_err(|source| LogError::Io {
            path: segment_dir(Path::new("")),
            source,
        })?;
    Ok(LogWriter {
        appends,
        committed,
        thread,
    })
}

struct Segment {
    file: File,
    path: PathBuf,
    len: u64,
}

impl Segment {
    fn create(dir: &Path, first_seq: u64) -> Result<Self, LogError> {
        let segments = segment_dir(dir);
        std::fs::create_dir_all(&segments).map_err(io(&segments))?;
        let path = segment_path(dir, first_seq);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        let len = file.metadata().map_err(io(&path))?.len();
        sync_dir(&segments).map_err(io(&segments))?;
        Ok(Self { file, path, len })
    }

    /// Writes `group` whole, or leaves the segment as it was.
    fn append(&mut self, group: &[u8], sync: Sync) -> Result<(), LogError> {
        let written = self.file.write_all(group).and_then(|()| match sync {
            Sync::Data => self.file.sync_data(),
            Sync::None => Ok(()),
        });
        match written {
            Ok(()) => {
                self.len += group.len() as u64;
                Ok(())
            }
            Err(e) => {
                // A part of the group may be on disk: cut it, so that no record nobody was told
                // about is replayed, and the next group starts on a frame boundary.
                let _ = self.file.set_len(self.len);
                Err(LogError::Io {
                    path: self.path.clone(),
                    source: e,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("strata-log-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn write(dir: &Path, from: u64, payloads: &[&[u8]]) -> u64 {
        let mut w = start_writer(dir, from, Sync::Data, 16, Arc::default()).unwrap();
        let mut through = 0;
        for (i, p) in payloads.iter().enumerate() {
            w.appends
                .blocking_send(Append {
                    seq: from + i as u64,
                    payload: p.to_vec(),
                })
                .unwrap();
        }
        while through < from + payloads.len() as u64 - 1 {
            match w.committed.blocking_recv().unwrap() {
                Committed::Through(t) => through = t,
                other => panic!("{other:?}"),
            }
        }
        drop(w.appends);
        w.thread.join().unwrap();
        through
    }

    fn read(dir: &Path, from: u64) -> (Vec<(u64, Vec<u8>)>, ReadBack) {
        let mut got = Vec::new();
        let back = read_back(dir, from, |seq, p| got.push((seq, p.to_vec()))).unwrap();
        (got, back)
    }

    #[test]
    fn records_read_back_in_order_after_a_position_across_segments() {
        let dir = temp_dir("order");
        write(&dir, 1, &[b"a", b"bb"]);
        write(&dir, 3, &[b"ccc"]);
        let (got, back) = read(&dir, 1);
        assert_eq!(got, vec![(2, b"bb".to_vec()), (3, b"ccc".to_vec())]);
        assert_eq!(
            (back.last_seq, back.records, back.truncated_bytes),
            (3, 2, 0)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_what_came_before_it_kept() {
        let dir = temp_dir("torn");
        write(&dir, 1, &[b"first", b"second", b"third"]);
        let (_, path) = segments(&dir).unwrap().pop().unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        // Mid-record: the last frame loses its last 3 bytes.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (got, back) = read(&dir, 0);
        assert_eq!(got.len(), 2);
        assert_eq!(
            (back.last_seq, back.truncated_bytes),
            (2, (HEADER + 5 - 3) as u64)
        );
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            len - (HEADER + 5) as u64
        );
        // Appending goes on after it.
        write(&dir, 3, &[b"again"]);
        assert_eq!(read(&dir, 2).0, vec![(3, b"again".to_vec())]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damage_before_the_last_segment_is_an_error() {
        let dir = temp_dir("damage");
        write(&dir, 1, &[b"one", b"two"]);
        write(&dir, 3, &[b"three"]);
        let (_, first) = segments(&dir).unwrap().remove(0);
        let mut bytes = std::fs::read(&first).unwrap();
        bytes[HEADER + 1] ^= 0xff;
        std::fs::write(&first, bytes).unwrap();
        assert!(matches!(
            read_back(&dir, 0, |_, _| {}),
            Err(LogError::Corrupt { offset: 0, .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
