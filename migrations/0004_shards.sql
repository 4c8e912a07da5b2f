-- apisync schema 4: sharded runs (`run --shard INDEX/COUNT --invocation ID`).
-- Several processes (pods of a Kubernetes Indexed Job) share one database;
-- every (job, partition) stream belongs to one shard by a stable hash, and
-- these tables make "each stream synced exactly once per invocation" hold
-- across processes, kills and reruns of the same invocation.

-- An invocation: the first process of it records when it started, and every
-- shard computes date partitions up to "now" from that same instant.
CREATE TABLE IF NOT EXISTS invocations (
    invocation TEXT PRIMARY KEY NOT NULL,
    started_at TEXT NOT NULL                   -- RFC 3339, UTC
) WITHOUT ROWID;

-- The processes of an invocation. A process renews `heartbeat_at` while it
-- runs and sets `ended_at` when it exits; a stream held by a process whose
-- heartbeat is stale (or that ended, or whose pid is gone on the same host)
-- may be taken over.
CREATE TABLE IF NOT EXISTS invocation_holders (
    invocation   TEXT    NOT NULL,
    holder       TEXT    NOT NULL,             -- hostname:pid:random
    shard        INTEGER NOT NULL,             -- its INDEX of INDEX/COUNT
    steal        INTEGER NOT NULL,             -- 1 with --steal
    started_at   TEXT    NOT NULL,
    heartbeat_at TEXT    NOT NULL,
    ended_at     TEXT,
    PRIMARY KEY (invocation, holder)
) WITHOUT ROWID;

-- One row per stream claimed in an invocation (kept 7 days, then pruned
-- with its invocation's holders): the stream lease while
-- `running` (its holder's heartbeat is the holder's row above), and the
-- per-invocation completion once `done` (never run again in this
-- invocation) or `failed` (a rerun of its shard retries it).
CREATE TABLE IF NOT EXISTS invocation_streams (
    invocation  TEXT    NOT NULL,
    job         TEXT    NOT NULL,
    partition   TEXT    NOT NULL,              -- '' for an unpartitioned job
    shard       INTEGER NOT NULL,              -- the shard the hash assigns it to; -1: it had
                                               -- finished in the job's pass before any claim
    status      TEXT    NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    holder      TEXT    NOT NULL,              -- who runs or ran it
    claimed_at  TEXT    NOT NULL,
    finished_at TEXT,
    PRIMARY KEY (invocation, job, partition)
) WITHOUT ROWID;

-- Jobs whose pass completed in an invocation (the replace swap done, the
-- finished set cleared): children waiting on them may start.
CREATE TABLE IF NOT EXISTS invocation_jobs (
    invocation   TEXT NOT NULL,
    job          TEXT NOT NULL,
    completed_at TEXT NOT NULL,
    PRIMARY KEY (invocation, job)
) WITHOUT ROWID;

-- Which shard of which invocation wrote a run row; unsharded runs have
-- none. Kept beside `runs` rather than in it, so this migration only adds.
CREATE TABLE IF NOT EXISTS run_shards (
    run_id     INTEGER PRIMARY KEY NOT NULL REFERENCES runs (id),
    invocation TEXT    NOT NULL,
    shard      INTEGER NOT NULL,
    holder     TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS run_shards_by_holder ON run_shards (holder);
