//! Bad input never breaks the API (seed 2.4): requests generated from the contract's OpenAPI
//! document (its routes, methods and body fields), then mangled.

use std::sync::Arc;

use proptest::{prelude::*, test_runner::TestCaseError};
use scenarios::{config, world::World};
use serde_json::{json, Map, Value};

use crate::support::{assert_held, run_property};

pub(crate) const READ_WRITE: &str = "rw-secret";
pub(crate) const READ_ONLY: &str = "ro-secret";
pub(crate) const BODY_LIMIT: usize = 4096;

/// A route of the document: its path template, method, and body fields (name, JSON type).
#[derive(Debug, Clone)]
pub(crate) struct Route {
    template: String,
    method: String,
    fields: Vec<(String, String)>,
}

/// The `/api/v1` routes of the OpenAPI document (the ops routes carry no input).
pub(crate) fn routes(doc: &Value) -> Vec<Route> {
    let mut out = Vec::new();
    for (template, methods) in doc["paths"].as_object().expect("paths") {
        if !template.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in methods.as_object().expect("methods") {
            let schema_ref =
                op["requestBody"]["content"]["application/json"]["schema"]["$ref"].as_str();
            let fields = schema_ref.map(|r| body_fields(doc, r)).unwrap_or_default();
            out.push(Route {
                template: template.clone(),
                method: method.to_uppercase(),
                fields,
            });
        }
    }
    out
}

fn body_fields(doc: &Value, reference: &str) -> Vec<(String, String)> {
    let name = reference.rsplit('/').next().unwrap_or_default();
    let props = doc["components"]["schemas"][name]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    props
        .into_iter()
        .map(|(field, schema)| {
            let kind = match &schema["type"] {
                Value::String(t) => t.clone(),
                Value::Array(ts) => ts
                    .first()
                    .and_then(Value::as_str)
                    .unwrap_or("string")
                    .to_string(),
                _ => "any".to_string(),
            };
            (field, kind)
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Auth {
    None,
    ReadWrite,
    ReadOnly,
    Wrong,
    Twice,
    Basic,
}

#[derive(Debug, Clone)]
pub(crate) enum Body {
    None,
    /// Any JSON value at all.
    Arbitrary(Value),
    /// The route's body fields, each present, missing, null or of a wrong type, plus extras.
    Shaped(Value),
    /// A valid-looking body cut short.
    Truncated(String),
    Oversized,
    /// Raw bytes, invalid UTF-8 included.
    Bytes(Vec<u8>),
}

#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub(crate) method: String,
    path: String,
    /// The route template the path was made from.
    template: String,
    /// Whether `path` and `method` are a route of the document (not a mangled one).
    known_route: bool,
    auth: Auth,
    content_type: Option<&'static str>,
    content_type_twice: bool,
    idempotency_key: Option<String>,
    key_twice: bool,
    body: Body,
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        ".{0,20}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A value for a field of JSON type `kind`: plausible, or of another type.
fn field_value(kind: String) -> BoxedStrategy<Value> {
    let plausible = match kind.as_str() {
        "string" => prop_oneof![
            Just(json!("Ada Lovelace")),
            Just(json!("ada@example.com")),
            Just(json!("echo")),
            Just(json!("credit")),
            ".{0,12}".prop_map(Value::String),
        ]
        .boxed(),
        "integer" | "number" => any::<i32>().prop_map(|n| json!(n)).boxed(),
        _ => json_value().boxed(),
    };
    prop_oneof![3 => plausible, 1 => json_value()].boxed()
}

fn shaped(fields: Vec<(String, String)>) -> BoxedStrategy<Value> {
    let per_field: Vec<BoxedStrategy<Option<(String, Value)>>> = fields
        .into_iter()
        .map(|(name, kind)| {
            let n = name.clone();
            prop_oneof![4 => field_value(kind).prop_map(move |v| Some((n.clone(), v))), 1 => Just(None)].boxed()
        })
        .collect();
    let extra = prop::option::weighted(0.2, ("[a-z]{1,6}", json_value()));
    (per_field, extra)
        .prop_map(|(present, extra)| {
            let mut obj: Map<String, Value> = present.into_iter().flatten().collect();
            if let Some((k, v)) = extra {
                obj.insert(k, v);
            }
            Value::Object(obj)
        })
        .boxed()
}

/// A path parameter: plausible ids, and worse.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        (1u32..50).prop_map(|n| n.to_string()),
        Just(uuid::Uuid::nil().to_string()),
        Just("-1".to_string()),
        Just("99999999999999999999999".to_string()),
        "[A-Za-z0-9_-]{1,70}",
        "[%a-z0-9.~]{1,12}",
    ]
}

pub(crate) fn request(routes: Arc<Vec<Route>>) -> impl Strategy<Value = Request> {
    let methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"];
    let target = (
        0..routes.len(),
        segment(),
        prop::bool::weighted(0.85),
        prop::sample::select(methods.to_vec()),
        "/[a-z/]{0,16}",
    )
        .prop_map(move |(i, seg, keep_method, other_method, garbage)| {
            let r = &routes[i];
            let path = r.template.replace("{id}", &seg);
            if keep_method {
                (
                    r.method.clone(),
                    path,
                    r.template.clone(),
                    true,
                    r.fields.clone(),
                )
            } else if garbage.len() % 3 == 0 {
                (
                    other_method.to_string(),
                    garbage,
                    String::new(),
                    false,
                    Vec::new(),
                )
            } else {
                (
                    other_method.to_string(),
                    path,
                    r.template.clone(),
                    other_method == r.method,
                    r.fields.clone(),
                )
            }
        });
    let auth = prop::sample::select(vec![
        Auth::ReadWrite,
        Auth::ReadWrite,
        Auth::None,
        Auth::ReadOnly,
        Auth::Wrong,
        Auth::Twice,
        Auth::Basic,
    ]);
    let content_type = prop::sample::select(vec![
        Some("application/json"),
        Some("application/json"),
        Some("application/json; charset=utf-8"),
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("nonsense"),
        None,
    ]);
    let key = prop::option::weighted(
        0.8,
        prop_oneof![4 => "[a-z0-9-]{1,16}", 1 => Just(String::new()), 1 => "[a-z]{256,300}"],
    );
    (
        target,
        auth,
        content_type,
        any::<bool>(),
        key,
        prop::bool::weighted(0.1),
    )
        .prop_flat_map(
            |(
                (method, path, template, known_route, fields),
                auth,
                content_type,
                ct_twice,
                key,
                key_twice,
            )| {
                let body = prop_oneof![
                    1 => Just(Body::None),
                    2 => json_value().prop_map(Body::Arbitrary),
                    4 => shaped(fields).prop_map(Body::Shaped),
                    1 => (json_value(), any::<prop::sample::Index>()).prop_map(|(v, cut)| {
                        let text = v.to_string();
                        let mut at = cut.index(text.len().max(1)).min(text.len());
                        while !text.is_char_boundary(at) {
                            at -= 1;
                        }
                        Body::Truncated(text[..at].to_string())
                    }),
                    1 => Just(Body::Oversized),
                    1 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Body::Bytes),
                ];
                body.prop_map(move |body| Request {
                    method: method.clone(),
                    path: path.clone(),
                    template: template.clone(),
                    known_route,
                    auth,
                    content_type,
                    content_type_twice: ct_twice && content_type.is_some(),
                    idempotency_key: key.clone(),
                    key_twice,
                    body,
                })
            },
        )
}

