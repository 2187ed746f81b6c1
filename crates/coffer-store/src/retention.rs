//! Retention deletes: what has outlived its period goes, each sweep a unit
//! of work of its own.

use crate::{Db, StoreError, unit};
use coffer_domain::Millis;

/// Deleting what has outlived its retention period.
pub trait RetentionStore: Send + Sync {
    /// Deletes messages of the outbox older than `before` that are done
    /// with (sent, failed or shredded); pending ones stay.
    fn delete_old_messages(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes sessions that ended (signed out, or past any possible
    /// expiry) before `before`.
    fn delete_ended_sessions(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes one-time links used or expired before `before`.
    fn delete_spent_links(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Deletes idempotency keys (and their sealed answers) made before `before`.
    fn forget_idempotency_keys(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Clears the gateway tokens of orders placed before `before`.
    fn forget_payment_tokens(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl RetentionStore for Db {
    async fn delete_old_messages(&self, before: Millis) -> Result<u64, StoreError> {
        // By age first (`outbox_emails_by_age`): SQLite, without statistics,
        // would take the status index and read every sent message; `+status`
        // keeps it off that index. PostgreSQL plans from its statistics.
        let sql = match self.backend() {
            crate::Backend::Sqlite => {
                "DELETE FROM outbox_emails WHERE +status IN ('sent', 'failed', 'shredded') AND created_at < $1"
            }
            crate::Backend::Postgres => {
                "DELETE FROM outbox_emails WHERE status IN ('sent', 'failed', 'shredded') AND created_at < $1"
            }
        };
        delete_where(self, sql, before).await
    }

    async fn delete_ended_sessions(&self, before: Millis) -> Result<u64, StoreError> {
        delete_where(self, "DELETE FROM sessions WHERE revoked_at < $1 OR last_seen_at < $1", before).await
    }

    async fn delete_spent_links(&self, before: Millis) -> Result<u64, StoreError> {
        // Every realm's links are in one table.
        delete_where(self, "DELETE FROM sign_in_links WHERE used_at < $1 OR expires_at < $1", before).await
    }

    async fn forget_idempotency_keys(&self, before: Millis) -> Result<u64, StoreError> {
        delete_where(self, "DELETE FROM idempotency_keys WHERE created_at < $1", before).await
    }

    async fn forget_payment_tokens(&self, before: Millis) -> Result<u64, StoreError> {
        delete_where(
            self,
            "UPDATE orders SET payment_token = NULL WHERE payment_token IS NOT NULL AND created_at < $1",
            before,
        )
        .await
    }
}

/// Runs one sweep, `$1` being `before`, as a unit of work; how many rows it
/// touched.
async fn delete_where(db: &Db, sql: &'static str, before: Millis) -> Result<u64, StoreError> {
    db.write(unit!(|tx| {
        let done = sqlx::query(sql).bind(before.0).execute(tx.conn()).await?;
        Ok::<_, StoreError>(done.rows_affected())
    }))
    .await
}
