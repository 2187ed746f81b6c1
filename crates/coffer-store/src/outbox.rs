//! The email outbox. Messages are enqueued inside the unit of work of the
//! change they report; a worker claims due ones for a lease (so a process
//! that dies mid-delivery leaves them to be claimed again), delivers them
//! outside any transaction, then records the outcome.

use crate::{Backend, Db, StoreError, WriteTx};
use coffer_crypto::Sealed;
use coffer_domain::{DataKeyId, Millis};
use sqlx::Row;

/// A sealed message ready to be enqueued.
#[derive(Clone, Debug)]
pub struct NewEmail {
    pub id: String,
    /// What the message is about, e.g. `sign_in_link` (no personal data).
    pub kind: String,
    /// The key that seals recipient, subject and body.
    pub data_key_id: DataKeyId,
    /// The key was made for this message alone and is destroyed once sent.
    pub one_off_key: bool,
    pub recipient: Sealed,
    pub subject: Sealed,
    pub body: Sealed,
    pub at: Millis,
}

/// A message claimed for delivery.
#[derive(Clone, Debug)]
pub struct ClaimedEmail {
    pub id: String,
    pub kind: String,
    pub data_key_id: DataKeyId,
    pub one_off_key: bool,
    pub recipient: Option<Sealed>,
    pub subject: Option<Sealed>,
    pub body: Option<Sealed>,
    pub attempts: i64,
}

pub trait OutboxWriter {
    fn enqueue_email(&mut self, email: &NewEmail) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl OutboxWriter for WriteTx {
    async fn enqueue_email(&mut self, e: &NewEmail) -> Result<(), StoreError> {
        let mut statements = crate::batch::Statements::default();
        let (sql, values) = enqueue_statement(e);
        statements.push(sql, values);
        statements.execute(self).await
    }
}

/// The statement that enqueues a message.
pub(crate) fn enqueue_statement(e: &NewEmail) -> (&'static str, Vec<crate::batch::Val>) {
    use crate::batch::Val;
    (
        "INSERT INTO outbox_emails (id, kind, data_key_id, one_off_key, recipient, subject, body, status, \
         attempts, next_attempt_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', 0, $8, $8)",
        vec![
            Val::Text(e.id.clone()),
            Val::Text(e.kind.clone()),
            Val::Text(e.data_key_id.to_string()),
            Val::Int(i64::from(e.one_off_key)),
            Val::Bytes(e.recipient.as_bytes().to_vec()),
            Val::Bytes(e.subject.as_bytes().to_vec()),
            Val::Bytes(e.body.as_bytes().to_vec()),
            Val::Int(e.at.0),
        ],
    )
}

/// How a delivery attempt ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// Try again at this time; the error names no personal data.
    Retry {
        at: Millis,
        error: String,
    },
    /// Given up after too many attempts.
    Failed {
        error: String,
    },
    /// The key is gone (erasure): the message can never be read or sent.
    Shredded,
}

fn sealed(row: &sqlx::any::AnyRow, column: &str) -> Result<Option<Sealed>, StoreError> {
    Ok(row.try_get::<Option<Vec<u8>>, _>(column)?.map(Sealed::from_stored))
}

/// A message as kept, for the customer's own export.
#[derive(Clone, Debug)]
pub struct StoredEmail {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub created_at: Millis,
    pub recipient: Option<Sealed>,
    pub subject: Option<Sealed>,
    pub body: Option<Sealed>,
}

