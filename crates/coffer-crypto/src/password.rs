//! Password hashing: argon2id at OWASP's parameters (m = 19456 KiB, t = 2,
//! p = 1), stored as PHC strings, so the parameters travel with each hash
//! and can be raised later without breaking old ones.

use crate::CryptoError;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::LazyLock;

/// Memory per hash, KiB (OWASP's minimum for argon2id).
pub const ARGON2_MEMORY_KIB: u32 = 19_456;
pub const ARGON2_ITERATIONS: u32 = 2;
pub const ARGON2_LANES: u32 = 1;

fn argon2() -> Result<Argon2<'static>, CryptoError> {
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_ITERATIONS, ARGON2_LANES, None)
        .map_err(|_| CryptoError::UnknownFormat { what: "the argon2 parameters" })?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

/// Hashes a password with a fresh random salt; returns the PHC string.
pub fn hash_password(password: &[u8]) -> Result<String, CryptoError> {
    let hash = argon2()?.hash_password(password).map_err(|_| CryptoError::Random)?;
    Ok(hash.to_string())
}

/// True when `password` matches the PHC string (false for a malformed one).
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    argon2().is_ok_and(|a| a.verify_password(password, phc).is_ok())
}

/// A hash of a random password at the same parameters, made once.
static DUMMY: LazyLock<Option<String>> = LazyLock::new(|| {
    let random = crate::random_bytes::<32>().ok()?;
    hash_password(&random).ok()
});

/// Runs the same verification as for a real account, against a hash no
/// password matches: an unknown address costs what a known one costs, so
/// timing does not tell which addresses have accounts.
pub fn dummy_verify(password: &[u8]) {
    if let Some(dummy) = DUMMY.as_deref() {
        std::hint::black_box(verify_password(password, dummy));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_carry_their_parameters_and_differ_by_salt() {
        let a = hash_password(b"correct horse battery staple").unwrap();
        let b = hash_password(b"correct horse battery staple").unwrap();
        assert_ne!(a, b, "a fresh salt each time");
        assert!(a.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{a}");
        assert!(verify_password(b"correct horse battery staple", &a));
        assert!(!verify_password(b"correct horse battery stapl", &a));
        assert!(!verify_password(b"anything", "not a phc string"));
    }

    #[test]
    fn dummy_verification_runs_the_real_work() {
        let started = std::time::Instant::now();
        dummy_verify(b"x");
        let _ = started.elapsed();
        assert!(DUMMY.as_deref().is_some_and(|h| h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$")));
        assert!(!verify_password(b"x", DUMMY.as_deref().unwrap()));
    }
}
