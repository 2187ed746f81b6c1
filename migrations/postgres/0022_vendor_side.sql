-- The vendor side (issue 16): a vendor's standing and duties, its portal's
-- users, its API keys as things a person manages, and products a vendor
-- publishes itself.

-- Suspension (P7): a suspended vendor's keys, sessions, webhooks and
-- listings stop at once. The data-processing terms the owner accepted
-- (version and time) gate every buyer detail. The privacy contact is what
-- the vendor publishes as its DPO; when empty, the owner is the DPO.
ALTER TABLE vendors ADD COLUMN status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'suspended'));
ALTER TABLE vendors ADD COLUMN suspended_reason TEXT;
ALTER TABLE vendors ADD COLUMN suspended_at BIGINT;
ALTER TABLE vendors ADD COLUMN terms_version TEXT;
ALTER TABLE vendors ADD COLUMN terms_accepted_at BIGINT;
ALTER TABLE vendors ADD COLUMN terms_accepted_by TEXT;
ALTER TABLE vendors ADD COLUMN privacy_contact TEXT;

-- Users of a vendor's portal: the address sealed under a data key of each
-- user's own (like staff), found by its blind index. An address belongs to
-- one live user at a time. Credentials live in accounts (realm vendor_user).
CREATE TABLE vendor_users (
    id          TEXT PRIMARY KEY NOT NULL,
    vendor_id   TEXT NOT NULL REFERENCES vendors (id),
    role        TEXT NOT NULL CHECK (role IN ('owner', 'member')),
    email_index BYTEA NOT NULL,
    email       BYTEA NOT NULL,
    data_key_id TEXT NOT NULL,
    invited_by  TEXT,
    enrolled_at BIGINT,
    removed_at  BIGINT,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE UNIQUE INDEX vendor_users_live_email ON vendor_users (email_index) WHERE removed_at IS NULL;
CREATE INDEX vendor_users_of_vendor ON vendor_users (vendor_id, created_at);

-- API keys gain what a person needs to manage them: an id, the key's
-- visible start, a label, who made it, and when it was last used.
ALTER TABLE vendor_api_keys ADD COLUMN id TEXT;
ALTER TABLE vendor_api_keys ADD COLUMN prefix TEXT;
ALTER TABLE vendor_api_keys ADD COLUMN label TEXT;
ALTER TABLE vendor_api_keys ADD COLUMN created_by TEXT;
ALTER TABLE vendor_api_keys ADD COLUMN last_used_at BIGINT;
UPDATE vendor_api_keys SET id = 'vak_' || substr(encode(key_hash, 'hex'), 1, 32), prefix = 'cvk_', label = 'Key';
CREATE UNIQUE INDEX vendor_api_keys_by_id ON vendor_api_keys (id);

-- Products a vendor publishes and withdraws; a product never leaves the
-- table (orders name it), it is only unlisted.
ALTER TABLE products ADD COLUMN published BIGINT NOT NULL DEFAULT 1;
ALTER TABLE products ADD COLUMN updated_at BIGINT;
