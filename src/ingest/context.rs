//! What every listener is given: the outlet to the consolidator, the clock that stamps events
//! without a time of their own, the counters, and the token that stops it.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::ingest::handle::IngestHandle;
use crate::stats::Stats;

/// Shared by every listener; cheap to clone (one clone per connection or receive thread).
pub(crate) struct ListenerContext<C> {
    pub ingest: IngestHandle,
    pub clock: Arc<C>,
    pub stats: Arc<Stats>,
    pub shutdown: CancellationToken,
}

impl<C> ListenerContext<C> {
    /// The same context for the listeners of `protocol`.
    pub(crate) fn for_protocol(&self, protocol: crate::stats::Protocol) -> Self {
        Self {
            ingest: self.ingest.for_protocol(protocol),
            ..self.clone()
        }
    }
}

impl<C> Clone for ListenerContext<C> {
    fn clone(&self) -> Self {
        Self {
            ingest: self.ingest.clone(),
            clock: self.clock.clone(),
            stats: self.stats.clone(),
            shutdown: self.shutdown.clone(),
        }
    }
}
