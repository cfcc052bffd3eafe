//! The link to RabbitMQ: one connection per process, re-established with capped exponential
//! backoff after any failure, the topology re-declared each time; and confirmed publishing.

pub mod topology;

use std::{sync::Arc, time::Duration};

use futures_util::StreamExt;
use lapin::{
    options::{BasicPublishOptions, ConfirmSelectOptions},
    tcp::OwnedTLSConfig,
    types::FieldTable,
    uri::AMQPUri,
    BasicProperties, Channel, Connection, ConnectionProperties, DefaultConnectionBuilder, Event,
    PublisherConfirm,
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{backoff, config::redact_url, metrics};
pub use topology::Topology;

/// Why the broker could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("invalid AMQP URL: {0}")]
    BadUrl(String),
    /// `cause` is lapin's error, rendered once (as a `source` it would repeat in the chain).
    #[error("cannot connect to {url}: {cause}{}", tls_hint(cause))]
    Connect { url: String, cause: lapin::Error },
    #[error(
        "cannot declare the topology (a queue or exchange under this prefix may exist with other \
         arguments, e.g. another --queue-type; delete it or choose another --prefix): {0}"
    )]
    Topology(lapin::Error),
}

/// rustls's words for a plain-text answer to a TLS hello, translated.
fn tls_hint(cause: &lapin::Error) -> &'static str {
    if cause.to_string().contains("InvalidContentType") {
        " (the port does not speak TLS: amqps:// needs the broker's TLS listener, usually 5671)"
    } else {
        ""
    }
}

/// Why a publish did not reach the broker's safekeeping.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("broker not connected")]
    NotConnected,
    #[error("broker error: {0}")]
    Broker(#[from] lapin::Error),
    #[error("broker refused the message (nack)")]
    Nacked,
    #[error("message was unroutable and returned")]
    Unroutable,
    #[error("no confirm within {0:?}")]
    Timeout(Duration),
}

/// Handle to the process's broker connection; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    inner: Arc<Inner>,
}

struct Inner {
    uri: AMQPUri,
    tls: OwnedTLSConfig,
    display_url: String,
    name: String,
    topology: Topology,
    current: watch::Sender<Option<Arc<Connection>>>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("url", &self.inner.display_url)
            .finish()
    }
}

/// Adds a 10 s heartbeat and a 5 s connect timeout unless the URL sets them, so that a dead
/// peer behind a proxy is noticed in seconds rather than the broker's default minute.
fn prepare_uri(url: &str) -> Result<AMQPUri, BrokerError> {
    let mut uri: AMQPUri = url.parse().map_err(BrokerError::BadUrl)?;
    uri.query.heartbeat.get_or_insert(10);
    uri.query.connection_timeout.get_or_insert(5_000);
    Ok(uri)
}

impl Broker {
    /// Connects (retrying for up to `timeout`), declares the topology, and keeps the connection
    /// alive in the background until `cancel`. `tls` applies to `amqps://` URLs.
    pub async fn connect(
        url: &str,
        tls: OwnedTLSConfig,
        name: &str,
        topology: Topology,
        timeout: Duration,
        cancel: CancellationToken,
    ) -> Result<Broker, BrokerError> {
        let uri = prepare_uri(url)?;
        let display_url = redact_url(url);
        let first = backoff::retry_for(timeout, "broker", || {
            open(&uri, &tls, &display_url, name, &topology)
        })
        .await?;
        let (current, _) = watch::channel(Some(Arc::new(first)));
        let broker = Broker {
            inner: Arc::new(Inner {
                uri,
                tls,
                display_url,
                name: name.to_string(),
                topology,
                current,
            }),
        };
        metrics::broker_connected(true);
        tokio::spawn(broker.clone().supervise(cancel));
        Ok(broker)
    }

    pub fn topology(&self) -> &Topology {
        &self.inner.topology
    }

    /// The connection if it is up right now.
    pub fn current(&self) -> Option<Arc<Connection>> {
        self.inner
            .current
            .borrow()
            .clone()
            .filter(|c| c.status().connected())
    }

    pub fn is_connected(&self) -> bool {
        self.current().is_some()
    }

    /// True while the broker blocks publishers (memory or disk alarm).
    pub fn is_blocked(&self) -> bool {
        self.current().is_some_and(|c| c.status().blocked())
    }

