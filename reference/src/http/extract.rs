//! Extractors whose rejections are envelopes with field errors, never axum's plain text.

use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, FromRequest, FromRequestParts, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::envelope::{ApiError, Code, FieldError};

/// A JSON request body, parsed but not yet typed (the typed step names fields in its errors).
#[derive(Debug)]
pub struct JsonBody(pub serde_json::Value);

impl<S: Send + Sync> FromRequest<S> for JsonBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        require_json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            ApiError::validation(vec![FieldError::new(
                "body",
                "json",
                format!("malformed JSON: {e}"),
            )])
        })
    }
}

fn require_json_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let mut values = headers.get_all(header::CONTENT_TYPE).iter();
    let json = match (values.next(), values.next()) {
        (Some(v), None) => v
            .to_str()
            .ok()
            .and_then(|s| s.split(';').next())
            .map(|mime| {
                let mime = mime.trim().to_ascii_lowercase();
                mime == "application/json"
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            })
            .unwrap_or(false),
        _ => false,
    };
    if json {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Code::UnsupportedMediaType,
            "Content-Type must be application/json (exactly one header)",
        ))
    }
}

fn body_rejection(rejection: BytesRejection) -> ApiError {
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            Code::PayloadTooLarge,
            "request body is too large",
        )
    } else {
        ApiError::bad_request(format!(
            "cannot read request body: {}",
            rejection.body_text()
        ))
    }
}

/// A path parameter parsed as `T`; a bad one is a 400 naming `id`.
#[derive(Debug)]
pub struct PathId<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathId<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| PathId(p.0))
            .map_err(|e| ApiError::validation(vec![FieldError::new("id", "type", e.body_text())]))
    }
}

/// Query parameters parsed as `T`; bad ones are a 400 naming the query.
#[derive(Debug)]
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| QueryParams(q.0))
            .map_err(|e| {
                ApiError::validation(vec![FieldError::new("query", "invalid", e.body_text())])
            })
    }
}

/// The value of a header that must appear at most once.
pub fn single_header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, ApiError> {
    let mut values = headers.get_all(name).iter();
    let first = values.next();
    if values.next().is_some() {
        let err = FieldError::new(name, "single", "must appear at most once");
        return Err(ApiError::validation(vec![err]));
    }
    match first {
        None => Ok(None),
        Some(v) => v.to_str().map(Some).map_err(|_| {
            ApiError::validation(vec![FieldError::new(
                name,
                "pattern",
                "must be visible ASCII",
            )])
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn json_content_types() {
        assert!(
            require_json_content_type(&headers(&[("content-type", "application/json")])).is_ok()
        );
        assert!(require_json_content_type(&headers(&[(
            "content-type",
            "application/json; charset=utf-8"
        )]))
        .is_ok());
        assert!(require_json_content_type(&headers(&[(
            "content-type",
            "application/problem+json"
        )]))
        .is_ok());
        assert!(require_json_content_type(&headers(&[("content-type", "text/plain")])).is_err());
        // A structured suffix counts only on an application type, and only `+json`.
        for other in ["application/xml", "text/x+json", "application/json-seq"] {
            assert!(
                require_json_content_type(&headers(&[("content-type", other)])).is_err(),
                "{other}"
            );
        }
        assert!(require_json_content_type(&headers(&[])).is_err());
        let two = headers(&[
            ("content-type", "application/json"),
            ("content-type", "application/json"),
        ]);
        assert!(require_json_content_type(&two).is_err());
    }

    #[test]
    fn single_header_rejects_duplicates() {
        assert_eq!(
            single_header(&headers(&[("k", "v")]), "k").unwrap(),
            Some("v")
        );
        assert_eq!(single_header(&headers(&[]), "k").unwrap(), None);
        assert!(single_header(&headers(&[("k", "a"), ("k", "b")]), "k").is_err());
    }
}
