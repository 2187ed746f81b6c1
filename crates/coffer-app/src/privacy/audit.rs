//! Sealing, signing and verifying the audit hash chain.

use super::vault::Vault;
use crate::AppError;
use coffer_crypto::{AuditHead, GENESIS_HASH, audit_link_hash, verify_head};
use coffer_domain::Clock;
use coffer_store::{Db, SignedAuditHead};
use std::sync::Arc;

/// How many entries `verify` reads at a time.
const VERIFY_PAGE: i64 = 10_000;

/// A chain that checks out.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedChain {
    pub entries: i64,
    /// The latest signed head, covered by the check.
    pub signed_seq: Option<i64>,
}

/// The first problem found, by sequence number and entry id only.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBroken {
    #[error("audit entry {seq} is missing (the chain jumps from {previous} to {seq})")]
    Gap { previous: i64, seq: i64 },
    #[error("audit entry {seq} ({id}) was altered, inserted or moved: its link hash does not match")]
    BadLink { seq: i64, id: String },
    #[error("the chain ends at entry {last} but its head says {head}: entries were removed or the head was edited")]
    HeadMismatch { last: i64, head: i64 },
    #[error("the signed head at entry {seq} does not match the chain: entries up to it were removed or altered")]
    SignedHeadMismatch { seq: i64 },
    #[error("the signature of the audit head at entry {seq} is invalid")]
    BadSignature { seq: i64 },
}

#[derive(Clone)]
pub struct AuditService {
    db: Db,
    vault: Arc<Vault>,
    clock: Arc<dyn Clock>,
}

impl AuditService {
    pub fn new(db: Db, vault: Arc<Vault>, clock: Arc<dyn Clock>) -> Self {
        AuditService { db, vault, clock }
    }

    /// Seals every unsealed entry; returns how many.
    pub async fn seal(&self) -> Result<usize, AppError> {
        Ok(self.db.seal_all_audit().await?)
    }

    /// Seals, then signs the head if it moved since the last signature.
    pub async fn seal_and_sign(&self) -> Result<(), AppError> {
        self.seal().await?;
        let (seq, hash) = self.db.audit_chain_head().await?;
        let latest = self.vault.key_store().latest_audit_head().await?;
        if seq == 0 || latest.is_some_and(|h| h.seq >= seq) {
            return Ok(());
        }
        let hash: [u8; 32] =
            hash.try_into().map_err(|_| coffer_store::StoreError::corrupt_public("audit_chain_head.hash"))?;
        let head = AuditHead { seq, hash, signed_at_ms: self.clock.now().0 };
        let signature = self.vault.audit_signer().sign(&head);
        self.vault
            .key_store()
            .put_audit_head(SignedAuditHead {
                seq,
                hash: hash.to_vec(),
                signed_at: coffer_domain::Millis(head.signed_at_ms),
                signature: signature.to_vec(),
            })
            .await?;
        Ok(())
    }

    /// Recomputes the whole chain and checks it against its head row and
    /// the latest signed head.
    pub async fn verify(&self) -> Result<Result<VerifiedChain, ChainBroken>, AppError> {
        let mut previous_seq = 0i64;
        let mut previous_hash = GENESIS_HASH;
        let mut signed_hash_at: Option<[u8; 32]> = None;
        let signed = self.vault.key_store().latest_audit_head().await?;
        loop {
            let page = self.db.sealed_audit_entries(previous_seq, VERIFY_PAGE).await?;
            if page.is_empty() {
                break;
            }
            for sealed in &page {
                if sealed.seq != previous_seq + 1 {
                    return Ok(Err(ChainBroken::Gap { previous: previous_seq, seq: sealed.seq }));
                }
                let expected = audit_link_hash(&previous_hash, sealed.seq, &sealed.entry.canonical_bytes());
                if sealed.link_hash.as_slice() != expected {
                    return Ok(Err(ChainBroken::BadLink { seq: sealed.seq, id: sealed.entry.id.to_string() }));
                }
                if signed.as_ref().is_some_and(|s| s.seq == sealed.seq) {
                    signed_hash_at = Some(expected);
                }
                previous_seq = sealed.seq;
                previous_hash = expected;
            }
        }
        let (head_seq, head_hash) = self.db.audit_chain_head().await?;
        if head_seq != previous_seq || (head_seq > 0 && head_hash.as_slice() != previous_hash) {
            return Ok(Err(ChainBroken::HeadMismatch { last: previous_seq, head: head_seq }));
        }
        if let Some(signed) = &signed {
            let hash: [u8; 32] = signed.hash.clone().try_into().unwrap_or([0xff; 32]);
            let head = AuditHead { seq: signed.seq, hash, signed_at_ms: signed.signed_at.0 };
            if verify_head(&self.vault.audit_signer().public_key(), &head, &signed.signature).is_err() {
                return Ok(Err(ChainBroken::BadSignature { seq: signed.seq }));
            }
            if signed_hash_at != Some(hash) {
                return Ok(Err(ChainBroken::SignedHeadMismatch { seq: signed.seq }));
            }
        }
        Ok(Ok(VerifiedChain { entries: previous_seq, signed_seq: signed.map(|s| s.seq) }))
    }
}
