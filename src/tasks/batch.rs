//! Batch tasks: on their schedule, one read of `[now - range, now)` from the node, stitched
//! like the read APIs (each part from the finest archive that still holds it, here among the
//! task's archive and the coarser ones), summed per series, and evaluated by the task's engine
//! as one window. The engine lives as long as the task, so alert levels (and their hysteresis)
//! carry from one run to the next.
//!
//! The read is one `_search` per page of 1 000 series: a `composite` aggregation on `series`
//! with the sums of `count` and `sum`, the `min` of `min`, the `max` of `max`, and the latest
//! bucket's `last` — exact whatever the archive, since buckets carry their own statistics.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::config::{Config, TaskConfig, TaskSchedule, TaskSelect};
use crate::event::SeriesKey;
use crate::maintain::plan::archive_spans;
use crate::persist::backend::{BackendError, SearchBackend};
use crate::persist::document::hit_statistic;
use crate::stats::Stats;

use super::alert::GroupLevel;
use super::engine::{EngineLimits, Part, TaskEngine, TaskOutput};

/// Series one page of the read holds.
const PAGE: usize = 1_000;

/// What a batch run gave, for the runner to deliver like a stream task's output.
pub(crate) struct BatchOutput {
    pub task: TaskConfig,
    pub output: TaskOutput,
    pub at: EpochMillis,
}

/// The next run after `now`: the next multiple of `every` since the epoch, or the cron's next
/// minute. Runs missed while the clock jumped are not made up.
pub(crate) fn next_run(schedule: &TaskSchedule, now: EpochMillis) -> Option<EpochMillis> {
    match schedule {
        TaskSchedule::Every(every) => {
            let every = every.as_millis() as i64;
            Some(now.div_euclid(every) * every + every)
        }
        TaskSchedule::Cron(cron) => cron.next_after(now),
    }
}

/// The filters of a task's selector, for the node.
fn selector_filters(select: &TaskSelect) -> Vec<Value> {
    let glob = |field: &str, g: &crate::script::Glob| match g.literal() {
        Some(exact) => json!({"term": {field: exact}}),
        None => json!({"wildcard": {field: {"value": g.as_str()}}}),
    };
    let names: Vec<Value> = select.names.iter().map(|g| glob("name", g)).collect();
    let mut filters = vec![json!({"bool": {"should": names, "minimum_should_match": 1}})];
    if let Some(host) = &select.host {
        filters.push(glob("host", host));
    }
    for (key, g) in &select.tags {
        filters.push(glob(&format!("tags.{key}"), g));
    }
    filters
}

