//! The final-read phase: wait until the system has settled, then read what the checkers judge.
//!
//! Settled means every accepted task has ended, the work queues are empty, and every ended task
//! owed a callback has had one; a system that never settles (a poison message requeued
//! forever) is read anyway once the timeout passes, and marked unsettled.

use std::{
    collections::{BTreeMap, BTreeSet},
    time::Duration,
};

use contract::topology::Names;
use lapin::options::{BasicGetOptions, QueueDeclareOptions};

use crate::{
    client::Client,
    final_state::{DeadLetter, FinalState},
    history::{f, pairs, Op, OpType},
    sink::Sink,
};

/// Where and how long to read.
pub struct FinalRead<'a> {
    pub client: &'a Client,
    /// The broker, directly (not through a fault proxy).
    pub amqp_url: &'a str,
    pub names: &'a Names,
    pub sink: Option<&'a Sink>,
    pub settle_timeout: Duration,
}

/// Task ids the history accepted.
fn accepted_ids(history: &[Op]) -> BTreeSet<String> {
    pairs(history)
        .into_iter()
        .filter(|p| p.invoke.f == f::SUBMIT && p.outcome() == OpType::Ok)
        .filter_map(|p| p.completion?.value["task_id"].as_str().map(str::to_string))
        .collect()
}

/// Accounts the history submitted credits to.
fn credited_accounts(history: &[Op]) -> BTreeSet<String> {
    history
        .iter()
        .filter(|o| {
            o.f == f::SUBMIT && o.kind == OpType::Invoke && o.value["body"]["type"] == "credit"
        })
        .filter_map(|o| {
            o.value["body"]["payload"]["account"]
                .as_str()
                .map(str::to_string)
        })
        .collect()
}

