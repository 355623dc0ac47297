//! DaTtSs: its value grammar `<int>(c|ms|g)[!]` (a line `auth:process:stat:value` on the statsd
//! port) and its client-side partial aggregates (`PUT /agg`), each merged into buckets exactly as
//! the many events it stands for.
//!
//! The `!` (emphasis, a display hint in DaTtSs) is accepted and not kept. DaTtSs treated 0 as
//! "unset" for min, max and first; here 0 is a value like any other.

use std::borrow::Cow;

use serde::Deserialize;

use crate::clock::EpochMillis;
use crate::event::{Event, MetricKind, Partial, Sample, SeriesKey};
use crate::ingest::json::{InvalidEvent, Location};
use crate::ingest::limits::{check_text, Limits, TextError};

/// Why a DaTtSs line or value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DattssError {
    #[error("no ':' before the value")]
    NoValue,
    #[error("expected auth:process:stat:value")]
    Shape,
    #[error("name {0}")]
    Name(#[source] TextError),
    #[error("{0:?} is not an integer")]
    NotInteger(String),
    #[error("unit {0:?} is not c, ms or g")]
    Unit(String),
}

/// Parses a DaTtSs value: `1c` (counter), `153ms` (timer), `23g` (gauge), optionally ending `!`.
pub(crate) fn parse_value(text: &str) -> Result<(MetricKind, f64), DattssError> {
    let text = text.strip_suffix('!').unwrap_or(text);
    let digits_end = text
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(text.len(), |(i, _)| i);
    let (number, unit) = text.split_at(digits_end);
    let value: i64 = number
        .parse()
        .map_err(|_| DattssError::NotInteger(number.to_string()))?;
    let kind = match unit {
        "c" => MetricKind::Counter,
        "ms" => MetricKind::Timer,
        "g" => MetricKind::Gauge,
        other => return Err(DattssError::Unit(other.to_string())),
    };
    Ok((kind, value as f64))
}

/// Parses a DaTtSs v1 line `auth:process:stat:value`; the name is `process:stat` (the auth key
/// is the account, not part of the series).
pub(crate) fn parse_line(
    line: &str,
    now: EpochMillis,
    max_name_length: usize,
) -> Result<Event, DattssError> {
    let (head, value) = line.rsplit_once(':').ok_or(DattssError::NoValue)?;
    let (_auth, name) = head.split_once(':').ok_or(DattssError::Shape)?;
    check_text(name, max_name_length).map_err(DattssError::Name)?;
    let (kind, value) = parse_value(value)?;
    Ok(Event::value(
        SeriesKey::new(name, None, &mut []),
        kind,
        value,
        now,
    ))
}

