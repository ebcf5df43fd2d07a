-- Reads that operators and probes make often cost O(1) or an index read, however long the
-- history: counts by state kept by statement triggers (in the statement that changes rows, so
-- always exact), indexes for the oldest unfinished row, for the dead rows and for the retrying
-- rows, and a one-row table that the health check writes to prove the store can still commit.
--
-- The counts are spread over 16 slots per state, chosen by the writing connection, so that the
-- connections of a fleet do not queue behind one counter row; a reader sums them.
CREATE TABLE suki_inbox_counts (
    state TEXT     NOT NULL CHECK (state IN ('pending', 'running', 'done', 'dead')),
    slot  SMALLINT NOT NULL,
    n     BIGINT   NOT NULL DEFAULT 0,
    PRIMARY KEY (state, slot)
);

CREATE FUNCTION suki_inbox_count_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO suki_inbox_counts AS c (state, slot, n)
    SELECT state, pg_backend_pid() % 16, COUNT(*) FROM suki_new_rows GROUP BY state ORDER BY state
    ON CONFLICT (state, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION suki_inbox_count_update() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO suki_inbox_counts AS c (state, slot, n)
    SELECT state, pg_backend_pid() % 16, SUM(delta) FROM (
        SELECT o.state, -1 AS delta FROM suki_old_rows o JOIN suki_new_rows n ON n.id = o.id
         WHERE o.state <> n.state
        UNION ALL
        SELECT n.state, 1 FROM suki_old_rows o JOIN suki_new_rows n ON n.id = o.id
         WHERE o.state <> n.state
    ) AS changes
    GROUP BY state ORDER BY state
    ON CONFLICT (state, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

CREATE FUNCTION suki_inbox_count_delete() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO suki_inbox_counts AS c (state, slot, n)
    SELECT state, pg_backend_pid() % 16, -COUNT(*) FROM suki_old_rows GROUP BY state ORDER BY state
    ON CONFLICT (state, slot) DO UPDATE SET n = c.n + EXCLUDED.n;
    RETURN NULL;
END
$$;

-- The triggers first: creating them locks the table against writes until this migration
-- commits, so the counts taken below miss no concurrent change.
CREATE TRIGGER suki_inbox_count_insert
    AFTER INSERT ON suki_inbox_deliveries
    REFERENCING NEW TABLE AS suki_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_count_insert();
CREATE TRIGGER suki_inbox_count_update
    AFTER UPDATE ON suki_inbox_deliveries
    REFERENCING OLD TABLE AS suki_old_rows NEW TABLE AS suki_new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_count_update();
CREATE TRIGGER suki_inbox_count_delete
    AFTER DELETE ON suki_inbox_deliveries
    REFERENCING OLD TABLE AS suki_old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION suki_inbox_count_delete();

INSERT INTO suki_inbox_counts (state, slot, n)
SELECT state, 0, COUNT(*) FROM suki_inbox_deliveries GROUP BY state;

CREATE INDEX suki_inbox_deliveries_unfinished_age
    ON suki_inbox_deliveries (received_at)
    WHERE state IN ('pending', 'running');
-- Only the dead rows (a full (state, id) index would lure SQLite's planner, which has no
-- statistics, away from the partial indexes of claims and of the oldest unfinished row).
CREATE INDEX suki_inbox_deliveries_dead ON suki_inbox_deliveries (id) WHERE state = 'dead';
CREATE INDEX suki_inbox_deliveries_retrying
    ON suki_inbox_deliveries (updated_at, id)
    WHERE state IN ('pending', 'running') AND (attempts > 0 OR last_error IS NOT NULL);

CREATE TABLE suki_inbox_probe (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    probed_at BIGINT  NOT NULL
);
INSERT INTO suki_inbox_probe (id, probed_at) VALUES (1, 0);
