//! The vendor side: a vendor's standing (suspension), its accepted
//! data-processing terms and privacy contact, its portal's users (their
//! credentials, links and sessions are those of every realm, in
//! `accounts.rs`) and its API keys as a person manages them. Every query of
//! something a vendor owns names the vendor, so one vendor's id never
//! reaches another's rows.

use crate::{Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{Millis, Realm, VendorApiKeyId, VendorId, VendorRole, VendorSlug, VendorStatus, VendorUserId};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A vendor with its standing and duties.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorRecord {
    pub id: VendorId,
    pub slug: VendorSlug,
    pub name: String,
    pub created_at: Millis,
    pub status: VendorStatus,
    pub suspended_reason: Option<String>,
    pub suspended_at: Option<Millis>,
    /// The version of the data-processing terms the owner accepted.
    pub terms_version: Option<String>,
    pub terms_accepted_at: Option<Millis>,
    pub terms_accepted_by: Option<String>,
    /// The privacy contact the vendor names; `None`: its owner.
    pub privacy_contact: Option<String>,
}

macro_rules! select_vendor {
    ($tail:literal) => {
        concat!(
            "SELECT id, slug, name, created_at, status, suspended_reason, suspended_at, terms_version, \
             terms_accepted_at, terms_accepted_by, privacy_contact FROM vendors ",
            $tail
        )
    };
}

fn vendor_record(r: &AnyRow) -> Result<VendorRecord, StoreError> {
    let millis =
        |column: &str| -> Result<Option<Millis>, StoreError> { Ok(r.try_get::<Option<i64>, _>(column)?.map(Millis)) };
    Ok(VendorRecord {
        id: VendorId::parse(r.try_get("id")?).map_err(StoreError::corrupt)?,
        slug: VendorSlug::parse(r.try_get("slug")?).map_err(StoreError::corrupt)?,
        name: r.try_get("name")?,
        created_at: Millis(r.try_get("created_at")?),
        status: VendorStatus::parse(r.try_get("status")?).ok_or_else(|| StoreError::corrupt("vendors.status"))?,
        suspended_reason: r.try_get("suspended_reason")?,
        suspended_at: millis("suspended_at")?,
        terms_version: r.try_get("terms_version")?,
        terms_accepted_at: millis("terms_accepted_at")?,
        terms_accepted_by: r.try_get("terms_accepted_by")?,
        privacy_contact: r.try_get("privacy_contact")?,
    })
}

/// A new portal user, not yet enrolled.
#[derive(Clone, Debug)]
pub struct NewVendorUser {
    pub id: VendorUserId,
    pub vendor_id: VendorId,
    pub role: VendorRole,
    pub email_index: [u8; 32],
    pub email: Sealed,
    pub data_key_id: String,
    pub invited_by: Option<String>,
    pub at: Millis,
}

/// A portal user as stored; the address opens with their data key.
#[derive(Clone, Debug)]
pub struct VendorUserRow {
    pub id: VendorUserId,
    pub vendor_id: VendorId,
    pub role: VendorRole,
    pub email: Sealed,
    pub data_key_id: String,
    pub enrolled_at: Option<Millis>,
    pub created_at: Millis,
}

macro_rules! select_user {
    ($tail:literal) => {
        concat!("SELECT id, vendor_id, role, email, data_key_id, enrolled_at, created_at FROM vendor_users ", $tail)
    };
}

fn user_row(r: &AnyRow) -> Result<VendorUserRow, StoreError> {
    Ok(VendorUserRow {
        id: VendorUserId::parse(r.try_get("id")?).map_err(StoreError::corrupt)?,
        vendor_id: VendorId::parse(r.try_get("vendor_id")?).map_err(StoreError::corrupt)?,
        role: VendorRole::parse(r.try_get("role")?).ok_or_else(|| StoreError::corrupt("vendor_users.role"))?,
        email: Sealed::from_stored(r.try_get::<Vec<u8>, _>("email")?),
        data_key_id: r.try_get("data_key_id")?,
        enrolled_at: r.try_get::<Option<i64>, _>("enrolled_at")?.map(Millis),
        created_at: Millis(r.try_get("created_at")?),
    })
}

/// An API key as its vendor sees it: never the key, only its start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VendorApiKeyRow {
    pub id: VendorApiKeyId,
    pub prefix: String,
    pub label: String,
    pub created_at: Millis,
    pub last_used_at: Option<Millis>,
    pub revoked_at: Option<Millis>,
}

