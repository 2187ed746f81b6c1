-- The retention job deletes by age every minute; without these it read
-- every sent message and every fraud-screen attempt ever kept to find the
-- old ones, holding the SQLite writer meanwhile.
CREATE INDEX outbox_emails_by_age ON outbox_emails (created_at);
CREATE INDEX fraud_attempts_by_age ON fraud_attempts (at);
