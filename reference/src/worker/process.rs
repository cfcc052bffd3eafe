//! One delivery's journey: deduplicate, start the attempt, execute, then finish, retry or
//! dead-letter, per the configured strategies.

use std::time::{Duration, Instant};

use lapin::{
    types::{AMQPValue, FieldTable},
    Channel,
};

use super::execute::execute;
use crate::{
    broker::{self, topology::Topology, Outgoing, PublishError},
    config::{DedupeStrategy, RetryStrategy},
    message::TaskMessage,
    metrics,
    model::{TaskSpec, TaskStatus},
    store::{Finish, FinishOutcome, StartOutcome, Store, StoreError},
};

const CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the seed-style Redis marks live.
const SETNX_TTL_SECS: u64 = 24 * 3600;

/// What to tell the broker about a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    Ack,
    /// Put it back in the queue (the seed's `requeue`, or an infrastructure failure).
    Requeue,
    /// Dead-letter it through the queue's dead-letter exchange.
    Reject,
}

/// A failure of the infrastructure rather than of the task: the delivery goes back to the queue
/// without a decision.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("publish: {0}")]
    Publish(#[from] PublishError),
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
}

/// Everything processing needs; shared by the worker's concurrent tasks.
pub struct Processor {
    pub store: Store,
    pub topology: Topology,
    pub dedupe: DedupeStrategy,
    pub retry: RetryStrategy,
    pub redis: Option<redis::aio::ConnectionManager>,
    /// Wakes the dispatcher when a task ended (its callback and event are owed).
    pub deliveries_owed: std::sync::Arc<tokio::sync::Notify>,
}

impl Processor {
    pub async fn process(&self, msg: &TaskMessage, out: &Channel) -> Result<Settle, InfraError> {
        let id = msg.task_id;
        if self.seen_before(id).await? {
            metrics::duplicate_skipped(self.dedupe_label());
            return Ok(Settle::Ack);
        }
        let attempt = match self.store.start_attempt(id).await? {
            StartOutcome::Missing => {
                tracing::warn!(task_id = %id, "message for an unknown task; dead-lettering");
                metrics::dead_lettered("unknown_task");
                return Ok(Settle::Reject);
            }
            StartOutcome::Terminal { .. } if self.dedupe != DedupeStrategy::None => {
                metrics::duplicate_skipped(self.dedupe_label());
                return Ok(Settle::Ack);
            }
            // Without deduplication a finished task is simply processed again (the naive way).
            StartOutcome::Terminal { attempts, .. } | StartOutcome::Started { attempts } => {
                attempts
            }
        };
        let started = Instant::now();
        match execute(&msg.spec, attempt).await {
            Ok(result) => self.succeed(msg, result, started).await,
            Err(error) => self.fail(msg, attempt, &error, started, out).await,
        }
    }

    /// The pre-check of the dedupe strategy. `redis-setnx` sets its mark here, before the work,
    /// exactly as the seed's snippet does.
    async fn seen_before(&self, id: uuid::Uuid) -> Result<bool, InfraError> {
        match self.dedupe {
            DedupeStrategy::Store => Ok(self.store.is_processed(&id.to_string()).await?),
            DedupeStrategy::RedisSetnx => {
                let mut redis = self
                    .redis
                    .clone()
                    .expect("validated: redis-setnx has a Redis URL");
                let set: Option<String> = redis::cmd("SET")
                    .arg(self.setnx_key(id))
                    .arg(1)
                    .arg("NX")
                    .arg("EX")
                    .arg(SETNX_TTL_SECS)
                    .query_async(&mut redis)
                    .await?;
                Ok(set.is_none())
            }
            DedupeStrategy::None => Ok(false),
        }
    }

