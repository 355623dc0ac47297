//! The JSON event format shared by `POST /v1/metrics` and `strata replay`: one object, an array of
//! objects (cricket's form) or NDJSON. A body is validated whole before anything is ingested: the
//! first bad item fails the request with an error that names the item and the field.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::clock::EpochMillis;
use crate::event::{Event, MetricKind, Partial, Sample, SeriesKey};
use crate::ingest::limits::{check_count, check_series, check_tag, check_text, Limits};

/// Where in a body a problem is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// The body as a whole.
    Body,
    /// The n-th element (0-based) of a JSON array.
    Item(usize),
    /// The n-th line (1-based) of NDJSON.
    Line(usize),
}

/// Why an event (and with it the whole request) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct InvalidEvent {
    pub at: Location,
    /// The field at fault; for an unknown key, that key.
    pub field: Option<Cow<'static, str>>,
    pub message: String,
}

impl fmt::Display for InvalidEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.at {
            Location::Body => {}
            Location::Item(i) => write!(f, "item {i}: ")?,
            Location::Line(l) => write!(f, "line {l}: ")?,
        }
        if let Some(field) = &self.field {
            write!(f, "field '{field}': ")?;
        }
        f.write_str(&self.message)
    }
}

/// Every field kept raw, so that each can be checked and named on its own.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    #[serde(borrow, default)]
    name: Option<&'a RawValue>,
    #[serde(borrow, default)]
    value: Option<&'a RawValue>,
    #[serde(borrow, default)]
    timestamp: Option<&'a RawValue>,
    #[serde(borrow, default)]
    host: Option<&'a RawValue>,
    #[serde(borrow, default)]
    tags: Option<&'a RawValue>,
    #[serde(borrow, default, rename = "type")]
    kind: Option<&'a RawValue>,
    #[serde(borrow, default)]
    labels: Option<&'a RawValue>,
    // The partial form: many values summarised by the client, instead of `value`.
    #[serde(borrow, default)]
    count: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sum: Option<&'a RawValue>,
    #[serde(borrow, default)]
    min: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max: Option<&'a RawValue>,
    #[serde(borrow, default)]
    first: Option<&'a RawValue>,
    #[serde(borrow, default)]
    last: Option<&'a RawValue>,
}

impl RawEvent<'_> {
    fn partial_fields(&self) -> [(&'static str, Option<&RawValue>); 6] {
        [
            ("count", self.count),
            ("sum", self.sum),
            ("min", self.min),
            ("max", self.max),
            ("first", self.first),
            ("last", self.last),
        ]
    }
}

/// Parses and validates a whole body, or returns the first problem.
pub(crate) fn parse_body(body: &[u8], limits: &Limits) -> Result<Vec<Event>, InvalidEvent> {
    let body_err = |message: String| InvalidEvent {
        at: Location::Body,
        field: None,
        message,
    };
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<&RawValue>();
    let mut values = Vec::new();
    let mut lines = LineCounter::default();
    let mut offset = 0;
    while let Some(next) = stream.next() {
        let line = lines.line_at(body, offset);
        // serde counts lines from the start of the body, as we do.
        let value = next.map_err(|e| InvalidEvent {
            at: Location::Line(if e.line() > 0 { e.line() } else { line }),
            field: None,
            message: format!("malformed JSON: {e}"),
        })?;
        values.push((line, value));
        offset = stream.byte_offset();
    }
    match values.as_slice() {
        [] => Err(body_err(
            "empty body: expected a JSON object, an array of objects or NDJSON".into(),
        )),
        [(_, only)] if only.get().starts_with('[') => {
            let items: Vec<&RawValue> = serde_json::from_str(only.get())
                .map_err(|e| body_err(format!("malformed JSON array: {e}")))?;
            let mut events = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                events.push(parse_event(item.get(), Location::Item(i), limits)?);
            }
            Ok(events)
        }
        [(_, only)] => Ok(vec![parse_event(only.get(), Location::Body, limits)?]),
        many => many
            .iter()
            .map(|(line, v)| parse_event(v.get(), Location::Line(*line), limits))
            .collect(),
    }
}

/// Line numbers of a body read front to back: each call counts only the newlines since the
/// last one, so numbering every value of an NDJSON body costs one pass over it (counting from
/// the start each time held 5 000-line bodies to 34 359 events/s: BENCHMARKS.md).
#[derive(Debug, Default)]
struct LineCounter {
    /// Bytes already counted.
    counted: usize,
    /// Newlines in them.
    newlines: usize,
}

