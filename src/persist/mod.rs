//! Persistence: closed buckets become documents in time-named indices, written in bulk with
//! per-item retries. `index` names indices, `document` encodes `_bulk` lines, `template` is the
//! mapping, `backend` hides the search client, `writer` is the batching task.

pub mod backend;
pub mod document;
pub mod index;
pub mod template;
pub mod writer;
