//! Persistence: closed buckets become documents in time-named indices, written in bulk with
//! per-item retries. `document` encodes `_bulk` lines (index names from [`crate::naming`]),
//! `template` is the mapping, `backend` hides the search client, `writer` is the batching task,
//! `resume` reopens at start the buckets an earlier run wrote at shutdown.

pub mod backend;
#[cfg(test)]
pub mod canned;
pub(crate) mod document;
pub(crate) mod resume;
pub mod template;
pub(crate) mod writer;
