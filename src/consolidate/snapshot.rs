//! The consolidator's whole state as bytes, and back: what a checkpoint stores so that a restart
//! continues every open bucket exactly (statistics, first and last with their times, set members
//! or HyperLogLog registers, sketches), and the late table.
//!
//! Pure. Series ids are not stored: they are internal, and a restored consolidator numbers its
//! series afresh, which changes nothing it outputs.

use std::sync::Arc;

use super::{ArchiveSpec, Closed, Consolidator, Extras, LateKey, Summary, NO_EXTRAS};
use crate::codec::{put_bytes, put_f64, put_i64, put_varint, Malformed, Reader};
use crate::distinct::Distinct;
use crate::event::{MetricKind, SeriesKey};
use crate::sketch::Sketch;

const MAGIC: &[u8; 8] = b"strataC3";
/// The format before the tag key registry: read, with the registry rebuilt from the open
/// series and late buckets.
const MAGIC_WITHOUT_TAG_KEYS: &[u8; 8] = b"strataC2";

/// Why a snapshot could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SnapshotError {
    #[error("the checkpoint is truncated or malformed")]
    Malformed(#[from] Malformed),
    #[error(
        "the checkpoint was taken with other archives ({stored}) than configured now ({configured}): \
         restore the archives it was taken with, or move the data directory aside (its unwritten \
         events are then lost)"
    )]
    Archives { stored: String, configured: String },
}

fn describe(specs: &[ArchiveSpec]) -> String {
    specs
        .iter()
        .map(|s| format!("step {}ms lateness {}ms", s.step_ms, s.lateness_ms))
        .collect::<Vec<_>>()
        .join(", ")
}

impl Consolidator {
    /// Appends the whole state to `out`.
    pub fn snapshot(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(MAGIC);
        put_varint(out, self.archives.len() as u64);
        for a in &self.archives {
            put_i64(out, a.spec.step_ms);
            put_i64(out, a.spec.lateness_ms);
            out.push(u8::from(a.spec.sketches));
            put_i64(out, a.watermark);
            put_i64(out, a.horizon);
        }
        let live = self.series.iter().filter(|e| e.is_some()).count();
        put_varint(out, live as u64);
        // The few buckets beyond the flat arrays, by series (one pass, not one per series).
        let older: Vec<hashbrown::HashMap<u32, Vec<&Summary>>> = self
            .archives
            .iter()
            .map(|a| {
                let mut by_series: hashbrown::HashMap<u32, Vec<&Summary>> = Default::default();
                for ((id, _), s) in &a.older {
                    by_series.entry(*id).or_default().push(s);
                }
                by_series
            })
            .collect();
        for (id, entry) in self.series.iter().enumerate() {
            let Some(entry) = entry else { continue };
            put_bytes(out, entry.key.as_bytes());
            out.push(kind_code(entry.kind));
            for (a, older) in self.archives.iter().zip(&older) {
                let open: Vec<&Summary> = [&a.previous[id], &a.current[id]]
                    .into_iter()
                    .filter(|s| !s.is_empty())
                    .chain(older.get(&(id as u32)).into_iter().flatten().copied())
                    .collect();
                put_varint(out, open.len() as u64);
                for s in open {
                    put_summary(out, s);
                    let extras = (s.extras != NO_EXTRAS).then(|| &a.slab[s.extras as usize]);
                    put_extras(out, extras);
                }
            }
        }
        put_varint(out, self.late.len() as u64);
        for (key, (summary, extras)) in &self.late {
            put_varint(out, u64::from(key.archive));
            put_bytes(out, key.series.as_bytes());
            put_summary(out, summary);
            put_extras(out, extras.as_deref());
        }
        let (forget_before, forgot_at) = self.tag_keys.horizons();
        put_i64(out, forget_before);
        put_i64(out, forgot_at);
        let keys = self.tag_keys.entries();
        put_varint(out, keys.len() as u64);
        for (key, at) in keys {
            put_bytes(out, key.as_bytes());
            put_i64(out, at);
        }
    }

