//! Fulfilment: what a paid order delivers. License keys are signed with
//! the vendor's key and sealed for storage; download lines get a signed,
//! limited link (see `downloads.rs` for the links and files).

use super::*;

/// Delivers orders: license keys and download links and files.
#[derive(Clone)]
pub struct Fulfilment {
    pub(super) ctx: CheckoutContext,
    pub(super) files: Arc<dyn FileStore>,
    /// Where people reach this server, for download links.
    pub(super) base_url: Arc<str>,
    /// Each vendor's signing key, opened once.
    pub(super) signers: Arc<Mutex<HashMap<VendorId, Arc<LicenseSigningKey>>>>,
}

impl Fulfilment {
    /// License keys (signed, and sealed for storage) and download links for
    /// an order's lines.
    pub(super) async fn deliver(
        &self,
        id: &OrderId,
        customer: &coffer_domain::CustomerId,
        key_id: &coffer_domain::DataKeyId,
        key: &coffer_crypto::DataKey,
        lines: &[PricedLine],
    ) -> Result<Delivery, AppError> {
        let mut delivery = Delivery::default();
        let issued_at = coffer_domain::order::rfc3339_utc(self.clock.now());
        for priced in lines {
            let line = &priced.line;
            if priced.license_key {
                let licensee = self.vault.blind_index().licensee(customer.as_str(), line.vendor_id.as_str());
                let payload = serde_json::json!({
                    "order_id": id.as_str(),
                    "product_id": line.product_id.as_str(),
                    "licensee": licensee,
                    "seats": line.quantity,
                    "issued_at": issued_at,
                });
                let signer = self.license_signer(&line.vendor_id).await?;
                let license = signer.sign(payload.to_string().as_bytes());
                let key_ctx = FieldContext {
                    table: "license_keys",
                    column: "license_key",
                    row_id: &format!("{}:{}", id.as_str(), line.line_no),
                    data_key_id: key_id.as_str(),
                };
                delivery.sealed_keys.push(coffer_store::IssuedKey {
                    line_no: line.line_no,
                    sealed: seal_field(key, &key_ctx, license.as_bytes())?,
                    // Found again by its hash (license status), never in the clear.
                    key_hash: coffer_crypto::license_key_hash(&license),
                    licensee,
                });
                delivery.license_keys.push((line.product_id.clone(), license));
            }
            if priced.download {
                delivery.downloads.push((line.product_id.clone(), self.download_link(id, line.line_no).await?));
            }
        }
        Ok(delivery)
    }

    /// A vendor's license signing key, made on first use and kept sealed
    /// under the master key.
    pub async fn license_signer(&self, vendor: &VendorId) -> Result<Arc<LicenseSigningKey>, AppError> {
        if let Some(signer) =
            self.signers.lock().map_err(|_| AppError::Keys("signer cache poisoned".into()))?.get(vendor)
        {
            return Ok(signer.clone());
        }
        let seed = self.vault.named_secret(&format!("license-signing:{vendor}")).await?;
        let signer = Arc::new(LicenseSigningKey::from_seed(&seed)?);
        if let Ok(mut cache) = self.signers.lock() {
            cache.insert(vendor.clone(), signer.clone());
        }
        Ok(signer)
    }
}
