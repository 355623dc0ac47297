//! Maintenance: retention and aliases. `plan` decides (pure), `run` carries a plan out against
//! the node and runs the scheduled loop (when: [`crate::schedule`]), `status` reports what the
//! node holds against the plan, `indices` keeps the index list the read APIs use between passes.

pub mod indices;
pub mod plan;
pub mod run;
pub mod status;
