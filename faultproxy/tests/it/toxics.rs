//! Each toxic on real sockets, and the proxy's life cycle (disable, enable, delete).

use std::io::ErrorKind;
use std::time::{Duration, Instant};

use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::{
    connect, echo_server, median_round_trip, read_until_closed, round_trip, sink_server,
    source_server, Proxies, PATIENCE,
};

const MS: Duration = Duration::from_millis(1);

fn numbered(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_adds_its_delay_to_an_open_connection_and_leaves_with_it() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("lat", echo_server().await).await;
    let mut s = connect(addr).await;
    let base = median_round_trip(&mut s, 9).await;

    p.add_toxic(
        "lat",
        json!({"type": "latency", "attributes": {"latency": 100}}),
    )
    .await;
    let slowed = median_round_trip(&mut s, 9).await;
    let added = slowed.saturating_sub(base);
    println!("round trip: {base:?} without toxic, {slowed:?} with 100 ms latency (+{added:?})");
    assert!(
        (90 * MS..=110 * MS).contains(&added),
        "latency of 100 ms added {added:?} to a round trip"
    );

    p.remove_toxic("lat", "latency_downstream").await;
    let after = median_round_trip(&mut s, 9).await;
    assert!(after < 50 * MS, "round trip {after:?} after the toxic went");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_does_not_stack_on_pipelined_chunks() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("pipe", echo_server().await).await;
    p.add_toxic(
        "pipe",
        json!({"type": "latency", "stream": "upstream", "attributes": {"latency": 100}}),
    )
    .await;
    let (mut r, mut w) = connect(addr).await.into_split();
    let reader = tokio::spawn(async move {
        let mut arrivals = Vec::new();
        let mut chunk = [0u8; 8];
        for _ in 0..20 {
            r.read_exact(&mut chunk).await.unwrap();
            arrivals.push((u64::from_be_bytes(chunk), Instant::now()));
        }
        arrivals
    });
    let mut sent = Vec::new();
    for i in 0..20u64 {
        sent.push(Instant::now());
        w.write_all(&i.to_be_bytes()).await.unwrap();
        // Separate segments, so that the proxy reads them as separate chunks.
        tokio::time::sleep(2 * MS).await;
    }
    let arrivals = tokio::time::timeout(PATIENCE, reader)
        .await
        .unwrap()
        .unwrap();
    for (i, (n, at)) in arrivals.iter().enumerate() {
        assert_eq!(*n, i as u64, "in order");
        let delay = *at - sent[i];
        assert!(delay >= 100 * MS, "chunk {i} took {delay:?}");
    }
    let last = arrivals[19].1 - sent[19];
    println!("last of 20 pipelined chunks arrived {last:?} after it was sent");
    assert!(
        last < 300 * MS,
        "delays stacked: the last chunk took {last:?}"
    );
}

#[tokio::test]
async fn a_disabled_proxy_refuses_and_cuts_then_listens_again_on_the_same_address() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("down", echo_server().await).await;
    let mut open = connect(addr).await;
    round_trip(&mut open).await;

    let info = p.set_enabled("down", false).await;
    assert!(!info.enabled);
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "refuses new connections"
    );
    let (bytes, _) = read_until_closed(&mut open).await;
    assert!(bytes.is_empty(), "open connection cut");

    let info = p.set_enabled("down", true).await;
    assert_eq!(info.listen, addr.to_string());
    round_trip(&mut connect(addr).await).await;
}

#[tokio::test]
async fn deleting_a_proxy_closes_its_listener_and_connections() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("gone", echo_server().await).await;
    let mut open = connect(addr).await;
    round_trip(&mut open).await;
    let (status, _) = p.delete("/proxies/gone").await;
    assert_eq!(status, 204);
    assert!(TcpStream::connect(addr).await.is_err());
    read_until_closed(&mut open).await;
}

