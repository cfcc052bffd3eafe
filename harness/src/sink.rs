//! A webhook sink for callbacks: records each delivery (the key from its path, event id, task,
//! status, whether the signature verifies and is stamped near now, arrival time on the
//! history's clock) and answers 204, or 500 for the first deliveries of each event when asked
//! to, to exercise retries, and after a delay when asked to, to play a slow receiver.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
};

use axum::{
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::post,
    Router,
};

use serde::{Deserialize, Serialize};

use crate::{final_state::CallbackRecord, history::History};

/// How the sink behaves as a receiver of callbacks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Receiver {
    /// The first this-many deliveries of each event are answered 500.
    pub fail_first: u32,
    /// Every answer waits this long (a slow receiver; past the sender's timeout, a failing one).
    pub delay_ms: u64,
}

/// How far a signature's timestamp may be from the sink's clock: the replay window receivers
/// commonly allow. A delivery stamped outside it counts as badly signed.
const SIGNATURE_TOLERANCE_SECS: i64 = 300;

#[derive(Clone)]
struct SinkState {
    secret: String,
    history: History,
    records: Arc<Mutex<Vec<CallbackRecord>>>,
    receiver: Receiver,
    failures: Arc<Mutex<HashMap<String, u32>>>,
}

/// A running sink; stops when dropped.
pub struct Sink {
    addr: SocketAddr,
    state: SinkState,
    server: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// Listens on a free loopback port. Signatures are checked with `secret`; answers as
    /// `receiver` says.
    pub async fn start(
        secret: &str,
        history: History,
        receiver: Receiver,
    ) -> std::io::Result<Sink> {
        let state = SinkState {
            secret: secret.to_string(),
            history,
            records: Arc::default(),
            receiver,
            failures: Arc::default(),
        };
        let app = Router::new()
            .route("/hook/{key}", post(receive))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Sink {
            addr,
            state,
            server,
        })
    }

    /// Base URL for [`crate::workload::Mix::callback_base`].
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every delivery so far, in arrival order.
    pub fn records(&self) -> Vec<CallbackRecord> {
        self.state.records.lock().expect("sink lock").clone()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn receive(
    State(s): State<SinkState>,
    Path(key): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let event: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let event_id = header(contract::EVENT_ID);
    let signature_valid = header(contract::SIGNATURE).is_some_and(|sig| {
        let now = unix_now();
        contract::signature::verify_fresh(&s.secret, &sig, &body, now, SIGNATURE_TOLERANCE_SECS)
    });
    let record = CallbackRecord {
        key: Some(key),
        event_id: event_id.clone(),
        task_id: event["task"]["id"].as_str().map(str::to_string),
        status: event["task"]["status"].as_str().map(str::to_string),
        signature_valid,
        time_ns: s.history.now_ns(),
    };
    s.records.lock().expect("sink lock").push(record);
    let status = {
        let mut failures = s.failures.lock().expect("sink lock");
        let failed = failures.entry(event_id.unwrap_or_default()).or_default();
        if *failed < s.receiver.fail_first {
            *failed += 1;
            StatusCode::INTERNAL_SERVER_ERROR
        } else {
            StatusCode::NO_CONTENT
        }
    };
    if s.receiver.delay_ms > 0 {
        tokio::time::sleep(std::time::Duration::from_millis(s.receiver.delay_ms)).await;
    }
    status
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delivers `body` signed with `secret`, stamped `age_secs` ago.
    async fn deliver(url: &str, secret: &str, body: &str, age_secs: i64) -> u16 {
        let sig = contract::signature::sign(secret, unix_now() - age_secs, body.as_bytes());
        reqwest::Client::new()
            .post(url)
            .header(contract::EVENT_ID, "e1")
            .header(contract::SIGNATURE, sig)
            .body(body.to_string())
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    #[tokio::test]
    async fn records_deliveries_and_fails_the_first_when_asked() {
        let sink = Sink::start(
            "s3cret",
            History::new(),
            Receiver {
                fail_first: 1,
                delay_ms: 0,
            },
        )
        .await
        .unwrap();
        let url = format!("{}/hook/key-1", sink.base_url());
        let body = r#"{"event_id":"e1","task":{"id":"t1","status":"SUCCESS"}}"#;
        assert_eq!(deliver(&url, "s3cret", body, 0).await, 500);
        assert_eq!(deliver(&url, "s3cret", body, 0).await, 204);
        assert_eq!(deliver(&url, "forged", body, 0).await, 204);
        assert_eq!(deliver(&url, "s3cret", body, 3600).await, 204);
        let r = sink.records();
        assert_eq!(r.len(), 4);
        assert_eq!(
            (
                r[0].key.as_deref(),
                r[0].task_id.as_deref(),
                r[0].status.as_deref()
            ),
            (Some("key-1"), Some("t1"), Some("SUCCESS"))
        );
        assert!(r[0].signature_valid && r[1].signature_valid);
        assert!(!r[2].signature_valid, "forged");
        assert!(!r[3].signature_valid, "stamped an hour ago");
    }
}
