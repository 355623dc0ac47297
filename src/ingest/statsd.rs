//! The statsd line protocol (etsy, with DogStatsD tags): `<key>:<value>|<type>[|@<rate>][|#k:v,k2]`,
//! several values per key (`k:1|c:2|c`), several lines per datagram. Pure parsing into events; a
//! bad line is counted and skipped, never fatal.
//!
//! Mapping: `c` → counter event of `value / rate`; `g` → gauge (`+n` / `-n` adjust the last value
//! of that key when there is one, as statsd does); `ms` and `h` → timer events; `s` → a set
//! member, hashed (buckets count the distinct ones). DaTtSs lines (`auth:process:stat:<int>c`,
//! no `|`) share the port. Tag keys may not contain `.` in documents, so dots in statsd tag keys
//! become `_`.

use std::sync::Arc;
use std::time::Duration;

use hashbrown::HashMap;

use tokio::net::TcpListener;

use crate::clock::{Clock, EpochMillis};
use crate::config::IngestConfig;
use crate::event::{Event, MetricKind, Sample, SeriesKey};
use crate::ingest::context::ListenerContext;
use crate::ingest::datagrams::{spawn_receiver, BoundUdp, ParseDatagram};
use crate::ingest::dattss::DattssError;
use crate::ingest::limits::{
    check_count, check_series, check_tag, check_text, Limits, SeriesError, TagError, TextError,
    TooMany,
};
use crate::ingest::lines::{serve_tcp_lines, ParseLine};
use crate::ingest::number::parse_value as parse_number;
use crate::stats::Stats;

