-- apisync schema 6 on PostgreSQL (mirrors ../0006_passes.sql, whose
-- comments say what each column is for): when each job's passes started,
-- for `[partitions] changed_only = true`. Timestamps are RFC 3339 text in
-- UTC, as in the other tables.

CREATE TABLE _apisync.passes (
    job             text COLLATE "C" PRIMARY KEY,
    open_started_at text,
    last_started_at text
);
