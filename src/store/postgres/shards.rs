//! Sharded runs on PostgreSQL: the same surface and semantics as
//! `store/shards.rs` (read its module doc), with PostgreSQL's locks in
//! place of SQLite's `BEGIN IMMEDIATE`:
//!
//! - claiming a stream holds `shard-stream:INVOCATION:JOB:PARTITION`
//!   (exclusive: two processes claiming one stream queue, the second sees
//!   the first's claim) and `shard-job:INVOCATION:JOB` shared;
//! - completing a job's pass holds `shard-job:INVOCATION:JOB` exclusive, so
//!   it never interleaves with a claim of one of the job's streams, and a
//!   second process completing it waits, then finds it done;
//! - registering a holder holds `invocation:ID`, so the first process
//!   records the invocation's start and every other one reads it back,
//!   then `shard-prune` while it deletes old invocations' rows.
//!
//! Under READ COMMITTED each statement after the lock sees what the
//! previous lock holder committed. Whether another holder is dead is asked
//! of the caller's `is_dead` on the caller's thread, inside the open
//! transaction (see `open_tx.rs`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::time::Duration;

use postgres::GenericClient;

use super::PgStore;
use super::open_tx::OpenTx;
use super::state::end_pass;
use super::state::{job_err, stream_err};
use super::{xact_lock, xact_lock_shared};
use crate::store::error::StoreError;
use crate::store::leases::stale_cutoff;
use crate::store::open::now;
use crate::store::shard_runs::OtherRuns;
use crate::store::shards::{
    ClaimEnd, Found, HeldClaim, KEEP_STREAMS, StreamClaim, StreamState, TAKEN_OVER, decide_claim,
};
use crate::store::streams::BACKFILL_PREFIX;
use crate::store::types::{RunId, StreamKey, TableSpec};

type PgResult<T> = Result<T, postgres::Error>;

