//! Durability: the write-ahead log of everything the consolidator applies, the checkpoints of
//! its state, and the ledger of which closed buckets the node has acknowledged. Together they
//! let a restart after a crash rebuild exactly what was lost and write it once.
//!
//! - [`record`] (pure): the consolidator's inputs as bytes.
//! - [`log`]: segment files, group commit on a thread of its own, read-back with a torn tail cut.
//! - [`checkpoint`]: the consolidator's state at a log position, written beside the log, made
//!   the restart point once the node holds every bucket closed before it; older segments and
//!   checkpoints are then removed.
//! - [`ledger`]: closed buckets handed to the writer and not yet acknowledged, by position.
//! - `files`: the numbered file names both use, and the directory sync.

pub mod checkpoint;
pub(crate) mod files;
pub mod ledger;
pub mod log;
pub mod record;
