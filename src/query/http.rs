//! Routes of the read APIs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::access::{require_token, Token};
use crate::clock::Clock;
use crate::config::Config;
use crate::errors::Chain;
use crate::maintain::indices::IndexList;
use crate::maintain::plan::archive_spans;
use crate::persist::backend::{BackendError, SearchBackend};
use crate::persist::document::hit_statistic;
use crate::query::budget::ReadBudget;
use crate::query::filter::{instant, BadParam, GroupBy, SeriesSelector};
use crate::query::metrics::{
    direct_query, document_sketch, fill_percentiles, histograms_of, parse_percentile, parse_stats,
    points_from_documents, points_from_histogram, points_from_sketches, readable_directly,
    segment_filter, segment_query, segments, DirectAnswer, Groups, Point, PointsOut, Segment, Stat,
    StepChoice, MAX_GROUPED_POINTS,
};
use crate::query::stats::{stats_from_response, stats_query};
use crate::sketch::Sketch;

/// What the read handlers share.
pub(crate) struct QueryState<B, C> {
    pub backend: Arc<B>,
    pub clock: Arc<C>,
    pub config: Arc<Config>,
    /// The index list, kept between maintenance passes.
    pub indices: Arc<IndexList>,
}

impl<B, C> Clone for QueryState<B, C> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            indices: self.indices.clone(),
        }
    }
}

impl<B: SearchBackend, C: Clock> QueryState<B, C> {
    /// The index pattern and what each archive serves now (the stitching), or the error answer.
    async fn spans(&self) -> Result<(String, Vec<(usize, i64, i64)>), Response> {
        let pattern = self.config.index.naming.wildcard();
        let now = self.clock.now();
        let indices = self
            .indices
            .get(self.backend.as_ref(), &pattern)
            .await
            .map_err(node_error)?;
        let mut spans = archive_spans(&self.config, now, &indices);
        if spans.is_empty() {
            // None known: perhaps the first index appeared since the list was taken.
            let indices = self
                .indices
                .refresh(self.backend.as_ref(), &pattern)
                .await
                .map_err(node_error)?;
            spans = archive_spans(&self.config, now, &indices);
        }
        Ok((pattern, spans))
    }

    /// The points of `segs` for each group (one group, keyed "", when `groups` is `None`), in
    /// order: the statistics in one `_msearch`, the percentiles from the stored sketches.
    async fn points(
        &self,
        pattern: &str,
        selector: &SeriesSelector,
        segs: &[Segment],
        stats: &[Stat],
        groups: Option<(&GroupBy, &Groups)>,
        min_coverage: f64,
    ) -> Result<BTreeMap<String, Vec<Point>>, Response> {
        let mut out: BTreeMap<String, Vec<Point>> = BTreeMap::new();
        if let Some((_, g)) = groups {
            for key in &g.keys {
                out.insert(key.clone(), Vec::new());
            }
        } else {
            out.insert(String::new(), Vec::new());
        }
        if segs.is_empty() {
            return Ok(out);
        }
        let from_histograms = stats.iter().any(|s| s.quantile().is_none());
        let from_sketches = stats.iter().any(|s| s.quantile().is_some());
        if groups.is_none() && !from_sketches && segs.iter().all(readable_directly) {
            if let Some(points) = self
                .points_read_directly(pattern, selector, segs, stats, min_coverage)
                .await?
            {
                out.insert(String::new(), points);
                return Ok(out);
            }
        }
        let responses = if from_histograms {
            let bodies: Vec<_> = segs
                .iter()
                .map(|seg| segment_query(&self.config, selector, seg, stats, groups.map(|g| g.1)))
                .collect();
            let raw = self
                .backend
                .msearch(pattern, &bodies)
                .await
                .map_err(node_error)?;
            raw.iter()
                .map(|r| read_answer::<serde_json::Value>(r))
                .collect::<Result<Vec<_>, _>>()
                .map_err(node_error)?
        } else {
            Vec::new()
        };
        for (i, seg) in segs.iter().enumerate() {
            let mut by_group: BTreeMap<String, Vec<Point>> = BTreeMap::new();
            if let Some(response) = responses.get(i) {
                for (key, histogram) in histograms_of(response, groups.is_some()) {
                    by_group.insert(
                        key,
                        points_from_histogram(seg, histogram, stats, min_coverage),
                    );
                }
            }
            if from_sketches {
                let mut query = segment_filter(&self.config, selector, seg);
                if let (Some((_, g)), Some(filters)) =
                    (groups, query["bool"]["filter"].as_array_mut())
                {
                    filters.push(json!({"terms": {g.field.as_str(): g.keys}}));
                }
                let docs = self
                    .backend
                    .search_all(pattern, &query)
                    .await
                    .map_err(node_error)?;
                if let Some(why) = no_sketch_in(&self.config, seg, &docs) {
                    return Err(bad_request(BadParam {
                        param: "stat".into(),
                        why,
                    }));
                }
                let by = groups.map_or(&GroupBy::Nothing, |g| g.0);
                let mut docs_by_group: BTreeMap<String, Vec<&serde_json::Value>> = BTreeMap::new();
                for doc in &docs {
                    if let Some(key) = by.key_of(doc) {
                        docs_by_group.entry(key).or_default().push(doc);
                    }
                }
                for key in out.keys() {
                    let docs = docs_by_group.remove(key).unwrap_or_default();
                    let sketched = points_from_sketches(seg, docs, stats, min_coverage);
                    match by_group.get_mut(key) {
                        Some(points) => fill_percentiles(points, &sketched, stats),
                        None if !from_histograms => {
                            by_group.insert(key.clone(), sketched);
                        }
                        None => {}
                    }
                }
            }
            for (key, points) in by_group {
                if let Some(into) = out.get_mut(&key) {
                    into.extend(points);
                }
            }
        }
        Ok(out)
    }

