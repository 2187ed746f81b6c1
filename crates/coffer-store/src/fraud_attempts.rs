//! Velocity records of the fraud screen: hashed keys (card, address…) and
//! when each was tried.

use crate::{Db, StoreError, unit};
use coffer_domain::Millis;
use sqlx::Row;

/// Fraud attempts; each call is a unit of work of its own.
pub trait FraudAttemptStore: Send + Sync {
    /// Counts each key's attempts since `since`, then records this attempt.
    /// Returns the counts in the order of `keys`.
    fn count_and_record_attempts(
        &self,
        keys: Vec<(&'static str, [u8; 32])>,
        since: Millis,
        at: Millis,
    ) -> impl Future<Output = Result<Vec<u32>, StoreError>> + Send;

    /// Deletes velocity records older than `before`.
    fn forget_attempts(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl FraudAttemptStore for Db {
    async fn count_and_record_attempts(
        &self,
        keys: Vec<(&'static str, [u8; 32])>,
        since: Millis,
        at: Millis,
    ) -> Result<Vec<u32>, StoreError> {
        self.write(unit!(|tx| {
            let mut counts = Vec::new();
            for (kind, hash) in &keys {
                let row = sqlx::query(
                    "SELECT COUNT(*) AS n FROM fraud_attempts WHERE kind = $1 AND key_hash = $2 AND at >= $3",
                )
                .bind(*kind)
                .bind(hash.to_vec())
                .bind(since.0)
                .fetch_one(tx.conn())
                .await?;
                counts.push(u32::try_from(row.try_get::<i64, _>("n")?).unwrap_or(u32::MAX));
                sqlx::query("INSERT INTO fraud_attempts (kind, key_hash, at) VALUES ($1, $2, $3)")
                    .bind(*kind)
                    .bind(hash.to_vec())
                    .bind(at.0)
                    .execute(tx.conn())
                    .await?;
            }
            Ok::<_, StoreError>(counts)
        }))
        .await
    }

    async fn forget_attempts(&self, before: Millis) -> Result<u64, StoreError> {
        self.write(unit!(|tx| {
            let done =
                sqlx::query("DELETE FROM fraud_attempts WHERE at < $1").bind(before.0).execute(tx.conn()).await?;
            Ok::<_, StoreError>(done.rows_affected())
        }))
        .await
    }
}
