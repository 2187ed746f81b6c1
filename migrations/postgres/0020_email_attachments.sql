-- A message may carry one file (an invoice as PDF), sealed like the body
-- under the recipient's key and shredded with it.
ALTER TABLE outbox_emails ADD COLUMN attachment_name TEXT;
ALTER TABLE outbox_emails ADD COLUMN attachment BYTEA;
-- When an invoice's PDF was emailed to its buyer (or skipped: an erased
-- buyer); the mail job picks those not yet sent. Invoices issued before
-- this release were never sent as PDF and are not sent now.
ALTER TABLE invoices ADD COLUMN emailed_at BIGINT;
UPDATE invoices SET emailed_at = issued_at;
CREATE INDEX invoices_to_email ON invoices (number) WHERE emailed_at IS NULL;
