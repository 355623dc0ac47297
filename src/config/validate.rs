//! Step 2 of reading `archives.toml`: [`RawConfig::validate`] checks every section and builds
//! the trusted [`Config`], or returns every problem found at once, each naming the field, the
//! value and why — so that `strata check` and `strata serve` print the same list.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::calendar::CalendarSpan;
use crate::clock::EpochMillis;
use crate::config::raw::*;
use crate::config::types::*;
use crate::naming::{validate_index_name, IndexNaming};
use crate::schedule::Schedule;

/// The largest receive buffer a listener may ask for.
const MAX_RECEIVE_BUFFER_BYTES: u64 = 1 << 30;

pub use super::problems::Problem;
use super::problems::Problems;

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn human(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

const DEFAULT_NAME: &str = "{prefix}{archive}-{period}";

impl RawConfig {
    /// Checks everything and builds the trusted [`Config`], or returns every problem found.
    pub fn validate(self) -> Result<Config, Vec<Problem>> {
        let mut problems = Problems::default();
        let node = validate_node(self.node, &mut problems);
        let index = validate_index(self.index, &mut problems);
        let archives = validate_archives(self.archives, index.as_ref(), &mut problems);
        let http = validate_http(self.http, &mut problems);
        let ingest = validate_ingest(self.ingest, &mut problems);
        let consolidate = validate_consolidate(self.consolidate, &mut problems);
        let persist = validate_persist(self.persist, &mut problems);
        let durability = validate_durability(self.durability, &mut problems);
        let aliases = validate_aliases(self.aliases, index.as_ref(), &archives, &mut problems);
        let maintain = validate_maintain(self.maintain, &mut problems);
        let statsd = listener(
            self.statsd,
            "statsd.listen",
            "127.0.0.1:8125",
            &mut problems,
        );
        let graphite = listener(
            self.graphite,
            "graphite.listen",
            "127.0.0.1:2003",
            &mut problems,
        );
        let riemann = listener(
            self.riemann,
            "riemann.listen",
            "127.0.0.1:5555",
            &mut problems,
        );
        let mut task_list: Vec<(PathBuf, RawTask)> = self
            .task_list
            .into_iter()
            .map(|t| (PathBuf::new(), t))
            .collect();
        task_list.extend(self.dir_tasks);
        let tasks = super::tasks::validate_tasks(
            self.tasks,
            task_list,
            self.handlers,
            &archives,
            index.as_ref().map(|i| i.naming.wildcard()).as_deref(),
            &mut problems,
        );
        match (problems.0.is_empty(), index, http, maintain) {
            (true, Some(index), Some(http), Some(maintain)) => Ok(Config {
                node,
                index,
                archives,
                http,
                ingest,
                consolidate,
                persist,
                durability,
                aliases,
                maintain,
                log: LogConfig {
                    format: self.log.format.unwrap_or_default(),
                },
                statsd,
                graphite,
                riemann,
                tasks,
            }),
            _ => Err(problems.0),
        }
    }
}

fn validate_node(raw: RawNode, problems: &mut Problems) -> NodeConfig {
    if let Some(url) = &raw.url {
        let ok = (url.starts_with("http://") || url.starts_with("https://"))
            && url.len() > "https://".len();
        if !ok {
            problems.add(
                "node.url",
                quoted(url),
                "must be an http:// or https:// URL",
            );
        }
    }
    let password = secret_source(
        &raw.password_env,
        &raw.password_file,
        "node.password",
        problems,
    );
    let api_key = secret_source(
        &raw.api_key_env,
        &raw.api_key_file,
        "node.api_key",
        problems,
    );
    // Both sources of one secret were given: said already, and nothing else is missing.
    let both = |env: &Option<String>, file: &Option<PathBuf>| env.is_some() && file.is_some();
    let password_doubled = both(&raw.password_env, &raw.password_file);
    let auth = match (raw.username, password, api_key) {
        (Some(username), Some(password), None) => NodeAuth::Basic { username, password },
        (None, None, Some(key)) => NodeAuth::ApiKey(key),
        (None, None, None) => NodeAuth::None,
        (Some(_), None, None) if password_doubled => NodeAuth::None,
        (Some(u), None, _) => {
            problems.add(
                "node.username",
                quoted(&u),
                "needs password_env or password_file",
            );
            NodeAuth::None
        }
        (None, Some(_), _) => {
            problems.add("node.password_env", "…", "a password needs node.username");
            NodeAuth::None
        }
        (Some(_), Some(_), Some(_)) => {
            problems.add(
                "node.api_key_env",
                "…",
                "use basic auth or an API key, not both",
            );
            NodeAuth::None
        }
    };
    let timeout = raw.timeout.unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        problems.add("node.timeout", "0s", "must be longer than zero");
    }
    NodeConfig {
        url: raw.url.map(|u| u.trim_end_matches('/').to_string()),
        auth,
        ca_file: raw.ca_file,
        timeout,
    }
}

