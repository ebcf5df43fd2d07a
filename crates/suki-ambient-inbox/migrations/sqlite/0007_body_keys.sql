-- Bodies at rest: the id of the key each stored body is sealed with (NULL: stored in clear), and
-- when a finished row's body was erased by the body retention (its metadata, timeline and audit
-- entries stay for their own, longer retention).
ALTER TABLE suki_inbox_deliveries ADD COLUMN key_id TEXT;
ALTER TABLE suki_inbox_deliveries ADD COLUMN body_erased_at INTEGER;
