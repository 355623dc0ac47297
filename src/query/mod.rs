//! Read APIs: answers built from the archives with aggregations on the node, each part of a
//! range taken from the finest archive that still holds it (the stitching of the aliases).
//! `filter` turns request parameters into the series filter, `stats` is `/v1/stats`, `metrics`
//! is `/v1/metrics`, `http` the routes.

pub mod filter;
pub mod http;
pub mod kilometric;
pub mod live;
pub mod metrics;
pub mod series;
pub mod stats;