/// A secret given as `<section.what>_env` or `<section.what>_file`, not both.
fn secret_source(
    env: &Option<String>,
    file: &Option<PathBuf>,
    what: &str,
    problems: &mut Problems,
) -> Option<SecretSource> {
    match (env, file) {
        (Some(_), Some(_)) => {
            let short = what.rsplit('.').next().unwrap_or(what);
            problems.add(
                format!("{what}_file"),
                "…",
                format!("give either {short}_env or {short}_file, not both"),
            );
            None
        }
        (Some(var), None) => Some(SecretSource::Env(var.clone())),
        (None, Some(path)) => Some(SecretSource::File(path.clone())),
        (None, None) => None,
    }
}

fn validate_index(raw: RawIndex, problems: &mut Problems) -> Option<IndexConfig> {
    let prefix = raw.prefix.unwrap_or_else(|| "strata-".into());
    let template = raw.template.unwrap_or_else(|| "strata".into());
    let name = raw.name.unwrap_or_else(|| DEFAULT_NAME.into());
    if template.is_empty()
        || template.starts_with(['_', '-', '+'])
        || template
            .chars()
            .any(|c| c.is_uppercase() || c == ' ' || c == '/')
    {
        problems.add(
            "index.template",
            quoted(&template),
            "must be a lower-case name without spaces or '/', not starting with '_', '-' or '+'",
        );
    }
    let naming = match IndexNaming::parse(&name, &prefix) {
        Ok(naming) => Some(naming),
        Err(e) => {
            problems.add("index.name", quoted(&name), e.to_string());
            None
        }
    };
    naming.map(|naming| IndexConfig {
        prefix,
        name,
        naming,
        template,
        template_priority: raw.template_priority.unwrap_or(500),
        replicas: raw.replicas.unwrap_or(1),
        layout: raw.layout.unwrap_or_default(),
    })
}

fn validate_archives(
    raw: Vec<RawArchive>,
    index: Option<&IndexConfig>,
    problems: &mut Problems,
) -> Vec<Archive> {
    if raw.is_empty() {
        problems.add("archive", "[]", "at least one [[archive]] is needed");
    }
    let mut archives = Vec::with_capacity(raw.len());
    let mut names = HashSet::new();
    for (i, a) in raw.into_iter().enumerate() {
        let field = |f: &str| format!("archive[{i}].{f}");
        if a.name.is_empty()
            || !a
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            problems.add(
                field("name"),
                quoted(&a.name),
                "must be non-empty lower-case letters, digits, '-' or '_'",
            );
        } else if !names.insert(a.name.clone()) {
            problems.add(
                field("name"),
                quoted(&a.name),
                "another archive has this name",
            );
        }
        let step_ms = a.step.as_millis() as i64;
        let retention = match a.retention.parse::<CalendarSpan>() {
            Ok(r) => Some(r),
            Err(why) => {
                problems.add(field("retention"), quoted(&a.retention), why.to_string());
                None
            }
        };
        if a.step.is_zero() {
            problems.add(field("step"), human(a.step), "must be longer than zero");
        } else if a.step.subsec_nanos() != 0 {
            problems.add(
                field("step"),
                human(a.step),
                "must be a whole number of seconds",
            );
        } else if step_ms > a.index_period.min_len_ms() {
            problems.add(
                field("step"),
                human(a.step),
                format!("is longer than the index period '{}'", a.index_period),
            );
        } else if a.index_period.boundary_unit_ms() % step_ms != 0 {
            problems.add(
                field("step"),
                human(a.step),
                format!(
                    "does not divide the index period '{}' ({}): buckets would straddle two indices",
                    a.index_period,
                    human(Duration::from_millis(a.index_period.boundary_unit_ms() as u64))
                ),
            );
        }
        if let Some(r) = retention {
            if !a.step.is_zero() && r.min_len_ms() < step_ms {
                problems.add(
                    field("retention"),
                    quoted(&a.retention),
                    format!("is shorter than the step ({})", human(a.step)),
                );
            } else if r.min_len_ms() < a.index_period.min_len_ms() {
                problems.add(
                    field("retention"),
                    quoted(&a.retention),
                    format!("is shorter than one index period '{}': the index being written would already be expired", a.index_period),
                );
            }
        }
        let lateness = a.lateness.unwrap_or(Duration::from_secs(10));
        if lateness.subsec_nanos() % 1_000_000 != 0 {
            problems.add(
                field("lateness"),
                human(lateness),
                "must be whole milliseconds",
            );
        }
        let percentiles = a.percentiles.unwrap_or_default();
        if let Some(why) = percentiles_problem(&percentiles) {
            problems.add(field("percentiles"), format!("{percentiles:?}"), why);
        }
        if let Some(r) = retention {
            archives.push(Archive {
                name: a.name,
                step: a.step,
                retention: r,
                index_period: a.index_period,
                lateness,
                percentiles,
            });
        }
    }
    if let Some(index) = index {
        check_index_names(&archives, index, problems);
    }
    archives
}

