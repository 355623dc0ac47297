//! The consolidation core: events in, one [`Summary`] per (series, archive, bucket) out.
//!
//! Pure and synchronous: no I/O, no clock reads. Callers pass event times to [`Consolidator::record`]
//! and "now" to [`Consolidator::flush_due`]. Buckets are aligned to the Unix epoch in UTC
//! (`start = floor(t / step) * step`), so every series, archive and restart agrees on them. A
//! bucket is closed once `now` passes its end plus the archive's lateness. A series with no open
//! bucket left is forgotten, so memory follows the active series only.
//!
//! Nothing is dropped for being late. An event whose bucket is already closed in an archive goes
//! to that archive's *late table*: buckets of their own, grouped per (series, archive, bucket),
//! that [`Consolidator::drain_late`] hands on as [`Closed`] with `late` set, to be merged into the
//! stored document (see `persist::merge`). Only an event older than an archive's retention (its
//! bucket starts before the horizon given to [`Consolidator::set_horizons`]) is left out of that
//! archive, counted as expired. Merging is exact: a [`Summary`] keeps the times of its first and
//! last values, so merging two summaries of a bucket gives what one would have held had every
//! event arrived in time order (sums aside, which are floating-point additions in arrival order).
//!
//! What does not fit a fixed-size [`Summary`] — the quantile sketch of an archive with
//! percentiles, the members of a set — lives in a side table per archive, touched only by the
//! events that need it.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::clock::EpochMillis;
use crate::distinct::Distinct;
use crate::event::{Event, MetricKind, Partial, Sample};
use crate::sketch::Sketch;

mod snapshot;
mod tag_keys;
pub use snapshot::SnapshotError;
pub(crate) use snapshot::{decode_closed, encode_closed};
pub(crate) use snapshot::{kind_code, kind_of};
use tag_keys::TagKeys;

/// Distinct tag keys accepted by default (`consolidate.max_tag_keys`): half the node's default
/// field limit of 1 000 per index, leaving room for strata's own fields.
pub const DEFAULT_MAX_TAG_KEYS: usize = 500;

/// Archives are tracked in a bit mask per event.
pub const MAX_ARCHIVES: usize = 64;

/// What the consolidator needs to know about one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveSpec {
    pub step_ms: i64,
    pub lateness_ms: i64,
    /// Keep a quantile sketch per bucket of gauges and timers.
    pub sketches: bool,
}

/// The statistics of one bucket.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub start: EpochMillis,
    /// Zero only for an empty slot.
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
    pub first: f64,
    pub last: f64,
    /// Times of `first` and `last`, as offsets from `start` (a step is at most a day).
    first_offset: u32,
    last_offset: u32,
    /// Where this bucket's [`Extras`] are in its archive's slab, or [`NO_EXTRAS`].
    extras: u32,
    pub kind: MetricKind,
}

const NO_EXTRAS: u32 = u32::MAX;

impl Summary {
    const EMPTY: Summary = Summary {
        start: 0,
        count: 0,
        sum: 0.0,
        min: 0.0,
        max: 0.0,
        first: 0.0,
        last: 0.0,
        first_offset: 0,
        last_offset: 0,
        extras: NO_EXTRAS,
        kind: MetricKind::Gauge,
    };

    /// A bucket holding one value taken at `at` (which must lie within a day of `start`).
    pub fn new(start: EpochMillis, kind: MetricKind, value: f64, at: EpochMillis) -> Self {
        let offset = (at - start) as u32;
        Self {
            start,
            count: 1,
            sum: value,
            min: value,
            max: value,
            first: value,
            last: value,
            first_offset: offset,
            last_offset: offset,
            extras: NO_EXTRAS,
            kind,
        }
    }

    /// A bucket holding the client-side aggregate `p`, taken at `at`.
    pub fn from_partial(
        start: EpochMillis,
        kind: MetricKind,
        p: &Partial,
        at: EpochMillis,
    ) -> Self {
        let offset = (at - start) as u32;
        Self {
            start,
            count: p.count,
            sum: p.sum,
            min: p.min,
            max: p.max,
            first: p.first,
            last: p.last,
            first_offset: offset,
            last_offset: offset,
            extras: NO_EXTRAS,
            kind,
        }
    }

    #[inline]
    fn from_sample(start: EpochMillis, kind: MetricKind, sample: &Sample, at: EpochMillis) -> Self {
        match sample {
            Sample::Value(v) => Self::new(start, kind, *v, at),
            // A set counts each add once; what matters is the number of distinct members.
            Sample::Member(_) => Self::new(start, kind, 1.0, at),
            Sample::Partial(p) => Self::from_partial(start, kind, p, at),
        }
    }

    /// A bucket read back from its document. `first_at` and `last_at` are clamped into the
    /// bucket's first day; a document written before they were stored passes `start` for both
    /// (its first stays first unless a value comes at the same instant, and any value merged
    /// later becomes last).
    #[allow(clippy::too_many_arguments)]
    pub fn stored(
        start: EpochMillis,
        kind: MetricKind,
        count: u64,
        sum: f64,
        min: f64,
        max: f64,
        (first, first_at): (f64, EpochMillis),
        (last, last_at): (f64, EpochMillis),
    ) -> Self {
        let offset =
            |at: EpochMillis| at.saturating_sub(start).clamp(0, i64::from(u32::MAX)) as u32;
        Self {
            start,
            count,
            sum,
            min,
            max,
            first,
            last,
            first_offset: offset(first_at),
            last_offset: offset(last_at),
            extras: NO_EXTRAS,
            kind,
        }
    }

    /// When the first value of the bucket was taken.
    pub fn first_at(&self) -> EpochMillis {
        self.start + i64::from(self.first_offset)
    }

    /// When the last value of the bucket was taken.
    pub fn last_at(&self) -> EpochMillis {
        self.start + i64::from(self.last_offset)
    }

    /// Adds the statistics of `other`, a summary of the same bucket. On a tie of times the
    /// earlier arrival (`self`) stays first and the later one becomes last.
    #[inline]
    pub fn merge(&mut self, other: &Summary) {
        self.count += other.count;
        self.sum += other.sum;
        self.min = self.min.min(other.min);
        self.max = self.max.max(other.max);
        // First and last go by event time; on a tie the earlier arrival stays first and the later
        // arrival becomes last.
        if other.first_offset < self.first_offset {
            self.first = other.first;
            self.first_offset = other.first_offset;
        }
        if other.last_offset >= self.last_offset {
            self.last = other.last;
            self.last_offset = other.last_offset;
        }
    }

    pub fn avg(&self) -> f64 {
        self.sum / self.count as f64
    }

    fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// What a bucket keeps besides its [`Summary`], when it needs to.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Extras {
    /// The values' quantile sketch (archives with percentiles; gauges and timers).
    pub sketch: Option<Sketch>,
    /// The distinct members seen (sets), by hash.
    pub members: Option<Distinct>,
    /// Distinct members counted in a document that did not store its members (written before
    /// strata stored them): a member seen on both sides of such a merge counts twice.
    pub carried_unique: u64,
}

impl Extras {
    /// Distinct members of a set bucket.
    pub fn unique(&self) -> Option<u64> {
        let now = self.members.as_ref().map(Distinct::count);
        match (now, self.carried_unique) {
            (None, 0) => None,
            (now, carried) => Some(now.unwrap_or(0) + carried),
        }
    }

    pub fn merge(&mut self, other: Extras) {
        match (&mut self.sketch, other.sketch) {
            (Some(mine), Some(theirs)) => mine.merge(&theirs),
            (mine @ None, theirs) => *mine = theirs,
            _ => {}
        }
        match (&mut self.members, other.members) {
            (Some(mine), Some(theirs)) => mine.merge(theirs),
            (mine @ None, theirs) => *mine = theirs,
            _ => {}
        }
        self.carried_unique += other.carried_unique;
    }
}

