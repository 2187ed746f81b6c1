//! Sealing, signing and verifying the audit hash chain.

use super::vault::Vault;
use crate::AppError;
use coffer_crypto::{AuditHead, GENESIS_HASH, audit_link_hash, verify_head};
use coffer_domain::Clock;
use coffer_store::prelude::*;
use coffer_store::{Db, SignedAuditHead};
use futures::StreamExt;
use std::sync::Arc;

/// How many entries `verify` reads at a time, and how many pages at once.
const VERIFY_PAGE: i64 = 10_000;
const VERIFY_PARALLEL: usize = 4;

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
        self.sign(seq, hash, self.clock.now().0).await
    }

    async fn sign(&self, seq: i64, hash: Vec<u8>, signed_at_ms: i64) -> Result<(), AppError> {
        let hash: [u8; 32] =
            hash.try_into().map_err(|_| coffer_store::StoreError::corrupt_public("audit_chain_head.hash"))?;
        let head = AuditHead { seq, hash, signed_at_ms };
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

    /// After a restore of the data side the chain is shorter than its last
    /// signed head. This re-signs the restored chain, but only in that case:
    /// any other break (an edited, missing or moved entry) is reported, never
    /// blessed. Returns the seq of the signed head that was passed over.
    pub async fn rebase_after_restore(&self) -> Result<Option<i64>, AppError> {
        self.seal().await?;
        match self.verify().await? {
            Err(ChainBroken::SignedHeadMismatch { seq: passed_over }) => {
                let (seq, hash) = self.db.audit_chain_head().await?;
                let latest = self.vault.key_store().latest_audit_head().await?;
                // Strictly later than the head it replaces, so it is the latest.
                let at = latest.map_or(0, |h| h.signed_at.0 + 1).max(self.clock.now().0);
                self.sign(seq, hash, at).await?;
                Ok(Some(passed_over))
            }
            Err(other) => Err(AppError::AuditChainBroken(other)),
            Ok(_) => {
                self.seal_and_sign().await?;
                Ok(None)
            }
        }
    }

    /// Recomputes the whole chain and checks it against its head row and
    /// the latest signed head. Pages are read and checked in parallel: each
    /// link is checked against the stored link before it, so pages are
    /// independent, and results are taken in chain order, so the first bad
    /// entry reported is the first in the chain.
    pub async fn verify(&self) -> Result<Result<VerifiedChain, ChainBroken>, AppError> {
        let signed = self.vault.key_store().latest_audit_head().await?;
        let last = self.db.max_audit_seq().await?;
        let pages: Vec<(i64, i64)> =
            (0..).map(|k| (1 + k * VERIFY_PAGE, (k + 1) * VERIFY_PAGE)).take_while(|(lo, _)| *lo <= last).collect();
        let mut checks = futures::stream::iter(pages)
            .map(|(lo, hi)| {
                let db = self.db.clone();
                tokio::spawn(async move { check_page(&db, lo, hi.min(last)).await })
            })
            .buffered(VERIFY_PARALLEL);
        let mut last_hash = GENESIS_HASH;
        let mut signed_hash_at: Option<[u8; 32]> = None;
        while let Some(page) = checks.next().await {
            let page = page.map_err(|_| AppError::Internal("the audit check stopped unexpectedly"))??;
            let links = match page {
                Ok(links) => links,
                Err(broken) => return Ok(Err(broken)),
            };
            if let Some(signed) = &signed
                && let Some((_, hash)) = links.iter().find(|(seq, _)| *seq == signed.seq)
            {
                signed_hash_at = Some(*hash);
            }
            if let Some((_, hash)) = links.last() {
                last_hash = *hash;
            }
        }
        let (head_seq, head_hash) = self.db.audit_chain_head().await?;
        if head_seq != last || (head_seq > 0 && head_hash.as_slice() != last_hash) {
            return Ok(Err(ChainBroken::HeadMismatch { last, head: head_seq }));
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
        Ok(Ok(VerifiedChain { entries: last, signed_seq: signed.map(|s| s.seq) }))
    }
}

/// The (seq, link hash) pairs of one page, checked.
type PageLinks = Vec<(i64, [u8; 32])>;

/// Checks entries `lo..=hi`: numbering without gaps, and each link against
/// the stored link before it (the genesis hash before entry 1).
async fn check_page(db: &Db, lo: i64, hi: i64) -> Result<Result<PageLinks, ChainBroken>, AppError> {
    let rows = db.sealed_audit_range(lo - 1, hi).await?;
    let mut rows = rows.iter().peekable();
    let mut previous = (0i64, GENESIS_HASH);
    if lo > 1 {
        match rows.peek() {
            Some(anchor) if anchor.seq == lo - 1 => {
                previous = (anchor.seq, anchor.link_hash.clone().try_into().unwrap_or([0xff; 32]));
                rows.next();
            }
            // The entry before this page is missing: the page before reports it.
            _ => previous = (lo - 1, [0xff; 32]),
        }
    }
    let mut links = Vec::with_capacity(usize::try_from(hi - lo + 1).unwrap_or(0));
    for sealed in rows {
        if sealed.seq != previous.0 + 1 {
            return Ok(Err(ChainBroken::Gap { previous: previous.0, seq: sealed.seq }));
        }
        let expected = audit_link_hash(&previous.1, sealed.seq, &sealed.entry.canonical_bytes());
        if sealed.link_hash.as_slice() != expected {
            return Ok(Err(ChainBroken::BadLink { seq: sealed.seq, id: sealed.entry.id.to_string() }));
        }
        previous = (sealed.seq, expected);
        links.push(previous);
    }
    if previous.0 < hi {
        return Ok(Err(ChainBroken::Gap { previous: previous.0, seq: hi + 1 }));
    }
    Ok(Ok(links))
}
