//! Holds a system's responses to its contract, an OpenAPI 3.1 document: every response's
//! status must be one the document lists for that operation, and its body must match that
//! status's schema. Disagreements are collected (with examples) and so is coverage: which
//! statuses of which operations were seen.
//!
//! Requests to a path the document does not list must answer 404; other methods on a listed
//! path 405, or what the route's middleware decides first (401 or 403 for credentials, 429 for
//! the rate limit). A `default` response stands for
//! statuses of 500 and above only: otherwise it would admit any status and check nothing.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Mutex,
};

use jsonschema::{Registry, Validator};
use serde::Serialize;
use serde_json::{json, Value};

const ROOT: &str = "urn:contract";

#[derive(Debug, thiserror::Error)]
pub enum ContractError {
    #[error("the contract document has no `paths`")]
    NoPaths,
    #[error("cannot compile the schema of {operation} {status}: {why}")]
    Schema {
        operation: String,
        status: String,
        why: String,
    },
}

/// One operation of the document.
struct Operation {
    method: String,
    template: String,
    segments: Vec<Option<String>>,
    /// By status key (`"200"`, `"default"`): the body's validator, if the status has a JSON body.
    responses: BTreeMap<String, Option<Validator>>,
}

impl Operation {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.template)
    }

    fn matches(&self, segments: &[&str]) -> bool {
        self.segments.len() == segments.len()
            && self.segments.iter().zip(segments).all(|(t, s)| match t {
                Some(literal) => literal == s,
                None => !s.is_empty(),
            })
    }

    /// The response key a status falls under.
    fn key(&self, status: u16) -> Option<&str> {
        let exact = status.to_string();
        if let Some((k, _)) = self.responses.get_key_value(&exact) {
            return Some(k);
        }
        let range = format!("{}XX", status / 100);
        if let Some((k, _)) = self.responses.get_key_value(&range) {
            return Some(k);
        }
        (status >= 500)
            .then(|| {
                self.responses
                    .get_key_value("default")
                    .map(|(k, _)| k.as_str())
            })
            .flatten()
    }
}

/// Why a response disagrees with the document.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Disagreement {
    /// `undocumented_status`, `body_mismatch`, `not_json`, `unknown_route_status`.
    pub kind: String,
    pub method: String,
    pub path: String,
    pub status: u16,
    pub detail: String,
}

/// A compiled contract.
pub struct Contract {
    operations: Vec<Operation>,
    version: String,
}

/// A JSON pointer token, as it appears in a URI fragment.
fn pointer_escape(s: &str) -> String {
    s.replace('~', "~0")
        .replace('/', "~1")
        .replace('{', "%7B")
        .replace('}', "%7D")
}

impl Contract {
    /// Compiles every response schema of `doc`.
    pub fn new(doc: &Value) -> Result<Contract, ContractError> {
        let paths = doc["paths"].as_object().ok_or(ContractError::NoPaths)?;
        let registry = Registry::new()
            .add(ROOT, doc.clone())
            .and_then(|r| r.prepare())
            .map_err(|e| ContractError::Schema {
                operation: "document".into(),
                status: "-".into(),
                why: e.to_string(),
            })?;
        let mut operations = Vec::new();
        for (template, methods) in paths {
            for (method, op) in methods.as_object().into_iter().flatten() {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                let mut compiled = BTreeMap::new();
                for (status, response) in responses {
                    let has_body = response
                        .pointer("/content/application~1json/schema")
                        .is_some();
                    let validator = if has_body {
                        let at = format!(
                            "{ROOT}#/paths/{}/{method}/responses/{}/content/application~1json/schema",
                            pointer_escape(template),
                            pointer_escape(status)
                        );
                        let v = jsonschema::options()
                            .with_registry(&registry)
                            .should_validate_formats(true)
                            .build(&json!({"$ref": at}))
                            .map_err(|e| ContractError::Schema {
                                operation: format!("{} {template}", method.to_uppercase()),
                                status: status.clone(),
                                why: e.to_string(),
                            })?;
                        Some(v)
                    } else {
                        None
                    };
                    compiled.insert(status.clone(), validator);
                }
                operations.push(Operation {
                    method: method.to_lowercase(),
                    template: template.clone(),
                    segments: template
                        .split('/')
                        .map(|s| (!s.starts_with('{')).then(|| s.to_string()))
                        .collect(),
                    responses: compiled,
                });
            }
        }
        Ok(Contract {
            operations,
            version: doc["info"]["version"].as_str().unwrap_or("?").to_string(),
        })
    }

