//! Request validation (seed 2.2 and 2.4): typed inputs, field errors that name the field.
//!
//! The constraints are the contract's: [`rules`] holds the patterns and limits the OpenAPI
//! document states, and the checks here use exactly those, so that a request the document
//! calls valid is never refused as invalid.

use std::sync::LazyLock;

use regex::Regex;
use serde::{de::DeserializeOwned, Deserialize};
use utoipa::ToSchema;
use validator::Validate;

use crate::{
    callbacks::AllowList,
    envelope::{ApiError, FieldError},
    model::{CreditPayload, FlakyPayload, SleepPayload, TaskSpec},
};

/// The patterns and limits of the contract, as the OpenAPI document states them.
pub mod rules {
    /// Account ids.
    pub const ACCOUNT_ID: &str = "^[A-Za-z0-9_-]{1,64}$";
    /// `Idempotency-Key`: 1–255 visible ASCII characters.
    pub const IDEMPOTENCY_KEY: &str = "^[!-~]{1,255}$";
    /// Task ids: a UUID in its hyphenated form.
    pub const TASK_ID: &str =
        "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";
    /// Email addresses: the WHATWG HTML definition of a valid email address.
    pub const EMAIL: &str = r"^[a-zA-Z0-9.!#$%&'*+/=?^_`{|}~-]+@[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(?:\.[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$";
    pub const EMAIL_MAX: usize = 254;
    pub const NAME_MIN: usize = 2;
    pub const NAME_MAX: usize = 100;
    /// Callback URLs: an http(s) URL without whitespace. Whether it can be used (it parses,
    /// its host is allowed) is decided after: 422 `CALLBACK_NOT_ALLOWED`.
    pub const CALLBACK_URL: &str = r"^https?://\S+$";
    pub const CALLBACK_URL_MAX: usize = 2048;
    pub const CREDIT_AMOUNT_MAX: i64 = 1_000_000_000;
    pub const SLEEP_MS_MAX: u64 = 60_000;
    pub const FAIL_TIMES_MAX: u32 = 100;
    pub const PER_PAGE_MAX: u32 = 100;
}

fn regex(pattern: &str) -> Regex {
    Regex::new(pattern).expect("the contract's patterns are valid")
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| regex(rules::EMAIL));
static CALLBACK_URL: LazyLock<Regex> = LazyLock::new(|| regex(rules::CALLBACK_URL));
static TASK_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::TASK_ID));
static ACCOUNT_ID: LazyLock<Regex> = LazyLock::new(|| regex(rules::ACCOUNT_ID));

/// Body of `POST /api/v1/users` and `PUT /api/v1/users/{id}` (the seed's `CreateUserRequest`).
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserInput {
    /// Required, 2–100 characters.
    #[validate(
        required(message = "is required"),
        length(min = 2, max = 100, message = "must be 2-100 characters")
    )]
    // Optional in Rust so that a missing field is a field error, not a parse failure.
    #[schema(required = true, nullable = false, min_length = 2, max_length = 100)]
    pub name: Option<String>,
    /// Required, a valid address ([`rules::EMAIL`]).
    #[validate(
        required(message = "is required"),
        length(max = 254, message = "must be at most 254 characters")
    )]
    #[schema(required = true, nullable = false, format = Email, max_length = 254)]
    pub email: Option<String>,
}

/// A user input that passed validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidUser {
    pub name: String,
    pub email: String,
}

/// Body of `POST /api/v1/tasks`.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTaskRequest {
    /// One of `credit`, `echo`, `sleep`, `flaky`, `poison`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `credit`: `{account, amount}`; `sleep`: `{ms}`; `flaky`: `{fail_times}`; others: any.
    #[serde(default)]
    pub payload: serde_json::Value,
    /// Where the result is POSTed when the task ends; its host must be on the allow-list.
    #[serde(default)]
    pub callback_url: Option<String>,
}

/// A task request that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidTask {
    pub spec: TaskSpec,
    pub callback_url: Option<String>,
}

