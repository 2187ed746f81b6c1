//! Idempotency keys: a request's key claimed once, then answered with the
//! sealed response (or released when the request failed).

use crate::orders::sealed;
use crate::{Db, StoreError, unit};
use coffer_crypto::Sealed;
use coffer_domain::{DataKeyId, Millis};
use sqlx::Row;

/// What an idempotency key already holds.
#[derive(Clone, Debug)]
pub enum IdempotencyClaim {
    /// New: this request owns the key and must finish or release it.
    Claimed,
    /// Used before with another body.
    OtherBody,
    /// The same body, still being processed by another request.
    InProgress,
    /// The same body, answered: the sealed answer and its data key.
    Answered { data_key_id: DataKeyId, response: Sealed },
}

/// Idempotency keys; each call is a unit of work of its own.
pub trait IdempotencyStore: Send + Sync {
    /// Claims a key for a body fingerprint, or says what it already holds.
    fn claim_idempotency_key(
        &self,
        key_hash: [u8; 32],
        fingerprint: [u8; 32],
        at: Millis,
    ) -> impl Future<Output = Result<IdempotencyClaim, StoreError>> + Send;

    /// Stores the answer of a claimed key.
    fn answer_idempotency_key(
        &self,
        key_hash: [u8; 32],
        data_key_id: DataKeyId,
        response: Sealed,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// The sealed answer of a key, once answered (a confirmation page shown
    /// again); `None` while unknown, in progress or forgotten.
    fn idempotency_answer(
        &self,
        key_hash: [u8; 32],
    ) -> impl Future<Output = Result<Option<(DataKeyId, Sealed)>, StoreError>> + Send;

    /// Frees a claimed key whose request failed, so it may be retried.
    fn release_idempotency_key(&self, key_hash: [u8; 32]) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl IdempotencyStore for Db {
    async fn claim_idempotency_key(
        &self,
        key_hash: [u8; 32],
        fingerprint: [u8; 32],
        at: Millis,
    ) -> Result<IdempotencyClaim, StoreError> {
        self.write(unit!(|tx| {
            let inserted = sqlx::query(
                "INSERT INTO idempotency_keys (key_hash, fingerprint, created_at) VALUES ($1, $2, $3) \
                 ON CONFLICT (key_hash) DO NOTHING",
            )
            .bind(key_hash.to_vec())
            .bind(fingerprint.to_vec())
            .bind(at.0)
            .execute(tx.conn())
            .await?;
            if inserted.rows_affected() == 1 {
                return Ok(IdempotencyClaim::Claimed);
            }
            let row =
                sqlx::query("SELECT fingerprint, data_key_id, response FROM idempotency_keys WHERE key_hash = $1")
                    .bind(key_hash.to_vec())
                    .fetch_one(tx.conn())
                    .await?;
            if row.try_get::<Vec<u8>, _>("fingerprint")? != fingerprint.to_vec() {
                return Ok(IdempotencyClaim::OtherBody);
            }
            let key: Option<String> = row.try_get("data_key_id")?;
            match (key, sealed(&row, "response")?) {
                (Some(key), Some(response)) => Ok(IdempotencyClaim::Answered {
                    data_key_id: DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
                    response,
                }),
                _ => Ok(IdempotencyClaim::InProgress),
            }
        }))
        .await
    }

    async fn answer_idempotency_key(
        &self,
        key_hash: [u8; 32],
        data_key_id: DataKeyId,
        response: Sealed,
    ) -> Result<(), StoreError> {
        self.write(unit!(|tx| {
            sqlx::query("UPDATE idempotency_keys SET data_key_id = $2, response = $3 WHERE key_hash = $1")
                .bind(key_hash.to_vec())
                .bind(data_key_id.as_str())
                .bind(response.as_bytes().to_vec())
                .execute(tx.conn())
                .await?;
            Ok::<_, StoreError>(())
        }))
        .await
    }

    async fn idempotency_answer(&self, key_hash: [u8; 32]) -> Result<Option<(DataKeyId, Sealed)>, StoreError> {
        let row = sqlx::query("SELECT data_key_id, response FROM idempotency_keys WHERE key_hash = $1")
            .bind(key_hash.to_vec())
            .fetch_optional(self.readers())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let key: Option<String> = row.try_get("data_key_id")?;
        match (key, sealed(&row, "response")?) {
            (Some(key), Some(response)) => Ok(Some((DataKeyId::parse(&key).map_err(StoreError::corrupt)?, response))),
            _ => Ok(None),
        }
    }

    async fn release_idempotency_key(&self, key_hash: [u8; 32]) -> Result<(), StoreError> {
        self.write(unit!(|tx| {
            sqlx::query("DELETE FROM idempotency_keys WHERE key_hash = $1 AND response IS NULL")
                .bind(key_hash.to_vec())
                .execute(tx.conn())
                .await?;
            Ok::<_, StoreError>(())
        }))
        .await
    }
}
