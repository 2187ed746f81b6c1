-- Refunds of single lines: when, and how much went back (the line's price
-- and its share of the tax). A fully refunded order is 'refunded'.
ALTER TABLE order_lines ADD COLUMN refunded_at BIGINT;
ALTER TABLE order_lines ADD COLUMN refunded_amount BIGINT NOT NULL DEFAULT 0;
