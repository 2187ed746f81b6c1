-- The file a download product delivers, kept in the file store under
-- file_key (the local store: <data_dir>/files/<file_key>).
CREATE TABLE product_files (
    product_id   TEXT PRIMARY KEY NOT NULL,
    file_key     TEXT NOT NULL,
    file_name    TEXT NOT NULL,
    content_type TEXT NOT NULL,
    size_bytes   INTEGER NOT NULL,
    uploaded_at  INTEGER NOT NULL
);

-- How often each order line's download was used. Links are signed (HMAC)
-- and carry their own expiry; the count limit lives here so it holds
-- across servers.
CREATE TABLE download_uses (
    order_id TEXT NOT NULL REFERENCES orders (id),
    line_no  INTEGER NOT NULL,
    uses     INTEGER NOT NULL,
    PRIMARY KEY (order_id, line_no)
);

-- Idempotency keys of POST /api/v1/orders: the key and the body are kept
-- only as keyed hashes (the body's without its card fields); the answer
-- is sealed under the customer's data key (it holds license keys). A row
-- without an answer is a request in progress.
CREATE TABLE idempotency_keys (
    key_hash    BLOB PRIMARY KEY NOT NULL,
    fingerprint BLOB NOT NULL,
    data_key_id TEXT,
    response    BLOB,
    created_at  INTEGER NOT NULL
);
