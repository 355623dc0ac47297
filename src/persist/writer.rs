//! The bulk writer task: closed buckets in from a bounded channel, `_bulk` requests out, batched
//! by count, size and time. Each item's status decides its fate: 2xx written, 429 and 5xx retried
//! with exponential backoff, anything else counted as rejected and logged with the node's reason.
//! While it retries it stops reading its input, so a slow or absent node pushes back on ingest.

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::PersistConfig;
use crate::consolidate::Closed;
use crate::errors::Chain;
use crate::persist::backend::{BackendError, ItemStatus, SearchBackend};
use crate::persist::document::DocumentEncoder;
use crate::stats::Stats;

/// Encoded items waiting to be sent: an NDJSON body and where each item ends in it.
#[derive(Debug, Default)]
struct Batch {
    body: Vec<u8>,
    ends: Vec<usize>,
}

impl Batch {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn take(&mut self) -> Request {
        let ends = std::mem::take(&mut self.ends);
        let capacity = self.body.capacity();
        let body = std::mem::replace(&mut self.body, Vec::with_capacity(capacity));
        Request {
            body: Bytes::from(body),
            ends,
            attempt: 0,
        }
    }
}

/// One `_bulk` body, kept so that failed items can be cut out and sent again.
#[derive(Debug, Clone)]
struct Request {
    body: Bytes,
    ends: Vec<usize>,
    attempt: u32,
}

impl Request {
    fn item(&self, i: usize) -> Bytes {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.body.slice(start..self.ends[i])
    }

    /// A request of the chosen items only.
    fn subset(&self, items: &[usize], attempt: u32) -> Request {
        let mut body = BytesMut::new();
        let mut ends = Vec::with_capacity(items.len());
        for &i in items {
            body.extend_from_slice(&self.item(i));
            ends.push(body.len());
        }
        Request {
            body: body.freeze(),
            ends,
            attempt,
        }
    }
}

/// What to do after a `_bulk` answer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Done,
    /// Send these items again after a pause.
    Retry(Vec<usize>),
    /// The request was too large: send it in two halves.
    Split,
}

/// Sorts item statuses into written, retried and rejected.
fn judge_items(items: &[ItemStatus], stats: &Stats) -> Verdict {
    let mut retry = Vec::new();
    let mut logged = 0;
    for (i, item) in items.iter().enumerate() {
        match item.status {
            200..=299 => Stats::add(&stats.docs_written, 1),
            429 | 500..=599 => retry.push(i),
            status => {
                Stats::add(&stats.docs_rejected, 1);
                if logged < 3 {
                    logged += 1;
                    tracing::warn!(
                        status,
                        reason = item.error.as_deref().unwrap_or("none given"),
                        "node rejected a document; not retried"
                    );
                }
            }
        }
    }
    if retry.is_empty() {
        Verdict::Done
    } else {
        Verdict::Retry(retry)
    }
}

/// Batches documents and writes them with retries.
pub(crate) struct BulkWriter<B> {
    backend: Arc<B>,
    encoder: DocumentEncoder,
    cfg: PersistConfig,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    /// Set once shutdown starts: retries stop at this instant.
    give_up_at: Option<Instant>,
}