/// A new API key's record (its hash; the key is shown once and dropped).
#[derive(Clone, Debug)]
pub struct NewVendorApiKey {
    pub id: VendorApiKeyId,
    pub vendor_id: VendorId,
    pub key_hash: [u8; 32],
    pub prefix: String,
    pub label: String,
    pub created_by: Option<String>,
    pub at: Millis,
}

/// The live key a presented key's hash names, of an active vendor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LiveApiKey {
    pub id: VendorApiKeyId,
    pub vendor_id: VendorId,
    pub last_used_at: Option<Millis>,
}

impl Db {
    pub async fn vendor_record(&self, id: &VendorId) -> Result<Option<VendorRecord>, StoreError> {
        let row = sqlx::query(select_vendor!("WHERE id = $1")).bind(id.as_str()).fetch_optional(self.readers()).await?;
        row.as_ref().map(vendor_record).transpose()
    }

    pub async fn vendor_record_by_slug(&self, slug: &VendorSlug) -> Result<Option<VendorRecord>, StoreError> {
        let row =
            sqlx::query(select_vendor!("WHERE slug = $1")).bind(slug.as_str()).fetch_optional(self.readers()).await?;
        row.as_ref().map(vendor_record).transpose()
    }

    /// Every vendor, by slug.
    pub async fn vendor_records(&self) -> Result<Vec<VendorRecord>, StoreError> {
        let rows = sqlx::query(select_vendor!("ORDER BY slug")).fetch_all(self.readers()).await?;
        rows.iter().map(vendor_record).collect()
    }

    pub async fn vendor_user(&self, id: &VendorUserId) -> Result<Option<VendorUserRow>, StoreError> {
        let row = sqlx::query(select_user!("WHERE id = $1 AND removed_at IS NULL"))
            .bind(id.as_str())
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// The live (not removed) user with this address's blind index.
    pub async fn vendor_user_by_email_index(&self, index: &[u8; 32]) -> Result<Option<VendorUserRow>, StoreError> {
        let row = sqlx::query(select_user!("WHERE email_index = $1 AND removed_at IS NULL"))
            .bind(index.to_vec())
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(user_row).transpose()
    }

    /// A vendor's live users, oldest first.
    pub async fn vendor_users(&self, vendor: &VendorId) -> Result<Vec<VendorUserRow>, StoreError> {
        let rows = sqlx::query(select_user!("WHERE vendor_id = $1 AND removed_at IS NULL ORDER BY created_at, id"))
            .bind(vendor.as_str())
            .fetch_all(self.readers())
            .await?;
        rows.iter().map(user_row).collect()
    }

    /// The live key with this hash, if its vendor is active.
    pub async fn live_api_key(&self, key_hash: &[u8; 32]) -> Result<Option<LiveApiKey>, StoreError> {
        let row = sqlx::query(
            "SELECT k.id, k.vendor_id, k.last_used_at FROM vendor_api_keys k JOIN vendors v ON v.id = k.vendor_id \
             WHERE k.key_hash = $1 AND k.revoked_at IS NULL AND v.status = 'active'",
        )
        .bind(key_hash.to_vec())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| {
            Ok(LiveApiKey {
                id: VendorApiKeyId::parse(r.try_get("id")?).map_err(StoreError::corrupt)?,
                vendor_id: VendorId::parse(r.try_get("vendor_id")?).map_err(StoreError::corrupt)?,
                last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Millis),
            })
        })
        .transpose()
    }

    /// A vendor's keys, newest first, revoked ones too.
    pub async fn vendor_api_keys(&self, vendor: &VendorId) -> Result<Vec<VendorApiKeyRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, prefix, label, created_at, last_used_at, revoked_at FROM vendor_api_keys \
             WHERE vendor_id = $1 ORDER BY created_at DESC, id",
        )
        .bind(vendor.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(VendorApiKeyRow {
                    id: VendorApiKeyId::parse(r.try_get("id")?).map_err(StoreError::corrupt)?,
                    prefix: r.try_get::<Option<String>, _>("prefix")?.unwrap_or_default(),
                    label: r.try_get::<Option<String>, _>("label")?.unwrap_or_default(),
                    created_at: Millis(r.try_get("created_at")?),
                    last_used_at: r.try_get::<Option<i64>, _>("last_used_at")?.map(Millis),
                    revoked_at: r.try_get::<Option<i64>, _>("revoked_at")?.map(Millis),
                })
            })
            .collect()
    }
}

