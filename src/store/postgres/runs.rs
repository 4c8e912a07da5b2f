//! The run history and the `status` report on PostgreSQL.

use std::collections::BTreeMap;

use postgres::GenericClient;

use super::PgStore;
use super::errors::job_err;
use super::streams::finished_partitions;
use super::tables::table_exists;
use crate::store::backend::Runs;
use crate::store::error::StoreError;
use crate::store::rules::now;
use crate::store::sql::quote_ident;
use crate::store::types::{JobStatus, RunId, RunOutcome, RunRecord, RunStatus};

type PgResult<T> = Result<T, postgres::Error>;

impl Runs for PgStore {
    fn begin_run(&mut self, job: &str) -> Result<RunId, StoreError> {
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

    fn finish_run(&mut self, run_id: RunId, outcome: &RunOutcome) -> Result<(), StoreError> {
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

    fn last_success_starts(&self, jobs: &[&str]) -> Result<BTreeMap<String, String>, StoreError> {
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
    fn recent_runs(&self, job: &str, limit: usize) -> Result<Vec<RunRecord>, StoreError> {
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

    fn status(&self, jobs: &[(&str, &str)]) -> Result<Vec<JobStatus>, StoreError> {
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
