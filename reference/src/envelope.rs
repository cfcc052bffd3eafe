//! The one response envelope of the contract: `{code, message, data, errors?}`.
//!
//! Every response body the API produces goes through here, errors included, so that clients
//! never meet a bare text or HTML body.

use axum::{
    http::{header, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Machine-readable outcome; the contract's table plus the HTTP-level errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Code {
    Ok,
    #[serde(rename = "VALIDATION_ERR")]
    Validation,
    #[serde(rename = "AUTH_ERR")]
    Auth,
    #[serde(rename = "NOT_FOUND_ERR")]
    NotFound,
    #[serde(rename = "METHOD_NOT_ALLOWED")]
    MethodNotAllowed,
    #[serde(rename = "CONFLICT_ERR")]
    Conflict,
    #[serde(rename = "PAYLOAD_TOO_LARGE")]
    PayloadTooLarge,
    #[serde(rename = "UNSUPPORTED_MEDIA_TYPE")]
    UnsupportedMediaType,
    #[serde(rename = "IDEMPOTENCY_KEY_REUSED")]
    IdempotencyKeyReused,
    /// A well-formed callback URL the server will not call (its host is not allowed).
    #[serde(rename = "CALLBACK_NOT_ALLOWED")]
    CallbackNotAllowed,
    #[serde(rename = "RATE_LIMITED")]
    RateLimited,
    #[serde(rename = "INTERNAL_ERR")]
    Internal,
    #[serde(rename = "UNAVAILABLE")]
    Unavailable,
}

impl Code {
    /// The code a bare error status maps to, for responses produced outside the handlers.
    pub fn for_status(status: StatusCode) -> Code {
        match status.as_u16() {
            401 | 403 => Code::Auth,
            404 => Code::NotFound,
            405 => Code::MethodNotAllowed,
            409 => Code::Conflict,
            413 => Code::PayloadTooLarge,
            415 => Code::UnsupportedMediaType,
            422 => Code::IdempotencyKeyReused,
            429 => Code::RateLimited,
            408 | 503 | 504 => Code::Unavailable,
            s if s < 400 => Code::Ok,
            s if s < 500 => Code::Validation,
            _ => Code::Internal,
        }
    }
}

/// One invalid field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FieldError {
    /// Path of the field (`email`, `payload.amount`) or header name.
    pub field: String,
    /// Rule that failed: `required`, `min_length`, `email`, `invalid`, ...
    pub rule: String,
    pub message: String,
}

impl FieldError {
    pub fn new(
        field: impl Into<String>,
        rule: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            rule: rule.into(),
            message: message.into(),
        }
    }
}

/// The response body of every endpoint.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct Envelope<T> {
    pub code: Code,
    pub message: String,
    pub data: Option<T>,
    /// Present on validation errors only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

/// The shape of every error response, for the OpenAPI document (`data` is always null).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorEnvelope {
    pub code: Code,
    pub message: String,
    #[schema(value_type = Option<Object>)]
    pub data: Option<serde_json::Value>,
    #[serde(default)]
    pub errors: Vec<FieldError>,
}

impl<T: Serialize> Envelope<T> {
    pub fn ok(data: T) -> Self {
        Envelope {
            code: Code::Ok,
            message: "ok".into(),
            data: Some(data),
            errors: Vec::new(),
        }
    }

    /// The JSON bytes of the envelope; serialising our own types cannot fail.
    pub fn to_bytes(&self) -> bytes::Bytes {
        serde_json::to_vec(self)
            .expect("envelope serialises")
            .into()
    }
}

/// A JSON response with a status; the body is always an envelope.
pub fn json_response(status: StatusCode, body: bytes::Bytes) -> Response {
    let mut res = (status, body).into_response();
    res.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    res
}

/// `200 OK` with data in the envelope.
pub fn ok<T: Serialize>(data: T) -> Response {
    json_response(StatusCode::OK, Envelope::ok(data).to_bytes())
}

/// An error as the API reports it: status, code, message and field errors.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{status} {code:?}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: Code,
    pub message: String,
    pub errors: Vec<FieldError>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: Code, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            errors: Vec::new(),
        }
    }

    pub fn validation(errors: Vec<FieldError>) -> Self {
        let message = match errors.as_slice() {
            [one] => format!("{}: {}", one.field, one.message),
            _ => format!("{} fields are invalid", errors.len()),
        };
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: Code::Validation,
            message,
            errors,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, Code::Validation, message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            Code::NotFound,
            format!("{what} not found"),
        )
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, Code::Conflict, message)
    }

    /// 422: a callback URL of the right form that cannot be used (unparseable, or its host is
    /// not on the allow-list).
    pub fn callback_not_allowed(why: String) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            Code::CallbackNotAllowed,
            format!("callback_url {why}"),
        )
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, Code::Unavailable, message)
    }

    /// Internal details go to the log, never to the client.
    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Code::Internal,
            "internal error",
        )
    }

    /// The error a status alone implies, for responses made outside the handlers.
    pub fn from_status(status: StatusCode) -> Self {
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        Self::new(status, Code::for_status(status), message)
    }

    pub fn body(&self) -> bytes::Bytes {
        Envelope::<()> {
            code: self.code,
            message: self.message.clone(),
            data: None,
            errors: self.errors.clone(),
        }
        .to_bytes()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = json_response(self.status, self.body());
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

/// Store errors are internal unless they mean "unavailable" or "your key was taken over".
impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::Unavailable(msg) => {
                ApiError::unavailable(format!("store unavailable: {msg}"))
            }
            // A retry with the same key now gets the response of the request that took over.
            crate::store::StoreError::LeaseLost => ApiError::conflict(
                "this request outlived its hold on the Idempotency-Key and another request took \
                 it over; retry with the same key to get that request's response",
            ),
            other => ApiError::internal(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_envelope_has_the_contract_shape() {
        let v: serde_json::Value =
            serde_json::from_slice(&Envelope::ok(serde_json::json!({"a": 1})).to_bytes()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"code": "OK", "message": "ok", "data": {"a": 1}})
        );
    }

    #[test]
    fn validation_error_lists_fields_and_null_data() {
        let e = ApiError::validation(vec![FieldError::new("name", "required", "is required")]);
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["code"], "VALIDATION_ERR");
        assert_eq!(v["data"], serde_json::Value::Null);
        assert_eq!(v["errors"][0]["field"], "name");
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn statuses_map_to_contract_codes() {
        let cases = [
            (401, "AUTH_ERR"),
            (403, "AUTH_ERR"),
            (404, "NOT_FOUND_ERR"),
            (405, "METHOD_NOT_ALLOWED"),
            (409, "CONFLICT_ERR"),
            (413, "PAYLOAD_TOO_LARGE"),
            (415, "UNSUPPORTED_MEDIA_TYPE"),
            (422, "IDEMPOTENCY_KEY_REUSED"),
            (429, "RATE_LIMITED"),
            (400, "VALIDATION_ERR"),
            (408, "UNAVAILABLE"),
            (503, "UNAVAILABLE"),
            (500, "INTERNAL_ERR"),
        ];
        for (status, code) in cases {
            let e = ApiError::from_status(StatusCode::from_u16(status).unwrap());
            let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!(v["code"], code, "status {status}");
        }
    }
}
