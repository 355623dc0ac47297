//! Carries a maintenance plan out against the node: create the coming indices, send every alias
//! change in one atomic request, then delete expired indices by explicit name — with the safety
//! checks that refuse a surprising purge unless forced. Also the scheduled loop of `serve`.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::calendar::rfc3339;
use crate::clock::{Clock, EpochMillis};
use crate::config::Config;
use crate::errors::Chain;
use crate::maintain::indices::IndexList;
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
    let mut plan = plan(config, now, &indices, &aliases);
    if !config.tasks.list.is_empty() {
        let history = backend
            .list_indices(&config.tasks.alert_indices().history_pattern())
            .await?;
        plan.delete
            .extend(crate::maintain::plan::expired_alert_history(
                config, now, &history,
            ));
    }
    Ok(plan)
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
        match check_purge(&plan, config, wall_now) {
            // A dry run shows the plan and why it would be refused.
            Err(MaintainError::Refused(why)) if options.dry_run => plan.refused = Some(why),
            checked => checked?,
        }
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

/// The first wait before a failed pass is tried again, doubled after each failure up to
/// [`LAST_RETRY`].
const FIRST_RETRY: std::time::Duration = std::time::Duration::from_secs(1);
const LAST_RETRY: std::time::Duration = std::time::Duration::from_secs(60);

