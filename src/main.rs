//! The `strata` binary: parses the command line ([`cli`]), runs the subcommand, installs the
//! signal handlers, and turns errors into messages and exit codes. The only place that uses
//! `anyhow`.

mod cli;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;

use cli::{ChangeArgs, Cli, Command, Format, Halves, MaintainArgs, ServiceArgs, TaskCommand};

use strata::clock::SystemClock;
use strata::config::{Config, LogFormat};
use strata::pipeline::{serve, ServeOptions};
use strata::replay;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(log_format(&cli));
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `--log-format`, else the configuration's `[log] format` (when the file reads), else text.
fn log_format(cli: &Cli) -> LogFormat {
    match cli.log_format {
        Some(arg) => arg.into(),
        None => cli
            .command
            .config_path()
            .and_then(|path| Config::load(path).ok())
            .map(|c| c.log.format)
            .unwrap_or_default(),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("STRATA_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    use std::io::IsTerminal;
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => logs.json().flatten_event(true).init(),
        LogFormat::Text => logs.with_ansi(std::io::stderr().is_terminal()).init(),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut command = Cli::command();
            clap_complete::generate(shell, &mut command, "strata", &mut std::io::stdout());
            Ok(())
        }
        Command::MigrateConfig { samplerr_config } => {
            let text = std::fs::read_to_string(&samplerr_config)
                .with_context(|| format!("cannot read {}", samplerr_config.display()))?;
            print!(
                "{}",
                strata::config::migrate::samplerr_to_toml(&text)
                    .with_context(|| samplerr_config.display().to_string())?
            );
            Ok(())
        }
        Command::Man => {
            use clap::CommandFactory;
            clap_mangen::Man::new(Cli::command())
                .render(&mut std::io::stdout())
                .context("cannot write the manual page")?;
            Ok(())
        }
        Command::Task { command } => task(command),
        Command::Record {
            service,
            names,
            count,
            lasting,
        } => {
            let mut query = Vec::new();
            if let Some(n) = names {
                query.push(("names", n));
            }
            if let Some(c) = count {
                query.push(("count", c.to_string()));
            }
            if let Some(f) = lasting {
                query.push(("for", f));
            }
            runtime()?.block_on(async {
                let mut response =
                    call(&service, reqwest::Method::GET, "/v1/record", &query).await?;
                let stdout = std::io::stdout();
                let mut out = stdout.lock();
                while let Some(chunk) = response.chunk().await.context("the recording was cut")? {
                    out.write_all(&chunk)?;
                }
                out.flush()?;
                Ok(())
            })
        }
        Command::Check {
            config,
            print_node_url,
        } => {
            let cfg = Config::load(&config)?;
            cfg.preflight()
                .with_context(|| format!("{}", config.display()))?;
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
            raise_descriptor_limit();
            runtime()?.block_on(async {
                let mut signal = Box::pin(shutdown_signal()?);
                let starting = serve(
                    cfg,
                    ServeOptions {
                        node_url,
                        listen,
                        config_path: Some(config.clone()),
                    },
                    Arc::new(SystemClock),
                );
                let running = tokio::select! {
                    running = starting => running?,
                    _ = &mut signal => {
                        tracing::info!("signal received during start-up: nothing to write; bye");
                        return Ok(());
                    }
                };
                let shutdown = running.shutdown.clone();
                tokio::spawn(async move {
                    signal.await;
                    tracing::info!("signal received: shutting down");
                    shutdown.cancel();
                });
                reload_tasks_on_sighup(running.tasks.clone())?;
                running.wait().await?;
                Ok(())
            })
        }
        Command::Plan {
            common,
            indices,
            aliases,
        } => {
            let cfg = Config::load(&common.config)?;
            let now = instant(&common.now)?;
            let plan = match indices {
                Some(path) => {
                    let names = read_lines(&path)?;
                    let existing = match aliases {
                        Some(path) => {
                            strata::maintain::plan::parse_alias_lines(&read_lines(&path)?)?
                        }
                        None => Vec::new(),
                    };
                    strata::maintain::plan::plan(&cfg, now, &names, &existing)
                }
                None => {
                    let backend = connect(&cfg, common.node_url.clone())?;
                    runtime()?.block_on(strata::maintain::run::read_plan(&backend, &cfg, now))?
                }
            };
            print_plan(&plan, common.format, Halves::Both)
        }
        Command::Maintain { common, change } => maintain(common, change, Halves::Both),
        Command::Status { common } => {
            let cfg = Config::load(&common.config)?;
            let now = instant(&common.now)?;
            let backend = connect(&cfg, common.node_url.clone())?;
            let status =
                runtime()?.block_on(strata::maintain::status::read_status(&backend, &cfg, now))?;
            match common.format {
                Format::Json => println!("{}", serde_json::to_string_pretty(&status)?),
                Format::Text => print!("{}", strata::maintain::status::render_text(&status)),
            }
            Ok(())
        }
        Command::Rotate { common, dry } => maintain(common, dry.into_change(), Halves::Rotate),
        Command::Purge { common, change } => maintain(common, change, Halves::Purge),
        Command::Replay {
            config,
            node_url,
            dry_run,
            partial,
            progress,
            events,
        } => {
            let cfg = Config::load(&config)?;
            let limits = replay::limits_now(&cfg, &SystemClock);
            let spool = (events.as_os_str() == "-").then(Spool::stdin).transpose()?;
            let path = spool.as_ref().map_or(events.clone(), |s| s.0.clone());
            std::fs::File::open(&path)
                .with_context(|| format!("cannot open {}", events.display()))?;
            let source: Arc<dyn replay::Source + Send + Sync> = Arc::new(path);
            let options = replay::ReplayOptions {
                partial,
                progress: progress.mode(),
                ..Default::default()
            };
            let summary = if dry_run {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                let summary = replay::dry_run(&cfg, source.as_ref(), &limits, &options, &mut out)?;
                out.flush()?;
                summary
            } else {
                runtime()?.block_on(async {
                    let signal = shutdown_signal()?;
                    let stop = options.shutdown.clone();
                    tokio::spawn(async move {
                        signal.await;
                        tracing::info!("signal received: stopping the replay");
                        stop.cancel();
                    });
                    anyhow::Ok(replay::to_node(&cfg, node_url, source, limits, options).await?)
                })?
            };
            eprintln!(
                "replayed {} events: {} documents; recorded {}, merged {}, expired {} (summed over archives)",
                summary.events, summary.documents, summary.recorded, summary.merged, summary.expired
            );
            if summary.skipped.lines > 0 {
                eprintln!(
                    "skipped {} bad line(s) (--partial): {}",
                    summary.skipped.lines,
                    summary.skipped.first.join("; ")
                );
            }
            Ok(())
        }
    }
}