/// True when `line` is DaTtSs rather than statsd (statsd lines always have a `|`).
pub(crate) fn looks_like_dattss(line: &str) -> bool {
    !line.contains('|') && line.matches(':').count() >= 3
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AggBody<'a> {
    #[serde(borrow)]
    prt: Groups<'a>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Groups<'a> {
    // Kept raw and read one by one, so that an entry of the wrong shape is named.
    #[serde(borrow, default)]
    c: Vec<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    ms: Vec<&'a serde_json::value::RawValue>,
    #[serde(borrow, default)]
    g: Vec<&'a serde_json::value::RawValue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPartial<'a> {
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    pth: Cow<'a, str>,
    sum: f64,
    cnt: f64,
    min: f64,
    max: f64,
    fst: f64,
    lst: f64,
    /// Approximate 10th and 90th values and emphasis: DaTtSs extras, accepted and not kept.
    #[serde(default)]
    #[allow(dead_code)]
    bot: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    top: Option<f64>,
    #[serde(default)]
    #[allow(dead_code)]
    emp: Option<bool>,
}

/// Parses a whole `PUT /agg` body into one partial event per entry, stamped `limits.now`; the
/// first bad entry fails the request, naming it (`c[2]`) and the field.
pub(crate) fn parse_agg(body: &[u8], limits: &Limits) -> Result<Vec<Event>, InvalidEvent> {
    let whole = |message: String| InvalidEvent {
        at: Location::Body,
        field: None,
        message,
    };
    let parsed: AggBody = serde_json::from_slice(body).map_err(|e| {
        whole(format!(
            "expected {{\"prt\":{{\"c\":[…],\"ms\":[…],\"g\":[…]}}}}: {e}"
        ))
    })?;
    let groups = [
        ("c", MetricKind::Counter, &parsed.prt.c),
        ("ms", MetricKind::Timer, &parsed.prt.ms),
        ("g", MetricKind::Gauge, &parsed.prt.g),
    ];
    let mut events = Vec::new();
    for (group, kind, partials) in groups {
        for (i, entry) in partials.iter().enumerate() {
            let at = |field: &'static str, why: String| {
                whole(format!("prt.{group}[{i}]: field '{field}': {why}"))
            };
            let raw: RawPartial = serde_json::from_str(entry.get())
                .map_err(|e| whole(format!("prt.{group}[{i}]: {e}")))?;
            if let Some(typ) = raw.typ.as_deref().filter(|t| *t != group) {
                return Err(at("typ", format!("{typ:?} inside the {group:?} list")));
            }
            check_text(&raw.pth, limits.max_name_length).map_err(|m| at("pth", m.to_string()))?;
            let partial =
                Partial::from_numbers(raw.cnt, raw.sum, raw.min, raw.max, raw.fst, raw.lst)
                    .map_err(|e| at(dattss_field(e.field()), e.to_string()))?;
            events.push(Event {
                series: SeriesKey::new(&raw.pth, None, &mut []),
                kind,
                sample: Sample::Partial(Box::new(partial)),
                timestamp: limits.now,
            });
        }
    }
    if events.is_empty() {
        return Err(whole("no partial in prt.c, prt.ms or prt.g".into()));
    }
    Ok(events)
}

/// DaTtSs's name for a field of [`Partial`] (sum, min and max keep theirs).
fn dattss_field(field: &'static str) -> &'static str {
    match field {
        "count" => "cnt",
        "first" => "fst",
        "last" => "lst",
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            now: 5_000,
            max_future_skew_ms: 0,
            max_name_length: 50,
            max_tags: 4,
        }
    }

    #[test]
    fn value_grammar() {
        assert_eq!(parse_value("1c"), Ok((MetricKind::Counter, 1.0)));
        assert_eq!(parse_value("153ms"), Ok((MetricKind::Timer, 153.0)));
        assert_eq!(parse_value("23g!"), Ok((MetricKind::Gauge, 23.0)));
        assert_eq!(parse_value("-4g"), Ok((MetricKind::Gauge, -4.0)));
        assert_eq!(parse_value("1.5c"), Err(DattssError::Unit(".5c".into())));
        assert_eq!(parse_value("12"), Err(DattssError::Unit("".into())));
        assert!(parse_value("xc")
            .unwrap_err()
            .to_string()
            .contains("not an integer"));
    }

    #[test]
    fn lines_drop_the_auth_key() {
        let e = parse_line("secret:web:hits:3c", 7, 50).unwrap();
        assert_eq!(e.series.name(), "web:hits");
        assert_eq!(
            (e.kind, e.sample, e.timestamp),
            (MetricKind::Counter, Sample::Value(3.0), 7)
        );
        assert!(looks_like_dattss("secret:web:hits:3c"));
        assert!(!looks_like_dattss("web.hits:3|c"));
    }

    #[test]
    fn agg_body_becomes_partials_and_bad_entries_are_named() {
        let body = br#"{"prt":{"c":[{"typ":"c","pth":"p:hits","sum":12,"cnt":12,"min":1,"max":1,"fst":1,"lst":1}],
            "ms":[{"typ":"ms","pth":"p:lat","sum":60,"cnt":3,"min":10,"max":30,"fst":30,"lst":10,"bot":10,"top":30}]}}"#;
        let events = parse_agg(body, &limits()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[1].kind, MetricKind::Timer);
        let Sample::Partial(p) = &events[1].sample else {
            panic!("partial expected")
        };
        assert_eq!((p.count, p.sum, p.first, p.last), (3, 60.0, 30.0, 10.0));
        let bad = br#"{"prt":{"g":[{"pth":"x","sum":5,"cnt":1,"min":1,"max":1,"fst":1,"lst":1}]}}"#;
        assert_eq!(
            parse_agg(bad, &limits()).unwrap_err().to_string(),
            "prt.g[0]: field 'sum': 5 over count 1 is outside min..max"
        );
        let wrong_group = br#"{"prt":{"c":[{"typ":"g","pth":"x","sum":1,"cnt":1,"min":1,"max":1,"fst":1,"lst":1}]}}"#;
        assert!(parse_agg(wrong_group, &limits())
            .unwrap_err()
            .to_string()
            .contains("field 'typ'"));
        assert!(parse_agg(br#"{"prt":{}}"#, &limits())
            .unwrap_err()
            .to_string()
            .contains("no partial"));
        assert!(parse_agg(br#"{"prt":{"c":[{"pth":"x"}]}}"#, &limits())
            .unwrap_err()
            .to_string()
            .contains("prt.c[0]: missing field"));
        let wrong_type = br#"{"prt":{"g":[{"pth":"ok","sum":1,"cnt":1,"min":1,"max":1,"fst":1,"lst":1},{"pth":"x","sum":"5","cnt":1,"min":1,"max":1,"fst":1,"lst":1}]}}"#;
        let why = parse_agg(wrong_type, &limits()).unwrap_err().to_string();
        assert!(why.starts_with("prt.g[1]: invalid type: string"), "{why}");
    }
}
