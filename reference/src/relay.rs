//! The outbox relay: publishes committed outbox rows with confirms, deletes what the broker
//! confirmed, and leaves the rest for the next pass. At-least-once: a crash between the confirm
//! and the delete publishes a row again, which the worker's deduplication absorbs.

use std::{sync::Arc, time::Duration};

use lapin::{types::FieldTable, Channel, Connection};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    backoff::Reconnect,
    broker::{self, Broker, Outgoing, PublishError},
    metrics,
    store::{OutboxRow, Store, StoreError},
};

const BATCH: u32 = 100;
/// A relay that dies holding rows releases them after this long.
const LEASE: Duration = Duration::from_secs(30);
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("{0} messages were not confirmed")]
    Unconfirmed(usize),
}

pub struct Relay {
    pub store: Store,
    pub broker: Broker,
    pub wakeup: Arc<Notify>,
    pub poll_interval: Duration,
    pub shutdown_timeout: Duration,
}

impl Relay {
    /// Runs until `cancel`, then drains what it can within the shutdown timeout.
    pub async fn run(self, cancel: CancellationToken) {
        let mut delays = Reconnect::default();
        while let Some(conn) = self.broker.connected(&cancel).await {
            match self.relay_on(&conn, &cancel).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay interrupted");
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep(delays.next_delay()) => {}
                    }
                }
            }
        }
        self.drain().await;
    }

    async fn relay_on(
        &self,
        conn: &Connection,
        cancel: &CancellationToken,
    ) -> Result<(), RelayError> {
        with_channel(conn, async |ch| loop {
            if self.publish_batch(ch).await? == 0 {
                tokio::select! {
                    _ = cancel.cancelled() => return Ok(()),
                    _ = self.wakeup.notified() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
        })
        .await
    }

    /// Publishes one leased batch; returns how many rows the broker confirmed.
    async fn publish_batch(&self, ch: &Channel) -> Result<usize, RelayError> {
        let rows = self.store.claim_outbox(BATCH, LEASE).await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let exchange = self.broker.topology().names.task_exchange();
        // Send the whole batch, then collect the confirms: one round trip, not one per row.
        let mut sent = Vec::with_capacity(rows.len());
        for row in &rows {
            sent.push((row.id, broker::send(ch, &outgoing(&exchange, row)).await));
        }
        let (mut ok, mut failed) = (Vec::new(), Vec::new());
        for (id, confirm) in sent {
            let result = match confirm {
                Ok(c) => broker::confirmed(c, CONFIRM_TIMEOUT).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => ok.push(id),
                Err(e) => {
                    tracing::debug!(outbox_id = id, error = %e, "outbox row not confirmed");
                    failed.push(id);
                }
            }
        }
        self.store.settle_outbox(&ok, &failed).await?;
        metrics::published("outbox", ok.len() as u64);
        if !failed.is_empty() {
            metrics::publish_failed("outbox", failed.len() as u64);
            return Err(RelayError::Unconfirmed(failed.len()));
        }
        Ok(ok.len())
    }

    /// Shutdown: publish what is left while the broker is up and time remains.
    async fn drain(&self) {
        let Some(conn) = self.broker.current() else {
            return;
        };
        let drain = with_channel(&conn, async |ch| {
            while self.publish_batch(ch).await? > 0 {}
            Ok(())
        });
        let drained = tokio::time::timeout(self.shutdown_timeout, drain).await;
        match drained {
            Ok(Ok(())) => tracing::info!("outbox drained"),
            Ok(Err(e)) => tracing::warn!(error = %e, "outbox not fully drained at shutdown"),
            Err(_) => tracing::warn!("outbox not fully drained within the shutdown timeout"),
        }
    }
}

/// Runs `work` on a fresh confirm channel and closes the channel whatever the outcome: lapin
/// closes a dropped channel later, racing the connection's own close at shutdown.
async fn with_channel<T>(
    conn: &Connection,
    work: impl AsyncFnOnce(&Channel) -> Result<T, RelayError>,
) -> Result<T, RelayError> {
    let ch = broker::confirm_channel(conn)
        .await
        .map_err(PublishError::from)?;
    let result = work(&ch).await;
    let _ = ch.close(200, "relay done".into()).await;
    result
}

fn outgoing<'a>(exchange: &'a str, row: &'a OutboxRow) -> Outgoing<'a> {
    Outgoing {
        exchange,
        routing_key: &row.routing_key,
        body: &row.body,
        message_id: &row.task_id,
        headers: FieldTable::default(),
        mandatory: true,
    }
}
