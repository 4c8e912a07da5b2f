//! Finished partitions of a pass, the end of a pass, resets, on
//! PostgreSQL: the same statements as `sqlite/streams.rs`.

use postgres::GenericClient;

use super::PgStore;
use super::errors::{job_err, stream_err};
use super::guards::{check_claim, check_lease};
use super::tables::swap_in;
use crate::plan::WriteMode;
use crate::store::backend::Streams;
use crate::store::error::StoreError;
use crate::store::guards::Guard;
use crate::store::rules::{BACKFILL_PREFIX, now, pass_start_sql, reset_statements};
use crate::store::sql::{PG_STATE_TABLES, quote_ident, staging_name};
use crate::store::types::{Reset, RunId, StreamKey, TableSpec};

type PgResult<T> = Result<T, postgres::Error>;

impl Streams for PgStore {
    fn finish_stream(
        &mut self,
        stream: &StreamKey,
        run_id: RunId,
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        let (stream, mark) = (stream.clone(), mark.map(str::to_string));
        let (claim, lease) = (guard.claim.cloned(), guard.lease.map(str::to_string));
        self.conn.run(move |s| {
            let err = stream_err(&stream, "record the end of the stream");
            let mut tx = s.client.transaction().map_err(&err)?;
            check_claim(&mut tx, &stream, claim.as_ref())?;
            check_lease(&mut tx, &stream.job, lease.as_deref())?;
            end_stream(&mut tx, &stream, run_id, mark.as_deref())?;
            tx.commit().map_err(&err)
        })?
    }

    fn begin_pass(
        &mut self,
        job: &str,
        parent: &str,
        parent_table: &str,
    ) -> Result<(), StoreError> {
        let (job, parent) = (job.to_string(), parent.to_string());
        let staging = staging_name(parent_table);
        self.conn.run(move |s| {
            let err = job_err(&job, "record the start of its pass");
            let mut tx = s.client.transaction().map_err(&err)?;
            let at = now();
            let under_way: bool = tx
                .query_one(
                    "SELECT EXISTS (SELECT 1 FROM _apisync.passes
                                    WHERE job = $1 AND open_started_at IS NOT NULL)
                         OR EXISTS (SELECT 1 FROM _apisync.finished_streams
                                    WHERE job = $1 AND NOT starts_with(partition, $2))",
                    &[&job, &BACKFILL_PREFIX],
                )
                .map_err(&err)?
                .get(0);
            if under_way {
                return Ok(());
            }
            let start: String = tx
                .query_one(&pass_start_sql(PG_STATE_TABLES), &[&parent, &at])
                .map_err(&err)?
                .get(0);
            // A replace parent's staged rows show at its swap: the oldest
            // counts as a write under way (see `Streams::begin_pass`).
            let start = match super::tables::table_exists(&mut tx, &staging).map_err(&err)? {
                false => start,
                true => {
                    let staged: Option<String> = tx
                        .query_one(
                            &format!(
                                "SELECT to_char(min(\"_synced_at\") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') FROM {}",
                                quote_ident(&staging)
                            ),
                            &[],
                        )
                        .map_err(&err)?
                        .get(0);
                    match staged {
                        Some(staged) if staged < start => staged,
                        _ => start,
                    }
                }
            };
            // Two shards beginning at once: the first start stays (the
            // second waits for its row, then finds it set).
            tx.execute(
                "INSERT INTO _apisync.passes (job, open_started_at) VALUES ($1, $2)
                 ON CONFLICT (job) DO UPDATE SET open_started_at = excluded.open_started_at
                 WHERE _apisync.passes.open_started_at IS NULL",
                &[&job, &start],
            )
            .map_err(&err)?;
            tx.commit().map_err(&err)
        })?
    }

    fn finished_partitions(&self, job: &str) -> Result<Vec<String>, StoreError> {
        let job = job.to_string();
        self.conn.run(move |s| {
            finished_partitions(&mut s.client, &job)
                .map_err(job_err(&job, "read its finished partitions"))
        })?
    }

    fn complete_job_pass(
        &mut self,
        job: &str,
        table: &TableSpec,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        let (job, table) = (job.to_string(), table.clone());
        let lease = guard.lease.map(str::to_string);
        self.conn.run(move |s| {
            let err = job_err(&job, "complete the pass");
            let mut tx = s.client.transaction().map_err(&err)?;
            check_lease(&mut tx, &job, lease.as_deref())?;
            end_pass(&mut tx, &job, &table)?;
            tx.commit().map_err(&err)
        })?
    }

    fn complete_backfill(&mut self, job: &str) -> Result<(), StoreError> {
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

    fn reset_job(&mut self, job: &str, table: &str, reset: Reset) -> Result<(), StoreError> {
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

    fn reset_stream(&mut self, stream: &StreamKey, reset: Reset) -> Result<(), StoreError> {
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
}

/// The end of a job's pass, inside the caller's transaction: a replace
/// table swapped in, the finished set (backfill slices aside) forgotten,
/// and the pass's start kept as the last finished pass start.
pub(super) fn end_pass(
    tx: &mut postgres::Transaction<'_>,
    job: &str,
    table: &TableSpec,
) -> Result<(), StoreError> {
    if table.mode == WriteMode::Replace {
        swap_in(tx, &table.table)?;
    }
    let err = job_err(job, "complete the pass");
    tx.execute(
        "DELETE FROM _apisync.finished_streams WHERE job = $1 AND NOT starts_with(partition, $2)",
        &[&job, &BACKFILL_PREFIX],
    )
    .map_err(&err)?;
    tx.execute(
        "UPDATE _apisync.passes SET last_started_at = open_started_at, open_started_at = NULL
         WHERE job = $1",
        &[&job],
    )
    .map(drop)
    .map_err(&err)
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
        super::pages::save_mark(c, stream, value)?;
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

pub(super) fn finished_partitions(c: &mut impl GenericClient, job: &str) -> PgResult<Vec<String>> {
    Ok(c.query(
        "SELECT partition FROM _apisync.finished_streams WHERE job = $1 ORDER BY partition",
        &[&job],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}
