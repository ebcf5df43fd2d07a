-- The reconciler's expected sessions: what the integrator is waiting for, checked by polling
-- Suki's status API when no webhook arrives. Times are Unix milliseconds.
CREATE TABLE suki_inbox_expectations (
    session_id    TEXT    PRIMARY KEY,
    encounter_id  TEXT    NOT NULL,
    provider_id   TEXT,
    kind          TEXT    NOT NULL CHECK (kind IN ('ambient', 'form_filling')),
    ended_at      BIGINT  NOT NULL,
    next_check    BIGINT  NOT NULL,
    checks        INTEGER NOT NULL DEFAULT 0,
    last_status   TEXT,
    lease_owner   TEXT,
    lease_expires BIGINT,
    fence         BIGINT  NOT NULL DEFAULT 0,
    resolution    TEXT    CHECK (resolution IN ('webhook', 'poll', 'gave_up')),
    resolved_at   BIGINT,
    created_at    BIGINT  NOT NULL
);
CREATE INDEX suki_inbox_expectations_due
    ON suki_inbox_expectations (next_check)
    WHERE resolution IS NULL;

-- A terminal event reaching the inbox resolves its session's expectation in the same statement
-- (and so the same transaction) that stores it.
CREATE FUNCTION suki_inbox_resolve_expectation() RETURNS trigger AS $$
BEGIN
    IF NEW.session_id IS NOT NULL AND NEW.kind <> 'unknown' THEN
        UPDATE suki_inbox_expectations
           SET resolution = CASE NEW.source WHEN 'poll' THEN 'poll' ELSE 'webhook' END,
               resolved_at = NEW.received_at,
               lease_owner = NULL,
               lease_expires = NULL
         WHERE session_id = NEW.session_id AND resolution IS NULL;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER suki_inbox_resolve_expectation
AFTER INSERT ON suki_inbox_deliveries
FOR EACH ROW EXECUTE FUNCTION suki_inbox_resolve_expectation();