/// Deserialises a JSON object into the struct `T`, naming the offending field on failure.
/// Anything but an object is refused: serde would otherwise accept `["Al", "al@x.io"]` as a
/// struct in sequence form.
pub fn from_json<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    if !value.is_object() {
        let field = if prefix.is_empty() { "body" } else { prefix };
        return Err(ApiError::validation(vec![FieldError::new(
            field,
            "type",
            "must be a JSON object",
        )]));
    }
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        ApiError::validation(vec![field_error_from_serde(
            prefix,
            &path,
            &e.into_inner().to_string(),
        )])
    })
}

/// Turns serde's message into a field error. The path ends at the offending field, except for
/// a missing field, whose path is its parent's: its name comes from the message.
fn field_error_from_serde(prefix: &str, path: &str, message: &str) -> FieldError {
    let message = message.split(" at line ").next().unwrap_or(message);
    let quoted = || message.split('`').nth(1).unwrap_or("");
    let (leaf, rule) = if message.starts_with("missing field") {
        (quoted(), "required")
    } else if message.starts_with("unknown field") {
        ("", "unknown_field")
    } else if message.starts_with("invalid type") {
        ("", "type")
    } else {
        ("", "invalid")
    };
    let mut parts: Vec<&str> = [prefix, path, leaf]
        .into_iter()
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        parts.push("body");
    }
    let message = match rule {
        "required" => "is required".to_string(),
        "unknown_field" => "is not a known field".to_string(),
        _ => message.to_string(),
    };
    FieldError::new(parts.join("."), rule, message)
}

impl UserInput {
    pub fn validate_input(self) -> Result<ValidUser, ApiError> {
        let mut errors = match self.validate() {
            Ok(()) => Vec::new(),
            Err(e) => field_errors(&e),
        };
        let bad_email = self.email.as_deref().is_some_and(|e| !EMAIL.is_match(e));
        if bad_email && !errors.iter().any(|e| e.field == "email") {
            errors.push(FieldError::new(
                "email",
                "email",
                "must be a valid email address",
            ));
            errors.sort_by(|a, b| a.field.cmp(&b.field));
        }
        if !errors.is_empty() {
            return Err(ApiError::validation(errors));
        }
        Ok(ValidUser {
            name: self.name.unwrap_or_default(),
            email: self.email.unwrap_or_default(),
        })
    }
}

/// validator's errors as contract field errors, in field order.
fn field_errors(errors: &validator::ValidationErrors) -> Vec<FieldError> {
    let mut out: Vec<FieldError> = errors
        .field_errors()
        .into_iter()
        .flat_map(|(field, errs)| {
            errs.iter().map(move |e| {
                let message = e.message.as_deref().unwrap_or("is invalid").to_string();
                FieldError::new(field.to_string(), e.code.to_string(), message)
            })
        })
        .collect();
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

impl CreateTaskRequest {
    pub fn validate_input(self, allow: &AllowList) -> Result<ValidTask, ApiError> {
        let spec = parse_spec(&self.kind, self.payload)?;
        if let Some(url) = &self.callback_url {
            if url.len() > rules::CALLBACK_URL_MAX || !CALLBACK_URL.is_match(url) {
                let rule = format!(
                    "must be an http or https URL without whitespace, at most {} characters",
                    rules::CALLBACK_URL_MAX
                );
                return Err(ApiError::validation(vec![FieldError::new(
                    "callback_url",
                    "pattern",
                    rule,
                )]));
            }
            allow.check(url).map_err(ApiError::callback_not_allowed)?;
        }
        Ok(ValidTask {
            spec,
            callback_url: self.callback_url,
        })
    }
}

/// Integer fields given as numbers with a zero fraction (`7.0`): JSON Schema counts them as
/// integers, so the contract accepts them too.
fn integral(payload: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match payload {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match v.as_f64() {
                    Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                        (k, Value::from(f as i64))
                    }
                    _ => (k, v),
                })
                .collect(),
        ),
        other => other,
    }
}

fn parse_spec(kind: &str, payload: serde_json::Value) -> Result<TaskSpec, ApiError> {
    let spec = match kind {
        "credit" => TaskSpec::Credit(from_json::<CreditPayload>(integral(payload), "payload")?),
        "sleep" => TaskSpec::Sleep(from_json::<SleepPayload>(integral(payload), "payload")?),
        "flaky" => TaskSpec::Flaky(from_json::<FlakyPayload>(integral(payload), "payload")?),
        "echo" => TaskSpec::Echo(payload),
        "poison" => TaskSpec::Poison(payload),
        _ => {
            let kinds = TaskSpec::KINDS.join(", ");
            let err = FieldError::new("type", "one_of", format!("must be one of {kinds}"));
            return Err(ApiError::validation(vec![err]));
        }
    };
    check_ranges(&spec).map_err(|e| ApiError::validation(vec![e]))?;
    Ok(spec)
}

