//! The Riemann protocol (what samplerr's users send): protobuf `Msg { ok = 2, error = 3,
//! events = 6 }`, each `Event { time = 1, service = 3, host = 4, time_micros = 10,
//! metric_sint64 = 13, metric_d = 14, metric_f = 15, attributes = 9 { key = 1, value = 2 } }`.
//! Over TCP each message is a 4-byte big-endian length and the `Msg`, answered with
//! `Msg { ok: true }` (or `ok: false` and the error); over UDP a bare `Msg`. `service` becomes
//! the name, attributes the tags (dots in keys become `_`), Riemann's own `tags` list the
//! labels (part of the series); events without a metric are counted and skipped.

use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::clock::Clock;
use crate::config::IngestConfig;
use crate::event::{Event, MetricKind, SeriesKey};
use crate::ingest::context::ListenerContext;
use crate::ingest::datagrams::{spawn_receiver, BoundUdp, ParseDatagram};
use crate::ingest::limits::{
    check_count, check_series, check_tag, check_text, Limits, SeriesError, TagError, TextError,
    TimeError, TooMany,
};
use crate::ingest::tcp::{accept_connections, IDLE_TIMEOUT, MESSAGE_TIMEOUT};
use crate::stats::Stats;

/// Largest message accepted over TCP.
pub(crate) const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// A protobuf field: number and value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Why a Riemann message was refused (the whole message: nothing of it is ingested).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum RiemannError {
    #[error("truncated varint")]
    TruncatedVarint,
    #[error("varint too long")]
    VarintTooLong,
    #[error("truncated field")]
    TruncatedField,
    #[error("unsupported wire type {0}")]
    WireType(u64),
    #[error("string field is not UTF-8")]
    NotUtf8,
    #[error("attribute without key")]
    AttributeWithoutKey,
    #[error("metric is not finite")]
    NotFinite,
    #[error("event without service")]
    NoService,
    #[error("{field} {why}")]
    Text {
        field: &'static str,
        #[source]
        why: TextError,
    },
    #[error("tag {tag:?} {why}")]
    Tag {
        tag: String,
        #[source]
        why: TextError,
    },
    #[error("attribute {0}")]
    Attribute(#[from] TagError),
    #[error(transparent)]
    Series(#[from] SeriesError),
    #[error(transparent)]
    TooMany(#[from] TooMany),
    #[error("time: {0}")]
    Time(#[from] TimeError),
}

/// Iterates the fields of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, RiemannError> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or(RiemannError::TruncatedVarint)?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err(RiemannError::VarintTooLong)
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>), RiemannError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut field = || -> Result<(u64, Field<'a>), RiemannError> {
            let key = varint(&mut self.buf)?;
            let take = |buf: &mut &'a [u8], n: usize| -> Result<&'a [u8], RiemannError> {
                if buf.len() < n {
                    return Err(RiemannError::TruncatedField);
                }
                let (head, rest) = buf.split_at(n);
                *buf = rest;
                Ok(head)
            };
            let value = match key & 7 {
                0 => Field::Varint(varint(&mut self.buf)?),
                1 => Field::Fixed64(u64::from_le_bytes(fixed(take(&mut self.buf, 8)?))),
                2 => {
                    let n = varint(&mut self.buf)? as usize;
                    Field::Bytes(take(&mut self.buf, n)?)
                }
                5 => Field::Fixed32(u32::from_le_bytes(fixed(take(&mut self.buf, 4)?))),
                other => return Err(RiemannError::WireType(other)),
            };
            Ok((key >> 3, value))
        };
        let result = field();
        if result.is_err() {
            self.buf = &[];
        }
        Some(result)
    }
}

/// `N` bytes that `take` returned (it checked the length).
fn fixed<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut out = [0; N];
    out.copy_from_slice(bytes);
    out
}

fn text(bytes: &[u8]) -> Result<&str, RiemannError> {
    std::str::from_utf8(bytes).map_err(|_| RiemannError::NotUtf8)
}

