-- Operator staff (support, reviewer, dpo, admin). Each staff member has a
-- data key of their own in the key store: the email address, password hash
-- and TOTP secret are sealed under it; the address is found by its blind
-- index. TOTP is mandatory: enrolment sets the password and the second
-- factor together, and enrolled_at marks an account that can sign in.
CREATE TABLE staff_members (
    id             TEXT PRIMARY KEY NOT NULL,
    role           TEXT NOT NULL CHECK (role IN ('support', 'reviewer', 'dpo', 'admin')),
    email_index    BYTEA NOT NULL UNIQUE,
    email          BYTEA NOT NULL,
    data_key_id    TEXT NOT NULL,
    password_hash  BYTEA,
    totp_secret    BYTEA,
    totp_last_step BIGINT,
    enrolled_at    BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL
);

-- Enrolment links (printed by `coffer staff add`) and the ticket between
-- password and TOTP code. Only a SHA-256 of the token is stored.
CREATE TABLE staff_links (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    staff_id   TEXT NOT NULL REFERENCES staff_members (id),
    purpose    TEXT NOT NULL CHECK (purpose IN ('enrolment', 'second_factor')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
CREATE INDEX staff_links_by_staff ON staff_links (staff_id);

CREATE TABLE staff_recovery_codes (
    code_hash BYTEA PRIMARY KEY NOT NULL,
    staff_id  TEXT NOT NULL REFERENCES staff_members (id),
    used_at   BIGINT
);
CREATE INDEX staff_recovery_codes_by_staff ON staff_recovery_codes (staff_id);

-- Disclosure records: which recipient (a vendor, the payment gateway, an
-- authority) received which fields of which customer, when, why and on what
-- legal basis. Shown to the customer in "download my data". Filled as the
-- features that disclose arrive (checkout, vendors, authority releases).
-- fields: inventory names separated by commas, e.g. "customers.name,customers.email".
-- The record holds no personal data itself and outlives erasure, as the
-- accountability record of what was disclosed.
CREATE TABLE disclosures (
    id             TEXT PRIMARY KEY NOT NULL,
    customer_id    TEXT NOT NULL,
    recipient_kind TEXT NOT NULL CHECK (recipient_kind IN ('vendor', 'payment_gateway', 'authority')),
    recipient      TEXT NOT NULL,
    fields         TEXT NOT NULL,
    purpose        TEXT NOT NULL,
    legal_basis    TEXT NOT NULL,
    disclosed_at   BIGINT NOT NULL
);
CREATE INDEX disclosures_by_customer ON disclosures (customer_id, disclosed_at);

-- A customer's messages are found by their data key for "download my data".
CREATE INDEX outbox_emails_by_key ON outbox_emails (data_key_id);