/// `serve`'s maintenance: one pass at start-up, then one at every tick of the schedule, and one
/// whenever `new_index` is notified (the writer opened an index); after each, `indices` lists
/// again. Passes run one after another
/// in this task, so two never overlap; a failed pass is logged, shown by `/health`, and tried
/// again after 1 s, 2 s, 4 s… (at most a minute), or at the next tick if that comes first.
pub async fn run_scheduled<B: SearchBackend, C: Clock>(
    backend: Arc<B>,
    config: Arc<Config>,
    clock: Arc<C>,
    stats: Arc<Stats>,
    shutdown: CancellationToken,
    new_index: Arc<tokio::sync::Notify>,
    indices: Arc<IndexList>,
) {
    let mut retry_in = FIRST_RETRY;
    loop {
        let now = clock.now();
        let started = std::time::Instant::now();
        let outcome = run_pass(backend.as_ref(), &config, now, now, PassOptions::FULL).await;
        // Even a failed pass may have created or deleted some indices.
        indices.invalidate();
        let took = started.elapsed();
        let failed = match &outcome {
            Ok(_) => {
                stats.set_maintenance(rfc3339(now), None, took);
                false
            }
            Err(e) => {
                tracing::error!(error = %Chain(e), retry_in = ?retry_in, "maintenance pass failed; retrying");
                stats.set_maintenance(rfc3339(now), Some(Chain(e).to_string()), took);
                true
            }
        };
        let Some(mut next) = config.maintain.schedule.next_after(clock.now()) else {
            tracing::warn!(schedule = %config.maintain.schedule, "the schedule names no later time; no more maintenance passes");
            return;
        };
        if failed {
            // A pass that failed (the node away at start-up, say) is tried again soon, not at
            // the next match of the schedule, which may be a day away.
            next = next.min(clock.now().saturating_add(retry_in.as_millis() as i64));
            retry_in = (retry_in * 2).min(LAST_RETRY);
        } else {
            retry_in = FIRST_RETRY;
        }
        tokio::select! {
            _ = clock.sleep_until(next) => {}
            // The writer opened an index (old data, say): alias it now, not at the next match.
            _ = new_index.notified() => tracing::debug!("new index written: maintenance pass now"),
            _ = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;
    use crate::clock::ManualClock;
    use crate::persist::canned::{Call, CannedBackend};

    const CONFIG: &str = r#"
[[archive]]
name = "1d"
step = "1d"
retention = "3 days"
index_period = "day"
[maintain]
schedule = "5 0 * * *"
max_deletes = 2
"#;

    fn config() -> Config {
        Config::from_toml(CONFIG, Path::new("t")).unwrap()
    }

    fn at(s: &str) -> EpochMillis {
        chrono::DateTime::parse_from_rfc3339(s)
            .unwrap()
            .timestamp_millis()
    }

    fn day_indices(days: &[&str]) -> Vec<String> {
        days.iter().map(|d| format!("strata-1d-{d}")).collect()
    }

    /// Lets the spawned loop run until it waits again (the canned node answers at once).
    async fn settle() {
        for _ in 0..50 {
            tokio::task::yield_now().await;
        }
    }

    fn passes(backend: &CannedBackend) -> usize {
        backend
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::ListIndices(_)))
            .count()
    }

    struct Loop {
        backend: Arc<CannedBackend>,
        clock: ManualClock,
        stats: Arc<Stats>,
        shutdown: CancellationToken,
        new_index: Arc<tokio::sync::Notify>,
        task: tokio::task::JoinHandle<()>,
    }

    fn start_loop(backend: CannedBackend, now: EpochMillis) -> Loop {
        let backend = Arc::new(backend);
        let clock = ManualClock::new(now);
        let stats = Arc::new(Stats::default());
        let shutdown = CancellationToken::new();
        let new_index = Arc::new(tokio::sync::Notify::new());
        let task = tokio::spawn(run_scheduled(
            backend.clone(),
            Arc::new(config()),
            Arc::new(clock.clone()),
            stats.clone(),
            shutdown.clone(),
            new_index.clone(),
            IndexList::new(),
        ));
        Loop {
            backend,
            clock,
            stats,
            shutdown,
            new_index,
            task,
        }
    }

    #[tokio::test]
    async fn a_new_index_brings_a_pass_at_once_and_the_schedule_stays() {
        let m = start_loop(CannedBackend::default(), at("2026-11-30T15:00:00Z"));
        settle().await;
        assert_eq!(passes(&m.backend), 1);
        m.new_index.notify_one();
        settle().await;
        assert_eq!(passes(&m.backend), 2, "a pass at once");
        m.clock.set(at("2026-12-01T00:05:00Z"));
        settle().await;
        assert_eq!(passes(&m.backend), 3, "the 00:05 pass still comes");
        m.shutdown.cancel();
        m.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_pass_at_start_then_one_at_each_tick_of_the_schedule() {
        let m = start_loop(CannedBackend::default(), at("2026-11-30T15:00:00Z"));
        settle().await;
        assert_eq!(passes(&m.backend), 1, "one pass at start-up");
        assert!(m
            .backend
            .calls()
            .contains(&Call::CreateIndex("strata-1d-2026.11.30".into())));
        let status = m.stats.snapshot().maintenance.unwrap();
        assert_eq!(
            (status.at.as_str(), status.error),
            ("2026-11-30T15:00:00Z", None)
        );

        m.clock.set(at("2026-12-01T00:04:59Z"));
        settle().await;
        assert_eq!(passes(&m.backend), 1, "not before 00:05");
        m.clock.set(at("2026-12-01T00:05:00Z"));
        settle().await;
        assert_eq!(passes(&m.backend), 2, "the 00:05 pass");
        m.clock.advance(Duration::from_secs(3 * 86_400));
        settle().await;
        assert_eq!(
            passes(&m.backend),
            3,
            "missed ticks make one pass, not three"
        );

        m.shutdown.cancel();
        m.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_failed_pass_is_reported_and_tried_again_soon_with_growing_waits() {
        let backend = CannedBackend::default();
        *backend.list_failing.lock().unwrap() = Some(503);
        let m = start_loop(backend, at("2026-11-30T15:00:00Z"));
        settle().await;
        let status = m.stats.snapshot().maintenance.unwrap();
        assert!(
            status.error.unwrap().contains("503"),
            "the failure is shown"
        );
        assert!(!m.task.is_finished(), "the loop carries on");
        m.clock.advance(Duration::from_millis(999));
        settle().await;
        assert_eq!(passes(&m.backend), 1, "not before a second");
        m.clock.advance(Duration::from_millis(1));
        settle().await;
        assert_eq!(passes(&m.backend), 2, "again after 1 s");
        m.clock.advance(Duration::from_millis(1_999));
        settle().await;
        assert_eq!(passes(&m.backend), 2, "then 2 s later, not sooner");

        *m.backend.list_failing.lock().unwrap() = None;
        m.clock.advance(Duration::from_millis(1));
        settle().await;
        let status = m.stats.snapshot().maintenance.unwrap();
        assert_eq!(
            (status.at.as_str(), status.error),
            ("2026-11-30T15:00:03Z", None)
        );
        m.clock.advance(Duration::from_secs(3_600));
        settle().await;
        assert_eq!(passes(&m.backend), 3, "once it works, the schedule again");
        m.shutdown.cancel();
        m.task.await.unwrap();
    }

    #[tokio::test]
    async fn shutdown_ends_the_loop_while_it_waits() {
        let m = start_loop(CannedBackend::default(), at("2026-11-30T15:00:00Z"));
        settle().await;
        m.shutdown.cancel();
        m.task.await.unwrap();
        assert_eq!(passes(&m.backend), 1);
    }

    #[test]
    fn a_purge_of_more_than_max_deletes_is_refused() {
        let config = config();
        let indices = day_indices(&["2026.11.20", "2026.11.21", "2026.11.22", "2026.11.30"]);
        let now = at("2026-11-30T15:00:00Z");
        let plan = plan(&config, now, &indices, &[]);
        assert_eq!(plan.delete.len(), 3);
        let refused = check_purge(&plan, &config, now).unwrap_err();
        assert!(refused
            .to_string()
            .contains("more than maintain.max_deletes = 2"));
    }

    #[test]
    fn a_purge_ahead_of_the_wall_clock_is_refused() {
        let config = config();
        let indices = day_indices(&["2026.11.20", "2026.11.30"]);
        let plan = plan(&config, at("2026-11-30T15:00:00Z"), &indices, &[]);
        assert_eq!(plan.delete, ["strata-1d-2026.11.20"]);
        assert!(check_purge(&plan, &config, at("2026-11-30T15:00:00Z")).is_ok());
        let refused = check_purge(&plan, &config, at("2026-11-22T00:00:00Z")).unwrap_err();
        assert!(
            refused
                .to_string()
                .contains("strata-1d-2026.11.20 is younger than its retention"),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_dry_run_changes_nothing() {
        let backend = CannedBackend::default();
        *backend.indices.lock().unwrap() = day_indices(&["2026.11.20"]);
        let options = PassOptions {
            dry_run: true,
            ..PassOptions::FULL
        };
        let now = at("2026-11-30T15:00:00Z");
        let plan = run_pass(&backend, &config(), now, now, options)
            .await
            .unwrap();
        assert_eq!(plan.delete, ["strata-1d-2026.11.20"]);
        assert!(backend
            .calls()
            .iter()
            .all(|c| matches!(c, Call::ListIndices(_) | Call::GetAliases(_))));
    }

    #[tokio::test]
    async fn a_dry_run_shows_the_plan_and_why_the_purge_would_be_refused() {
        let backend = CannedBackend::default();
        *backend.indices.lock().unwrap() = day_indices(&["2026.11.18", "2026.11.19", "2026.11.20"]);
        let now = at("2026-11-30T15:00:00Z");
        let dry = PassOptions {
            dry_run: true,
            ..PassOptions::FULL
        };
        let plan = run_pass(&backend, &config(), now, now, dry).await.unwrap();
        assert_eq!(plan.delete.len(), 3);
        let why = plan.refused.as_deref().unwrap();
        assert!(why.contains("more than maintain.max_deletes = 2"), "{why}");
        let text = crate::maintain::plan::render_text(&plan, crate::maintain::plan::Sections::ALL);
        assert!(
            text.contains("purge refused: it would delete 3 indices"),
            "{text}"
        );
        assert!(matches!(
            run_pass(&backend, &config(), now, now, PassOptions::FULL).await,
            Err(MaintainError::Refused(_))
        ));
        assert!(backend
            .calls()
            .iter()
            .all(|c| matches!(c, Call::ListIndices(_) | Call::GetAliases(_))));
    }
}
