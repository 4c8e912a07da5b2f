//! The processes of a sharded invocation on PostgreSQL (see
//! `sqlite/invocations.rs`). Registering a holder holds `invocation:ID`,
//! so the first process records the invocation's start and every other
//! one reads it back, then `shard-prune` while it deletes old
//! invocations' rows.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use postgres::GenericClient;

use super::PgStore;
use super::errors::{db_err, job_err, run_err};
use super::locks::xact_lock;
use crate::store::backend::{Invocations, IsDead};
use crate::store::error::StoreError;
use crate::store::rules::{KEEP_STREAMS, TAKEN_OVER, now, stale_cutoff};
use crate::store::types::{OtherRuns, RunId};

type PgResult<T> = Result<T, postgres::Error>;

impl Invocations for PgStore {
    fn register_holder(
        &mut self,
        invocation: &str,
        holder: &str,
        shard: u32,
        steal: bool,
    ) -> Result<String, StoreError> {
        let (invocation, holder) = (invocation.to_string(), holder.to_string());
        let err = db_err("register this process in the invocation");
        self.conn.run(move |s| {
            let mut tx = s.client.transaction().map_err(&err)?;
            let at = now();
            let started = begin_invocation(&mut tx, &invocation, &at).map_err(&err)?;
            // Per-stream rows of old invocations: one per stream per run
            // adds up. Which jobs completed in them (small) is kept for `--due`.
            // One pruner at a time: two deleting the same rows in different
            // orders could deadlock.
            xact_lock(&mut tx, "shard-prune").map_err(&err)?;
            let old = stale_cutoff(KEEP_STREAMS);
            for table in ["_apisync.invocation_streams", "_apisync.invocation_holders"] {
                tx.execute(
                    &format!(
                        "DELETE FROM {table} WHERE invocation <> $2 AND invocation IN
                             (SELECT invocation FROM _apisync.invocations
                              WHERE started_at COLLATE \"C\" < $1)"
                    ),
                    &[&old, &invocation],
                )
                .map_err(&err)?;
            }
            tx.execute(
                "INSERT INTO _apisync.invocation_holders
                     (invocation, holder, shard, steal, started_at, heartbeat_at, ended_at)
                 VALUES ($1, $2, $3, $4, $5, $5, NULL)
                 ON CONFLICT (invocation, holder) DO UPDATE
                 SET heartbeat_at = excluded.heartbeat_at, ended_at = NULL",
                &[&invocation, &holder, &shard_int(shard), &steal, &at],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(started)
        })?
    }

    fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError> {
        let invocation = invocation.to_string();
        let err = db_err("record the start of the invocation");
        self.conn.run(move |s| {
            let mut tx = s.client.transaction().map_err(&err)?;
            let started = begin_invocation(&mut tx, &invocation, &now()).map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(started)
        })?
    }

    fn renew_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        self.stamp_holder(
            "UPDATE _apisync.invocation_holders SET heartbeat_at = $3 WHERE invocation = $1 AND holder = $2",
            invocation,
            holder,
            "renew this process's heartbeat",
        )
    }

    fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        self.stamp_holder(
            "UPDATE _apisync.invocation_holders SET ended_at = $3 WHERE invocation = $1 AND holder = $2",
            invocation,
            holder,
            "record the end of this process",
        )
    }

