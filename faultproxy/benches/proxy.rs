//! What the proxy itself costs, with no toxics: an echo round trip of a small message
//! directly and through the proxy. The difference is the proxy's added latency.
//!
//! `cargo bench -p faultproxy --bench proxy`

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};

use criterion::{criterion_group, criterion_main, Criterion};
use faultproxy::Server;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::runtime::Runtime;

async fn echo_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            tokio::spawn(async move {
                let _ = s.set_nodelay(true);
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// Starts an echo server and a proxy to it; returns both addresses.
async fn setup() -> (Server, SocketAddr, SocketAddr) {
    let echo = echo_server().await;
    let server = Server::start("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let created = reqwest::Client::new()
        .post(format!("{}/proxies", server.url()))
        .json(&json!({"name": "bench", "listen": "127.0.0.1:0", "upstream": echo.to_string()}))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let proxied = created["listen"].as_str().unwrap().parse().unwrap();
    (server, echo, proxied)
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

fn round_trip(s: &mut TcpStream, msg: &[u8], back: &mut [u8]) {
    s.write_all(msg).unwrap();
    s.read_exact(back).unwrap();
}

fn bench(c: &mut Criterion) {
    let rt = Runtime::new().unwrap();
    let (_server, echo, proxied) = rt.block_on(setup());
    let msg = [7u8; 64];
    let mut back = [0u8; 64];
    let mut group = c.benchmark_group("echo_round_trip_64B");
    for (name, addr) in [("direct", echo), ("through_proxy", proxied)] {
        let mut s = connect(addr);
        group.bench_function(name, |b| b.iter(|| round_trip(&mut s, &msg, &mut back)));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
