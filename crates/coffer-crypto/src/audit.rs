//! The audit log's hash chain and the signatures over its head.
//!
//! Each entry's link hash covers the previous link, its sequence number and
//! its canonical bytes, with a prefix byte and label for domain separation
//! (as RFC 6962 separates leaf and node hashes), so no entry can be edited,
//! dropped, inserted or moved without changing every later link. The head
//! (sequence, link hash, time) is signed with Ed25519 and kept in the key
//! store, so truncating the chain before a signed head is detected too.

use crate::{CryptoError, KEY_LEN, random_bytes};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// The "previous link" of the first entry.
pub const GENESIS_HASH: [u8; 32] = [0u8; 32];

/// The link hash of entry `seq` whose canonical bytes are `entry`.
pub fn audit_link_hash(previous: &[u8; 32], seq: i64, entry: &[u8]) -> [u8; 32] {
    let mut hash = Sha256::new();
    hash.update([0x00]);
    hash.update(b"coffer.audit.link.v1");
    hash.update(previous);
    hash.update(seq.to_be_bytes());
    hash.update(entry);
    hash.finalize().into()
}

/// A point of the chain vouched for by a signature.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditHead {
    pub seq: i64,
    pub hash: [u8; 32],
    pub signed_at_ms: i64,
}

impl AuditHead {
    fn message(&self) -> Vec<u8> {
        let mut message = Vec::with_capacity(1 + 20 + 8 + 32 + 8);
        message.push(0x01);
        message.extend_from_slice(b"coffer.audit.head.v1");
        message.extend_from_slice(&self.seq.to_be_bytes());
        message.extend_from_slice(&self.hash);
        message.extend_from_slice(&self.signed_at_ms.to_be_bytes());
        message
    }
}

/// The Ed25519 key that signs audit heads; stored wrapped by the master key.
pub struct AuditSigningKey(SigningKey);

impl AuditSigningKey {
    pub fn generate() -> Result<AuditSigningKey, CryptoError> {
        let seed = random_bytes::<KEY_LEN>()?;
        Ok(AuditSigningKey(SigningKey::from_bytes(&seed)))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<AuditSigningKey, CryptoError> {
        let seed: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| CryptoError::BadLength { what: "the audit signing key", expected: KEY_LEN })?;
        Ok(AuditSigningKey(SigningKey::from_bytes(&seed)))
    }

    /// For wrapping only.
    pub fn expose(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    pub fn sign(&self, head: &AuditHead) -> [u8; 64] {
        self.0.sign(&head.message()).to_bytes()
    }
}

impl fmt::Debug for AuditSigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("AuditSigningKey([REDACTED])")
    }
}

/// Checks a head's signature under a public key.
pub fn verify_head(public_key: &[u8], head: &AuditHead, signature: &[u8]) -> Result<(), CryptoError> {
    let what = "the signed audit head";
    let public: [u8; 32] = public_key.try_into().map_err(|_| CryptoError::BadLength { what, expected: 32 })?;
    let key = VerifyingKey::from_bytes(&public).map_err(|_| CryptoError::UnknownFormat { what })?;
    let signature: [u8; 64] = signature.try_into().map_err(|_| CryptoError::BadLength { what, expected: 64 })?;
    key.verify(&head.message(), &Signature::from_bytes(&signature)).map_err(|_| CryptoError::DoesNotOpen { what })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_depend_on_previous_sequence_and_entry() {
        let first = audit_link_hash(&GENESIS_HASH, 1, b"entry one");
        assert_eq!(first, audit_link_hash(&GENESIS_HASH, 1, b"entry one"));
        assert_ne!(first, audit_link_hash(&GENESIS_HASH, 2, b"entry one"));
        assert_ne!(first, audit_link_hash(&GENESIS_HASH, 1, b"entry One"));
        assert_ne!(audit_link_hash(&first, 2, b"x"), audit_link_hash(&GENESIS_HASH, 2, b"x"));
    }

    #[test]
    fn signed_head_verifies_and_any_change_is_refused() {
        let key = AuditSigningKey::generate().unwrap();
        let head = AuditHead { seq: 42, hash: [7; 32], signed_at_ms: 1_700_000_000_000 };
        let signature = key.sign(&head);
        verify_head(&key.public_key(), &head, &signature).unwrap();
        for changed in [
            AuditHead { seq: 41, ..head.clone() },
            AuditHead { hash: [8; 32], ..head.clone() },
            AuditHead { signed_at_ms: 1, ..head.clone() },
        ] {
            assert!(verify_head(&key.public_key(), &changed, &signature).is_err());
        }
        let other = AuditSigningKey::generate().unwrap();
        assert!(verify_head(&other.public_key(), &head, &signature).is_err());
        assert!(verify_head(&key.public_key(), &head, &signature[..10]).is_err());
        let restored = AuditSigningKey::from_bytes(&key.expose()).unwrap();
        assert_eq!(restored.public_key(), key.public_key());
    }

    /// RFC 8032 section 7.1, test 1: the empty message.
    #[test]
    fn ed25519_matches_rfc_8032() {
        fn hex(s: &str) -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        }
        let key = SigningKey::from_bytes(
            &hex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").try_into().unwrap(),
        );
        assert_eq!(
            key.verifying_key().to_bytes().to_vec(),
            hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        );
        assert_eq!(
            key.sign(b"").to_bytes().to_vec(),
            hex(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
    }
}
