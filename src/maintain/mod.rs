//! Maintenance: retention and aliases. `plan` decides (pure), `run` carries a plan out against
//! the node and runs the scheduled loop (when: [`crate::schedule`]), `status` reports what the
//! node holds against the plan.

pub mod plan;
pub mod run;
pub mod status;
