//! Test support: the real node named by STRATA_TEST_NODE (started by scripts/test), a unique
//! index prefix per test, and small helpers to query the node directly.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use serde_json::{json, Value};
use strata::config::Config;

/// The node under test; scripts/test starts it and sets the variable.
pub fn node_url() -> String {
    std::env::var("STRATA_TEST_NODE")
        .expect(
            "STRATA_TEST_NODE is not set: run scripts/test, which starts a real node and sets it",
        )
        .trim_end_matches('/')
        .to_string()
}

/// A test's own corner of the node: a unique prefix and template name.
pub struct Scope {
    pub prefix: String,
    pub node: String,
    pub http: reqwest::Client,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl Scope {
    pub fn new(test: &str) -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!(
            "t{}-{}{}-{}-",
            std::process::id(),
            nanos % 100_000,
            n,
            test.replace('_', "-")
        );
        Self {
            prefix,
            node: node_url(),
            http: reqwest::Client::new(),
        }
    }

    /// A config using this scope's prefix and template, with `archives` (TOML) and `extra` sections.
    pub fn config(&self, archives: &str, extra: &str) -> Config {
        let text = format!(
            "[node]\nurl = \"{}\"\n[index]\nprefix = \"{p}\"\ntemplate = \"{p}tpl\"\nreplicas = 0\n[aliases]\nprefix = \"{p}alias-\"\numbrella = \"{p}all\"\n{archives}\n{extra}\n",
            self.node,
            p = self.prefix
        );
        Config::from_toml(&text, Path::new("test.toml")).unwrap()
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.node))
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn send(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.node))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn refresh(&self) {
        let r = self
            .http
            .post(format!(
                "{}/{}*/_refresh?ignore_unavailable=true&allow_no_indices=true",
                self.node, self.prefix
            ))
            .send()
            .await
            .unwrap();
        assert!(
            r.status().is_success(),
            "refresh failed: {}",
            r.text().await.unwrap()
        );
    }

    /// Every document under the prefix, sorted by archive, name and time.
    pub async fn documents(&self) -> Vec<Value> {
        match self.try_documents().await {
            Ok(docs) => docs,
            Err(answer) => panic!("search failed: {answer}"),
        }
    }

    /// The documents, or the node's answer when the search failed (e.g. a shard still starting).
    pub async fn try_documents(&self) -> Result<Vec<Value>, Value> {
        self.refresh().await;
        let body = json!({"size": 10000, "sort": [{"archive": "asc"}, {"name": "asc"}, {"@timestamp": "asc"}], "query": {"match_all": {}}});
        let path = format!(
            "/{}*/_search?ignore_unavailable=true&allow_no_indices=true",
            self.prefix
        );
        let (status, v) = self.send(reqwest::Method::POST, &path, body).await;
        if status != 200 {
            return Err(v);
        }
        Ok(v["hits"]["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["_source"].clone())
            .collect())
    }

    /// Indices under the prefix, sorted.
    pub async fn indices(&self) -> Vec<String> {
        let (_, v) = self
            .get(&format!(
                "/_cat/indices/{}*?format=json&h=index",
                self.prefix
            ))
            .await;
        let mut names: Vec<String> = v
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|i| i["index"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Polls until `docs` documents are searchable (the writer flushes on its own schedule).
    pub async fn wait_for_documents(&self, docs: usize) -> Vec<Value> {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let found = match self.try_documents().await {
                Ok(found) => found,
                Err(_) if std::time::Instant::now() < deadline => Vec::new(),
                Err(answer) => panic!("search failed: {answer}"),
            };
            if found.len() >= docs || std::time::Instant::now() > deadline {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Deletes this scope's indices (by explicit name) and template.
    pub async fn cleanup(&self) {
        let names = self.indices().await;
        for chunk in names.chunks(50) {
            self.http
                .delete(format!("{}/{}", self.node, chunk.join(",")))
                .send()
                .await
                .unwrap();
        }
        self.http
            .delete(format!("{}/_index_template/{}tpl", self.node, self.prefix))
            .send()
            .await
            .unwrap();
    }
}

/// An archive table in TOML.
pub fn archive(name: &str, step: &str, retention: &str, period: &str, lateness: &str) -> String {
    format!("[[archive]]\nname = \"{name}\"\nstep = \"{step}\"\nretention = \"{retention}\"\nindex_period = \"{period}\"\nlateness = \"{lateness}\"\n")
}

/// Milliseconds of an RFC 3339 instant.
pub fn ms(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .unwrap()
        .timestamp_millis()
}
