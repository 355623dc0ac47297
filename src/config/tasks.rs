//! Checks `[tasks]`, every `[[task]]` (of archives.toml and of the task files) and every
//! `[[handler]]`: scripts compiled (their errors at line and column), handlers known, batch
//! ranges kept by an archive, and no task fed by what it emits, directly or through others.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::calendar::{CalendarSpan, CalendarUnit};
use crate::config::problems::Problems;
use crate::config::raw::{RawHandler, RawTask, RawTaskFile, RawTasks};
use crate::config::types::*;
use crate::schedule::Schedule;
use crate::script::{compile, Glob, SourceKind};

const DEFAULT_GRACE: Duration = Duration::from_millis(500);
/// About 100 bytes an event: 6 MiB of events waiting for the tasks at most.
const DEFAULT_QUEUE_EVENTS: usize = 65_536;
const DEFAULT_MAX_GROUPS: usize = 10_000;
const DEFAULT_HANDLER_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_RETRIES: u32 = 3;
const DEFAULT_BACKOFF: Duration = Duration::from_secs(1);

/// The `[[task]]` tables of the `*.toml` files in `dir` (sorted by name), each with its file.
pub fn read_task_dir(dir: &Path) -> Result<Vec<(PathBuf, RawTask)>, (PathBuf, String)> {
    let entries = std::fs::read_dir(dir).map_err(|e| (dir.to_path_buf(), e.to_string()))?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    let mut tasks = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).map_err(|e| (file.clone(), e.to_string()))?;
        let parsed: RawTaskFile = toml::from_str(&text)
            .map_err(|e| (file.clone(), e.to_string().trim_end().to_string()))?;
        tasks.extend(parsed.task.into_iter().map(|t| (file.clone(), t)));
    }
    Ok(tasks)
}

pub(super) fn validate_tasks(
    raw: RawTasks,
    list: Vec<(PathBuf, RawTask)>,
    handlers: Vec<RawHandler>,
    archives: &[Archive],
    archive_indices: Option<&str>,
    problems: &mut Problems,
) -> TasksConfig {
    let handlers = validate_handlers(handlers, problems);
    let known: HashSet<&str> = handlers.iter().map(|h| h.name.as_str()).collect();
    let mut seen = HashSet::new();
    let mut tasks = Vec::new();
    for (source, task) in list {
        let field = |f: &str| format!("task.{}.{f}", task.name);
        if !seen.insert(task.name.clone()) {
            problems.add(
                field("name"),
                format!("{:?}", task.name),
                "is declared twice",
            );
            continue;
        }
        if task.name.is_empty() || task.name.contains([',', '=', '#', '/']) {
            problems.add(
                field("name"),
                format!("{:?}", task.name),
                "must be non-empty without , = # or /",
            );
        }
        if let Some(t) = validate_task(task, source, &known, archives, problems) {
            tasks.push(t);
        }
    }
    if refuse_cycles(&tasks, problems) {
        let grace = raw.grace.unwrap_or(DEFAULT_GRACE);
        set_fed_late(&mut tasks, grace);
    }
    let queue_events = raw.queue_events.unwrap_or(DEFAULT_QUEUE_EVENTS);
    if queue_events == 0 {
        problems.add("tasks.queue_events", 0, "must be at least 1");
    }
    let max_groups = raw.max_groups.unwrap_or(DEFAULT_MAX_GROUPS);
    if max_groups == 0 {
        problems.add("tasks.max_groups", 0, "must be at least 1");
    }
    let alerts_index = raw.alerts_index.unwrap_or_else(|| "strata_alerts".into());
    if let Err(why) = crate::naming::validate_index_name(&format!("{alerts_index}-state")) {
        problems.add(
            "tasks.alerts_index",
            format!("{alerts_index:?}"),
            why.to_string(),
        );
    } else if let Some(pattern) = archive_indices {
        // Alert documents under the archives' pattern would be read, aliased and purged as
        // archives.
        if Glob::new(pattern).matches(&format!("{alerts_index}-state")) {
            problems.add(
                "tasks.alerts_index",
                format!("{alerts_index:?}"),
                format!("its indices would match the archives' pattern {pattern:?}; choose a name outside it"),
            );
        }
    }
    let a_year = CalendarSpan {
        count: 1,
        unit: CalendarUnit::Year,
    };
    let alerts_retention = match raw
        .alerts_retention
        .as_deref()
        .map(str::parse::<CalendarSpan>)
    {
        None => a_year,
        Some(Ok(span)) => span,
        Some(Err(why)) => {
            problems.add(
                "tasks.alerts_retention",
                format!("{:?}", raw.alerts_retention.unwrap_or_default()),
                why.to_string(),
            );
            a_year
        }
    };
    TasksConfig {
        dir: raw.dir,
        alerts_retention,
        grace: raw.grace.unwrap_or(DEFAULT_GRACE),
        queue_events,
        max_groups,
        alerts_index,
        list: tasks,
        handlers,
    }
}

