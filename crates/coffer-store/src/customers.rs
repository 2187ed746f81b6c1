//! Customers as stored: every personal field sealed (see `coffer-crypto`'s
//! `Sealed`), the email findable only through its blind index.

use crate::{Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{CustomerId, DataKeyId, Millis};
use sqlx::Row;
use sqlx::any::AnyRow;

/// A new customer, sealed by the caller before it reaches the store.
#[derive(Clone, Debug)]
pub struct NewSealedCustomer {
    pub id: CustomerId,
    pub data_key_id: DataKeyId,
    pub email_index: [u8; 32],
    pub email_index_version: u32,
    pub fields: SealedFields,
    pub at: Millis,
}

/// The sealed personal fields of a customer row.
#[derive(Clone, Debug, Default)]
pub struct SealedFields {
    pub name: Option<Sealed>,
    pub email: Option<Sealed>,
    pub phone: Option<Sealed>,
    pub address: Option<Sealed>,
}

impl SealedFields {
    /// The sealed value of an inventory column of `customers`.
    pub fn column(&self, column: &str) -> Option<&Sealed> {
        match column {
            "name" => self.name.as_ref(),
            "email" => self.email.as_ref(),
            "phone" => self.phone.as_ref(),
            "address" => self.address.as_ref(),
            _ => None,
        }
    }
}

/// A customer row as read back.
#[derive(Clone, Debug)]
pub struct StoredCustomer {
    pub id: CustomerId,
    pub data_key_id: DataKeyId,
    pub fields: SealedFields,
    pub created_at: Millis,
    pub updated_at: Millis,
    pub erased_at: Option<Millis>,
}

/// One entry of the erasure ledger.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Erasure {
    pub customer_id: CustomerId,
    pub data_key_id: DataKeyId,
    pub erased_at: Millis,
}

pub trait CustomerReader {
    fn customer(&self, id: &CustomerId) -> impl Future<Output = Result<Option<StoredCustomer>, StoreError>> + Send;
    fn customer_by_email_index(
        &self,
        index: &[u8; 32],
    ) -> impl Future<Output = Result<Option<StoredCustomer>, StoreError>> + Send;
    /// The data side of the erasure ledger.
    fn erasures(&self) -> impl Future<Output = Result<Vec<Erasure>, StoreError>> + Send;
    /// Which of these data keys a customer row names (erased rows too).
    fn data_keys_in_use(&self, ids: &[String]) -> impl Future<Output = Result<Vec<String>, StoreError>> + Send;
    /// What checkout needs of an existing customer, in one read: the id,
    /// the data key's id and whether the account has a password.
    fn checkout_customer(
        &self,
        index: &[u8; 32],
    ) -> impl Future<Output = Result<Option<(CustomerId, DataKeyId, bool)>, StoreError>> + Send;
}

