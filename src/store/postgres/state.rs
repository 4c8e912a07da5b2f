//! Checkpoints, marks, finished partitions, runs, status and leases on
//! PostgreSQL: the same statements as on SQLite, in PostgreSQL's dialect.

use std::collections::BTreeMap;
use std::time::Duration;

use postgres::GenericClient;

use super::super::error::StoreError;
use super::super::leases::{LeaseOutcome, ORPHANED, lease_decision, lease_held};
use super::super::open::now;
use super::super::sql::{PG_STATE_TABLES, quote_ident, staging_name};
use super::super::streams::{BACKFILL_PREFIX, reset_statements};
use super::super::types::{
    JobStatus, Reset, RunId, RunOutcome, RunRecord, RunStatus, StreamKey, TableSpec,
};
use super::open_tx::OpenTx;
use super::shards::check_claim;
use super::write::{swap_in, table_exists};
use super::{PgStore, xact_lock};
use crate::plan::WriteMode;
use crate::store::shards::HeldClaim;

type PgResult<T> = Result<T, postgres::Error>;

/// Refuse a write for `job` unless `holder` still holds the job's lease
/// (see the SQLite `check_lease`). `FOR SHARE` holds off a takeover (an
/// UPDATE of the row) until this transaction ends, and a takeover that
/// committed first is seen: the page commits before the takeover or not
/// at all.
pub(crate) fn check_lease(
    c: &mut impl GenericClient,
    job: &str,
    holder: Option<&str>,
) -> Result<(), StoreError> {
    let Some(holder) = holder else { return Ok(()) };
    let now: Option<String> = c
        .query_opt(
            "SELECT holder FROM _apisync.job_leases WHERE job = $1 FOR SHARE",
            &[&job],
        )
        .map_err(job_err(job, "check its lease"))?
        .map(|r| r.get(0));
    lease_held(job, holder, now)
}

pub(super) fn stream_err(
    stream: &StreamKey,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + use<> {
    let (job, partition) = (stream.job.clone(), stream.partition.clone());
    move |source| StoreError::Stream {
        job: job.clone(),
        partition: partition.clone(),
        action,
        source: Box::new(source),
    }
}

/// The end of a job's pass, inside the caller's transaction: a replace
/// table swapped in, and the finished set (backfill slices aside) forgotten.
pub(super) fn end_pass(
    tx: &mut postgres::Transaction<'_>,
    job: &str,
    table: &TableSpec,
) -> Result<(), StoreError> {
    if table.mode == WriteMode::Replace {
        swap_in(tx, &table.table)?;
    }
    tx.execute(
        "DELETE FROM _apisync.finished_streams WHERE job = $1 AND NOT starts_with(partition, $2)",
        &[&job, &BACKFILL_PREFIX],
    )
    .map(drop)
    .map_err(job_err(job, "complete the pass"))
}

pub(super) fn job_err(
    job: &str,
    action: &'static str,
) -> impl Fn(postgres::Error) -> StoreError + Send + Clone + use<> {
    let job = job.to_string();
    move |source| StoreError::Job {
        job: job.clone(),
        action,
        source: Box::new(source),
    }
}

pub(crate) fn save_checkpoint(
    c: &mut impl GenericClient,
    stream: &StreamKey,
    position: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO _apisync.checkpoints (job, partition, position, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job, partition) DO UPDATE
         SET position = excluded.position, updated_at = excluded.updated_at",
        &[&stream.job, &stream.partition, &position, &now()],
    )
    .map(drop)
    .map_err(stream_err(stream, "save the checkpoint"))
}

/// Clear the checkpoint, store the mark, record the stream finished; inside
/// the caller's transaction.
pub(crate) fn end_stream(
    c: &mut impl GenericClient,
    stream: &StreamKey,
    run_id: RunId,
    mark: Option<&str>,
) -> Result<(), StoreError> {
    let err = stream_err(stream, "record the end of the stream");
    let at = now();
    c.execute(
        "DELETE FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
        &[&stream.job, &stream.partition],
    )
    .map_err(&err)?;
    if let Some(value) = mark {
        c.execute(
            "INSERT INTO _apisync.marks (job, partition, value, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (job, partition) DO UPDATE
             SET value = excluded.value, updated_at = excluded.updated_at",
            &[&stream.job, &stream.partition, &value, &at],
        )
        .map_err(&err)?;
    }
    c.execute(
        "INSERT INTO _apisync.finished_streams (job, partition, run_id, finished_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job, partition) DO UPDATE
         SET run_id = excluded.run_id, finished_at = excluded.finished_at",
        &[&stream.job, &stream.partition, &run_id.0, &at],
    )
    .map_err(&err)?;
    Ok(())
}

