//! Sharded runs: what several processes of one *invocation* (the pods of a
//! Kubernetes Indexed Job, or `run --shard I/N --invocation ID` by hand)
//! share through the database so that every stream is synced exactly once.
//!
//! - `invocations`: when the invocation started (its "now" for date
//!   partitions, the same on every shard).
//! - `invocation_holders`: one row per process with a heartbeat. A stream
//!   lease is only as alive as its holder's row: one heartbeat per process,
//!   not one per stream.
//! - `invocation_streams`: per (invocation, job, partition) the claim
//!   (`running`, the stream lease) and then the completion (`done` or
//!   `failed`). A `done` stream is never run again in that invocation.
//! - `invocation_jobs`: jobs whose pass completed in the invocation; a child
//!   job on any shard waits for its parent's row here.
//! - `run_shards`: which shard of which invocation wrote a `runs` row.
//!
//! Every write that decides between processes (claiming, completing a
//! pass) runs in one `BEGIN IMMEDIATE` transaction, so two processes racing
//! for the same stream or pass cannot both win. `postgres/shards.rs` does
//! the same on PostgreSQL with advisory transaction locks.
//!
//! Liveness of another holder is decided here from its row (not ended,
//! heartbeat newer than `stale_after`) plus the caller's `is_dead` test (a
//! pid gone on this host), as for job leases.

use std::collections::{BTreeSet, HashSet};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior};

use super::error::StoreError;
use super::leases::stale_cutoff;
use super::open::{SqliteStore, now};
use super::streams::end_pass;
use super::streams::{BACKFILL_END, BACKFILL_PREFIX, job_err, stream_err};
use super::types::{RunId, StreamKey, TableSpec};

/// How long the per-stream rows of an invocation are kept: a rerun of an
/// invocation older than this runs its unfinished jobs' streams again.
pub(crate) const KEEP_STREAMS: Duration = Duration::from_secs(7 * 24 * 3600);

/// The error of a run whose streams another process took over.
pub(crate) const TAKEN_OVER: &str =
    "the process running it stopped (killed or crashed) before it finished";

/// The answer to [`Store::claim_stream`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamClaim {
    /// This holder runs the stream now. `taken_from` names a dead or stale
    /// holder whose claim it replaced (for the log).
    Claimed { taken_from: Option<String> },
    /// Done in this invocation, finished in the job's current pass, or the
    /// job's pass already completed in this invocation: nothing to do.
    Done,
    /// A live holder runs it.
    Busy { holder: String },
    /// It failed in this invocation and the caller did not ask to retry.
    Failed { holder: String },
}

/// How a claimed stream ended, for [`Store::end_claimed_stream`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimEnd {
    /// Its last page committed: never run again in this invocation.
    Done,
    /// It failed: children of its job are skipped; a rerun of the shard
    /// retries it.
    Failed,
    /// Interrupted (SIGTERM) before its end: the claim is dropped so that a
    /// rerun or a stealing shard takes it at once, from its checkpoint.
    Release,
}

/// What a claim found under its lock, before [`decide_claim`].
pub(crate) enum Found {
    /// Nothing to do (done, finished in the pass, or the pass completed).
    Done,
    /// Never claimed in this invocation.
    Free,
    Failed {
        holder: String,
    },
    /// `running` for `holder`; `fresh`: its row is not ended and its
    /// heartbeat is recent (`is_dead` is asked by [`decide_claim`]).
    Running {
        holder: String,
        fresh: bool,
    },
}

/// Who runs a stream, whichever database keeps the claims: `Ok(taken_from)`
/// when `holder` claims it (naming the dead or stale holder it takes over,
/// if any), or the [`StreamClaim`] to answer without claiming.
pub(crate) fn decide_claim(
    found: Found,
    holder: &str,
    retry_failed: bool,
    is_dead: &dyn Fn(&str) -> bool,
) -> Result<Option<String>, StreamClaim> {
    match found {
        Found::Done => Err(StreamClaim::Done),
        Found::Failed { holder } if !retry_failed => Err(StreamClaim::Failed { holder }),
        Found::Free | Found::Failed { .. } => Ok(None),
        Found::Running { holder: other, .. } if other == holder => Ok(None),
        Found::Running {
            holder: other,
            fresh,
        } => {
            if fresh && !is_dead(&other) {
                Err(StreamClaim::Busy { holder: other })
            } else {
                Ok(Some(other))
            }
        }
    }
}

