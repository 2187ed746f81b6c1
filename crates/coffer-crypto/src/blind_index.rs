//! The blind index: a keyed hash of a normalised email address, so the
//! database can find and enforce uniqueness of an address it cannot read.
//! The index key comes from its own root secret, not from the master key,
//! so master-key rotation never changes a lookup; its version is stored
//! beside every index value so the key itself can be rotated by recomputing.

use crate::{CryptoError, KEY_LEN, random_bytes};
use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretBox};
use sha2::Sha256;
use std::fmt;
use unicode_normalization::UnicodeNormalization;

/// Trim, Unicode NFC, lowercase the whole address. No provider-specific
/// rules (dots, plus tags): those would merge addresses that differ.
pub fn normalise_email(email: &str) -> String {
    email.trim().nfc().collect::<String>().to_lowercase()
}

pub struct BlindIndexKey {
    version: u32,
    key: SecretBox<[u8; KEY_LEN]>,
}

impl BlindIndexKey {
    pub fn generate(version: u32) -> Result<BlindIndexKey, CryptoError> {
        Ok(BlindIndexKey { version, key: SecretBox::new(Box::new(random_bytes::<KEY_LEN>()?)) })
    }

    pub fn from_bytes(version: u32, bytes: &[u8]) -> Result<BlindIndexKey, CryptoError> {
        let key: [u8; KEY_LEN] =
            bytes.try_into().map_err(|_| CryptoError::BadLength { what: "the blind-index key", expected: KEY_LEN })?;
        Ok(BlindIndexKey { version, key: SecretBox::new(Box::new(key)) })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// For wrapping only.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.key.expose_secret()
    }

    /// HMAC-SHA256 of the normalised address, domain-separated.
    pub fn email(&self, email: &str) -> [u8; 32] {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"coffer.blind-index.email.v1\0");
        mac.update(normalise_email(email).as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A pseudonym for a customer towards one vendor (the licensee id of
    /// license keys): stable per pair, different for every vendor, so
    /// vendors cannot match customers between them, and meaningless
    /// without the key.
    pub fn licensee(&self, customer_id: &str, vendor_id: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret())
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"coffer.licensee.v1\0");
        mac.update(customer_id.as_bytes());
        mac.update(b"\0");
        mac.update(vendor_id.as_bytes());
        let out: [u8; 32] = mac.finalize().into_bytes().into();
        let hex: String = out[..12].iter().map(|b| format!("{b:02x}")).collect();
        format!("lic_{hex}")
    }
}

impl fmt::Debug for BlindIndexKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlindIndexKey {{ version: {}, key: [REDACTED] }}", self.version)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_trims_composes_and_lowercases() {
        assert_eq!(normalise_email("  Ada.Lovelace@Example.ORG \n"), "ada.lovelace@example.org");
        // "é" as e + combining acute (NFD) and as one code point (NFC).
        assert_eq!(normalise_email("Ren\u{0065}\u{0301}e@example.org"), normalise_email("REN\u{00c9}E@example.org"));
        // No provider tricks: plus tags and dots stay.
        assert_ne!(normalise_email("a+b@example.org"), normalise_email("a@example.org"));
        assert_ne!(normalise_email("a.b@example.org"), normalise_email("ab@example.org"));
    }

    #[test]
    fn index_is_stable_per_key_and_differs_across_keys() {
        let key = BlindIndexKey::generate(1).unwrap();
        assert_eq!(key.email("Ada@Example.org"), key.email(" ada@example.org"));
        assert_ne!(key.email("ada@example.org"), key.email("eve@example.org"));
        let other = BlindIndexKey::generate(2).unwrap();
        assert_ne!(key.email("ada@example.org"), other.email("ada@example.org"));
    }

    /// RFC 4231 test case 2 through the same HMAC type, so the primitive is
    /// the standard one.
    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let out: [u8; 32] = mac.finalize().into_bytes().into();
        let hex: String = out.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
