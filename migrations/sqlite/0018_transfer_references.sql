-- Support finds an order by the bank transfer's reference (the buyer's
-- bank passes it on). Only transfer orders have one, so the index is
-- partial and card orders write nothing to it. Not unique: references
-- are random, and a rare repeat shows both orders.
CREATE INDEX orders_by_payment_reference ON orders (payment_reference) WHERE payment_reference IS NOT NULL;