impl<B: SearchBackend> BulkWriter<B> {
    pub(crate) fn new(
        backend: Arc<B>,
        encoder: DocumentEncoder,
        cfg: PersistConfig,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            backend,
            encoder,
            cfg,
            stats,
            shutdown,
            give_up_at: None,
        }
    }

    /// Runs until `input` is closed and everything received has been written (or, after shutdown
    /// began, `shutdown_timeout` has passed).
    pub(crate) async fn run(mut self, mut input: mpsc::Receiver<Closed>) {
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                next = input.recv() => match next {
                    Some(closed) => {
                        self.add(&mut batch, &closed);
                        while batch.len() < self.cfg.batch_docs {
                            match input.try_recv() {
                                Ok(closed) => self.add(&mut batch, &closed),
                                Err(_) => break,
                            }
                        }
                        if self.is_full(&batch) {
                            self.write(batch.take()).await;
                            deadline = None;
                        } else if deadline.is_none() {
                            deadline = Some(Instant::now() + self.cfg.flush_interval);
                        }
                    }
                    None => break,
                },
                _ = sleep_until_opt(deadline) => {
                    self.write(batch.take()).await;
                    deadline = None;
                }
            }
        }
        if batch.len() > 0 {
            self.write(batch.take()).await;
        }
        tracing::debug!("bulk writer finished");
    }

    fn add(&mut self, batch: &mut Batch, closed: &Closed) {
        self.encoder.encode(closed, &mut batch.body);
        batch.ends.push(batch.body.len());
    }

    fn is_full(&self, batch: &Batch) -> bool {
        batch.len() >= self.cfg.batch_docs || batch.body.len() >= self.cfg.batch_bytes
    }

    /// Sends `request` until every item is written, rejected, or given up at shutdown.
    async fn write(&mut self, request: Request) {
        let mut queue = vec![request];
        while let Some(req) = queue.pop() {
            if req.ends.is_empty() {
                continue;
            }
            Stats::add(&self.stats.bulk_requests, 1);
            let verdict = match self.backend.bulk(req.body.clone()).await {
                Ok(items) if items.len() == req.ends.len() => judge_items(&items, &self.stats),
                Ok(items) => {
                    self.note_failure(format!(
                        "_bulk answered {} items for {} sent",
                        items.len(),
                        req.ends.len()
                    ));
                    Verdict::Retry((0..req.ends.len()).collect())
                }
                Err(e) if e.status() == Some(413) => Verdict::Split,
                Err(
                    e @ BackendError::Status {
                        status: 400..=428 | 430..=499,
                        ..
                    },
                ) => {
                    Stats::add(&self.stats.docs_rejected, req.ends.len() as u64);
                    tracing::error!(error = %Chain(&e), docs = req.ends.len(), "node refused a whole _bulk request; not retried");
                    Verdict::Done
                }
                Err(e) => {
                    self.note_failure(Chain(&e).to_string());
                    Verdict::Retry((0..req.ends.len()).collect())
                }
            };
            match verdict {
                Verdict::Done => self.stats.set_last_error(None),
                Verdict::Split if req.ends.len() == 1 => {
                    Stats::add(&self.stats.docs_rejected, 1);
                    tracing::error!(
                        bytes = req.body.len(),
                        "node refused a single document as too large"
                    );
                }
                Verdict::Split => {
                    let half = req.ends.len() / 2;
                    let all: Vec<usize> = (0..req.ends.len()).collect();
                    queue.push(req.subset(&all[half..], req.attempt));
                    queue.push(req.subset(&all[..half], req.attempt));
                }
                Verdict::Retry(items) => {
                    Stats::add(&self.stats.docs_retried, items.len() as u64);
                    if self.back_off(req.attempt).await {
                        queue.push(req.subset(&items, req.attempt + 1));
                    } else {
                        let lost = items.len() + queue.iter().map(|r| r.ends.len()).sum::<usize>();
                        Stats::add(&self.stats.docs_dropped, lost as u64);
                        tracing::error!(docs = lost, "shutdown timeout reached while the node kept failing: documents not written");
                        return;
                    }
                }
            }
        }
    }

    fn note_failure(&self, message: String) {
        tracing::warn!(error = %message, "_bulk failed; will retry");
        self.stats.set_last_error(Some(message));
    }

    /// Waits before retry number `attempt + 1`; false once shutdown's deadline has passed.
    async fn back_off(&mut self, attempt: u32) -> bool {
        let delay = backoff_delay(self.cfg.retry_initial, self.cfg.retry_max, attempt);
        if let Some(give_up_at) = self.give_up_at {
            let now = Instant::now();
            if now >= give_up_at {
                return false;
            }
            tokio::time::sleep(delay.min(give_up_at - now)).await;
            return true;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = self.shutdown.cancelled() => {
                self.give_up_at = Some(Instant::now() + self.cfg.shutdown_timeout);
            }
        }
        true
    }
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `initial · 2^attempt`, capped at `max`.
pub(crate) fn backoff_delay(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial.saturating_mul(1u32 << attempt.min(20)).min(max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let (i, m) = (Duration::from_millis(100), Duration::from_secs(1));
        let got: Vec<u128> = (0..6).map(|a| backoff_delay(i, m, a).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 400, 800, 1000, 1000]);
        assert_eq!(backoff_delay(i, m, 1000), m);
    }

    #[test]
    fn items_are_sorted_by_status() {
        let stats = Stats::default();
        let st = |status| ItemStatus {
            status,
            error: Some("x".into()),
        };
        let verdict = judge_items(&[st(201), st(429), st(400), st(503), st(200)], &stats);
        assert_eq!(verdict, Verdict::Retry(vec![1, 3]));
        let s = stats.snapshot();
        assert_eq!((s.docs_written, s.docs_rejected), (2, 1));
    }

    #[test]
    fn subsets_cut_whole_items() {
        let req = Request {
            body: Bytes::from_static(b"a\nA\nb\nB\nc\nC\n"),
            ends: vec![4, 8, 12],
            attempt: 0,
        };
        let sub = req.subset(&[0, 2], 1);
        assert_eq!(&sub.body[..], b"a\nA\nc\nC\n");
        assert_eq!(sub.ends, vec![4, 8]);
    }

    // The decisions above on canned `_bulk` answers, with tokio's clock paused: backoff and the
    // shutdown deadline pass in virtual time.

    use std::path::Path;

    use crate::config::Config;
    use crate::consolidate::{ArchiveSpec, Consolidator};
    use crate::event::{Event, MetricKind, SeriesKey};
    use crate::persist::canned::{item, status_error, CannedBackend};

    const CONFIG: &str = r#"
