//! The TCP accept loop every stream listener shares (Graphite and statsd lines, Riemann
//! messages): a bounded number of connections, one task each, and no new ones after shutdown.

use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most connections at once per listener; more wait in the kernel's accept queue until one
/// closes, so a flood of idle connections costs no more than this many tasks.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// Accepts connections until `shutdown` and runs `connection` for each in its own task. The
/// task is expected to watch `shutdown` too and end after handing over what it holds.
pub(crate) async fn accept_connections<F, Fut>(
    listener: TcpListener,
    shutdown: CancellationToken,
    connection: F,
) where
    F: Fn(TcpStream) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                tracing::debug!(error = %e, "accept failed");
                continue;
            }
        };
        let task = connection(stream);
        tokio::spawn(async move {
            let _permit = permit;
            task.await
        });
    }
}
