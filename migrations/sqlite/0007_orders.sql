-- The privacy policy, every version ever published: an order records the
-- version the customer consented to, so older versions are kept.
CREATE TABLE privacy_policy_versions (
    version      TEXT PRIMARY KEY NOT NULL,
    html         TEXT NOT NULL,
    published_at INTEGER NOT NULL
);

-- Orders. Personal fields are sealed under the customer's data key (the
-- order keeps its own copy: a later order never changes the account), so
-- erasure shreds them; amounts, currency, tax, the tax country and dates
-- stay for the invoices the law requires. card: the gateway token, brand,
-- last four digits and expiry, sealed together; never the number or CVC.
CREATE TABLE orders (
    id                TEXT PRIMARY KEY NOT NULL,
    customer_id       TEXT NOT NULL,
    data_key_id       TEXT NOT NULL,
    status            TEXT NOT NULL CHECK (status IN ('pending', 'paid', 'fulfilled', 'on_hold', 'rejected', 'cancelled', 'refunded')),
    currency          TEXT NOT NULL,
    subtotal          INTEGER NOT NULL,
    tax               INTEGER NOT NULL,
    total             INTEGER NOT NULL,
    tax_country       TEXT NOT NULL,
    payment_method    TEXT NOT NULL CHECK (payment_method IN ('card', 'bank_transfer')),
    payment_reference TEXT,
    name              BLOB,
    email             BLOB,
    phone             BLOB,
    address           BLOB,
    card              BLOB,
    guardian_name     BLOB,
    adult             INTEGER NOT NULL CHECK (adult IN (0, 1)),
    policy_version    TEXT NOT NULL REFERENCES privacy_policy_versions (version),
    consent_at        INTEGER NOT NULL,
    consent_channel   TEXT NOT NULL CHECK (consent_channel IN ('web', 'api')),
    fraud_score       INTEGER NOT NULL,
    fraud_reasons     TEXT NOT NULL,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL
);
CREATE INDEX orders_by_customer ON orders (customer_id, created_at);

-- One line per product; vendor_id lets a vendor read only its own lines.
CREATE TABLE order_lines (
    order_id   TEXT NOT NULL REFERENCES orders (id),
    line_no    INTEGER NOT NULL,
    product_id TEXT NOT NULL,
    vendor_id  TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    unit_price INTEGER NOT NULL,
    line_total INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
CREATE INDEX order_lines_by_vendor ON order_lines (vendor_id, order_id);

-- Every move of an order: from, to, who and why.
CREATE TABLE order_events (
    order_id    TEXT NOT NULL REFERENCES orders (id),
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    from_status TEXT,
    to_status   TEXT NOT NULL,
    actor       TEXT NOT NULL,
    reason      TEXT NOT NULL,
    PRIMARY KEY (order_id, seq)
);

-- License keys issued for an order's lines, sealed under the customer's
-- data key (a key is worth money to whoever holds it). The licensee in the
-- signed payload is a per-vendor pseudonym, never a name or address.
CREATE TABLE license_keys (
    order_id    TEXT NOT NULL REFERENCES orders (id),
    line_no     INTEGER NOT NULL,
    product_id  TEXT NOT NULL,
    vendor_id   TEXT NOT NULL,
    license_key BLOB NOT NULL,
    issued_at   INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);