impl FinalRead<'_> {
    pub async fn read(&self, history: &[Op]) -> FinalState {
        let mut state = FinalState {
            dead_letter_queue: Some(self.names.dead_letter_queue()),
            ..Default::default()
        };
        let conn = match lapin::Connection::connect(self.amqp_url, Default::default()).await {
            Ok(c) => Some(c),
            Err(e) => {
                state
                    .notes
                    .push(format!("broker unreachable for the final read: {e}"));
                state.unread.queues = self.names.queues().into_iter().collect();
                state.unread.dead_letters = true;
                None
            }
        };
        state.settled = self.settle(history, conn.as_ref()).await;
        if let Some(sink) = self.sink {
            state.callbacks = sink.records();
        }
        let mut ids = accepted_ids(history);
        ids.extend(state.callbacks.iter().filter_map(|c| c.task_id.clone()));
        if let Some(conn) = &conn {
            self.read_queues(conn, &mut state).await;
            ids.extend(
                state
                    .dead_letters
                    .iter()
                    .filter_map(|d| d.message_id.clone()),
            );
        }
        self.read_tasks(&ids, &mut state).await;
        for account in credited_accounts(history) {
            match self.client.balance(&account).await {
                Ok(b) => {
                    state.balances.insert(account, b);
                }
                Err(e) => {
                    state.notes.push(format!("balance of {account}: {e}"));
                    state.unread.balances.insert(account);
                }
            }
        }
        if let Some(conn) = conn {
            let _ = conn.close(200, "final read done".into()).await;
        }
        state
    }

    /// Reads the work queues again once the system's consumers are gone: a delivery held
    /// unacknowledged (a lost ack) is invisible to the first read and ready again now.
    pub async fn reread_work_queues(&self, state: &mut FinalState) {
        let conn = match lapin::Connection::connect(self.amqp_url, Default::default()).await {
            Ok(c) => c,
            Err(e) => {
                state.notes.push(format!("queues after stop: {e}"));
                return;
            }
        };
        let before = state.queues.clone();
        read_depths(&conn, self.names.work_queues(), state).await;
        for (q, n) in &state.queues {
            if let Some(b) = before.get(q).filter(|b| *b < n) {
                state.notes.push(format!(
                    "{q}: {n} messages once the consumers stopped, {b} before: \
                     they were held unacknowledged"
                ));
            }
        }
        let _ = conn.close(200, "final read done".into()).await;
    }

    /// Polls until settled or the timeout; returns whether it settled.
    async fn settle(&self, history: &[Op], conn: Option<&lapin::Connection>) -> bool {
        let ids = accepted_ids(history);
        let owes = crate::checker::owed_callbacks(history);
        // An end is final, so each task is read until it has ended, not at every poll.
        let mut ended: BTreeMap<String, bool> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + self.settle_timeout;
        loop {
            if self.is_settled(&ids, &owes, &mut ended, conn).await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                tracing::warn!(timeout = ?self.settle_timeout, "system did not settle; reading anyway");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// `ended` maps the tasks seen ended to whether they owe a callback to the sink.
    async fn is_settled(
        &self,
        ids: &BTreeSet<String>,
        owes: &BTreeSet<String>,
        ended: &mut BTreeMap<String, bool>,
        conn: Option<&lapin::Connection>,
    ) -> bool {
        for id in ids {
            if ended.contains_key(id) {
                continue;
            }
            match self.client.task(id).await {
                Ok(Some(t)) if t.is_terminal() => {
                    ended.insert(id.clone(), owes.contains(id) && self.sink.is_some());
                }
                _ => return false,
            }
        }
        let called_back: BTreeSet<String> = self
            .sink
            .map(|s| s.records().into_iter().filter_map(|r| r.task_id).collect())
            .unwrap_or_default();
        if ended
            .iter()
            .any(|(id, owes)| *owes && !called_back.contains(id))
        {
            return false;
        }
        match conn {
            Some(conn) => {
                for q in self.names.work_queues() {
                    // A queue that cannot be read does not hold the wait up: the read that
                    // follows records it as unread, which leaves residue undecided.
                    if depth(conn, &q).await.unwrap_or(0) > 0 {
                        return false;
                    }
                }
                true
            }
            None => true,
        }
    }

    async fn read_queues(&self, conn: &lapin::Connection, state: &mut FinalState) {
        read_depths(conn, self.names.queues(), state).await;
        match drain(conn, &self.names.dead_letter_queue()).await {
            Ok(letters) => state.dead_letters = letters,
            Err(e) => {
                state.notes.push(format!("dead-letter queue: {e}"));
                state.unread.dead_letters = true;
            }
        }
    }

    async fn read_tasks(&self, ids: &BTreeSet<String>, state: &mut FinalState) {
        for id in ids {
            match self.client.task(id).await {
                Ok(Some(t)) => {
                    state.tasks.insert(id.clone(), t);
                }
                Ok(None) => {
                    state.missing.insert(id.clone());
                }
                Err(e) => {
                    state.notes.push(format!("task {id}: {e}"));
                    state.unread.tasks.insert(id.clone());
                }
            }
        }
    }
}

/// Records each queue's depth in `state`, or that it could not be read.
async fn read_depths(conn: &lapin::Connection, queues: Vec<String>, state: &mut FinalState) {
    for q in queues {
        match depth(conn, &q).await {
            Ok(n) => {
                state.queues.insert(q, u64::from(n));
            }
            Err(e) => {
                state.notes.push(format!("queue {q}: {e}"));
                state.unread.queues.insert(q);
            }
        }
    }
}

/// Exact ready-message count (passive declare; management statistics lag).
pub async fn depth(conn: &lapin::Connection, queue: &str) -> lapin::Result<u32> {
    Ok(counts(conn, queue).await?.0)
}

/// Messages ready in `queue` and its consumers, over a connection of its own.
pub async fn counts_at(amqp_url: &str, queue: &str) -> lapin::Result<(u32, u32)> {
    let conn = lapin::Connection::connect(amqp_url, Default::default()).await?;
    let counted = counts(&conn, queue).await;
    let _ = conn.close(200, "counted".into()).await;
    counted
}

/// Messages ready in `queue` and its consumers.
pub async fn counts(conn: &lapin::Connection, queue: &str) -> lapin::Result<(u32, u32)> {
    let ch = conn.create_channel().await?;
    let opts = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    let q = ch
        .queue_declare(queue.into(), opts, Default::default())
        .await;
    if q.is_ok() {
        ch.close(200, "read".into()).await?;
    }
    let q = q?;
    Ok((q.message_count(), q.consumer_count()))
}

/// Takes every message of a queue.
async fn drain(conn: &lapin::Connection, queue: &str) -> lapin::Result<Vec<DeadLetter>> {
    let ch = conn.create_channel().await?;
    let mut out = Vec::new();
    while let Some(m) = ch
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await?
    {
        out.push(DeadLetter {
            message_id: m
                .delivery
                .properties
                .message_id()
                .as_ref()
                .map(|s| s.to_string()),
            body: serde_json::from_slice(&m.delivery.data).unwrap_or_default(),
        });
    }
    ch.close(200, "drained".into()).await?;
    Ok(out)
}
