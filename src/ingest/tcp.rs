//! The TCP accept loop every stream listener shares (Graphite and statsd lines, Riemann
//! messages): a bounded number of connections, one task each, and no new ones after shutdown.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// Most connections at once per listener; more wait in the kernel's accept queue until one
/// closes, so a flood of idle connections costs no more than this many tasks.
pub(crate) const MAX_CONNECTIONS: usize = 1024;

/// A connection that completes no line or message for this long is closed, so that idle or
/// stalled sockets cannot hold the listener's slots (1 100 idle connections once locked every
/// client out). statsd, Graphite and Riemann clients reconnect when they next send.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// Once a Riemann message's length has arrived, its body must follow within this.
pub(crate) const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// The pause after a failed accept (out of descriptors, say), doubled while it keeps failing:
/// retrying at once would spin a core and flood the log.
const FIRST_ACCEPT_PAUSE: Duration = Duration::from_millis(10);
const LAST_ACCEPT_PAUSE: Duration = Duration::from_secs(1);

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
    let mut pause = AcceptPause::default();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
            _ = shutdown.cancelled() => return,
        };
        let Some(stream) = next_connection(&listener, &mut pause, &shutdown).await else {
            return;
        };
        let task = connection(stream);
        tokio::spawn(async move {
            let _permit = permit;
            task.await
        });
    }
}

/// The next connection, waiting out accept errors (out of descriptors, say) with a growing
/// pause; `None` once `shutdown` comes.
pub(crate) async fn next_connection(
    listener: &TcpListener,
    pause: &mut AcceptPause,
    shutdown: &CancellationToken,
) -> Option<TcpStream> {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok((stream, _)) => {
                *pause = AcceptPause::default();
                return Some(stream);
            }
            Err(e) => {
                if !pause.wait_after(&e, shutdown).await {
                    return None;
                }
            }
        }
    }
}

/// The growing pause after failed accepts.
pub(crate) struct AcceptPause(Duration);

impl Default for AcceptPause {
    fn default() -> Self {
        Self(FIRST_ACCEPT_PAUSE)
    }
}

impl AcceptPause {
    /// Logs `error` and waits; false when `shutdown` came first.
    pub(crate) async fn wait_after(
        &mut self,
        error: &std::io::Error,
        shutdown: &CancellationToken,
    ) -> bool {
        tracing::warn!(%error, retry_in = ?self.0, "accept failed");
        let waited = tokio::select! {
            _ = tokio::time::sleep(self.0) => true,
            _ = shutdown.cancelled() => false,
        };
        self.0 = (self.0 * 2).min(LAST_ACCEPT_PAUSE);
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn failed_accepts_wait_longer_each_time_up_to_a_second_and_shutdown_ends_the_wait() {
        let shutdown = CancellationToken::new();
        let error = std::io::Error::from_raw_os_error(24); // EMFILE: out of descriptors
        let mut pause = AcceptPause::default();
        let mut waits = Vec::new();
        for _ in 0..9 {
            let started = tokio::time::Instant::now();
            assert!(pause.wait_after(&error, &shutdown).await);
            waits.push(started.elapsed().as_millis());
        }
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        shutdown.cancel();
        assert!(
            !pause.wait_after(&error, &shutdown).await,
            "no wait after shutdown"
        );
    }
}
