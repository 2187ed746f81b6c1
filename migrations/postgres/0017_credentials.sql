-- One credentials model for every realm (issue 13, item 3): customers,
-- staff and, later, vendor users sign in through the same tables, keyed by
-- (realm, subject_id). The realm names match sessions.subject_kind.
-- accounts, sign_in_links and recovery_codes keep their names and gain the
-- realm; staff_links, staff_recovery_codes and the secret columns of
-- staff_members move in and go. Sealed values move as they are: each realm
-- opens them with the context they were sealed under.

CREATE TABLE credentials_new (
    realm          TEXT NOT NULL CHECK (realm IN ('customer', 'staff', 'vendor_user')),
    subject_id     TEXT NOT NULL,
    password_hash  BYTEA,
    totp_secret    BYTEA,
    totp_last_step BIGINT,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    PRIMARY KEY (realm, subject_id)
);
INSERT INTO credentials_new (realm, subject_id, password_hash, totp_secret, totp_last_step, created_at, updated_at)
    SELECT 'customer', customer_id, password_hash, totp_secret, totp_last_step, created_at, updated_at FROM accounts;
INSERT INTO credentials_new (realm, subject_id, password_hash, totp_secret, totp_last_step, created_at, updated_at)
    SELECT 'staff', id, password_hash, totp_secret, totp_last_step, created_at, updated_at FROM staff_members
    WHERE password_hash IS NOT NULL OR totp_secret IS NOT NULL;
DROP TABLE accounts;
ALTER TABLE credentials_new RENAME TO accounts;

-- Every one-time link: emailed (sign_in, invitation, reset), printed
-- (enrolment) or the ticket between password and code (second_factor).
-- Where a link is used, the query names the purposes it accepts.
CREATE TABLE links_new (
    token_hash BYTEA PRIMARY KEY NOT NULL,
    realm      TEXT NOT NULL CHECK (realm IN ('customer', 'staff', 'vendor_user')),
    subject_id TEXT NOT NULL,
    purpose    TEXT NOT NULL CHECK (purpose IN ('sign_in', 'invitation', 'reset', 'enrolment', 'second_factor')),
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT
);
INSERT INTO links_new (token_hash, realm, subject_id, purpose, created_at, expires_at, used_at)
    SELECT token_hash, 'customer', customer_id, purpose, created_at, expires_at, used_at FROM sign_in_links;
INSERT INTO links_new (token_hash, realm, subject_id, purpose, created_at, expires_at, used_at)
    SELECT token_hash, 'staff', staff_id, purpose, created_at, expires_at, used_at FROM staff_links;
DROP TABLE sign_in_links;
DROP TABLE staff_links;
ALTER TABLE links_new RENAME TO sign_in_links;
CREATE INDEX sign_in_links_by_subject ON sign_in_links (realm, subject_id);

CREATE TABLE recovery_codes_new (
    code_hash  BYTEA PRIMARY KEY NOT NULL,
    realm      TEXT NOT NULL CHECK (realm IN ('customer', 'staff', 'vendor_user')),
    subject_id TEXT NOT NULL,
    used_at    BIGINT
);
INSERT INTO recovery_codes_new (code_hash, realm, subject_id, used_at)
    SELECT code_hash, 'customer', customer_id, used_at FROM recovery_codes;
INSERT INTO recovery_codes_new (code_hash, realm, subject_id, used_at)
    SELECT code_hash, 'staff', staff_id, used_at FROM staff_recovery_codes;
DROP TABLE recovery_codes;
DROP TABLE staff_recovery_codes;
ALTER TABLE recovery_codes_new RENAME TO recovery_codes;
CREATE INDEX recovery_codes_by_subject ON recovery_codes (realm, subject_id);

ALTER TABLE staff_members DROP COLUMN password_hash;
ALTER TABLE staff_members DROP COLUMN totp_secret;
ALTER TABLE staff_members DROP COLUMN totp_last_step;
