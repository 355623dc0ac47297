//! The HTTP API: `POST /v1/metrics` to ingest, `GET /health` for probes. Handlers validate a
//! whole body before handing it over, so a bad request ingests nothing.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Map, Value};

use crate::access::{refuse_cross_site_bodies, require_token, Token};
use crate::clock::{Clock, EpochMillis};
use crate::config::Config;
use crate::consolidate::{BatchReport, ConsolidateError};
use crate::errors::Chain;
use crate::event::{MetricKind, SeriesKey};
use crate::ingest::handle::{IngestHandle, SubmitError};
use crate::ingest::json::{parse_body, InvalidEvent, Location};
use crate::ingest::limits::{check_text, Limits};
use crate::persist::backend::SearchBackend;
use crate::stats::Stats;

/// What the handlers share.
pub(crate) struct AppState<B, C> {
    ingest: IngestHandle,
    backend: Arc<B>,
    clock: Arc<C>,
    config: Arc<Config>,
    stats: Arc<Stats>,
}

impl<B, C> Clone for AppState<B, C> {
    fn clone(&self) -> Self {
        Self {
            ingest: self.ingest.clone(),
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            stats: self.stats.clone(),
        }
    }
}

impl<B, C> AppState<B, C> {
    pub(crate) fn new(
        ingest: IngestHandle,
        backend: Arc<B>,
        clock: Arc<C>,
        config: Config,
        stats: Arc<Stats>,
    ) -> Self {
        Self {
            ingest,
            backend,
            clock,
            config: Arc::new(config),
            stats,
        }
    }
}

/// A request must be received, parsed and answered within this: a stalled body held its
/// connection and its share of [`Intake`] forever.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// The request bytes all ingest requests may hold at once (`http.max_inflight_bytes`): 128
/// bodies of 16 MiB at once once took 3.8 GB.
#[derive(Clone)]
struct Intake {
    /// One permit per KiB.
    kib: Arc<tokio::sync::Semaphore>,
    max_body_bytes: usize,
}

/// Admits a request if its bytes (as announced, or the body limit when not) fit in what is
/// left of the bound, and answers it within [`REQUEST_TIMEOUT`].
async fn bounded_intake(
    State(intake): State<Intake>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(intake.max_body_bytes)
        .min(intake.max_body_bytes);
    let kib = u32::try_from(announced.div_ceil(1024).max(1)).unwrap_or(u32::MAX);
    let Ok(_held) = intake.kib.clone().try_acquire_many_owned(kib) else {
        let body = json!({"error": "too many request bytes in flight; retry later"});
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "1")],
            Json(body),
        )
            .into_response();
    };
    match tokio::time::timeout(REQUEST_TIMEOUT, next.run(request)).await {
        Ok(response) => response,
        Err(_) => error(
            StatusCode::REQUEST_TIMEOUT,
            json!({"error": format!("the request was not received within {}", humantime::format_duration(REQUEST_TIMEOUT))}),
        ),
    }
}

/// Counts the ingest requests answered with an error, whatever answered it (a handler, the body
/// limit, the token or cross-site check, the intake bound).
async fn count_refusals(
    State(stats): State<Arc<Stats>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status().as_u16();
    if status >= 400 {
        stats.count_http_refusal(status);
    }
    response
}

