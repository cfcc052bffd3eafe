//! Requests generated from the contract's OpenAPI document: for each operation, path, query,
//! header and body values drawn from the schemas the document gives them, so that every
//! request is one the document calls valid. What the system must do with them, and how its
//! answers are held to the document, is the properties' business.

use std::sync::Arc;

use proptest::{prelude::*, strategy::BoxedStrategy};
use serde_json::{json, Map, Value};

/// One operation of the document, with what a request to it needs.
#[derive(Debug, Clone)]
pub struct Operation {
    pub method: String,
    pub template: String,
    /// Path and query parameters, and headers: (name, where, required, schema).
    pub parameters: Vec<(String, String, bool, Value)>,
    /// The JSON body's schema, when the operation takes one.
    pub body: Option<Value>,
    /// Whether it needs the read-write token (`x-token`).
    pub writes: bool,
}

/// The operations of the document under `/api/v1/` (the ops routes take no input).
pub fn operations(doc: &Value) -> Vec<Operation> {
    let mut out = Vec::new();
    for (template, methods) in doc["paths"].as_object().into_iter().flatten() {
        if !template.starts_with("/api/v1/") {
            continue;
        }
        for (method, op) in methods.as_object().into_iter().flatten() {
            let parameters = op["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_string(),
                        p["in"].as_str().unwrap_or_default().to_string(),
                        p["required"].as_bool().unwrap_or(false),
                        p["schema"].clone(),
                    )
                })
                .collect();
            out.push(Operation {
                method: method.to_uppercase(),
                template: template.clone(),
                parameters,
                body: op
                    .pointer("/requestBody/content/application~1json/schema")
                    .cloned(),
                writes: op["x-token"] == "read-write",
            });
        }
    }
    out
}

/// A request the document calls valid.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub method: String,
    /// The path with its parameters filled in, and the query string.
    pub path: String,
    pub template: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
    pub writes: bool,
}

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str() {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .map(|s| resolve(doc, s))
            .unwrap_or(schema),
        None => schema,
    }
}

/// Any JSON value (for schemas that allow anything).
pub fn any_json() -> BoxedStrategy<Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i32>().prop_map(|n| json!(n)),
        "[a-z ]{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(Value::Array),
            prop::collection::btree_map("[a-z]{1,6}", inner, 0..3)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
    .boxed()
}

/// Strings matching `pattern` (anchors dropped: generated strings match whole).
fn matching(pattern: &str) -> BoxedStrategy<String> {
    let inner = pattern.trim_start_matches('^').trim_end_matches('$');
    // `\S` would draw from all of Unicode; keep to printable ASCII, as URLs are written.
    let inner = inner.replace(r"\S", "[!-~]");
    proptest::string::string_regex(&inner)
        .unwrap_or_else(|e| panic!("the contract's pattern {pattern} generates: {e}"))
        .boxed()
}

fn integer(schema: &Value) -> BoxedStrategy<Value> {
    let min = schema["minimum"].as_i64().unwrap_or(-1_000_000);
    let max = schema["maximum"].as_i64().unwrap_or(1_000_000);
    // Bounds and small values are where checks go wrong; the rest at random.
    prop_oneof![
        1 => Just(min),
        1 => Just(max),
        2 => min..=max.min(min.saturating_add(100)),
        4 => min..=max,
    ]
    .prop_map(|n| json!(n))
    .boxed()
}

fn string(schema: &Value) -> BoxedStrategy<Value> {
    let max = schema["maxLength"].as_u64().map(|m| m as usize);
    let min = schema["minLength"].as_u64().unwrap_or(0) as usize;
    let s = match (schema["pattern"].as_str(), schema["format"].as_str()) {
        (Some(p), _) => matching(p),
        (None, Some("uuid")) => any::<u128>()
            .prop_map(|n| uuid::Uuid::from_u128(n).to_string())
            .boxed(),
        (None, _) => {
            let upper = max.unwrap_or(min + 24).min(min + 24);
            proptest::string::string_regex(&format!("[ -~\u{e9}\u{4e2d}]{{{min},{upper}}}"))
                .expect("a printable range")
                .boxed()
        }
    };
    s.prop_filter("within the length limits", move |v| {
        let n = v.chars().count();
        n >= min && max.is_none_or(|m| n <= m)
    })
    .prop_map(Value::String)
    .boxed()
}