/// Records what `sample` adds to a bucket beyond its summary: a set's member, or a value for
/// the sketch (when `sketched`).
#[inline]
fn add_extras_to(extras: &mut Extras, sample: &Sample, sketched: bool) {
    match sample {
        Sample::Member(hash) => extras
            .members
            .get_or_insert_with(Default::default)
            .insert(*hash),
        Sample::Value(v) if sketched => extras.sketch.get_or_insert_with(Sketch::new).add(*v),
        Sample::Partial(p) if sketched => {
            sketch_partial(extras.sketch.get_or_insert_with(Sketch::new), p)
        }
        _ => {}
    }
}

/// Whether a bucket of `kind` in `spec` keeps a quantile sketch.
#[inline]
fn sketched(spec: &ArchiveSpec, kind: MetricKind) -> bool {
    spec.sketches && matches!(kind, MetricKind::Gauge | MetricKind::Timer)
}

/// Adds a client-side aggregate to a sketch: it carries no distribution, so it counts as its
/// min, its max and the rest at its mean (exact when all values are equal or there are two).
fn sketch_partial(sketch: &mut Sketch, p: &Partial) {
    sketch.add(p.min);
    if p.count >= 2 {
        sketch.add(p.max);
    }
    if p.count > 2 {
        let rest = (p.sum - p.min - p.max) / (p.count - 2) as f64;
        sketch.add_n(rest.clamp(p.min, p.max), p.count - 2);
    }
}

/// A bucket that will not change any more here: to be written, or merged into its document.
#[derive(Debug, Clone, PartialEq)]
pub struct Closed {
    /// The packed series key (see [`crate::event::SeriesKey`]).
    pub series: Arc<str>,
    /// Index into the archives the consolidator was built with.
    pub archive: usize,
    pub summary: Summary,
    pub extras: Option<Box<Extras>>,
    /// From the late table: its bucket was closed before, so a document for it probably exists.
    pub late: bool,
    /// The position in the write-ahead log of the record whose consolidation closed it (0
    /// without a log). Stored in the document, it tells a replay after a crash whether this
    /// slice is in the document already.
    pub seq: u64,
    /// Other logs' positions found in the stored document (other instances, earlier data
    /// directories): kept when the document is rewritten.
    pub foreign_marks: Vec<(u64, u64)>,
}

impl Closed {
    /// Adds `later`, another slice of the same bucket (same series, archive and start).
    pub fn absorb(&mut self, later: Closed) {
        self.summary.merge(&later.summary);
        self.seq = self.seq.max(later.seq);
        if let Some(extras) = later.extras {
            self.extras
                .get_or_insert_with(Default::default)
                .merge(*extras);
        }
    }
}

/// A series' open buckets, by archive index, oldest first per archive.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenSeries {
    pub key: Arc<str>,
    pub buckets: Vec<(usize, Summary)>,
}

/// Where one event went, per archive (bit `i` for archive `i`): into an open bucket unless its
/// bit is set in `late` (the late table, to be merged) or `expired` (left out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fate {
    pub late: u64,
    pub expired: u64,
}

impl Fate {
    pub fn is_late_in(self, archive: usize) -> bool {
        self.late & (1 << archive) != 0
    }

    pub fn is_expired_in(self, archive: usize) -> bool {
        self.expired & (1 << archive) != 0
    }
}

/// Why the consolidator refused events.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsolidateError {
    #[error("active series limit {limit} reached: new series '{series}' refused")]
    SeriesLimit { limit: usize, series: String },
    /// An event whose type differs from the series' open buckets: merging it would count, say,
    /// a timer's values into a gauge's document.
    #[error("item {item}: field 'type': series '{series}' is a {open} (its buckets are open), not a {sent}: send the {sent} under another name")]
    KindConflict {
        /// The event's place in its batch, from 0.
        item: usize,
        series: String,
        open: &'static str,
        sent: &'static str,
    },
    /// A new tag key past `consolidate.max_tag_keys`: every tag key is a field of the node's
    /// index mapping, which the node bounds.
    #[error("item {item}: field 'tags': tag key '{key}' refused: {limit} distinct tag keys are in use (consolidate.max_tag_keys), and each is a field of the node's index mapping; reuse a tag key, or raise the limit")]
    TagKeyLimit {
        /// The event's place in its batch, from 0.
        item: usize,
        key: String,
        limit: usize,
    },
}

type SeriesId = u32;

/// The tag keys of every open series with the series' latest event time (what forgetting tag
/// keys must keep).
fn keys_in_use(series: &[Option<SeriesEntry>]) -> Vec<(&str, EpochMillis)> {
    series
        .iter()
        .flatten()
        .flat_map(|e| crate::event::tags(&e.key).map(|(k, _)| (k, e.latest)))
        .collect()
}

/// A bucket of the late table: which archive, which bucket, which series.
#[derive(Debug, Clone, PartialEq, Eq)]
struct LateKey {
    archive: u32,
    start: EpochMillis,
    series: Arc<str>,
}

/// [`LateKey`] by reference, to find a bucket without building its key.
#[derive(Hash)]
struct LateQuery<'a> {
    archive: u32,
    start: EpochMillis,
    series: &'a str,
}

impl std::hash::Hash for LateKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        LateQuery {
            archive: self.archive,
            start: self.start,
            series: &self.series,
        }
        .hash(state)
    }
}

impl hashbrown::Equivalent<LateKey> for LateQuery<'_> {
    fn equivalent(&self, key: &LateKey) -> bool {
        self.archive == key.archive && self.start == key.start && self.series == &*key.series
    }
}

/// Late events grouped per bucket until [`Consolidator::drain_late`] hands them on.
type LateTable = HashMap<LateKey, (Summary, Option<Box<Extras>>)>;

struct SeriesEntry {
    key: Arc<str>,
    /// The type of its events: one series has one.
    kind: MetricKind,
    /// Open buckets over all archives; the series is forgotten when this reaches zero.
    open: u32,
    /// The latest event time recorded: when the series is forgotten, its tag keys were last
    /// seen then.
    latest: EpochMillis,
}

struct ArchiveState {
    spec: ArchiveSpec,
    /// The newest open bucket of each series, by series id (empty when none), and the one before
    /// it while that is still within its lateness. Flat arrays: no allocation per bucket, and
    /// the hot path touches one cache line per archive.
    current: Vec<Summary>,
    previous: Vec<Summary>,
    /// Any further open buckets (only when lateness exceeds a step, or events come far out of order).
    older: HashMap<(SeriesId, EpochMillis), Summary>,
    /// Sketches and set members of the open buckets that have them, indexed from their
    /// summaries (no hashing on the hot path), and the free places in it.
    slab: Vec<Extras>,
    slab_free: Vec<u32>,
    /// Series with an open bucket, by bucket start: what to close, in order.
    due: BTreeMap<EpochMillis, Vec<SeriesId>>,
    /// Buckets ending at or before this instant are closed.
    watermark: EpochMillis,
    /// Buckets starting before this instant are past the retention: their events expire.
    horizon: EpochMillis,
}

