-- Vendor API keys (Authorization: Bearer). Only a SHA-256 of the key is
-- stored; the key itself is shown to the vendor once.
CREATE TABLE vendor_api_keys (
    key_hash   BLOB PRIMARY KEY NOT NULL,
    vendor_id  TEXT NOT NULL REFERENCES vendors (id),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX vendor_api_keys_by_vendor ON vendor_api_keys (vendor_id);
