//! Operations endpoints: liveness, readiness by dependency, Prometheus metrics.

use std::time::Duration;

use axum::{
    extract::State,
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    broker::Broker,
    envelope::{json_response, ok, Code, Envelope},
    store::Store,
};

/// What readiness checks, per process.
#[derive(Clone)]
pub struct OpsState {
    pub store: Store,
    pub broker: Broker,
    pub redis: Option<redis::aio::ConnectionManager>,
    /// False for an outbox API, which accepts tasks while the broker is away.
    pub broker_required: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// `up` or `down`.
    pub store: &'static str,
    /// `up`, `blocked` (alarm: publishers blocked) or `down`.
    pub broker: &'static str,
    pub broker_required: bool,
    /// `up` or `down`; absent without Redis.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<&'static str>,
}

const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

fn up(ok: bool) -> &'static str {
    if ok {
        "up"
    } else {
        "down"
    }
}

/// Liveness: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Envelope<String>)))]
pub async fn healthz() -> Response {
    ok("alive")
}

/// Readiness: 200 when the dependencies this process needs answer, else 503; data says which.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Envelope<Readiness>), (status = 503, body = Envelope<Readiness>)))]
pub async fn readyz(State(s): State<OpsState>) -> Response {
    let store_up = tokio::time::timeout(CHECK_TIMEOUT, s.store.ping())
        .await
        .unwrap_or(false);
    let broker = match (s.broker.is_connected(), s.broker.is_blocked()) {
        (true, false) => "up",
        (true, true) => "blocked",
        (false, _) => "down",
    };
    let redis = match s.redis.clone() {
        Some(mut conn) => {
            let cmd = redis::cmd("PING");
            let ping = cmd.query_async::<String>(&mut conn);
            Some(up(matches!(
                tokio::time::timeout(CHECK_TIMEOUT, ping).await,
                Ok(Ok(_))
            )))
        }
        None => None,
    };
    let ready = store_up && (broker == "up" || !s.broker_required) && redis != Some("down");
    let data = Readiness {
        ready,
        store: up(store_up),
        broker,
        broker_required: s.broker_required,
        redis,
    };
    let (status, code, message) = if ready {
        (StatusCode::OK, Code::Ok, "ready")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Code::Unavailable,
            "not ready",
        )
    };
    let body = Envelope {
        code,
        message: message.into(),
        data: Some(data),
        errors: Vec::new(),
    };
    json_response(status, body.to_bytes())
}

/// Prometheus text exposition.
pub async fn metrics() -> Response {
    let mut res = crate::metrics::handle().render().into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    res
}