/// The claim this process holds on a stream it is running: every page of
/// that stream checks it inside the page's transaction, so a process whose
/// stream was taken over (it looked dead) cannot write after the new holder
/// started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeldClaim {
    pub invocation: String,
    pub holder: String,
}

/// Inside a page's transaction: fail with [`StoreError::ClaimLost`] unless
/// `claim` still holds `stream` (SQLite: the write lock of the transaction
/// keeps a takeover out until it commits).
pub(crate) fn check_claim(
    tx: &rusqlite::Transaction<'_>,
    stream: &StreamKey,
    claim: Option<&HeldClaim>,
) -> Result<(), StoreError> {
    let Some(claim) = claim else { return Ok(()) };
    let held: bool = tx
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM _apisync_invocation_streams
             WHERE invocation = ?1 AND job = ?2 AND partition = ?3 AND holder = ?4
               AND status = 'running')",
            (
                &claim.invocation,
                &stream.job,
                &stream.partition,
                &claim.holder,
            ),
            |r| r.get(0),
        )
        .map_err(stream_err(stream, "check its claim"))?;
    if held {
        Ok(())
    } else {
        Err(StoreError::ClaimLost {
            job: stream.job.clone(),
            partition: stream.partition.clone(),
        })
    }
}

/// A stream of an invocation that is not done, as [`Store::stream_states`]
/// reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamState {
    pub partition: String,
    /// `running` or `failed`; absent from the answer when never claimed.
    pub status: String,
    pub holder: String,
    /// Whether `holder` is alive (see the module doc).
    pub holder_alive: bool,
}

impl SqliteStore {
    /// Register `holder` (this process) as shard `shard` of `invocation`
    /// and return when the invocation started (RFC 3339, UTC): the first
    /// process to register sets it, every other one reads it back. Stream
    /// and holder rows of invocations started over 7 days ago are pruned.
    pub fn register_holder(
        &mut self,
        invocation: &str,
        holder: &str,
        shard: u32,
        steal: bool,
    ) -> Result<String, StoreError> {
        let err = db_err("register this process in the invocation");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let at = now();
        let started = begin_invocation(&tx, invocation, &at).map_err(err)?;
        // Per-stream rows of old invocations: one per stream per run adds
        // up. Which jobs completed in them (small) is kept for `--due`.
        let old = stale_cutoff(KEEP_STREAMS);
        for table in ["_apisync_invocation_streams", "_apisync_invocation_holders"] {
            tx.execute(
                &format!(
                    "DELETE FROM {table} WHERE invocation <> ?2 AND invocation IN
                         (SELECT invocation FROM _apisync_invocations WHERE started_at < ?1)"
                ),
                [&old, invocation],
            )
            .map_err(err)?;
        }
        tx.execute(
            "INSERT INTO _apisync_invocation_holders
                 (invocation, holder, shard, steal, started_at, heartbeat_at, ended_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5, NULL)
             ON CONFLICT (invocation, holder) DO UPDATE SET heartbeat_at = excluded.heartbeat_at,
                 ended_at = NULL",
            (invocation, holder, shard, steal, &at),
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(started)
    }

    /// When `invocation` started (RFC 3339, UTC), recording now if it is
    /// new: the clock `run --due` uses on every shard of it.
    pub fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError> {
        let err = db_err("record the start of the invocation");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let started = begin_invocation(&tx, invocation, &now()).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(started)
    }

    /// Per job: when its last success *before* `invocation` started, the
    /// base of its cron due time in a sharded `run --due`. A success is an
    /// unsharded succeeded run (its start), or an invocation in which the
    /// job's pass completed (the invocation's start). Runs of `invocation`
    /// itself are left out, so a shard that starts late decides as the
    /// first one did. Jobs that never succeeded are absent.
    pub fn last_success_starts_before(
        &self,
        jobs: &[&str],
        invocation: &str,
    ) -> Result<std::collections::BTreeMap<String, String>, StoreError> {
        let mut starts = std::collections::BTreeMap::new();
        for &job in jobs {
            let started: Option<String> = self
                .conn
                .prepare_cached(
                    "SELECT max(started_at) FROM (
                         SELECT started_at FROM _apisync_runs
                         WHERE job = ?1 AND status = 'succeeded'
                           AND id NOT IN (SELECT run_id FROM _apisync_run_shards)
                         UNION ALL
                         SELECT i.started_at FROM _apisync_invocation_jobs j
                         JOIN _apisync_invocations i ON i.invocation = j.invocation
                         WHERE j.job = ?1 AND j.invocation <> ?2)",
                )
                .and_then(|mut stmt| stmt.query_row((job, invocation), |r| r.get(0)))
                .map_err(job_err(job, "read its last successful run"))?;
            starts.extend(started.map(|at| (job.to_string(), at)));
        }
        Ok(starts)
    }

