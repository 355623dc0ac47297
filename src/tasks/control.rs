//! The way into the running tasks for the API and SIGHUP: enable or disable a task, or read
//! the configuration file again and take its tasks and handlers.

use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot};

use crate::config::{Config, TaskConfig, TaskSchedule};

use super::runner::Control;

/// Asks the running tasks to change: the API's and SIGHUP's way in.
#[derive(Clone)]
pub struct TaskControl {
    control: mpsc::Sender<Control>,
    /// The file the tasks are read again from (`None`: the service was started without one).
    config_path: Option<PathBuf>,
}

impl TaskControl {
    pub(crate) fn new(control: mpsc::Sender<Control>, config_path: Option<PathBuf>) -> Self {
        Self {
            control,
            config_path,
        }
    }

    /// Enables or disables a task; its new state, or why not.
    pub async fn switch(&self, name: &str, enabled: bool) -> Result<bool, String> {
        let (reply, answer) = oneshot::channel();
        let asked = Control::Switch {
            name: name.to_string(),
            enabled,
            reply,
        };
        self.control
            .send(asked)
            .await
            .map_err(|_| "the tasks have stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the tasks have stopped".to_string())?
    }

    /// Reads the configuration file again and takes its tasks and handlers; a file with a
    /// problem is refused with it, and the running tasks stay as they were.
    pub async fn reload(&self) -> Result<usize, String> {
        let Some(path) = &self.config_path else {
            return Err("the service was not started from a configuration file".into());
        };
        let config = Config::load(path).map_err(|e| e.to_string())?;
        let count = config.tasks.list.len();
        let (reply, answer) = oneshot::channel();
        let asked = Control::Reload {
            tasks: Box::new(config.tasks),
            reply,
        };
        self.control
            .send(asked)
            .await
            .map_err(|_| "the tasks have stopped".to_string())?;
        answer
            .await
            .map_err(|_| "the tasks have stopped".to_string())?;
        Ok(count)
    }
}

/// A task as `GET /v1/tasks` and `strata task list|show` describe it.
pub fn describe(task: &TaskConfig, config: &Config) -> serde_json::Value {
    let batch = task.batch.as_ref().map(|b| {
        serde_json::json!({
            "schedule": match &b.schedule {
                TaskSchedule::Every(every) => format!("every {}", humantime::format_duration(*every)),
                TaskSchedule::Cron(cron) => format!("cron {cron}"),
            },
            "range": humantime::format_duration(b.range).to_string(),
            "archive": config.archives.get(b.archive).map(|a| a.name.clone()),
        })
    });
    serde_json::json!({
        "name": task.name,
        "kind": task.kind().as_str(),
        "enabled": task.enabled,
        "names": task.select.names.iter().map(|g| g.as_str()).collect::<Vec<_>>(),
        "host": task.select.host.as_ref().map(|g| g.as_str()),
        "tags": task.select.tags.iter().map(|(k, g)| (k.clone(), g.as_str().into())).collect::<serde_json::Map<String, serde_json::Value>>(),
        "handlers": task.handlers,
        "batch": batch,
        "source": task.source.display().to_string(),
        "script": task.script,
    })
}
