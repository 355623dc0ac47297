//! The ingest stage's outlet: every listener hands its validated events to the consolidator
//! through an [`IngestHandle`]; the consolidator task reads them from the [`IngestQueue`].
//!
//! The queue is bounded and nobody waits for room in it: a full queue is [`SubmitError::Busy`],
//! which HTTP turns into 503, TCP listeners into a pause in reading (push-back), and the UDP
//! receivers into keeping their batch while the socket's buffer absorbs the wait. While the
//! writer behind the consolidator is full, the consolidator raises [`Congestion`] and new
//! batches are refused the same way, so that the queue drains instead of filling.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::consolidate::{BatchReport, ConsolidateError, OpenSeries};
use crate::event::Event;
use crate::stats::Protocol;

/// Where the consolidator answers a batch.
pub(crate) type Reply = oneshot::Sender<Result<BatchReport, SubmitError>>;

/// Events on their way to the consolidator, with a slot for its answer (`None`: nobody waits,
/// and a refused batch is counted as `udp_dropped`).
pub(crate) struct IngestBatch {
    pub events: Vec<Event>,
    pub reply: Option<Reply>,
    /// All or nothing: past the series limit the whole batch is refused (an HTTP request, a
    /// Riemann message: their sender is told). Otherwise each event is taken or refused on its
    /// own, so that one client's new series cannot cost another client's known ones.
    pub whole: bool,
    /// The door the events came in by (for the per-protocol counters).
    pub protocol: Protocol,
}

/// A request for the open buckets (`/v1/live`).
pub(crate) struct LiveRequest {
    pub name: Option<String>,
    pub limit: usize,
    pub reply: oneshot::Sender<Vec<OpenSeries>>,
}

/// What the consolidator task is asked to do.
pub(crate) enum Request {
    Ingest(IngestBatch),
    Live(LiveRequest),
}

