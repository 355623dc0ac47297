//! Fuzzing every parser on the stable toolchain (cargo-fuzz needs nightly): `proptest` feeds
//! random inputs and mutations of valid ones (a small corpus per protocol) to the JSON/NDJSON
//! body parser, statsd, Graphite, Riemann frames, DaTtSs lines and `PUT /agg`, and archives.toml.
//! Each property checks that nothing panics and that whatever a parser accepts is within every
//! limit the node needs (section 2 of issue 13): names and tags within `max_name_length` and
//! free of control characters, at most `max_tags` tags, values within ±1e290, times within the
//! allowed window, each tag key once. `scripts/test` runs `STRATA_FUZZ_CASES` cases per
//! property (256 by default); a failure is shrunk by proptest and belongs in a regression test.

use proptest::prelude::*;

use crate::event::{Event, Sample};
use crate::ingest::limits::{Limits, EARLIEST};

const NOW: i64 = 1_780_000_000_000;

fn limits() -> Limits {
    Limits {
        now: NOW,
        max_future_skew_ms: 60_000,
        max_name_length: 64,
        max_tags: 4,
    }
}

fn cases() -> u32 {
    std::env::var("STRATA_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256)
}

/// What every accepted event must satisfy, whatever door it came through.
fn assert_within_limits(e: &Event, l: &Limits) {
    let text_ok = |s: &str| s.len() <= l.max_name_length && !s.chars().any(char::is_control);
    let name = e.series.name();
    assert!(!name.is_empty() && text_ok(name), "name {name:?}");
    if let Some(h) = e.series.host() {
        assert!(text_ok(h), "host {h:?}");
    }
    let tags: Vec<(&str, &str)> = e.series.tags().collect();
    assert!(tags.len() <= l.max_tags, "{} tags", tags.len());
    for (i, (k, v)) in tags.iter().enumerate() {
        assert!(
            text_ok(k) && !k.trim().is_empty() && !k.contains('.'),
            "tag key {k:?}"
        );
        assert!(text_ok(v), "tag value {v:?}");
        assert!(
            tags[..i].iter().all(|(other, _)| other != k),
            "tag key {k:?} twice"
        );
    }
    assert!(e.series.labels().count() <= l.max_tags);
    assert!(
        (EARLIEST..=l.now + l.max_future_skew_ms).contains(&e.timestamp),
        "time {}",
        e.timestamp
    );
    match &e.sample {
        Sample::Value(v) => assert!(crate::event::in_range(*v), "value {v}"),
        Sample::Partial(p) => {
            for v in [p.sum, p.min, p.max, p.first, p.last] {
                assert!(crate::event::in_range(v), "partial {p:?}");
            }
            assert!(p.count >= 1 && p.min <= p.max);
        }
        Sample::Member(_) => {}
    }
}

/// `valid` with some of its bytes replaced, removed or duplicated.
fn mutated(valid: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(valid),
        prop::collection::vec((any::<usize>(), any::<u8>(), 0u8..3), 0..8),
    )
        .prop_map(|(seed, edits)| {
            let mut bytes = seed.as_bytes().to_vec();
            for (at, byte, how) in edits {
                if bytes.is_empty() {
                    bytes.push(byte);
                    continue;
                }
                let at = at % bytes.len();
                match how {
                    0 => bytes[at] = byte,
                    1 => {
                        bytes.remove(at);
                    }
                    _ => {
                        let copy = bytes[at..].to_vec();
                        bytes.extend_from_slice(&copy);
                    }
                }
            }
            bytes
        })
}

/// Random bytes, or a mutation of one of `valid`.
fn inputs(valid: &'static [&'static str]) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![prop::collection::vec(any::<u8>(), 0..256), mutated(valid)]
}

