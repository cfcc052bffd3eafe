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

const BATCH: u32 = 500;
/// A relay that dies holding rows releases them after this long.
const LEASE: Duration = Duration::from_secs(30);
/// How long a whole batch may take to be sent and confirmed; a third of the lease, so the
/// batch is settled long before another relay could take its rows over.
const BATCH_DEADLINE: Duration = Duration::from_secs(10);

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
            match self.relay_on(&conn, &cancel, &mut delays).await {
                Ok(()) => break,
                Err(e) => {
                    metrics::relay_interrupted();
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
        delays: &mut Reconnect,
    ) -> Result<(), RelayError> {
        with_channel(conn, async |ch| {
            while !cancel.is_cancelled() {
                let published = self.publish_batch(ch, cancel).await?;
                if published > 0 {
                    // The broker works again: the next outage starts with short delays.
                    delays.reset();
                    continue;
                }
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = self.wakeup.notified() => {}
                    _ = tokio::time::sleep(self.poll_interval) => {}
                }
            }
            Ok(())
        })
        .await
    }

    /// Publishes one leased batch; returns how many rows the broker confirmed.
    ///
    /// The batch has one deadline, well inside its lease, so that no other relay takes the rows
    /// over while this one still waits; and stops waiting at `cancel`, giving back the rows not
    /// yet confirmed so that the shutdown drain can publish them.
    async fn publish_batch(
        &self,
        ch: &Channel,
        cancel: &CancellationToken,
    ) -> Result<usize, RelayError> {
        let claim = self.store.claim_outbox(BATCH, LEASE).await?;
        if claim.rows.is_empty() {
            return Ok(0);
        }
        let mut confirmed = Vec::with_capacity(claim.rows.len());
        let batch = tokio::time::timeout(
            BATCH_DEADLINE,
            self.send_and_confirm(ch, &claim.rows, &mut confirmed),
        );
        tokio::select! {
            biased;
            _ = batch => {}
            _ = cancel.cancelled() => {}
        }
        let unconfirmed: Vec<i64> = claim
            .rows
            .iter()
            .map(|r| r.id)
            .filter(|id| !confirmed.contains(id))
            .collect();
        self.store
            .settle_outbox(&claim.owner, &confirmed, &unconfirmed)
            .await?;
        metrics::published("outbox", confirmed.len() as u64);
        if unconfirmed.is_empty() || cancel.is_cancelled() {
            return Ok(confirmed.len());
        }
        metrics::publish_failed("outbox", unconfirmed.len() as u64);
        Err(RelayError::Unconfirmed(unconfirmed.len()))
    }

    /// Sends the rows, then collects their confirms (one round trip, not one per row), adding
    /// the confirmed ids to `confirmed` as they come so that a caller that stops waiting keeps
    /// what was confirmed so far.
    async fn send_and_confirm(&self, ch: &Channel, rows: &[OutboxRow], confirmed: &mut Vec<i64>) {
        let exchange = self.broker.topology().names.task_exchange();
        let mut sent = Vec::with_capacity(rows.len());
        for row in rows {
            match broker::send(ch, &outgoing(&exchange, row)).await {
                Ok(confirm) => sent.push((row.id, confirm)),
                Err(e) => tracing::debug!(outbox_id = row.id, error = %e, "outbox row not sent"),
            }
        }
        for (id, confirm) in sent {
            // The caller's deadline bounds the batch; this one only satisfies the signature.
            match broker::confirmed(confirm, BATCH_DEADLINE).await {
                Ok(()) => confirmed.push(id),
                Err(e) => tracing::debug!(outbox_id = id, error = %e, "outbox row not confirmed"),
            }
        }
    }

    /// Shutdown: publish what is left while the broker is up and time remains.
    async fn drain(&self) {
        let Some(conn) = self.broker.current() else {
            return;
        };
        // Nothing cancels the drain itself but its timeout.
        let never = CancellationToken::new();
        let drain = with_channel(&conn, async |ch| {
            while self.publish_batch(ch, &never).await? > 0 {}
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
