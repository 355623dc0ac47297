//! The async shell around the stream tasks' engines: one task takes the events the feed copied,
//! records them into every task whose selector matches, and wakes on the [`Clock`] when the
//! first window closes or a deadman's silence ends. What the engines give goes out without
//! waiting: alerts to the board, the store and the handlers' queues; derived events to the
//! emitter, which hands them to ingest like any other door (and waits there, not here).

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, EpochMillis};
use crate::config::{TaskConfig, TasksConfig};
use crate::event::{Event, MetricKind, SeriesKey};
use crate::ingest::handle::IngestHandle;
use crate::script::{Field, SourceKind};
use crate::stats::{Protocol, Stats};

use super::alert::GroupLevel;
use super::batch::BatchOutput;
use super::engine::{Emitted, TaskOutput};
use super::feed::{FeedQueue, NameIndex, TaskFeed};
use super::handlers::{alert_body, Dispatch};
use super::set::{StreamTask, StreamTasks};
use super::store::{AlertBoard, StoreQueue};

/// Batches of derived events waiting for ingest; past it they are counted as refused.
const EMIT_QUEUE: usize = 1_024;

/// What the API and SIGHUP ask of the runner.
pub(crate) enum Control {
    /// Enables or disables a task; answers its new state, or why not.
    Switch {
        name: String,
        enabled: bool,
        reply: oneshot::Sender<Result<bool, String>>,
    },
    /// Takes the tasks and handlers of a configuration read again.
    Reload {
        tasks: Box<TasksConfig>,
        reply: oneshot::Sender<()>,
    },
}

/// The tasks as they are now (enabled or not), for `GET /v1/tasks`.
#[derive(Clone, Default)]
pub(crate) struct TaskList(Arc<std::sync::RwLock<Vec<TaskConfig>>>);

impl TaskList {
    pub(crate) fn get(&self) -> Vec<TaskConfig> {
        self.0.read().map(|l| l.clone()).unwrap_or_default()
    }

    fn set(&self, list: Vec<TaskConfig>) {
        if let Ok(mut l) = self.0.write() {
            *l = list;
        }
    }
}

/// Where the runner's output goes.
pub(crate) struct Outlets {
    pub(crate) dispatch: Dispatch,
    pub(crate) store: Option<StoreQueue>,
    pub(crate) board: AlertBoard,
    pub(crate) stats: Arc<Stats>,
}

impl Outlets {
    /// Sends what one advance of `task` gave.
    fn deliver(
        &self,
        task: &TaskConfig,
        out: TaskOutput,
        now: EpochMillis,
        emit: &mpsc::Sender<Vec<Event>>,
    ) {
        for alert in &out.alerts {
            Stats::add(&self.stats.tasks.alerts, 1);
            tracing::info!(task = %task.name, alert = %alert.id, level = alert.level.as_str(), previous = alert.previous.as_str(), value = ?alert.value, "alert");
            let body = alert_body(alert);
            self.board.update(&alert.id, &body);
            if let Some(store) = &self.store {
                store.record(body, now);
            }
            self.dispatch.send(&task.handlers, alert);
        }
        if out.emitted.is_empty() {
            return;
        }
        let n = out.emitted.len() as u64;
        let events = out.emitted.iter().map(derived_event).collect();
        if emit.try_send(events).is_err() {
            Stats::add(&self.stats.tasks.emit_refused, n);
            tracing::warn!(task = %task.name, events = n, "derived events not emitted: the emit queue is full");
        }
    }
}

/// The event `emit` writes: the emitted name, the group's host and tags (a group by name
/// becomes the tag `name`).
pub(crate) fn derived_event(e: &Emitted) -> Event {
    let mut host = None;
    let mut tags: Vec<(&str, &str)> = Vec::new();
    for (field, value) in &e.group {
        match field {
            Field::Host if !value.is_empty() => host = Some(value.as_str()),
            Field::Name => tags.push(("name", value)),
            Field::Tag(k) if !value.is_empty() => tags.push((k, value)),
            _ => {}
        }
    }
    Event::value(
        SeriesKey::new(&e.name, host, &mut tags),
        MetricKind::Gauge,
        e.value,
        e.time,
    )
}

