//! Callbacks and events owed for finished tasks (a second outbox, drained by the worker).

use std::time::Duration;

use sqlx::Row;

use super::{text, Dialect, Store, StoreError, Tx};
use crate::{
    callbacks::TaskEvent,
    model::{now_ms, Task},
};

/// What a delivery row targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewDelivery {
    /// POST to the task's `callback_url`.
    Callback { url: String },
    /// Publish on the events exchange with this routing key.
    Event { routing_key: String },
}

impl NewDelivery {
    fn kind(&self) -> &'static str {
        match self {
            NewDelivery::Callback { .. } => "callback",
            NewDelivery::Event { .. } => "event",
        }
    }

    fn target(&self) -> &str {
        match self {
            NewDelivery::Callback { url } => url,
            NewDelivery::Event { routing_key } => routing_key,
        }
    }
}

/// A due delivery leased to one dispatcher.
#[derive(Debug, Clone)]
pub struct DeliveryRow {
    pub id: i64,
    pub event_id: String,
    pub kind: String,
    pub target: String,
    pub body: Vec<u8>,
    /// Attempts already made before this one.
    pub attempts: i64,
}

/// Writes the event and, when the task has one, the callback, inside the finishing transaction.
/// Ignored when already there: a duplicate finish owes nothing new.
pub(super) async fn insert_for(
    tx: &mut Tx,
    dialect: Dialect,
    task: &Task,
    now: i64,
) -> Result<(), StoreError> {
    let event = TaskEvent::for_task(task);
    let body = serde_json::to_string(&event).expect("event serialises");
    let mut owed = vec![NewDelivery::Event {
        routing_key: event.kind.clone(),
    }];
    if let Some(url) = &task.callback_url {
        owed.push(NewDelivery::Callback { url: url.clone() });
    }
    for d in owed {
        sqlx::query(&format!(
            "{} INTO deliveries (task_id, event_id, kind, target, body, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?)",
            dialect.insert_ignore()
        ))
        .bind(task.id.to_string())
        .bind(event.event_id.to_string())
        .bind(d.kind())
        .bind(d.target())
        .bind(&body)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl Store {
    /// Leases up to `limit` due deliveries for `lease`.
    pub async fn claim_deliveries(
        &self,
        limit: u32,
        lease: Duration,
    ) -> Result<Vec<DeliveryRow>, StoreError> {
        let now = now_ms();
        let lease_until = now + i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT id, event_id, kind, target, body, attempts FROM deliveries \
             WHERE state = 'pending' AND next_attempt_at <= ? AND lease_until < ? ORDER BY next_attempt_at LIMIT ?",
        )
        .bind(now)
        .bind(now)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for r in rows {
            let id: i64 = r.try_get("id")?;
            let taken = sqlx::query(
                "UPDATE deliveries SET lease_until = ? WHERE id = ? AND lease_until < ?",
            )
            .bind(lease_until)
            .bind(id)
            .bind(now)
            .execute(&self.pool)
            .await?;
            if taken.rows_affected() == 1 {
                let body = text(&r, "body")?;
                claimed.push(DeliveryRow {
                    id,
                    event_id: r.try_get("event_id")?,
                    kind: r.try_get("kind")?,
                    target: text(&r, "target")?,
                    body: body.into_bytes(),
                    attempts: r.try_get("attempts")?,
                });
            }
        }
        Ok(claimed)
    }

    /// Marks a delivery made. `next_attempt_at` then records when (as for a given-up one), so
    /// that retention counts a finished row's age from when it finished.
    pub async fn delivery_done(&self, id: i64) -> Result<(), StoreError> {
        sqlx::query("UPDATE deliveries SET state = 'delivered', attempts = attempts + 1, next_attempt_at = ?, last_error = NULL WHERE id = ?")
            .bind(now_ms())
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records a failed attempt: retried after `retry_in`, or given up when `None`.
    pub async fn delivery_failed(
        &self,
        id: i64,
        error: &str,
        retry_in: Option<Duration>,
    ) -> Result<(), StoreError> {
        let (state, next) = match retry_in {
            Some(d) => (
                "pending",
                now_ms() + i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
            ),
            None => ("given_up", now_ms()),
        };
        sqlx::query(
            "UPDATE deliveries SET state = ?, attempts = attempts + 1, next_attempt_at = ?, lease_until = 0, last_error = ? \
             WHERE id = ?",
        )
        .bind(state)
        .bind(next)
        .bind(error)
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Deliveries still owed (pending), for metrics and shutdown.
    pub async fn deliveries_pending(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT COUNT(*) AS n FROM deliveries WHERE state = 'pending'")
                .fetch_one(&self.pool)
                .await?
                .try_get("n")?,
        )
    }
}
