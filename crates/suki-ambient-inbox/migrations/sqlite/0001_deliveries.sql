-- The inbox: one row per verified delivery (or polled event), never any fetched note content.
-- Times are Unix milliseconds. A running row's run_after is its lease expiry, so that one
-- index finds both due pending rows and running rows whose lease expired.
CREATE TABLE suki_inbox_deliveries (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    dedup_key     TEXT    NOT NULL UNIQUE,
    source        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    session_id    TEXT,
    encounter_id  TEXT,
    generated_at  INTEGER NOT NULL,
    received_at   INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    state         TEXT    NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'running', 'done', 'dead')),
    attempts      INTEGER NOT NULL DEFAULT 0,
    run_after     INTEGER NOT NULL,
    lease_owner   TEXT,
    lease_expires INTEGER,
    fence         INTEGER NOT NULL DEFAULT 0,
    last_error    TEXT,
    completed_at  INTEGER,
    updated_at    INTEGER NOT NULL
);
CREATE INDEX suki_inbox_deliveries_due ON suki_inbox_deliveries (state, run_after);