[node]
url = "http://127.0.0.1:9200"
[[archive]]
name = "20s"
step = "20s"
retention = "1 day"
index_period = "day"
[persist]
batch_docs = 4
flush_interval = "1s"
retry_initial = "100ms"
retry_max = "1s"
shutdown_timeout = "2s"
"#;

    fn config() -> Config {
        Config::from_toml(CONFIG, Path::new("t")).unwrap()
    }

    /// `n` closed buckets of `n` series.
    fn closed(n: usize) -> Vec<Closed> {
        let spec = ArchiveSpec {
            step_ms: 20_000,
            lateness_ms: 0,
            sketches: false,
        };
        let mut consolidator = Consolidator::new(&[spec], 1000);
        let events: Vec<Event> = (0..n)
            .map(|i| {
                let name = format!("s{i}");
                Event::value(
                    SeriesKey::new(&name, None, &mut []),
                    MetricKind::Gauge,
                    1.0,
                    0,
                )
            })
            .collect();
        consolidator.record_batch(&events).unwrap();
        let mut out = Vec::new();
        consolidator.flush_all(&mut out);
        out
    }

    struct Run {
        backend: Arc<CannedBackend>,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
        input: mpsc::Sender<Closed>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start(backend: CannedBackend) -> Run {
        let config = config();
        let backend = Arc::new(backend);
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let writer = BulkWriter::new(
            backend.clone(),
            DocumentEncoder::new(&config),
            config.persist.clone(),
            stats.clone(),
            shutdown.clone(),
        );
        let (input, rx) = mpsc::channel(16);
        Run {
            backend,
            stats,
            shutdown,
            input,
            task: tokio::spawn(writer.run(rx)),
        }
    }

    /// Sends `n` documents, closes the input and waits for the writer to finish.
    async fn write_all(backend: CannedBackend, n: usize) -> (Arc<CannedBackend>, Arc<Stats>) {
        let run = start(backend);
        for c in closed(n) {
            run.input.send(c).await.unwrap();
        }
        drop(run.input);
        run.task.await.unwrap();
        (run.backend, run.stats)
    }

    fn items_in(body: &Bytes) -> usize {
        body.split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            / 2
    }

    /// The document lines of `body` (every second line).
    fn documents(body: &Bytes) -> Vec<Bytes> {
        let lines: Vec<&[u8]> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        lines
            .chunks(2)
            .map(|pair| Bytes::copy_from_slice(pair[1]))
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn each_item_is_written_retried_or_rejected_by_its_own_status() {
        let backend =
            CannedBackend::answering_bulk([Ok(vec![item(201), item(429), item(400), item(503)])]);
        let (backend, stats) = write_all(backend, 4).await;
        let bodies = backend.bulk_bodies();
        assert_eq!(bodies.iter().map(items_in).collect::<Vec<_>>(), [4, 2]);
        let (first, retried) = (documents(&bodies[0]), documents(&bodies[1]));
        assert_eq!(
            retried,
            [first[1].clone(), first[3].clone()],
            "only the 429 and the 503 again"
        );
        let s = stats.snapshot();
        assert_eq!(
            (
                s.docs_written,
                s.docs_rejected,
                s.docs_retried,
                s.docs_dropped
            ),
            (3, 1, 2, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_413_halves_the_request_until_a_single_document_is_refused() {
        let backend = CannedBackend::answering_bulk([
            Err(status_error("_bulk", 413)),
            Ok(vec![item(201), item(201)]),
            Err(status_error("_bulk", 413)),
            Ok(vec![item(201)]),
            Err(status_error("_bulk", 413)),
        ]);
        let (backend, stats) = write_all(backend, 4).await;
        let sizes: Vec<usize> = backend.bulk_bodies().iter().map(items_in).collect();
        assert_eq!(sizes, [4, 2, 2, 1, 1]);
        let s = stats.snapshot();
        assert_eq!((s.docs_written, s.docs_rejected, s.docs_retried), (3, 1, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_refused_whole_with_a_4xx_is_rejected_not_retried() {
        let backend = CannedBackend::answering_bulk([Err(status_error("_bulk", 400))]);
        let (backend, stats) = write_all(backend, 3).await;
        assert_eq!(backend.bulk_bodies().len(), 1);
        let s = stats.snapshot();
        assert_eq!((s.docs_written, s.docs_rejected, s.docs_retried), (0, 3, 0));
    }

    #[tokio::test(start_paused = true)]
    async fn an_answer_with_the_wrong_item_count_is_sent_again_whole() {
        let backend = CannedBackend::answering_bulk([Ok(vec![item(201)])]);
        let (backend, stats) = write_all(backend, 3).await;
        let sizes: Vec<usize> = backend.bulk_bodies().iter().map(items_in).collect();
        assert_eq!(sizes, [3, 3]);
        let s = stats.snapshot();
        assert_eq!((s.docs_written, s.docs_retried), (3, 3));
    }

    #[tokio::test(start_paused = true)]
    async fn retries_back_off_exponentially_up_to_the_cap() {
        let backend =
            CannedBackend::answering_bulk((0..5).map(|_| Err(status_error("_bulk", 503))));
        let started = Instant::now();
        let (backend, stats) = write_all(backend, 1).await;
        assert_eq!(backend.bulk_bodies().len(), 6);
        // 100 + 200 + 400 + 800 + 1000 ms of backoff (the closed input flushed at once).
        assert_eq!(started.elapsed(), Duration::from_millis(2500));
        assert_eq!(stats.snapshot().docs_written, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn at_shutdown_retries_stop_after_the_timeout_and_what_is_left_is_counted_dropped() {
        let backend = CannedBackend::default();
        *backend.bulk_failing.lock().unwrap() = Some(503);
        let run = start(backend);
        for c in closed(4) {
            run.input.send(c).await.unwrap();
        }
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(
            !run.task.is_finished(),
            "a failing node is retried for as long as strata runs"
        );
        let cancelled_at = Instant::now();
        run.shutdown.cancel();
        drop(run.input);
        run.task.await.unwrap();
        let waited = cancelled_at.elapsed();
        assert!(
            waited >= Duration::from_secs(2) && waited <= Duration::from_secs(3),
            "gave up {waited:?} after the signal, shutdown_timeout is 2 s"
        );
        let s = run.stats.snapshot();
        assert_eq!((s.docs_written, s.docs_dropped), (0, 4));
    }
}