fn finished_partitions(c: &mut impl GenericClient, job: &str) -> PgResult<Vec<String>> {
    Ok(c.query(
        "SELECT partition FROM _apisync.finished_streams WHERE job = $1 ORDER BY partition",
        &[&job],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

impl PgStore {
    pub(crate) fn load_checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.load_value(
            "SELECT position FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
            stream,
            "load the checkpoint",
        )
    }

    pub(crate) fn load_mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.load_value(
            "SELECT value FROM _apisync.marks WHERE job = $1 AND partition = $2",
            stream,
            "load the mark",
        )
    }

    fn load_value(
        &self,
        sql: &'static str,
        stream: &StreamKey,
        action: &'static str,
    ) -> Result<Option<String>, StoreError> {
        let stream = stream.clone();
        self.conn.run(move |s| {
            let stmt = s.prepared(sql).map_err(stream_err(&stream, action))?;
            s.client
                .query_opt(&stmt, &[&stream.job, &stream.partition])
                .map(|row| row.map(|r| r.get(0)))
                .map_err(stream_err(&stream, action))
        })?
    }

    pub(crate) fn clear_checkpoint(&mut self, stream: &StreamKey) -> Result<(), StoreError> {
        let stream = stream.clone();
        self.conn.run(move |s| {
            s.client
                .execute(
                    "DELETE FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
                    &[&stream.job, &stream.partition],
                )
                .map(drop)
                .map_err(stream_err(&stream, "clear the checkpoint"))
        })?
    }

    pub(crate) fn finish_stream(
        &mut self,
        stream: &StreamKey,
        run_id: RunId,
        mark: Option<&str>,
        claim: Option<&HeldClaim>,
        lease: Option<&str>,
    ) -> Result<(), StoreError> {
        let (stream, mark, claim) = (stream.clone(), mark.map(str::to_string), claim.cloned());
        let lease = lease.map(str::to_string);
        self.conn.run(move |s| {
            let err = stream_err(&stream, "record the end of the stream");
            let mut tx = s.client.transaction().map_err(&err)?;
            check_claim(&mut tx, &stream, claim.as_ref())?;
            check_lease(&mut tx, &stream.job, lease.as_deref())?;
            end_stream(&mut tx, &stream, run_id, mark.as_deref())?;
            tx.commit().map_err(&err)
        })?
    }

    pub(crate) fn finished_partitions(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let job = job.to_string();
        self.conn.run(move |s| {
            finished_partitions(&mut s.client, &job)
                .map_err(job_err(&job, "read its finished partitions"))
        })?
    }

    pub(crate) fn complete_job_pass(
        &mut self,
        job: &str,
        table: &TableSpec,
        lease: Option<&str>,
    ) -> Result<(), StoreError> {
        let (job, table, lease) = (job.to_string(), table.clone(), lease.map(str::to_string));
        self.conn.run(move |s| {
            let err = job_err(&job, "complete the pass");
            let mut tx = s.client.transaction().map_err(&err)?;
            check_lease(&mut tx, &job, lease.as_deref())?;
            end_pass(&mut tx, &job, &table)?;
            tx.commit().map_err(&err)
        })?
    }

    pub(crate) fn complete_backfill(&mut self, job: &str) -> Result<(), StoreError> {
        let job = job.to_string();
        self.conn.run(move |s| {
            s.client
                .execute(
                    "DELETE FROM _apisync.finished_streams WHERE job = $1 AND starts_with(partition, $2)",
                    &[&job, &BACKFILL_PREFIX],
                )
                .map(drop)
                .map_err(job_err(&job, "complete the backfill"))
        })?
    }

    pub(crate) fn reset_job(
        &mut self,
        job: &str,
        table: &str,
        reset: Reset,
    ) -> Result<(), StoreError> {
        let (job, table) = (job.to_string(), table.to_string());
        self.conn.run(move |s| {
            let err = job_err(&job, "reset its state");
            let mut tx = s.client.transaction().map_err(&err)?;
            for sql in reset_statements(reset, false, PG_STATE_TABLES) {
                tx.execute(&sql, &[&job]).map_err(&err)?;
            }
            let drop_staging = format!(
                "DROP TABLE IF EXISTS {}",
                quote_ident(&staging_name(&table))
            );
            tx.batch_execute(&drop_staging).map_err(&err)?;
            tx.commit().map_err(&err)
        })?
    }

    pub(crate) fn reset_stream(
        &mut self,
        stream: &StreamKey,
        reset: Reset,
    ) -> Result<(), StoreError> {
        let stream = stream.clone();
        self.conn.run(move |s| {
            let err = stream_err(&stream, "reset its state");
            let mut tx = s.client.transaction().map_err(err.clone())?;
            for sql in reset_statements(reset, true, PG_STATE_TABLES) {
                tx.execute(&sql, &[&stream.job, &stream.partition])
                    .map_err(err.clone())?;
            }
            tx.commit().map_err(err)
        })?
    }

    pub(crate) fn begin_run(&mut self, job: &str) -> Result<RunId, StoreError> {
        let job = job.to_string();
        self.conn.run(move |s| {
            s.client
                .query_one(
                    "INSERT INTO _apisync.runs (job, started_at, status) VALUES ($1, $2, 'running') RETURNING id",
                    &[&job, &now()],
                )
                .map(|r| RunId(r.get(0)))
                .map_err(job_err(&job, "record the start of a run"))
        })?
    }

    pub(crate) fn finish_run(
        &mut self,
        run_id: RunId,
        outcome: &RunOutcome,
    ) -> Result<(), StoreError> {
        let outcome = outcome.clone();
        self.conn.run(move |s| {
            let finished_at = (outcome.status != RunStatus::Running).then(now);
            let changed = s
                .client
                .execute(
                    "UPDATE _apisync.runs SET status = $2, finished_at = $3, pages = $4, records = $5, error = $6
                     WHERE id = $1",
                    &[
                        &run_id.0,
                        &outcome.status.as_str(),
                        &finished_at,
                        &clamp(outcome.pages),
                        &clamp(outcome.records),
                        &outcome.error,
                    ],
                )
                .map_err(|source| StoreError::Run {
                    run_id: run_id.0,
                    action: "record the end of the run",
                    source: Box::new(source),
                })?;
            if changed == 0 {
                return Err(StoreError::Run {
                    run_id: run_id.0,
                    action: "record the end of the run",
                    source: "no such run".into(),
                });
            }
            Ok(())
        })?
    }

    pub(crate) fn last_success_starts(
        &self,
        jobs: &[&str],
    ) -> Result<BTreeMap<String, String>, StoreError> {
        let jobs: Vec<String> = jobs.iter().map(|j| j.to_string()).collect();
        self.conn.run(move |s| {
            let mut starts = BTreeMap::new();
            for job in jobs {
                let started = last_success(&mut s.client, &job)
                    .map_err(job_err(&job, "read its last successful run"))?;
                starts.extend(started.map(|at| (job, at)));
            }
            Ok(starts)
        })?
    }

    /// As on SQLite: the last `limit` runs of `job`, newest first.
    pub(crate) fn recent_runs(
        &self,
        job: &str,
        limit: usize,
    ) -> Result<Vec<RunRecord>, StoreError> {
        let job = job.to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn.run(move |s| {
            s.client
                .query(
                    "SELECT id, status, started_at, finished_at, pages, records, error
                     FROM _apisync.runs WHERE job = $1 ORDER BY id DESC LIMIT $2",
                    &[&job, &limit],
                )
                .map(|rows| rows.iter().map(run_record).collect())
                .map_err(job_err(&job, "read its recent runs"))
        })?
    }

    pub(crate) fn status(&self, jobs: &[(&str, &str)]) -> Result<Vec<JobStatus>, StoreError> {
        let jobs: Vec<(String, String)> = jobs
            .iter()
            .map(|(j, t)| (j.to_string(), t.to_string()))
            .collect();
        self.conn.run(move |s| {
            jobs.iter()
                .map(|(job, table)| {
                    job_status(&mut s.client, job, table).map_err(job_err(job, "read its status"))
                })
                .collect()
        })?
    }

    /// As on SQLite; the advisory lock on `lease:JOB` serialises racing
    /// processes (the first to commit wins, the next sees its lease).
    pub(crate) fn try_acquire_lease(
        &mut self,
        job: &str,
        holder: &str,
        stale_after: Duration,
        is_dead: &dyn Fn(&str) -> bool,
    ) -> Result<LeaseOutcome, StoreError> {
        let err = || job_err(job, "take its lease");
        let (name, me) = (job.to_string(), holder.to_string());
        // Read under the lock; `is_dead` runs here, on the caller's thread.
        let (tx, current) = OpenTx::begin(&self.conn, err(), move |s| {
            xact_lock(&mut s.client, &format!("lease:{name}"))?;
            s.client
                .query_opt(
                    "SELECT holder, heartbeat_at FROM _apisync.job_leases WHERE job = $1",
                    &[&name],
                )
                .map(|row| row.map(|r| (r.get::<_, String>(0), r.get::<_, String>(1))))
        })?;
        let replaced = match lease_decision(current, &me, stale_after, is_dead) {
            Ok(replaced) => replaced,
            Err(held) => {
                tx.rollback(err())?;
                return Ok(held);
            }
        };
        // Write the lease and interrupt the job's orphaned runs.
        let name = job.to_string();
        tx.commit_after(err(), move |s| {
            let at = now();
            s.client.execute(
                "INSERT INTO _apisync.job_leases (job, holder, acquired_at, heartbeat_at) VALUES ($1, $2, $3, $3)
                 ON CONFLICT (job) DO UPDATE SET holder = excluded.holder,
                     acquired_at = excluded.acquired_at, heartbeat_at = excluded.heartbeat_at",
                &[&name, &me, &at],
            )?;
            s.client
                .execute(
                    "UPDATE _apisync.runs SET status = 'interrupted', finished_at = $2,
                         error = coalesce(error, $3)
                     WHERE job = $1 AND status = 'running'",
                    &[&name, &at, &ORPHANED],
                )
                .map(drop)
        })?;
        Ok(LeaseOutcome::Acquired { replaced })
    }

    pub(crate) fn renew_lease(&mut self, job: &str, holder: &str) -> Result<bool, StoreError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.conn.run(move |s| {
            s.client
                .execute(
                    "UPDATE _apisync.job_leases SET heartbeat_at = $3 WHERE job = $1 AND holder = $2",
                    &[&job, &holder, &now()],
                )
                .map(|changed| changed == 1)
                .map_err(job_err(&job, "renew its lease"))
        })?
    }

    pub(crate) fn release_lease(&mut self, job: &str, holder: &str) -> Result<(), StoreError> {
        let (job, holder) = (job.to_string(), holder.to_string());
        self.conn.run(move |s| {
            s.client
                .execute(
                    "DELETE FROM _apisync.job_leases WHERE job = $1 AND holder = $2",
                    &[&job, &holder],
                )
                .map(drop)
                .map_err(job_err(&job, "release its lease"))
        })?
    }
}

fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn last_success(c: &mut impl GenericClient, job: &str) -> PgResult<Option<String>> {
    c.query_opt(
        "SELECT started_at FROM _apisync.runs WHERE job = $1 AND status = 'succeeded'
         ORDER BY id DESC LIMIT 1",
        &[&job],
    )
    .map(|row| row.map(|r| r.get(0)))
}

/// A row of `id, status, started_at, finished_at, pages, records, error`.
fn run_record(r: &postgres::Row) -> RunRecord {
    let status: String = r.get(1);
    RunRecord {
        id: RunId(r.get(0)),
        // The CHECK constraint allows only known statuses.
        status: RunStatus::parse(&status).unwrap_or(RunStatus::Failed),
        started_at: r.get(2),
        finished_at: r.get(3),
        pages: r.get::<_, i64>(4).unsigned_abs(),
        records: r.get::<_, i64>(5).unsigned_abs(),
        error: r.get(6),
    }
}

fn job_status(c: &mut impl GenericClient, job: &str, table: &str) -> PgResult<JobStatus> {
    let last_run = c
        .query_opt(
            "SELECT id, status, started_at, finished_at, pages, records, error
             FROM _apisync.runs WHERE job = $1 ORDER BY id DESC LIMIT 1",
            &[&job],
        )?
        .map(|r| run_record(&r));
    let last_success_started_at = last_success(c, job)?;
    let rows = if table_exists(c, table)? {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        Some(c.query_one(&sql, &[])?.get::<_, i64>(0).unsigned_abs())
    } else {
        None
    };
    Ok(JobStatus {
        job: job.to_string(),
        table: table.to_string(),
        last_run,
        last_success_started_at,
        rows,
        checkpoints: by_partition(
            c,
            "SELECT partition, position FROM _apisync.checkpoints WHERE job = $1",
            job,
        )?,
        marks: by_partition(
            c,
            "SELECT partition, value FROM _apisync.marks WHERE job = $1",
            job,
        )?,
        finished_partitions: finished_partitions(c, job)?,
    })
}

fn by_partition(
    c: &mut impl GenericClient,
    sql: &str,
    job: &str,
) -> PgResult<BTreeMap<String, String>> {
    Ok(c.query(sql, &[&job])?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}
