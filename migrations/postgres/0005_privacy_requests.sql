-- Written data-subject requests made without signing in. Nothing is
-- released or erased until the person answers the challenge sent to the
-- address on file; the legal deadline runs from that confirmation.
-- Requests for addresses that have no customer are not recorded at all
-- (the answer on the page is the same).
CREATE TABLE privacy_requests (
    id             TEXT PRIMARY KEY NOT NULL,
    customer_id    TEXT NOT NULL REFERENCES customers (id),
    kind           TEXT NOT NULL CHECK (kind IN ('access', 'rectification', 'erasure')),
    jurisdiction   TEXT NOT NULL CHECK (jurisdiction IN ('eu', 'br', 'other')),
    status         TEXT NOT NULL CHECK (status IN ('awaiting_confirmation', 'confirmed', 'closed')),
    challenge_hash BYTEA NOT NULL UNIQUE,
    challenge_expires_at BIGINT NOT NULL,
    received_at    BIGINT NOT NULL,
    confirmed_at   BIGINT,
    deadline_at    BIGINT
);
CREATE INDEX privacy_requests_open ON privacy_requests (status, deadline_at);