impl LineCounter {
    /// 1-based line of the first non-blank byte at or after `offset`; offsets must not decrease.
    fn line_at(&mut self, body: &[u8], offset: usize) -> usize {
        let start = offset
            + body[offset..]
                .iter()
                .take_while(|b| b.is_ascii_whitespace())
                .count();
        let from = self.counted.min(start);
        self.newlines += body[from..start].iter().filter(|&&b| b == b'\n').count();
        self.counted = start;
        1 + self.newlines
    }
}

/// Parses and validates one event object.
pub(crate) fn parse_event(
    json: &str,
    at: Location,
    limits: &Limits,
) -> Result<Event, InvalidEvent> {
    let err = |field: Option<&'static str>, message: String| InvalidEvent {
        at,
        field: field.map(Cow::Borrowed),
        message,
    };
    if !json.starts_with('{') {
        return Err(err(None, "expected a JSON object".into()));
    }
    let raw: RawEvent = serde_json::from_str(json).map_err(|e| {
        let message = e.to_string();
        // serde names an unknown key in its message only: carry it as the field too.
        let unknown = message
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(key, _)| Cow::Owned(key.to_string()));
        match unknown {
            Some(key) => InvalidEvent {
                at,
                field: Some(key),
                message: "unknown field (known: name, value, timestamp, host, tags, labels, type, count, sum, min, max, first, last)".into(),
            },
            None => err(None, message),
        }
    })?;
    let name: Cow<str> = match raw.name {
        Some(v) => string_field(v).map_err(|m| err(Some("name"), m))?,
        None => return Err(err(Some("name"), "is required".into())),
    };
    check_text(&name, limits.max_name_length).map_err(|m| err(Some("name"), m.to_string()))?;
    let timestamp = match raw.timestamp {
        Some(v) if v.get() != "null" => {
            let t = timestamp(v).map_err(|m| err(Some("timestamp"), m))?;
            if !v.get().starts_with('"') {
                if let Some(why) = looks_like_seconds(t, limits.now) {
                    return Err(err(Some("timestamp"), why));
                }
            }
            t
        }
        _ => limits.now,
    };
    limits
        .check_time(timestamp)
        .map_err(|e| err(Some("timestamp"), e.to_string()))?;
    let host = match raw.host {
        Some(v) if v.get() != "null" => Some(string_field(v).map_err(|m| err(Some("host"), m))?),
        _ => None,
    };
    if let Some(h) = &host {
        check_text(h, limits.max_name_length).map_err(|m| err(Some("host"), m.to_string()))?;
    }
    let kind = match raw.kind {
        Some(v) if v.get() != "null" => {
            let s = string_field(v).map_err(|m| err(Some("type"), m))?;
            MetricKind::parse(&s).ok_or_else(|| {
                err(
                    Some("type"),
                    format!("{s:?} is not a type (gauge, counter, timer or set)"),
                )
            })?
        }
        _ => MetricKind::Gauge,
    };
    let sample = sample(&raw, kind).map_err(|(field, m)| err(Some(field), m))?;
    let labels: Vec<Cow<str>> = match raw.labels {
        Some(v) if v.get() != "null" => serde_json::from_str(v.get())
            .map_err(|_| err(Some("labels"), "must be an array of strings".into()))?,
        _ => Vec::new(),
    };
    check_count("labels", labels.len(), limits.max_tags)
        .map_err(|m| err(Some("labels"), m.to_string()))?;
    for label in &labels {
        check_text(label, limits.max_name_length)
            .map_err(|m| err(Some("labels"), format!("{label:?} {m}")))?;
    }
    let tags: Vec<(Cow<str>, Cow<str>)> = match raw.tags {
        Some(v) if v.get() != "null" => serde_json::from_str(v.get())
            .map(|TagPairs(pairs)| pairs)
            .map_err(|_| err(Some("tags"), "must be an object of string values".into()))?,
        _ => Vec::new(),
    };
    check_count("tags", tags.len(), limits.max_tags)
        .map_err(|m| err(Some("tags"), m.to_string()))?;
    for (k, v) in &tags {
        check_tag(k, v, limits.max_name_length).map_err(|m| err(Some("tags"), m.to_string()))?;
    }
    let mut pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_ref(), v.as_ref())).collect();
    let mut labels: Vec<&str> = labels.iter().map(AsRef::as_ref).collect();
    let series = SeriesKey::with_labels(&name, host.as_deref(), &mut pairs, &mut labels);
    check_series(&series).map_err(|m| err(Some("tags"), m.to_string()))?;
    Ok(Event {
        series,
        kind,
        sample,
        timestamp,
    })
}