fn percentiles_problem(percentiles: &[f64]) -> Option<String> {
    if percentiles.len() > MAX_PERCENTILES {
        return Some(format!("lists more than {MAX_PERCENTILES} percentiles"));
    }
    if let Some(p) = percentiles.iter().find(|p| !(**p > 0.0 && **p <= 100.0)) {
        return Some(format!("{p} is not above 0 and at most 100"));
    }
    if percentiles.windows(2).any(|w| w[0] >= w[1]) {
        return Some("must be in ascending order, each once".into());
    }
    if let Some(p) = percentiles.iter().find(|p| (**p * 1000.0).fract() != 0.0) {
        return Some(format!("{p} has more than three decimals"));
    }
    None
}

/// Every archive's names must be valid indices, and no two archives may share an index.
fn check_index_names(archives: &[Archive], index: &IndexConfig, problems: &mut Problems) {
    // Period starts spread over several years, hours and months: enough to tell templates apart.
    let samples: Vec<EpochMillis> = (0..60)
        .map(|i| 1_262_304_000_000 + i * 1_123_200_000 + (i % 24) * 3_600_000)
        .collect();
    let rendered: Vec<HashSet<String>> = archives
        .iter()
        .map(|a| {
            samples
                .iter()
                .map(|&t| {
                    index
                        .naming
                        .render(&a.name, a.index_period, a.index_period.start_of(t))
                })
                .collect()
        })
        .collect();
    for (i, a) in archives.iter().enumerate() {
        if let Some(example) = rendered[i].iter().next() {
            if let Err(e) = validate_index_name(example) {
                problems.add(
                    format!("archive[{i}] index name"),
                    quoted(example),
                    e.to_string(),
                );
            }
        }
        for (j, b) in archives.iter().enumerate().skip(i + 1) {
            // Two archives of one name are reported as such; their indices follow from it.
            if a.name == b.name {
                continue;
            }
            if let Some(shared) = rendered[i].intersection(&rendered[j]).next() {
                problems.add(
                    "index.name",
                    quoted(&index.name),
                    format!(
                        "archives '{}' and '{}' would both write to index {shared:?}",
                        a.name, b.name
                    ),
                );
            }
        }
    }
}