/// Writing the vendor side, inside the caller's unit.
impl WriteTx {
    /// Suspends (with the reason) or reinstates a vendor; whether it changed.
    /// Suspension also ends every session of its users.
    pub async fn set_vendor_status(
        &mut self,
        vendor: &VendorId,
        status: VendorStatus,
        reason: Option<&str>,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vendors SET status = $2, suspended_reason = $3, suspended_at = $4 WHERE id = $1 AND status <> $2",
        )
        .bind(vendor.as_str())
        .bind(status.as_str())
        .bind(reason.map(str::to_owned))
        .bind((status == VendorStatus::Suspended).then_some(at.0))
        .execute(self.conn())
        .await?;
        if status == VendorStatus::Suspended {
            sqlx::query(
                "UPDATE sessions SET revoked_at = $2 WHERE subject_kind = $3 AND revoked_at IS NULL \
                 AND subject_id IN (SELECT id FROM vendor_users WHERE vendor_id = $1)",
            )
            .bind(vendor.as_str())
            .bind(at.0)
            .bind(Realm::Vendor.as_str())
            .execute(self.conn())
            .await?;
        }
        Ok(done.rows_affected() == 1)
    }

    pub async fn accept_vendor_terms(
        &mut self,
        vendor: &VendorId,
        version: &str,
        by: &str,
        at: Millis,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE vendors SET terms_version = $2, terms_accepted_at = $3, terms_accepted_by = $4 WHERE id = $1",
        )
        .bind(vendor.as_str())
        .bind(version.to_owned())
        .bind(at.0)
        .bind(by.to_owned())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn set_vendor_privacy_contact(
        &mut self,
        vendor: &VendorId,
        contact: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE vendors SET privacy_contact = $2 WHERE id = $1")
            .bind(vendor.as_str())
            .bind(contact.map(str::to_owned))
            .execute(self.conn())
            .await?;
        Ok(())
    }

    pub async fn insert_vendor_user(&mut self, user: &NewVendorUser) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO vendor_users (id, vendor_id, role, email_index, email, data_key_id, invited_by, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(user.id.as_str())
        .bind(user.vendor_id.as_str())
        .bind(user.role.as_str())
        .bind(user.email_index.to_vec())
        .bind(user.email.as_bytes().to_vec())
        .bind(user.data_key_id.clone())
        .bind(user.invited_by.clone())
        .bind(user.at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    pub async fn mark_vendor_user_enrolled(&mut self, user: &VendorUserId, at: Millis) -> Result<(), StoreError> {
        sqlx::query("UPDATE vendor_users SET enrolled_at = $2, updated_at = $2 WHERE id = $1")
            .bind(user.as_str())
            .bind(at.0)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    /// Removes a user of this vendor (their sessions and links end in the
    /// same unit, by the caller); whether one was removed.
    pub async fn remove_vendor_user(
        &mut self,
        vendor: &VendorId,
        user: &VendorUserId,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vendor_users SET removed_at = $3, updated_at = $3 \
             WHERE id = $1 AND vendor_id = $2 AND removed_at IS NULL",
        )
        .bind(user.as_str())
        .bind(vendor.as_str())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn insert_api_key(&mut self, key: &NewVendorApiKey) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO vendor_api_keys (key_hash, vendor_id, created_at, id, prefix, label, created_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(key.key_hash.to_vec())
        .bind(key.vendor_id.as_str())
        .bind(key.at.0)
        .bind(key.id.as_str())
        .bind(key.prefix.clone())
        .bind(key.label.clone())
        .bind(key.created_by.clone())
        .execute(self.conn())
        .await?;
        Ok(())
    }

    /// Revokes a live key of this vendor; whether one was revoked.
    pub async fn revoke_api_key(
        &mut self,
        vendor: &VendorId,
        key: &VendorApiKeyId,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE vendor_api_keys SET revoked_at = $3 WHERE id = $1 AND vendor_id = $2 AND revoked_at IS NULL",
        )
        .bind(key.as_str())
        .bind(vendor.as_str())
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }
}

impl Db {
    /// Notes a key's use (callers write it at most once a minute a key).
    pub async fn touch_api_key(&self, key: VendorApiKeyId, at: Millis) -> Result<(), StoreError> {
        self.write(move |tx| {
            Box::pin(async move {
                sqlx::query("UPDATE vendor_api_keys SET last_used_at = $2 WHERE id = $1")
                    .bind(key.as_str())
                    .bind(at.0)
                    .execute(tx.conn())
                    .await?;
                Ok::<_, StoreError>(())
            })
        })
        .await
    }
}
