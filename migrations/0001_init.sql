-- apisync schema 1: runs, per-stream checkpoints, incremental marks and the
-- partitions finished in the current pass of a job. Record tables are not
-- here: the store creates one per job from its output plan.

CREATE TABLE runs (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    job         TEXT    NOT NULL,
    started_at  TEXT    NOT NULL,           -- RFC 3339, UTC
    finished_at TEXT,                       -- NULL while running (or after a crash)
    status      TEXT    NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'interrupted', 'skipped')),
    pages       INTEGER NOT NULL DEFAULT 0,
    records     INTEGER NOT NULL DEFAULT 0,
    error       TEXT                        -- already redacted by the caller
);
CREATE INDEX runs_by_job ON runs (job, id);

-- Where an unfinished stream continues: the position JSON is opaque to the store.
CREATE TABLE checkpoints (
    job        TEXT NOT NULL,
    partition  TEXT NOT NULL,               -- '' for an unpartitioned job
    position   TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, partition)
) WITHOUT ROWID;

-- Incremental high-water marks, kept apart from the pagination cursor so
-- clearing one never loses the other.
CREATE TABLE marks (
    job        TEXT NOT NULL,
    partition  TEXT NOT NULL,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (job, partition)
) WITHOUT ROWID;

-- Partitions finished in the job's current pass. A rerun after a crash skips
-- them; the rows are cleared when every partition of the pass has finished.
CREATE TABLE finished_streams (
    job         TEXT    NOT NULL,
    partition   TEXT    NOT NULL,
    run_id      INTEGER NOT NULL REFERENCES runs (id),
    finished_at TEXT    NOT NULL,
    PRIMARY KEY (job, partition)
) WITHOUT ROWID;
