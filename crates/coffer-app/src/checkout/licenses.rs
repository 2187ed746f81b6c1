//! License status: whether a key is valid (its issuing vendor's signature
//! and no refund revoked it), and each vendor's signed revocation list for
//! programs that check offline. Keys are found by their SHA-256, never
//! stored or logged in the clear; a key issued before keys were hashed
//! (migration 0023) is found by the order and product its verified payload
//! names.
//!
//! Both answer anyone (no principal): they say nothing about a buyer
//! beyond the pseudonymous `licensee` the key itself carries.

use super::*;
use coffer_domain::{VendorSlug, VendorStatus};

/// Longer than any key Coffer issues; longer input is not looked at.
pub const MAX_LICENSE_KEY_LEN: usize = 2_048;

/// What a license check finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LicenseStatus {
    /// Signed by its vendor and not revoked.
    Active,
    /// Signed by its vendor, and revoked by a refund.
    Revoked,
    /// Malformed, or not signed by the vendor of the product it names, or
    /// not the key Coffer issued for that order line.
    Invalid,
}

impl LicenseStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            LicenseStatus::Active => "active",
            LicenseStatus::Revoked => "revoked",
            LicenseStatus::Invalid => "invalid",
        }
    }
}

/// The answer to a license check.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicenseCheck {
    pub status: LicenseStatus,
    /// The product of a key its vendor signed; `None` for an invalid key.
    pub product_id: Option<ProductId>,
}

impl LicenseCheck {
    /// Valid: signed by the issuing vendor and not revoked.
    pub fn valid(&self) -> bool {
        self.status == LicenseStatus::Active
    }

    fn invalid() -> LicenseCheck {
        LicenseCheck { status: LicenseStatus::Invalid, product_id: None }
    }
}

/// The fields of a payload this check reads.
#[derive(serde::Deserialize)]
struct Claims {
    order_id: String,
    product_id: String,
}

impl Fulfilment {
    /// Checks a license key: valid when its issuing vendor's key signed it
    /// and no refund revoked it.
    pub async fn check_license(&self, key: &str) -> Result<LicenseCheck, AppError> {
        if key.len() > MAX_LICENSE_KEY_LEN {
            return Ok(LicenseCheck::invalid());
        }
        // The payload (not trusted until verified) names the order line,
        // whose vendor must have signed it.
        let Some(claims) = coffer_crypto::unverified_license_payload(key)
            .and_then(|payload| serde_json::from_slice::<Claims>(&payload).ok())
        else {
            return Ok(LicenseCheck::invalid());
        };
        let (Ok(order), Ok(product)) = (OrderId::parse(&claims.order_id), ProductId::parse(&claims.product_id)) else {
            return Ok(LicenseCheck::invalid());
        };
        let hash = coffer_crypto::license_key_hash(key);
        if let Some(record) = self.db.license_by_hash(&order, &hash).await? {
            return self.status_of(key, &record.vendor_id, Some(&record)).await;
        }
        // Not found by its hash: a key issued before keys were hashed, or
        // not one Coffer issued.
        match self.db.license_of_line(&order, &product).await? {
            // Another key was issued for that line: this one never was.
            Some(record) if record.key_hash.is_some() => Ok(LicenseCheck::invalid()),
            Some(record) => self.status_of(key, &record.vendor_id, Some(&record)).await,
            // No record kept (a customer erased before records were kept):
            // the signature alone speaks, as it does offline.
            None => match self.db.product(&product).await? {
                Some(p) => self.status_of(key, &p.vendor_id, None).await,
                None => Ok(LicenseCheck::invalid()),
            },
        }
    }

    /// The status of `key` once its vendor is known: invalid unless that
    /// vendor's key signed it and it names the record's product.
    async fn status_of(
        &self,
        key: &str,
        vendor: &VendorId,
        record: Option<&coffer_store::LicenseRecord>,
    ) -> Result<LicenseCheck, AppError> {
        let signer = self.license_signer(vendor).await?;
        let Some(claims) = signer.verify(key).ok().and_then(|p| serde_json::from_slice::<Claims>(&p).ok()) else {
            return Ok(LicenseCheck::invalid());
        };
        let Ok(product) = ProductId::parse(&claims.product_id) else { return Ok(LicenseCheck::invalid()) };
        let revoked = match record {
            Some(record) if record.product_id != product || record.order_id.as_str() != claims.order_id => {
                return Ok(LicenseCheck::invalid());
            }
            Some(record) => record.revoked_at.is_some(),
            None => false,
        };
        let status = if revoked { LicenseStatus::Revoked } else { LicenseStatus::Active };
        Ok(LicenseCheck { status, product_id: Some(product) })
    }

    /// A vendor's signed revocation list (`docs/license-keys.md`): the
    /// revoked keys by what their payload names (order, product, licensee)
    /// and their SHA-256, as of now; signed by the vendor's license key in
    /// the revocation-list context. An unknown or suspended vendor is
    /// `NotFound`.
    pub async fn revocation_list(&self, slug: &str) -> Result<coffer_crypto::SignedList, AppError> {
        let slug = VendorSlug::parse(slug).map_err(|_| AppError::NotFound)?;
        let vendor = self.db.vendor_record_by_slug(&slug).await?.ok_or(AppError::NotFound)?;
        if vendor.status != VendorStatus::Active {
            return Err(AppError::NotFound);
        }
        let revoked: Vec<serde_json::Value> = self
            .db
            .revoked_licenses(&vendor.id)
            .await?
            .into_iter()
            .map(|key| {
                // Keys from before migration 0023 kept no licensee: it is
                // derived as it was when they were issued.
                let licensee = key
                    .licensee
                    .unwrap_or_else(|| self.vault.blind_index().licensee(key.customer_id.as_str(), vendor.id.as_str()));
                serde_json::json!({
                    "order_id": key.order_id.as_str(),
                    "product_id": key.product_id.as_str(),
                    "licensee": licensee,
                    "key_sha256": key.key_hash.map(hex::encode),
                    "revoked_at": coffer_domain::order::rfc3339_utc(key.revoked_at),
                })
            })
            .collect();
        let list = serde_json::json!({
            "vendor": slug.as_str(),
            "issued_at": coffer_domain::order::rfc3339_utc(self.clock.now()),
            "revoked": revoked,
        });
        let signer = self.license_signer(&vendor.id).await?;
        Ok(signer.sign_revocation_list(list.to_string().as_bytes()))
    }
}