fn check_ranges(spec: &TaskSpec) -> Result<(), FieldError> {
    match spec {
        TaskSpec::Credit(c) => {
            if !is_account_id(&c.account) {
                return Err(FieldError::new(
                    "payload.account",
                    "pattern",
                    ACCOUNT_ID_RULE,
                ));
            }
            if !(1..=rules::CREDIT_AMOUNT_MAX).contains(&c.amount) {
                return Err(FieldError::new(
                    "payload.amount",
                    "range",
                    "must be between 1 and 1000000000",
                ));
            }
        }
        TaskSpec::Sleep(s) if s.ms > rules::SLEEP_MS_MAX => {
            return Err(FieldError::new(
                "payload.ms",
                "range",
                "must be between 0 and 60000",
            ));
        }
        TaskSpec::Flaky(f) if f.fail_times > rules::FAIL_TIMES_MAX => {
            return Err(FieldError::new(
                "payload.fail_times",
                "range",
                "must be between 0 and 100",
            ));
        }
        _ => {}
    }
    Ok(())
}

pub const ACCOUNT_ID_RULE: &str = "must be 1-64 characters of [A-Za-z0-9_-]";

/// Account ids: 1–64 characters of `[A-Za-z0-9_-]`.
pub fn is_account_id(id: &str) -> bool {
    ACCOUNT_ID.is_match(id)
}

/// Task ids: hyphenated UUIDs ([`rules::TASK_ID`]).
pub fn task_id(id: &str) -> Option<uuid::Uuid> {
    TASK_ID.is_match(id).then(|| id.parse().ok()).flatten()
}

