-- apisync schema 3: job leases. Two processes never run the same job at
-- once: the one that holds the lease runs it and renews `heartbeat_at`
-- while it does; another process skips (or waits for) the job. A lease
-- whose heartbeat is older than the stale limit belongs to a dead process
-- (kill -9, OOM, lost node) and is taken over.
CREATE TABLE job_leases (
    job          TEXT PRIMARY KEY NOT NULL,
    holder       TEXT NOT NULL,                -- hostname:pid:random
    acquired_at  TEXT NOT NULL,                -- RFC 3339, UTC
    heartbeat_at TEXT NOT NULL                 -- RFC 3339, UTC
) WITHOUT ROWID;
