//! Tasks (Kapacitor's part): scripts in the [`crate::script`] language that watch the events
//! as they arrive (stream tasks) or stored points on a schedule (batch tasks), raise alerts
//! with levels and hysteresis, and emit derived series back into ingest.
//!
//! - [`engine`] evaluates one task, pure: events in, alerts and derived events out, time as
//!   an argument;
//! - [`alert`] is the level state machine of one `alert(...)`.

pub mod alert;
pub mod engine;
