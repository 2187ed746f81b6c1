-- Webhooks and the vendors' ledger (issue 16). Both follow the order
-- events: a relay reads each event once (relayed_at), adds the ledger
-- entries it implies and a delivery for each endpoint that asked for it,
-- in one unit. Checkout never waits for either.
ALTER TABLE order_events ADD COLUMN relayed_at BIGINT;
-- What happened before webhooks existed is not sent now.
UPDATE order_events SET relayed_at = at;
CREATE INDEX order_events_to_relay ON order_events (at) WHERE relayed_at IS NULL;

-- A vendor's endpoints. The signing secret is a named secret in the key
-- store ("webhook-endpoint:<id>"), sealed under the master key.
CREATE TABLE webhook_endpoints (
    id         TEXT PRIMARY KEY NOT NULL,
    vendor_id  TEXT NOT NULL REFERENCES vendors (id),
    url        TEXT NOT NULL,
    events     TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    deleted_at BIGINT
);
CREATE INDEX webhook_endpoints_of_vendor ON webhook_endpoints (vendor_id, created_at);

-- One event to one endpoint: delivered at most once in normal operation
-- (the unique key), retried by a job with backoff for up to 3 days.
CREATE TABLE webhook_deliveries (
    id               TEXT PRIMARY KEY NOT NULL,
    endpoint_id      TEXT NOT NULL REFERENCES webhook_endpoints (id),
    vendor_id        TEXT NOT NULL,
    event_key        TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    order_id         TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts         BIGINT NOT NULL,
    last_status_code BIGINT,
    last_error       TEXT,
    last_attempt_at  BIGINT,
    delivered_at     BIGINT,
    created_at       BIGINT NOT NULL,
    UNIQUE (event_key, endpoint_id)
);
CREATE INDEX webhook_deliveries_of_endpoint ON webhook_deliveries (endpoint_id, created_at);

-- The delivery log: every attempt with its answer.
CREATE TABLE webhook_attempts (
    delivery_id TEXT NOT NULL,
    attempt     BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    status_code BIGINT,
    error       TEXT,
    elapsed_ms  BIGINT NOT NULL,
    PRIMARY KEY (delivery_id, attempt)
);

-- What the operator owes each vendor: an entry per order line sold, its
-- fee, and their refunds; entries are only ever added. Amounts are signed
-- minor units of the order's currency, net of tax: what the vendor is owed
-- is positive, what is taken off negative.
CREATE TABLE ledger_entries (
    id         TEXT PRIMARY KEY NOT NULL,
    vendor_id  TEXT NOT NULL REFERENCES vendors (id),
    order_id   TEXT NOT NULL,
    line_no    BIGINT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('sale', 'fee', 'refund', 'fee_refund')),
    currency   TEXT NOT NULL,
    amount     BIGINT NOT NULL,
    at         BIGINT NOT NULL,
    UNIQUE (order_id, line_no, kind)
);
CREATE INDEX ledger_entries_of_vendor ON ledger_entries (vendor_id, at);

-- The SHA-256 of each download file, shown to its vendor after an upload.
ALTER TABLE product_files ADD COLUMN sha256 TEXT;
