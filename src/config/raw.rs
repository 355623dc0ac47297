//! Step 1 of reading `archives.toml`: the file as written, in strict serde structs (unknown keys
//! refused, durations in humantime). Nothing here is trusted yet; [`super::validate`] turns it
//! into a [`super::Config`].

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::calendar::IndexPeriod;
use crate::config::types::{AliasMode, DocumentLayout};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub node: RawNode,
    #[serde(default)]
    pub index: RawIndex,
    #[serde(default, rename = "archive")]
    pub archives: Vec<RawArchive>,
    #[serde(default)]
    pub http: RawHttp,
    #[serde(default)]
    pub ingest: RawIngest,
    #[serde(default)]
    pub consolidate: RawConsolidate,
    #[serde(default)]
    pub persist: RawPersist,
    #[serde(default)]
    pub durability: RawDurability,
    #[serde(default)]
    pub aliases: RawAliases,
    #[serde(default)]
    pub maintain: RawMaintain,
    #[serde(default)]
    pub log: RawLog,
    pub statsd: Option<RawListener>,
    pub graphite: Option<RawListener>,
    pub riemann: Option<RawListener>,
    #[serde(default)]
    pub tasks: RawTasks,
    #[serde(default, rename = "task")]
    pub task_list: Vec<RawTask>,
    #[serde(default, rename = "handler")]
    pub handlers: Vec<RawHandler>,
    /// The tasks of the files in `tasks.dir`, read by [`super::Config::load`] before validation.
    #[serde(skip)]
    pub dir_tasks: Vec<(PathBuf, RawTask)>,
}

/// `[tasks]`: where more task files are, and the bounds every task shares.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTasks {
    pub dir: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub grace: Option<Duration>,
    pub queue_events: Option<usize>,
    pub max_groups: Option<usize>,
    pub alerts_index: Option<String>,
    pub alerts_retention: Option<String>,
}

/// A file of the tasks directory: `[[task]]` tables only.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTaskFile {
    #[serde(default)]
    pub task: Vec<RawTask>,
}

/// `[[task]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTask {
    pub name: String,
    pub kind: String,
    #[serde(default)]
    pub names: Vec<String>,
    pub host: Option<String>,
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, String>,
    pub script: String,
    #[serde(default)]
    pub handlers: Vec<String>,
    pub enabled: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub every: Option<Duration>,
    pub cron: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub range: Option<Duration>,
    pub archive: Option<String>,
}

/// `[[handler]]`: where alerts go.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHandler {
    pub name: String,
    pub kind: String,
    pub url: Option<String>,
    #[serde(default)]
    pub headers: std::collections::BTreeMap<String, String>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
    pub retries: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub backoff: Option<Duration>,
    pub path: Option<PathBuf>,
    pub command: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawListener {
    pub listen: Option<String>,
    pub receive_buffer_bytes: Option<u64>,
    /// statsd only.
    #[serde(default, with = "humantime_serde")]
    pub gauge_idle: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAliases {
    pub mode: Option<AliasMode>,
    pub prefix: Option<String>,
    pub umbrella: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintain {
    pub schedule: Option<String>,
    pub max_deletes: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub url: Option<String>,
    pub username: Option<String>,
    pub password_env: Option<String>,
    pub password_file: Option<PathBuf>,
    pub api_key_env: Option<String>,
    pub api_key_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIndex {
    pub prefix: Option<String>,
    pub name: Option<String>,
    pub template: Option<String>,
    pub template_priority: Option<u32>,
    pub replicas: Option<u32>,
    pub layout: Option<DocumentLayout>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawArchive {
    pub name: String,
    #[serde(with = "humantime_serde")]
    pub step: Duration,
    pub retention: String,
    pub index_period: IndexPeriod,
    #[serde(default, with = "humantime_serde")]
    pub lateness: Option<Duration>,
    #[serde(default)]
    pub percentiles: Option<Vec<f64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub listen: Option<String>,
    pub max_body_bytes: Option<usize>,
    pub max_inflight_bytes: Option<usize>,
    pub max_concurrent_reads: Option<usize>,
    pub read_share: Option<f64>,
    pub write_token_env: Option<String>,
    pub write_token_file: Option<PathBuf>,
    pub read_token_env: Option<String>,
    pub read_token_file: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIngest {
    #[serde(default, with = "humantime_serde")]
    pub max_future_skew: Option<Duration>,
    pub max_name_length: Option<usize>,
    pub max_tags: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub format: Option<super::types::LogFormat>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConsolidate {
    pub max_series: Option<usize>,
    pub max_tag_keys: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub tick: Option<Duration>,
    pub queue_batches: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPersist {
    pub batch_docs: Option<usize>,
    pub batch_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub flush_interval: Option<Duration>,
    pub queue_docs: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub retry_initial: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_max: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDurability {
    pub dir: Option<PathBuf>,
    pub fsync: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub checkpoint_interval: Option<Duration>,
    pub max_disk_bytes: Option<u64>,
}
