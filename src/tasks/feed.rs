//! The consolidator's door to the stream tasks: after a batch is applied, the events whose
//! name some enabled stream task takes are copied onto a bounded queue. A name is looked up in
//! a hash set first (exact names) and then against the globs, so events no task takes cost one
//! lookup; with no stream task the feed is not built at all. A full queue never waits: the
//! events are left out of the tasks (they are archived all the same) and counted.

use hashbrown::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use tokio::sync::mpsc;

use crate::config::TaskConfig;
use crate::event::Event;
use crate::script::{Glob, SourceKind};
use crate::stats::Stats;

/// The names the enabled stream tasks take.
#[derive(Debug, Default)]
pub struct NameIndex {
    exact: HashSet<Box<str>>,
    globs: Vec<Glob>,
    /// Names seen lately and whether a task takes them, so that a name is matched against the
    /// globs once, not once per event (a receiver sees the same names over and over).
    seen: std::sync::Mutex<HashMap<Box<str>, bool>>,
}

/// Names [`NameIndex`] remembers before it starts over.
const SEEN_NAMES_CAP: usize = 65_536;

impl NameIndex {
    pub fn of<'a>(tasks: impl IntoIterator<Item = &'a TaskConfig>) -> Self {
        let mut index = Self::default();
        for task in tasks {
            if !task.enabled || task.kind() != SourceKind::Stream {
                continue;
            }
            for glob in &task.select.names {
                match glob.literal() {
                    Some(name) => {
                        index.exact.insert(name.into());
                    }
                    None => index.globs.push(glob.clone()),
                }
            }
        }
        index
    }

    pub fn takes(&self, name: &str) -> bool {
        self.exact.contains(name) || self.globs.iter().any(|g| g.matches(name))
    }

    /// Which of `events` some task takes (by their names, remembered).
    fn taken(&self, events: &[Event], out: &mut Vec<bool>) {
        out.clear();
        if self.globs.is_empty() {
            out.extend(events.iter().map(|e| self.exact.contains(e.series.name())));
            return;
        }
        let Ok(mut seen) = self.seen.lock() else {
            out.extend(events.iter().map(|e| self.takes(e.series.name())));
            return;
        };
        for e in events {
            let name = e.series.name();
            let taken = match seen.get(name) {
                Some(&taken) => taken,
                None => {
                    if seen.len() >= SEEN_NAMES_CAP {
                        seen.clear();
                    }
                    let taken = self.takes(name);
                    seen.insert(name.into(), taken);
                    taken
                }
            };
            out.push(taken);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.globs.is_empty()
    }
}

/// A recording under way (`GET /v1/record`): the names it takes and where its events go.
struct Tap {
    names: Vec<Glob>,
    events: mpsc::Sender<Vec<Event>>,
    dropped: Arc<AtomicUsize>,
}

/// Batches one recording may have waiting; past it, its events are left out and counted.
const TAP_QUEUE: usize = 1_024;

/// The receiving end of a recording.
pub struct Recording {
    pub events: mpsc::Receiver<Vec<Event>>,
    /// Events left out because the recording fell behind.
    pub dropped: Arc<AtomicUsize>,
}

/// The sending side, held by the consolidator task.
#[derive(Clone)]
pub struct TaskFeed {
    names: Arc<RwLock<Arc<NameIndex>>>,
    taps: Arc<std::sync::Mutex<Vec<Tap>>>,
    tapping: Arc<std::sync::atomic::AtomicBool>,
    queue: mpsc::Sender<Vec<Event>>,
    /// Events queued and not yet taken by the runner.
    queued: Arc<AtomicUsize>,
    max_queued: usize,
    stats: Arc<Stats>,
}

/// The receiving side, held by the runner.
pub struct FeedQueue {
    pub events: mpsc::Receiver<Vec<Event>>,
    queued: Arc<AtomicUsize>,
}

impl FeedQueue {
    /// Marks `n` events as taken off the queue.
    pub fn taken(&self, n: usize) {
        self.queued.fetch_sub(n, Ordering::Relaxed);
    }
}

/// A feed holding at most `max_queued` events.
pub fn task_feed(index: NameIndex, max_queued: usize, stats: Arc<Stats>) -> (TaskFeed, FeedQueue) {
    // Each queued batch holds at least one event, so the event bound bounds the channel too.
    let (tx, rx) = mpsc::channel(max_queued.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        TaskFeed {
            names: Arc::new(RwLock::new(Arc::new(index))),
            taps: Arc::default(),
            tapping: Arc::default(),
            queue: tx,
            queued: queued.clone(),
            max_queued,
            stats,
        },
        FeedQueue { events: rx, queued },
    )
}

