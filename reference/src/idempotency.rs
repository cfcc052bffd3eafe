//! Idempotency-Key semantics (IETF httpapi draft "The Idempotency-Key HTTP Header Field").
//!
//! The first request with a key reserves it; the response it produces is stored and replayed
//! byte for byte to later requests with the same key and the same body. Another body under the
//! same key is 422; a duplicate arriving while the first is still being handled is 409.

use sha2::{Digest, Sha256};

/// The stored first response for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredResponse {
    pub status: u16,
    pub body: Vec<u8>,
    pub location: Option<String>,
}

/// A reservation held by one request. A takeover gives the key a new `token`, so a request whose
/// lease expired holds a stale one and the store refuses its completion and its release: it
/// fences off a slow first request that wakes up after a retry took its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyLease {
    pub key: String,
    pub token: i64,
}

/// What reserving a key found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// The key is new (or its holder was abandoned): this request proceeds under this lease.
    Reserved(KeyLease),
    /// The key completed with the same body: replay this response.
    Replay(StoredResponse),
    /// The key was used with another body.
    Mismatch,
    /// The first request with this key is still being handled.
    InFlight,
}

/// Fingerprint of a request body: SHA-256 of its canonical JSON (object keys sorted, no
/// insignificant whitespace), so that formatting differences are not "another body".
pub fn fingerprint(body: &serde_json::Value) -> String {
    let mut hasher = Sha256::new();
    write_canonical(body, &mut hasher);
    hex::encode(hasher.finalize())
}

/// Feeds the canonical JSON text of `value` to the hasher. Keys are sorted here rather than
/// trusting the map type, which a dependency enabling `preserve_order` would change.
fn write_canonical(value: &serde_json::Value, out: &mut Sha256) {
    match value {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.update(b"{");
            for (i, (k, v)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.update(b",");
                }
                out.update(
                    serde_json::to_string(k)
                        .expect("string serialises")
                        .as_bytes(),
                );
                out.update(b":");
                write_canonical(v, out);
            }
            out.update(b"}");
        }
        serde_json::Value::Array(items) => {
            out.update(b"[");
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.update(b",");
                }
                write_canonical(v, out);
            }
            out.update(b"]");
        }
        scalar => out.update(scalar.to_string().as_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_and_key_order_do_not_change_the_fingerprint() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"type":"echo","payload":{"b":1,"a":2}}"#).unwrap();
        let b: serde_json::Value =
            serde_json::from_str("{ \"payload\": {\"a\": 2, \"b\": 1},\n \"type\": \"echo\" }")
                .unwrap();
        assert_eq!(fingerprint(&a), fingerprint(&b));
    }

    /// Stored keys outlive a deploy: the fingerprint is the SHA-256 of the canonical text, so
    /// a retry that reaches the next release is still the same body, not a 422.
    #[test]
    fn the_fingerprint_is_the_sha256_of_the_canonical_text() {
        let body = serde_json::json!({"type": "echo", "payload": {"b": [1, "x"], "a": null}});
        let canonical = r#"{"payload":{"a":null,"b":[1,"x"]},"type":"echo"}"#;
        assert_eq!(fingerprint(&body), hex::encode(Sha256::digest(canonical)));
    }

    #[test]
    fn another_body_has_another_fingerprint() {
        let a = serde_json::json!({"type": "credit", "payload": {"account": "x", "amount": 1}});
        let b = serde_json::json!({"type": "credit", "payload": {"account": "x", "amount": 2}});
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert_eq!(fingerprint(&a).len(), 64);
    }
}
