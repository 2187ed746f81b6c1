-- Paid orders still waiting for their invoice number, found through a
-- small partial index: the numbering job no longer scans every order ever
-- placed (and the invoices beside them) each time it runs.
ALTER TABLE orders ADD COLUMN invoiced INTEGER NOT NULL DEFAULT 0;
UPDATE orders SET invoiced = 1 WHERE id IN (SELECT order_id FROM invoices);
CREATE INDEX orders_awaiting_invoice ON orders (created_at, id)
    WHERE invoiced = 0 AND status IN ('paid', 'fulfilled', 'refunded');
