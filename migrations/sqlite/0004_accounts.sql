-- Accounts: sign-in for customers (staff and vendor users join later).

-- The password hash (a PHC string) and the TOTP secret are sealed with the
-- customer's data key, so erasure shreds them with everything else.
-- totp_last_step: the last accepted TOTP step, so no code is accepted twice.
CREATE TABLE accounts (
    customer_id    TEXT PRIMARY KEY NOT NULL REFERENCES customers (id),
    password_hash  BLOB,
    totp_secret    BLOB,
    totp_last_step INTEGER,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
);

-- One-time links sent by email. Only a SHA-256 of the token is stored; the
-- token itself exists only in the message.
CREATE TABLE sign_in_links (
    token_hash  BLOB PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    purpose     TEXT NOT NULL CHECK (purpose IN ('sign_in', 'invitation', 'reset', 'second_factor')),
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    used_at     INTEGER
);
CREATE INDEX sign_in_links_by_customer ON sign_in_links (customer_id);

-- Server-side sessions, found by a SHA-256 of the 256-bit id in the cookie.
CREATE TABLE sessions (
    id_hash      BLOB PRIMARY KEY NOT NULL,
    subject_kind TEXT NOT NULL CHECK (subject_kind IN ('customer', 'staff', 'vendor_user')),
    subject_id   TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    last_seen_at INTEGER NOT NULL,
    revoked_at   INTEGER
);
CREATE INDEX sessions_by_subject ON sessions (subject_kind, subject_id);

-- Failed sign-ins per address tried, known or not, keyed by the address's
-- blind index: the lock-out holds across servers and reveals nothing.
CREATE TABLE sign_in_throttle (
    account_key  BLOB PRIMARY KEY NOT NULL,
    failures     INTEGER NOT NULL,
    locked_until INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- Recovery codes for the second factor: only their SHA-256, each usable once.
CREATE TABLE recovery_codes (
    code_hash   BLOB PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    used_at     INTEGER
);
CREATE INDEX recovery_codes_by_customer ON recovery_codes (customer_id);
