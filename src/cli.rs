//! The command line as users type it: `strata serve | check | plan | maintain | rotate | purge |
//! replay`, each with `--config FILE` (default `./archives.toml`) and its own `--help`; and
//! `strata completions <shell>` and `strata man`, generated from this same definition.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Round-robin downsampling archiver for metrics on Elasticsearch and OpenSearch"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// How log lines are written to stderr; overrides [log] format in the configuration.
    #[arg(long, global = true, value_enum, env = "STRATA_LOG_FORMAT")]
    pub log_format: Option<LogFormatArg>,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum LogFormatArg {
    /// One readable line per event (the default).
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

impl From<LogFormatArg> for strata::config::LogFormat {
    fn from(arg: LogFormatArg) -> Self {
        match arg {
            LogFormatArg::Text => Self::Text,
            LogFormatArg::Json => Self::Json,
        }
    }
}

impl Command {
    /// The configuration file the subcommand reads, if it reads one.
    pub fn config_path(&self) -> Option<&std::path::Path> {
        match self {
            Command::Serve { config, .. }
            | Command::Check { config, .. }
            | Command::Replay { config, .. } => Some(config),
            Command::Plan { common, .. }
            | Command::Maintain { common, .. }
            | Command::Rotate { common, .. }
            | Command::Status { common }
            | Command::Purge { common, .. } => Some(&common.config),
            Command::Task { command } => match command {
                TaskCommand::List { config, .. }
                | TaskCommand::Show { config, .. }
                | TaskCommand::Test { config, .. } => Some(config),
                TaskCommand::Enable { .. } | TaskCommand::Disable { .. } => None,
            },
            Command::Completions { .. }
            | Command::Man
            | Command::MigrateConfig { .. }
            | Command::Record { .. } => None,
        }
    }
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the service: HTTP ingest, consolidation, bulk writes to the node.
    Serve {
        /// The configuration file.
        #[arg(long, short, default_value = "archives.toml")]
        config: PathBuf,
        /// The node to write to, overriding [node] url.
        #[arg(long, env = "STRATA_NODE_URL")]
        node_url: Option<String>,
        /// The HTTP address to listen on, overriding [http] listen (port 0 picks a free port).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Validate the configuration and print every problem found.
    Check {
        #[arg(long, short, default_value = "archives.toml")]
        config: PathBuf,
        /// Print only the configured node URL (empty when none), for scripts.
        #[arg(long)]
        print_node_url: bool,
    },
    /// Compute the maintenance plan (indices to create and delete, aliases) without changing
    /// anything; offline with --indices, otherwise from the node.
    Plan {
        #[command(flatten)]
        common: MaintainArgs,
        /// One index name per line: plan against these instead of the node.
        #[arg(long)]
        indices: Option<PathBuf>,
        /// Lines `alias index [filter-json]`: the existing aliases (with --indices; absent = none).
        #[arg(long, requires = "indices")]
        aliases: Option<PathBuf>,
    },
    /// One maintenance pass: create the coming indices, update aliases, delete expired indices.
    Maintain {
        #[command(flatten)]
        common: MaintainArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// The alias half of a pass: create the coming indices and update aliases.
    Rotate {
        #[command(flatten)]
        common: MaintainArgs,
        #[command(flatten)]
        dry: DryRunArgs,
    },
    /// Per archive: indices, documents, size on disk, oldest and newest bucket, the range it
    /// serves through the aliases; then how the aliases on the node differ from the plan.
    Status {
        #[command(flatten)]
        common: MaintainArgs,
    },
    /// The purge half of a pass: delete expired indices.
    Purge {
        #[command(flatten)]
        common: MaintainArgs,
        #[command(flatten)]
        change: ChangeArgs,
    },
    /// Consolidate NDJSON events from a file (or - for stdin) with their own timestamps as the
    /// clock and write the documents to the node, or print the _bulk body with --dry-run.
    Replay {
        #[arg(long, short, default_value = "archives.toml")]
        config: PathBuf,
        #[arg(long, env = "STRATA_NODE_URL")]
        node_url: Option<String>,
        /// Print the NDJSON _bulk body to stdout instead of sending it; touches no node.
        #[arg(long)]
        dry_run: bool,
        /// Skip bad lines (counted, the first three named) instead of refusing the whole file.
        #[arg(long)]
        partial: bool,
        /// How progress shows on stderr: a bar on a terminal and a line every 10 s otherwise
        /// (auto), or always one of them, or none.
        #[arg(long, value_enum, default_value = "auto")]
        progress: ProgressArg,
        /// The events, one JSON object per line; - reads stdin (spooled to a temporary file,
        /// since the input is read twice).
        events: PathBuf,
    },
    /// Tasks: list and show them, test one offline on recorded events, enable or disable one
    /// on a running service.
    Task {
        #[command(subcommand)]
        command: TaskCommand,
    },
    /// Print the events a running service receives from now on, one JSON line each (the
    /// ingest format), for `strata task test`; stops after --count events or --for.
    Record {
        #[command(flatten)]
        service: ServiceArgs,
        /// Only these names (comma-separated, globs allowed); all by default.
        #[arg(long)]
        names: Option<String>,
        /// Stop after this many events.
        #[arg(long)]
        count: Option<u64>,
        /// Stop after this long (30s, 10m); at least one of --count and --for is needed.
        #[arg(long = "for", value_name = "DURATION")]
        lasting: Option<String>,
    },
    /// Print the archives.toml equivalent of a samplerr Riemann configuration (its archives,
    /// index and alias prefixes), with a comment for anything it could not translate.
    MigrateConfig {
        /// The Riemann configuration that sets samplerr up.
        samplerr_config: PathBuf,
    },
    /// Print a shell completion script: `strata completions bash > /etc/bash_completion.d/strata`.
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff): `strata man | man -l -`.
    Man,
}

#[derive(Subcommand)]
pub enum TaskCommand {
    /// The tasks: name, kind, state, names taken, handlers, file; of a running service with
    /// --url (GET /v1/tasks: its current state), else of the configuration.
    List {
        #[arg(long, short, default_value = "archives.toml")]
        config: PathBuf,
        #[command(flatten)]
        service: OptionalService,
    },
    /// One task: its settings and its script (of a running service with --url).
    Show {
        #[arg(long, short, default_value = "archives.toml")]
        config: PathBuf,
        #[command(flatten)]
        service: OptionalService,
        name: String,
    },
    /// Run a task offline and print what it would alert and emit as NDJSON: a stream task over
    /// NDJSON events (from `strata record` or written by hand), the clock driven by the events'
    /// times; a batch task over its scheduled runs in --from..--to, reading the node.
    Test {
        #[arg(long, short, default_value = "archives.toml")]
        config: PathBuf,
        name: String,
        /// The events, one JSON object per line (- for stdin); stream tasks.
        #[arg(long, required_unless_present = "from")]
        events: Option<PathBuf>,
        /// The first instant (RFC 3339) whose scheduled runs are replayed; batch tasks.
        #[arg(long, value_parser = parse_instant, requires = "to")]
        from: Option<i64>,
        /// The last instant (RFC 3339) whose scheduled runs are replayed; batch tasks.
        #[arg(long, value_parser = parse_instant, requires = "from")]
        to: Option<i64>,
        /// The node to read, overriding [node] url; batch tasks.
        #[arg(long, env = "STRATA_NODE_URL")]
        node_url: Option<String>,
    },
    /// Enable a task on a running service (until its files are read again).
    Enable {
        #[command(flatten)]
        service: ServiceArgs,
        name: String,
    },
    /// Disable a task on a running service (until its files are read again).
    Disable {
        #[command(flatten)]
        service: ServiceArgs,
        name: String,
    },
}

/// A running service to ask instead of the configuration file.
#[derive(clap::Args)]
pub struct OptionalService {
    /// The service's HTTP address.
    #[arg(long)]
    pub url: Option<String>,
    /// The read token.
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// How to reach a running service's HTTP API.
#[derive(clap::Args)]
pub struct ServiceArgs {
    /// The service's HTTP address.
    #[arg(long, default_value = "http://127.0.0.1:8080", env = "STRATA_URL")]
    pub url: String,
    /// The bearer token (the read token for record, the write token for enable and disable).
    #[arg(long, env = "STRATA_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

#[derive(clap::Args)]
pub struct MaintainArgs {
    #[arg(long, short, default_value = "archives.toml")]
    pub config: PathBuf,
    #[arg(long, env = "STRATA_NODE_URL")]
    pub node_url: Option<String>,
    /// Plan as of this instant (RFC 3339, any offset) instead of the clock.
    #[arg(long, value_parser = parse_instant)]
    pub now: Option<i64>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// Rotating deletes nothing, so it has no `--force`.
#[derive(clap::Args)]
pub struct DryRunArgs {
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

impl DryRunArgs {
    pub fn into_change(self) -> ChangeArgs {
        ChangeArgs {
            dry_run: self.dry_run,
            force: false,
        }
    }
}

#[derive(clap::Args)]
pub struct ChangeArgs {
    /// Print what would be done; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Go ahead with a purge the safety checks refuse.
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Lines,
    Off,
}

impl ProgressArg {
    /// `Auto` as a bar when stderr is a terminal, else as lines.
    pub fn mode(self) -> strata::replay::ProgressMode {
        use std::io::IsTerminal;
        use strata::replay::ProgressMode;
        match self {
            ProgressArg::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
            ProgressArg::Auto | ProgressArg::Lines => ProgressMode::Lines,
            ProgressArg::Bar => ProgressMode::Bar,
            ProgressArg::Off => ProgressMode::Off,
        }
    }
}

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

/// Which halves of a maintenance pass to carry out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Halves {
    /// Create the coming indices, update aliases, delete expired indices.
    Both,
    /// Create the coming indices and update aliases only.
    Rotate,
    /// Delete expired indices only.
    Purge,
}

impl Halves {
    pub fn rotate(self) -> bool {
        matches!(self, Halves::Both | Halves::Rotate)
    }

    pub fn purge(self) -> bool {
        matches!(self, Halves::Both | Halves::Purge)
    }
}

/// An RFC 3339 instant as epoch milliseconds; clap reports a bad one as a usage error (exit 2).
fn parse_instant(text: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(text)
        .map(|t| t.timestamp_millis())
        .map_err(|e| format!("not an RFC 3339 time ({e})"))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn each_maintenance_subcommand_does_its_halves() {
        assert!(Halves::Both.rotate() && Halves::Both.purge());
        assert!(Halves::Rotate.rotate() && !Halves::Rotate.purge());
        assert!(!Halves::Purge.rotate() && Halves::Purge.purge());
        let Command::Purge { change, .. } = Cli::parse_from([
            "strata",
            "purge",
            "--dry-run",
            "--now",
            "2026-11-30T00:00:00Z",
        ])
        .command
        else {
            panic!("purge parses as purge")
        };
        assert!(change.dry_run && !change.force);
    }

    #[test]
    fn rotate_offers_no_force() {
        assert!(Cli::try_parse_from(["strata", "rotate", "--force"]).is_err());
        assert!(Cli::try_parse_from(["strata", "rotate", "--dry-run"]).is_ok());
        assert!(Cli::try_parse_from(["strata", "purge", "--force"]).is_ok());
    }

    #[test]
    fn a_malformed_now_is_a_usage_error() {
        let err = Cli::try_parse_from(["strata", "plan", "--now", "yesterday"])
            .err()
            .expect("refused");
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("not an RFC 3339 time"), "{err}");
    }
}