/// The service collectd's `write_riemann` means, rebuilt from its attributes
/// (`plugin[-instance]/type[-instance][/ds_name]`): it sends an empty service for some long names.
fn collectd_service(attributes: &[(String, String)]) -> Option<String> {
    let get = |key: &str| {
        attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let with_instance = |base: &str, instance: Option<&str>| match instance {
        Some(i) => format!("{base}-{i}"),
        None => base.to_string(),
    };
    let mut name = format!(
        "{}/{}",
        with_instance(get("plugin")?, get("plugin_instance")),
        with_instance(get("type")?, get("type_instance"))
    );
    if let Some(ds) = get("ds_name").filter(|ds| *ds != "value") {
        name.push('/');
        name.push_str(ds);
    }
    Some(name)
}

/// Decodes one Riemann `Event`; `Ok(None)` when it has no metric.
fn decode_event(buf: &[u8], limits: &Limits) -> Result<Option<Event>, RiemannError> {
    let max_name_length = limits.max_name_length;
    let (mut service, mut host) = (None, None);
    let (mut time_s, mut time_us) = (None, None);
    let mut metric = None;
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for field in (Fields { buf }) {
        match field? {
            (1, Field::Varint(v)) => time_s = Some(v as i64),
            // An empty tag says nothing (collectd sends some); skip it.
            (7, Field::Bytes(b)) if !b.is_empty() => {
                check_count("tags", labels.len() + 1, limits.max_tags)?;
                labels.push(text(b)?);
            }
            (3, Field::Bytes(b)) => service = Some(text(b)?),
            (4, Field::Bytes(b)) => host = Some(text(b)?),
            (9, Field::Bytes(b)) => {
                let (mut key, mut value) = (None, "");
                for f in (Fields { buf: b }) {
                    match f? {
                        (1, Field::Bytes(k)) => key = Some(text(k)?),
                        (2, Field::Bytes(v)) => value = text(v)?,
                        _ => {}
                    }
                }
                let key = key
                    .ok_or(RiemannError::AttributeWithoutKey)?
                    .replace('.', "_");
                check_count("attributes", attributes.len() + 1, limits.max_tags)?;
                check_tag(&key, value, max_name_length)?;
                attributes.push((key, value.to_string()));
            }
            (10, Field::Varint(v)) => time_us = Some(v as i64),
            (13, Field::Varint(v)) => metric = Some(((v >> 1) as i64 ^ -((v & 1) as i64)) as f64),
            (14, Field::Fixed64(v)) => metric = Some(f64::from_bits(v)),
            (15, Field::Fixed32(v)) => metric = Some(f64::from(f32::from_bits(v))),
            _ => {}
        }
    }
    // A NaN metric (collectd's "no value this interval") is no metric.
    let Some(value) = metric.filter(|v| !v.is_nan()) else {
        return Ok(None);
    };
    if !crate::event::in_range(value) {
        return Err(RiemannError::NotFinite);
    }
    let name = match service.filter(|s| !s.is_empty()) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => collectd_service(&attributes)
            .map(std::borrow::Cow::Owned)
            .ok_or(RiemannError::NoService)?,
    };
    let name = name.as_ref();
    check_text(name, max_name_length).map_err(|why| RiemannError::Text {
        field: "service",
        why,
    })?;
    if let Some(h) = host {
        check_text(h, max_name_length).map_err(|why| RiemannError::Text { field: "host", why })?;
    }
    for label in &labels {
        check_text(label, max_name_length).map_err(|why| RiemannError::Tag {
            tag: label.to_string(),
            why,
        })?;
    }
    let timestamp = time_us
        .map(|us| us / 1000)
        .or(time_s.map(|s| s.saturating_mul(1000)))
        .unwrap_or(limits.now);
    limits.check_time(timestamp).map_err(RiemannError::Time)?;
    let mut tags: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let series =
        SeriesKey::with_labels(name, host.filter(|h| !h.is_empty()), &mut tags, &mut labels);
    check_series(&series)?;
    Ok(Some(Event::value(
        series,
        MetricKind::Gauge,
        value,
        timestamp,
    )))
}

/// Decodes a `Msg` into `out`; returns the number of events skipped for having no metric.
pub(crate) fn decode_msg(
    buf: &[u8],
    limits: &Limits,
    out: &mut Vec<Event>,
) -> Result<u64, RiemannError> {
    let mut skipped = 0;
    for field in (Fields { buf }) {
        if let (6, Field::Bytes(b)) = field? {
            match decode_event(b, limits)? {
                Some(e) => out.push(e),
                None => skipped += 1,
            }
        }
    }
    Ok(skipped)
}

