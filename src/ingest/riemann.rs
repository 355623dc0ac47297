//! The Riemann protocol (what samplerr's users send): protobuf `Msg { ok = 2, error = 3,
//! events = 6 }`, each `Event { time = 1, service = 3, host = 4, time_micros = 10,
//! metric_sint64 = 13, metric_d = 14, metric_f = 15, attributes = 9 { key = 1, value = 2 } }`.
//! Over TCP each message is a 4-byte big-endian length and the `Msg`, answered with
//! `Msg { ok: true }` (or `ok: false` and the error); over UDP a bare `Msg`. `service` becomes
//! the name, attributes the tags (dots in keys become `_`), Riemann's own `tags` list the
//! labels (part of the series); events without a metric are counted and skipped.

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::clock::{Clock, EpochMillis};
use crate::event::{Event, MetricKind, SeriesKey};
use crate::ingest::context::ListenerContext;
use crate::ingest::datagrams::{spawn_receiver, BoundUdp, ParseDatagram};
use crate::ingest::limits::check_text;
use crate::ingest::tcp::accept_connections;
use crate::stats::Stats;

/// Largest message accepted over TCP.
pub const MAX_MESSAGE: usize = 4 * 1024 * 1024;

/// A protobuf field: number and value.
enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

/// Iterates the fields of one protobuf message.
struct Fields<'a> {
    buf: &'a [u8],
}

