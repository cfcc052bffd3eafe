//! Middleware of seed 2.3: auth, rate limiting, timeouts, metrics, and the envelope guard that
//! turns any bare error response made below it into the envelope.

use std::{sync::Arc, time::Duration, time::Instant};

use axum::{
    extract::{MatchedPath, Request, State},
    http::{header, HeaderValue, Method, StatusCode},
    middleware::Next,
    response::{IntoResponse, Response},
};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::{
    envelope::{ApiError, Code},
    metrics,
};

/// What a presented token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    ReadWrite,
    ReadOnly,
}

/// The configured tokens, kept as SHA-256 digests so that comparisons take the same time
/// whatever the presented token's length.
#[derive(Clone, Default)]
pub struct Tokens {
    read_write: Option<[u8; 32]>,
    read_only: Option<[u8; 32]>,
}

impl Tokens {
    pub fn new(read_write: Option<&str>, read_only: Option<&str>) -> Self {
        let digest = |t: &str| -> [u8; 32] { Sha256::digest(t.as_bytes()).into() };
        Tokens {
            read_write: read_write.map(digest),
            read_only: read_only.map(digest),
        }
    }

    fn is_open(&self) -> bool {
        self.read_write.is_none() && self.read_only.is_none()
    }

    fn role(&self, presented: &str) -> Option<Role> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let matches = |t: &Option<[u8; 32]>| {
            t.as_ref()
                .map(|t| bool::from(t.ct_eq(&digest)))
                .unwrap_or(false)
        };
        // Both comparisons always run.
        let (rw, ro) = (matches(&self.read_write), matches(&self.read_only));
        if rw {
            Some(Role::ReadWrite)
        } else if ro {
            Some(Role::ReadOnly)
        } else {
            None
        }
    }
}

/// Bearer-token auth: 401 without a valid token, 403 for a read-only token on a write.
pub async fn auth(State(tokens): State<Arc<Tokens>>, req: Request, next: Next) -> Response {
    if tokens.is_open() {
        return next.run(req).await;
    }
    let unauthorized =
        |msg: &str| ApiError::new(StatusCode::UNAUTHORIZED, Code::Auth, msg).into_response();
    let mut values = req.headers().get_all(header::AUTHORIZATION).iter();
    let presented = match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|s| s.strip_prefix("Bearer "))
            .map(str::trim),
        (None, _) => return unauthorized("missing bearer token"),
        (Some(_), Some(_)) => return unauthorized("more than one Authorization header"),
    };
    let Some(role) = presented.and_then(|t| tokens.role(t)) else {
        return unauthorized("invalid bearer token");
    };
    let safe = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    if role == Role::ReadOnly && !safe {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            Code::Auth,
            "this token may only read",
        )
        .into_response();
    }
    next.run(req).await
}

pub type Limiter = governor::DefaultDirectRateLimiter;

/// Builds the limiter of `--rate-limit` / `--rate-burst`.
pub fn limiter(rate: std::num::NonZeroU32, burst: Option<std::num::NonZeroU32>) -> Arc<Limiter> {
    let quota = governor::Quota::per_second(rate).allow_burst(burst.unwrap_or(rate));
    Arc::new(governor::RateLimiter::direct(quota))
}

/// 429 in the envelope past the configured rate.
pub async fn rate_limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    if limiter.check().is_err() {
        let mut res = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            Code::RateLimited,
            "rate limit exceeded",
        )
        .into_response();
        res.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return res;
    }
    next.run(req).await
}

/// 503 in the envelope when handling takes longer than the limit. A task submission keeps
/// running in its own task, so a timeout never leaves it half-done.
pub async fn timeout(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(res) => res,
        Err(_) => {
            ApiError::unavailable(format!("request timed out after {limit:?}")).into_response()
        }
    }
}

/// The access log: one line per request, with its request id. Never headers: they carry
/// tokens.
pub async fn access_log(req: Request, next: Next) -> Response {
    if !tracing::enabled!(target: "access", tracing::Level::INFO) {
        return next.run(req).await;
    }
    let started = Instant::now();
    // Cheap clones (shared bytes), kept for the line written once the response is known.
    let (method, uri) = (req.method().clone(), req.uri().clone());
    let request_id = req.headers().get("x-request-id").cloned();
    let res = next.run(req).await;
    tracing::info!(
        target: "access",
        %method,
        path = uri.path(),
        status = res.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        request_id = request_id.as_ref().and_then(|v| v.to_str().ok()).unwrap_or("-"),
        "request"
    );
    res
}

/// Request count and latency by route template (never the raw path: bounded cardinality).
pub async fn record_metrics(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_string();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".to_string());
    let res = next.run(req).await;
    metrics::http_request(
        &method,
        &route,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    res
}

/// Headers of an error response worth keeping when its body is replaced.
const KEPT_HEADERS: [header::HeaderName; 3] =
    [header::ALLOW, header::RETRY_AFTER, header::WWW_AUTHENTICATE];

/// Replaces a non-JSON error body (from axum, tower-http or anything below) with the envelope.
pub async fn envelope_guard(req: Request, next: Next) -> Response {
    let res = next.run(req).await;
    let status = res.status();
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if status.as_u16() < 400 || is_json {
        return res;
    }
    let mut replaced = ApiError::from_status(status).into_response();
    for name in KEPT_HEADERS {
        if let Some(v) = res.headers().get(&name) {
            replaced.headers_mut().insert(name, v.clone());
        }
    }
    replaced
}

/// A panic in a handler becomes a 500 envelope; the details go to the log only.
pub fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    ApiError::internal(format!("handler panicked: {detail}")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_grant_roles() {
        let t = Tokens::new(Some("rw"), Some("ro"));
        assert_eq!(t.role("rw"), Some(Role::ReadWrite));
        assert_eq!(t.role("ro"), Some(Role::ReadOnly));
        assert_eq!(t.role("nope"), None);
        assert_eq!(t.role(""), None);
        assert!(!t.is_open());
        assert!(Tokens::new(None, None).is_open());
    }
}