/// `Msg { ok, error }` encoded.
pub(crate) fn encode_reply(error: Option<&str>) -> Vec<u8> {
    let mut out = vec![0x10, u8::from(error.is_none())];
    if let Some(e) = error {
        out.push(0x1a);
        let mut n = e.len();
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
        out.extend_from_slice(e.as_bytes());
    }
    out
}

/// Accepts TCP connections until `shutdown`: one length-prefixed `Msg` at a time, each answered.
pub(crate) async fn run_tcp<C: Clock>(
    listener: TcpListener,
    cfg: IngestConfig,
    ctx: ListenerContext<C>,
) {
    serve_tcp(listener, cfg, ctx, BODY_BUDGET_KIB).await;
}

/// [`run_tcp`] with a budget of `budget_kib` for the bodies held at once.
async fn serve_tcp<C: Clock>(
    listener: TcpListener,
    cfg: IngestConfig,
    ctx: ListenerContext<C>,
    budget_kib: usize,
) {
    let shutdown = ctx.shutdown.clone();
    let budget = Arc::new(Semaphore::new(budget_kib));
    accept_connections(listener, shutdown, move |stream| {
        answer_connection(stream, cfg.clone(), ctx.clone(), budget.clone())
    })
    .await;
}

/// The message bodies all connections of a listener may hold at once, in KiB: 16 messages of
/// the largest size. A connection whose message does not fit waits (its client is not read
/// meanwhile), so the listener's memory is bounded by this plus a small buffer per connection,
/// whatever 1 024 clients send.
const BODY_BUDGET_KIB: usize = 16 * MAX_MESSAGE / 1024;

/// Reads messages from one connection until it closes or `shutdown`, answering each once its
/// events are handed over (or refused).
async fn answer_connection<C: Clock>(
    mut stream: TcpStream,
    cfg: IngestConfig,
    ctx: ListenerContext<C>,
    budget: Arc<Semaphore>,
) {
    // Each answer is one small message a client waits for: send it at once.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let len = tokio::select! {
            l = tokio::time::timeout(IDLE_TIMEOUT, stream.read_u32()) => match l {
                Ok(Ok(l)) => l as usize,
                _ => break,
            },
            _ = ctx.shutdown.cancelled() => break,
        };
        if len > MAX_MESSAGE {
            let _ = write_reply(&mut stream, Some("message too large")).await;
            break;
        }
        let kib = u32::try_from(len.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
        let Ok(_held) = budget.clone().acquire_many_owned(kib).await else {
            break;
        };
        match tokio::time::timeout(MESSAGE_TIMEOUT, read_body(&mut stream, len, &mut buf)).await {
            Ok(Ok(())) => {}
            _ => break,
        }
        let now = ctx.clock.now();
        let mut events = Vec::new();
        let reply = match decode_msg(&buf, &Limits::new(&cfg, now), &mut events) {
            Ok(skipped) => {
                Stats::add(&ctx.stats.riemann_skipped, skipped);
                ctx.ingest
                    .submit_waiting(events, true)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => {
                Stats::add(&ctx.stats.riemann_bad, 1);
                crate::ingest::badlog::RIEMANN.report(now, &e, "(a TCP message)");
                Err(e.to_string())
            }
        };
        if write_reply(&mut stream, reply.err().as_deref())
            .await
            .is_err()
        {
            break;
        }
    }
}