    /// A consolidator for `archives` holding the state `bytes` was taken of.
    pub fn restore(
        archives: &[ArchiveSpec],
        max_series: usize,
        bytes: &[u8],
    ) -> Result<Self, SnapshotError> {
        let mut r = Reader(bytes);
        let with_tag_keys = match &r.array::<8>()? {
            m if m == MAGIC => true,
            m if m == MAGIC_WITHOUT_TAG_KEYS => false,
            _ => return Err(Malformed.into()),
        };
        let stored = read_specs(&mut r)?;
        let specs: Vec<ArchiveSpec> = stored.iter().map(|(s, _, _)| *s).collect();
        if specs != archives {
            return Err(SnapshotError::Archives {
                stored: describe(&specs),
                configured: describe(archives),
            });
        }
        // Restored series may exceed a limit lowered since: they are kept, new ones wait.
        let mut c = Consolidator::new(archives, usize::MAX);
        for (a, (_, watermark, horizon)) in c.archives.iter_mut().zip(&stored) {
            a.watermark = *watermark;
            a.horizon = *horizon;
        }
        let series = r.len(bytes.len())?;
        for _ in 0..series {
            let key: Arc<str> = Arc::from(r.str()?);
            let kind = kind_of(r.byte()?)?;
            let id = c
                .intern(
                    &SeriesKey::from_shared(key),
                    kind,
                    crate::clock::EpochMillis::MIN,
                )
                .map_err(|_| Malformed)?;
            let mut opened = 0;
            let mut latest = crate::clock::EpochMillis::MIN;
            for a in c.archives.iter_mut() {
                let buckets = r.len(bytes.len())?;
                for _ in 0..buckets {
                    let summary = read_summary(&mut r)?;
                    let extras = read_extras(&mut r)?;
                    latest = latest.max(summary.last_at());
                    if !a.add(id, summary) {
                        return Err(Malformed.into());
                    }
                    opened += 1;
                    if let Some(extras) = extras {
                        *a.extras_mut(id, summary.start).ok_or(Malformed)? = extras;
                    }
                }
            }
            if let Some(entry) = c.series[id as usize].as_mut() {
                entry.open = opened;
                entry.latest = latest;
            }
        }
        let late = r.len(bytes.len())?;
        for _ in 0..late {
            let archive = r.len(c.archives.len().saturating_sub(1))? as u32;
            let series: Arc<str> = Arc::from(r.str()?);
            let summary = read_summary(&mut r)?;
            let extras = read_extras(&mut r)?.map(Box::new);
            let key = LateKey {
                archive,
                start: summary.start,
                series,
            };
            c.late.insert(key, (summary, extras));
        }
        if with_tag_keys {
            read_tag_keys(&mut r, &mut c, bytes.len())?;
        } else {
            c.remember_keys_of_open_and_late_series();
        }
        if !r.is_empty() {
            return Err(Malformed.into());
        }
        c.max_series = max_series;
        Ok(c)
    }
}

/// Reads the tag key registry written by [`Consolidator::snapshot`].
fn read_tag_keys(r: &mut Reader<'_>, c: &mut Consolidator, total: usize) -> Result<(), Malformed> {
    let forget_before = r.i64()?;
    let forgot_at = r.i64()?;
    c.tag_keys.set_horizons(forget_before, forgot_at);
    for _ in 0..r.len(total)? {
        let key = r.str()?.to_owned();
        let at = r.i64()?;
        c.tag_keys.note(std::iter::once(key.as_str()), at);
    }
    Ok(())
}

impl Consolidator {
    /// Rebuilds the tag key registry of an older snapshot: the keys of every open series and
    /// late bucket, seen now.
    fn remember_keys_of_open_and_late_series(&mut self) {
        let late = self.late.iter().flat_map(|(key, (summary, _))| {
            crate::event::tags(&key.series).map(|(k, _)| (k, summary.last_at()))
        });
        let seen: Vec<(String, crate::clock::EpochMillis)> = super::keys_in_use(&self.series)
            .into_iter()
            .chain(late)
            .map(|(k, at)| (k.to_owned(), at))
            .collect();
        for (key, at) in &seen {
            self.tag_keys.note(std::iter::once(key.as_str()), *at);
        }
    }
}

