//! Reading record tables back on PostgreSQL: partition values for
//! `from_job` (whole for `--dry-run`, in keyset pages for a run, on a
//! connection of its own beside the writer), and small helpers for tests.

use super::super::error::StoreError;
use super::super::sql::{pointer_to_tokens, quote_ident};
use super::super::types::StreamKey;
use super::PgStore;
use super::conn::PgConn;
use super::write::table_exists;
use crate::plan::PostgresUrl;

fn table_err(table: &str, action: &'static str) -> impl Fn(postgres::Error) -> StoreError {
    let table = table.to_string();
    move |source| StoreError::Table {
        table: table.clone(),
        action,
        source: Box::new(source),
    }
}

impl PgStore {
    /// Distinct non-null values at `pointer`, in order of first appearance
    /// (physical row order: PostgreSQL has no rowid).
    pub(crate) fn distinct_values(
        &self,
        table: &str,
        pointer: &str,
    ) -> Result<Vec<String>, StoreError> {
        let path = pointer_to_tokens(pointer)?;
        let sql = format!(
            "SELECT v FROM (SELECT \"_data\" #>> $1::text[] AS v,
                                   row_number() OVER (ORDER BY ctid) AS n FROM {}) s
             WHERE v IS NOT NULL GROUP BY v ORDER BY min(n)",
            quote_ident(table)
        );
        let table = table.to_string();
        self.conn.run(move |s| {
            Ok(s.client
                .query(&sql, &[&path])
                .map_err(table_err(&table, "read partition values"))?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?
    }

    /// Every `_data` of `table` as JSON text (jsonb's normal form), in
    /// physical order, which is insertion order until rows are updated.
    pub(crate) fn table_rows(&self, table: &str) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT \"_data\"::text FROM {} ORDER BY ctid",
            quote_ident(table)
        );
        let table = table.to_string();
        self.conn.run(move |s| {
            Ok(s.client
                .query(&sql, &[])
                .map_err(table_err(&table, "read its rows"))?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?
    }

    /// One row's stored key and record text (`None` for an empty table).
    pub(crate) fn key_sample(&self, table: &str) -> Result<Option<(String, String)>, StoreError> {
        let sql = format!(
            "SELECT _pk, _data::text FROM {} WHERE _pk IS NOT NULL LIMIT 1",
            quote_ident(table)
        );
        let table = table.to_string();
        self.conn.run(move |s| {
            s.client
                .query_opt(&sql, &[])
                .map(|row| row.map(|r| (r.get(0), r.get(1))))
                .map_err(table_err(&table, "read a row's key"))
        })?
    }

    pub(crate) fn count_rows(&self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        let table = table.to_string();
        self.conn.run(move |s| {
            s.client
                .query_one(&sql, &[])
                .map(|r| r.get::<_, i64>(0).unsigned_abs())
                .map_err(table_err(&table, "count its rows"))
        })?
    }
}

/// A second connection for reads beside the writer (MVCC: it sees what the
/// writer committed).
#[derive(Debug)]
pub(crate) struct PgReader {
    conn: PgConn,
}

impl PgReader {
    pub(crate) fn open(url: &PostgresUrl) -> Result<PgReader, StoreError> {
        Ok(PgReader {
            conn: PgConn::connect(url)?,
        })
    }

    /// Whether apisync's schema is here in this version's layout.
    pub(crate) fn has_state(&self) -> Result<bool, StoreError> {
        self.conn.run(|s| {
            s.client
                .query_one(
                    "SELECT to_regclass('_apisync.checkpoints') IS NOT NULL",
                    &[],
                )
                .map(|row| row.get(0))
                .map_err(table_err("_apisync.checkpoints", "look it up"))
        })?
    }

    /// The saved position of `stream`.
    pub(crate) fn checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.value(
            "SELECT position FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
            stream,
            "load the checkpoint",
        )
    }

    /// The high-water mark of `stream`.
    pub(crate) fn mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.value(
            "SELECT value FROM _apisync.marks WHERE job = $1 AND partition = $2",
            stream,
            "load the mark",
        )
    }

    fn value(
        &self,
        sql: &'static str,
        stream: &StreamKey,
        action: &'static str,
    ) -> Result<Option<String>, StoreError> {
        let (job, partition) = (stream.job.clone(), stream.partition.clone());
        self.conn.run(move |s| {
            s.client
                .query_opt(sql, &[&job, &partition])
                .map(|row| row.map(|r| r.get(0)))
                .map_err(|source| StoreError::Job {
                    job: job.clone(),
                    action,
                    source: Box::new(source),
                })
        })?
    }

    pub(crate) fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        let table = table.to_string();
        self.conn.run(move |s| {
            table_exists(&mut s.client, &table).map_err(table_err(&table, "look it up"))
        })?
    }

    /// Values compare byte-wise (`COLLATE "C"`), as SQLite's do.
    pub(crate) fn distinct_values_page(
        &self,
        table: &str,
        pointer: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let path = pointer_to_tokens(pointer)?;
        let sql = format!(
            "SELECT DISTINCT v FROM (SELECT (\"_data\" #>> $1::text[]) COLLATE \"C\" AS v FROM {}) s
             WHERE v IS NOT NULL AND ($2::text IS NULL OR v > $2::text) ORDER BY v LIMIT $3",
            quote_ident(table)
        );
        let (table, after) = (table.to_string(), after.map(str::to_string));
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn.run(move |s| {
            let err = table_err(&table, "read partition values");
            let stmt = s.prepared(&sql).map_err(&err)?;
            Ok(s.client
                .query(&stmt, &[&path, &after, &limit])
                .map_err(&err)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?
    }

    pub(crate) fn finished_among(
        &self,
        job: &str,
        partitions: &[&str],
    ) -> Result<Vec<String>, StoreError> {
        let job = job.to_string();
        let partitions: Vec<String> = partitions.iter().map(|p| p.to_string()).collect();
        self.conn.run(move |s| {
            s.client
                .query(
                    "SELECT partition FROM _apisync.finished_streams WHERE job = $1 AND partition = ANY($2)",
                    &[&job, &partitions],
                )
                .map(|rows| rows.iter().map(|r| r.get(0)).collect())
                .map_err(|source| StoreError::Job {
                    job: job.clone(),
                    action: "read its finished partitions",
                    source: Box::new(source),
                })
        })?
    }
}
