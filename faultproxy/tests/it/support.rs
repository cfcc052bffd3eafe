//! Test servers (echo, sink, source), a fault proxy server per test, and API helpers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultproxy::model::{ProxyInfo, ToxicInfo};
use faultproxy::Server;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// Generous bound for things that should happen quickly; only failures wait this long.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A fault proxy server with an HTTP client for its API.
pub struct Proxies {
    pub server: Server,
    pub http: reqwest::Client,
}

impl Proxies {
    pub async fn start() -> Proxies {
        let server = Server::start("127.0.0.1:0".parse().unwrap())
            .await
            .expect("API listens");
        Proxies {
            server,
            http: reqwest::Client::new(),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    /// Sends a request; returns the status and the JSON body (Null when empty).
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req.send().await.expect("API answers");
        let status = resp.status().as_u16();
        let text = resp.text().await.expect("API body");
        let value = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, value)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(body)).await
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, None).await
    }

    pub async fn delete(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::DELETE, path, None).await
    }

    /// A proxy on a free loopback port to `upstream`; returns it with its bound address.
    pub async fn proxy(&self, name: &str, upstream: SocketAddr) -> (ProxyInfo, SocketAddr) {
        let (status, body) = self
            .post(
                "/proxies",
                json!({"name": name, "listen": "127.0.0.1:0", "upstream": upstream.to_string()}),
            )
            .await;
        assert_eq!(status, 201, "create proxy: {body}");
        let info: ProxyInfo = serde_json::from_value(body).unwrap();
        let addr = info.listen.parse().expect("bound address");
        (info, addr)
    }

    pub async fn add_toxic(&self, proxy: &str, toxic: Value) -> ToxicInfo {
        let (status, body) = self.post(&format!("/proxies/{proxy}/toxics"), toxic).await;
        assert_eq!(status, 200, "add toxic: {body}");
        serde_json::from_value(body).unwrap()
    }

    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) {
        let (status, body) = self
            .delete(&format!("/proxies/{proxy}/toxics/{toxic}"))
            .await;
        assert_eq!(status, 204, "remove toxic: {body}");
    }

    pub async fn set_enabled(&self, proxy: &str, enabled: bool) -> ProxyInfo {
        let (status, body) = self
            .post(&format!("/proxies/{proxy}"), json!({"enabled": enabled}))
            .await;
        assert_eq!(status, 200, "update proxy: {body}");
        serde_json::from_value(body).unwrap()
    }
}

async fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Echoes every connection's bytes back until the client closes.
pub async fn echo_server() -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Records what each connection sends until it ends (EOF or error).
pub async fn sink_server() -> (SocketAddr, mpsc::UnboundedReceiver<Vec<u8>>) {
    let (l, addr) = listener().await;
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                let _ = s.read_to_end(&mut got).await;
                let _ = tx.send(got);
            });
        }
    });
    (addr, rx)
}

/// Sends `data` in one write to every connection, then closes it.
pub async fn source_server(data: Vec<u8>) -> SocketAddr {
    let (l, addr) = listener().await;
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let data = data.clone();
            tokio::spawn(async move {
                let _ = s.write_all(&data).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

pub async fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).await.expect("connects");
    s.set_nodelay(true).unwrap();
    s
}

/// One echo round trip of a small message.
pub async fn round_trip(s: &mut TcpStream) -> Duration {
    let msg = [42u8; 16];
    let mut back = [0u8; 16];
    let start = Instant::now();
    s.write_all(&msg).await.unwrap();
    tokio::time::timeout(PATIENCE, s.read_exact(&mut back))
        .await
        .expect("echo within patience")
        .expect("echo");
    assert_eq!(back, msg);
    start.elapsed()
}

/// Median of `n` echo round trips.
pub async fn median_round_trip(s: &mut TcpStream, n: usize) -> Duration {
    let mut times = Vec::with_capacity(n);
    for _ in 0..n {
        times.push(round_trip(s).await);
    }
    times.sort();
    times[n / 2]
}

/// Reads until EOF or error; returns the bytes and the error kind if any.
pub async fn read_until_closed(s: &mut TcpStream) -> (Vec<u8>, Option<std::io::ErrorKind>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(PATIENCE, s.read(&mut buf)).await {
            Err(_) => panic!("connection still open after {PATIENCE:?}"),
            Ok(Ok(0)) => return (got, None),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
            Ok(Err(e)) => return (got, Some(e.kind())),
        }
    }
}
