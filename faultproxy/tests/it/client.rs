//! The unmodified `toxiproxy_rust` client drives the server end to end.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use toxiproxy_rust::client::Client;
use toxiproxy_rust::proxy::ProxyPack;

use crate::support::{echo_server, Proxies};

/// One echo round trip on a fresh blocking connection.
fn blocking_round_trip(addr: SocketAddr) -> Duration {
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let start = Instant::now();
    s.write_all(b"ping").unwrap();
    let mut back = [0u8; 4];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"ping");
    start.elapsed()
}

fn toxic_count(client: &Client, name: &str) -> usize {
    client.find_proxy(name).unwrap().proxy_pack.toxics.len()
}

/// Everything the client offers, in the order a test suite would use it. The client is
/// blocking (reqwest 0.11), hence the plain thread.
fn drive(client: &Client, echo: SocketAddr) {
    assert!(client.is_running());
    assert!(client.version().unwrap().contains("version"));

    let proxies = client
        .populate(vec![ProxyPack::new(
            "echo".into(),
            "127.0.0.1:0".into(),
            echo.to_string(),
        )])
        .unwrap();
    let listen: SocketAddr = proxies[0].proxy_pack.listen.parse().unwrap();
    assert_ne!(listen.port(), 0, "populate reports the bound port");

    let proxy = client.find_and_reset_proxy("echo").unwrap();
    proxy
        .with_latency("downstream".into(), 100, 0, 1.0)
        .apply(|| {
            let rtt = blocking_round_trip(listen);
            assert!(
                rtt >= Duration::from_millis(100),
                "latency applied: {rtt:?}"
            );
        })
        .unwrap();
    assert_eq!(toxic_count(client, "echo"), 0, "apply removes its toxics");

    proxy
        .with_down(|| assert!(TcpStream::connect(listen).is_err(), "down refuses"))
        .unwrap();
    blocking_round_trip(listen);

    proxy
        .with_bandwidth("upstream".into(), 1000, 1.0)
        .with_slicer("downstream".into(), 64, 8, 10, 1.0)
        .with_slow_close("downstream".into(), 10, 1.0)
        .with_limit_data("upstream".into(), 1 << 20, 1.0)
        .with_timeout("upstream".into(), 5000, 0.0);
    let toxics = proxy.toxics().unwrap();
    assert_eq!(toxics.len(), 5);
    let slicer = toxics
        .iter()
        .find(|t| t.name == "slicer_downstream")
        .unwrap();
    assert_eq!(slicer.attributes["average_size"], 64);
    blocking_round_trip(listen);

    let all = client.all().unwrap();
    assert_eq!(all["echo"].proxy_pack.toxics.len(), 5);
    proxy.disable().unwrap();
    assert!(!client.find_proxy("echo").unwrap().proxy_pack.enabled);
    client.reset().unwrap();
    let after = client.find_proxy("echo").unwrap().proxy_pack;
    assert!(
        after.enabled && after.toxics.is_empty(),
        "reset enables and clears"
    );

    proxy.delete().unwrap();
    assert!(client.all().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn toxiproxy_rust_drives_it_end_to_end() {
    let p = Proxies::start().await;
    let echo = echo_server().await;
    let api = p.server.api_addr();
    tokio::task::spawn_blocking(move || drive(&Client::new(api), echo))
        .await
        .expect("client scenario");
}
