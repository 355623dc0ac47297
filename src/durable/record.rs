//! What the write-ahead log holds, as bytes: every input that changes the consolidator's state,
//! in the order it was applied. Replaying the records after a checkpoint through the same
//! consolidation gives the same state and closes the same buckets at the same positions.
//!
//! Pure. A batch keeps its all-or-nothing flag, because the series limit refuses it the same way
//! on replay; a tick keeps the instant it stood for, because closing and expiring follow it.

use std::sync::Arc;

use crate::clock::EpochMillis;
use crate::codec::{put_bytes, put_f64, put_i64, put_varint, Malformed, Reader};
use crate::consolidate::{kind_code, kind_of};
use crate::event::Sample;
use crate::event::{Event, Partial, SeriesKey};

const BATCH: u8 = 1;
const TICK: u8 = 2;
const SHUTDOWN: u8 = 3;

const VALUE: u8 = 0;
const MEMBER: u8 = 1;
const PARTIAL: u8 = 2;

/// One input of the consolidator.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Events as one listener handed them over ([`crate::consolidate::Consolidator::record_batch`]
    /// when `whole`, else `record_each`).
    Batch { whole: bool, events: Vec<Event> },
    /// The consolidator's clock struck `now`: horizons, due buckets and the late table.
    Tick { now: EpochMillis },
    /// A graceful stop closed every open bucket.
    Shutdown,
}

pub fn encode_batch(whole: bool, events: &[Event], out: &mut Vec<u8>) {
    out.push(BATCH);
    out.push(u8::from(whole));
    put_varint(out, events.len() as u64);
    for e in events {
        put_bytes(out, e.series.as_str().as_bytes());
        out.push(kind_code(e.kind));
        put_i64(out, e.timestamp);
        match &e.sample {
            Sample::Value(v) => {
                out.push(VALUE);
                put_f64(out, *v);
            }
            Sample::Member(hash) => {
                out.push(MEMBER);
                out.extend_from_slice(&hash.to_le_bytes());
            }
            Sample::Partial(p) => {
                out.push(PARTIAL);
                put_varint(out, p.count);
                for v in [p.sum, p.min, p.max, p.first, p.last] {
                    put_f64(out, v);
                }
            }
        }
    }
}

pub fn encode_tick(now: EpochMillis, out: &mut Vec<u8>) {
    out.push(TICK);
    put_i64(out, now);
}

pub fn encode_shutdown(out: &mut Vec<u8>) {
    out.push(SHUTDOWN);
}

/// Series keys decoded lately, shared like the listeners share theirs (a log repeats the same
/// series over and over).
#[derive(Default)]
pub struct Keys(hashbrown::HashSet<Arc<str>>);

impl Keys {
    fn key(&mut self, packed: &str) -> SeriesKey {
        if let Some(k) = self.0.get(packed) {
            return SeriesKey::from_shared(k.clone());
        }
        if self.0.len() >= 1 << 20 {
            self.0.clear();
        }
        let k: Arc<str> = Arc::from(packed);
        self.0.insert(k.clone());
        SeriesKey::from_shared(k)
    }
}

pub fn decode(payload: &[u8], keys: &mut Keys) -> Result<Record, Malformed> {
    let mut r = Reader(payload);
    let record = match r.byte()? {
        BATCH => {
            let whole = r.byte()? != 0;
            // Each event takes at least 12 bytes: a count past that is damage, not a batch.
            let n = r.len(payload.len() / 12)?;
            let mut events = Vec::with_capacity(n);
            for _ in 0..n {
                events.push(decode_event(&mut r, keys)?);
            }
            Record::Batch { whole, events }
        }
        TICK => Record::Tick { now: r.i64()? },
        SHUTDOWN => Record::Shutdown,
        _ => return Err(Malformed),
    };
    if !r.is_empty() {
        return Err(Malformed);
    }
    Ok(record)
}

fn decode_event(r: &mut Reader<'_>, keys: &mut Keys) -> Result<Event, Malformed> {
    let series = keys.key(r.str()?);
    let kind = kind_of(r.byte()?)?;
    let timestamp = r.i64()?;
    let sample = match r.byte()? {
        VALUE => Sample::Value(r.f64()?),
        MEMBER => Sample::Member(u64::from_le_bytes(r.array()?)),
        PARTIAL => Sample::Partial(Box::new(Partial {
            count: r.varint()?,
            sum: r.f64()?,
            min: r.f64()?,
            max: r.f64()?,
            first: r.f64()?,
            last: r.f64()?,
        })),
        _ => return Err(Malformed),
    };
    Ok(Event {
        series,
        kind,
        sample,
        timestamp,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::MetricKind;

    #[test]
    fn every_record_reads_back_as_written() {
        let series = SeriesKey::with_labels("cpu", Some("h"), &mut [("dc", "x")], &mut ["web"]);
        let events = vec![
            Event::value(series.clone(), MetricKind::Gauge, -1.5, 1_700_000_000_123),
            Event {
                series: series.clone(),
                kind: MetricKind::Set,
                sample: Sample::Member(u64::MAX - 3),
                timestamp: -5,
            },
            Event {
                series,
                kind: MetricKind::Timer,
                sample: Sample::Partial(Box::new(Partial {
                    count: 3,
                    sum: 6.0,
                    min: 1.0,
                    max: 3.0,
                    first: 2.0,
                    last: 1.0,
                })),
                timestamp: 0,
            },
        ];
        let mut keys = Keys::default();
        for whole in [true, false] {
            let mut out = Vec::new();
            encode_batch(whole, &events, &mut out);
            let record = Record::Batch {
                whole,
                events: events.clone(),
            };
            assert_eq!(decode(&out, &mut keys), Ok(record));
            assert!(decode(&out[..out.len() - 1], &mut keys).is_err());
        }
        let mut out = Vec::new();
        encode_tick(-7, &mut out);
        assert_eq!(decode(&out, &mut keys), Ok(Record::Tick { now: -7 }));
        out.clear();
        encode_shutdown(&mut out);
        assert_eq!(decode(&out, &mut keys), Ok(Record::Shutdown));
        assert_eq!(decode(&[9], &mut keys), Err(Malformed));
    }
}