    /// Releases the Redis mark of a failed attempt so that its retry is not taken for a duplicate.
    async fn forget_mark(&self, id: uuid::Uuid) -> Result<(), InfraError> {
        if let (DedupeStrategy::RedisSetnx, Some(redis)) = (self.dedupe, &self.redis) {
            let mut redis = redis.clone();
            let _: i64 = redis::cmd("DEL")
                .arg(self.setnx_key(id))
                .query_async(&mut redis)
                .await?;
        }
        Ok(())
    }

    fn setnx_key(&self, id: uuid::Uuid) -> String {
        format!("{}:processed:{id}", self.topology.names.prefix)
    }

    fn dedupe_label(&self) -> &'static str {
        match self.dedupe {
            DedupeStrategy::Store => "store",
            DedupeStrategy::RedisSetnx => "redis-setnx",
            DedupeStrategy::None => "none",
        }
    }

    async fn succeed(
        &self,
        msg: &TaskMessage,
        result: serde_json::Value,
        started: Instant,
    ) -> Result<Settle, InfraError> {
        let credit = match &msg.spec {
            TaskSpec::Credit(c) => Some(c.clone()),
            _ => None,
        };
        let finish = Finish {
            task_id: msg.task_id,
            status: TaskStatus::Success,
            result: Some(result),
            error: None,
            credit,
            mark_processed: self.dedupe == DedupeStrategy::Store,
        };
        match self.store.finish(&finish).await? {
            FinishOutcome::Done => {
                self.deliveries_owed.notify_one();
                metrics::finished(msg.spec.kind(), true, started.elapsed().as_secs_f64())
            }
            FinishOutcome::AlreadyProcessed => metrics::duplicate_skipped(self.dedupe_label()),
        }
        Ok(Settle::Ack)
    }

    async fn fail(
        &self,
        msg: &TaskMessage,
        attempt: i64,
        error: &str,
        started: Instant,
        out: &Channel,
    ) -> Result<Settle, InfraError> {
        metrics::attempt_failed(msg.spec.kind(), started.elapsed().as_secs_f64());
        self.forget_mark(msg.task_id).await?;
        let delays = &self.topology.names.retry_delays;
        let retry_delay = usize::try_from(attempt - 1)
            .ok()
            .and_then(|i| delays.get(i));
        match (self.retry, retry_delay) {
            (RetryStrategy::Requeue, _) => {
                tracing::info!(task_id = %msg.task_id, attempt, %error, "attempt failed; requeueing");
                self.store.retry_later(msg.task_id, error).await?;
                metrics::retried(msg.spec.kind());
                Ok(Settle::Requeue)
            }
            (RetryStrategy::Backoff, Some(delay)) => {
                tracing::info!(task_id = %msg.task_id, attempt, %error, retry_in = ?delay, "attempt failed; retrying");
                self.store.retry_later(msg.task_id, error).await?;
                let queue = self.topology.names.retry_queue(*delay);
                self.republish(out, "", &queue, msg, attempt, error).await?;
                metrics::retried(msg.spec.kind());
                Ok(Settle::Ack)
            }
            (RetryStrategy::Backoff, None) => {
                self.dead_letter(msg, attempt, error, started, out).await
            }
        }
    }

    /// Retries exhausted: dead-letters the task and marks it FAILED.
    async fn dead_letter(
        &self,
        msg: &TaskMessage,
        attempt: i64,
        error: &str,
        started: Instant,
        out: &Channel,
    ) -> Result<Settle, InfraError> {
        // Another copy of this message may have finished the task while this one ran; it has
        // already dead-lettered it.
        if self.seen_since_start(msg.task_id).await? {
            metrics::duplicate_skipped(self.dedupe_label());
            return Ok(Settle::Ack);
        }
        tracing::warn!(task_id = %msg.task_id, attempt, %error, "retries exhausted; dead-lettering");
        // Dead-letter first: a crash before the status is written repeats this step
        // rather than leaving a FAILED task missing from the dead-letter queue.
        let dlx = self.topology.names.dead_letter_exchange();
        self.republish(out, &dlx, "task.dead", msg, attempt, error)
            .await?;
        let finish = Finish {
            task_id: msg.task_id,
            status: TaskStatus::Failed,
            result: None,
            error: Some(error.to_string()),
            credit: None,
            mark_processed: self.dedupe == DedupeStrategy::Store,
        };
        // A copy that raced past the check above published to the dead-letter queue too, but
        // only the copy whose finish wins counts the task.
        match self.store.finish(&finish).await? {
            FinishOutcome::Done => {
                self.deliveries_owed.notify_one();
                metrics::dead_lettered("retries_exhausted");
                metrics::finished(msg.spec.kind(), false, started.elapsed().as_secs_f64());
            }
            FinishOutcome::AlreadyProcessed => metrics::duplicate_skipped(self.dedupe_label()),
        }
        Ok(Settle::Ack)
    }

    /// True when the store-dedupe mark appeared after [`Self::seen_before`] let this copy in.
    async fn seen_since_start(&self, id: uuid::Uuid) -> Result<bool, InfraError> {
        Ok(
            self.dedupe == DedupeStrategy::Store
                && self.store.is_processed(&id.to_string()).await?,
        )
    }

    /// Publishes the task again (to a retry queue or the dead-letter exchange) with confirms.
    async fn republish(
        &self,
        out: &Channel,
        exchange: &str,
        routing_key: &str,
        msg: &TaskMessage,
        attempt: i64,
        error: &str,
    ) -> Result<(), PublishError> {
        let mut headers = FieldTable::default();
        headers.insert("x-attempts".into(), AMQPValue::LongLongInt(attempt));
        headers.insert(
            "x-last-error".into(),
            AMQPValue::LongString(error.as_bytes().to_vec().into()),
        );
        let body = msg.encode();
        let id = msg.task_id.to_string();
        let outgoing = Outgoing {
            exchange,
            routing_key,
            body: &body,
            message_id: &id,
            headers,
            mandatory: true,
        };
        broker::publish_confirmed(out, &outgoing, CONFIRM_TIMEOUT).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{config::QueueType, store::NewTask};

    fn amqp_url() -> String {
        std::env::var("AMQP_URL").unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
    }

    /// A copy of a message that raced another past `seen_before` must not dead-letter the task
    /// the other copy already finished. The prefix's topology is never declared, so a publish
    /// to its dead-letter exchange would fail the channel and the test.
    #[tokio::test]
    async fn a_copy_that_lost_the_race_does_not_dead_letter_again() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let store = Store::connect(&url, Duration::from_secs(5)).await.unwrap();
        let msg = NewTask {
            id: uuid::Uuid::now_v7(),
            spec: TaskSpec::Poison(serde_json::json!({})),
            callback_url: None,
        };
        store.insert_task(&msg, false, None).await.unwrap();
        let winner = Finish {
            task_id: msg.id,
            status: TaskStatus::Failed,
            result: None,
            error: Some("poison".into()),
            credit: None,
            mark_processed: true,
        };
        assert_eq!(store.finish(&winner).await.unwrap(), FinishOutcome::Done);

        let conn = lapin::Connection::connect(&amqp_url(), Default::default())
            .await
            .expect("RabbitMQ reachable at AMQP_URL");
        let out = broker::confirm_channel(&conn).await.unwrap();
        let processor = Processor {
            store,
            topology: Topology {
                names: crate::broker::topology::Names {
                    prefix: format!("unit-dlq-race-{}", uuid::Uuid::new_v4().simple()),
                    retry_delays: vec![],
                },
                queue_type: QueueType::Classic,
            },
            dedupe: DedupeStrategy::Store,
            retry: RetryStrategy::Backoff,
            redis: None,
            deliveries_owed: Default::default(),
        };
        let settled = processor
            .dead_letter(&msg.message(), 1, "poison", Instant::now(), &out)
            .await;
        assert!(matches!(settled, Ok(Settle::Ack)), "{settled:?}");
        assert!(out.status().connected(), "nothing was published");
        let _ = conn.close(200, "test done".into()).await;
    }
}
