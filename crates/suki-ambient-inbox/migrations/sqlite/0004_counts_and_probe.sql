-- Reads that operators and probes make often cost O(1) or an index read, however long the
-- history: counts by state kept by triggers (in the statement that changes a row, so always
-- exact), indexes for the oldest unfinished row, for the dead rows and for the retrying rows,
-- and a one-row table that the health check writes to prove the store can still commit.
CREATE TABLE suki_inbox_counts (
    state TEXT    PRIMARY KEY CHECK (state IN ('pending', 'running', 'done', 'dead')),
    n     INTEGER NOT NULL DEFAULT 0
);
INSERT INTO suki_inbox_counts (state, n)
SELECT s.state, (SELECT COUNT(*) FROM suki_inbox_deliveries d WHERE d.state = s.state)
  FROM (SELECT 'pending' AS state UNION ALL SELECT 'running' UNION ALL SELECT 'done'
        UNION ALL SELECT 'dead') AS s;

CREATE TRIGGER suki_inbox_count_insert
AFTER INSERT ON suki_inbox_deliveries
BEGIN
    UPDATE suki_inbox_counts SET n = n + 1 WHERE state = NEW.state;
END;

CREATE TRIGGER suki_inbox_count_update
AFTER UPDATE OF state ON suki_inbox_deliveries
WHEN OLD.state <> NEW.state
BEGIN
    UPDATE suki_inbox_counts SET n = n - 1 WHERE state = OLD.state;
    UPDATE suki_inbox_counts SET n = n + 1 WHERE state = NEW.state;
END;

CREATE TRIGGER suki_inbox_count_delete
AFTER DELETE ON suki_inbox_deliveries
BEGIN
    UPDATE suki_inbox_counts SET n = n - 1 WHERE state = OLD.state;
END;

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
    probed_at INTEGER NOT NULL
);
INSERT INTO suki_inbox_probe (id, probed_at) VALUES (1, 0);
