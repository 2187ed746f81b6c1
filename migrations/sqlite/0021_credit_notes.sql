-- Credit notes: a refund (of one line, or of the rest of an order) is
-- queued with the refund itself and numbered by the numbering job, gap-free
-- and in their own series, once the order's invoice exists (they refer to it).
CREATE TABLE credit_note_queue (
    id        TEXT PRIMARY KEY NOT NULL,
    order_id  TEXT NOT NULL,
    line_no   INTEGER,
    net       INTEGER NOT NULL,
    tax       INTEGER NOT NULL,
    queued_at INTEGER NOT NULL
);
CREATE INDEX credit_note_queue_age ON credit_note_queue (queued_at);
CREATE TABLE credit_notes (
    number         INTEGER PRIMARY KEY NOT NULL,
    invoice_number INTEGER NOT NULL,
    order_id       TEXT NOT NULL,
    line_no        INTEGER,
    issued_at      INTEGER NOT NULL,
    currency       TEXT NOT NULL,
    net            INTEGER NOT NULL,
    tax            INTEGER NOT NULL,
    total          INTEGER NOT NULL,
    emailed_at     INTEGER
);
CREATE INDEX credit_notes_of_order ON credit_notes (order_id);
CREATE INDEX credit_notes_to_email ON credit_notes (number) WHERE emailed_at IS NULL;
CREATE TABLE credit_note_numbering (
    id          INTEGER PRIMARY KEY NOT NULL,
    last_number INTEGER NOT NULL
);
INSERT INTO credit_note_numbering (id, last_number) VALUES (1, 0);
