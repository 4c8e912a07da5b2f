//! The run history and the `status` report built from it.

use std::collections::BTreeMap;

use rusqlite::{Connection, OptionalExtension, Row};

use super::SqliteStore;
use super::streams::finished_partitions;
use super::tables::table_exists;
use crate::store::backend::Runs;
use crate::store::error::StoreError;
use crate::store::rules::now;
use crate::store::sql::quote_ident;
use crate::store::types::{JobStatus, RunId, RunOutcome, RunRecord, RunStatus};

impl Runs for SqliteStore {
    /// Record that a run of `job` started. It stays `running` until
    /// [`crate::store::Runs::finish_run`]; a run left so by a dead process is not touched
    /// on open (the lease logic decides what it was).
    fn begin_run(&mut self, job: &str) -> Result<RunId, StoreError> {
        self.conn
            .execute(
                "INSERT INTO _apisync_runs (job, started_at, status) VALUES (?1, ?2, 'running')",
                (job, now()),
            )
            .map(|_| RunId(self.conn.last_insert_rowid()))
            .map_err(|source| StoreError::Job {
                job: job.to_string(),
                action: "record the start of a run",
                source: Box::new(source),
            })
    }

    fn finish_run(&mut self, run_id: RunId, outcome: &RunOutcome) -> Result<(), StoreError> {
        let err = |source| StoreError::Run {
            run_id: run_id.0,
            action: "record the end of the run",
            source: Box::new(source),
        };
        let finished_at = (outcome.status != RunStatus::Running).then(now);
        let changed = self
            .conn
            .execute(
                "UPDATE _apisync_runs SET status = ?2, finished_at = ?3, pages = ?4, records = ?5, error = ?6
                 WHERE id = ?1",
                (
                    run_id.0,
                    outcome.status.as_str(),
                    finished_at,
                    clamp(outcome.pages),
                    clamp(outcome.records),
                    outcome.error.as_deref(),
                ),
            )
            .map_err(err)?;
        if changed == 0 {
            return Err(err(rusqlite::Error::QueryReturnedNoRows));
        }
        Ok(())
    }

    /// Per job: when its last successful run started (RFC 3339, UTC), the
    /// base of its cron due time. Jobs that never succeeded are absent.
    fn last_success_starts(&self, jobs: &[&str]) -> Result<BTreeMap<String, String>, StoreError> {
        let mut starts = BTreeMap::new();
        for &job in jobs {
            let started: Option<String> = self
                .conn
                .prepare_cached(
                    "SELECT started_at FROM _apisync_runs WHERE job = ?1 AND status = 'succeeded'
                     ORDER BY id DESC LIMIT 1",
                )
                .and_then(|mut stmt| stmt.query_row([job], |r| r.get(0)).optional())
                .map_err(|source| StoreError::Job {
                    job: job.to_string(),
                    action: "read its last successful run",
                    source: Box::new(source),
                })?;
            starts.extend(started.map(|at| (job.to_string(), at)));
        }
        Ok(starts)
    }

    /// The last `limit` runs of `job`, newest first (`status JOB` history).
    fn recent_runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn
            .prepare_cached(
                "SELECT id, status, started_at, finished_at, pages, records, error
                 FROM _apisync_runs WHERE job = ?1 ORDER BY id DESC LIMIT ?2",
            )
            .and_then(|mut stmt| stmt.query_map((job, limit), run_record)?.collect())
            .map_err(|source| StoreError::Job {
                job: job.to_string(),
                action: "read its recent runs",
                source: Box::new(source),
            })
    }

    /// Per job, given as (job, table): its last run, last success, rows in
    /// its table, saved checkpoints and marks, finished partitions.
    fn status(&self, jobs: &[(&str, &str)]) -> Result<Vec<JobStatus>, StoreError> {
        jobs.iter()
            .map(|&(job, table)| {
                job_status(&self.conn, job, table).map_err(|source| StoreError::Job {
                    job: job.to_string(),
                    action: "read its status",
                    source: Box::new(source),
                })
            })
            .collect()
    }
}

/// SQLite integers are signed; counts never get near the limit, but a
/// wrapped negative would be worse than a saturated one.
fn clamp(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn job_status(conn: &Connection, job: &str, table: &str) -> rusqlite::Result<JobStatus> {
    let last_run = conn
        .query_row(
            "SELECT id, status, started_at, finished_at, pages, records, error
             FROM _apisync_runs WHERE job = ?1 ORDER BY id DESC LIMIT 1",
            [job],
            run_record,
        )
        .optional()?;
    let last_success_started_at = conn
        .query_row(
            "SELECT started_at FROM _apisync_runs WHERE job = ?1 AND status = 'succeeded'
             ORDER BY id DESC LIMIT 1",
            [job],
            |r| r.get(0),
        )
        .optional()?;
    let rows = if table_exists(conn, table)? {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        Some(
            conn.query_row(&sql, [], |r| r.get::<_, i64>(0))?
                .unsigned_abs(),
        )
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
            conn,
            "SELECT partition, position FROM _apisync_checkpoints WHERE job = ?1",
            job,
        )?,
        marks: by_partition(
            conn,
            "SELECT partition, value FROM _apisync_marks WHERE job = ?1",
            job,
        )?,
        finished_partitions: finished_partitions(conn, job)?,
    })
}

fn run_record(row: &Row<'_>) -> rusqlite::Result<RunRecord> {
    let status: String = row.get(1)?;
    let status = RunStatus::parse(&status).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            1,
            rusqlite::types::Type::Text,
            format!("unknown run status {status:?}").into(),
        )
    })?;
    Ok(RunRecord {
        id: RunId(row.get(0)?),
        status,
        started_at: row.get(2)?,
        finished_at: row.get(3)?,
        pages: row.get::<_, i64>(4)?.unsigned_abs(),
        records: row.get::<_, i64>(5)?.unsigned_abs(),
        error: row.get(6)?,
    })
}

fn by_partition(
    conn: &Connection,
    sql: &str,
    job: &str,
) -> rusqlite::Result<BTreeMap<String, String>> {
    let mut stmt = conn.prepare_cached(sql)?;
    stmt.query_map([job], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect()
}
