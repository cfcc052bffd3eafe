//! A TCP fault proxy speaking Toxiproxy's HTTP API.
//!
//! [`Server`] runs the API; every proxy created through it listens on its own address and
//! relays each accepted connection to its upstream, applying the proxy's toxics (latency,
//! bandwidth, slow_close, timeout, reset_peer, slicer, limit_data) per direction. Any
//! Toxiproxy 2.x client drives it, `toxiproxy_rust` included.
//!
//! What differs from Toxiproxy, on purpose:
//!
//! - Toxic changes (add, update, remove) reach connections that are already open at once,
//!   even idle ones, and never drop or reorder bytes in flight.
//! - `timeout` with `timeout: 0` *holds* the data (the proxy stops reading, TCP backpressure
//!   does the rest) instead of swallowing it, so removing the toxic resumes a consistent byte
//!   stream: a long-lived connection such as AMQP's survives a short blackhole.
//! - `reset_peer` fires `timeout` ms after it starts applying to a connection, with or without
//!   traffic, and data passes until then.
//! - `latency` delays each chunk from its own arrival: pipelined chunks do not stack.
//! - A proxy created without `listen` listens on `127.0.0.1:0`; the answer and later reads
//!   show the port it got.
//! - Toxicity outside [0, 1] and negative attributes are refused (400).

mod api;
mod error;
mod flow;
mod link;
pub mod model;
mod proxy;
mod registry;
pub mod toxic;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use api::VERSION;
pub use error::Error;
use model::{NewProxy, ProxyInfo};
use registry::Registry;

/// A running fault proxy server: its HTTP API and every proxy created through it.
///
/// Dropping it stops everything too, without waiting; [`Server::shutdown`] waits.
pub struct Server {
    addr: SocketAddr,
    registry: Arc<Registry>,
    cancel: CancellationToken,
    api: Option<JoinHandle<()>>,
}

impl Server {
    /// Serves the API on `listen` (port 0 picks a free port; see [`Server::api_addr`]).
    pub async fn start(listen: SocketAddr) -> std::io::Result<Server> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let cancel = CancellationToken::new();
        let registry = Arc::new(Registry::new(cancel.clone()));
        let app = api::router(registry.clone());
        let stop = cancel.clone().cancelled_owned();
        let api = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app)
                .with_graceful_shutdown(stop)
                .await
            {
                tracing::error!(error = %e, "API server failed");
            }
        });
        tracing::info!(%addr, "fault proxy API listening");
        Ok(Server {
            addr,
            registry,
            cancel,
            api: Some(api),
        })
    }

    /// The address the API listens on.
    pub fn api_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API's base URL, e.g. `http://127.0.0.1:8474`.
    pub fn url(&self) -> String {
        let ip = if self.addr.ip().is_unspecified() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            self.addr.ip()
        };
        format!("http://{}", SocketAddr::new(ip, self.addr.port()))
    }

    /// Creates or replaces proxies, as `POST /populate` does.
    pub async fn populate(&self, proxies: Vec<NewProxy>) -> Result<Vec<ProxyInfo>, Error> {
        match self.registry.populate(proxies).await {
            (done, None) => Ok(done),
            (_, Some(e)) => Err(e),
        }
    }

    /// Every proxy, by name.
    pub async fn proxies(&self) -> std::collections::BTreeMap<String, ProxyInfo> {
        self.registry.list().await
    }

    /// Stops the API, closes every proxy listener and connection, and waits until they are.
    pub async fn shutdown(mut self) {
        self.cancel.cancel();
        if let Some(api) = self.api.take() {
            let _ = api.await;
        }
        self.registry.stop_all().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}
