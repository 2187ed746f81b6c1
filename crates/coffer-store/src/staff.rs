//! Staff accounts, their one-time links and recovery codes, and the
//! disclosure records. Sessions and the sign-in throttle are shared with
//! customer accounts (`accounts.rs`).

use crate::{Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{CustomerId, Millis, StaffId, StaffRole};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A new staff member, not yet enrolled.
#[derive(Clone, Debug)]
pub struct NewStaffMember {
    pub id: StaffId,
    pub role: StaffRole,
    pub email_index: [u8; 32],
    pub email: Sealed,
    pub data_key_id: String,
    pub at: Millis,
}

/// A staff member as stored; the sealed fields open with their data key.
#[derive(Clone, Debug)]
pub struct StaffRow {
    pub id: StaffId,
    pub role: StaffRole,
    pub email: Sealed,
    pub data_key_id: String,
    pub password_hash: Option<Sealed>,
    pub totp_secret: Option<Sealed>,
    pub enrolled_at: Option<Millis>,
}

/// What a staff link is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StaffLinkPurpose {
    /// Printed by `coffer staff add`: set the password and the TOTP secret.
    Enrolment,
    /// Between a right password and the TOTP code (never shown in a URL).
    SecondFactor,
}

impl StaffLinkPurpose {
    fn as_str(self) -> &'static str {
        match self {
            StaffLinkPurpose::Enrolment => "enrolment",
            StaffLinkPurpose::SecondFactor => "second_factor",
        }
    }
}

/// The enrolment's secrets, sealed, and the TOTP step the code used.
#[derive(Clone, Debug)]
pub struct StaffEnrolment {
    pub password_hash: Sealed,
    pub totp_secret: Sealed,
    pub totp_step: i64,
    pub recovery_code_hashes: Vec<[u8; 32]>,
}

/// A record of personal data given to someone outside the operator.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Disclosure {
    pub id: String,
    pub customer_id: CustomerId,
    /// `vendor`, `payment_gateway` or `authority`.
    pub recipient_kind: String,
    /// Which vendor (by id) or authority (by name).
    pub recipient: String,
    /// Inventory names, e.g. `customers.name`.
    pub fields: Vec<String>,
    pub purpose: String,
    pub legal_basis: String,
    pub disclosed_at: Millis,
}

/// A fixed `SELECT` of staff rows with the given tail (a literal).
macro_rules! select_staff {
    ($tail:literal) => {
        concat!(
            "SELECT id, role, email, data_key_id, password_hash, totp_secret, enrolled_at FROM staff_members ",
            $tail
        )
    };
}

fn staff_row(r: &AnyRow) -> Result<StaffRow, StoreError> {
    let id: String = r.try_get("id")?;
    let role: String = r.try_get("role")?;
    let sealed = |column: &str| -> Result<Option<Sealed>, StoreError> {
        Ok(r.try_get::<Option<Vec<u8>>, _>(column)?.map(Sealed::from_stored))
    };
    Ok(StaffRow {
        id: StaffId::parse(&id).map_err(StoreError::corrupt)?,
        role: StaffRole::parse(&role).ok_or_else(|| StoreError::corrupt("staff_members.role"))?,
        email: sealed("email")?.ok_or_else(|| StoreError::corrupt("staff_members.email"))?,
        data_key_id: r.try_get("data_key_id")?,
        password_hash: sealed("password_hash")?,
        totp_secret: sealed("totp_secret")?,
        enrolled_at: r.try_get::<Option<i64>, _>("enrolled_at")?.map(Millis),
    })
}

