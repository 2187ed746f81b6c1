-- The vendors' ledger is only ever added to (issue 16, item 9): a
-- statement that would change or remove an entry is refused by the
-- database itself, whatever code sends it. A correction is a new entry.
CREATE TRIGGER ledger_entries_are_not_changed BEFORE UPDATE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are only added');
END;
CREATE TRIGGER ledger_entries_are_not_removed BEFORE DELETE ON ledger_entries
BEGIN
    SELECT RAISE(ABORT, 'ledger entries are only added');
END;