pub trait CustomerWriter {
    fn insert_customer(&mut self, customer: &NewSealedCustomer) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Replaces the personal fields (and the index when the email changed).
    /// False when there is no such live customer.
    fn update_customer(
        &mut self,
        id: &CustomerId,
        fields: &SealedFields,
        email_index: &[u8; 32],
        email_index_version: u32,
        at: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Clears every personal field and the index, marks the row erased and
    /// records it in the ledger. Idempotent: erasing again changes nothing.
    fn erase_customer(&mut self, erasure: &Erasure) -> impl Future<Output = Result<(), StoreError>> + Send;
}

// A macro so `concat!` keeps each query a `&'static str`.
macro_rules! customer_columns {
    () => {
        "SELECT id, data_key_id, name, email, phone, address, created_at, updated_at, erased_at FROM customers"
    };
}

fn sealed(row: &AnyRow, column: &str) -> Result<Option<Sealed>, StoreError> {
    Ok(row.try_get::<Option<Vec<u8>>, _>(column)?.map(Sealed::from_stored))
}

fn customer_from_row(row: &AnyRow) -> Result<StoredCustomer, StoreError> {
    let id: String = row.try_get("id")?;
    let key: String = row.try_get("data_key_id")?;
    Ok(StoredCustomer {
        id: CustomerId::parse(&id).map_err(StoreError::corrupt)?,
        data_key_id: DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
        fields: SealedFields {
            name: sealed(row, "name")?,
            email: sealed(row, "email")?,
            phone: sealed(row, "phone")?,
            address: sealed(row, "address")?,
        },
        created_at: Millis(row.try_get("created_at")?),
        updated_at: Millis(row.try_get("updated_at")?),
        erased_at: row.try_get::<Option<i64>, _>("erased_at")?.map(Millis),
    })
}

fn bytes(s: Option<&Sealed>) -> Option<Vec<u8>> {
    s.map(|s| s.as_bytes().to_vec())
}

/// A new customer row: `$1` id … `$9` the creation time (also `updated_at`).
const INSERT_CUSTOMER: &str = "INSERT INTO customers (id, data_key_id, email_index, email_index_version, name, email, \
                               phone, address, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)";

/// The statements that add a new customer and its audit entry, for a unit
/// of [`crate::Db::write_commands`] (a first order adds its buyer this way).
pub(crate) fn insert_statements(
    c: &NewSealedCustomer,
    audit: &coffer_domain::AuditEntry,
) -> [(&'static str, Vec<crate::batch::Val>); 2] {
    use crate::batch::Val;
    [
        (
            INSERT_CUSTOMER,
            vec![
                Val::Text(c.id.as_str().to_owned()),
                Val::Text(c.data_key_id.as_str().to_owned()),
                Val::Bytes(c.email_index.to_vec()),
                Val::Int(i64::from(c.email_index_version)),
                Val::OptBytes(bytes(c.fields.name.as_ref())),
                Val::OptBytes(bytes(c.fields.email.as_ref())),
                Val::OptBytes(bytes(c.fields.phone.as_ref())),
                Val::OptBytes(bytes(c.fields.address.as_ref())),
                Val::Int(c.at.0),
            ],
        ),
        crate::audit::append_statement(audit),
    ]
}

/// Whether a conflict is another customer holding the same email (two
/// first orders from one address at once).
pub fn is_email_taken(e: &StoreError) -> bool {
    matches!(e, StoreError::Conflict(what) if what.contains("email_index"))
}

impl CustomerReader for Db {
    async fn customer(&self, id: &CustomerId) -> Result<Option<StoredCustomer>, StoreError> {
        let row = sqlx::query(concat!(customer_columns!(), " WHERE id = $1"))
            .bind(id.as_str())
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(customer_from_row).transpose()
    }

    async fn customer_by_email_index(&self, index: &[u8; 32]) -> Result<Option<StoredCustomer>, StoreError> {
        let row = sqlx::query(concat!(customer_columns!(), " WHERE email_index = $1"))
            .bind(index.to_vec())
            .fetch_optional(self.readers())
            .await?;
        row.as_ref().map(customer_from_row).transpose()
    }

    async fn erasures(&self) -> Result<Vec<Erasure>, StoreError> {
        let rows = sqlx::query(
            "SELECT customer_id, data_key_id, erased_at FROM erasure_ledger ORDER BY erased_at, customer_id",
        )
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(erasure_from_row).collect()
    }

    async fn data_keys_in_use(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!("SELECT data_key_id FROM customers WHERE data_key_id IN ({})", placeholders.join(", "));
        // Only numbered placeholders are formatted in; the ids are bound.
        let mut query = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.as_str());
        }
        Ok(query.fetch_all(self.readers()).await?)
    }

    async fn checkout_customer(&self, index: &[u8; 32]) -> Result<Option<(CustomerId, DataKeyId, bool)>, StoreError> {
        const SQL: &str = "SELECT c.id, c.data_key_id, a.password_hash IS NOT NULL AS has_password FROM customers c \
                           LEFT JOIN accounts a ON a.realm = 'customer' AND a.subject_id = c.id WHERE c.email_index = $1";
        if let Some(direct) = self.direct_readers() {
            let index = index.to_vec();
            let row = direct
                .read_row(SQL, vec![crate::batch::Val::Bytes(index)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, bool>(2)?))
                })
                .await?;
            return row
                .map(|(id, key, has_password)| {
                    Ok((
                        CustomerId::parse(&id).map_err(StoreError::corrupt)?,
                        DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
                        has_password,
                    ))
                })
                .transpose();
        }
        let row = sqlx::query(SQL).bind(index.to_vec()).fetch_optional(self.readers()).await?;
        row.map(|r| {
            let id: String = r.try_get("id")?;
            let key: String = r.try_get("data_key_id")?;
            // SQLite answers a boolean expression as an integer, PostgreSQL as a boolean.
            let has_password = match r.try_get::<bool, _>("has_password") {
                Ok(b) => b,
                Err(_) => r.try_get::<i64, _>("has_password")? != 0,
            };
            Ok((
                CustomerId::parse(&id).map_err(StoreError::corrupt)?,
                DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
                has_password,
            ))
        })
        .transpose()
    }
}