impl ArchiveState {
    /// Merges `incoming` into the bucket it belongs to (`incoming.start`) of series `id`; true
    /// if that opened a new bucket.
    #[inline]
    fn add(&mut self, id: SeriesId, incoming: Summary) -> bool {
        let (i, start) = (id as usize, incoming.start);
        let current = &mut self.current[i];
        if !current.is_empty() && current.start == start {
            current.merge(&incoming);
            return false;
        }
        if current.is_empty() {
            *current = incoming;
        } else if start > current.start {
            // A newer bucket starts: current becomes previous (and previous, if any, older).
            let was_current = std::mem::replace(current, incoming);
            let was_previous = std::mem::replace(&mut self.previous[i], was_current);
            if !was_previous.is_empty() {
                self.older.insert((id, was_previous.start), was_previous);
            }
        } else {
            let previous = &mut self.previous[i];
            if !previous.is_empty() && previous.start == start {
                previous.merge(&incoming);
                return false;
            }
            // `older` may hold buckets newer than `previous` (out of order), and keep them
            // after `previous` closed: the bucket may be there already.
            if !self.older.is_empty() {
                if let Some(existing) = self.older.get_mut(&(id, start)) {
                    existing.merge(&incoming);
                    return false;
                }
            }
            if previous.is_empty() {
                *previous = incoming;
            } else {
                match self.older.entry((id, start)) {
                    hashbrown::hash_map::Entry::Occupied(mut e) => {
                        e.get_mut().merge(&incoming);
                        return false;
                    }
                    hashbrown::hash_map::Entry::Vacant(e) => {
                        e.insert(incoming);
                    }
                }
            }
        }
        self.due.entry(start).or_default().push(id);
        true
    }

    /// The extras of the open bucket `start` of series `id`, created when it has none yet.
    fn extras_mut(&mut self, id: SeriesId, start: EpochMillis) -> Option<&mut Extras> {
        let i = id as usize;
        let summary = if holds(&self.current[i], start) {
            &mut self.current[i]
        } else if holds(&self.previous[i], start) {
            &mut self.previous[i]
        } else {
            self.older.get_mut(&(id, start))?
        };
        if summary.extras == NO_EXTRAS {
            let slab = &mut self.slab;
            summary.extras = self.slab_free.pop().unwrap_or_else(|| {
                slab.push(Extras::default());
                (slab.len() - 1) as u32
            });
        }
        Some(&mut self.slab[summary.extras as usize])
    }

    /// Records what `sample` adds to bucket `start` beyond its summary: a set's member, or a
    /// value for the sketch of a sketched gauge or timer.
    #[inline]
    fn add_extras(&mut self, id: SeriesId, start: EpochMillis, kind: MetricKind, sample: &Sample) {
        let sketched = sketched(&self.spec, kind);
        if !sketched && !matches!(sample, Sample::Member(_)) {
            return;
        }
        if let Some(extras) = self.extras_mut(id, start) {
            add_extras_to(extras, sample, sketched);
        }
    }

    /// Removes the bucket `start` of series `id`, with its extras.
    fn take(&mut self, id: SeriesId, start: EpochMillis) -> Option<(Summary, Option<Extras>)> {
        let i = id as usize;
        let summary = if holds(&self.current[i], start) {
            std::mem::replace(&mut self.current[i], Summary::EMPTY)
        } else if holds(&self.previous[i], start) {
            std::mem::replace(&mut self.previous[i], Summary::EMPTY)
        } else {
            self.older.remove(&(id, start))?
        };
        if summary.extras == NO_EXTRAS {
            return Some((summary, None));
        }
        self.slab_free.push(summary.extras);
        let extras = std::mem::take(&mut self.slab[summary.extras as usize]);
        Some((summary, Some(extras)))
    }
}

/// Whether a flat-array slot holds the open bucket starting at `start`.
#[inline]
fn holds(slot: &Summary, start: EpochMillis) -> bool {
    !slot.is_empty() && slot.start == start
}

/// Series key → id, storing only the 4-byte ids in the table (the keys live in the series
/// entries): the table of 100 000 series fits in a core's cache, where a map of keys would not.
#[derive(Default)]
struct SeriesIndex {
    table: hashbrown::HashTable<SeriesId>,
    hasher: hashbrown::DefaultHashBuilder,
}

impl SeriesIndex {
    fn len(&self) -> usize {
        self.table.len()
    }

    #[inline]
    fn get(&self, key: &str, series: &[Option<SeriesEntry>]) -> Option<SeriesId> {
        let hash = self.hasher.hash_one(key);
        self.table
            .find(hash, |&id| {
                series[id as usize].as_ref().is_some_and(|e| &*e.key == key)
            })
            .copied()
    }

    fn insert(&mut self, key: &str, id: SeriesId, series: &[Option<SeriesEntry>]) {
        let hash = self.hasher.hash_one(key);
        let hasher = &self.hasher;
        self.table.insert_unique(hash, id, |&other| {
            series[other as usize]
                .as_ref()
                .map_or(0, |e| hasher.hash_one(&*e.key))
        });
    }

    fn remove(&mut self, key: &str, id: SeriesId) {
        let hash = self.hasher.hash_one(key);
        if let Ok(entry) = self.table.find_entry(hash, |&other| other == id) {
            entry.remove();
        }
    }
}

/// What became of a batch's events in one archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ArchiveCounts {
    /// Into open buckets.
    pub recorded: u64,
    /// Into the late table: to be merged into stored buckets.
    pub merged: u64,
    /// Older than the archive's retention: not kept.
    pub expired: u64,
}

/// Totals for one batch of events.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct BatchReport {
    /// Events kept (recorded or merged) in at least one archive.
    pub accepted: u64,
    /// Events merged into a stored bucket in at least one archive.
    pub merged: u64,
    /// Events kept in no archive: older than every archive's retention.
    pub expired: u64,
    /// Events refused one by one ([`Consolidator::record_each`]): at the series limit, or
    /// for a type other than their series'.
    pub refused: u64,
    /// Of `refused`, those refused for their type.
    pub refused_type: u64,
    /// Of `refused`, those refused for a new tag key past the limit.
    pub refused_tag_keys: u64,
    /// Per archive, in configuration order.
    pub archives: Vec<ArchiveCounts>,
}

impl BatchReport {
    pub fn new(archives: usize) -> Self {
        Self {
            archives: vec![ArchiveCounts::default(); archives],
            ..Self::default()
        }
    }

    /// Counts one event by its fate.
    pub fn count(&mut self, fate: Fate) {
        let n = self.archives.len();
        if (fate.expired.count_ones() as usize) < n {
            self.accepted += 1;
        } else {
            self.expired += 1;
        }
        self.merged += u64::from(fate.late != 0);
        for (i, counts) in self.archives.iter_mut().enumerate() {
            if fate.is_expired_in(i) {
                counts.expired += 1;
            } else if fate.is_late_in(i) {
                counts.merged += 1;
            } else {
                counts.recorded += 1;
            }
        }
    }

    /// Adds another batch's totals (of the same archives).
    pub fn add(&mut self, other: &BatchReport) {
        self.accepted += other.accepted;
        self.merged += other.merged;
        self.expired += other.expired;
        for (mine, theirs) in self.archives.iter_mut().zip(&other.archives) {
            mine.recorded += theirs.recorded;
            mine.merged += theirs.merged;
            mine.expired += theirs.expired;
        }
    }
}

/// Consolidates events into per-bucket summaries for every archive.
pub struct Consolidator {
    archives: Vec<ArchiveState>,
    late: LateTable,
    index: SeriesIndex,
    series: Vec<Option<SeriesEntry>>,
    free: Vec<SeriesId>,
    max_series: usize,
    tag_keys: TagKeys,
}