/// Appends one closed bucket (what the writer needs of it) to `out`.
pub(crate) fn encode_closed(c: &Closed, out: &mut Vec<u8>) {
    put_bytes(out, c.series.as_bytes());
    put_varint(out, c.archive as u64);
    out.push(u8::from(c.late));
    put_varint(out, c.seq);
    put_varint(out, c.foreign_marks.len() as u64);
    for &(log, seq) in &c.foreign_marks {
        put_varint(out, log);
        put_varint(out, seq);
    }
    put_summary(out, &c.summary);
    put_extras(out, c.extras.as_deref());
}

/// Reads one bucket written by [`encode_closed`] from the front of `r`.
pub(crate) fn decode_closed(r: &mut Reader<'_>) -> Result<Closed, Malformed> {
    let series: Arc<str> = Arc::from(r.str()?);
    let archive = r.len(super::MAX_ARCHIVES - 1)?;
    let late = r.byte()? != 0;
    let seq = r.varint()?;
    let marks = r.len(r.0.len() / 2)?;
    let foreign_marks = (0..marks)
        .map(|_| Ok((r.varint()?, r.varint()?)))
        .collect::<Result<_, Malformed>>()?;
    let summary = read_summary(r)?;
    let extras = read_extras(r)?.map(Box::new);
    Ok(Closed {
        series,
        archive,
        summary,
        extras,
        late,
        seq,
        foreign_marks,
    })
}

fn read_specs(r: &mut Reader<'_>) -> Result<Vec<(ArchiveSpec, i64, i64)>, Malformed> {
    let n = r.len(super::MAX_ARCHIVES)?;
    (0..n)
        .map(|_| {
            let spec = ArchiveSpec {
                step_ms: r.i64()?,
                lateness_ms: r.i64()?,
                sketches: r.byte()? != 0,
            };
            Ok((spec, r.i64()?, r.i64()?))
        })
        .collect()
}

fn put_summary(out: &mut Vec<u8>, s: &Summary) {
    put_i64(out, s.start);
    out.push(kind_code(s.kind));
    put_varint(out, s.count);
    for v in [s.sum, s.min, s.max, s.first, s.last] {
        put_f64(out, v);
    }
    put_varint(out, u64::from(s.first_offset));
    put_varint(out, u64::from(s.last_offset));
}

fn read_summary(r: &mut Reader<'_>) -> Result<Summary, Malformed> {
    let start = r.i64()?;
    let kind = kind_of(r.byte()?)?;
    let count = r.varint()?;
    if count == 0 {
        return Err(Malformed);
    }
    let [sum, min, max, first, last] = [r.f64()?, r.f64()?, r.f64()?, r.f64()?, r.f64()?];
    let offset = |v: u64| u32::try_from(v).map_err(|_| Malformed);
    Ok(Summary {
        start,
        count,
        sum,
        min,
        max,
        first,
        last,
        first_offset: offset(r.varint()?)?,
        last_offset: offset(r.varint()?)?,
        extras: NO_EXTRAS,
        kind,
    })
}

pub(crate) fn kind_code(kind: MetricKind) -> u8 {
    match kind {
        MetricKind::Gauge => 0,
        MetricKind::Counter => 1,
        MetricKind::Timer => 2,
        MetricKind::Set => 3,
    }
}

pub(crate) fn kind_of(code: u8) -> Result<MetricKind, Malformed> {
    Ok(match code {
        0 => MetricKind::Gauge,
        1 => MetricKind::Counter,
        2 => MetricKind::Timer,
        3 => MetricKind::Set,
        _ => return Err(Malformed),
    })
}

const HAS_SKETCH: u8 = 1;
const HAS_MEMBERS: u8 = 2;
const HAS_EXTRAS: u8 = 4;

fn put_extras(out: &mut Vec<u8>, extras: Option<&Extras>) {
    let Some(e) = extras else {
        out.push(0);
        return;
    };
    let flags = HAS_EXTRAS
        | if e.sketch.is_some() { HAS_SKETCH } else { 0 }
        | if e.members.is_some() { HAS_MEMBERS } else { 0 };
    out.push(flags);
    put_varint(out, e.carried_unique);
    if let Some(sketch) = &e.sketch {
        put_bytes(out, &sketch.encode());
    }
    if let Some(members) = &e.members {
        members.encode(out);
    }
}

