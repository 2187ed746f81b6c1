//! TOTP second factor (RFC 6238: SHA-1, 6 digits, 30-second steps, one
//! step of clock skew either way) through totp-rs, plus recovery codes.
//! A code is accepted once: callers keep the last step used and refuse any
//! step not after it.

use crate::{CryptoError, random_bytes};
use totp_rs::{Algorithm, Builder, Secret, Totp};

/// Length of a TOTP secret: 160 bits, as RFC 4226 recommends.
pub const TOTP_SECRET_LEN: usize = 20;

pub fn new_totp_secret() -> Result<[u8; TOTP_SECRET_LEN], CryptoError> {
    random_bytes::<TOTP_SECRET_LEN>()
}

fn totp(secret: &[u8], account: &str) -> Result<Totp, CryptoError> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_secret(Secret::from(secret.to_vec()))
        .with_issuer(Some("Coffer"))
        .with_account_name(account.replace(':', " "))
        .build()
        .map_err(|_| CryptoError::UnknownFormat { what: "a TOTP secret" })
}

/// The secret as people type it: base32 (RFC 4648), no padding.
pub fn totp_base32(secret: &[u8]) -> String {
    Secret::from(secret.to_vec()).to_base32()
}

/// The secret back from base32 (as posted by the set-up form).
pub fn totp_secret_from_base32(text: &str) -> Option<Vec<u8>> {
    let secret = Secret::try_from_base32(text.trim()).ok()?;
    let bytes: &[u8] = secret.as_ref();
    (bytes.len() >= 16).then(|| bytes.to_vec())
}

/// The `otpauth://` URI an authenticator app reads.
pub fn totp_uri(secret: &[u8], account: &str) -> Result<String, CryptoError> {
    totp(secret, account)?.to_url().map_err(|_| CryptoError::UnknownFormat { what: "a TOTP secret" })
}

/// The time step a code matches (within one step of `unix_seconds`).
pub fn check_totp(secret: &[u8], code: &str, unix_seconds: u64) -> Option<u64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    totp(secret, "x").ok()?.check(&code, unix_seconds)
}

/// The code for a time (tests, and showing the next code in docs).
pub fn totp_code(secret: &[u8], unix_seconds: u64) -> Option<String> {
    Some(totp(secret, "x").ok()?.generate(unix_seconds).to_string())
}

/// Ten recovery codes of 10 base32 characters (50 bits each), shown once;
/// callers store only their `token_hash`.
pub fn new_recovery_codes() -> Result<Vec<String>, CryptoError> {
    (0..10)
        .map(|_| {
            let bytes = random_bytes::<10>()?;
            let text = Secret::from(bytes.to_vec()).to_base32().to_lowercase();
            Ok(format!("{}-{}", &text[..5], &text[5..10]))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 6238 appendix B, SHA-1 rows (the last 6 digits of the 8-digit codes).
    #[test]
    fn matches_rfc_6238_vectors() {
        let secret = b"12345678901234567890";
        for (time, expected) in
            [(59, "287082"), (1_111_111_109, "081804"), (1_234_567_890, "005924"), (2_000_000_000, "279037")]
        {
            assert_eq!(totp_code(secret, time).unwrap(), expected, "t = {time}");
            assert!(check_totp(secret, expected, time).is_some());
        }
    }

    #[test]
    fn one_step_of_skew_and_bad_codes_are_refused() {
        let secret = new_totp_secret().unwrap();
        let now = 1_800_000_000;
        let code = totp_code(&secret, now).unwrap();
        assert_eq!(check_totp(&secret, &code, now), Some(now / 30));
        assert!(check_totp(&secret, &code, now + 30).is_some(), "one step late is fine");
        assert!(check_totp(&secret, &code, now + 90).is_none(), "three steps late is not");
        for bad in ["", "12345", "1234567", "abcdef", "12 34 5x"] {
            assert!(check_totp(&secret, bad, now).is_none(), "{bad:?}");
        }
        assert!(totp_uri(&secret, "ada@example.org").unwrap().starts_with("otpauth://totp/Coffer:ada%40example.org?"));
        assert_eq!(totp_base32(&secret).len(), 32);
        let codes = new_recovery_codes().unwrap();
        assert_eq!(codes.len(), 10);
        assert!(codes.iter().all(|c| c.len() == 11 && c.as_bytes()[5] == b'-'));
    }
}
