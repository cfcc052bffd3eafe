//! A link between the app and the broker through the project's fault proxy (`faultproxy`,
//! embedded): a real socket fault that a test can cut, restore and slow down, without touching
//! the shared broker.

use std::{net::SocketAddr, time::Duration};

use faultproxy::{model::NewProxy, Server};
use serde_json::{json, Value};

const NAME: &str = "broker";

pub struct Link {
    pub addr: SocketAddr,
    server: Server,
    http: reqwest::Client,
}

impl Link {
    pub async fn start(upstream: SocketAddr) -> Link {
        let server = Server::start(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("fault proxy starts");
        let proxy = NewProxy {
            name: Some(NAME.into()),
            upstream: Some(upstream.to_string()),
            ..Default::default()
        };
        let created = server.populate(vec![proxy]).await.expect("proxy created");
        let addr = created[0].listen.parse().expect("listen address");
        Link {
            addr,
            server,
            http: reqwest::Client::new(),
        }
    }

    /// An AMQP URL like `AMQP_URL`, but through this link.
    pub fn amqp_url(&self) -> String {
        let mut url = url::Url::parse(&super::amqp_url()).expect("AMQP_URL parses");
        url.set_port(Some(self.addr.port())).expect("port");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.to_string()
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) {
        let mut req = self
            .http
            .request(method, format!("{}{path}", self.server.url()));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.expect("fault proxy answers");
        assert!(
            res.status().is_success(),
            "fault proxy refused {path}: {}",
            res.status()
        );
    }

    /// Closes every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.call(
            reqwest::Method::POST,
            &format!("/proxies/{NAME}"),
            Some(json!({"enabled": false})),
        )
        .await;
    }

    pub async fn restore(&self) {
        self.call(
            reqwest::Method::POST,
            &format!("/proxies/{NAME}"),
            Some(json!({"enabled": true})),
        )
        .await;
    }

    /// Delays what the broker sends back by `latency`; zero removes the delay.
    pub async fn set_latency(&self, latency: Duration) {
        if latency.is_zero() {
            self.call(
                reqwest::Method::DELETE,
                &format!("/proxies/{NAME}/toxics/latency_downstream"),
                None,
            )
            .await;
        } else {
            let toxic = json!({"type": "latency", "stream": "downstream", "attributes": {"latency": latency.as_millis()}});
            self.call(
                reqwest::Method::POST,
                &format!("/proxies/{NAME}/toxics"),
                Some(toxic),
            )
            .await;
        }
    }
}

/// The broker's address from `AMQP_URL`.
pub fn broker_addr() -> SocketAddr {
    let url = url::Url::parse(&super::amqp_url()).expect("AMQP_URL parses");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5672);
    std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .expect("broker host resolves")
        .next()
        .expect("an address")
}
