//! The published privacy policies: each version's text, kept once.

use crate::{Db, StoreError, WriteTx};
use coffer_domain::Millis;
use sqlx::Row;

/// Reading the published policies.
pub trait PolicyReader: Send + Sync {
    /// Whether a policy version was ever published.
    fn policy_published(&self, version: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// When a policy version was first published, if it was.
    fn policy_published_at(&self, version: &str) -> impl Future<Output = Result<Option<Millis>, StoreError>> + Send;
}

impl PolicyReader for Db {
    async fn policy_published_at(&self, version: &str) -> Result<Option<Millis>, StoreError> {
        let row = sqlx::query("SELECT published_at FROM privacy_policy_versions WHERE version = $1")
            .bind(version.to_owned())
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| Ok(Millis(r.try_get("published_at")?))).transpose()
    }

    async fn policy_published(&self, version: &str) -> Result<bool, StoreError> {
        let row = sqlx::query("SELECT 1 AS one FROM privacy_policy_versions WHERE version = $1")
            .bind(version.to_owned())
            .fetch_optional(self.readers())
            .await?;
        Ok(row.is_some())
    }
}

/// Publishing a policy, inside a unit of work.
pub trait PolicyWriter {
    /// Publishes a policy version once; republishing the same text is a no-op.
    fn publish_policy(
        &mut self,
        version: &str,
        html: &str,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl PolicyWriter for WriteTx {
    async fn publish_policy(&mut self, version: &str, html: &str, at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO privacy_policy_versions (version, html, published_at) VALUES ($1, $2, $3) \
             ON CONFLICT (version) DO NOTHING",
        )
        .bind(version.to_owned())
        .bind(html.to_owned())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
