//! Routes of the read APIs.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::clock::Clock;
use crate::config::Config;
use crate::maintain::plan::archive_spans;
use crate::persist::backend::SearchBackend;
use crate::query::filter::{instant, BadParam, SeriesSelector};
use crate::query::stats::{stats_from_response, stats_query};

/// What the read handlers share.
pub struct QueryState<B, C> {
    pub backend: Arc<B>,
    pub clock: Arc<C>,
    pub config: Arc<Config>,
}

impl<B, C> Clone for QueryState<B, C> {
    fn clone(&self) -> Self {
        Self {
            backend: self.backend.clone(),
            clock: self.clock.clone(),
            config: self.config.clone(),
        }
    }
}

/// The read routes.
pub fn router<B: SearchBackend, C: Clock>(state: QueryState<B, C>) -> Router {
    Router::new()
        .route("/v1/stats", get(stats::<B, C>))
        .with_state(state)
}

fn bad_request(e: BadParam) -> Response {
    (
        StatusCode::BAD_REQUEST,
        Json(json!({"error": e.to_string(), "param": e.param})),
    )
        .into_response()
}

fn node_error(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::BAD_GATEWAY,
        Json(json!({"error": e.to_string()})),
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

/// `GET /v1/stats?name=&start=&end=[&host=][&tag.<k>=<v>]`, both ends inclusive (cricket).
async fn stats<B: SearchBackend, C: Clock>(
    State(s): State<QueryState<B, C>>,
    Query(params): Query<BTreeMap<String, String>>,
) -> Response {
    let parsed = (|| {
        Ok::<_, BadParam>((
            SeriesSelector::from_params(&params, "name")?,
            instant(&params, "start")?,
            instant(&params, "end")?,
        ))
    })();
    let (selector, start, end) = match parsed {
        Ok(p) => p,
        Err(e) => return bad_request(e),
    };
    if end < start {
        return bad_request(BadParam {
            param: "end".into(),
            why: "is before start".into(),
        });
    }
    let pattern = s.config.index.naming.wildcard();
    let indices = match s.backend.list_indices(&pattern).await {
        Ok(i) => i,
        Err(e) => return node_error(e),
    };
    let spans = archive_spans(&s.config, s.clock.now(), &indices);
    let Some(body) = stats_query(&s.config, &selector, start, end.saturating_add(1), &spans) else {
        return not_found();
    };
    match s.backend.search(&pattern, &body).await {
        Ok(response) => match stats_from_response(&response) {
            Some(stats) => Json(stats).into_response(),
            None => not_found(),
        },
        Err(e) => node_error(e),
    }
}
