-- The email outbox: a message is a row written in the same transaction as
-- the change it reports, delivered later by a worker with retries, so no
-- email is lost when a process dies. Recipient, subject and body are sealed
-- with a data key (the customer's, or a one-off key destroyed once the
-- message is sent), so erasure shreds pending mail too.
CREATE TABLE outbox_emails (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL,
    data_key_id     TEXT NOT NULL,
    one_off_key     BIGINT NOT NULL CHECK (one_off_key IN (0, 1)),
    recipient       BYTEA,
    subject         BYTEA,
    body            BYTEA,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'shredded')),
    attempts        BIGINT NOT NULL,
    next_attempt_at BIGINT NOT NULL,
    claimed_until   BIGINT,
    last_error      TEXT,
    created_at      BIGINT NOT NULL,
    sent_at         BIGINT
);
CREATE INDEX outbox_emails_due ON outbox_emails (status, next_attempt_at);