/// Standard input copied to a temporary file (a replay reads its input twice), removed when
/// dropped.
struct Spool(std::path::PathBuf);

impl Spool {
    fn stdin() -> anyhow::Result<Self> {
        let path =
            std::env::temp_dir().join(format!("strata-replay-{}.ndjson", std::process::id()));
        let spool = Spool(path);
        let mut file = std::fs::File::create(&spool.0)
            .with_context(|| format!("cannot create {}", spool.0.display()))?;
        std::io::copy(&mut std::io::stdin().lock(), &mut file)
            .context("cannot read standard input")?;
        Ok(spool)
    }
}

impl Drop for Spool {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Raises the soft limit on open files to the hard one: each connection is a descriptor, and
/// at the usual soft limit of 1 024, idle HTTP connections made accept fail and `/health` hang.
fn raise_descriptor_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::info!(limit, "open files limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open files limit"),
    }
}

fn maintain(common: MaintainArgs, change: ChangeArgs, halves: Halves) -> anyhow::Result<()> {
    use strata::clock::Clock;
    let cfg = Config::load(&common.config)?;
    let now = instant(&common.now)?;
    let backend = connect(&cfg, common.node_url.clone())?;
    let options = strata::maintain::run::PassOptions {
        rotate: halves.rotate(),
        purge: halves.purge(),
        dry_run: change.dry_run,
        force: change.force,
    };
    let plan = runtime()?.block_on(strata::maintain::run::run_pass(
        &backend,
        &cfg,
        now,
        SystemClock.now(),
        options,
    ))?;
    print_plan(&plan, common.format, halves)
}

fn connect(
    cfg: &Config,
    url: Option<String>,
) -> anyhow::Result<strata::persist::backend::HttpBackend> {
    let url = cfg.node.url_or(url)?;
    Ok(strata::persist::backend::HttpBackend::connect(
        &url, &cfg.node,
    )?)
}

fn instant(now: &Option<i64>) -> anyhow::Result<i64> {
    use strata::clock::Clock;
    Ok(now.unwrap_or_else(|| SystemClock.now()))
}

fn read_lines(path: &std::path::Path) -> anyhow::Result<Vec<String>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