    /// The points of `segs` read document by document (see `metrics::readable_directly`), in
    /// one `_msearch`; `None` when a segment holds too many documents for that.
    async fn points_read_directly(
        &self,
        pattern: &str,
        selector: &SeriesSelector,
        segs: &[Segment],
        stats: &[Stat],
        min_coverage: f64,
    ) -> Result<Option<Vec<Point>>, Response> {
        let bodies: Vec<_> = segs
            .iter()
            .map(|seg| direct_query(&self.config, selector, seg, stats))
            .collect();
        let responses = self
            .backend
            .msearch(pattern, &bodies)
            .await
            .map_err(node_error)?;
        let mut points = Vec::new();
        for (seg, response) in segs.iter().zip(&responses) {
            let answer: DirectAnswer = read_answer(response).map_err(node_error)?;
            match points_from_documents(seg, &answer, stats, min_coverage) {
                Some(read) => points.extend(read),
                None => return Ok(None),
            }
        }
        Ok(Some(points))
    }

    /// The groups of a grouped read: the `limit` values of `by`'s field with the most stored
    /// buckets in the range, sorted, and whether others were left out.
    async fn groups(
        &self,
        pattern: &str,
        selector: &SeriesSelector,
        by: &GroupBy,
        (from, to): (i64, i64),
        spans: &[(usize, i64, i64)],
        limit: usize,
    ) -> Result<Option<(Groups, bool)>, Response> {
        let Some(field) = by.field() else {
            return Ok(None);
        };
        let Some(mut body) = stats_query(&self.config, selector, from, to, spans) else {
            return Ok(Some((
                Groups {
                    field,
                    keys: Vec::new(),
                },
                false,
            )));
        };
        body["aggs"] = json!({"groups": {"terms": {"field": field, "size": limit}}});
        let response = self
            .backend
            .search(pattern, &body)
            .await
            .map_err(node_error)?;
        let groups = &response["aggregations"]["groups"];
        let mut keys: Vec<String> = groups["buckets"]
            .as_array()
            .map(|b| {
                b.iter()
                    .filter_map(|b| b["key"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        keys.sort();
        let truncated = groups["sum_other_doc_count"].as_u64().unwrap_or(0) > 0;
        Ok(Some((Groups { field, keys }, truncated)))
    }
}

/// Why `stat=pNN` cannot be answered from these documents: they exist but none carries a
/// sketch (a counter or a set, or an archive without `percentiles`). `None` when some do, or
/// when there are none (an empty range is not an error).
fn no_sketch_in(
    config: &crate::config::Config,
    seg: &crate::query::metrics::Segment,
    docs: &[serde_json::Value],
) -> Option<String> {
    if docs.is_empty() || docs.iter().any(|d| d["sketch"].is_string()) {
        return None;
    }
    let archive = &config.archives[seg.archive];
    let kind = docs[0]["type"].as_str().unwrap_or("gauge");
    Some(if archive.percentiles.is_empty() {
        format!("archive '{}' keeps no percentiles (its `percentiles` list is empty), so no quantile can be read from it", archive.name)
    } else {
        format!("this series is a {kind}: strata keeps quantile sketches for gauges and timers only; ask a counter or a set for avg, sum, min, max, count, first or last")
    })
}

/// The read routes.
pub(crate) fn router<B: SearchBackend, C: Clock>(state: QueryState<B, C>, token: Token) -> Router {
    Router::new()
        .route("/v1/stats", get(stats::<B, C>))
        .route("/v1/metrics", get(metrics::<B, C>))
        .route("/read", get(read::<B, C>))
        .route("/v1/series", get(series::<B, C>))
        .route("/v1/archives", get(archives::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(ReadGate::new(
                state.config.http.max_concurrent_reads,
                state.config.http.read_share,
                state.clock.clone(),
            )),
            one_of_few::<C>,
        ))
        .route_layer(axum::middleware::from_fn_with_state(token, require_token))
        .merge(crate::query::page::router())
        .with_state(state)
}

/// What a read waits for: one of `http.max_concurrent_reads` turns, and the read-time budget
/// of `http.read_share` (see [`crate::query::budget`]).
struct ReadGate<C> {
    turns: tokio::sync::Semaphore,
    budget: std::sync::Mutex<ReadBudget>,
    clock: Arc<C>,
}

impl<C: Clock> ReadGate<C> {
    fn new(turns: usize, share: f64, clock: Arc<C>) -> Self {
        let budget = ReadBudget::new(share, clock.now());
        Self {
            turns: tokio::sync::Semaphore::new(turns),
            budget: std::sync::Mutex::new(budget),
            clock,
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, ReadBudget> {
        // Bookkeeping only: a panic cannot leave it half-updated in a way that matters.
        self.budget.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Lets a read run once a turn is free and the read budget is not in debt, and charges the
/// budget for its time: readers queue rather than take the cores ingest needs.
async fn one_of_few<C: Clock>(
    State(gate): State<Arc<ReadGate<C>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    // The semaphore is never closed.
    let _turn = gate.turns.acquire().await;
    loop {
        let now = gate.clock.now();
        let start = gate.budget().start_at(now);
        if start <= now {
            break;
        }
        gate.clock.sleep_until(start).await;
    }
    let began = gate.clock.now();
    let response = next.run(request).await;
    let ended = gate.clock.now();
    gate.budget().spend(ended - began, ended);
    response
}

/// `GET /v1/archives`: the configured archives, finest first as configured.
async fn archives<B: SearchBackend, C: Clock>(State(s): State<QueryState<B, C>>) -> Response {
    let list: Vec<serde_json::Value> = s
        .config
        .archives
        .iter()
        .map(|a| {
            json!({
                "name": a.name,
                "step_seconds": a.step.as_secs(),
                "retention": a.retention.to_string(),
                "index_period": a.index_period.to_string(),
                "lateness_seconds": a.lateness.as_secs_f64(),
                "percentiles": a.percentiles,
            })
        })
        .collect();
    Json(list).into_response()
}

/// One `_msearch` answer read as `T`.
fn read_answer<T: serde::de::DeserializeOwned>(
    raw: &serde_json::value::RawValue,
) -> Result<T, BackendError> {
    serde_json::from_str(raw.get()).map_err(|source| BackendError::Decode {
        call: "_msearch".into(),
        source,
    })
}

fn bad_request(e: BadParam) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": e.to_string(), "param": e.param})),
    )
        .into_response()
}

fn node_error(e: BackendError) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        Json(json!({"error": Chain(&e).to_string()})),
    )
        .into_response()
}

fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"error": "no data for this series in this range"})),
    )
        .into_response()
}

