//! Line-oriented TCP listeners (Graphite plaintext, statsd over TCP): bounded connections and
//! line length, events handed over in batches, and push-back — while the pipeline is full a
//! connection stops reading, so the sender's TCP window closes instead of memory growing.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::event::Event;
use crate::pipeline::{IngestHandle, SubmitError};
use crate::stats::Stats;

/// Longest line accepted; longer ones are bad lines (and never buffered whole).
pub const MAX_LINE: usize = 4096;
/// Most connections at once per listener; more wait to be accepted.
pub const MAX_CONNECTIONS: usize = 1024;
const BATCH: usize = 5_000;

/// Parses one line into `out` (stamped `now` when the protocol has no time); false for a bad line.
pub type ParseLine = Arc<dyn Fn(&str, EpochMillis, &mut Vec<Event>) -> bool + Send + Sync>;

/// Which counter of [`Stats`] counts a listener's bad lines.
pub type BadLines = fn(&Stats) -> &AtomicU64;

/// Reads one line of at most `max` bytes into `buf` (without the newline). `Ok(None)` at end of
/// input; `Ok(Some(false))` for a longer line, which is skipped up to its newline.
pub async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<Option<bool>> {
    buf.clear();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(Some(true));
    }
    if buf.len() <= max {
        return Ok(Some(true)); // the last line, without a newline
    }
    // Too long: drop the rest of the line in bounded pieces.
    let mut rest = Vec::with_capacity(1024);
    loop {
        rest.clear();
        let n = (&mut *reader)
            .take(1024)
            .read_until(b'\n', &mut rest)
            .await?;
        if n == 0 || rest.last() == Some(&b'\n') {
            return Ok(Some(false));
        }
    }
}

/// Hands `events` over, waiting while the pipeline is full (a TCP client is not read meanwhile,
/// which is the push-back); the error when the pipeline refused them for good.
pub async fn submit_waiting(ingest: &IngestHandle, events: Vec<Event>) -> Result<(), SubmitError> {
    if events.is_empty() {
        return Ok(());
    }
    let mut pause = Duration::from_millis(10);
    loop {
        match ingest.submit(events.clone()).await {
            Ok(_) => return Ok(()),
            Err(SubmitError::Busy) => {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
            Err(e) => {
                tracing::warn!(error = %e, events = events.len(), "events refused");
                return Err(e);
            }
        }
    }
}

/// Accepts connections until `shutdown`; each is read line by line with `parse`.
#[allow(clippy::too_many_arguments)]
pub async fn serve_tcp_lines<C: Clock>(
    listener: TcpListener,
    parse: ParseLine,
    bad_lines: BadLines,
    ingest: IngestHandle,
    clock: Arc<C>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.cancelled() => return,
        };
        let Ok((stream, _)) = accepted else { continue };
        let (parse, ingest, clock, stats, shutdown) = (
            parse.clone(),
            ingest.clone(),
            clock.clone(),
            stats.clone(),
            shutdown.clone(),
        );
        tokio::spawn(async move {
            let _permit = permit;
            let mut reader = BufReader::new(stream);
            let mut line = Vec::with_capacity(256);
            let mut events = Vec::with_capacity(BATCH);
            loop {
                let next = tokio::select! {
                    l = read_line_bounded(&mut reader, &mut line, MAX_LINE) => l,
                    _ = shutdown.cancelled() => break,
                };
                match next {
                    Ok(Some(true)) => match std::str::from_utf8(&line) {
                        Ok(text) if text.trim().is_empty() => {}
                        Ok(text) if parse(text, clock.now(), &mut events) => {}
                        _ => Stats::add(bad_lines(&stats), 1),
                    },
                    Ok(Some(false)) => Stats::add(bad_lines(&stats), 1),
                    Ok(None) | Err(_) => break,
                }
                // Hand over a full batch, or whatever there is when nothing more is buffered.
                let ready =
                    events.len() >= BATCH || (!events.is_empty() && reader.buffer().is_empty());
                if ready
                    && submit_waiting(&ingest, std::mem::take(&mut events))
                        .await
                        .is_err()
                {
                    break;
                }
            }
            if !events.is_empty() {
                let _ = submit_waiting(&ingest, events).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn lines_are_bounded_and_long_ones_skipped() {
        let input = format!("short\r\n{}\nafter\nlast", "x".repeat(5000));
        let mut reader = BufReader::new(input.as_bytes());
        let mut buf = Vec::new();
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            Some(true)
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            Some(false)
        );
        assert!(buf.len() <= 101);
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            Some(true)
        );
        assert_eq!(buf, b"after");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            Some(true)
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            None
        );
    }
}