    /// A shard's run of a job that ran none of its streams (they were all
    /// other shards'): forget the row, so `status` and `run --due` only
    /// see runs that did something.
    pub fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError> {
        let err = |source| StoreError::Run {
            run_id: run_id.0,
            action: "forget an empty shard run",
            source: Box::new(source),
        };
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "DELETE FROM _apisync_run_shards WHERE run_id = ?1",
            [run_id.0],
        )
        .map_err(err)?;
        tx.execute(
            "DELETE FROM _apisync_runs WHERE id = ?1
             AND NOT EXISTS (SELECT 1 FROM _apisync_finished_streams WHERE run_id = ?1)",
            [run_id.0],
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Refresh `holder`'s heartbeat (every few seconds while it runs).
    pub fn renew_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE _apisync_invocation_holders SET heartbeat_at = ?3
                 WHERE invocation = ?1 AND holder = ?2",
                (invocation, holder, now()),
            )
            .map(drop)
            .map_err(db_err("renew this process's heartbeat"))
    }

    /// `holder` exits: its claims still `running` (none, unless it was
    /// stopped mid-stream) are free for others at once.
    pub fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE _apisync_invocation_holders SET ended_at = ?3
                 WHERE invocation = ?1 AND holder = ?2",
                (invocation, holder, now()),
            )
            .map(drop)
            .map_err(db_err("record the end of this process"))
    }

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
    pub fn claim_stream(
        &mut self,
        invocation: &str,
        stream: &StreamKey,
        shard: u32,
        holder: &str,
        retry_failed: bool,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
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
            Some((status, _)) if status == "done" => Found::Done,
            Some((status, other)) if status == "failed" => Found::Failed { holder: other },
            Some((_, other)) => {
                // Alive or not only matters for another holder's claim.
                let fresh = other != holder
                    && holder_alive(&tx, invocation, &other, stale_after, &|_| false)
                        .map_err(err)?;
                Found::Running {
                    holder: other,
                    fresh,
                }
            }
        };
        let taken_from = match decide_claim(found, holder, retry_failed, &is_dead) {
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
    pub fn end_claimed_stream(
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
    pub fn done_in_invocation(
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
    pub fn stream_states(
        &self,
        invocation: &str,
        job: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
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
                    holder_alive(&self.conn, invocation, &holder, stale_after, &is_dead)
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

    /// Shards of `invocation` with at least one live process (registered,
    /// not ended, fresh heartbeat, not known dead).
    pub fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: impl Fn(&str) -> bool,
    ) -> Result<BTreeSet<u32>, StoreError> {
        let err = db_err("read the live processes of the invocation");
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT holder, shard FROM _apisync_invocation_holders
                 WHERE invocation = ?1 AND ended_at IS NULL AND heartbeat_at >= ?2",
            )
            .map_err(err)?;
        let rows = stmt
            .query_map((invocation, stale_cutoff(stale_after)), |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, u32>(1)?))
            })
            .map_err(err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(err)?;
        Ok(rows
            .into_iter()
            .filter(|(holder, _)| !is_dead(holder))
            .map(|(_, shard)| shard)
            .collect())
    }

    /// Whether `job`'s pass completed in `invocation` (see
    /// [`Store::complete_sharded_pass`]).
    pub fn job_completed_in(&self, invocation: &str, job: &str) -> Result<bool, StoreError> {
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
    pub fn complete_sharded_pass(
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

    /// Start a run of `job` as shard `shard` of `invocation`, run by
    /// `holder`, in one transaction: a run row without its shard would never
    /// be marked interrupted by whoever takes its streams over.
    pub fn begin_shard_run(
        &mut self,
        job: &str,
        invocation: &str,
        shard: u32,
        holder: &str,
    ) -> Result<RunId, StoreError> {
        let err = job_err(job, "record the start of a shard's run");
        let tx = self.conn.transaction().map_err(err)?;
        tx.execute(
            "INSERT INTO _apisync_runs (job, started_at, status) VALUES (?1, ?2, 'running')",
            (job, now()),
        )
        .map_err(err)?;
        let run_id = tx.last_insert_rowid();
        tx.execute(
            "INSERT INTO _apisync_run_shards (run_id, invocation, shard, holder) VALUES (?1, ?2, ?3, ?4)",
            (run_id, invocation, shard, holder),
        )
        .map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(RunId(run_id))
    }
}

/// Record `invocation` as started at `at` unless it is known; its start.
fn begin_invocation(conn: &Connection, invocation: &str, at: &str) -> rusqlite::Result<String> {
    conn.execute(
        "INSERT INTO _apisync_invocations (invocation, started_at) VALUES (?1, ?2)
         ON CONFLICT (invocation) DO NOTHING",
        (invocation, at),
    )?;
    conn.query_row(
        "SELECT started_at FROM _apisync_invocations WHERE invocation = ?1",
        [invocation],
        |r| r.get(0),
    )
}

/// A holder is alive when its row is not ended, its heartbeat is fresh and
/// `is_dead` does not know better. No row: it never registered, so dead.
pub(super) fn holder_alive(
    conn: &Connection,
    invocation: &str,
    holder: &str,
    stale_after: Duration,
    is_dead: &impl Fn(&str) -> bool,
) -> rusqlite::Result<bool> {
    let fresh: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM _apisync_invocation_holders
                 WHERE invocation = ?1 AND holder = ?2 AND ended_at IS NULL
                   AND heartbeat_at >= ?3)",
        (invocation, holder, stale_cutoff(stale_after)),
        |r| r.get(0),
    )?;
    Ok(fresh && !is_dead(holder))
}

