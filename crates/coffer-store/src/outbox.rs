//! The email outbox. A message is written inside the unit of work of the
//! change it reports, together with its delivery job (kind `email`, see
//! `jobs.rs`): the message holds what it says, sealed, and how its delivery
//! ended; the job holds the lease, the attempts and the backoff. A worker
//! claims due email jobs, delivers their messages outside any transaction,
//! then records each outcome on the job and the message in one unit.

use crate::jobs::{JobClaim, JobOutcome, JobStore, NewJob};
use crate::{Db, StoreError, WriteTx};
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
    /// One attached file: its name (no personal data) and its sealed bytes.
    pub attachment: Option<(String, Sealed)>,
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
    pub attachment: Option<(String, Sealed)>,
    pub attempts: i64,
}

pub trait OutboxWriter {
    fn enqueue_email(&mut self, email: &NewEmail) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl OutboxWriter for WriteTx {
    async fn enqueue_email(&mut self, e: &NewEmail) -> Result<(), StoreError> {
        let mut statements = crate::batch::Statements::default();
        for (sql, values) in enqueue_statements(e) {
            statements.push(sql, values);
        }
        statements.execute(self).await
    }
}

/// The job kind of email delivery.
pub const EMAIL_JOB: &str = "email";

/// The statements that enqueue a message: the message and its delivery job
/// (the job's id is the message's).
pub(crate) fn enqueue_statements(e: &NewEmail) -> [(&'static str, Vec<crate::batch::Val>); 2] {
    use crate::batch::Val;
    let message = (
        "INSERT INTO outbox_emails (id, kind, data_key_id, one_off_key, recipient, subject, body, status, created_at, \
         attachment_name, attachment) VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8, $9, $10)",
        vec![
            Val::Text(e.id.clone()),
            Val::Text(e.kind.clone()),
            Val::Text(e.data_key_id.to_string()),
            Val::Int(i64::from(e.one_off_key)),
            Val::Bytes(e.recipient.as_bytes().to_vec()),
            Val::Bytes(e.subject.as_bytes().to_vec()),
            Val::Bytes(e.body.as_bytes().to_vec()),
            Val::Int(e.at.0),
            Val::OptText(e.attachment.as_ref().map(|(name, _)| name.clone())),
            Val::OptBytes(e.attachment.as_ref().map(|(_, file)| file.as_bytes().to_vec())),
        ],
    );
    let payload = serde_json::json!({ "message": e.id }).to_string();
    let job = crate::jobs::enqueue_statement(&NewJob { id: e.id.clone(), kind: EMAIL_JOB, payload, at: e.at });
    [message, job]
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
    /// Not tried (the claim's time ran out, the server is stopping): due
    /// again at once, the attempt not counted.
    Untried,
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

/// A message update that changes the message only while the claim ($1 its
/// job's id, $2 the attempt) still holds its job. On PostgreSQL the joined
/// statement reads the job as it was when the statement began (a `FOR
/// UPDATE` here would skip the row the job's own update changes in the same
/// statement); a claim another worker commits in between, which needs this
/// worker's lease to have run out, can leave the message recorded and its
/// job not, and the message is sent again.
macro_rules! message_update {
    ($set:literal) => {
        concat!(
            "UPDATE outbox_emails SET ",
            $set,
            " WHERE id = $1 AND EXISTS (SELECT 1 FROM jobs WHERE jobs.id = $1 AND jobs.attempts = $2 \
             AND jobs.status = 'pending')"
        )
    };
}

/// A claimed message from its row.
fn claimed_email(row: &sqlx::any::AnyRow, attempts: i64) -> Result<ClaimedEmail, StoreError> {
    let key: String = row.try_get("data_key_id")?;
    Ok(ClaimedEmail {
        id: row.try_get("id")?,
        kind: row.try_get("kind")?,
        data_key_id: DataKeyId::parse(&key).map_err(StoreError::corrupt)?,
        one_off_key: row.try_get::<i64, _>("one_off_key")? == 1,
        recipient: sealed(row, "recipient")?,
        subject: sealed(row, "subject")?,
        body: sealed(row, "body")?,
        attachment: match (row.try_get::<Option<String>, _>("attachment_name")?, sealed(row, "attachment")?) {
            (Some(name), Some(file)) => Some((name, file)),
            _ => None,
        },
        attempts,
    })
}

impl ClaimedEmail {
    /// The claim of this message's delivery job.
    pub fn claim(&self) -> JobClaim {
        JobClaim { id: self.id.clone(), attempts: self.attempts }
    }
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

    /// Claims up to `limit` due messages for `lease_ms` (their email jobs)
    /// and reads them in one query. A job whose message is gone (deleted
    /// with its retention) or cannot be read is marked failed on its own;
    /// the others claimed with it go on.
    pub async fn claim_emails(&self, now: Millis, lease_ms: i64, limit: i64) -> Result<Vec<ClaimedEmail>, StoreError> {
        let mut jobs = self.claim_jobs(EMAIL_JOB, now, lease_ms, limit).await?;
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        // Oldest first (ids are time-ordered), so one recipient's messages
        // go in the order they were written.
        jobs.sort_by(|a, b| a.id.cmp(&b.id));
        let mut unreadable = Vec::new();
        let mut wanted = Vec::with_capacity(jobs.len());
        for job in &jobs {
            match serde_json::from_str::<serde_json::Value>(&job.payload)
                .ok()
                .and_then(|p| p["message"].as_str().map(str::to_owned))
            {
                Some(message) => wanted.push((message, job.claim())),
                None => unreadable.push((job.claim(), JobOutcome::Failed { error: "bad_payload".into() })),
            }
        }
        let rows = self.messages_by_id(wanted.iter().map(|(message, _)| message)).await?;
        let mut found: std::collections::HashMap<String, &sqlx::any::AnyRow> = std::collections::HashMap::new();
        for row in &rows {
            found.insert(row.try_get("id")?, row);
        }
        let mut claimed = Vec::with_capacity(wanted.len());
        for (message, claim) in wanted {
            let read = found.get(&message).map(|row| claimed_email(row, claim.attempts));
            match read {
                Some(Ok(email)) => claimed.push(email),
                Some(Err(_)) => unreadable.push((claim, JobOutcome::Failed { error: "bad_message_row".into() })),
                // A message gone with its retention leaves nothing to send.
                None => unreadable.push((claim, JobOutcome::Failed { error: "message_gone".into() })),
            }
        }
        if !unreadable.is_empty() {
            self.finish_jobs(unreadable, now).await?;
        }
        Ok(claimed)
    }

    /// The rows of these messages, in one query (none for no ids).
    async fn messages_by_id(
        &self,
        ids: impl ExactSizeIterator<Item = &String>,
    ) -> Result<Vec<sqlx::any::AnyRow>, StoreError> {
        if ids.len() == 0 {
            return Ok(Vec::new());
        }
        // Placeholders only: the ids are bound, never written into the SQL.
        let placeholders: Vec<String> = (1..=ids.len()).map(|n| format!("${n}")).collect();
        let sql = format!(
            "SELECT id, kind, data_key_id, one_off_key, recipient, subject, body, attachment_name, attachment \
             FROM outbox_emails WHERE id IN ({})",
            placeholders.join(", ")
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for id in ids {
            query = query.bind(id.clone());
        }
        Ok(query.fetch_all(self.readers()).await?)
    }

    /// Records how the deliveries of claimed messages ended, on their jobs
    /// and the messages, in one unit. A message whose claim no longer holds
    /// its job (another worker took it over) is left as it is.
    pub async fn record_deliveries(&self, outcomes: Vec<(JobClaim, Delivery)>, now: Millis) -> Result<(), StoreError> {
        use crate::batch::Val;
        let mut commands = crate::WriteCommands::default();
        for (claim, outcome) in outcomes {
            let (id, attempts) = (claim.id.clone(), claim.attempts);
            // $1 the message (its job's id), $2 the claim's attempt.
            let message: Option<(&'static str, Vec<Val>)> = match &outcome {
                Delivery::Sent => Some((
                    message_update!("status = 'sent', sent_at = $3, last_error = NULL"),
                    vec![Val::Text(id), Val::Int(attempts), Val::Int(now.0)],
                )),
                Delivery::Retry { .. } | Delivery::Untried => None,
                Delivery::Failed { error } => Some((
                    message_update!("status = 'failed', last_error = $3"),
                    vec![Val::Text(id), Val::Int(attempts), Val::Text(error.clone())],
                )),
                // Nothing left worth keeping: the ciphertext cannot open.
                Delivery::Shredded => Some((
                    message_update!(
                        "status = 'shredded', recipient = NULL, subject = NULL, body = NULL, attachment = NULL"
                    ),
                    vec![Val::Text(id), Val::Int(attempts)],
                )),
            };
            // The message first: the job's statement ends the claim it checks.
            if let Some((sql, values)) = message {
                commands.statements.push(sql, values);
            }
            let job = match outcome {
                Delivery::Sent | Delivery::Shredded => JobOutcome::Done,
                Delivery::Retry { at, error } => JobOutcome::Retry { at, error },
                Delivery::Failed { error } => JobOutcome::Failed { error },
                Delivery::Untried => JobOutcome::Untried,
            };
            let (sql, values) = crate::jobs::outcome_statement(claim, job, now);
            commands.statements.push(sql, values);
        }
        self.write_commands(commands).await
    }

    /// (status, attempts, last_error) of a message: its own status, its
    /// job's attempts and last error. For tests and the console.
    pub async fn email_status(&self, id: &str) -> Result<Option<(String, i64, Option<String>)>, StoreError> {
        let row = sqlx::query(
            "SELECT m.status, COALESCE(j.attempts, 0) AS attempts, COALESCE(j.last_error, m.last_error) AS last_error \
             FROM outbox_emails m LEFT JOIN jobs j ON j.id = m.id WHERE m.id = $1",
        )
        .bind(id.to_owned())
        .fetch_optional(self.readers())
        .await?;
        row.map(|r| Ok((r.try_get("status")?, r.try_get("attempts")?, r.try_get("last_error")?))).transpose()
    }
}
