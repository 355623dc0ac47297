//! The UDP side of every listener (statsd, Graphite, Riemann): receive datagrams until shutdown,
//! parse each with the protocol's function, take whatever else is already waiting up to a
//! batch, and hand the events over. UDP cannot push back on a sender, so a batch the pipeline
//! refuses is counted as `udp_dropped`.

use std::sync::Arc;

use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::event::Event;
use crate::pipeline::IngestHandle;
use crate::stats::Stats;

/// Events handed over per batch at most.
const BATCH: usize = 5_000;

/// Parses one datagram into `out` (stamped `now` when the protocol carries no time), counting
/// its own bad input.
pub type ParseDatagram = Box<dyn FnMut(&[u8], EpochMillis, &mut Vec<Event>) + Send>;

/// Receives datagrams on `socket` until `shutdown`.
pub async fn serve_udp<C: Clock>(
    socket: UdpSocket,
    mut parse: ParseDatagram,
    ingest: IngestHandle,
    clock: Arc<C>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let mut buf = vec![0u8; 65_536];
    let mut events = Vec::with_capacity(BATCH);
    loop {
        let received = tokio::select! {
            r = socket.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => return,
        };
        let mut len = match received {
            Ok((n, _)) => n,
            Err(e) => {
                tracing::warn!(error = %e, "udp receive failed");
                continue;
            }
        };
        loop {
            parse(&buf[..len], clock.now(), &mut events);
            if events.len() >= BATCH {
                break;
            }
            match socket.try_recv_from(&mut buf) {
                Ok((n, _)) => len = n,
                Err(_) => break,
            }
        }
        if events.is_empty() {
            continue;
        }
        let n = events.len() as u64;
        if let Err(e) = ingest.submit(std::mem::take(&mut events)).await {
            Stats::add(&stats.udp_dropped, n);
            tracing::debug!(error = %e, events = n, "udp events dropped");
        }
        events = Vec::with_capacity(BATCH);
    }
}
