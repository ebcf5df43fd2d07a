-- An operator's retry or replay keeps a row's attempt count and its timeline: `round_start`
-- is the attempts made before the latest retry or replay, and the attempts a worker allows
-- count from there.
ALTER TABLE suki_inbox_deliveries ADD COLUMN round_start INTEGER NOT NULL DEFAULT 0;
