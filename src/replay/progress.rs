//! How far a replay is: bytes read of the input (counted by [`Counted`] as the parser consumes
//! them), events, events per second and, when the input's size is known, the time left. Shown
//! as a progress bar (the `indicatif` crate) on a terminal, as a plain line every
//! [`LINE_EVERY`] otherwise (logs, pipes), or not at all (tests, libraries).

use std::io::{BufRead, Read};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Nothing is printed.
    #[default]
    Off,
    /// A bar redrawn in place on stderr (a terminal).
    Bar,
    /// A line on stderr every [`LINE_EVERY`] and at the end of each phase.
    Lines,
}

/// How often a plain progress line is printed: often enough to see a long replay move, rarely
/// enough not to flood a log.
pub const LINE_EVERY: Duration = Duration::from_secs(10);

/// Events between two looks at the clock: reading it per event would cost more than parsing.
const EVENTS_PER_LOOK: u64 = 4096;

/// A reader that counts the bytes consumed from it.
pub struct Counted<R> {
    inner: R,
    bytes: Arc<AtomicU64>,
}

impl<R> Counted<R> {
    pub fn new(inner: R, bytes: Arc<AtomicU64>) -> Self {
        Self { inner, bytes }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bytes.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl<R: BufRead> BufRead for Counted<R> {
    fn fill_buf(&mut self) -> std::io::Result<&[u8]> {
        self.inner.fill_buf()
    }

    fn consume(&mut self, amount: usize) {
        self.bytes.fetch_add(amount as u64, Ordering::Relaxed);
        self.inner.consume(amount);
    }
}

/// The progress of one pass over the input ("validating", "writing").
pub struct Meter {
    phase: &'static str,
    total_bytes: Option<u64>,
    bytes: Arc<AtomicU64>,
    events: u64,
    started: Instant,
    last_line: Instant,
    mode: ProgressMode,
    bar: Option<indicatif::ProgressBar>,
}

impl Meter {
    pub fn new(phase: &'static str, total_bytes: Option<u64>, mode: ProgressMode) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| bar(phase, total_bytes));
        Self {
            phase,
            total_bytes,
            bytes: Arc::new(AtomicU64::new(0)),
            events: 0,
            started: Instant::now(),
            last_line: Instant::now(),
            mode,
            bar,
        }
    }

    /// The counter a [`Counted`] reader adds to.
    pub fn byte_counter(&self) -> Arc<AtomicU64> {
        self.bytes.clone()
    }

    /// One more event read.
    pub fn event(&mut self) {
        self.events += 1;
        if self.events % EVENTS_PER_LOOK == 0 {
            self.show();
        }
    }

    fn show(&mut self) {
        match self.mode {
            ProgressMode::Off => {}
            ProgressMode::Bar => self.draw_bar(false),
            ProgressMode::Lines => {
                if self.last_line.elapsed() >= LINE_EVERY {
                    self.last_line = Instant::now();
                    eprintln!("{}", self.line(self.bytes.load(Ordering::Relaxed), false));
                }
            }
        }
    }

    /// The end of the pass: the bar's last state, or a closing line.
    pub fn finish(self) {
        match self.mode {
            ProgressMode::Off => {}
            ProgressMode::Bar => self.draw_bar(true),
            ProgressMode::Lines => {
                eprintln!("{}", self.line(self.bytes.load(Ordering::Relaxed), true))
            }
        }
    }

    fn draw_bar(&self, done: bool) {
        let Some(bar) = &self.bar else { return };
        bar.set_position(self.bytes.load(Ordering::Relaxed));
        let message = format!("{} events", self.events);
        match done {
            true => bar.finish_with_message(message),
            false => bar.set_message(message),
        }
    }

    /// `replay: writing 41% (1.1 GiB of 2.7 GiB), 15 000 000 events, 410 000 events/s, 1m 12s left`
    fn line(&self, bytes: u64, done: bool) -> String {
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-3);
        let rate = self.events as f64 / elapsed;
        let mut out = format!("replay: {} ", self.phase);
        match self.total_bytes {
            Some(total) if total > 0 => out.push_str(&format!(
                "{}% ({} of {})",
                bytes.saturating_mul(100) / total,
                indicatif::HumanBytes(bytes),
                indicatif::HumanBytes(total)
            )),
            _ => out.push_str(&indicatif::HumanBytes(bytes).to_string()),
        }
        out.push_str(&format!(", {} events, {:.0} events/s", self.events, rate));
        if done {
            out.push_str(&format!(", done in {:.1} s", elapsed));
        } else if let Some(total) = self.total_bytes.filter(|&t| bytes > 0 && t > bytes) {
            let left = elapsed * (total - bytes) as f64 / bytes as f64;
            out.push_str(&format!(
                ", {} left",
                indicatif::HumanDuration(Duration::from_secs_f64(left))
            ));
        }
        out
    }
}

fn bar(phase: &'static str, total_bytes: Option<u64>) -> indicatif::ProgressBar {
    let bar = match total_bytes {
        Some(total) => indicatif::ProgressBar::new(total),
        None => indicatif::ProgressBar::new_spinner(),
    };
    let template = match total_bytes {
        Some(_) => "{prefix} [{bar:30}] {bytes}/{total_bytes} {msg} ({per_sec}, {eta} left)",
        None => "{prefix} {spinner} {bytes} {msg} ({bytes_per_sec})",
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("replay: {phase}"));
    bar.set_draw_target(indicatif::ProgressDrawTarget::stderr_with_hz(4));
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_counted_reader_counts_what_the_parser_consumed() {
        let bytes = Arc::new(AtomicU64::new(0));
        let mut reader = Counted::new(&b"one\ntwo\nthree"[..], bytes.clone());
        let mut line = String::new();
        reader.read_line(&mut line).unwrap();
        assert_eq!(bytes.load(Ordering::Relaxed), 4);
        let rest: Vec<String> = reader.lines().map(Result::unwrap).collect();
        assert_eq!(rest, ["two", "three"]);
        assert_eq!(bytes.load(Ordering::Relaxed), 13);
    }

    #[test]
    fn a_line_says_how_far_how_fast_and_how_long_is_left() {
        let mut meter = Meter::new("writing", Some(1000), ProgressMode::Off);
        meter.events = 200;
        meter.started = Instant::now() - Duration::from_secs(10);
        let line = meter.line(250, false);
        assert!(
            line.starts_with("replay: writing 25% (250 B of 1000 B), 200 events, 20 events/s"),
            "{line}"
        );
        assert!(line.ends_with("30 seconds left"), "{line}");
        let done = meter.line(1000, true);
        assert!(
            done.contains("100%") && done.contains("done in 10."),
            "{done}"
        );
    }
}
