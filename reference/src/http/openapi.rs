//! The OpenAPI document, generated from the handlers' annotations.

use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::envelope::{Code, ErrorEnvelope, FieldError};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "reference",
        description = "API + RabbitMQ worker reference system. Every response is the envelope \
            `{code, message, data, errors?}`; error codes: VALIDATION_ERR 400, AUTH_ERR 401/403, \
            NOT_FOUND_ERR 404, METHOD_NOT_ALLOWED 405, CONFLICT_ERR 409, PAYLOAD_TOO_LARGE 413, \
            UNSUPPORTED_MEDIA_TYPE 415, IDEMPOTENCY_KEY_REUSED 422, RATE_LIMITED 429, \
            INTERNAL_ERR 500, UNAVAILABLE 503."
    ),
    components(schemas(Code, FieldError, ErrorEnvelope)),
    modifiers(&BearerAuth),
    tags(
        (name = "users", description = "The seed's CRUD resource; GET by id is cached"),
        (name = "tasks", description = "Asynchronous work through RabbitMQ"),
        (name = "accounts", description = "Balances changed by credit tasks"),
        (name = "ops", description = "Health, readiness, metrics")
    )
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
