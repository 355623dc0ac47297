//! Where alerts go: each `[[handler]]` has its own bounded queue and task, so a handler that
//! hangs or fails delays nothing but itself. HTTP POSTs the alert as JSON (retried with doubling
//! backoff), `log` appends it as one JSON line, `exec` runs a command with it on standard input.
//! A full queue or a delivery that failed for good is counted, never waited for.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::config::{HandlerConfig, HandlerKind};
use crate::stats::Stats;

use super::engine::AlertEvent;

/// Alerts one handler may have waiting; past it they are counted as dropped.
const HANDLER_QUEUE: usize = 1_024;

/// The JSON every handler receives (and the alert index stores).
pub fn alert_body(alert: &AlertEvent) -> Value {
    let group: serde_json::Map<String, Value> = alert
        .group
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    json!({
        "task": &*alert.task,
        "id": alert.id,
        "group": group,
        "level": alert.level.as_str(),
        "previous": alert.previous.as_str(),
        "value": alert.value,
        "time": crate::calendar::rfc3339(alert.time),
        "time_ms": alert.time,
        "message": alert.message,
    })
}

/// The queues of every configured handler.
pub struct Dispatch {
    queues: HashMap<String, mpsc::Sender<Arc<Value>>>,
    stats: Arc<Stats>,
}

impl Dispatch {
    /// Starts one task per handler.
    pub fn start(handlers: &[HandlerConfig], stats: Arc<Stats>) -> (Self, Vec<JoinHandle<()>>) {
        let client = reqwest::Client::new();
        let mut queues = HashMap::new();
        let mut tasks = Vec::new();
        for h in handlers {
            let (tx, rx) = mpsc::channel(HANDLER_QUEUE);
            queues.insert(h.name.clone(), tx);
            tasks.push(tokio::spawn(run(
                h.clone(),
                rx,
                client.clone(),
                stats.clone(),
            )));
        }
        (Self { queues, stats }, tasks)
    }

    /// Queues `alert` for each of `handlers`, without waiting.
    pub fn send(&self, handlers: &[String], alert: &AlertEvent) {
        if handlers.is_empty() {
            return;
        }
        let body = Arc::new(alert_body(alert));
        for name in handlers {
            let Some(queue) = self.queues.get(name) else {
                continue;
            };
            if queue.try_send(body.clone()).is_err() {
                Stats::add(&self.stats.tasks.handler_dropped, 1);
                tracing::warn!(handler = %name, alert = %alert.id, "alert handler queue full: alert not delivered");
            }
        }
    }
}

async fn run(
    handler: HandlerConfig,
    mut rx: mpsc::Receiver<Arc<Value>>,
    client: reqwest::Client,
    stats: Arc<Stats>,
) {
    while let Some(body) = rx.recv().await {
        if let Err(why) = deliver(&handler.kind, &body, &client).await {
            Stats::add(&stats.tasks.handler_failures, 1);
            tracing::warn!(handler = %handler.name, alert = %body["id"], error = %why, "alert not delivered");
        }
    }
}

async fn deliver(kind: &HandlerKind, body: &Value, client: &reqwest::Client) -> Result<(), String> {
    match kind {
        HandlerKind::Http {
            url,
            headers,
            timeout,
            retries,
            backoff,
        } => {
            let mut pause = *backoff;
            let mut attempt = 0;
            loop {
                let why = match post(client, url, headers, *timeout, body).await {
                    Ok(()) => return Ok(()),
                    Err(why) => why,
                };
                if attempt >= *retries {
                    return Err(format!("{why} (after {} attempts)", attempt + 1));
                }
                attempt += 1;
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(60));
            }
        }
        HandlerKind::Log { path } => append_line(path, body).await,
        HandlerKind::Exec { command, timeout } => run_command(command, *timeout, body).await,
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    timeout: Duration,
    body: &Value,
) -> Result<(), String> {
    let mut request = client.post(url).timeout(timeout).json(body);
    for (k, v) in headers {
        request = request.header(k, v);
    }
    match request.send().await {
        Ok(r) if r.status().is_success() => Ok(()),
        Ok(r) => Err(format!("{url} answered {}", r.status())),
        Err(e) if e.is_timeout() => Err(format!("{url} did not answer within {timeout:?}")),
        Err(e) => Err(format!("{url}: {e}")),
    }
}

