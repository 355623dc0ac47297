//! The async shell around the pure core: the consolidator task, the channels between stages, and
//! `serve`, which starts every task and stops them in order.
//!
//! ```text
//! HTTP handler --(IngestBatch, bounded)--> consolidator task --(Closed, bounded)--> bulk writer --> node
//! ```
//! A full stage pushes back: the writer stops reading while it retries, the consolidator then
//! waits to hand over closed buckets, its input fills, and the HTTP handler answers 503.
//! Late buckets take the same channel: the consolidator hands its late table on every tick (or
//! as soon as it holds [`LATE_TABLE_MAX`] buckets), and the writer merges them.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::{Config, NoNode};
use crate::consolidate::{ArchiveSpec, BatchReport, Closed, ConsolidateError, Consolidator};
use crate::durable::log::Committed;
use crate::errors::Chain;
use crate::ingest::context::ListenerContext;
use crate::ingest::handle::{
    ingest_channel, Congestion, IngestBatch, IngestHandle, Request, SubmitError,
};
use crate::ingest::http::{router, AppState};
use crate::ingest::listeners::{at, start_listeners, ListenError};
use crate::maintain::plan::retention_horizons;
use crate::maintain::run::run_scheduled;
use crate::persist::backend::{BackendError, HttpBackend, SearchBackend};
use crate::persist::document::DocumentEncoder;
use crate::persist::template::index_template;
use crate::persist::writer::BulkWriter;
use crate::stats::{Protocol, Stats};
pub use crate::tasks::control::TaskControl;
use crate::tasks::feed::{task_feed, NameIndex, TaskFeed};

mod backlog;
mod journal;
mod tasks;
use backlog::Backlog;
pub use journal::DurableError;
use journal::{apply_events, apply_shutdown, apply_tick, Input, Journal};

