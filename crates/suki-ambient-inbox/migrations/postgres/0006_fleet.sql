-- A fleet shares one Postgres inbox.
--
-- Fleet-wide chores (the retention purge, the depth gauges) are done by one worker at a time:
-- the one holding this lease. A worker that stops lets it expire and another takes it over.
CREATE TABLE suki_inbox_leases (
    name       TEXT   PRIMARY KEY,
    owner      TEXT,
    expires_at BIGINT NOT NULL DEFAULT 0
);
INSERT INTO suki_inbox_leases (name) VALUES ('maintenance');

-- Workers of other processes wake at once when a delivery is stored (LISTEN suki_inbox), not at
-- their next poll; the poll stays as the fallback for a notification lost with a connection.
-- One notification per statement, delivered at commit (a group commit of 256 rows is one).
CREATE FUNCTION suki_inbox_notify() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    PERFORM pg_notify('suki_inbox', '');
    RETURN NULL;
END
$$;
CREATE TRIGGER suki_inbox_notify
    AFTER INSERT ON suki_inbox_deliveries
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_notify();

-- A queue table churns: each row is updated a few times (claimed, completed) and later deleted,
-- leaving dead tuples and dead index entries at the head of the claim index. Vacuum it after
-- every 1 % of change (the default waits for 20 %), and keep its statistics fresh, so claims
-- stay as fast at the end of a long run as at its start.
ALTER TABLE suki_inbox_deliveries SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02
);

-- A session's stored events, found by index: when the reconciler records a check or a session
-- is expected, the inbox looks up whether that session's event is stored (a scan of the whole
-- table before). Built in this migration's transaction: on a large existing inbox, writes wait
-- for it.
CREATE INDEX suki_inbox_deliveries_session ON suki_inbox_deliveries (session_id, id)
    WHERE session_id IS NOT NULL;

-- A polled event resolves its expectation completely as it is stored: with the status seen
-- (its kind), so that the reconciler need not record the check again.
CREATE OR REPLACE FUNCTION suki_inbox_resolve_expectation() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF NEW.session_id IS NOT NULL AND NEW.kind <> 'unknown' THEN
        UPDATE suki_inbox_expectations
           SET resolution = CASE NEW.source WHEN 'poll' THEN 'poll' ELSE 'webhook' END,
               resolved_at = NEW.received_at,
               last_status = CASE NEW.source WHEN 'poll' THEN NEW.kind ELSE last_status END,
               lease_owner = NULL,
               lease_expires = NULL
         WHERE session_id = NEW.session_id AND resolution IS NULL;
    END IF;
    RETURN NULL;
END;
$$;
