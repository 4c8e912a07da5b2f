//! Which partitions of a job's current pass have finished, the end of a
//! pass, resets.
//!
//! A *pass* of a job is one trip through all its partitions. Each stream
//! that finishes is recorded in `finished_streams`; a rerun after a crash or
//! a failure asks `finished_partitions` and skips those. When every
//! partition has finished, the runner calls `complete_job_pass`, which
//! swaps a replace table in and forgets the finished set in one
//! transaction, so the next run starts a new pass. No generation counter is
//! needed: the rows present *are* the current pass. For `changed_only`,
//! `begin_pass` records when a pass started and its completion keeps that
//! as the job's last finished pass start (`_apisync_passes`).

use rusqlite::Connection;

use super::SqliteStore;
use super::errors::{job_err, stream_err};
use super::guards::{check_claim, check_lease};
use super::tables::swap_in;
use crate::plan::WriteMode;
use crate::store::backend::Streams;
use crate::store::error::StoreError;
use crate::store::guards::Guard;
use crate::store::rules::{BACKFILL_END, BACKFILL_PREFIX, now, pass_start_sql, reset_statements};
use crate::store::sql::{SQLITE_STATE_PREFIX, quote_ident, staging_name};
use crate::store::types::{Reset, RunId, StreamKey, TableSpec};

impl Streams for SqliteStore {
    /// A stream's last page has committed: in one transaction clear its
    /// checkpoint, store the new mark (if any) and record the partition as
    /// finished in this pass. A replace table is not swapped here (see
    /// [`crate::store::Store::complete_job_pass`]).
    fn finish_stream(
        &mut self,
        stream: &StreamKey,
        run_id: RunId,
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        let err = stream_err(stream, "record the end of the stream");
        let tx = self.conn.transaction().map_err(err)?;
        check_claim(&tx, stream, guard.claim)?;
        check_lease(&tx, &stream.job, guard.lease)?;
        end_stream(&tx, stream, run_id, mark)?;
        tx.commit().map_err(err)
    }

    fn begin_pass(
        &mut self,
        job: &str,
        parent: &str,
        parent_table: &str,
    ) -> Result<(), StoreError> {
        let err = job_err(job, "record the start of its pass");
        // Read, then written: immediate, so a shard writing in between
        // makes this one wait (busy timeout), not fail (a deferred
        // transaction's write after another's commit is SQLITE_BUSY).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let at = now();
        let under_way: bool = tx
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM _apisync_passes
                                WHERE job = ?1 AND open_started_at IS NOT NULL)
                     OR EXISTS (SELECT 1 FROM _apisync_finished_streams
                                WHERE job = ?1 AND NOT (partition >= ?2 AND partition < ?3))",
                (job, BACKFILL_PREFIX, BACKFILL_END),
                |r| r.get(0),
            )
            .map_err(err)?;
        if under_way {
            return Ok(());
        }
        let sql = pass_start_sql(SQLITE_STATE_PREFIX).replace('$', "?");
        let start: String = tx
            .query_row(&sql, (parent, &at), |r| r.get(0))
            .map_err(err)?;
        let start = match oldest_staged(&tx, parent_table).map_err(err)? {
            Some(staged) if staged < start => staged,
            _ => start,
        };
        tx.execute(
            "INSERT INTO _apisync_passes (job, open_started_at) VALUES (?1, ?2)
             ON CONFLICT (job) DO UPDATE SET open_started_at = excluded.open_started_at
             WHERE _apisync_passes.open_started_at IS NULL",
            (job, &start),
        )
        .map_err(err)?;
        tx.commit().map_err(err)
    }

    /// Partitions of `job` finished in its current pass, sorted.
    fn finished_partitions(&self, job: &str) -> Result<Vec<String>, StoreError> {
        finished_partitions(&self.conn, job).map_err(|source| StoreError::Job {
            job: job.to_string(),
            action: "read its finished partitions",
            source: Box::new(source),
        })
    }

    /// Every partition of the pass has finished: swap a replace table in and
    /// forget the finished set, in one transaction. A crash before it leaves
    /// the pass complete but unswapped, and the rerun (skipping every
    /// partition) swaps then; a crash after it leaves nothing to redo.
    fn complete_job_pass(
        &mut self,
        job: &str,
        table: &TableSpec,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        let err = job_err(job, "complete the pass");
        let tx = self.conn.transaction().map_err(err)?;
        check_lease(&tx, job, guard.lease)?;
        end_pass(&tx, job, table)?;
        tx.commit().map_err(err)
    }

    /// Every slice of a backfill has finished: forget its finished set (and
    /// only its own), so the same command later backfills again. The job's
    /// own pass, its marks and its table are untouched.
    fn complete_backfill(&mut self, job: &str) -> Result<(), StoreError> {
        self.conn
            .execute(
                "DELETE FROM _apisync_finished_streams WHERE job = ?1 AND partition >= ?2 AND partition < ?3",
                (job, BACKFILL_PREFIX, BACKFILL_END),
            )
            .map(drop)
            .map_err(job_err(job, "complete the backfill"))
    }

    /// `apisync reset`: forget checkpoints, finished partitions and (unless
    /// kept) marks of `job`, and drop its staging table, so the next run
    /// starts from scratch, or from each stream's mark. Rows already synced
    /// and the run history stay.
    fn reset_job(&mut self, job: &str, table: &str, reset: Reset) -> Result<(), StoreError> {
        let err = job_err(job, "reset its state");
        let tx = self.conn.transaction().map_err(err)?;
        for sql in reset_statements(reset, false, SQLITE_STATE_PREFIX) {
            tx.execute(&sql.replace("$1", "?1"), [job]).map_err(err)?;
        }
        let drop_staging = format!("DROP TABLE IF EXISTS {}", quote_ident(&staging_name(table)));
        tx.execute_batch(&drop_staging).map_err(err)?;
        tx.commit().map_err(err)
    }

    /// `apisync reset JOB --partition KEY`: the same for one stream, whose
    /// rows share no staging table with other streams (not for replace).
    fn reset_stream(&mut self, stream: &StreamKey, reset: Reset) -> Result<(), StoreError> {
        let err = stream_err(stream, "reset its state");
        let tx = self.conn.transaction().map_err(err)?;
        for sql in reset_statements(reset, true, SQLITE_STATE_PREFIX) {
            let sql = sql.replace("$1", "?1").replace("$2", "?2");
            tx.execute(&sql, [&stream.job, &stream.partition])
                .map_err(err)?;
        }
        tx.commit().map_err(err)
    }
}