pub async fn insert_staff_member(tx: &mut WriteTx, member: &NewStaffMember) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO staff_members (id, role, email_index, email, data_key_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $6)",
    )
    .bind(member.id.as_str())
    .bind(member.role.as_str())
    .bind(member.email_index.to_vec())
    .bind(member.email.as_bytes().to_vec())
    .bind(member.data_key_id.clone())
    .bind(member.at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn insert_staff_link(
    tx: &mut WriteTx,
    token_hash: &[u8; 32],
    staff: &StaffId,
    purpose: StaffLinkPurpose,
    at: Millis,
    expires_at: Millis,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO staff_links (token_hash, staff_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(token_hash.to_vec())
    .bind(staff.as_str())
    .bind(purpose.as_str())
    .bind(at.0)
    .bind(expires_at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

/// Spends an unused, unexpired link of this purpose; its owner, once.
pub async fn use_staff_link(
    tx: &mut WriteTx,
    token_hash: &[u8; 32],
    purpose: StaffLinkPurpose,
    now: Millis,
) -> Result<Option<StaffId>, StoreError> {
    let row = sqlx::query(
        "UPDATE staff_links SET used_at = $3 WHERE token_hash = $1 AND purpose = $2 \
         AND used_at IS NULL AND expires_at > $3 RETURNING staff_id",
    )
    .bind(token_hash.to_vec())
    .bind(purpose.as_str())
    .bind(now.0)
    .fetch_optional(tx.conn())
    .await?;
    row.map(|r| StaffId::parse(&r.try_get::<String, _>("staff_id")?).map_err(StoreError::corrupt)).transpose()
}

/// Sets password, TOTP secret and recovery codes in one go and marks the
/// member enrolled. Earlier links and codes of the member stop working.
pub async fn enrol_staff_member(
    tx: &mut WriteTx,
    staff: &StaffId,
    enrolment: &StaffEnrolment,
    now: Millis,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE staff_links SET used_at = $2 WHERE staff_id = $1 AND used_at IS NULL")
        .bind(staff.as_str())
        .bind(now.0)
        .execute(tx.conn())
        .await?;
    sqlx::query("DELETE FROM staff_recovery_codes WHERE staff_id = $1").bind(staff.as_str()).execute(tx.conn()).await?;
    for code in &enrolment.recovery_code_hashes {
        sqlx::query("INSERT INTO staff_recovery_codes (code_hash, staff_id) VALUES ($1, $2)")
            .bind(code.to_vec())
            .bind(staff.as_str())
            .execute(tx.conn())
            .await?;
    }
    sqlx::query(
        "UPDATE staff_members SET password_hash = $2, totp_secret = $3, totp_last_step = $4, enrolled_at = $5, \
         updated_at = $5 WHERE id = $1",
    )
    .bind(staff.as_str())
    .bind(enrolment.password_hash.as_bytes().to_vec())
    .bind(enrolment.totp_secret.as_bytes().to_vec())
    .bind(enrolment.totp_step)
    .bind(now.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

pub async fn insert_disclosure(tx: &mut WriteTx, disclosure: &Disclosure) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO disclosures (id, customer_id, recipient_kind, recipient, fields, purpose, legal_basis, disclosed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(disclosure.id.clone())
    .bind(disclosure.customer_id.as_str())
    .bind(disclosure.recipient_kind.clone())
    .bind(disclosure.recipient.clone())
    .bind(disclosure.fields.join(","))
    .bind(disclosure.purpose.clone())
    .bind(disclosure.legal_basis.clone())
    .bind(disclosure.disclosed_at.0)
    .execute(tx.conn())
    .await?;
    Ok(())
}

impl Db {
    pub async fn staff_member(&self, id: &StaffId) -> Result<Option<StaffRow>, StoreError> {
        let row = sqlx::query(select_staff!("WHERE id = $1")).bind(id.as_str()).fetch_optional(self.readers()).await?;
        row.as_ref().map(staff_row).transpose()
    }

    pub async fn staff_member_by_email_index(&self, index: &[u8; 32]) -> Result<Option<StaffRow>, StoreError> {
        let row = sqlx::query(select_staff!("WHERE email_index = $1"))
            .bind(index.to_vec())
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(staff_row).transpose()
    }

    /// Every staff member, oldest first.
    pub async fn staff_members(&self) -> Result<Vec<StaffRow>, StoreError> {
        let rows = sqlx::query(select_staff!("ORDER BY created_at, id")).fetch_all(self.readers()).await?;
        rows.iter().map(staff_row).collect()
    }

    /// Whose an unused, unexpired link of this purpose is (without spending it).
    pub async fn staff_link_owner(
        &self,
        token_hash: &[u8; 32],
        purpose: StaffLinkPurpose,
        now: Millis,
    ) -> Result<Option<StaffId>, StoreError> {
        let row = sqlx::query(
            "SELECT staff_id FROM staff_links WHERE token_hash = $1 AND purpose = $2 AND used_at IS NULL \
             AND expires_at > $3",
        )
        .bind(token_hash.to_vec())
        .bind(purpose.as_str())
        .bind(now.0)
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| StaffId::parse(&r.try_get::<String, _>("staff_id")?).map_err(StoreError::corrupt)).transpose()
    }

    /// Accepts a TOTP step once: true only if it is after the last one used.
    pub async fn accept_staff_totp_step(&self, staff: &StaffId, step: i64) -> Result<bool, StoreError> {
        let id = staff.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE staff_members SET totp_last_step = $2 WHERE id = $1 \
                     AND totp_secret IS NOT NULL AND (totp_last_step IS NULL OR totp_last_step < $2)",
                )
                .bind(id.as_str())
                .bind(step)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// Uses a staff recovery code once.
    pub async fn use_staff_recovery_code(
        &self,
        staff: &StaffId,
        code_hash: [u8; 32],
        now: Millis,
    ) -> Result<bool, StoreError> {
        let id = staff.clone();
        self.write(move |tx| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE staff_recovery_codes SET used_at = $3 WHERE code_hash = $1 AND staff_id = $2 \
                     AND used_at IS NULL",
                )
                .bind(code_hash.to_vec())
                .bind(id.as_str())
                .bind(now.0)
                .execute(tx.conn())
                .await?;
                Ok::<_, StoreError>(done.rows_affected() == 1)
            })
        })
        .await
    }

    /// The disclosure records about one customer, oldest first.
    pub async fn disclosures_about(&self, customer: &CustomerId) -> Result<Vec<Disclosure>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, customer_id, recipient_kind, recipient, fields, purpose, legal_basis, disclosed_at \
             FROM disclosures WHERE customer_id = $1 ORDER BY disclosed_at, id",
        )
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                let fields: String = r.try_get("fields")?;
                Ok(Disclosure {
                    id: r.try_get("id")?,
                    customer_id: customer.clone(),
                    recipient_kind: r.try_get("recipient_kind")?,
                    recipient: r.try_get("recipient")?,
                    fields: fields.split(',').filter(|f| !f.is_empty()).map(str::to_owned).collect(),
                    purpose: r.try_get("purpose")?,
                    legal_basis: r.try_get("legal_basis")?,
                    disclosed_at: Millis(r.try_get("disclosed_at")?),
                })
            })
            .collect()
    }
}
