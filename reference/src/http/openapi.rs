//! The OpenAPI document: generated from the handlers' annotations, then completed with what
//! holds for every route (credentials, limits, the envelope's code per status) and what the
//! annotations cannot say (the constraints the server enforces, the task body per `type`, the
//! callback). The result is the contract: `contract/openapi.json` is this document, and the
//! harness holds every response to it.

use serde_json::{json, Map, Value};
use utoipa::{
    openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme},
    Modify, OpenApi,
};

use crate::{
    envelope::{Code, ErrorEnvelope, FieldError},
    validation::rules,
};

/// The contract's version: bumped whenever the document changes what a client may send or
/// receive.
pub const CONTRACT_VERSION: &str = "1.1.0";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rmq-harness task API",
        description = "An HTTP API that accepts work and hands it to background workers through \
            RabbitMQ. Every response is the envelope `{code, message, data, errors?}`, each status \
            with its `code`. Requests to a path the document does not list answer 404 \
            NOT_FOUND_ERR; other methods on a listed path answer 405 METHOD_NOT_ALLOWED with \
            `Allow`, unless the route's credentials (401, 403) or rate limit (429) answer first. \
            A `default` response is an unexpected error: a status of 500 or above."
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

/// Completes the generated document `doc` for a server taking bodies of up to `body_limit`
/// bytes.
pub fn complete(doc: &mut Value, body_limit: usize) {
    doc["info"]["version"] = json!(CONTRACT_VERSION);
    doc["components"]["securitySchemes"]["bearer"]["description"] = json!(
        "A server started with --token answers only requests bearing it (read and write) or \
         the --read-token (read only: GET); without tokens the API is open. Operations say \
         which they need in x-token."
    );
    let schemas = &mut doc["components"]["schemas"];
    constrain_bodies(schemas);
    schemas["TaskEvent"] = task_event();
    let paths = doc["paths"].as_object_mut().expect("paths");
    for (path, methods) in paths.iter_mut() {
        for (method, op) in methods.as_object_mut().expect("methods") {
            constrain_parameters(path, op);
            complete_operation(path, method, op, body_limit);
        }
    }
    doc["webhooks"] = json!({"taskEnded": callback()});
}

/// An envelope response: `schema` for the data (success) or the error envelope, with the
/// `code`s this status carries.
fn envelope(description: &str, schema: Value, codes: &[Code]) -> Value {
    let codes: Vec<Value> = codes.iter().map(|c| json!(c)).collect();
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"allOf": [
            schema,
            {"type": "object", "properties": {"code": {"enum": codes}}}
        ]}}}
    })
}

fn error_schema() -> Value {
    json!({"$ref": "#/components/schemas/ErrorEnvelope"})
}

/// The code each error status carries in this API.
fn codes_for(path: &str, method: &str, status: &str) -> Vec<Code> {
    match status {
        "400" => vec![Code::Validation],
        "401" | "403" => vec![Code::Auth],
        "404" => vec![Code::NotFound],
        "409" => vec![Code::Conflict],
        "413" => vec![Code::PayloadTooLarge],
        "415" => vec![Code::UnsupportedMediaType],
        "422" if path == "/api/v1/tasks" && method == "post" => {
            vec![Code::IdempotencyKeyReused, Code::CallbackNotAllowed]
        }
        "422" => vec![Code::IdempotencyKeyReused],
        "429" => vec![Code::RateLimited],
        "503" => vec![Code::Unavailable],
        "default" => vec![Code::Internal],
        _ => vec![Code::Ok],
    }
}

/// Adds the responses every route of its kind can give, pins each response's `code`, and says
/// which token the operation needs.
fn complete_operation(path: &str, method: &str, op: &mut Value, body_limit: usize) {
    let api = path.starts_with("/api/v1/");
    let secured = op.get("security").is_some();
    let write = method != "get";
    let has_body = op.get("requestBody").is_some();
    let has_input = has_body || op.get("parameters").is_some();
    let responses = op["responses"].as_object_mut().expect("responses");
    let mut add = |status: &str, description: String| {
        responses
            .entry(status)
            .or_insert(json!({"description": description}));
    };
    if has_input {
        add(
            "400",
            "a parameter or the body breaks the constraints stated here".into(),
        );
    }
    if secured {
        add(
            "401",
            "no bearer token, or not one of the server's (when it has tokens)".into(),
        );
    }
    if secured && write {
        add("403", "the read-only token, on a write".into());
    }
    if has_body {
        add("413", format!("a body over {body_limit} bytes"));
        add(
            "415",
            "a body whose Content-Type is not application/json".into(),
        );
    }
    if api {
        add(
            "429",
            "over the server's --rate-limit (when set); see Retry-After".into(),
        );
        add("503", "the store (or, publishing in the request, the broker) is unavailable, or the request took longer than the server's --request-timeout".into());
    }
    if path != "/healthz" {
        add("default", "an unexpected error (500)".into());
    }
    for (status, response) in responses.iter_mut() {
        let description = response["description"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let data = response
            .pointer("/content/application~1json/schema")
            .cloned();
        let schema = match (status.starts_with('2'), data) {
            (true, Some(schema)) => schema,
            _ => error_schema(),
        };
        let headers = response.get("headers").cloned();
        let codes = codes_for(path, method, status);
        *response = envelope(&description, schema, &codes);
        if let Some(headers) = headers {
            response["headers"] = headers;
        }
        if status == "429" {
            response["headers"] =
                json!({"Retry-After": {"schema": {"type": "string", "pattern": "^[0-9]+$"}}});
        }
    }
    if secured {
        op["x-token"] = json!(if write { "read-write" } else { "read" });
    }
    if has_body {
        op["requestBody"]["x-max-bytes"] = json!(body_limit);
        op["requestBody"]["description"] =
            json!(format!("application/json, at most {body_limit} bytes"));
    }
}

/// The constraints the server enforces on parameters.
fn constrain_parameters(path: &str, op: &mut Value) {
    let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
        return;
    };
    for p in params {
        let schema = match (path, p["name"].as_str().unwrap_or_default()) {
            ("/api/v1/users/{id}", "id") => json!({"type": "integer", "format": "int64"}),
            ("/api/v1/tasks/{id}", "id") => {
                json!({"type": "string", "format": "uuid", "pattern": rules::TASK_ID})
            }
            ("/api/v1/accounts/{id}", "id") => {
                json!({"type": "string", "pattern": rules::ACCOUNT_ID})
            }
            (_, "page") => json!({"type": "integer", "minimum": 1, "maximum": u32::MAX}),
            (_, "per_page") => {
                json!({"type": "integer", "minimum": 1, "maximum": rules::PER_PAGE_MAX})
            }
            (_, "Idempotency-Key") => {
                json!({"type": "string", "pattern": rules::IDEMPOTENCY_KEY})
            }
            _ => continue,
        };
        p["schema"] = schema;
    }
}

