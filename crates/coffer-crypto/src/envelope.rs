//! Envelope encryption: personal fields sealed under a customer's data key,
//! and data keys (and other secrets) wrapped under a master key version.
//! AES-256-GCM with a fresh random 96-bit nonce per encryption.
//!
//! A field's associated data binds it to its table, column, row and data
//! key, so a ciphertext copied elsewhere fails to open. It never names the
//! master key version: re-wrapping a data key leaves every field untouched.
//! A wrap's associated data names the master key version, what the secret
//! is for and its id, so a wrapped key cannot be swapped for another.

use crate::{CryptoError, DataKey, MasterKey, random_bytes};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use zeroize::Zeroizing;

const FIELD_FORMAT: u8 = 1;
const WRAP_FORMAT: u8 = 1;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Where a sealed field lives; all of it is bound into the ciphertext.
#[derive(Clone, Copy, Debug)]
pub struct FieldContext<'a> {
    pub table: &'a str,
    pub column: &'a str,
    pub row_id: &'a str,
    pub data_key_id: &'a str,
}

/// Associated data: a label, then each part length-prefixed so that no two
/// different contexts share an encoding.
fn associated_data(label: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(label.len() + parts.iter().map(|p| p.len() + 4).sum::<usize>());
    ad.extend_from_slice(label.as_bytes());
    for part in parts {
        ad.extend_from_slice(&u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes());
        ad.extend_from_slice(part);
    }
    ad
}

fn field_ad(ctx: &FieldContext<'_>) -> Vec<u8> {
    associated_data(
        "coffer.field.v1",
        &[ctx.table.as_bytes(), ctx.column.as_bytes(), ctx.row_id.as_bytes(), ctx.data_key_id.as_bytes()],
    )
}

fn wrap_ad(kek_version: u32, purpose: &str, key_id: &str) -> Vec<u8> {
    associated_data("coffer.wrap.v1", &[&kek_version.to_be_bytes(), purpose.as_bytes(), key_id.as_bytes()])
}

fn encrypt(key: &[u8; 32], ad: &[u8], plaintext: &[u8], header: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new(key.into());
    let nonce_bytes = random_bytes::<NONCE_LEN>()?;
    let ciphertext = cipher
        .encrypt(&Nonce::from(nonce_bytes), Payload { msg: plaintext, aad: ad })
        .map_err(|_| CryptoError::DoesNotOpen { what: "a plaintext" })?;
    let mut out = Vec::with_capacity(header.len() + NONCE_LEN + ciphertext.len());
    out.extend_from_slice(header);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&ciphertext);
    Ok(out)
}

fn decrypt(key: &[u8; 32], ad: &[u8], body: &[u8], what: &'static str) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if body.len() < NONCE_LEN + TAG_LEN {
        return Err(CryptoError::UnknownFormat { what });
    }
    let (nonce, ciphertext) = body.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| CryptoError::UnknownFormat { what })?;
    let cipher = Aes256Gcm::new(key.into());
    cipher
        .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: ad })
        .map(Zeroizing::new)
        .map_err(|_| CryptoError::DoesNotOpen { what })
}

/// A sealed personal field: the only form in which the store accepts one,
/// so plaintext cannot be written to a personal column by mistake.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(Vec<u8>);

