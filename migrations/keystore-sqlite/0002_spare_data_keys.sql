-- Spare data keys: made and committed ahead of demand, in batches, so a new
-- customer's order waits for one commit (the data database's), not for a
-- key store commit before it. A spare key has `spare_until` set: past that
-- time no server hands it out, and the sweep deletes it unless a customer
-- row uses it (then it becomes an ordinary key, `spare_until` NULL).
ALTER TABLE data_keys ADD COLUMN spare_until INTEGER;
CREATE INDEX data_keys_spare ON data_keys (spare_until) WHERE spare_until IS NOT NULL;
