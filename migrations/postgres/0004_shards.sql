-- apisync schema 4 on PostgreSQL: sharded runs (mirrors ../0004_shards.sql,
-- whose comments say what each table is for). Every write that decides
-- between processes takes an advisory transaction lock (see
-- src/store/postgres/shards.rs). Names compare byte-wise (COLLATE "C") and
-- timestamps are RFC 3339 text in UTC, as in the other tables.

CREATE TABLE invocations (
    invocation text COLLATE "C" PRIMARY KEY,
    started_at text NOT NULL
);

CREATE TABLE invocation_holders (
    invocation   text COLLATE "C" NOT NULL,
    holder       text COLLATE "C" NOT NULL,   -- hostname:pid:random
    shard        integer NOT NULL,            -- its INDEX of INDEX/COUNT
    steal        boolean NOT NULL,            -- run with --steal
    started_at   text    NOT NULL,
    heartbeat_at text    NOT NULL,
    ended_at     text,
    PRIMARY KEY (invocation, holder)
);

CREATE TABLE invocation_streams (
    invocation  text COLLATE "C" NOT NULL,
    job         text COLLATE "C" NOT NULL,
    partition   text COLLATE "C" NOT NULL,    -- '' for an unpartitioned job
    shard       integer NOT NULL,             -- -1: finished before any claim
    status      text    NOT NULL CHECK (status IN ('running', 'done', 'failed')),
    holder      text COLLATE "C" NOT NULL,
    claimed_at  text    NOT NULL,
    finished_at text,
    PRIMARY KEY (invocation, job, partition)
);

CREATE TABLE invocation_jobs (
    invocation   text COLLATE "C" NOT NULL,
    job          text COLLATE "C" NOT NULL,
    completed_at text NOT NULL,
    PRIMARY KEY (invocation, job)
);

CREATE TABLE run_shards (
    run_id     bigint PRIMARY KEY REFERENCES runs (id),
    invocation text COLLATE "C" NOT NULL,
    shard      integer NOT NULL,
    holder     text COLLATE "C" NOT NULL
);
CREATE INDEX run_shards_by_holder ON run_shards (holder);
