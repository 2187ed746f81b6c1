//! Key material. Every secret is a `secrecy` box: zeroed on drop, and its
//! `Debug` prints a redaction.

use crate::CryptoError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::{ExposeSecret, SecretBox};
use std::fmt;
use zeroize::Zeroizing;

/// Length of every symmetric key here (AES-256, HMAC-SHA256).
pub const KEY_LEN: usize = 32;

/// `N` bytes from the operating system's random source.
pub fn random_bytes<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

fn random_key() -> Result<SecretBox<[u8; KEY_LEN]>, CryptoError> {
    let mut key = Box::new([0u8; KEY_LEN]);
    getrandom::fill(key.as_mut_slice()).map_err(|_| CryptoError::Random)?;
    Ok(SecretBox::new(key))
}

fn key_from_slice(bytes: &[u8], what: &'static str) -> Result<SecretBox<[u8; KEY_LEN]>, CryptoError> {
    let array: [u8; KEY_LEN] = bytes.try_into().map_err(|_| CryptoError::BadLength { what, expected: KEY_LEN })?;
    Ok(SecretBox::new(Box::new(array)))
}

/// One version of the master key (KEK). It only wraps other keys.
pub struct MasterKey {
    version: u32,
    key: SecretBox<[u8; KEY_LEN]>,
}

impl MasterKey {
    pub fn generate(version: u32) -> Result<MasterKey, CryptoError> {
        Ok(MasterKey { version, key: random_key()? })
    }

    pub fn from_bytes(version: u32, bytes: &[u8]) -> Result<MasterKey, CryptoError> {
        Ok(MasterKey { version, key: key_from_slice(bytes, "a master key")? })
    }

    /// Reads the text of a key file: the key in standard base64, one line.
    pub fn from_file_text(version: u32, text: &str) -> Result<MasterKey, CryptoError> {
        let bytes = Zeroizing::new(
            STANDARD.decode(text.trim()).map_err(|_| CryptoError::UnknownFormat { what: "the master key file" })?,
        );
        MasterKey::from_bytes(version, &bytes)
    }

    /// The text written to a key file.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{}\n", STANDARD.encode(self.key.expose_secret())))
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    pub(crate) fn bytes(&self) -> &[u8; KEY_LEN] {
        self.key.expose_secret()
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey {{ version: {}, key: [REDACTED] }}", self.version)
    }
}

/// A customer's data key (DEK). Stored only wrapped by a master key.
pub struct DataKey(SecretBox<[u8; KEY_LEN]>);

impl DataKey {
    pub fn generate() -> Result<DataKey, CryptoError> {
        Ok(DataKey(random_key()?))
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<DataKey, CryptoError> {
        Ok(DataKey(key_from_slice(bytes, "a data key")?))
    }

    /// For wrapping only.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        self.0.expose_secret()
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_key_bytes() {
        let key = MasterKey::from_bytes(3, &[0xAB; KEY_LEN]).unwrap();
        let shown = format!("{key:?} {:?}", DataKey::from_bytes(&[0xCD; KEY_LEN]).unwrap());
        assert!(shown.contains("REDACTED") && shown.contains("version: 3"));
        assert!(!shown.contains("171") && !shown.contains("205") && !shown.contains("[171"), "{shown}");
    }

    #[test]
    fn key_file_text_round_trips_and_rejects_garbage() {
        let key = MasterKey::generate(1).unwrap();
        let back = MasterKey::from_file_text(1, &key.to_file_text()).unwrap();
        assert_eq!(key.bytes(), back.bytes());
        assert_eq!(
            MasterKey::from_file_text(1, "not base64!").unwrap_err(),
            CryptoError::UnknownFormat { what: "the master key file" }
        );
        assert_eq!(
            MasterKey::from_file_text(1, "AAAA").unwrap_err(),
            CryptoError::BadLength { what: "a master key", expected: 32 }
        );
    }

    #[test]
    fn generated_keys_differ() {
        assert_ne!(DataKey::generate().unwrap().expose(), DataKey::generate().unwrap().expose());
    }
}
