//! For unit tests of the decisions above the node (the writer's verdicts, the maintenance loop,
//! the routers): a [`SearchBackend`] that answers from a script and records what it was sent.
//! It stands in for the node only where the test is about strata's reaction to an answer; every
//! behaviour is also tested against real nodes by the integration suite.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;
use serde_json::Value;

use crate::persist::backend::{
    BackendError, ExistingAlias, Fetched, IndexSize, ItemStatus, NodeInfo, SearchBackend,
};

/// One answer to `_bulk`.
pub type BulkAnswer = Result<Vec<ItemStatus>, BackendError>;

/// What the canned node was asked, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    Bulk(Bytes),
    Mget(Vec<(String, String)>),
    ListIndices(String),
    GetAliases(String),
    UpdateAliases(Vec<Value>),
    CreateIndex(String),
    DeleteIndices(Vec<String>),
    PutTemplate(String),
}

/// A node that answers from a script: `_bulk` answers in order (then every item 201), index
/// listings from a fixed list, and everything else as configured.
#[derive(Default)]
pub struct CannedBackend {
    pub bulk_answers: Mutex<VecDeque<BulkAnswer>>,
    /// When set, every `_bulk` without a scripted answer gets this status for the whole request.
    pub bulk_failing: Mutex<Option<u16>>,
    pub indices: Mutex<Vec<String>>,
    /// When set, index listings fail with this status.
    pub list_failing: Mutex<Option<u16>>,
    pub health: Mutex<Option<String>>,
    /// `_mget` answers in order; once they run out every document is missing, or, with
    /// `mget_echo`, is the document last sent for its id in a `_bulk` (at version 1).
    pub mget_answers: Mutex<VecDeque<Result<Vec<Fetched>, BackendError>>>,
    pub mget_echo: Mutex<bool>,
    /// Template installations that fail (503) before one succeeds.
    pub template_failures: Mutex<u32>,
    /// When set, every template installation is refused with this status.
    pub template_refusal: Mutex<Option<u16>>,
    /// The tag keys the node's mappings hold.
    pub tag_keys: Mutex<Vec<String>>,
    pub calls: Mutex<Vec<Call>>,
}

/// A node's error answer with `status`.
pub fn status_error(call: &str, status: u16) -> BackendError {
    BackendError::Status {
        call: call.into(),
        status,
        body: "canned".into(),
    }
}

/// An item status without a reason (a success) or with one.
pub fn item(status: u16) -> ItemStatus {
    ItemStatus {
        status,
        error: (status >= 300).then(|| format!("canned {status}")),
    }
}

impl CannedBackend {
    pub fn answering_bulk(answers: impl IntoIterator<Item = BulkAnswer>) -> Self {
        let backend = Self::default();
        backend.bulk_answers.lock().unwrap().extend(answers);
        backend
    }

    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    /// The `_bulk` bodies sent, in order.
    pub fn bulk_bodies(&self) -> Vec<Bytes> {
        self.calls()
            .into_iter()
            .filter_map(|c| match c {
                Call::Bulk(body) => Some(body),
                _ => None,
            })
            .collect()
    }

    /// The document line last sent in a `_bulk` for `id`.
    fn last_sent(&self, id: &str) -> Option<Value> {
        let mut found = None;
        for body in self.bulk_bodies() {
            let lines: Vec<&[u8]> = body
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .collect();
            for pair in lines.chunks(2) {
                let action: Value = serde_json::from_slice(pair[0]).ok()?;
                let meta = action.as_object()?.values().next()?;
                if meta["_id"] == id {
                    found = serde_json::from_slice(pair[1]).ok();
                }
            }
        }
        found
    }

    fn record(&self, call: Call) {
        self.calls.lock().unwrap().push(call);
    }
}

impl SearchBackend for CannedBackend {
    async fn info(&self) -> Result<NodeInfo, BackendError> {
        Ok(NodeInfo {
            distribution: "canned".into(),
            version: "0".into(),
        })
    }

    async fn health(&self) -> Result<String, BackendError> {
        self.health.lock().unwrap().clone().ok_or_else(|| {
            BackendError::Transport(std::io::Error::other("canned node is away").into())
        })
    }