fn read_extras(r: &mut Reader<'_>) -> Result<Option<Extras>, Malformed> {
    let flags = r.byte()?;
    if flags & HAS_EXTRAS == 0 {
        return Ok(None);
    }
    let carried_unique = r.varint()?;
    let sketch = if flags & HAS_SKETCH != 0 {
        Some(Sketch::decode(r.bytes()?).map_err(|_| Malformed)?)
    } else {
        None
    };
    let members = if flags & HAS_MEMBERS != 0 {
        Some(Distinct::decode(r).ok_or(Malformed)?)
    } else {
        None
    };
    Ok(Some(Extras {
        sketch,
        members,
        carried_unique,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Event, Sample};

    const SPECS: [ArchiveSpec; 2] = [
        ArchiveSpec {
            step_ms: 10_000,
            lateness_ms: 25_000,
            sketches: true,
        },
        ArchiveSpec {
            step_ms: 60_000,
            lateness_ms: 0,
            sketches: false,
        },
    ];

    fn events() -> Vec<Event> {
        let mut out = Vec::new();
        for i in 0..300i64 {
            let series = SeriesKey::new(&format!("m{}", i % 7), Some("h"), &mut [("k", "v")]);
            let kind = [MetricKind::Gauge, MetricKind::Timer, MetricKind::Set][i as usize % 3];
            let sample = if kind == MetricKind::Set {
                Sample::Member((i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            } else {
                Sample::Value(i as f64 * 0.5 - 20.0)
            };
            // Out of order, over several buckets of each archive.
            let timestamp = 1_000_000 + (i * 7_919) % 95_000;
            out.push(Event {
                series,
                kind,
                sample,
                timestamp,
            });
        }
        out
    }

    fn closed_sorted(mut c: Consolidator, now: i64) -> Vec<Closed> {
        let mut out = Vec::new();
        c.flush_due(now, &mut out);
        c.flush_all(&mut out);
        c.drain_late(&mut out);
        // Where a bucket's extras sat in the slab is internal, not part of the bucket.
        out.iter_mut().for_each(|c| c.summary.extras = NO_EXTRAS);
        out.sort_by(|a, b| {
            (a.archive, a.summary.start, &a.series, a.late).cmp(&(
                b.archive,
                b.summary.start,
                &b.series,
                b.late,
            ))
        });
        out
    }

    #[test]
    fn a_restored_consolidator_continues_exactly_where_the_first_stood() {
        let (head, tail) = events().split_at(200).clone_pair();
        let mut first = Consolidator::new(&SPECS, 1000);
        first.record_each(&head);
        let mut closed = Vec::new();
        // Closes some buckets, so that later events go to the late table.
        first.flush_due(1_050_000, &mut closed);
        first.record_each(&tail[..50]);
        assert!(first.late_buckets() > 0 && first.open_buckets() > 0);

        let mut bytes = Vec::new();
        first.snapshot(&mut bytes);
        let mut second = Consolidator::restore(&SPECS, 1000, &bytes).unwrap();
        assert_eq!(second.open_buckets(), first.open_buckets());
        assert_eq!(second.late_buckets(), first.late_buckets());
        first.record_each(&tail[50..]);
        second.record_each(&tail[50..]);
        let (a, b) = (
            closed_sorted(first, 1_080_000),
            closed_sorted(second, 1_080_000),
        );
        assert_eq!(a.len(), b.len());
        for (a, b) in a.iter().zip(&b) {
            assert_eq!(
                (&a.series, a.archive, a.late, a.summary),
                (&b.series, b.archive, b.late, b.summary)
            );
            let (ea, eb) = (a.extras.as_deref(), b.extras.as_deref());
            assert_eq!(ea.map(|e| &e.members), eb.map(|e| &e.members));
            let sketch = |e: Option<&Extras>| e.and_then(|e| e.sketch.as_ref()).map(Sketch::encode);
            assert_eq!(sketch(ea), sketch(eb));
        }
    }

    #[test]
    fn the_tag_keys_survive_a_snapshot_and_an_older_one_rebuilds_them_from_the_series() {
        let mut c = Consolidator::new(&SPECS, 1000).with_max_tag_keys(3);
        c.set_horizons(&[5, 7]);
        c.record_each(&events());
        let tagged = |k: &str| {
            Event::value(
                SeriesKey::new("t", None, &mut [(k, "v")]),
                MetricKind::Gauge,
                1.0,
                1_000_000,
            )
        };
        c.record_each(&[tagged("zone")]);
        let mut closed = Vec::new();
        // "zone"'s series closes: the key stays remembered, no open series uses it.
        c.flush_all(&mut closed);
        c.record_each(&[tagged("rack")]);
        let mut bytes = Vec::new();
        c.snapshot(&mut bytes);
        let restored = Consolidator::restore(&SPECS, 1000, &bytes)
            .unwrap()
            .with_max_tag_keys(3);
        let keys: Vec<&str> = c.tag_keys.entries().iter().map(|e| e.0).collect();
        assert_eq!(keys, vec!["k", "rack", "zone"]);
        assert_eq!(restored.tag_keys.entries(), c.tag_keys.entries());
        assert_eq!(restored.tag_keys.horizons(), c.tag_keys.horizons());
        // One key fits no more.
        let (report, _) = Consolidator::restore(&SPECS, 1000, &bytes)
            .unwrap()
            .with_max_tag_keys(3)
            .record_each(&[tagged("row")]);
        assert_eq!(report.refused_tag_keys, 1);

        // The same state in the format before the registry: the keys of open series come back.
        let mut section = Vec::new();
        let (forget_before, forgot_at) = c.tag_keys.horizons();
        put_i64(&mut section, forget_before);
        put_i64(&mut section, forgot_at);
        put_varint(&mut section, 3);
        for (key, at) in c.tag_keys.entries() {
            put_bytes(&mut section, key.as_bytes());
            put_i64(&mut section, at);
        }
        assert!(bytes.ends_with(&section));
        let mut older = bytes[..bytes.len() - section.len()].to_vec();
        older[..8].copy_from_slice(MAGIC_WITHOUT_TAG_KEYS);
        let rebuilt = Consolidator::restore(&SPECS, 1000, &older).unwrap();
        let keys: Vec<&str> = rebuilt.tag_keys.entries().iter().map(|e| e.0).collect();
        assert_eq!(keys, vec!["rack"], "only the series still open");
    }

    #[test]
    fn other_archives_or_damaged_bytes_are_refused() {
        let mut c = Consolidator::new(&SPECS, 1000);
        c.record_each(&events());
        let mut bytes = Vec::new();
        c.snapshot(&mut bytes);
        assert!(matches!(
            Consolidator::restore(&SPECS[..1], 1000, &bytes),
            Err(SnapshotError::Archives { .. })
        ));
        for cut in [0, 8, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                Consolidator::restore(&SPECS, 1000, &bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_closed_bucket_reads_back_as_written() {
        let mut c = Consolidator::new(&SPECS, 1000);
        c.record_each(&events());
        let mut closed = Vec::new();
        c.flush_all(&mut closed);
        closed[0].seq = 77;
        closed[0].late = true;
        closed[0].foreign_marks = vec![(3, 4)];
        let mut bytes = Vec::new();
        closed.iter().for_each(|c| encode_closed(c, &mut bytes));
        let mut r = Reader(&bytes);
        for c in &closed {
            let back = decode_closed(&mut r).unwrap();
            let mut expected = c.summary;
            expected.extras = NO_EXTRAS;
            assert_eq!(
                (&back.series, back.archive, back.late, back.seq),
                (&c.series, c.archive, c.late, c.seq)
            );
            assert_eq!(
                (back.summary, &back.foreign_marks),
                (expected, &c.foreign_marks)
            );
            let members = |c: &Closed| c.extras.as_ref().and_then(|e| e.members.clone());
            assert_eq!(members(&back), members(c));
        }
        assert!(r.is_empty());
    }

    trait ClonePair {
        fn clone_pair(self) -> (Vec<Event>, Vec<Event>);
    }

    impl ClonePair for (&[Event], &[Event]) {
        fn clone_pair(self) -> (Vec<Event>, Vec<Event>) {
            (self.0.to_vec(), self.1.to_vec())
        }
    }
}