/// Prints `plan`; as text, only the sections of the halves that ran.
fn print_plan(
    plan: &strata::maintain::plan::Plan,
    format: Format,
    halves: Halves,
) -> anyhow::Result<()> {
    use strata::maintain::plan::{render_text, Sections};
    match format {
        Format::Json => println!("{}", serde_json::to_string_pretty(plan)?),
        Format::Text => print!(
            "{}",
            render_text(
                plan,
                Sections {
                    rotate: halves.rotate(),
                    purge: halves.purge(),
                }
            )
        ),
    }
    Ok(())
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
        "  indices: {} (template '{}'{})",
        cfg.index.naming.wildcard(),
        cfg.index.template,
        match cfg.index.layout {
            strata::config::DocumentLayout::Strata => "",
            strata::config::DocumentLayout::Samplerr => ", samplerr's documents",
        }
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
    for t in &cfg.tasks.list {
        let schedule = match &t.batch {
            Some(b) => format!(
                ", every run reads {} from archive {}",
                humantime::format_duration(b.range),
                cfg.archives[b.archive].name
            ),
            None => String::new(),
        };
        println!(
            "  task {}: {}{}{}, {} handler(s)",
            t.name,
            t.kind().as_str(),
            if t.enabled { "" } else { " (disabled)" },
            schedule,
            t.handlers.len()
        );
    }
}

#[cfg(unix)]
/// SIGHUP reads the configuration file again and takes its tasks and handlers; a file with a
/// problem is logged and the running tasks stay as they were.
fn reload_tasks_on_sighup(tasks: strata::pipeline::TaskControl) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
    tokio::spawn(async move {
        while hup.recv().await.is_some() {
            match tasks.reload().await {
                Ok(count) => tracing::info!(tasks = count, "SIGHUP: tasks read again"),
                Err(why) => {
                    tracing::error!(error = %why, "SIGHUP: tasks not read again; the running tasks stay as they were")
                }
            }
        }
    });
    Ok(())
}

/// Registers SIGTERM and SIGINT handlers now (so a signal that comes early is not fatal) and
/// returns a future that completes on the first of them.
#[cfg(unix)]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot handle SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot handle SIGINT")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

#[cfg(not(unix))]
fn reload_tasks_on_sighup(_: strata::pipeline::TaskControl) -> anyhow::Result<()> {
    Ok(())
}

#[cfg(not(unix))]
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// Sends a request to a running service's API; an answer that is not 2xx is an error naming
/// its status and body.
async fn call(
    service: &ServiceArgs,
    method: reqwest::Method,
    path: &str,
    query: &[(&str, String)],
) -> anyhow::Result<reqwest::Response> {
    let url = format!("{}{path}", service.url.trim_end_matches('/'));
    let mut request = reqwest::Client::new().request(method, &url).query(query);
    if let Some(token) = &service.token {
        request = request.bearer_auth(token);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("cannot reach {url}"))?;
    if !response.status().is_success() {
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        anyhow::bail!("{url} answered {status}: {}", body.trim());
    }
    Ok(response)
}

