//! The tasks' read API: `GET /v1/alerts` (the current level of every alert not ok),
//! `GET /v1/alerts/history?from=&to=` (transitions, from the node) and `GET /v1/tasks`.

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
use crate::persist::backend::SearchBackend;

use super::store::{history, AlertBoard, AlertIndices};

/// The most transitions one history answer holds.
const MAX_HISTORY: usize = 10_000;

pub(crate) struct TasksState<B, C> {
    pub backend: Arc<B>,
    pub clock: Arc<C>,
    pub config: Arc<Config>,
    pub board: AlertBoard,
}

impl<B, C> Clone for TasksState<B, C> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
            board: self.board.clone(),
        }
    }
}

pub(crate) fn router<B: SearchBackend, C: Clock>(state: TasksState<B, C>, token: Token) -> Router {
    Router::new()
        .route("/v1/alerts", get(alerts::<B, C>))
        .route("/v1/alerts/history", get(alert_history::<B, C>))
        .route("/v1/tasks", get(tasks::<B, C>))
        .route_layer(axum::middleware::from_fn_with_state(token, require_token))
        .with_state(state)
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
    let indices = AlertIndices {
        prefix: s.config.tasks.alerts_index.clone(),
    };
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
        .config
        .tasks
        .list
        .iter()
        .map(|t| {
            json!({
                "name": t.name,
                "kind": t.kind().as_str(),
                "enabled": t.enabled,
                "names": t.select.names.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
                "handlers": t.handlers,
                "source": t.source.display().to_string(),
                "script": t.script,
            })
        })
        .collect();
    Json(json!({"tasks": list})).into_response()
}