/// A JSON object's entries in order, a key given twice kept twice (a map would keep one of them
/// silently; [`check_series`] refuses the event instead).
struct TagPairs<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> serde::Deserialize<'de> for TagPairs<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> serde::de::Visitor<'de> for Entries {
            type Value = TagPairs<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an object of string values")
            }
            fn visit_map<M: serde::de::MapAccess<'de>>(
                self,
                mut map: M,
            ) -> Result<Self::Value, M::Error> {
                let mut pairs = Vec::new();
                while let Some(entry) = map.next_entry::<Cow<'de, str>, Cow<'de, str>>()? {
                    pairs.push(entry);
                }
                Ok(TagPairs(pairs))
            }
        }
        d.deserialize_map(Entries)
    }
}

/// The value, set member or partial aggregate of an event, or the field at fault.
fn sample(raw: &RawEvent, kind: MetricKind) -> Result<Sample, (&'static str, String)> {
    let given: Vec<&'static str> = raw
        .partial_fields()
        .iter()
        .filter(|(_, v)| v.is_some())
        .map(|(f, _)| *f)
        .collect();
    match (raw.value, given.first()) {
        (Some(_), Some(field)) => Err((
            field,
            "cannot be given with 'value': an event is either one value or a partial (count, sum, min, max, first, last)".into(),
        )),
        (Some(v), None) if kind == MetricKind::Set => set_member(v).map_err(|m| ("value", m)),
        (Some(v), None) => finite_number(v).map(Sample::Value).map_err(|m| ("value", m)),
        (None, None) => Err(("value", "is required (or the partial fields count, sum, min, max, first, last)".into())),
        (None, Some(_)) if kind == MetricKind::Set => Err((
            "type",
            "a set takes one member in 'value', not a partial".into(),
        )),
        (None, Some(_)) => partial(raw).map(|p| Sample::Partial(Box::new(p))),
    }
}

fn partial(raw: &RawEvent) -> Result<Partial, (&'static str, String)> {
    let mut numbers = [0.0; 6];
    for (slot, (field, v)) in numbers.iter_mut().zip(raw.partial_fields()) {
        let v = v.ok_or((field, "is required in a partial".to_string()))?;
        *slot = finite_number(v).map_err(|m| (field, m))?;
    }
    let [count, sum, min, max, first, last] = numbers;
    Partial::from_numbers(count, sum, min, max, first, last).map_err(|e| (e.field(), e.to_string()))
}

/// A set member: a string, or a number taken as its JSON text.
fn set_member(v: &RawValue) -> Result<Sample, String> {
    let text: Cow<str> = if v.get().starts_with('"') {
        string_field(v)?
    } else if serde_json::from_str::<f64>(v.get()).is_ok() {
        Cow::Borrowed(v.get())
    } else {
        return Err(format!(
            "a set member must be a string or a number, got {}",
            v.get()
        ));
    };
    if text.is_empty() {
        return Err("a set member must not be empty".into());
    }
    Ok(Sample::Member(xxhash_rust::xxh3::xxh3_64(text.as_bytes())))
}

fn string_field(v: &RawValue) -> Result<Cow<'_, str>, String> {
    serde_json::from_str::<Cow<str>>(v.get())
        .map_err(|_| format!("must be a string, got {}", v.get()))
}

fn finite_number(v: &RawValue) -> Result<f64, String> {
    let text = v.get();
    if text.starts_with('"') {
        return Err(format!("must be a finite number, got the string {text}"));
    }
    match serde_json::from_str::<f64>(text) {
        Ok(x) if crate::event::in_range(x) => Ok(x),
        _ => Err(format!("must be a finite number within ±1e290, got {text}")),
    }
}

