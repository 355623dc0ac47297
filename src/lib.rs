//! strata: a round-robin downsampling archiver for metrics on Elasticsearch and OpenSearch.
//!
//! The modules follow the data path: [`ingest`] (protocols → validated events) →
//! [`consolidate`] (pure: events → per-bucket summaries) → [`persist`] (summaries → documents in
//! time-named indices). [`pipeline`] wires them with bounded channels; [`replay`] runs the same
//! path offline; [`config`] and [`clock`] sit beside them.

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
