//! The UDP side of every listener (statsd, Graphite, Riemann). Each socket has its own receive
//! thread: it drains whatever the kernel has queued (`recvmmsg` on Linux, up to [`SLOTS`]
//! datagrams per call), parses each datagram with the protocol's function, and hands the events
//! to the consolidator without waiting for its answer.
//!
//! UDP cannot push back on a sender. While the pipeline is busy the thread keeps one batch and
//! stops reading, so datagrams wait in the socket's receive buffer; what the kernel drops when it
//! is full is counted as `udp_receive_buffer_drops`, events the pipeline refuses (series limit,
//! shutdown) as `udp_dropped`.
//!
//! A wake-up per datagram cost more than parsing its lines. So under load the thread sleeps
//! between drains, long enough that a drain finds many datagrams and short enough that the
//! socket's receive buffer holds what arrives meanwhile (the [`Pacer`]). At low rates it blocks
//! until a datagram arrives.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::event::Event;
use crate::ingest::context::ListenerContext;
use crate::ingest::handle::{HandOffRefused, IngestHandle, SubmitError};
use crate::stats::Stats;

/// Events handed over per batch at most.
const BATCH: usize = 5_000;
/// Datagrams received per system call at most.
const SLOTS: usize = 32;
/// Room for the largest UDP payload, so that nothing is truncated.
const SLOT_BYTES: usize = 65_536;
/// The longest sleep between drains: the most a datagram waits before it is parsed.
const MAX_PAUSE: Duration = Duration::from_millis(5);
/// How often an idle receiver looks for shutdown.
const IDLE: Duration = Duration::from_millis(100);
/// What a queued datagram costs the receive buffer besides its payload: the kernel's own
/// bookkeeping. Measured on loopback, a 15-byte datagram takes 832 bytes; network drivers that
/// give each packet its own page fragment cost more, so this assumes 2 KiB.
const DATAGRAM_OVERHEAD: usize = 2048;
/// The receive buffer the pacer assumes where the platform does not tell: Linux's usual default.
const ASSUMED_BUFFER_BYTES: usize = 212_992;
/// Pausing is worth its delay only when at least this many datagrams arrive per [`MAX_PAUSE`].
const MIN_ARRIVALS_PER_PAUSE: f64 = 4.0;

/// Parses one datagram into `out` (stamped `now` when the protocol carries no time), counting
/// its own bad input.
pub(crate) type ParseDatagram = Box<dyn FnMut(&[u8], EpochMillis, &mut Vec<Event>) + Send>;

/// A bound UDP socket and the receive buffer the kernel gave it (where the platform does not
/// tell, [`ASSUMED_BUFFER_BYTES`]).
pub(crate) struct BoundUdp {
    pub socket: UdpSocket,
    pub receive_buffer_bytes: usize,
}

/// Binds a non-blocking UDP socket on `addr` with a receive buffer of `receive_buffer_bytes`
/// (0: the kernel default). A smaller buffer than asked is logged, not an error.
pub(crate) fn bind_udp(addr: SocketAddr, receive_buffer_bytes: usize) -> io::Result<BoundUdp> {
    let socket = UdpSocket::bind(addr)?;
    socket.set_nonblocking(true)?;
    if receive_buffer_bytes > 0 {
        sys::set_receive_buffer(&socket, receive_buffer_bytes)?;
    }
    sys::count_drops(&socket)?;
    let got = sys::receive_buffer(&socket)?;
    if got.is_some_and(|got| got < receive_buffer_bytes) {
        tracing::warn!(
            %addr,
            asked = receive_buffer_bytes,
            got,
            "udp receive buffer smaller than asked: raise net.core.rmem_max (sysctl) or run with CAP_NET_ADMIN"
        );
    }
    Ok(BoundUdp {
        socket,
        receive_buffer_bytes: got.unwrap_or(ASSUMED_BUFFER_BYTES),
    })
}

/// Starts the receive thread for `udp`; it stops within [`IDLE`] of `shutdown`, after handing
/// over what it holds.
pub(crate) fn spawn_receiver<C: Clock>(
    name: &str,
    udp: BoundUdp,
    parse: ParseDatagram,
    ctx: ListenerContext<C>,
) -> io::Result<()> {
    let ListenerContext {
        ingest,
        clock,
        stats,
        shutdown,
    } = ctx;
    std::thread::Builder::new()
        .name(format!("udp-{name}"))
        .spawn(move || {
            Receiver {
                pacer: Pacer::new(udp.receive_buffer_bytes),
                socket: udp.socket,
                parse,
                ingest,
                clock,
                stats,
                events: Vec::with_capacity(BATCH),
                kernel_drops_seen: 0,
            }
            .run(&shutdown)
        })
        .map(drop)
}