impl Consolidator {
    /// `archives` in configuration order (at most [`MAX_ARCHIVES`]); `max_series` bounds memory.
    pub fn new(archives: &[ArchiveSpec], max_series: usize) -> Self {
        assert!(
            archives.len() <= MAX_ARCHIVES,
            "at most {MAX_ARCHIVES} archives"
        );
        assert!(archives.iter().all(|a| a.step_ms > 0 && a.lateness_ms >= 0));
        Self {
            archives: archives
                .iter()
                .map(|&spec| ArchiveState {
                    spec,
                    current: Vec::new(),
                    previous: Vec::new(),
                    older: HashMap::new(),
                    slab: Vec::new(),
                    slab_free: Vec::new(),
                    due: BTreeMap::new(),
                    watermark: EpochMillis::MIN,
                    horizon: EpochMillis::MIN,
                })
                .collect(),
            late: LateTable::new(),
            index: SeriesIndex::default(),
            series: Vec::new(),
            free: Vec::new(),
            max_series,
            tag_keys: TagKeys::new(DEFAULT_MAX_TAG_KEYS),
        }
    }

    /// Bounds the distinct tag keys accepted (see [`DEFAULT_MAX_TAG_KEYS`]).
    pub fn with_max_tag_keys(mut self, limit: usize) -> Self {
        self.tag_keys.set_limit(limit);
        self
    }

    /// Distinct tag keys remembered: those of open series and of the indices still kept.
    pub fn tag_keys(&self) -> usize {
        self.tag_keys.len()
    }