async fn append_line(path: &std::path::Path, body: &Value) -> Result<(), String> {
    let mut line = body.to_string();
    line.push('\n');
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    // tokio's file hands the write to a blocking thread: flush waits for it to be done.
    let written = async {
        file.write_all(line.as_bytes()).await?;
        file.flush().await
    };
    written
        .await
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

async fn run_command(command: &[String], timeout: Duration, body: &Value) -> Result<(), String> {
    let (program, args) = command.split_first().ok_or("empty command")?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let input = body.to_string();
    let done = async {
        if let Some(mut stdin) = child.stdin.take() {
            // A command that exits without reading its input is not a failure.
            let _ = stdin.write_all(input.as_bytes()).await;
        }
        child.wait().await
    };
    match tokio::time::timeout(timeout, done).await {
        Ok(Ok(status)) if status.success() => Ok(()),
        Ok(Ok(status)) => Err(format!("{program} exited with {status}")),
        Ok(Err(e)) => Err(format!("{program}: {e}")),
        Err(_) => Err(format!(
            "{program} did not finish within {timeout:?}; killed"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::script::Level;

    fn alert() -> AlertEvent {
        AlertEvent {
            task: "cpu_low".into(),
            id: "cpu_low,host=a".into(),
            group: vec![("host".into(), "a".into())],
            level: Level::Critical,
            previous: Level::Ok,
            value: Some(12.5),
            time: 1_000,
            message: "m".into(),
        }
    }

    #[test]
    fn the_body_names_task_group_level_value_and_time() {
        let body = alert_body(&alert());
        assert_eq!(
            body,
            json!({"task": "cpu_low", "id": "cpu_low,host=a", "group": {"host": "a"}, "level": "critical",
                   "previous": "ok", "value": 12.5, "time": "1970-01-01T00:00:01Z", "time_ms": 1000, "message": "m"})
        );
    }

    #[tokio::test]
    async fn log_and_exec_handlers_deliver_and_a_hanging_command_is_killed() {
        let dir = std::env::temp_dir().join(format!("strata-handlers-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("alerts.ndjson");
        let body = alert_body(&alert());
        deliver(
            &HandlerKind::Log { path: log.clone() },
            &body,
            &reqwest::Client::new(),
        )
        .await
        .unwrap();
        deliver(
            &HandlerKind::Log { path: log.clone() },
            &body,
            &reqwest::Client::new(),
        )
        .await
        .unwrap();
        let lines: Vec<Value> = std::fs::read_to_string(&log)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines, vec![body.clone(), body.clone()]);
        let copy = dir.join("copy.json");
        let exec = HandlerKind::Exec {
            command: vec![
                "sh".into(),
                "-c".into(),
                format!("cat > {}", copy.display()),
            ],
            timeout: Duration::from_secs(5),
        };
        deliver(&exec, &body, &reqwest::Client::new())
            .await
            .unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&std::fs::read_to_string(&copy).unwrap()).unwrap(),
            body
        );
        let hang = HandlerKind::Exec {
            command: vec!["sleep".into(), "30".into()],
            timeout: Duration::from_millis(100),
        };
        let started = std::time::Instant::now();
        let err = deliver(&hang, &body, &reqwest::Client::new())
            .await
            .unwrap_err();
        assert!(err.contains("did not finish"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        let failing = HandlerKind::Exec {
            command: vec!["false".into()],
            timeout: Duration::from_secs(5),
        };
        assert!(deliver(&failing, &body, &reqwest::Client::new())
            .await
            .unwrap_err()
            .contains("exited"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
