//! Onboarding and standing: admins (and the operator at the command line)
//! add a vendor with its first owner, list vendors, and suspend or
//! reinstate one. Suspension (P7) takes effect at once everywhere: the
//! key check, the portal's session check and the storefront all read the
//! vendor's status, its users' sessions are ended in the same unit, and
//! its webhooks are not sent. Both are audited.

use super::{VendorError, VendorService};
use crate::AppError;
use crate::request::RequestContext;
use coffer_domain::{AuditAction, NewVendor, Permission, VendorRole, VendorSlug, VendorStatus};
use coffer_store::VendorRecord;
use coffer_store::prelude::*;
use secrecy::SecretString;

/// A vendor just added and its owner's one-time enrolment link.
#[derive(Debug)]
pub struct NewVendorOnboarded {
    pub vendor: VendorRecord,
    pub enrolment_link: SecretString,
}

/// A vendor as the list shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorListing {
    pub vendor: VendorRecord,
    pub users: usize,
    pub products: usize,
}

impl VendorService {
    /// Adds a vendor and invites its owner. Needs [`Permission::ManageVendors`].
    pub async fn add_vendor(
        &self,
        ctx: &RequestContext,
        slug: &str,
        name: &str,
        owner_email: &str,
    ) -> Result<NewVendorOnboarded, AppError> {
        ctx.require(Permission::ManageVendors)?;
        let new = NewVendor::new(slug, name, self.clock.now())?;
        // The owner's address is checked before anything is written.
        coffer_domain::vendor_user_email(owner_email)?;
        let index = self.vault.blind_index().email(owner_email);
        if self.db.vendor_user_by_email_index(&index).await?.is_some() {
            return Err(VendorError::EmailTaken.into());
        }
        if self.db.vendor_record_by_slug(&new.vendor().slug).await?.is_some() {
            return Err(VendorError::SlugTaken.into());
        }
        let vendor = new.vendor().clone();
        let entry = ctx.audit_entry(vendor.created_at, AuditAction::VendorAdded, Some(vendor.id.to_string()));
        let stored = vendor.clone();
        self.db
            .write(unit!(|tx| {
                tx.insert_vendor(&stored).await?;
                tx.append_audit(&entry).await?;
                Ok::<_, AppError>(())
            }))
            .await
            .map_err(|e| if matches!(e, AppError::Conflict) { VendorError::SlugTaken.into() } else { e })?;
        self.catalog.forget_cached();
        let enrolment_link = self.users.invite(&vendor.id, owner_email, VendorRole::Owner, ctx).await?;
        let vendor = self.db.vendor_record(&vendor.id).await?.ok_or(AppError::NotFound)?;
        Ok(NewVendorOnboarded { vendor, enrolment_link })
    }

    /// Every vendor with how many users and products it has.
    pub async fn list_vendors(&self, ctx: &RequestContext) -> Result<Vec<VendorListing>, AppError> {
        ctx.require(Permission::ManageVendors)?;
        let mut out = Vec::new();
        for vendor in self.db.vendor_records().await? {
            let users = self.db.vendor_users(&vendor.id).await?.len();
            let products = self.db.vendor_products(&vendor.id, None, coffer_store::MAX_PAGE).await?.products.len();
            out.push(VendorListing { vendor, users, products });
        }
        Ok(out)
    }

    async fn vendor_by_slug(&self, slug: &str) -> Result<VendorRecord, AppError> {
        let slug = VendorSlug::parse(slug).map_err(|_| VendorError::UnknownVendor)?;
        Ok(self.db.vendor_record_by_slug(&slug).await?.ok_or(VendorError::UnknownVendor)?)
    }

    /// Suspends a vendor with a reason said to it: its keys answer 401,
    /// its users' sessions end, its webhooks stop and its products leave
    /// the storefront, at once. Audited.
    pub async fn suspend(&self, ctx: &RequestContext, slug: &str, reason: &str) -> Result<VendorRecord, AppError> {
        ctx.require(Permission::ManageVendors)?;
        let reason = coffer_domain::suspension_reason(reason)?;
        self.set_status(ctx, slug, VendorStatus::Suspended, Some(reason)).await
    }

    /// Lifts a suspension. Audited.
    pub async fn reinstate(&self, ctx: &RequestContext, slug: &str) -> Result<VendorRecord, AppError> {
        ctx.require(Permission::ManageVendors)?;
        self.set_status(ctx, slug, VendorStatus::Active, None).await
    }

    async fn set_status(
        &self,
        ctx: &RequestContext,
        slug: &str,
        status: VendorStatus,
        reason: Option<String>,
    ) -> Result<VendorRecord, AppError> {
        let vendor = self.vendor_by_slug(slug).await?;
        let now = self.clock.now();
        let action = match status {
            VendorStatus::Suspended => AuditAction::VendorSuspended,
            VendorStatus::Active => AuditAction::VendorReinstated,
        };
        // The reason is the operator's words about a business; the audit
        // names only the vendor.
        let entry = ctx.audit_entry(now, action, Some(vendor.id.to_string()));
        let id = vendor.id.clone();
        let changed = self
            .db
            .write(unit!(|tx| {
                let changed = tx.set_vendor_status(&id, status, reason.as_deref(), now).await?;
                if changed {
                    tx.append_audit(&entry).await?;
                }
                Ok::<_, AppError>(changed)
            }))
            .await?;
        self.catalog.forget_cached();
        if !changed {
            return Err(VendorError::AlreadyInState(status.as_str()).into());
        }
        self.db.vendor_record(&vendor.id).await?.ok_or(AppError::NotFound)
    }
}