/// `GET /v1/stats?name=&start=&end=[&host=][&tag.<k>=<v>][&percentiles=50,99]`, both ends
/// inclusive (cricket). Percentiles (by default those the archives keep) merge the stored
/// sketches of every bucket in the range.
async fn stats<B: SearchBackend, C: Clock>(
    State(s): State<QueryState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let parsed = (|| {
        Ok::<_, BadParam>((
            SeriesSelector::from_params(&params, "name")?,
            instant(&params, "start")?,
            instant(&params, "end")?,
            optional(&params, "percentiles", |v| {
                v.split(',')
                    .map(parse_percentile)
                    .collect::<Result<Vec<_>, _>>()
            })?,
        ))
    })();
    let (selector, start, end, percentiles) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    if end < start {
        return bad_request(BadParam {
            param: "end".into(),
            why: "is before start".into(),
        });
    }
    let (pattern, spans) = match s.spans().await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(body) = stats_query(&s.config, &selector, start, end.saturating_add(1), &spans) else {
        return not_found();
    };
    let mut stats = match s.backend.search(&pattern, &body).await {
        Ok(response) => match stats_from_response(&response) {
            Some(stats) => stats,
            None => return not_found(),
        },
        Err(e) => return node_error(e),
    };
    let percentiles = percentiles.unwrap_or_else(|| configured_percentiles(&s.config));
    if !percentiles.is_empty() {
        let docs = match s.backend.search_all(&pattern, &body["query"]).await {
            Ok(docs) => docs,
            Err(e) => return node_error(e),
        };
        let mut merged = Sketch::new();
        for (_, sketch) in docs.iter().filter_map(document_sketch) {
            merged.merge(&sketch);
        }
        for milli in percentiles {
            let p = f64::from(milli) / 1000.0;
            if let Some(v) = merged.quantile(p / 100.0) {
                stats
                    .percentiles
                    .insert(crate::config::percentile_field(p), v);
            }
        }
    }
    Json(stats).into_response()
}