    async fn put_index_template(&self, name: &str, _body: &Value) -> Result<(), BackendError> {
        self.record(Call::PutTemplate(name.into()));
        if let Some(status) = *self.template_refusal.lock().unwrap() {
            return Err(status_error("_index_template", status));
        }
        let mut failures = self.template_failures.lock().unwrap();
        if *failures > 0 {
            *failures -= 1;
            return Err(status_error("_index_template", 503));
        }
        Ok(())
    }

    async fn bulk(&self, body: Bytes) -> Result<Vec<ItemStatus>, BackendError> {
        let items = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .count()
            / 2;
        self.record(Call::Bulk(body));
        if let Some(answer) = self.bulk_answers.lock().unwrap().pop_front() {
            return answer;
        }
        match *self.bulk_failing.lock().unwrap() {
            Some(status) => Err(status_error("_bulk", status)),
            None => Ok(vec![item(201); items]),
        }
    }

    async fn mget(&self, docs: &[(String, String)]) -> Result<Vec<Fetched>, BackendError> {
        self.record(Call::Mget(docs.to_vec()));
        if let Some(answer) = self.mget_answers.lock().unwrap().pop_front() {
            return answer;
        }
        if !*self.mget_echo.lock().unwrap() {
            return Ok(vec![Fetched::Missing; docs.len()]);
        }
        Ok(docs
            .iter()
            .map(|(_, id)| match self.last_sent(id) {
                Some(source) => Fetched::Found {
                    seq_no: 1,
                    primary_term: 1,
                    source,
                },
                None => Fetched::Missing,
            })
            .collect())
    }

    async fn list_indices(&self, pattern: &str) -> Result<Vec<String>, BackendError> {
        self.record(Call::ListIndices(pattern.into()));
        if let Some(status) = *self.list_failing.lock().unwrap() {
            return Err(status_error("_cat/indices", status));
        }
        Ok(self.indices.lock().unwrap().clone())
    }

    async fn indices_without_meta(
        &self,
        _pattern: &str,
        _key: &str,
    ) -> Result<Vec<String>, BackendError> {
        // Canned nodes hold only indices made by today's template.
        Ok(Vec::new())
    }

    async fn index_sizes(&self, _pattern: &str) -> Result<Vec<IndexSize>, BackendError> {
        Ok(self
            .indices
            .lock()
            .unwrap()
            .iter()
            .map(|index| IndexSize {
                index: index.clone(),
                documents: 0,
                bytes: 0,
            })
            .collect())
    }

    async fn tag_keys(&self, _pattern: &str) -> Result<Vec<String>, BackendError> {
        Ok(self.tag_keys.lock().unwrap().clone())
    }

    async fn get_aliases(&self, pattern: &str) -> Result<Vec<ExistingAlias>, BackendError> {
        self.record(Call::GetAliases(pattern.into()));
        Ok(Vec::new())
    }

    async fn update_aliases(&self, actions: &[Value]) -> Result<(), BackendError> {
        self.record(Call::UpdateAliases(actions.to_vec()));
        Ok(())
    }

    async fn create_index(&self, name: &str) -> Result<(), BackendError> {
        self.record(Call::CreateIndex(name.into()));
        self.indices.lock().unwrap().push(name.into());
        Ok(())
    }

    async fn delete_indices(&self, names: &[String]) -> Result<(), BackendError> {
        self.record(Call::DeleteIndices(names.to_vec()));
        self.indices.lock().unwrap().retain(|i| !names.contains(i));
        Ok(())
    }

    async fn search(&self, _pattern: &str, _body: &Value) -> Result<Value, BackendError> {
        Err(status_error("_search", 404))
    }

    async fn msearch(
        &self,
        _pattern: &str,
        _bodies: &[Value],
    ) -> Result<Vec<Box<serde_json::value::RawValue>>, BackendError> {
        Err(status_error("_msearch", 404))
    }

    async fn refresh(&self, _pattern: &str) -> Result<(), BackendError> {
        Ok(())
    }

    async fn search_all(&self, _pattern: &str, _query: &Value) -> Result<Vec<Value>, BackendError> {
        Ok(Vec::new())
    }
}
