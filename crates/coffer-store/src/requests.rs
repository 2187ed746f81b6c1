//! Written data-subject requests awaiting or past confirmation.

use crate::{Db, StoreError, WriteTx};
use coffer_domain::{CustomerId, Jurisdiction, Millis, RequestKind};
use sqlx::Row;

/// A request as the DPO console lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrivacyRequestRow {
    pub id: String,
    pub customer_id: CustomerId,
    pub kind: String,
    pub jurisdiction: String,
    pub status: String,
    pub received_at: Millis,
    pub deadline_at: Option<Millis>,
}

/// A request to record, with the hash of its emailed challenge.
#[derive(Clone, Debug)]
pub struct NewPrivacyRequest {
    pub id: String,
    pub customer: CustomerId,
    pub kind: RequestKind,
    pub jurisdiction: Jurisdiction,
    pub challenge_hash: [u8; 32],
    pub at: Millis,
    pub challenge_expires_at: Millis,
}

fn request_row(r: &sqlx::any::AnyRow) -> Result<PrivacyRequestRow, StoreError> {
    let customer: String = r.try_get("customer_id")?;
    Ok(PrivacyRequestRow {
        id: r.try_get("id")?,
        customer_id: CustomerId::parse(&customer).map_err(StoreError::corrupt)?,
        kind: r.try_get("kind")?,
        jurisdiction: r.try_get("jurisdiction")?,
        status: r.try_get("status")?,
        received_at: Millis(r.try_get("received_at")?),
        deadline_at: r.try_get::<Option<i64>, _>("deadline_at")?.map(Millis),
    })
}

/// Reading privacy requests.
pub trait PrivacyRequestReader: Send + Sync {
    /// Every request about one customer, oldest first (for their export).
    fn privacy_requests_of(
        &self,
        customer: &CustomerId,
    ) -> impl Future<Output = Result<Vec<PrivacyRequestRow>, StoreError>> + Send;

    /// Confirmed requests not yet closed, soonest deadline first.
    fn open_privacy_requests(&self) -> impl Future<Output = Result<Vec<PrivacyRequestRow>, StoreError>> + Send;

    /// Whether a confirmation link still confirms a request: the request
    /// awaits it and the link has not expired. Reads only.
    fn privacy_request_awaits(
        &self,
        challenge_hash: &[u8; 32],
        now: Millis,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
}

impl PrivacyRequestReader for Db {
    async fn privacy_request_awaits(&self, challenge_hash: &[u8; 32], now: Millis) -> Result<bool, StoreError> {
        let row = sqlx::query(
            "SELECT id FROM privacy_requests WHERE challenge_hash = $1 AND status = 'awaiting_confirmation' \
             AND challenge_expires_at > $2",
        )
        .bind(challenge_hash.to_vec())
        .bind(now.0)
        .fetch_optional(self.readers())
        .await?;
        Ok(row.is_some())
    }

    async fn privacy_requests_of(&self, customer: &CustomerId) -> Result<Vec<PrivacyRequestRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, customer_id, kind, jurisdiction, status, received_at, deadline_at FROM privacy_requests \
             WHERE customer_id = $1 ORDER BY received_at, id",
        )
        .bind(customer.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(request_row).collect()
    }

    async fn open_privacy_requests(&self) -> Result<Vec<PrivacyRequestRow>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, customer_id, kind, jurisdiction, status, received_at, deadline_at FROM privacy_requests \
             WHERE status = 'confirmed' ORDER BY deadline_at, id",
        )
        .fetch_all(self.readers())
        .await?;
        rows.iter().map(request_row).collect()
    }
}

/// Recording and confirming privacy requests, inside a unit of work.
pub trait PrivacyRequestWriter {
    /// Records a request awaiting the confirmation of its emailed challenge.
    fn insert_privacy_request(&mut self, r: &NewPrivacyRequest) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Confirms a request by its challenge (once, before it expires); returns
    /// the request's id, kind, customer and deadline.
    fn confirm_privacy_request(
        &mut self,
        challenge_hash: &[u8; 32],
        now: Millis,
    ) -> impl Future<Output = Result<Option<(String, String, CustomerId, Millis)>, StoreError>> + Send;
}

impl PrivacyRequestWriter for WriteTx {
    async fn insert_privacy_request(&mut self, r: &NewPrivacyRequest) -> Result<(), StoreError> {
        let NewPrivacyRequest { id, customer, kind, jurisdiction, challenge_hash, at, challenge_expires_at } = r;
        sqlx::query(
            "INSERT INTO privacy_requests (id, customer_id, kind, jurisdiction, status, challenge_hash, \
             challenge_expires_at, received_at) VALUES ($1, $2, $3, $4, 'awaiting_confirmation', $5, $6, $7)",
        )
        .bind(id.clone())
        .bind(customer.as_str())
        .bind(kind.as_str())
        .bind(jurisdiction.as_str())
        .bind(challenge_hash.to_vec())
        .bind(challenge_expires_at.0)
        .bind(at.0)
        .execute(self.conn())
        .await?;
        Ok(())
    }

    async fn confirm_privacy_request(
        &mut self,
        challenge_hash: &[u8; 32],
        now: Millis,
    ) -> Result<Option<(String, String, CustomerId, Millis)>, StoreError> {
        let row = sqlx::query(
            "SELECT id, kind, jurisdiction, customer_id FROM privacy_requests WHERE challenge_hash = $1 \
             AND status = 'awaiting_confirmation' AND challenge_expires_at > $2",
        )
        .bind(challenge_hash.to_vec())
        .bind(now.0)
        .fetch_optional(self.conn())
        .await?;
        let Some(row) = row else { return Ok(None) };
        let id: String = row.try_get("id")?;
        let jurisdiction: String = row.try_get("jurisdiction")?;
        let jurisdiction =
            Jurisdiction::parse(&jurisdiction).ok_or_else(|| StoreError::corrupt("privacy_requests.jurisdiction"))?;
        let deadline = jurisdiction.deadline(now);
        sqlx::query(
            "UPDATE privacy_requests SET status = 'confirmed', confirmed_at = $2, deadline_at = $3 WHERE id = $1",
        )
        .bind(id.clone())
        .bind(now.0)
        .bind(deadline.0)
        .execute(self.conn())
        .await?;
        let customer: String = row.try_get("customer_id")?;
        Ok(Some((id, row.try_get("kind")?, CustomerId::parse(&customer).map_err(StoreError::corrupt)?, deadline)))
    }
}
