//! License keys: `B64(payload) "." B64(signature)`, base64url without
//! padding, where the payload is UTF-8 JSON and the Ed25519 signature
//! covers exactly those payload bytes (CONTRACT.md). Each vendor has its own key
//! pair; the seed is wrapped under the master key like every other secret.
//!
//! The same key signs the vendor's revocation list, but over
//! [`REVOCATION_LIST_CONTEXT`] followed by the list's bytes: a signature
//! over a list is never a signature over a license payload (a license
//! payload starts with `{`, the signed list with `coffer.`), so the public,
//! freely fetched list can never pass for a license key, nor a key for a
//! list.

use crate::{CryptoError, KEY_LEN, random_bytes};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;
use zeroize::Zeroizing;

/// What a revocation list's signature covers before the list's own bytes
/// (`docs/license-keys.md`): the ASCII text and one zero byte.
pub const REVOCATION_LIST_CONTEXT: &[u8] = b"coffer.revocation-list.v1\0";

/// A signed revocation list: `list` is B64URL of the UTF-8 JSON bytes,
/// `signature` B64URL of the Ed25519 signature over
/// [`REVOCATION_LIST_CONTEXT`] followed by exactly those bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedList {
    pub list: String,
    pub signature: String,
}

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

    /// Checks a license key against this key's public half and returns the
    /// payload bytes.
    pub fn verify(&self, key: &str) -> Result<Vec<u8>, CryptoError> {
        verify_with(&self.0.verifying_key(), key)
    }

    /// Signs a revocation list (the UTF-8 JSON bytes) in its own context.
    pub fn sign_revocation_list(&self, list: &[u8]) -> SignedList {
        let signature = self.0.sign(&revocation_message(list));
        SignedList { list: URL_SAFE_NO_PAD.encode(list), signature: URL_SAFE_NO_PAD.encode(signature.to_bytes()) }
    }
}

fn revocation_message(list: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(REVOCATION_LIST_CONTEXT.len() + list.len());
    message.extend_from_slice(REVOCATION_LIST_CONTEXT);
    message.extend_from_slice(list);
    message
}

impl fmt::Debug for LicenseSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LicenseSigningKey(<redacted>)")
    }
}

/// Checks a license key against a vendor's public key (standard base64)
/// and returns the payload bytes: what a vendor's program does offline.
pub fn verify_license(public_key_base64: &str, key: &str) -> Result<Vec<u8>, CryptoError> {
    verify_with(&public_key(public_key_base64, "the license key")?, key)
}

/// A public key in standard base64 (the raw 32 bytes).
fn public_key(public_key_base64: &str, what: &'static str) -> Result<VerifyingKey, CryptoError> {
    let bad = || CryptoError::DoesNotOpen { what };
    let public: [u8; 32] = STANDARD.decode(public_key_base64).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    VerifyingKey::from_bytes(&public).map_err(|_| bad())
}

fn verify_with(verifying: &VerifyingKey, key: &str) -> Result<Vec<u8>, CryptoError> {
    let bad = || CryptoError::DoesNotOpen { what: "the license key" };
    let (payload, signature) = key.split_once('.').ok_or_else(bad)?;
    let payload = URL_SAFE_NO_PAD.decode(payload).map_err(|_| bad())?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD.decode(signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    verifying.verify(&payload, &Signature::from_bytes(&signature)).map_err(|_| bad())?;
    Ok(payload)
}

/// The payload bytes of something shaped like a license key, NOT verified:
/// only to find out which vendor's key to verify it with. `None` when it is
/// not two base64url parts with a 64-byte signature.
pub fn unverified_license_payload(key: &str) -> Option<Vec<u8>> {
    let (payload, signature) = key.split_once('.')?;
    let signature = URL_SAFE_NO_PAD.decode(signature).ok()?;
    (signature.len() == 64).then_some(())?;
    URL_SAFE_NO_PAD.decode(payload).ok()
}

/// SHA-256 of a license key as issued (its UTF-8 text): how Coffer finds a
/// key without storing it in the clear, and how a revocation list names it.
pub fn license_key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Checks a signed revocation list against a vendor's public key (standard
/// base64) and returns the list's JSON bytes: what a vendor's program does
/// offline.
pub fn verify_revocation_list(public_key_base64: &str, signed: &SignedList) -> Result<Vec<u8>, CryptoError> {
    let bad = || CryptoError::DoesNotOpen { what: "the revocation list" };
    let verifying = public_key(public_key_base64, "the revocation list")?;
    let list = URL_SAFE_NO_PAD.decode(&signed.list).map_err(|_| bad())?;
    let signature: [u8; 64] =
        URL_SAFE_NO_PAD.decode(&signed.signature).ok().and_then(|b| b.try_into().ok()).ok_or_else(bad)?;
    verifying.verify(&revocation_message(&list), &Signature::from_bytes(&signature)).map_err(|_| bad())?;
    Ok(list)
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
        assert_eq!(signer.verify(&key).unwrap(), payload);
        assert!(other.verify(&key).is_err());
        assert_eq!(unverified_license_payload(&key).unwrap(), payload);
        assert_eq!(unverified_license_payload("no dot"), None);
        assert_eq!(unverified_license_payload(&format!("{p}.c2hvcnQ")), None, "a short signature");
    }

    #[test]
    fn a_key_hash_is_sha256_of_the_key_text() {
        // SHA-256("abc"), FIPS 180-2.
        assert_eq!(
            hex::encode(license_key_hash("abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_revocation_list_verifies_and_never_passes_for_a_license_key() {
        let signer = LicenseSigningKey::from_seed(LicenseSigningKey::new_seed().unwrap().as_slice()).unwrap();
        let public = signer.public_key_base64();
        let list = br#"{"vendor":"acme","issued_at":"2026-11-26T02:00:00Z","revoked":[]}"#;
        let signed = signer.sign_revocation_list(list);
        assert_eq!(verify_revocation_list(&public, &signed).unwrap(), list);
        // The list's signature over the bare bytes, as a license key, fails...
        assert!(verify_license(&public, &format!("{}.{}", signed.list, signed.signature)).is_err());
        // ...and a license key's signature does not sign a list.
        let key = signer.sign(list);
        let (p, s) = key.split_once('.').unwrap();
        let as_list = SignedList { list: p.to_owned(), signature: s.to_owned() };
        assert!(verify_revocation_list(&public, &as_list).is_err());
        // Another vendor's key, a changed list.
        let other = LicenseSigningKey::from_seed(LicenseSigningKey::new_seed().unwrap().as_slice()).unwrap();
        assert!(verify_revocation_list(&other.public_key_base64(), &signed).is_err());
        let changed = SignedList {
            list: URL_SAFE_NO_PAD.encode(br#"{"vendor":"acme","issued_at":"2026-11-26T02:00:00Z","revoked":[{}]}"#),
            ..signed
        };
        assert!(verify_revocation_list(&public, &changed).is_err());
    }
}
