//! Step 2's result: the configuration the rest of the program trusts. Every value here was
//! checked by [`super::validate`]; durations are `Duration`, periods and spans typed, the index
//! naming and the maintenance schedule parsed.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::calendar::{CalendarSpan, IndexPeriod};
use crate::naming::IndexNaming;
use crate::schedule::Schedule;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub node: NodeConfig,
    pub index: IndexConfig,
    pub archives: Vec<Archive>,
    pub http: HttpConfig,
    pub ingest: IngestConfig,
    pub consolidate: ConsolidateConfig,
    pub persist: PersistConfig,
    pub durability: DurabilityConfig,
    pub aliases: AliasConfig,
    pub maintain: MaintainConfig,
    pub log: LogConfig,
    /// `None`: no statsd listener.
    pub statsd: Option<ListenerConfig>,
    /// `None`: no Graphite listener (TCP and UDP on one address).
    pub graphite: Option<ListenerConfig>,
    /// `None`: no Riemann listener (TCP and UDP on one address).
    pub riemann: Option<ListenerConfig>,
    /// Stream and batch tasks, and where their alerts go.
    pub tasks: TasksConfig,
}

#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One readable line per event: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, target, fields), for log collectors.
    Json,
}

#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// UDP address (port 0 picks a free one).
    pub listen: SocketAddr,
    /// The kernel receive buffer asked for the UDP socket, in bytes; 0 keeps the kernel default.
    pub receive_buffer_bytes: usize,
    /// statsd: how long a gauge's last value is kept for `+n` / `-n` deltas without a new one.
    pub gauge_idle: Duration,
}

/// How long statsd keeps a gauge that is not sent: long enough for any reporting interval in
/// use, short enough that gauges of hosts gone do not pile up.
pub const DEFAULT_GAUGE_IDLE: Duration = Duration::from_secs(3600);

/// The UDP receive buffer a listener asks for unless told otherwise: about 10 000 small
/// datagrams, 50 ms at 200 000 datagrams per second.
pub const DEFAULT_RECEIVE_BUFFER_BYTES: usize = 8 << 20;

/// How aliases expose the archives to dashboards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AliasMode {
    /// One alias per serving index plus an umbrella alias, filtered so that each instant is
    /// served once, by the finest archive that keeps it.
    Stitched,
    /// samplerr's per-period aliases over the finest archive's periods, each pointing at the
    /// finest index that still covers that period (filtered to the period).
    Samplerr,
}

#[derive(Debug, Clone)]
pub struct AliasConfig {
    pub mode: AliasMode,
    pub prefix: String,
    pub umbrella: String,
}

#[derive(Debug, Clone)]
pub struct MaintainConfig {
    /// When passes run (5-field cron, UTC).
    pub schedule: Schedule,
    /// A purge that would delete more indices than this refuses unless forced.
    pub max_deletes: usize,
}

#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// `None`: no node configured (`scripts/run` then provisions a local one).
    pub url: Option<String>,
    pub auth: NodeAuth,
    pub ca_file: Option<PathBuf>,
    pub timeout: Duration,
}

/// No node to talk to: neither the command line nor the file names one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("no node configured: set [node] url in the config, pass --node-url or set STRATA_NODE_URL (scripts/run provisions a local node)")]
pub struct NoNode;

impl NodeConfig {
    /// The node to use: `overriding` (the command line) or the configured one.
    /// `overriding` (`--node-url`, `STRATA_NODE_URL`) unless it is empty, then the configured
    /// URL: an exported but empty variable counts as unset.
    pub fn url_or(&self, overriding: Option<String>) -> Result<String, NoNode> {
        overriding
            .filter(|url| !url.trim().is_empty())
            .or_else(|| self.url.clone())
            .ok_or(NoNode)
    }
}

