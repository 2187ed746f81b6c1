-- The gateway's token of a card payment, sealed under the operator's
-- payments key (not the customer's data key), so refunds and voids still
-- reach the gateway after the customer is erased. It names no one here.
ALTER TABLE orders ADD COLUMN payment_token BLOB;

-- A money move (void, refund, line refund) or any other staff move being
-- made on an order: claimed before the gateway is called, removed in the
-- unit that records the move (or when the gateway refuses). One at a time
-- per order, so two staff members can never both give the money back.
CREATE TABLE payment_moves (
    order_id   TEXT PRIMARY KEY REFERENCES orders (id),
    kind       TEXT NOT NULL,
    claimed_at INTEGER NOT NULL
);

-- The retention job clears tokens by age (540 days, the longest chargeback
-- window) without reading every order.
CREATE INDEX orders_payment_token_age ON orders (created_at) WHERE payment_token IS NOT NULL;

-- Idempotency keys and their sealed answers live a day; the retention job
-- finds them by age.
CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
