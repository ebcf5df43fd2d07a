-- The trigger functions resolve the inbox's tables in the schema they were created in (the one
-- the migration ran in), whatever search path the connection that fires them uses: the inbox
-- can live in a schema of its own, and share a pool whose connections point elsewhere.
ALTER FUNCTION suki_inbox_resolve_expectation() SET search_path FROM CURRENT;
ALTER FUNCTION suki_inbox_count_insert() SET search_path FROM CURRENT;
ALTER FUNCTION suki_inbox_count_update() SET search_path FROM CURRENT;
ALTER FUNCTION suki_inbox_count_delete() SET search_path FROM CURRENT;