/// Why a batch was not consolidated.
#[derive(Debug, thiserror::Error)]
pub(crate) enum SubmitError {
    #[error("ingest queue is full: the node is not keeping up")]
    Busy,
    #[error("the pipeline is shutting down")]
    Closed,
    #[error(transparent)]
    Refused(#[from] ConsolidateError),
    /// The write-ahead log could not take the batch: nothing of it was kept.
    #[error("cannot write the log: {0}")]
    Unlogged(String),
    /// The data directory reached `durability.max_disk_bytes`.
    #[error("the data directory is full (durability.max_disk_bytes) while the node is behind")]
    DiskFull,
}

/// A hand-off the consolidator did not take, with its events.
#[derive(Debug)]
pub(crate) struct HandOffRefused {
    pub why: SubmitError,
    pub events: Vec<Event>,
}

/// Set by the consolidator while the writer's queue is full; read by every handle.
#[derive(Debug, Clone, Default)]
pub(crate) struct Congestion(Arc<AtomicBool>);

impl Congestion {
    pub(crate) fn set(&self, congested: bool) {
        self.0.store(congested, Ordering::Relaxed);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

/// The receiving side: what the consolidator task reads, and the flag it raises when it cannot
/// hand its output on.
pub(crate) struct IngestQueue {
    pub requests: mpsc::Receiver<Request>,
    pub congestion: Congestion,
}

/// A bounded queue of `capacity` requests between the listeners and the consolidator.
pub(crate) fn ingest_channel(capacity: usize) -> (IngestHandle, IngestQueue) {
    let (tx, requests) = mpsc::channel(capacity);
    let congestion = Congestion::default();
    let handle = IngestHandle {
        tx,
        congestion: congestion.clone(),
        disk: None,
        protocol: Protocol::Http,
    };
    (
        handle,
        IngestQueue {
            requests,
            congestion,
        },
    )
}

/// The first pause of [`IngestHandle::submit_waiting`] while the pipeline is busy; it doubles
/// up to [`MAX_BUSY_PAUSE`].
const FIRST_BUSY_PAUSE: Duration = Duration::from_millis(10);
/// The longest pause between two offers of the same batch: a TCP client waits at most this long
/// after the pipeline has room again.
const MAX_BUSY_PAUSE: Duration = Duration::from_secs(1);

/// The sending side of the consolidator's input; cheap to clone.
#[derive(Clone)]
pub(crate) struct IngestHandle {
    tx: mpsc::Sender<Request>,
    congestion: Congestion,
    disk: Option<DiskBound>,
    protocol: Protocol,
}

/// The data directory's size and its bound: at the bound, batches are refused as
/// [`SubmitError::DiskFull`] until the node catches up and checkpoints free the log.
#[derive(Clone)]
pub(crate) struct DiskBound {
    pub used: Arc<std::sync::atomic::AtomicU64>,
    pub max: u64,
}

impl IngestHandle {
    /// The same outlet, counting what it hands over as `protocol`'s.
    pub(crate) fn for_protocol(&self, protocol: Protocol) -> Self {
        Self {
            protocol,
            ..self.clone()
        }
    }

    /// The protocol this handle counts its batches under.
    pub(crate) fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Refuses batches while the data directory holds `bound.max` bytes or more.
    pub(crate) fn bounded_by_disk(mut self, bound: DiskBound) -> Self {
        self.disk = Some(bound);
        self
    }

    /// Hands `events` to the consolidator without waiting for room (a full queue is `Busy`) and
    /// waits for its answer.
    pub(crate) async fn submit(&self, events: Vec<Event>) -> Result<BatchReport, SubmitError> {
        match self.offer(events, true) {
            Ok(answer) => answer_of(answer).await,
            Err(refused) => Err(refused.why),
        }
    }

    /// Hands `events` over, waiting while the pipeline is full (a TCP client is not read
    /// meanwhile, which is the push-back); the error when the pipeline refused them for good.
    /// `whole`: all or nothing at the series limit (a message whose sender is answered), else
    /// event by event (lines nobody answers).
    pub(crate) async fn submit_waiting(
        &self,
        events: Vec<Event>,
        whole: bool,
    ) -> Result<(), SubmitError> {
        match self.queue_waiting(events, whole).await {
            Ok(Some(pending)) => pending.answer().await.map(drop),
            Ok(None) => Ok(()),
            Err(refused) => Err(refused),
        }
    }

    /// Queues `events`, waiting while the pipeline is full, and leaves the answer for later:
    /// a line reader parses its next chunk while the consolidator takes this one. `None` for
    /// no events.
    pub(crate) async fn queue_waiting(
        &self,
        mut events: Vec<Event>,
        whole: bool,
    ) -> Result<Option<Pending>, SubmitError> {
        if events.is_empty() {
            return Ok(None);
        }
        let mut pause = FIRST_BUSY_PAUSE;
        loop {
            match self.offer(events, whole) {
                Ok(answer) => return Ok(Some(Pending(answer))),
                Err(HandOffRefused {
                    why: SubmitError::Busy | SubmitError::DiskFull,
                    events: back,
                }) => {
                    events = back;
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BUSY_PAUSE);
                }
                Err(HandOffRefused { why, .. }) => {
                    tracing::warn!(error = %why, "events refused");
                    return Err(why);
                }
            }
        }
    }

    /// Hands `events` to the consolidator and does not wait for its answer: for receivers that
    /// cannot tell a sender anything (UDP), from any thread. A full queue is `Busy`; the events
    /// come back with the refusal, so that the caller may try again.
    pub(crate) fn hand_off(&self, events: Vec<Event>) -> Result<(), HandOffRefused> {
        self.enqueue(events, None, false)
    }

    /// Queues `events` with a slot for the answer; the events come back when refused.
    fn offer(
        &self,
        events: Vec<Event>,
        whole: bool,
    ) -> Result<oneshot::Receiver<Result<BatchReport, SubmitError>>, HandOffRefused> {
        let (reply, answer) = oneshot::channel();
        self.enqueue(events, Some(reply), whole).map(|()| answer)
    }

    fn enqueue(
        &self,
        events: Vec<Event>,
        reply: Option<Reply>,
        whole: bool,
    ) -> Result<(), HandOffRefused> {
        if self.congestion.is_set() {
            return Err(HandOffRefused {
                why: SubmitError::Busy,
                events,
            });
        }
        if let Some(bound) = &self.disk {
            if bound.used.load(Ordering::Relaxed) >= bound.max {
                return Err(HandOffRefused {
                    why: SubmitError::DiskFull,
                    events,
                });
            }
        }
        self.tx
            .try_send(Request::Ingest(IngestBatch {
                events,
                reply,
                whole,
                protocol: self.protocol,
            }))
            .map_err(|e| {
                let why = refusal(&e);
                let events = match e.into_inner() {
                    Request::Ingest(batch) => batch.events,
                    Request::Live(_) => Vec::new(),
                };
                HandOffRefused { why, events }
            })
    }

    /// The open buckets of up to `limit` series named `name` (any when `None`).
    pub(crate) async fn live(
        &self,
        name: Option<String>,
        limit: usize,
    ) -> Result<Vec<OpenSeries>, SubmitError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .try_send(Request::Live(LiveRequest { name, limit, reply }))
            .map_err(|e| refusal(&e))?;
        answer.await.map_err(|_| SubmitError::Closed)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// A batch the consolidator took, whose answer is still to be read.
pub(crate) struct Pending(oneshot::Receiver<Result<BatchReport, SubmitError>>);

impl Pending {
    /// The consolidator's answer (logged when it refused the batch).
    pub(crate) async fn answer(self) -> Result<BatchReport, SubmitError> {
        answer_of(self.0).await.inspect_err(|refused| {
            tracing::warn!(error = %refused, "events refused");
        })
    }
}

/// The consolidator's answer to a batch it took; `Closed` when it ended before answering.
async fn answer_of(
    answer: oneshot::Receiver<Result<BatchReport, SubmitError>>,
) -> Result<BatchReport, SubmitError> {
    answer.await.map_err(|_| SubmitError::Closed)?
}

/// Why the consolidator's queue did not take a request.
fn refusal<T>(e: &mpsc::error::TrySendError<T>) -> SubmitError {
    match e {
        mpsc::error::TrySendError::Full(_) => SubmitError::Busy,
        mpsc::error::TrySendError::Closed(_) => SubmitError::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{MetricKind, SeriesKey};

    fn event(name: &str) -> Event {
        Event::value(
            SeriesKey::new(name, None, &mut []),
            MetricKind::Gauge,
            1.0,
            0,
        )
    }

    #[tokio::test]
    async fn a_full_queue_is_busy_and_the_events_come_back() {
        let (handle, _queue) = ingest_channel(1);
        handle.hand_off(vec![event("a")]).unwrap();
        let refused = handle.hand_off(vec![event("b"), event("c")]).unwrap_err();
        assert!(matches!(refused.why, SubmitError::Busy));
        assert_eq!(refused.events.len(), 2);
    }

    #[tokio::test]
    async fn congestion_refuses_before_the_queue_fills() {
        let (handle, queue) = ingest_channel(8);
        queue.congestion.set(true);
        let refused = handle.hand_off(vec![event("a")]).unwrap_err();
        assert!(matches!(refused.why, SubmitError::Busy));
        queue.congestion.set(false);
        handle.hand_off(vec![event("a")]).unwrap();
    }

    #[tokio::test]
    async fn a_closed_queue_is_closed() {
        let (handle, queue) = ingest_channel(8);
        drop(queue);
        assert!(handle.is_closed());
        let refused = handle.hand_off(vec![event("a")]).unwrap_err();
        assert!(matches!(refused.why, SubmitError::Closed));
        assert!(matches!(
            handle.submit(vec![event("a")]).await,
            Err(SubmitError::Closed)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn submit_waiting_offers_the_same_batch_again_until_there_is_room() {
        let (handle, mut queue) = ingest_channel(1);
        handle.hand_off(vec![event("first")]).unwrap();
        let waiting = tokio::spawn({
            let handle = handle.clone();
            async move { handle.submit_waiting(vec![event("second")], false).await }
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "nothing is taken while the queue is full"
        );
        let Some(Request::Ingest(first)) = queue.requests.recv().await else {
            panic!("the first batch")
        };
        assert_eq!(first.events[0].series, event("first").series);
        let Some(Request::Ingest(second)) = queue.requests.recv().await else {
            panic!("the second batch, offered again")
        };
        assert_eq!(second.events[0].series, event("second").series);
        second
            .reply
            .unwrap()
            .send(Ok(BatchReport::default()))
            .unwrap();
        waiting.await.unwrap().unwrap();
    }
}