/// The constraints the server enforces on bodies: the user's fields, and the task body as one
/// shape per `type`.
fn constrain_bodies(schemas: &mut Value) {
    let user = &mut schemas["UserInput"];
    user["additionalProperties"] = json!(false);
    user["properties"]["name"] = json!({
        "type": "string", "minLength": rules::NAME_MIN, "maxLength": rules::NAME_MAX});
    user["properties"]["email"] = json!({
        "type": "string", "format": "email", "maxLength": rules::EMAIL_MAX,
        "pattern": rules::EMAIL});
    let callback_url = json!({
        "type": ["string", "null"],
        "maxLength": rules::CALLBACK_URL_MAX,
        "pattern": rules::CALLBACK_URL,
        "description": "POSTed the task's end (see webhooks.taskEnded). A URL of this form \
            that cannot be parsed, or whose host is not on the server's --callback-allow list, \
            is 422 CALLBACK_NOT_ALLOWED."
    });
    let strict = |properties: Value, required: &[&str]| {
        json!({"type": "object", "additionalProperties": false,
               "properties": properties, "required": required})
    };
    let kind = |name: &str, payload: Value, payload_required: bool| {
        let mut required = vec!["type"];
        if payload_required {
            required.push("payload");
        }
        strict(
            json!({"type": {"const": name}, "payload": payload, "callback_url": callback_url}),
            &required,
        )
    };
    let credit = strict(
        json!({
            "account": {"type": "string", "pattern": rules::ACCOUNT_ID},
            "amount": {"type": "integer", "minimum": 1, "maximum": rules::CREDIT_AMOUNT_MAX}
        }),
        &["account", "amount"],
    );
    let sleep = strict(
        json!({"ms": {"type": "integer", "minimum": 0, "maximum": rules::SLEEP_MS_MAX}}),
        &["ms"],
    );
    let flaky = strict(
        json!({"fail_times": {"type": "integer", "minimum": 0, "maximum": rules::FAIL_TIMES_MAX}}),
        &["fail_times"],
    );
    schemas["CreateTaskRequest"] = json!({
        "description": "A task: its `type`, the payload that type takes, and an optional callback.",
        "oneOf": [
            kind("credit", credit, true),
            kind("echo", json!({"description": "any JSON; the result echoes it"}), false),
            kind("sleep", sleep, true),
            kind("flaky", flaky, true),
            kind("poison", json!({"description": "any JSON; the task always fails"}), false),
        ],
        "discriminator": {"propertyName": "type"}
    });
}

fn task_event() -> Value {
    json!({
        "type": "object",
        "description": "What a callback carries and the events exchange publishes when a task ends.",
        "required": ["event_id", "type", "occurred_at", "task"],
        "properties": {
            "event_id": {"type": "string", "format": "uuid",
                         "description": "The same on every delivery of this event"},
            "type": {"enum": ["task.succeeded", "task.failed"]},
            "occurred_at": {"type": "string", "format": "date-time"},
            "task": {"$ref": "#/components/schemas/Task"}
        }
    })
}

/// The callback a task's `callback_url` receives (OpenAPI 3.1 webhooks).
fn callback() -> Value {
    let header = |name: &str, schema: Value, description: &str| {
        json!({"name": name, "in": "header", "required": true, "schema": schema,
               "description": description})
    };
    let mut post = Map::new();
    post.insert(
        "summary".into(),
        json!("A task ended: its result, POSTed to its callback_url"),
    );
    post.insert(
        "description".into(),
        json!(
            "At least once: retried with exponential backoff (1 s, 2 s, 4 s, …) until a 2xx \
               answer or --callback-max-attempts; never redirected; only to hosts on \
               --callback-allow."
        ),
    );
    post.insert(
        "parameters".into(),
        json!([
            header(
                contract::EVENT_ID,
                json!({"type": "string", "format": "uuid"}),
                "The event's id, the same on every retry"
            ),
            header(
                contract::SIGNATURE,
                json!({"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"}),
                "t=<unix seconds>,v1=<hex HMAC-SHA256(secret, \"<t>.<body>\")>"
            )
        ]),
    );
    post.insert(
        "requestBody".into(),
        json!({"required": true, "content": {"application/json": {"schema": {
            "$ref": "#/components/schemas/TaskEvent"}}}}),
    );
    post.insert(
        "responses".into(),
        json!({"2XX": {"description": "received; anything else is retried"}}),
    );
    json!({"post": post})
}
