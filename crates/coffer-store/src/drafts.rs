//! Checkout drafts: what a buyer typed before placing the order, sealed,
//! by the hash of the buyer's cookie token. Each call is a unit of work of
//! its own.

use crate::{Db, StoreError, unit};
use coffer_crypto::Sealed;
use coffer_domain::Millis;
use sqlx::Row;

pub trait DraftStore: Send + Sync {
    /// The sealed draft of `id`, unless it expired.
    fn draft(&self, id: [u8; 32], now: Millis) -> impl Future<Output = Result<Option<Sealed>, StoreError>> + Send;

    /// Writes (or replaces) a draft, to be forgotten at `expires_at`.
    fn put_draft(
        &self,
        id: [u8; 32],
        sealed: Sealed,
        expires_at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets a draft (the order was placed, or the cart emptied).
    fn delete_draft(&self, id: [u8; 32]) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Forgets every draft that expired before `now`; returns how many.
    fn delete_expired_drafts(&self, now: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl DraftStore for Db {
    async fn draft(&self, id: [u8; 32], now: Millis) -> Result<Option<Sealed>, StoreError> {
        let row = sqlx::query("SELECT sealed FROM checkout_drafts WHERE id = $1 AND expires_at > $2")
            .bind(id.to_vec())
            .bind(now.0)
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| Ok(Sealed::from_stored(r.try_get::<Vec<u8>, _>("sealed")?))).transpose()
    }

    async fn put_draft(&self, id: [u8; 32], sealed: Sealed, expires_at: Millis) -> Result<(), StoreError> {
        self.write(unit!(|tx| {
            sqlx::query(
                "INSERT INTO checkout_drafts (id, sealed, expires_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (id) DO UPDATE SET sealed = excluded.sealed, expires_at = excluded.expires_at",
            )
            .bind(id.to_vec())
            .bind(sealed.as_bytes().to_vec())
            .bind(expires_at.0)
            .execute(tx.conn())
            .await?;
            Ok::<_, StoreError>(())
        }))
        .await
    }

    async fn delete_draft(&self, id: [u8; 32]) -> Result<(), StoreError> {
        self.write(unit!(|tx| {
            sqlx::query("DELETE FROM checkout_drafts WHERE id = $1").bind(id.to_vec()).execute(tx.conn()).await?;
            Ok::<_, StoreError>(())
        }))
        .await
    }

    async fn delete_expired_drafts(&self, now: Millis) -> Result<u64, StoreError> {
        self.write(unit!(|tx| {
            let done = sqlx::query("DELETE FROM checkout_drafts WHERE expires_at <= $1")
                .bind(now.0)
                .execute(tx.conn())
                .await?;
            Ok::<_, StoreError>(done.rows_affected())
        }))
        .await
    }
}
