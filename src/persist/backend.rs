//! The few calls strata makes to Elasticsearch / OpenSearch, behind [`SearchBackend`], so the rest
//! of the program never sees the client crate. [`HttpBackend`] implements it with the
//! `elasticsearch` crate's transport, which sends plain `application/json` and works against
//! both products.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::Duration;

use bytes::Bytes;
use elasticsearch::auth::Credentials;
use elasticsearch::cert::{Certificate, CertificateValidation};
use elasticsearch::http::headers::{HeaderMap, HeaderValue, CONTENT_TYPE};
use elasticsearch::http::transport::{SingleNodeConnectionPool, Transport, TransportBuilder};
use elasticsearch::http::{Method, Url};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::config::{NodeAuth, NodeConfig};
use crate::persist::document::STATISTICS_AS_DOC_VALUES;

/// Why a call to the node failed.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("cannot set up the node client: {what}")]
    Setup {
        what: String,
        #[source]
        cause: Option<Cause>,
    },
    #[error("node unreachable")]
    Transport(#[source] elasticsearch::Error),
    #[error("node answered {status} to {call}: {body}")]
    Status {
        call: String,
        status: u16,
        body: String,
    },
    #[error("cannot read the node's answer to {call}")]
    Decode {
        call: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("refusing to delete indices by pattern: {0:?}")]
    DeleteByPattern(Vec<String>),
}

/// What a client set-up failure came from.
pub type Cause = Box<dyn std::error::Error + Send + Sync + 'static>;

impl BackendError {
    /// HTTP status, when the node answered at all.
    pub fn status(&self) -> Option<u16> {
        match self {
            BackendError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// What TLS said about the node's certificate, when the connection failed because the
    /// certificate was not accepted (unknown CA, wrong name, expired): a configuration error,
    /// not an outage, and retrying cannot mend it.
    pub fn certificate_refused(&self) -> Option<String> {
        let BackendError::Transport(e) = self else {
            return None;
        };
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(c) = cause {
            let text = c.to_string();
            if text.contains("certificate")
                && c.source()
                    .is_none_or(|s| !s.to_string().contains("certificate"))
            {
                return Some(text);
            }
            cause = c.source();
        }
        None
    }
}

/// An alias as found on the cluster.
#[derive(Debug, Clone, PartialEq)]
pub struct ExistingAlias {
    pub alias: String,
    pub index: String,
    pub filter: Option<Value>,
}

/// One index's document count and size on disk (primaries and replicas).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSize {
    pub index: String,
    pub documents: u64,
    pub bytes: u64,
}

/// What `GET /` says about the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// `opensearch` or `elasticsearch`.
    pub distribution: String,
    pub version: String,
}

/// The outcome of one `_bulk` item.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemStatus {
    pub status: u16,
    /// The node's reason, for failed items.
    pub error: Option<String>,
}

/// A document as `_mget` found it.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// No such document (or no such index).
    Missing,
    /// The document's `_source` and the version it was read at.
    Found {
        seq_no: u64,
        primary_term: u64,
        source: Value,
    },
}

