//! Velocity records of the fraud screen: hashed keys (card, address…) and
//! when each was tried.

use crate::{Db, StoreError, unit};
use coffer_domain::Millis;
use sqlx::Row;

/// Fraud attempts; each call is a unit of work of its own.
///
/// A record is durable with the next write that is, not at its own commit
/// (SQLite: [`crate::db::Durability::WithTheNext`]; PostgreSQL:
/// `synchronous_commit = off` for its transaction): a crash may lose the
/// last fraction of a second of attempts, which the screen can spare, and
/// a checkout no longer waits for two fsyncs, the attempt's and the
/// order's, one after the other. Counting and recording stay one unit, so
/// attempts made at once still see each other.
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
        const COUNT: &str = "SELECT COUNT(*) FROM fraud_attempts WHERE kind = $1 AND key_hash = $2 AND at >= $3";
        const RECORD: &str = "INSERT INTO fraud_attempts (kind, key_hash, at) VALUES ($1, $2, $3)";
        if self.backend() == crate::Backend::Sqlite {
            return self
                .write_direct_with(crate::db::Durability::WithTheNext, move |conn| {
                    use crate::batch::Val;
                    let mut counts = Vec::with_capacity(keys.len());
                    for (kind, hash) in &keys {
                        let (kind, hash) = (Val::Text((*kind).to_owned()), Val::Bytes(hash.to_vec()));
                        let n: i64 = crate::direct::query_one(
                            conn,
                            COUNT,
                            &[kind.clone(), hash.clone(), Val::Int(since.0)],
                            |r| r.get(0),
                        )?;
                        counts.push(u32::try_from(n).unwrap_or(u32::MAX));
                        crate::direct::execute(conn, RECORD, &[kind, hash, Val::Int(at.0)])?;
                    }
                    Ok(counts)
                })
                .await;
        }
        self.write(unit!(|tx| {
            // This transaction's commit does not wait for the WAL flush.
            sqlx::query("SET LOCAL synchronous_commit = off").execute(tx.conn()).await?;
            let mut counts = Vec::new();
            for (kind, hash) in &keys {
                let row = sqlx::query(COUNT).bind(*kind).bind(hash.to_vec()).bind(since.0).fetch_one(tx.conn()).await?;
                counts.push(u32::try_from(row.try_get::<i64, _>(0)?).unwrap_or(u32::MAX));
                sqlx::query(RECORD).bind(*kind).bind(hash.to_vec()).bind(at.0).execute(tx.conn()).await?;
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
