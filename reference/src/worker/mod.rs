//! The worker: consumes the task queue with a prefetch and bounded concurrency, and settles
//! each delivery once its outcome is durable. Reconnects with backoff when the broker goes away;
//! on shutdown stops consuming and finishes what it holds.

mod execute;
mod process;

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    message::Delivery,
    options::{
        BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions,
    },
    types::FieldTable,
    Channel, Connection,
};
use rand::Rng;
use tokio::{sync::Semaphore, task::JoinSet};
use tokio_util::sync::CancellationToken;

pub use execute::execute;
pub use process::{InfraError, Processor, Settle};

use crate::{
    backoff::Reconnect, broker, broker::Broker, config::AckStrategy, message::TaskMessage, metrics,
};

/// How long a delivery that met an infrastructure failure waits before going back to the queue,
/// so that an outage slows the worker down instead of spinning it.
const INFRA_RETRY_DELAY: Duration = Duration::from_secs(1);

pub struct Worker {
    pub broker: Broker,
    pub processor: Arc<Processor>,
    pub ack: AckStrategy,
    pub prefetch: u16,
    pub concurrency: u32,
    pub shutdown_timeout: Duration,
}

/// Why a consuming session ended.
enum SessionEnd {
    Cancelled,
    Lost(String),
}

impl Worker {
    /// Consumes until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let mut delays = Reconnect::default();
        while let Some(conn) = self.broker.connected(&cancel).await {
            let error = match self.session(&conn, &cancel, &mut delays).await {
                Ok(SessionEnd::Cancelled) => break,
                Ok(SessionEnd::Lost(why)) => why,
                Err(e) => e.to_string(),
            };
            tracing::warn!(%error, "consumer lost; reconnecting");
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(delays.next_delay()) => {}
            }
        }
        tracing::info!("worker stopped");
    }

    /// One consuming session on one connection.
    async fn session(
        &self,
        conn: &Connection,
        cancel: &CancellationToken,
        delays: &mut Reconnect,
    ) -> lapin::Result<SessionEnd> {
        let ch = conn.create_channel().await?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        let out = broker::confirm_channel(conn).await?;
        let tag = format!(
            "{}-worker-{}",
            self.broker.topology().names.prefix,
            uuid::Uuid::new_v4()
        );
        let opts = BasicConsumeOptions {
            no_ack: self.ack == AckStrategy::Auto,
            ..Default::default()
        };
        let mut consumer = ch
            .basic_consume(
                self.broker.topology().names.task_queue().into(),
                tag.as_str().into(),
                opts,
                FieldTable::default(),
            )
            .await?;
        tracing::info!(queue = %self.broker.topology().names.task_queue(), prefetch = self.prefetch, "consuming");
        // The session works: the next interruption starts with short delays again.
        delays.reset();
        let permits = Arc::new(Semaphore::new(self.concurrency as usize));
        let mut in_flight = JoinSet::new();
        let end = loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    let _ = ch.basic_cancel(tag.as_str().into(), BasicCancelOptions::default()).await;
                    break SessionEnd::Cancelled;
                }
                next = consumer.next() => match next {
                    Some(Ok(delivery)) => {
                        let permit = permits.clone().acquire_owned().await.expect("semaphore is never closed");
                        let (processor, out, ack) = (self.processor.clone(), out.clone(), self.ack);
                        in_flight.spawn(async move {
                            handle(&processor, delivery, &out, ack).await;
                            drop(permit);
                        });
                    }
                    Some(Err(e)) => break SessionEnd::Lost(e.to_string()),
                    None => break SessionEnd::Lost("the broker cancelled the consumer".into()),
                },
                Some(_) = in_flight.join_next() => {}
            }
        };
        self.finish_in_flight(in_flight).await;
        let _ = out.close(200, "worker done".into()).await;
        let _ = ch.close(200, "worker done".into()).await;
        Ok(end)
    }

    /// Lets deliveries already taken finish and settle, up to the shutdown timeout.
    async fn finish_in_flight(&self, mut in_flight: JoinSet<()>) {
        let n = in_flight.len();
        if n == 0 {
            return;
        }
        tracing::info!(in_flight = n, "finishing in-flight tasks");
        let all = async { while in_flight.join_next().await.is_some() {} };
        if tokio::time::timeout(self.shutdown_timeout, all)
            .await
            .is_err()
        {
            tracing::warn!(
                left = in_flight.len(),
                "in-flight tasks abandoned; the broker will redeliver them"
            );
            in_flight.abort_all();
        }
    }
}

/// Processes one delivery and settles it with the broker.
async fn handle(processor: &Processor, delivery: Delivery, out: &Channel, ack: AckStrategy) {
    metrics::delivered();
    let settle = match TaskMessage::decode(&delivery.data) {
        Err(e) => {
            tracing::warn!(error = %e, "undecodable message; dead-lettering");
            metrics::dead_lettered("undecodable");
            Settle::Reject
        }
        Ok(msg) => match processor.process(&msg, out).await {
            Ok(settle) => settle,
            Err(e) => {
                tracing::warn!(task_id = %msg.task_id, error = %e, "infrastructure failure; requeueing");
                let jitter = rand::rng().random_range(0..500);
                tokio::time::sleep(INFRA_RETRY_DELAY + Duration::from_millis(jitter)).await;
                Settle::Requeue
            }
        },
    };
    if ack == AckStrategy::Auto {
        return; // the broker already forgot the message
    }
    let settled = match settle {
        Settle::Ack => delivery.ack(BasicAckOptions::default()).await,
        // A rejected delivery goes to the queue's dead-letter exchange.
        Settle::Requeue | Settle::Reject => {
            let requeue = settle == Settle::Requeue;
            delivery
                .nack(BasicNackOptions {
                    requeue,
                    ..Default::default()
                })
                .await
        }
    };
    if let Err(e) = settled {
        // The channel is gone; the broker redelivers the message to the next consumer.
        tracing::warn!(error = %e, "could not settle delivery");
    }
}