/// Decides how long the receive thread sleeps before its next drain: what it expects to arrive
/// meanwhile fills at most a quarter of the receive buffer, and the sleep is at most
/// [`MAX_PAUSE`]. Zero means: wait for the socket instead.
#[derive(Debug)]
struct Pacer {
    buffer_bytes: usize,
    /// Smoothed arrival rate, datagrams per second.
    rate: f64,
}

impl Pacer {
    fn new(buffer_bytes: usize) -> Self {
        Pacer {
            buffer_bytes,
            rate: 0.0,
        }
    }

    /// After a drain that emptied the socket and found `datagrams` (of `bytes` payload in all)
    /// `since` the drain before it.
    fn after_drain(&mut self, datagrams: usize, bytes: usize, since: Duration) -> Duration {
        if datagrams == 0 {
            self.rate = 0.0;
            return Duration::ZERO;
        }
        let observed = datagrams as f64 / since.as_secs_f64().max(1e-6);
        self.rate = if self.rate == 0.0 {
            observed
        } else {
            (self.rate + observed) / 2.0
        };
        if self.rate * MAX_PAUSE.as_secs_f64() < MIN_ARRIVALS_PER_PAUSE {
            return Duration::ZERO;
        }
        let per_datagram = bytes / datagrams + DATAGRAM_OVERHEAD;
        let room = (self.buffer_bytes / per_datagram / 4) as f64;
        Duration::from_secs_f64(room / self.rate).min(MAX_PAUSE)
    }
}

/// What one drain found.
struct Drained {
    datagrams: usize,
    bytes: usize,
    /// False when the drain stopped at a full batch with datagrams still queued.
    emptied: bool,
}

struct Receiver<C> {
    socket: UdpSocket,
    parse: ParseDatagram,
    ingest: IngestHandle,
    clock: Arc<C>,
    stats: Arc<Stats>,
    pacer: Pacer,
    events: Vec<Event>,
    /// The socket's drop counter when last looked at.
    kernel_drops_seen: u32,
}

impl<C: Clock> Receiver<C> {
    fn run(mut self, shutdown: &CancellationToken) {
        let mut slots = sys::Slots::new();
        let mut pause = Duration::ZERO;
        let mut more_queued = false;
        let mut last_drain = Instant::now();
        while !shutdown.is_cancelled() {
            if self.events.len() >= BATCH {
                // The pipeline is busy and a batch is waiting: stop reading (the socket's buffer
                // holds what arrives meanwhile) and offer it again.
                std::thread::sleep(MAX_PAUSE);
                self.hand_over();
                continue;
            }
            if more_queued {
                // A full batch left datagrams behind: drain again at once.
            } else if !pause.is_zero() {
                std::thread::sleep(pause);
            } else if !sys::wait_readable(&self.socket, IDLE) {
                continue;
            }
            let started = Instant::now();
            let drained = self.drain(&mut slots);
            self.count_buffer_drops(&slots);
            self.hand_over();
            more_queued = !drained.emptied;
            let since = started.duration_since(last_drain);
            last_drain = started;
            pause = self
                .pacer
                .after_drain(drained.datagrams, drained.bytes, since);
        }
        self.hand_over_before_exit();
    }

