//! Delivers what finished tasks owe: signed callbacks over HTTP and events on the events
//! exchange. At-least-once, retried with exponential backoff, given up after a limit; rows live
//! in the store, so a worker that dies mid-delivery leaves them to another.

use std::{sync::Arc, time::Duration};

use futures_util::future::join_all;
use lapin::{types::FieldTable, Channel};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    broker::{self, Broker, Outgoing},
    callbacks::{self, AllowList},
    config::CallbackConfig,
    metrics,
    model::now_ms,
    store::{DeliveryOutcome, DeliveryRow, Store},
};

const BATCH: u32 = 256;
/// A dispatcher holds a batch for this many callback timeouts: enough to deliver it, short
/// enough that a worker dying mid-batch delays its callbacks by seconds, not minutes.
const LEASE_TIMEOUTS: u32 = 3;
const MAX_BACKOFF: Duration = Duration::from_secs(300);

pub struct Dispatcher {
    store: Store,
    broker: Broker,
    http: reqwest::Client,
    allow: AllowList,
    config: CallbackConfig,
    poll_interval: Duration,
    /// Notified when tasks end in this process, so that their events go out at once.
    wakeup: Arc<Notify>,
}

impl Dispatcher {
    pub fn new(
        store: Store,
        broker: Broker,
        config: CallbackConfig,
        poll_interval: Duration,
        wakeup: Arc<Notify>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            // A redirect could lead off the allow-list.
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("HTTP client builds");
        let allow = AllowList::parse(&config.allow);
        Dispatcher {
            store,
            broker,
            http,
            allow,
            config,
            poll_interval,
            wakeup,
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let mut events: Option<Channel> = None;
        loop {
            let due = match self
                .store
                .claim_deliveries(BATCH, self.config.timeout * LEASE_TIMEOUTS)
                .await
            {
                Ok(rows) => rows,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read owed callbacks");
                    Vec::new()
                }
            };
            if due.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = self.wakeup.notified() => continue,
                    _ = tokio::time::sleep(self.poll_interval) => continue,
                }
            }
            let channel = self.events_channel(&mut events).await;
            let outcomes =
                join_all(due.iter().map(|row| self.deliver(row, channel.as_ref()))).await;
            self.record(&due, outcomes).await;
        }
        // Closed here, not on drop: a drop closes it later, racing the connection's close.
        if let Some(ch) = events {
            let _ = ch.close(200, "dispatcher stopped".into()).await;
        }
    }

    /// A confirm channel for events, reused until it breaks.
    async fn events_channel(&self, slot: &mut Option<Channel>) -> Option<Channel> {
        if slot.as_ref().is_some_and(|c| !c.status().connected()) {
            *slot = None;
        }
        if slot.is_none() {
            if let Some(conn) = self.broker.current() {
                *slot = broker::confirm_channel(&conn).await.ok();
            }
        }
        slot.clone()
    }

    async fn deliver(&self, row: &DeliveryRow, events: Option<&Channel>) -> Result<(), String> {
        match row.kind.as_str() {
            "callback" => self.post(row).await,
            "event" => {
                let ch = events.ok_or("broker not connected")?;
                let exchange = self.broker.topology().names.events_exchange();
                let out = Outgoing {
                    exchange: &exchange,
                    routing_key: &row.target,
                    body: &row.body,
                    message_id: &row.event_id,
                    headers: FieldTable::default(),
                    // Nobody may be subscribed; an unrouted event is not a failure.
                    mandatory: false,
                };
                broker::publish_confirmed(ch, &out, Duration::from_secs(10))
                    .await
                    .map_err(|e| e.to_string())
            }
            other => Err(format!("unknown delivery kind {other}")),
        }
    }

    async fn post(&self, row: &DeliveryRow) -> Result<(), String> {
        let url = self.allow.check(&row.target)?;
        let signature = callbacks::sign(&self.config.secret, now_ms() / 1000, &row.body);
        let res = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header(contract::EVENT_ID, &row.event_id)
            .header(contract::SIGNATURE, signature)
            .body(row.body.clone())
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(format!("callback answered {}", res.status()))
        }
    }

    /// The outcome of one attempt, as the store records it.
    fn outcome(&self, row: &DeliveryRow, result: Result<(), String>) -> DeliveryOutcome {
        let Err(error) = result else {
            metrics::callback(&row.kind, "delivered");
            return DeliveryOutcome::Delivered;
        };
        let attempts = u32::try_from(row.attempts + 1).unwrap_or(u32::MAX);
        let retry_in = (attempts < self.config.max_attempts).then(|| backoff_after(attempts));
        metrics::callback(
            &row.kind,
            if retry_in.is_some() {
                "retry"
            } else {
                "given_up"
            },
        );
        tracing::warn!(kind = %row.kind, target = %row.target, attempts, %error, "delivery failed");
        DeliveryOutcome::Failed { error, retry_in }
    }

    /// Records a batch's outcomes in one write.
    async fn record(&self, rows: &[DeliveryRow], results: Vec<Result<(), String>>) {
        let outcomes = rows
            .iter()
            .zip(results)
            .map(|(row, result)| (row.id, self.outcome(row, result)))
            .collect();
        if let Err(e) = self.store.record_deliveries(outcomes).await {
            tracing::warn!(error = %e, "cannot record delivery outcomes; they will be retried");
        }
    }
}

/// 1 s, 2 s, 4 s, ... capped at 5 minutes.
fn backoff_after(attempts: u32) -> Duration {
    let secs = 1u64
        .checked_shl(attempts.saturating_sub(1))
        .unwrap_or(u64::MAX);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callback_backoff_doubles_and_caps() {
        assert_eq!(backoff_after(1), Duration::from_secs(1));
        assert_eq!(backoff_after(2), Duration::from_secs(2));
        assert_eq!(backoff_after(4), Duration::from_secs(8));
        assert_eq!(backoff_after(40), MAX_BACKOFF);
        assert_eq!(backoff_after(200), MAX_BACKOFF);
    }
}