/// Why the service could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    NoNode(#[from] NoNode),
    #[error(transparent)]
    Token(#[from] crate::access::TokenError),
    #[error(transparent)]
    Preflight(#[from] crate::config::PreflightError),
    #[error("the node refused strata's credentials; check [node] username, password or api_key")]
    Refused(#[source] BackendError),
    #[error("the node's TLS certificate was not accepted ({0}); set [node] ca_file to the PEM of the CA that signed it, and use the host name or address the certificate names")]
    Untrusted(String),
    #[error("{0} document(s) could not be written before persist.shutdown_timeout; see the log")]
    Dropped(u64),
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error(transparent)]
    Listen(#[from] ListenError),
    #[error("a task of the service panicked")]
    Panicked(#[source] tokio::task::JoinError),
    #[error("stopped before the node became reachable")]
    StoppedWaiting,
    #[error(transparent)]
    Durable(#[from] DurableError),
}

/// A fresh consolidator for the configured archives and bounds.
pub fn new_consolidator(config: &Config) -> Consolidator {
    Consolidator::new(&archive_specs(config), config.consolidate.max_series)
        .with_max_tag_keys(config.consolidate.max_tag_keys)
}

/// The consolidator specs of the configured archives.
pub fn archive_specs(config: &Config) -> Vec<ArchiveSpec> {
    config
        .archives
        .iter()
        .map(|a| ArchiveSpec {
            step_ms: a.step.as_millis() as i64,
            lateness_ms: a.lateness.as_millis() as i64,
            sketches: !a.percentiles.is_empty(),
        })
        .collect()
}

/// Late buckets held before they are handed on without waiting for the tick. Each hand-over is
/// one read-merge-write per bucket, so the table should hold a whole backfill's spread: with
/// 16 384, a million late events spread over 100 000 buckets were merged one event at a time
/// (5 700 events/s, see BENCHMARKS.md). A bucket takes about 170 bytes here (a sketched one up
/// to a few KiB more), so the table stays around 22 MiB.
pub const LATE_TABLE_MAX: usize = 131_072;

/// Owns the [`Consolidator`]: records batches, closes due buckets and hands on the late table on
/// every tick, and on end of input closes everything it holds and hands it to the writer. With
/// a [`Journal`], every input goes to the write-ahead log first and is applied (and answered)
/// once the log holds it, in log order.
pub struct ConsolidatorTask<C> {
    consolidator: Consolidator,
    config: Arc<Config>,
    input: mpsc::Receiver<Request>,
    input_open: bool,
    output: mpsc::Sender<Closed>,
    clock: Arc<C>,
    stats: Arc<Stats>,
    /// Set while the writer's queue is full; the handles then refuse new batches as busy.
    congestion: Congestion,
    journal: Option<Journal>,
    /// Buckets closed while waiting for the writer (without a journal, a batch recorded then
    /// may hand the late table on): sent with the hand-over under way.
    held: Vec<Closed>,
    /// Where closed buckets wait when the writer's queue is full (with a data directory).
    backlog: Option<Backlog>,
    /// The stream tasks' door (`None` without an enabled stream task).
    feed: Option<TaskFeed>,
}

impl<C: Clock> ConsolidatorTask<C> {
    pub async fn run(mut self, tick: Duration) {
        let mut closed = Vec::new();
        let mut ticker = tokio::time::interval(tick);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let every = self
            .journal
            .as_ref()
            .map_or(Duration::from_secs(3600), |j| j.checkpoint_every);
        let mut checkpoints = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let journaled = self.journal.is_some();
        while self.input_open {
            tokio::select! {
                next = self.input.recv() => match next {
                    Some(request) => {
                        if !self.take(request, &mut closed).await {
                            return;
                        }
                    }
                    None => self.input_open = false,
                },
                _ = ticker.tick() => {
                    let now = self.clock.now();
                    if !self.submit(Input::Tick(now), &mut closed).await {
                        return;
                    }
                    self.report_gauges();
                    Stats::set(&self.stats.buckets_late, self.consolidator.late_buckets() as u64);
                    Stats::set(&self.stats.tag_keys, self.consolidator.tag_keys() as u64);
                    if let Some(j) = &self.journal {
                        Stats::set(&self.stats.data_dir_bytes, j.disk.load(std::sync::atomic::Ordering::Relaxed));
                    }
                }
                Some(committed) = committed(&mut self.journal), if journaled => {
                    if let Some(j) = self.journal.as_mut() {
                        j.note(committed);
                    }
                    if !self.apply_ready(&mut closed).await {
                        return;
                    }
                }
                _ = checkpoints.tick(), if journaled => {
                    if let Some(j) = self.journal.as_mut() {
                        j.checkpoint(&self.consolidator);
                    }
                }
            }
        }
        self.submit(Input::Shutdown, &mut closed).await;
        self.finish_journal(&mut closed).await;
        if let Some(backlog) = &self.backlog {
            backlog.finish();
        }
        Stats::set(&self.stats.series_active, 0);
        Stats::set(&self.stats.buckets_open, 0);
        tracing::info!("consolidator closed every open bucket");
    }

    /// Applies what still waits for the log, then takes a last checkpoint (of the state after
    /// the shutdown record) so that the next start replays nothing once the node holds all.
    async fn finish_journal(&mut self, closed: &mut Vec<Closed>) {
        while self.journal.as_ref().is_some_and(Journal::has_waiting) {
            let Some(c) = committed(&mut self.journal).await else {
                tracing::error!("the log thread stopped: inputs not applied");
                return;
            };
            if let Some(j) = self.journal.as_mut() {
                j.note(c);
            }
            if !self.apply_ready(closed).await {
                return;
            }
        }
        if let Some(j) = self.journal.as_mut() {
            j.checkpoint(&self.consolidator);
        }
    }

    /// Takes one request from the input. False if the writer is gone.
    async fn take(&mut self, request: Request, closed: &mut Vec<Closed>) -> bool {
        match request {
            Request::Ingest(batch) => self.submit(Input::Batch(batch), closed).await,
            Request::Live(live) => {
                let _ = live.reply.send(
                    self.consolidator
                        .open_series(live.name.as_deref(), live.limit),
                );
                true
            }
        }
    }

    /// Applies `input` at once without a journal; with one, appends it to the log (it is
    /// applied when the log says it is durable). False if the writer is gone.
    async fn submit(&mut self, input: Input, closed: &mut Vec<Closed>) -> bool {
        let Some(journal) = self.journal.as_mut() else {
            self.apply(input, closed);
            return self.hand_over(closed, 0).await;
        };
        if let Err(input) = journal.append(input).await {
            tracing::error!("the log thread stopped: input refused");
            self.refuse(input, "the log thread stopped".into());
        }
        true
    }

    /// Applies every input the log now holds, in order, and hands on what each closes.
    async fn apply_ready(&mut self, closed: &mut Vec<Closed>) -> bool {
        loop {
            let Some((seq, ready)) = self.journal.as_mut().and_then(Journal::next_ready) else {
                return true;
            };
            match ready {
                Ok(input) => {
                    self.apply(input, closed);
                    if !self.hand_over(closed, seq).await {
                        return false;
                    }
                }
                Err((input, why)) => self.refuse(input, why),
            }
        }
    }

    fn apply(&mut self, input: Input, closed: &mut Vec<Closed>) {
        match input {
            Input::Batch(batch) => self.record(batch, closed),
            Input::Tick(now) => apply_tick(&mut self.consolidator, &self.config, now, closed),
            Input::Shutdown => apply_shutdown(&mut self.consolidator, closed),
        }
    }

    /// Answers an input the log could not take: nothing of it was applied.
    fn refuse(&self, input: Input, why: String) {
        if let Input::Batch(batch) = input {
            let n = batch.events.len() as u64;
            Stats::add(&self.stats.events_unlogged, n);
            match batch.reply {
                Some(reply) => {
                    let _ = reply.send(Err(SubmitError::Unlogged(why)));
                }
                None => self.stats.count_udp_dropped(batch.protocol, n),
            }
        }
    }

    /// The gauges read at each tick: series, open buckets (per archive too), queue depths.
    fn report_gauges(&self) {
        let stats = &self.stats;
        Stats::set(
            &stats.series_active,
            self.consolidator.active_series() as u64,
        );
        let per_archive = self.consolidator.open_buckets_per_archive();
        Stats::set(
            &stats.buckets_open,
            per_archive.iter().sum::<usize>() as u64,
        );
        stats.set_buckets_open_by_archive(
            self.config
                .archives
                .iter()
                .zip(per_archive)
                .map(|(a, n)| (a.name.clone(), n as u64))
                .collect(),
        );
        Stats::set(&stats.ingest_queue_batches, self.input.len() as u64);
        let writer_queue = self.output.max_capacity() - self.output.capacity();
        Stats::set(&stats.writer_queue_docs, writer_queue as u64);
    }

    fn record(&mut self, batch: IngestBatch, closed: &mut Vec<Closed>) {
        let (result, refusal) =
            apply_events(&mut self.consolidator, &batch.events, batch.whole, closed);
        if let Ok(report) = &result {
            if let Some(feed) = &self.feed {
                feed.offer(&batch.events);
            }
            let by_protocol = self.stats.protocol(batch.protocol);
            Stats::add(&self.stats.events_accepted, report.accepted);
            Stats::add(&self.stats.events_merged, report.merged);
            Stats::add(&self.stats.events_expired, report.expired);
            Stats::add(&by_protocol.accepted, report.accepted);
            Stats::add(&by_protocol.late, report.merged);
            Stats::add(&by_protocol.expired, report.expired);
            if let Some(refusal) = refusal {
                self.count_refused(report, refusal, batch.reply.is_none(), batch.protocol);
            }
        }
        if let Err(e) = &result {
            self.count_refused_whole(e, batch.events.len() as u64, batch.protocol);
        }
        if let Some(reply) = batch.reply {
            let _ = reply.send(result.map_err(SubmitError::from));
        }
    }

    /// Counts the events of a batch refused whole (its sender is told why) for `protocol`.
    fn count_refused_whole(&self, refusal: &ConsolidateError, events: u64, protocol: Protocol) {
        let by_protocol = self.stats.protocol(protocol);
        let counter = match refusal {
            ConsolidateError::SeriesLimit { .. } => &by_protocol.refused_series_limit,
            ConsolidateError::KindConflict { .. } => &by_protocol.refused_type,
            ConsolidateError::TagKeyLimit { .. } => &by_protocol.refused_tag_keys,
        };
        Stats::add(counter, events);
    }

    /// Counts the events refused one by one (at the series or tag key limit, or for their
    /// type; as `udp_dropped` too when `udp`) and logs them at the rate limit of bad input.
    fn count_refused(
        &self,
        report: &BatchReport,
        refusal: ConsolidateError,
        udp: bool,
        protocol: Protocol,
    ) {
        let series_limit = report.refused - report.refused_type - report.refused_tag_keys;
        Stats::add(&self.stats.events_refused_type, report.refused_type);
        Stats::add(&self.stats.events_refused_tag_keys, report.refused_tag_keys);
        Stats::add(&self.stats.events_refused_series_limit, series_limit);
        let by_protocol = self.stats.protocol(protocol);
        Stats::add(&by_protocol.refused_type, report.refused_type);
        Stats::add(&by_protocol.refused_tag_keys, report.refused_tag_keys);
        Stats::add(&by_protocol.refused_series_limit, series_limit);
        if udp {
            self.stats.count_udp_dropped(protocol, report.refused);
        }
        let what = format!(
            "{refusal} ({} events of this batch refused)",
            report.refused
        );
        crate::ingest::badlog::SERIES_LIMIT.report(self.clock.now(), &what, "");
    }

    /// Sends every closed bucket to the writer, stamped with the log position `seq` that closed
    /// it. While the writer's queue is full it keeps taking requests (without a journal it
    /// records them, so requests already queued get their answer; with one it appends them),
    /// and new ones see the congestion and get 503. False if the writer is gone.
    async fn hand_over(&mut self, closed: &mut Vec<Closed>, seq: u64) -> bool {
        if closed.is_empty() {
            return true;
        }
        if let Some(j) = &self.journal {
            j.ledger.handed(seq, closed.len() as u64);
        }
        loop {
            let mut pending = std::mem::take(closed);
            for mut c in pending.drain(..) {
                c.seq = seq;
                let c = match self.spill(c) {
                    Ok(()) => continue,
                    Err(backlog::Offer::WriterGone) => return self.writer_gone(),
                    Err(backlog::Offer::Wait(c)) => *c,
                };
                let permit = match self.output.clone().try_reserve_owned() {
                    Ok(permit) => permit,
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        self.congestion.set(true);
                        match self.wait_for_room().await {
                            Some(permit) => permit,
                            None => return self.writer_gone(),
                        }
                    }
                    Err(mpsc::error::TrySendError::Closed(_)) => return self.writer_gone(),
                };
                permit.send(c);
            }
            *closed = pending;
            if self.held.is_empty() {
                break;
            }
            std::mem::swap(closed, &mut self.held);
        }
        self.congestion.set(false);
        true
    }

    /// With a backlog: sends `c` to the writer if nothing waits and its queue has room, else
    /// adds it to the backlog. Without one (or if the backlog cannot write), `c` comes back to
    /// wait for room.
    fn spill(&mut self, c: Closed) -> Result<(), backlog::Offer> {
        match &self.backlog {
            Some(backlog) => backlog::offer(backlog, &self.output, c, self.clock.now()),
            None => Err(backlog::Offer::Wait(Box::new(c))),
        }
    }

    async fn wait_for_room(&mut self) -> Option<mpsc::OwnedPermit<Closed>> {
        loop {
            tokio::select! {
                biased;
                permit = self.output.clone().reserve_owned() => return permit.ok(),
                next = self.input.recv(), if self.input_open => match next {
                    Some(request) => self.take_while_waiting(request).await,
                    None => self.input_open = false,
                },
            }
        }
    }

    /// A request that came while the writer is full: answered from the state (`/v1/live`),
    /// appended to the log, or recorded at once without a journal (what that closes waits for
    /// the next hand-over).
    async fn take_while_waiting(&mut self, request: Request) {
        match request {
            Request::Ingest(batch) => match self.journal.as_mut() {
                Some(j) => {
                    if let Err(input) = j.append(Input::Batch(batch)).await {
                        self.refuse(input, "the log thread stopped".into());
                    }
                }
                None => {
                    let mut held = std::mem::take(&mut self.held);
                    self.record(batch, &mut held);
                    self.held = held;
                }
            },
            Request::Live(live) => {
                let _ = live.reply.send(
                    self.consolidator
                        .open_series(live.name.as_deref(), live.limit),
                );
            }
        }
    }

    fn writer_gone(&self) -> bool {
        tracing::error!("bulk writer stopped before the consolidator: closed buckets lost");
        false
    }
}

/// The log thread's next report, or never without a journal.
async fn committed(journal: &mut Option<Journal>) -> Option<Committed> {
    match journal {
        Some(j) => j.committed().await,
        None => std::future::pending().await,
    }
}

/// `url` without the `user:password@` a user may have written into it, for logs.
fn without_credentials(url: &str) -> std::borrow::Cow<'_, str> {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.into();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://…@{}", &rest[at + 1..]).into(),
        None => url.into(),
    }
}

/// Fails for an error that says the configuration is wrong rather than the node away: it
/// refused the credentials (401, 403) or TLS refused its certificate.
fn not_mendable_by_waiting(e: BackendError) -> Result<BackendError, ServeError> {
    if matches!(e.status(), Some(401 | 403)) {
        return Err(ServeError::Refused(e));
    }
    match e.certificate_refused() {
        Some(why) => Err(ServeError::Untrusted(why)),
        None => Ok(e),
    }
}

/// Waits until the node answers, logging while it does not; gives up only on shutdown, or on
/// an error waiting cannot mend (see [`not_mendable_by_waiting`]).
pub async fn wait_for_node<B: SearchBackend>(
    backend: &B,
    shutdown: &CancellationToken,
) -> Result<(), ServeError> {
    let mut delay = Duration::from_millis(250);
    loop {
        match backend.info().await {
            Ok(info) => {
                tracing::info!(distribution = %info.distribution, version = %info.version, "node reachable");
                return Ok(());
            }
            Err(e) => {
                let e = not_mendable_by_waiting(e)?;
                tracing::warn!(error = %Chain(&e), retry_in = ?delay, "waiting for the node")
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return Err(ServeError::StoppedWaiting),
        }
        delay = (delay * 2).min(Duration::from_secs(5));
    }
}

/// Where the write side of the pipeline sends closed buckets, and the tasks behind it.
pub struct WritePath {
    pub closed: mpsc::Sender<Closed>,
    pub writer: JoinHandle<()>,
    /// The node answered at start (the template is installed).
    pub node_answered: bool,
}

/// What the writer needs of the log: its id (stamped in documents), the ledger it acknowledges
/// buckets in, and the first position of this run (buckets before it come from the replay).
pub(crate) struct WriterLog {
    pub log_id: u64,
    pub ledger: Arc<crate::durable::ledger::Ledger>,
    pub live_from: Arc<std::sync::atomic::AtomicU64>,
}

/// How long start-up tries to install the index template before leaving it to the writer.
const TEMPLATE_AT_START: Duration = Duration::from_secs(2);

/// Installs the index template if the node answers within [`TEMPLATE_AT_START`] (so indices
/// created from then on get it, as they did when start-up waited for the node), and starts
/// the bulk writer; when the node is away the writer installs the template before its first
/// write, closed buckets queue meanwhile, and a full queue pushes back on ingest. The writer
/// notifies `new_index` after its first write of this run to an index. A node that answers
/// 401 or 403, or whose certificate TLS refuses, is not away but misconfigured: that fails at
/// once.
pub(crate) async fn start_write_path<B: SearchBackend>(
    config: &Config,
    backend: Arc<B>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    new_index: Arc<Notify>,
    log: Option<WriterLog>,
) -> Result<WritePath, ServeError> {
    let (name, body) = (config.index.template.clone(), index_template(config));
    let installed =
        match tokio::time::timeout(TEMPLATE_AT_START, backend.put_index_template(&name, &body))
            .await
        {
            Ok(Ok(())) => true,
            // Refused credentials or certificate: a configuration error, not an outage.
            Ok(Err(e)) => {
                not_mendable_by_waiting(e)?;
                false
            }
            Err(_) => false,
        };
    if installed {
        tracing::info!(template = %name, pattern = %config.index.naming.wildcard(), "index template installed");
    } else {
        tracing::warn!(template = %name, "node not answering at start: listening anyway; the template is installed before the first write");
    }
    let (closed, closed_rx) = mpsc::channel(config.persist.queue_docs);
    let encoder = DocumentEncoder::new(config);
    let writer = match log {
        Some(log) => BulkWriter::new(
            backend,
            encoder.with_log(log.log_id),
            config.persist.clone(),
            stats,
            shutdown,
        )
        .acknowledging(log.ledger, log.live_from),
        None => BulkWriter::new(backend, encoder, config.persist.clone(), stats, shutdown),
    }
    .announcing_new_indices(new_index);
    let writer = if installed {
        writer
    } else {
        writer.installing_template(name, body)
    };
    Ok(WritePath {
        closed,
        writer: tokio::spawn(writer.run(closed_rx)),
        node_answered: installed,
    })
}

/// Starts the consolidator task on `consolidator` (fresh, or rebuilt by recovery); returns the
/// handle that feeds it. Without a journal it starts at the clock's now; with one, its first
/// tick goes through the log like every other input.
///
/// Buckets that ended before now may already be written by an earlier run: events for them go
/// to the late table and are merged. A bucket still open that an earlier run wrote at its
/// shutdown starts afresh here and is merged into that document when it closes (its `create`
/// meets the document).
#[allow(clippy::too_many_arguments)]
pub(crate) fn start_consolidator<C: Clock>(
    config: &Config,
    mut consolidator: Consolidator,
    journal: Option<Journal>,
    backlog: Option<Backlog>,
    clock: Arc<C>,
    closed: mpsc::Sender<Closed>,
    stats: Arc<Stats>,
    feed: Option<TaskFeed>,
) -> (IngestHandle, JoinHandle<()>) {
    if journal.is_none() {
        let now = clock.now();
        consolidator.set_horizons(&retention_horizons(config, now));
        consolidator.flush_due(now, &mut Vec::new());
    }
    let (handle, queue) = ingest_channel(config.consolidate.queue_batches);
    let task = ConsolidatorTask {
        consolidator,
        config: Arc::new(config.clone()),
        input: queue.requests,
        input_open: true,
        output: closed,
        clock,
        stats,
        congestion: queue.congestion,
        journal,
        held: Vec::new(),
        backlog,
        feed,
    };
    let task = tokio::spawn(task.run(config.consolidate.tick));
    (handle, task)
}

/// The durable side of a running service: what to finish after the writer at shutdown.
struct Durable {
    data: journal::DataDir,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Durable {
    /// Waits for the log and checkpoint threads, then makes the last checkpoint the restart
    /// point if the node holds everything before it.
    async fn finish(self) {
        let Durable { data, threads } = self;
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
            match crate::durable::checkpoint::housekeep(&data.dir, &data.ledger) {
                Ok(pass) => tracing::info!(restart_point = ?pass.promoted, outstanding = data.ledger.outstanding(), "log closed"),
                Err(e) => tracing::error!(error = %e, "last checkpoint housekeeping failed"),
            }
        })
        .await;
    }
}

/// Opens the data directory, restores the restart point and replays the log into the writer
/// (before any listener opens), and starts the journal after it.
async fn recover_and_start_journal<C: Clock>(
    config: &Config,
    data: journal::DataDir,
    closed: &mpsc::Sender<Closed>,
    backlog: &Backlog,
    clock: &C,
    live_from: &std::sync::atomic::AtomicU64,
) -> Result<(Consolidator, Journal, Durable), ServeError> {
    let started = std::time::Instant::now();
    let (cfg, sender, backlog) = (config.clone(), closed.clone(), backlog.clone());
    let now = clock.now();
    let (data, recovered) = tokio::task::spawn_blocking(move || {
        // With the node away the replay's buckets go to the backlog, so start-up does not wait
        // for the node.
        let hand = |c: Closed| match backlog::offer(&backlog, &sender, c, now) {
            Ok(()) => true,
            Err(backlog::Offer::WriterGone) => false,
            Err(backlog::Offer::Wait(c)) => sender.blocking_send(*c).is_ok(),
        };
        let recovered = journal::recover(&data, &cfg, hand);
        (data, recovered)
    })
    .await
    .map_err(ServeError::Panicked)?;
    let recovered = recovered?;
    let read = &recovered.read;
    if read.truncated_bytes > 0 {
        tracing::warn!(bytes = read.truncated_bytes, after_seq = read.last_seq, "the log ended in a torn or damaged record (a crash mid-write): cut off; it held only events nobody was told were kept");
    }
    tracing::info!(
        restart_point = recovered.from,
        records = read.records,
        buckets_closed = recovered.buckets,
        took_ms = started.elapsed().as_millis() as u64,
        "log replayed"
    );
    let next_seq = read.last_seq.max(recovered.from) + 1;
    live_from.store(next_seq, std::sync::atomic::Ordering::Relaxed);
    let (journal, log_thread, keeper_thread) = Journal::start(&data, config, next_seq)?;
    Ok((
        recovered.consolidator,
        journal,
        Durable {
            data,
            threads: vec![log_thread, keeper_thread],
        },
    ))
}

/// A running service: its address and how to stop it.
pub struct Running {
    pub addr: SocketAddr,
    /// The statsd listener's address, when one is configured.
    pub statsd_addr: Option<SocketAddr>,
    /// The Graphite listener's address (TCP and UDP), when one is configured.
    pub graphite_addr: Option<SocketAddr>,
    /// The Riemann listener's address (TCP and UDP), when one is configured.
    pub riemann_addr: Option<SocketAddr>,
    pub shutdown: CancellationToken,
    pub stats: Arc<Stats>,
    /// Enables, disables and reloads tasks.
    pub tasks: TaskControl,
    done: JoinHandle<Result<(), ServeError>>,
}

impl Running {
    /// Stops accepting, writes every open bucket, and waits until all is written.
    pub async fn stop(self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        self.wait().await
    }

    /// Waits until the service has stopped (after `shutdown` is cancelled).
    pub async fn wait(self) -> Result<(), ServeError> {
        self.done
            .await
            .unwrap_or_else(|e| Err(ServeError::Panicked(e)))
    }
}

/// Options that override the config file.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub node_url: Option<String>,
    pub listen: Option<SocketAddr>,
    /// The file the configuration came from: tasks are read again from it on reload.
    pub config_path: Option<std::path::PathBuf>,
}

