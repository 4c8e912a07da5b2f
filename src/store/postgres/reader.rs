//! A second connection for reads beside the writer (MVCC: it sees what the
//! writer committed): partition values of a `from_job` job in keyset
//! pages, and where a stream would start.

use super::conn::PgConn;
use super::errors::table_err;
use super::sql::pointer_to_tokens;
use super::tables::table_exists;
use crate::plan::PostgresUrl;
use crate::store::backend::Reader;
use crate::store::error::StoreError;
use crate::store::sql::quote_ident;
use crate::store::types::StreamKey;

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
}

type Param<'a> = &'a (dyn postgres::types::ToSql + Sync);

/// `changed_only`'s filter on a parent's rows, `_synced_at >= $n`, after
/// `join`; nothing without `since` (every row, and no parameter).
/// `_synced_at` is a `timestamptz` here, so the text is read as one: as
/// text, the column's own spelling (`2024-01-02 00:00:00+00`) would not
/// compare with `since`'s (`2024-01-02T00:00:00.000Z`).
fn since_filter(since: Option<&str>, n: usize, join: &str) -> String {
    match since {
        Some(_) => format!("{join}\"_synced_at\" >= ${n}::text::timestamptz"),
        None => String::new(),
    }
}

/// `params`, then `since` when there is one (the filter's parameter).
fn with_since<'a>(mut params: Vec<Param<'a>>, since: &'a Option<String>) -> Vec<Param<'a>> {
    if let Some(since) = since {
        params.push(since);
    }
    params
}

impl Reader for PgReader {
    /// Whether apisync's schema is here in this version's layout.
    fn has_state(&self) -> Result<bool, StoreError> {
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
    fn checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.value(
            "SELECT position FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
            stream,
            "load the checkpoint",
        )
    }

    /// The high-water mark of `stream`.
    fn mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.value(
            "SELECT value FROM _apisync.marks WHERE job = $1 AND partition = $2",
            stream,
            "load the mark",
        )
    }

    fn has_table(&self, table: &str) -> Result<bool, StoreError> {
        let table = table.to_string();
        self.conn.run(move |s| {
            table_exists(&mut s.client, &table).map_err(table_err(&table, "look it up"))
        })?
    }

    /// Values compare byte-wise (`COLLATE "C"`), as SQLite's do.
    fn distinct_values_page(
        &self,
        table: &str,
        pointer: &str,
        after: Option<&str>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let path = pointer_to_tokens(pointer)?;
        let sql = format!(
            "SELECT DISTINCT v FROM (SELECT (\"_data\" #>> $1::text[]) COLLATE \"C\" AS v FROM {}{}) s
             WHERE v IS NOT NULL AND ($2::text IS NULL OR v > $2::text) ORDER BY v LIMIT $3",
            quote_ident(table),
            since_filter(since, 4, " WHERE ")
        );
        let (table, after) = (table.to_string(), after.map(str::to_string));
        let since = since.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn.run(move |s| {
            let err = table_err(&table, "read partition values");
            let stmt = s.prepared(&sql).map_err(&err)?;
            Ok(s.client
                .query(&stmt, &with_since(vec![&path, &after, &limit], &since))
                .map_err(&err)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?
    }

    /// The array text is jsonb's (`[42, "eu"]`); callers parse it, and a
    /// partition's key is made from the values, the same on either store.
    fn distinct_combinations_page(
        &self,
        table: &str,
        pointers: &[String],
        after: Option<&str>,
        since: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let paths = pointers
            .iter()
            .map(|p| pointer_to_tokens(p))
            .collect::<Result<Vec<_>, _>>()?;
        // $1 is `after`, $2 the limit, $3.. the paths, then `since`.
        // As text (`#>>`), as `distinct_values_page` reads one.
        let values: Vec<String> = (0..paths.len())
            .map(|i| format!("(\"_data\" #>> ${}::text[])", i + 3))
            .collect();
        let present: Vec<String> = values.iter().map(|v| format!("{v} IS NOT NULL")).collect();
        let sql = format!(
            "SELECT DISTINCT v FROM (SELECT jsonb_build_array({})::text COLLATE \"C\" AS v FROM {} WHERE {}{}) s
             WHERE ($1::text IS NULL OR v > $1::text) ORDER BY v LIMIT $2",
            values.join(", "),
            quote_ident(table),
            present.join(" AND "),
            since_filter(since, paths.len() + 3, " AND ")
        );
        let (table, after) = (table.to_string(), after.map(str::to_string));
        let since = since.map(str::to_string);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.conn.run(move |s| {
            let err = table_err(&table, "read partition values");
            let stmt = s.prepared(&sql).map_err(&err)?;
            let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> = vec![&after, &limit];
            params.extend(
                paths
                    .iter()
                    .map(|p| p as &(dyn postgres::types::ToSql + Sync)),
            );
            Ok(s.client
                .query(&stmt, &with_since(params, &since))
                .map_err(&err)?
                .iter()
                .map(|r| r.get(0))
                .collect())
        })?
    }

    fn last_pass_start(&self, job: &str) -> Result<Option<String>, StoreError> {
        let job = job.to_string();
        self.conn.run(move |s| {
            let err = |source| StoreError::Job {
                job: job.clone(),
                action: "read the start of its last pass",
                source: Box::new(source),
            };
            // `run --dry-run` peeks at a database a run has not upgraded yet.
            let upgraded: bool = s
                .client
                .query_one("SELECT to_regclass('_apisync.passes') IS NOT NULL", &[])
                .map_err(err)?
                .get(0);
            if !upgraded {
                return Ok(None);
            }
            s.client
                .query_opt(
                    "SELECT last_started_at FROM _apisync.passes WHERE job = $1",
                    &[&job],
                )
                .map(|row| row.and_then(|r| r.get::<_, Option<String>>(0)))
                .map_err(err)
        })?
    }

    fn finished_among(&self, job: &str, partitions: &[&str]) -> Result<Vec<String>, StoreError> {
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
