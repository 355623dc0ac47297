//! Line-oriented TCP listeners (Graphite plaintext, statsd over TCP): bounded connections and
//! line length, events handed over in batches, and push-back — while the pipeline is full a
//! connection stops reading, so the sender's TCP window closes instead of memory growing.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::clock::{Clock, EpochMillis};
use crate::event::Event;
use crate::ingest::context::ListenerContext;
use crate::ingest::handle::{IngestHandle, Pending, SubmitError};
use crate::ingest::tcp::{accept_connections, IDLE_TIMEOUT};
use crate::stats::Stats;

/// Longest line accepted; longer ones are bad lines (and never buffered whole).
pub(crate) const MAX_LINE: usize = 4096;
/// Events handed over per batch at most.
const BATCH: usize = 5_000;
/// Bytes read from a connection at once, at most. The lines of one read are parsed together
/// with one reading of the clock and handed over as one batch: per line, a clock reading, a
/// timer and a wake-up cost more than parsing the line (with the copy out of a reader, about a
/// third of strata's CPU at 2 M lines/s under `perf`).
const READ_CHUNK: usize = 64 * 1024;

/// Parses one line into `out` (stamped `now` when the protocol has no time); false for a bad line.
pub(crate) type ParseLine = Arc<dyn Fn(&str, EpochMillis, &mut Vec<Event>) -> bool + Send + Sync>;

/// Which counter of [`Stats`] counts a listener's bad lines.
pub(crate) type BadLines = fn(&Stats) -> &AtomicU64;

/// A line found by [`LineSplitter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Line<'a> {
    /// A complete line, without its newline (nor a `\r` before it).
    Text(&'a [u8]),
    /// A line longer than the limit, skipped up to its newline (never buffered whole).
    TooLong,
}

