-- No side doors. The bodies' key ids get an index (the keyless-writer check and the key
-- inventory read it instead of scanning); what a failed attempt fetched is no longer kept on
-- done rows (discarded ones included; dead rows keep it, sealed, until the body retention); and the audit log's retention floor is
-- enforced by the database itself: the inbox records the floor in force in
-- `suki_inbox_audit_floors` (append-only), and an audit purge whose horizon is within it, or
-- that would delete an entry younger than its horizon, is refused before it is recorded (so its
-- DELETE is refused too). "Now" is the database's own clock, or the newest entry's time when
-- later (a writer's clock ahead of the database's): never a time the purge's writer supplies.
CREATE INDEX suki_inbox_deliveries_key ON suki_inbox_deliveries (key_id)
    WHERE body_erased_at IS NULL;

UPDATE suki_inbox_deliveries SET fetched = NULL
 WHERE state = 'done' AND fetched IS NOT NULL;

CREATE TABLE suki_inbox_audit_floors (
    id   INTEGER PRIMARY KEY AUTOINCREMENT,
    at   INTEGER NOT NULL,
    days INTEGER NOT NULL CHECK (days >= 0)
);
-- The floor last recorded in the audit log ("retention floor N days"), if any.
INSERT INTO suki_inbox_audit_floors (at, days)
SELECT at, CAST(substr(detail, 17) AS INTEGER) FROM suki_inbox_audit
 WHERE action = 'audit_floor' ORDER BY id DESC LIMIT 1;

CREATE TRIGGER suki_inbox_audit_floors_no_update
BEFORE UPDATE ON suki_inbox_audit_floors
BEGIN
    SELECT RAISE(ABORT, 'the suki inbox audit log is append-only');
END;

CREATE TRIGGER suki_inbox_audit_floors_no_delete
BEFORE DELETE ON suki_inbox_audit_floors
BEGIN
    SELECT RAISE(ABORT, 'the suki inbox audit log is append-only');
END;

-- Without a recorded floor, six years (the inbox's default, HIPAA's retention).
CREATE TRIGGER suki_inbox_audit_purges_floor
BEFORE INSERT ON suki_inbox_audit_purges
WHEN NEW.before_at > MAX(CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER),
                         COALESCE((SELECT MAX(at) FROM suki_inbox_audit), 0))
        - COALESCE((SELECT days FROM suki_inbox_audit_floors ORDER BY id DESC LIMIT 1), 2192)
          * 86400000
  OR EXISTS (SELECT 1 FROM suki_inbox_audit WHERE at >= NEW.before_at AND id <= NEW.through_id)
BEGIN
    SELECT RAISE(ABORT, 'the suki inbox audit log keeps its entries within the retention floor');
END;
