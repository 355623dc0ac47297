//! Persistence: closed buckets become documents in time-named indices, written in bulk with
//! per-item retries. `document` encodes `_bulk` lines (index names from [`crate::naming`]),
//! `template` is the mapping, `backend` hides the search client, `writer` is the batching task,
//! `merge` decides how a bucket joins the document already stored for it, `token` makes the
//! tokens of writes.

pub mod backend;
#[cfg(test)]
pub mod canned;
pub(crate) mod document;
pub(crate) mod merge;
pub mod template;
pub mod token;
pub(crate) mod writer;
