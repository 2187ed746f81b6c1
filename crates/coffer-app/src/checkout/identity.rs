//! Proof of identity for orders held by the fraud screen: the signed
//! upload link, the sealed document and the audited view of it.

use super::*;

/// The largest proof-of-identity document accepted.
pub const ID_DOCUMENT_MAX_BYTES: usize = 8 * 1024 * 1024;

/// The type of an identity document by its first bytes.
pub fn id_document_type(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        Some("image/png")
    } else if bytes.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

/// Proof of identity for held orders: the upload link, the upload, and the
/// reviewer's audited view.
#[derive(Clone)]
pub struct IdentityReview {
    pub(super) ctx: CheckoutContext,
    pub(super) files: Arc<dyn FileStore>,
    /// Where people reach this server, for upload links.
    pub(super) base_url: Arc<str>,
}

impl IdentityReview {
    /// The signed link a held order's buyer uses to upload proof of
    /// identity (7 days).
    pub async fn identity_link(&self, order: &OrderId) -> Result<String, AppError> {
        let expires = (self.clock.now().0 + DOWNLOAD_TTL_MS) / 1000;
        let payload = format!("identity.{order}.{expires}");
        let signature = coffer_crypto::sign_link(&self.link_key().await?, &payload);
        Ok(format!("{}/identity/{order}.{expires}.{signature}", self.base_url))
    }

    /// The held order a live identity link is for.
    pub async fn identity_link_order(&self, token: &str) -> Result<Option<OrderId>, AppError> {
        let parts: Vec<&str> = token.split('.').collect();
        let [order, expires, signature] = parts.as_slice() else { return Ok(None) };
        let payload = format!("identity.{order}.{expires}");
        if !coffer_crypto::link_matches(&self.link_key().await?, &payload, signature) {
            return Ok(None);
        }
        let (Ok(order), Ok(expires)) = (OrderId::parse(order), expires.parse::<i64>()) else { return Ok(None) };
        if expires.saturating_mul(1000) <= self.clock.now().0 {
            return Ok(None);
        }
        Ok(self.db.order(&order).await?.filter(|o| o.status == OrderStatus::OnHold).map(|o| o.id))
    }

    /// Stores a proof-of-identity document for a held order: JPEG, PNG or
    /// PDF by its content (not its name), at most `ID_DOCUMENT_MAX_BYTES`,
    /// encrypted under the customer's key before it reaches the file store.
    pub async fn upload_identity(&self, token: &str, document: &[u8]) -> Result<(), AppError> {
        let Some(order_id) = self.identity_link_order(token).await? else {
            return Err(bad("link_invalid", "link", "this upload link has expired or the order is no longer held"));
        };
        if document.len() > ID_DOCUMENT_MAX_BYTES {
            return Err(bad("document_too_large", "document", "the file is larger than 8 MB"));
        }
        let Some(content_type) = id_document_type(document) else {
            return Err(bad("document_type", "document", "the file must be a JPEG or PNG photo or a PDF"));
        };
        let order = self.db.order(&order_id).await?.ok_or(AppError::NotFound)?;
        let key = self.vault.data_key(&order.data_key_id).await?.ok_or(AppError::Erased)?;
        let ctx = |column: &'static str| FieldContext {
            table: "id_documents",
            column,
            row_id: order.id.as_str(),
            data_key_id: order.data_key_id.as_str(),
        };
        let sealed = seal_field(&key, &ctx("document"), document)?;
        let digest = seal_field(&key, &ctx("sealed_digest"), &coffer_crypto::digest(document))?;
        let file_key = format!("{}.identity", order.id);
        self.files.put(&file_key, sealed.as_bytes()).await?;
        let row = coffer_store::IdDocumentRow {
            file_key,
            content_type: content_type.to_owned(),
            size_bytes: i64::try_from(document.len()).unwrap_or(i64::MAX),
            sealed_digest: digest,
            uploaded_at: self.clock.now(),
        };
        let id = order.id.clone();
        self.db.write(unit!(|tx| tx.put_id_document(&id, &row).await.map_err(AppError::from))).await
    }

    /// A held order's document for the reviewer: (content type, bytes). The
    /// read is audited before the bytes are handed out.
    pub async fn identity_document(
        &self,
        order_id: &OrderId,
        ctx: &crate::request::RequestContext,
    ) -> Result<Option<(String, Vec<u8>)>, AppError> {
        ctx.require(coffer_domain::Permission::ViewIdentityDocument)?;
        let Some(row) = self.db.id_document(order_id).await? else { return Ok(None) };
        let order = self.db.order(order_id).await?.ok_or(AppError::NotFound)?;
        let Some(key) = self.vault.data_key(&order.data_key_id).await? else { return Ok(None) };
        let Some(mut reader) = self.files.open(&row.file_key).await? else { return Ok(None) };
        let mut sealed = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut reader, &mut sealed)
            .await
            .map_err(|e| AppError::Files(format!("file store: {}", e.kind())))?;
        let field = FieldContext {
            table: "id_documents",
            column: "document",
            row_id: order.id.as_str(),
            data_key_id: order.data_key_id.as_str(),
        };
        let entry = ctx.audit_entry(self.clock.now(), AuditAction::CustomerRead, Some(order.customer_id.to_string()));
        self.db.write(unit!(|tx| tx.append_audit(&entry).await.map_err(AppError::from))).await?;
        let plain = coffer_crypto::open_field(&key, &field, &coffer_crypto::Sealed::from_stored(sealed))?;
        Ok(Some((row.content_type, plain.to_vec())))
    }

    /// When the buyer of a held order uploaded proof of identity, if they did.
    pub async fn uploaded_at(&self, order: &OrderId) -> Result<Option<coffer_domain::Millis>, AppError> {
        Ok(self.db.id_document(order).await?.map(|d| d.uploaded_at))
    }
}