impl TaskFeed {
    /// Copies the events some stream task takes onto the queue (and those a recording takes
    /// onto its own).
    pub fn offer(&self, events: &[Event]) {
        if self.tapping.load(Ordering::Relaxed) {
            self.offer_to_taps(events);
        }
        let names = match self.names.read() {
            Ok(n) => n.clone(),
            Err(_) => return,
        };
        if names.is_empty() {
            return;
        }
        let mut which = Vec::with_capacity(events.len());
        names.taken(events, &mut which);
        let n = which.iter().filter(|&&t| t).count();
        if n == 0 {
            return;
        }
        let stats = &self.stats.tasks;
        // Counted before anything is copied: a full queue costs no copy.
        if self.queued.load(Ordering::Relaxed) + n > self.max_queued {
            Stats::add(&stats.events_dropped, n as u64);
            return;
        }
        let taken: Vec<Event> = events
            .iter()
            .zip(&which)
            .filter(|(_, &t)| t)
            .map(|(e, _)| e.clone())
            .collect();
        self.queued.fetch_add(n, Ordering::Relaxed);
        match self.queue.try_send(taken) {
            Ok(()) => Stats::add(&stats.events, n as u64),
            Err(_) => {
                self.queued.fetch_sub(n, Ordering::Relaxed);
                Stats::add(&stats.events_dropped, n as u64);
            }
        }
    }

    /// Starts a recording of the events whose name matches one of `names` (all when empty).
    pub fn record(&self, names: Vec<Glob>) -> Recording {
        let (tx, rx) = mpsc::channel(TAP_QUEUE);
        let dropped = Arc::new(AtomicUsize::new(0));
        if let Ok(mut taps) = self.taps.lock() {
            taps.push(Tap {
                names,
                events: tx,
                dropped: dropped.clone(),
            });
            self.tapping.store(true, Ordering::Relaxed);
        }
        Recording {
            events: rx,
            dropped,
        }
    }

    fn offer_to_taps(&self, events: &[Event]) {
        let Ok(mut taps) = self.taps.lock() else {
            return;
        };
        taps.retain(|tap| {
            let taken: Vec<Event> = events
                .iter()
                .filter(|e| {
                    tap.names.is_empty() || tap.names.iter().any(|g| g.matches(e.series.name()))
                })
                .cloned()
                .collect();
            if taken.is_empty() {
                return !tap.events.is_closed();
            }
            match tap.events.try_send(taken) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(lost)) => {
                    tap.dropped.fetch_add(lost.len(), Ordering::Relaxed);
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.tapping.store(!taps.is_empty(), Ordering::Relaxed);
    }

    /// Takes the names of a new set of tasks (after a reload, or a task enabled or disabled).
    pub fn set_names(&self, index: NameIndex) {
        if let Ok(mut names) = self.names.write() {
            *names = Arc::new(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{MetricKind, SeriesKey};

    fn event(name: &str) -> Event {
        Event::value(
            SeriesKey::new(name, None, &mut []),
            MetricKind::Gauge,
            1.0,
            0,
        )
    }

    #[tokio::test]
    async fn only_taken_names_are_queued_and_a_full_queue_drops_and_counts() {
        let stats = Arc::new(Stats::default());
        let index = NameIndex {
            exact: ["cpu".into()].into_iter().collect(),
            globs: vec![Glob::new("disk.*")],
            ..Default::default()
        };
        let (feed, mut queue) = task_feed(index, 3, stats.clone());
        feed.offer(&[event("cpu"), event("mem"), event("disk.free")]);
        feed.offer(&[event("cpu"), event("cpu")]);
        let first = queue.events.recv().await.unwrap();
        assert_eq!(
            first.iter().map(|e| e.series.name()).collect::<Vec<_>>(),
            ["cpu", "disk.free"]
        );
        assert_eq!(
            stats.tasks.events_dropped.load(Ordering::Relaxed),
            2,
            "3 held at most"
        );
        queue.taken(first.len());
        feed.offer(&[event("cpu"), event("cpu")]);
        assert_eq!(queue.events.recv().await.unwrap().len(), 2);
        assert_eq!(stats.tasks.events.load(Ordering::Relaxed), 4);
    }

    #[tokio::test]
    async fn a_recording_takes_its_names_whether_a_task_takes_them_or_not_and_ends_when_dropped() {
        let stats = Arc::new(Stats::default());
        let (feed, _queue) = task_feed(NameIndex::default(), 3, stats.clone());
        let mut recording = feed.record(vec![Glob::new("mem*")]);
        feed.offer(&[event("cpu"), event("mem.free")]);
        let got = recording.events.recv().await.unwrap();
        assert_eq!(
            got.iter().map(|e| e.series.name()).collect::<Vec<_>>(),
            ["mem.free"]
        );
        assert_eq!(
            stats.tasks.events.load(Ordering::Relaxed),
            0,
            "no task took them"
        );
        drop(recording);
        feed.offer(&[event("mem")]);
        assert!(!feed.tapping.load(Ordering::Relaxed));
    }
}
