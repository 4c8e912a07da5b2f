//! Stream claims of a sharded invocation, so that every stream is synced
//! exactly once:
//!
//! - `invocation_streams`: per (invocation, job, partition) the claim
//!   (`running`, the stream lease) and then the completion (`done` or
//!   `failed`). A `done` stream is never run again in that invocation.
//! - `invocation_jobs`: jobs whose pass completed in the invocation; a child
//!   job on any shard waits for its parent's row here.
//!
//! Every write that decides between processes (claiming, completing a
//! pass) runs in one `BEGIN IMMEDIATE` transaction, so two processes racing
//! for the same stream or pass cannot both win; who wins is
//! `rules::decide_claim`.

use std::collections::HashSet;
use std::time::Duration;

use rusqlite::{OptionalExtension, TransactionBehavior};

use super::SqliteStore;
use super::errors::{job_err, stream_err};
use super::invocations::holder_alive;
use super::streams::end_pass;
use crate::store::backend::{Claims, IsDead};
use crate::store::error::StoreError;
use crate::store::rules::{BACKFILL_END, BACKFILL_PREFIX, Found, TAKEN_OVER, decide_claim, now};
use crate::store::types::{ClaimEnd, StreamClaim, StreamKey, StreamState, TableSpec};

impl Claims for SqliteStore {
    /// Claim `stream` (assigned by the hash to shard `shard`) for `holder`
    /// in `invocation`, in one `BEGIN IMMEDIATE` transaction:
    ///
    /// - the job's pass completed in the invocation, or the stream is in the
    ///   job's finished set, or its row is `done`: [`StreamClaim::Done`];
    /// - no row: insert it `running` for `holder`;
    /// - `failed`: taken again when `retry_failed`, else reported;
    /// - `running` by another holder that is alive: [`StreamClaim::Busy`];
    ///   by a dead or stale one: taken over, and that holder's runs still
    ///   `running` are marked `interrupted`.
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
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let finished: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM _apisync_invocation_jobs WHERE invocation = ?1 AND job = ?2)
                     OR EXISTS (SELECT 1 FROM _apisync_finished_streams WHERE job = ?2 AND partition = ?3)",
                (invocation, &stream.job, &stream.partition),
                |r| r.get(0),
            )
            .map_err(err)?;
        if finished {
            return Ok(StreamClaim::Done);
        }
        let row: Option<(String, String)> = tx
            .query_row(
                "SELECT status, holder FROM _apisync_invocation_streams
                 WHERE invocation = ?1 AND job = ?2 AND partition = ?3",
                (invocation, &stream.job, &stream.partition),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(err)?;
        let found = match row {
            None => Found::Free,
            Some((status, other)) => Found::from_row(&status, other, |other| {
                // Alive or not only matters for another holder's claim.
                Ok(other != holder
                    && holder_alive(&tx, invocation, other, stale_after, &|_| false)
                        .map_err(err)?)
            })?,
        };
        let taken_from = match decide_claim(found, holder, retry_failed, is_dead) {
            Ok(taken_from) => taken_from,
            Err(answer) => return Ok(answer),
        };
        let at = now();
        tx.execute(
            "INSERT INTO _apisync_invocation_streams
                 (invocation, job, partition, shard, status, holder, claimed_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, 'running', ?5, ?6, NULL)
             ON CONFLICT (invocation, job, partition) DO UPDATE SET status = 'running',
                 holder = excluded.holder, claimed_at = excluded.claimed_at, finished_at = NULL",
            (
                invocation,
                &stream.job,
                &stream.partition,
                shard,
                holder,
                &at,
            ),
        )
        .map_err(err)?;
        if let Some(old) = &taken_from {
            tx.execute(
                "UPDATE _apisync_runs SET status = 'interrupted', finished_at = ?2,
                     error = coalesce(error, ?4)
                 WHERE status = 'running' AND job = ?3
                   AND id IN (SELECT run_id FROM _apisync_run_shards WHERE holder = ?1)",
                (old, &at, &stream.job, TAKEN_OVER),
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(StreamClaim::Claimed { taken_from })
    }

    /// The end of a stream `holder` claimed. False when the claim was no
    /// longer `holder`'s (another process took it over after this one
    /// looked dead): nothing is changed then.
    fn end_claimed_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        holder: &str,
        end: ClaimEnd,
    ) -> Result<bool, StoreError> {
        let status = match end {
            ClaimEnd::Done => "done",
            ClaimEnd::Failed => "failed",
            ClaimEnd::Release => "",
        };
        let changed = if end == ClaimEnd::Release {
            self.conn.execute(
                "DELETE FROM _apisync_invocation_streams
                 WHERE invocation = ?1 AND job = ?2 AND partition = ?3 AND holder = ?4
                   AND status = 'running'",
                (invocation, &stream.job, &stream.partition, holder),
            )
        } else {
            // `done` already: another process completed the job's pass
            // between this stream's last page and this mark (the pass
            // marks every finished stream done, keeping its holder).
            self.conn.execute(
                "UPDATE _apisync_invocation_streams SET status = ?5, finished_at = coalesce(finished_at, ?6)
                 WHERE invocation = ?1 AND job = ?2 AND partition = ?3 AND holder = ?4
                   AND (status = 'running' OR (status = 'done' AND ?5 = 'done'))",
                (
                    invocation,
                    &stream.job,
                    &stream.partition,
                    holder,
                    status,
                    now(),
                ),
            )
        };
        changed
            .map(|n| n == 1)
            .map_err(stream_err(stream, "record the end of its claim"))
    }

    /// Which of `partitions` of `job` are `done` in `invocation`.
    fn done_in_invocation(
        &self,
        invocation: &str,
        job: &str,
        partitions: &[&str],
    ) -> Result<HashSet<String>, StoreError> {
        let err = job_err(job, "read its streams done in this invocation");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT 1 FROM _apisync_invocation_streams
                 WHERE invocation = ?1 AND job = ?2 AND partition = ?3 AND status = 'done'",
            )
            .map_err(err)?;
        let mut done = HashSet::new();
        for &partition in partitions {
            if stmt.exists((invocation, job, partition)).map_err(err)? {
                done.insert(partition.to_string());
            }
        }
        Ok(done)
    }

    /// The claimed streams of `job` in `invocation` that are not done
    /// (`running` or `failed`), with whether each holder is alive.
    fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<Vec<StreamState>, StoreError> {
        let err = job_err(job, "read its streams in this invocation");
        let rows: Vec<(String, String, String)> = {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT partition, status, holder FROM _apisync_invocation_streams
                     WHERE invocation = ?1 AND job = ?2 AND status <> 'done' ORDER BY partition",
                )
                .map_err(err)?;
            stmt.query_map((invocation, job), |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?
        };
        rows.into_iter()
            .map(|(partition, status, holder)| {
                let holder_alive =
                    holder_alive(&self.conn, invocation, &holder, stale_after, is_dead)
                        .map_err(err)?;
                Ok(StreamState {
                    partition,
                    status,
                    holder,
                    holder_alive,
                })
            })
            .collect()
    }

    /// Whether `job`'s pass completed in `invocation` (see
    /// [`crate::store::Claims::complete_sharded_pass`]).
    fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM _apisync_invocation_jobs WHERE invocation = ?1 AND job = ?2)",
                (invocation, job),
                |r| r.get(0),
            )
            .map_err(job_err(job, "read whether it completed in this invocation"))
    }

    /// Every stream of `job`'s pass is done (the caller checked): in one
    /// `BEGIN IMMEDIATE` transaction, unless another process did it first
    /// (then false and nothing changes): mark every stream of the finished
    /// set `done` in `invocation` (so clearing the set cannot make them look
    /// runnable again), swap a replace table in, clear the finished set
    /// (the job's own pass; a backfill's is left) and record the job as
    /// completed in the invocation.
    fn complete_sharded_pass(
        &mut self,
        invocation: &str,
        job: &str,
        table: &TableSpec,
    ) -> Result<bool, StoreError> {
        let err = job_err(job, "complete its pass in this invocation");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let done: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM _apisync_invocation_jobs WHERE invocation = ?1 AND job = ?2)",
                (invocation, job),
                |r| r.get(0),
            )
            .map_err(err)?;
        if done {
            return Ok(false);
        }
        let at = now();
        tx.execute(
            "INSERT INTO _apisync_invocation_streams
                 (invocation, job, partition, shard, status, holder, claimed_at, finished_at)
             SELECT ?1, job, partition, -1, 'done', '', finished_at, finished_at
             FROM _apisync_finished_streams WHERE job = ?2 AND NOT (partition >= ?3 AND partition < ?4)
             ON CONFLICT (invocation, job, partition) DO UPDATE SET status = 'done',
                 finished_at = coalesce(_apisync_invocation_streams.finished_at, excluded.finished_at)",
            (invocation, job, BACKFILL_PREFIX, BACKFILL_END),
        )
        .map_err(err)?;
        end_pass(&tx, job, table)?;
        tx.execute(
            "INSERT INTO _apisync_invocation_jobs (invocation, job, completed_at) VALUES (?1, ?2, ?3)",
            (invocation, job, &at),
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(true)
    }
}