    /// Parses what the kernel has queued, up to a batch of events.
    fn drain(&mut self, slots: &mut sys::Slots) -> Drained {
        let now = self.clock.now();
        let mut drained = Drained {
            datagrams: 0,
            bytes: 0,
            emptied: true,
        };
        while self.events.len() < BATCH {
            let received = match slots.receive(&self.socket) {
                Ok(0) => return drained,
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "udp receive failed");
                    return drained;
                }
            };
            for i in 0..received {
                let datagram = slots.datagram(i);
                drained.bytes += datagram.len();
                (self.parse)(datagram, now, &mut self.events);
            }
            drained.datagrams += received;
        }
        drained.emptied = false;
        drained
    }

    /// Adds what the kernel dropped on this socket since the last look to
    /// `udp_receive_buffer_drops`.
    fn count_buffer_drops(&mut self, slots: &sys::Slots) {
        if let Some(total) = slots.kernel_drops() {
            if total > self.kernel_drops_seen {
                let new = total - self.kernel_drops_seen;
                Stats::add(&self.stats.udp_receive_buffer_drops, u64::from(new));
                self.kernel_drops_seen = total;
            }
        }
    }

    /// Offers what it holds to the pipeline. While the pipeline is busy the events stay here
    /// (up to a batch); once it is closed they are counted as dropped.
    fn hand_over(&mut self) -> bool {
        if self.events.is_empty() {
            return true;
        }
        match self.ingest.hand_off(std::mem::take(&mut self.events)) {
            Ok(()) => {
                self.events = Vec::with_capacity(BATCH);
                true
            }
            Err(HandOffRefused {
                why: SubmitError::Busy,
                events,
            }) => {
                self.events = events;
                false
            }
            Err(HandOffRefused { why, events }) => {
                self.drop_events(&why, events.len());
                false
            }
        }
    }

    /// At shutdown: a busy pipeline gets a little longer, then what is left counts as dropped.
    fn hand_over_before_exit(&mut self) {
        for _ in 0..200 {
            if self.hand_over() || self.events.is_empty() {
                return;
            }
            std::thread::sleep(MAX_PAUSE);
        }
        self.drop_events(&SubmitError::Busy, self.events.len());
    }

    fn drop_events(&mut self, why: &SubmitError, n: usize) {
        self.events.clear();
        self.stats
            .count_udp_dropped(self.ingest.protocol(), n as u64);
        tracing::debug!(error = %why, events = n, "udp events dropped");
    }
}

/// The system calls behind the receiver: `recvmmsg` and socket options on Linux, one datagram
/// per call elsewhere. The only module allowed `unsafe` (each block says why it holds).
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
mod sys {
    use std::io;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;
    use std::time::Duration;

    use super::{SLOTS, SLOT_BYTES};

    /// Room for the control message that carries the socket's drop counter (`SO_RXQ_OVFL`), in
    /// u64s so that it is aligned for a `cmsghdr`.
    const CONTROL_WORDS: usize = 8;

    /// Buffers and headers for one `recvmmsg` call, built once per receiver. The headers point
    /// into the buffers, which never move (boxed slices are not resized).
    pub(super) struct Slots {
        buffers: Box<[u8]>,
        _iovecs: Box<[libc::iovec]>,
        _controls: Box<[u64]>,
        headers: Box<[libc::mmsghdr]>,
        /// The socket's drop counter as the last datagram that carried it told.
        drops: Option<u32>,
    }

    impl Slots {
        pub(super) fn new() -> Self {
            let mut buffers = vec![0u8; SLOTS * SLOT_BYTES].into_boxed_slice();
            let mut iovecs: Box<[libc::iovec]> = buffers
                .chunks_exact_mut(SLOT_BYTES)
                .map(|chunk| libc::iovec {
                    iov_base: chunk.as_mut_ptr().cast(),
                    iov_len: SLOT_BYTES,
                })
                .collect();
            let mut controls = vec![0u64; SLOTS * CONTROL_WORDS].into_boxed_slice();
            let headers = iovecs
                .iter_mut()
                .zip(controls.chunks_exact_mut(CONTROL_WORDS))
                .map(|(iov, control)| {
                    // SAFETY: all-zero is a valid msghdr (no name, no control data yet).
                    let mut header: libc::mmsghdr = unsafe { std::mem::zeroed() };
                    header.msg_hdr.msg_iov = iov;
                    header.msg_hdr.msg_iovlen = 1;
                    header.msg_hdr.msg_control = control.as_mut_ptr().cast();
                    header
                })
                .collect();
            Slots {
                buffers,
                _iovecs: iovecs,
                _controls: controls,
                headers,
                drops: None,
            }
        }