/// Why a statsd line was refused (the whole line: what it already gave is dropped).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum StatsdError {
    #[error("no ':' after the key")]
    NoColon,
    #[error("key {0}")]
    Key(#[source] TextError),
    #[error("no value")]
    NoValue,
    #[error("no type")]
    NoType,
    #[error("bad sample rate {0:?}")]
    SampleRate(String),
    #[error("tag {0}")]
    Tag(#[from] TagError),
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    TooMany(#[from] TooMany),
    #[error("unknown field {0:?}")]
    UnknownField(String),
    #[error("bad value {0:?}")]
    Value(String),
    #[error("empty set member")]
    EmptySetMember,
    #[error("unsupported type {0:?}")]
    Type(String),
    #[error(transparent)]
    Dattss(#[from] DattssError),
}

/// What one datagram gave.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct ParseCounts {
    pub values: u64,
    pub bad_lines: u64,
}

/// The last value of each gauge series, for `+n` / `-n` deltas, kept across datagrams and
/// connections. A gauge not sent for `idle` is forgotten (as Etsy statsd's `deleteGauges` does
/// after a flush), so memory follows the gauges in use, not every gauge ever seen; a delta for a
/// forgotten gauge starts again from 0.
#[derive(Debug)]
pub(crate) struct GaugeState {
    values: HashMap<SeriesKey, Gauge>,
    idle_ms: i64,
    next_sweep: EpochMillis,
    evicted: u64,
}

#[derive(Debug, Clone, Copy)]
struct Gauge {
    value: f64,
    seen: EpochMillis,
}

/// The shortest time between two sweeps for idle gauges: a sweep walks every gauge.
const MIN_SWEEP_INTERVAL_MS: i64 = 1_000;

impl GaugeState {
    pub(crate) fn new(idle: Duration) -> Self {
        Self {
            values: HashMap::new(),
            idle_ms: idle.as_millis() as i64,
            next_sweep: EpochMillis::MIN,
            evicted: 0,
        }
    }

    /// Sets the gauge of `series` to `value`, or adds it when `delta`; the gauge's new value, or
    /// `None` (and the gauge unchanged) when that would leave [`crate::event::MAX_MAGNITUDE`].
    fn apply(
        &mut self,
        series: &SeriesKey,
        value: f64,
        delta: bool,
        now: EpochMillis,
    ) -> Option<f64> {
        self.forget_idle(now);
        let gauge = match self.values.get_mut(series) {
            Some(gauge) => gauge,
            None => self.values.entry(series.clone()).or_insert(Gauge {
                value: 0.0,
                seen: now,
            }),
        };
        let new = if delta { gauge.value + value } else { value };
        if !crate::event::in_range(new) {
            return None;
        }
        gauge.value = new;
        gauge.seen = now;
        Some(new)
    }

    /// Forgets gauges idle for longer than `idle`, at most once per quarter of it.
    fn forget_idle(&mut self, now: EpochMillis) {
        if now < self.next_sweep {
            return;
        }
        let before = self.values.len();
        let oldest = now.saturating_sub(self.idle_ms);
        self.values.retain(|_, g| g.seen >= oldest);
        self.evicted += (before - self.values.len()) as u64;
        self.next_sweep = now.saturating_add((self.idle_ms / 4).max(MIN_SWEEP_INTERVAL_MS));
    }

    /// Gauges kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.values.len()
    }

    /// Gauges forgotten since the last call.
    pub(crate) fn take_evicted(&mut self) -> u64 {
        std::mem::take(&mut self.evicted)
    }
}

/// The gauge values shared by the UDP and TCP listeners.
pub(crate) type SharedGauges = Arc<std::sync::Mutex<GaugeState>>;

/// Adds the gauges `gauges` forgot to `statsd_gauges_evicted` (no atomic write when none: this
/// runs per line over TCP).
fn count_evicted(stats: &Stats, gauges: &mut GaugeState) {
    let evicted = gauges.take_evicted();
    if evicted > 0 {
        Stats::add(&stats.statsd_gauges_evicted, evicted);
    }
}

/// Gauge state shared by a statsd listener's UDP and TCP sides.
pub(crate) fn shared_gauges(idle: Duration) -> SharedGauges {
    Arc::new(std::sync::Mutex::new(GaugeState::new(idle)))
}

/// statsd over TCP: the same lines, one connection read line by line, pushing back while the
/// pipeline is full (see [`crate::ingest::lines`]).
pub(crate) async fn run_tcp<C: Clock>(
    listener: TcpListener,
    cfg: IngestConfig,
    gauges: SharedGauges,
    ctx: ListenerContext<C>,
) {
    let counters = ctx.stats.clone();
    let parse: ParseLine = Arc::new(move |line, now, out| {
        let mut gauges = gauges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let bad = parse_datagram(line, &Limits::new(&cfg, now), &mut gauges, out).bad_lines;
        count_evicted(&counters, &mut gauges);
        bad == 0
    });
    serve_tcp_lines(listener, parse, |s| &s.statsd_bad_lines, ctx).await;
}

/// Parses every line of `datagram` into `out`; `limits.now` stamps the events.
pub(crate) fn parse_datagram(
    datagram: &str,
    limits: &Limits,
    gauges: &mut GaugeState,
    out: &mut Vec<Event>,
) -> ParseCounts {
    let mut counts = ParseCounts::default();
    for line in datagram.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim_start().is_empty() {
            continue;
        }
        let before = out.len();
        match parse_line(line, limits, gauges, out) {
            Ok(()) => counts.values += (out.len() - before) as u64,
            Err(why) => {
                out.truncate(before);
                counts.bad_lines += 1;
                crate::ingest::badlog::STATSD.report(limits.now, &why, line);
            }
        }
    }
    counts
}

/// Parses one line (possibly several values for one key).
pub(crate) fn parse_line(
    line: &str,
    limits: &Limits,
    gauges: &mut GaugeState,
    out: &mut Vec<Event>,
) -> Result<(), StatsdError> {
    let (key, rest) = split_at_byte(line, b':').ok_or(StatsdError::NoColon)?;
    if !rest.bytes().any(|b| b == b'|') && crate::ingest::dattss::looks_like_dattss(line) {
        out.push(crate::ingest::dattss::parse_line(
            line,
            limits.now,
            limits.max_name_length,
        )?);
        return Ok(());
    }
    check_text(key, limits.max_name_length).map_err(StatsdError::Key)?;
    // `k:1|c:2|c` — the rest is `value|type[|…]` groups split at ':' that start a new value (a
    // ':' once DogStatsD tags began does not). A bad group fails the line; the caller drops what
    // the line already pushed.
    let mut start = 0;
    let mut in_tags = false;
    for (i, b) in rest.bytes().enumerate() {
        match b {
            b'#' => in_tags = true,
            b':' if !in_tags => {
                parse_value(key, &rest[start..i], limits, gauges, out)?;
                start = i + 1;
            }
            _ => {}
        }
    }
    parse_value(key, &rest[start..], limits, gauges, out)
}

