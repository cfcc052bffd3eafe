//! A proxy: its addresses, its toxics, and, while enabled, its listener and connections.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::error::Error;
use crate::model::{ProxyInfo, ToxicInfo};
use crate::toxic::{Stream, Toxic};

/// What runs while a proxy is enabled.
struct Running {
    cancel: CancellationToken,
    tasks: TaskTracker,
}

/// A named proxy from `listen` to `upstream`.
pub(crate) struct Proxy {
    pub(crate) name: String,
    /// The address as requested until the first listen, then the bound one (a real port).
    pub(crate) listen: String,
    pub(crate) upstream: String,
    /// Every connection watches this, so that toxic changes reach open connections.
    toxics: watch::Sender<Vec<Toxic>>,
    running: Option<Running>,
    /// The server's token: stopping the server stops every proxy.
    server: CancellationToken,
}

impl Proxy {
    pub(crate) fn new(
        name: String,
        listen: String,
        upstream: String,
        server: CancellationToken,
    ) -> Proxy {
        Proxy {
            name,
            listen,
            upstream,
            toxics: watch::Sender::new(Vec::new()),
            running: None,
            server,
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.running.is_some()
    }

    /// Listens and starts accepting; a no-op when already enabled.
    pub(crate) async fn start(&mut self) -> Result<(), Error> {
        if self.running.is_some() {
            return Ok(());
        }
        let listener = TcpListener::bind(&self.listen)
            .await
            .map_err(|source| Error::Listen {
                addr: self.listen.clone(),
                source,
            })?;
        if let Ok(addr) = listener.local_addr() {
            self.listen = addr.to_string();
        }
        let running = Running {
            cancel: self.server.child_token(),
            tasks: TaskTracker::new(),
        };
        running.tasks.spawn(accept(
            listener,
            Arc::from(self.upstream.as_str()),
            self.toxics.subscribe(),
            running.cancel.clone(),
            running.tasks.clone(),
        ));
        tracing::info!(proxy = %self.name, listen = %self.listen, upstream = %self.upstream, "proxy enabled");
        self.running = Some(running);
        Ok(())
    }

    /// Stops listening and closes every connection; returns once they are closed, so that a
    /// client connecting afterwards is refused.
    pub(crate) async fn stop(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel.cancel();
            running.tasks.close();
            running.tasks.wait().await;
            tracing::info!(proxy = %self.name, "proxy disabled");
        }
    }

    pub(crate) fn toxics(&self) -> Vec<Toxic> {
        self.toxics.borrow().clone()
    }

    /// Changes the toxics if `change` succeeds; open connections see the change at once.
    pub(crate) fn modify_toxics<R>(
        &self,
        change: impl FnOnce(&mut Vec<Toxic>) -> Result<R, Error>,
    ) -> Result<R, Error> {
        // Callers hold the registry lock, so nothing changes between this copy and the send.
        let mut toxics = self.toxics();
        let result = change(&mut toxics)?;
        self.toxics.send_replace(toxics);
        Ok(result)
    }

    pub(crate) fn info(&self) -> ProxyInfo {
        ProxyInfo {
            name: self.name.clone(),
            listen: self.listen.clone(),
            upstream: self.upstream.clone(),
            enabled: self.enabled(),
            toxics: toxic_infos(&self.toxics.borrow()),
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(running) = &self.running {
            running.cancel.cancel();
        }
    }
}

/// Toxics as the API lists them: upstream ones first, each stream in the order added.
pub(crate) fn toxic_infos(toxics: &[Toxic]) -> Vec<ToxicInfo> {
    [Stream::Upstream, Stream::Downstream]
        .iter()
        .flat_map(|s| toxics.iter().filter(move |t| t.stream == *s))
        .map(ToxicInfo::from)
        .collect()
}

async fn accept(
    listener: TcpListener,
    upstream: Arc<str>,
    toxics: watch::Receiver<Vec<Toxic>>,
    cancel: CancellationToken,
    tasks: TaskTracker,
) {
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                tracing::debug!(%peer, %upstream, "connection accepted");
                tasks.spawn(crate::link::run(
                    client,
                    upstream.to_string(),
                    toxics.clone(),
                    cancel.clone(),
                ));
            }
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}
