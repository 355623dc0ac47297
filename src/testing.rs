//! Helpers shared by the unit tests of several modules.

use std::future::Future;
use std::sync::Arc;

use axum::response::Response;
use serde_json::Value;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

use crate::clock::ManualClock;
use crate::ingest::context::ListenerContext;
use crate::ingest::handle::{ingest_channel, Request};
use crate::stats::Stats;

/// An RFC 3339 instant in epoch milliseconds.
pub(crate) fn at(rfc3339: &str) -> crate::clock::EpochMillis {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("an RFC 3339 instant")
        .timestamp_millis()
}

/// The JSON body of `response` (`Null` when it has none or it is not JSON).
pub(crate) async fn json_of(response: Response) -> Value {
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("a readable body");
    serde_json::from_slice(&bytes).unwrap_or(Value::Null)
}

/// Checks that a listener started by `start` closes a connection that sends nothing once
/// [`crate::ingest::tcp::IDLE_TIMEOUT`] has passed, and not a second before.
pub(crate) async fn assert_idle_connections_close<F, Fut>(start: F)
where
    F: Fn(TcpListener, ListenerContext<ManualClock>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let second = std::time::Duration::from_secs(1);
    let timeout = crate::ingest::tcp::IDLE_TIMEOUT;
    assert!(
        !closes_an_idle_connection(&start, timeout - second).await,
        "closed too early"
    );
    assert!(
        closes_an_idle_connection(&start, timeout + second).await,
        "left open"
    );
}

/// Starts a TCP listener with `start` (its input queue is never read), opens a connection that
/// sends nothing, and says whether the listener closed it by itself within `wait`.
async fn closes_an_idle_connection<F, Fut>(start: &F, wait: std::time::Duration) -> bool
where
    F: Fn(TcpListener, ListenerContext<ManualClock>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    use tokio::io::AsyncReadExt;
    let (ingest, _queue) = ingest_channel(8);
    let ctx = ListenerContext {
        ingest,
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        stats: Arc::new(Stats::default()),
        shutdown: tokio_util::sync::CancellationToken::new(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(start(listener, ctx));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, client.read(&mut byte)).await,
        Ok(Ok(0))
    )
}

/// Starts a TCP listener with `start`, sends `bytes` over one connection and closes it; the
/// series names of the first batch it hands over, and its counters once it has read everything.
pub(crate) async fn names_from_tcp<F, Fut>(start: F, bytes: &[u8]) -> (Vec<String>, Arc<Stats>)
where
    F: FnOnce(TcpListener, ListenerContext<ManualClock>) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (ingest, mut queue) = ingest_channel(8);
    let stats = Arc::new(Stats::default());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let ctx = ListenerContext {
        ingest,
        clock: Arc::new(ManualClock::new(1_700_000_000_000)),
        stats: stats.clone(),
        shutdown: shutdown.clone(),
    };
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(start(listener, ctx));
    let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
    client.write_all(bytes).await.unwrap();
    drop(client);
    let Some(Request::Ingest(batch)) = queue.requests.recv().await else {
        panic!("a batch")
    };
    let names = batch
        .events
        .iter()
        .map(|e| e.series.name().to_string())
        .collect();
    if let Some(reply) = batch.reply {
        let _ = reply.send(Ok(Default::default()));
    }
    // The connection's task counts a bad last line after handing over the batch before it.
    for _ in 0..1000 {
        let s = stats.snapshot();
        if s.graphite_bad_lines + s.statsd_bad_lines > 0 || !queue.requests.is_empty() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(queue.requests.is_empty(), "nothing more was handed over");
    shutdown.cancel();
    (names, stats)
}
