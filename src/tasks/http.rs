//! The tasks' read API: `GET /v1/alerts` (the current level of every alert not ok),
//! `GET /v1/alerts/history?from=&to=` (transitions, from the node), `GET /v1/tasks`, and
//! `GET /v1/record?names=&count=&for=` (the live events as NDJSON, for `strata task test`).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::access::{require_token, Token};
use crate::clock::Clock;
use crate::config::Config;
use crate::persist::backend::SearchBackend;

use super::control::TaskControl;
use super::feed::TaskFeed;
use super::runner::TaskList;
use super::store::{history, AlertBoard};

/// The most transitions one history answer holds.
const MAX_HISTORY: usize = 10_000;

pub(crate) struct TasksState<B, C> {
    pub backend: Arc<B>,
    pub clock: Arc<C>,
    pub config: Arc<Config>,
    pub board: AlertBoard,
    pub feed: TaskFeed,
    pub list: TaskList,
    pub control: TaskControl,
}

impl<B, C> Clone for TasksState<B, C> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            board: self.board.clone(),
            feed: self.feed.clone(),
            list: self.list.clone(),
            control: self.control.clone(),
        }
    }
}

pub(crate) fn router<B: SearchBackend, C: Clock>(
    state: TasksState<B, C>,
    read: Token,
    write: Token,
) -> Router {
    let changes = Router::new()
        .route("/v1/tasks/reload", post(reload::<B, C>))
        .route("/v1/tasks/{name}/{action}", post(switch::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(write, require_token));
    Router::new()
        .route("/v1/alerts", get(alerts::<B, C>))
        .route("/v1/alerts/history", get(alert_history::<B, C>))
        .route("/v1/tasks", get(tasks::<B, C>))
        .route("/v1/record", get(record::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(read, require_token))
        .merge(changes)
        .with_state(state)
}

/// `POST /v1/tasks/{name}/enable|disable` (write token).
async fn switch<B: SearchBackend, C: Clock>(
    State(s): State<TasksState<B, C>>,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
) -> Response {
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => {
            return (
                StatusCode::NOT_FOUND,
                Json(json!({"error": "POST /v1/tasks/{name}/enable or /disable"})),
            )
                .into_response()
        }
    };
    match s.control.switch(&name, enabled).await {
        Ok(on) => Json(json!({"task": name, "state": if on { "enabled" } else { "disabled" }}))
            .into_response(),
        Err(why) => (StatusCode::NOT_FOUND, Json(json!({"error": why}))).into_response(),
    }
}

/// `POST /v1/tasks/reload` (write token): the configuration file read again; a file with a
/// problem is refused (400, the problems) and the running tasks stay as they were.
async fn reload<B: SearchBackend, C: Clock>(State(s): State<TasksState<B, C>>) -> Response {
    match s.control.reload().await {
        Ok(count) => Json(json!({"tasks": count})).into_response(),
        Err(why) => (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response(),
    }
}

async fn alerts<B: SearchBackend, C: Clock>(State(s): State<TasksState<B, C>>) -> Response {
    Json(json!({"alerts": s.board.current()})).into_response()
}

async fn alert_history<B: SearchBackend, C: Clock>(
    State(s): State<TasksState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let now = s.clock.now();
    let range = (|| {
        let from = match params.get("from") {
            Some(_) => crate::query::filter::instant(&params, "from")?,
            None => now - 86_400_000,
        };
        let to = match params.get("to") {
            Some(_) => crate::query::filter::instant(&params, "to")?,
            None => now,
        };
        Ok::<_, crate::query::filter::BadParam>((from, to))
    })();
    let (from, to) = match range {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(json!({"error": e.to_string()})),
            )
                .into_response()
        }
    };
    let indices = s.config.tasks.alert_indices();
    match history(&*s.backend, &indices, (from, to), MAX_HISTORY).await {
        Ok(transitions) => Json(json!({"transitions": transitions})).into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            Json(json!({"error": format!("the node could not be read: {e}")})),
        )
            .into_response(),
    }
}

async fn tasks<B: SearchBackend, C: Clock>(State(s): State<TasksState<B, C>>) -> Response {
    let list: Vec<_> = s
        .list
        .get()
        .iter()
        .map(|t| super::control::describe(t, &s.config))
        .collect();
    Json(json!({"tasks": list})).into_response()
}

/// The most events one recording may ask for.
const MAX_RECORD_EVENTS: u64 = 10_000_000;
/// The longest a recording may last.
const MAX_RECORD_FOR: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// `GET /v1/record?names=a,b*&count=N&for=30s`: the events that pass validation from now on,
/// one JSON line each in the ingest format, until `count` were sent or `for` has passed.
async fn record<B: SearchBackend, C: Clock>(
    State(s): State<TasksState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let bad = |why: String| (StatusCode::BAD_REQUEST, Json(json!({"error": why}))).into_response();
    let count = match params.get("count").map(|c| c.parse::<u64>()) {
        None => None,
        Some(Ok(c)) if (1..=MAX_RECORD_EVENTS).contains(&c) => Some(c),
        Some(_) => {
            return bad(format!(
                "parameter 'count': a number of events from 1 to {MAX_RECORD_EVENTS}"
            ))
        }
    };
    let lasting = match params.get("for").map(|d| humantime::parse_duration(d)) {
        None => None,
        Some(Ok(d)) if d <= MAX_RECORD_FOR && !d.is_zero() => Some(d),
        Some(_) => {
            return bad("parameter 'for': a duration such as 30s or 10m, at most 24h".into())
        }
    };
    if count.is_none() && lasting.is_none() {
        return bad("give count= (events) or for= (a duration), or both".into());
    }
    let names = params
        .get("names")
        .map(|n| {
            n.split(',')
                .filter(|g| !g.is_empty())
                .map(crate::script::Glob::new)
                .collect()
        })
        .unwrap_or_default();
    let recording = s.feed.record(names);
    let deadline = lasting.map(|d| s.clock.now() + d.as_millis() as i64);
    let (writer, reader) = tokio::io::duplex(64 * 1024);
    tokio::spawn(write_recording(
        recording,
        writer,
        s.clock.clone(),
        deadline,
        count,
    ));
    (
        [(axum::http::header::CONTENT_TYPE, "application/x-ndjson")],
        axum::body::Body::from_stream(tokio_util::io::ReaderStream::new(reader)),
    )
        .into_response()
}

async fn write_recording<C: Clock>(
    mut recording: super::feed::Recording,
    mut writer: tokio::io::DuplexStream,
    clock: Arc<C>,
    deadline: Option<crate::clock::EpochMillis>,
    count: Option<u64>,
) {
    use tokio::io::AsyncWriteExt;
    let mut written = 0u64;
    let limit = count.unwrap_or(u64::MAX);
    while written < limit {
        tokio::select! {
            batch = recording.events.recv() => {
                let Some(events) = batch else { break };
                let mut text = String::new();
                for event in events.iter().take((limit - written) as usize) {
                    text.push_str(&crate::ingest::json::event_line(event));
                    text.push('\n');
                    written += 1;
                }
                if writer.write_all(text.as_bytes()).await.is_err() {
                    return; // the client went away
                }
            }
            _ = super::runner::sleep_until(&*clock, deadline) => break,
        }
    }
    let dropped = recording.dropped.load(std::sync::atomic::Ordering::Relaxed);
    if dropped > 0 {
        tracing::warn!(
            events = dropped,
            "the recording fell behind: events left out of it"
        );
    }
    let _ = writer.shutdown().await;
}