/// The API's routes: the ingest routes behind `write`, the live view and the home page behind
/// `read`, `/health` open.
pub(crate) fn router<B: SearchBackend, C: Clock>(
    state: AppState<B, C>,
    write: Token,
    read: Token,
) -> Router {
    let http = &state.config.http;
    let intake = Intake {
        kib: Arc::new(tokio::sync::Semaphore::new(
            http.max_inflight_bytes.div_ceil(1024),
        )),
        max_body_bytes: http.max_body_bytes,
    };
    let max_body_bytes = http.max_body_bytes;
    let bodies = Router::new()
        .route("/v1/metrics", post(post_metrics::<B, C>))
        .route("/agg", put(put_agg::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(intake, bounded_intake))
        .route_layer(axum::middleware::from_fn_with_state(
            write.clone(),
            refuse_cross_site_bodies,
        ));
    let writes = Router::new()
        .merge(bodies)
        .route("/track", get(track::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(write, require_token))
        .route_layer(axum::middleware::from_fn_with_state(
            state.stats.clone(),
            count_refusals,
        ));
    let reads = Router::new()
        .route("/v1/live", get(live::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(read, require_token));
    Router::new()
        .merge(writes)
        .merge(reads)
        .route("/health", get(health::<B, C>))
        .route("/metrics", get(metrics::<B, C>))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .with_state(state)
}

fn error(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

fn invalid_event(e: &InvalidEvent) -> Response {
    let mut body = Map::new();
    body.insert("error".into(), json!(e.to_string()));
    match e.at {
        Location::Item(i) => body.insert("item".into(), json!(i)),
        Location::Line(l) => body.insert("line".into(), json!(l)),
        Location::Body => None,
    };
    if let Some(f) = &e.field {
        body.insert("field".into(), json!(f));
    }
    error(StatusCode::BAD_REQUEST, Value::Object(body))
}

/// The answer to an accepted body: how many events were kept, how many of them go into stored
/// buckets, how many were too old for every archive; then the same per archive.
fn report_json(report: &BatchReport, config: &Config) -> Value {
    let archives: Map<String, Value> = config
        .archives
        .iter()
        .zip(&report.archives)
        .map(|(a, n)| {
            let counts = json!({"recorded": n.recorded, "merged": n.merged, "expired": n.expired});
            (a.name.clone(), counts)
        })
        .collect();
    json!({"accepted": report.accepted, "merged": report.merged, "expired": report.expired, "archives": archives})
}

async fn post_metrics<B: SearchBackend, C: Clock>(
    State(s): State<AppState<B, C>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest_body(&s, body, parse_body).await
}

/// DaTtSs's `PUT /agg` with `{"prt":{"c":[…],"ms":[…],"g":[…]}}` partial aggregates.
async fn put_agg<B: SearchBackend, C: Clock>(
    State(s): State<AppState<B, C>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    ingest_body(&s, body, crate::ingest::dattss::parse_agg).await
}

/// Parses a body into events, or says what is wrong with it.
type ParseBody = fn(&[u8], &Limits) -> Result<Vec<crate::event::Event>, InvalidEvent>;

/// Bodies up to this size are parsed on the request's own task: about a thousand events, a
/// fraction of a millisecond. Larger ones (up to `http.max_body_bytes`, hundreds of thousands of
/// events) are parsed on the blocking pool, so that parsing never holds up `/health`, other
/// requests or the shutdown signal on the runtime's threads.
const PARSE_INLINE_MAX_BYTES: usize = 64 * 1024;

/// Parses a whole body with `parse` and ingests it, or answers what is wrong with it.
async fn ingest_body<B, C: Clock>(
    s: &AppState<B, C>,
    body: Result<Bytes, BytesRejection>,
    parse: ParseBody,
) -> Response {
    let body = match body {
        Ok(body) => body,
        Err(rejection) => {
            let status = rejection.status();
            let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
                format!(
                    "body larger than http.max_body_bytes ({} bytes)",
                    s.config.http.max_body_bytes
                )
            } else {
                rejection.body_text()
            };
            return error(status, json!({"error": message}));
        }
    };
    let limits = Limits::new(&s.config.ingest, s.clock.now());
    let parsed = if body.len() <= PARSE_INLINE_MAX_BYTES {
        parse(&body, &limits)
    } else {
        match tokio::task::spawn_blocking(move || parse(&body, &limits)).await {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::error!(error = %e, "parsing a request body failed");
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"error": "the body could not be parsed: an internal error, logged"}),
                );
            }
        }
    };
    let events = match parsed {
        Ok(events) => events,
        Err(e) => return invalid_event(&e),
    };
    match submit(s, events).await {
        Ok(report) => (StatusCode::OK, Json(report_json(&report, &s.config))).into_response(),
        Err(refused) => refused,
    }
}

