//! The names of strata's indices as last listed, for the read APIs, which would otherwise list
//! them on every request: listed on first use, again after each maintenance pass (passes create
//! and delete indices, and one runs whenever the writer opens an index), when the list is older
//! than [`MAX_AGE`] (an index someone deleted by hand), and when a read finds none.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::persist::backend::{BackendError, SearchBackend};

/// The oldest list a read uses.
pub const MAX_AGE: Duration = Duration::from_secs(60);

/// A shared, refreshable index list.
#[derive(Debug, Default)]
pub struct IndexList {
    listed: Mutex<Option<Listed>>,
    /// Bumped by each invalidation: a listing that began before one is not kept, since it may
    /// predate what the maintenance pass changed.
    generation: AtomicU64,
}

#[derive(Debug, Clone)]
struct Listed {
    names: Arc<Vec<String>>,
    at: Instant,
}

impl IndexList {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Forgets the list: the next read lists again.
    pub fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        *self.lock() = None;
    }

    /// The indices matching `pattern`, listed now unless a fresh list is at hand.
    pub async fn get<B: SearchBackend>(
        &self,
        backend: &B,
        pattern: &str,
    ) -> Result<Arc<Vec<String>>, BackendError> {
        if let Some(listed) = self.lock().as_ref() {
            if listed.at.elapsed() < MAX_AGE {
                return Ok(listed.names.clone());
            }
        }
        self.refresh(backend, pattern).await
    }

    /// Lists the indices matching `pattern` now, and keeps the list.
    pub async fn refresh<B: SearchBackend>(
        &self,
        backend: &B,
        pattern: &str,
    ) -> Result<Arc<Vec<String>>, BackendError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let names = Arc::new(backend.list_indices(pattern).await?);
        self.keep(generation, names.clone());
        Ok(names)
    }

    /// Keeps `names`, listed when the generation was `generation`, unless an invalidation came
    /// since.
    fn keep(&self, generation: u64, names: Arc<Vec<String>>) {
        let mut listed = self.lock();
        if self.generation.load(Ordering::SeqCst) == generation {
            *listed = Some(Listed {
                names,
                at: Instant::now(),
            });
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Listed>> {
        // The list is a cache: a panic elsewhere while it was held leaves nothing to protect.
        self.listed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::canned::{Call, CannedBackend};

    fn listings(backend: &CannedBackend) -> usize {
        backend
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::ListIndices(_)))
            .count()
    }

    #[tokio::test]
    async fn listed_once_until_a_maintenance_pass_invalidates_it() {
        let backend = CannedBackend::default();
        *backend.indices.lock().unwrap() = vec!["strata-1h-2026".into()];
        let list = IndexList::new();
        for _ in 0..3 {
            assert_eq!(
                *list.get(&backend, "strata-*").await.unwrap(),
                vec!["strata-1h-2026".to_string()]
            );
        }
        assert_eq!(listings(&backend), 1, "read from the cache after the first");
        backend
            .indices
            .lock()
            .unwrap()
            .push("strata-1h-2027".into());
        list.invalidate();
        assert_eq!(list.get(&backend, "strata-*").await.unwrap().len(), 2);
        assert_eq!(listings(&backend), 2);
    }

    #[test]
    fn a_listing_that_began_before_an_invalidation_is_not_kept() {
        let list = IndexList::new();
        let began = list.generation.load(Ordering::SeqCst);
        list.invalidate();
        list.keep(began, Arc::new(vec!["strata-1h-2025".into()]));
        assert!(list.lock().is_none(), "may predate what the pass changed");
        let now = list.generation.load(Ordering::SeqCst);
        list.keep(now, Arc::new(vec!["strata-1h-2026".into()]));
        assert!(list.lock().is_some());
    }
}
