//! The processes of a sharded *invocation* (the pods of a Kubernetes
//! Indexed Job, or `run --shard I/N --invocation ID` by hand), as the
//! database keeps them:
//!
//! - `invocations`: when the invocation started (its "now" for date
//!   partitions, the same on every shard).
//! - `invocation_holders`: one row per process with a heartbeat. A stream
//!   claim is only as alive as its holder's row: one heartbeat per process,
//!   not one per stream.
//! - `run_shards`: which shard of which invocation wrote a `runs` row.
//!
//! Liveness of another holder is decided from its row (not ended,
//! heartbeat newer than `stale_after`) plus the caller's `is_dead` test (a
//! pid gone on this host), as for job leases. The runs of processes that
//! stopped without finishing them (SIGKILL, OOM, a lost node) are marked
//! `interrupted` by whichever process of the invocation notices
//! (`close_dead_runs`), so `status` never shows a run `running` whose
//! process is gone.

use std::collections::BTreeSet;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::SqliteStore;
use super::errors::{db_err, job_err};
use crate::store::backend::{Invocations, IsDead};
use crate::store::error::StoreError;
use crate::store::rules::{KEEP_STREAMS, TAKEN_OVER, now, stale_cutoff};
use crate::store::types::{OtherRuns, RunId};

impl Invocations for SqliteStore {
    /// Register `holder` (this process) as shard `shard` of `invocation`
    /// and return when the invocation started (RFC 3339, UTC): the first
    /// process to register sets it, every other one reads it back. Stream
    /// and holder rows of invocations started over 7 days ago are pruned.
    fn register_holder(
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
    fn invocation_started_at(&mut self, invocation: &str) -> Result<String, StoreError> {
        let err = db_err("record the start of the invocation");
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let started = begin_invocation(&tx, invocation, &now()).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(started)
    }

    /// Refresh `holder`'s heartbeat (every few seconds while it runs).
    fn renew_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
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
    fn end_holder(&mut self, invocation: &str, holder: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE _apisync_invocation_holders SET ended_at = ?3
                 WHERE invocation = ?1 AND holder = ?2",
                (invocation, holder, now()),
            )
            .map(drop)
            .map_err(db_err("record the end of this process"))
    }

    /// Start a run of `job` as shard `shard` of `invocation`, run by
    /// `holder`, in one transaction: a run row without its shard would never
    /// be marked interrupted by whoever takes its streams over.
    fn begin_shard_run(
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

    /// A shard's run of a job that ran none of its streams (they were all
    /// other shards'): forget the row, so `status` and `run --due` only
    /// see runs that did something.
    fn discard_empty_run(&mut self, run_id: RunId) -> Result<(), StoreError> {
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

    /// Per job: when its last success *before* `invocation` started, the
    /// base of its cron due time in a sharded `run --due`. A success is an
    /// unsharded succeeded run (its start), or an invocation in which the
    /// job's pass completed (the invocation's start). Runs of `invocation`
    /// itself are left out, so a shard that starts late decides as the
    /// first one did. Jobs that never succeeded are absent.
    fn last_success_starts_before(
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

    /// Shards of `invocation` with at least one live process (registered,
    /// not ended, fresh heartbeat, not known dead).
    fn live_shards(
        &self,
        invocation: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
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

    /// Mark `interrupted` every `running` run of `invocation` whose process
    /// (not `me`) is dead: its holder row ended, its heartbeat is older than
    /// `stale_after`, or `is_dead` says so. One `BEGIN IMMEDIATE`
    /// transaction.
    fn close_dead_runs(
        &mut self,
        invocation: &str,
        me: &str,
        stale_after: Duration,
        is_dead: IsDead<'_>,
    ) -> Result<OtherRuns, StoreError> {
        let err = |source| StoreError::Database {
            action: "close the runs of stopped processes of the invocation",
            source: Box::new(source),
        };
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        let holders: Vec<(String, i64)> = {
            let mut stmt = tx
                .prepare(
                    "SELECT s.holder, count(*) FROM _apisync_runs r JOIN _apisync_run_shards s ON s.run_id = r.id
                     WHERE s.invocation = ?1 AND r.status = 'running' AND s.holder <> ?2
                     GROUP BY s.holder",
                )
                .map_err(err)?;
            stmt.query_map((invocation, me), |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(err)?
                .collect::<Result<_, _>>()
                .map_err(err)?
        };
        let mut found = OtherRuns::default();
        let at = now();
        for (holder, running) in holders {
            if holder_alive(&tx, invocation, &holder, stale_after, is_dead).map_err(err)? {
                found.running += u64::try_from(running).unwrap_or(0);
                continue;
            }
            let closed = tx
                .execute(
                    "UPDATE _apisync_runs SET status = 'interrupted', finished_at = ?3,
                         error = coalesce(error, ?4)
                     WHERE status = 'running'
                       AND id IN (SELECT run_id FROM _apisync_run_shards WHERE invocation = ?1 AND holder = ?2)",
                    (invocation, &holder, &at, TAKEN_OVER),
                )
                .map_err(err)?;
            found.interrupted += closed as u64;
        }
        tx.commit().map_err(err)?;
        Ok(found)
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
    is_dead: IsDead<'_>,
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
