//! The data-processing terms every vendor's owner accepts before the
//! vendor sees any customer data, and the vendor's privacy contact (its
//! DPO, P7): the one it names, else its owner.

use super::{VendorError, VendorService};
use crate::AppError;
use crate::accounts::vendor_users::own_vendor;
use crate::request::RequestContext;
use coffer_domain::{AuditAction, Permission, VendorId};
use coffer_store::prelude::*;

/// The terms, as the portal shows them. Their version is a digest of this
/// text, so any change asks owners to accept again.
pub const TERMS_TEXT: &str = include_str!("terms.md");

/// The current version: the first 16 hex digits of the text's SHA-256.
pub fn terms_version() -> String {
    hex::encode(&coffer_crypto::digest(TERMS_TEXT.as_bytes())[..8])
}

/// Whom a vendor names for privacy questions, and whether it is the
/// default (the owner).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyContact {
    pub contact: String,
    pub is_owner: bool,
}

fn clean_contact(text: &str) -> Result<String, VendorError> {
    let text = text.trim();
    let ok = (1..=200).contains(&text.chars().count())
        && !text.chars().any(char::is_control)
        && text.split_whitespace().any(|w| {
            let w = w.trim_matches(|c| c == '<' || c == '>' || c == ',');
            coffer_domain::vendor_user_email(w).is_ok()
        });
    if ok { Ok(text.to_owned()) } else { Err(VendorError::InvalidPrivacyContact) }
}

impl VendorService {
    /// Records the owner's acceptance of the current terms (version and
    /// time); `version` is what the page showed. Audited.
    pub async fn accept_terms(&self, ctx: &RequestContext, version: &str) -> Result<(), AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnTerms)?;
        if version != terms_version() {
            return Err(VendorError::StaleTerms.into());
        }
        let (now, by) = (self.clock.now(), ctx.actor().render());
        let entry = ctx.audit_entry(now, AuditAction::VendorTermsAccepted, Some(format!("{vendor} {version}")));
        let version = version.to_owned();
        self.db
            .write(unit!(|tx| {
                tx.accept_vendor_terms(&vendor, &version, &by, now).await?;
                tx.append_audit(&entry).await?;
                Ok::<_, AppError>(())
            }))
            .await
    }

    /// Names the vendor's privacy contact (`None`: its owner again). Audited.
    pub async fn set_privacy_contact(&self, ctx: &RequestContext, contact: Option<&str>) -> Result<(), AppError> {
        let vendor = own_vendor(ctx, Permission::ManageOwnTerms)?;
        let contact = contact.filter(|c| !c.trim().is_empty()).map(clean_contact).transpose()?;
        let entry = ctx.audit_entry(self.clock.now(), AuditAction::VendorDpoChanged, Some(vendor.to_string()));
        self.db
            .write(unit!(|tx| {
                tx.set_vendor_privacy_contact(&vendor, contact.as_deref()).await?;
                tx.append_audit(&entry).await?;
                Ok::<_, AppError>(())
            }))
            .await
    }

    /// A vendor's privacy contact: the one it names, else its owner's address.
    pub async fn privacy_contact(&self, vendor: &VendorId) -> Result<Option<PrivacyContact>, AppError> {
        let found = crate::accounts::vendor_users::privacy_contact_of(&self.db, &self.vault, vendor).await?;
        Ok(found.map(|(contact, is_owner)| PrivacyContact { contact, is_owner }))
    }

    /// Demo only: enrols the vendor's owner (unless the address exists)
    /// and accepts the current terms in their name if none were; the
    /// owner's TOTP secret (base32).
    pub async fn seed_demo_owner(&self, vendor: &VendorId, email: &str, password: &str) -> Result<String, AppError> {
        let secret = self.users.seed_demo_owner(vendor, email, password).await?;
        let accepted = self.db.vendor_record(vendor).await?.and_then(|v| v.terms_version);
        if accepted.is_none() {
            let index = self.vault.blind_index().email(email);
            let owner = self.db.vendor_user_by_email_index(&index).await?.ok_or(AppError::NotFound)?;
            let ctx = RequestContext::new(coffer_domain::Principal::VendorUser {
                id: owner.id.to_string(),
                vendor: vendor.to_string(),
                role: coffer_domain::VendorRole::Owner,
            });
            self.accept_terms(&ctx, &terms_version()).await?;
        }
        Ok(secret)
    }

    /// The vendor's own record (standing, terms, contact) for its portal.
    pub async fn own_record(&self, ctx: &RequestContext) -> Result<coffer_store::VendorRecord, AppError> {
        let vendor = own_vendor(ctx, Permission::ReadOwnVendorOrders)?;
        self.db.vendor_record(&vendor).await?.ok_or(AppError::NotFound)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contact_holds_an_address_on_one_line() {
        assert!(clean_contact("Jane Roe <privacy@example.com>").is_ok());
        assert!(clean_contact("privacy@example.com").is_ok());
        assert_eq!(clean_contact("Jane Roe"), Err(VendorError::InvalidPrivacyContact));
        assert_eq!(clean_contact("a@example.com\nb"), Err(VendorError::InvalidPrivacyContact));
        assert_eq!(terms_version().len(), 16);
    }
}
