//! Keys and every cryptographic operation of Coffer: envelope encryption of
//! personal fields, the blind index for email lookups, the audit hash chain
//! and the signatures over its head. It does no I/O: the key files and the
//! key store that holds wrapped keys are handled by `coffer-store` and the
//! binary. Also here: argon2id password hashing, TOTP, Ed25519 license
//! signing, HMACs for links, CSRF tokens, keyed hashes and webhook signatures,
//! and random tokens.
//! Everything uses RustCrypto primitives; nothing is home-made.

mod audit;
mod blind_index;
mod envelope;
mod error;
mod keys;
mod license;
mod password;
mod token;
mod totp;
mod webhook;

pub use audit::{AuditHead, AuditSigningKey, GENESIS_HASH, audit_link_hash, verify_head};
pub use blind_index::{BlindIndexKey, normalise_email};
pub use envelope::{FieldContext, Sealed, open_field, seal_field, unwrap_secret, wrap_secret, wrapped_version};
pub use error::CryptoError;
pub use keys::{DataKey, KEY_LEN, MasterKey, random_bytes};
pub use license::{
    LicenseSigningKey, REVOCATION_LIST_CONTEXT, SignedList, license_key_hash, unverified_license_payload,
    verify_license, verify_revocation_list,
};
pub use password::{
    ARGON2_ITERATIONS, ARGON2_LANES, ARGON2_MEMORY_KIB, dummy_verify, hash_password, release_hashing_memory,
    verify_password,
};
pub use token::{csrf_matches, csrf_token, digest, keyed_hash, link_matches, new_token, sign_link, token_hash};
pub use totp::{
    TOTP_SECRET_LEN, check_totp, new_recovery_codes, new_totp_secret, totp_base32, totp_code, totp_secret_from_base32,
    totp_uri,
};
pub use webhook::{WEBHOOK_SECRET_PREFIX, new_webhook_secret, verify_webhook_signature, webhook_signature};
