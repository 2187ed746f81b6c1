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
-- stays revoked.
ALTER TABLE license_keys ALTER COLUMN license_key DROP NOT NULL;
ALTER TABLE license_keys ADD COLUMN key_hash BYTEA;
ALTER TABLE license_keys ADD COLUMN licensee TEXT;
ALTER TABLE license_keys ADD COLUMN revoked_at BIGINT;

-- Keys are found through their order (the payload names it), not by an
-- index of random hashes that would scatter every checkout's writes.
CREATE INDEX license_keys_revoked_by_vendor ON license_keys (vendor_id, revoked_at) WHERE revoked_at IS NOT NULL;

-- Keys of lines and orders refunded before this migration are revoked as
-- of their refund.
UPDATE license_keys SET revoked_at = l.refunded_at FROM order_lines l
    WHERE l.order_id = license_keys.order_id AND l.line_no = license_keys.line_no AND l.refunded_at IS NOT NULL;
UPDATE license_keys SET revoked_at = (
    SELECT COALESCE(MAX(e.at), MAX(o.updated_at)) FROM orders o
    LEFT JOIN order_events e ON e.order_id = o.id AND e.to_status = 'refunded'
    WHERE o.id = license_keys.order_id
) WHERE revoked_at IS NULL AND EXISTS (
    SELECT 1 FROM orders o WHERE o.id = license_keys.order_id AND o.status = 'refunded'
);
