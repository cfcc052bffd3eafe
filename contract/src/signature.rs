//! Callback signatures: `t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

fn mac(secret: &str, unix_secs: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut m =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    m.update(unix_secs.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m
}

/// The signature header value for `body` sent at `unix_secs`.
pub fn sign(secret: &str, unix_secs: i64, body: &[u8]) -> String {
    format!(
        "t={unix_secs},v1={}",
        hex::encode(mac(secret, unix_secs, body).finalize().into_bytes())
    )
}

/// The header's timestamp and MAC.
fn parse(header: &str) -> Option<(i64, Vec<u8>)> {
    let mut t = None;
    let mut v1 = None;
    for part in header.split(',') {
        match part.split_once('=') {
            Some(("t", v)) => t = v.parse::<i64>().ok(),
            Some(("v1", v)) => v1 = hex::decode(v).ok(),
            _ => {}
        }
    }
    Some((t?, v1?))
}

/// Checks a signature header in constant time.
pub fn verify(secret: &str, header: &str, body: &[u8]) -> bool {
    parse(header).is_some_and(|(t, v1)| mac(secret, t, body).verify_slice(&v1).is_ok())
}

/// Checks a signature as a receiver should: valid, and stamped within `tolerance_secs` of
/// `now_secs`, so that a replayed or mis-stamped delivery is refused.
pub fn verify_fresh(
    secret: &str,
    header: &str,
    body: &[u8],
    now_secs: i64,
    tolerance_secs: i64,
) -> bool {
    parse(header).is_some_and(|(t, v1)| {
        (now_secs - t).abs() <= tolerance_secs && mac(secret, t, body).verify_slice(&v1).is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_verifies_and_detects_tampering() {
        let header = sign("k", 1_700_000_000, b"{\"a\":1}");
        assert!(header.starts_with("t=1700000000,v1="));
        assert!(verify("k", &header, b"{\"a\":1}"));
        assert!(!verify("k", &header, b"{\"a\":2}"));
        assert!(!verify("other", &header, b"{\"a\":1}"));
        assert!(!verify("k", "garbage", b"{\"a\":1}"));
    }

    #[test]
    fn a_fresh_signature_is_stamped_near_now() {
        let header = sign("k", 1_700_000_000, b"x");
        assert!(verify_fresh("k", &header, b"x", 1_700_000_200, 300));
        assert!(!verify_fresh("k", &header, b"x", 1_700_000_400, 300));
        assert!(!verify_fresh("k", &header, b"x", 1_699_999_600, 300));
        assert!(!verify_fresh("other", &header, b"x", 1_700_000_000, 300));
    }
}
