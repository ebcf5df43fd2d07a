-- No side doors. The bodies' key ids get an index (the keyless-writer check and the key
-- inventory read it instead of scanning); what a failed attempt fetched is no longer kept on
-- done rows (discarded ones included; dead rows keep it, sealed, until the body retention); and the audit log's retention floor is
-- enforced by the database itself: the inbox records the floor in force in
-- `suki_inbox_audit_floors` (append-only), and an audit purge whose horizon is within it, or
-- that would delete an entry younger than its horizon, is refused before it is recorded (so its
-- DELETE is refused too). "Now" is the database's own clock, or the newest entry's time when
-- later (a writer's clock ahead of the database's): never a time the purge's writer supplies. (The tables'
-- owner can still disable triggers: docs/security.md says what the keyed chain and its
-- checkpoints show then.)
CREATE INDEX suki_inbox_deliveries_key ON suki_inbox_deliveries (key_id)
    WHERE body_erased_at IS NULL;

UPDATE suki_inbox_deliveries SET fetched = NULL
 WHERE state = 'done' AND fetched IS NOT NULL;

CREATE TABLE suki_inbox_audit_floors (
    id   BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at   BIGINT NOT NULL,
    days BIGINT NOT NULL CHECK (days >= 0)
);
-- The floor last recorded in the audit log ("retention floor N days"), if any.
INSERT INTO suki_inbox_audit_floors (at, days)
SELECT at, split_part(detail, ' ', 3)::bigint FROM suki_inbox_audit
 WHERE action = 'audit_floor' ORDER BY id DESC LIMIT 1;

CREATE TRIGGER suki_inbox_audit_floors_append_only
    BEFORE UPDATE OR DELETE ON suki_inbox_audit_floors
    FOR EACH ROW EXECUTE FUNCTION suki_inbox_audit_append_only();
CREATE TRIGGER suki_inbox_audit_floors_no_truncate
    BEFORE TRUNCATE ON suki_inbox_audit_floors
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_audit_append_only();

-- Without a recorded floor, six years (the inbox's default, HIPAA's retention).
CREATE FUNCTION suki_inbox_audit_purges_floor() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
DECLARE
    floor_days BIGINT;
BEGIN
    SELECT days INTO floor_days FROM suki_inbox_audit_floors ORDER BY id DESC LIMIT 1;
    IF NEW.before_at > GREATEST((extract(epoch FROM clock_timestamp()) * 1000)::bigint,
                                (SELECT MAX(at) FROM suki_inbox_audit))
                       - COALESCE(floor_days, 2192) * 86400000
       OR EXISTS (SELECT 1 FROM suki_inbox_audit
                   WHERE at >= NEW.before_at AND id <= NEW.through_id) THEN
        RAISE EXCEPTION 'the suki inbox audit log keeps its entries within the retention floor';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER suki_inbox_audit_purges_floor
    BEFORE INSERT ON suki_inbox_audit_purges
    FOR EACH ROW EXECUTE FUNCTION suki_inbox_audit_purges_floor();
