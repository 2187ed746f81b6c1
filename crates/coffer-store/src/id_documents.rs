//! Proofs of identity of held orders: the row (the file itself is in the
//! file store, sealed) and when it is to be deleted.

use crate::orders::bytes;
use crate::{Db, StoreError, WriteTx, unit};
use coffer_crypto::Sealed;
use coffer_domain::{CustomerId, Millis, OrderId};
use sqlx::Row;

/// A stored proof-of-identity document (the file is in the file store).
#[derive(Clone, Debug)]
pub struct IdDocumentRow {
    pub file_key: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub sealed_digest: Sealed,
    pub uploaded_at: Millis,
}

/// Identity documents on the database: reads, and deleting a row (a unit
/// of work of its own).
pub trait IdDocumentStore: Send + Sync {
    /// The document uploaded for a held order.
    fn id_document(&self, order: &OrderId) -> impl Future<Output = Result<Option<IdDocumentRow>, StoreError>> + Send;

    /// The file keys of every identity document of a customer's orders.
    fn id_document_files_of(
        &self,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;

    /// Identity documents due for deletion: `delete_after` passed (set at the
    /// decision), or never decided and uploaded `undecided_ms` ago.
    fn expired_id_documents(
        &self,
        now: Millis,
        undecided_ms: i64,
    ) -> impl Future<Output = Result<Vec<(OrderId, String)>, StoreError>> + Send;

    /// Deletes a document's row (its file is deleted by the caller).
    fn delete_id_document(&self, order: &OrderId) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl IdDocumentStore for Db {
    async fn id_document(&self, order: &OrderId) -> Result<Option<IdDocumentRow>, StoreError> {
        let row = sqlx::query(
            "SELECT file_key, content_type, size_bytes, sealed_digest, uploaded_at FROM id_documents WHERE order_id = $1",
        )
        .bind(order.as_str())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            Ok(IdDocumentRow {
                file_key: r.try_get("file_key")?,
                content_type: r.try_get("content_type")?,
                size_bytes: r.try_get("size_bytes")?,
                sealed_digest: Sealed::from_stored(r.try_get::<Vec<u8>, _>("sealed_digest")?),
                uploaded_at: Millis(r.try_get("uploaded_at")?),
            })
        })
        .transpose()
    }

    async fn id_document_files_of(&self, customer: &CustomerId) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT file_key FROM id_documents WHERE order_id IN (SELECT id FROM orders WHERE customer_id = $1)",
        )
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(|r| Ok(r.try_get::<String, _>("file_key")?)).collect()
    }

    async fn expired_id_documents(&self, now: Millis, undecided_ms: i64) -> Result<Vec<(OrderId, String)>, StoreError> {
        // Decided orders: from the decision; undecided ones: from the upload.
        let rows = sqlx::query(
            "SELECT order_id, file_key FROM id_documents WHERE delete_after <= $1 \
             OR (delete_after IS NULL AND uploaded_at <= $2)",
        )
        .bind(now.0)
        .bind(now.0 - undecided_ms)
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    OrderId::parse(&r.try_get::<String, _>("order_id")?).map_err(StoreError::corrupt)?,
                    r.try_get("file_key")?,
                ))
            })
            .collect()
    }

    async fn delete_id_document(&self, order: &OrderId) -> Result<(), StoreError> {
        let order = order.clone();
        self.write(unit!(|tx| {
            sqlx::query("DELETE FROM id_documents WHERE order_id = $1").bind(order.as_str()).execute(tx.conn()).await?;
            Ok::<_, StoreError>(())
        }))
        .await
    }
}

/// Recording and scheduling identity documents, inside a unit of work.
pub trait IdDocumentWriter {
    /// Records an uploaded document; a new upload replaces the old one.
    fn put_id_document(
        &mut self,
        order: &OrderId,
        row: &IdDocumentRow,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// At the review decision: the document goes after `delete_after`.
    fn schedule_id_document_deletion(
        &mut self,
        order: &OrderId,
        delete_after: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl IdDocumentWriter for WriteTx {
    async fn put_id_document(&mut self, order: &OrderId, row: &IdDocumentRow) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO id_documents (order_id, file_key, content_type, size_bytes, sealed_digest, uploaded_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (order_id) DO UPDATE SET file_key = excluded.file_key, \
             content_type = excluded.content_type, size_bytes = excluded.size_bytes, \
             sealed_digest = excluded.sealed_digest, uploaded_at = excluded.uploaded_at",
        )
        .bind(order.as_str())
        .bind(row.file_key.clone())
        .bind(row.content_type.clone())
        .bind(row.size_bytes)
        .bind(bytes(&row.sealed_digest))
        .bind(row.uploaded_at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn schedule_id_document_deletion(&mut self, order: &OrderId, delete_after: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE id_documents SET delete_after = $2 WHERE order_id = $1")
            .bind(order.as_str())
            .bind(delete_after.0)
            .execute(self.conn())
            .await?;
        Ok(())
    }
}
