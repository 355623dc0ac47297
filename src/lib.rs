//! strata: a round-robin downsampling archiver for metrics on Elasticsearch and OpenSearch.
//!
//! The modules follow the data path, and imports only point down it (`cargo test --lib
//! architecture` checks that there is no cycle):
//!
//! - the shell: [`pipeline`] (wires the stages with bounded channels and stops them in order),
//!   [`replay`] (the same path offline);
//! - [`ingest`] (protocols → validated events) → [`consolidate`] (pure: events → per-bucket
//!   summaries) → [`persist`] (summaries → documents in time-named indices) → [`maintain`]
//!   (aliases and retention) → [`query`] (reads across the archives);
//! - what they stand on: [`config`] (the trusted configuration), [`event`] (series keys and
//!   samples), [`sketch`] and [`distinct`] (percentiles and set members, pure), [`calendar`] (UTC
//!   periods and spans), [`naming`] (index names), [`schedule`] (cron), [`stats`] (counters),
//!   [`clock`] (the only wall-clock read and wait), [`access`] (the HTTP API's tokens).

#![deny(unsafe_code)]
#![warn(unreachable_pub, clippy::undocumented_unsafe_blocks)]

pub mod access;
pub mod calendar;
pub mod clock;
pub(crate) mod codec;
pub mod config;
pub mod consolidate;
pub(crate) mod distinct;
pub mod durable;
pub(crate) mod errors;
pub mod event;
pub(crate) mod ingest;
pub mod maintain;
pub(crate) mod naming;
pub mod persist;
pub mod pipeline;
pub(crate) mod query;
pub mod replay;
pub(crate) mod schedule;
pub mod script;
pub(crate) mod sketch;
pub mod stats;
pub mod tasks;

#[cfg(test)]
mod architecture;
#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod testing;
