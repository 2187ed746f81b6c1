//! Verifies a Coffer license key offline, as a vendor's program would: with
//! the vendor's public key and nothing else (no network, no Coffer code).
//!
//!     cargo run -p coffer-crypto --example verify-license -- PUBLIC_KEY LICENSE_KEY
//!
//! PUBLIC_KEY is `license_public_key` (standard base64 of the raw 32-byte
//! Ed25519 key); LICENSE_KEY is `B64URL(payload).B64URL(signature)`.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};

fn verify(public_key: &str, license: &str) -> Result<serde_json::Value, String> {
    let key: [u8; 32] = STANDARD
        .decode(public_key)
        .map_err(|_| "the public key is not base64")?
        .try_into()
        .map_err(|_| "the public key must be 32 bytes")?;
    let (payload_b64, signature_b64) = license.split_once('.').ok_or("a license key has two parts")?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| "the payload is not base64url")?;
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| "the signature is not base64url")?
        .try_into()
        .map_err(|_| "the signature must be 64 bytes")?;
    let key = VerifyingKey::from_bytes(&key).map_err(|_| "not an Ed25519 public key")?;
    // The signature covers exactly the payload bytes.
    key.verify(&payload, &Signature::from_bytes(&signature)).map_err(|_| "the signature does not match")?;
    serde_json::from_slice(&payload).map_err(|_| "the payload is not JSON".to_owned())
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [public_key, license] = args.as_slice() else {
        eprintln!("usage: verify-license PUBLIC_KEY LICENSE_KEY");
        return std::process::ExitCode::from(2);
    };
    match verify(public_key, license) {
        Ok(payload) => {
            println!("valid license: {payload}");
            std::process::ExitCode::SUCCESS
        }
        Err(why) => {
            eprintln!("invalid license: {why}");
            std::process::ExitCode::FAILURE
        }
    }
}
