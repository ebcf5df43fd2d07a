-- The partner's context of an expected session (what it sends Suki as `additional_info`),
-- sealed like a body: the event the reconciler recovers carries it, so that the session is
-- placed in the chart like a delivered one.
ALTER TABLE suki_inbox_expectations ADD COLUMN context BLOB;

-- Sessions that ended without a note (failed, timed out, cancelled), for `inbox list --kind`
-- and the console's count of the last 24 hours: a small partial index.
CREATE INDEX suki_inbox_deliveries_no_note ON suki_inbox_deliveries (kind, received_at)
    WHERE kind IN ('failed', 'timed_out', 'cancelled');
