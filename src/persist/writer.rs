//! The bulk writer task: closed buckets in from a bounded channel, `_bulk` requests out, batched
//! by count, size and time. Each item's status decides its fate: 2xx written, 429 and 5xx retried
//! with exponential backoff, 409 merged (below), anything else counted as rejected and logged
//! with the node's reason. While it retries it stops reading its input, so a slow or absent node
//! pushes back on ingest.
//!
//! A bucket is written with `create`: if a document for it exists already (written before a
//! restart, by the late path, or by another writer) the node answers 409 and the bucket is merged
//! into it instead. Buckets from the late table go to the merge at once. Merging reads the stored
//! documents in one `_mget`, lets [`merge::decide`] say what to write, and writes conditionally;
//! a 409 there means someone wrote in between: read and merge again.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::PersistConfig;
use crate::consolidate::Closed;
use crate::errors::Chain;
use crate::persist::backend::{BackendError, ItemStatus, SearchBackend};
use crate::persist::document::SERIES_FIRST_IDS;
use crate::persist::document::{DocumentEncoder, Op, COMPANIONS_PER_BUCKET};
use crate::persist::merge::{self, parse_document, Pending, Step};
use crate::persist::token::WriteTokens;
use crate::stats::Stats;

/// Encoded items waiting to be sent: an NDJSON body and where each item ends in it, and the
/// buckets of the late table, which go to the merge.
#[derive(Debug, Default)]
struct Batch {
    body: Vec<u8>,
    ends: Vec<usize>,
    late: Vec<Closed>,
    /// Goes to an index this run had not written to.
    opens_index: bool,
    /// How many of its buckets each log position closed, to acknowledge once written.
    positions: BTreeMap<u64, u64>,
    /// The companion documents of the new buckets, [`COMPANIONS_PER_BUCKET`] per item, in
    /// the samplerr layout.
    companions: Companions,
}

/// Companion documents (samplerr layout, see `persist::document`), written once their bucket's
/// own document was: an NDJSON body and where each item ends in it.
#[derive(Debug, Default)]
struct Companions {
    body: Vec<u8>,
    ends: Vec<usize>,
}

impl Companions {
    fn take(&mut self) -> Request {
        Request::new(
            std::mem::take(&mut self.body),
            std::mem::take(&mut self.ends),
        )
    }

    /// Adds the companions of item `item` of a request whose companions are `of`.
    fn add_those_of(&mut self, of: &Request, item: usize) {
        for k in item * COMPANIONS_PER_BUCKET..(item + 1) * COMPANIONS_PER_BUCKET {
            self.body.extend_from_slice(&of.item(k));
            self.ends.push(self.body.len());
        }
    }
}

impl Batch {
    fn len(&self) -> usize {
        self.ends.len() + self.late.len()
    }

    fn take(&mut self) -> (Request, Request, Vec<Closed>) {
        let ends = std::mem::take(&mut self.ends);
        let capacity = self.body.capacity();
        let body = std::mem::replace(&mut self.body, Vec::with_capacity(capacity));
        (
            Request::new(body, ends),
            self.companions.take(),
            std::mem::take(&mut self.late),
        )
    }
}

/// One `_bulk` body, kept so that failed items can be cut out and sent again.
#[derive(Debug, Clone)]
struct Request {
    body: Bytes,
    ends: Vec<usize>,
    /// Each item's number in the request first sent.
    numbers: Vec<usize>,
    attempt: u32,
}

impl Request {
    fn new(body: Vec<u8>, ends: Vec<usize>) -> Self {
        Self {
            body: Bytes::from(body),
            numbers: (0..ends.len()).collect(),
            ends,
            attempt: 0,
        }
    }

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
            numbers: items.iter().map(|&i| self.numbers[i]).collect(),
            attempt,
        }
    }
}

/// What became of one item of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Outcome {
    Written,
    /// 409: the document exists (`create`) or changed since it was read (`index`).
    Conflict(Bytes),
    Rejected,
    /// Given up at shutdown.
    Dropped,
}

