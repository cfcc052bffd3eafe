//! The API's OpenAPI document: what the reference serves at `/api/v1/openapi.json` (a test
//! keeps the two equal), and what the harness holds any system's responses to. Versioned by
//! its `info.version`.

/// The document, as JSON text.
pub const DOCUMENT: &str = include_str!("../openapi.json");

/// The document, parsed.
pub fn document() -> serde_json::Value {
    serde_json::from_str(DOCUMENT).expect("contract/openapi.json is JSON")
}
