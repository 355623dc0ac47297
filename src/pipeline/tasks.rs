//! The tasks' part of `serve`: the alert store, the handlers, the stream runner and its
//! emitter, started after the consolidator (whose ingest handle the emitter feeds), and the
//! handle that enables, disables and reloads tasks without a restart.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Config;
use crate::ingest::handle::IngestHandle;
use crate::persist::backend::SearchBackend;
use crate::stats::Stats;
use crate::tasks::batch::BatchLoop;
use crate::tasks::control::TaskControl;
use crate::tasks::feed::{FeedQueue, TaskFeed};
use crate::tasks::handlers::Dispatch;
use crate::tasks::runner::{
    start_emitter, BatchStarter, Outlets, RunnerParts, StreamRunner, TaskList,
};
use crate::tasks::store::{self, AlertBoard};

/// How long start-up waits for the alert levels of the last run.
const LEVELS_AT_START: Duration = Duration::from_secs(2);
/// How long shutdown waits for alert transitions and deliveries still queued.
const TASKS_DRAIN: Duration = Duration::from_secs(5);

/// The tasks' side of a running service.
pub(super) struct TasksRunning {
    pub board: AlertBoard,
    pub list: TaskList,
    pub control: TaskControl,
    /// Runner and emitter, in the order they end.
    stream: Vec<JoinHandle<()>>,
    /// The store's writer and the handlers, given [`TASKS_DRAIN`] to finish.
    outlets: Vec<JoinHandle<()>>,
}

impl TasksRunning {
    /// Waits for the runner (stopped by the token) and the emitter, then gives the store and
    /// the handlers [`TASKS_DRAIN`] to finish what they hold.
    pub(super) async fn finish(self) {
        for task in self.stream {
            let _ = task.await;
        }
        let drain = async {
            for task in self.outlets {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(TASKS_DRAIN, drain).await.is_err() {
            tracing::warn!("alert deliveries still under way at shutdown were left");
        }
    }
}

/// What the tasks are wired to.
pub(super) struct TaskWiring<B, C> {
    pub backend: Arc<B>,
    pub clock: Arc<C>,
    pub ingest: IngestHandle,
    pub feed: TaskFeed,
    pub queue: FeedQueue,
    pub stats: Arc<Stats>,
    pub shutdown: CancellationToken,
    pub node_answered: bool,
    pub config_path: Option<PathBuf>,
}

/// Starts the store, the handlers, the runner and the emitter. The levels raised before this
/// start are read back from the node (when it answers and there are tasks), so that a restart
/// sends none of them again.
pub(super) async fn start_tasks<B: SearchBackend, C: Clock>(
    config: &Config,
    w: TaskWiring<B, C>,
) -> TasksRunning {
    let board = AlertBoard::default();
    let indices = config.tasks.alert_indices();
    let mut raised = HashMap::new();
    if w.node_answered && !config.tasks.list.is_empty() {
        match tokio::time::timeout(LEVELS_AT_START, store::load_raised(&*w.backend, &indices)).await
        {
            Ok(Ok(docs)) => {
                for doc in &docs {
                    board.update(doc["id"].as_str().unwrap_or_default(), doc);
                }
                raised = board.raised();
                tracing::info!(
                    raised = raised.len(),
                    "alert levels read back from the node"
                );
            }
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "alert levels not read back: raised alerts may be sent again")
            }
            Err(_) => tracing::warn!(
                "alert levels not read back in time: raised alerts may be sent again"
            ),
        }
    }
    let (store_queue, store_task) = store::start_store(w.backend.clone(), indices);
    let (dispatch, handler_tasks) = Dispatch::start(&config.tasks.handlers, w.stats.clone());
    let (emit, emitter) = start_emitter(w.ingest, w.stats.clone());
    let (control, control_rx) = mpsc::channel(16);
    let list = TaskList::default();
    let (batch_tx, batch_rx) = mpsc::channel(64);
    let start_batch: BatchStarter = {
        let (backend, clock, stats, shutdown) = (
            w.backend.clone(),
            w.clock.clone(),
            w.stats.clone(),
            w.shutdown.clone(),
        );
        let config = Arc::new(config.clone());
        Box::new(move |task, raised| {
            let stop = shutdown.child_token();
            let limits = crate::tasks::engine::EngineLimits::of(&config.tasks, &task);
            BatchLoop {
                backend: backend.clone(),
                config: config.clone(),
                clock: clock.clone(),
                task,
                limits,
                raised,
                out: batch_tx.clone(),
                stats: stats.clone(),
                stop: stop.clone(),
            }
            .spawn();
            stop
        })
    };
    let runner = StreamRunner::new(
        &config.tasks,
        &raised,
        RunnerParts {
            clock: w.clock,
            feed: w.queue,
            names: w.feed,
            outlets: Outlets {
                dispatch,
                store: Some(store_queue),
                board: board.clone(),
                stats: w.stats,
            },
            emit,
            shutdown: w.shutdown,
            list: list.clone(),
            control: control_rx,
            batch_out: batch_rx,
            start_batch: Some(start_batch),
        },
    );
    let mut outlets = vec![store_task];
    outlets.extend(handler_tasks);
    TasksRunning {
        board,
        list,
        control: TaskControl::new(control, w.config_path),
        stream: vec![tokio::spawn(runner.run()), emitter],
        outlets,
    }
}
