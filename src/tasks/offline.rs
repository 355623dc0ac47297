//! `strata task test`: one stream task run offline over recorded (or hand-written) events, on a
//! manual clock driven by the events' own times, printing what it would alert and emit. The
//! clock stands at each event's time when the event is recorded, as if every event had arrived
//! at its timestamp, so windows close and deadmen fire where the live run's would; after the
//! last event the clock moves on by the task's longest period (plus the grace), so that every
//! window the events opened closes.

use serde_json::{json, Value};

use crate::clock::EpochMillis;
use crate::config::{TaskConfig, TasksConfig};
use crate::event::Event;
use crate::script::Sink;

use super::engine::{Emitted, TaskEngine, TaskOutput};
use super::handlers::alert_body;

/// What a test run went through and gave.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TestSummary {
    /// Events the task's selector took, of all read.
    pub taken: u64,
    pub read: u64,
    /// Events that came after their window had closed (out of time order in the file).
    pub late: u64,
    pub alerts: u64,
    pub emitted: u64,
}

/// Runs `task` over `events` (in file order), calling `out` with each line of output.
pub fn test_task(
    task: &TaskConfig,
    tasks: &TasksConfig,
    events: impl IntoIterator<Item = Event>,
    mut out: impl FnMut(Value),
) -> TestSummary {
    let mut run = TaskTest::new(task, tasks);
    for event in events {
        run.feed(&event, &mut out);
    }
    run.finish(&mut out)
}

/// A test run taking one event at a time (a file is never held whole).
pub struct TaskTest<'a> {
    task: &'a TaskConfig,
    limits: super::engine::EngineLimits,
    engine: Option<TaskEngine>,
    now: EpochMillis,
    summary: TestSummary,
}

impl<'a> TaskTest<'a> {
    pub fn new(task: &'a TaskConfig, tasks: &TasksConfig) -> Self {
        Self {
            task,
            limits: super::engine::EngineLimits::of(tasks, task),
            engine: None,
            now: EpochMillis::MIN,
            summary: TestSummary::default(),
        }
    }

    /// The clock moves to the event's time (never back), what is due closes, then the event is
    /// recorded.
    pub fn feed(&mut self, event: &Event, out: &mut impl FnMut(Value)) {
        self.summary.read += 1;
        if !self.task.select.matches(&event.series) {
            return;
        }
        self.summary.taken += 1;
        self.now = self.now.max(event.timestamp);
        let (task, limits, now) = (self.task, self.limits, self.now);
        let engine = self
            .engine
            .get_or_insert_with(|| TaskEngine::new(&task.name, task.program.clone(), limits, now));
        if engine.next_due().is_some_and(|d| d <= now) {
            print(engine.advance(now), &mut self.summary, out);
        }
        engine.record(event, now);
    }

    /// Moves the clock past the task's longest period and closes everything.
    pub fn finish(mut self, out: &mut impl FnMut(Value)) -> TestSummary {
        if let Some(engine) = self.engine.as_mut() {
            let end = self
                .now
                .saturating_add(longest_period(self.task) + self.limits.grace_ms);
            print(engine.advance(end), &mut self.summary, out);
            self.summary.late += engine.take_dropped().late;
        }
        self.summary
    }
}

/// The longest window period, window step or deadman period of the task's script.
fn longest_period(task: &TaskConfig) -> i64 {
    let windows = task
        .program
        .reductions
        .iter()
        .filter_map(|r| r.window)
        .map(|w| w.period_ms.max(w.every_ms));
    let deadmen = task.program.sinks.iter().filter_map(|s| match s {
        Sink::Deadman { period_ms, .. } => Some(*period_ms),
        _ => None,
    });
    windows.chain(deadmen).max().unwrap_or(0)
}

/// Passes each alert and emitted point of `output` to `out` as an NDJSON line's value.
pub fn print(output: TaskOutput, summary: &mut TestSummary, out: &mut impl FnMut(Value)) {
    for alert in &output.alerts {
        summary.alerts += 1;
        let mut line = alert_body(alert);
        line["kind"] = json!("alert");
        out(line);
    }
    for emitted in &output.emitted {
        summary.emitted += 1;
        out(emit_line(emitted));
    }
}

fn emit_line(e: &Emitted) -> Value {
    let group: serde_json::Map<String, Value> = e
        .group
        .iter()
        .map(|(f, v)| (f.key().to_string(), Value::String(v.clone())))
        .collect();
    json!({
        "kind": "emit",
        "name": e.name,
        "group": group,
        "time": crate::calendar::rfc3339(e.time),
        "time_ms": e.time,
        "value": e.value,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::event::{MetricKind, SeriesKey};

    #[test]
    fn events_drive_the_clock_and_the_last_window_closes_at_the_end() {
        let config = Config::from_toml(
            r#"
            [[archive]]
            name = "20s"
            step = "20s"
            retention = "2 days"
            index_period = "day"
            [[task]]
            name = "low"
            kind = "stream"
            names = ["cpu"]
            script = """
            let m = stream | window(10s) | groupby(host) | mean
            m | alert(crit: < 30)
            m | emit(cpu.mean)
            """
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let event = |name: &str, host: &str, v: f64, t: i64| {
            Event::value(
                SeriesKey::new(name, Some(host), &mut []),
                MetricKind::Gauge,
                v,
                t,
            )
        };
        let events = vec![
            event("cpu", "a", 50.0, 1_000),
            event("mem", "a", 1.0, 2_000),
            event("cpu", "a", 10.0, 12_000),
            event("cpu", "a", 20.0, 14_000),
        ];
        let mut lines = Vec::new();
        let summary = test_task(&config.tasks.list[0], &config.tasks, events, |l| {
            lines.push(l)
        });
        let kinds: Vec<_> = lines
            .iter()
            .map(|l| {
                (
                    l["kind"].as_str().unwrap(),
                    l["time_ms"].as_i64().unwrap(),
                    l["value"].as_f64().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("emit", 0, 50.0),
                ("alert", 10_000, 15.0),
                ("emit", 10_000, 15.0)
            ]
        );
        assert_eq!(
            summary,
            TestSummary {
                taken: 3,
                read: 4,
                late: 0,
                alerts: 1,
                emitted: 2
            }
        );
    }
}