#[tokio::test]
async fn reset_peer_resets_the_client_without_traffic() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("rst", echo_server().await).await;
    let mut open = connect(addr).await;
    round_trip(&mut open).await;
    p.add_toxic(
        "rst",
        json!({"type": "reset_peer", "attributes": {"timeout": 0}}),
    )
    .await;
    let (_, error) = read_until_closed(&mut open).await;
    assert_eq!(error, Some(ErrorKind::ConnectionReset));

    // New connections get reset too, after the timeout.
    p.post(
        "/proxies/rst/toxics/reset_peer_downstream",
        json!({"attributes": {"timeout": 100}}),
    )
    .await;
    let mut fresh = connect(addr).await;
    round_trip(&mut fresh).await;
    let (_, error) = read_until_closed(&mut fresh).await;
    assert_eq!(error, Some(ErrorKind::ConnectionReset));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeout_holds_the_data_and_releases_it_intact_on_removal() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("hold", echo_server().await).await;
    let (mut r, mut w) = connect(addr).await.into_split();
    p.add_toxic("hold", json!({"type": "timeout", "stream": "upstream"}))
        .await;
    let data = numbered(256 * 1024);
    let sent = data.clone();
    let writer = tokio::spawn(async move { w.write_all(&sent).await.map(|_| w) });

    let mut first = [0u8; 1];
    let early = tokio::time::timeout(300 * MS, r.read(&mut first)).await;
    assert!(
        early.is_err(),
        "nothing passes while the timeout toxic is there"
    );

    p.remove_toxic("hold", "timeout_upstream").await;
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(PATIENCE, r.read_exact(&mut back))
        .await
        .expect("released")
        .unwrap();
    assert!(back == data, "bytes intact after the hold");
    writer.await.unwrap().unwrap();
}

#[tokio::test]
async fn timeout_with_a_duration_closes_the_connection() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("to", echo_server().await).await;
    let mut open = connect(addr).await;
    p.add_toxic(
        "to",
        json!({"type": "timeout", "attributes": {"timeout": 100}}),
    )
    .await;
    open.write_all(b"lost").await.unwrap();
    let (bytes, _) = read_until_closed(&mut open).await;
    assert!(bytes.is_empty());
}

#[tokio::test]
async fn limit_data_closes_after_the_limit_in_each_direction() {
    let p = Proxies::start().await;
    let (sink, mut received) = sink_server().await;
    let (_, addr) = p.proxy("up", sink).await;
    p.add_toxic(
        "up",
        json!({"type": "limit_data", "stream": "upstream", "attributes": {"bytes": 100}}),
    )
    .await;
    let mut s = connect(addr).await;
    let _ = s.write_all(&numbered(1000)).await;
    let got = tokio::time::timeout(PATIENCE, received.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, numbered(100), "upstream got exactly the limit");
    read_until_closed(&mut s).await;

    let (_, addr) = p.proxy("down", source_server(numbered(10_000)).await).await;
    p.add_toxic(
        "down",
        json!({"type": "limit_data", "attributes": {"bytes": 1000}}),
    )
    .await;
    let (bytes, _) = read_until_closed(&mut connect(addr).await).await;
    assert_eq!(bytes, numbered(1000), "downstream got exactly the limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bandwidth_limits_the_rate_of_a_huge_chunk() {
    let p = Proxies::start().await;
    let data = numbered(200_000);
    let (_, addr) = p.proxy("bw", source_server(data.clone()).await).await;
    p.add_toxic(
        "bw",
        json!({"type": "bandwidth", "attributes": {"rate": 100}}),
    )
    .await;
    let start = Instant::now();
    let (bytes, error) = read_until_closed(&mut connect(addr).await).await;
    let took = start.elapsed();
    println!("200 kB at 100 KB/s took {took:?}");
    assert_eq!(error, None);
    assert!(bytes == data, "bytes intact");
    assert!(
        took >= Duration::from_millis(1600),
        "rate not limited: {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slicer_preserves_the_bytes() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("slice", echo_server().await).await;
    p.add_toxic(
        "slice",
        json!({"type": "slicer", "attributes": {"average_size": 10, "size_variation": 5, "delay": 50}}),
    )
    .await;
    let mut s = connect(addr).await;
    let data = numbered(20_000);
    s.write_all(&data).await.unwrap();
    let mut back = vec![0u8; data.len()];
    tokio::time::timeout(PATIENCE, s.read_exact(&mut back))
        .await
        .unwrap()
        .unwrap();
    assert!(back == data);
}

#[tokio::test]
async fn slow_close_delays_the_close_after_the_data() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("sc", source_server(b"bye".to_vec()).await).await;
    p.add_toxic(
        "sc",
        json!({"type": "slow_close", "attributes": {"delay": 300}}),
    )
    .await;
    let start = Instant::now();
    let (bytes, _) = read_until_closed(&mut connect(addr).await).await;
    assert_eq!(bytes, b"bye");
    assert!(
        start.elapsed() >= 300 * MS,
        "closed after {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn zero_toxicity_leaves_connections_alone() {
    let p = Proxies::start().await;
    let (_, addr) = p.proxy("tox", echo_server().await).await;
    p.add_toxic("tox", json!({"type": "timeout", "toxicity": 0.0}))
        .await;
    round_trip(&mut connect(addr).await).await;
}
