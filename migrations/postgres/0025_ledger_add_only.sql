-- The vendors' ledger is only ever added to (issue 16, item 9): a
-- statement that would change or remove an entry is refused by the
-- database itself, whatever code sends it. A correction is a new entry.
CREATE FUNCTION ledger_entries_add_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'ledger entries are only added';
END
$$;
CREATE TRIGGER ledger_entries_are_not_changed BEFORE UPDATE OR DELETE ON ledger_entries
    FOR EACH ROW EXECUTE FUNCTION ledger_entries_add_only();
CREATE TRIGGER ledger_entries_are_not_truncated BEFORE TRUNCATE ON ledger_entries
    FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_add_only();
