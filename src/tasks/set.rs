//! The stream tasks running, indexed by the names they take: an event is offered only to the
//! tasks whose names match (a hash lookup for exact names, then the tasks with globs), then
//! checked against the rest of their selector. Pure; the runner drives it with the clock.

use hashbrown::HashMap;

use crate::clock::EpochMillis;
use crate::config::{TaskConfig, TasksConfig};
use crate::event::Event;

use super::engine::{Dropped, EngineLimits, TaskEngine, TaskOutput};

/// A task and its engine.
pub struct StreamTask {
    pub config: TaskConfig,
    pub engine: TaskEngine,
}

impl StreamTask {
    /// `task` with a fresh engine whose windows start closing after `now`.
    pub fn new(tasks: &TasksConfig, task: &TaskConfig, now: EpochMillis) -> Self {
        let limits = EngineLimits::of(tasks, task);
        Self {
            config: task.clone(),
            engine: TaskEngine::new(&task.name, task.program.clone(), limits, now),
        }
    }
}

#[derive(Default)]
pub struct StreamTasks {
    tasks: Vec<StreamTask>,
    /// Exact name → the tasks taking it.
    by_name: HashMap<Box<str>, Vec<usize>>,
    /// Tasks with at least one glob among their names.
    globbed: Vec<usize>,
    /// Name → the tasks whose names take it, remembered for the names seen lately.
    routes: HashMap<Box<str>, Vec<usize>>,
}

/// Names [`StreamTasks`] remembers routes for before it starts over.
const ROUTES_CAP: usize = 65_536;

impl StreamTasks {
    pub fn new(tasks: Vec<StreamTask>) -> Self {
        let mut by_name: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut globbed = Vec::new();
        for (i, t) in tasks.iter().enumerate() {
            for glob in &t.config.select.names {
                match glob.literal() {
                    Some(name) => by_name.entry(name.into()).or_default().push(i),
                    None if !globbed.contains(&i) => globbed.push(i),
                    None => {}
                }
            }
        }
        Self {
            tasks,
            by_name,
            globbed,
            routes: HashMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Records `event` (arrived at `now`) in every task that takes it.
    pub fn record(&mut self, event: &Event, now: EpochMillis) {
        let name = event.series.name();
        if !self.routes.contains_key(name) {
            if self.routes.len() >= ROUTES_CAP {
                self.routes.clear();
            }
            let route = self.route(name);
            self.routes.insert(name.into(), route);
        }
        let Some(route) = self.routes.get(name) else {
            return;
        };
        for &i in route {
            let task = &mut self.tasks[i];
            if task.config.select.matches_beyond_name(&event.series) {
                task.engine.record(event, now);
            }
        }
    }

    /// The tasks whose names take `name`.
    fn route(&self, name: &str) -> Vec<usize> {
        let mut route: Vec<usize> = self.by_name.get(name).cloned().unwrap_or_default();
        for &i in &self.globbed {
            let takes = self.tasks[i]
                .config
                .select
                .names
                .iter()
                .any(|g| g.matches(name));
            if takes && !route.contains(&i) {
                route.push(i);
            }
        }
        route.sort_unstable();
        route
    }

    /// The earliest instant some task has something to do.
    pub fn next_due(&self) -> Option<EpochMillis> {
        self.tasks.iter().filter_map(|t| t.engine.next_due()).min()
    }

    /// Advances every task due at `now`, passing each one's output to `each`; returns what the
    /// engines left out since the last call.
    pub fn advance(
        &mut self,
        now: EpochMillis,
        mut each: impl FnMut(&TaskConfig, TaskOutput),
    ) -> Dropped {
        let mut dropped = Dropped::default();
        for task in &mut self.tasks {
            if task.engine.next_due().is_some_and(|d| d <= now) {
                each(&task.config, task.engine.advance(now));
            }
            let d = task.engine.take_dropped();
            dropped.late += d.late;
            dropped.over_groups += d.over_groups;
        }
        dropped
    }

    /// The tasks, to rebuild the set after a change.
    pub fn into_tasks(self) -> Vec<StreamTask> {
        self.tasks
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::{MetricKind, SeriesKey};

    #[test]
    fn an_event_reaches_the_tasks_of_its_name_and_the_globs_that_match() {
        let config = Config::from_toml(
            r#"
            [[archive]]
            name = "20s"
            step = "20s"
            retention = "2 days"
            index_period = "day"
            [[task]]
            name = "exact"
            kind = "stream"
            names = ["cpu"]
            script = "stream | window(10s) | count | emit(a)"
            [[task]]
            name = "glob"
            kind = "stream"
            names = ["c*"]
            host = "web-*"
            script = "stream | window(10s) | count | emit(b)"
            [[task]]
            name = "other"
            kind = "stream"
            names = ["mem"]
            script = "stream | window(10s) | count | emit(z)"
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let mut set = StreamTasks::new(
            config
                .tasks
                .list
                .iter()
                .map(|t| StreamTask::new(&config.tasks, t, 0))
                .collect(),
        );
        for (name, host) in [
            ("cpu", "web-1"),
            ("cpu", "db-1"),
            ("cache", "web-2"),
            ("disk", "web-3"),
        ] {
            let e = Event::value(
                SeriesKey::new(name, Some(host), &mut []),
                MetricKind::Gauge,
                1.0,
                1_000,
            );
            set.record(&e, 1_000);
        }
        let mut counts = Vec::new();
        set.advance(20_000, |task, out| {
            counts.push((task.name.clone(), out.emitted.first().map(|e| e.value)))
        });
        assert_eq!(
            counts,
            [
                ("exact".to_string(), Some(2.0)),
                ("glob".to_string(), Some(2.0))
            ],
            "other took nothing, so it has no window to close"
        );
    }
}