    /// The document's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    fn find(&self, method: &str, path: &str) -> (Option<&Operation>, bool) {
        let segments: Vec<&str> = path.split('/').collect();
        let same_path: Vec<&Operation> = self
            .operations
            .iter()
            .filter(|o| o.matches(&segments))
            .collect();
        let op = same_path
            .iter()
            .find(|o| o.method.eq_ignore_ascii_case(method))
            .copied();
        (op, !same_path.is_empty())
    }

    /// Checks one response; `Ok(Some(..))` names the operation and status key it covered.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
    ) -> Result<Option<(String, String)>, Disagreement> {
        let disagree = |kind: &str, detail: String| Disagreement {
            kind: kind.into(),
            method: method.to_uppercase(),
            path: path.to_string(),
            status,
            detail,
        };
        // HEAD is GET without a body (RFC 9110); documents list GET only.
        let head = method.eq_ignore_ascii_case("HEAD");
        let (op, path_known) = self.find(if head { "GET" } else { method }, path);
        let Some(op) = op else {
            let allowed: &[u16] = if path_known {
                &[401, 403, 405, 429]
            } else {
                &[404]
            };
            return if allowed.contains(&status) {
                Ok(None)
            } else {
                Err(disagree(
                    "unknown_route_status",
                    format!("not an operation of the document: expected one of {allowed:?}"),
                ))
            };
        };
        let Some(key) = op.key(status) else {
            let listed: Vec<&String> = op.responses.keys().collect();
            return Err(disagree(
                "undocumented_status",
                format!("{} lists {listed:?}", op.name()),
            ));
        };
        if let Some(validator) = op.responses[key].as_ref().filter(|_| !head) {
            let value: Value = serde_json::from_slice(body)
                .map_err(|e| disagree("not_json", format!("{} {key}: {e}", op.name())))?;
            let errors: Vec<String> = validator
                .iter_errors(&value)
                .take(3)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            if !errors.is_empty() {
                return Err(disagree(
                    "body_mismatch",
                    format!("{} {key}: {}", op.name(), errors.join("; ")),
                ));
            }
        }
        Ok(Some((op.name(), key.to_string())))
    }

    /// Every operation and the status keys it documents (`default` left out: it stands for
    /// unexpected errors, which no run is asked to produce).
    pub fn documented(&self) -> BTreeMap<String, BTreeSet<String>> {
        self.operations
            .iter()
            .map(|o| {
                let statuses = o
                    .responses
                    .keys()
                    .filter(|k| k.as_str() != "default")
                    .cloned()
                    .collect();
                (o.name(), statuses)
            })
            .collect()
    }
}

/// A contract and what it has seen: disagreements, and which statuses of which operations.
pub struct Conformance {
    contract: Contract,
    disagreements: Mutex<Vec<Disagreement>>,
    /// How many disagreements [`Conformance::since_last`] has handed out.
    handed_out: Mutex<usize>,
    coverage: Mutex<BTreeMap<(String, String), u64>>,
    checked: Mutex<u64>,
}

impl Conformance {
    pub fn new(contract: Contract) -> Conformance {
        Conformance {
            contract,
            disagreements: Mutex::default(),
            handed_out: Mutex::new(0),
            coverage: Mutex::default(),
            checked: Mutex::new(0),
        }
    }

    /// The contract this repository checks in (`contract/openapi.json`).
    pub fn of_this_contract() -> Conformance {
        let contract =
            Contract::new(&contract::openapi::document()).expect("contract/openapi.json compiles");
        Conformance::new(contract)
    }

    pub fn contract(&self) -> &Contract {
        &self.contract
    }

    /// Records one response; returns its disagreement, if any.
    pub fn record(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &[u8],
    ) -> Option<Disagreement> {
        *self.checked.lock().expect("conformance lock") += 1;
        match self.contract.check(method, path, status, body) {
            Ok(Some(covered)) => {
                *self
                    .coverage
                    .lock()
                    .expect("conformance lock")
                    .entry(covered)
                    .or_default() += 1;
                None
            }
            Ok(None) => None,
            Err(d) => {
                self.disagreements
                    .lock()
                    .expect("conformance lock")
                    .push(d.clone());
                Some(d)
            }
        }
    }

    pub fn disagreements(&self) -> Vec<Disagreement> {
        self.disagreements.lock().expect("conformance lock").clone()
    }

