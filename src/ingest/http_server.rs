//! The HTTP server loop: hyper's HTTP/1 connections with a header timeout, graceful shutdown,
//! and accept errors backed off. `axum::serve` sets no timer, so a client sending its headers a
//! byte at a time (slowloris) held a connection forever.

use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::ingest::tcp::{next_connection, AcceptPause};

/// A request's headers must arrive within this; an idle kept-alive connection is closed after
/// it too.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown`, then lets the requests in flight finish.
pub(crate) async fn serve_http(listener: TcpListener, app: Router, shutdown: CancellationToken) {
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut pause = AcceptPause::default();
    while let Some(stream) = next_connection(&listener, &mut pause, &shutdown).await {
        let connection = hyper::server::conn::http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_TIMEOUT)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "http connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn started() -> (
        std::net::SocketAddr,
        CancellationToken,
        tokio::task::JoinHandle<()>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let app = Router::new().route("/", get(|| async { "ok" }));
        let task = tokio::spawn(serve_http(listener, app, shutdown.clone()));
        (addr, shutdown, task)
    }

    /// Whether the server closed `client` within `wait` (reading whatever it answered first).
    async fn closed_within(client: &mut tokio::net::TcpStream, wait: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, client.read(&mut buf)).await {
                Ok(Ok(0)) | Ok(Err(_)) => return true,
                Ok(Ok(_)) => continue,
                Err(_) => return false,
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn slow_headers_are_cut_off_and_requests_are_answered() {
        let (addr, shutdown, task) = started().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
            .await
            .unwrap();
        assert!(!closed_within(&mut client, HEADER_TIMEOUT - Duration::from_secs(1)).await);
        assert!(
            closed_within(&mut client, Duration::from_secs(2)).await,
            "slowloris cut off"
        );

        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_connection_is_closed() {
        let (addr, shutdown, task) = started().await;
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        assert!(closed_within(&mut client, HEADER_TIMEOUT + Duration::from_secs(1)).await);
        shutdown.cancel();
        task.await.unwrap();
    }
}
