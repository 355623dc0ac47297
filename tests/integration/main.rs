//! End-to-end tests against the real node in STRATA_TEST_NODE (scripts/test starts one per
//! flavour and runs this binary against each): one test binary, a module per area, each test in
//! its own index prefix.

mod agents;
mod backpressure;
mod dashboard;
mod durability;
mod late;
mod maintenance;
mod protocols;
mod readme;
mod reads;
mod replay;
mod samplerr;
mod serve;
mod support;
mod tasks;