/// The stored summary of every series the task takes over `[from, to)`, from `archive` and the
/// coarser archives where it no longer holds the range.
pub(crate) async fn read_series<B: SearchBackend>(
    backend: &B,
    config: &Config,
    task: &TaskConfig,
    archive: usize,
    (from, to): (EpochMillis, EpochMillis),
) -> Result<Vec<(SeriesKey, Part, EpochMillis)>, BackendError> {
    let pattern = config.index.naming.wildcard();
    let indices = backend.list_indices(&pattern).await?;
    // Stitched among the task's archive and the coarser ones only.
    let mut coarser = config.clone();
    coarser.archives = config.archives[archive..].to_vec();
    let parts: Vec<Value> = archive_spans(&coarser, to, &indices)
        .into_iter()
        .filter_map(|(a, span_from, span_to)| {
            let (lo, hi) = (from.max(span_from), to.min(span_to));
            (lo < hi).then(|| {
                json!({"bool": {"filter": [
                    {"term": {"archive": coarser.archives[a].name}},
                    {"range": {"@timestamp": {"gte": lo, "lt": hi, "format": "epoch_millis"}}}
                ]}})
            })
        })
        .collect();
    if parts.is_empty() {
        return Ok(Vec::new());
    }
    let mut filters = selector_filters(&task.select);
    filters.push(json!({"bool": {"should": parts, "minimum_should_match": 1}}));
    let mut series = Vec::new();
    let mut after: Option<Value> = None;
    loop {
        let mut composite =
            json!({"size": PAGE, "sources": [{"series": {"terms": {"field": "series"}}}]});
        if let Some(key) = &after {
            composite["after"] = key.clone();
        }
        let body = json!({
            "size": 0,
            "query": {"bool": {"filter": filters}},
            "aggs": {"series": {
                "composite": composite,
                "aggs": {
                    "count": {"sum": {"field": "count"}},
                    "sum": {"sum": {"field": "sum"}},
                    "min": {"min": {"field": "min"}},
                    "max": {"max": {"field": "max"}},
                    "latest": {"top_hits": {
                        "size": 1,
                        "sort": [{"@timestamp": "desc"}],
                        "_source": ["name", "host", "tags", "last"],
                        "docvalue_fields": [{"field": "@timestamp", "format": "epoch_millis"}, "last"]
                    }}
                }
            }}
        });
        let answer = backend.search(&pattern, &body).await?;
        let aggregation = &answer["aggregations"]["series"];
        let buckets = aggregation["buckets"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        for b in &buckets {
            if let Some(found) = series_of(b) {
                series.push(found);
            }
        }
        match aggregation.get("after_key") {
            Some(key) if buckets.len() == PAGE => after = Some(key.clone()),
            _ => break,
        }
    }
    Ok(series)
}

/// One composite bucket as a series, its summary and the time of its latest bucket.
fn series_of(bucket: &Value) -> Option<(SeriesKey, Part, EpochMillis)> {
    let count = bucket["count"]["value"].as_f64()? as u64;
    if count == 0 {
        return None;
    }
    let hit = &bucket["latest"]["hits"]["hits"][0];
    let doc = &hit["_source"];
    let name = doc["name"].as_str()?;
    let host = doc["host"].as_str();
    let tags: Vec<(String, String)> = doc["tags"]
        .as_object()
        .map(|t| {
            t.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut tag_refs: Vec<(&str, &str)> =
        tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let time = hit["fields"]["@timestamp"][0]
        .as_str()
        .and_then(|t| t.parse::<f64>().ok())
        .map_or(0, |t| t as EpochMillis);
    let part = Part {
        count,
        sum: bucket["sum"]["value"].as_f64()?,
        min: bucket["min"]["value"].as_f64()?,
        max: bucket["max"]["value"].as_f64()?,
        last: hit_statistic(hit, "last").unwrap_or(f64::NAN),
    };
    Some((SeriesKey::new(name, host, &mut tag_refs), part, time))
}

/// Everything a batch loop needs.
pub(crate) struct BatchLoop<B, C> {
    pub backend: Arc<B>,
    pub config: Arc<Config>,
    pub clock: Arc<C>,
    pub task: TaskConfig,
    pub limits: EngineLimits,
    pub raised: HashMap<String, GroupLevel>,
    pub out: mpsc::Sender<BatchOutput>,
    pub stats: Arc<Stats>,
    pub stop: CancellationToken,
}

impl<B: SearchBackend, C: Clock> BatchLoop<B, C> {
    /// Starts the loop; its schedule counts from now (read here, not when the task first runs).
    pub(crate) fn spawn(self) -> JoinHandle<()> {
        let now = self.clock.now();
        tokio::spawn(self.run(now))
    }

    async fn run(self, now: EpochMillis) {
        let Some(batch) = self.task.batch.clone() else {
            return;
        };
        let mut engine =
            TaskEngine::new(&self.task.name, self.task.program.clone(), self.limits, now);
        engine.restore(&self.raised, now);
        let range = batch.range.as_millis() as i64;
        let mut after = now;
        loop {
            let Some(at) = next_run(&batch.schedule, after) else {
                tracing::warn!(task = %self.task.name, "the schedule names no further run");
                return;
            };
            tokio::select! {
                _ = self.clock.sleep_until(at) => {}
                _ = self.stop.cancelled() => return,
            }
            after = self.clock.now().max(at);
            Stats::add(&self.stats.tasks.batch_runs, 1);
            let read = read_series(
                &*self.backend,
                &self.config,
                &self.task,
                batch.archive,
                (at - range, at),
            )
            .await;
            let series = match read {
                Ok(series) => series,
                Err(e) => {
                    Stats::add(&self.stats.tasks.batch_failures, 1);
                    tracing::warn!(task = %self.task.name, error = %e, "batch run failed: the node could not be read");
                    continue;
                }
            };
            for (key, part, time) in &series {
                engine.record_stored(key, part, *time, at);
            }
            let output = engine.close_stored(at - range, at);
            tracing::debug!(task = %self.task.name, series = series.len(), alerts = output.alerts.len(), "batch run");
            let done = BatchOutput {
                task: self.task.clone(),
                output,
                at,
            };
            if self.out.send(done).await.is_err() {
                return;
            }
        }
    }
}

/// `strata task test` for a batch task: the scheduled runs whose instant falls in
/// `(from, to]`, each reading `[at - range, at)` from the node, through one engine (levels carry
/// from run to run as they would live); `out` gets each alert and emitted point. Returns how
/// many runs it made.
pub async fn replay_runs<B: SearchBackend>(
    backend: &B,
    config: &Config,
    task: &TaskConfig,
    (from, to): (EpochMillis, EpochMillis),
    mut out: impl FnMut(TaskOutput),
) -> Result<u64, BackendError> {
    let Some(batch) = &task.batch else {
        return Ok(0);
    };
    let limits = EngineLimits::of(&config.tasks, task);
    let mut engine = TaskEngine::new(&task.name, task.program.clone(), limits, from);
    let range = batch.range.as_millis() as i64;
    let mut runs = 0;
    let mut at = from;
    while let Some(next) = next_run(&batch.schedule, at).filter(|&n| n <= to) {
        at = next;
        runs += 1;
        for (key, part, time) in
            read_series(backend, config, task, batch.archive, (at - range, at)).await?
        {
            engine.record_stored(&key, &part, time, at);
        }
        out(engine.close_stored(at - range, at));
    }
    Ok(runs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn runs_fall_on_multiples_of_every_and_on_the_cron() {
        let every = TaskSchedule::Every(Duration::from_secs(60));
        assert_eq!(next_run(&every, 0), Some(60_000));
        assert_eq!(next_run(&every, 59_999), Some(60_000));
        assert_eq!(next_run(&every, 60_000), Some(120_000), "strictly after");
        let cron = TaskSchedule::Cron(Box::new(
            crate::schedule::Schedule::parse("*/5 * * * *").unwrap(),
        ));
        assert_eq!(next_run(&cron, 60_000), Some(300_000));
    }

    #[test]
    fn a_composite_bucket_reads_as_a_series_summary() {
        let bucket = json!({
            "key": {"series": "x"},
            "count": {"value": 6.0}, "sum": {"value": 30.0}, "min": {"value": 1.0}, "max": {"value": 9.0},
            "latest": {"hits": {"hits": [{"_source": {"name": "cpu", "host": "a", "tags": {"dc": "eu"}, "last": 4.0},
                                          "fields": {"@timestamp": ["1200000"]}}]}}
        });
        let (key, part, time) = series_of(&bucket).unwrap();
        assert_eq!(format!("{key:?}"), "cpu@a,dc=eu");
        assert_eq!(
            (part.count, part.sum, part.min, part.max, part.last, time),
            (6, 30.0, 1.0, 9.0, 4.0, 1_200_000)
        );
    }

    #[test]
    fn selectors_use_terms_for_exact_names_and_wildcards_for_globs() {
        let select = TaskSelect {
            names: vec![
                crate::script::Glob::new("cpu"),
                crate::script::Glob::new("mem.*"),
            ],
            host: Some(crate::script::Glob::new("web-*")),
            tags: vec![("dc".into(), crate::script::Glob::new("eu"))],
        };
        assert_eq!(
            selector_filters(&select),
            vec![
                json!({"bool": {"should": [{"term": {"name": "cpu"}}, {"wildcard": {"name": {"value": "mem.*"}}}], "minimum_should_match": 1}}),
                json!({"wildcard": {"host": {"value": "web-*"}}}),
                json!({"term": {"tags.dc": "eu"}}),
            ]
        );
    }
}