    /// The verdict of the disagreements recorded since the last call: one property case's.
    pub fn since_last(&self) -> reports::Verdict {
        let all = self.disagreements();
        let mut handed_out = self.handed_out.lock().expect("conformance lock");
        let new = &all[(*handed_out).min(all.len())..];
        *handed_out = all.len();
        let mut v = reports::Verdict::new("contract");
        v.count("disagreements", new.len() as u64);
        for d in new {
            v.anomaly(&d.kind, serde_json::to_value(d).unwrap_or_default());
        }
        v.summary(format!(
            "{} answers disagreed with contract {}",
            new.len(),
            self.contract.version()
        ));
        v
    }

    /// Documented (operation, status) pairs not seen yet.
    pub fn uncovered(&self) -> Vec<(String, String)> {
        let seen = self.coverage.lock().expect("conformance lock");
        self.contract
            .documented()
            .into_iter()
            .flat_map(|(op, statuses)| statuses.into_iter().map(move |s| (op.clone(), s)))
            .filter(|k| !seen.contains_key(k))
            .collect()
    }

    /// The verdict of everything recorded: invalid on any disagreement.
    pub fn verdict(&self) -> reports::Verdict {
        let mut v = reports::Verdict::new("contract");
        let checked = *self.checked.lock().expect("conformance lock");
        let disagreements = self.disagreements();
        let documented: usize = self.contract.documented().values().map(BTreeSet::len).sum();
        let uncovered = self.uncovered();
        v.count("responses_checked", checked)
            .count("disagreements", disagreements.len() as u64)
            .count("statuses_documented", documented as u64)
            .count("statuses_seen", (documented - uncovered.len()) as u64);
        for ((op, status), n) in self.coverage.lock().expect("conformance lock").iter() {
            v.count(&format!("seen {op} {status}"), *n);
        }
        for d in disagreements {
            v.anomaly(&d.kind, serde_json::to_value(&d).unwrap_or_default());
        }
        v.summary(format!(
            "{checked} responses held to contract {}: {} statuses of {documented} documented were seen",
            self.contract.version(),
            documented - uncovered.len()
        ));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {"version": "9"},
            "paths": {
                "/items/{id}": {"get": {"responses": {
                    "200": {"content": {"application/json": {"schema": {
                        "type": "object", "required": ["code"],
                        "properties": {"code": {"const": "OK"}}}}}},
                    "404": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Err"}}}},
                    "default": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Err"}}}}
                }}}
            },
            "components": {"schemas": {"Err": {"type": "object", "required": ["code"],
                "properties": {"code": {"type": "string"}}}}}
        })
    }

    #[test]
    fn responses_are_held_to_their_operation() {
        let c = Contract::new(&doc()).unwrap();
        assert_eq!(
            c.check("GET", "/items/7", 200, br#"{"code":"OK"}"#)
                .unwrap(),
            Some(("GET /items/{id}".into(), "200".into()))
        );
        let d = c
            .check("GET", "/items/7", 200, br#"{"code":"NO"}"#)
            .unwrap_err();
        assert_eq!(d.kind, "body_mismatch");
        let d = c
            .check("GET", "/items/7", 409, br#"{"code":"CONFLICT_ERR"}"#)
            .unwrap_err();
        assert_eq!(d.kind, "undocumented_status", "default is for 5xx only");
        assert!(c.check("GET", "/items/7", 500, br#"{"code":"X"}"#).is_ok());
        assert_eq!(
            c.check("GET", "/items/7", 200, b"<html>").unwrap_err().kind,
            "not_json"
        );
    }

    #[test]
    fn unknown_routes_and_methods_have_their_own_answers() {
        let c = Contract::new(&doc()).unwrap();
        assert!(c.check("GET", "/nowhere", 404, b"{}").is_ok());
        assert!(c.check("POST", "/items/7", 405, b"{}").is_ok());
        assert!(c.check("POST", "/items/7", 401, b"{}").is_ok());
        assert_eq!(
            c.check("POST", "/items/7", 200, b"{}").unwrap_err().kind,
            "unknown_route_status"
        );
    }

    #[test]
    fn coverage_and_verdict() {
        let conf = Conformance::new(Contract::new(&doc()).unwrap());
        conf.record("GET", "/items/1", 200, br#"{"code":"OK"}"#);
        assert_eq!(
            conf.uncovered(),
            vec![("GET /items/{id}".into(), "404".into())]
        );
        conf.record("GET", "/items/1", 418, b"{}");
        let v = conf.verdict();
        assert_eq!(v.validity, reports::Validity::Invalid);
        assert_eq!(v.anomaly_count("undocumented_status"), 1);
        assert_eq!(v.counts["responses_checked"], 2);
    }

    /// The checked-in contract compiles.
    #[test]
    fn this_contract_compiles() {
        let conf = Conformance::of_this_contract();
        assert!(!conf.contract().documented().is_empty());
    }
}