/// What to do after a `_bulk` answer.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    /// Items not listed were written; send `retry` again after a pause.
    Items {
        retry: Vec<usize>,
        conflicts: Vec<usize>,
        rejected: Vec<usize>,
    },
    /// The request was too large: send it in two halves.
    Split,
}

/// Sorts item statuses into written, conflicting, retried and rejected.
fn judge_items(items: &[ItemStatus], stats: &Stats) -> Verdict {
    let (mut retry, mut conflicts, mut rejected) = (Vec::new(), Vec::new(), Vec::new());
    let mut logged = 0;
    for (i, item) in items.iter().enumerate() {
        match item.status {
            200..=299 => Stats::add(&stats.docs_written, 1),
            409 => conflicts.push(i),
            429 | 500..=599 => retry.push(i),
            status => {
                rejected.push(i);
                Stats::add(&stats.docs_rejected, 1);
                if logged < 3 {
                    logged += 1;
                    tracing::error!(
                        status,
                        reason = item.error.as_deref().unwrap_or("none given"),
                        "node rejected a document; not retried"
                    );
                }
            }
        }
    }
    Verdict::Items {
        retry,
        conflicts,
        rejected,
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
    tokens: WriteTokens,
    /// Indices written to by this run; the first write to another one is announced here, so
    /// maintenance puts it under the aliases at once.
    indices: HashSet<String>,
    new_index: Option<Arc<Notify>>,
    /// The index template (name, body), until it is installed: nothing is written before it,
    /// or the node would map the first index's fields by guessing.
    template: Option<(String, serde_json::Value)>,
    /// Where written buckets are acknowledged by log position, so that the log they came from
    /// can be removed.
    ledger: Option<Arc<crate::durable::ledger::Ledger>>,
    /// The first log position of this run: buckets before it come from the replay at start-up,
    /// and may be in their documents already, so they are never joined with another slice.
    live_from: Arc<AtomicU64>,
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
            tokens: WriteTokens::new(),
            indices: HashSet::new(),
            new_index: None,
            template: None,
            ledger: None,
            live_from: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Acknowledges written buckets in `ledger`; buckets closed before `live_from` (replayed)
    /// are merged one by one.
    pub(crate) fn acknowledging(
        mut self,
        ledger: Arc<crate::durable::ledger::Ledger>,
        live_from: Arc<AtomicU64>,
    ) -> Self {
        self.ledger = Some(ledger);
        self.live_from = live_from;
        self
    }

    /// Installs the index template `name` before the first write, retrying while the node is
    /// away or refuses (so strata can start and take events before the node answers).
    pub(crate) fn installing_template(mut self, name: String, body: serde_json::Value) -> Self {
        self.template = Some((name, body));
        self
    }

    /// Notifies `new_index` after the first write of this run to an index.
    pub(crate) fn announcing_new_indices(mut self, new_index: Arc<Notify>) -> Self {
        self.new_index = Some(new_index);
        self
    }

    /// Runs until `input` is closed and everything received has been written (or, after shutdown
    /// began, `shutdown_timeout` has passed).
    pub(crate) async fn run(mut self, mut input: mpsc::Receiver<Closed>) {
        self.learn_id_forms().await;
        let mut batch = Batch::default();
        let mut deadline: Option<Instant> = None;
        loop {
            tokio::select! {
                next = input.recv() => match next {
                    Some(closed) => {
                        self.add(&mut batch, closed);
                        while batch.len() < self.cfg.batch_docs {
                            match input.try_recv() {
                                Ok(closed) => self.add(&mut batch, closed),
                                Err(_) => break,
                            }
                        }
                        if self.is_full(&batch) {
                            self.flush(&mut batch).await;
                            deadline = None;
                        } else if deadline.is_none() {
                            deadline = Some(Instant::now() + self.cfg.flush_interval);
                        }
                    }
                    None => break,
                },
                _ = sleep_until_opt(deadline) => {
                    self.flush(&mut batch).await;
                    deadline = None;
                }
            }
        }
        if batch.len() > 0 {
            self.flush(&mut batch).await;
        }
        tracing::debug!("bulk writer finished");
    }

    fn add(&mut self, batch: &mut Batch, closed: Closed) {
        if self.ledger.is_some() {
            *batch.positions.entry(closed.seq).or_default() += 1;
        }
        if self.is_new_index(&closed) {
            batch.opens_index = true;
        }
        if closed.late {
            batch.late.push(closed);
            return;
        }
        let token = self.tokens.next_token();
        self.encoder
            .encode(&closed, Op::Create, token, &mut batch.body);
        batch.ends.push(batch.body.len());
        if self.encoder.writes_companions() {
            let companions = &mut batch.companions;
            self.encoder
                .encode_companions(&closed, &mut companions.body, &mut companions.ends);
        }
    }

    /// Whether `closed` goes to an index this run has not written to yet.
    fn is_new_index(&mut self, closed: &Closed) -> bool {
        if self.new_index.is_none() {
            return false;
        }
        let index = self.encoder.index_for(closed.archive, closed.summary.start);
        !self.indices.contains(index) && self.indices.insert(index.to_string())
    }

    fn is_full(&self, batch: &Batch) -> bool {
        batch.len() >= self.cfg.batch_docs || batch.body.len() >= self.cfg.batch_bytes
    }

    /// Writes what `batch` holds: its new buckets with `create`, then merges the late ones and
    /// those whose document existed.
    async fn flush(&mut self, batch: &mut Batch) {
        let opens_index = std::mem::take(&mut batch.opens_index);
        let positions = std::mem::take(&mut batch.positions);
        let dropped_before = self.stats.docs_dropped.load(Ordering::Relaxed);
        let (request, companions, late) = batch.take();
        if !self.install_template().await {
            self.give_up(request.ends.len() + late.len());
            return;
        }
        self.write_and_merge(request, companions, late).await;
        if let (true, Some(notify)) = (opens_index, &self.new_index) {
            // Kept as a permit while maintenance is busy: one more pass follows.
            notify.notify_one();
        }
        // Buckets given up at shutdown stay outstanding: the log keeps them for the next start.
        if let Some(ledger) = &self.ledger {
            if self.stats.docs_dropped.load(Ordering::Relaxed) == dropped_before {
                ledger.acknowledged(&positions);
            }
        }
    }

    /// Writes the new buckets with `create`, then merges the late ones and those whose
    /// document existed, then the companions of every bucket written.
    async fn write_and_merge(&mut self, request: Request, companions: Request, late: Vec<Closed>) {
        let outcomes = self.write(request).await;
        let mut pending: Vec<Pending> = late.into_iter().map(|c| self.pending(c)).collect();
        let mut follow = Companions::default();
        for (i, outcome) in outcomes.into_iter().enumerate() {
            if outcome == Outcome::Written && self.encoder.writes_companions() {
                follow.add_those_of(&companions, i);
            }
            if let Outcome::Conflict(item) = outcome {
                match self.pending_of_item(&item) {
                    Some(p) => pending.push(p),
                    None => {
                        Stats::add(&self.stats.docs_rejected, 1);
                        tracing::error!("a document refused as existing cannot be read back to merge it; not written");
                    }
                }
            }
        }
        self.merge(pending, &mut follow).await;
        self.write_companions(follow).await;
    }

    /// Writes companion documents. A 409 means a later state of the bucket wrote its own
    /// (the version is the bucket's count): nothing to do.
    async fn write_companions(&mut self, mut companions: Companions) {
        if !companions.ends.is_empty() {
            self.write(companions.take()).await;
        }
    }

    /// Asks the node which indices were made before ids led by the series, so that their
    /// buckets keep the ids they were stored under (see `persist::document::IdForm`); retried
    /// while the node is away, as every write must wait for it anyway. Indices made later come
    /// from today's template. Gives up (leaving every index to the new form) only once
    /// shutdown's deadline has passed, when nothing more is written.
    async fn learn_id_forms(&mut self) {
        let pattern = self.encoder.index_pattern();
        let mut attempt = 0;
        loop {
            match self
                .backend
                .indices_without_meta(&pattern, SERIES_FIRST_IDS)
                .await
            {
                Ok(hashed) => {
                    if !hashed.is_empty() {
                        tracing::info!(
                            indices = hashed.len(),
                            "indices made before ids led by the series keep their hashed ids"
                        );
                    }
                    self.encoder.keep_hashed_ids(hashed);
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %Chain(&e), "cannot read the indices' id forms; will retry");
                    self.stats.set_last_error(Some(format!(
                        "cannot read the indices' id forms: {}",
                        Chain(&e)
                    )));
                }
            }
            if !self.back_off(attempt).await {
                return;
            }
            attempt += 1;
        }
    }

    /// Installs the template if it is not yet; false once shutdown's deadline passed first.
    async fn install_template(&mut self) -> bool {
        let Some((name, body)) = self.template.clone() else {
            return true;
        };
        let mut attempt = 0;
        loop {
            match self.backend.put_index_template(&name, &body).await {
                Ok(()) => {
                    tracing::info!(template = %name, "index template installed");
                    self.template = None;
                    return true;
                }
                Err(e) => self.note_failure(format!(
                    "cannot install the index template {name}: {}",
                    Chain(&e)
                )),
            }
            if !self.back_off(attempt).await {
                return false;
            }
            attempt += 1;
        }
    }

    fn pending(&mut self, closed: Closed) -> Pending {
        let (index, id) = self.encoder.target(&closed);
        Pending {
            index,
            id,
            ours: closed,
            sent: Vec::new(),
        }
    }

    /// A `create` item that met an existing document, as a bucket to merge.
    fn pending_of_item(&self, item: &[u8]) -> Option<Pending> {
        let mut lines = item.split(|&b| b == b'\n');
        let action: serde_json::Value = serde_json::from_slice(lines.next()?).ok()?;
        let doc: serde_json::Value = serde_json::from_slice(lines.next()?).ok()?;
        let meta = action.get("create").or_else(|| action.get("index"))?;
        let stored = parse_document(&doc, |name| self.encoder.archive_named(name))?;
        let mut ours = stored.closed;
        // The position we stamped is ours again, not another log's.
        let log_id = self.encoder.log_id();
        if let Some(at) = ours
            .foreign_marks
            .iter()
            .position(|(log, _)| *log == log_id)
        {
            ours.seq = ours.foreign_marks.remove(at).1;
        }
        Some(Pending {
            index: meta["_index"].as_str()?.to_string(),
            id: meta["_id"].as_str()?.to_string(),
            ours,
            sent: stored.token.into_iter().collect(),
        })
    }

    /// Merges every pending bucket into its stored document, reading again after each conflict;
    /// adds the companions of each bucket's final state to `follow`.
    async fn merge(&mut self, pending: Vec<Pending>, follow: &mut Companions) {
        let mut pending = coalesce(pending, self.live_from.load(Ordering::Relaxed));
        let mut attempt = 0;
        while !pending.is_empty() {
            let targets: Vec<(String, String)> = pending
                .iter()
                .map(|p| (p.index.clone(), p.id.clone()))
                .collect();
            let fetched = match self.backend.mget(&targets).await {
                Ok(fetched) => fetched,
                Err(e) => {
                    self.note_failure(Chain(&e).to_string());
                    if self.back_off(attempt).await {
                        attempt += 1;
                        continue;
                    }
                    self.give_up(pending.len());
                    return;
                }
            };
            let mut body = Vec::new();
            let mut ends = Vec::new();
            let mut sent = Vec::new();
            let mut companions = Companions::default();
            for (mut p, fetched) in pending.drain(..).zip(&fetched) {
                match merge::decide(&p, fetched, self.encoder.log_id(), |name| {
                    self.encoder.archive_named(name)
                }) {
                    Step::Landed(stored) => {
                        Stats::add(&self.stats.docs_written, 1);
                        // Its companions may not have followed it (an unclear answer, a crash).
                        if self.encoder.writes_companions() {
                            self.encoder.encode_companions(
                                &stored,
                                &mut follow.body,
                                &mut follow.ends,
                            );
                        }
                    }
                    Step::Unreadable(why) => {
                        Stats::add(&self.stats.docs_rejected, 1);
                        tracing::error!(reason = %why, series = %crate::persist::document::series_label(&p.ours.series), "cannot merge a bucket into its stored document; not written");
                    }
                    Step::Write(closed, op) => {
                        let token = self.tokens.next_token();
                        self.encoder.encode(&closed, op, token, &mut body);
                        ends.push(body.len());
                        if self.encoder.writes_companions() {
                            self.encoder.encode_companions(
                                &closed,
                                &mut companions.body,
                                &mut companions.ends,
                            );
                        }
                        p.sent.push(token);
                        sent.push((p, op));
                    }
                }
            }
            let outcomes = self.write(Request::new(body, ends)).await;
            let companions = companions.take();
            for (i, ((p, op), outcome)) in sent.into_iter().zip(outcomes).enumerate() {
                if outcome == Outcome::Written && self.encoder.writes_companions() {
                    follow.add_those_of(&companions, i);
                }
                match outcome {
                    Outcome::Conflict(_) => {
                        Stats::add(&self.stats.write_conflicts, 1);
                        pending.push(p);
                    }
                    Outcome::Written if matches!(op, Op::Replace { .. }) => {
                        Stats::add(&self.stats.docs_merged, 1)
                    }
                    _ => {}
                }
            }
        }
    }

    fn give_up(&self, docs: usize) {
        Stats::add(&self.stats.docs_dropped, docs as u64);
        tracing::error!(
            docs,
            "shutdown timeout reached while the node kept failing: documents not written"
        );
    }

    /// Sends `request` until every item is written, in conflict, rejected, or given up at
    /// shutdown; says which, per item of `request`.
    async fn write(&mut self, request: Request) -> Vec<Outcome> {
        let mut outcomes = vec![Outcome::Written; request.ends.len()];
        let mut queue = vec![request];
        while let Some(req) = queue.pop() {
            if req.ends.is_empty() {
                continue;
            }
            Stats::add(&self.stats.bulk_requests, 1);
            let sent = std::time::Instant::now();
            let answer = self.backend.bulk(req.body.clone()).await;
            self.stats.bulk_latency.observe(sent.elapsed());
            let verdict = match answer {
                Ok(items) if items.len() == req.ends.len() => judge_items(&items, &self.stats),
                Ok(items) => {
                    self.note_failure(format!(
                        "_bulk answered {} items for {} sent",
                        items.len(),
                        req.ends.len()
                    ));
                    all_again(&req)
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
                    req.numbers
                        .iter()
                        .for_each(|&n| outcomes[n] = Outcome::Rejected);
                    continue;
                }
                Err(e) => {
                    self.note_failure(Chain(&e).to_string());
                    all_again(&req)
                }
            };
            let retry = match verdict {
                Verdict::Items {
                    retry,
                    conflicts,
                    rejected,
                } => {
                    for i in conflicts {
                        outcomes[req.numbers[i]] = Outcome::Conflict(req.item(i));
                    }
                    for i in rejected {
                        outcomes[req.numbers[i]] = Outcome::Rejected;
                    }
                    retry
                }
                Verdict::Split if req.ends.len() == 1 => {
                    Stats::add(&self.stats.docs_rejected, 1);
                    outcomes[req.numbers[0]] = Outcome::Rejected;
                    tracing::error!(
                        bytes = req.body.len(),
                        "node refused a single document as too large"
                    );
                    continue;
                }
                Verdict::Split => {
                    let half = req.ends.len() / 2;
                    let all: Vec<usize> = (0..req.ends.len()).collect();
                    queue.push(req.subset(&all[half..], req.attempt));
                    queue.push(req.subset(&all[..half], req.attempt));
                    continue;
                }
            };
            if retry.is_empty() {
                self.stats.set_last_error(None);
                continue;
            }
            Stats::add(&self.stats.docs_retried, retry.len() as u64);
            if self.back_off(req.attempt).await {
                queue.push(req.subset(&retry, req.attempt + 1));
            } else {
                let left = req
                    .subset(&retry, 0)
                    .numbers
                    .into_iter()
                    .chain(queue.iter().flat_map(|r| r.numbers.clone()));
                let mut lost = 0;
                for n in left {
                    outcomes[n] = Outcome::Dropped;
                    lost += 1;
                }
                self.give_up(lost);
                break;
            }
        }
        outcomes
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

/// Joins the slices of one bucket that no write has carried yet (late slices of consecutive
/// ticks in one batch), so the bucket is read and written once instead of racing itself.
/// Slices replayed from the log (closed before `live_from`) are never joined: one may be in
/// the document already and the other not, which only their own positions can tell.
fn coalesce(pending: Vec<Pending>, live_from: u64) -> Vec<Pending> {
    let mut out: Vec<Pending> = Vec::with_capacity(pending.len());
    let mut fresh: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for p in pending {
        let replayed = p.ours.seq != 0 && p.ours.seq < live_from;
        if !p.sent.is_empty() || replayed {
            out.push(p);
            continue;
        }
        match fresh.get(&p.id) {
            Some(&i) => out[i].ours.absorb(p.ours),
            None => {
                fresh.insert(p.id.clone(), out.len());
                out.push(p);
            }
        }
    }
    out
}

/// Every item of `req` to be sent again.
fn all_again(req: &Request) -> Verdict {
    Verdict::Items {
        retry: (0..req.ends.len()).collect(),
        conflicts: Vec::new(),
        rejected: Vec::new(),
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
        let verdict = judge_items(
            &[st(201), st(429), st(400), st(503), st(200), st(409)],
            &stats,
        );
        assert_eq!(
            verdict,
            Verdict::Items {
                retry: vec![1, 3],
                conflicts: vec![5],
                rejected: vec![2]
            }
        );
        let s = stats.snapshot();
        assert_eq!((s.docs_written, s.docs_rejected), (2, 1));
    }

    #[test]
    fn subsets_cut_whole_items() {
        let req = Request::new(b"a\nA\nb\nB\nc\nC\n".to_vec(), vec![4, 8, 12]);
        let sub = req.subset(&[0, 2], 1);
        assert_eq!(&sub.body[..], b"a\nA\nc\nC\n");
        assert_eq!(sub.ends, vec![4, 8]);
        assert_eq!(
            sub.subset(&[1], 2).numbers,
            vec![2],
            "numbers of the first request"
        );
    }

    // The decisions above on canned `_bulk` answers, with tokio's clock paused: backoff and the
    // shutdown deadline pass in virtual time.

    use std::path::Path;

    use crate::config::Config;
    use crate::consolidate::{ArchiveSpec, Consolidator};
    use crate::event::{Event, MetricKind, SeriesKey};
    use crate::persist::backend::Fetched;
    use crate::persist::canned::{item, status_error, Call, CannedBackend};

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
        start_with(config(), backend)
    }

    fn start_with(config: Config, backend: CannedBackend) -> Run {
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

    /// The action and document of each item of `body`.
    fn items_of(body: &Bytes) -> Vec<(serde_json::Value, serde_json::Value)> {
        let lines: Vec<serde_json::Value> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        lines
            .chunks(2)
            .map(|p| (p[0].clone(), p[1].clone()))
            .collect()
    }

    /// The document another writer stored for the bucket of `c`, with `count` and `sum`.
    fn stored_by_someone_else(c: &Closed, count: u64, sum: f64, seq_no: u64) -> Fetched {
        let mut theirs = c.clone();
        theirs.summary.count = count;
        theirs.summary.sum = sum;
        let mut out = Vec::new();
        DocumentEncoder::new(&config()).encode(&theirs, Op::Create, 99, &mut out);
        let text = String::from_utf8(out).unwrap();
        Fetched::Found {
            seq_no,
            primary_term: 1,
            source: serde_json::from_str(text.lines().nth(1).unwrap()).unwrap(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_existing_document_is_read_merged_and_replaced_at_its_version_even_after_a_race() {
        let bucket = closed(1).remove(0);
        let backend = CannedBackend::answering_bulk([
            Ok(vec![item(409)]),
            Ok(vec![item(409)]),
            Ok(vec![item(200)]),
        ]);
        backend.mget_answers.lock().unwrap().extend([
            Ok(vec![stored_by_someone_else(&bucket, 2, 10.0, 7)]),
            Ok(vec![stored_by_someone_else(&bucket, 5, 20.0, 8)]),
        ]);
        let run = start(backend);
        run.input.send(bucket).await.unwrap();
        drop(run.input);
        run.task.await.unwrap();
        let bodies = run.backend.bulk_bodies();
        let sent: Vec<_> = bodies.iter().flat_map(items_of).collect();
        assert_eq!(sent.len(), 3);
        assert!(sent[0].0.get("create").is_some(), "a new bucket is created");
        let (action, doc) = &sent[2];
        assert_eq!(
            action["index"]["if_seq_no"], 8,
            "replaces the version it read"
        );
        assert_eq!(
            (doc["count"].as_u64(), doc["sum"].as_f64()),
            (Some(6), Some(21.0))
        );
        let s = run.stats.snapshot();
        assert_eq!(
            (s.docs_written, s.docs_merged, s.write_conflicts),
            (1, 1, 1)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn samplerr_companions_follow_each_written_bucket_in_its_final_state_only() {
        let config = Config::from_toml(
            &CONFIG.replace("[[archive]]", "[index]\nlayout = \"samplerr\"\n[[archive]]"),
            Path::new("t"),
        )
        .unwrap();
        let buckets = closed(3);
        // Created, rejected, and found existing (merged into a document holding 2 events).
        let backend = CannedBackend::answering_bulk([Ok(vec![item(201), item(400), item(409)])]);
        backend
            .mget_answers
            .lock()
            .unwrap()
            .push_back(Ok(vec![stored_by_someone_else(&buckets[2], 2, 10.0, 7)]));
        let run = start_with(config, backend);
        for b in buckets.iter().cloned() {
            run.input.send(b).await.unwrap();
        }
        drop(run.input);
        run.task.await.unwrap();
        let bodies = run.backend.bulk_bodies();
        assert_eq!(bodies.len(), 3, "buckets, the merge, then the companions");
        let merged_id = items_of(&bodies[1])[0].0["index"]["_id"].clone();
        let companions = items_of(&bodies[2]);
        let shown: Vec<(String, u64, String)> = companions
            .iter()
            .map(|(action, doc)| {
                (
                    action["index"]["_id"].as_str().unwrap().to_string(),
                    action["index"]["version"].as_u64().unwrap(),
                    doc["service"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let created_id = items_of(&bodies[0])[0].0["create"]["_id"].clone();
        let (created, merged) = (created_id.as_str().unwrap(), merged_id.as_str().unwrap());
        assert_eq!(
            shown,
            vec![
                (format!("{created}-min"), 1, "s0/min/20".to_string()),
                (format!("{created}-max"), 1, "s0/max/20".to_string()),
                (format!("{merged}-min"), 3, "s2/min/20".to_string()),
                (format!("{merged}-max"), 3, "s2/max/20".to_string()),
            ],
            "none for the rejected bucket; the merged one's at its merged count"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_write_that_landed_unanswered_is_not_merged_twice() {
        let backend =
            CannedBackend::answering_bulk([Err(status_error("_bulk", 502)), Ok(vec![item(409)])]);
        *backend.mget_echo.lock().unwrap() = true;
        let (backend, stats) = write_all(backend, 1).await;
        let bodies = backend.bulk_bodies();
        assert_eq!(
            bodies.len(),
            2,
            "sent, sent again, then found as ours: {bodies:?}"
        );
        assert_eq!(bodies[0], bodies[1]);
        let s = stats.snapshot();
        assert_eq!((s.docs_written, s.docs_merged, s.docs_rejected), (1, 0, 0));
    }

    #[test]
    fn slices_of_one_bucket_are_joined_unless_a_write_carried_them() {
        let slice = |v: f64, sent: Vec<u64>| Pending {
            index: "i".into(),
            id: "d".into(),
            ours: {
                let mut c = closed(1).remove(0);
                c.summary.sum = v;
                c
            },
            sent,
        };
        let joined = coalesce(
            vec![slice(1.0, vec![]), slice(2.0, vec![7]), slice(4.0, vec![])],
            0,
        );
        let sums: Vec<(f64, u64)> = joined
            .iter()
            .map(|p| (p.ours.summary.sum, p.ours.summary.count))
            .collect();
        assert_eq!(sums, vec![(5.0, 2), (2.0, 1)]);
        // Replayed slices (positions before this run's first) may be stored already: apart.
        let at = |v: f64, seq: u64| {
            let mut p = slice(v, vec![]);
            p.ours.seq = seq;
            p
        };
        let replayed = coalesce(vec![at(1.0, 3), at(2.0, 4), at(4.0, 10), at(8.0, 11)], 10);
        let sums: Vec<f64> = replayed.iter().map(|p| p.ours.summary.sum).collect();
        assert_eq!(sums, vec![1.0, 2.0, 12.0]);
    }

    #[tokio::test(start_paused = true)]
    async fn late_buckets_are_read_first_and_created_when_missing() {
        let mut late = closed(2);
        late.iter_mut().for_each(|c| c.late = true);
        let backend = CannedBackend::default();
        let run = start(backend);
        for c in late {
            run.input.send(c).await.unwrap();
        }
        drop(run.input);
        run.task.await.unwrap();
        let calls = run.backend.calls();
        assert!(
            matches!(&calls[0], Call::Mget(docs) if docs.len() == 2),
            "{calls:?}"
        );
        let sent: Vec<_> = run
            .backend
            .bulk_bodies()
            .iter()
            .flat_map(items_of)
            .collect();
        assert_eq!(sent.len(), 2);
        assert!(sent
            .iter()
            .all(|(action, _)| action.get("create").is_some()));
        assert_eq!(run.stats.snapshot().docs_written, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn nothing_is_written_before_the_template_is_installed() {
        let backend = CannedBackend::default();
        *backend.template_failures.lock().unwrap() = 3;
        let backend = Arc::new(backend);
        let config = config();
        let writer = BulkWriter::new(
            backend.clone(),
            DocumentEncoder::new(&config),
            config.persist.clone(),
            Arc::new(Stats::default()),
            CancellationToken::new(),
        )
        .installing_template("t".into(), serde_json::json!({}));
        let (input, rx) = mpsc::channel(16);
        let task = tokio::spawn(writer.run(rx));
        for c in closed(2) {
            input.send(c).await.unwrap();
        }
        drop(input);
        task.await.unwrap();
        let kinds: Vec<&str> = backend
            .calls()
            .iter()
            .map(|c| match c {
                Call::PutTemplate(_) => "template",
                Call::Bulk(_) => "bulk",
                _ => "other",
            })
            .collect();
        assert_eq!(
            kinds,
            ["template", "template", "template", "template", "bulk"]
        );
    }
}
