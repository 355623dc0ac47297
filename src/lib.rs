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
//!   [`clock`] (the only wall-clock read and wait).

pub mod calendar;
pub mod clock;
pub mod config;
pub mod consolidate;
pub mod distinct;
pub mod event;
pub mod ingest;
pub mod maintain;
pub mod naming;
pub mod persist;
pub mod pipeline;
pub mod query;
pub mod replay;
pub mod schedule;
pub mod sketch;
pub mod stats;

#[cfg(test)]
mod architecture;
