//! Starting the stream and datagram listeners that `archives.toml` configures (statsd, Graphite,
//! Riemann): each binds TCP and UDP on one address (port 0 picks a free port for both), and
//! every listener gets the same [`ListenerContext`].

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::clock::Clock;
use crate::config::{Config, ListenerConfig};
use crate::ingest::context::ListenerContext;
use crate::ingest::datagrams::{bind_udp, BoundUdp};
use crate::ingest::{graphite, riemann, statsd};
use crate::stats::Protocol;

/// A listener that could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}")]
pub struct ListenError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// Where each configured listener ended up (`None`: not configured).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ListenerAddrs {
    pub statsd: Option<SocketAddr>,
    pub graphite: Option<SocketAddr>,
    pub riemann: Option<SocketAddr>,
}

/// Binds and starts every configured listener; they stop on `ctx.shutdown`.
pub(crate) async fn start_listeners<C: Clock>(
    config: &Config,
    ctx: &ListenerContext<C>,
) -> Result<ListenerAddrs, ListenError> {
    let mut addrs = ListenerAddrs::default();
    if let Some(listener) = &config.statsd {
        let (tcp, udp, bound) = bind_pair("statsd", listener).await?;
        let gauges = statsd::shared_gauges(listener.gauge_idle);
        let ctx = ctx.for_protocol(Protocol::Statsd);
        statsd::spawn_udp(udp, config.ingest.clone(), gauges.clone(), ctx.clone())
            .map_err(at(bound))?;
        tokio::spawn(statsd::run_tcp(
            tcp,
            config.ingest.clone(),
            gauges,
            ctx.clone(),
        ));
        addrs.statsd = Some(bound);
    }
    if let Some(listener) = &config.graphite {
        let (tcp, udp, bound) = bind_pair("graphite", listener).await?;
        let ctx = ctx.for_protocol(Protocol::Graphite);
        graphite::spawn_udp(udp, config.ingest.clone(), ctx.clone()).map_err(at(bound))?;
        tokio::spawn(graphite::run_tcp(tcp, config.ingest.clone(), ctx.clone()));
        addrs.graphite = Some(bound);
    }
    if let Some(listener) = &config.riemann {
        let (tcp, udp, bound) = bind_pair("riemann", listener).await?;
        let ctx = ctx.for_protocol(Protocol::Riemann);
        riemann::spawn_udp(udp, config.ingest.clone(), ctx.clone()).map_err(at(bound))?;
        tokio::spawn(riemann::run_tcp(tcp, config.ingest.clone(), ctx.clone()));
        addrs.riemann = Some(bound);
    }
    Ok(addrs)
}

/// Binds TCP on the configured address, then UDP on the port TCP got.
async fn bind_pair(
    protocol: &str,
    listener: &ListenerConfig,
) -> Result<(TcpListener, BoundUdp, SocketAddr), ListenError> {
    let tcp = TcpListener::bind(listener.listen)
        .await
        .map_err(at(listener.listen))?;
    let bound = tcp.local_addr().map_err(at(listener.listen))?;
    let udp = bind_udp(bound, listener.receive_buffer_bytes).map_err(at(bound))?;
    tracing::info!(
        protocol,
        addr = %bound,
        receive_buffer = udp.receive_buffer_bytes,
        "listening (tcp and udp)"
    );
    Ok((tcp, udp, bound))
}

/// Names the address in an I/O error.
pub(crate) fn at(addr: SocketAddr) -> impl Fn(std::io::Error) -> ListenError {
    move |source| ListenError { addr, source }
}
