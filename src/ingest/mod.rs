//! Ingest: every protocol ends as validated [`crate::event::Event`]s handed to the consolidator
//! through the [`handle::IngestHandle`].
//!
//! - the outlet: `handle` (the bounded queue to the consolidator), `context` (what every listener
//!   is given), `listeners` (binds and starts the configured listeners);
//! - shared validation: `limits` (names, tags, timestamps), `badlog` (rate-limited bad-input logs);
//! - transports: `tcp` (the accept loop), `lines` (line-oriented TCP), `datagrams` (UDP);
//! - protocols: `json` and `http` (the HTTP API), `dattss`, `statsd`, `graphite`, `riemann`.

pub mod badlog;
pub mod context;
pub mod datagrams;
pub mod dattss;
pub mod graphite;
pub mod handle;
pub mod http;
pub mod json;
pub mod limits;
pub mod lines;
pub mod listeners;
pub mod riemann;
pub mod statsd;
pub mod tcp;