pub(crate) fn erasure_from_row(row: &AnyRow) -> Result<Erasure, StoreError> {
    let customer: String = row.try_get("customer_id")?;
    let key: String = row.try_get("data_key_id")?;
    Ok(Erasure {
        customer_id: CustomerId::parse(&customer).map_err(StoreError::corrupt)?,
        data_key_id: DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
        erased_at: Millis(row.try_get("erased_at")?),
    })
}

impl CustomerWriter for WriteTx {
    async fn insert_customer(&mut self, c: &NewSealedCustomer) -> Result<(), StoreError> {
        sqlx::query(INSERT_CUSTOMER)
            .bind(c.id.as_str())
            .bind(c.data_key_id.as_str())
            .bind(c.email_index.to_vec())
            .bind(i64::from(c.email_index_version))
            .bind(bytes(c.fields.name.as_ref()))
            .bind(bytes(c.fields.email.as_ref()))
            .bind(bytes(c.fields.phone.as_ref()))
            .bind(bytes(c.fields.address.as_ref()))
            .bind(c.at.0)
            .execute(self.conn())
            .await?;
        Ok(())
    }

    async fn update_customer(
        &mut self,
        id: &CustomerId,
        fields: &SealedFields,
        email_index: &[u8; 32],
        email_index_version: u32,
        at: Millis,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE customers SET name = $2, email = $3, phone = $4, address = $5, email_index = $6, \
             email_index_version = $7, updated_at = $8 WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(id.as_str())
        .bind(bytes(fields.name.as_ref()))
        .bind(bytes(fields.email.as_ref()))
        .bind(bytes(fields.phone.as_ref()))
        .bind(bytes(fields.address.as_ref()))
        .bind(email_index.to_vec())
        .bind(i64::from(email_index_version))
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn erase_customer(&mut self, erasure: &Erasure) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE customers SET name = NULL, email = NULL, phone = NULL, address = NULL, email_index = NULL, \
             email_index_version = NULL, erased_at = $2, updated_at = $2 WHERE id = $1 AND erased_at IS NULL",
        )
        .bind(erasure.customer_id.as_str())
        .bind(erasure.erased_at.0)
        .execute(self.conn())
        .await?;
        // Nothing of the account outlives the customer.
        for sql in [
            "DELETE FROM sessions WHERE subject_kind = 'customer' AND subject_id = $1",
            "DELETE FROM sign_in_links WHERE realm = 'customer' AND subject_id = $1",
            "DELETE FROM recovery_codes WHERE realm = 'customer' AND subject_id = $1",
            // The record of an answered request stays (accountability) but
            // a pending challenge is void.
            "UPDATE privacy_requests SET status = 'closed' WHERE customer_id = $1 AND status = 'awaiting_confirmation'",
            "DELETE FROM accounts WHERE realm = 'customer' AND subject_id = $1",
            // Orders stay for the invoices the law requires: amounts, tax
            // and dates, without identity.
            "UPDATE orders SET name = NULL, email = NULL, phone = NULL, address = NULL, card = NULL, \
             guardian_name = NULL WHERE customer_id = $1",
            // The sealed key goes; the row stays, so a refunded order's key
            // stays revoked (and one refunded later is revoked all the same).
            "UPDATE license_keys SET license_key = NULL WHERE order_id IN (SELECT id FROM orders WHERE customer_id = $1)",
            // The encrypted file stays in the file store until the retention
            // job; without the key it cannot be read.
            "DELETE FROM id_documents WHERE order_id IN (SELECT id FROM orders WHERE customer_id = $1)",
        ] {
            sqlx::query(sql).bind(erasure.customer_id.as_str()).execute(self.conn()).await?;
        }
        record_in_ledger(self.conn(), erasure).await
    }
}

/// Adds an erasure to the `erasure_ledger` table of either database (the
/// data side and the key store have the same table). Idempotent.
pub(crate) async fn record_in_ledger(conn: &mut sqlx::AnyConnection, erasure: &Erasure) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO erasure_ledger (customer_id, data_key_id, erased_at) VALUES ($1, $2, $3) \
         ON CONFLICT (customer_id) DO NOTHING",
    )
    .bind(erasure.customer_id.as_str())
    .bind(erasure.data_key_id.as_str())
    .bind(erasure.erased_at.0)
    .execute(conn)
    .await?;
    Ok(())
}