/// Hands events to the consolidator; a refusal becomes its HTTP answer.
async fn submit<B, C>(
    s: &AppState<B, C>,
    events: Vec<crate::event::Event>,
) -> Result<BatchReport, Response> {
    match s.ingest.submit(events).await {
        Ok(report) => Ok(report),
        Err(SubmitError::Busy) => {
            Stats::add(&s.stats.requests_refused_busy, 1);
            let body =
                json!({"error": "ingest queue is full: the node is not keeping up; retry later"});
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                Json(body),
            )
                .into_response())
        }
        Err(SubmitError::Closed) => Err(error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "shutting down"}),
        )),
        Err(e @ (SubmitError::Unlogged(_) | SubmitError::DiskFull)) => {
            Stats::add(&s.stats.requests_refused_busy, 1);
            Err((
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                Json(
                    json!({"error": format!("{e}; nothing of this request was kept, retry later")}),
                ),
            )
                .into_response())
        }
        Err(SubmitError::Refused(e @ ConsolidateError::KindConflict { item, .. })) => Err(error(
            StatusCode::CONFLICT,
            json!({"error": e.to_string(), "item": item, "field": "type"}),
        )),
        Err(SubmitError::Refused(e @ ConsolidateError::TagKeyLimit { item, .. })) => Err(error(
            StatusCode::BAD_REQUEST,
            json!({"error": e.to_string(), "item": item, "field": "tags"}),
        )),
        Err(SubmitError::Refused(e)) => Err(error(
            StatusCode::TOO_MANY_REQUESTS,
            json!({"error": e.to_string()}),
        )),
    }
}

/// Kilometric's `GET /track?key=<name>[&value=<n>]`: a counter increment (value 1 by default),
/// stamped now; 204 on success.
async fn track<B: SearchBackend, C: Clock>(
    State(s): State<AppState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let bad = |param: &str, why: String| {
        error(
            StatusCode::BAD_REQUEST,
            json!({"error": format!("parameter '{param}': {why}"), "param": param}),
        )
    };
    let Some(key) = params.get("key") else {
        return bad("key", "is required".into());
    };
    if let Err(why) = check_text(key, s.config.ingest.max_name_length) {
        return bad("key", why.to_string());
    }
    let value = match params.get("value").map(|v| v.parse::<f64>()) {
        None => 1.0,
        Some(Ok(v)) if crate::event::in_range(v) => v,
        Some(_) => {
            return bad(
                "value",
                format!("{:?} is not a finite number within ±1e290", params["value"]),
            )
        }
    };
    let event = crate::event::Event::value(
        SeriesKey::new(key, None, &mut []),
        MetricKind::Counter,
        value,
        s.clock.now(),
    );
    match submit(&s, vec![event]).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(refused) => refused,
    }
}

/// `GET /v1/live[?name=]`: the open buckets in memory (at most 1000 series).
async fn live<B: SearchBackend, C: Clock>(
    State(s): State<AppState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let name = params.get("name").filter(|n| !n.is_empty()).cloned();
    match s.ingest.live(name, 1000).await {
        Ok(series) => Json(crate::query::live::live_json(
            &s.config,
            s.clock.now(),
            &series,
        ))
        .into_response(),
        Err(e) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": e.to_string()}),
        ),
    }
}

/// The closed buckets waiting for the node in the on-disk backlog, and why (the writer's last
/// error); null when none waits.
fn backlog_of(stats: &crate::stats::StatsSnapshot, now: EpochMillis) -> Value {
    if stats.backlog_docs == 0 {
        return Value::Null;
    }
    let oldest = stats.backlog_oldest_ms as i64;
    json!({
        "documents": stats.backlog_docs,
        "bytes": stats.backlog_bytes,
        "oldest_age_seconds": (oldest > 0).then(|| (now - oldest).max(0) / 1000),
        "why": stats.last_bulk_error,
    })
}

/// Prometheus' scrape: every counter in the OpenMetrics text format. Open like `/health`.
async fn metrics<B: SearchBackend, C: Clock>(State(s): State<AppState<B, C>>) -> Response {
    (
        [(header::CONTENT_TYPE, crate::stats::prometheus::CONTENT_TYPE)],
        crate::stats::prometheus::render(s.stats.clone()),
    )
        .into_response()
}

async fn health<B: SearchBackend, C: Clock>(State(s): State<AppState<B, C>>) -> Response {
    let stats = s.stats.snapshot();
    let fail = |reason: String| {
        error(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"status": "error", "reason": reason, "backlog": backlog_of(&stats, s.clock.now()), "pipeline": stats}),
        )
    };
    if s.ingest.is_closed() {
        return fail("the pipeline has stopped".into());
    }
    let backlog = backlog_of(&stats, s.clock.now());
    match tokio::time::timeout(Duration::from_secs(2), s.backend.health()).await {
        Ok(Ok(status)) if status != "red" => (
            StatusCode::OK,
            Json(json!({"status": "ok", "node": {"status": status}, "backlog": backlog, "pipeline": stats})),
        )
            .into_response(),
        Ok(Ok(_)) => fail("the node's cluster health is red".into()),
        Ok(Err(e)) => fail(Chain(&e).to_string()),
        Err(_) => fail("the node did not answer within 2s".into()),
    }
}