        /// Receives what is queued, up to [`SLOTS`] datagrams, without blocking; 0 when none is.
        pub(super) fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            for header in self.headers.iter_mut() {
                // The kernel writes back how much control data it used.
                header.msg_hdr.msg_controllen = CONTROL_WORDS * 8;
            }
            // SAFETY: every header points at its own iovec, SLOT_BYTES of `buffers` and
            // CONTROL_WORDS of `_controls`, all owned by `self` and alive for the call; no
            // timeout is passed.
            let n = unsafe {
                libc::recvmmsg(
                    socket.as_raw_fd(),
                    self.headers.as_mut_ptr(),
                    SLOTS as libc::c_uint,
                    libc::MSG_DONTWAIT,
                    std::ptr::null_mut(),
                )
            };
            if n > 0 {
                let n = n as usize;
                self.drops = self.drop_counter(n - 1).or(self.drops);
                return Ok(n);
            }
            if n == 0 {
                return Ok(0);
            }
            match io::Error::last_os_error() {
                e if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) =>
                {
                    Ok(0)
                }
                e => Err(e),
            }
        }

        /// The payload of datagram `i` of the last [`Slots::receive`].
        pub(super) fn datagram(&self, i: usize) -> &[u8] {
            let len = self.headers[i].msg_len as usize;
            &self.buffers[i * SLOT_BYTES..][..len.min(SLOT_BYTES)]
        }

        /// How many datagrams the kernel had dropped on this socket (its receive buffer full)
        /// when it queued the last datagram that told, if it had dropped any. A drop is told by
        /// the next datagram the kernel queues.
        pub(super) fn kernel_drops(&self) -> Option<u32> {
            self.drops
        }

        /// The drop counter attached to datagram `i` of the last call, if any.
        fn drop_counter(&self, i: usize) -> Option<u32> {
            let header = &self.headers[i].msg_hdr;
            // SAFETY: the header's control buffer was filled by the kernel in the last call;
            // the CMSG macros stay within msg_controllen.
            unsafe {
                let mut cmsg = libc::CMSG_FIRSTHDR(header);
                while !cmsg.is_null() {
                    if (*cmsg).cmsg_level == libc::SOL_SOCKET
                        && (*cmsg).cmsg_type == libc::SO_RXQ_OVFL
                    {
                        return Some(std::ptr::read_unaligned(
                            libc::CMSG_DATA(cmsg).cast::<u32>(),
                        ));
                    }
                    cmsg = libc::CMSG_NXTHDR(header, cmsg);
                }
            }
            None
        }
    }

    /// Asks the kernel to attach the socket's drop counter to received datagrams.
    pub(super) fn count_drops(socket: &UdpSocket) -> io::Result<()> {
        set_int(socket, libc::SO_RXQ_OVFL, 1)
    }

    /// True when a datagram is waiting; false after `timeout` (or a signal).
    pub(super) fn wait_readable(socket: &UdpSocket, timeout: Duration) -> bool {
        let mut fd = libc::pollfd {
            fd: socket.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fd, 1, timeout.as_millis() as libc::c_int) };
        ready > 0
    }

    /// Asks for `bytes` of receive buffer: beyond `net.core.rmem_max` when the process may
    /// (CAP_NET_ADMIN), else up to it. Linux doubles the size it is given (the other half pays
    /// for its bookkeeping, which the measure counts too), so it is given half.
    pub(super) fn set_receive_buffer(socket: &UdpSocket, bytes: usize) -> io::Result<()> {
        let half = (bytes / 2).min(libc::c_int::MAX as usize) as libc::c_int;
        if set_int(socket, libc::SO_RCVBUFFORCE, half).is_ok() {
            return Ok(());
        }
        set_int(socket, libc::SO_RCVBUF, half)
    }

    /// The receive buffer the socket has, in bytes of the kernel's measure.
    pub(super) fn receive_buffer(socket: &UdpSocket) -> io::Result<Option<usize>> {
        let mut value: libc::c_int = 0;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: `value` and `len` are valid for writes of an int.
        let rc = unsafe {
            libc::getsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_RCVBUF,
                (&mut value as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Some(value.max(0) as usize))
    }

    fn set_int(socket: &UdpSocket, option: libc::c_int, value: libc::c_int) -> io::Result<()> {
        // SAFETY: the option value is one int, passed with its size.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (&value as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod sys {
    use std::io;
    use std::net::UdpSocket;
    use std::time::Duration;

    use super::SLOT_BYTES;

    /// One datagram per call.
    pub struct Slots {
        buffer: Vec<u8>,
        len: usize,
    }

    impl Slots {
        pub fn new() -> Self {
            Slots {
                buffer: vec![0u8; SLOT_BYTES],
                len: 0,
            }
        }

        pub fn receive(&mut self, socket: &UdpSocket) -> io::Result<usize> {
            match socket.recv(&mut self.buffer) {
                Ok(len) => {
                    self.len = len;
                    Ok(1)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) => Err(e),
            }
        }

        pub fn datagram(&self, _i: usize) -> &[u8] {
            &self.buffer[..self.len]
        }

        /// Not told on this platform.
        pub fn kernel_drops(&self) -> Option<u32> {
            None
        }
    }

    pub fn count_drops(_socket: &UdpSocket) -> io::Result<()> {
        Ok(())
    }

    /// Without poll(2) at hand: look again after a short sleep.
    pub fn wait_readable(_socket: &UdpSocket, _timeout: Duration) -> bool {
        std::thread::sleep(Duration::from_millis(1));
        true
    }

    /// Left to the platform's default here.
    pub fn set_receive_buffer(_socket: &UdpSocket, _bytes: usize) -> io::Result<()> {
        Ok(())
    }

    pub fn receive_buffer(_socket: &UdpSocket) -> io::Result<Option<usize>> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: usize = 15;

    #[test]
    fn a_slow_trickle_waits_for_the_socket() {
        let mut pacer = Pacer::new(8 << 20);
        // One datagram every 10 ms: 100/s, less than one per pause.
        for _ in 0..5 {
            let pause = pacer.after_drain(1, SMALL, Duration::from_millis(10));
            assert_eq!(pause, Duration::ZERO);
        }
    }

    #[test]
    fn a_busy_socket_with_a_large_buffer_pauses_the_longest() {
        let mut pacer = Pacer::new(8 << 20);
        // 200 000 datagrams/s: one every 5 µs, arriving as the receiver wakes for each.
        let pause = pacer.after_drain(1, SMALL, Duration::from_micros(5));
        assert_eq!(pause, MAX_PAUSE);
    }

    #[test]
    fn a_small_buffer_shortens_the_pause_so_it_does_not_overflow() {
        // The kernel default: 212 992 bytes, about 250 small datagrams.
        let buffer = 212_992;
        let mut pacer = Pacer::new(buffer);
        let rate = 200_000.0;
        let mut pause = pacer.after_drain(1, SMALL, Duration::from_micros(5));
        for _ in 0..10 {
            let arrived = ((pause.as_secs_f64() + 20e-6) * rate).max(1.0) as usize;
            let since = Duration::from_secs_f64(arrived as f64 / rate);
            pause = pacer.after_drain(arrived, arrived * SMALL, since);
            let queued_meanwhile = pause.as_secs_f64() * rate;
            let room = buffer / (SMALL + DATAGRAM_OVERHEAD);
            assert!(pause > Duration::ZERO, "it still pauses");
            assert!(
                queued_meanwhile <= room as f64 / 3.0,
                "{queued_meanwhile} datagrams queued in a pause of {pause:?}, room for {room}"
            );
        }
    }

    #[test]
    fn an_empty_drain_resets_the_rate() {
        let mut pacer = Pacer::new(8 << 20);
        assert!(!pacer
            .after_drain(100, 100 * SMALL, Duration::from_micros(500))
            .is_zero());
        assert_eq!(
            pacer.after_drain(0, 0, Duration::from_millis(2)),
            Duration::ZERO
        );
        assert_eq!(
            pacer.after_drain(1, SMALL, Duration::from_secs(1)),
            Duration::ZERO
        );
    }

    #[test]
    fn datagrams_are_received_in_order_and_whole() {
        let udp = bind_udp("127.0.0.1:0".parse().unwrap(), 1 << 20).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = udp.socket.local_addr().unwrap();
        let big = vec![b'x'; 60_000];
        for i in 0..40 {
            sender.send_to(format!("m{i}:1|c").as_bytes(), to).unwrap();
        }
        sender.send_to(&big, to).unwrap();
        assert!(sys::wait_readable(&udp.socket, Duration::from_secs(1)));
        let mut slots = sys::Slots::new();
        let mut got = Vec::new();
        loop {
            let n = slots.receive(&udp.socket).unwrap();
            if n == 0 {
                break;
            }
            got.extend((0..n).map(|i| slots.datagram(i).to_vec()));
        }
        assert_eq!(got.len(), 41);
        assert_eq!(got[0], b"m0:1|c");
        assert_eq!(got[39], b"m39:1|c");
        assert_eq!(got[40].len(), 60_000, "a large datagram is not truncated");
    }

    #[test]
    fn the_kernel_tells_how_many_datagrams_a_full_buffer_dropped() {
        let udp = bind_udp("127.0.0.1:0".parse().unwrap(), 4096).unwrap();
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = udp.socket.local_addr().unwrap();
        const SENT: usize = 200;
        for i in 0..SENT {
            sender.send_to(format!("m{i}:1|c").as_bytes(), to).unwrap();
        }
        let mut slots = sys::Slots::new();
        let (mut received, mut dropped) = (0, 0);
        // Read one call's worth, send one more (it is queued behind the drops), read the rest.
        received += slots.receive(&udp.socket).unwrap();
        sender.send_to(b"last:1|c", to).unwrap();
        loop {
            let n = slots.receive(&udp.socket).unwrap();
            if n == 0 {
                break;
            }
            received += n;
            dropped = slots.kernel_drops().unwrap_or(dropped);
        }
        assert!(dropped > 0, "a 4 KiB buffer cannot hold {SENT} datagrams");
        assert_eq!(received + dropped as usize, SENT + 1);
    }
}
