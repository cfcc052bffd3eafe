//! A typed client of the contract (design §2). It knows HTTP and the envelope, not any
//! implementation, and says how each call failed; [`crate::ops`] turns that into the
//! history's ok, fail or info.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{conformance::Conformance, final_state::TaskView};

/// Why a call did not return a success.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The request never reached the server (connection refused): it did not happen.
    #[error("connection refused: {0}")]
    Refused(String),
    /// No answer in time: it may or may not have happened.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// The connection broke mid-request: it may or may not have happened.
    #[error("transport error: {0}")]
    Transport(String),
    /// The server answered with an error envelope.
    #[error("{status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The server answered something that is not the contract.
    #[error("protocol violation: {0}")]
    Protocol(String),
}

/// The answer to a task submission, as the history records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Submitted {
    pub status: u16,
    pub code: String,
    pub task_id: Option<String>,
    /// SHA-256 of the body bytes: replays must be byte-identical.
    pub body_sha256: String,
    pub replayed: bool,
}

#[derive(Deserialize)]
struct Envelope {
    code: String,
    #[serde(default)]
    message: String,
    #[serde(default)]
    data: serde_json::Value,
}

/// A client of one system under test; with a [`Conformance`], every answer is held to the
/// contract's document as it comes.
#[derive(Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
    token: Option<String>,
    timeout: Duration,
    conformance: Option<Arc<Conformance>>,
}

impl Client {
    /// `base` is the system's root URL (`http://host:port`); requests time out after `timeout`.
    pub fn new(base: &str, token: Option<String>, timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_max_idle_per_host(64)
            .build()
            .expect("HTTP client builds");
        Client {
            base: base.trim_end_matches('/').to_string(),
            http,
            token,
            timeout,
            conformance: None,
        }
    }

    /// This client, holding every answer to `conformance`'s contract.
    pub fn with_conformance(mut self, conformance: Arc<Conformance>) -> Client {
        self.conformance = Some(conformance);
        self
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let req = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    fn transport(&self, e: reqwest::Error) -> ClientError {
        if e.is_timeout() {
            ClientError::Timeout(self.timeout)
        } else if e.is_connect() {
            ClientError::Refused(e.to_string())
        } else {
            ClientError::Transport(e.to_string())
        }
    }

    /// Sends a request and returns status, headers and body bytes.
    async fn send(
        &self,
        req: reqwest::RequestBuilder,
    ) -> Result<(u16, reqwest::header::HeaderMap, bytes::Bytes), ClientError> {
        let req = req.build().map_err(|e| self.transport(e))?;
        let (method, path) = (req.method().clone(), req.url().path().to_string());
        let res = self
            .http
            .execute(req)
            .await
            .map_err(|e| self.transport(e))?;
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        let body = res.bytes().await.map_err(|e| self.transport(e))?;
        if let Some(c) = &self.conformance {
            c.record(method.as_str(), &path, status, &body);
        }
        Ok((status, headers, body))
    }

    fn envelope(status: u16, body: &[u8]) -> Result<Envelope, ClientError> {
        serde_json::from_slice(body).map_err(|e| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            ClientError::Protocol(format!(
                "status {status}: body is not the envelope ({e}): {text}"
            ))
        })
    }

    /// The envelope's data of a 2xx answer, or the error it carries.
    async fn call(&self, req: reqwest::RequestBuilder) -> Result<serde_json::Value, ClientError> {
        let (status, _, body) = self.send(req).await?;
        let env = Self::envelope(status, &body)?;
        if (200..300).contains(&status) && env.code == "OK" {
            Ok(env.data)
        } else {
            Err(ClientError::Http {
                status,
                code: env.code,
                message: env.message,
            })
        }
    }

    /// `POST /api/v1/tasks` under `key`. Any answer with the envelope is returned, errors
    /// included (their status decides the history's outcome); transport failures are errors.
    pub async fn submit(
        &self,
        key: &str,
        body: &serde_json::Value,
    ) -> Result<Submitted, ClientError> {
        let req = self
            .request(reqwest::Method::POST, "/api/v1/tasks")
            .header(contract::IDEMPOTENCY_KEY, key)
            .json(body);
        let (status, headers, bytes) = self.send(req).await?;
        let env = Self::envelope(status, &bytes)?;
        let task_id = env
            .data
            .get("task_id")
            .and_then(|v| v.as_str())
            .map(str::to_string);
        if status == 202 && task_id.is_none() {
            return Err(ClientError::Protocol("202 without data.task_id".into()));
        }
        let replayed = headers
            .get(contract::IDEMPOTENT_REPLAYED)
            .is_some_and(|v| v.as_bytes() == b"true");
        Ok(Submitted {
            status,
            code: env.code,
            task_id,
            body_sha256: hex::encode(Sha256::digest(&bytes)),
            replayed,
        })
    }

    /// `GET /api/v1/tasks/{id}`; `None` when the system does not know it (404).
    pub async fn task(&self, id: &str) -> Result<Option<TaskView>, ClientError> {
        match self
            .call(self.request(reqwest::Method::GET, &format!("/api/v1/tasks/{id}")))
            .await
        {
            Ok(data) => serde_json::from_value(data)
                .map(Some)
                .map_err(|e| ClientError::Protocol(format!("task: {e}"))),
            Err(ClientError::Http { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `GET /api/v1/accounts/{id}`; 0 for an account never credited (404).
    pub async fn balance(&self, account: &str) -> Result<i64, ClientError> {
        match self
            .call(self.request(reqwest::Method::GET, &format!("/api/v1/accounts/{account}")))
            .await
        {
            Ok(data) => data["balance"]
                .as_i64()
                .ok_or_else(|| ClientError::Protocol("account without balance".into())),
            Err(ClientError::Http { status: 404, .. }) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// `POST /api/v1/users`; returns the new user's id.
    pub async fn create_user(&self, name: &str, email: &str) -> Result<i64, ClientError> {
        let req = self
            .request(reqwest::Method::POST, "/api/v1/users")
            .json(&serde_json::json!({"name": name, "email": email}));
        let data = self.call(req).await?;
        data["id"]
            .as_i64()
            .ok_or_else(|| ClientError::Protocol("user without id".into()))
    }

    /// `GET /api/v1/users/{id}`.
    pub async fn user(&self, id: i64) -> Result<serde_json::Value, ClientError> {
        self.call(self.request(reqwest::Method::GET, &format!("/api/v1/users/{id}")))
            .await
    }

    /// `PUT /api/v1/users/{id}`.
    pub async fn update_user(
        &self,
        id: i64,
        name: &str,
        email: &str,
    ) -> Result<serde_json::Value, ClientError> {
        let req = self
            .request(reqwest::Method::PUT, &format!("/api/v1/users/{id}"))
            .json(&serde_json::json!({"name": name, "email": email}));
        self.call(req).await
    }

    /// `DELETE /api/v1/users/{id}`.
    pub async fn delete_user(&self, id: i64) -> Result<(), ClientError> {
        self.call(self.request(reqwest::Method::DELETE, &format!("/api/v1/users/{id}")))
            .await
            .map(|_| ())
    }

    /// `GET /readyz` answered 200.
    pub async fn ready(&self) -> bool {
        self.call(self.request(reqwest::Method::GET, "/readyz"))
            .await
            .is_ok()
    }

    /// Waits until `/readyz` answers 200, up to `limit`.
    pub async fn wait_ready(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if self.ready().await {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}
