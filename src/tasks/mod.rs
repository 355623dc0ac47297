//! Tasks (Kapacitor's part): scripts in the [`crate::script`] language that watch the events
//! as they arrive (stream tasks), raise alerts with levels and hysteresis, and emit derived
//! series back into ingest.
//!
//! ```text
//! consolidator --(TaskFeed: names some task takes, bounded, never waits)--> StreamRunner
//!   StreamRunner: TaskEngine per task, woken by the Clock when a window closes
//!     --> alerts: AlertBoard (GET /v1/alerts), store (node), Dispatch (one queue per handler)
//!     --> derived events: emitter --> IngestHandle (protocol "task") --> consolidator
//! ```
//!
//! - [`engine`] evaluates one task, pure: events in, alerts and derived events out, time as
//!   an argument; [`alert`] is the level state machine of one `alert(...)`;
//! - [`feed`], [`runner`], [`handlers`], [`store`] and [`http`] are the async shell.

pub mod alert;
pub mod batch;
pub mod control;
pub mod engine;
pub mod feed;
pub mod handlers;
pub(crate) mod http;
pub mod offline;
pub(crate) mod runner;
pub mod set;
pub mod store;
