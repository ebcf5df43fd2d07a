-- The audit log is hash-chained and cannot be emptied: each entry holds the hash of the one
-- before (`prev_hash`) and its own (`hash`, SHA-256 over `prev_hash` and its fields, computed by
-- the inbox); entries written before this migration have neither. An entry is deleted only by
-- the audit purge (`Inbox::act(Action::PurgeAudit)`, which keeps a retention floor), which
-- first records in `suki_inbox_audit_purges` how far it deletes and the hash of the last
-- entry it deletes (the anchor the next remaining entry chains to). Updates were already
-- refused; deletes beyond the recorded purges and TRUNCATE are refused now, and the purges'
-- own records cannot be changed, deleted or truncated. (A superuser or the tables' owner can
-- still disable triggers: `inbox audit --verify` then shows where the chain breaks.)
ALTER TABLE suki_inbox_audit
    ADD COLUMN prev_hash TEXT NOT NULL DEFAULT '',
    ADD COLUMN hash TEXT NOT NULL DEFAULT '';

CREATE TABLE suki_inbox_audit_purges (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at         BIGINT NOT NULL,
    before_at  BIGINT NOT NULL,
    through_id BIGINT NOT NULL,
    anchor     TEXT   NOT NULL
);

CREATE FUNCTION suki_inbox_audit_no_delete() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF OLD.id > COALESCE((SELECT MAX(through_id) FROM suki_inbox_audit_purges), 0) THEN
        RAISE EXCEPTION 'the suki inbox audit log is append-only (entries leave only by its purge)';
    END IF;
    RETURN OLD;
END;
$$;
CREATE TRIGGER suki_inbox_audit_no_delete
    BEFORE DELETE ON suki_inbox_audit
    FOR EACH ROW EXECUTE FUNCTION suki_inbox_audit_no_delete();
CREATE TRIGGER suki_inbox_audit_no_truncate
    BEFORE TRUNCATE ON suki_inbox_audit
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_audit_append_only();
CREATE TRIGGER suki_inbox_audit_purges_append_only
    BEFORE UPDATE OR DELETE ON suki_inbox_audit_purges
    FOR EACH ROW EXECUTE FUNCTION suki_inbox_audit_append_only();
CREATE TRIGGER suki_inbox_audit_purges_no_truncate
    BEFORE TRUNCATE ON suki_inbox_audit_purges
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_audit_append_only();
