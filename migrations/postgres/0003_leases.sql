-- apisync schema 3: job leases (mirrors ../0003_leases.sql). Acquiring
-- takes an advisory transaction lock per job, so racing processes queue.
CREATE TABLE job_leases (
    job          text COLLATE "C" PRIMARY KEY,
    holder       text NOT NULL,
    acquired_at  text NOT NULL,
    heartbeat_at text NOT NULL
);
