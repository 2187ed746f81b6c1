//! Vendors' API keys, stored only as hashes.

use crate::{Db, StoreError, WriteTx};
use coffer_domain::{Millis, VendorId};
use sqlx::Row;

/// Finding the vendor of an API key.
pub trait VendorKeyReader: Send + Sync {
    /// The vendor a live API key belongs to.
    fn vendor_of_api_key(
        &self,
        key_hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<VendorId>, StoreError>> + Send;
}

impl VendorKeyReader for Db {
    async fn vendor_of_api_key(&self, key_hash: &[u8; 32]) -> Result<Option<VendorId>, StoreError> {
        let row = sqlx::query("SELECT vendor_id FROM vendor_api_keys WHERE key_hash = $1 AND revoked_at IS NULL")
            .bind(key_hash.to_vec())
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| VendorId::parse(&r.try_get::<String, _>("vendor_id")?).map_err(StoreError::corrupt)).transpose()
    }
}

/// Adding a vendor API key, inside a unit of work.
pub trait VendorKeyWriter {
    /// Stores a new key's hash for a vendor; storing it again is a no-op.
    fn insert_vendor_api_key(
        &mut self,
        key_hash: &[u8; 32],
        vendor: &VendorId,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl VendorKeyWriter for WriteTx {
    async fn insert_vendor_api_key(
        &mut self,
        key_hash: &[u8; 32],
        vendor: &VendorId,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
        "INSERT INTO vendor_api_keys (key_hash, vendor_id, created_at) VALUES ($1, $2, $3) ON CONFLICT (key_hash) DO NOTHING",
    )
    .bind(key_hash.to_vec())
    .bind(vendor.as_str())
    .bind(at.0)
    .execute(self.conn())
    .await?;
        Ok(())
    }
}