fn object(doc: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let required: Vec<String> = schema["required"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    let fields: Vec<BoxedStrategy<Option<(String, Value)>>> = schema["properties"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(name, s)| {
            let value = generate(doc, s);
            let name = name.clone();
            if required.contains(&name) {
                value.prop_map(move |v| Some((name.clone(), v))).boxed()
            } else {
                prop::option::of(value.prop_map(move |v| (name.clone(), v))).boxed()
            }
        })
        .collect();
    fields
        .prop_map(|present| {
            let map: Map<String, Value> = present.into_iter().flatten().collect();
            Value::Object(map)
        })
        .boxed()
}

/// Values valid against `schema` (the subset of JSON Schema the contract uses).
pub fn generate(doc: &Value, schema: &Value) -> BoxedStrategy<Value> {
    let schema = resolve(doc, schema);
    if let Some(c) = schema.get("const") {
        return Just(c.clone()).boxed();
    }
    if let Some(options) = schema["enum"].as_array() {
        return prop::sample::select(options.clone()).boxed();
    }
    if let Some(options) = schema["oneOf"].as_array() {
        let each: Vec<BoxedStrategy<Value>> = options.iter().map(|s| generate(doc, s)).collect();
        return prop::sample::select((0..each.len()).collect::<Vec<_>>())
            .prop_flat_map(move |i| each[i].clone())
            .boxed();
    }
    match &schema["type"] {
        Value::Array(types) => {
            let each: Vec<BoxedStrategy<Value>> = types
                .iter()
                .map(|t| {
                    let mut one = schema.clone();
                    one["type"] = t.clone();
                    generate(doc, &one)
                })
                .collect();
            prop::sample::select((0..each.len()).collect::<Vec<_>>())
                .prop_flat_map(move |i| each[i].clone())
                .boxed()
        }
        Value::String(t) => match t.as_str() {
            "object" => object(doc, schema),
            "string" => string(schema),
            "integer" => integer(schema),
            "number" => any::<i32>().prop_map(|n| json!(n)).boxed(),
            "boolean" => any::<bool>().prop_map(Value::Bool).boxed(),
            "null" => Just(Value::Null).boxed(),
            "array" => prop::collection::vec(generate(doc, &schema["items"]), 0..3)
                .prop_map(Value::Array)
                .boxed(),
            _ => any_json(),
        },
        _ => any_json(),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Valid requests to `op`; `ids` suggests values for path ids (made beforehand, so that
/// some requests find what they name).
pub fn valid_request(
    doc: Arc<Value>,
    op: Operation,
    ids: Vec<String>,
) -> BoxedStrategy<ValidRequest> {
    let params: Vec<BoxedStrategy<Option<(String, String, String)>>> = op
        .parameters
        .iter()
        .map(|(name, place, required, schema)| {
            let (name, place) = (name.clone(), place.clone());
            let mut value = generate(&doc, schema).prop_map(|v| text(&v)).boxed();
            if place == "path" && !ids.is_empty() {
                value = prop_oneof![value, prop::sample::select(ids.clone())].boxed();
            }
            let value = value.prop_map(move |v| (name.clone(), place.clone(), v));
            if *required {
                value.prop_map(Some).boxed()
            } else {
                prop::option::of(value).boxed()
            }
        })
        .collect();
    let body = match &op.body {
        Some(schema) => generate(&doc, schema).prop_map(Some).boxed(),
        None => Just(None).boxed(),
    };
    (params, body)
        .prop_map(move |(params, body)| {
            let mut path = op.template.clone();
            let mut query = Vec::new();
            let mut headers = Vec::new();
            for (name, place, value) in params.into_iter().flatten() {
                match place.as_str() {
                    "path" => path = path.replace(&format!("{{{name}}}"), &value),
                    "query" => query.push(format!("{name}={value}")),
                    _ => headers.push((name, value)),
                }
            }
            if !query.is_empty() {
                path = format!("{path}?{}", query.join("&"));
            }
            ValidRequest {
                method: op.method.clone(),
                path,
                template: op.template.clone(),
                headers,
                body,
                writes: op.writes,
            }
        })
        .boxed()
}

/// Valid requests to any operation of the document.
pub fn any_valid_request(doc: Arc<Value>, ids: Vec<String>) -> BoxedStrategy<ValidRequest> {
    let each: Vec<BoxedStrategy<ValidRequest>> = operations(&doc)
        .into_iter()
        .map(|op| valid_request(doc.clone(), op, ids.clone()))
        .collect();
    prop::sample::select((0..each.len()).collect::<Vec<_>>())
        .prop_flat_map(move |i| each[i].clone())
        .boxed()
}

#[cfg(test)]
mod tests {
    use proptest::test_runner::TestRunner;

    use super::*;

    /// Every generated request is valid against the document's own schemas.
    #[test]
    fn generated_requests_are_valid_against_the_document() {
        let doc = Arc::new(contract::openapi::document());
        let ops = operations(&doc);
        assert!(ops.len() >= 8, "{ops:?}");
        let mut runner = TestRunner::default();
        let tasks = ops
            .iter()
            .find(|o| o.template == "/api/v1/tasks" && o.method == "POST")
            .unwrap()
            .body
            .clone()
            .unwrap();
        let validator = jsonschema::options()
            .with_registry(
                &jsonschema::Registry::new()
                    .add("urn:doc", (*doc).clone())
                    .unwrap()
                    .prepare()
                    .unwrap(),
            )
            .build(&json!({"$ref": format!("urn:doc#{}", tasks["$ref"].as_str().unwrap().trim_start_matches('#'))}))
            .unwrap();
        for _ in 0..200 {
            let body = generate(&doc, &tasks)
                .new_tree(&mut runner)
                .unwrap()
                .current();
            assert!(validator.is_valid(&body), "{body}");
        }
        let all = any_valid_request(doc.clone(), vec!["1".into()]);
        for _ in 0..200 {
            let r = all.new_tree(&mut runner).unwrap().current();
            assert!(r.path.starts_with("/api/v1/"), "{r:?}");
            if r.method == "POST" && r.template == "/api/v1/tasks" {
                let key = &r
                    .headers
                    .iter()
                    .find(|(h, _)| h == "Idempotency-Key")
                    .unwrap()
                    .1;
                assert!(
                    (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic())
                );
            }
        }
    }
}
