-- Half of each page free: a re-wrap rewrites every data key once, and with
-- room on its page the new version is a heap-only (HOT) update, with no new
-- primary-key index entry. Tables that already hold rows keep their pages
-- until rewritten (VACUUM FULL data_keys, at a quiet time).
ALTER TABLE data_keys SET (fillfactor = 50);
