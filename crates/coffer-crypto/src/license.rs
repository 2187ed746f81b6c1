//! License keys: `B64(payload) "." B64(signature)`, base64url without
//! padding, where the payload is UTF-8 JSON and the Ed25519 signature
//! covers exactly those bytes (CONTRACT.md). Each vendor has its own key
//! pair; the seed is wrapped under the master key like every other secret.

use crate::{CryptoError, KEY_LEN, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::fmt;
use zeroize::Zeroizing;

pub struct LicenseSigningKey(SigningKey);

impl LicenseSigningKey {
    /// A fresh seed, to be wrapped and stored.
    pub fn new_seed() -> Result<Zeroizing<[u8; KEY_LEN]>, CryptoError> {
        Ok(Zeroizing::new(random_bytes::<KEY_LEN>()?))
    }

    pub fn from_seed(seed: &[u8]) -> Result<LicenseSigningKey, CryptoError> {
        let seed: [u8; KEY_LEN] =
            seed.try_into().map_err(|_| CryptoError::BadLength { what: "a license signing key", expected: KEY_LEN })?;
        Ok(LicenseSigningKey(SigningKey::from_bytes(&seed)))
    }

    /// The raw 32-byte public key in standard base64 with padding, as
    /// `demo-credentials.json` and the vendor portal show it.
    pub fn public_key_base64(&self) -> String {
        STANDARD.encode(self.0.verifying_key().to_bytes())
    }

    /// Signs the payload bytes: `B64(payload).B64(signature)`.
    pub fn sign(&self, payload: &[u8]) -> String {
        let signature = self.0.sign(payload);
        format!("{}.{}", URL_SAFE_NO_PAD.encode(payload), URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

impl fmt::Debug for LicenseSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseSigningKey(<redacted>)")
    }
}

/// Checks a license key against a vendor's public key (standard base64)
/// and returns the payload bytes: what a vendor's program does offline.
pub fn verify_license(public_key_base64: &str, key: &str) -> Result<Vec<u8>, CryptoError> {
    let bad = || CryptoError::DoesNotOpen { what: "the license key" };
    let public: [u8; 32] = STANDARD.decode(public_key_base64).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let (payload, signature) = key.split_once('.').ok_or_else(bad)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    let verifying = VerifyingKey::from_bytes(&public).map_err(|_| bad())?;
    verifying.verify(&payload, &Signature::from_bytes(&signature)).map_err(|_| bad())?;
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_key_verifies_and_any_change_does_not() {
        let seed = LicenseSigningKey::new_seed().unwrap();
        let signer = LicenseSigningKey::from_seed(seed.as_slice()).unwrap();
        let payload =
            br#"{"order_id":"ord_1","product_id":"prd_1","licensee":"lic_ab","issued_at":"2026-11-26T02:00:00Z"}"#;
        let key = signer.sign(payload);
        assert!(!key.contains('='), "no padding");
        assert_eq!(verify_license(&signer.public_key_base64(), &key).unwrap(), payload);
        assert_eq!(STANDARD.decode(signer.public_key_base64()).unwrap().len(), 32);
        let other = LicenseSigningKey::from_seed(LicenseSigningKey::new_seed().unwrap().as_slice()).unwrap();
        assert!(verify_license(&other.public_key_base64(), &key).is_err(), "another vendor's key");
        let (p, s) = key.split_once('.').unwrap();
        let mut forged = URL_SAFE_NO_PAD.decode(p).unwrap();
        forged[10] ^= 1;
        assert!(
            verify_license(&signer.public_key_base64(), &format!("{}.{s}", URL_SAFE_NO_PAD.encode(forged))).is_err()
        );
    }
}