/// The stream tasks' runner.
/// Starts one batch task's loop with the levels raised before; the token stops it.
pub(crate) type BatchStarter =
    Box<dyn Fn(TaskConfig, HashMap<String, GroupLevel>) -> CancellationToken + Send + Sync>;

pub(crate) struct StreamRunner<C> {
    /// The batch tasks running, and how to stop each.
    batches: HashMap<String, (TaskConfig, CancellationToken)>,
    batch_out: mpsc::Receiver<BatchOutput>,
    start_batch: Option<BatchStarter>,
    clock: Arc<C>,
    feed: FeedQueue,
    tasks: StreamTasks,
    outlets: Outlets,
    emit: mpsc::Sender<Vec<Event>>,
    shutdown: CancellationToken,
    /// Every task of the configuration, with its current state.
    config: TasksConfig,
    list: TaskList,
    names: TaskFeed,
    control: mpsc::Receiver<Control>,
}

/// The parts a runner needs besides its configuration.
pub(crate) struct RunnerParts<C> {
    pub clock: Arc<C>,
    pub feed: FeedQueue,
    /// The consolidator's side of the feed, told which names the enabled tasks take.
    pub names: TaskFeed,
    pub outlets: Outlets,
    pub emit: mpsc::Sender<Vec<Event>>,
    pub shutdown: CancellationToken,
    pub list: TaskList,
    pub control: mpsc::Receiver<Control>,
    /// Where batch runs send their output, and how to start a batch loop (`None`: no batch
    /// task runs, as in unit tests).
    pub batch_out: mpsc::Receiver<BatchOutput>,
    pub start_batch: Option<BatchStarter>,
}

impl<C: Clock> StreamRunner<C> {
    /// Engines for the enabled stream tasks of `config`, with the levels raised before a
    /// restart put back.
    pub(crate) fn new(
        config: &TasksConfig,
        raised: &HashMap<String, GroupLevel>,
        parts: RunnerParts<C>,
    ) -> Self {
        let mut runner = Self {
            batches: HashMap::new(),
            batch_out: parts.batch_out,
            start_batch: parts.start_batch,
            clock: parts.clock,
            feed: parts.feed,
            tasks: StreamTasks::default(),
            outlets: parts.outlets,
            emit: parts.emit,
            shutdown: parts.shutdown,
            config: config.clone(),
            list: parts.list,
            names: parts.names,
            control: parts.control,
        };
        runner.start_engines(StreamTasks::default(), raised);
        runner
    }

    /// Engines for the enabled stream tasks of `self.config`: those of `kept` whose script and
    /// selector did not change go on as they were; the others start afresh, with the levels of
    /// `raised` put back.
    fn start_engines(&mut self, kept: StreamTasks, raised: &HashMap<String, GroupLevel>) {
        let now = self.clock.now();
        let mut kept: HashMap<String, StreamTask> = kept
            .into_tasks()
            .into_iter()
            .map(|r| (r.config.name.clone(), r))
            .collect();
        let tasks = self
            .config
            .list
            .iter()
            .filter(|t| t.enabled && t.kind() == SourceKind::Stream)
            .map(|t| match kept.remove(&t.name) {
                Some(r) if same_task(&r.config, t) => StreamTask {
                    config: t.clone(),
                    engine: r.engine,
                },
                _ => {
                    let mut task = StreamTask::new(&self.config, t, now);
                    task.engine.restore(raised, now);
                    task
                }
            })
            .collect();
        self.tasks = StreamTasks::new(tasks);
        self.switch_batches(raised);
        self.names.set_names(NameIndex::of(&self.config.list));
        self.list.set(self.config.list.clone());
    }

    /// Stops the batch loops of tasks disabled, removed or changed, and starts those of tasks
    /// enabled, added or changed.
    fn switch_batches(&mut self, raised: &HashMap<String, GroupLevel>) {
        let Some(start) = &self.start_batch else {
            return;
        };
        let wanted: HashMap<&str, &TaskConfig> = self
            .config
            .list
            .iter()
            .filter(|t| t.enabled && t.kind() == SourceKind::Batch)
            .map(|t| (t.name.as_str(), t))
            .collect();
        self.batches.retain(|name, (running, stop)| {
            let keep = wanted
                .get(name.as_str())
                .is_some_and(|t| same_task(running, t));
            if !keep {
                stop.cancel();
            }
            keep
        });
        for (name, task) in wanted {
            if !self.batches.contains_key(name) {
                let stop = start((*task).clone(), raised.clone());
                self.batches
                    .insert(name.to_string(), ((*task).clone(), stop));
            }
        }
    }