fn db_err(action: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + Copy {
    move |source| StoreError::Database {
        action,
        source: Box::new(source),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::WriteMode;
    use crate::store::Store;
    use crate::store::test_db::backend_test;

    const MINUTE: Duration = Duration::from_secs(60);

    fn alive(_: &str) -> bool {
        false
    }

    fn spec(mode: WriteMode) -> TableSpec {
        TableSpec {
            table: "orders".into(),
            mode,
            columns: Vec::new(),
            has_primary_key: false,
        }
    }

    fn succeeded() -> crate::store::RunOutcome {
        crate::store::RunOutcome {
            status: crate::store::RunStatus::Succeeded,
            pages: 0,
            records: 0,
            error: None,
        }
    }

    fn claim(store: &mut Store, holder: &str, dead: &dyn Fn(&str) -> bool) -> StreamClaim {
        store
            .claim_stream(
                "inv",
                &StreamKey::new("orders", "eu"),
                0,
                holder,
                false,
                MINUTE,
                dead,
            )
            .unwrap()
    }

    backend_test! {
    fn a_stream_is_claimed_once_until_its_holder_dies_and_done_is_final(db) {
        let mut store = db.store();
        let key = StreamKey::new("orders", "eu");
        let first = store.register_holder("inv", "a", 0, false).unwrap();
        let second = store.register_holder("inv", "b", 1, true).unwrap();
        assert_eq!(first, second, "one start time per invocation");
        assert_eq!(store.invocation_started_at("inv").unwrap(), first);
        assert_eq!(
            claim(&mut store, "a", &alive),
            StreamClaim::Claimed { taken_from: None }
        );
        assert_eq!(
            claim(&mut store, "b", &alive),
            StreamClaim::Busy { holder: "a".into() }
        );
        let states = store.stream_states("inv", "orders", MINUTE, alive).unwrap();
        assert_eq!(
            states,
            [StreamState {
                partition: "eu".into(),
                status: "running".into(),
                holder: "a".into(),
                holder_alive: true,
            }]
        );
        assert_eq!(store.live_shards("inv", MINUTE, alive).unwrap(), BTreeSet::from([0, 1]));
        // "a" dies (kill -9): "b" takes the stream over.
        let a_is_dead = |h: &str| h == "a";
        assert!(!store.stream_states("inv", "orders", MINUTE, a_is_dead).unwrap()[0].holder_alive);
        assert_eq!(store.live_shards("inv", MINUTE, a_is_dead).unwrap(), BTreeSet::from([1]));
        assert_eq!(
            claim(&mut store, "b", &a_is_dead),
            StreamClaim::Claimed {
                taken_from: Some("a".into())
            }
        );
        assert!(
            !store
                .end_claimed_stream("inv", &key, "a", ClaimEnd::Done)
                .unwrap(),
            "the old holder no longer owns it"
        );
        assert!(
            store
                .end_claimed_stream("inv", &key, "b", ClaimEnd::Done)
                .unwrap()
        );
        assert_eq!(claim(&mut store, "a", &alive), StreamClaim::Done);
        assert!(store.stream_states("inv", "orders", MINUTE, alive).unwrap().is_empty());
        // Another invocation is a new pass of its own.
        assert_eq!(
            store
                .claim_stream("next", &key, 0, "a", false, MINUTE, alive)
                .unwrap(),
            StreamClaim::Claimed { taken_from: None }
        );
    }
    }

    backend_test! {
    /// A process whose stream was taken over while it still ran (it looked
    /// dead: a stalled writer, a frozen VM) cannot write another page of it:
    /// the page is refused inside its transaction, and the new holder's
    /// checkpoint and rows stay as they are.
    fn a_page_of_a_stream_taken_over_is_refused_and_writes_nothing(db) {
        let (mut a, mut b) = (db.store(), db.store());
        let table = spec(WriteMode::Append);
        a.prepare_table(&table).unwrap();
        let run = a.begin_run("orders").unwrap();
        let stream = StreamKey::new("orders", "eu");
        let page = |id: u32| {
            vec![crate::record::Record {
                json: format!(r#"{{"id":{id}}}"#),
                pk: None,
                columns: Vec::new(),
            }]
        };
        assert_eq!(claim(&mut a, "a", &alive), StreamClaim::Claimed { taken_from: None });
        a.apply_page(&stream, &table, run, &page(1), "{\"offset\":1}").unwrap();
        assert_eq!(
            claim(&mut b, "b", &|h: &str| h == "a"),
            StreamClaim::Claimed { taken_from: Some("a".into()) }
        );
        b.apply_page(&stream, &table, run, &page(2), "{\"offset\":2}").unwrap();
        let refused = a
            .apply_page(&stream, &table, run, &page(3), "{\"offset\":3}")
            .unwrap_err();
        assert!(matches!(refused, StoreError::ClaimLost { .. }), "{refused}");
        assert!(refused.to_string().contains("another process took this stream over"), "{refused}");
        let last = a.apply_last_page(&stream, &table, run, &page(4), None).unwrap_err();
        assert!(matches!(last, StoreError::ClaimLost { .. }), "{last}");
        let end = a.finish_stream(&stream, run, None).unwrap_err();
        assert!(matches!(end, StoreError::ClaimLost { .. }), "{end}");
        assert_eq!(b.count_rows("orders").unwrap(), 2, "pages 1 and 2 only");
        assert_eq!(b.load_checkpoint(&stream).unwrap().as_deref(), Some("{\"offset\":2}"));
        assert!(b.finished_partitions("orders").unwrap().is_empty());
        // The new holder finishes the stream as usual.
        b.apply_last_page(&stream, &table, run, &page(5), None).unwrap();
        assert_eq!(b.count_rows("orders").unwrap(), 3);
    }
    }

    backend_test! {
    /// Taking a dead holder's stream over marks that holder's running run of
    /// the job interrupted (with why), and leaves other runs alone.
    fn taking_a_stream_over_interrupts_the_dead_holders_run(db) {
        let mut store = db.store();
        store.register_holder("inv", "a", 0, false).unwrap();
        store.begin_shard_run("orders", "inv", 0, "a").unwrap();
        store.begin_shard_run("items", "inv", 0, "a").unwrap();
        claim(&mut store, "a", &alive);
        assert_eq!(
            claim(&mut store, "b", &|h: &str| h == "a"),
            StreamClaim::Claimed {
                taken_from: Some("a".into())
            }
        );
        let runs = store.query_text("SELECT job, status, error FROM _apisync_runs ORDER BY id");
        assert_eq!(
            runs,
            [
                [
                    Some("orders".to_string()),
                    Some("interrupted".to_string()),
                    Some(TAKEN_OVER.to_string())
                ],
                [Some("items".to_string()), Some("running".to_string()), None]
            ]
        );
    }
    }

    backend_test! {
    fn an_ended_holder_frees_its_claims_and_failed_streams_are_retried_only_on_request(db) {
        let mut store = db.store();
        let key = StreamKey::new("orders", "");
        store.register_holder("inv", "a", 0, false).unwrap();
        store.renew_holder("inv", "a").unwrap();
        store
            .claim_stream("inv", &key, 0, "a", false, MINUTE, alive)
            .unwrap();
        store.end_holder("inv", "a").unwrap();
        assert_eq!(store.live_shards("inv", MINUTE, alive).unwrap(), BTreeSet::new());
        assert_eq!(
            store
                .claim_stream("inv", &key, 0, "b", false, MINUTE, alive)
                .unwrap(),
            StreamClaim::Claimed {
                taken_from: Some("a".into())
            }
        );
        store
            .end_claimed_stream("inv", &key, "b", ClaimEnd::Failed)
            .unwrap();
        assert_eq!(
            store
                .claim_stream("inv", &key, 0, "c", false, MINUTE, alive)
                .unwrap(),
            StreamClaim::Failed { holder: "b".into() }
        );
        assert_eq!(
            store.stream_states("inv", "orders", MINUTE, alive).unwrap(),
            [StreamState {
                partition: String::new(),
                status: "failed".into(),
                holder: "b".into(),
                holder_alive: false,
            }],
            "b never registered"
        );
        assert_eq!(
            store
                .claim_stream("inv", &key, 0, "c", true, MINUTE, alive)
                .unwrap(),
            StreamClaim::Claimed { taken_from: None }
        );
        assert!(
            store
                .end_claimed_stream("inv", &key, "c", ClaimEnd::Release)
                .unwrap()
        );
        assert!(
            store
                .stream_states("inv", "orders", MINUTE, alive)
                .unwrap()
                .is_empty()
        );
    }
    }

    backend_test! {
    /// A holder whose heartbeat is older than the limit is stale even when
    /// `is_dead` cannot tell (it ran on another node).
    fn a_stale_heartbeat_frees_a_claim(db) {
        let mut store = db.store();
        store.exec_sql(
            "INSERT INTO _apisync_invocation_holders VALUES ('inv', 'far', 1, FALSE,
                 '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:00.000Z', NULL);
             INSERT INTO _apisync_invocation_streams VALUES ('inv', 'orders', 'eu', 1, 'running', 'far',
                 '2020-01-01T00:00:00.000Z', NULL);",
        );
        assert_eq!(store.live_shards("inv", MINUTE, alive).unwrap(), BTreeSet::new());
        assert_eq!(
            claim(&mut store, "near", &alive),
            StreamClaim::Claimed {
                taken_from: Some("far".into())
            }
        );
    }
    }

    backend_test! {
    fn registering_prunes_stream_rows_of_old_invocations_but_keeps_their_jobs(db) {
        let mut store = db.store();
        store.exec_sql(
            "INSERT INTO _apisync_invocations VALUES ('old', '2020-01-01T00:00:00.000Z');
             INSERT INTO _apisync_invocation_streams VALUES ('old', 'orders', 'eu', 0, 'done', 'h',
                 '2020-01-01T00:00:00.000Z', '2020-01-01T00:00:01.000Z');
             INSERT INTO _apisync_invocation_jobs VALUES ('old', 'orders', '2020-01-01T00:00:02.000Z');",
        );
        store.register_holder("new", "a", 0, false).unwrap();
        store
            .claim_stream(
                "new",
                &StreamKey::new("orders", "eu"),
                0,
                "a",
                false,
                MINUTE,
                alive,
            )
            .unwrap();
        assert_eq!(
            store.query_text("SELECT invocation FROM _apisync_invocation_streams"),
            [[Some("new".to_string())]]
        );
        assert!(store.job_completed_in("old", "orders").unwrap());
        // An old invocation still running (a long backfill, a pod retried a
        // week later) never prunes its own rows.
        store.exec_sql(
            "INSERT INTO _apisync_invocations VALUES ('late', '2020-01-01T00:00:00.000Z');
             INSERT INTO _apisync_invocation_streams VALUES ('late', 'orders', 'us', 0, 'running', 'b',
                 '2020-01-01T00:00:00.000Z', NULL);",
        );
        store.register_holder("late", "c", 1, false).unwrap();
        assert_eq!(
            store.query_text(
                "SELECT invocation, partition FROM _apisync_invocation_streams ORDER BY invocation"
            ),
            [
                [Some("late".to_string()), Some("us".to_string())],
                [Some("new".to_string()), Some("eu".to_string())]
            ]
        );
        let starts = store
            .last_success_starts_before(&["orders"], "new")
            .unwrap();
        assert_eq!(starts["orders"], "2020-01-01T00:00:00.000Z");
        assert!(
            store
                .last_success_starts_before(&["orders"], "old")
                .unwrap()
                .is_empty(),
            "an invocation's own completion is left out"
        );
    }
    }

    backend_test! {
    /// An unsharded success counts for `--due`; a shard's run does not (its
    /// invocation's completion does), and an empty shard run is forgotten.
    fn last_successes_count_unsharded_runs_and_empty_shard_runs_are_discarded(db) {
        let mut store = db.store();
        let plain = store.begin_run("orders").unwrap();
        store.finish_run(plain, &succeeded()).unwrap();
        let sharded = store.begin_shard_run("orders", "inv", 0, "a").unwrap();
        store.finish_run(sharded, &succeeded()).unwrap();
        let started = store.query_text(&format!("SELECT started_at FROM _apisync_runs WHERE id = {}", plain.0));
        assert_eq!(
            store.last_success_starts_before(&["orders", "never"], "inv").unwrap(),
            std::collections::BTreeMap::from([("orders".to_string(), started[0][0].clone().unwrap())])
        );
        store.discard_empty_run(sharded).unwrap();
        assert_eq!(store.query_text("SELECT count(*) FROM _apisync_runs"), [[Some("1".to_string())]]);
        assert_eq!(store.query_text("SELECT count(*) FROM _apisync_run_shards"), [[Some("0".to_string())]]);
    }
    }

    backend_test! {
    fn completing_a_pass_marks_finished_streams_done_once(db) {
        let mut store = db.store();
        let table = spec(WriteMode::Append);
        store.prepare_table(&table).unwrap();
        let run = store.begin_shard_run("orders", "inv", 0, "a").unwrap();
        store
            .finish_stream(&StreamKey::new("orders", "eu"), run, None)
            .unwrap();
        let backfill = format!("{BACKFILL_PREFIX}2024-01");
        store
            .finish_stream(&StreamKey::new("orders", &backfill), run, None)
            .unwrap();
        // A non-empty run of a shard is kept.
        store.discard_empty_run(run).unwrap();
        assert!(
            store
                .complete_sharded_pass("inv", "orders", &table)
                .unwrap()
        );
        assert!(
            !store
                .complete_sharded_pass("inv", "orders", &table)
                .unwrap()
        );
        assert!(store.job_completed_in("inv", "orders").unwrap());
        assert!(!store.job_completed_in("other", "orders").unwrap());
        assert_eq!(store.finished_partitions("orders").unwrap(), [backfill], "a backfill's set is left");
        let done = store
            .done_in_invocation("inv", "orders", &["eu", "us"])
            .unwrap();
        assert_eq!(done, HashSet::from(["eu".to_string()]));
        assert_eq!(
            store
                .claim_stream(
                    "inv",
                    &StreamKey::new("orders", "us"),
                    0,
                    "a",
                    true,
                    MINUTE,
                    alive
                )
                .unwrap(),
            StreamClaim::Done,
            "a completed job has nothing left in its invocation"
        );
        assert_eq!(
            store.live_shards("inv", MINUTE, alive).unwrap(),
            BTreeSet::new(),
            "nobody registered"
        );
        assert_eq!(store.query_text("SELECT count(*) FROM _apisync_runs"), [[Some("1".to_string())]]);
    }
    }

    backend_test! {
    /// The shard that finishes a replace job's last stream swaps the table in
    /// with the completion, once.
    fn completing_a_replace_pass_swaps_its_table_in(db) {
        let mut store = db.store();
        let table = spec(WriteMode::Replace);
        store.prepare_table(&table).unwrap();
        let run = store.begin_run("orders").unwrap();
        let stream = StreamKey::new("orders", "eu");
        let record = crate::record::Record {
            json: r#"{"id":1}"#.into(),
            pk: None,
            columns: Vec::new(),
        };
        store
            .apply_last_page(&stream, &table, run, &[record], None)
            .unwrap();
        assert_eq!(store.count_rows("orders").unwrap_or(0), 0, "staged, not live");
        assert!(store.complete_sharded_pass("inv", "orders", &table).unwrap());
        assert_eq!(store.count_rows("orders").unwrap(), 1);
        assert!(!store.complete_sharded_pass("inv", "orders", &table).unwrap());
    }
    }

    backend_test! {
    /// Processes racing for one stream, or to complete one pass: one wins,
    /// each other one sees the winner.
    fn racing_processes_claim_a_stream_and_complete_a_pass_once(db) {
        const RACERS: usize = 6;
        let table = spec(WriteMode::Append);
        let mut setup = db.store();
        setup.prepare_table(&table).unwrap();
        // All connected and registered first, so the claims start together.
        let start = std::sync::Barrier::new(RACERS);
        let outcomes: Vec<(StreamClaim, bool)> = std::thread::scope(|scope| {
            let racers: Vec<_> = (0..RACERS)
                .map(|i| {
                    let (table, start) = (table.clone(), &start);
                    scope.spawn(move || {
                        let mut store = db.store();
                        let me = format!("h{i}");
                        store.register_holder("inv", &me, 0, false).unwrap();
                        start.wait();
                        let claim = store
                            .claim_stream("inv", &StreamKey::new("orders", "eu"), 0, &me, false, MINUTE, alive)
                            .unwrap();
                        let completed = store.complete_sharded_pass("inv", "orders", &table).unwrap();
                        (claim, completed)
                    })
                })
                .collect();
            racers.into_iter().map(|r| r.join().unwrap()).collect()
        });
        let claimed: Vec<&StreamClaim> = outcomes
            .iter()
            .map(|(c, _)| c)
            .filter(|c| matches!(c, StreamClaim::Claimed { .. }))
            .collect();
        assert_eq!(claimed, [&StreamClaim::Claimed { taken_from: None }], "{outcomes:?}");
        assert!(
            outcomes.iter().all(|(c, _)| matches!(
                c,
                StreamClaim::Claimed { .. } | StreamClaim::Busy { .. } | StreamClaim::Done
            )),
            "{outcomes:?}"
        );
        assert_eq!(outcomes.iter().filter(|(_, done)| *done).count(), 1, "{outcomes:?}");
        assert_eq!(
            setup.query_text("SELECT count(*) FROM _apisync_invocations"),
            [[Some("1".to_string())]]
        );
    }
    }
}
