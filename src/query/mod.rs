//! Read APIs: answers built from the archives with aggregations on the node, each part of a
//! range taken from the finest archive that still holds it (the stitching of the aliases).
//! `filter` turns request parameters into the series filter, `stats` is `/v1/stats`, `metrics`
//! is `/v1/metrics`, `series` is `/v1/series`, `kilometric` is Kilometric's `/read`, `live`
//! renders the open buckets of `/v1/live`, `http` the routes, `page` the built-in web page,
//! `budget` the share of time reads may take.

pub(crate) mod budget;
pub(crate) mod filter;
pub(crate) mod http;
pub(crate) mod kilometric;
pub(crate) mod live;
pub(crate) mod metrics;
pub(crate) mod page;
pub(crate) mod series;
pub(crate) mod stats;
