//! Random bearer tokens (sign-in links, session ids): 256 bits from the OS,
//! base64url without padding for URLs and cookies. Only their SHA-256 is
//! stored, so a copy of the database opens no session and no link.

use crate::{CryptoError, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::Mac;
use sha2::{Digest, Sha256};

/// A new token and the hash to store for it.
pub fn new_token() -> Result<(String, [u8; 32]), CryptoError> {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

/// A SHA-256 digest of bytes (a file's checksum).
pub fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// The stored form of a token.
pub fn token_hash(token: &str) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update(b"coffer.token.v1\0");
    hash.update(token.as_bytes());
    hash.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let (a, hash) = new_token().unwrap();
        let (b, _) = new_token().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43, "256 bits in base64url");
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
        assert_eq!(token_hash(&a), hash);
        assert_ne!(token_hash(&b), hash);
    }
}

/// The CSRF token of a session: HMAC-SHA256 of the session id under the
/// server's CSRF key, base64url. Forms carry it; a page of another site
/// cannot know it.
pub fn csrf_token(key: &[u8; 32], session: &str) -> String {
    URL_SAFE_NO_PAD.encode(labelled_mac(key, b"coffer.csrf.v1\0", session).finalize().into_bytes())
}

/// Checks a form's CSRF token in constant time.
pub fn csrf_matches(key: &[u8; 32], session: &str, given: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(given) {
        Ok(bytes) => labelled_mac(key, b"coffer.csrf.v1\0", session).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// The signature of a link's payload (downloads, ID uploads): HMAC-SHA256
/// under a link key, base64url. The payload carries its own expiry.
pub fn sign_link(key: &[u8], payload: &str) -> String {
    URL_SAFE_NO_PAD.encode(labelled_mac(key, b"coffer.link.v1\0", payload).finalize().into_bytes())
}

/// Checks a link's signature in constant time.
pub fn link_matches(key: &[u8], payload: &str, signature: &str) -> bool {
    match URL_SAFE_NO_PAD.decode(signature) {
        Ok(bytes) => labelled_mac(key, b"coffer.link.v1\0", payload).verify_slice(&bytes).is_ok(),
        Err(_) => false,
    }
}

/// A keyed hash (HMAC-SHA256) of bytes under a purpose label: for values
/// that must be compared but never stored in the clear.
pub fn keyed_hash(key: &[u8], label: &str, bytes: &[u8]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"coffer.keyed-hash.v1\0");
    mac.update(label.as_bytes());
    mac.update(b"\0");
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

fn labelled_mac(key: &[u8], label: &[u8], message: &str) -> hmac::Hmac<Sha256> {
    use hmac::KeyInit;
    let mut mac = <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(label);
    mac.update(message.as_bytes());
    mac
}

#[cfg(test)]
mod csrf_tests {
    use super::*;

    #[test]
    fn csrf_tokens_bind_to_the_session_and_key() {
        let key = [7u8; 32];
        let token = csrf_token(&key, "session-a");
        assert!(csrf_matches(&key, "session-a", &token));
        assert!(!csrf_matches(&key, "session-b", &token));
        assert!(!csrf_matches(&[8u8; 32], "session-a", &token));
        assert!(!csrf_matches(&key, "session-a", ""));
        assert!(!csrf_matches(&key, "session-a", "not base64 !"));
    }

    #[test]
    fn link_signatures_bind_to_payload_and_key_and_differ_from_csrf() {
        let key = [7u8; 32];
        let signature = sign_link(&key, "ord_1.1.1800000000");
        assert!(link_matches(&key, "ord_1.1.1800000000", &signature));
        assert!(!link_matches(&key, "ord_1.1.1900000000", &signature), "a changed expiry");
        assert!(!link_matches(&[8u8; 32], "ord_1.1.1800000000", &signature));
        assert_ne!(signature, csrf_token(&key, "ord_1.1.1800000000"), "domain separated");
    }
}
