//! Maintenance: retention and aliases. `plan` decides (pure), `run` carries a plan out against
//! the node and runs the scheduled loop (when: [`crate::schedule`]).

pub mod plan;
pub mod run;
