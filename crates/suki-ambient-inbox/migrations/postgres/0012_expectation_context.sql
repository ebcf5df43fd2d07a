-- The partner's context of an expected session (what it sends Suki as `additional_info`),
-- sealed like a body: the event the reconciler recovers carries it, so that the session is
-- placed in the chart like a delivered one.
ALTER TABLE suki_inbox_expectations ADD COLUMN context BYTEA;