/// Every percentile some archive keeps, in thousandths of a percent.
fn configured_percentiles(config: &Config) -> Vec<u32> {
    let mut all: Vec<u32> = config
        .archives
        .iter()
        .flat_map(|a| a.percentiles.iter().map(|p| (p * 1000.0).round() as u32))
        .collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Parses an optional parameter with `parse`.
fn optional<T>(
    params: &BTreeMap<String, String>,
    name: &str,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<T>, BadParam> {
    match params.get(name).filter(|v| !v.is_empty()) {
        Some(v) => parse(v).map(Some).map_err(|why| BadParam {
            param: name.into(),
            why,
        }),
        None => Ok(None),
    }
}

fn parse_step(v: &str) -> Result<i64, String> {
    let d = match v.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => {
            humantime::parse_duration(v).map_err(|e| format!("{v:?} is not a duration ({e})"))?
        }
    };
    match d.as_millis() as i64 {
        0 => Err("must be longer than zero".into()),
        ms => Ok(ms),
    }
}

fn parse_coverage(v: &str) -> Result<f64, String> {
    v.parse::<f64>()
        .ok()
        .filter(|c| (0.0..=1.0).contains(c))
        .ok_or_else(|| format!("{v:?} is not a number from 0 to 1"))
}

/// The most groups one grouped read may ask for.
const MAX_GROUPS: usize = 100;

/// `step`: a duration (`1h`, or seconds), or `auto` for about `points` points (1 000 by
/// default) over the range.
fn step_choice(params: &BTreeMap<String, String>) -> Result<StepChoice, BadParam> {
    match params.get("step").map(String::as_str) {
        None | Some("") => Ok(StepChoice::Stored),
        Some("auto") => {
            let points = optional(params, "points", |v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|p| (1..=crate::query::metrics::MAX_POINTS).contains(p))
                    .ok_or_else(|| {
                        format!(
                            "{v:?} is not a number of points from 1 to {}",
                            crate::query::metrics::MAX_POINTS
                        )
                    })
            })?;
            Ok(StepChoice::Auto(points.unwrap_or(1000)))
        }
        Some(_) => Ok(StepChoice::Fixed(
            optional(params, "step", parse_step)?.unwrap_or_default(),
        )),
    }
}