    /// Remembers tag keys found on the node at start (the fields of the indices kept), so that
    /// a restart without a log still counts them.
    pub fn seed_tag_keys<'a>(&mut self, keys: impl Iterator<Item = &'a str>, at: EpochMillis) {
        self.tag_keys.note(keys, at);
    }

    /// Checks the tag keys of a series about to be opened (or merged late) at `at` against the
    /// limit and remembers them; refuses the event naming the first key past it.
    fn admit_tag_keys(&mut self, key: &str, at: EpochMillis) -> Result<(), ConsolidateError> {
        let series = &self.series;
        self.tag_keys
            .admit(crate::event::tags(key).map(|(k, _)| k), at, || {
                keys_in_use(series)
            })
            .map_err(|over| ConsolidateError::TagKeyLimit {
                item: 0,
                key: over.key,
                limit: over.limit,
            })
    }

    /// Series that have at least one open bucket.
    pub fn active_series(&self) -> usize {
        self.index.len()
    }

    /// The open buckets of up to `limit` series whose name is `name` (any when `None`), by
    /// archive, oldest first.
    pub fn open_series(&self, name: Option<&str>, limit: usize) -> Vec<OpenSeries> {
        let mut out = Vec::new();
        for (id, entry) in self.series.iter().enumerate() {
            let Some(entry) = entry else { continue };
            if name.is_some_and(|n| crate::event::name(&entry.key) != n) {
                continue;
            }
            let mut buckets = Vec::new();
            for (i, a) in self.archives.iter().enumerate() {
                let older = a
                    .older
                    .iter()
                    .filter(|((sid, _), _)| *sid as usize == id)
                    .map(|(_, s)| *s);
                let mut open: Vec<Summary> = [a.previous[id], a.current[id]]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .chain(older)
                    .collect();
                open.sort_by_key(|s| s.start);
                buckets.extend(open.into_iter().map(|s| (i, s)));
            }
            out.push(OpenSeries {
                key: entry.key.clone(),
                buckets,
            });
            if out.len() >= limit {
                break;
            }
        }
        out
    }

    /// Open buckets over all series and archives.
    pub fn open_buckets(&self) -> usize {
        self.open_buckets_per_archive().iter().sum()
    }

    /// Open buckets of each archive, in configuration order.
    pub fn open_buckets_per_archive(&self) -> Vec<usize> {
        self.archives
            .iter()
            .map(|a| a.due.values().map(Vec::len).sum::<usize>())
            .collect()
    }

    /// Records a whole batch, or none of it when it would exceed the series limit.
    pub fn record_batch(&mut self, events: &[Event]) -> Result<BatchReport, ConsolidateError> {
        self.check_room_for(events)?;
        let mut report = BatchReport::new(self.archives.len());
        for e in events {
            report.count(self.record_event(e)?);
        }
        Ok(report)
    }

    /// Records each event on its own: one that would open a series past the limit is refused
    /// (counted in `refused`; the first such error is returned for the log) and the others are
    /// kept.
    pub fn record_each(&mut self, events: &[Event]) -> (BatchReport, Option<ConsolidateError>) {
        let mut report = BatchReport::new(self.archives.len());
        let mut first_refusal = None;
        for (item, e) in events.iter().enumerate() {
            match self.record_event(e) {
                Ok(fate) => report.count(fate),
                Err(mut refusal) => {
                    report.refused += 1;
                    match &mut refusal {
                        ConsolidateError::KindConflict { item: at, .. } => {
                            *at = item;
                            report.refused_type += 1;
                        }
                        ConsolidateError::TagKeyLimit { item: at, .. } => {
                            *at = item;
                            report.refused_tag_keys += 1;
                        }
                        ConsolidateError::SeriesLimit { .. } => {}
                    }
                    first_refusal.get_or_insert(refusal);
                }
            }
        }
        (report, first_refusal)
    }

    /// Records one event; see [`Consolidator::record`].
    #[inline]
    pub fn record_event(&mut self, e: &Event) -> Result<Fate, ConsolidateError> {
        self.record(e.series.as_str(), &e.series, e.kind, &e.sample, e.timestamp)
    }

    /// Fails when the new series among `events` would not fit under the limit, when their new
    /// tag keys would not, or when an event's type differs from its series' (open, or earlier
    /// in the batch).
    fn check_room_for(&mut self, events: &[Event]) -> Result<(), ConsolidateError> {
        let room = self.max_series.saturating_sub(self.index.len());
        let mut new: hashbrown::HashMap<&str, MetricKind> = hashbrown::HashMap::new();
        let mut new_keys: Vec<&str> = Vec::new();
        let mut keys_checked = false;
        for (item, e) in events.iter().enumerate() {
            let key = e.series.as_str();
            let open = match self.index.get(key, &self.series) {
                Some(id) => self.series[id as usize].as_ref().map(|s| s.kind),
                None => {
                    let kind = match new.entry(key) {
                        hashbrown::hash_map::Entry::Occupied(o) => *o.get(),
                        hashbrown::hash_map::Entry::Vacant(v) => {
                            let kind = *v.insert(e.kind);
                            let before = new_keys.len();
                            for k in self.tag_keys.unknown(e.series.tags().map(|(k, _)| k)) {
                                if !new_keys.contains(&k) {
                                    new_keys.push(k);
                                }
                            }
                            if new_keys.len() > before
                                && self.tag_keys.len() + new_keys.len() > self.tag_keys.limit()
                            {
                                self.refuse_new_keys(item, &new_keys, &mut keys_checked)?;
                            }
                            kind
                        }
                    };
                    if new.len() > room {
                        return Err(ConsolidateError::SeriesLimit {
                            limit: self.max_series,
                            series: format!("{:?}", e.series),
                        });
                    }
                    Some(kind)
                }
            };
            match open {
                Some(open) if open != e.kind => {
                    return Err(ConsolidateError::KindConflict {
                        item,
                        series: format!("{:?}", e.series),
                        open: open.as_str(),
                        sent: e.kind.as_str(),
                    })
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Within [`Consolidator::check_room_for`]: the batch's `new_keys` passed the limit at event
    /// `item`. Forgets expired keys once; fails if they still do not fit.
    fn refuse_new_keys(
        &mut self,
        item: usize,
        new_keys: &[&str],
        forgot: &mut bool,
    ) -> Result<(), ConsolidateError> {
        let may_forget = !std::mem::replace(forgot, true);
        let series = &self.series;
        self.tag_keys
            .room_for(new_keys, may_forget, || keys_in_use(series))
            .map_err(|over| ConsolidateError::TagKeyLimit {
                item,
                key: over.key,
                limit: over.limit,
            })
    }

    /// Records one sample at time `at` for the series `key`: in every archive whose bucket is
    /// still open, into the late table where it is closed, nowhere where it is past the
    /// retention. `owned` is only cloned when the series is new.
    #[inline]
    pub fn record(
        &mut self,
        key: &str,
        owned: &crate::event::SeriesKey,
        kind: MetricKind,
        sample: &Sample,
        at: EpochMillis,
    ) -> Result<Fate, ConsolidateError> {
        let mut fate = Fate::default();
        for (i, a) in self.archives.iter().enumerate() {
            let start = bucket_start(at, a.spec.step_ms);
            if start < a.horizon {
                fate.expired |= 1 << i;
            } else if start.saturating_add(a.spec.step_ms) <= a.watermark {
                fate.late |= 1 << i;
            }
        }
        let elsewhere = fate.late | fate.expired;
        if elsewhere.count_ones() as usize != self.archives.len() {
            self.record_open(key, owned, kind, sample, at, elsewhere)?;
        } else if fate.late != 0 && self.index.get(key, &self.series).is_none() {
            // Late only, for a series not open: its keys may be new to the late buckets'
            // indices.
            self.admit_tag_keys(key, at)?;
        }
        if fate.late != 0 {
            self.record_late(key, owned, kind, sample, at, fate.late);
        }
        Ok(fate)
    }

    /// Records into the open buckets of the archives not in `skip`.
    #[inline]
    fn record_open(
        &mut self,
        key: &str,
        owned: &crate::event::SeriesKey,
        kind: MetricKind,
        sample: &Sample,
        at: EpochMillis,
        skip: u64,
    ) -> Result<(), ConsolidateError> {
        let id = match self.index.get(key, &self.series) {
            Some(id) => {
                let open = match self.series[id as usize].as_mut() {
                    Some(entry) => {
                        entry.latest = entry.latest.max(at);
                        entry.kind
                    }
                    None => kind,
                };
                if open != kind {
                    return Err(ConsolidateError::KindConflict {
                        item: 0,
                        series: format!("{owned:?}"),
                        open: open.as_str(),
                        sent: kind.as_str(),
                    });
                }
                id
            }
            None => {
                self.admit_tag_keys(key, at)?;
                self.intern(owned, kind, at)?
            }
        };
        let plain = matches!(sample, Sample::Value(_));
        let mut opened = 0;
        for (i, a) in self.archives.iter_mut().enumerate() {
            if skip & (1 << i) != 0 {
                continue;
            }
            let start = bucket_start(at, a.spec.step_ms);
            if a.add(id, Summary::from_sample(start, kind, sample, at)) {
                opened += 1;
            }
            if !plain || a.spec.sketches {
                a.add_extras(id, start, kind, sample);
            }
        }
        if opened > 0 {
            if let Some(entry) = self.series[id as usize].as_mut() {
                entry.open += opened;
            }
        }
        Ok(())
    }

    /// Adds to the late table's buckets of the archives in `late`.
    fn record_late(
        &mut self,
        key: &str,
        owned: &crate::event::SeriesKey,
        kind: MetricKind,
        sample: &Sample,
        at: EpochMillis,
        late: u64,
    ) {
        for i in 0..self.archives.len() {
            if late & (1 << i) == 0 {
                continue;
            }
            let spec = self.archives[i].spec;
            let start = bucket_start(at, spec.step_ms);
            let incoming = Summary::from_sample(start, kind, sample, at);
            let query = LateQuery {
                archive: i as u32,
                start,
                series: key,
            };
            let bucket = if let Some(bucket) = self.late.get_mut(&query) {
                bucket.0.merge(&incoming);
                bucket
            } else {
                let key = LateKey {
                    archive: i as u32,
                    start,
                    series: self.shared_key(key, owned),
                };
                self.late.entry(key).or_insert((incoming, None))
            };
            let sketched = sketched(&spec, kind);
            if sketched || matches!(sample, Sample::Member(_)) {
                add_extras_to(
                    bucket.1.get_or_insert_with(Default::default),
                    sample,
                    sketched,
                );
            }
        }
    }

    /// The series' shared key: the interned one when the series is active, else a new one.
    fn shared_key(&self, key: &str, owned: &crate::event::SeriesKey) -> Arc<str> {
        self.index
            .get(key, &self.series)
            .and_then(|id| self.series[id as usize].as_ref())
            .map_or_else(|| owned.shared(), |e| e.key.clone())
    }

    /// Buckets waiting in the late table.
    pub fn late_buckets(&self) -> usize {
        self.late.len()
    }

    /// Hands on every bucket of the late table, to be merged into its stored document.
    pub fn drain_late(&mut self, out: &mut Vec<Closed>) {
        out.extend(self.late.drain().map(|(key, (summary, extras))| Closed {
            series: key.series,
            archive: key.archive as usize,
            summary,
            extras,
            late: true,
            seq: 0,
            foreign_marks: Vec::new(),
        }));
    }

    /// Sets, per archive in configuration order, the start of the oldest bucket still within its
    /// retention: events of older buckets expire. A horizon is an index period's start, so
    /// every index before it has expired: tag keys last seen before the earliest horizon are
    /// in no index kept, and can be forgotten once no open series uses them.
    pub fn set_horizons(&mut self, horizons: &[EpochMillis]) {
        for (a, &h) in self.archives.iter_mut().zip(horizons) {
            a.horizon = h;
        }
        if let Some(&earliest) = horizons.iter().min() {
            self.tag_keys.set_forget_before(earliest);
        }
    }

    /// Interns a new series (its tag keys were admitted).
    fn intern(
        &mut self,
        key: &crate::event::SeriesKey,
        kind: MetricKind,
        at: EpochMillis,
    ) -> Result<SeriesId, ConsolidateError> {
        if self.index.len() >= self.max_series {
            return Err(ConsolidateError::SeriesLimit {
                limit: self.max_series,
                series: format!("{key:?}"),
            });
        }
        let shared = key.shared();
        let entry = SeriesEntry {
            key: shared.clone(),
            kind,
            open: 0,
            latest: at,
        };
        let id = match self.free.pop() {
            Some(id) => {
                self.series[id as usize] = Some(entry);
                id
            }
            None => {
                self.series.push(Some(entry));
                for a in &mut self.archives {
                    a.current.push(Summary::EMPTY);
                    a.previous.push(Summary::EMPTY);
                }
                (self.series.len() - 1) as SeriesId
            }
        };
        self.index.insert(&shared, id, &self.series);
        Ok(id)
    }

    /// Closes every bucket whose end plus lateness is at or before `now`, appending them to `out`
    /// in bucket order per archive. Time never goes back: an earlier `now` closes nothing.
    pub fn flush_due(&mut self, now: EpochMillis, out: &mut Vec<Closed>) {
        for i in 0..self.archives.len() {
            let a = &mut self.archives[i];
            a.watermark = a.watermark.max(now.saturating_sub(a.spec.lateness_ms));
            self.close_archive_until(i, out);
        }
    }

    /// Forgets how far the clock went, as a new consolidator knows nothing of it: after a
    /// graceful stop, the next run's first tick sets it again.
    pub fn forget_time(&mut self) {
        for a in &mut self.archives {
            a.watermark = EpochMillis::MIN;
        }
    }

    /// Closes every open bucket (shutdown, end of a replay). Later events for these buckets are late.
    pub fn flush_all(&mut self, out: &mut Vec<Closed>) {
        for i in 0..self.archives.len() {
            self.archives[i].watermark = EpochMillis::MAX;
            self.close_archive_until(i, out);
        }
    }

    fn close_archive_until(&mut self, archive: usize, out: &mut Vec<Closed>) {
        let Self {
            archives,
            series,
            index,
            free,
            tag_keys,
            ..
        } = self;
        let a = &mut archives[archive];
        while let Some(entry) = a.due.first_entry() {
            let start = *entry.key();
            if start.saturating_add(a.spec.step_ms) > a.watermark {
                break;
            }
            for id in entry.remove() {
                let Some((summary, extras)) = a.take(id, start) else {
                    continue;
                };
                let Some(entry) = series[id as usize].as_mut() else {
                    continue;
                };
                out.push(Closed {
                    series: entry.key.clone(),
                    archive,
                    summary,
                    extras: extras.map(Box::new),
                    late: false,
                    seq: 0,
                    foreign_marks: Vec::new(),
                });
                entry.open -= 1;
                if entry.open == 0 {
                    // No open bucket in any archive: forget the series and reuse its id.
                    if let Some(gone) = series[id as usize].take() {
                        let keys = crate::event::tags(&gone.key).map(|(k, _)| k);
                        tag_keys.note(keys, gone.latest);
                        index.remove(&gone.key, id);
                        free.push(id);
                    }
                }
            }
        }
    }
}
/// Start of the epoch-aligned bucket of length `step_ms` that contains `t`.
#[inline]
pub fn bucket_start(t: EpochMillis, step_ms: i64) -> EpochMillis {
    t.div_euclid(step_ms) * step_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::SeriesKey;

    const S20: ArchiveSpec = spec(20_000, 10_000);

    /// An archive without sketches.
    const fn spec(step_ms: i64, lateness_ms: i64) -> ArchiveSpec {
        ArchiveSpec {
            step_ms,
            lateness_ms,
            sketches: false,
        }
    }

    fn ev(name: &str, value: f64, at_s: i64) -> Event {
        Event::value(
            SeriesKey::new(name, None, &mut []),
            MetricKind::Gauge,
            value,
            at_s * 1000,
        )
    }

    fn flush(c: &mut Consolidator, now_s: i64) -> Vec<Closed> {
        let mut out = Vec::new();
        c.flush_due(now_s * 1000, &mut out);
        out
    }

    fn tagged(keys: &[&str], at_s: i64) -> Event {
        let mut tags: Vec<(&str, &str)> = keys.iter().map(|k| (*k, "v")).collect();
        Event::value(
            SeriesKey::new(&keys.join("+"), None, &mut tags),
            MetricKind::Gauge,
            1.0,
            at_s * 1000,
        )
    }

    #[test]
    fn a_batch_with_a_tag_key_past_the_limit_is_refused_whole_naming_the_event_and_key() {
        let mut c = Consolidator::new(&[S20], 100).with_max_tag_keys(3);
        c.record_batch(&[tagged(&["a", "b"], 0)]).unwrap();
        let batch = [
            tagged(&["a"], 1),
            tagged(&["c"], 1),
            tagged(&["a", "b", "c"], 1),
            tagged(&["d", "e"], 1),
        ];
        match c.record_batch(&batch) {
            Err(ConsolidateError::TagKeyLimit { item, key, limit }) => {
                assert_eq!((item, key.as_str(), limit), (3, "d", 3));
            }
            other => panic!("{other:?}"),
        }
        // Nothing of it was recorded; the keys that fit still do.
        assert_eq!(c.active_series(), 1);
        assert_eq!(c.tag_keys(), 2);
        assert_eq!(c.record_batch(&batch[..3]).unwrap().accepted, 3);
        assert_eq!(c.tag_keys(), 3);
    }

    #[test]
    fn lines_past_the_tag_key_limit_are_refused_one_by_one_and_late_ones_too() {
        let mut c = Consolidator::new(&[S20], 100).with_max_tag_keys(2);
        let (report, first) = c.record_each(&[
            tagged(&["a"], 0),
            tagged(&["x", "y"], 0),
            tagged(&["b"], 0),
            tagged(&["a", "b"], 0),
        ]);
        assert_eq!(
            (report.accepted, report.refused, report.refused_tag_keys),
            (3, 1, 1)
        );
        assert!(matches!(
            first,
            Some(ConsolidateError::TagKeyLimit { item: 1, .. })
        ));
        flush(&mut c, 100);
        // A late event of a series no longer open, with a new key: refused, not merged.
        let (report, _) = c.record_each(&[tagged(&["late"], 5), tagged(&["a"], 5)]);
        assert_eq!((report.merged, report.refused_tag_keys), (1, 1));
        assert_eq!(c.late_buckets(), 1);
    }

    #[test]
    fn tag_keys_are_forgotten_once_every_index_that_could_hold_them_expired() {
        let mut c = Consolidator::new(&[S20], 100).with_max_tag_keys(2);
        c.record_batch(&[tagged(&["a"], 0), tagged(&["b"], 30)])
            .unwrap();
        flush(&mut c, 200);
        // The series are closed, but their buckets' indices are kept.
        assert!(c.record_batch(&[tagged(&["c"], 200)]).is_err());
        // "a" was last seen at 0 s, "b" at 30 s: a horizon of 20 s frees "a" only.
        c.set_horizons(&[20_000]);
        c.record_batch(&[tagged(&["c"], 200)]).unwrap();
        assert!(c.record_batch(&[tagged(&["d"], 201)]).is_err());
        // Past both: "b" goes, but "c" stays while its series is open, although its first
        // event came before the horizon.
        c.record_batch(&[tagged(&["c"], 240)]).unwrap();
        c.set_horizons(&[235_000]);
        c.record_batch(&[tagged(&["d"], 241)]).unwrap();
        match c.record_batch(&[tagged(&["e"], 241)]) {
            Err(ConsolidateError::TagKeyLimit { key, .. }) => assert_eq!(key, "e"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn issue_example_gives_three_exact_buckets() {
        let mut c = Consolidator::new(&[S20], 10);
        let events: Vec<Event> = [(0, 1.0), (10, 3.0), (20, 5.0), (30, 7.0), (40, 2.0)]
            .iter()
            .map(|&(t, v)| ev("m", v, t))
            .collect();
        let report = c.record_batch(&events).unwrap();
        assert_eq!(report.accepted, 5);
        let mut out = Vec::new();
        c.flush_all(&mut out);
        let got: Vec<_> = out
            .iter()
            .map(|c| {
                let s = c.summary;
                (
                    s.start / 1000,
                    s.count,
                    s.sum,
                    s.min,
                    s.max,
                    s.avg(),
                    s.first,
                    s.last,
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (0, 2, 4.0, 1.0, 3.0, 2.0, 1.0, 3.0),
                (20, 2, 12.0, 5.0, 7.0, 6.0, 5.0, 7.0),
                (40, 1, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0)
            ]
        );
        assert_eq!(
            c.active_series(),
            0,
            "a series with no open bucket is forgotten"
        );
    }

    #[test]
    fn bucket_closes_after_end_plus_lateness_without_another_event() {
        let mut c = Consolidator::new(&[S20], 10);
        c.record_batch(&[ev("m", 1.0, 5)]).unwrap();
        assert!(
            flush(&mut c, 29).is_empty(),
            "end 20 s + lateness 10 s not yet passed"
        );
        let out = flush(&mut c, 30);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].summary.start, 0);
        assert!(flush(&mut c, 1000).is_empty());
    }

    #[test]
    fn events_within_lateness_still_count() {
        let mut c = Consolidator::new(&[S20], 10);
        c.record_batch(&[ev("m", 1.0, 25)]).unwrap();
        flush(&mut c, 25);
        let report = c.record_batch(&[ev("m", 2.0, 15)]).unwrap();
        assert_eq!((report.accepted, report.merged), (1, 0));
        let out = flush(&mut c, 30);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].summary.sum, 2.0);
    }

    fn counts(recorded: u64, merged: u64, expired: u64) -> ArchiveCounts {
        ArchiveCounts {
            recorded,
            merged,
            expired,
        }
    }

    #[test]
    fn late_events_go_to_the_late_table_per_archive() {
        let coarse = spec(600_000, 10_000);
        let mut c = Consolidator::new(&[S20, coarse], 10);
        c.record_batch(&[ev("m", 1.0, 5)]).unwrap();
        assert_eq!(flush(&mut c, 30).len(), 1);
        let report = c
            .record_batch(&[ev("m", 9.0, 6), ev("m", 1.0, 31)])
            .unwrap();
        assert_eq!(
            report,
            BatchReport {
                accepted: 2,
                merged: 1,
                expired: 0,
                refused: 0,
                refused_type: 0,
                refused_tag_keys: 0,
                archives: vec![counts(1, 1, 0), counts(2, 0, 0)]
            }
        );
        assert_eq!(c.late_buckets(), 1);
        let mut out = Vec::new();
        c.flush_all(&mut out);
        let coarse_bucket = out.iter().find(|c| c.archive == 1).unwrap();
        assert_eq!(
            coarse_bucket.summary.count, 3,
            "the coarse archive still took the late event"
        );
        let mut late = Vec::new();
        c.drain_late(&mut late);
        assert_eq!(late.len(), 1);
        let s = late[0].summary;
        assert!(late[0].late);
        assert_eq!((late[0].archive, s.start, s.count, s.sum), (0, 0, 1, 9.0));
        assert_eq!(c.late_buckets(), 0);
    }

    #[test]
    fn late_events_of_one_bucket_are_grouped_in_time_order_and_create_no_series() {
        let sketched = ArchiveSpec {
            sketches: true,
            ..S20
        };
        let mut c = Consolidator::new(&[sketched], 10);
        flush(&mut c, 1000);
        let report = c
            .record_batch(&[ev("old", 5.0, 12), ev("old", 1.0, 3), ev("old", 9.0, 7)])
            .unwrap();
        assert_eq!((report.accepted, report.merged), (3, 3));
        assert_eq!(c.active_series(), 0, "late events open no bucket");
        let mut late = Vec::new();
        c.drain_late(&mut late);
        assert_eq!(late.len(), 1);
        let s = late[0].summary;
        assert_eq!(
            (s.count, s.sum, s.min, s.max, s.first, s.last),
            (3, 15.0, 1.0, 9.0, 1.0, 5.0)
        );
        assert_eq!((s.first_at(), s.last_at()), (3_000, 12_000));
        let sketch = late[0].extras.as_ref().unwrap().sketch.as_ref().unwrap();
        assert_eq!(sketch.count(), 3);
    }

    #[test]
    fn events_before_the_horizon_expire_in_their_archive_only() {
        let coarse = spec(600_000, 10_000);
        let mut c = Consolidator::new(&[S20, coarse], 10);
        c.set_horizons(&[100_000, 0]);
        let report = c
            .record_batch(&[ev("m", 1.0, 50), ev("m", 1.0, 150), ev("m", 1.0, -1)])
            .unwrap();
        assert_eq!(
            report,
            BatchReport {
                accepted: 2,
                merged: 0,
                expired: 1,
                refused: 0,
                refused_type: 0,
                refused_tag_keys: 0,
                archives: vec![counts(1, 0, 2), counts(2, 0, 1)]
            }
        );
        let mut out = Vec::new();
        c.flush_all(&mut out);
        c.drain_late(&mut out);
        let got: Vec<(usize, i64, u64)> = out
            .iter()
            .map(|c| (c.archive, c.summary.start / 1000, c.summary.count))
            .collect();
        assert_eq!(got, vec![(0, 140, 1), (1, 0, 2)]);
    }

    #[test]
    fn first_and_last_follow_event_time_not_arrival() {
        let mut c = Consolidator::new(&[S20], 10);
        c.record_batch(&[
            ev("m", 2.0, 10),
            ev("m", 1.0, 3),
            ev("m", 9.0, 19),
            ev("m", 5.0, 12),
        ])
        .unwrap();
        let mut out = Vec::new();
        c.flush_all(&mut out);
        assert_eq!((out[0].summary.first, out[0].summary.last), (1.0, 9.0));
    }

    #[test]
    fn three_open_buckets_of_one_series_stay_apart() {
        // Lateness longer than two steps: buckets 0, 20 and 40 s are open at once.
        let mut c = Consolidator::new(&[spec(20_000, 60_000)], 10);
        let order = [
            (45, 1.0),
            (5, 2.0),
            (25, 3.0),
            (6, 4.0),
            (46, 5.0),
            (26, 6.0),
            (65, 7.0),
            (7, 8.0),
        ];
        c.record_batch(
            &order
                .iter()
                .map(|&(t, v)| ev("m", v, t))
                .collect::<Vec<_>>(),
        )
        .unwrap();
        let mut out = Vec::new();
        c.flush_all(&mut out);
        let got: Vec<(i64, u64, f64)> = out
            .iter()
            .map(|c| (c.summary.start / 1000, c.summary.count, c.summary.sum))
            .collect();
        assert_eq!(
            got,
            vec![(0, 3, 14.0), (20, 2, 9.0), (40, 2, 6.0), (60, 1, 7.0)]
        );
        assert_eq!(c.active_series(), 0);
    }

    #[test]
    fn merging_slices_of_a_bucket_gives_the_time_ordered_bucket() {
        let stored = Summary::stored(
            0,
            MetricKind::Gauge,
            2,
            4.0,
            1.0,
            3.0,
            (1.0, 2_000),
            (3.0, 8_000),
        );
        let mut merged = stored;
        merged.merge(&Summary::new(0, MetricKind::Gauge, 10.0, 1_000));
        merged.merge(&Summary::new(0, MetricKind::Gauge, 0.5, 15_000));
        assert_eq!(
            (
                merged.count,
                merged.sum,
                merged.min,
                merged.max,
                merged.first,
                merged.last
            ),
            (4, 14.5, 0.5, 10.0, 10.0, 0.5)
        );
        assert_eq!((merged.first_at(), merged.last_at()), (1_000, 15_000));
    }

    #[test]
    fn negative_times_align_to_the_epoch() {
        assert_eq!(bucket_start(-1, 20_000), -20_000);
        assert_eq!(bucket_start(19_999, 20_000), 0);
    }

    #[test]
    fn series_limit_refuses_the_whole_batch() {
        let mut c = Consolidator::new(&[S20], 2);
        c.record_batch(&[ev("a", 1.0, 1)]).unwrap();
        let err = c
            .record_batch(&[ev("a", 1.0, 2), ev("b", 1.0, 2), ev("c", 1.0, 2)])
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("active series limit 2 reached: new series 'c' refused"),
            "{err}"
        );
        let mut out = Vec::new();
        c.flush_all(&mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].summary.count, 1,
            "nothing of the refused batch was recorded"
        );
    }

    #[test]
    fn one_by_one_the_known_series_keep_their_events_at_the_limit() {
        let mut c = Consolidator::new(&[S20], 2);
        c.record_batch(&[ev("a", 1.0, 1), ev("b", 1.0, 1)]).unwrap();
        let mixed: Vec<Event> = (0..10)
            .flat_map(|i| [ev("a", 1.0, 2), ev(&format!("new{i}"), 1.0, 2)])
            .collect();
        assert!(
            c.record_batch(&mixed).is_err(),
            "all or nothing refuses it whole"
        );
        let (report, refusal) = c.record_each(&mixed);
        assert_eq!((report.accepted, report.refused), (10, 10));
        assert!(refusal.unwrap().to_string().contains("new0"));
        let out = closed_of(&mut c);
        let a = out
            .iter()
            .find(|b| crate::event::name(&b.series) == "a")
            .unwrap();
        assert_eq!(a.summary.count, 11);
    }

    #[test]
    fn freed_series_ids_are_reused() {
        let mut c = Consolidator::new(&[S20], 1);
        for round in 0..5 {
            let name = format!("s{round}");
            c.record_batch(&[ev(&name, 1.0, round * 100)]).unwrap();
            let out = flush(&mut c, round * 100 + 30);
            assert_eq!(out.len(), 1);
            assert_eq!(crate::event::name(&out[0].series), name);
        }
        assert_eq!(c.series.len(), 1);
    }

    #[test]
    fn many_series_and_archives_sum_up() {
        let specs = [S20, spec(600_000, 0), spec(3_600_000, 0)];
        let mut c = Consolidator::new(&specs, 1000);
        let mut events = Vec::new();
        for t in 0..7200 {
            events.push(ev(&format!("s{}", t % 50), (t % 7) as f64, t));
        }
        c.record_batch(&events).unwrap();
        let mut out = Vec::new();
        c.flush_all(&mut out);
        for archive in 0..3 {
            let count: u64 = out
                .iter()
                .filter(|c| c.archive == archive)
                .map(|c| c.summary.count)
                .sum();
            let sum: f64 = out
                .iter()
                .filter(|c| c.archive == archive)
                .map(|c| c.summary.sum)
                .sum();
            assert_eq!(count, 7200);
            assert_eq!(sum, (0..7200).map(|t| (t % 7) as f64).sum::<f64>());
        }
        assert_eq!(
            out.iter().filter(|c| c.archive == 2).count(),
            100,
            "50 series x 2 hours"
        );
        assert_eq!(c.open_buckets(), 0);
    }

    fn closed_of(c: &mut Consolidator) -> Vec<Closed> {
        let mut out = Vec::new();
        c.flush_all(&mut out);
        out
    }

    #[test]
    fn partials_merge_exactly_with_single_values() {
        let mut c = Consolidator::new(&[S20], 10);
        let key = SeriesKey::new("m", None, &mut []);
        let partial = |count, sum, min, max, first, last, at| Event {
            series: key.clone(),
            kind: MetricKind::Timer,
            sample: Sample::Partial(Box::new(Partial {
                count,
                sum,
                min,
                max,
                first,
                last,
            })),
            timestamp: at,
        };
        c.record_batch(&[
            partial(3, 30.0, 5.0, 15.0, 5.0, 15.0, 5_000),
            Event::value(key.clone(), MetricKind::Timer, 2.0, 1_000),
            partial(2, 50.0, 20.0, 30.0, 30.0, 20.0, 9_000),
        ])
        .unwrap();
        let s = closed_of(&mut c)[0].summary;
        assert_eq!(
            (s.count, s.sum, s.min, s.max, s.first, s.last),
            (6, 82.0, 2.0, 30.0, 2.0, 20.0)
        );
    }

    #[test]
    fn sets_count_distinct_members_per_bucket_and_archive() {
        let hour = spec(3_600_000, 0);
        let mut c = Consolidator::new(&[S20, hour], 10);
        let key = SeriesKey::new("users", None, &mut []);
        let member = |m: u64, at_s: i64| Event {
            series: key.clone(),
            kind: MetricKind::Set,
            sample: Sample::Member(m),
            timestamp: at_s * 1000,
        };
        c.record_batch(&[
            member(1, 1),
            member(2, 2),
            member(1, 3),
            member(1, 25),
            member(3, 26),
        ])
        .unwrap();
        let out = closed_of(&mut c);
        let got: Vec<(usize, i64, u64, Option<u64>)> = out
            .iter()
            .map(|c| {
                let unique = c.extras.as_ref().and_then(|e| e.unique());
                (c.archive, c.summary.start / 1000, c.summary.count, unique)
            })
            .collect();
        assert_eq!(
            got,
            vec![(0, 0, 3, Some(2)), (0, 20, 2, Some(2)), (1, 0, 5, Some(3))]
        );
    }

    #[test]
    fn sketches_are_kept_only_where_configured_and_not_for_counters() {
        let sketched = ArchiveSpec {
            sketches: true,
            ..S20
        };
        let mut c = Consolidator::new(&[S20, sketched], 10);
        let mut events: Vec<Event> = (1..=100).map(|v| ev("g", v as f64, 1)).collect();
        events.push(Event::value(
            SeriesKey::new("c", None, &mut []),
            MetricKind::Counter,
            1.0,
            1_000,
        ));
        c.record_batch(&events).unwrap();
        let out = closed_of(&mut c);
        let sketch_of = |archive: usize, name: &str| {
            out.iter()
                .find(|c| c.archive == archive && crate::event::name(&c.series) == name)
                .and_then(|c| c.extras.as_ref())
                .and_then(|e| e.sketch.clone())
        };
        assert!(sketch_of(0, "g").is_none());
        assert!(sketch_of(1, "c").is_none());
        let s = sketch_of(1, "g").unwrap();
        assert_eq!(s.count(), 100);
        let p90 = s.quantile(0.9).unwrap();
        assert!((p90 - 90.0).abs() <= 0.9, "{p90}");
    }

    #[test]
    fn a_bucket_kept_beyond_the_flat_arrays_is_found_after_the_one_before_it_closed() {
        // Lateness 25 s over 10 s steps: buckets 0 s and 40 s open, then 30 s → beyond them.
        let spec = spec(10_000, 25_000);
        let mut c = Consolidator::new(&[spec], 10);
        let key = SeriesKey::new("m", None, &mut []);
        let at = |t: i64| Event::value(key.clone(), MetricKind::Gauge, 1.0, t);
        for t in [1_000, 41_000, 31_000] {
            c.record_event(&at(t)).unwrap();
        }
        let mut closed = Vec::new();
        c.flush_due(36_000, &mut closed); // closes the 0 s bucket only
        assert_eq!(closed.len(), 1);
        c.record_event(&at(32_000)).unwrap();
        c.flush_all(&mut closed);
        let starts: Vec<(i64, u64)> = closed[1..]
            .iter()
            .map(|c| (c.summary.start, c.summary.count))
            .collect();
        assert_eq!(
            starts,
            vec![(30_000, 2), (40_000, 1)],
            "one 30 s bucket, holding both"
        );
    }

    #[test]
    fn an_event_of_another_type_than_its_series_is_refused_whole_or_alone() {
        let mut c = Consolidator::new(&[S20], 100);
        let key = SeriesKey::new("lat", None, &mut []);
        let gauge = Event::value(key.clone(), MetricKind::Gauge, 1.0, 1_000);
        let timer = Event::value(key, MetricKind::Timer, 2.0, 2_000);
        let other = Event::value(
            SeriesKey::new("x", None, &mut []),
            MetricKind::Gauge,
            1.0,
            0,
        );
        // Within one batch: refused whole, nothing recorded.
        let whole = c.record_batch(&[other.clone(), gauge.clone(), timer.clone()]);
        assert!(
            matches!(
                &whole,
                Err(ConsolidateError::KindConflict {
                    item: 2,
                    open: "gauge",
                    sent: "timer",
                    ..
                })
            ),
            "{whole:?}"
        );
        assert_eq!(c.open_buckets(), 0, "nothing of the batch was kept");
        // Against an open bucket: one by one, the others are kept.
        c.record_batch(std::slice::from_ref(&gauge)).unwrap();
        let (report, refusal) = c.record_each(&[other, timer]);
        assert_eq!(
            (report.accepted, report.refused, report.refused_type),
            (1, 1, 1)
        );
        assert!(refusal
            .unwrap()
            .to_string()
            .contains("item 1: field 'type': series 'lat' is a gauge"));
    }
}
