//! Ingest: every protocol ends as validated [`crate::event::Event`]s handed to the consolidator
//! through the [`handle::IngestHandle`].
//!
//! - the outlet: `handle` (the bounded queue to the consolidator), `context` (what every listener
//!   is given), `listeners` (binds and starts the configured listeners);
//! - shared validation: `limits` (names, tags, timestamps), `number` (numbers in text), `badlog`
//!   (rate-limited bad-input logs);
//! - transports: `tcp` (the accept loop), `lines` (line-oriented TCP), `datagrams` (UDP),
//!   `http_server` (hyper connections with a header timeout);
//! - protocols: `json` and `http` (the HTTP API), `dattss`, `statsd`, `graphite`, `riemann`.

pub(crate) mod badlog;
pub(crate) mod context;
pub(crate) mod datagrams;
pub(crate) mod dattss;
pub(crate) mod graphite;
pub(crate) mod handle;
pub(crate) mod http;
pub(crate) mod http_server;
pub(crate) mod json;
pub(crate) mod limits;
pub(crate) mod lines;
pub(crate) mod listeners;
pub(crate) mod number;
pub(crate) mod riemann;
pub(crate) mod statsd;
pub(crate) mod tcp;
