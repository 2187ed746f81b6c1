//! Verifies a Coffer license key offline, as a vendor's program would: with
//! the vendor's public key and nothing else (no network, no Coffer code).
//!
//!     cargo run -p coffer-crypto --example verify-license -- PUBLIC_KEY LICENSE_KEY [REVOCATION_LIST_FILE]
//!
//! PUBLIC_KEY is `license_public_key` (standard base64 of the raw 32-byte
//! Ed25519 key); LICENSE_KEY is `B64URL(payload).B64URL(signature)`.
//! REVOCATION_LIST_FILE, when given, holds what
//! `GET /api/v1/vendors/{slug}/revocations` answered (`{"list", "signature"}`);
//! the key is then also refused when the signed list names it.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use sha2::{Digest, Sha256};

/// What a revocation list's signature covers before the list's bytes.
const REVOCATION_LIST_CONTEXT: &[u8] = b"coffer.revocation-list.v1\0";

fn public_key(public_key: &str) -> Result<VerifyingKey, String> {
    let key: [u8; 32] = STANDARD
        .decode(public_key)
        .map_err(|_| "the public key is not base64")?
        .try_into()
        .map_err(|_| "the public key must be 32 bytes")?;
    VerifyingKey::from_bytes(&key).map_err(|_| "not an Ed25519 public key".to_owned())
}

fn signature(signature_b64: &str) -> Result<Signature, String> {
    let signature: [u8; 64] = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| "the signature is not base64url")?
        .try_into()
        .map_err(|_| "the signature must be 64 bytes")?;
    Ok(Signature::from_bytes(&signature))
}

fn verify(key: &VerifyingKey, license: &str) -> Result<serde_json::Value, String> {
    let (payload_b64, signature_b64) = license.split_once('.').ok_or("a license key has two parts")?;
    let payload = URL_SAFE_NO_PAD.decode(payload_b64).map_err(|_| "the payload is not base64url")?;
    // The signature covers exactly the payload bytes.
    key.verify(&payload, &signature(signature_b64)?).map_err(|_| "the signature does not match")?;
    serde_json::from_slice(&payload).map_err(|_| "the payload is not JSON".to_owned())
}

/// The revocation list inside `{"list", "signature"}`, once its signature
/// (over the context and exactly the list's bytes) verifies.
fn revocation_list(key: &VerifyingKey, answer: &str) -> Result<serde_json::Value, String> {
    let answer: serde_json::Value = serde_json::from_str(answer).map_err(|_| "the answer is not JSON")?;
    let list_b64 = answer["list"].as_str().ok_or("the answer has no list")?;
    let list = URL_SAFE_NO_PAD.decode(list_b64).map_err(|_| "the list is not base64url")?;
    let signed = [REVOCATION_LIST_CONTEXT, &list].concat();
    let signature = signature(answer["signature"].as_str().ok_or("the answer has no signature")?)?;
    key.verify(&signed, &signature).map_err(|_| "the revocation list's signature does not match")?;
    serde_json::from_slice(&list).map_err(|_| "the list is not JSON".to_owned())
}

/// Whether the list names the key: by its SHA-256, or (keys issued before
/// Coffer kept hashes) by its order and product.
fn is_revoked(list: &serde_json::Value, license: &str, claims: &serde_json::Value) -> bool {
    let digest: String = Sha256::digest(license.as_bytes()).iter().map(|b| format!("{b:02x}")).collect();
    list["revoked"].as_array().into_iter().flatten().any(|entry| {
        entry["key_sha256"].as_str() == Some(digest.as_str())
            || (entry["order_id"] == claims["order_id"] && entry["product_id"] == claims["product_id"])
    })
}

fn check(args: &[String]) -> Result<serde_json::Value, String> {
    let [public_key_b64, license, rest @ ..] = args else { return Err("usage".into()) };
    let key = public_key(public_key_b64)?;
    let claims = verify(&key, license)?;
    if let [file] = rest {
        let answer = std::fs::read_to_string(file).map_err(|e| format!("reading {file}: {e}"))?;
        let list = revocation_list(&key, &answer)?;
        let text = |field: &str| list[field].as_str().unwrap_or_default().to_owned();
        println!("revocation list of {} issued {}", text("vendor"), text("issued_at"));
        if is_revoked(&list, license, &claims) {
            return Err(format!("revoked: {claims}"));
        }
    }
    Ok(claims)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if !(2..=3).contains(&args.len()) {
        eprintln!("usage: verify-license PUBLIC_KEY LICENSE_KEY [REVOCATION_LIST_FILE]");
        return std::process::ExitCode::from(2);
    }
    match check(&args) {
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
