//! Download products: the file each one delivers and the uses of each
//! order line's download.

use crate::{Db, StoreError, WriteTx, unit};
use coffer_domain::{Millis, OrderId, ProductId};
use sqlx::Row;

/// The file a download product delivers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProductFile {
    pub product_id: ProductId,
    pub file_key: String,
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    /// Lowercase hex SHA-256 of the file (files uploaded before it was
    /// kept have none).
    pub sha256: Option<String>,
}

/// Downloads on the database: the file of a product, and counting a
/// download (a unit of work of its own).
pub trait DownloadStore: Send + Sync {
    /// The file a download product delivers, if it has one.
    fn product_file(&self, product: &ProductId)
    -> impl Future<Output = Result<Option<ProductFile>, StoreError>> + Send;

    /// Counts one use of an order line's download if fewer than `max` were
    /// made; false once the limit is reached.
    fn use_download(
        &self,
        order: &OrderId,
        line_no: i64,
        max: i64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl DownloadStore for Db {
    async fn product_file(&self, product: &ProductId) -> Result<Option<ProductFile>, StoreError> {
        let row = sqlx::query(
            "SELECT file_key, file_name, content_type, size_bytes, sha256 FROM product_files WHERE product_id = $1",
        )
        .bind(product.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            Ok(ProductFile {
                product_id: product.clone(),
                file_key: r.try_get("file_key")?,
                file_name: r.try_get("file_name")?,
                content_type: r.try_get("content_type")?,
                size_bytes: r.try_get("size_bytes")?,
                sha256: r.try_get("sha256")?,
            })
        })
        .transpose()
    }

    async fn use_download(&self, order: &OrderId, line_no: i64, max: i64) -> Result<bool, StoreError> {
        let order = order.clone();
        self.write(unit!(|tx| {
            sqlx::query(
                "INSERT INTO download_uses (order_id, line_no, uses) VALUES ($1, $2, 0) \
                 ON CONFLICT (order_id, line_no) DO NOTHING",
            )
            .bind(order.as_str())
            .bind(line_no)
            .execute(tx.conn())
            .await?;
            let done = sqlx::query(
                "UPDATE download_uses SET uses = uses + 1 WHERE order_id = $1 AND line_no = $2 AND uses < $3",
            )
            .bind(order.as_str())
            .bind(line_no)
            .bind(max)
            .execute(tx.conn())
            .await?;
            Ok::<_, StoreError>(done.rows_affected() == 1)
        }))
        .await
    }
}

/// Setting a product's file, inside a unit of work.
pub trait DownloadWriter {
    /// Sets (or replaces) the file a download product delivers.
    fn set_product_file(
        &mut self,
        file: &ProductFile,
        at: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl DownloadWriter for WriteTx {
    async fn set_product_file(&mut self, file: &ProductFile, at: Millis) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO product_files (product_id, file_key, file_name, content_type, size_bytes, uploaded_at, sha256) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (product_id) DO UPDATE SET file_key = excluded.file_key, \
             file_name = excluded.file_name, content_type = excluded.content_type, size_bytes = excluded.size_bytes, \
             uploaded_at = excluded.uploaded_at, sha256 = excluded.sha256",
        )
        .bind(file.product_id.as_str())
        .bind(file.file_key.clone())
        .bind(file.file_name.clone())
        .bind(file.content_type.clone())
        .bind(file.size_bytes)
        .bind(at.0)
        .bind(file.sha256.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }
}
