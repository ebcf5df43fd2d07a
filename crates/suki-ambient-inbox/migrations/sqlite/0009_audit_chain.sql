-- The audit log is hash-chained and cannot be emptied: each entry holds the hash of the one
-- before (`prev_hash`) and its own (`hash`, SHA-256 over `prev_hash` and its fields, computed by
-- the inbox); entries written before this migration have neither. An entry is deleted only by
-- the audit purge (`Inbox::act(Action::PurgeAudit)`, which keeps a retention floor), which
-- first records in `suki_inbox_audit_purges` how far it deletes and the hash of the last
-- entry it deletes (the anchor the next remaining entry chains to). Updates were already
-- refused; deletes beyond the recorded purges are refused now, and the purges' own records
-- cannot be changed or deleted. (SQLite has no TRUNCATE: a DELETE without WHERE fires the
-- trigger for each row.)
ALTER TABLE suki_inbox_audit ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '';
ALTER TABLE suki_inbox_audit ADD COLUMN hash TEXT NOT NULL DEFAULT '';

CREATE TABLE suki_inbox_audit_purges (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    before_at  INTEGER NOT NULL,
    through_id INTEGER NOT NULL,
    anchor     TEXT    NOT NULL
);

CREATE TRIGGER suki_inbox_audit_no_delete
BEFORE DELETE ON suki_inbox_audit
WHEN OLD.id > COALESCE((SELECT MAX(through_id) FROM suki_inbox_audit_purges), 0)
BEGIN
    SELECT RAISE(ABORT, 'the suki inbox audit log is append-only (entries leave only by its purge)');
END;

CREATE TRIGGER suki_inbox_audit_purges_no_update
BEFORE UPDATE ON suki_inbox_audit_purges
BEGIN
    SELECT RAISE(ABORT, 'the suki inbox audit log is append-only');
END;

CREATE TRIGGER suki_inbox_audit_purges_no_delete
BEFORE DELETE ON suki_inbox_audit_purges
BEGIN
    SELECT RAISE(ABORT, 'the suki inbox audit log is append-only');
END;
