//! Maintenance: retention and aliases. `plan` decides (pure), `run` carries a plan out against
//! the node, `schedule` says when passes run.

pub mod plan;
pub mod run;
pub mod schedule;
