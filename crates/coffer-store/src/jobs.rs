//! The job queue (migration 0016): work that must follow a committed change
//! and may need retries. A job is enqueued inside the unit of work of the
//! change it follows; workers claim due jobs of one kind for a lease, run
//! them outside any transaction, then record the outcome. A worker that
//! dies leaves its claim to end with the lease; PostgreSQL's row locks
//! (`SKIP LOCKED`) keep two servers from claiming one job, and SQLite's
//! single writer serialises claims.
//!
//! Each claim counts an attempt, so `(id, attempts)` names one claim: an
//! outcome is recorded only while the job is still pending under that
//! claim. A worker whose lease ran out (and whose job another worker took
//! over) records nothing, and a late `Failed` never overwrites a `Done`.

use crate::batch::{Statements, Val};
use crate::{Backend, Db, StoreError, WriteTx, unit};
use coffer_domain::Millis;
use sqlx::Row;

/// A job to enqueue. The payload is JSON of ids and amounts only; personal
/// data a job needs stays sealed in its own table.
#[derive(Clone, Debug)]
pub struct NewJob {
    pub id: String,
    pub kind: &'static str,
    pub payload: String,
    /// Due from this time on (usually now).
    pub at: Millis,
}

/// A job claimed by this worker until its lease ends.
#[derive(Clone, Debug)]
pub struct ClaimedJob {
    pub id: String,
    pub kind: String,
    pub payload: String,
    /// Attempts so far, this one included.
    pub attempts: i64,
}

impl ClaimedJob {
    /// The claim, to record the outcome under.
    pub fn claim(&self) -> JobClaim {
        JobClaim { id: self.id.clone(), attempts: self.attempts }
    }
}

/// One claim of a job: its id and the attempt the claim counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobClaim {
    pub id: String,
    pub attempts: i64,
}

/// A job a person has to look at: given up after its attempts, or refused.
#[derive(Clone, Debug)]
pub struct FailedJob {
    pub id: String,
    pub kind: String,
    pub payload: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub finished_at: Option<Millis>,
}

/// How a run of a job ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum JobOutcome {
    Done,
    /// Run again at this time; the error names no personal data.
    Retry {
        at: Millis,
        error: String,
    },
    /// Given up; a person has to look at it.
    Failed {
        error: String,
    },
    /// Not run after all (the claim's time ran out, the server is
    /// stopping): due again at once, and the claim's attempt not counted.
    Untried,
}

pub trait JobWriter {
    fn enqueue_job(&mut self, job: &NewJob) -> impl Future<Output = Result<(), StoreError>> + Send;
}

impl JobWriter for WriteTx {
    async fn enqueue_job(&mut self, job: &NewJob) -> Result<(), StoreError> {
        let mut statements = Statements::default();
        let (sql, values) = enqueue_statement(job);
        statements.push(sql, values);
        statements.execute(self).await
    }
}

/// The statement that enqueues a job (also batched with other writes).
pub(crate) fn enqueue_statement(job: &NewJob) -> (&'static str, Vec<Val>) {
    (
        "INSERT INTO jobs (id, kind, payload, status, attempts, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, 'pending', 0, $4, $4)",
        vec![
            Val::Text(job.id.clone()),
            Val::Text(job.kind.to_owned()),
            Val::Text(job.payload.clone()),
            Val::Int(job.at.0),
        ],
    )
}

/// The condition that a claim still holds its job ($1 the id, $2 the attempt).
macro_rules! claim_holds {
    () => {
        " WHERE id = $1 AND attempts = $2 AND status = 'pending'"
    };
}

/// The statement that records how a claimed job's run ended; it changes
/// nothing when the claim no longer holds the job.
pub(crate) fn outcome_statement(claim: JobClaim, outcome: JobOutcome, now: Millis) -> (&'static str, Vec<Val>) {
    let JobClaim { id, attempts } = claim;
    match outcome {
        JobOutcome::Done => (
            concat!(
                "UPDATE jobs SET status = 'done', finished_at = $3, claimed_until = NULL, last_error = NULL",
                claim_holds!()
            ),
            vec![Val::Text(id), Val::Int(attempts), Val::Int(now.0)],
        ),
        JobOutcome::Retry { at, error } => (
            concat!("UPDATE jobs SET next_attempt_at = $3, claimed_until = NULL, last_error = $4", claim_holds!()),
            vec![Val::Text(id), Val::Int(attempts), Val::Int(at.0), Val::Text(error)],
        ),
        JobOutcome::Failed { error } => (
            concat!(
                "UPDATE jobs SET status = 'failed', finished_at = $3, claimed_until = NULL, last_error = $4",
                claim_holds!()
            ),
            vec![Val::Text(id), Val::Int(attempts), Val::Int(now.0), Val::Text(error)],
        ),
        JobOutcome::Untried => (
            concat!("UPDATE jobs SET attempts = attempts - 1, claimed_until = NULL", claim_holds!()),
            vec![Val::Text(id), Val::Int(attempts)],
        ),
    }
}

/// One claim statement for both dialects; only PostgreSQL takes row locks.
/// A job of kind $1 that is due at $2 and not held by a live claim.
macro_rules! due_job {
    () => {
        "status = 'pending' AND kind = $1 AND next_attempt_at <= $2 AND (claimed_until IS NULL OR claimed_until < $2)"
    };
}