fn validate_task(
    task: RawTask,
    source: PathBuf,
    handlers: &HashSet<&str>,
    archives: &[Archive],
    problems: &mut Problems,
) -> Option<TaskConfig> {
    let field = |f: &str| format!("task.{}.{f}", task.name);
    let before = problems.0.len();
    let program = match compile(&task.script) {
        Ok(p) => Some(p),
        Err(e) => {
            problems.add(
                field("script"),
                format!("line {}, column {}", e.pos.line, e.pos.col),
                e.message,
            );
            None
        }
    };
    let kind = match task.kind.as_str() {
        "stream" => Some(SourceKind::Stream),
        "batch" => Some(SourceKind::Batch),
        other => {
            problems.add(
                field("kind"),
                format!("{other:?}"),
                "must be \"stream\" or \"batch\"",
            );
            None
        }
    };
    if let (Some(kind), Some(p)) = (kind, &program) {
        if kind != p.source {
            problems.add(
                field("kind"),
                format!("{:?}", task.kind),
                format!("but the script reads {}", p.source.as_str()),
            );
        }
    }
    if task.names.is_empty() {
        problems.add(
            field("names"),
            "[]",
            "name the series the task takes: names = [\"cpu_idle\"] (globs allowed)",
        );
    }
    for h in &task.handlers {
        if !handlers.contains(h.as_str()) {
            problems.add(
                field("handlers"),
                format!("{h:?}"),
                "no [[handler]] has this name",
            );
        }
    }
    let batch = match kind {
        Some(SourceKind::Batch) => validate_batch(&task, archives, problems),
        _ => {
            for (name, set) in [
                ("every", task.every.is_some()),
                ("cron", task.cron.is_some()),
                ("range", task.range.is_some()),
                ("archive", task.archive.is_some()),
            ] {
                if set {
                    problems.add(field(name), "set", "is for batch tasks only");
                }
            }
            None
        }
    };
    if problems.0.len() > before {
        return None;
    }
    Some(TaskConfig {
        select: TaskSelect {
            names: task.names.iter().map(|n| Glob::new(n)).collect(),
            host: task.host.as_deref().map(Glob::new),
            tags: task
                .tags
                .iter()
                .map(|(k, v)| (k.clone(), Glob::new(v)))
                .collect(),
        },
        program: Arc::new(program?),
        script: task.script,
        handlers: task.handlers,
        enabled: task.enabled.unwrap_or(true),
        batch,
        source,
        name: task.name,
        fed_late: Duration::ZERO,
    })
}

fn validate_batch(
    task: &RawTask,
    archives: &[Archive],
    problems: &mut Problems,
) -> Option<BatchConfig> {
    let field = |f: &str| format!("task.{}.{f}", task.name);
    let schedule = match (&task.every, &task.cron) {
        (Some(every), None) if every.as_millis() >= 1_000 => Some(TaskSchedule::Every(*every)),
        (Some(every), None) => {
            problems.add(
                field("every"),
                humantime::format_duration(*every),
                "must be at least 1s",
            );
            None
        }
        (None, Some(cron)) => match Schedule::parse(cron) {
            Ok(s) => Some(TaskSchedule::Cron(Box::new(s))),
            Err(e) => {
                problems.add(field("cron"), format!("{cron:?}"), e.to_string());
                None
            }
        },
        (Some(_), Some(_)) => {
            problems.add(field("cron"), "set", "give either every or cron, not both");
            None
        }
        (None, None) => {
            problems.add(
                field("every"),
                "unset",
                "a batch task needs every = \"1m\" or cron = \"*/5 * * * *\"",
            );
            None
        }
    };
    let Some(range) = task.range else {
        problems.add(
            field("range"),
            "unset",
            "a batch task reads [now - range, now): range = \"1h\"",
        );
        return None;
    };
    let archive = match &task.archive {
        Some(name) => match archives.iter().position(|a| &a.name == name) {
            Some(i) => Some(i),
            None => {
                problems.add(
                    field("archive"),
                    format!("{name:?}"),
                    format!("no such archive; the archives are {}", names_of(archives)),
                );
                None
            }
        },
        None => archives.iter().position(|a| keeps(a, range)),
    };
    if !archives.iter().any(|a| keeps(a, range)) {
        problems.add(
            field("range"),
            humantime::format_duration(range),
            "no archive keeps that long: lower it or lengthen an archive's retention",
        );
        return None;
    }
    let a = &archives[archive?];
    if range < a.step {
        problems.add(
            field("range"),
            humantime::format_duration(range),
            format!(
                "is shorter than archive {:?}'s step ({})",
                a.name,
                humantime::format_duration(a.step)
            ),
        );
        return None;
    }
    Some(BatchConfig {
        schedule: schedule?,
        range,
        archive: archive?,
    })
}

