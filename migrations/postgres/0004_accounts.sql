-- Accounts: sign-in for customers (staff and vendor users join later).

-- The password hash (a PHC string) and the TOTP secret are sealed with the
-- customer's data key, so erasure shreds them with everything else.
-- totp_last_step: the last accepted TOTP step, so no code is accepted twice.
CREATE TABLE accounts (
    customer_id    TEXT PRIMARY KEY NOT NULL REFERENCES customers (id),
    password_hash  BYTEA,
    totp_secret    BYTEA,
    totp_last_step BIGINT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);

-- One-time links sent by email. Only a SHA-256 of the token is stored; the
-- token itself exists only in the message.
CREATE TABLE sign_in_links (
    token_hash  BYTEA PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('sign_in', 'invitation', 'reset', 'second_factor')),
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT
);
CREATE INDEX sign_in_links_by_customer ON sign_in_links (customer_id);

-- Server-side sessions, found by a SHA-256 of the 256-bit id in the cookie.
CREATE TABLE sessions (
    id_hash      BYTEA PRIMARY KEY NOT NULL,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('customer', 'staff', 'vendor_user')),
    subject_id   TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    last_seen_at BIGINT NOT NULL,
    revoked_at   BIGINT
);
CREATE INDEX sessions_by_subject ON sessions (subject_kind, subject_id);

-- Failed sign-ins per address tried, known or not, keyed by the address's
-- blind index: the lock-out holds across servers and reveals nothing.
CREATE TABLE sign_in_throttle (
    account_key  BYTEA PRIMARY KEY NOT NULL,
    failures     BIGINT NOT NULL,
    locked_until BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);

-- Recovery codes for the second factor: only their SHA-256, each usable once.
CREATE TABLE recovery_codes (
    code_hash   BYTEA PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    used_at     BIGINT
);
CREATE INDEX recovery_codes_by_customer ON recovery_codes (customer_id);