const JSON: &[&str] = &[
    r#"{"name":"cpu","value":1.5,"host":"h","tags":{"dc":"par"},"timestamp":1780000000000}"#,
    r#"[{"name":"c1","type":"counter","value":1,"timestamp":"2026-05-28T20:26:40Z"},{"name":"u","type":"set","value":"alice"}]"#,
    "{\"name\":\"a\",\"value\":1}\n{\"name\":\"b\",\"count\":2,\"sum\":3,\"min\":1,\"max\":2,\"first\":1,\"last\":2}\n",
    r#"{"name":"l","value":-1e290,"labels":["x","y"],"tags":{"a":"1","b":"2"}}"#,
];
const STATSD: &[&str] = &[
    "hits:1|c|@0.5|#dc:par,env:prod\nlat:153|ms\ng:+3|g\nu:alice|s",
    "a.b:1e10|h|#k\nauth:app:latency:153ms!",
];
const GRAPHITE: &[&str] = &["servers.web1.cpu 0.5 1780000000\na.b nan\nx -1 -1"];
const AGG: &[&str] = &[
    r#"{"prt":{"c":[{"typ":"c","pth":"hits","sum":3,"cnt":3,"min":1,"max":1,"fst":1,"lst":1}],"g":[{"pth":"g","sum":5,"cnt":2,"min":2,"max":3,"fst":2,"lst":3}]}}"#,
];
const TOML: &[&str] = &[
    "[node]\nurl = \"http://127.0.0.1:9200\"\n[[archive]]\nname = \"20s\"\nstep = \"20s\"\nretention = \"2 days\"\nindex_period = \"day\"\npercentiles = [50, 99.9]\n[statsd]\n[http]\nmax_body_bytes = 1000\n",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn json_and_ndjson_bodies(body in inputs(JSON)) {
        let l = limits();
        if let Ok(events) = crate::ingest::json::parse_body(&body, &l) {
            events.iter().for_each(|e| assert_within_limits(e, &l));
        }
    }

    #[test]
    fn statsd_datagrams(datagram in inputs(STATSD)) {
        let l = limits();
        let text = String::from_utf8_lossy(&datagram);
        let mut gauges = crate::ingest::statsd::GaugeState::new(std::time::Duration::from_secs(60));
        let mut out = Vec::new();
        crate::ingest::statsd::parse_datagram(&text, &l, &mut gauges, &mut out);
        out.iter().for_each(|e| assert_within_limits(e, &l));
    }

    #[test]
    fn graphite_lines(text in inputs(GRAPHITE)) {
        let l = limits();
        let mut out = Vec::new();
        crate::ingest::graphite::parse_lines(&String::from_utf8_lossy(&text), &l, &mut out);
        out.iter().for_each(|e| assert_within_limits(e, &l));
    }

    #[test]
    fn riemann_messages(bytes in prop_oneof![
        prop::collection::vec(any::<u8>(), 0..256),
        riemann_corpus_mutated(),
    ]) {
        let l = limits();
        let mut out = Vec::new();
        if crate::ingest::riemann::decode_msg(&bytes, &l, &mut out).is_ok() {
            out.iter().for_each(|e| assert_within_limits(e, &l));
        }
    }

    #[test]
    fn dattss_lines_and_partials(line in inputs(STATSD), body in inputs(AGG)) {
        let l = limits();
        let _ = crate::ingest::dattss::parse_value(&String::from_utf8_lossy(&line));
        if let Ok(events) = crate::ingest::dattss::parse_agg(&body, &l) {
            events.iter().for_each(|e| assert_within_limits(e, &l));
        }
    }

    #[test]
    fn archives_toml(text in inputs(TOML)) {
        let _ = crate::config::Config::from_toml(&String::from_utf8_lossy(&text), std::path::Path::new("fuzz.toml"));
    }

    /// Partials of a bucket's values, merged, equal the consolidation of the values themselves
    /// (count, sum, min, max, first, last; values and times kept small so sums are exact).
    #[test]
    fn partials_merge_like_raw_events(values in prop::collection::vec((0i64..20_000, -1000i32..1000), 1..40), cut in 0usize..40) {
        use crate::consolidate::{ArchiveSpec, Consolidator};
        use crate::event::{MetricKind, Partial, SeriesKey};
        let spec = ArchiveSpec { step_ms: 20_000, lateness_ms: 0, sketches: false };
        let mut distinct: Vec<(i64, i32)> = values;
        distinct.sort_by_key(|v| v.0);
        distinct.dedup_by_key(|v| v.0);
        let key = SeriesKey::new("p", None, &mut []);
        let raw: Vec<Event> = distinct.iter().map(|&(t, v)| Event::value(key.clone(), MetricKind::Gauge, f64::from(v), t)).collect();
        let mut one = Consolidator::new(&[spec], 10);
        one.record_batch(&raw).unwrap();
        let mut expected = Vec::new();
        one.flush_all(&mut expected);

        let cut = cut % distinct.len();
        let mut partials = Vec::new();
        for slice in [&distinct[..cut], &distinct[cut..]] {
            let Some(&(first_t, first)) = slice.first() else { continue };
            let &(last_t, last) = slice.last().unwrap();
            let values: Vec<f64> = slice.iter().map(|&(_, v)| f64::from(v)).collect();
            let p = Partial::from_numbers(
                slice.len() as f64,
                values.iter().sum(),
                values.iter().cloned().fold(f64::INFINITY, f64::min),
                values.iter().cloned().fold(f64::NEG_INFINITY, f64::max),
                f64::from(first),
                f64::from(last),
            ).unwrap();
            partials.push((p, first_t, last_t));
        }
        let mut merged = Consolidator::new(&[spec], 10);
        for (p, first_t, _) in &partials {
            merged.record_event(&Event { series: key.clone(), kind: MetricKind::Gauge, sample: Sample::Partial(Box::new(*p)), timestamp: *first_t }).unwrap();
        }
        let mut got = Vec::new();
        merged.flush_all(&mut got);
        let stats = |c: &crate::consolidate::Closed| {
            let s = c.summary;
            (s.start, s.count, s.sum, s.min, s.max, s.first, s.last)
        };
        let exp: Vec<_> = expected.iter().map(stats).collect();
        let have: Vec<_> = got.iter().map(stats).collect();
        prop_assert_eq!(have, exp);
    }
}