impl Sealed {
    /// Wraps bytes read back from a personal column.
    pub fn from_stored(bytes: Vec<u8>) -> Sealed {
        Sealed(bytes)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// Seals one personal field: `[format][nonce][ciphertext + tag]`.
pub fn seal_field(key: &DataKey, ctx: &FieldContext<'_>, plaintext: &[u8]) -> Result<Sealed, CryptoError> {
    encrypt(key.expose(), &field_ad(ctx), plaintext, &[FIELD_FORMAT]).map(Sealed)
}

/// Opens a field sealed by [`seal_field`] with the same context.
pub fn open_field(key: &DataKey, ctx: &FieldContext<'_>, sealed: &Sealed) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match sealed.0.split_first() {
        Some((&FIELD_FORMAT, body)) => decrypt(key.expose(), &field_ad(ctx), body, "a sealed field"),
        _ => Err(CryptoError::UnknownFormat { what: "a sealed field" }),
    }
}

/// Wraps a secret under a master key: `[format][kek version][nonce][ct+tag]`.
/// `purpose` says what the secret is (e.g. `"data-key"`), `key_id` which.
pub fn wrap_secret(kek: &MasterKey, purpose: &str, key_id: &str, secret: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut header = [0u8; 5];
    header[0] = WRAP_FORMAT;
    header[1..].copy_from_slice(&kek.version().to_be_bytes());
    encrypt(kek.bytes(), &wrap_ad(kek.version(), purpose, key_id), secret, &header)
}

/// The master key version a wrapped secret needs.
pub fn wrapped_version(wrapped: &[u8]) -> Result<u32, CryptoError> {
    match wrapped {
        [WRAP_FORMAT, a, b, c, d, ..] => Ok(u32::from_be_bytes([*a, *b, *c, *d])),
        _ => Err(CryptoError::UnknownFormat { what: "a wrapped key" }),
    }
}

/// Unwraps a secret; `kek` must be the version [`wrapped_version`] names.
pub fn unwrap_secret(
    kek: &MasterKey,
    purpose: &str,
    key_id: &str,
    wrapped: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let version = wrapped_version(wrapped)?;
    if version != kek.version() {
        return Err(CryptoError::MissingKeyVersion(version));
    }
    decrypt(kek.bytes(), &wrap_ad(version, purpose, key_id), &wrapped[5..], "a wrapped key")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx<'a>(row: &'a str, column: &'a str) -> FieldContext<'a> {
        FieldContext { table: "customers", column, row_id: row, data_key_id: "dek_1" }
    }

    #[test]
    fn field_round_trips_with_fresh_nonces() {
        let key = DataKey::generate().unwrap();
        let a = seal_field(&key, &ctx("cus_1", "email"), b"ada@example.org").unwrap();
        let b = seal_field(&key, &ctx("cus_1", "email"), b"ada@example.org").unwrap();
        assert_ne!(a, b, "a fresh nonce per encryption");
        assert_eq!(&*open_field(&key, &ctx("cus_1", "email"), &a).unwrap(), b"ada@example.org");
    }

    #[test]
    fn field_copied_to_another_row_column_or_key_does_not_open() {
        let key = DataKey::generate().unwrap();
        let sealed = seal_field(&key, &ctx("cus_1", "email"), b"ada@example.org").unwrap();
        let refused = CryptoError::DoesNotOpen { what: "a sealed field" };
        assert_eq!(open_field(&key, &ctx("cus_2", "email"), &sealed).unwrap_err(), refused);
        assert_eq!(open_field(&key, &ctx("cus_1", "name"), &sealed).unwrap_err(), refused);
        let other_table = FieldContext { table: "orders", ..ctx("cus_1", "email") };
        assert_eq!(open_field(&key, &other_table, &sealed).unwrap_err(), refused);
        let other_dek = FieldContext { data_key_id: "dek_2", ..ctx("cus_1", "email") };
        assert_eq!(open_field(&key, &other_dek, &sealed).unwrap_err(), refused);
        assert_eq!(open_field(&DataKey::generate().unwrap(), &ctx("cus_1", "email"), &sealed).unwrap_err(), refused);
    }

    #[test]
    fn any_flipped_bit_is_refused_and_garbage_is_no_panic() {
        let key = DataKey::generate().unwrap();
        let sealed = seal_field(&key, &ctx("cus_1", "phone"), b"+44 20 7946 0000").unwrap();
        for i in 1..sealed.as_bytes().len() {
            let mut bad = sealed.as_bytes().to_vec();
            bad[i] ^= 0x01;
            assert!(open_field(&key, &ctx("cus_1", "phone"), &Sealed::from_stored(bad)).is_err(), "byte {i}");
        }
        for garbage in [&[][..], &[1], &[2; 40], &[1; 20]] {
            assert!(open_field(&key, &ctx("cus_1", "phone"), &Sealed::from_stored(garbage.to_vec())).is_err());
        }
    }

    #[test]
    fn wrapped_key_is_bound_to_version_purpose_and_id() {
        let kek = MasterKey::generate(7).unwrap();
        let dek = DataKey::generate().unwrap();
        let wrapped = wrap_secret(&kek, "data-key", "dek_1", dek.expose()).unwrap();
        assert_eq!(wrapped_version(&wrapped).unwrap(), 7);
        assert_eq!(&*unwrap_secret(&kek, "data-key", "dek_1", &wrapped).unwrap(), dek.expose());
        assert!(unwrap_secret(&kek, "data-key", "dek_2", &wrapped).is_err());
        assert!(unwrap_secret(&kek, "blind-index", "dek_1", &wrapped).is_err());
        let other = MasterKey::generate(7).unwrap();
        assert_eq!(
            unwrap_secret(&other, "data-key", "dek_1", &wrapped).unwrap_err(),
            CryptoError::DoesNotOpen { what: "a wrapped key" }
        );
        assert_eq!(
            unwrap_secret(&MasterKey::generate(8).unwrap(), "data-key", "dek_1", &wrapped).unwrap_err(),
            CryptoError::MissingKeyVersion(7)
        );
        // A version field edited to point at another key is refused too.
        let mut edited = wrapped.clone();
        edited[4] = 8;
        assert!(unwrap_secret(&MasterKey::generate(8).unwrap(), "data-key", "dek_1", &edited).is_err());
    }

    /// NIST SP 800-38D / McGrew–Viega test case 16 (AES-256, 60-byte
    /// plaintext, 20-byte AAD) through the same cipher type we use.
    #[test]
    fn aes_256_gcm_matches_the_published_vector() {
        fn hex(s: &str) -> Vec<u8> {
            (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
        }
        let key: [u8; 32] = hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308").try_into().unwrap();
        let nonce: [u8; 12] = hex("cafebabefacedbaddecaf888").try_into().unwrap();
        let pt = hex(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
        );
        let aad = hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let expected = hex(
            "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662\
76fc6ece0f4e1768cddf8853bb2d551b",
        );
        let out = Aes256Gcm::new(&key.into()).encrypt(&Nonce::from(nonce), Payload { msg: &pt, aad: &aad }).unwrap();
        assert_eq!(out, expected);
    }
}
