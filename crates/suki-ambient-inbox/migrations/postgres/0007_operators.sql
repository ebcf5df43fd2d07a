-- What operators need: each row's timeline (its attempts and the operators' actions on it), an
-- append-only audit log of those actions, pauses that every worker of the inbox obeys, and the
-- indexes that find one visit's rows by session or encounter.

-- A snooze (the handler asked for a later attempt) does not spend an attempt; this counts them,
-- so that a handler cannot snooze a row forever unseen.
ALTER TABLE suki_inbox_deliveries ADD COLUMN snoozes INTEGER NOT NULL DEFAULT 0;
-- What the latest attempt fetched (links and their answers), written with its outcome and
-- copied into the timeline by the trigger below. Codes and statuses only, never content.
ALTER TABLE suki_inbox_deliveries ADD COLUMN attempt_detail TEXT;

CREATE INDEX suki_inbox_deliveries_encounter ON suki_inbox_deliveries (encounter_id, id)
    WHERE encounter_id IS NOT NULL;
CREATE INDEX suki_inbox_expectations_encounter ON suki_inbox_expectations (encounter_id);

-- A row's timeline. `actor` is NULL for what a worker did (an attempt and its outcome: done,
-- retry, dead, snoozed, released, interrupted, lease_expired; the latest 20 are kept per row,
-- trimmed as below)
-- and names the operator for an action (retried, replayed, discarded; all kept). Deleted with
-- the row when done rows are purged; the audit log keeps the actions.
-- No primary key: every read goes through (delivery_id, id), and one index less to maintain
-- per attempt.
CREATE TABLE suki_inbox_history (
    id          BIGINT GENERATED ALWAYS AS IDENTITY,
    delivery_id BIGINT  NOT NULL,
    at          BIGINT  NOT NULL,
    event       TEXT    NOT NULL,
    started_at  BIGINT,
    attempt     INTEGER,
    worker      TEXT,
    code        TEXT,
    next_run    BIGINT,
    detail      TEXT,
    actor       TEXT
);
CREATE INDEX suki_inbox_history_delivery ON suki_inbox_history (delivery_id, id);

-- An attempt ends where its row leaves `running` (or is claimed again after its lease expired):
-- recorded in the statement that ends it, so the timeline costs no extra round trip or commit.
CREATE FUNCTION suki_inbox_history_attempt() RETURNS trigger LANGUAGE plpgsql
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
            WHEN NEW.attempts < OLD.attempts THEN 'released'
            ELSE 'retry'
        END,
        OLD.updated_at,
        OLD.attempts,
        OLD.lease_owner,
        CASE WHEN NEW.state = 'dead' OR NEW.snoozes > OLD.snoozes
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
CREATE TRIGGER suki_inbox_history_attempt
    AFTER UPDATE OF state, fence ON suki_inbox_deliveries
    FOR EACH ROW
    WHEN (OLD.state = 'running' AND (NEW.state <> 'running' OR NEW.fence <> OLD.fence))
    EXECUTE FUNCTION suki_inbox_history_attempt();

-- Every operator action (console, CLI, API): when, who, from where, what, on how many rows.
-- Never purged with the rows; updates are refused. Its retention is the operator's decision
-- (`Inbox::purge_audit`), e.g. the six years HIPAA expects for such records.
CREATE TABLE suki_inbox_audit (
    id      BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at      BIGINT  NOT NULL,
    actor   TEXT    NOT NULL,
    origin  TEXT    NOT NULL,
    action  TEXT    NOT NULL,
    target  TEXT,
    rows    BIGINT  NOT NULL,
    detail  TEXT
);
CREATE INDEX suki_inbox_audit_at ON suki_inbox_audit (at);
CREATE FUNCTION suki_inbox_audit_append_only() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    RAISE EXCEPTION 'the suki inbox audit log is append-only';
END;
$$;
CREATE TRIGGER suki_inbox_audit_append_only
    BEFORE UPDATE ON suki_inbox_audit
    FOR EACH ROW EXECUTE FUNCTION suki_inbox_audit_append_only();

-- Paused processing: the whole inbox (`*`) or one event kind. Workers read it every poll.
CREATE TABLE suki_inbox_pauses (
    scope     TEXT   PRIMARY KEY,
    paused_at BIGINT NOT NULL,
    paused_by TEXT   NOT NULL,
    reason    TEXT
);
