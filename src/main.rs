//! The `strata` command line: `serve`, `check`, `replay`. The only place that uses `anyhow`.

use std::io::{BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use strata::clock::SystemClock;
use strata::config::Config;
use strata::pipeline::{serve, ServeOptions};
use strata::replay;

#[derive(Parser)]
#[command(
    name = "strata",
    version,
    about = "Round-robin downsampling archiver for metrics on Elasticsearch and OpenSearch"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        /// The events, one JSON object per line; - reads stdin.
        events: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Check {
            config,
            print_node_url,
        } => {
            let cfg = Config::load(&config)?;
            if print_node_url {
                println!("{}", cfg.node.url.unwrap_or_default());
            } else {
                print_summary(&config, &cfg);
            }
            Ok(())
        }
        Command::Serve {
            config,
            node_url,
            listen,
        } => {
            let cfg = Config::load(&config)?;
            runtime()?.block_on(async {
                let running = serve(
                    cfg,
                    ServeOptions { node_url, listen },
                    Arc::new(SystemClock),
                )
                .await?;
                let shutdown = running.shutdown.clone();
                tokio::spawn(async move {
                    wait_for_signal().await;
                    tracing::info!("signal received: shutting down");
                    shutdown.cancel();
                });
                running.wait().await?;
                Ok(())
            })
        }
        Command::Replay {
            config,
            node_url,
            dry_run,
            events,
        } => {
            let cfg = Config::load(&config)?;
            let limits = replay::limits_now(&cfg, &SystemClock);
            let parsed = if events.as_os_str() == "-" {
                replay::read_events(std::io::stdin().lock(), &limits)?
            } else {
                let file = std::fs::File::open(&events)
                    .with_context(|| format!("cannot open {}", events.display()))?;
                replay::read_events(BufReader::new(file), &limits)?
            };
            let summary = if dry_run {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                let summary = replay::dry_run(&cfg, &parsed, &mut out)?;
                out.flush()?;
                summary
            } else {
                runtime()?.block_on(replay::to_node(&cfg, node_url, parsed))?
            };
            eprintln!(
                "replayed {} events: {} documents, {} late",
                summary.events, summary.documents, summary.late
            );
            Ok(())
        }
    }
}

fn print_summary(path: &std::path::Path, cfg: &Config) {
    println!("{}: ok", path.display());
    println!(
        "  node: {}",
        cfg.node
            .url
            .as_deref()
            .unwrap_or("(none: scripts/run provisions a local node)")
    );
    println!(
        "  indices: {} (template '{}')",
        cfg.index.naming.wildcard(),
        cfg.index.template
    );
    for a in &cfg.archives {
        println!(
            "  archive {}: step {}, retention {}, index per {}, lateness {}",
            a.name,
            humantime::format_duration(a.step),
            a.retention,
            a.index_period,
            humantime::format_duration(a.lateness)
        );
    }
    println!("  http: {}", cfg.http.listen);
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = tokio::signal::ctrl_c().await;
                    return;
                }
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = tokio::signal::ctrl_c().await;
}