/// The calls strata needs.
pub trait SearchBackend: Send + Sync + 'static {
    /// Product and version.
    fn info(&self) -> impl Future<Output = Result<NodeInfo, BackendError>> + Send;
    /// Cluster health status (`green`, `yellow`, `red`).
    fn health(&self) -> impl Future<Output = Result<String, BackendError>> + Send;
    /// Creates or replaces a composable index template.
    fn put_index_template(
        &self,
        name: &str,
        body: &Value,
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Sends an NDJSON `_bulk` body; returns one status per item, in order.
    fn bulk(
        &self,
        body: Bytes,
    ) -> impl Future<Output = Result<Vec<ItemStatus>, BackendError>> + Send;
    /// Reads documents by (index, id) in one `_mget` (real time: the latest write, refreshed
    /// or not), with their statistics (`_source` and, where the index keeps them as doc values
    /// only, the doc values); one answer per document, in order.
    fn mget(
        &self,
        docs: &[(String, String)],
    ) -> impl Future<Output = Result<Vec<Fetched>, BackendError>> + Send;
    /// Names of the indices matching `pattern`.
    fn list_indices(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;
    /// The indices matching `pattern` whose mapping's `_meta` lacks `key`, sorted.
    fn indices_without_meta(
        &self,
        pattern: &str,
        key: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;
    /// Documents and bytes on disk of each index matching `pattern`, sorted by name.
    fn index_sizes(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<IndexSize>, BackendError>> + Send;
    /// The tag keys mapped (`tags.<key>` fields) in the indices matching `pattern`, sorted.
    fn tag_keys(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<String>, BackendError>> + Send;
    /// Aliases on the indices matching `pattern`.
    fn get_aliases(
        &self,
        pattern: &str,
    ) -> impl Future<Output = Result<Vec<ExistingAlias>, BackendError>> + Send;
    /// Sends `actions` in one atomic `POST /_aliases`.
    fn update_aliases(
        &self,
        actions: &[Value],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Creates an index (the template gives its settings); an existing one is fine.
    fn create_index(&self, name: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Deletes indices by explicit name, never by wildcard.
    fn delete_indices(
        &self,
        names: &[String],
    ) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// One `_search` over `pattern`; the whole response.
    fn search(
        &self,
        pattern: &str,
        body: &Value,
    ) -> impl Future<Output = Result<Value, BackendError>> + Send;
    /// Several searches over `pattern` in one `_msearch`; one response per body, in order, as
    /// JSON text for the caller to read as it needs (a tree, or a typed struct for the large
    /// answers of direct reads).
    fn msearch(
        &self,
        pattern: &str,
        bodies: &[Value],
    ) -> impl Future<Output = Result<Vec<Box<RawValue>>, BackendError>> + Send;
    /// Makes recent writes to the indices matching `pattern` searchable.
    fn refresh(&self, pattern: &str) -> impl Future<Output = Result<(), BackendError>> + Send;
    /// Every hit's `_source` for `query` over `pattern`, read in pages (scroll).
    fn search_all(
        &self,
        pattern: &str,
        query: &Value,
    ) -> impl Future<Output = Result<Vec<Value>, BackendError>> + Send;
}

/// [`SearchBackend`] over HTTP.
#[derive(Clone)]
pub struct HttpBackend {
    transport: Transport,
    timeout: Duration,
}

impl HttpBackend {
    /// A client for `url` with the node settings (credentials and CA are read now).
    pub fn connect(url: &str, node: &NodeConfig) -> Result<Self, BackendError> {
        let setup = |what: String, cause: Cause| BackendError::Setup {
            what,
            cause: Some(cause),
        };
        let url = Url::parse(url).map_err(|e| setup(format!("node url {url:?}"), e.into()))?;
        let mut builder = TransportBuilder::new(SingleNodeConnectionPool::new(url))
            .timeout(node.timeout)
            .disable_proxy();
        match &node.auth {
            NodeAuth::None => {}
            NodeAuth::Basic { username, password } => {
                builder = builder.auth(Credentials::Basic(
                    username.clone(),
                    password
                        .read()
                        .map_err(|e| setup("password".into(), e.into()))?,
                ));
            }
            NodeAuth::ApiKey(key) => {
                builder = builder.auth(Credentials::EncodedApiKey(
                    key.read().map_err(|e| setup("API key".into(), e.into()))?,
                ))
            }
        }
        if let Some(ca) = &node.ca_file {
            let pem = std::fs::read(ca)
                .map_err(|e| setup(format!("cannot read CA file {}", ca.display()), e.into()))?;
            let cert = Certificate::from_pem(&pem)
                .map_err(|e| setup(format!("CA file {}", ca.display()), e.into()))?;
            builder = builder.cert_validation(CertificateValidation::Full(cert));
        }
        let transport = builder
            .build()
            .map_err(|e| setup("transport".into(), e.into()))?;
        Ok(Self {
            transport,
            timeout: node.timeout,
        })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        ndjson: bool,
        body: Option<Bytes>,
    ) -> Result<(u16, Bytes), BackendError> {
        let mut headers = HeaderMap::new();
        if ndjson {
            headers.insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/x-ndjson"),
            );
        }
        let response = self
            .transport
            .send(method, path, headers, None::<&()>, body, Some(self.timeout))
            .await
            .map_err(BackendError::Transport)?;
        let status = response.status_code().as_u16();
        let bytes = response.bytes().await.map_err(BackendError::Transport)?;
        Ok((status, bytes))
    }

    async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<Bytes>,
    ) -> Result<Bytes, BackendError> {
        let (status, bytes) = self.call(method, path, false, body).await?;
        if !(200..300).contains(&status) {
            return Err(BackendError::Status {
                call: path.to_string(),
                status,
                body: truncate(&bytes),
            });
        }
        Ok(bytes)
    }
}

fn truncate(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    match text.char_indices().nth(500) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.into_owned(),
    }
}

fn decode<T: for<'de> Deserialize<'de>>(call: &str, bytes: &[u8]) -> Result<T, BackendError> {
    serde_json::from_slice(bytes).map_err(|source| BackendError::Decode {
        call: call.to_string(),
        source,
    })
}

#[derive(Deserialize)]
struct RootResponse {
    version: RootVersion,
}

#[derive(Deserialize)]
struct RootVersion {
    number: String,
    distribution: Option<String>,
}

#[derive(Deserialize)]
struct HealthResponse {
    status: String,
}

#[derive(Deserialize)]
struct BulkResponse {
    #[serde(default)]
    items: Vec<std::collections::HashMap<String, BulkItem>>,
}

/// The (index, id) pairs of an `_mget` body's documents.
fn docs_asked(docs: &[Value]) -> Vec<(String, String)> {
    docs.iter()
        .map(|d| {
            let text = |k: &str| d[k].as_str().unwrap_or_default().to_string();
            (text("_index"), text("_id"))
        })
        .collect()
}

impl HttpBackend {
    /// Completes the documents whose statistics are kept as doc values only (not in `_source`,
    /// see `persist::template`): their indices are refreshed, then the documents are read again
    /// by search, source, doc values and version together, so that what is merged and the
    /// version a conditional write names belong to one state (the search sees at least the
    /// state `_mget` saw). Documents with their statistics in `_source` (indices made before)
    /// are returned as `_mget` read them.
    async fn with_statistics(
        &self,
        asked: Vec<(String, String)>,
        mut fetched: Vec<Fetched>,
    ) -> Result<Vec<Fetched>, BackendError> {
        let lacking: Vec<usize> = fetched
            .iter()
            .enumerate()
            .filter(|(_, f)| matches!(f, Fetched::Found { source, .. } if source.get("count").is_none()))
            .map(|(i, _)| i)
            .collect();
        if lacking.is_empty() {
            return Ok(fetched);
        }
        let indices: BTreeSet<&str> = lacking.iter().map(|&i| asked[i].0.as_str()).collect();
        let pattern = indices.into_iter().collect::<Vec<_>>().join(",");
        self.refresh(&pattern).await?;
        let ids: Vec<&str> = lacking.iter().map(|&i| asked[i].1.as_str()).collect();
        let body = serde_json::json!({
            "size": ids.len(),
            "query": {"ids": {"values": ids}},
            "seq_no_primary_term": true,
            "docvalue_fields": statistics_doc_values(),
        });
        let answer: Value = self.search(&pattern, &body).await?;
        let mut found: BTreeMap<(&str, &str), &Value> = BTreeMap::new();
        for hit in answer["hits"]["hits"].as_array().into_iter().flatten() {
            if let (Some(index), Some(id)) = (hit["_index"].as_str(), hit["_id"].as_str()) {
                found.insert((index, id), hit);
            }
        }
        for i in lacking {
            let (index, id) = (asked[i].0.as_str(), asked[i].1.as_str());
            fetched[i] = match found.get(&(index, id)) {
                Some(hit) => hit_with_doc_values(hit)?,
                None => Fetched::Missing,
            };
        }
        Ok(fetched)
    }
}

/// The `docvalue_fields` that bring back the statistics left out of `_source`.
fn statistics_doc_values() -> Vec<Value> {
    STATISTICS_AS_DOC_VALUES
        .iter()
        .chain(["p*"].iter())
        .map(|f| serde_json::json!(f))
        .collect()
}

/// A search hit as a fetched document: its `_source` with the statistics its doc values hold.
fn hit_with_doc_values(hit: &Value) -> Result<Fetched, BackendError> {
    let incomplete = || BackendError::Status {
        call: "_search".into(),
        status: 500,
        body: "a found document without its version or source".into(),
    };
    let (Some(seq_no), Some(primary_term)) =
        (hit["_seq_no"].as_u64(), hit["_primary_term"].as_u64())
    else {
        return Err(incomplete());
    };
    let mut source = hit.get("_source").cloned().ok_or_else(incomplete)?;
    if let (Some(doc), Some(fields)) = (source.as_object_mut(), hit["fields"].as_object()) {
        for (field, values) in fields {
            if let Some(v) = values.as_array().and_then(|v| v.first()) {
                doc.insert(field.clone(), v.clone());
            }
        }
    }
    Ok(Fetched::Found {
        seq_no,
        primary_term,
        source,
    })
}

#[derive(Deserialize)]
struct MgetResponse {
    docs: Vec<MgetDoc>,
}

#[derive(Deserialize)]
struct MgetDoc {
    #[serde(default)]
    found: bool,
    _seq_no: Option<u64>,
    _primary_term: Option<u64>,
    _source: Option<Value>,
    error: Option<Value>,
}

impl MgetDoc {
    fn into_fetched(self) -> Result<Fetched, BackendError> {
        if let Some(error) = &self.error {
            if error.get("type").and_then(Value::as_str) == Some("index_not_found_exception") {
                return Ok(Fetched::Missing);
            }
            return Err(BackendError::Status {
                call: "_mget".into(),
                status: 500,
                body: describe_error(error),
            });
        }
        match (self.found, self._seq_no, self._primary_term, self._source) {
            (false, ..) => Ok(Fetched::Missing),
            (true, Some(seq_no), Some(primary_term), Some(source)) => Ok(Fetched::Found {
                seq_no,
                primary_term,
                source,
            }),
            _ => Err(BackendError::Status {
                call: "_mget".into(),
                status: 500,
                body: "a found document without its version or source".into(),
            }),
        }
    }
}

#[derive(Deserialize)]
struct BulkItem {
    status: u16,
    #[serde(default)]
    error: Option<Value>,
}

/// The node's error object as one line: `type: reason (caused by: …)`.
fn describe_error(error: &Value) -> String {
    let kind = error.get("type").and_then(Value::as_str).unwrap_or("error");
    let reason = error.get("reason").and_then(Value::as_str).unwrap_or("");
    // "all shards failed" says nothing: the first shard's reason does.
    let cause = error
        .pointer("/caused_by/reason")
        .or_else(|| error.pointer("/root_cause/0/reason"))
        .or_else(|| error.pointer("/failed_shards/0/reason/reason"))
        .and_then(Value::as_str)
        .filter(|cause| *cause != reason);
    match cause {
        Some(cause) => format!("{kind}: {reason} (caused by: {cause})"),
        None => format!("{kind}: {reason}"),
    }
}

impl SearchBackend for HttpBackend {
    async fn info(&self) -> Result<NodeInfo, BackendError> {
        // ES >= 8.9 integ-test builds lack `GET /`; fall back to the nodes API there.
        match self.call_ok(Method::Get, "/", None).await {
            Ok(bytes) => {
                let root: RootResponse = decode("GET /", &bytes)?;
                Ok(NodeInfo {
                    distribution: root
                        .version
                        .distribution
                        .unwrap_or_else(|| "elasticsearch".into()),
                    version: root.version.number,
                })
            }
            Err(BackendError::Status { .. }) => {
                let bytes = self
                    .call_ok(
                        Method::Get,
                        "/_nodes/_local/version?filter_path=nodes.*.version",
                        None,
                    )
                    .await?;
                let v: Value = decode("GET /_nodes", &bytes)?;
                let version = v["nodes"]
                    .as_object()
                    .and_then(|n| n.values().next())
                    .and_then(|n| n["version"].as_str())
                    .unwrap_or("unknown");
                Ok(NodeInfo {
                    distribution: "elasticsearch".into(),
                    version: version.to_string(),
                })
            }
            Err(e) => Err(e),
        }
    }

    async fn health(&self) -> Result<String, BackendError> {
        let bytes = self.call_ok(Method::Get, "/_cluster/health", None).await?;
        Ok(decode::<HealthResponse>("GET /_cluster/health", &bytes)?.status)
    }

    async fn put_index_template(&self, name: &str, body: &Value) -> Result<(), BackendError> {
        let path = format!("/_index_template/{name}");
        self.call_ok(Method::Put, &path, Some(Bytes::from(body.to_string())))
            .await
            .map(|_| ())
    }

    async fn bulk(&self, body: Bytes) -> Result<Vec<ItemStatus>, BackendError> {
        let path = "/_bulk?filter_path=errors,items.*.status,items.*.error";
        let (status, bytes) = self.call(Method::Post, path, true, Some(body)).await?;
        if !(200..300).contains(&status) {
            return Err(BackendError::Status {
                call: "_bulk".into(),
                status,
                body: truncate(&bytes),
            });
        }
        let response: BulkResponse = decode("_bulk", &bytes)?;
        Ok(response
            .items
            .into_iter()
            .map(|item| match item.into_values().next() {
                Some(item) => ItemStatus {
                    status: item.status,
                    error: item.error.as_ref().map(describe_error),
                },
                // An item without an operation is malformed: treat it as a server error (retried).
                None => ItemStatus {
                    status: 500,
                    error: Some("bulk item without an operation".into()),
                },
            })
            .collect())
    }

    async fn mget(&self, docs: &[(String, String)]) -> Result<Vec<Fetched>, BackendError> {
        let docs: Vec<Value> = docs
            .iter()
            .map(|(index, id)| serde_json::json!({"_index": index, "_id": id}))
            .collect();
        let body = Bytes::from(serde_json::json!({ "docs": docs }).to_string());
        let bytes = self.call_ok(Method::Post, "/_mget", Some(body)).await?;
        let response: MgetResponse = decode("_mget", &bytes)?;
        if response.docs.len() != docs.len() {
            return Err(BackendError::Status {
                call: "_mget".into(),
                status: 500,
                body: format!(
                    "{} documents answered for {} asked",
                    response.docs.len(),
                    docs.len()
                ),
            });
        }
        let fetched: Vec<Fetched> = response
            .docs
            .into_iter()
            .map(MgetDoc::into_fetched)
            .collect::<Result<_, _>>()?;
        self.with_statistics(docs_asked(&docs), fetched).await
    }

    async fn list_indices(&self, pattern: &str) -> Result<Vec<String>, BackendError> {
        let path =
            format!("/_cat/indices/{pattern}?format=json&h=index&expand_wildcards=open,closed");
        let rows: Vec<CatIndex> = decode(
            "_cat/indices",
            &self.call_ok(Method::Get, &path, None).await?,
        )?;
        let mut names: Vec<String> = rows.into_iter().map(|r| r.index).collect();
        names.sort();
        Ok(names)
    }

    async fn indices_without_meta(
        &self,
        pattern: &str,
        key: &str,
    ) -> Result<Vec<String>, BackendError> {
        // Listed first: an index made between the two calls is then not in the list, and so
        // not taken for one without the key.
        let listed = self.list_indices(pattern).await?;
        let path = format!(
            "/{pattern}/_mapping?ignore_unavailable=true&allow_no_indices=true&filter_path=*.mappings._meta.{key}"
        );
        let marked: BTreeMap<String, Value> =
            decode("_mapping", &self.call_ok(Method::Get, &path, None).await?)?;
        Ok(listed
            .into_iter()
            .filter(|index| !marked.contains_key(index))
            .collect())
    }

    async fn index_sizes(&self, pattern: &str) -> Result<Vec<IndexSize>, BackendError> {
        let path = format!(
            "/_cat/indices/{pattern}?format=json&h=index,docs.count,store.size&bytes=b&expand_wildcards=open,closed"
        );
        let rows: Vec<CatIndexSize> = decode(
            "_cat/indices",
            &self.call_ok(Method::Get, &path, None).await?,
        )?;
        // A closed index reports neither count nor size.
        let number = |v: Option<String>| v.and_then(|s| s.parse().ok()).unwrap_or(0);
        let mut sizes: Vec<IndexSize> = rows
            .into_iter()
            .map(|r| IndexSize {
                index: r.index,
                documents: number(r.docs_count),
                bytes: number(r.store_size),
            })
            .collect();
        sizes.sort_by(|a, b| a.index.cmp(&b.index));
        Ok(sizes)
    }

    async fn tag_keys(&self, pattern: &str) -> Result<Vec<String>, BackendError> {
        let path = format!(
            "/{pattern}/_mapping/field/tags.*?allow_no_indices=true&ignore_unavailable=true"
        );
        // No index matching the pattern is a 404 with an empty body, even with
        // allow_no_indices.
        let (status, bytes) = self.call(Method::Get, &path, false, None).await?;
        let by_index: BTreeMap<String, FieldMappings> = match status {
            200 => decode("_mapping/field", &bytes)?,
            404 => BTreeMap::new(),
            status => {
                return Err(BackendError::Status {
                    call: "_mapping/field".into(),
                    status,
                    body: truncate(&bytes),
                })
            }
        };
        let keys: BTreeSet<String> = by_index
            .into_values()
            .flat_map(|m| m.mappings.into_keys())
            .filter_map(|field| field.strip_prefix("tags.").map(str::to_owned))
            .collect();
        Ok(keys.into_iter().collect())
    }

    async fn get_aliases(&self, pattern: &str) -> Result<Vec<ExistingAlias>, BackendError> {
        let path = format!("/{pattern}/_alias?allow_no_indices=true&ignore_unavailable=true");
        let (status, bytes) = self.call(Method::Get, &path, false, None).await?;
        if status == 404 {
            return Ok(Vec::new());
        }
        if !(200..300).contains(&status) {
            return Err(BackendError::Status {
                call: path,
                status,
                body: truncate(&bytes),
            });
        }
        let by_index: std::collections::BTreeMap<String, IndexAliases> = decode("_alias", &bytes)?;
        Ok(by_index
            .into_iter()
            .flat_map(|(index, a)| {
                a.aliases
                    .into_iter()
                    .map(move |(alias, body)| ExistingAlias {
                        alias,
                        index: index.clone(),
                        filter: body.get("filter").cloned(),
                    })
            })
            .collect())
    }

    async fn update_aliases(&self, actions: &[Value]) -> Result<(), BackendError> {
        let body = serde_json::json!({ "actions": actions });
        self.call_ok(
            Method::Post,
            "/_aliases",
            Some(Bytes::from(body.to_string())),
        )
        .await
        .map(|_| ())
    }

    async fn create_index(&self, name: &str) -> Result<(), BackendError> {
        let path = format!("/{name}");
        match self.call_ok(Method::Put, &path, None).await {
            Ok(_) => Ok(()),
            Err(BackendError::Status {
                status: 400,
                ref body,
                ..
            }) if body.contains("resource_already_exists_exception") => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn delete_indices(&self, names: &[String]) -> Result<(), BackendError> {
        for chunk in names.chunks(20) {
            if chunk.iter().any(|n| n.contains(['*', '?', ','])) {
                return Err(BackendError::DeleteByPattern(chunk.to_vec()));
            }
            self.call_ok(Method::Delete, &format!("/{}", chunk.join(",")), None)
                .await?;
        }
        Ok(())
    }

    async fn search(&self, pattern: &str, body: &Value) -> Result<Value, BackendError> {
        let path = format!("/{pattern}/_search?ignore_unavailable=true&allow_no_indices=true");
        decode(
            "_search",
            &self
                .call_ok(Method::Post, &path, Some(Bytes::from(body.to_string())))
                .await?,
        )
    }

    async fn msearch(
        &self,
        pattern: &str,
        bodies: &[Value],
    ) -> Result<Vec<Box<RawValue>>, BackendError> {
        let header = serde_json::json!({"index": pattern, "ignore_unavailable": true, "allow_no_indices": true});
        let mut ndjson = String::new();
        for body in bodies {
            ndjson.push_str(&header.to_string());
            ndjson.push('\n');
            ndjson.push_str(&body.to_string());
            ndjson.push('\n');
        }
        // Only what the read APIs use: each answer's aggregations, its hits' fields (documents
        // read by doc values), and its error. Each hit's _index, _id, _score and sort would
        // otherwise double the answer of a direct read.
        let path = "/_msearch?filter_path=responses.aggregations,responses.hits.hits.fields,responses.error,responses.status";
        let (status, bytes) = self
            .call(Method::Post, path, true, Some(Bytes::from(ndjson)))
            .await?;
        if !(200..300).contains(&status) {
            return Err(BackendError::Status {
                call: "_msearch".into(),
                status,
                body: truncate(&bytes),
            });
        }
        #[derive(Deserialize)]
        struct Answers {
            #[serde(default)]
            responses: Vec<Box<RawValue>>,
        }
        /// Only the error of one answer; the rest is skimmed, not built.
        #[derive(Deserialize)]
        struct ErrorOnly {
            error: Option<Value>,
        }
        let answers: Answers = decode("_msearch", &bytes)?;
        for response in &answers.responses {
            if let Ok(ErrorOnly { error: Some(error) }) = serde_json::from_str(response.get()) {
                return Err(BackendError::Status {
                    call: "_msearch".into(),
                    status: 400,
                    body: describe_error(&error),
                });
            }
        }
        Ok(answers.responses)
    }

    async fn refresh(&self, pattern: &str) -> Result<(), BackendError> {
        let path = format!("/{pattern}/_refresh?ignore_unavailable=true&allow_no_indices=true");
        self.call_ok(Method::Post, &path, None).await.map(|_| ())
    }

    async fn search_all(&self, pattern: &str, query: &Value) -> Result<Vec<Value>, BackendError> {
        let path =
            format!("/{pattern}/_search?scroll=1m&ignore_unavailable=true&allow_no_indices=true");
        let body = serde_json::json!({"size": 5000, "query": query, "sort": ["_doc"]});
        let mut page: ScrollPage = decode(
            "_search",
            &self
                .call_ok(Method::Post, &path, Some(Bytes::from(body.to_string())))
                .await?,
        )?;
        let mut hits = Vec::new();
        loop {
            let done = page.hits.hits.is_empty();
            hits.extend(page.hits.hits.into_iter().map(|h| h.source));
            let Some(id) = page.scroll_id.filter(|_| !done) else {
                break;
            };
            let body = serde_json::json!({"scroll": "1m", "scroll_id": id});
            page = decode(
                "_search/scroll",
                &self
                    .call_ok(
                        Method::Post,
                        "/_search/scroll",
                        Some(Bytes::from(body.to_string())),
                    )
                    .await?,
            )?;
            if page.hits.hits.is_empty() {
                if let Some(id) = &page.scroll_id {
                    let body = serde_json::json!({"scroll_id": id});
                    let _ = self
                        .call(
                            Method::Delete,
                            "/_search/scroll",
                            false,
                            Some(Bytes::from(body.to_string())),
                        )
                        .await;
                }
                break;
            }
        }
        Ok(hits)
    }
}

#[derive(Deserialize)]
struct CatIndex {
    index: String,
}

#[derive(Deserialize)]
struct CatIndexSize {
    index: String,
    #[serde(rename = "docs.count")]
    docs_count: Option<String>,
    #[serde(rename = "store.size")]
    store_size: Option<String>,
}

/// One index's answer to `_mapping/field`: field name → its mapping.
#[derive(Deserialize)]
struct FieldMappings {
    mappings: BTreeMap<String, serde::de::IgnoredAny>,
}

#[derive(Deserialize)]
struct IndexAliases {
    #[serde(default)]
    aliases: std::collections::BTreeMap<String, Value>,
}

#[derive(Deserialize)]
struct ScrollPage {
    #[serde(rename = "_scroll_id")]
    scroll_id: Option<String>,
    hits: ScrollHits,
}

#[derive(Deserialize)]
struct ScrollHits {
    hits: Vec<ScrollHit>,
}

#[derive(Deserialize)]
struct ScrollHit {
    #[serde(rename = "_source")]
    source: Value,
}