#[cfg(test)]
mod tests {
    //! The routes' status codes, with the router called in-process (`oneshot`) and a small task
    //! standing in for the consolidator. Everything here is also exercised against real nodes by
    //! the integration suite.

    use std::path::Path;

    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use tower::ServiceExt;

    use super::*;
    use crate::clock::ManualClock;
    use crate::consolidate::ArchiveCounts;
    use crate::consolidate::ConsolidateError;
    use crate::ingest::handle::{ingest_channel, IngestQueue, Request};
    use crate::persist::canned::CannedBackend;
    use crate::testing::json_of;

    const CONFIG: &str = r#"
[[archive]]
name = "20s"
step = "20s"
retention = "1 day"
index_period = "day"
[http]
max_body_bytes = 1000
max_inflight_bytes = 2048
"#;
    const NOW: i64 = 1_780_000_000_000;

    /// How the stand-in consolidator answers every batch.
    #[derive(Clone, Copy)]
    enum Answer {
        Accept,
        SeriesLimit,
        KindConflict,
    }

    fn consolidate(mut queue: IngestQueue, answer: Answer) {
        tokio::spawn(async move {
            while let Some(request) = queue.requests.recv().await {
                match request {
                    Request::Ingest(batch) => {
                        let result = match answer {
                            Answer::Accept => Ok(BatchReport {
                                accepted: batch.events.len() as u64,
                                archives: vec![ArchiveCounts {
                                    recorded: batch.events.len() as u64,
                                    ..ArchiveCounts::default()
                                }],
                                ..BatchReport::default()
                            }),
                            Answer::SeriesLimit => Err(ConsolidateError::SeriesLimit {
                                limit: 1,
                                series: "x".into(),
                            }),
                            Answer::KindConflict => Err(ConsolidateError::KindConflict {
                                item: 0,
                                series: "x".into(),
                                open: "gauge",
                                sent: "timer",
                            }),
                        };
                        if let Some(reply) = batch.reply {
                            let _ = reply.send(result.map_err(SubmitError::from));
                        }
                    }
                    Request::Live(live) => {
                        let _ = live.reply.send(Vec::new());
                    }
                }
            }
        });
    }

    fn app_with(ingest: IngestHandle, backend: CannedBackend) -> Router {
        let config = Config::from_toml(CONFIG, Path::new("t")).unwrap();
        let state = AppState::new(
            ingest,
            Arc::new(backend),
            Arc::new(ManualClock::new(NOW)),
            config,
            Arc::new(Stats::default()),
        );
        router(state, Token::default(), Token::default())
    }

    fn app(answer: Answer) -> Router {
        let (ingest, queue) = ingest_channel(8);
        consolidate(queue, answer);
        app_with(ingest, CannedBackend::default())
    }