/// Cuts a connection's bytes into lines of at most `max` bytes, across reads: the complete
/// lines of a buffer are taken in place, the unfinished rest is kept for the next read unless
/// it is already too long.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    max: usize,
    /// Inside a line found too long: its bytes are dropped up to its newline.
    skipping: bool,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max,
            skipping: false,
        }
    }

    /// The next complete line in `buf[*pos..]`, moving `*pos` past it; `None` when the rest
    /// holds no newline.
    pub(crate) fn next<'a>(&mut self, buf: &'a [u8], pos: &mut usize) -> Option<Line<'a>> {
        let rest = &buf[*pos..];
        let end = memchr::memchr(b'\n', rest)?;
        *pos += end + 1;
        if std::mem::take(&mut self.skipping) || end > self.max {
            return Some(Line::TooLong);
        }
        let line = &rest[..end];
        Some(Line::Text(line.strip_suffix(b"\r").unwrap_or(line)))
    }

    /// Drops the lines taken (`buf[..taken]`) and keeps the unfinished rest at the front, or
    /// drops it too while it belongs to a line already too long.
    pub(crate) fn keep_unfinished(&mut self, buf: &mut Vec<u8>, taken: usize) {
        let unfinished = buf.len() - taken;
        if self.skipping || unfinished > self.max {
            self.skipping = true;
            buf.clear();
        } else {
            buf.copy_within(taken.., 0);
            buf.truncate(unfinished);
        }
    }

    /// Whether the input ended inside a line too long (which then counts as one bad line).
    pub(crate) fn ended_in_long_line(&self) -> bool {
        self.skipping
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

/// How reading a connection ended.
enum Ended {
    /// The client closed it (or it failed): a last line without its newline is bad.
    Input,
    /// Shutdown or the idle timeout: what was not complete is left.
    Closed,
}

/// Reads one connection until it closes, idles too long or `shutdown`, a chunk at a time (see
/// [`READ_CHUNK`]). Each chunk's events are queued while the next chunk is read and parsed; the
/// one before must have been taken first, so a connection holds at most two batches and stops
/// reading while the pipeline is full (the push-back). A last line without its newline was cut
/// short by the disconnect (`x:123|c` arriving as `x:12|c`) and is counted bad, never stored:
/// Etsy's statsd and carbon drop it too (both keep an unterminated tail in a buffer that is
/// never parsed). A connection that completes no line within [`IDLE_TIMEOUT`] is closed.
async fn read_connection<C: Clock>(
    mut stream: TcpStream,
    parse: ParseLine,
    bad_lines: BadLines,
    ctx: ListenerContext<C>,
) {
    let bad = || Stats::add(bad_lines(&ctx.stats), 1);
    let mut buf = Vec::with_capacity(READ_CHUNK + MAX_LINE);
    let mut lines = LineSplitter::new(MAX_LINE);
    let mut events = Vec::with_capacity(BATCH);
    let mut pending = None;
    let mut deadline = Instant::now() + IDLE_TIMEOUT;
    let ended = loop {
        buf.reserve(READ_CHUNK);
        let read = tokio::select! {
            r = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => r,
            _ = ctx.shutdown.cancelled() => break Ended::Closed,
        };
        match read {
            Ok(Ok(0) | Err(_)) => break Ended::Input,
            Err(_idle) => {
                tracing::debug!(timeout = ?IDLE_TIMEOUT, "no complete line for too long; connection closed");
                break Ended::Closed;
            }
            Ok(Ok(_)) => {}
        }
        let now = ctx.clock.now();
        let mut pos = 0;
        while let Some(line) = lines.next(&buf, &mut pos) {
            if !take_line(line, now, &parse, &mut events) {
                bad();
            }
            if events.len() >= BATCH
                && hand_over(&ctx.ingest, &mut events, &mut pending)
                    .await
                    .is_err()
            {
                return;
            }
        }
        if pos > 0 {
            deadline = Instant::now() + IDLE_TIMEOUT;
        }
        lines.keep_unfinished(&mut buf, pos);
        if hand_over(&ctx.ingest, &mut events, &mut pending)
            .await
            .is_err()
        {
            return;
        }
    };
    if matches!(ended, Ended::Input) && (lines.ended_in_long_line() || !is_blank(&buf)) {
        bad();
    }
    if hand_over(&ctx.ingest, &mut events, &mut pending)
        .await
        .is_ok()
    {
        if let Some(last) = pending {
            let _ = last.answer().await;
        }
    }
}

/// Parses a complete line into `events`; false for a bad one. Blank lines are skipped.
fn take_line(line: Line<'_>, now: EpochMillis, parse: &ParseLine, events: &mut Vec<Event>) -> bool {
    match line {
        Line::TooLong => false,
        Line::Text(bytes) => match std::str::from_utf8(bytes) {
            Ok(text) => text.trim().is_empty() || parse(text, now, events),
            Err(_) => false,
        },
    }
}

fn is_blank(bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_ok_and(|text| text.trim().is_empty())
}

/// Queues `events` (if any) once the batch queued before is taken, leaving its answer in
/// `pending`.
async fn hand_over(
    ingest: &IngestHandle,
    events: &mut Vec<Event>,
    pending: &mut Option<Pending>,
) -> Result<(), SubmitError> {
    if events.is_empty() {
        return Ok(());
    }
    if let Some(before) = pending.take() {
        before.answer().await?;
    }
    let batch = std::mem::replace(events, Vec::with_capacity(BATCH));
    *pending = ingest.queue_waiting(batch, false).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line `splitter` finds when `input` arrives in reads of `chunk` bytes, and the
    /// unfinished rest at the end.
    fn split(input: &[u8], chunk: usize, max: usize) -> (Vec<Option<String>>, Vec<u8>, bool) {
        let mut splitter = LineSplitter::new(max);
        let (mut buf, mut found) = (Vec::new(), Vec::new());
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            let mut pos = 0;
            while let Some(line) = splitter.next(&buf, &mut pos) {
                found.push(match line {
                    Line::Text(t) => Some(String::from_utf8(t.to_vec()).unwrap()),
                    Line::TooLong => None,
                });
            }
            splitter.keep_unfinished(&mut buf, pos);
            assert!(buf.len() <= max, "never more than a line's limit kept");
        }
        let long = splitter.ended_in_long_line();
        (found, buf, long)
    }

    #[test]
    fn lines_are_bounded_and_long_ones_skipped_whatever_the_reads() {
        let input = format!(
            "short\r\n{}\nafter\n\n{}\nlast",
            "x".repeat(5000),
            "y".repeat(100)
        );
        for chunk in [1, 7, 100, 101, 4096, 100_000] {
            let (found, rest, long) = split(input.as_bytes(), chunk, 100);
            assert_eq!(
                found,
                [
                    Some("short".into()),
                    None,
                    Some("after".into()),
                    Some(String::new()),
                    Some("y".repeat(100))
                ],
                "reads of {chunk} bytes"
            );
            assert_eq!(
                (rest.as_slice(), long),
                (&b"last"[..], false),
                "reads of {chunk}"
            );
        }
        let (found, rest, long) = split(format!("a\n{}", "z".repeat(300)).as_bytes(), 64, 100);
        assert_eq!(
            (found, rest.is_empty(), long),
            (vec![Some("a".into())], true, true)
        );
        let (found, _, _) = split(format!("{}\r\n", "w".repeat(100)).as_bytes(), 50, 100);
        assert_eq!(
            found,
            [None],
            "the limit counts a \\r before the newline, as it always did"
        );
    }
}
