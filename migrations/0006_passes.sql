-- apisync schema 6: when each job's passes started, for
-- `[partitions] changed_only = true`: a child job lists only the parent
-- rows written (`_synced_at`) at or after the start of its last finished
-- pass. One row per job that has begun a pass with changed_only.

CREATE TABLE _apisync_passes (
    job             TEXT PRIMARY KEY NOT NULL,
    -- The start of the pass under way (RFC 3339, UTC), moved back to the
    -- start of any run of the parent job still writing then; NULL when no
    -- pass is under way, or when one was already under way before its
    -- start could be recorded (its end then leaves no start: a full pass).
    open_started_at TEXT,
    -- The start of the job's last finished pass; NULL: none known, the
    -- next pass lists every parent row.
    last_started_at TEXT
) WITHOUT ROWID;
