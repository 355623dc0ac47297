//! Alert state and history on the node, so that a restart neither forgets a raised alert nor
//! sends it twice, and Grafana or Kibana can chart the transitions:
//! - `<alerts_index>-state`: one document per alert id, its current level;
//! - `<alerts_index>-history-<yyyy.mm>`: one document per transition.
//!
//! Writes go through a bounded queue to their own task, which retries while the node is away;
//! the runner never waits for the node. The current levels are also kept in memory
//! ([`AlertBoard`]) for `GET /v1/alerts`.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::clock::EpochMillis;
use crate::persist::backend::{BackendError, SearchBackend};
use crate::script::Level;

use super::alert::GroupLevel;

/// Transitions waiting to be written; past it, they are logged and left out.
const STORE_QUEUE: usize = 4_096;
/// How long a failed write waits before it is tried again.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// The most documents one write sends.
const WRITE_BATCH: usize = 500;

pub use crate::config::AlertIndices;

/// The template that maps both kinds of alert documents for aggregations.
pub fn alert_template(indices: &AlertIndices) -> Value {
    let prefix = &indices.prefix;
    json!({
        "index_patterns": [format!("{prefix}-*")],
        "priority": 200,
        "template": {
            "settings": {"number_of_shards": 1, "number_of_replicas": 0},
            "mappings": {
                "dynamic_templates": [{"group": {"path_match": "group.*", "mapping": {"type": "keyword"}}}],
                "properties": {
                    "@timestamp": {"type": "date"},
                    "task": {"type": "keyword"},
                    "id": {"type": "keyword"},
                    "level": {"type": "keyword"},
                    "previous": {"type": "keyword"},
                    "value": {"type": "double"},
                    "time": {"type": "date"},
                    "time_ms": {"type": "long"},
                    "message": {"type": "text"},
                    "since": {"type": "date", "format": "epoch_millis"}
                }
            }
        }
    })
}

/// The current level of every alert not ok, with its last transition.
#[derive(Debug, Default, Clone)]
pub struct AlertBoard(Arc<Mutex<BTreeMap<String, Value>>>);

impl AlertBoard {
    pub fn update(&self, id: &str, body: &Value) {
        if let Ok(mut board) = self.0.lock() {
            if body["level"] == "ok" {
                board.remove(id);
            } else {
                board.insert(id.to_string(), body.clone());
            }
        }
    }

    /// The level of every alert not ok, by id, as the engines restore them.
    pub fn raised(&self) -> HashMap<String, GroupLevel> {
        self.current()
            .iter()
            .filter_map(|doc| {
                let id = doc["id"].as_str()?;
                let level = doc["level"].as_str().and_then(Level::parse)?;
                let since = doc["time_ms"].as_i64().unwrap_or_default();
                Some((id.to_string(), GroupLevel { level, since }))
            })
            .collect()
    }

    pub fn current(&self) -> Vec<Value> {
        self.0
            .lock()
            .map(|b| b.values().cloned().collect())
            .unwrap_or_default()
    }
}