fn body_bytes(body: &Body) -> Vec<u8> {
    match body {
        Body::None => Vec::new(),
        Body::Arbitrary(v) | Body::Shaped(v) => v.to_string().into_bytes(),
        Body::Truncated(s) => s.clone().into_bytes(),
        Body::Oversized => format!(
            "{{\"name\": \"{}\", \"email\": \"a@b.co\"}}",
            "x".repeat(BODY_LIMIT)
        )
        .into_bytes(),
        Body::Bytes(b) => b.clone(),
    }
}

/// The status the contract's table gives each code.
fn code_matches(status: u16, code: &str) -> bool {
    match status {
        200..=299 => code == "OK",
        400 => code == "VALIDATION_ERR",
        401 | 403 => code == "AUTH_ERR",
        404 => code == "NOT_FOUND_ERR",
        405 => code == "METHOD_NOT_ALLOWED",
        409 => code == "CONFLICT_ERR",
        413 => code == "PAYLOAD_TOO_LARGE",
        415 => code == "UNSUPPORTED_MEDIA_TYPE",
        422 => code == "IDEMPOTENCY_KEY_REUSED" || code == "CALLBACK_NOT_ALLOWED",
        429 => code == "RATE_LIMITED",
        _ => false,
    }
}

pub(crate) async fn send(
    http: &reqwest::Client,
    base: &str,
    r: &Request,
) -> Result<(u16, Vec<u8>), String> {
    let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("valid method");
    let mut req = http.request(method, format!("{base}{}", r.path));
    let bearer = |t: &str| format!("Bearer {t}");
    req = match r.auth {
        Auth::None => req,
        Auth::ReadWrite => req.header("authorization", bearer(READ_WRITE)),
        Auth::ReadOnly => req.header("authorization", bearer(READ_ONLY)),
        Auth::Wrong => req.header("authorization", bearer("not-a-token")),
        Auth::Twice => req
            .header("authorization", bearer(READ_WRITE))
            .header("authorization", bearer(READ_WRITE)),
        Auth::Basic => req.header("authorization", "Basic dXNlcjpwYXNz"),
    };
    if let Some(ct) = r.content_type {
        req = req.header("content-type", ct);
        if r.content_type_twice {
            req = req.header("content-type", "application/json");
        }
    }
    if let Some(key) = &r.idempotency_key {
        req = req.header(contract::IDEMPOTENCY_KEY, key.as_str());
        if r.key_twice {
            req = req.header(contract::IDEMPOTENCY_KEY, "second");
        }
    }
    let res = req
        .body(body_bytes(&r.body))
        .send()
        .await
        .map_err(|e| format!("no answer (dropped?): {e}"))?;
    let status = res.status().as_u16();
    let bytes = res.bytes().await.map_err(|e| format!("body cut: {e}"))?;
    Ok((status, bytes.to_vec()))
}

