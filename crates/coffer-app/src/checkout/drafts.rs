//! What a buyer typed at checkout, kept between the pages until the order
//! is placed or the cart emptied, and a placed order's confirmation shown
//! again at its own address.
//!
//! A draft is stored by the hash of the buyer's cookie token and sealed
//! under a key made from that token and a secret of this operator: a copy
//! of the database opens none, and neither does the cookie alone. The
//! draft's content is the web layer's (never a card number or code); it
//! lives [`DRAFT_TTL_MS`] after its last change, then retention deletes it.

use super::*;

/// How long a draft outlives its last change.
pub const DRAFT_TTL_MS: i64 = 24 * 60 * 60 * 1000;

/// A draft's own key and the id it is stored by.
struct DraftKey {
    key: coffer_crypto::DataKey,
    id: [u8; 32],
    row: String,
}

impl OrderPlacement {
    async fn draft_key(&self, token: &str) -> Result<DraftKey, AppError> {
        let secret = self.vault.named_secret("checkout-drafts").await?;
        let key = coffer_crypto::DataKey::from_bytes(&coffer_crypto::keyed_hash(
            &secret,
            "checkout-draft-key",
            token.as_bytes(),
        ))?;
        let id = coffer_crypto::token_hash(token);
        Ok(DraftKey { key, id, row: hex::encode(id) })
    }

    fn draft_context(row: &str) -> FieldContext<'_> {
        FieldContext { table: "checkout_drafts", column: "sealed", row_id: row, data_key_id: "checkout-drafts" }
    }

    /// A new token for a buyer's draft cookie.
    pub fn new_draft_token(&self) -> Result<String, AppError> {
        Ok(coffer_crypto::new_token()?.0)
    }

    /// The draft of the buyer holding `token`, as it was saved; `None` when
    /// there is none (never saved, expired, or forgotten).
    pub async fn load_draft(&self, token: &str) -> Result<Option<zeroize::Zeroizing<Vec<u8>>>, AppError> {
        if token.is_empty() || token.len() > 100 {
            return Ok(None);
        }
        let key = self.draft_key(token).await?;
        let Some(sealed) = self.db.draft(key.id, self.clock.now()).await? else { return Ok(None) };
        // A draft that does not open (another token's, or damaged) is none.
        Ok(coffer_crypto::open_field(&key.key, &Self::draft_context(&key.row), &sealed).ok())
    }

    /// Saves the draft of the buyer holding `token` for [`DRAFT_TTL_MS`].
    pub async fn save_draft(&self, token: &str, draft: &[u8]) -> Result<(), AppError> {
        if token.is_empty() || token.len() > 100 || draft.len() > 64 * 1024 {
            return Err(bad("invalid_draft", "draft", "the checkout form is too large"));
        }
        let key = self.draft_key(token).await?;
        let sealed = seal_field(&key.key, &Self::draft_context(&key.row), draft)?;
        let expires = Millis(self.clock.now().0 + DRAFT_TTL_MS);
        Ok(self.db.put_draft(key.id, sealed, expires).await?)
    }

    /// Forgets a draft: the order was placed or the cart emptied.
    pub async fn forget_draft(&self, token: &str) -> Result<(), AppError> {
        if token.is_empty() || token.len() > 100 {
            return Ok(());
        }
        Ok(self.db.delete_draft(coffer_crypto::token_hash(token)).await?)
    }

    /// The order a review page placed, as its confirmation showed it, for
    /// the confirmation's own address. Only the web checkout's keys
    /// (`review:` and a token this server signed) are looked up; the
    /// answer lives as long as the idempotency key (a day). `None` when the
    /// token is not one of ours or nothing was placed with it; an erased
    /// buyer's is [`AppError::Erased`].
    pub async fn placed_from_review(&self, review_token: &str) -> Result<Option<PlacedOrder>, AppError> {
        if review_token.len() > 200 || !self.review_token_issued_here(review_token).await? {
            return Ok(None);
        }
        let secret = self.vault.named_secret("idempotency").await?;
        let key = format!("review:{review_token}");
        let key_hash = coffer_crypto::keyed_hash(&secret, "idempotency-key", key.as_bytes());
        let Some((data_key_id, response)) = self.db.idempotency_answer(key_hash).await? else { return Ok(None) };
        let data_key = self.vault.data_key(&data_key_id).await?.ok_or(AppError::Erased)?;
        let row = hex::encode(key_hash);
        let ctx = FieldContext {
            table: "idempotency_keys",
            column: "response",
            row_id: &row,
            data_key_id: data_key_id.as_str(),
        };
        let json = coffer_crypto::open_field(&data_key, &ctx, &response)?;
        serde_json::from_slice(&json)
            .map(Some)
            .map_err(|_| AppError::Internal("a stored order answer could not be read"))
    }
}