/// Where credentials come from; secrets are read when connecting, never stored in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeAuth {
    None,
    Basic {
        username: String,
        password: SecretSource,
    },
    ApiKey(SecretSource),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A secret that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("environment variable {0} is not set")]
    EnvUnset(String),
    #[error("cannot read {}", path.display())]
    File {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl SecretSource {
    /// Reads the secret (trailing newline removed).
    pub fn read(&self) -> Result<String, SecretError> {
        match self {
            SecretSource::Env(var) => {
                std::env::var(var).map_err(|_| SecretError::EnvUnset(var.clone()))
            }
            SecretSource::File(path) => std::fs::read_to_string(path)
                .map(|s| s.trim_end_matches(['\n', '\r']).to_string())
                .map_err(|source| SecretError::File {
                    path: path.clone(),
                    source,
                }),
        }
    }
}

#[derive(Debug, Clone)]
pub struct IndexConfig {
    pub prefix: String,
    /// `index.name` as configured (placeholders unrendered), for messages.
    pub name: String,
    pub naming: IndexNaming,
    pub template: String,
    pub template_priority: u32,
    pub replicas: u32,
    pub layout: DocumentLayout,
}

/// The shape of the documents written for each bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DocumentLayout {
    /// One document per bucket holding every statistic.
    #[default]
    Strata,
    /// strata's document, also carrying samplerr's `service`/`metric`/`cfunc` as the `avg`
    /// document, plus one `min` and one `max` document per bucket, as samplerr wrote them.
    Samplerr,
}

/// One resolution: its bucket length, how long it is kept, how its indices are cut.
#[derive(Debug, Clone, PartialEq)]
pub struct Archive {
    pub name: String,
    pub step: Duration,
    pub retention: CalendarSpan,
    pub index_period: IndexPeriod,
    pub lateness: Duration,
    /// Percentiles (0–100, ascending) written as `p<N>` fields, from a sketch kept per bucket;
    /// empty when the archive keeps no sketches.
    pub percentiles: Vec<f64>,
}

/// Most percentiles one archive may list.
pub const MAX_PERCENTILES: usize = 10;

/// The document field of percentile `p`: `p99`, `p99_9`.
pub fn percentile_field(p: f64) -> String {
    format!("p{}", p.to_string().replace('.', "_"))
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// Request bytes being received or parsed at once, over all requests.
    pub max_inflight_bytes: usize,
    /// Read requests served at once (the stored-data reads); others wait their turn.
    pub max_concurrent_reads: usize,
    /// Seconds of read time allowed per second, summed over concurrent reads, past a saved-up
    /// burst (see `query::budget`).
    pub read_share: f64,
    /// The bearer token the ingest routes require, when set.
    pub write_token: Option<SecretSource>,
    /// The bearer token the read routes require, when set.
    pub read_token: Option<SecretSource>,
}

#[derive(Debug, Clone)]
pub struct IngestConfig {
    pub max_future_skew: Duration,
    pub max_name_length: usize,
    pub max_tags: usize,
}

#[derive(Debug, Clone)]
pub struct ConsolidateConfig {
    pub max_series: usize,
    /// Distinct tag keys accepted over the indices kept (each is a field of the node's mapping).
    pub max_tag_keys: usize,
    pub tick: Duration,
    pub queue_batches: usize,
}

#[derive(Debug, Clone)]
pub struct DurabilityConfig {
    /// Where the write-ahead log and checkpoints live; `None`: no log (a crash loses the open
    /// buckets and what waits to be written).
    pub dir: Option<std::path::PathBuf>,
    /// Sync the log to disk before answering (else written to the kernel only).
    pub fsync: bool,
    pub checkpoint_interval: Duration,
    /// Log and checkpoints together; past it ingest is refused (503) until the node catches up.
    pub max_disk_bytes: u64,
}

#[derive(Debug, Clone)]
pub struct PersistConfig {
    pub batch_docs: usize,
    pub batch_bytes: usize,
    pub flush_interval: Duration,
    pub queue_docs: usize,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub shutdown_timeout: Duration,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_future_skew: Duration::from_secs(60),
            max_name_length: 255,
            max_tags: 32,
        }
    }
}

/// `[tasks]`, the `[[task]]` tables (of archives.toml and of the files in `tasks.dir`) and the
/// `[[handler]]` tables.
#[derive(Debug, Clone)]
pub struct TasksConfig {
    /// Where more task files are (`*.toml`, each of `[[task]]` tables), read at start and on
    /// reload.
    pub dir: Option<std::path::PathBuf>,
    /// How long after a window's end a stream task waits for events still on their way.
    pub grace: Duration,
    /// Events waiting for the tasks; past it, events are left out of the tasks (never out of
    /// the archives) and counted.
    pub queue_events: usize,
    /// Groups one reduction (or deadman) holds per window.
    pub max_groups: usize,
    /// Prefix of the indices holding alert transitions (`<prefix>-history-<yyyy.mm>`) and
    /// current levels (`<prefix>-state`).
    pub alerts_index: String,
    /// How long monthly alert history indices are kept (deleted by maintenance once their
    /// month's start plus this has passed).
    pub alerts_retention: CalendarSpan,
    pub list: Vec<TaskConfig>,
    pub handlers: Vec<HandlerConfig>,
}