/// Valid Riemann messages (encoded with `prost`), mutated.
fn riemann_corpus_mutated() -> impl Strategy<Value = Vec<u8>> {
    const SEED: &[&str] = &["seed"];
    mutated(SEED).prop_map(|edits| {
        use prost::Message;
        #[derive(Clone, PartialEq, prost::Message)]
        struct Attribute {
            #[prost(string, tag = "1")]
            key: String,
            #[prost(string, tag = "2")]
            value: String,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct RiemannEvent {
            #[prost(int64, tag = "1")]
            time: i64,
            #[prost(string, tag = "3")]
            service: String,
            #[prost(string, tag = "4")]
            host: String,
            #[prost(string, repeated, tag = "7")]
            tags: Vec<String>,
            #[prost(message, repeated, tag = "9")]
            attributes: Vec<Attribute>,
            #[prost(double, tag = "14")]
            metric_d: f64,
        }
        #[derive(Clone, PartialEq, prost::Message)]
        struct Msg {
            #[prost(message, repeated, tag = "6")]
            events: Vec<RiemannEvent>,
        }
        let event = RiemannEvent {
            time: 1_780_000_000,
            service: "svc".into(),
            host: "h".into(),
            tags: vec!["t".into()],
            attributes: vec![Attribute {
                key: "dc".into(),
                value: "par".into(),
            }],
            metric_d: 1.5,
        };
        let mut bytes = Msg {
            events: vec![event],
        }
        .encode_to_vec();
        // Apply the same mutations the seed string got, by position.
        for (i, b) in edits.iter().enumerate().take(4) {
            if !bytes.is_empty() {
                let at = (usize::from(*b) + i * 7) % bytes.len();
                bytes[at] ^= *b;
            }
        }
        bytes
    })
}
