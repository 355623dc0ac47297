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

/// What a line protocol does with a last line that has no newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LastLine {
    /// Parse it (what statsd over TCP has done here so far).
    Parse,
    /// Count it as bad: a cut line would store a wrong value (Graphite: carbon drops it too).
    Refuse,
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

/// A line protocol over TCP: how a line is parsed, which counter counts bad ones, and what a last
/// line without a newline means.
#[derive(Clone)]
pub(crate) struct LineProtocol {
    pub(crate) parse: ParseLine,
    pub(crate) bad_lines: BadLines,
    pub(crate) last_line: LastLine,
}

/// Accepts connections until `shutdown`; each is read line by line with `protocol`.
pub(crate) async fn serve_tcp_lines<C: Clock>(
    listener: TcpListener,
    protocol: LineProtocol,
    ctx: ListenerContext<C>,
) {
    let shutdown = ctx.shutdown.clone();
    accept_connections(listener, shutdown, move |stream| {
        read_connection(stream, protocol.clone(), ctx.clone())
    })
    .await;
}

/// Reads one connection until it closes or `shutdown`, handing over a batch whenever it is full
/// or nothing more is buffered.
async fn read_connection<C: Clock>(
    stream: TcpStream,
    protocol: LineProtocol,
    ctx: ListenerContext<C>,
) {
    let bad = || Stats::add((protocol.bad_lines)(&ctx.stats), 1);
    let mut reader = BufReader::new(stream);
    let mut line = Vec::with_capacity(256);
    let mut events = Vec::with_capacity(BATCH);
    loop {
        let next = tokio::select! {
            l = read_line_bounded(&mut reader, &mut line, MAX_LINE) => l,
            _ = ctx.shutdown.cancelled() => break,
        };
        // `None`: too long, bad whatever it holds; `Some(false)`: a last line left unparsed.
        let parse = match next {
            Ok(ReadLine::End) | Err(_) => break,
            Ok(ReadLine::TooLong) => None,
            Ok(ReadLine::Complete) => Some(true),
            Ok(ReadLine::Unterminated) => Some(protocol.last_line == LastLine::Parse),
        };
        match (parse, std::str::from_utf8(&line)) {
            (Some(_), Ok(text)) if text.trim().is_empty() => {}
            (Some(true), Ok(text)) if (protocol.parse)(text, ctx.clock.now(), &mut events) => {}
            _ => bad(),
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