/// `GET /v1/metrics?name=|match=|names=&from=&to=[&host=][&tag.<k>=<v>][&step=][&points=]
/// [&stat=][&min_coverage=][&group_by=][&limit=]`, or cricket's `GET /v1/metrics?name=&timestamp=`
/// for the stored points at one instant.
async fn metrics<B: SearchBackend, C: Clock>(
    State(s): State<QueryState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    if !params.contains_key("from")
        && !params.contains_key("to")
        && params.contains_key("timestamp")
    {
        return points_at(&s, &params).await;
    }
    let parsed = (|| {
        let selector = SeriesSelector::one_or_several(&params)?;
        let group_by = GroupBy::from_params(&params, &selector)?;
        Ok::<_, BadParam>((
            instant(&params, "from")?,
            instant(&params, "to")?,
            step_choice(&params)?,
            optional(&params, "stat", parse_stats)?.unwrap_or_else(|| vec![Stat::Avg]),
            optional(&params, "min_coverage", parse_coverage)?.unwrap_or(0.0),
            optional(&params, "limit", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_GROUPS).contains(l))
                    .ok_or_else(|| {
                        format!("{v:?} is not a number of groups from 1 to {MAX_GROUPS}")
                    })
            })?
            .unwrap_or(10),
            selector,
            group_by,
        ))
    })();
    let (from, to, step, stats, min_coverage, limit, selector, group_by) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    if to < from {
        return bad_request(BadParam {
            param: "to".into(),
            why: "is before from".into(),
        });
    }
    let (pattern, spans) = match s.spans().await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let end = to.saturating_add(1);
    let segs = match segments(&s.config, from, end, step, &spans) {
        Ok(segs) => segs,
        Err(why) => {
            return bad_request(BadParam {
                param: "step".into(),
                why,
            })
        }
    };
    let groups = match s
        .groups(&pattern, &selector, &group_by, (from, end), &spans, limit)
        .await
    {
        Ok(groups) => groups,
        Err(answer) => return answer,
    };
    if let Some((g, _)) = &groups {
        let per_series: i64 = segs.iter().map(Segment::point_count).sum();
        if per_series * g.keys.len() as i64 > MAX_GROUPED_POINTS {
            return bad_request(BadParam {
                param: "step".into(),
                why: format!(
                    "{} groups of about {per_series} points is more than {MAX_GROUPED_POINTS} points: ask for a coarser step or a lower limit",
                    g.keys.len()
                ),
            });
        }
    }
    let points = match s
        .points(
            &pattern,
            &selector,
            &segs,
            &stats,
            groups.as_ref().map(|(g, _)| (&group_by, g)),
            min_coverage,
        )
        .await
    {
        Ok(points) => points,
        Err(answer) => return answer,
    };
    let name = selector.label();
    match groups {
        None => {
            let points = points.into_values().next().unwrap_or_default();
            // Serialized straight from the points: no JSON tree of thousands of objects first.
            #[derive(serde::Serialize)]
            struct Answer<'a> {
                name: &'a str,
                points: PointsOut<'a>,
            }
            Json(Answer {
                name: &name,
                points: PointsOut {
                    points: &points,
                    stats: &stats,
                    config: &s.config,
                },
            })
            .into_response()
        }
        Some((_, truncated)) => {
            let series: Vec<serde_json::Value> = points
                .iter()
                .map(|(key, points)| json!({"key": key, "points": PointsOut { points, stats: &stats, config: &s.config }}))
                .collect();
            Json(json!({"name": name, "group_by": group_by.as_param(), "series": series, "truncated": truncated}))
                .into_response()
        }
    }
}

