//! Links: fault proxies between the parts of the system under test (API↔broker, worker↔broker,
//! worker↔store), driven through Toxiproxy's HTTP API.
//!
//! With `TOXIPROXY_URL` set, a real Toxiproxy serves them; otherwise the embedded
//! [`faultproxy`] server does. Either way the harness talks to it with the unmodified
//! `toxiproxy_rust` client, which is blocking, so every call runs in `spawn_blocking`. The one
//! toxic that client lacks, `reset_peer`, is posted to the same API directly.

use std::{collections::HashMap, net::SocketAddr};

use serde_json::json;
use toxiproxy_rust::{client::Client as ToxiClient, proxy::ProxyPack};

#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot start the embedded fault proxy: {0}")]
    Start(std::io::Error),
    #[error("TOXIPROXY_URL `{0}` is not host:port or http://host:port")]
    BadUrl(String),
    #[error("fault proxy at {url} does not answer")]
    Unreachable { url: String },
    #[error("fault proxy refused `{action}` on link `{link}`: {reason}")]
    Refused {
        action: String,
        link: String,
        reason: String,
    },
}

/// A direction through a link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// From the upstream (the broker, the store) back to the process.
    #[default]
    Downstream,
    /// From the process to the upstream.
    Upstream,
}

impl Stream {
    fn name(self) -> &'static str {
        match self {
            Stream::Downstream => "downstream",
            Stream::Upstream => "upstream",
        }
    }
}

/// The fault proxy server in use, and the links created on it.
pub struct Links {
    /// `host:port` of the Toxiproxy API.
    api: String,
    /// The embedded server, when started here; taken by [`Links::stop`].
    embedded: std::sync::Mutex<Option<faultproxy::Server>>,
}

fn api_address(url: &str) -> Result<String, LinkError> {
    let trimmed = url.trim_end_matches('/');
    let host_port = trimmed.strip_prefix("http://").unwrap_or(trimmed);
    if host_port.contains('/') || !host_port.contains(':') {
        return Err(LinkError::BadUrl(url.to_string()));
    }
    Ok(host_port.to_string())
}

impl Links {
    /// Uses `TOXIPROXY_URL` when set, else starts the embedded server on a free port.
    pub async fn start() -> Result<Links, LinkError> {
        let links = match std::env::var("TOXIPROXY_URL") {
            Ok(url) if !url.is_empty() => Links {
                api: api_address(&url)?,
                embedded: Default::default(),
            },
            _ => {
                let server = faultproxy::Server::start(SocketAddr::from(([127, 0, 0, 1], 0)))
                    .await
                    .map_err(LinkError::Start)?;
                Links {
                    api: server.api_addr().to_string(),
                    embedded: Some(server).into(),
                }
            }
        };
        let api = links.api.clone();
        if !links
            .blocking("version", "-", move |c| Ok(c.is_running()))
            .await?
        {
            return Err(LinkError::Unreachable {
                url: format!("http://{api}"),
            });
        }
        Ok(links)
    }

    /// Stops the embedded server and waits until its API and every proxy are closed. Dropping
    /// the links stops it too, but without waiting: a caller that checks right after could
    /// still reach it.
    pub async fn stop(&self) {
        let server = self.embedded.lock().expect("links lock").take();
        if let Some(server) = server {
            server.shutdown().await;
        }
    }

    /// The API's base URL.
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Runs a `toxiproxy_rust` call off the async runtime.
    async fn blocking<T, F>(&self, action: &str, link: &str, call: F) -> Result<T, LinkError>
    where
        T: Send + 'static,
        F: FnOnce(&ToxiClient) -> Result<T, String> + Send + 'static,
    {
        let api = self.api.clone();
        let refused = |reason: String| LinkError::Refused {
            action: action.to_string(),
            link: link.to_string(),
            reason,
        };
        // The client panics on some failures; a panic here is a refusal, not a crash.
        tokio::task::spawn_blocking(move || call(&ToxiClient::new(api.as_str())))
            .await
            .map_err(|e| refused(format!("client panicked: {e}")))?
            .map_err(refused)
    }

    /// Creates link `name` to `upstream`; returns the address to connect through.
    pub async fn create(&self, name: &str, upstream: SocketAddr) -> Result<SocketAddr, LinkError> {
        // A port of the harness's own, not the kernel's: a link that is down stops listening,
        // and must find its port still free when it comes up.
        let port = crate::infra::free_port().map_err(|e| LinkError::Refused {
            action: "create".into(),
            link: name.into(),
            reason: e.to_string(),
        })?;
        let pack = ProxyPack::new(
            name.to_string(),
            format!("127.0.0.1:{port}"),
            upstream.to_string(),
        );
        let created = self
            .blocking("create", name, move |c| c.populate(vec![pack]))
            .await?;
        let listen = created
            .first()
            .map(|p| p.proxy_pack.listen.clone())
            .unwrap_or_default();
        listen.parse().map_err(|_| LinkError::Refused {
            action: "create".into(),
            link: name.into(),
            reason: format!("listen address `{listen}` is not host:port"),
        })
    }