fn parse_value(
    key: &str,
    group: &str,
    limits: &Limits,
    gauges: &mut GaugeState,
    out: &mut Vec<Event>,
) -> Result<(), StatsdError> {
    let mut fields = Fields::new(group, b'|');
    let value_text = fields.next().ok_or(StatsdError::NoValue)?;
    let kind = fields.next().ok_or(StatsdError::NoType)?;
    let mut rate = 1.0;
    let mut tags: Vec<(String, String)> = Vec::new();
    for field in fields {
        if let Some(r) = field.strip_prefix('@') {
            rate = r
                .parse::<f64>()
                .ok()
                .filter(|r| *r > 0.0 && *r <= 1.0)
                .ok_or_else(|| StatsdError::SampleRate(r.to_string()))?;
        } else if let Some(t) = field.strip_prefix('#') {
            for tag in t.split(',').filter(|t| !t.is_empty()) {
                let (k, v) = tag.split_once(':').unwrap_or((tag, ""));
                let k = k.replace('.', "_");
                check_count("tags", tags.len() + 1, limits.max_tags)?;
                check_tag(&k, v, limits.max_name_length)?;
                tags.push((k, v.to_string()));
            }
        } else {
            return Err(StatsdError::UnknownField(field.to_string()));
        }
    }
    let mut pairs: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let series = SeriesKey::new(key, None, &mut pairs);
    check_series(&series)?;
    let number = |s: &str| parse_number(s).ok_or_else(|| StatsdError::Value(s.to_string()));
    let (kind, sample) = match kind {
        "c" => {
            let v = number(value_text)? / rate;
            if !crate::event::in_range(v) {
                return Err(StatsdError::Value(format!("{value_text} at rate {rate}")));
            }
            (MetricKind::Counter, Sample::Value(v))
        }
        "ms" | "h" => (MetricKind::Timer, Sample::Value(number(value_text)?)),
        "g" => {
            let v = number(value_text)?;
            let delta = value_text.starts_with(['+', '-']);
            let value = gauges.apply(&series, v, delta, limits.now).ok_or_else(|| {
                StatsdError::Value(format!("{value_text} (the gauge would leave ±1e290)"))
            })?;
            (MetricKind::Gauge, Sample::Value(value))
        }
        "s" => {
            if value_text.is_empty() {
                return Err(StatsdError::EmptySetMember);
            }
            let hash = xxhash_rust::xxh3::xxh3_64(value_text.as_bytes());
            (MetricKind::Set, Sample::Member(hash))
        }
        other => return Err(StatsdError::Type(other.to_string())),
    };
    out.push(Event {
        series,
        kind,
        sample,
        timestamp: limits.now,
    });
    Ok(())
}

/// `s` split at the first `sep` (an ASCII byte, so both halves are valid UTF-8).
fn split_at_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((&s[..i], &s[i + 1..]))
}

/// `s.split(sep)` for an ASCII `sep`, with a plain byte loop: statsd fields are a few bytes
/// long, too short for a vectorised search to pay for its set-up.
struct Fields<'a> {
    rest: Option<&'a str>,
    sep: u8,
}

impl<'a> Fields<'a> {
    fn new(s: &'a str, sep: u8) -> Self {
        Fields { rest: Some(s), sep }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let s = self.rest?;
        match split_at_byte(s, self.sep) {
            Some((field, more)) => {
                self.rest = Some(more);
                Some(field)
            }
            None => {
                self.rest = None;
                Some(s)
            }
        }
    }
}

