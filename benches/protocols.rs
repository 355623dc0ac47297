//! Load generator for the protocol benchmarks (`scripts/bench-protocols` drives it against
//! strata, Etsy's statsd and carbon-cache alike). It only sends; the script reads what each server
//! accepted from the server itself.
//!
//!   cargo bench --bench protocols -- udp <addr> <lines> <lines/s> <lines per datagram>
//!   cargo bench --bench protocols -- tcp <addr> <lines> statsd|graphite [connections]
//!   cargo bench --bench protocols -- riemann <addr> <events> <events per message>
//!
//! Each prints one line of JSON: what was sent and how long it took.

use std::io::{BufWriter, Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

fn statsd_line(i: u64, out: &mut Vec<u8>) {
    // 100 counters, as a busy application would send.
    write!(out, "bench.requests.{}:1|c", i % 100).unwrap();
}

fn graphite_line(i: u64, now_s: u64, out: &mut Vec<u8>) {
    write!(out, "bench.load.{} {} {now_s}", i % 100, i % 97).unwrap();
}

/// Sends `lines` statsd counter lines over UDP at `rate` lines/s, `per` lines per datagram.
fn udp(addr: &str, lines: u64, rate: u64, per: u64) {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.connect(addr).unwrap();
    let mut batch = SendBatch::default();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < lines {
        // Pace: never ahead of rate × elapsed; what is due goes out in one call.
        let allowed = ((start.elapsed().as_secs_f64() * rate as f64) as u64).min(lines);
        if allowed < (sent + per).min(lines) {
            std::hint::spin_loop();
            continue;
        }
        batch.clear();
        while sent < allowed && batch.len() < SEND_BATCH {
            let n = per.min(lines - sent);
            batch.push((0..n).map(|k| sent + k));
            sent += n;
        }
        // A full socket buffer on loopback is the receiver's loss, not ours: keep sending.
        batch.send(&socket);
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"udp\",\"lines\":{lines},\"target_rate\":{rate},\"per_datagram\":{per},\"seconds\":{secs:.3},\"sent_rate\":{:.0}}}",
        lines as f64 / secs
    );
}

/// Datagrams sent per system call at most: one core sends about 230 000 datagrams/s one call
/// each, which is less than strata receives; `sendmmsg` lifts that limit.
const SEND_BATCH: usize = 32;

/// Up to [`SEND_BATCH`] datagrams, sent with one `sendmmsg`.
#[derive(Default)]
struct SendBatch {
    bytes: Vec<u8>,
    ends: Vec<usize>,
}

impl SendBatch {
    fn clear(&mut self) {
        self.bytes.clear();
        self.ends.clear();
    }

    fn len(&self) -> usize {
        self.ends.len()
    }

    /// Adds a datagram of the statsd lines numbered `line_numbers`.
    fn push(&mut self, line_numbers: impl Iterator<Item = u64>) {
        for (k, i) in line_numbers.enumerate() {
            if k > 0 {
                self.bytes.push(b'\n');
            }
            statsd_line(i, &mut self.bytes);
        }
        self.ends.push(self.bytes.len());
    }

    fn send(&mut self, socket: &UdpSocket) {
        use std::os::fd::AsRawFd;
        let mut start = 0;
        let mut iovecs: Vec<libc::iovec> = self
            .ends
            .iter()
            .map(|&end| {
                let iov = libc::iovec {
                    iov_base: self.bytes[start..end].as_ptr() as *mut libc::c_void,
                    iov_len: end - start,
                };
                start = end;
                iov
            })
            .collect();
        let mut headers: Vec<libc::mmsghdr> = iovecs
            .iter_mut()
            .map(|iov| {
                // SAFETY: all-zero is a valid msghdr (connected socket: no name, no control).
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        let mut done = 0;
        while done < headers.len() {
            // SAFETY: the headers point at iovecs into `self.bytes`, alive for the call.
            let n = unsafe {
                libc::sendmmsg(
                    socket.as_raw_fd(),
                    headers[done..].as_mut_ptr(),
                    (headers.len() - done) as libc::c_uint,
                    0,
                )
            };
            if n <= 0 {
                // ECONNREFUSED and the like: that datagram is lost, as with send().
                done += 1;
            } else {
                done += n as usize;
            }
        }
    }
}

/// Sends `lines` lines over one TCP connection as fast as the server reads them, then waits
/// until the server has read everything and closed.
/// Sends `lines` lines over `connections` TCP connections at once (each its share, from its own
/// thread, with lines numbered apart so that the series are the same), and reports when the
/// server has read them all: each connection waits for the server to close its side.
fn tcp(addr: &str, lines: u64, kind: &str, connections: u64) {
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let streams: Vec<TcpStream> = (0..connections)
        .map(|_| TcpStream::connect(addr).unwrap())
        .collect();
    let start = Instant::now();
    let per = lines / connections;
    std::thread::scope(|scope| {
        for (c, stream) in streams.iter().enumerate() {
            let first = c as u64 * per;
            let count = if c as u64 == connections - 1 {
                lines - first
            } else {
                per
            };
            scope.spawn(move || send_lines(stream, first..first + count, kind, now_s));
        }
    });
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"tcp\",\"kind\":\"{kind}\",\"connections\":{connections},\"lines\":{lines},\"seconds\":{secs:.3},\"rate\":{:.0}}}",
        lines as f64 / secs
    );
}

fn send_lines(stream: &TcpStream, numbers: std::ops::Range<u64>, kind: &str, now_s: u64) {
    let mut w = BufWriter::with_capacity(1 << 16, stream);
    let mut line = Vec::with_capacity(64);
    for i in numbers {
        line.clear();
        match kind {
            "graphite" => graphite_line(i, now_s, &mut line),
            _ => statsd_line(i, &mut line),
        }
        line.push(b'\n');
        w.write_all(&line).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    stream.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    let _ = (&*stream).read_to_end(&mut rest);
}

fn varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn bytes_field(field: u64, bytes: &[u8], out: &mut Vec<u8>) {
    varint(field << 3 | 2, out);
    varint(bytes.len() as u64, out);
    out.extend_from_slice(bytes);
}

/// One Riemann `Msg` of `n` events.
fn riemann_msg(first: u64, n: u64, now_s: u64) -> Vec<u8> {
    let mut msg = Vec::new();
    for i in first..first + n {
        let mut event = Vec::with_capacity(64);
        varint(1 << 3, &mut event);
        varint(now_s, &mut event);
        bytes_field(
            3,
            format!("bench.service.{}", i % 100).as_bytes(),
            &mut event,
        );
        bytes_field(4, b"bench-host", &mut event);
        varint(14 << 3 | 1, &mut event);
        event.extend_from_slice(&((i % 97) as f64).to_le_bytes());
        bytes_field(6, &event, &mut msg);
    }
    msg
}

/// Sends `events` over one TCP connection, `per` events per message, each message waiting for
/// the server's answer (as Riemann clients do).
fn riemann(addr: &str, events: u64, per: u64) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let start = Instant::now();
    let mut sent = 0;
    let mut failed = 0;
    while sent < events {
        let n = per.min(events - sent);
        let msg = riemann_msg(sent, n, now_s);
        stream.write_all(&(msg.len() as u32).to_be_bytes()).unwrap();
        stream.write_all(&msg).unwrap();
        let mut len = [0u8; 4];
        stream.read_exact(&mut len).unwrap();
        let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
        stream.read_exact(&mut reply).unwrap();
        // Msg{ok = 2: true} is 0x10 0x01.
        if !reply.windows(2).any(|w| w == [0x10, 0x01]) {
            failed += n;
        }
        sent += n;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"mode\":\"riemann\",\"events\":{events},\"per_message\":{per},\"failed\":{failed},\"seconds\":{secs:.3},\"rate\":{:.0}}}",
        events as f64 / secs
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let num = |i: usize| -> u64 { args[i].parse().expect("a number") };
    match args.first().map(String::as_str) {
        Some("udp") => udp(&args[1], num(2), num(3), num(4)),
        Some("tcp") => tcp(
            &args[1],
            num(2),
            &args[3],
            args.get(4).map_or(1, |_| num(4)),
        ),
        Some("riemann") => riemann(&args[1], num(2), num(3)),
        _ => {
            eprintln!("usage: see the top of benches/protocols.rs (run by scripts/bench-protocols)")
        }
    }
}
