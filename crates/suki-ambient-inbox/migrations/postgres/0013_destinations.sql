-- Flow control. A destination (Suki's API, an EHR) that stops answering is marked down here,
-- shared by every worker of the inbox: while it is down, the rows that need it wait without
-- spending attempts (`waiting_for` names it), and one worker of the fleet at a time sends the
-- probe, at most once per interval (`next_probe`, taken with `probe_owner` under a lease).
CREATE TABLE suki_inbox_destinations (
    name          TEXT    PRIMARY KEY,
    up            BOOLEAN NOT NULL DEFAULT TRUE,
    reason        TEXT,
    down_since    BIGINT,
    next_probe    BIGINT NOT NULL DEFAULT 0,
    probes        INTEGER NOT NULL DEFAULT 0,
    probe_owner   TEXT,
    probe_expires BIGINT NOT NULL DEFAULT 0,
    updated_at    BIGINT NOT NULL DEFAULT 0
);

ALTER TABLE suki_inbox_deliveries ADD COLUMN waiting_for TEXT;
-- The rows waiting for a destination: counted for status, made due when it is back.
CREATE INDEX suki_inbox_deliveries_waiting ON suki_inbox_deliveries (waiting_for, state)
    WHERE waiting_for IS NOT NULL;

-- A wait is in the row's timeline as `waiting`, with the error that made it wait.
CREATE OR REPLACE FUNCTION suki_inbox_history_attempt() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO suki_inbox_history
        (delivery_id, at, event, started_at, attempt, worker, code, next_run, detail)
    VALUES (
        NEW.id,
        NEW.updated_at,
        CASE
            WHEN NEW.state = 'running' THEN 'lease_expired'
            WHEN NEW.state = 'done' THEN 'done'
            WHEN NEW.state = 'dead' THEN 'dead'
            WHEN NEW.fence <> OLD.fence THEN 'interrupted'
            WHEN NEW.snoozes > OLD.snoozes THEN 'snoozed'
            WHEN NEW.waiting_for IS NOT NULL THEN 'waiting'
            WHEN NEW.attempts < OLD.attempts THEN 'released'
            ELSE 'retry'
        END,
        OLD.updated_at,
        OLD.attempts,
        OLD.lease_owner,
        CASE WHEN NEW.state = 'dead' OR NEW.snoozes > OLD.snoozes
                  OR NEW.waiting_for IS NOT NULL
                  OR (NEW.state = 'pending' AND NEW.fence = OLD.fence
                      AND NEW.attempts >= OLD.attempts)
             THEN NEW.last_error END,
        CASE WHEN NEW.state = 'pending' THEN NEW.run_after END,
        CASE WHEN NEW.fence = OLD.fence THEN NEW.attempt_detail END
    );
    -- Kept to the latest 20 of the row's attempts. An operator who makes a row due again
    -- trims it to its latest 10; the ordinary outcomes (done, retry, dead) of its first 9
    -- attempts after that cannot pass 20, so only the others look (most rows never do).
    IF OLD.attempts >= 10 OR NEW.state = 'running' OR NEW.fence <> OLD.fence
       OR NEW.snoozes <> OLD.snoozes OR NEW.attempts < OLD.attempts THEN
        DELETE FROM suki_inbox_history
         WHERE delivery_id = NEW.id AND actor IS NULL
           AND id <= (SELECT id FROM suki_inbox_history
                       WHERE delivery_id = NEW.id AND actor IS NULL
                       ORDER BY id DESC LIMIT 1 OFFSET 20);
    END IF;
    RETURN NULL;
END;
$$;
