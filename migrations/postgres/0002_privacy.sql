-- Privacy core: customers (every personal field sealed), the data side of
-- the erasure ledger, and the audit log with its hash-chain head.

-- Personal fields are AES-256-GCM ciphertext under the customer's data key,
-- which lives only in the key store. email_index is the keyed blind index
-- (HMAC-SHA256 of the normalised address) used for lookups and uniqueness.
-- An erased customer keeps only id and dates: fields and index are NULL and
-- the data key is destroyed, so copies in old backups no longer open.
CREATE TABLE customers (
    id                  TEXT PRIMARY KEY NOT NULL,
    data_key_id         TEXT NOT NULL UNIQUE,
    email_index         BYTEA UNIQUE,
    email_index_version BIGINT,
    name                BYTEA,
    email               BYTEA,
    phone               BYTEA,
    address             BYTEA,
    created_at          BIGINT NOT NULL,
    updated_at          BIGINT NOT NULL,
    erased_at           BIGINT
);

-- Written with every erasure here and in the key store, so restoring
-- either side can replay the other's.
CREATE TABLE erasure_ledger (
    customer_id TEXT PRIMARY KEY NOT NULL,
    data_key_id TEXT NOT NULL,
    erased_at   BIGINT NOT NULL
);

-- Entries are written unsealed (seq NULL) inside the unit of work they
-- record; the sealer numbers them and links them into the chain.
CREATE TABLE audit_log (
    id         TEXT PRIMARY KEY NOT NULL,
    at         BIGINT NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    subject    TEXT,
    request_id TEXT,
    seq        BIGINT UNIQUE,
    link_hash  BYTEA
);
CREATE INDEX audit_log_unsealed ON audit_log (id) WHERE seq IS NULL;

-- The last sealed link; one row.
CREATE TABLE audit_chain_head (
    id   INTEGER PRIMARY KEY NOT NULL CHECK (id = 1),
    seq  BIGINT NOT NULL,
    hash BYTEA NOT NULL
);
INSERT INTO audit_chain_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));