    /// Waits for a live connection; `None` once `cancel` fires.
    pub async fn connected(&self, cancel: &CancellationToken) -> Option<Arc<Connection>> {
        let mut rx = self.inner.current.subscribe();
        loop {
            if let Some(conn) = self.current() {
                return Some(conn);
            }
            tokio::select! {
                _ = cancel.cancelled() => return None,
                changed = rx.changed() => if changed.is_err() { return None },
                // The watch only changes on reconnect; re-check a dying connection's status too.
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Closes the connection cleanly (shutdown).
    pub async fn close(&self) {
        if let Some(conn) = self.inner.current.send_replace(None) {
            let _ = conn.close(200, "shutdown".into()).await;
        }
        metrics::broker_connected(false);
    }

    async fn supervise(self, cancel: CancellationToken) {
        let mut delays = backoff::Reconnect::default();
        loop {
            let conn = self.inner.current.borrow().clone();
            if let Some(conn) = conn {
                watch_until_broken(&conn, &cancel).await;
            }
            if cancel.is_cancelled() {
                return;
            }
            self.inner.current.send_replace(None);
            metrics::broker_connected(false);
            tracing::warn!(url = %self.inner.display_url, "broker connection lost; reconnecting");
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tokio::time::sleep(delays.next_delay()) => {}
                }
                let i = &self.inner;
                match open(&i.uri, &i.tls, &i.display_url, &i.name, &i.topology).await {
                    Ok(conn) => {
                        tracing::info!(url = %i.display_url, "broker connection re-established");
                        i.current.send_replace(Some(Arc::new(conn)));
                        metrics::broker_connected(true);
                        delays.reset();
                        break;
                    }
                    Err(e) => tracing::warn!(error = %e, "broker reconnect failed"),
                }
            }
        }
    }
}

async fn open(
    uri: &AMQPUri,
    tls: &OwnedTLSConfig,
    display_url: &str,
    name: &str,
    topology: &Topology,
) -> Result<Connection, BrokerError> {
    let props = ConnectionProperties::default().with_connection_name(name.into());
    let failed = |cause| BrokerError::Connect {
        url: display_url.to_string(),
        cause,
    };
    let conn = DefaultConnectionBuilder::new()
        .map_err(failed)?
        .with_uri(uri.clone())
        .with_properties(props)
        .with_tls_config(tls.clone())
        .connect()
        .await
        .map_err(failed)?;
    let declared = async {
        let ch = conn.create_channel().await?;
        topology.declare(&ch).await?;
        ch.close(200, "declared".into()).await
    };
    if let Err(e) = declared.await {
        let _ = conn.close(200, "topology failed".into()).await;
        return Err(BrokerError::Topology(e));
    }
    Ok(conn)
}

/// Returns when the connection errors, closes, or `cancel` fires.
async fn watch_until_broken(conn: &Connection, cancel: &CancellationToken) {
    let mut events = Box::pin(conn.events_listener());
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            event = events.next() => match event {
                Some(Event::Error(e)) => {
                    tracing::warn!(error = %e, "broker connection error");
                    return;
                }
                Some(Event::ConnectionBlocked(reason)) => tracing::warn!(%reason, "broker blocks publishers"),
                Some(Event::ConnectionUnblocked) => tracing::info!("broker unblocked publishers"),
                Some(_) => {}
                None => return,
            },
            _ = tick.tick() => if !conn.status().connected() { return },
        }
    }
}

/// A channel in confirm mode, for publishing that must not lose messages.
pub async fn confirm_channel(conn: &Connection) -> lapin::Result<Channel> {
    let ch = conn.create_channel().await?;
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    Ok(ch)
}

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub body: &'a [u8],
    pub message_id: &'a str,
    pub headers: FieldTable,
    /// Ask the broker to return the message when no queue takes it.
    pub mandatory: bool,
}

impl Outgoing<'_> {
    fn properties(&self) -> BasicProperties {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into())
            .with_message_id(self.message_id.into())
            .with_timestamp(now)
            .with_headers(self.headers.clone())
    }
}

/// Sends a message; the returned confirm resolves when the broker has it (confirm channels).
pub async fn send(ch: &Channel, msg: &Outgoing<'_>) -> Result<PublisherConfirm, PublishError> {
    let opts = BasicPublishOptions {
        mandatory: msg.mandatory,
        ..Default::default()
    };
    Ok(ch
        .basic_publish(
            msg.exchange.into(),
            msg.routing_key.into(),
            opts,
            msg.body,
            msg.properties(),
        )
        .await?)
}

/// Waits for the broker's confirm: an ack for a routed message, within `timeout`.
pub async fn confirmed(confirm: PublisherConfirm, timeout: Duration) -> Result<(), PublishError> {
    let confirmation = tokio::time::timeout(timeout, confirm)
        .await
        .map_err(|_| PublishError::Timeout(timeout))??;
    if !confirmation.is_ack() {
        return Err(PublishError::Nacked);
    }
    if confirmation.take_message().is_some() {
        return Err(PublishError::Unroutable);
    }
    Ok(())
}

/// Publishes and waits for the confirm.
pub async fn publish_confirmed(
    ch: &Channel,
    msg: &Outgoing<'_>,
    timeout: Duration,
) -> Result<(), PublishError> {
    confirmed(send(ch, msg).await?, timeout).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_gets_heartbeat_and_timeout_unless_set() {
        let u = prepare_uri("amqp://guest:guest@127.0.0.1:5672/%2f").unwrap();
        assert_eq!(u.query.heartbeat, Some(10));
        assert_eq!(u.query.connection_timeout, Some(5_000));
        let u = prepare_uri("amqp://127.0.0.1:5672/%2f?heartbeat=3").unwrap();
        assert_eq!(u.query.heartbeat, Some(3));
        assert!(prepare_uri("http://x").is_err());
    }
}
