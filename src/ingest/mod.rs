//! Ingest: every protocol ends as validated [`crate::event::Event`]s handed to the consolidator.
//! `json` is the shared event format, `http` the HTTP API around it.

pub mod badlog;
pub mod datagrams;
pub mod dattss;
pub mod graphite;
pub mod http;
pub mod json;
pub mod lines;
pub mod riemann;
pub mod statsd;