/// Counts the tag keys already mapped in the indices kept, so that a restart without a log
/// does not accept a full `max_tag_keys` more. (With a log, the checkpoint carries them; a
/// seed from outside the log would make its replay refuse differently.)
async fn seed_tag_keys<B: SearchBackend>(
    consolidator: &mut Consolidator,
    backend: &B,
    config: &Config,
    now: crate::clock::EpochMillis,
) {
    let wildcard = config.index.naming.wildcard();
    match tokio::time::timeout(TEMPLATE_AT_START, backend.tag_keys(&wildcard)).await {
        Ok(Ok(keys)) => {
            consolidator.seed_tag_keys(keys.iter().map(String::as_str), now);
            tracing::info!(
                tag_keys = keys.len(),
                "tag keys already mapped on the node counted"
            );
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not list the tag keys mapped on the node: counting from zero")
        }
        Err(_) => tracing::warn!("the node did not list its tag keys in time: counting from zero"),
    }
}

/// Starts the whole service and returns once it is listening.
pub async fn serve<C: Clock>(
    config: Config,
    options: ServeOptions,
    clock: Arc<C>,
) -> Result<Running, ServeError> {
    config.preflight()?;
    let url = config.node.url_or(options.node_url)?;
    let (write_token, read_token) = crate::access::tokens(&config.http)?;
    let backend = Arc::new(HttpBackend::connect(&url, &config.node)?);
    let shutdown = CancellationToken::new();
    let stats = Arc::new(Stats::default());
    // The node is not waited for: listeners open at once, and what is accepted waits in the
    // queues (pushing back when they fill) until the writer reaches the node.
    let new_index = Arc::new(Notify::new());
    let data = match &config.durability.dir {
        Some(dir) => Some(journal::DataDir::open(dir).map_err(ServeError::from)?),
        None => {
            tracing::warn!("no durability.dir: without a write-ahead log a crash loses the open buckets and what waits to be written");
            None
        }
    };
    // Until the replay is done every bucket comes from it (never joined with another slice).
    let live_from = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    let write = start_write_path(
        &config,
        backend.clone(),
        stats.clone(),
        shutdown.clone(),
        new_index.clone(),
        data.as_ref().map(|d| WriterLog {
            log_id: d.log_id,
            ledger: d.ledger.clone(),
            live_from: live_from.clone(),
        }),
    )
    .await?;
    let (consolidator, journal, durable, disk, backlog) = match data {
        Some(data) => {
            let disk = crate::ingest::handle::DiskBound {
                used: data.disk.clone(),
                max: config.durability.max_disk_bytes,
            };
            let backlog =
                Backlog::open(&data.dir, data.disk.clone(), stats.clone()).map_err(|source| {
                    DurableError::Dir {
                        path: backlog::backlog_dir(&data.dir),
                        source,
                    }
                })?;
            tokio::spawn(backlog::feed(backlog.clone(), write.closed.clone()));
            let (c, j, d) = recover_and_start_journal(
                &config,
                data,
                &write.closed,
                &backlog,
                &*clock,
                &live_from,
            )
            .await?;
            (c, Some(j), Some(d), Some(disk), Some(backlog))
        }
        None => {
            let mut c = new_consolidator(&config);
            if write.node_answered {
                seed_tag_keys(&mut c, &*backend, &config, clock.now()).await;
            }
            (c, None, None, None, None)
        }
    };
    // Always built: `GET /v1/record` taps it, and a reload may add tasks.
    let (feed, feed_queue) = task_feed(
        NameIndex::of(&config.tasks.list),
        config.tasks.queue_events,
        stats.clone(),
    );
    let (ingest, consolidator) = start_consolidator(
        &config,
        consolidator,
        journal,
        backlog,
        clock.clone(),
        write.closed,
        stats.clone(),
        Some(feed.clone()),
    );
    let ingest = match disk {
        Some(bound) => ingest.bounded_by_disk(bound),
        None => ingest,
    };

    let addr = options.listen.unwrap_or(config.http.listen);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(at(addr))?;
    let addr = listener.local_addr().map_err(at(addr))?;
    tracing::info!(%addr, node = %without_credentials(&url), "listening");
    let indices = crate::maintain::indices::IndexList::new();
    let maintenance = tokio::spawn(run_scheduled(
        backend.clone(),
        Arc::new(config.clone()),
        clock.clone(),
        stats.clone(),
        shutdown.clone(),
        new_index,
        indices.clone(),
    ));
    let listeners = ListenerContext {
        ingest: ingest.clone(),
        clock: clock.clone(),
        stats: stats.clone(),
        shutdown: shutdown.clone(),
    };
    let addrs = start_listeners(&config, &listeners).await?;
    drop(listeners);
    let tasks = tasks::start_tasks(
        &config,
        tasks::TaskWiring {
            backend: backend.clone(),
            clock: clock.clone(),
            ingest: ingest.clone(),
            feed: feed.clone(),
            queue: feed_queue,
            stats: stats.clone(),
            shutdown: shutdown.clone(),
            node_answered: write.node_answered,
            config_path: options.config_path.clone(),
        },
    )
    .await;
    let tasks_api = crate::tasks::http::router(
        crate::tasks::http::TasksState {
            backend: backend.clone(),
            clock: clock.clone(),
            config: Arc::new(config.clone()),
            board: tasks.board.clone(),
            feed,
            list: tasks.list.clone(),
            control: tasks.control.clone(),
        },
        read_token.clone(),
        write_token.clone(),
    );
    let task_control = tasks.control.clone();
    let (backend_for_reads, clock_for_reads) = (backend.clone(), clock.clone());
    let state = AppState::new(ingest, backend, clock, config.clone(), stats.clone());
    let reads = crate::query::http::router(
        crate::query::http::QueryState {
            backend: backend_for_reads,
            clock: clock_for_reads,
            config: Arc::new(config.clone()),
            indices,
        },
        read_token.clone(),
    );
    let app = router(state, write_token, read_token)
        .merge(reads)
        .merge(tasks_api);
    let stop = shutdown.clone();
    let stats_at_end = stats.clone();
    let done = tokio::spawn(async move {
        crate::ingest::http_server::serve_http(listener, app, stop).await;
        tracing::info!("stopped accepting; writing what is held");
        // The router (and with it the last IngestHandle) is gone: the consolidator drains, closes
        // every bucket, and its output closing ends the writer.
        let _ = maintenance.await;
        // The runner stops on the token; the emitter then ends and drops its ingest handle.
        tasks.finish().await;
        let _ = consolidator.await;
        let _ = write.writer.await;
        if let Some(durable) = durable {
            durable.finish().await;
        }
        let dropped = stats_at_end.snapshot().docs_dropped;
        if dropped > 0 {
            tracing::error!(
                documents = dropped,
                "shutdown timeout reached: documents were not written"
            );
            return Err(ServeError::Dropped(dropped));
        }
        tracing::info!("all buckets written; bye");
        Ok(())
    });
    Ok(Running {
        addr,
        statsd_addr: addrs.statsd,
        graphite_addr: addrs.graphite,
        riemann_addr: addrs.riemann,
        shutdown,
        stats,
        tasks: task_control,
        done,
    })
}