macro_rules! claim_sql {
    ($lock:literal) => {
        concat!(
            "UPDATE jobs SET claimed_until = $3, attempts = attempts + 1 WHERE id IN (SELECT id FROM jobs WHERE ",
            due_job!(),
            " ORDER BY next_attempt_at LIMIT $4",
            $lock,
            ") RETURNING id, kind, payload, attempts"
        )
    };
}

/// The queue's side that runs as units of its own: claims, outcomes, reads.
pub trait JobStore: Send + Sync {
    /// Claims up to `limit` due jobs of `kind` until `now + lease_ms`.
    fn claim_jobs(
        &self,
        kind: &'static str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> impl Future<Output = Result<Vec<ClaimedJob>, StoreError>> + Send;

    /// Records how claimed jobs ended, in one unit; an outcome whose claim
    /// no longer holds its job (the lease ran out and another worker took
    /// it) changes nothing.
    fn finish_jobs(
        &self,
        outcomes: Vec<(JobClaim, JobOutcome)>,
        now: Millis,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// (status, attempts, last_error) of a job, for tests and the console.
    fn job_status(
        &self,
        id: &str,
    ) -> impl Future<Output = Result<Option<(String, i64, Option<String>)>, StoreError>> + Send;

    /// How many jobs of `kind` are still to run (pending, claimed or not).
    fn pending_jobs(&self, kind: &str) -> impl Future<Output = Result<i64, StoreError>> + Send;

    /// Deletes done jobs created before `before`. Failed jobs stay until a
    /// person has looked at them (see [`JobStore::failed_jobs`]).
    fn forget_finished_jobs(&self, before: Millis) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// The jobs given up, newest first (at most `limit`).
    fn failed_jobs(&self, limit: i64) -> impl Future<Output = Result<Vec<FailedJob>, StoreError>> + Send;
}

impl JobStore for Db {
    async fn claim_jobs(
        &self,
        kind: &'static str,
        now: Millis,
        lease_ms: i64,
        limit: i64,
    ) -> Result<Vec<ClaimedJob>, StoreError> {
        // A read first: an idle queue then costs no write unit (each is a
        // commit beside the checkouts', and workers look several times a
        // second).
        let due = sqlx::query(concat!("SELECT id FROM jobs WHERE ", due_job!(), " LIMIT 1"))
            .bind(kind)
            .bind(now.0)
            .fetch_optional(self.readers())
            .await?;
        if due.is_none() {
            return Ok(Vec::new());
        }
        let sql = match self.backend() {
            Backend::Postgres => claim_sql!(" FOR UPDATE SKIP LOCKED"),
            Backend::Sqlite => claim_sql!(""),
        };
        self.write(unit!(|tx| {
            let rows = sqlx::query(sql)
                .bind(kind)
                .bind(now.0)
                .bind(now.0.saturating_add(lease_ms))
                .bind(limit)
                .fetch_all(tx.conn())
                .await?;
            rows.iter()
                .map(|row| {
                    Ok(ClaimedJob {
                        id: row.try_get("id")?,
                        kind: row.try_get("kind")?,
                        payload: row.try_get("payload")?,
                        attempts: row.try_get("attempts")?,
                    })
                })
                .collect::<Result<Vec<_>, StoreError>>()
        }))
        .await
    }

    async fn finish_jobs(&self, outcomes: Vec<(JobClaim, JobOutcome)>, now: Millis) -> Result<(), StoreError> {
        let mut commands = crate::WriteCommands::default();
        for (claim, outcome) in outcomes {
            let (sql, values) = outcome_statement(claim, outcome, now);
            commands.statements.push(sql, values);
        }
        self.write_commands(commands).await
    }

    async fn job_status(&self, id: &str) -> Result<Option<(String, i64, Option<String>)>, StoreError> {
        let row = sqlx::query("SELECT status, attempts, last_error FROM jobs WHERE id = $1")
            .bind(id.to_owned())
            .fetch_optional(self.readers())
            .await?;
        row.map(|r| Ok((r.try_get("status")?, r.try_get("attempts")?, r.try_get("last_error")?))).transpose()
    }

    async fn pending_jobs(&self, kind: &str) -> Result<i64, StoreError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE status = 'pending' AND kind = $1")
            .bind(kind.to_owned())
            .fetch_one(self.readers())
            .await?;
        Ok(row.try_get("n")?)
    }

    async fn forget_finished_jobs(&self, before: Millis) -> Result<u64, StoreError> {
        self.write(unit!(|tx| {
            let done = sqlx::query("DELETE FROM jobs WHERE status = 'done' AND created_at < $1")
                .bind(before.0)
                .execute(tx.conn())
                .await?;
            Ok::<_, StoreError>(done.rows_affected())
        }))
        .await
    }

    async fn failed_jobs(&self, limit: i64) -> Result<Vec<FailedJob>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, kind, payload, attempts, last_error, finished_at FROM jobs WHERE status = 'failed' \
             ORDER BY finished_at DESC, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.readers())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(FailedJob {
                    id: row.try_get("id")?,
                    kind: row.try_get("kind")?,
                    payload: row.try_get("payload")?,
                    attempts: row.try_get("attempts")?,
                    last_error: row.try_get("last_error")?,
                    finished_at: row.try_get::<Option<i64>, _>("finished_at")?.map(Millis),
                })
            })
            .collect()
    }
}
