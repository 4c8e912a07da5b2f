//! Stream claims on PostgreSQL: the same semantics as `sqlite/claims.rs`
//! (read its module doc), with PostgreSQL's locks in place of SQLite's
//! `BEGIN IMMEDIATE`:
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

use std::collections::HashSet;
use std::time::Duration;

use postgres::GenericClient;

use super::PgStore;
use super::errors::{job_err, stream_err};
use super::invocations::shard_int;
use super::locks::{xact_lock, xact_lock_shared};
use super::open_tx::OpenTx;
use super::streams::end_pass;
use crate::store::backend::{Claims, IsDead};
use crate::store::error::StoreError;
use crate::store::rules::{BACKFILL_PREFIX, Found, TAKEN_OVER, decide_claim, now, stale_cutoff};
use crate::store::types::{ClaimEnd, StreamClaim, StreamKey, StreamState, TableSpec};

type PgResult<T> = Result<T, postgres::Error>;

fn job_lock(invocation: &str, job: &str) -> String {
    format!("shard-job:{invocation}:{job}")
}

impl Claims for PgStore {
    #[allow(clippy::too_many_arguments)]
    fn claim_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        shard: u32,
        holder: &str,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: IsDead<'_>,
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

    fn end_claimed_stream(
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
                    // See `sqlite/claims.rs`: `done` already by a pass
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

    fn done_in_invocation(
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

    fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
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

    fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError> {
        let (invocation, job) = (invocation.to_string(), job.to_string());
        self.conn.run(move |s| {
            job_completed(&mut s.client, &invocation, &job).map_err(job_err(
                &job,
                "read whether it completed in this invocation",
            ))
        })?
    }

    fn complete_sharded_pass(
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
    match row {
        None => Ok(Found::Free),
        Some(r) => Found::from_row(r.get::<_, &str>(0), r.get(1), |_| Ok(r.get(2))),
    }
}