impl TasksConfig {
    pub fn task(&self, name: &str) -> Option<&TaskConfig> {
        self.list.iter().find(|t| t.name == name)
    }

    /// The names of the alert indices.
    pub fn alert_indices(&self) -> AlertIndices {
        AlertIndices {
            prefix: self.alerts_index.clone(),
        }
    }
}

/// The names of the alert indices: `<prefix>-state` (every alert's current level) and
/// `<prefix>-history-<yyyy.mm>` (transitions, one index a month).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertIndices {
    pub prefix: String,
}

impl AlertIndices {
    pub fn state(&self) -> String {
        format!("{}-state", self.prefix)
    }

    /// The history index of the month holding `t`.
    pub fn history_of(&self, t: crate::clock::EpochMillis) -> String {
        let month = IndexPeriod::Month;
        format!(
            "{}-history-{}",
            self.prefix,
            month.render(month.start_of(t))
        )
    }

    pub fn history_pattern(&self) -> String {
        format!("{}-history-*", self.prefix)
    }

    /// The start of the month a history index holds, if `name` is one.
    pub fn history_start(&self, name: &str) -> Option<crate::clock::EpochMillis> {
        let month = name.strip_prefix(&format!("{}-history-", self.prefix))?;
        IndexPeriod::Month.parse(month)
    }
}

/// One task, checked: its script compiled, its handlers known, its batch range kept by an
/// archive.
#[derive(Debug, Clone)]
pub struct TaskConfig {
    pub name: String,
    pub program: std::sync::Arc<crate::script::Program>,
    pub script: String,
    pub select: TaskSelect,
    pub handlers: Vec<String>,
    pub enabled: bool,
    /// Batch tasks only.
    pub batch: Option<BatchConfig>,
    /// The file that declares it.
    pub source: std::path::PathBuf,
    /// How much later than their own time the events of tasks feeding this one arrive (their
    /// points are stamped with their window's start and emitted after its end): added to the
    /// grace, so that no derived point comes after its window here has closed. Zero for a task
    /// no other task feeds.
    pub fed_late: Duration,
}

impl TaskConfig {
    pub fn kind(&self) -> crate::script::SourceKind {
        self.program.source
    }
}

/// Which series a task takes: names (exact or glob), and optionally host and tags (globs).
#[derive(Debug, Clone)]
pub struct TaskSelect {
    pub names: Vec<crate::script::Glob>,
    pub host: Option<crate::script::Glob>,
    pub tags: Vec<(String, crate::script::Glob)>,
}

impl TaskSelect {
    pub fn matches(&self, series: &crate::event::SeriesKey) -> bool {
        self.names.iter().any(|g| g.matches(series.name())) && self.matches_beyond_name(series)
    }

    /// The host and tag matchers only (the name known to match).
    pub fn matches_beyond_name(&self, series: &crate::event::SeriesKey) -> bool {
        self.host
            .as_ref()
            .is_none_or(|h| h.matches(series.host().unwrap_or("")))
            && self.tags.iter().all(|(k, g)| {
                g.matches(series.tags().find(|(tk, _)| tk == k).map_or("", |(_, v)| v))
            })
    }
}

/// When and what a batch task reads.
#[derive(Debug, Clone)]
pub struct BatchConfig {
    pub schedule: TaskSchedule,
    /// Each run reads `[now - range, now)`.
    pub range: Duration,
    /// The archive read (index into `archives`); coarser archives fill what it no longer keeps.
    pub archive: usize,
}

#[derive(Debug, Clone)]
pub enum TaskSchedule {
    Every(Duration),
    Cron(Box<crate::schedule::Schedule>),
}

/// Where alerts are sent.
#[derive(Debug, Clone)]
pub struct HandlerConfig {
    pub name: String,
    pub kind: HandlerKind,
}

#[derive(Debug, Clone)]
pub enum HandlerKind {
    /// POST of the alert as JSON, retried with doubling backoff.
    Http {
        url: String,
        headers: Vec<(String, String)>,
        timeout: Duration,
        retries: u32,
        backoff: Duration,
    },
    /// One JSON line per alert appended to a file.
    Log { path: std::path::PathBuf },
    /// A command run with the alert as JSON on its standard input.
    Exec {
        command: Vec<String>,
        timeout: Duration,
    },
}