    async fn call(app: Router, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let request = HttpRequest::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body.to_string()))
            .unwrap();
        let response = app.oneshot(request).await.unwrap();
        let status = response.status();
        let retry_after = response.headers().get(header::RETRY_AFTER).cloned();
        let mut value = json_of(response).await;
        if let Some(r) = retry_after {
            value["retry-after"] = json!(r.to_str().unwrap());
        }
        (status, value)
    }

    const GOOD: &str = r#"[{"name":"a","value":1},{"name":"b","value":2}]"#;

    /// A POST of `/v1/metrics` whose body never ends (a client that stalls).
    fn stalled_post() -> HttpRequest<Body> {
        let never = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        HttpRequest::builder()
            .method("POST")
            .uri("/v1/metrics")
            .body(Body::from_stream(never))
            .unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn request_bytes_in_flight_are_bounded_and_a_stalled_body_times_out() {
        let app = app(Answer::Accept);
        // Two stalled bodies of unknown length take 1000 bytes each of the 2048 allowed.
        let first = tokio::spawn(app.clone().oneshot(stalled_post()));
        let second = tokio::spawn(app.clone().oneshot(stalled_post()));
        tokio::task::yield_now().await;
        let (status, body) = call(app.clone(), "POST", "/v1/metrics", GOOD).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["retry-after"], "1");
        let (first, second) = (
            first.await.unwrap().unwrap(),
            second.await.unwrap().unwrap(),
        );
        assert_eq!(
            (first.status(), second.status()),
            (StatusCode::REQUEST_TIMEOUT, StatusCode::REQUEST_TIMEOUT)
        );
        let (status, _) = call(app, "POST", "/v1/metrics", GOOD).await;
        assert_eq!(status, StatusCode::OK, "their bytes were given back");
    }

    #[tokio::test]
    async fn accepted_events_get_200_with_the_counts() {
        let (status, body) = call(app(Answer::Accept), "POST", "/v1/metrics", GOOD).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["accepted"], 2);
        assert_eq!(
            body["archives"]["20s"],
            json!({"recorded": 2, "merged": 0, "expired": 0})
        );
    }

    #[tokio::test]
    async fn a_bad_item_gets_400_naming_item_and_field() {
        let body = r#"[{"name":"a","value":1},{"name":"b","value":"x"}]"#;
        let (status, body) = call(app(Answer::Accept), "POST", "/v1/metrics", body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(
            (body["item"].as_u64(), body["field"].as_str()),
            (Some(1), Some("value"))
        );
    }

    #[tokio::test]
    async fn a_body_over_the_limit_gets_413() {
        let big = format!("[{}]", vec![r#"{"name":"a","value":1}"#; 100].join(","));
        let (status, body) = call(app(Answer::Accept), "POST", "/v1/metrics", &big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert!(body["error"]
            .as_str()
            .unwrap()
            .contains("max_body_bytes (1000 bytes)"));
    }

    #[tokio::test]
    async fn refused_ingest_requests_are_counted_by_status_whatever_refused_them() {
        let (ingest, queue) = ingest_channel(8);
        consolidate(queue, Answer::Accept);
        let stats = Arc::new(Stats::default());
        let state = AppState::new(
            ingest,
            Arc::new(CannedBackend::default()),
            Arc::new(ManualClock::new(NOW)),
            Config::from_toml(CONFIG, Path::new("t")).unwrap(),
            stats.clone(),
        );
        let app = router(state, Token::default(), Token::default());
        let big = format!("[{}]", vec![r#"{"name":"a","value":1}"#; 100].join(","));
        for (body, expected) in [
            (GOOD.to_string(), StatusCode::OK),
            ("{".to_string(), StatusCode::BAD_REQUEST),
            (r#"{"name":"a"}"#.to_string(), StatusCode::BAD_REQUEST),
            (big, StatusCode::PAYLOAD_TOO_LARGE),
        ] {
            assert_eq!(
                call(app.clone(), "POST", "/v1/metrics", &body).await.0,
                expected
            );
        }
        let counts: Vec<u64> = stats
            .http_refused
            .iter()
            .map(|c| c.load(std::sync::atomic::Ordering::Relaxed))
            .collect();
        // 400, 401, 408, 409, 413, 415, 429, 503, other
        assert_eq!(counts, [2, 0, 0, 0, 1, 0, 0, 0, 0]);
    }

    #[tokio::test]
    async fn a_full_queue_gets_503_with_retry_after() {
        let (ingest, _queue) = ingest_channel(1);
        ingest.hand_off(Vec::new()).unwrap();
        let app = app_with(ingest, CannedBackend::default());
        let (status, body) = call(app, "POST", "/v1/metrics", GOOD).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["retry-after"], "1");
    }

    #[tokio::test]
    async fn an_event_of_another_type_than_its_series_gets_409_naming_item_and_field() {
        let (status, body) = call(app(Answer::KindConflict), "POST", "/v1/metrics", GOOD).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(
            (body["item"].as_u64(), body["field"].as_str()),
            (Some(0), Some("type"))
        );
        assert!(
            body["error"].as_str().unwrap().contains("is a gauge"),
            "{body}"
        );
    }

    #[tokio::test]
    async fn the_series_limit_gets_429_and_shutdown_503() {
        let (status, _) = call(app(Answer::SeriesLimit), "POST", "/v1/metrics", GOOD).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        let (ingest, queue) = ingest_channel(1);
        drop(queue);
        let app = app_with(ingest, CannedBackend::default());
        let (status, body) = call(app, "POST", "/v1/metrics", GOOD).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, Some("shutting down"))
        );
    }

    #[tokio::test]
    async fn dattss_agg_and_kilometric_track() {
        let agg = r#"{"prt":{"c":[{"typ":"c","pth":"p:s","sum":3,"cnt":2,"min":1,"max":2,"fst":1,"lst":2}]}}"#;
        let (status, body) = call(app(Answer::Accept), "PUT", "/agg", agg).await;
        assert_eq!(
            (status, body["accepted"].as_u64()),
            (StatusCode::OK, Some(1))
        );
        let (status, _) = call(app(Answer::Accept), "GET", "/track?key=hits", "").await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, body) = call(app(Answer::Accept), "GET", "/track?value=2", "").await;
        assert_eq!(
            (status, body["param"].as_str()),
            (StatusCode::BAD_REQUEST, Some("key"))
        );
    }

    #[tokio::test]
    async fn health_follows_the_node_and_the_pipeline() {
        let health = |status: Option<&str>| {
            let backend = CannedBackend::default();
            *backend.health.lock().unwrap() = status.map(String::from);
            let (ingest, queue) = ingest_channel(8);
            consolidate(queue, Answer::Accept);
            app_with(ingest, backend)
        };
        let (status, body) = call(health(Some("green")), "GET", "/health", "").await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
        let (status, body) = call(health(Some("red")), "GET", "/health", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(body["reason"].as_str().unwrap().contains("red"));
        let (status, _) = call(health(None), "GET", "/health", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);

        let (ingest, queue) = ingest_channel(8);
        drop(queue);
        let backend = CannedBackend::default();
        *backend.health.lock().unwrap() = Some("green".into());
        let (status, body) = call(app_with(ingest, backend), "GET", "/health", "").await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(body["reason"], "the pipeline has stopped");
    }

    #[tokio::test]
    async fn live_answers_from_memory() {
        let (status, _) = call(app(Answer::Accept), "GET", "/v1/live", "").await;
        assert_eq!(status, StatusCode::OK);
    }

    /// Holds the next parse until the test lets it go; a parse that waits in vain reports that
    /// the runtime's thread was never free to let it go.
    static RELEASE: std::sync::Mutex<Option<std::sync::mpsc::Receiver<()>>> =
        std::sync::Mutex::new(None);

    fn parse_when_released(
        body: &[u8],
        limits: &Limits,
    ) -> Result<Vec<crate::event::Event>, InvalidEvent> {
        let release = RELEASE
            .lock()
            .unwrap()
            .take()
            .expect("one parse per release");
        if release.recv_timeout(Duration::from_secs(2)).is_err() {
            return Err(InvalidEvent {
                at: Location::Body,
                field: None,
                message: "starved: nothing else ran while this body was parsed".into(),
            });
        }
        parse_body(body, limits)
    }

    /// On a runtime of one thread, a large body's parse must leave that thread free: the task
    /// that lets the parse go runs only then. (Parsed inline, the parse waited out its timeout.)
    #[tokio::test(flavor = "current_thread")]
    async fn a_large_body_is_parsed_without_holding_the_runtime() {
        let (release, held) = std::sync::mpsc::channel();
        *RELEASE.lock().unwrap() = Some(held);
        let (ingest, queue) = ingest_channel(8);
        consolidate(queue, Answer::Accept);
        let state = AppState::new(
            ingest,
            Arc::new(CannedBackend::default()),
            Arc::new(ManualClock::new(NOW)),
            Config::from_toml(CONFIG, std::path::Path::new("t")).unwrap(),
            Arc::new(Stats::default()),
        );
        let line = "{\"name\":\"big\",\"value\":1}\n";
        let body = Bytes::from(line.repeat(PARSE_INLINE_MAX_BYTES / line.len() + 1));
        let events = body.len() / line.len();
        let handler =
            tokio::spawn(async move { ingest_body(&state, Ok(body), parse_when_released).await });
        tokio::spawn(async move { release.send(()).unwrap() });
        let response = handler.await.unwrap();
        let status = response.status();
        let answer = json_of(response).await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        assert_eq!(answer["accepted"].as_u64(), Some(events as u64));
    }
}