    fn control(&mut self, control: Control) {
        let raised = self.outlets.board.raised();
        match control {
            Control::Switch {
                name,
                enabled,
                reply,
            } => {
                let Some(task) = self.config.list.iter_mut().find(|t| t.name == name) else {
                    let _ = reply.send(Err(format!("no task named {name:?}")));
                    return;
                };
                task.enabled = enabled;
                tracing::info!(task = %name, enabled, "task switched");
                let kept = std::mem::take(&mut self.tasks);
                self.start_engines(kept, &raised);
                let _ = reply.send(Ok(enabled));
            }
            Control::Reload { tasks, reply } => {
                let handlers_changed =
                    format!("{:?}", tasks.handlers) != format!("{:?}", self.config.handlers);
                self.config = *tasks;
                if handlers_changed {
                    let (dispatch, _) =
                        Dispatch::start(&self.config.handlers, self.outlets.stats.clone());
                    self.outlets.dispatch = dispatch;
                }
                let kept = std::mem::take(&mut self.tasks);
                self.start_engines(kept, &raised);
                tracing::info!(
                    tasks = self.config.list.len(),
                    running = self.tasks.len(),
                    "tasks read again"
                );
                let _ = reply.send(());
            }
        }
    }

    pub(crate) async fn run(mut self) {
        loop {
            let due = self.tasks.next_due();
            let clock = self.clock.clone();
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                batch = self.feed.events.recv() => match batch {
                    Some(events) => self.record(events),
                    None => break,
                },
                Some(control) = self.control.recv() => self.control(control),
                Some(done) = self.batch_out.recv() => {
                    let now = done.at;
                    self.outlets.deliver(&done.task, done.output, now, &self.emit);
                }
                _ = sleep_until(&*clock, due) => self.advance(clock.now()),
            }
        }
        for (_, stop) in self.batches.values() {
            stop.cancel();
        }
        tracing::info!("tasks stopped");
    }

    fn record(&mut self, events: Vec<Event>) {
        self.feed.taken(events.len());
        let now = self.clock.now();
        for event in &events {
            self.tasks.record(event, now);
        }
        if self.tasks.next_due().is_some_and(|d| d <= now) {
            self.advance(now);
        }
    }

    fn advance(&mut self, now: EpochMillis) {
        let (outlets, emit) = (&self.outlets, &self.emit);
        let dropped = self
            .tasks
            .advance(now, |task, out| outlets.deliver(task, out, now, emit));
        let counters = &self.outlets.stats.tasks;
        Stats::add(&counters.events_late, dropped.late);
        Stats::add(&counters.events_over_groups, dropped.over_groups);
    }
}

/// Whether two versions of a task would run alike (same script, series and schedule; the
/// handlers may differ).
fn same_task(a: &TaskConfig, b: &TaskConfig) -> bool {
    a.script == b.script
        && format!("{:?}", a.select) == format!("{:?}", b.select)
        && format!("{:?}", a.batch) == format!("{:?}", b.batch)
}