/// The path as sent: a `.` or `..` segment is resolved away by the client, as by any HTTP
/// stack.
pub(crate) fn normalized(base: &str, r: &Request) -> String {
    url::Url::parse(&format!("{base}{}", r.path))
        .map(|u| u.path().to_string())
        .unwrap_or_default()
}

/// Whether the request still targets its route once the URL is normalized.
fn targets_route(base: &str, r: &Request) -> bool {
    let normalized = normalized(base, r);
    let segments = |p: &str| p.split('/').filter(|s| !s.is_empty()).count();
    r.known_route
        && normalized.trim_end_matches('/') == normalized
        && segments(&normalized) == segments(&r.template)
}

/// The contract's promises for any request: an answer, never 5xx, always the envelope with the
/// code its status stands for; and auth decided first on a route.
fn judge(r: &Request, on_route: bool, status: u16, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert!(status < 500, "{} {} answered {status}", r.method, r.path);
    if r.method != "HEAD" {
        let env: Value = serde_json::from_slice(body).map_err(|e| {
            TestCaseError::fail(format!(
                "{status} body is not JSON ({e}): {:?}",
                String::from_utf8_lossy(body)
            ))
        })?;
        let code = env["code"].as_str().unwrap_or_default();
        prop_assert!(
            env["message"].is_string() && env.get("data").is_some(),
            "not the envelope: {env}"
        );
        prop_assert!(
            code_matches(status, code),
            "status {status} with code {code}: {env}"
        );
    }
    if on_route {
        let unauthenticated =
            matches!(r.auth, Auth::None | Auth::Wrong | Auth::Twice | Auth::Basic);
        let read_only_write =
            matches!(r.auth, Auth::ReadOnly) && !matches!(r.method.as_str(), "GET" | "HEAD");
        if unauthenticated {
            prop_assert_eq!(status, 401, "{} {} without a valid token", r.method, r.path);
        } else if read_only_write {
            prop_assert_eq!(
                status,
                403,
                "{} {} with the read-only token",
                r.method,
                r.path
            );
        } else {
            prop_assert!(
                status != 401 && status != 403,
                "{} {} refused a valid token",
                r.method,
                r.path
            );
        }
    }
    Ok(())
}

/// Arbitrary JSON, wrong types, missing and extra fields, truncated, oversized and non-UTF-8
/// bodies, bad and duplicated headers, unknown routes and methods, bad tokens: the API always
/// answers, never with a 5xx, always in the envelope with the code its status stands for,
/// decides authentication before anything else on its routes, and gives only the statuses and
/// bodies the contract's document lists for the operation. Routes, methods and body fields
/// come from the OpenAPI document the API serves.
#[test]
fn bad_input_never_breaks_the_api() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let args = [
        "--token",
        READ_WRITE,
        "--read-token",
        READ_ONLY,
        "--body-limit",
        "4096",
    ];
    let world = rt.block_on(World::start(&args, 0, false));
    let base = world.client.base().to_string();
    let http = reqwest::Client::new();
    let doc: Value = rt.block_on(async {
        http.get(format!("{base}/api/v1/openapi.json"))
            .send()
            .await
            .expect("document")
            .json()
            .await
            .expect("JSON")
    });
    let routes = Arc::new(routes(&doc));
    assert!(
        routes.len() >= 8,
        "the document lists the API's routes: {routes:?}"
    );
    let (outcome, run) = run_property(
        "bad-input",
        config::holds("bad-input", config::cases(256, 2048)),
        &request(routes),
        |r| {
            let (status, body) = rt
                .block_on(send(&http, &base, &r))
                .map_err(TestCaseError::fail)?;
            judge(&r, targets_route(&base, &r), status, &body)?;
            // And the answer is one the contract's document gives that operation.
            let path = normalized(&base, &r);
            if let Some(d) = world.conformance.record(&r.method, &path, status, &body) {
                return Err(TestCaseError::fail(format!(
                    "disagrees with the contract: {d:?}"
                )));
            }
            Ok(Vec::new())
        },
    );
    let report = run.holds(&outcome);
    rt.block_on(world.stop());
    assert_held(outcome, &report);
}
