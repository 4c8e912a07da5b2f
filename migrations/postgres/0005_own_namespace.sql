-- apisync schema 5 on PostgreSQL (see ../0005_own_namespace.sql for why):
-- apisync's own tables move into the schema `_apisync`, which the code
-- that reads `schema_version` creates (and moves that table into) before
-- this runs. User tables stay in the connection's current schema.
-- The names below are unqualified, so they resolve through the search_path
-- exactly as when schema 1 to 4 created them. SET SCHEMA keeps rows,
-- constraints, indexes, the foreign keys to `runs` and the identity
-- sequence of `runs.id`.

ALTER TABLE runs                    SET SCHEMA _apisync;
ALTER TABLE checkpoints             SET SCHEMA _apisync;
ALTER TABLE marks                   SET SCHEMA _apisync;
ALTER TABLE finished_streams        SET SCHEMA _apisync;
ALTER TABLE job_leases              SET SCHEMA _apisync;
ALTER TABLE invocations             SET SCHEMA _apisync;
ALTER TABLE invocation_holders      SET SCHEMA _apisync;
ALTER TABLE invocation_streams      SET SCHEMA _apisync;
ALTER TABLE invocation_jobs         SET SCHEMA _apisync;
ALTER TABLE run_shards              SET SCHEMA _apisync;
ALTER TABLE _apisync_refresh_tokens SET SCHEMA _apisync;
ALTER TABLE _apisync._apisync_refresh_tokens RENAME TO refresh_tokens;
