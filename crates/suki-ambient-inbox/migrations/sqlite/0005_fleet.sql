-- Fleet-wide chores (the retention purge, the depth gauges) are done by one worker at a time:
-- the one holding this lease. A worker that stops lets it expire and another takes it over.
CREATE TABLE suki_inbox_leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT,
    expires_at INTEGER NOT NULL DEFAULT 0
);
INSERT INTO suki_inbox_leases (name) VALUES ('maintenance');

-- A session's stored events, found by index: when the reconciler records a check or a session
-- is expected, the inbox looks up whether that session's event is stored (a scan of the whole
-- table before).
CREATE INDEX suki_inbox_deliveries_session ON suki_inbox_deliveries (session_id, id)
    WHERE session_id IS NOT NULL;

-- A polled event resolves its expectation completely as it is stored: with the status seen
-- (its kind), so that the reconciler need not record the check again.
DROP TRIGGER suki_inbox_resolve_expectation;
CREATE TRIGGER suki_inbox_resolve_expectation
AFTER INSERT ON suki_inbox_deliveries
WHEN NEW.session_id IS NOT NULL AND NEW.kind <> 'unknown'
BEGIN
    UPDATE suki_inbox_expectations
       SET resolution = CASE NEW.source WHEN 'poll' THEN 'poll' ELSE 'webhook' END,
           resolved_at = NEW.received_at,
           last_status = CASE NEW.source WHEN 'poll' THEN NEW.kind ELSE last_status END,
           lease_owner = NULL,
           lease_expires = NULL
     WHERE session_id = NEW.session_id AND resolution IS NULL;
END;
