//! A TCP forwarder between the app and the broker that a test can cut, restore and slow down:
//! a real socket fault without touching the shared broker.

use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::Duration,
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Mutex,
    task::JoinSet,
};

pub struct Forwarder {
    pub addr: SocketAddr,
    down: Arc<AtomicBool>,
    latency_ms: Arc<AtomicU64>,
    links: Arc<Mutex<JoinSet<()>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Forwarder {
    pub async fn start(upstream: SocketAddr) -> Forwarder {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let down = Arc::new(AtomicBool::new(false));
        let latency_ms = Arc::new(AtomicU64::new(0));
        let links = Arc::new(Mutex::new(JoinSet::new()));
        let (d, l, ls) = (down.clone(), latency_ms.clone(), links.clone());
        let accept = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if d.load(Ordering::SeqCst) {
                    drop(client); // refused: closed at once
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream).await else {
                    continue;
                };
                let mut set = ls.lock().await;
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                set.spawn(pipe(cr, sw, l.clone()));
                set.spawn(pipe(sr, cw, l.clone()));
            }
        });
        Forwarder {
            addr,
            down,
            latency_ms,
            links,
            accept,
        }
    }

    /// An AMQP URL like `AMQP_URL`, but through this forwarder.
    pub fn amqp_url(&self) -> String {
        let mut url = url::Url::parse(&super::amqp_url()).expect("AMQP_URL parses");
        url.set_port(Some(self.addr.port())).expect("port");
        url.set_host(Some("127.0.0.1")).expect("host");
        url.to_string()
    }

    /// Closes every open connection and refuses new ones.
    pub async fn cut(&self) {
        self.down.store(true, Ordering::SeqCst);
        self.links.lock().await.abort_all();
    }

    pub fn restore(&self) {
        self.down.store(false, Ordering::SeqCst);
    }

    /// Delays every chunk by `latency` in both directions.
    pub fn set_latency(&self, latency: Duration) {
        self.latency_ms
            .store(latency.as_millis() as u64, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    latency: Arc<AtomicU64>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = latency.load(Ordering::SeqCst);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
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