fn keeps(a: &Archive, range: Duration) -> bool {
    a.retention.min_len_ms() >= range.as_millis() as i64
}

fn names_of(archives: &[Archive]) -> String {
    archives
        .iter()
        .map(|a| format!("{:?}", a.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn validate_handlers(raw: Vec<RawHandler>, problems: &mut Problems) -> Vec<HandlerConfig> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for h in raw {
        let field = |f: &str| format!("handler.{}.{f}", h.name);
        if !seen.insert(h.name.clone()) {
            problems.add(field("name"), format!("{:?}", h.name), "is declared twice");
            continue;
        }
        let timeout = h.timeout.unwrap_or(DEFAULT_HANDLER_TIMEOUT);
        let unused = |problems: &mut Problems, names: &[(&str, bool)]| {
            for (name, set) in names {
                if *set {
                    problems.add(
                        field(name),
                        "set",
                        format!("is not used by a handler of kind {:?}", h.kind),
                    );
                }
            }
        };
        let kind = match h.kind.as_str() {
            "http" => {
                unused(
                    problems,
                    &[("path", h.path.is_some()), ("command", h.command.is_some())],
                );
                match &h.url {
                    Some(url) if url.starts_with("http://") || url.starts_with("https://") => {
                        Some(HandlerKind::Http {
                            url: url.clone(),
                            headers: h.headers.clone().into_iter().collect(),
                            timeout,
                            retries: h.retries.unwrap_or(DEFAULT_RETRIES),
                            backoff: h.backoff.unwrap_or(DEFAULT_BACKOFF),
                        })
                    }
                    Some(url) => {
                        problems.add(
                            field("url"),
                            format!("{url:?}"),
                            "must start with http:// or https://",
                        );
                        None
                    }
                    None => {
                        problems.add(
                            field("url"),
                            "unset",
                            "an http handler needs the url to POST alerts to",
                        );
                        None
                    }
                }
            }
            "log" => {
                unused(
                    problems,
                    &[
                        ("url", h.url.is_some()),
                        ("command", h.command.is_some()),
                        ("retries", h.retries.is_some()),
                    ],
                );
                match &h.path {
                    Some(path) => Some(HandlerKind::Log { path: path.clone() }),
                    None => {
                        problems.add(
                            field("path"),
                            "unset",
                            "a log handler needs the path of the file to append to",
                        );
                        None
                    }
                }
            }
            "exec" => {
                unused(
                    problems,
                    &[
                        ("url", h.url.is_some()),
                        ("path", h.path.is_some()),
                        ("retries", h.retries.is_some()),
                    ],
                );
                match &h.command {
                    Some(command) if !command.is_empty() => Some(HandlerKind::Exec {
                        command: command.clone(),
                        timeout,
                    }),
                    _ => {
                        problems.add(
                            field("command"),
                            "unset",
                            "an exec handler needs command = [\"program\", \"arg\"...]",
                        );
                        None
                    }
                }
            }
            other => {
                problems.add(
                    field("kind"),
                    format!("{other:?}"),
                    "must be \"http\", \"log\" or \"exec\"",
                );
                None
            }
        };
        if let Some(kind) = kind {
            out.push(HandlerConfig { name: h.name, kind });
        }
    }
    out
}

/// A task whose series include what it emits, itself or through other tasks, would feed
/// itself for ever.
/// Whether there was none.
fn refuse_cycles(tasks: &[TaskConfig], problems: &mut Problems) -> bool {
    let feeds: BTreeMap<&str, Vec<&str>> = tasks
        .iter()
        .map(|from| (from.name.as_str(), fed_by(from, tasks)))
        .collect();
    let mut reported = HashSet::new();
    let before = problems.0.len();
    for start in feeds.keys() {
        if let Some(cycle) = cycle_from(start, &feeds) {
            let mut key = cycle.clone();
            key.sort();
            key.dedup();
            if reported.insert(key) {
                problems.add(
                    format!("task.{start}.script"),
                    cycle.join(" → "),
                    "tasks feed each other in a cycle: what emit writes must not reach the task again",
                );
            }
        }
    }
    problems.0.len() == before
}

/// The tasks `task` feeds: those whose names take a name it emits.
fn fed_by<'a>(task: &TaskConfig, tasks: &'a [TaskConfig]) -> Vec<&'a str> {
    tasks
        .iter()
        .filter(|to| {
            task.program
                .emitted_names()
                .any(|name| to.select.names.iter().any(|g| g.matches(name)))
        })
        .map(|t| t.name.as_str())
        .collect()
}

