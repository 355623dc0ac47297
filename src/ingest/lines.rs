//! Line-oriented TCP listeners (Graphite plaintext, statsd over TCP): bounded connections and
//! line length, events handed over in batches, and push-back — while the pipeline is full a
//! connection stops reading, so the sender's TCP window closes instead of memory growing.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

use crate::clock::{Clock, EpochMillis};
use crate::event::Event;
use crate::ingest::context::ListenerContext;
use crate::ingest::tcp::accept_connections;
use crate::stats::Stats;

/// Longest line accepted; longer ones are bad lines (and never buffered whole).
pub(crate) const MAX_LINE: usize = 4096;
/// Events handed over per batch at most.
const BATCH: usize = 5_000;

/// Parses one line into `out` (stamped `now` when the protocol has no time); false for a bad line.
pub(crate) type ParseLine = Arc<dyn Fn(&str, EpochMillis, &mut Vec<Event>) -> bool + Send + Sync>;

/// Which counter of [`Stats`] counts a listener's bad lines.
pub(crate) type BadLines = fn(&Stats) -> &AtomicU64;

/// Reads one line of at most `max` bytes into `buf` (without the newline). `Ok(None)` at end of
/// input; `Ok(Some(false))` for a longer line, which is skipped up to its newline.
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
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

/// Accepts connections until `shutdown`; each is read line by line with `parse`.
pub(crate) async fn serve_tcp_lines<C: Clock>(
    listener: TcpListener,
    parse: ParseLine,
    bad_lines: BadLines,
    ctx: ListenerContext<C>,
) {
    let shutdown = ctx.shutdown.clone();
    accept_connections(listener, shutdown, move |stream| {
        read_connection(stream, parse.clone(), bad_lines, ctx.clone())
    })
    .await;
}

/// Reads one connection until it closes or `shutdown`, handing over a batch whenever it is full
/// or nothing more is buffered.
async fn read_connection<C: Clock>(
    stream: TcpStream,
    parse: ParseLine,
    bad_lines: BadLines,
    ctx: ListenerContext<C>,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    let mut events = Vec::with_capacity(BATCH);
    loop {
        let next = tokio::select! {
            l = read_line_bounded(&mut reader, &mut line, MAX_LINE) => l,
            _ = ctx.shutdown.cancelled() => break,
        };
        match next {
            Ok(Some(true)) => match std::str::from_utf8(&line) {
                Ok(text) if text.trim().is_empty() => {}
                Ok(text) if parse(text, ctx.clock.now(), &mut events) => {}
                _ => Stats::add(bad_lines(&ctx.stats), 1),
            },
            Ok(Some(false)) => Stats::add(bad_lines(&ctx.stats), 1),
            Ok(None) | Err(_) => break,
        }
        let ready = events.len() >= BATCH || (!events.is_empty() && reader.buffer().is_empty());
        if ready
            && ctx
                .ingest
                .submit_waiting(std::mem::take(&mut events))
                .await
                .is_err()
        {
            return;
        }
    }
    let _ = ctx.ingest.submit_waiting(events).await;
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