impl Db {
    /// The messages sealed under one data key (a customer's), oldest first.
    pub async fn emails_sealed_with(&self, key: &DataKeyId) -> Result<Vec<StoredEmail>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, status, created_at, recipient, subject, body FROM outbox_emails \
             WHERE data_key_id = $1 AND one_off_key = 0 ORDER BY created_at, id",
        )
        .bind(key.as_str())
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|r| {
                let sealed = |c: &str| -> Result<Option<Sealed>, StoreError> {
                    Ok(r.try_get::<Option<Vec<u8>>, _>(c)?.map(Sealed::from_stored))
                };
                Ok(StoredEmail {
                    id: r.try_get("id")?,
                    kind: r.try_get("kind")?,
                    status: r.try_get("status")?,
                    created_at: Millis(r.try_get("created_at")?),
                    recipient: sealed("recipient")?,
                    subject: sealed("subject")?,
                    body: sealed("body")?,
                })
            })
            .collect()
    }

    /// Claims up to `limit` due messages until `now + lease_ms`. On
    /// PostgreSQL rows locked by another worker are skipped; on SQLite the
    /// single writer serialises claims.
    pub async fn claim_emails(&self, now: Millis, lease_ms: i64, limit: i64) -> Result<Vec<ClaimedEmail>, StoreError> {
        let backend = self.backend();
        self.write(move |tx| {
            Box::pin(async move {
                let sql = match backend {
                    Backend::Postgres => {
                        "UPDATE outbox_emails SET claimed_until = $2, attempts = attempts + 1 WHERE id IN \
                         (SELECT id FROM outbox_emails WHERE status = 'pending' AND next_attempt_at <= $1 \
                          AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY next_attempt_at LIMIT $3 \
                          FOR UPDATE SKIP LOCKED) \
                         RETURNING id, kind, data_key_id, one_off_key, recipient, subject, body, attempts"
                    }
                    Backend::Sqlite => {
                        "UPDATE outbox_emails SET claimed_until = $2, attempts = attempts + 1 WHERE id IN \
                         (SELECT id FROM outbox_emails WHERE status = 'pending' AND next_attempt_at <= $1 \
                          AND (claimed_until IS NULL OR claimed_until < $1) ORDER BY next_attempt_at LIMIT $3) \
                         RETURNING id, kind, data_key_id, one_off_key, recipient, subject, body, attempts"
                    }
                };
                let rows = sqlx::query(sql)
                    .bind(now.0)
                    .bind(now.0.saturating_add(lease_ms))
                    .bind(limit)
                    .fetch_all(tx.conn())
                    .await?;
                rows.iter()
                    .map(|row| {
                        let key: String = row.try_get("data_key_id")?;
                        Ok(ClaimedEmail {
                            id: row.try_get("id")?,
                            kind: row.try_get("kind")?,
                            data_key_id: DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
                            one_off_key: row.try_get::<i64, _>("one_off_key")? == 1,
                            recipient: sealed(row, "recipient")?,
                            subject: sealed(row, "subject")?,
                            body: sealed(row, "body")?,
                            attempts: row.try_get("attempts")?,
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()
            })
        })
        .await
    }

    /// Records how the deliveries of claimed messages ended, in one unit.
    pub async fn record_deliveries(&self, outcomes: Vec<(String, Delivery)>, now: Millis) -> Result<(), StoreError> {
        use crate::batch::Val;
        let mut commands = crate::WriteCommands::default();
        for (id, outcome) in outcomes {
            let (sql, values) = match outcome {
                Delivery::Sent => (
                    "UPDATE outbox_emails SET status = 'sent', sent_at = $2, claimed_until = NULL, last_error = NULL \
                     WHERE id = $1",
                    vec![Val::Text(id), Val::Int(now.0)],
                ),
                Delivery::Retry { at, error } => (
                    "UPDATE outbox_emails SET next_attempt_at = $2, claimed_until = NULL, last_error = $3 WHERE id = $1",
                    vec![Val::Text(id), Val::Int(at.0), Val::Text(error)],
                ),
                Delivery::Failed { error } => (
                    "UPDATE outbox_emails SET status = 'failed', claimed_until = NULL, last_error = $2 WHERE id = $1",
                    vec![Val::Text(id), Val::Text(error)],
                ),
                // Nothing left worth keeping: the ciphertext cannot open.
                Delivery::Shredded => (
                    "UPDATE outbox_emails SET status = 'shredded', claimed_until = NULL, recipient = NULL, \
                     subject = NULL, body = NULL WHERE id = $1",
                    vec![Val::Text(id)],
                ),
            };
            commands.statements.push(sql, values);
        }
        self.write_commands(commands).await
    }

    /// (status, attempts, last_error) of a message, for tests and the console.
    pub async fn email_status(&self, id: &str) -> Result<Option<(String, i64, Option<String>)>, StoreError> {
        let row = sqlx::query("SELECT status, attempts, last_error FROM outbox_emails WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| Ok((r.try_get("status")?, r.try_get("attempts")?, r.try_get("last_error")?))).transpose()
    }
}
