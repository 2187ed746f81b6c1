//! Download products: signed, limited links and the files behind them.

use super::*;

/// A download link lives 7 days…
pub const DOWNLOAD_TTL_MS: i64 = 7 * 24 * 60 * 60 * 1000;
/// …and works this many times per order line.
pub const DOWNLOAD_MAX_USES: i64 = 5;

/// A file being downloaded: what to call it and the stream of its bytes.
pub struct Download {
    pub file_name: String,
    pub content_type: String,
    pub size_bytes: i64,
    pub reader: FileReader,
}

/// Why a download link gives no file.
#[derive(Debug, PartialEq, Eq)]
pub enum DownloadRefused {
    /// Not a link we signed.
    Invalid,
    Expired,
    /// The order is not (or no longer) delivered: on hold, refunded…
    NotDelivered,
    LimitReached,
    /// The vendor has not uploaded the file yet.
    NoFile,
}

impl Fulfilment {
    /// A signed download link for one order line, valid 7 days from now.
    pub async fn download_link(&self, order: &OrderId, line_no: i64) -> Result<String, AppError> {
        let expires = (self.clock.now().0 + DOWNLOAD_TTL_MS) / 1000;
        let payload = format!("{order}.{line_no}.{expires}");
        let signature = coffer_crypto::sign_link(&self.link_key().await?, &payload);
        Ok(format!("{}/downloads/{payload}.{signature}", self.base_url))
    }

    /// Opens the file behind a download link: signature, expiry, the
    /// order's state and the use count are checked, in that order.
    pub async fn open_download(&self, token: &str) -> Result<Result<Download, DownloadRefused>, AppError> {
        let parts: Vec<&str> = token.split('.').collect();
        let [order, line_no, expires, signature] = parts.as_slice() else { return Ok(Err(DownloadRefused::Invalid)) };
        let payload = format!("{order}.{line_no}.{expires}");
        if !coffer_crypto::link_matches(&self.link_key().await?, &payload, signature) {
            return Ok(Err(DownloadRefused::Invalid));
        }
        let (Ok(order), Ok(line_no), Ok(expires)) =
            (OrderId::parse(order), line_no.parse::<i64>(), expires.parse::<i64>())
        else {
            return Ok(Err(DownloadRefused::Invalid));
        };
        if expires.saturating_mul(1000) <= self.clock.now().0 {
            return Ok(Err(DownloadRefused::Expired));
        }
        let Some(stored) = self.db.order(&order).await? else { return Ok(Err(DownloadRefused::Invalid)) };
        if stored.status != OrderStatus::Fulfilled {
            return Ok(Err(DownloadRefused::NotDelivered));
        }
        let Some(line) = stored.lines.iter().find(|l| l.line_no == line_no) else {
            return Ok(Err(DownloadRefused::Invalid));
        };
        if line.refunded_amount > 0 {
            return Ok(Err(DownloadRefused::NotDelivered));
        }
        let Some(file) = self.db.product_file(&line.product_id).await? else { return Ok(Err(DownloadRefused::NoFile)) };
        let Some(reader) = self.files.open(&file.file_key).await? else { return Ok(Err(DownloadRefused::NoFile)) };
        if !self.db.use_download(&order, line_no, DOWNLOAD_MAX_USES).await? {
            return Ok(Err(DownloadRefused::LimitReached));
        }
        Ok(Ok(Download {
            file_name: file.file_name,
            content_type: file.content_type,
            size_bytes: file.size_bytes,
            reader,
        }))
    }

    /// Stores a product's download file (vendor upload; demo seeding)
    /// under a key of its own, so an order under way keeps reading the file
    /// it was sold with until the new one is recorded; what was stored.
    pub async fn put_product_file(
        &self,
        product: &ProductId,
        file_name: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<coffer_store::ProductFile, AppError> {
        let sha256 = hex::encode(coffer_crypto::digest(bytes));
        let key = format!("{product}.{}.download", &sha256[..16]);
        self.files.put(&key, bytes).await?;
        let file = coffer_store::ProductFile {
            product_id: product.clone(),
            file_key: key,
            file_name: file_name.to_owned(),
            content_type: content_type.to_owned(),
            size_bytes: i64::try_from(bytes.len()).unwrap_or(i64::MAX),
            sha256: Some(sha256),
        };
        let before = self.db.product_file(product).await?;
        let (stored, now) = (file.clone(), self.clock.now());
        self.db.write(unit!(|tx| tx.set_product_file(&stored, now).await.map_err(AppError::from))).await?;
        // The file it replaced; downloads read the key recorded now.
        if let Some(old) = before.filter(|old| old.file_key != file.file_key)
            && let Err(e) = self.files.delete(&old.file_key).await
        {
            tracing::warn!(error = %e, "a replaced download file was not deleted");
        }
        Ok(file)
    }
}