fn validate_aliases(
    raw: RawAliases,
    index: Option<&IndexConfig>,
    archives: &[Archive],
    problems: &mut Problems,
) -> AliasConfig {
    let mode = raw.mode.unwrap_or(AliasMode::Stitched);
    if let (AliasMode::Samplerr, Some(umbrella)) = (mode, &raw.umbrella) {
        problems.add(
            "aliases.umbrella",
            quoted(umbrella),
            "samplerr mode creates no umbrella alias: remove the key, or use mode = \"stitched\"",
        );
    }
    let cfg = AliasConfig {
        mode,
        prefix: raw.prefix.unwrap_or_else(|| "metrics-".into()),
        umbrella: raw.umbrella.unwrap_or_else(|| "metrics".into()),
    };
    if let Err(e) = validate_index_name(&format!("{}2020", cfg.prefix)) {
        problems.add("aliases.prefix", quoted(&cfg.prefix), e.to_string());
    }
    if let Err(e) = validate_index_name(&cfg.umbrella) {
        problems.add("aliases.umbrella", quoted(&cfg.umbrella), e.to_string());
    }
    if let Some(index) = index {
        // A wildcard over the alias prefix must never match a concrete index.
        for a in archives {
            let example = index.naming.render(&a.name, a.index_period, 0);
            if example.starts_with(&cfg.prefix) || example == cfg.umbrella {
                problems.add(
                    "aliases.prefix",
                    quoted(&cfg.prefix),
                    format!(
                        "index names such as {example:?} would match '{}*' or the umbrella alias",
                        cfg.prefix
                    ),
                );
                break;
            }
        }
    }
    cfg
}

/// An optional listener section: absent = off; present without `listen` = `default`.
fn listener(
    raw: Option<RawListener>,
    field: &str,
    default: &str,
    problems: &mut Problems,
) -> Option<ListenerConfig> {
    let raw = raw?;
    let section = field.split('.').next().unwrap_or(field);
    let receive_buffer_bytes = match raw.receive_buffer_bytes {
        None => DEFAULT_RECEIVE_BUFFER_BYTES,
        Some(n) if n == 0 || (4096..=MAX_RECEIVE_BUFFER_BYTES).contains(&n) => n as usize,
        Some(n) => {
            problems.add(
                format!("{section}.receive_buffer_bytes"),
                n.to_string(),
                format!("must be 0 (the kernel default) or 4096..={MAX_RECEIVE_BUFFER_BYTES}"),
            );
            return None;
        }
    };
    let gauge_idle = match raw.gauge_idle {
        Some(idle) if section != "statsd" => {
            problems.add(
                format!("{section}.gauge_idle"),
                human(idle),
                "only [statsd] keeps gauge values",
            );
            return None;
        }
        Some(idle) if idle.is_zero() => {
            problems.add(
                format!("{section}.gauge_idle"),
                human(idle),
                "must be longer than zero",
            );
            return None;
        }
        idle => idle.unwrap_or(DEFAULT_GAUGE_IDLE),
    };
    let listen = raw.listen.unwrap_or_else(|| default.into());
    match listen.parse::<SocketAddr>() {
        Ok(listen) => Some(ListenerConfig {
            listen,
            receive_buffer_bytes,
            gauge_idle,
        }),
        Err(_) => {
            problems.add(
                field,
                quoted(&listen),
                format!("must be an IP address and port, e.g. {default:?}"),
            );
            None
        }
    }
}

/// When maintenance runs unless told otherwise: five past midnight UTC, after the day's indices
/// have rolled over.
const DEFAULT_SCHEDULE: &str = "5 0 * * *";

fn validate_maintain(raw: RawMaintain, problems: &mut Problems) -> Option<MaintainConfig> {
    let expr = raw.schedule.unwrap_or_else(|| DEFAULT_SCHEDULE.into());
    match Schedule::parse(&expr) {
        Ok(schedule) => Some(MaintainConfig {
            schedule,
            max_deletes: raw.max_deletes.unwrap_or(50),
        }),
        Err(why) => {
            problems.add("maintain.schedule", quoted(&expr), why.to_string());
            None
        }
    }
}

/// The bytes in flight are counted in KiB permits of a semaphore (at most `u32::MAX` of them).
const MAX_INFLIGHT_BYTES: usize = 1 << 40;
/// Past this many distinct tag keys, the mapping updates of a new key stall the node's writes
/// for seconds each (1 200 keys in one bulk request took 45 s on OpenSearch 2.19 here).
const MAX_TAG_KEYS: usize = 10_000;

/// Stored-data reads served at once by default: enough for a few dashboards refreshing
/// together, few enough that readers queue instead of taking the cores from ingest (with 20
/// readers asking back to back and no bound, HTTP ingest fell by half on 2 cores; see
/// BENCHMARKS.md).
const DEFAULT_CONCURRENT_READS: usize = 2;

/// The share of the clock reads may take together by default (see `query::budget`): with 20
/// readers asking back to back on 2 cores, HTTP ingest kept at least 80 % of its rate (see
/// BENCHMARKS.md), while a dashboard's reads now and then never wait.
const DEFAULT_READ_SHARE: f64 = 0.25;

