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
use crate::ingest::tcp::{accept_connections, IDLE_TIMEOUT};
use crate::stats::Stats;

/// Longest line accepted; longer ones are bad lines (and never buffered whole).
pub(crate) const MAX_LINE: usize = 4096;
/// Events handed over per batch at most.
const BATCH: usize = 5_000;

/// Parses one line into `out` (stamped `now` when the protocol has no time); false for a bad line.
pub(crate) type ParseLine = Arc<dyn Fn(&str, EpochMillis, &mut Vec<Event>) -> bool + Send + Sync>;

/// Which counter of [`Stats`] counts a listener's bad lines.
pub(crate) type BadLines = fn(&Stats) -> &AtomicU64;

/// What [`read_line_bounded`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReadLine {
    /// A line ended by a newline, in the buffer without it.
    Complete,
    /// The input ended before a newline: the last bytes a client sent, or a line cut short by a
    /// disconnect (`x 123` arriving as `x 12`); in the buffer.
    Unterminated,
    /// A line longer than the limit, skipped up to its newline.
    TooLong,
    /// The end of input.
    End,
}

/// Reads one line of at most `max` bytes into `buf` (without the newline).
pub(crate) async fn read_line_bounded<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<ReadLine> {
    buf.clear();
    let n = (&mut *reader)
        .take(max as u64 + 1)
        .read_until(b'\n', buf)
        .await?;
    if n == 0 {
        return Ok(ReadLine::End);
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
        if buf.last() == Some(&b'\r') {
            buf.pop();
        }
        return Ok(ReadLine::Complete);
    }
    if buf.len() <= max {
        return Ok(ReadLine::Unterminated);
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
            return Ok(ReadLine::TooLong);
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
/// or nothing more is buffered. A last line without its newline was cut short by the disconnect
/// (`x:123|c` arriving as `x:12|c`) and is counted bad, never stored: Etsy's statsd and carbon
/// drop it too (both keep an unterminated tail in a buffer that is never parsed).
async fn read_connection<C: Clock>(
    stream: TcpStream,
    parse: ParseLine,
    bad_lines: BadLines,
    ctx: ListenerContext<C>,
) {
    let bad = || Stats::add(bad_lines(&ctx.stats), 1);
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    let mut events = Vec::with_capacity(BATCH);
    loop {
        let next = tokio::select! {
            l = tokio::time::timeout(IDLE_TIMEOUT, read_line_bounded(&mut reader, &mut line, MAX_LINE)) => l,
            _ = ctx.shutdown.cancelled() => break,
        };
        let kind = match next {
            Ok(Ok(ReadLine::End) | Err(_)) => break,
            Err(_idle) => {
                tracing::debug!(timeout = ?IDLE_TIMEOUT, "no complete line for too long; connection closed");
                break;
            }
            Ok(Ok(kind)) => kind,
        };
        match (kind, std::str::from_utf8(&line)) {
            (ReadLine::TooLong, _) => bad(),
            (_, Ok(text)) if text.trim().is_empty() => {}
            (ReadLine::Complete, Ok(text)) if parse(text, ctx.clock.now(), &mut events) => {}
            _ => bad(),
        }
        let ready = events.len() >= BATCH || (!events.is_empty() && reader.buffer().is_empty());
        if ready
            && ctx
                .ingest
                .submit_waiting(std::mem::take(&mut events), false)
                .await
                .is_err()
        {
            return;
        }
    }
    let _ = ctx.ingest.submit_waiting(events, false).await;
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
            ReadLine::Complete
        );
        assert_eq!(buf, b"short");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            ReadLine::TooLong
        );
        assert!(buf.len() <= 101);
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            ReadLine::Complete
        );
        assert_eq!(buf, b"after");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            ReadLine::Unterminated
        );
        assert_eq!(buf, b"last");
        assert_eq!(
            read_line_bounded(&mut reader, &mut buf, 100).await.unwrap(),
            ReadLine::End
        );
    }
}