    fn begin_shard_run(
        &mut self,
        job: &str,
        invocation: &str,
        shard: u32,
        holder: &str,
    ) -> Result<RunId, StoreError> {
        let err = job_err(job, "record the start of a shard's run");
        let (job, invocation, holder) =
            (job.to_string(), invocation.to_string(), holder.to_string());
        self.conn.run(move |s| {
            let mut tx = s.client.transaction().map_err(&err)?;
            let run_id: i64 = tx
                .query_one(
                    "INSERT INTO _apisync.runs (job, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
                    &[&job, &now()],
                )
                .map_err(&err)?
                .get(0);
            tx.execute(
                "INSERT INTO _apisync.run_shards (run_id, invocation, shard, holder) VALUES ($1, $2, $3, $4)",
                &[&run_id, &invocation, &shard_int(shard), &holder],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(RunId(run_id))
        })?
    }

    fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError> {
        let err = run_err(run_id, "forget an empty shard run");
        self.conn.run(move |s| {
            let mut tx = s.client.transaction().map_err(&err)?;
            tx.execute(
                "DELETE FROM _apisync.run_shards WHERE run_id = $1",
                &[&run_id.0],
            )
            .map_err(&err)?;
            tx.execute(
                "DELETE FROM _apisync.runs WHERE id = $1
                 AND NOT EXISTS (SELECT 1 FROM _apisync.finished_streams WHERE run_id = $1)",
                &[&run_id.0],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })?
    }

    fn last_success_starts_before(
        &self,
        jobs: &[&str],
        invocation: &str,
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let jobs: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
        let invocation = invocation.to_string();
        self.conn.run(move |s| {
            let stmt = s
                .prepared(
                    "SELECT max(started_at COLLATE \"C\") FROM (
                         SELECT r.started_at FROM _apisync.runs r
                         WHERE r.job = $1 AND r.status = 'succeeded'
                           AND NOT EXISTS (SELECT 1 FROM _apisync.run_shards t WHERE t.run_id = r.id)
                         UNION ALL
                         SELECT i.started_at FROM _apisync.invocation_jobs j
                         JOIN _apisync.invocations i ON i.invocation = j.invocation
                         WHERE j.job = $1 AND j.invocation <> $2) s",
                )
                .map_err(db_err("read the last successful runs"))?;
            let mut starts = BTreeMap::new();
            for job in jobs {
                let started: Option<String> = s
                    .client
                    .query_one(&stmt, &[&job, &invocation])
                    .map(|r| r.get(0))
                    .map_err(job_err(&job, "read its last successful run"))?;
                starts.extend(started.map(|at| (job, at)));
            }
            Ok(starts)
        })?
    }

    fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<BTreeSet<u32>, StoreError> {
        let invocation = invocation.to_string();
        let cutoff = stale_cutoff(stale_after);
        let rows = self.conn.run(move |s| {
            s.client
                .query(
                    "SELECT holder, shard FROM _apisync.invocation_holders
                     WHERE invocation = $1 AND ended_at IS NULL
                       AND heartbeat_at COLLATE \"C\" >= $2",
                    &[&invocation, &cutoff],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.get(0), r.get(1)))
                        .collect::<Vec<(String, i32)>>()
                })
                .map_err(db_err("read the live processes of the invocation"))
        })??;
        Ok(rows
            .into_iter()
            .filter(|(holder, _)| !is_dead(holder))
            .filter_map(|(_, shard)| u32::try_from(shard).ok())
            .collect())
    }

    /// See `sqlite/invocations.rs`. Liveness is read in one statement and
    /// `is_dead` asked here; a holder found dead stays dead, so closing its
    /// runs in a second statement is safe.
    fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<OtherRuns, StoreError> {
        let err = db_err("close the runs of stopped processes of the invocation");
        let (inv, me) = (invocation.to_string(), me.to_string());
        let cutoff = stale_cutoff(stale_after);
        let read_err = err.clone();
        let holders = self.conn.run(move |s| {
            s.client
                .query(
                    "SELECT s.holder, count(*), EXISTS (
                         SELECT 1 FROM _apisync.invocation_holders h
                         WHERE h.invocation = s.invocation AND h.holder = s.holder
                           AND h.ended_at IS NULL AND h.heartbeat_at COLLATE \"C\" >= $3)
                     FROM _apisync.runs r JOIN _apisync.run_shards s ON s.run_id = r.id
                     WHERE s.invocation = $1 AND r.status = 'running' AND s.holder <> $2
                     GROUP BY s.invocation, s.holder",
                    &[&inv, &me, &cutoff],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2)))
                        .collect::<Vec<(String, i64, bool)>>()
                })
                .map_err(read_err)
        })??;
        let mut found = OtherRuns::default();
        let mut dead = Vec::new();
        for (holder, running, fresh) in holders {
            if fresh && !is_dead(&holder) {
                found.running += u64::try_from(running).unwrap_or(0);
            } else {
                dead.push(holder);
            }
        }
        if dead.is_empty() {
            return Ok(found);
        }
        let inv = invocation.to_string();
        let closed = self.conn.run(move |s| {
            s.client
                .execute(
                    "UPDATE _apisync.runs SET status = 'interrupted', finished_at = $3,
                         error = coalesce(error, $4)
                     WHERE status = 'running' AND id IN (
                         SELECT run_id FROM _apisync.run_shards WHERE invocation = $1 AND holder = ANY($2))",
                    &[&inv, &dead, &now(), &TAKEN_OVER],
                )
                .map_err(err)
        })??;
        found.interrupted = closed;
        Ok(found)
    }
}

impl PgStore {
    /// `sql` with the invocation, the holder and now.
    fn stamp_holder(
        &mut self,
        sql: &'static str,
        invocation: &str,
        holder: &str,
        action: &'static str,
    ) -> Result<(), StoreError> {
        let (invocation, holder) = (invocation.to_string(), holder.to_string());
        self.conn.run(move |s| {
            let stmt = s.prepared(sql).map_err(db_err(action))?;
            s.client
                .execute(&stmt, &[&invocation, &holder, &now()])
                .map(drop)
                .map_err(db_err(action))
        })?
    }
}

/// Shard numbers are small (below COUNT); the column is `integer`.
pub(super) fn shard_int(shard: u32) -> i32 {
    i32::try_from(shard).unwrap_or(i32::MAX)
}

/// Record `invocation` as started at `at` unless it is known; its start.
/// Under the invocation's lock, so racing first processes agree.
fn begin_invocation(c: &mut impl GenericClient, invocation: &str, at: &str) -> PgResult<String> {
    xact_lock(c, &format!("invocation:{invocation}"))?;
    c.execute(
        "INSERT INTO _apisync.invocations (invocation, started_at) VALUES ($1, $2)
         ON CONFLICT (invocation) DO NOTHING",
        &[&invocation, &at],
    )?;
    c.query_one(
        "SELECT started_at FROM _apisync.invocations WHERE invocation = $1",
        &[&invocation],
    )
    .map(|r| r.get(0))
}