/// Starts the thread that receives statsd datagrams until `shutdown` (see
/// [`crate::ingest::datagrams`]).
pub(crate) fn spawn_udp<C: Clock>(
    udp: BoundUdp,
    cfg: IngestConfig,
    gauges: SharedGauges,
    ctx: ListenerContext<C>,
) -> std::io::Result<()> {
    let counters = ctx.stats.clone();
    let parse: ParseDatagram = Box::new(move |bytes, now, out| {
        let Ok(text) = std::str::from_utf8(bytes) else {
            return Stats::add(&counters.statsd_bad_lines, 1);
        };
        let mut gauges = gauges
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let counts = parse_datagram(text, &Limits::new(&cfg, now), &mut gauges, out);
        Stats::add(&counters.statsd_bad_lines, counts.bad_lines);
        count_evicted(&counters, &mut gauges);
    });
    spawn_receiver("statsd", udp, parse, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    type Parsed = (String, MetricKind, f64, Vec<(String, String)>);

    fn parse(datagram: &str, gauges: &mut GaugeState) -> (Vec<Parsed>, ParseCounts) {
        let mut out = Vec::new();
        let counts = parse_datagram(datagram, &Limits::defaults_at(1000), gauges, &mut out);
        let events = out
            .into_iter()
            .map(|e| {
                (
                    e.series.name().to_string(),
                    e.kind,
                    match e.sample {
                        Sample::Member(_) => f64::NAN,
                        other => other.as_value().unwrap(),
                    },
                    e.series
                        .tags()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                )
            })
            .collect();
        (events, counts)
    }

    #[test]
    fn a_dogstatsd_tag_key_given_twice_makes_a_bad_line() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let (events, counts) = parse("a:1|c|#dc:par,dc:ams\nb:1|c|#dc:par", &mut g);
        assert_eq!(events.len(), 1);
        assert_eq!(counts.bad_lines, 1);
    }

    #[test]
    fn values_that_would_overflow_are_bad_lines_and_leave_the_gauge_alone() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let (events, counts) = parse("g:+1e290|g\ng:+1e290|g\nc:1e308|c\nr:1|c|@1e-320", &mut g);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].2, 1e290);
        assert_eq!(counts.bad_lines, 3);
        let (events, _) = parse("g:-1e290|g", &mut g);
        assert_eq!(events[0].2, 0.0, "the refused delta was not applied");
    }

    #[test]
    fn counters_timers_gauges_rates_and_tags() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let (events, counts) = parse(
            "hits:2|c|@0.5\nlat:12.5|ms\nlat:3|h|#env:prod,k8s.pod:a\nk:1|c:2|c",
            &mut g,
        );
        assert_eq!(
            counts,
            ParseCounts {
                values: 5,
                bad_lines: 0
            }
        );
        assert_eq!(events[0], ("hits".into(), MetricKind::Counter, 4.0, vec![]));
        assert_eq!(events[1], ("lat".into(), MetricKind::Timer, 12.5, vec![]));
        assert_eq!(
            events[2].3,
            vec![
                ("env".into(), "prod".into()),
                ("k8s_pod".into(), "a".into())
            ]
        );
        assert_eq!((events[3].2, events[4].2), (1.0, 2.0));
    }

    #[test]
    fn gauge_deltas_apply_to_the_last_value() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let (events, _) = parse("q:10|g\nq:+5|g\nq:-3|g\nq:7|g", &mut g);
        assert_eq!(
            events.iter().map(|e| e.2).collect::<Vec<_>>(),
            vec![10.0, 15.0, 12.0, 7.0]
        );
        let (events, _) = parse("q:-1|g", &mut g);
        assert_eq!(events[0].2, 6.0, "state carries across datagrams");
    }

    #[test]
    fn dogstatsd_tags_get_the_limits_and_rules_of_http() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let bad = |line: &str, g: &mut GaugeState| {
            let mut out = Vec::new();
            let counts = parse_datagram(line, &Limits::defaults_at(1000), g, &mut out);
            (counts.bad_lines, out.len())
        };
        let tags: Vec<String> = (0..33).map(|i| format!("k{i}:v")).collect();
        assert_eq!(
            bad(&format!("m:1|c|#{}", tags.join(",")), &mut g),
            (1, 0),
            "33 tags"
        );
        assert_eq!(
            bad(&format!("m:1|c|#{}", tags[..32].join(",")), &mut g),
            (0, 1),
            "32 tags"
        );
        let long = format!("m:1|c|#k:{}", "v".repeat(256));
        assert_eq!(bad(&long, &mut g), (1, 0), "a 256-byte value");
        assert_eq!(bad("m:1|c|# :v", &mut g), (1, 0), "a blank key");
        assert_eq!(
            bad("m:1|c|#k:a\u{1f}b", &mut g),
            (1, 0),
            "a control character"
        );
    }

    #[test]
    fn idle_gauges_are_forgotten_and_counted() {
        let mut g = GaugeState::new(Duration::from_secs(60));
        let mut out = Vec::new();
        let lines: String = (0..1000).map(|i| format!("g{i}:{i}|g\n")).collect();
        parse_datagram(&lines, &Limits::defaults_at(0), &mut g, &mut out);
        parse_datagram("kept:1|g", &Limits::defaults_at(50_000), &mut g, &mut out);
        assert_eq!((g.len(), g.take_evicted()), (1001, 0));
        out.clear();
        parse_datagram(
            "kept:+1|g\ng7:+1|g",
            &Limits::defaults_at(70_000),
            &mut g,
            &mut out,
        );
        assert_eq!(
            g.take_evicted(),
            1000,
            "the gauges idle for more than a minute"
        );
        assert_eq!(g.len(), 2);
        let values: Vec<f64> = out.iter().map(|e| e.sample.as_value().unwrap()).collect();
        assert_eq!(
            values,
            [2.0, 1.0],
            "a forgotten gauge's delta starts from 0"
        );
    }

    #[test]
    fn set_members_are_hashed_and_equal_members_hash_equal() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let mut out = Vec::new();
        parse_datagram(
            "u:alice|s\nu:bob|s\nu:alice|s",
            &Limits::defaults_at(1000),
            &mut g,
            &mut out,
        );
        let members: Vec<&Sample> = out.iter().map(|e| &e.sample).collect();
        assert!(out.iter().all(|e| e.kind == MetricKind::Set));
        assert_eq!(members[0], members[2]);
        assert_ne!(members[0], members[1]);
    }

    #[test]
    fn dattss_lines_share_the_port() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let (events, counts) = parse("auth:app:latency:153ms!\napp.hits:1|c", &mut g);
        assert_eq!(counts.values, 2);
        assert_eq!(events[0].0, "app:latency");
        assert_eq!((events[0].1, events[0].2), (MetricKind::Timer, 153.0));
    }

    #[test]
    fn bad_lines_are_counted_and_skipped() {
        let mut g = GaugeState::new(Duration::from_secs(3600));
        let (events, counts) = parse(
            "ok:1|c\nnovalue\nx:abc|c\ny:1|zz\nz:1|c|@2\nw:|s\n:1|c\nok:2|c",
            &mut g,
        );
        assert_eq!(
            counts,
            ParseCounts {
                values: 2,
                bad_lines: 6
            }
        );
        assert_eq!(events.len(), 2);
    }

    #[test]
    fn fields_split_like_str_split() {
        for s in ["", "a", "a|b", "|a||b|", "1|c|@0.5|#k:v,k2"] {
            assert_eq!(
                Fields::new(s, b'|').collect::<Vec<_>>(),
                s.split('|').collect::<Vec<_>>()
            );
        }
    }

    /// The same over TCP as for Graphite: `hits:123|c` cut to `hits:12|c` by a disconnect would
    /// count wrong, so the last line without its newline is bad (it was parsed).
    #[tokio::test]
    async fn a_last_line_without_newline_over_tcp_is_bad_not_counted() {
        let start = |listener, ctx| {
            let gauges = shared_gauges(Duration::from_secs(3600));
            run_tcp(listener, IngestConfig::default(), gauges, ctx)
        };
        let (names, stats) = crate::testing::names_from_tcp(start, b"whole:1|c\nhits:12|c").await;
        assert_eq!(names, ["whole"]);
        assert_eq!(stats.snapshot().statsd_bad_lines, 1);
    }
}
