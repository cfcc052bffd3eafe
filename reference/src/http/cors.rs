//! CORS for browsers only. tower-http's CORS layer answers every OPTIONS as a preflight (200,
//! empty body), even without an `Origin` and on unknown paths; here only requests that are
//! CORS go through it, and a plain OPTIONS reaches the routes (405 in the envelope, `Allow`).

use std::task::{Context, Poll};

use axum::http::{header, HeaderValue, Method, Request, Response};
use futures_util::future::Either;
use tower::{Layer, Service};
use tower_http::cors::{AllowOrigin, Any, Cors, CorsLayer};

/// The CORS policy of `--cors-origins`, applied to CORS requests only.
#[derive(Clone)]
pub struct CorsForBrowsers {
    cors: CorsLayer,
}

impl CorsForBrowsers {
    pub fn new(origins: &[String]) -> Self {
        let allow_origin = if origins.iter().any(|o| o == "*") {
            AllowOrigin::any()
        } else {
            AllowOrigin::list(origins.iter().filter_map(|o| HeaderValue::from_str(o).ok()))
        };
        let cors = CorsLayer::new()
            .allow_origin(allow_origin)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers(Any)
            .expose_headers([
                header::LOCATION,
                "x-request-id".parse().expect("valid header name"),
            ]);
        CorsForBrowsers { cors }
    }
}

impl<S: Clone> Layer<S> for CorsForBrowsers {
    type Service = CorsOrPlain<S>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsOrPlain {
            cors: self.cors.layer(inner.clone()),
            plain: inner,
        }
    }
}

/// Sends CORS requests through the CORS layer and the rest straight to the inner service.
#[derive(Clone)]
pub struct CorsOrPlain<S> {
    cors: Cors<S>,
    plain: S,
}

/// A request from a browser's CORS machinery: an `Origin`, and for OPTIONS (a preflight) the
/// method it asks about.
fn is_cors<B>(req: &Request<B>) -> bool {
    let h = req.headers();
    h.contains_key(header::ORIGIN)
        && (req.method() != Method::OPTIONS
            || h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD))
}

impl<S, B, ResBody> Service<Request<B>> for CorsOrPlain<S>
where
    S: Service<Request<B>, Response = Response<ResBody>> + Clone,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Either<<Cors<S> as Service<Request<B>>>::Future, S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        match self.cors.poll_ready(cx) {
            Poll::Ready(Ok(())) => self.plain.poll_ready(cx),
            other => other,
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if is_cors(&req) {
            Either::Left(self.cors.call(req))
        } else {
            Either::Right(self.plain.call(req))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, headers: &[(header::HeaderName, &str)]) -> Request<()> {
        let mut r = Request::builder().method(method).uri("/x");
        for (k, v) in headers {
            r = r.header(k, *v);
        }
        r.body(()).unwrap()
    }

    #[test]
    fn only_browser_requests_are_cors() {
        let origin = (header::ORIGIN, "https://app.example");
        let asks = (header::ACCESS_CONTROL_REQUEST_METHOD, "POST");
        assert!(
            is_cors(&request(Method::OPTIONS, &[origin.clone(), asks.clone()])),
            "a preflight"
        );
        assert!(
            is_cors(&request(Method::GET, std::slice::from_ref(&origin))),
            "a simple CORS request"
        );
        assert!(
            !is_cors(&request(Method::OPTIONS, &[origin])),
            "OPTIONS without the method asked about"
        );
        assert!(!is_cors(&request(Method::OPTIONS, &[])));
        assert!(!is_cors(&request(Method::GET, &[asks])));
    }
}