/// Waits until `due` on `clock`; for ever when `None`.
pub(crate) async fn sleep_until<C: Clock>(clock: &C, due: Option<EpochMillis>) {
    match due {
        Some(at) => clock.sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Hands derived events to ingest (as the `task` protocol), waiting while it is full; ends
/// when the runner drops its sender.
pub(crate) fn start_emitter(
    ingest: IngestHandle,
    stats: Arc<Stats>,
) -> (mpsc::Sender<Vec<Event>>, JoinHandle<()>) {
    let (tx, mut rx) = mpsc::channel::<Vec<Event>>(EMIT_QUEUE);
    let ingest = ingest.for_protocol(Protocol::Task);
    let task = tokio::spawn(async move {
        while let Some(events) = rx.recv().await {
            let n = events.len() as u64;
            match ingest.submit_waiting(events, false).await {
                Ok(()) => Stats::add(&stats.tasks.emitted, n),
                Err(e) => {
                    Stats::add(&stats.tasks.emit_refused, n);
                    tracing::warn!(error = %e, events = n, "derived events refused by ingest");
                }
            }
        }
    });
    (tx, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::config::Config;
    use crate::tasks::feed::{task_feed, NameIndex};

    #[test]
    fn a_derived_event_carries_the_groups_host_and_tags() {
        let e = derived_event(&Emitted {
            name: "cpu.dc_mean".into(),
            group: vec![
                (Field::Tag("dc".into()), "eu".into()),
                (Field::Host, "a".into()),
                (Field::Name, "cpu".into()),
            ],
            time: 10_000,
            value: 2.5,
        });
        assert_eq!(format!("{:?}", e.series), "cpu.dc_mean@a,dc=eu,name=cpu");
        assert_eq!((e.timestamp, e.sample.as_value()), (10_000, Some(2.5)));
    }

    /// The runner on a manual clock: a window closes when the clock passes it, with no event
    /// after it, and its alert reaches the board.
    #[tokio::test]
    async fn the_runner_wakes_on_the_clock_and_delivers_the_alert() {
        let config = Config::from_toml(
            r#"
            [[archive]]
            name = "20s"
            step = "20s"
            retention = "2 days"
            index_period = "day"
            [tasks]
            grace = "0s"
            [[task]]
            name = "low"
            kind = "stream"
            names = ["cpu"]
            script = "stream | window(10s) | groupby(host) | mean | alert(crit: < 30)"
            "#,
            std::path::Path::new("t.toml"),
        )
        .unwrap();
        let stats = Arc::new(Stats::default());
        let clock = ManualClock::new(0);
        let (feed, queue) = task_feed(NameIndex::of(&config.tasks.list), 100, stats.clone());
        let board = AlertBoard::default();
        let (dispatch, _) = Dispatch::start(&[], stats.clone());
        let (emit, _emitted) = mpsc::channel(4);
        let shutdown = CancellationToken::new();
        let (control, control_rx) = mpsc::channel(4);
        let list = TaskList::default();
        let runner = StreamRunner::new(
            &config.tasks,
            &HashMap::new(),
            RunnerParts {
                clock: Arc::new(clock.clone()),
                feed: queue,
                names: feed.clone(),
                outlets: Outlets {
                    dispatch,
                    store: None,
                    board: board.clone(),
                    stats: stats.clone(),
                },
                emit,
                shutdown: shutdown.clone(),
                list: list.clone(),
                control: control_rx,
                batch_out: mpsc::channel(1).1,
                start_batch: None,
            },
        );
        let task = tokio::spawn(runner.run());
        let event = Event::value(
            SeriesKey::new("cpu", Some("a"), &mut []),
            MetricKind::Gauge,
            10.0,
            1_000,
        );
        feed.offer(&[event]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(board.current().is_empty(), "the window is still open");
        clock.set(10_000);
        let mut waited = 0;
        while board.current().is_empty() && waited < 100 {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            waited += 1;
        }
        let current = board.current();
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["id"], "low,host=a");
        assert_eq!(current[0]["level"], "critical");

        // Disabled: the feed no longer takes its names, and the list says so.
        let control = crate::tasks::control::TaskControl::new(control, None);
        assert_eq!(control.switch("low", false).await, Ok(false));
        assert!(!list.get()[0].enabled);
        feed.offer(&[Event::value(
            SeriesKey::new("cpu", Some("a"), &mut []),
            MetricKind::Gauge,
            10.0,
            11_000,
        )]);
        assert_eq!(
            stats
                .tasks
                .events
                .load(std::sync::atomic::Ordering::Relaxed),
            1
        );
        assert_eq!(
            control.switch("nope", true).await,
            Err("no task named \"nope\"".into())
        );
        assert!(control
            .reload()
            .await
            .unwrap_err()
            .contains("not started from a configuration file"));
        shutdown.cancel();
        task.await.unwrap();
    }
}