/// cricket's lookup: per archive, the stored document whose bucket contains `timestamp`.
async fn points_at<B: SearchBackend, C: Clock>(
    s: &QueryState<B, C>,
    params: &BTreeMap<String, String>,
) -> Response {
    let parsed = (|| {
        Ok::<_, BadParam>((
            SeriesSelector::from_params(params, "name")?,
            instant(params, "timestamp")?,
        ))
    })();
    let (selector, at) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let mut filters = selector.filters();
    // Each archive's bucket holding `at` starts at a different instant.
    let buckets: Vec<_> = s
        .config
        .archives
        .iter()
        .map(|a| {
            let start = crate::consolidate::bucket_start(at, a.step.as_millis() as i64);
            json!({"bool": {"filter": [
                {"term": {"archive": a.name}},
                {"range": {"@timestamp": {"gte": start, "lte": start, "format": "epoch_millis"}}}
            ]}})
        })
        .collect();
    filters.push(json!({"bool": {"should": buckets, "minimum_should_match": 1}}));
    let body = json!({"size": 100, "query": {"bool": {"filter": filters}}, "sort": [{"step": "asc"}], "docvalue_fields": ["avg"]});
    let response = match s
        .backend
        .search(&s.config.index.naming.wildcard(), &body)
        .await
    {
        Ok(r) => r,
        Err(e) => return node_error(e),
    };
    let points: Vec<_> = response["hits"]["hits"]
        .as_array()
        .map(|hits| {
            hits.iter()
                .map(|h| {
                    let d = &h["_source"];
                    json!({"name": d["name"], "type": d["type"], "value": hit_statistic(h, "avg"), "timestamp": d["@timestamp"], "archive": d["archive"], "step": d["step"]})
                })
                .collect()
        })
        .unwrap_or_default();
    if points.is_empty() {
        return not_found();
    }
    Json(points).into_response()
}

/// Kilometric's `GET /read?key=&type=counter|points[&from=][&to=][&period=<seconds>]`.
async fn read<B: SearchBackend, C: Clock>(
    State(s): State<QueryState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    use crate::query::kilometric::{counter_answer, counter_query, points_answer};
    let now = s.clock.now();
    let parsed = (|| {
        let selector = SeriesSelector::from_params(&params, "key")?;
        let kind = crate::query::filter::required(&params, "type")?.to_string();
        if kind != "counter" && kind != "points" {
            return Err(BadParam {
                param: "type".into(),
                why: format!("{kind:?} is not counter or points"),
            });
        }
        let from = if params.contains_key("from") {
            instant(&params, "from")?
        } else {
            0
        };
        let to = if params.contains_key("to") {
            instant(&params, "to")?
        } else {
            now
        };
        let period = optional(&params, "period", |v| {
            v.parse::<i64>()
                .ok()
                .filter(|p| *p > 0)
                .map(|p| p * 1000)
                .ok_or_else(|| format!("{v:?} is not a positive number of seconds"))
        })?;
        Ok((selector, kind, from, to, period.unwrap_or(60_000)))
    })();
    let (selector, kind, from, to, period_ms) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let (pattern, spans) = match s.spans().await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    if kind == "counter" {
        let Some(body) = counter_query(&s.config, &selector, from, to.saturating_add(1), &spans)
        else {
            return Json(counter_answer(&selector.name, None)).into_response();
        };
        return match s.backend.search(&pattern, &body).await {
            Ok(r) => Json(counter_answer(&selector.name, Some(&r))).into_response(),
            Err(e) => node_error(e),
        };
    }
    let segs = match segments(
        &s.config,
        from,
        to.saturating_add(1),
        StepChoice::Fixed(period_ms),
        &spans,
    ) {
        Ok(segs) => segs,
        Err(why) => {
            return bad_request(BadParam {
                param: "period".into(),
                why,
            })
        }
    };
    let points: Vec<_> = match s
        .points(&pattern, &selector, &segs, &[Stat::Sum], None, 0.0)
        .await
    {
        Ok(points) => points
            .into_values()
            .flatten()
            .map(|p| (p.timestamp, p.values[0]))
            .collect(),
        Err(answer) => return answer,
    };
    Json(points_answer(&selector.name, &points)).into_response()
}

