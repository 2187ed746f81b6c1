-- Orders paid and not yet invoiced, oldest first: the invoice numbering
-- job reads this small queue instead of scanning every order ever placed
-- (and the invoices beside them) each time it runs. An order joins it in
-- the transaction that makes it paid, and leaves it in the one that gives
-- it its invoice number.
CREATE TABLE invoice_queue (
    order_id  TEXT PRIMARY KEY NOT NULL REFERENCES orders (id),
    queued_at BIGINT NOT NULL
);
INSERT INTO invoice_queue (order_id, queued_at)
    SELECT o.id, o.created_at FROM orders o LEFT JOIN invoices i ON i.order_id = o.id
    WHERE i.order_id IS NULL AND o.status IN ('paid', 'fulfilled', 'refunded');
