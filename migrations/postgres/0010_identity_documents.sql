-- Proof of identity for an order held for review. The document itself is
-- in the file store, encrypted under the customer's data key (erasure
-- shreds it); this row holds its sealed SHA-256 and when it goes: the
-- retention job deletes the file and this row delete_after the decision.
-- The decision itself stays in order_events.
CREATE TABLE id_documents (
    order_id      TEXT PRIMARY KEY NOT NULL REFERENCES orders (id),
    file_key      TEXT NOT NULL,
    content_type  TEXT NOT NULL,
    size_bytes    BIGINT NOT NULL,
    sealed_digest BYTEA NOT NULL,
    uploaded_at   BIGINT NOT NULL,
    delete_after  BIGINT
);