fn task(command: TaskCommand) -> anyhow::Result<()> {
    match command {
        TaskCommand::List { config, service } => {
            let (tasks, from) = described_tasks(&config, service)?;
            if tasks.is_empty() {
                println!("no tasks in {from}");
            }
            for t in &tasks {
                let list = |v: &serde_json::Value| {
                    let items: Vec<&str> = v
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|x| x.as_str())
                        .collect();
                    if items.is_empty() {
                        "-".to_string()
                    } else {
                        items.join(",")
                    }
                };
                println!(
                    "{}\t{}\t{}\tnames {}\thandlers {}\t{}",
                    t["name"].as_str().unwrap_or(""),
                    t["kind"].as_str().unwrap_or(""),
                    if t["enabled"] == true {
                        "enabled"
                    } else {
                        "disabled"
                    },
                    list(&t["names"]),
                    list(&t["handlers"]),
                    t["source"].as_str().unwrap_or("")
                );
            }
            Ok(())
        }
        TaskCommand::Show {
            config,
            service,
            name,
        } => {
            let (tasks, from) = described_tasks(&config, service)?;
            let t = tasks
                .iter()
                .find(|t| t["name"] == name.as_str())
                .with_context(|| format!("no task named {name:?} in {from}"))?;
            let mut shown = t.clone();
            let script = shown["script"]
                .as_str()
                .unwrap_or("")
                .trim_end()
                .to_string();
            if let Some(fields) = shown.as_object_mut() {
                fields.remove("script");
                for (key, value) in fields.iter().filter(|(_, v)| !v.is_null()) {
                    println!(
                        "{key}: {}",
                        value
                            .as_str()
                            .map_or_else(|| value.to_string(), String::from)
                    );
                }
            }
            println!("script:\n{script}");
            Ok(())
        }
        TaskCommand::Test {
            config,
            name,
            events,
            from,
            to,
            node_url,
        } => {
            let cfg = Config::load(&config)?;
            let t = cfg
                .tasks
                .task(&name)
                .with_context(|| format!("no task named {name:?} in {}", config.display()))?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let mut print = |line: serde_json::Value| {
                let _ = writeln!(out, "{line}");
            };
            let summary = match (t.kind(), events, from.zip(to)) {
                (strata::script::SourceKind::Stream, Some(events), _) => {
                    test_stream_task(&cfg, t, &events, &mut print)?
                }
                (strata::script::SourceKind::Batch, _, Some(range)) => {
                    let backend = connect(&cfg, node_url)?;
                    let mut summary = strata::tasks::offline::TestSummary::default();
                    let runs = runtime()?.block_on(strata::tasks::batch::replay_runs(
                        &backend,
                        &cfg,
                        t,
                        range,
                        |output| strata::tasks::offline::print(output, &mut summary, &mut print),
                    ))?;
                    summary.read = runs;
                    summary
                }
                (strata::script::SourceKind::Stream, None, _) => {
                    anyhow::bail!("{name} is a stream task: give --events FILE")
                }
                (strata::script::SourceKind::Batch, _, None) => {
                    anyhow::bail!("{name} is a batch task: give --from and --to")
                }
            };
            out.flush()?;
            match t.kind() {
                strata::script::SourceKind::Stream => eprintln!(
                    "{name}: {} events read, {} taken, {} late; {} alerts, {} emitted",
                    summary.read, summary.taken, summary.late, summary.alerts, summary.emitted
                ),
                strata::script::SourceKind::Batch => eprintln!(
                    "{name}: {} runs; {} alerts, {} emitted",
                    summary.read, summary.alerts, summary.emitted
                ),
            }
            Ok(())
        }
        TaskCommand::Enable { service, name } => switch_task(&service, &name, "enable"),
        TaskCommand::Disable { service, name } => switch_task(&service, &name, "disable"),
    }
}

/// The tasks as described by a running service (with `--url`) or by the configuration file,
/// and where they came from.
fn described_tasks(
    config: &std::path::Path,
    service: cli::OptionalService,
) -> anyhow::Result<(Vec<serde_json::Value>, String)> {
    match service.url {
        Some(url) => {
            let service = ServiceArgs {
                url: url.clone(),
                token: service.token,
            };
            let answer: serde_json::Value = runtime()?.block_on(async {
                anyhow::Ok(
                    call(&service, reqwest::Method::GET, "/v1/tasks", &[])
                        .await?
                        .json()
                        .await?,
                )
            })?;
            let tasks = answer["tasks"].as_array().cloned().unwrap_or_default();
            Ok((tasks, url))
        }
        None => {
            let cfg = Config::load(config)?;
            let tasks = cfg
                .tasks
                .list
                .iter()
                .map(|t| strata::tasks::control::describe(t, &cfg))
                .collect();
            Ok((tasks, config.display().to_string()))
        }
    }
}

/// A stream task over the events of `events` (- for stdin), its output to `print`.
fn test_stream_task(
    cfg: &Config,
    task: &strata::config::TaskConfig,
    events: &std::path::Path,
    print: &mut impl FnMut(serde_json::Value),
) -> anyhow::Result<strata::tasks::offline::TestSummary> {
    let limits = replay::limits_now(cfg, &SystemClock);
    let input: Box<dyn std::io::BufRead> = if events.as_os_str() == "-" {
        Box::new(std::io::stdin().lock())
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(events)
                .with_context(|| format!("cannot open {}", events.display()))?,
        ))
    };
    let mut run = strata::tasks::offline::TaskTest::new(task, &cfg.tasks);
    let mut meter = replay::progress::Meter::new("testing", None, replay::ProgressMode::Off);
    replay::for_each_event(
        input,
        &limits,
        &mut meter,
        |why| Err(why.into()),
        |event| {
            run.feed(&event, print);
            Ok(())
        },
    )
    .with_context(|| format!("{}", events.display()))?;
    Ok(run.finish(print))
}

fn switch_task(service: &ServiceArgs, name: &str, action: &str) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let path = format!("/v1/tasks/{name}/{action}");
        let answer: serde_json::Value = call(service, reqwest::Method::POST, &path, &[])
            .await?
            .json()
            .await?;
        println!("{name}: {}", answer["state"].as_str().unwrap_or(action));
        Ok(())
    })
}
