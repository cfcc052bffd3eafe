//! How the API hands an accepted task to the broker, per `--publish`.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use lapin::{types::FieldTable, Channel};
use tokio::sync::{Mutex, Notify};

use crate::{
    broker::{self, Broker, Outgoing, PublishError},
    config::PublishStrategy,
    idempotency::{KeyLease, StoredResponse},
    metrics,
    store::{NewTask, Store, StoreError},
};

/// How long a request waits for the broker's confirm (`--publish confirm`).
const CONFIRM_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a task could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("could not publish: {0}")]
    Publish(#[from] PublishError),
}

/// The API's publishing strategy.
#[derive(Clone)]
pub struct Publisher {
    strategy: PublishStrategy,
    store: Store,
    broker: Broker,
    /// Wakes the outbox relay when a row is written.
    relay_wakeup: Arc<Notify>,
    /// The channel of direct publishing, replaced after a failure.
    channel: Arc<Mutex<Option<Channel>>>,
}

impl Publisher {
    pub fn new(strategy: PublishStrategy, store: Store, broker: Broker) -> Self {
        Publisher {
            strategy,
            store,
            broker,
            relay_wakeup: Arc::new(Notify::new()),
            channel: Arc::new(Mutex::new(None)),
        }
    }

    pub fn relay_wakeup(&self) -> Arc<Notify> {
        self.relay_wakeup.clone()
    }

    pub fn strategy(&self) -> PublishStrategy {
        self.strategy
    }

    /// Tells the relay that outbox rows were written.
    pub fn wake_relay(&self) {
        self.relay_wakeup.notify_one();
    }

    fn label(&self) -> &'static str {
        match self.strategy {
            PublishStrategy::Outbox => "outbox",
            PublishStrategy::Confirm => "confirm",
            PublishStrategy::FireAndForget => "fire-and-forget",
        }
    }

    /// Makes the task durable and on its way in the request, and stores `response` under the
    /// held key (the confirm and fire-and-forget strategies; the outbox writes key, task and
    /// outbox row at once with [`Store::submit`]). `published` is set once the broker has the
    /// message, so that a caller who gives up or sees the key's completion fail keeps the task
    /// rather than undoing it. On an error the caller undoes the submission
    /// ([`Store::abandon_submission`]), which also covers a submission it gave up waiting for.
    pub async fn submit(
        &self,
        task: &NewTask,
        lease: &KeyLease,
        response: &StoredResponse,
        published: &AtomicBool,
    ) -> Result<(), SubmitError> {
        self.store.insert_task(task, false, None).await?;
        match self.publish_direct(task).await {
            Ok(()) => {
                published.store(true, Ordering::SeqCst);
                metrics::published(self.label(), 1);
                Ok(self.store.complete_key(lease, response).await?)
            }
            Err(e) => {
                metrics::publish_failed(self.label(), 1);
                Err(e.into())
            }
        }
    }

    async fn publish_direct(&self, task: &NewTask) -> Result<(), PublishError> {
        let confirms = self.strategy == PublishStrategy::Confirm;
        let ch = self.channel(confirms).await?;
        let message = task.message();
        let (exchange, routing_key, body, id) = (
            self.broker.topology().names.task_exchange(),
            message.routing_key(),
            message.encode(),
            task.id.to_string(),
        );
        let out = Outgoing {
            exchange: &exchange,
            routing_key: &routing_key,
            body: &body,
            message_id: &id,
            headers: FieldTable::default(),
            mandatory: confirms,
        };
        let sent = broker::send(&ch, &out).await;
        let result = match sent {
            // The naive variant stops here: the frame is written, whatever becomes of it.
            Ok(_) if !confirms => Ok(()),
            Ok(confirm) => broker::confirmed(confirm, CONFIRM_TIMEOUT).await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            *self.channel.lock().await = None;
        }
        result
    }

    /// Closes the direct-publishing channel (shutdown), before the connection closes.
    pub async fn close(&self) {
        if let Some(ch) = self.channel.lock().await.take() {
            let _ = ch.close(200, "publisher stopped".into()).await;
        }
    }

    async fn channel(&self, confirms: bool) -> Result<Channel, PublishError> {
        let mut slot = self.channel.lock().await;
        if let Some(ch) = slot.as_ref().filter(|c| c.status().connected()) {
            return Ok(ch.clone());
        }
        let conn = self.broker.current().ok_or(PublishError::NotConnected)?;
        let ch = if confirms {
            broker::confirm_channel(&conn).await?
        } else {
            conn.create_channel().await?
        };
        *slot = Some(ch.clone());
        Ok(ch)
    }
}