#[cfg(test)]
mod tests {
    //! The consolidator task on a manual clock and tokio's paused time: what it records, when it
    //! hands buckets on, how it pushes back while the writer is full, and what it writes at the
    //! end of input.

    use super::*;
    use crate::clock::ManualClock;
    use crate::event::{Event, MetricKind, SeriesKey};
    use crate::ingest::handle::SubmitError;

    const STEP_MS: i64 = 20_000;

    fn gauge(name: &str, value: f64, at: i64) -> Event {
        Event::value(
            SeriesKey::new(name, None, &mut []),
            MetricKind::Gauge,
            value,
            at,
        )
    }

    struct Harness {
        ingest: IngestHandle,
        closed: mpsc::Receiver<Closed>,
        clock: ManualClock,
        stats: Arc<Stats>,
        task: JoinHandle<()>,
    }

    /// A consolidator task of one 20 s archive (no lateness) whose writer queue holds `room`.
    fn start(room: usize) -> Harness {
        let spec = ArchiveSpec {
            step_ms: STEP_MS,
            lateness_ms: 0,
            sketches: false,
        };
        let (ingest, queue) = ingest_channel(8);
        let (output, closed) = mpsc::channel(room);
        let clock = ManualClock::new(0);
        let stats = Arc::new(Stats::default());
        let config = Config::from_toml(
            "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\nlateness=\"0s\"\n",
            std::path::Path::new("t"),
        )
        .unwrap();
        let task = ConsolidatorTask {
            consolidator: Consolidator::new(&[spec], 100),
            config: Arc::new(config),
            input: queue.requests,
            input_open: true,
            output,
            clock: Arc::new(clock.clone()),
            stats: stats.clone(),
            congestion: queue.congestion,
            journal: None,
            held: Vec::new(),
            backlog: None,
            feed: None,
        };
        Harness {
            ingest,
            closed,
            clock,
            stats,
            task: tokio::spawn(task.run(Duration::from_millis(100))),
        }
    }

