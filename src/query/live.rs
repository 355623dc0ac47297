//! `/v1/live`: from memory, the open buckets of each series and a DaTtSs-style view of its last
//! minute — counters as a per-second rate, gauges as last / avg / min / max, timers as
//! avg / min / max — computed from the finest archive's open buckets (they reach back step +
//! lateness, so the window can be shorter than 60 s; `window_seconds` says how long it is).

use serde_json::{json, Value};

use crate::calendar::rfc3339;
use crate::clock::EpochMillis;
use crate::config::Config;
use crate::consolidate::{OpenSeries, Summary};
use crate::event::{self, MetricKind};
use crate::persist::document::series_label;

fn bucket_json(config: &Config, archive: usize, s: &Summary) -> Value {
    json!({"archive": config.archives[archive].name, "start": rfc3339(s.start), "count": s.count, "sum": s.sum,
        "min": s.min, "max": s.max, "avg": s.avg(), "first": s.first, "last": s.last})
}

/// The last minute of one series from the finest archive's open buckets.
fn last_minute(config: &Config, now: EpochMillis, buckets: &[(usize, Summary)]) -> Value {
    let Some(finest) = (0..config.archives.len()).min_by_key(|&i| config.archives[i].step) else {
        return Value::Null;
    };
    let step = config.archives[finest].step.as_millis() as i64;
    let recent: Vec<&Summary> = buckets
        .iter()
        .filter(|(a, s)| *a == finest && s.start + step > now - 60_000)
        .map(|(_, s)| s)
        .collect();
    let Some(first) = recent.first() else {
        return Value::Null;
    };
    let window_start = first.start.max(now - 60_000);
    let window_s = ((now - window_start) as f64 / 1000.0).max(1.0);
    let (count, sum) = recent
        .iter()
        .fold((0u64, 0.0), |(c, s), b| (c + b.count, s + b.sum));
    match recent[0].kind {
        MetricKind::Counter => json!({"rate": sum / window_s, "window_seconds": window_s}),
        MetricKind::Set => json!({"adds": count, "window_seconds": window_s}),
        MetricKind::Timer => json!({
            "avg": sum / count as f64,
            "min": recent.iter().map(|b| b.min).fold(f64::INFINITY, f64::min),
            "max": recent.iter().map(|b| b.max).fold(f64::NEG_INFINITY, f64::max),
            "window_seconds": window_s
        }),
        MetricKind::Gauge => json!({
            "last": recent.last().map(|b| b.last),
            "avg": sum / count as f64,
            "min": recent.iter().map(|b| b.min).fold(f64::INFINITY, f64::min),
            "max": recent.iter().map(|b| b.max).fold(f64::NEG_INFINITY, f64::max),
            "window_seconds": window_s
        }),
    }
}

/// The `/v1/live` answer.
pub(crate) fn live_json(config: &Config, now: EpochMillis, series: &[OpenSeries]) -> Value {
    let items: Vec<Value> = series
        .iter()
        .map(|OpenSeries { key, buckets }| {
            let tags: serde_json::Map<String, Value> = event::tags(key)
                .map(|(k, v)| (k.to_string(), json!(v)))
                .collect();
            json!({
                "series": series_label(key),
                "name": event::name(key),
                "host": event::host(key),
                "tags": tags,
                "type": buckets.first().map(|(_, s)| s.kind.as_str()),
                "open": buckets.iter().map(|(a, s)| bucket_json(config, *a, s)).collect::<Vec<_>>(),
                "last_60s": last_minute(config, now, buckets),
            })
        })
        .collect();
    json!({"now": rfc3339(now), "series": items})
}
