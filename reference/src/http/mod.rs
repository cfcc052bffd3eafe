//! The HTTP server: routes of the contract and the middleware stack of seed 2.3.

mod cors;
mod extract;
mod middleware;
mod openapi;
mod ops;
mod tasks;
mod users;

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{DefaultBodyLimit, Request},
    http::StatusCode,
    middleware::{from_fn, from_fn_with_state},
    response::{IntoResponse, Response},
    routing::get,
    Router,
};
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer,
    compression::CompressionLayer,
    request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer},
    trace::{DefaultOnResponse, TraceLayer},
};
use tracing::Level;
use utoipa::OpenApi;
use utoipa_axum::{router::OpenApiRouter, routes};

pub use middleware::Tokens;
pub use ops::OpsState;

use crate::{
    cache::UserCache,
    callbacks::AllowList,
    config::{Compression, Tuning},
    envelope::{json_response, ApiError, Code},
    publisher::Publisher,
    store::Store,
};

/// What the API handlers share.
#[derive(Clone)]
pub struct ApiState {
    pub store: Store,
    pub cache: UserCache,
    pub publisher: Publisher,
    pub allow: Arc<AllowList>,
    /// How long an in-flight Idempotency-Key is held before another request may take it over.
    pub key_lease: Duration,
    /// How long a submission may run; shorter than the request timeout, so that its client
    /// hears the outcome, and than `key_lease`, so that the request holding a key gives up
    /// before another can take the key over.
    pub submit_timeout: Duration,
}

/// The OpenAPI document and the `/api/v1` routes it describes.
fn api_v1(state: ApiState) -> (Router, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(tasks::create))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::account))
        .with_state(state)
        .split_for_parts()
}

fn ops_routes(ops: OpsState) -> Router {
    Router::new()
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        .with_state(ops)
}

/// The API process's router: `/api/v1`, its OpenAPI document, and the ops endpoints.
pub fn api_router(state: ApiState, ops: OpsState, tokens: Tokens, tuning: &Tuning) -> Router {
    let (v1, mut doc) = api_v1(state);
    let (_, ops_doc) = OpenApiRouter::<OpsState>::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .split_for_parts();
    doc.merge(ops_doc);
    let doc = Arc::new(doc.to_json().expect("OpenAPI document serialises"));

    let mut v1 = v1.route_layer(from_fn_with_state(Arc::new(tokens), middleware::auth));
    if let Some(rate) = tuning.rate_limit {
        v1 = v1.route_layer(from_fn_with_state(
            middleware::limiter(rate, tuning.rate_burst),
            middleware::rate_limit,
        ));
    }
    let openapi = get(move || {
        let doc = doc.clone();
        async move { json_response(StatusCode::OK, doc.as_bytes().to_vec().into()) }
    });
    let router = Router::new()
        .merge(v1)
        .route("/api/v1/openapi.json", openapi)
        .merge(ops_routes(ops));
    with_common_layers(router, tuning)
}

/// A worker process's router: the ops endpoints only.
pub fn worker_router(ops: OpsState, tuning: &Tuning) -> Router {
    with_common_layers(ops_routes(ops), tuning)
}

/// Layers every response passes, outermost first: panics, request ids, access log, metrics,
/// gzip (unless `--compression off`), CORS, the envelope guard, the request timeout and the
/// body limit.
pub fn with_common_layers(router: Router, tuning: &Tuning) -> Router {
    let inner = ServiceBuilder::new()
        .layer(cors::CorsForBrowsers::new(&tuning.cors_origins))
        .layer(from_fn(middleware::envelope_guard))
        .layer(from_fn_with_state(
            tuning.request_timeout,
            middleware::timeout,
        ))
        .layer(DefaultBodyLimit::max(tuning.body_limit));
    let router = router.fallback(not_found).layer(inner);
    let router = match tuning.compression {
        Compression::Gzip => router.layer(CompressionLayer::new()),
        Compression::Off => router,
    };
    let outer = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(access_span)
                .on_request(())
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn(middleware::record_metrics));
    router.layer(outer)
}

/// The access log's span: method, path, request id. Never headers: they carry tokens.
fn access_span(req: &Request) -> tracing::Span {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!("http", method = %req.method(), path = %req.uri().path(), request_id = %request_id)
}

async fn not_found(req: Request) -> Response {
    let msg = format!("no route for {} {}", req.method(), req.uri().path());
    ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, msg).into_response()
}