fn validate_http(raw: RawHttp, problems: &mut Problems) -> Option<HttpConfig> {
    let listen = raw.listen.unwrap_or_else(|| "127.0.0.1:8080".into());
    let max_body_bytes = raw.max_body_bytes.unwrap_or(16 * 1024 * 1024);
    if max_body_bytes == 0 {
        problems.add("http.max_body_bytes", 0, "must be larger than zero");
    }
    let max_inflight_bytes = raw.max_inflight_bytes.unwrap_or(256 * 1024 * 1024);
    if max_inflight_bytes < max_body_bytes || max_inflight_bytes > MAX_INFLIGHT_BYTES {
        problems.add(
            "http.max_inflight_bytes",
            max_inflight_bytes,
            format!("must be at least http.max_body_bytes ({max_body_bytes}) and at most {MAX_INFLIGHT_BYTES}"),
        );
    }
    let max_concurrent_reads = raw.max_concurrent_reads.unwrap_or(DEFAULT_CONCURRENT_READS);
    if max_concurrent_reads == 0 || max_concurrent_reads > 1024 {
        problems.add(
            "http.max_concurrent_reads",
            max_concurrent_reads,
            "must be from 1 to 1024",
        );
    }
    let read_share = raw.read_share.unwrap_or(DEFAULT_READ_SHARE);
    if !(read_share > 0.0 && read_share <= 1024.0) {
        problems.add(
            "http.read_share",
            read_share,
            "must be above 0 and at most 1024 (seconds of read time per second)",
        );
    }
    let write_token = secret_source(
        &raw.write_token_env,
        &raw.write_token_file,
        "http.write_token",
        problems,
    );
    let read_token = secret_source(
        &raw.read_token_env,
        &raw.read_token_file,
        "http.read_token",
        problems,
    );
    match listen.parse::<SocketAddr>() {
        Ok(listen) => Some(HttpConfig {
            listen,
            max_body_bytes,
            max_inflight_bytes,
            max_concurrent_reads,
            read_share,
            write_token,
            read_token,
        }),
        Err(_) => {
            problems.add(
                "http.listen",
                quoted(&listen),
                "must be an IP address and port, e.g. \"127.0.0.1:8080\"",
            );
            None
        }
    }
}

fn validate_ingest(raw: RawIngest, problems: &mut Problems) -> IngestConfig {
    let d = IngestConfig::default();
    let cfg = IngestConfig {
        max_future_skew: raw.max_future_skew.unwrap_or(d.max_future_skew),
        max_name_length: raw.max_name_length.unwrap_or(d.max_name_length),
        max_tags: raw.max_tags.unwrap_or(d.max_tags),
    };
    if cfg.max_name_length == 0 {
        problems.add("ingest.max_name_length", 0, "must be larger than zero");
    }
    cfg
}

fn validate_consolidate(raw: RawConsolidate, problems: &mut Problems) -> ConsolidateConfig {
    let cfg = ConsolidateConfig {
        max_series: raw.max_series.unwrap_or(1_000_000),
        max_tag_keys: raw
            .max_tag_keys
            .unwrap_or(crate::consolidate::DEFAULT_MAX_TAG_KEYS),
        tick: raw.tick.unwrap_or(Duration::from_secs(1)),
        queue_batches: raw.queue_batches.unwrap_or(64),
    };
    if cfg.max_series == 0 {
        problems.add("consolidate.max_series", 0, "must be larger than zero");
    }
    if cfg.max_tag_keys > MAX_TAG_KEYS {
        problems.add(
            "consolidate.max_tag_keys",
            cfg.max_tag_keys,
            format!("must be at most {MAX_TAG_KEYS}: each tag key is a field of the node's index mapping, and every field costs the node memory and cluster-state updates"),
        );
    }
    if cfg.tick.is_zero() {
        problems.add("consolidate.tick", "0s", "must be longer than zero");
    }
    if cfg.queue_batches == 0 {
        problems.add("consolidate.queue_batches", 0, "must be larger than zero");
    }
    cfg
}

