//! Staff members (who they are, their role, whether they enrolled) and the
//! disclosure records. Their credentials, links and sessions are those of
//! every realm (`accounts.rs`).

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
    pub enrolled_at: Option<Millis>,
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
        concat!("SELECT id, role, email, data_key_id, enrolled_at FROM staff_members ", $tail)
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

/// Marks a member enrolled: from now on they can sign in. The credentials
/// are set in the same unit (`CredentialWriter`).
pub async fn mark_staff_enrolled(tx: &mut WriteTx, staff: &StaffId, now: Millis) -> Result<(), StoreError> {
    sqlx::query("UPDATE staff_members SET enrolled_at = $2, updated_at = $2 WHERE id = $1")
        .bind(staff.as_str())
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
