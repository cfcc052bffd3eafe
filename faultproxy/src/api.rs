//! Toxiproxy's HTTP API over the [`Registry`].

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::error::Error;
use crate::model::{ApiError, NewProxy, NewToxic, ProxyInfo, ProxyUpdate, ToxicUpdate};
use crate::registry::Registry;

/// What `GET /version` reports: the Toxiproxy API level followed by this crate's version.
pub const VERSION: &str = concat!("2.6.0+faultproxy.", env!("CARGO_PKG_VERSION"));

type Shared = State<Arc<Registry>>;
type Result<T> = std::result::Result<T, Error>;

/// The API's routes.
pub(crate) fn router(registry: Arc<Registry>) -> Router {
    Router::new()
        .route("/version", get(version))
        .route("/reset", post(reset))
        .route("/populate", post(populate))
        .route("/proxies", get(list).post(create))
        .route(
            "/proxies/{proxy}",
            get(show).post(update).patch(update).delete(delete),
        )
        .route("/proxies/{proxy}/toxics", get(toxics).post(add_toxic))
        .route(
            "/proxies/{proxy}/toxics/{toxic}",
            get(toxic)
                .post(update_toxic)
                .patch(update_toxic)
                .delete(remove_toxic),
        )
        .fallback(not_found)
        .layer(middleware::from_fn(refuse_browsers))
        .with_state(registry)
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        if let Error::Listen { .. } = self {
            tracing::warn!(error = %self, "API request failed");
        }
        let status = self.status();
        let body = ApiError {
            error: self.to_string(),
            status,
        };
        let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (code, Json(body)).into_response()
    }
}

/// Like Toxiproxy: a web page must not be able to drive the proxy through the user's browser.
async fn refuse_browsers(request: Request, next: Next) -> Response {
    let from_browser = request
        .headers()
        .get(header::USER_AGENT)
        .and_then(|ua| ua.to_str().ok())
        .is_some_and(|ua| ua.starts_with("Mozilla/"));
    if from_browser {
        return (StatusCode::FORBIDDEN, "User agent not allowed").into_response();
    }
    next.run(request).await
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::BadRequestBody(e.to_string()))
}

async fn not_found() -> Response {
    let body = ApiError {
        error: "not found".into(),
        status: 404,
    };
    (StatusCode::NOT_FOUND, Json(body)).into_response()
}

async fn version() -> Response {
    let body = format!("{{\"version\": \"{VERSION}\"}}\n");
    let json = HeaderValue::from_static("application/json;charset=utf-8");
    ([(header::CONTENT_TYPE, json)], body).into_response()
}

async fn reset(State(reg): Shared) -> Result<StatusCode> {
    reg.reset().await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Serialize)]
struct Populated {
    #[serde(flatten)]
    error: Option<ApiError>,
    proxies: Vec<ProxyInfo>,
}

async fn populate(State(reg): Shared, body: Bytes) -> Result<Response> {
    let list: Vec<NewProxy> = parse(&body)?;
    let (proxies, error) = reg.populate(list).await;
    let status = error.as_ref().map_or(201, Error::status);
    let error = error.map(|e| ApiError {
        error: e.to_string(),
        status: e.status(),
    });
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Ok((code, Json(Populated { error, proxies })).into_response())
}

async fn list(State(reg): Shared) -> Response {
    Json(reg.list().await).into_response()
}

async fn create(State(reg): Shared, body: Bytes) -> Result<Response> {
    let proxy = reg.create(parse(&body)?).await?;
    Ok((StatusCode::CREATED, Json(proxy)).into_response())
}

async fn show(State(reg): Shared, Path(proxy): Path<String>) -> Result<Response> {
    Ok(Json(reg.get(&proxy).await?).into_response())
}

async fn update(State(reg): Shared, Path(proxy): Path<String>, body: Bytes) -> Result<Response> {
    let update: ProxyUpdate = parse(&body)?;
    Ok(Json(reg.update(&proxy, update).await?).into_response())
}

async fn delete(State(reg): Shared, Path(proxy): Path<String>) -> Result<StatusCode> {
    reg.delete(&proxy).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn toxics(State(reg): Shared, Path(proxy): Path<String>) -> Result<Response> {
    Ok(Json(reg.toxics(&proxy).await?).into_response())
}

async fn add_toxic(State(reg): Shared, Path(proxy): Path<String>, body: Bytes) -> Result<Response> {
    let new: NewToxic = parse(&body)?;
    // Toxiproxy answers 200 here, not 201.
    Ok(Json(reg.add_toxic(&proxy, new).await?).into_response())
}

async fn toxic(
    State(reg): Shared,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Result<Response> {
    Ok(Json(reg.toxic(&proxy, &toxic).await?).into_response())
}

async fn update_toxic(
    State(reg): Shared,
    Path((proxy, toxic)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response> {
    let update: ToxicUpdate = parse(&body)?;
    Ok(Json(reg.update_toxic(&proxy, &toxic, update).await?).into_response())
}

async fn remove_toxic(
    State(reg): Shared,
    Path((proxy, toxic)): Path<(String, String)>,
) -> Result<StatusCode> {
    reg.remove_toxic(&proxy, &toxic).await?;
    Ok(StatusCode::NO_CONTENT)
}
