//! The retention job: deletes what has passed its retention period, as the
//! data inventory states it. The server runs it every minute; `coffer
//! retention run` runs it once and prints the counts.

use crate::AppError;
use crate::files::FileStore;
use crate::privacy::vault::SPARE_GRACE_MS;
use coffer_domain::Millis;
use coffer_store::Db;
use coffer_store::prelude::*;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// A period as the data inventory states it; a field missing there is
/// never deleted by age (and `periods_come_from_the_inventory` fails).
fn inventory_ms(table: &str, column: &str) -> i64 {
    coffer_domain::inventory::retention_ms(table, column).unwrap_or(i64::MAX / 2)
}

/// Messages to customers (the inventory's outbox rows): 90 days.
pub fn message_retention_ms() -> i64 {
    inventory_ms("outbox_emails", "body")
}

/// Proof-of-identity documents, from the review decision: 30 days.
pub fn id_document_retention_ms() -> i64 {
    inventory_ms("id_documents", "sealed_digest")
}

/// Idempotency keys and their sealed answers: a day.
pub fn idempotency_retention_ms() -> i64 {
    inventory_ms("idempotency_keys", "response")
}

/// A card payment's gateway token: 540 days (chargebacks).
pub fn payment_token_retention_ms() -> i64 {
    inventory_ms("orders", "payment_token")
}

/// Velocity records of the fraud screen live a day (keyed hashes, not in
/// the inventory of personal fields).
pub const FRAUD_ATTEMPT_RETENTION_MS: i64 = DAY_MS;
/// Ended sessions and spent links are kept a day, for support questions.
pub const SPENT_RETENTION_MS: i64 = DAY_MS;
/// Background jobs that ended (done or given up) are kept a week, so a
/// failure can be looked into; they hold ids and amounts, nobody's data.
pub const FINISHED_JOB_RETENTION_MS: i64 = 7 * DAY_MS;

/// How many of each category were deleted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RetentionReport {
    pub identity_documents: usize,
    pub messages: u64,
    pub fraud_attempts: u64,
    pub sessions: u64,
    pub sign_in_links: u64,
    pub payment_tokens: u64,
    pub idempotency_keys: u64,
    pub mail_files: u64,
    pub expired_holds: u64,
    pub expired_transfers: u64,
    pub checkout_drafts: u64,
    pub finished_jobs: u64,
    pub unused_spare_keys: u64,
}

impl RetentionReport {
    /// (category as a person calls it, count)
    pub fn lines(&self) -> [(&'static str, u64); 13] {
        [
            ("proof-of-identity documents (30 days after the review decision)", self.identity_documents as u64),
            ("messages to customers (90 days)", self.messages),
            ("fraud screen velocity records (1 day)", self.fraud_attempts),
            ("ended sessions (1 day)", self.sessions),
            ("used or expired one-time links (1 day)", self.sign_in_links),
            ("payment processor references of card orders (540 days)", self.payment_tokens),
            ("idempotency keys and their stored answers (1 day)", self.idempotency_keys),
            ("copies of messages in the mail folder (90 days, or at erasure)", self.mail_files),
            ("held orders nobody reviewed, cancelled and voided (14 days)", self.expired_holds),
            (
                "orders whose bank transfer never came, cancelled (operator.transfer_expiry_days)",
                self.expired_transfers,
            ),
            ("checkout forms never sent as an order (1 day after the last change)", self.checkout_drafts),
            ("background jobs that ended (7 days)", self.finished_jobs),
            ("spare customer keys never used (1 hour; nothing was sealed under them)", self.unused_spare_keys),
        ]
    }
}

/// One run of every category; `mail` sweeps the file transport's folder.
pub async fn run(
    db: &Db,
    keys: &coffer_store::KeyStore,
    files: &dyn FileStore,
    mail: Option<&crate::mail::Outbox>,
    now: Millis,
) -> Result<RetentionReport, AppError> {
    let expired = db.expired_id_documents(now, id_document_retention_ms()).await?;
    for (order, file_key) in &expired {
        // The file first: a row without its file is harmless, the reverse is not.
        files.delete(file_key).await?;
        db.delete_id_document(order).await?;
    }
    Ok(RetentionReport {
        identity_documents: expired.len(),
        messages: db.delete_old_messages(Millis(now.0 - message_retention_ms())).await?,
        fraud_attempts: db.forget_attempts(Millis(now.0 - FRAUD_ATTEMPT_RETENTION_MS)).await?,
        sessions: db.delete_ended_sessions(Millis(now.0 - SPENT_RETENTION_MS)).await?,
        sign_in_links: db.delete_spent_links(Millis(now.0 - SPENT_RETENTION_MS)).await?,
        payment_tokens: db.forget_payment_tokens(Millis(now.0 - payment_token_retention_ms())).await?,
        idempotency_keys: db.forget_idempotency_keys(Millis(now.0 - idempotency_retention_ms())).await?,
        finished_jobs: db.forget_finished_jobs(Millis(now.0 - FINISHED_JOB_RETENTION_MS)).await?,
        unused_spare_keys: sweep_spare_keys(db, keys, now).await?,
        mail_files: match mail {
            Some(outbox) => outbox.sweep_mail_folder(now).await?,
            None => 0,
        },
        // Cancelling needs the gateway: CheckoutService::run_retention does it.
        expired_holds: 0,
        expired_transfers: 0,
        checkout_drafts: db.delete_expired_drafts(now).await?,
    })
}

/// Settles the spare customer keys whose hand-out window ended more than
/// [`SPARE_GRACE_MS`] ago: a key a customer row names becomes an ordinary
/// key; the rest were never handed out, or handed out to a unit that never
/// committed, so nothing is sealed under them and they are deleted.
/// Returns how many were deleted.
pub async fn sweep_spare_keys(db: &Db, keys: &coffer_store::KeyStore, now: Millis) -> Result<u64, AppError> {
    const BATCH: i64 = 500;
    let before = Millis(now.0 - SPARE_GRACE_MS);
    let mut deleted = 0;
    loop {
        let expired = keys.expired_spare_keys(before, BATCH).await?;
        let used: std::collections::HashSet<String> = db.data_keys_in_use(&expired).await?.into_iter().collect();
        let count = expired.len();
        let (used, unused): (Vec<String>, Vec<String>) = expired.into_iter().partition(|id| used.contains(id));
        deleted += keys.settle_spare_keys(used, unused).await?;
        if (count as i64) < BATCH {
            return Ok(deleted);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_come_from_the_inventory() {
        assert_eq!(message_retention_ms(), 90 * DAY_MS);
        assert_eq!(id_document_retention_ms(), 30 * DAY_MS);
        assert_eq!(idempotency_retention_ms(), DAY_MS);
        assert_eq!(payment_token_retention_ms(), 540 * DAY_MS);
    }
}