    /// Adds latency (milliseconds, with jitter) to one direction: what the upstream sends back
    /// (`downstream`), or what the process sends, such as a consumer's acks (`upstream`).
    pub async fn latency(
        &self,
        name: &str,
        ms: u32,
        jitter_ms: u32,
        stream: Stream,
    ) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("latency", name, move |c| {
            c.find_proxy(&n)?
                .with_latency(stream.name().into(), ms, jitter_ms, 1.0);
            Ok(())
        })
        .await
    }

    /// Limits both directions to `kb_per_s`.
    pub async fn bandwidth(&self, name: &str, kb_per_s: u32) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("bandwidth", name, move |c| {
            let p = c.find_proxy(&n)?;
            p.with_bandwidth("downstream".into(), kb_per_s, 1.0);
            p.with_bandwidth("upstream".into(), kb_per_s, 1.0);
            Ok(())
        })
        .await
    }

    /// Blackhole: nothing passes in `stream`'s direction, or either way when `None`; after
    /// `close_after_ms` (if not 0) the connections close.
    pub async fn blackhole(
        &self,
        name: &str,
        close_after_ms: u32,
        stream: Option<Stream>,
    ) -> Result<(), LinkError> {
        let n = name.to_string();
        let streams = match stream {
            Some(one) => vec![one],
            None => vec![Stream::Downstream, Stream::Upstream],
        };
        self.blocking("timeout", name, move |c| {
            let p = c.find_proxy(&n)?;
            for s in streams {
                p.with_timeout(s.name().into(), close_after_ms, 1.0);
            }
            Ok(())
        })
        .await
    }

    /// Splits what the upstream sends into small delayed writes.
    pub async fn slicer(
        &self,
        name: &str,
        average: u32,
        variation: u32,
        delay_us: u32,
    ) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("slicer", name, move |c| {
            c.find_proxy(&n)?
                .with_slicer("downstream".into(), average, variation, delay_us, 1.0);
            Ok(())
        })
        .await
    }

    /// Closes connections once `bytes` have passed in one direction: what comes back from the
    /// upstream (`downstream`), or what is sent to it (`upstream`).
    pub async fn limit_data(
        &self,
        name: &str,
        bytes: u32,
        stream: Stream,
    ) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("limit_data", name, move |c| {
            c.find_proxy(&n)?
                .with_limit_data(stream.name().into(), bytes, 1.0);
            Ok(())
        })
        .await
    }

    /// Delays closes by `ms`.
    pub async fn slow_close(&self, name: &str, ms: u32) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("slow_close", name, move |c| {
            c.find_proxy(&n)?
                .with_slow_close("downstream".into(), ms, 1.0);
            Ok(())
        })
        .await
    }

    /// Resets (TCP RST) connections `after_ms` after the toxic starts.
    pub async fn reset_peer(&self, name: &str, after_ms: u32) -> Result<(), LinkError> {
        let toxic = json!({"name": "reset_peer_downstream", "type": "reset_peer", "stream": "downstream",
            "toxicity": 1.0, "attributes": {"timeout": after_ms}});
        let url = format!("{}/proxies/{name}/toxics", self.url());
        let refused = |reason: String| LinkError::Refused {
            action: "reset_peer".into(),
            link: name.into(),
            reason,
        };
        let res = reqwest::Client::new()
            .post(url)
            .json(&toxic)
            .send()
            .await
            .map_err(|e| refused(e.to_string()))?;
        if res.status().is_success() {
            Ok(())
        } else {
            Err(refused(format!("status {}", res.status())))
        }
    }

    /// Down: refuses new connections and cuts open ones.
    pub async fn down(&self, name: &str) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("disable", name, move |c| c.find_proxy(&n)?.disable())
            .await
    }

    /// Up again after [`Links::down`].
    pub async fn up(&self, name: &str) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("enable", name, move |c| c.find_proxy(&n)?.enable())
            .await
    }

    /// Removes every toxic of the link.
    pub async fn clear(&self, name: &str) -> Result<(), LinkError> {
        let n = name.to_string();
        self.blocking("clear", name, move |c| {
            c.find_proxy(&n)?.delete_all_toxics()
        })
        .await
    }

    /// Every link by name, with its listen address.
    pub async fn list(&self) -> Result<HashMap<String, String>, LinkError> {
        let all = self.blocking("list", "*", |c| c.all()).await?;
        Ok(all
            .into_iter()
            .map(|(name, p)| (name, p.proxy_pack.listen))
            .collect())
    }

    /// Enables every link and removes every toxic.
    pub async fn reset(&self) -> Result<(), LinkError> {
        self.blocking("reset", "*", |c| c.reset()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toxiproxy_urls_become_api_addresses() {
        assert_eq!(
            api_address("http://127.0.0.1:8474").unwrap(),
            "127.0.0.1:8474"
        );
        assert_eq!(api_address("127.0.0.1:8474/").unwrap(), "127.0.0.1:8474");
        assert!(api_address("http://host/path").is_err());
        assert!(api_address("nohostport").is_err());
    }
}