/// Reads a message body of `len` bytes into `buf`. Memory grows with the bytes that arrive, not
/// with the length announced: 1 024 connections announcing 4 MiB and sending 4 bytes each once
/// took 4 GB.
async fn read_body(
    stream: &mut (impl tokio::io::AsyncRead + Unpin),
    len: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<()> {
    buf.clear();
    buf.shrink_to(64 * 1024);
    (&mut *stream).take(len as u64).read_to_end(buf).await?;
    if buf.len() < len {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

async fn write_reply(stream: &mut TcpStream, error: Option<&str>) -> std::io::Result<()> {
    // One write: a length and a body written apart meet Nagle's algorithm and the client's
    // delayed ACK, and every answer would wait ~40 ms.
    let body = encode_reply(error);
    let mut reply = Vec::with_capacity(4 + body.len());
    reply.extend_from_slice(&(body.len() as u32).to_be_bytes());
    reply.extend_from_slice(&body);
    stream.write_all(&reply).await
}

/// Starts the thread that receives bare `Msg` datagrams until `shutdown` (see
/// [`crate::ingest::datagrams`]).
pub(crate) fn spawn_udp<C: Clock>(
    udp: BoundUdp,
    cfg: IngestConfig,
    ctx: ListenerContext<C>,
) -> std::io::Result<()> {
    let counters = ctx.stats.clone();
    let parse: ParseDatagram = Box::new(move |bytes, now, out| {
        let before = out.len();
        match decode_msg(bytes, &Limits::new(&cfg, now), out) {
            Ok(skipped) => Stats::add(&counters.riemann_skipped, skipped),
            Err(why) => {
                out.truncate(before);
                Stats::add(&counters.riemann_bad, 1);
                crate::ingest::badlog::RIEMANN.report(now, &why, "(a UDP datagram)");
            }
        }
    });
    spawn_receiver("riemann", udp, parse, ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::EpochMillis;

    fn field_bytes(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2];
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len as u8 & 0x7f) | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(bytes);
        out
    }

    #[test]
    fn a_message_decodes_into_events() {
        let mut attr = field_bytes(1, b"dc.zone");
        attr.extend(field_bytes(2, b"par"));
        let mut event = field_bytes(3, b"cpu");
        event.extend(field_bytes(4, b"web-1"));
        event.extend(field_bytes(9, &attr));
        event.extend([0x08, 0x80, 0x94, 0xeb, 0xdc, 0x03]); // time = 1_000_000_000
        event.push(14 << 3 | 1);
        event.extend(0.25f64.to_le_bytes());
        let mut no_metric = field_bytes(3, b"state-only");
        no_metric.extend(field_bytes(4, b"h"));
        let mut msg = field_bytes(6, &event);
        msg.extend(field_bytes(6, &no_metric));
        let mut out = Vec::new();
        assert_eq!(
            decode_msg(&msg, &Limits::defaults_at(2_000_000_000_000), &mut out),
            Ok(1)
        );
        assert_eq!(out.len(), 1);
        let e = &out[0];
        assert_eq!(
            (
                e.series.name(),
                e.series.host(),
                e.sample.as_value().unwrap(),
                e.timestamp
            ),
            ("cpu", Some("web-1"), 0.25, 1_000_000_000_000)
        );
        assert_eq!(
            e.series.tags().collect::<Vec<_>>(),
            vec![("dc_zone", "par")]
        );
        assert!(
            decode_msg(&[0x32, 0x05, 0x01], &Limits::defaults_at(0), &mut out).is_err(),
            "truncated"
        );
    }

    /// One event `svc` = 1 with these attributes and Riemann tags, at `time_s` when given.
    fn event_msg(attributes: &[(&str, &str)], tags: &[&str], time_s: Option<u64>) -> Vec<u8> {
        let mut event = field_bytes(3, b"svc");
        for (k, v) in attributes {
            let mut attr = field_bytes(1, k.as_bytes());
            attr.extend(field_bytes(2, v.as_bytes()));
            event.extend(field_bytes(9, &attr));
        }
        for t in tags {
            event.extend(field_bytes(7, t.as_bytes()));
        }
        if let Some(mut t) = time_s {
            event.push(0x08);
            while t >= 0x80 {
                event.push((t as u8 & 0x7f) | 0x80);
                t >>= 7;
            }
            event.push(t as u8);
        }
        event.push(14 << 3 | 1);
        event.extend(1.0f64.to_le_bytes());
        field_bytes(6, &event)
    }

    fn refused(msg: &[u8]) -> RiemannError {
        decode_msg(msg, &Limits::defaults_at(1_000_000), &mut Vec::new()).unwrap_err()
    }

    #[test]
    fn attributes_and_tags_get_the_limits_and_rules_of_http() {
        // Dots in attribute keys become '_': two keys can end up one.
        assert!(matches!(
            refused(&event_msg(&[("a.b", "1"), ("a_b", "2")], &[], None)),
            RiemannError::Series(SeriesError::DuplicateKey(_))
        ));
        // A control character in a value would forge a tag in the packed series key.
        assert!(matches!(
            refused(&event_msg(&[("dc", "par\u{1f}evil=1")], &[], None)),
            RiemannError::Attribute(TagError::Value { .. })
        ));
        assert!(matches!(
            refused(&event_msg(&[(" ", "v")], &[], None)),
            RiemannError::Attribute(TagError::BlankKey(_))
        ));
        let long = "v".repeat(256);
        assert!(matches!(
            refused(&event_msg(&[("k", &long)], &[], None)),
            RiemannError::Attribute(TagError::Value { .. })
        ));
        let keys: Vec<String> = (0..33).map(|i| format!("k{i}")).collect();
        let many: Vec<(&str, &str)> = keys.iter().map(|k| (k.as_str(), "v")).collect();
        assert_eq!(
            refused(&event_msg(&many, &[], None)).to_string(),
            "has 33 attributes, more than the limit of 32"
        );
        let tags: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        let tags: Vec<&str> = tags.iter().map(String::as_str).collect();
        assert!(matches!(
            refused(&event_msg(&[], &tags, None)),
            RiemannError::TooMany(_)
        ));
        let mut out = Vec::new();
        decode_msg(
            &event_msg(&many[..32], &tags[..32], None),
            &Limits::defaults_at(1_000_000),
            &mut out,
        )
        .expect("32 of each is within the limit");
        assert_eq!(out.len(), 1);
    }

    #[test]
    fn times_beyond_the_future_skew_are_refused() {
        // Year 5000, in seconds: it opened a bucket that never closed.
        assert!(matches!(
            refused(&event_msg(&[], &[], Some(95_617_584_000))),
            RiemannError::Time(TimeError::Ahead { .. })
        ));
        assert!(matches!(
            refused(&event_msg(&[], &[], Some(i64::MIN as u64))),
            RiemannError::Time(TimeError::BeforeYearOne(_))
        ));
        let mut out = Vec::new();
        decode_msg(
            &event_msg(&[], &[], Some(1_000 + 60)),
            &Limits::defaults_at(1_000_000),
            &mut out,
        )
        .expect("within the minute of skew");
        assert_eq!(out[0].timestamp, 1_060_000);
    }

    #[test]
    fn sint64_metrics_are_zigzag_and_replies_encode() {
        let mut event = field_bytes(3, b"n");
        event.extend([13 << 3, 0x03]); // zigzag 3 = -2
        let mut out = Vec::new();
        decode_msg(&field_bytes(6, &event), &Limits::defaults_at(5), &mut out).unwrap();
        assert_eq!(
            (out[0].sample.as_value(), out[0].timestamp),
            (Some(-2.0), 5)
        );
        assert_eq!(encode_reply(None), vec![0x10, 0x01]);
        assert_eq!(
            encode_reply(Some("no")),
            vec![0x10, 0x00, 0x1a, 0x02, b'n', b'o']
        );
    }

    #[test]
    fn collectd_empty_service_is_rebuilt_from_its_attributes() {
        let attrs = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            collectd_service(&attrs(&[
                ("plugin", "memory"),
                ("type", "memory"),
                ("type_instance", "slab_unrecl"),
                ("ds_name", "value")
            ])),
            Some("memory/memory-slab_unrecl".into())
        );
        assert_eq!(
            collectd_service(&attrs(&[
                ("plugin", "load"),
                ("type", "load"),
                ("ds_name", "shortterm")
            ])),
            Some("load/load/shortterm".into())
        );
        assert_eq!(collectd_service(&attrs(&[("dc", "par")])), None);
    }

    /// Riemann's own schema (riemann.proto), encoded by `prost`: what real clients send.
    mod wire {
        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct Msg {
            #[prost(bool, optional, tag = "2")]
            pub ok: Option<bool>,
            #[prost(string, optional, tag = "3")]
            pub error: Option<String>,
            #[prost(message, repeated, tag = "6")]
            pub events: Vec<Event>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct Event {
            #[prost(int64, optional, tag = "1")]
            pub time: Option<i64>,
            #[prost(string, optional, tag = "2")]
            pub state: Option<String>,
            #[prost(string, optional, tag = "3")]
            pub service: Option<String>,
            #[prost(string, optional, tag = "4")]
            pub host: Option<String>,
            #[prost(string, optional, tag = "5")]
            pub description: Option<String>,
            #[prost(string, repeated, tag = "7")]
            pub tags: Vec<String>,
            #[prost(float, optional, tag = "8")]
            pub ttl: Option<f32>,
            #[prost(message, repeated, tag = "9")]
            pub attributes: Vec<Attribute>,
            #[prost(int64, optional, tag = "10")]
            pub time_micros: Option<i64>,
            #[prost(sint64, optional, tag = "13")]
            pub metric_sint64: Option<i64>,
            #[prost(double, optional, tag = "14")]
            pub metric_d: Option<f64>,
            #[prost(float, optional, tag = "15")]
            pub metric_f: Option<f32>,
        }

        #[derive(Clone, PartialEq, prost::Message)]
        pub(super) struct Attribute {
            #[prost(string, required, tag = "1")]
            pub key: String,
            #[prost(string, optional, tag = "2")]
            pub value: Option<String>,
        }
    }

    /// A small deterministic generator (xorshift64*), so that a failure can be replayed.
    struct Gen(u64);

    impl Gen {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn word(&mut self, prefix: &str) -> String {
            const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789-_/ .:";
            let len = 1 + self.below(12) as usize;
            let mut w = String::from(prefix);
            w.extend((0..len).map(|_| CHARS[self.below(CHARS.len() as u64) as usize] as char));
            w
        }

        fn event(&mut self) -> wire::Event {
            let mut e = wire::Event {
                service: Some(self.word("svc")),
                host: (self.below(3) > 0).then(|| self.word("host")),
                state: (self.below(2) == 0).then(|| "ok".into()),
                description: (self.below(4) == 0).then(|| self.word("d")),
                ttl: (self.below(3) == 0).then_some(60.0),
                ..Default::default()
            };
            e.tags = (0..self.below(4))
                .map(|i| self.word(&format!("t{i}")))
                .collect();
            e.attributes = (0..self.below(4))
                .map(|i| wire::Attribute {
                    key: self.word(&format!("k{i}.")),
                    value: Some(self.word("v")),
                })
                .collect();
            match self.below(4) {
                0 => e.metric_sint64 = Some(self.next() as i64 >> self.below(60)),
                1 => e.metric_d = Some((self.next() as i64 >> 20) as f64 / 1024.0),
                2 => e.metric_f = Some((self.below(1 << 20) as f32) / 8.0),
                _ => {} // no metric: skipped
            }
            match self.below(3) {
                0 => e.time = Some(1_700_000_000 + self.below(1 << 20) as i64),
                1 => e.time_micros = Some(1_700_000_000_000_000 + self.below(1 << 40) as i64),
                _ => {}
            }
            e
        }
    }

    type Decoded = (
        String,
        Option<String>,
        Vec<(String, String)>,
        Vec<String>,
        f64,
        i64,
    );

    /// What the decoder should make of `e`: name, host, tags, labels, value, time.
    fn expected(e: &wire::Event, now: EpochMillis) -> Option<Decoded> {
        let value = e
            .metric_f
            .map(f64::from)
            .or(e.metric_d)
            .or(e.metric_sint64.map(|v| v as f64))?;
        let mut tags: Vec<(String, String)> = e
            .attributes
            .iter()
            .map(|a| (a.key.replace('.', "_"), a.value.clone().unwrap_or_default()))
            .collect();
        tags.sort();
        let mut labels = e.tags.clone();
        labels.sort();
        let time = e
            .time_micros
            .map(|us| us / 1000)
            .or(e.time.map(|s| s * 1000))
            .unwrap_or(now);
        Some((
            e.service.clone()?,
            e.host.clone(),
            tags,
            labels,
            value,
            time,
        ))
    }

    fn decoded(e: &Event) -> Decoded {
        let mut tags: Vec<(String, String)> = e
            .series
            .tags()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        tags.sort();
        let mut labels: Vec<String> = e.series.labels().map(String::from).collect();
        labels.sort();
        (
            e.series.name().to_string(),
            e.series.host().map(String::from),
            tags,
            labels,
            e.sample.as_value().unwrap(),
            e.timestamp,
        )
    }

    #[test]
    fn messages_encoded_by_prost_decode_to_the_same_events() {
        use prost::Message;
        let mut gen = Gen(0x5eed_1234_abcd_0001);
        let now = 1_800_000_000_000;
        for round in 0..500 {
            let msg = wire::Msg {
                events: (0..gen.below(6)).map(|_| gen.event()).collect(),
                ..Default::default()
            };
            let mut out = Vec::new();
            let skipped = decode_msg(&msg.encode_to_vec(), &Limits::defaults_at(now), &mut out)
                .unwrap_or_else(|e| panic!("round {round}: {e} for {msg:?}"));
            let want: Vec<Decoded> = msg.events.iter().filter_map(|e| expected(e, now)).collect();
            let got: Vec<Decoded> = out.iter().map(decoded).collect();
            assert_eq!(got, want, "round {round}: {msg:?}");
            assert_eq!(
                skipped as usize,
                msg.events.len() - want.len(),
                "round {round}"
            );
        }
    }

    #[test]
    fn replies_decode_with_prost() {
        use prost::Message;
        let ok = wire::Msg::decode(encode_reply(None).as_slice()).unwrap();
        assert_eq!((ok.ok, ok.error), (Some(true), None));
        let refused = wire::Msg::decode(encode_reply(Some("queue full")).as_slice()).unwrap();
        assert_eq!(
            (refused.ok, refused.error.as_deref()),
            (Some(false), Some("queue full"))
        );
    }

    #[tokio::test]
    async fn a_body_takes_memory_as_it_arrives_not_as_announced() {
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"abcd").await.unwrap();
        drop(client);
        let mut buf = Vec::new();
        let read = read_body(&mut server, MAX_MESSAGE, &mut buf).await;
        assert!(read.is_err(), "cut short");
        assert!(
            buf.capacity() < 64 * 1024,
            "{} bytes reserved for 4 received",
            buf.capacity()
        );
        let (mut client, mut server) = tokio::io::duplex(1024);
        client.write_all(b"abcdefgh").await.unwrap();
        read_body(&mut server, 6, &mut buf).await.unwrap();
        assert_eq!(buf, b"abcdef");
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed_after_the_idle_timeout() {
        let start = |listener, ctx| run_tcp(listener, IngestConfig::default(), ctx);
        crate::testing::assert_idle_connections_close(start).await;
    }

    #[tokio::test(start_paused = true)]
    async fn bodies_held_at_once_are_bounded_and_a_stalled_one_gives_its_share_back() {
        let (ingest, mut queue) = crate::ingest::handle::ingest_channel(8);
        tokio::spawn(async move {
            while let Some(crate::ingest::handle::Request::Ingest(batch)) =
                queue.requests.recv().await
            {
                if let Some(reply) = batch.reply {
                    let _ = reply.send(Ok(Default::default()));
                }
            }
        });
        let ctx = ListenerContext {
            ingest,
            clock: Arc::new(crate::clock::ManualClock::new(1_000_000)),
            stats: Arc::new(Stats::default()),
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        // Room for one 4 KiB body at a time.
        tokio::spawn(serve_tcp(listener, IngestConfig::default(), ctx, 4));
        let message = event_msg(&[], &[], None);
        let mut stalled = TcpStream::connect(addr).await.unwrap();
        stalled.write_all(&4000u32.to_be_bytes()).await.unwrap();
        stalled.write_all(b"only the start").await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        let started = tokio::time::Instant::now();
        let mut client = TcpStream::connect(addr).await.unwrap();
        client
            .write_all(&(message.len() as u32).to_be_bytes())
            .await
            .unwrap();
        client.write_all(&message).await.unwrap();
        let mut reply = [0u8; 6];
        client.read_exact(&mut reply).await.unwrap();
        let waited = started.elapsed();
        assert!(
            waited >= MESSAGE_TIMEOUT - std::time::Duration::from_secs(1),
            "answered after {waited:?}: the stalled body held the budget until its timeout"
        );
        assert_eq!(&reply[4..], &[0x10, 0x01], "then ok");
    }
}