/// Sets each task's `fed_late`: the most, over the tasks feeding it, of their own `fed_late`
/// plus their longest window and the grace (when their point is emitted, relative to its time).
/// The tasks form no cycle (checked before), so repeating over the list settles.
fn set_fed_late(tasks: &mut [TaskConfig], grace: Duration) {
    let longest = |t: &TaskConfig| {
        let ms = t
            .program
            .reductions
            .iter()
            .filter_map(|r| r.window)
            .map(|w| w.period_ms)
            .max()
            .unwrap_or(0);
        Duration::from_millis(ms as u64)
    };
    for _ in 0..tasks.len() {
        let mut changed = false;
        for i in 0..tasks.len() {
            let late = tasks[i].fed_late + longest(&tasks[i]) + grace;
            for name in fed_by(&tasks[i], tasks)
                .into_iter()
                .map(String::from)
                .collect::<Vec<_>>()
            {
                if let Some(to) = tasks.iter_mut().find(|t| t.name == name) {
                    if to.fed_late < late {
                        to.fed_late = late;
                        changed = true;
                    }
                }
            }
        }
        if !changed {
            break;
        }
    }
}

/// A path from `start` back to it, if any.
fn cycle_from<'a>(start: &'a str, feeds: &BTreeMap<&'a str, Vec<&'a str>>) -> Option<Vec<&'a str>> {
    let mut stack = vec![(start, vec![start])];
    let mut visited: HashMap<&str, ()> = HashMap::new();
    while let Some((node, path)) = stack.pop() {
        for &next in feeds.get(node).into_iter().flatten() {
            if next == start {
                let mut p = path.clone();
                p.push(start);
                return Some(p);
            }
            if visited.insert(next, ()).is_none() {
                let mut p = path.clone();
                p.push(next);
                stack.push((next, p));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError, Problem};
    use std::path::Path;

    const BASE: &str = r#"
        [node]
        url = "http://127.0.0.1:9200"
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
        [[handler]]
        name = "ops"
        kind = "http"
        url = "http://127.0.0.1:1/hook"
    "#;

    fn problems(extra: &str) -> Vec<Problem> {
        match Config::from_toml(&format!("{BASE}{extra}"), Path::new("t.toml")) {
            Err(ConfigError::Invalid { problems, .. }) => problems,
            other => panic!("expected validation problems, got {other:?}"),
        }
    }

    fn fields(problems: &[Problem]) -> Vec<String> {
        problems.iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn a_good_stream_and_batch_task_validate() {
        let text = format!(
            "{BASE}{}",
            r#"
            [[task]]
            name = "cpu_low"
            kind = "stream"
            names = ["cpu_idle"]
            handlers = ["ops"]
            script = "stream | window(period: 10s, every: 5s) | groupby(host) | mean | alert(crit: < 30)"
            [[task]]
            name = "hourly"
            kind = "batch"
            names = ["cpu_*"]
            every = "1m"
            range = "1h"
            archive = "10m"
            script = "batch | mean | alert(crit: < 30, crit_reset: > 40)"
            "#
        );
        let config = Config::from_toml(&text, Path::new("/etc/strata/archives.toml")).unwrap();
        let tasks = &config.tasks;
        assert_eq!(tasks.list.len(), 2);
        assert_eq!(tasks.list[0].source, Path::new("/etc/strata/archives.toml"));
        assert_eq!(tasks.list[1].batch.as_ref().map(|b| b.archive), Some(1));
        assert_eq!(tasks.grace, std::time::Duration::from_millis(500));
    }

    #[test]
    fn every_mistake_in_tasks_and_handlers_is_named() {
        let got = fields(&problems(
            r#"
            [[task]]
            name = "a"
            kind = "stream"
            names = ["x"]
            handlers = ["pager"]
            script = """
            stream
              | window(10s)
              | mean
              | alert(crit: 30)"""
            [[task]]
            name = "b"
            kind = "batch"
            names = ["x"]
            every = "1m"
            range = "1 year"
            script = "batch | mean | emit(y)"
            [[task]]
            name = "c"
            kind = "stream"
            names = []
            range = "1h"
            script = "batch | mean | emit(y)"
            [[handler]]
            name = "h"
            kind = "exec"
            [tasks]
            alerts_index = "strata-alerts"
            "#,
        ));
        let want = [
            "handler.h.command = unset: an exec handler needs command",
            "task.a.script = line 4, column 23: alert takes info:",
            "task.a.handlers = \"pager\": no [[handler]] has this name",
            "task.b.range = 1year: no archive keeps that long",
            "task.c.kind = \"stream\": but the script reads batch",
            "task.c.names = []: name the series",
            "task.c.range = set: is for batch tasks only",
            "tasks.alerts_index = \"strata-alerts\": its indices would match the archives' pattern \"strata-*-*\"",
        ];
        for w in want {
            assert!(
                got.iter().any(|g| g.starts_with(w)),
                "missing {w:?} in {got:#?}"
            );
        }
        assert_eq!(got.len(), want.len(), "{got:#?}");
    }

    #[test]
    fn tasks_feeding_each_other_in_a_cycle_are_refused() {
        let got = fields(&problems(
            r#"
            [[task]]
            name = "a"
            kind = "stream"
            names = ["x.*"]
            script = "stream | window(10s) | mean | emit(y.mean)"
            [[task]]
            name = "b"
            kind = "stream"
            names = ["y.*"]
            script = "stream | window(10s) | mean | emit(x.mean)"
            [[task]]
            name = "c"
            kind = "stream"
            names = ["x.mean"]
            script = "stream | window(10s) | max | emit(z)"
            "#,
        ));
        assert_eq!(got.len(), 1, "{got:#?}");
        assert!(
            got[0].starts_with("task.a.script = a → b → a: tasks feed each other in a cycle"),
            "{got:#?}"
        );
    }

    #[test]
    fn a_task_fed_by_others_waits_for_their_late_points() {
        let config = Config::from_toml(
            &format!(
                "{BASE}{}",
                r#"
                [tasks]
                grace = "1s"
                [[task]]
                name = "mean"
                kind = "stream"
                names = ["cpu"]
                script = "stream | window(period: 20s) | mean | emit(cpu.mean)"
                [[task]]
                name = "max_of_means"
                kind = "stream"
                names = ["cpu.mean"]
                script = "stream | window(period: 1m) | max | emit(cpu.mean.max)"
                [[task]]
                name = "watch"
                kind = "stream"
                names = ["cpu.mean*"]
                script = "stream | window(10s) | count | alert(crit: > 100)"
                "#
            ),
            Path::new("t.toml"),
        )
        .unwrap();
        let late = |name: &str| config.tasks.task(name).unwrap().fed_late;
        use std::time::Duration;
        assert_eq!(late("mean"), Duration::ZERO);
        assert_eq!(late("max_of_means"), Duration::from_secs(21));
        // Fed by both: the later is max_of_means, itself 21 s late, then its minute and the grace.
        assert_eq!(late("watch"), Duration::from_secs(21 + 60 + 1));
    }

    #[test]
    fn task_files_in_the_tasks_directory_are_read_relative_to_the_config() {
        let dir = std::env::temp_dir().join(format!("strata-task-dir-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tasks")).unwrap();
        std::fs::write(
            dir.join("tasks/low.toml"),
            "[[task]]\nname = \"low\"\nkind = \"stream\"\nnames = [\"cpu\"]\nscript = \"stream | window(10s) | mean | alert(crit: < 1)\"\n",
        )
        .unwrap();
        std::fs::write(dir.join("tasks/notes.txt"), "not a task").unwrap();
        let config = Config::from_toml(
            &format!("{BASE}[tasks]\ndir = \"tasks\"\n"),
            &dir.join("archives.toml"),
        )
        .unwrap();
        assert_eq!(config.tasks.list.len(), 1);
        assert_eq!(config.tasks.list[0].source, dir.join("tasks/low.toml"));
        std::fs::write(dir.join("tasks/bad.toml"), "[[task]]\nname = 3\n").unwrap();
        let err = Config::from_toml(
            &format!("{BASE}[tasks]\ndir = \"tasks\"\n"),
            &dir.join("archives.toml"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("bad.toml"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
