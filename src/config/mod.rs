//! `archives.toml` in two steps, as ripgrep reads its flags: [`raw`] holds the file as written
//! in strict serde structs (unknown keys refused), [`validate`] turns them into the trusted
//! [`Config`] of [`types`] or into every problem found, each naming the field, the value and why.

pub mod migrate;
pub mod preflight;
mod problems;
pub mod raw;
pub mod tasks;
pub mod types;
pub mod validate;

use std::path::{Path, PathBuf};

pub use preflight::PreflightError;
pub use types::*;
pub use validate::Problem;

use raw::RawConfig;

/// Why a configuration could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {} problem(s):\n{}", problems.len(), problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: PathBuf,
        problems: Vec<Problem>,
    },
}

impl Config {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.into(),
            source,
        })?;
        Self::from_toml(&text, path)
    }

    /// Parses and validates `text`; `path` only names the source in errors.
    pub fn from_toml(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: every_parse_problem(text, &e),
        })?;
        if let Some(dir) = &raw.tasks.dir {
            let dir = relative_to(path, dir);
            raw.dir_tasks = tasks::read_task_dir(&dir)
                .map_err(|(path, message)| ConfigError::Parse { path, message })?;
            raw.tasks.dir = Some(dir);
        }
        let mut config = raw.validate().map_err(|problems| ConfigError::Invalid {
            path: path.into(),
            problems,
        })?;
        // A relative data directory belongs with the file that names it, not with wherever
        // strata happens to be started from.
        if let Some(dir) = &config.durability.dir {
            config.durability.dir = Some(relative_to(path, dir));
        }
        for task in &mut config.tasks.list {
            if task.source.as_os_str().is_empty() {
                task.source = path.into();
            }
        }
        Ok(config)
    }
}

/// `dir` as seen from where `config_path` is (a relative path belongs with the file naming it).
fn relative_to(config_path: &Path, dir: &Path) -> PathBuf {
    match config_path.parent() {
        Some(base) if dir.is_relative() => base.join(dir),
        _ => dir.to_path_buf(),
    }
}

/// Serde stops at the first problem; this reads each section on its own so that the user sees
/// every section's problem at once. With one section at fault, the parser's own message (which
/// has the line and column) is kept.
fn every_parse_problem(text: &str, first: &toml::de::Error) -> String {
    let whole = first.to_string().trim_end().to_string();
    let Ok(table) = toml::from_str::<toml::Table>(text) else {
        return whole; // a syntax error: nothing can be read past it
    };
    let mut problems = Vec::new();
    for (key, value) in &table {
        let problem = match key.as_str() {
            "node" => check::<raw::RawNode>(value),
            "index" => check::<raw::RawIndex>(value),
            "http" => check::<raw::RawHttp>(value),
            "ingest" => check::<raw::RawIngest>(value),
            "consolidate" => check::<raw::RawConsolidate>(value),
            "persist" => check::<raw::RawPersist>(value),
            "durability" => check::<raw::RawDurability>(value),
            "aliases" => check::<raw::RawAliases>(value),
            "maintain" => check::<raw::RawMaintain>(value),
            "log" => check::<raw::RawLog>(value),
            "statsd" | "graphite" | "riemann" => check::<raw::RawListener>(value),
            "tasks" => check::<raw::RawTasks>(value),
            "task" | "handler" => match value.as_array() {
                Some(list) => {
                    for (i, item) in list.iter().enumerate() {
                        let why = if key == "task" {
                            check::<raw::RawTask>(item)
                        } else {
                            check::<raw::RawHandler>(item)
                        };
                        if let Some(why) = why {
                            problems.push(format!("{key}[{i}]: {why}"));
                        }
                    }
                    None
                }
                None => Some(format!("must be a list of [[{key}]] tables")),
            },
            "archive" => match value.as_array() {
                Some(archives) => {
                    for (i, a) in archives.iter().enumerate() {
                        if let Some(why) = check::<raw::RawArchive>(a) {
                            problems.push(format!("archive[{i}]: {why}"));
                        }
                    }
                    None
                }
                None => Some("must be a list of [[archive]] tables".to_string()),
            },
            other => Some(format!("unknown section `{other}`")),
        };
        if let Some(why) = problem {
            problems.push(format!("[{key}]: {why}"));
        }
    }
    if problems.len() <= 1 {
        return whole;
    }
    format!(
        "{} problem(s):\n{}",
        problems.len(),
        problems
            .iter()
            .map(|p| format!("  - {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    )
}

/// Why `value` does not read as a `T`, if it does not.
fn check<T: serde::de::DeserializeOwned>(value: &toml::Value) -> Option<String> {
    value
        .clone()
        .try_into::<T>()
        .err()
        .map(|e| e.to_string().trim_end().replace('\n', " "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn problems_in_several_sections_are_all_reported() {
        let text = r#"
[node]
colour = "blue"
[persist]
flush_interval = "-1s"
[[archive]]
name = "a"
step = "20s"
retention = "2 days"
index_period = "week"
"#;
        let Err(ConfigError::Parse { message, .. }) = Config::from_toml(text, Path::new("t"))
        else {
            panic!("a parse error")
        };
        assert!(message.starts_with("3 problem(s)"), "{message}");
        for part in [
            "[node]: unknown field `colour`",
            "[persist]:",
            "archive[0]:",
            "week",
        ] {
            assert!(message.contains(part), "{part} in {message}");
        }
        // One problem keeps the parser's message with its line.
        let Err(ConfigError::Parse { message, .. }) =
            Config::from_toml("[node]\ncolour = 1\n", Path::new("t"))
        else {
            panic!("a parse error")
        };
        assert!(message.contains("line 2"), "{message}");
    }

    /// `archives.toml` is what `scripts/run` serves and what the Docker image copies in.
    #[test]
    fn the_shipped_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("archives.toml");
        match Config::load(&path) {
            Ok(cfg) => cfg
                .preflight()
                .expect("archives.toml passes what serving checks"),
            Err(e) => panic!("archives.toml is shipped invalid: {e}"),
        }
        let dockerfile = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/Dockerfile");
        let dockerfile = std::fs::read_to_string(dockerfile).unwrap();
        assert!(
            dockerfile.contains("COPY archives.toml "),
            "the image ships the same file"
        );
        // What the binary embeds must be in the image's build stage too.
        for dir in embedded_dirs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src")) {
            assert!(
                dockerfile
                    .lines()
                    .any(|l| l.trim() == format!("COPY {dir} {dir}")),
                "the Dockerfile's build stage copies {dir}/, which src/ embeds"
            );
        }
    }

    /// The top-level directories whose files the sources embed (`include_str!`, `include_bytes!`).
    fn embedded_dirs(dir: &Path) -> std::collections::BTreeSet<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut found = std::collections::BTreeSet::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                found.extend(embedded_dirs(&path));
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let after = |mac: &'static str| text.split(mac).skip(1);
            for part in after("include_str!(\"").chain(after("include_bytes!(\"")) {
                let Some(relative) = part.split('"').next() else {
                    continue;
                };
                let target = path.parent().unwrap().join(relative);
                let Ok(canonical) = target.canonicalize() else {
                    continue;
                };
                if let Ok(inside) = canonical.strip_prefix(root.canonicalize().unwrap()) {
                    if let Some(first) = inside.components().next() {
                        found.insert(first.as_os_str().to_string_lossy().into_owned());
                    }
                }
            }
        }
        found
    }
}
