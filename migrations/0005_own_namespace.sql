-- apisync schema 5: apisync's own tables move out of the names users' jobs
-- may take. A job named `runs` or with `table = "Marks"` (SQLite compares
-- names case-insensitively) used to share, and in replace mode drop,
-- apisync's table of that name. Every table of apisync's now starts with
-- `_apisync_`, a prefix plan refuses for user tables and columns.
-- RENAME keeps rows, constraints and the foreign keys that point at `runs`
-- (SQLite rewrites them); index names share the table namespace, so the two
-- named indexes are recreated under the prefix too. The bookkeeping table
-- `schema_version` is renamed by the code that reads it (src/store/open.rs),
-- before this runs. `_apisync_refresh_tokens` already had its name.

ALTER TABLE runs               RENAME TO _apisync_runs;
ALTER TABLE checkpoints        RENAME TO _apisync_checkpoints;
ALTER TABLE marks              RENAME TO _apisync_marks;
ALTER TABLE finished_streams   RENAME TO _apisync_finished_streams;
ALTER TABLE job_leases         RENAME TO _apisync_job_leases;
ALTER TABLE invocations        RENAME TO _apisync_invocations;
ALTER TABLE invocation_holders RENAME TO _apisync_invocation_holders;
ALTER TABLE invocation_streams RENAME TO _apisync_invocation_streams;
ALTER TABLE invocation_jobs    RENAME TO _apisync_invocation_jobs;
ALTER TABLE run_shards         RENAME TO _apisync_run_shards;

DROP INDEX runs_by_job;
CREATE INDEX _apisync_runs_by_job ON _apisync_runs (job, id);
DROP INDEX run_shards_by_holder;
CREATE INDEX _apisync_run_shards_by_holder ON _apisync_run_shards (holder);
