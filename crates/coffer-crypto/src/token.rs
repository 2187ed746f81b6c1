//! Random bearer tokens (sign-in links, session ids): 256 bits from the OS,
//! base64url without padding for URLs and cookies. Only their SHA-256 is
//! stored, so a copy of the database opens no session and no link.

use crate::{CryptoError, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// A new token and the hash to store for it.
pub fn new_token() -> Result<(String, [u8; 32]), CryptoError> {
    let token = URL_SAFE_NO_PAD.encode(random_bytes::<32>()?);
    let hash = token_hash(&token);
    Ok((token, hash))
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
