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
};
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

/// What the API handlers share. Handlers get a clone per request: one reference count.
#[derive(Clone)]
pub struct ApiState(Arc<ApiParts>);

impl ApiState {
    pub fn new(parts: ApiParts) -> Self {
        ApiState(Arc::new(parts))
    }
}

impl std::ops::Deref for ApiState {
    type Target = ApiParts;

    fn deref(&self) -> &ApiParts {
        &self.0
    }
}

/// The parts of [`ApiState`].
pub struct ApiParts {
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

/// The `/api/v1` routes and the generated part of the OpenAPI document that describes them.
fn api_v1() -> (Router<ApiState>, utoipa::openapi::OpenApi) {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(users::list, users::create))
        .routes(routes!(users::get, users::update, users::delete))
        .routes(routes!(tasks::create))
        .routes(routes!(tasks::get))
        .routes(routes!(tasks::account))
        .split_for_parts()
}

/// The OpenAPI document of a server taking bodies of up to `body_limit` bytes: the contract.
pub fn openapi_document(body_limit: usize) -> serde_json::Value {
    let (_, mut doc) = api_v1();
    let (_, ops_doc) = OpenApiRouter::<OpsState>::new()
        .routes(routes!(ops::healthz))
        .routes(routes!(ops::readyz))
        .split_for_parts();
    doc.merge(ops_doc);
    let mut doc = serde_json::to_value(&doc).expect("OpenAPI document serialises");
    openapi::complete(&mut doc, body_limit);
    doc
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
    let v1 = api_v1().0.with_state(state);
    let doc = serde_json::to_vec_pretty(&openapi_document(tuning.body_limit))
        .expect("OpenAPI document serialises");
    let doc = bytes::Bytes::from(doc);

    let mut v1 = v1.route_layer(from_fn_with_state(Arc::new(tokens), middleware::auth));
    if let Some(rate) = tuning.rate_limit {
        v1 = v1.route_layer(from_fn_with_state(
            middleware::limiter(rate, tuning.rate_burst),
            middleware::rate_limit,
        ));
    }
    let openapi = get(move || {
        let doc = doc.clone();
        async move { json_response(StatusCode::OK, doc) }
    });
    let router = Router::new()
        .merge(v1)
        .route("/api/v1/openapi.json", openapi)
        .merge(ops_routes(ops));
    with_common_layers(router, tuning)
}

/// Bodies of at least 1 KiB, as tower-http's default otherwise: below that (an envelope of one
/// user or one task), gzip costs more CPU than the bytes it saves, and can even grow them.
fn worth_compressing() -> impl tower_http::compression::Predicate {
    use tower_http::compression::predicate::{DefaultPredicate, Predicate, SizeAbove};
    DefaultPredicate::new().and(SizeAbove::new(1024))
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
        Compression::Gzip => {
            router.layer(CompressionLayer::new().compress_when(worth_compressing()))
        }
        Compression::Off => router,
    };
    let outer = ServiceBuilder::new()
        .layer(CatchPanicLayer::custom(middleware::panic_response))
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(from_fn(middleware::access_log))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(from_fn(middleware::record_metrics));
    router.layer(outer)
}

async fn not_found(req: Request) -> Response {
    let msg = format!("no route for {} {}", req.method(), req.uri().path());
    ApiError::new(StatusCode::NOT_FOUND, Code::NotFound, msg).into_response()
}

#[cfg(test)]
mod tests {
    /// `contract/openapi.json` is the document the server serves with its default limits;
    /// regenerate with `UPDATE_CONTRACT=1 cargo test -p reference contract_document`.
    #[test]
    fn contract_document_is_what_the_server_serves() {
        let generated = super::openapi_document(crate::config::DEFAULT_BODY_LIMIT);
        let path =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../contract/openapi.json");
        if std::env::var_os("UPDATE_CONTRACT").is_some() {
            let text = serde_json::to_string_pretty(&generated).unwrap() + "\n";
            std::fs::write(&path, text).unwrap();
        }
        let committed: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&path).unwrap_or_default())
                .unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale; run UPDATE_CONTRACT=1 cargo test -p reference contract_document",
            path.display()
        );
    }
}