/// An `Idempotency-Key` header value: 1–255 visible ASCII characters.
pub fn check_idempotency_key(value: Option<&str>) -> Result<String, ApiError> {
    let field = |rule: &str, msg: &str| {
        ApiError::validation(vec![FieldError::new("Idempotency-Key", rule, msg)])
    };
    let key = value.ok_or_else(|| field("required", "header is required"))?;
    if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(field("pattern", "must be 1-255 visible ASCII characters"));
    }
    Ok(key.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(v: serde_json::Value) -> Result<ValidUser, ApiError> {
        from_json::<UserInput>(v, "")?.validate_input()
    }

    fn fields(e: &ApiError) -> Vec<(&str, &str)> {
        e.errors
            .iter()
            .map(|f| (f.field.as_str(), f.rule.as_str()))
            .collect()
    }

    #[test]
    fn valid_user_passes() {
        let u = user(json!({"name": "Al", "email": "al@example.com"})).unwrap();
        assert_eq!(
            u,
            ValidUser {
                name: "Al".into(),
                email: "al@example.com".into()
            }
        );
    }

    #[test]
    fn seed_rules_name_the_fields() {
        let e = user(json!({"name": "A", "email": "not-an-email"})).unwrap_err();
        assert_eq!(fields(&e), vec![("email", "email"), ("name", "length")]);
        let e = user(json!({})).unwrap_err();
        assert_eq!(
            fields(&e),
            vec![("email", "required"), ("name", "required")]
        );
        let e = user(json!({"name": null, "email": "a@b.co"})).unwrap_err();
        assert_eq!(fields(&e), vec![("name", "required")]);
    }

    #[test]
    fn wrong_types_and_extra_fields_are_field_errors() {
        let e = user(json!({"name": 5, "email": "a@b.co"})).unwrap_err();
        assert_eq!(fields(&e), vec![("name", "type")]);
        let e = user(json!({"name": "Al", "email": "a@b.co", "admin": true})).unwrap_err();
        assert_eq!(fields(&e), vec![("admin", "unknown_field")]);
        let e = user(json!([1])).unwrap_err();
        assert_eq!(fields(&e), vec![("body", "type")]);
    }

    fn task(v: serde_json::Value) -> Result<ValidTask, ApiError> {
        let allow = AllowList::parse(&["127.0.0.1".to_string()]);
        from_json::<CreateTaskRequest>(v, "")?.validate_input(&allow)
    }

    #[test]
    fn task_payloads_are_typed_per_kind() {
        let t =
            task(json!({"type": "credit", "payload": {"account": "a-1", "amount": 7}})).unwrap();
        assert_eq!(
            t.spec,
            TaskSpec::Credit(CreditPayload {
                account: "a-1".into(),
                amount: 7
            })
        );
        let t = task(json!({"type": "echo"})).unwrap();
        assert_eq!(t.spec, TaskSpec::Echo(serde_json::Value::Null));
    }

    #[test]
    fn task_errors_point_into_the_payload() {
        let cases = [
            (json!({"payload": {}}), ("type", "required")),
            (json!({"type": "mine"}), ("type", "one_of")),
            (
                json!({"type": "credit", "payload": {"account": "a"}}),
                ("payload.amount", "required"),
            ),
            (
                json!({"type": "credit", "payload": ["a", 1]}),
                ("payload", "type"),
            ),
            (json!({"type": "credit"}), ("payload", "type")),
            (
                json!({"type": "credit", "payload": {"account": "a", "amount": "1"}}),
                ("payload.amount", "type"),
            ),
            (
                json!({"type": "credit", "payload": {"account": "a b", "amount": 1}}),
                ("payload.account", "pattern"),
            ),
            (
                json!({"type": "credit", "payload": {"account": "a", "amount": 0}}),
                ("payload.amount", "range"),
            ),
            (
                json!({"type": "sleep", "payload": {"ms": 60001}}),
                ("payload.ms", "range"),
            ),
            (
                json!({"type": "flaky", "payload": {"fail_times": -1}}),
                ("payload.fail_times", "invalid"),
            ),
            (
                json!({"type": "echo", "extra": 1}),
                ("extra", "unknown_field"),
            ),
            (
                json!({"type": "echo", "callback_url": "ftp://127.0.0.1/x"}),
                ("callback_url", "pattern"),
            ),
        ];
        for (body, want) in cases {
            let e = task(body.clone()).unwrap_err();
            assert_eq!(fields(&e), vec![want], "{body}");
        }
        // A URL of the documented form that cannot be used is 422, not a validation error.
        let e = task(json!({"type": "echo", "callback_url": "http://evil.example/x"})).unwrap_err();
        assert_eq!(e.status.as_u16(), 422);
        assert_eq!(e.code, crate::envelope::Code::CallbackNotAllowed);
    }

    /// The server's checks are the document's patterns: what one accepts, the other does.
    #[test]
    fn checks_agree_with_the_documented_patterns() {
        let key = regex(rules::IDEMPOTENCY_KEY);
        for k in [
            "k-1",
            "",
            "has space",
            "tab\there",
            "é",
            &"x".repeat(255),
            &"x".repeat(256),
        ] {
            assert_eq!(
                check_idempotency_key(Some(k)).is_ok(),
                key.is_match(k),
                "{k:?}"
            );
        }
        assert!(task_id("0194b3a2-5c1e-7000-8000-000000000000").is_some());
        assert!(
            task_id("0194b3a25c1e70008000000000000000").is_none(),
            "hyphens required"
        );
        assert!(task_id("{0194b3a2-5c1e-7000-8000-000000000000}").is_none());
        for email in ["al@example.com", "a@b", "a.b+c@d-e.f"] {
            assert!(EMAIL.is_match(email), "{email}");
        }
        for email in ["not-an-email", "a@", "@b", "a b@c.d", "a@-b.c"] {
            assert!(!EMAIL.is_match(email), "{email}");
        }
    }

    #[test]
    fn idempotency_key_rules() {
        assert_eq!(check_idempotency_key(Some("k-1")).unwrap(), "k-1");
        assert!(check_idempotency_key(None).is_err());
        assert!(check_idempotency_key(Some("")).is_err());
        assert!(check_idempotency_key(Some("has space")).is_err());
        assert!(check_idempotency_key(Some(&"x".repeat(256))).is_err());
    }
}
