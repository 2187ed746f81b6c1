//! Webhook endpoint secrets and the `Coffer-Signature` header.
//!
//! The header is `t=UNIX_SECONDS,v1=HEX`, where HEX is the lowercase hex of
//! HMAC-SHA256 keyed with the endpoint secret's UTF-8 bytes exactly as shown
//! to the vendor (`whsec_` prefix included) over `"{t}.{raw body}"`. A
//! receiver checks the signature in constant time and refuses a timestamp
//! outside its tolerance window, so a captured delivery cannot be replayed
//! later. Several `v1=` entries may appear (e.g. while a secret is rolled).

use crate::{CryptoError, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The prefix of every webhook endpoint secret.
pub const WEBHOOK_SECRET_PREFIX: &str = "whsec_";

/// At most this many `v1=` entries are tried in one header.
const MAX_SIGNATURES: usize = 8;

/// A new endpoint secret: `whsec_` + base64url (no padding) of 32 random bytes.
pub fn new_webhook_secret() -> Result<String, CryptoError> {
    let bytes = random_bytes::<32>()?;
    Ok(format!("{WEBHOOK_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The `Coffer-Signature` header value for a delivery sent at `unix_seconds`.
pub fn webhook_signature(secret: &str, unix_seconds: i64, body: &[u8]) -> String {
    let tag = signature_mac(secret, unix_seconds, body).finalize().into_bytes();
    format!("t={unix_seconds},v1={}", hex::encode(tag))
}

/// Checks a `Coffer-Signature` header against the raw body: the timestamp
/// must lie within `tolerance_seconds` of `now_unix` (either side) and at
/// least one `v1=` entry must match, compared in constant time.
pub fn verify_webhook_signature(
    secret: &str,
    header: &str,
    body: &[u8],
    now_unix: i64,
    tolerance_seconds: i64,
) -> bool {
    let Some(parsed) = ParsedHeader::parse(header) else {
        return false;
    };
    if tolerance_seconds < 0 {
        return false;
    }
    match now_unix.checked_sub(parsed.timestamp) {
        Some(age) if age.checked_abs().is_some_and(|age| age <= tolerance_seconds) => {}
        _ => return false,
    }
    let expected = signature_mac(secret, parsed.timestamp, body).finalize().into_bytes();
    let mut matched = subtle::Choice::from(0u8);
    for candidate in &parsed.signatures {
        if candidate.len() == expected.len() {
            matched |= expected.as_slice().ct_eq(candidate);
        }
    }
    bool::from(matched)
}

fn signature_mac(secret: &str, unix_seconds: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(unix_seconds.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

struct ParsedHeader {
    timestamp: i64,
    signatures: Vec<Vec<u8>>,
}

impl ParsedHeader {
    /// `t=…` exactly once; any number of `v1=…` (undecodable ones skipped,
    /// at most [`MAX_SIGNATURES`] kept); other schemes ignored.
    fn parse(header: &str) -> Option<ParsedHeader> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for part in header.split(',') {
            let (key, value) = part.trim().split_once('=')?;
            match key.trim() {
                "t" => {
                    if timestamp.is_some() {
                        return None;
                    }
                    let value = value.trim();
                    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
                        return None;
                    }
                    timestamp = Some(value.parse::<i64>().ok()?);
                }
                "v1" => {
                    if signatures.len() < MAX_SIGNATURES
                        && let Ok(bytes) = hex::decode(value.trim())
                    {
                        signatures.push(bytes);
                    }
                }
                _ => {}
            }
        }
        Some(ParsedHeader { timestamp: timestamp?, signatures })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_dGhpcyBpcyBhIHRlc3Qgc2VjcmV0IGZvciBjb2ZmZXI";
    const BODY: &[u8] = br#"{"id":"evt_1","type":"order.paid","data":{"order_id":"ord_1"}}"#;
    const T: i64 = 1_767_225_600;
    /// Computed independently with Python's `hmac` module:
    /// `hmac.new(SECRET.encode(), b"1767225600." + BODY, hashlib.sha256).hexdigest()`.
    const EXPECTED_HEX: &str = "40f5c36a1281ddb31265e5e6a4ec7359a2344139d59324f38863b7f8bf2aef95";

    #[test]
    fn signature_matches_an_independent_known_answer() {
        assert_eq!(webhook_signature(SECRET, T, BODY), format!("t={T},v1={EXPECTED_HEX}"));
    }

    #[test]
    fn secrets_are_prefixed_random_base64url() {
        let a = new_webhook_secret().unwrap();
        let b = new_webhook_secret().unwrap();
        assert_ne!(a, b);
        let encoded = a.strip_prefix("whsec_").unwrap();
        assert_eq!(encoded.len(), 43, "32 bytes in base64url without padding");
        assert_eq!(URL_SAFE_NO_PAD.decode(encoded).unwrap().len(), 32);
        assert!(encoded.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn a_fresh_signature_verifies_and_the_known_answer_verifies() {
        let secret = new_webhook_secret().unwrap();
        let header = webhook_signature(&secret, T, BODY);
        assert!(verify_webhook_signature(&secret, &header, BODY, T, 300));
        let known = format!("t={T},v1={EXPECTED_HEX}");
        assert!(verify_webhook_signature(SECRET, &known, BODY, T + 10, 300));
    }

    #[test]
    fn tolerance_window_is_enforced_on_both_sides() {
        let header = webhook_signature(SECRET, T, BODY);
        assert!(verify_webhook_signature(SECRET, &header, BODY, T + 300, 300), "at the edge");
        assert!(verify_webhook_signature(SECRET, &header, BODY, T - 300, 300), "clock skew, at the edge");
        assert!(!verify_webhook_signature(SECRET, &header, BODY, T + 301, 300), "too old");
        assert!(!verify_webhook_signature(SECRET, &header, BODY, T - 301, 300), "from the future");
        assert!(!verify_webhook_signature(SECRET, &header, BODY, T, -1), "negative tolerance");
        assert!(!verify_webhook_signature(SECRET, &header, BODY, i64::MIN, i64::MAX), "no overflow");
    }

    #[test]
    fn tampering_is_refused() {
        let header = webhook_signature(SECRET, T, BODY);
        let mut body = BODY.to_vec();
        body[10] ^= 1;
        assert!(!verify_webhook_signature(SECRET, &header, &body, T, 300), "tampered body");
        assert!(!verify_webhook_signature("whsec_other", &header, BODY, T, 300), "other secret");
        let without_prefix = SECRET.strip_prefix("whsec_").unwrap();
        assert!(!verify_webhook_signature(without_prefix, &header, BODY, T, 300), "the prefix is part of the key");
        let moved = header.replace(&format!("t={T}"), &format!("t={}", T + 1));
        assert!(!verify_webhook_signature(SECRET, &moved, BODY, T, 300), "tampered timestamp");
        let upper = format!("t={T},v1={}", EXPECTED_HEX.to_uppercase());
        assert!(verify_webhook_signature(SECRET, &upper, BODY, T, 300), "hex case does not matter to a verifier");
        let short = format!("t={T},v1={}", &EXPECTED_HEX[..32]);
        assert!(!verify_webhook_signature(SECRET, &short, BODY, T, 300), "truncated signature");
    }

    #[test]
    fn several_v1_entries_are_accepted_when_one_matches() {
        let good = webhook_signature(SECRET, T, BODY);
        let good_hex = good.split_once("v1=").unwrap().1;
        let other_hex = webhook_signature("whsec_old", T, BODY).split_once("v1=").unwrap().1.to_owned();
        let header = format!("t={T},v1={other_hex},v1=zz,v0=abc,v1={good_hex}");
        assert!(verify_webhook_signature(SECRET, &header, BODY, T, 300));
        let none = format!("t={T},v1={other_hex}");
        assert!(!verify_webhook_signature(SECRET, &none, BODY, T, 300));
    }

    #[test]
    fn malformed_headers_are_refused() {
        let good_hex = EXPECTED_HEX;
        for header in [
            "",
            "v1=00",
            &format!("v1={good_hex}"),
            &format!("t=,v1={good_hex}"),
            &format!("t=-{T},v1={good_hex}"),
            &format!("t={T}x,v1={good_hex}"),
            &format!("t={T},t={T},v1={good_hex}"),
            &format!("t={T},v1"),
            &format!("t={T}"),
        ] {
            assert!(!verify_webhook_signature(SECRET, header, BODY, T, 300), "{header:?}");
        }
        let spaced = format!("t={T}, v1={good_hex}");
        assert!(verify_webhook_signature(SECRET, &spaced, BODY, T, 300), "spaces after commas");
    }
}