fn db_err(action: &'static str) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + 'static {
    move |source| StoreError::Database {
        action,
        source: Box::new(source),
    }
}

fn run_err(
    run_id: RunId,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + 'static {
    move |source| StoreError::Run {
        run_id: run_id.0,
        action,
        source: Box::new(source),
    }
}

/// Shard numbers are small (below COUNT); the column is `integer`.
fn shard_int(shard: u32) -> i32 {
    i32::try_from(shard).unwrap_or(i32::MAX)
}

fn job_lock(invocation: &str, job: &str) -> String {
    format!("shard-job:{invocation}:{job}")
}

impl PgStore {
    pub(crate) fn register_holder(
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

    pub(crate) fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError> {
        let invocation = invocation.to_string();
        let err = db_err("record the start of the invocation");
        self.conn.run(move |s| {
            let mut tx = s.client.transaction().map_err(&err)?;
            let started = begin_invocation(&mut tx, &invocation, &now()).map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(started)
        })?
    }

    pub(crate) fn last_success_starts_before(
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

    pub(crate) fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError> {
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

    pub(crate) fn renew_holder(
        &mut self,
        invocation: &str,
        holder: &str,
    ) -> Result<(), StoreError> {
        self.stamp_holder(
            "UPDATE _apisync.invocation_holders SET heartbeat_at = $3 WHERE invocation = $1 AND holder = $2",
            invocation,
            holder,
            "renew this process's heartbeat",
        )
    }

    pub(crate) fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        self.stamp_holder(
            "UPDATE _apisync.invocation_holders SET ended_at = $3 WHERE invocation = $1 AND holder = $2",
            invocation,
            holder,
            "record the end of this process",
        )
    }

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

    #[allow(clippy::too_many_arguments)]
    pub(crate) fn claim_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        shard: u32,
        holder: &str,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<StreamClaim, StoreError> {
        let err = stream_err(stream, "claim the stream");
        let (inv, key) = (invocation.to_string(), stream.clone());
        let cutoff = stale_cutoff(stale_after);
        let (tx, found) = OpenTx::begin(&self.conn, err.clone(), move |s| {
            xact_lock_shared(&mut s.client, &job_lock(&inv, &key.job))?;
            xact_lock(
                &mut s.client,
                &format!("shard-stream:{inv}:{}:{}", key.job, key.partition),
            )?;
            find_claim(s, &inv, &key, &cutoff)
        })?;
        let taken_from = match decide_claim(found, holder, retry_failed, is_dead) {
            Ok(taken_from) => taken_from,
            Err(answer) => {
                tx.rollback(err)?;
                return Ok(answer);
            }
        };
        let (inv, key, me) = (invocation.to_string(), stream.clone(), holder.to_string());
        let old = taken_from.clone();
        tx.commit_after(err, move |s| {
            let at = now();
            let claim = s.prepared(
                "INSERT INTO _apisync.invocation_streams
                     (invocation, job, partition, shard, status, holder, claimed_at, finished_at)
                 VALUES ($1, $2, $3, $4, 'running', $5, $6, NULL)
                 ON CONFLICT (invocation, job, partition) DO UPDATE SET status = 'running',
                     holder = excluded.holder, claimed_at = excluded.claimed_at,
                     finished_at = NULL",
            )?;
            s.client.execute(
                &claim,
                &[&inv, &key.job, &key.partition, &shard_int(shard), &me, &at],
            )?;
            if let Some(old) = old {
                s.client.execute(
                    "UPDATE _apisync.runs SET status = 'interrupted', finished_at = $2,
                         error = coalesce(error, $4)
                     WHERE status = 'running' AND job = $3
                       AND id IN (SELECT run_id FROM _apisync.run_shards WHERE holder = $1)",
                    &[&old, &at, &key.job, &TAKEN_OVER],
                )?;
            }
            Ok(())
        })?;
        Ok(StreamClaim::Claimed { taken_from })
    }

    pub(crate) fn end_claimed_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        holder: &str,
        end: ClaimEnd,
    ) -> Result<bool, StoreError> {
        let err = stream_err(stream, "record the end of its claim");
        let (invocation, key, holder) =
            (invocation.to_string(), stream.clone(), holder.to_string());
        self.conn.run(move |s| {
            let changed = match end {
                ClaimEnd::Release => s.client.execute(
                    "DELETE FROM _apisync.invocation_streams
                     WHERE invocation = $1 AND job = $2 AND partition = $3 AND holder = $4
                       AND status = 'running'",
                    &[&invocation, &key.job, &key.partition, &holder],
                ),
                ClaimEnd::Done | ClaimEnd::Failed => {
                    let status = if end == ClaimEnd::Done {
                        "done"
                    } else {
                        "failed"
                    };
                    // See `store/shards.rs`: `done` already by a pass
                    // another process completed meanwhile.
                    s.client.execute(
                        "UPDATE _apisync.invocation_streams
                         SET status = $5, finished_at = coalesce(finished_at, $6)
                         WHERE invocation = $1 AND job = $2 AND partition = $3 AND holder = $4
                           AND (status = 'running' OR (status = 'done' AND $5 = 'done'))",
                        &[
                            &invocation,
                            &key.job,
                            &key.partition,
                            &holder,
                            &status,
                            &now(),
                        ],
                    )
                }
            };
            changed.map(|n| n == 1).map_err(err)
        })?
    }

    pub(crate) fn done_in_invocation(
        &self,
        invocation: &str,
        job: &str,
        partitions: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        let (invocation, job) = (invocation.to_string(), job.to_string());
        let partitions: Vec<String> = partitions.iter().map(|p| p.to_string()).collect();
        self.conn.run(move |s| {
            s.client
                .query(
                    "SELECT partition FROM _apisync.invocation_streams
                     WHERE invocation = $1 AND job = $2 AND status = 'done'
                       AND partition = ANY($3)",
                    &[&invocation, &job, &partitions],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .map_err(job_err(&job, "read its streams done in this invocation"))
        })?
    }

    pub(crate) fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<StreamState>, StoreError> {
        let (inv, job_name) = (invocation.to_string(), job.to_string());
        let cutoff = stale_cutoff(stale_after);
        let rows = self.conn.run(move |s| {
            s.client
                .query(
                    "SELECT st.partition, st.status, st.holder, EXISTS (
                         SELECT 1 FROM _apisync.invocation_holders h
                         WHERE h.invocation = st.invocation AND h.holder = st.holder
                           AND h.ended_at IS NULL AND h.heartbeat_at COLLATE \"C\" >= $3)
                     FROM _apisync.invocation_streams st
                     WHERE st.invocation = $1 AND st.job = $2 AND st.status <> 'done'
                     ORDER BY st.partition",
                    &[&inv, &job_name, &cutoff],
                )
                .map(|rows| {
                    rows.iter()
                        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
                        .collect::<Vec<(String, String, String, bool)>>()
                })
                .map_err(job_err(&job_name, "read its streams in this invocation"))
        })??;
        Ok(rows
            .into_iter()
            .map(|(partition, status, holder, fresh)| StreamState {
                partition,
                status,
                holder_alive: fresh && !is_dead(&holder),
                holder,
            })
            .collect())
    }

    pub(crate) fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
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

    /// See `store/shard_runs.rs`. Liveness is read in one statement and
    /// `is_dead` asked here; a holder found dead stays dead, so closing its
    /// runs in a second statement is safe.
    pub(crate) fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
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

    pub(crate) fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError> {
        let (invocation, job) = (invocation.to_string(), job.to_string());
        self.conn.run(move |s| {
            job_completed(&mut s.client, &invocation, &job).map_err(job_err(
                &job,
                "read whether it completed in this invocation",
            ))
        })?
    }

    pub(crate) fn complete_sharded_pass(
        &mut self,
        invocation: &str,
        job: &str,
        table: &TableSpec,
    ) -> Result<bool, StoreError> {
        let (invocation, job, table) = (invocation.to_string(), job.to_string(), table.clone());
        self.conn.run(move |s| {
            let err = job_err(&job, "complete its pass in this invocation");
            let mut tx = s.client.transaction().map_err(&err)?;
            xact_lock(&mut tx, &job_lock(&invocation, &job)).map_err(&err)?;
            if job_completed(&mut tx, &invocation, &job).map_err(&err)? {
                return Ok(false);
            }
            let at = now();
            tx.execute(
                "INSERT INTO _apisync.invocation_streams
                     (invocation, job, partition, shard, status, holder, claimed_at, finished_at)
                 SELECT $1, job, partition, -1, 'done', '', finished_at, finished_at
                 FROM _apisync.finished_streams WHERE job = $2 AND NOT starts_with(partition, $3)
                 ON CONFLICT (invocation, job, partition) DO UPDATE SET status = 'done',
                     finished_at = coalesce(invocation_streams.finished_at, excluded.finished_at)",
                &[&invocation, &job, &BACKFILL_PREFIX],
            )
            .map_err(&err)?;
            end_pass(&mut tx, &job, &table)?;
            tx.execute(
                "INSERT INTO _apisync.invocation_jobs (invocation, job, completed_at) VALUES ($1, $2, $3)",
                &[&invocation, &job, &at],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)?;
            Ok(true)
        })?
    }

    pub(crate) fn begin_shard_run(
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

fn job_completed(c: &mut impl GenericClient, invocation: &str, job: &str) -> PgResult<bool> {
    c.query_one(
        "SELECT EXISTS (SELECT 1 FROM _apisync.invocation_jobs WHERE invocation = $1 AND job = $2)",
        &[&invocation, &job],
    )
    .map(|r| r.get(0))
}

/// The state of `key`'s claim in `invocation`, read under the claim's locks.
fn find_claim(
    s: &mut super::conn::Session,
    invocation: &str,
    key: &StreamKey,
    cutoff: &str,
) -> PgResult<Found> {
    let finished = s.prepared(
        "SELECT EXISTS (SELECT 1 FROM _apisync.invocation_jobs WHERE invocation = $1 AND job = $2)
             OR EXISTS (SELECT 1 FROM _apisync.finished_streams WHERE job = $2 AND partition = $3)",
    )?;
    if s.client
        .query_one(&finished, &[&invocation, &key.job, &key.partition])?
        .get::<_, bool>(0)
    {
        return Ok(Found::Done);
    }
    let claim = s.prepared(
        "SELECT st.status, st.holder, EXISTS (
             SELECT 1 FROM _apisync.invocation_holders h
             WHERE h.invocation = st.invocation AND h.holder = st.holder
               AND h.ended_at IS NULL AND h.heartbeat_at COLLATE \"C\" >= $4)
         FROM _apisync.invocation_streams st
         WHERE st.invocation = $1 AND st.job = $2 AND st.partition = $3",
    )?;
    let row = s
        .client
        .query_opt(&claim, &[&invocation, &key.job, &key.partition, &cutoff])?;
    Ok(match row {
        None => Found::Free,
        Some(r) => {
            let (status, holder): (String, String) = (r.get(0), r.get(1));
            match status.as_str() {
                "done" => Found::Done,
                "failed" => Found::Failed { holder },
                _ => Found::Running {
                    holder,
                    fresh: r.get(2),
                },
            }
        }
    })
}

/// Inside a page's transaction: fail with [`StoreError::ClaimLost`] unless
/// `claim` still holds `stream`. `FOR SHARE` keeps a takeover (an UPDATE of
/// that row) waiting until this page has committed or rolled back.
pub(crate) fn check_claim(
    tx: &mut postgres::Transaction<'_>,
    stream: &StreamKey,
    claim: Option<&HeldClaim>,
) -> Result<(), StoreError> {
    let Some(claim) = claim else { return Ok(()) };
    let held = tx
        .query_opt(
            "SELECT 1 FROM _apisync.invocation_streams
             WHERE invocation = $1 AND job = $2 AND partition = $3 AND holder = $4
               AND status = 'running'
             FOR SHARE",
            &[
                &claim.invocation,
                &stream.job,
                &stream.partition,
                &claim.holder,
            ],
        )
        .map_err(|source| StoreError::Stream {
            job: stream.job.clone(),
            partition: stream.partition.clone(),
            action: "check its claim",
            source: Box::new(source),
        })?
        .is_some();
    if held {
        Ok(())
    } else {
        Err(StoreError::ClaimLost {
            job: stream.job.clone(),
            partition: stream.partition.clone(),
        })
    }
}