    /// Lets a few ticks pass in virtual time.
    async fn a_few_ticks() {
        tokio::time::sleep(Duration::from_millis(350)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn buckets_are_handed_on_once_the_clock_passes_their_end() {
        let mut h = start(16);
        let report = h
            .ingest
            .submit(vec![gauge("a", 1.0, 1_000), gauge("a", 3.0, 2_000)])
            .await
            .unwrap();
        assert_eq!((report.accepted, report.merged), (2, 0));
        h.clock.set(STEP_MS - 1);
        a_few_ticks().await;
        assert!(h.closed.try_recv().is_err(), "not before the bucket's end");
        h.clock.set(STEP_MS);
        a_few_ticks().await;
        let bucket = h.closed.try_recv().unwrap();
        assert_eq!((bucket.summary.count, bucket.summary.sum), (2, 4.0));
        let late = h.ingest.submit(vec![gauge("a", 5.0, 3_000)]).await.unwrap();
        assert_eq!(late.merged, 1, "its bucket is written");
        assert_eq!(h.stats.snapshot().events_merged, 1);
        a_few_ticks().await;
        let merged = h.closed.try_recv().unwrap();
        assert!(merged.late, "handed on at the next tick, to be merged");
        assert_eq!((merged.summary.start, merged.summary.sum), (0, 5.0));
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_writer_raises_congestion_and_input_is_still_served() {
        let mut h = start(1);
        let events: Vec<Event> = (0..3).map(|i| gauge(&format!("s{i}"), 1.0, 0)).collect();
        h.ingest.submit(events).await.unwrap();
        h.clock.set(STEP_MS);
        a_few_ticks().await;
        assert!(matches!(
            h.ingest.submit(vec![gauge("new", 1.0, STEP_MS)]).await,
            Err(SubmitError::Busy)
        ));
        let live = h.ingest.live(None, 10).await.unwrap();
        assert!(
            live.is_empty(),
            "while it waits for the writer it still answers"
        );
        for _ in 0..3 {
            h.closed.recv().await.unwrap();
        }
        a_few_ticks().await;
        h.ingest
            .submit(vec![gauge("new", 1.0, STEP_MS)])
            .await
            .expect("congestion cleared once the writer took everything");
    }

    #[tokio::test(start_paused = true)]
    async fn at_the_series_limit_udp_keeps_the_events_of_known_series() {
        let mut h = start(256);
        let known: Vec<Event> = (0..100).map(|i| gauge(&format!("s{i}"), 1.0, 0)).collect();
        h.ingest.submit(known).await.unwrap();
        let mixed: Vec<Event> = (0..5)
            .flat_map(|i| {
                [
                    gauge("s0", 1.0, 1_000),
                    gauge(&format!("new{i}"), 1.0, 1_000),
                ]
            })
            .collect();
        h.ingest
            .for_protocol(Protocol::Graphite)
            .hand_off(mixed)
            .unwrap();
        a_few_ticks().await;
        let s = h.stats.snapshot();
        assert_eq!(
            (
                s.events_accepted,
                s.udp_dropped,
                s.events_refused_series_limit
            ),
            (105, 5, 5)
        );
        let graphite = h.stats.protocol(Protocol::Graphite);
        let get = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(
            (
                get(&graphite.accepted),
                get(&graphite.udp_dropped),
                get(&graphite.refused_series_limit)
            ),
            (5, 5, 5),
            "counted under the protocol that sent them"
        );
        assert_eq!(get(&h.stats.protocol(Protocol::Http).accepted), 100);
        drop(h.ingest);
        h.task.await.unwrap();
        let mut s0 = 0;
        while let Some(c) = h.closed.recv().await {
            if crate::event::name(&c.series) == "s0" {
                s0 = c.summary.count;
            }
        }
        assert_eq!(s0, 6, "the known series kept its five events");
    }

    #[test]
    fn credentials_in_the_node_url_never_reach_the_log() {
        assert_eq!(
            without_credentials("https://strata:s3cret@node:9200/x@y"),
            "https://…@node:9200/x@y"
        );
        assert_eq!(without_credentials("http://node:9200"), "http://node:9200");
    }

    #[tokio::test]
    async fn refused_credentials_fail_the_start_and_an_absent_node_does_not() {
        use crate::persist::canned::CannedBackend;
        let config = Config::from_toml(
            "[[archive]]\nname=\"20s\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"\n",
            std::path::Path::new("t"),
        )
        .unwrap();
        let start = |backend: CannedBackend| {
            start_write_path(
                &config,
                Arc::new(backend),
                Arc::new(Stats::default()),
                CancellationToken::new(),
                Arc::new(Notify::new()),
                None,
            )
        };
        let refusing = CannedBackend::default();
        *refusing.template_refusal.lock().unwrap() = Some(401);
        assert!(matches!(start(refusing).await, Err(ServeError::Refused(_))));
        let away = CannedBackend::default();
        *away.template_failures.lock().unwrap() = 1;
        assert!(
            start(away).await.is_ok(),
            "a 503 is an outage: listen anyway"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_end_of_input_writes_every_open_bucket() {
        let mut h = start(16);
        h.ingest
            .submit(vec![gauge("a", 1.0, 0), gauge("b", 2.0, 5_000)])
            .await
            .unwrap();
        drop(h.ingest);
        h.task.await.unwrap();
        let mut written = Vec::new();
        while let Some(c) = h.closed.recv().await {
            written.push(c.summary.sum);
        }
        written.sort_by(f64::total_cmp);
        assert_eq!(
            written,
            [1.0, 2.0],
            "partial buckets too, and then the output closes"
        );
    }
}
