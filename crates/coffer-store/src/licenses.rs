//! License status: finding an issued license key by its hash (or, for keys
//! issued before keys were hashed, by its order and product), revoking the
//! keys of refunded lines, and a vendor's revoked keys. A revocation is a
//! time on the key's row; the row is never deleted for it. Every query of
//! revoked keys names the vendor.

use crate::{Db, StoreError, WriteTx};
use coffer_domain::{CustomerId, Millis, OrderId, ProductId, VendorId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// What is known of an issued license key, without opening it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenseRecord {
    pub order_id: OrderId,
    pub product_id: ProductId,
    pub vendor_id: VendorId,
    /// SHA-256 of the key; `None` for keys issued before migration 0023.
    pub key_hash: Option<[u8; 32]>,
    pub revoked_at: Option<Millis>,
}

/// A revoked key as its vendor's revocation list names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevokedKey {
    pub order_id: OrderId,
    pub product_id: ProductId,
    /// The pseudonym of the key's payload; `None` for keys issued before
    /// migration 0023 (the service derives it from `customer_id`).
    pub licensee: Option<String>,
    pub customer_id: CustomerId,
    pub key_hash: Option<[u8; 32]>,
    pub revoked_at: Millis,
}

fn hash_of(r: &AnyRow) -> Result<Option<[u8; 32]>, StoreError> {
    r.try_get::<Option<Vec<u8>>, _>("key_hash")?
        .map(|h| <[u8; 32]>::try_from(h.as_slice()).map_err(|_| StoreError::corrupt("license_keys.key_hash")))
        .transpose()
}

fn record(r: &AnyRow) -> Result<LicenseRecord, StoreError> {
    Ok(LicenseRecord {
        order_id: OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?,
        product_id: ProductId::parse(&r.try_get::<String, _>("product_id")?).map_err(StoreError::corrupt)?,
        vendor_id: VendorId::parse(&r.try_get::<String, _>("vendor_id")?).map_err(StoreError::corrupt)?,
        key_hash: hash_of(r)?,
        revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(Millis),
    })
}

/// Reading license status.
pub trait LicenseReader: Send + Sync {
    /// The key of `order` whose SHA-256 is `hash`. Found through the order
    /// (the key's own payload names it), so no index of random hashes
    /// slows every checkout's write.
    fn license_by_hash(
        &self,
        order: &OrderId,
        hash: &[u8; 32],
    ) -> impl Future<Output = Result<Option<LicenseRecord>, StoreError>> + Send;

    /// The key issued for `product` on `order` (an order has one line per
    /// product).
    fn license_of_line(
        &self,
        order: &OrderId,
        product: &ProductId,
    ) -> impl Future<Output = Result<Option<LicenseRecord>, StoreError>> + Send;

    /// A vendor's revoked keys, oldest revocation first.
    fn revoked_licenses(&self, vendor: &VendorId) -> impl Future<Output = Result<Vec<RevokedKey>, StoreError>> + Send;
}

impl LicenseReader for Db {
    async fn license_by_hash(&self, order: &OrderId, hash: &[u8; 32]) -> Result<Option<LicenseRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT order_id, product_id, vendor_id, key_hash, revoked_at FROM license_keys \
             WHERE order_id = $1 AND key_hash = $2",
        )
        .bind(order.as_str())
        .bind(hash.to_vec())
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn license_of_line(&self, order: &OrderId, product: &ProductId) -> Result<Option<LicenseRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT order_id, product_id, vendor_id, key_hash, revoked_at FROM license_keys \
             WHERE order_id = $1 AND product_id = $2 ORDER BY line_no LIMIT 1",
        )
        .bind(order.as_str())
        .bind(product.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.as_ref().map(record).transpose()
    }

    async fn revoked_licenses(&self, vendor: &VendorId) -> Result<Vec<RevokedKey>, StoreError> {
        let rows = sqlx::query(
            "SELECT k.order_id, k.product_id, k.licensee, o.customer_id, k.key_hash, k.revoked_at \
             FROM license_keys k JOIN orders o ON o.id = k.order_id \
             WHERE k.vendor_id = $1 AND k.revoked_at IS NOT NULL ORDER BY k.revoked_at, k.order_id, k.line_no",
        )
        .bind(vendor.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RevokedKey {
                    order_id: OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?,
                    product_id: ProductId::parse(&r.try_get::<String, _>("product_id")?)
                        .map_err(StoreError::corrupt)?,
                    licensee: r.try_get("licensee")?,
                    customer_id: CustomerId::parse(&r.try_get::<String, _>("customer_id")?)
                        .map_err(StoreError::corrupt)?,
                    key_hash: hash_of(r)?,
                    revoked_at: Millis(r.try_get("revoked_at")?),
                })
            })
            .collect()
    }
}

/// Revoking keys, inside the unit of work of the refund that revokes them.
pub trait LicenseWriter {
    /// Revokes every key of an order not revoked yet; how many.
    fn revoke_order_licenses(
        &mut self,
        order: &OrderId,
        at: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Revokes the key of one line, if it has one not revoked yet; how many.
    fn revoke_line_license(
        &mut self,
        order: &OrderId,
        line_no: i64,
        at: Millis,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

impl LicenseWriter for WriteTx {
    async fn revoke_order_licenses(&mut self, order: &OrderId, at: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query("UPDATE license_keys SET revoked_at = $2 WHERE order_id = $1 AND revoked_at IS NULL")
            .bind(order.as_str())
            .bind(at.0)
            .execute(self.conn())
            .await?;
        Ok(done.rows_affected())
    }

    async fn revoke_line_license(&mut self, order: &OrderId, line_no: i64, at: Millis) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE license_keys SET revoked_at = $3 WHERE order_id = $1 AND line_no = $2 AND revoked_at IS NULL",
        )
        .bind(order.as_str())
        .bind(line_no)
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected())
    }
}
