//! `archives.toml` in two steps, as ripgrep reads its flags: [`raw`] holds the file as written
//! in strict serde structs (unknown keys refused), [`validate`] turns them into the trusted
//! [`Config`] of [`types`] or into every problem found, each naming the field, the value and why.

pub mod preflight;
pub mod raw;
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
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.into(),
            message: e.to_string().trim_end().to_string(),
        })?;
        let mut config = raw.validate().map_err(|problems| ConfigError::Invalid {
            path: path.into(),
            problems,
        })?;
        // A relative data directory belongs with the file that names it, not with wherever
        // strata happens to be started from.
        if let (Some(dir), Some(base)) = (&config.durability.dir, path.parent()) {
            if dir.is_relative() {
                config.durability.dir = Some(base.join(dir));
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }
}
