-- The key store: kept apart from the data database and its backups.
-- Every secret here is wrapped (AES-256-GCM) by a master key version whose
-- key lives only in a file of the key directory (or an external KMS).

-- Master key versions and their life: added -> active -> retired -> destroyed.
CREATE TABLE master_keys (
    version       BIGINT PRIMARY KEY NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('added', 'active', 'retired', 'destroyed')),
    added_at      BIGINT NOT NULL,
    activated_at  BIGINT,
    retired_at    BIGINT,
    destroy_after BIGINT
);

-- One data key per customer. Erasure deletes the row: crypto-shredding.
-- Only the primary key is indexed: re-wrapping walks it in order and
-- rewrites rows in place.
CREATE TABLE data_keys (
    id          TEXT PRIMARY KEY NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
) WITH (fillfactor = 90); -- room on each page for in-place (HOT) re-wraps

-- Other secrets sealed under the master key (blind-index key, audit signing key, ...).
CREATE TABLE sealed_secrets (
    name        TEXT PRIMARY KEY NOT NULL,
    kek_version BIGINT NOT NULL,
    wrapped     BYTEA NOT NULL,
    created_at  BIGINT NOT NULL
);

CREATE TABLE erasure_ledger (
    customer_id TEXT PRIMARY KEY NOT NULL,
    data_key_id TEXT NOT NULL,
    erased_at   BIGINT NOT NULL
);

-- Signed points of the audit chain (Ed25519 over seq, link hash and time).
-- The latest by signing time is the one `audit verify` checks; after a
-- restore the chain is re-signed at a lower seq, and older heads stay as
-- evidence of what was there before.
CREATE TABLE audit_heads (
    seq       BIGINT NOT NULL,
    hash      BYTEA NOT NULL,
    signed_at BIGINT NOT NULL,
    signature BYTEA NOT NULL,
    PRIMARY KEY (signed_at, seq)
);
