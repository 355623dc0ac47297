//! Carries a maintenance plan out against the node: create the coming indices, send every alias
//! change in one atomic request, then delete expired indices by explicit name — with the safety
//! checks that refuse a surprising purge unless forced. Also the scheduled loop of `serve`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::calendar::rfc3339;
use crate::clock::{Clock, EpochMillis};
use crate::config::Config;
use crate::maintain::plan::{plan, Plan};
use crate::persist::backend::{BackendError, SearchBackend};
use crate::persist::template::index_template;
use crate::stats::Stats;

/// Why a pass did not complete.
#[derive(Debug, thiserror::Error)]
pub enum MaintainError {
    #[error(transparent)]
    Backend(#[from] BackendError),
    #[error("purge refused: {0} (use --force to go ahead)")]
    Refused(String),
}

/// Which halves of a pass to do, and how carefully.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PassOptions {
    /// Create indices and update aliases.
    pub rotate: bool,
    /// Delete expired indices.
    pub purge: bool,
    /// Compute and report only.
    pub dry_run: bool,
    /// Skip the purge safety checks.
    pub force: bool,
}

impl PassOptions {
    pub const FULL: PassOptions = PassOptions {
        rotate: true,
        purge: true,
        dry_run: false,
        force: false,
    };
}

/// Reads the cluster and computes the plan for `now`.
pub async fn read_plan<B: SearchBackend>(
    backend: &B,
    config: &Config,
    now: EpochMillis,
) -> Result<Plan, MaintainError> {
    let pattern = config.index.naming.wildcard();
    let indices = backend.list_indices(&pattern).await?;
    let aliases = backend.get_aliases(&pattern).await?;
    Ok(plan(config, now, &indices, &aliases))
}

/// Refuses a purge that deletes more than `max_deletes` indices, or an index whose retention has
/// not passed by the wall clock (a `--now` in the future, a clock gone wrong).
pub fn check_purge(
    plan: &Plan,
    config: &Config,
    wall_now: EpochMillis,
) -> Result<(), MaintainError> {
    if plan.delete.len() > config.maintain.max_deletes {
        return Err(MaintainError::Refused(format!(
            "it would delete {} indices, more than maintain.max_deletes = {}",
            plan.delete.len(),
            config.maintain.max_deletes
        )));
    }
    if let Some((m, expires)) = plan.expired.iter().find(|(_, expires)| *expires > wall_now) {
        return Err(MaintainError::Refused(format!(
            "{} is younger than its retention by the wall clock (it expires at {})",
            m.name,
            rfc3339(*expires)
        )));
    }
    Ok(())
}

/// One maintenance pass; returns the plan it carried out (or would, with `dry_run`).
pub async fn run_pass<B: SearchBackend>(
    backend: &B,
    config: &Config,
    now: EpochMillis,
    wall_now: EpochMillis,
    options: PassOptions,
) -> Result<Plan, MaintainError> {
    let mut plan = read_plan(backend, config, now).await?;
    if !options.rotate {
        plan.create.clear();
        plan.actions.clear();
    }
    if !options.purge {
        plan.delete.clear();
        plan.expired.clear();
    }
    if options.purge && !options.force {
        check_purge(&plan, config, wall_now)?;
    }
    if options.dry_run {
        return Ok(plan);
    }
    if !plan.create.is_empty() {
        backend
            .put_index_template(&config.index.template, &index_template(config))
            .await?;
    }
    for name in &plan.create {
        backend.create_index(name).await?;
    }
    if !plan.actions.is_empty() {
        backend.update_aliases(&plan.actions).await?;
    }
    if !plan.delete.is_empty() {
        backend.delete_indices(&plan.delete).await?;
    }
    tracing::info!(
        created = plan.create.len(),
        alias_actions = plan.actions.len(),
        deleted = plan.delete.len(),
        "maintenance pass done"
    );
    Ok(plan)
}

/// `serve`'s maintenance: one pass at start-up, then one at every tick of the schedule. Passes
/// run one after another in this task, so two never overlap; a failed pass is logged, shown by
/// `/health`, and the next tick tries again.
pub async fn run_scheduled<B: SearchBackend, C: Clock>(
    backend: Arc<B>,
    config: Arc<Config>,
    clock: Arc<C>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
) {
    loop {
        let now = clock.now();
        let outcome = run_pass(backend.as_ref(), &config, now, now, PassOptions::FULL).await;
        match &outcome {
            Ok(_) => stats.set_maintenance(rfc3339(now), None),
            Err(e) => {
                tracing::error!(error = %e, "maintenance pass failed; retrying at the next tick");
                stats.set_maintenance(rfc3339(now), Some(e.to_string()));
            }
        }
        let Some(next) = config.maintain.schedule.next_after(clock.now()) else {
            tracing::warn!(schedule = %config.maintain.schedule, "the schedule names no later time; no more maintenance passes");
            return;
        };
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            _ = shutdown.cancelled() => return,
        }
    }
}
