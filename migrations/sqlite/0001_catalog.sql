-- Catalog: vendors and their products with per-currency prices.
-- Times are i64 milliseconds since the Unix epoch (UTC), set by the application clock.
CREATE TABLE vendors (
    id         TEXT PRIMARY KEY NOT NULL,
    slug       TEXT NOT NULL UNIQUE,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE products (
    id          TEXT PRIMARY KEY NOT NULL,
    vendor_id   TEXT NOT NULL REFERENCES vendors (id),
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    delivery    TEXT NOT NULL CHECK (delivery IN ('license_key', 'download', 'both')),
    created_at  INTEGER NOT NULL
);
CREATE INDEX products_by_vendor ON products (vendor_id, id);

CREATE TABLE product_prices (
    product_id   TEXT NOT NULL REFERENCES products (id) ON DELETE CASCADE,
    currency     TEXT NOT NULL CHECK (length(currency) = 3),
    amount_minor INTEGER NOT NULL CHECK (amount_minor >= 0),
    PRIMARY KEY (product_id, currency)
);