fn varint(buf: &mut &[u8]) -> Result<u64, String> {
    let mut value = 0u64;
    for shift in (0..64).step_by(7) {
        let (&byte, rest) = buf.split_first().ok_or("truncated varint")?;
        *buf = rest;
        value |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            return Ok(value);
        }
    }
    Err("varint too long".into())
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u64, Field<'a>), String>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.buf.is_empty() {
            return None;
        }
        let mut field = || -> Result<(u64, Field<'a>), String> {
            let key = varint(&mut self.buf)?;
            let take = |buf: &mut &'a [u8], n: usize| -> Result<&'a [u8], String> {
                if buf.len() < n {
                    return Err("truncated field".into());
                }
                let (head, rest) = buf.split_at(n);
                *buf = rest;
                Ok(head)
            };
            let value = match key & 7 {
                0 => Field::Varint(varint(&mut self.buf)?),
                1 => Field::Fixed64(u64::from_le_bytes(
                    take(&mut self.buf, 8)?
                        .try_into()
                        .map_err(|_| "bad fixed64")?,
                )),
                2 => {
                    let n = varint(&mut self.buf)? as usize;
                    Field::Bytes(take(&mut self.buf, n)?)
                }
                5 => Field::Fixed32(u32::from_le_bytes(
                    take(&mut self.buf, 4)?
                        .try_into()
                        .map_err(|_| "bad fixed32")?,
                )),
                other => return Err(format!("unsupported wire type {other}")),
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

fn text(bytes: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(bytes).map_err(|_| "string field is not UTF-8".to_string())
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
fn decode_event(
    buf: &[u8],
    now: EpochMillis,
    max_name_length: usize,
) -> Result<Option<Event>, String> {
    let (mut service, mut host) = (None, None);
    let (mut time_s, mut time_us) = (None, None);
    let mut metric = None;
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut labels: Vec<&str> = Vec::new();
    for field in (Fields { buf }) {
        match field? {
            (1, Field::Varint(v)) => time_s = Some(v as i64),
            // An empty tag says nothing (collectd sends some); skip it.
            (7, Field::Bytes(b)) if !b.is_empty() => labels.push(text(b)?),
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
                let key = key.ok_or("attribute without key")?;
                attributes.push((key.replace('.', "_"), value.to_string()));
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
    if !value.is_finite() {
        return Err("metric is not finite".into());
    }
    let name = match service.filter(|s| !s.is_empty()) {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => collectd_service(&attributes)
            .map(std::borrow::Cow::Owned)
            .ok_or("event without service")?,
    };
    let name = name.as_ref();
    check_text(name, max_name_length).map_err(|e| e.to_string())?;
    if let Some(h) = host {
        check_text(h, max_name_length).map_err(|e| e.to_string())?;
    }
    for label in &labels {
        check_text(label, max_name_length).map_err(|why| format!("tag {label:?} {why}"))?;
    }
    let timestamp = time_us
        .map(|us| us / 1000)
        .or(time_s.map(|s| s * 1000))
        .unwrap_or(now);
    let mut tags: Vec<(&str, &str)> = attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    Ok(Some(Event::value(
        SeriesKey::with_labels(name, host.filter(|h| !h.is_empty()), &mut tags, &mut labels),
        MetricKind::Gauge,
        value,
        timestamp,
    )))
}

/// Decodes a `Msg` into `out`; returns the number of events skipped for having no metric.
pub fn decode_msg(
    buf: &[u8],
    now: EpochMillis,
    max_name_length: usize,
    out: &mut Vec<Event>,
) -> Result<u64, String> {
    let mut skipped = 0;
    for field in (Fields { buf }) {
        if let (6, Field::Bytes(b)) = field? {
            match decode_event(b, now, max_name_length)? {
                Some(e) => out.push(e),
                None => skipped += 1,
            }
        }
    }
    Ok(skipped)
}

/// `Msg { ok, error }` encoded.
pub fn encode_reply(error: Option<&str>) -> Vec<u8> {
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
pub async fn run_tcp<C: Clock>(
    listener: TcpListener,
    max_name_length: usize,
    ctx: ListenerContext<C>,
) {
    let shutdown = ctx.shutdown.clone();
    accept_connections(listener, shutdown, move |stream| {
        answer_connection(stream, max_name_length, ctx.clone())
    })
    .await;
}

/// Reads messages from one connection until it closes or `shutdown`, answering each once its
/// events are handed over (or refused).
async fn answer_connection<C: Clock>(
    mut stream: TcpStream,
    max_name_length: usize,
    ctx: ListenerContext<C>,
) {
    // Each answer is one small message a client waits for: send it at once.
    let _ = stream.set_nodelay(true);
    let mut buf = Vec::new();
    loop {
        let len = tokio::select! {
            l = stream.read_u32() => match l { Ok(l) => l as usize, Err(_) => break },
            _ = ctx.shutdown.cancelled() => break,
        };
        if len > MAX_MESSAGE {
            let _ = write_reply(&mut stream, Some("message too large")).await;
            break;
        }
        buf.resize(len, 0);
        if stream.read_exact(&mut buf).await.is_err() {
            break;
        }
        let now = ctx.clock.now();
        let mut events = Vec::new();
        let reply = match decode_msg(&buf, now, max_name_length, &mut events) {
            Ok(skipped) => {
                Stats::add(&ctx.stats.riemann_skipped, skipped);
                ctx.ingest
                    .submit_waiting(events)
                    .await
                    .map_err(|e| e.to_string())
            }
            Err(e) => {
                Stats::add(&ctx.stats.riemann_bad, 1);
                crate::ingest::badlog::RIEMANN.report(now, &e, "(a TCP message)");
                Err(e)
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
pub fn spawn_udp<C: Clock>(
    udp: BoundUdp,
    max_name_length: usize,
    ctx: ListenerContext<C>,
) -> std::io::Result<()> {
    let counters = ctx.stats.clone();
    let parse: ParseDatagram = Box::new(move |bytes, now, out| {
        let before = out.len();
        match decode_msg(bytes, now, max_name_length, out) {
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

    fn field_bytes(number: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(number << 3) | 2, bytes.len() as u8];
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
        assert_eq!(decode_msg(&msg, 7, 255, &mut out), Ok(1));
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
            decode_msg(&[0x32, 0x05, 0x01], 0, 255, &mut out).is_err(),
            "truncated"
        );
    }

    #[test]
    fn sint64_metrics_are_zigzag_and_replies_encode() {
        let mut event = field_bytes(3, b"n");
        event.extend([13 << 3, 0x03]); // zigzag 3 = -2
        let mut out = Vec::new();
        decode_msg(&field_bytes(6, &event), 5, 255, &mut out).unwrap();
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
}