/// `GET /v1/series?from=&to=[&name=|match=|names=][&host=][&tag.<k>=<v>][&limit=][&after=]`.
async fn series<B: SearchBackend, C: Clock>(
    State(s): State<QueryState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    use crate::query::series::{series_answer, series_query, MAX_SERIES};
    let parsed = (|| {
        Ok::<_, BadParam>((
            instant(&params, "from")?,
            instant(&params, "to")?,
            optional(&params, "limit", |v| {
                v.parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_SERIES).contains(l))
                    .ok_or_else(|| {
                        format!("{v:?} is not a number of series from 1 to {MAX_SERIES}")
                    })
            })?
            .unwrap_or(MAX_SERIES),
        ))
    })();
    let (from, to, limit) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    let after = params.get("after").filter(|a| !a.is_empty());
    let selector = SeriesSelector::any_name(&params);
    let (pattern, spans) = match s.spans().await {
        Ok(found) => found,
        Err(answer) => return answer,
    };
    let Some(body) = series_query(
        &s.config,
        &selector,
        from,
        to.saturating_add(1),
        &spans,
        (limit, after.map(String::as_str)),
    ) else {
        return Json(json!([])).into_response();
    };
    match s.backend.search(&pattern, &body).await {
        Ok(r) => Json(series_answer(&r)).into_response(),
        Err(e) => node_error(e),
    }
}

#[cfg(test)]
mod tests {
    //! The read routes' status codes, called in-process (`oneshot`) over a canned node; what
    //! they read is tested against real nodes by the integration suite.

    use std::path::Path;

    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::persist::canned::CannedBackend;
    use crate::testing::json_of;
    use serde_json::Value;

    const CONFIG: &str = r#"
[[archive]]
name = "1d"
step = "1d"
retention = "1 year"
index_period = "year"
"#;
    /// 2026-11-30T00:00:00Z.
    const NOW: i64 = 1_796_083_200_000;

    fn app(backend: CannedBackend) -> Router {
        router(
            QueryState {
                backend: Arc::new(backend),
                clock: Arc::new(ManualClock::new(NOW)),
                config: Arc::new(Config::from_toml(CONFIG, Path::new("t")).unwrap()),
                indices: IndexList::new(),
            },
            Token::default(),
        )
    }

    fn with_index() -> CannedBackend {
        let backend = CannedBackend::default();
        *backend.indices.lock().unwrap() = vec!["strata-1d-2026".into()];
        backend
    }

    async fn get(app: Router, uri: &str) -> (StatusCode, Value) {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        (response.status(), json_of(response).await)
    }

    const RANGE: &str = "start=2026-11-01T00:00:00Z&end=2026-11-29T00:00:00Z";

    #[tokio::test]
    async fn bad_parameters_get_400_naming_the_parameter() {
        let (status, body) = get(app(with_index()), &format!("/v1/stats?{RANGE}")).await;
        assert_eq!(
            (status, body["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some("name"))
        );
        let backwards = "/v1/stats?name=a&start=2026-11-02T00:00:00Z&end=2026-11-01T00:00:00Z";
        let (status, body) = get(app(with_index()), backwards).await;
        assert_eq!(
            (status, body["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some("end"))
        );
        let (status, body) = get(app(with_index()), "/v1/metrics?name=a&from=yesterday").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        let (status, _) = get(app(with_index()), "/read?key=a&type=nonsense").await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[tokio::test]
    async fn a_range_no_archive_covers_is_404() {
        let (status, _) = get(
            app(CannedBackend::default()),
            &format!("/v1/stats?name=a&{RANGE}"),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn a_failing_node_is_502() {
        let listing = CannedBackend::default();
        *listing.list_failing.lock().unwrap() = Some(503);
        let (status, body) = get(app(listing), &format!("/v1/stats?name=a&{RANGE}")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        assert!(body["error"].as_str().unwrap().contains("503"));
        // The canned node refuses every search.
        let (status, _) = get(app(with_index()), &format!("/v1/stats?name=a&{RANGE}")).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
        let metrics = "/v1/metrics?name=a&from=2026-11-01T00:00:00Z&to=2026-11-29T00:00:00Z";
        let (status, _) = get(app(with_index()), metrics).await;
        assert_eq!(status, StatusCode::BAD_GATEWAY);
    }
}
