//! What serving needs besides a valid file, checked before anything touches the network, so
//! that `strata check` says everything `strata serve` would stumble on: the node's secrets and
//! the API tokens readable, the CA file readable, no two listeners on one address.

use std::net::SocketAddr;

use super::types::{Config, NodeAuth, SecretSource};
use super::validate::Problem;

/// The problems found by [`Config::preflight`], all of them.
#[derive(Debug, thiserror::Error)]
#[error("{} problem(s) before serving:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct PreflightError(pub Vec<Problem>);

impl Config {
    /// Reads every secret and file serving will need and checks that no two listeners share
    /// an address; every problem at once.
    pub fn preflight(&self) -> Result<(), PreflightError> {
        let mut problems = Vec::new();
        match &self.node.auth {
            NodeAuth::None => {}
            NodeAuth::Basic { password, .. } => secret(password, "node.password", &mut problems),
            NodeAuth::ApiKey(key) => secret(key, "node.api_key", &mut problems),
        }
        if let Some(ca) = &self.node.ca_file {
            if let Err(e) = std::fs::read(ca) {
                problems.push(problem(
                    "node.ca_file",
                    ca.display(),
                    format!("cannot read it: {e}"),
                ));
            }
        }
        for (source, what) in [
            (&self.http.write_token, "http.write_token"),
            (&self.http.read_token, "http.read_token"),
        ] {
            if let Some(source) = source {
                secret(source, what, &mut problems);
            }
        }
        if let Some(dir) = &self.durability.dir {
            data_dir(dir, &mut problems);
        }
        shared_addresses(self, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(PreflightError(problems))
        }
    }
}

fn problem(field: &str, value: impl std::fmt::Display, why: impl Into<String>) -> Problem {
    Problem {
        field: field.to_string(),
        value: value.to_string(),
        why: why.into(),
    }
}

/// A data directory strata could not create or write in (checked without creating it).
fn data_dir(dir: &std::path::Path, problems: &mut Vec<Problem>) {
    let existing = dir
        .ancestors()
        .find(|a| a.exists() || a.as_os_str().is_empty());
    let why = match existing {
        Some(a) if a == dir && !a.is_dir() => Some("exists and is not a directory".to_string()),
        Some(a)
            if !writable(if a.as_os_str().is_empty() {
                std::path::Path::new(".")
            } else {
                a
            }) =>
        {
            Some(format!("{} is not writable by this user", a.display()))
        }
        _ => None,
    };
    if let Some(why) = why {
        problems.push(problem("durability.dir", dir.display(), why));
    }
}

/// Whether this user may create files in `path`: tried with a file created and removed at once.
fn writable(path: &std::path::Path) -> bool {
    let probe = path.join(format!(".strata-check-{}", std::process::id()));
    let created = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    if created {
        let _ = std::fs::remove_file(&probe);
    }
    created
}

/// A secret that cannot be read, or reads empty.
fn secret(source: &SecretSource, what: &str, problems: &mut Vec<Problem>) {
    let (field, value) = match source {
        SecretSource::Env(var) => (format!("{what}_env"), var.clone()),
        SecretSource::File(path) => (format!("{what}_file"), path.display().to_string()),
    };
    match source.read() {
        Ok(text) if text.is_empty() => problems.push(problem(&field, value, "is empty")),
        Ok(_) => {}
        Err(e) => problems.push(problem(&field, value, e.to_string())),
    }
}

/// Listeners that would bind the same TCP address (HTTP, and statsd, Graphite and Riemann,
/// which listen on TCP and UDP alike); port 0 picks a free port and never clashes.
fn shared_addresses(config: &Config, problems: &mut Vec<Problem>) {
    let mut tcp: Vec<(&str, SocketAddr)> = vec![("http.listen", config.http.listen)];
    for (name, listener) in [
        ("statsd.listen", &config.statsd),
        ("graphite.listen", &config.graphite),
        ("riemann.listen", &config.riemann),
    ] {
        if let Some(l) = listener {
            tcp.push((name, l.listen));
        }
    }
    for (i, (name, addr)) in tcp.iter().enumerate() {
        if addr.port() == 0 {
            continue;
        }
        if let Some((first, _)) = tcp[..i].iter().find(|(_, other)| other == addr) {
            problems.push(problem(name, addr, format!("the same address as {first}")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn check_finds_what_serve_would_stumble_on_all_at_once() {
        let var = format!("STRATA_PREFLIGHT_UNSET_{}", std::process::id());
        let text = format!(
            "[node]\nurl = \"https://n:9200\"\nusername = \"u\"\npassword_env = \"{var}\"\nca_file = \"/nonexistent/ca.pem\"\n\
             [http]\nlisten = \"127.0.0.1:8125\"\n[statsd]\nlisten = \"127.0.0.1:8125\"\n\
             [[archive]]\nname = \"20s\"\nstep = \"20s\"\nretention = \"2 days\"\nindex_period = \"day\"\n"
        );
        let cfg = Config::from_toml(&text, Path::new("t")).unwrap();
        let PreflightError(problems) = cfg.preflight().unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["node.password_env", "node.ca_file", "statsd.listen"]
        );
        assert!(problems[0].why.contains("is not set"), "{}", problems[0]);
        assert!(problems[2].why.contains("http.listen"), "{}", problems[2]);
    }

    #[test]
    fn a_plain_config_passes() {
        let text = "[[archive]]\nname = \"20s\"\nstep = \"20s\"\nretention = \"2 days\"\nindex_period = \"day\"\n[statsd]\n[graphite]\n";
        Config::from_toml(text, Path::new("t"))
            .unwrap()
            .preflight()
            .unwrap();
    }
}
