-- The tax rate the order was charged at (basis points), for its invoice.
ALTER TABLE orders ADD COLUMN tax_rate BIGINT NOT NULL DEFAULT 0;

-- Invoices: numbered gap-free by one numbering job after the order
-- commits (never by a counter locked inside every checkout). Amounts, tax
-- and dates are copied here: they outlive erasure; the buyer's name and
-- address are read from the order while they exist.
CREATE TABLE invoice_numbering (
    id          BIGINT PRIMARY KEY NOT NULL CHECK (id = 1),
    last_number BIGINT NOT NULL
);
INSERT INTO invoice_numbering (id, last_number) VALUES (1, 0);

CREATE TABLE invoices (
    number      BIGINT PRIMARY KEY NOT NULL,
    order_id    TEXT NOT NULL UNIQUE REFERENCES orders (id),
    issued_at   BIGINT NOT NULL,
    currency    TEXT NOT NULL,
    subtotal    BIGINT NOT NULL,
    tax         BIGINT NOT NULL,
    total       BIGINT NOT NULL,
    tax_country TEXT NOT NULL,
    tax_rate    BIGINT NOT NULL
);

-- Attempts counted by the fraud screen's velocity checks: a keyed hash
-- (HMAC) of the email address, card number or IP address, and when. No
-- personal data; deleted after a day.
CREATE TABLE fraud_attempts (
    kind     TEXT NOT NULL CHECK (kind IN ('email', 'card', 'ip')),
    key_hash BYTEA NOT NULL,
    at       BIGINT NOT NULL
);
CREATE INDEX fraud_attempts_by_key ON fraud_attempts (kind, key_hash, at);
