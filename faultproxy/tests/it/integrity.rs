//! No byte is lost, duplicated or reordered while toxics come and go under a stream.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{connect, echo_server, Proxies, PATIENCE};

/// Toxics that leave a connection open, each added then removed in turn.
fn churn_toxics() -> Vec<Value> {
    vec![
        json!({"name": "lat_down", "type": "latency", "attributes": {"latency": 5, "jitter": 4}}),
        json!({"name": "lat_up", "type": "latency", "stream": "upstream", "attributes": {"latency": 3}}),
        json!({"name": "slice", "type": "slicer", "attributes": {"average_size": 700, "size_variation": 600}}),
        json!({"name": "hold_up", "type": "timeout", "stream": "upstream"}),
        json!({"name": "bw", "type": "bandwidth", "stream": "upstream", "attributes": {"rate": 20000}}),
        json!({"name": "hold_down", "type": "timeout"}),
        json!({"name": "noop", "type": "noop"}),
        json!({"name": "half", "type": "latency", "toxicity": 0.5, "attributes": {"latency": 2}}),
    ]
}

/// Numbered 4-byte words, so that a misplaced byte names where it came from.
fn numbered_words(bytes: usize) -> Vec<u8> {
    (0..(bytes / 4) as u32).flat_map(u32::to_be_bytes).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_byte_is_lost_or_reordered_while_toxics_change() {
    let p = Arc::new(Proxies::start().await);
    let (_, addr) = p.proxy("churn", echo_server().await).await;
    let (mut r, mut w) = connect(addr).await.into_split();
    let data = numbered_words(3 << 20);

    let sent = data.clone();
    let writer = tokio::spawn(async move {
        let mut rng = rand::rngs::SmallRng::seed_from_u64(3);
        let mut at = 0;
        while at < sent.len() {
            let n = rng.random_range(1..=12 * 1024).min(sent.len() - at);
            w.write_all(&sent[at..at + n]).await.unwrap();
            at += n;
            // Paced, so that the stream spans many toxic changes.
            tokio::time::sleep(Duration::from_millis(rng.random_range(0..=8))).await;
        }
        w.shutdown().await.unwrap();
    });

    let stop = Arc::new(AtomicBool::new(false));
    let churner = {
        let (p, stop) = (p.clone(), stop.clone());
        tokio::spawn(async move {
            let mut changes = 0;
            while !stop.load(Ordering::Relaxed) {
                for toxic in churn_toxics() {
                    let name = toxic["name"].as_str().unwrap().to_string();
                    p.add_toxic("churn", toxic).await;
                    tokio::time::sleep(Duration::from_millis(4)).await;
                    p.remove_toxic("churn", &name).await;
                    changes += 2;
                }
            }
            changes
        })
    };

    let mut back = Vec::with_capacity(data.len());
    tokio::time::timeout(4 * PATIENCE, r.read_to_end(&mut back))
        .await
        .expect("stream completes")
        .expect("read");
    stop.store(true, Ordering::Relaxed);
    let changes = churner.await.unwrap();
    writer.await.unwrap();

    println!(
        "{} bytes echoed through {changes} toxic changes",
        back.len()
    );
    if let Some(at) = back.iter().zip(&data).position(|(a, b)| a != b) {
        panic!("first wrong byte at offset {at} of {}", data.len());
    }
    assert_eq!(back.len(), data.len(), "bytes lost or added");
    assert!(changes >= 100, "only {changes} toxic changes happened");
}
