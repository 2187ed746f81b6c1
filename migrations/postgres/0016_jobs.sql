-- The job queue: work that must follow a committed change and may need
-- retries (delivering an email, later webhooks and reminders). A job is
-- enqueued in the unit of work of the change it follows, so it exists
-- exactly when the change does. Workers claim due jobs for a lease (row
-- locks skip jobs another server holds), run them outside any transaction
-- and record the outcome; a worker that dies leaves its jobs to be claimed
-- again when the lease ends.
--
-- The payload is JSON of ids and amounts only: personal data a job needs
-- stays sealed in its own table under the customer's key (an email job names
-- its message in outbox_emails), so erasure shreds it there and the data
-- inventory lists it once.
CREATE TABLE jobs (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'done', 'failed')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    finished_at     BIGINT
);
CREATE INDEX jobs_due ON jobs (status, next_attempt_at);
CREATE INDEX jobs_by_age ON jobs (created_at);

-- Messages not yet delivered become email jobs with their delivery state;
-- the message keeps what it says and how its delivery ended.
INSERT INTO jobs (id, kind, payload, status, attempts, next_attempt_at, claimed_until, last_error, created_at)
SELECT id, 'email', '{"message":"' || id || '"}', 'pending', attempts, next_attempt_at, NULL, last_error, created_at
FROM outbox_emails WHERE status = 'pending';

DROP INDEX outbox_emails_due;
ALTER TABLE outbox_emails DROP COLUMN attempts;
ALTER TABLE outbox_emails DROP COLUMN next_attempt_at;
ALTER TABLE outbox_emails DROP COLUMN claimed_until;
