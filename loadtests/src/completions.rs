//! When tasks end, learned without loading the system: a subscription to its events exchange
//! (`task.succeeded` / `task.failed`), or, for a system whose broker is out of reach, polling
//! `GET /api/v1/tasks/{id}` from a client outside goose's figures.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures_util::StreamExt;
use lapin::{
    options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions},
    types::FieldTable,
    Connection, ConnectionProperties,
};
use tokio::sync::oneshot;

/// How a task ended, and when the run learned it.
#[derive(Debug, Clone)]
pub struct Ended {
    pub at: Instant,
    pub status: String,
}

enum Slot {
    Ended(Ended),
    Waiting(oneshot::Sender<Ended>),
}

/// Ends of tasks, matched to the transactions waiting for them. An event may arrive before
/// its waiter registers (the waiter only learns the task id from the 202), so ends are kept
/// for a while.
#[derive(Default)]
pub struct Completions {
    slots: Mutex<HashMap<String, Slot>>,
    /// Tasks that ended (each counted once), and when the latest did.
    tally: Mutex<(u64, Option<Instant>)>,
}

/// Ends nobody waited for are forgotten after this long.
const KEEP: Duration = Duration::from_secs(60);

impl Completions {
    /// Records that `task` ended.
    pub fn ended(&self, task: &str, status: &str) {
        let end = Ended {
            at: Instant::now(),
            status: status.to_string(),
        };
        let mut slots = self.slots.lock().expect("completions lock");
        if !matches!(slots.get(task), Some(Slot::Ended(_))) {
            let mut tally = self.tally.lock().expect("tally lock");
            tally.0 += 1;
            tally.1 = Some(end.at);
        }
        match slots.remove(task) {
            Some(Slot::Waiting(tx)) => {
                let _ = tx.send(end);
            }
            // A second event for one task (at-least-once) keeps the first time.
            Some(Slot::Ended(first)) => {
                slots.insert(task.to_string(), Slot::Ended(first));
            }
            None => {
                slots.insert(task.to_string(), Slot::Ended(end));
            }
        }
    }

    /// Waits until `task` ends, at most `limit`.
    pub async fn wait(&self, task: &str, limit: Duration) -> Option<Ended> {
        let rx = {
            let mut slots = self.slots.lock().expect("completions lock");
            if let Some(Slot::Ended(end)) = slots.remove(task) {
                return Some(end);
            }
            let (tx, rx) = oneshot::channel();
            slots.insert(task.to_string(), Slot::Waiting(tx));
            rx
        };
        let ended = tokio::time::timeout(limit, rx)
            .await
            .ok()
            .and_then(Result::ok);
        if ended.is_none() {
            self.slots.lock().expect("completions lock").remove(task);
        }
        ended
    }

    /// How many tasks ended so far, and when the latest did.
    pub fn tally(&self) -> (u64, Option<Instant>) {
        *self.tally.lock().expect("tally lock")
    }

    /// Waits until `n` tasks have ended in all, at most `limit`; when the `n`-th ended.
    pub async fn wait_count(&self, n: u64, limit: Duration) -> Option<Instant> {
        let deadline = Instant::now() + limit;
        loop {
            let (count, last) = self.tally();
            if count >= n {
                return last;
            }
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Forgets ends nobody waited for.
    fn prune(&self) {
        let now = Instant::now();
        self.slots
            .lock()
            .expect("completions lock")
            .retain(|_, s| !matches!(s, Slot::Ended(e) if now - e.at > KEEP));
    }

    /// Subscribes to `exchange` (the system's events) and records every end it announces,
    /// until the returned handle is dropped.
    pub async fn subscribe(
        self: &Arc<Self>,
        amqp_url: &str,
        exchange: &str,
    ) -> anyhow::Result<Subscription> {
        let conn = Connection::connect(amqp_url, ConnectionProperties::default()).await?;
        let ch = conn.create_channel().await?;
        let queue = ch
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        ch.queue_bind(
            queue.name().clone(),
            exchange.into(),
            "task.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
        let mut consumer = ch
            .basic_consume(
                queue.name().clone(),
                "loadtests-completions".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        let me = self.clone();
        let task = tokio::spawn(async move {
            let mut last_prune = Instant::now();
            while let Some(Ok(delivery)) = consumer.next().await {
                if let Some((id, status)) = task_of(&delivery.data) {
                    me.ended(&id, &status);
                }
                if last_prune.elapsed() > KEEP {
                    me.prune();
                    last_prune = Instant::now();
                }
            }
        });
        Ok(Subscription { conn, task })
    }
}

/// The task id and status an event carries (`{"task": {"id", "status"}}`).
fn task_of(body: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let task = v.get("task")?;
    Some((
        task.get("id")?.as_str()?.to_string(),
        task.get("status")?.as_str()?.to_string(),
    ))
}

/// A live subscription; dropping it stops listening.
pub struct Subscription {
    conn: Connection,
    task: tokio::task::JoinHandle<()>,
}

impl Subscription {
    pub async fn close(self) {
        self.task.abort();
        let _ = self.conn.close(200, "load run over".into()).await;
    }
}

/// Polls a task until it ends, at most `limit`; `None` when it did not end in time.
pub async fn poll(
    http: &reqwest::Client,
    base_url: &str,
    token: Option<&str>,
    task: &str,
    limit: Duration,
) -> Option<Ended> {
    let url = format!("{base_url}/api/v1/tasks/{task}");
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        let mut req = http.get(&url);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let status = async {
            let v: serde_json::Value = req.send().await.ok()?.json().await.ok()?;
            Some(v.get("data")?.get("status")?.as_str()?.to_string())
        }
        .await;
        if let Some(s) = status.filter(|s| s == "SUCCESS" || s == "FAILED") {
            return Some(Ended {
                at: Instant::now(),
                status: s,
            });
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_end_reaches_its_waiter_whether_it_comes_before_or_after() {
        let c = Arc::new(Completions::default());
        c.ended("early", "SUCCESS");
        let early = c.wait("early", Duration::from_millis(10)).await.unwrap();
        assert_eq!(early.status, "SUCCESS");

        let waiter = {
            let c = c.clone();
            tokio::spawn(async move { c.wait("late", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.ended("late", "FAILED");
        assert_eq!(waiter.await.unwrap().unwrap().status, "FAILED");

        assert!(c.wait("never", Duration::from_millis(10)).await.is_none());
        assert!(
            c.slots.lock().unwrap().is_empty(),
            "a timed-out waiter leaves nothing"
        );
    }

    #[test]
    fn events_are_read_for_their_task() {
        let body =
            br#"{"event_id":"e","type":"task.succeeded","task":{"id":"t1","status":"SUCCESS"}}"#;
        assert_eq!(
            task_of(body),
            Some(("t1".to_string(), "SUCCESS".to_string()))
        );
        assert_eq!(task_of(b"not json"), None);
    }
}