/// Why the number `t` reads as epoch seconds sent where milliseconds belong: in the first three
/// years of the epoch as milliseconds, and within a year of `now` as seconds.
fn looks_like_seconds(t: EpochMillis, now: EpochMillis) -> Option<String> {
    const YEAR_MS: i64 = 366 * 86_400_000;
    let as_seconds = t.checked_mul(1000)?;
    // A clock itself in the first years of the epoch (tests) makes every small number look so.
    let plausible = as_seconds >= 3 * YEAR_MS && (as_seconds - now).abs() < YEAR_MS;
    ((0..3 * YEAR_MS).contains(&t) && plausible).then(|| {
        format!(
            "{t} is {} in epoch milliseconds, and {} in seconds: timestamps are milliseconds (send {as_seconds}) or RFC 3339",
            crate::calendar::rfc3339(t),
            crate::calendar::rfc3339(as_seconds)
        )
    })
}

fn timestamp(v: &RawValue) -> Result<EpochMillis, String> {
    let text = v.get();
    if text.starts_with('"') {
        let s: Cow<str> = serde_json::from_str(text).map_err(|e| e.to_string())?;
        return chrono::DateTime::parse_from_rfc3339(&s)
            .map(|d| d.timestamp_millis())
            .map_err(|e| format!("{s:?} is not an RFC 3339 time ({e})"));
    }
    serde_json::from_str::<i64>(text)
        .map_err(|_| format!("{text} is neither an RFC 3339 string nor whole epoch milliseconds"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: EpochMillis = 1_700_000_000_000;

    fn limits() -> Limits {
        Limits {
            now: NOW,
            max_future_skew_ms: 60_000,
            max_name_length: 20,
            max_tags: 2,
        }
    }

    fn parse(body: &str) -> Result<Vec<Event>, InvalidEvent> {
        parse_body(body.as_bytes(), &limits())
    }

    fn fails(body: &str) -> String {
        parse(body).unwrap_err().to_string()
    }

    #[test]
    fn a_tag_key_given_twice_is_refused_not_last_wins() {
        assert_eq!(
            fails(r#"{"name":"a","value":1,"tags":{"dc":"par","dc":"ams"}}"#),
            "field 'tags': tag key \"dc\" given twice (a document's tags are an object, whose keys the node requires to be unique)"
        );
    }

    #[test]
    fn values_and_times_that_would_overflow_a_bucket_are_refused() {
        assert_eq!(
            fails(r#"{"name":"big","value":1.7e308}"#),
            "field 'value': must be a finite number within ±1e290, got 1.7e308"
        );
        assert!(
            parse(r#"{"name":"big","value":-1e290}"#).is_ok(),
            "the edge itself"
        );
        assert!(fails(
            r#"{"name":"p","count":2,"sum":1.7e308,"min":1,"max":1e308,"first":1,"last":1}"#
        )
        .contains("field 'sum': must be a finite number within ±1e290"));
        assert_eq!(
            fails(r#"{"name":"old","value":1,"timestamp":-9223372036854775808}"#),
            "field 'timestamp': -9223372036854775808 ms is before the year 1"
        );
        assert!(parse(r#"{"name":"old","value":1,"timestamp":"0001-01-01T00:00:00Z"}"#).is_ok());
    }

    #[test]
    fn cricket_array_object_and_ndjson_are_accepted() {
        let arr = parse(r#"[{"name":"c1","type":"counter","value":1,"timestamp":"1990-01-01T00:00:00Z"},{"name":"c2","value":4.7}]"#).unwrap();
        assert_eq!(arr.len(), 2);
        assert_eq!(arr[0].kind, MetricKind::Counter);
        assert_eq!(arr[0].timestamp, 631_152_000_000);
        assert_eq!(arr[1].timestamp, NOW, "absent timestamp means now");
        let one =
            parse(r#"{"name":"x","value":2,"host":"h","tags":{"b":"2","a":"1"},"timestamp":1000}"#)
                .unwrap();
        assert_eq!(
            one[0].series.tags().collect::<Vec<_>>(),
            vec![("a", "1"), ("b", "2")]
        );
        assert_eq!(one[0].timestamp, 1000);
        let nd = parse("{\"name\":\"a\",\"value\":1}\n\n{\"name\":\"b\",\"value\":2}\n").unwrap();
        assert_eq!(nd.len(), 2);
    }

    #[test]
    fn ndjson_lines_are_numbered_across_blank_lines_and_long_bodies() {
        let good = "{\"name\":\"a\",\"value\":1}\n";
        let mut body = good.repeat(999);
        body.push_str("\n{\"name\":\"b\"}\n");
        assert!(
            fails(&body).starts_with("line 1001: field 'value'"),
            "{}",
            fails(&body)
        );
        let mut malformed = good.repeat(2);
        malformed.push_str("\n{\"name\":\"a\",\"value\":NaN}\n");
        assert!(
            fails(&malformed).starts_with("line 4: malformed JSON"),
            "{}",
            fails(&malformed)
        );
    }

    #[test]
    fn each_bad_input_names_item_and_field() {
        assert_eq!(
            fails(r#"[{"name":"a","value":1},{"value":1}]"#),
            "item 1: field 'name': is required"
        );
        assert_eq!(
            fails(r#"[{"name":"a"}]"#),
            "item 0: field 'value': is required (or the partial fields count, sum, min, max, first, last)"
        );
        assert_eq!(
            fails(r#"{"name":"a","value":"NaN"}"#),
            "field 'value': must be a finite number, got the string \"NaN\""
        );
        assert!(fails(r#"{"name":"a","value":1e999}"#)
            .contains("field 'value': must be a finite number"));
        assert_eq!(
            fails(r#"{"name":"","value":1}"#),
            "field 'name': must not be empty"
        );
        assert!(fails(r#"{"name":"aaaaaaaaaaaaaaaaaaaaa","value":1}"#)
            .contains("more than the limit of 20"));
        assert_eq!(
            fails("{\"name\":\"a\\u0007\",\"value\":1}"),
            "field 'name': must not contain control characters"
        );
        // NOW is 2023-11-14; 1699000000 ms is 1970-01-20, 1699000000 s is 2023-11-03.
        assert_eq!(
            fails(r#"{"name":"a","value":1,"timestamp":1699000000}"#),
            "field 'timestamp': 1699000000 is 1970-01-20T15:56:40Z in epoch milliseconds, and 2023-11-03T08:26:40Z in seconds: timestamps are milliseconds (send 1699000000000) or RFC 3339"
        );
        assert!(parse(r#"{"name":"a","value":1,"timestamp":"1970-01-20T15:56:40Z"}"#).is_ok());
        assert!(fails(r#"{"name":"a","value":1,"timestamp":"yesterday"}"#)
            .starts_with("field 'timestamp': \"yesterday\" is not an RFC 3339 time"));
        assert!(fails(r#"{"name":"a","value":1,"timestamp":1800000000000}"#)
            .contains("ahead of the server clock"));
        assert!(fails(r#"{"name":"a","value":1,"type":"histogram"}"#).contains("field 'type'"));
        assert!(
            fails(r#"{"name":"a","value":1,"tags":{"a.b":"c"}}"#).contains("must not contain '.'")
        );
        assert_eq!(
            fails(r#"{"name":"a","value":1,"tags":{" ":"c"}}"#),
            "field 'tags': key \" \" is blank (the node refuses such a field name)"
        );
        assert!(
            fails(r#"{"name":"a","value":1,"tags":{"a":"1","b":"2","c":"3"}}"#)
                .contains("more than the limit of 2")
        );
        assert!(fails(r#"{"name":"a","value":1,"valeu":2}"#)
            .contains("field 'valeu': unknown field (known: name"));
        assert!(fails(r#"{"name":"a","value":NaN}"#).starts_with("line 1: malformed JSON"));
        assert!(fails("{\"name\":\"a\",\"value\":1}\n{\"name\":\"b\"}")
            .starts_with("line 2: field 'value'"));
        assert!(fails("").starts_with("empty body"));
        assert!(fails("[1]").starts_with("item 0: expected a JSON object"));
    }

    #[test]
    fn partials_sets_and_labels_are_read_and_checked() {
        let e = parse(r#"{"name":"t","type":"timer","count":3,"sum":6,"min":1,"max":3,"first":2,"last":1,"labels":["x","y"]}"#).unwrap();
        assert_eq!(
            e[0].sample,
            Sample::Partial(Box::new(Partial {
                count: 3,
                sum: 6.0,
                min: 1.0,
                max: 3.0,
                first: 2.0,
                last: 1.0
            }))
        );
        assert_eq!(e[0].series.labels().collect::<Vec<_>>(), vec!["x", "y"]);
        let a = parse(r#"{"name":"u","type":"set","value":"alice"}"#).unwrap();
        let b = parse(r#"{"name":"u","type":"set","value":"bob"}"#).unwrap();
        assert!(matches!(a[0].sample, Sample::Member(_)));
        assert_ne!(a[0].sample, b[0].sample);
        assert!(fails(r#"{"name":"t","value":1,"count":2}"#)
            .starts_with("field 'count': cannot be given with 'value'"));
        assert_eq!(
            fails(r#"{"name":"t","count":2,"sum":2,"min":1,"max":1,"first":1}"#),
            "field 'last': is required in a partial"
        );
        assert!(
            fails(r#"{"name":"t","count":0.5,"sum":2,"min":1,"max":1,"first":1,"last":1}"#)
                .contains("whole number")
        );
        assert!(
            fails(r#"{"name":"t","count":2,"sum":2,"min":3,"max":1,"first":1,"last":1}"#)
                .starts_with("field 'min': 3 is above max 1")
        );
        assert!(fails(r#"{"name":"u","type":"set","value":{}}"#).contains("set member"));
        assert!(fails(r#"{"name":"u","labels":"a","value":1}"#).contains("array of strings"));
        assert_eq!(
            fails(r#"{"name":"a"}"#),
            "field 'value': is required (or the partial fields count, sum, min, max, first, last)"
        );
    }

    #[test]
    fn future_within_skew_is_fine() {
        let e = parse(&format!(
            r#"{{"name":"a","value":1,"timestamp":{}}}"#,
            NOW + 59_000
        ))
        .unwrap();
        assert_eq!(e[0].timestamp, NOW + 59_000);
    }

    #[test]
    fn rfc3339_offsets_are_honoured() {
        let e = parse(r#"{"name":"a","value":1,"timestamp":"1970-01-01T01:00:01+01:00"}"#).unwrap();
        assert_eq!(e[0].timestamp, 1000);
    }
}

/// One event as a line [`parse_event`] reads back to the same event (what `strata record`
/// writes). A set member was hashed when it came in: its hash is written as the member, so a
/// replay counts it once, as the original did.
pub(crate) fn event_line(event: &Event) -> String {
    let series = &event.series;
    let mut line = serde_json::Map::new();
    line.insert("name".into(), series.name().into());
    if let Some(host) = series.host() {
        line.insert("host".into(), host.into());
    }
    let tags: serde_json::Map<String, serde_json::Value> = series
        .tags()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    if !tags.is_empty() {
        line.insert("tags".into(), tags.into());
    }
    let labels: Vec<&str> = series.labels().collect();
    if !labels.is_empty() {
        line.insert("labels".into(), labels.into());
    }
    line.insert("type".into(), event.kind.as_str().into());
    match &event.sample {
        Sample::Value(v) => {
            line.insert("value".into(), (*v).into());
        }
        Sample::Member(hash) => {
            line.insert("value".into(), hash.to_string().into());
        }
        Sample::Partial(p) => {
            for (k, v) in [
                ("count", p.count as f64),
                ("sum", p.sum),
                ("min", p.min),
                ("max", p.max),
                ("first", p.first),
                ("last", p.last),
            ] {
                line.insert(k.into(), v.into());
            }
        }
    }
    line.insert("timestamp".into(), event.timestamp.into());
    serde_json::Value::Object(line).to_string()
}

#[cfg(test)]
mod event_line_tests {
    use super::*;

    #[test]
    fn a_recorded_line_reads_back_as_the_same_event() {
        let limits = Limits {
            now: 10_000_000,
            max_future_skew_ms: 60_000,
            max_name_length: 255,
            max_tags: 32,
        };
        for line in [
            r#"{"name":"cpu","host":"a","tags":{"dc":"eu"},"labels":["x"],"type":"gauge","value":1.5,"timestamp":1000}"#,
            r#"{"name":"req","type":"counter","count":3,"sum":6,"min":1,"max":3,"first":1,"last":2,"timestamp":2000}"#,
            r#"{"name":"users","type":"set","value":"bob","timestamp":3000}"#,
        ] {
            let event = parse_event(line, Location::Line(1), &limits).unwrap();
            let again = parse_event(&event_line(&event), Location::Line(1), &limits).unwrap();
            if matches!(event.sample, Sample::Member(_)) {
                assert_eq!(
                    (&again.series, again.kind, again.timestamp),
                    (&event.series, event.kind, event.timestamp)
                );
                assert!(matches!(again.sample, Sample::Member(_)));
            } else {
                assert_eq!(again, event);
            }
        }
    }
}
