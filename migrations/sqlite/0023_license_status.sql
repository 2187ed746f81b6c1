-- License status (issue 10): a refunded line's or order's license key is
-- revoked, as data, never deleted. key_hash is SHA-256 of the key as issued
-- (how POST /api/v1/licenses/verify finds it without the key being stored
-- in the clear), licensee the pseudonym in its signed payload (for the
-- vendor's signed revocation list), both filled at issue; keys issued
-- before this migration have neither and are found by the (order_id,
-- product_id) of their verified payload. revoked_at: when a refund revoked
-- the key.
--
-- license_key becomes nullable: erasure now clears the sealed key and
-- keeps the row, so a key refunded before or after its customer is erased
-- stays revoked. SQLite cannot drop a NOT NULL, so the table is rebuilt
-- (nothing refers to it).
CREATE TABLE license_keys_new (
    order_id    TEXT NOT NULL REFERENCES orders (id),
    line_no     INTEGER NOT NULL,
    product_id  TEXT NOT NULL,
    vendor_id   TEXT NOT NULL,
    license_key BLOB,
    issued_at   INTEGER NOT NULL,
    key_hash    BLOB,
    licensee    TEXT,
    revoked_at  INTEGER,
    PRIMARY KEY (order_id, line_no)
);
INSERT INTO license_keys_new (order_id, line_no, product_id, vendor_id, license_key, issued_at)
    SELECT order_id, line_no, product_id, vendor_id, license_key, issued_at FROM license_keys;
DROP TABLE license_keys;
ALTER TABLE license_keys_new RENAME TO license_keys;

-- Keys are found through their order (the payload names it), not by an
-- index of random hashes that would scatter every checkout's writes.
CREATE INDEX license_keys_revoked_by_vendor ON license_keys (vendor_id, revoked_at) WHERE revoked_at IS NOT NULL;

-- Keys of lines and orders refunded before this migration are revoked as
-- of their refund.
UPDATE license_keys SET revoked_at = (
    SELECT l.refunded_at FROM order_lines l WHERE l.order_id = license_keys.order_id AND l.line_no = license_keys.line_no
) WHERE EXISTS (
    SELECT 1 FROM order_lines l
    WHERE l.order_id = license_keys.order_id AND l.line_no = license_keys.line_no AND l.refunded_at IS NOT NULL
);
UPDATE license_keys SET revoked_at = (
    SELECT COALESCE(MAX(e.at), MAX(o.updated_at)) FROM orders o
    LEFT JOIN order_events e ON e.order_id = o.id AND e.to_status = 'refunded'
    WHERE o.id = license_keys.order_id
) WHERE revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM orders o WHERE o.id = license_keys.order_id AND o.status = 'refunded'
);
