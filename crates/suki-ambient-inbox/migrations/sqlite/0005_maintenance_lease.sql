-- Fleet-wide chores (the retention purge, the depth gauges) are done by one worker at a time:
-- the one holding this lease. A worker that stops lets it expire and another takes it over.
CREATE TABLE suki_inbox_leases (
    name       TEXT    PRIMARY KEY,
    owner      TEXT,
    expires_at INTEGER NOT NULL DEFAULT 0
);
INSERT INTO suki_inbox_leases (name) VALUES ('maintenance');