/// The state documents of the alerts raised before this start (not ok), from the state index;
/// none when the index does not exist yet. [`AlertBoard::raised`] reads their levels.
pub async fn load_raised<B: SearchBackend>(
    backend: &B,
    indices: &AlertIndices,
) -> Result<Vec<Value>, BackendError> {
    let body =
        json!({"size": 10_000, "query": {"bool": {"must_not": [{"term": {"level": "ok"}}]}}});
    // The last run's final transitions may not be searchable yet.
    backend.refresh(&indices.state()).await?;
    let answer = backend.search(&indices.state(), &body).await?;
    Ok(answer["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| hit["_source"].clone())
        .collect())
}

/// The transitions of `[from, to]`, oldest first (at most `limit`).
pub async fn history<B: SearchBackend>(
    backend: &B,
    indices: &AlertIndices,
    (from, to): (EpochMillis, EpochMillis),
    limit: usize,
) -> Result<Vec<Value>, BackendError> {
    let body = json!({
        "size": limit,
        "query": {"range": {"@timestamp": {"gte": from, "lte": to, "format": "epoch_millis"}}},
        "sort": [{"@timestamp": "asc"}, {"time_ms": "asc"}]
    });
    backend.refresh(&indices.history_pattern()).await?;
    let answer = backend.search(&indices.history_pattern(), &body).await?;
    Ok(answer["hits"]["hits"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| h["_source"].clone())
        .collect())
}

/// The sending side of the store's queue.
#[derive(Clone)]
pub struct StoreQueue(mpsc::Sender<(Value, EpochMillis)>);

impl StoreQueue {
    /// Queues a transition (its body, and when it was decided); never waits.
    pub fn record(&self, body: Value, at: EpochMillis) {
        if self.0.try_send((body, at)).is_err() {
            tracing::error!("alert store queue full: a transition is not written to the node");
        }
    }
}

/// Starts the task that writes transitions to the node.
pub fn start_store<B: SearchBackend>(
    backend: Arc<B>,
    indices: AlertIndices,
) -> (StoreQueue, tokio::task::JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(STORE_QUEUE);
    (
        StoreQueue(tx),
        tokio::spawn(write_loop(backend, indices, rx)),
    )
}

async fn write_loop<B: SearchBackend>(
    backend: Arc<B>,
    indices: AlertIndices,
    mut rx: mpsc::Receiver<(Value, EpochMillis)>,
) {
    if let Err(e) = backend
        .put_index_template(&indices.prefix, &alert_template(&indices))
        .await
    {
        tracing::warn!(error = %e, "alert index template not installed; alert documents get dynamic mappings");
    }
    let mut pending: Vec<(Value, EpochMillis)> = Vec::new();
    loop {
        if pending.is_empty() {
            match rx.recv().await {
                Some(item) => pending.push(item),
                None => return,
            }
        }
        while pending.len() < WRITE_BATCH {
            match rx.try_recv() {
                Ok(item) => pending.push(item),
                Err(_) => break,
            }
        }
        match write(&*backend, &indices, &pending).await {
            Ok(()) => pending.clear(),
            Err(e) => {
                tracing::warn!(error = %e, waiting = pending.len(), "alert transitions not written; trying again");
                tokio::time::sleep(RETRY_PAUSE).await;
                if rx.is_closed() && rx.is_empty() {
                    // Shutting down with the node away: what is left is logged, not kept.
                    tracing::error!(
                        lost = pending.len(),
                        "alert transitions not written before shutdown"
                    );
                    return;
                }
            }
        }
    }
}

async fn write<B: SearchBackend>(
    backend: &B,
    indices: &AlertIndices,
    items: &[(Value, EpochMillis)],
) -> Result<(), BackendError> {
    let mut body = String::new();
    for (doc, at) in items {
        let mut doc = doc.clone();
        doc["@timestamp"] = json!(crate::calendar::rfc3339(*at));
        doc["since"] = json!(doc["time_ms"]);
        let id = doc["id"].as_str().unwrap_or_default().to_string();
        body.push_str(&json!({"index": {"_index": indices.history_of(*at)}}).to_string());
        body.push('\n');
        body.push_str(&doc.to_string());
        body.push('\n');
        body.push_str(&json!({"index": {"_index": indices.state(), "_id": id}}).to_string());
        body.push('\n');
        body.push_str(&doc.to_string());
        body.push('\n');
    }
    let statuses = backend.bulk(Bytes::from(body)).await?;
    match statuses.iter().find(|s| s.status >= 300) {
        Some(failed) => Err(BackendError::Status {
            call: "_bulk (alert transitions)".into(),
            status: failed.status,
            body: failed.error.clone().unwrap_or_default(),
        }),
        None => Ok(()),
    }
}
