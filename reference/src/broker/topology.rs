//! The AMQP topology of design §2 (names in [`contract::topology`]), declared idempotently.

use lapin::{
    options::{
        ExchangeDeclareOptions, ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions,
        QueueDeleteOptions,
    },
    types::{AMQPValue, FieldTable, LongString, ShortString},
    Channel, ExchangeKind,
};

pub use contract::topology::Names;

use crate::config::QueueType;

/// The topology's names and the shape of its queues.
#[derive(Debug, Clone)]
pub struct Topology {
    pub names: Names,
    pub queue_type: QueueType,
}

/// Routing key messages carry back from a retry queue.
pub const RETRY_ROUTING_KEY: &str = "task.retry";

impl Topology {
    /// Queue arguments shared by every queue: type, and for quorum queues dead-lettering that
    /// waits for the target's confirm (at-least-once) instead of RabbitMQ's at-most-once default.
    fn queue_args(&self) -> FieldTable {
        let mut args = FieldTable::default();
        if self.queue_type == QueueType::Quorum {
            args.insert("x-queue-type".into(), long_string("quorum"));
            args.insert(
                "x-dead-letter-strategy".into(),
                long_string("at-least-once"),
            );
            args.insert("x-overflow".into(), long_string("reject-publish"));
        }
        args
    }

    fn dead_lettering_to(&self, exchange: String, routing_key: Option<&str>) -> FieldTable {
        let mut args = self.queue_args();
        args.insert("x-dead-letter-exchange".into(), long_string(&exchange));
        if let Some(rk) = routing_key {
            args.insert("x-dead-letter-routing-key".into(), long_string(rk));
        }
        args
    }

    /// Declares everything; safe to repeat, and repeated on every reconnect.
    pub async fn declare(&self, ch: &Channel) -> lapin::Result<()> {
        let durable_exchange = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let durable_queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        let none = FieldTable::default;
        ch.exchange_declare(
            self.names.task_exchange().into(),
            ExchangeKind::Topic,
            durable_exchange,
            none(),
        )
        .await?;
        ch.exchange_declare(
            self.names.dead_letter_exchange().into(),
            ExchangeKind::Fanout,
            durable_exchange,
            none(),
        )
        .await?;
        ch.exchange_declare(
            self.names.events_exchange().into(),
            ExchangeKind::Topic,
            durable_exchange,
            none(),
        )
        .await?;

        let task_args = self.dead_lettering_to(self.names.dead_letter_exchange(), None);
        ch.queue_declare(self.names.task_queue().into(), durable_queue, task_args)
            .await?;
        ch.queue_bind(
            self.names.task_queue().into(),
            self.names.task_exchange().into(),
            "task.#".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;

        for delay in &self.names.retry_delays {
            let mut args =
                self.dead_lettering_to(self.names.task_exchange(), Some(RETRY_ROUTING_KEY));
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            ch.queue_declare(self.names.retry_queue(*delay).into(), durable_queue, args)
                .await?;
        }

        ch.queue_declare(
            self.names.dead_letter_queue().into(),
            durable_queue,
            self.queue_args(),
        )
        .await?;
        ch.queue_bind(
            self.names.dead_letter_queue().into(),
            self.names.dead_letter_exchange().into(),
            "".into(),
            QueueBindOptions::default(),
            none(),
        )
        .await?;
        Ok(())
    }

    /// Deletes everything `declare` made (tests and teardown); missing parts are fine.
    pub async fn delete(&self, conn: &lapin::Connection) -> lapin::Result<()> {
        let queues = self.names.queues();
        // A failed delete closes its channel, so each gets its own; the others are closed
        // explicitly rather than on drop, which would race the connection's close.
        for q in queues {
            let ch = conn.create_channel().await?;
            if ch
                .queue_delete(q.into(), QueueDeleteOptions::default())
                .await
                .is_ok()
            {
                ch.close(200, "deleted".into()).await?;
            }
        }
        for x in self.names.exchanges() {
            let ch = conn.create_channel().await?;
            if ch
                .exchange_delete(x.into(), ExchangeDeleteOptions::default())
                .await
                .is_ok()
            {
                ch.close(200, "deleted".into()).await?;
            }
        }
        Ok(())
    }
}

fn long_string(s: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(s.as_bytes().to_vec()))
}

/// Reads a string header of a delivery, if present.
pub fn header_str(headers: &Option<FieldTable>, name: &str) -> Option<String> {
    let key = ShortString::from(name);
    match headers.as_ref()?.inner().get(&key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorum_queues_dead_letter_at_least_once() {
        let names = Names {
            prefix: "p".into(),
            retry_delays: vec![],
        };
        let t = Topology {
            names,
            queue_type: QueueType::Quorum,
        };
        let args = t.dead_lettering_to("p.dlx".into(), None);
        let get = |k: &str| args.inner().get(&ShortString::from(k)).cloned();
        assert_eq!(get("x-queue-type"), Some(long_string("quorum")));
        assert_eq!(
            get("x-dead-letter-strategy"),
            Some(long_string("at-least-once"))
        );
        let classic = Topology {
            queue_type: QueueType::Classic,
            ..t
        };
        assert!(classic.queue_args().inner().is_empty());
    }
}