fn validate_durability(raw: RawDurability, problems: &mut Problems) -> DurabilityConfig {
    let cfg = DurabilityConfig {
        dir: raw.dir,
        fsync: raw.fsync.unwrap_or(true),
        checkpoint_interval: raw.checkpoint_interval.unwrap_or(Duration::from_secs(60)),
        max_disk_bytes: raw.max_disk_bytes.unwrap_or(10 << 30),
    };
    if cfg.checkpoint_interval < Duration::from_secs(1) {
        problems.add(
            "durability.checkpoint_interval",
            human(cfg.checkpoint_interval),
            "must be at least 1s",
        );
    }
    // Log segments are an eighth of the bound, at least 1 MiB: below 8 MiB the bound would
    // refuse ingest before a segment could be removed.
    if cfg.max_disk_bytes < 8 << 20 {
        problems.add(
            "durability.max_disk_bytes",
            cfg.max_disk_bytes,
            "must be at least 8388608 (8 MiB)",
        );
    }
    if cfg.dir.as_ref().is_some_and(|d| d.as_os_str().is_empty()) {
        problems.add(
            "durability.dir",
            "\"\"",
            "must be a directory path (leave it out for no log)",
        );
    }
    cfg
}

fn validate_persist(raw: RawPersist, problems: &mut Problems) -> PersistConfig {
    let cfg = PersistConfig {
        batch_docs: raw.batch_docs.unwrap_or(5_000),
        batch_bytes: raw.batch_bytes.unwrap_or(8 * 1024 * 1024),
        flush_interval: raw.flush_interval.unwrap_or(Duration::from_secs(1)),
        queue_docs: raw.queue_docs.unwrap_or(100_000),
        retry_initial: raw.retry_initial.unwrap_or(Duration::from_millis(200)),
        retry_max: raw.retry_max.unwrap_or(Duration::from_secs(30)),
        shutdown_timeout: raw.shutdown_timeout.unwrap_or(Duration::from_secs(30)),
    };
    for (field, value) in [
        ("persist.batch_docs", cfg.batch_docs),
        ("persist.batch_bytes", cfg.batch_bytes),
        ("persist.queue_docs", cfg.queue_docs),
    ] {
        if value == 0 {
            problems.add(field, 0, "must be larger than zero");
        }
    }
    if cfg.flush_interval.is_zero() {
        problems.add("persist.flush_interval", "0s", "must be longer than zero");
    }
    if cfg.retry_initial.is_zero() || cfg.retry_max < cfg.retry_initial {
        problems.add(
            "persist.retry_max",
            human(cfg.retry_max),
            format!(
                "must be at least retry_initial ({}), which must be > 0",
                human(cfg.retry_initial)
            ),
        );
    }
    cfg
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::calendar::CalendarUnit;
    use crate::config::ConfigError;

    const GOOD: &str = r#"
        [node]
        url = "http://127.0.0.1:9200"
        [index]
        prefix = "strata-"
        [[archive]]
        name = "20s"
        step = "20s"
        retention = "2 days"
        index_period = "day"
        [[archive]]
        name = "10m"
        step = "10m"
        retention = "2 months"
        index_period = "month"
        lateness = "1m"
        [[archive]]
        name = "1h"
        step = "1h"
        retention = "10 years"
        index_period = "year"
    "#;

    fn problems(text: &str) -> Vec<Problem> {
        match Config::from_toml(text, Path::new("t.toml")) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    fn with_archive(archive: &str) -> String {
        format!("[[archive]]\n{archive}\n")
    }

    #[test]
    fn udp_receive_buffers_default_to_8_mib_and_bad_sizes_are_named() {
        let cfg = Config::from_toml(
            &format!("{GOOD}\n[statsd]\n[graphite]\nreceive_buffer_bytes = 0\n"),
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(
            cfg.statsd.unwrap().receive_buffer_bytes,
            DEFAULT_RECEIVE_BUFFER_BYTES
        );
        assert_eq!(cfg.graphite.unwrap().receive_buffer_bytes, 0);
        let found = problems(&format!("{GOOD}\n[riemann]\nreceive_buffer_bytes = 100\n"));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "riemann.receive_buffer_bytes");
    }

    #[test]
    fn samplerr_mode_refuses_an_umbrella_it_would_not_create() {
        let found = problems(&format!(
            "{GOOD}\n[aliases]\nmode = \"samplerr\"\numbrella = \"all\"\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "aliases.umbrella");
        let without = format!("{GOOD}\n[aliases]\nmode = \"samplerr\"\n");
        assert!(Config::from_toml(&without, Path::new("t.toml")).is_ok());
    }

    #[test]
    fn an_empty_node_url_override_counts_as_unset() {
        let cfg = Config::from_toml(GOOD, Path::new("t.toml")).unwrap();
        let configured = cfg.node.url.clone();
        assert!(configured.is_some());
        assert_eq!(cfg.node.url_or(Some(String::new())).ok(), configured);
        assert_eq!(cfg.node.url_or(Some("  ".into())).ok(), configured);
        assert_eq!(
            cfg.node.url_or(Some("http://other:9200".into())).unwrap(),
            "http://other:9200"
        );
    }

    #[test]
    fn request_bytes_in_flight_hold_at_least_one_body() {
        let cfg = Config::from_toml(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(cfg.http.max_inflight_bytes, 256 * 1024 * 1024);
        let found = problems(&format!(
            "{GOOD}\n[http]\nmax_body_bytes = 2048\nmax_inflight_bytes = 1024\n"
        ));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].field, "http.max_inflight_bytes");
    }

    #[test]
    fn good_config_validates_with_defaults() {
        let cfg = Config::from_toml(GOOD, Path::new("t.toml")).unwrap();
        assert_eq!(cfg.archives.len(), 3);
        assert_eq!(cfg.archives[0].lateness, Duration::from_secs(10));
        assert_eq!(cfg.archives[1].lateness, Duration::from_secs(60));
        assert_eq!(
            cfg.archives[2].retention,
            CalendarSpan {
                count: 10,
                unit: CalendarUnit::Year
            }
        );
        assert_eq!(cfg.http.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(cfg.node.url.as_deref(), Some("http://127.0.0.1:9200"));
        assert_eq!(cfg.index.naming.wildcard(), "strata-*-*");
    }

    #[test]
    fn unknown_key_is_named() {
        let err = Config::from_toml("[node]\nurll = \"x\"\n", Path::new("t.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `urll`"), "{err}");
    }

    #[test]
    fn percentiles_are_checked_and_named_as_fields() {
        let ok = Config::from_toml(
            &with_archive("name=\"a\"\nstep=\"20s\"\nretention=\"1 day\"\nindex_period=\"day\"\npercentiles=[50, 99.9]"),
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(ok.archives[0].percentiles, vec![50.0, 99.9]);
        assert_eq!(percentile_field(99.9), "p99_9");
        assert_eq!(percentile_field(50.0), "p50");
        for (list, why) in [
            ("[0]", "not above 0"),
            ("[101]", "not above 0"),
            ("[90, 50]", "ascending"),
            ("[50, 50]", "ascending"),
            ("[99.9999]", "three decimals"),
        ] {
            let p = problems(&with_archive(&format!(
                "name=\"a\"\nstep=\"20s\"\nretention=\"1 day\"\nindex_period=\"day\"\npercentiles={list}"
            )));
            assert_eq!(p[0].field, "archive[0].percentiles");
            assert!(p[0].why.contains(why), "{list}: {p:?}");
        }
    }

    #[test]
    fn lateness_must_be_whole_milliseconds() {
        let archive = |lateness: &str| {
            with_archive(&format!(
                "name=\"a\"\nstep=\"20s\"\nretention=\"1 day\"\nindex_period=\"day\"\nlateness=\"{lateness}\""
            ))
        };
        for bad in ["1s 500us", "1500us", "1ms 1ns"] {
            let p = problems(&archive(bad));
            assert_eq!(p.len(), 1, "{bad}: {p:?}");
            assert_eq!(
                (p[0].field.as_str(), p[0].why.as_str()),
                ("archive[0].lateness", "must be whole milliseconds")
            );
        }
        let cfg = Config::from_toml(&archive("1s 500ms"), Path::new("t")).unwrap();
        assert_eq!(cfg.archives[0].lateness, Duration::from_millis(1500));
    }

    #[test]
    fn zero_step_is_refused() {
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"0s\"\nretention=\"1 day\"\nindex_period=\"day\"",
        ));
        assert_eq!(p[0].field, "archive[0].step");
        assert!(p[0].why.contains("longer than zero"));
    }

    #[test]
    fn step_must_divide_the_period() {
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"7s\"\nretention=\"1 day\"\nindex_period=\"day\"",
        ));
        assert!(
            p[0].why.contains("does not divide the index period 'day'"),
            "{p:?}"
        );
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"2h\"\nretention=\"1 day\"\nindex_period=\"hour\"",
        ));
        assert!(
            p[0].why.contains("longer than the index period 'hour'"),
            "{p:?}"
        );
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"7days\"\nretention=\"1 year\"\nindex_period=\"month\"",
        ));
        assert!(p[0].why.contains("does not divide"), "{p:?}");
    }

    #[test]
    fn a_retention_in_minutes_says_retention_is_calendar_time() {
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"20s\"\nretention=\"30m\"\nindex_period=\"hour\"",
        ));
        assert_eq!(p[0].field, "archive[0].retention", "{p:?}");
        assert!(p[0].why.contains("'30m' is shorter than an hour"), "{p:?}");
        assert!(p[0].why.contains("M (months)"), "{p:?}");
    }

    #[test]
    fn retention_shorter_than_step_or_period_is_refused() {
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"1h\"\nretention=\"1 hours\"\nindex_period=\"day\"",
        ));
        assert!(p[0].why.contains("shorter than one index period"), "{p:?}");
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"1day\"\nretention=\"2 h\"\nindex_period=\"day\"",
        ));
        assert!(p[0].why.contains("shorter than the step"), "{p:?}");
        let p = problems(&with_archive(
            "name=\"a\"\nstep=\"1h\"\nretention=\"2 fortnights\"\nindex_period=\"day\"",
        ));
        assert!(p[0].why.contains("unknown unit 'fortnights'"), "{p:?}");
    }

    #[test]
    fn duplicate_names_and_colliding_indices_are_refused() {
        let a = "name=\"a\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"";
        let p = problems(&format!("{}{}", with_archive(a), with_archive(a)));
        assert!(
            p.iter().any(|p| p.why == "another archive has this name"),
            "{p:?}"
        );
        let b = "name=\"b\"\nstep=\"1m\"\nretention=\"2 days\"\nindex_period=\"day\"";
        let text = format!(
            "[index]\nname=\"{{prefix}}{{period}}\"\n{}{}",
            with_archive(a),
            with_archive(b)
        );
        let p = problems(&text);
        let shared = p
            .iter()
            .find(|p| {
                p.why
                    .contains("archives 'a' and 'b' would both write to index")
            })
            .unwrap_or_else(|| panic!("{p:?}"));
        assert_eq!(
            shared.value, "\"{prefix}{period}\"",
            "the name as configured"
        );
        // Two archives named alike are one problem, not also a shared index.
        let p = problems(&format!("{}{}", with_archive(a), with_archive(a)));
        assert!(
            !p.iter().any(|p| p.why.contains("archives 'a' and 'a'")),
            "{p:?}"
        );
    }

    #[test]
    fn both_sources_of_a_password_is_one_problem() {
        let text = format!(
            "[node]\nusername = \"u\"\npassword_env = \"X\"\npassword_file = \"/f\"\n{}",
            with_archive("name=\"a\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"")
        );
        let p = problems(&text);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].why.contains("not both"), "{p:?}");
    }

    #[test]
    fn samplerr_naming_with_three_periods_is_fine() {
        let text = r#"
            [index]
            prefix = ".samplerr-"
            name = "{prefix}{period}"
            [[archive]]
            name = "20s"
            step = "20s"
            retention = "3 days"
            index_period = "day"
            [[archive]]
            name = "10m"
            step = "10m"
            retention = "2 months"
            index_period = "month"
            [[archive]]
            name = "1h"
            step = "1h"
            retention = "10 years"
            index_period = "year"
        "#;
        Config::from_toml(text, Path::new("t.toml")).unwrap();
    }

    #[test]
    fn invalid_index_names_are_refused() {
        let p = problems(&format!(
            "[index]\nprefix=\"Strata-\"\n{}",
            with_archive("name=\"a\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"")
        ));
        assert!(p.iter().any(|p| p.why.contains("upper-case")), "{p:?}");
    }

    #[test]
    fn node_auth_needs_both_parts() {
        let p = problems(&format!(
            "[node]\nusername=\"u\"\n{}",
            with_archive("name=\"a\"\nstep=\"20s\"\nretention=\"2 days\"\nindex_period=\"day\"")
        ));
        assert_eq!(p[0].field, "node.username");
    }
}
