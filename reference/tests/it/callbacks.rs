//! Result callbacks: signed, retried with backoff, one event id across retries, allow-listed.

use std::{
    collections::{BTreeSet, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{extract::State, http::HeaderMap, http::StatusCode, routing::post, Router};
use reference::{callbacks, Mode};
use serde_json::{json, Value};

use crate::support::{process::Proc, wait_until, World};

/// One received callback: headers, body and when it arrived.
type Call = (HeaderMap, Vec<u8>, Instant);

#[derive(Clone, Default)]
struct Sink {
    calls: Arc<Mutex<Vec<Call>>>,
    failures_left: Arc<Mutex<u32>>,
    /// How long each next call waits before its answer (a slow receiver), front first.
    delays: Arc<Mutex<VecDeque<Duration>>>,
}

impl Sink {
    fn event_ids(&self) -> Vec<String> {
        let calls = self.calls.lock().unwrap();
        calls
            .iter()
            .map(|(h, _, _)| h["x-event-id"].to_str().unwrap().to_string())
            .collect()
    }
}

async fn receive(
    State(sink): State<Sink>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    sink.calls
        .lock()
        .unwrap()
        .push((headers, body.to_vec(), Instant::now()));
    let delay = sink.delays.lock().unwrap().pop_front();
    if let Some(delay) = delay {
        tokio::time::sleep(delay).await;
    }
    let mut left = sink.failures_left.lock().unwrap();
    if *left > 0 {
        *left -= 1;
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::NO_CONTENT
    }
}

async fn start_sink(failures: u32) -> (Sink, String) {
    let sink = Sink {
        failures_left: Arc::new(Mutex::new(failures)),
        ..Default::default()
    };
    let app = Router::new()
        .route("/hook", post(receive))
        .with_state(sink.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (sink, url)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_are_signed_retried_and_keep_their_event_id() {
    let mut world = World::new("callbacks");
    let app = world
        .start(Mode::All, &["--callback-secret", "s3cret"])
        .await;
    let (sink, url) = start_sink(2).await;

    let id = app
        .client
        .submit_ok(&json!({"type": "echo", "payload": "hi", "callback_url": url}))
        .await;
    // Two failures, retried after 1 s and 2 s, then delivered.
    let delivered = wait_until(Duration::from_secs(15), || async {
        sink.calls.lock().unwrap().len() >= 3
    })
    .await;
    assert!(delivered, "callback retried until it succeeds");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let calls = sink.calls.lock().unwrap().clone();
    assert_eq!(calls.len(), 3, "no call after the success");

    let event_ids = sink.event_ids();
    assert!(
        event_ids.iter().all(|e| *e == event_ids[0]),
        "one event id across retries: {event_ids:?}"
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // Backed off: never sooner than 1 s, then 2 s (a slow machine only adds to the gaps).
    for (pair, least) in calls.windows(2).zip([1000, 2000]) {
        let gap = pair[1].2 - pair[0].2;
        assert!(
            gap >= Duration::from_millis(least - 100),
            "retried after {gap:?}"
        );
    }
    for (headers, body, _) in &calls {
        let signature = headers["x-signature"].to_str().unwrap();
        assert!(
            callbacks::verify_fresh("s3cret", signature, body, now, 60),
            "signature verifies and is stamped with the time of sending: {signature}"
        );
        assert!(!callbacks::verify("other", signature, body));
        let event: Value = serde_json::from_slice(body).unwrap();
        assert_eq!(
            (event["task"]["id"].as_str(), event["type"].as_str()),
            (Some(id.as_str()), Some("task.succeeded"))
        );
        assert_eq!(event["event_id"].as_str(), Some(event_ids[0].as_str()));
    }
    app.stop().await;
}

/// A receiver that never accepts is called `--callback-max-attempts` times, 1 s then 2 s apart,
/// and then given up: never called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_is_given_up_after_its_attempts() {
    let mut world = World::new("give-up");
    let app = world
        .start(Mode::All, &["--callback-max-attempts", "3"])
        .await;
    let (sink, url) = start_sink(u32::MAX).await;
    app.client
        .submit_ok(&json!({"type": "echo", "payload": "hi", "callback_url": url}))
        .await;
    let attempted = wait_until(Duration::from_secs(15), || async {
        sink.calls.lock().unwrap().len() >= 3
    })
    .await;
    assert!(attempted, "three attempts");
    // The next attempt would have come 4 s after the third.
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(sink.calls.lock().unwrap().len(), 3, "given up after three");
    app.stop().await;
}

/// A callback being sent is leased to the worker sending it (for three callback timeouts): a
/// second worker does not send it again while the receiver is slow, and takes it over once the
/// first died in the middle of the call.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_callback_is_leased_to_one_worker_until_that_worker_dies() {
    let world = World::new("lease");
    let args = world.args(&["--callback-timeout", "2s"]);
    let api = Proc::start("api", &args, world.dir.path()).await;
    let mut first = Proc::start("worker", &args, world.dir.path()).await;
    let mut second = Proc::start("worker", &args, world.dir.path()).await;
    let (sink, url) = start_sink(0).await;
    let callback = json!({"type": "echo", "callback_url": url});

    // Slow answers, polled all the while by the other worker's dispatcher.
    sink.delays
        .lock()
        .unwrap()
        .extend([Duration::from_secs(1); 3]);
    for _ in 0..3 {
        api.client.submit_ok(&callback).await;
    }
    let sent = wait_until(Duration::from_secs(15), || async {
        sink.calls.lock().unwrap().len() >= 3
    })
    .await;
    assert!(sent, "three callbacks sent");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let ids = sink.event_ids();
    let distinct: BTreeSet<_> = ids.iter().collect();
    assert_eq!(
        (ids.len(), distinct.len()),
        (3, 3),
        "each sent once: {ids:?}"
    );

    // Its sender dies while the receiver holds the call; another worker sends it again.
    second.kill();
    sink.delays
        .lock()
        .unwrap()
        .push_back(Duration::from_secs(60));
    api.client.submit_ok(&callback).await;
    let arrived = wait_until(Duration::from_secs(15), || async {
        sink.calls.lock().unwrap().len() >= 4
    })
    .await;
    assert!(arrived, "the fourth callback reached the receiver");
    first.kill();
    let _third = Proc::start("worker", &args, world.dir.path()).await;
    let resent = wait_until(Duration::from_secs(20), || async {
        sink.calls.lock().unwrap().len() >= 5
    })
    .await;
    let ids = sink.event_ids();
    assert!(
        resent && ids[4] == ids[3],
        "the dead worker's callback is sent again after its lease: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_hosts_must_be_allow_listed() {
    let mut world = World::new("allow");
    let app = world
        .start(Mode::Api, &["--callback-allow", "hooks.example:8443"])
        .await;
    let r = app
        .client
        .submit(
            "k",
            &json!({"type": "echo", "callback_url": "http://127.0.0.1:9/x"}),
        )
        .await;
    // A well-formed URL the server will not call: 422, as the contract documents.
    r.expect(422, "CALLBACK_NOT_ALLOWED");
    app.client
        .submit(
            "k2",
            &json!({"type": "echo", "callback_url": "https://hooks.example:8443/cb"}),
        )
        .await
        .expect(202, "OK");
    app.stop().await;
}