/// The end of a job's pass, inside the caller's transaction: a replace
/// table swapped in, the finished set (backfill slices aside) forgotten,
/// and the pass's start (if `begin_pass` recorded one) kept as the last
/// finished pass start; a pass without one leaves none, so the next
/// `changed_only` pass is a full one.
pub(crate) fn end_pass(conn: &Connection, job: &str, table: &TableSpec) -> Result<(), StoreError> {
    if table.mode == WriteMode::Replace {
        swap_in(conn, &table.table)?;
    }
    let err = job_err(job, "complete the pass");
    conn.execute(
        "DELETE FROM _apisync_finished_streams WHERE job = ?1
         AND NOT (partition >= ?2 AND partition < ?3)",
        (job, BACKFILL_PREFIX, BACKFILL_END),
    )
    .map_err(err)?;
    conn.execute(
        "UPDATE _apisync_passes SET last_started_at = open_started_at, open_started_at = NULL
         WHERE job = ?1",
        [job],
    )
    .map(drop)
    .map_err(err)
}

/// The oldest `_synced_at` in `table`'s staging table (a replace pass
/// under way), if there is one. Both are RFC 3339 UTC text with
/// milliseconds, so they compare as text.
fn oldest_staged(conn: &Connection, table: &str) -> rusqlite::Result<Option<String>> {
    let staging = staging_name(table);
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
        [&staging],
        |r| r.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        &format!("SELECT min(\"_synced_at\") FROM {}", quote_ident(&staging)),
        [],
        |r| r.get(0),
    )
}

/// Clear the stream's checkpoint, store its mark and record it finished,
/// inside the caller's transaction.
pub(crate) fn end_stream(
    conn: &Connection,
    stream: &StreamKey,
    run_id: RunId,
    mark: Option<&str>,
) -> Result<(), StoreError> {
    let err = stream_err(stream, "record the end of the stream");
    delete_stream_row(conn, "_apisync_checkpoints", stream).map_err(err)?;
    let at = now();
    if let Some(value) = mark {
        super::pages::save_mark(conn, stream, value)?;
    }
    conn.execute(
        "INSERT OR REPLACE INTO _apisync_finished_streams (job, partition, run_id, finished_at)
         VALUES (?1, ?2, ?3, ?4)",
        (&stream.job, &stream.partition, run_id.0, &at),
    )
    .map_err(err)?;
    Ok(())
}

pub(crate) fn finished_partitions(conn: &Connection, job: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT partition FROM _apisync_finished_streams WHERE job = ?1 ORDER BY partition",
    )?;
    stmt.query_map([job], |r| r.get(0))?.collect()
}

/// `table` is one of this module's own table names, never user input.
pub(super) fn delete_stream_row(
    conn: &Connection,
    table: &str,
    stream: &StreamKey,
) -> rusqlite::Result<()> {
    let sql = format!("DELETE FROM {table} WHERE job = ?1 AND partition = ?2");
    conn.prepare_cached(&sql)?
        .execute((&stream.job, &stream.partition))
        .map(drop)
}
