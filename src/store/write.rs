//! `apply_page`: a page's rows and the stream's checkpoint in one transaction.
//!
//! Speed comes from multi-row INSERT statements (up to [`ROWS_PER_STATEMENT`]
//! rows each) prepared once and cached, binding each record's JSON text as
//! received. A page's remainder goes through the one-row form of the same
//! statement, so each table needs only two cached statements.

use rusqlite::{CachedStatement, Connection};

use super::error::StoreError;
use super::open::{Store, now};
use super::sql::{json_to_sql, quote_ident};
use super::streams::end_stream;
use super::tables::{FIXED_COLUMNS, write_target};
use super::types::{RunId, StreamKey, TableSpec};
use crate::fetch::Record;
use crate::plan::WriteMode;

/// Rows per INSERT statement: measured sweet spot on the spike.
const ROWS_PER_STATEMENT: usize = 50;

/// SQLite's bound on `?` parameters in one statement (bundled build).
const MAX_PARAMS: usize = 32_766;

impl Store {
    /// Write one page's records and the stream's next position together:
    /// after a crash either both are there or neither is.
    ///
    /// merge: upsert on `_pk` (within a page the last record wins); append:
    /// plain insert; replace: into the staging table, upserting when there is
    /// a primary key. [`Store::prepare_table`] must have run first.
    pub fn apply_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
    ) -> Result<(), StoreError> {
        check_columns(table, records)?;
        let target = write_target(table);
        let row_err = |source| StoreError::Table {
            table: target.clone(),
            action: "write a page",
            source: Box::new(source),
        };
        let tx = self.conn.transaction().map_err(row_err)?;
        InsertShape::new(&target, table)
            .write_all(&tx, records, &now(), run_id)
            .map_err(row_err)?;
        save_checkpoint(&tx, stream, position)?;
        tx.commit().map_err(row_err)
    }
}

impl Store {
    /// The stream's last page: its rows and the end of the stream (cleared
    /// checkpoint, new mark, partition finished) in one transaction. Written
    /// apart, a crash between the two would leave a checkpoint that asks for
    /// the last page again, and append mode would write it twice.
    pub fn apply_last_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        mark: Option<&str>,
    ) -> Result<(), StoreError> {
        check_columns(table, records)?;
        let target = write_target(table);
        let row_err = |source| StoreError::Table {
            table: target.clone(),
            action: "write a page",
            source: Box::new(source),
        };
        let tx = self.conn.transaction().map_err(row_err)?;
        InsertShape::new(&target, table)
            .write_all(&tx, records, &now(), run_id)
            .map_err(row_err)?;
        end_stream(&tx, stream, run_id, mark)?;
        tx.commit().map_err(row_err)
    }
}

/// Every record must carry one value per declared column; a mismatch is a
/// bug upstream, reported instead of writing values into the wrong columns.
fn check_columns(table: &TableSpec, records: &[Record]) -> Result<(), StoreError> {
    match records
        .iter()
        .find(|r| r.columns.len() != table.columns.len())
    {
        Some(bad) => Err(StoreError::ColumnCount {
            table: table.table.clone(),
            expected: table.columns.len(),
            found: bad.columns.len(),
        }),
        None => Ok(()),
    }
}

pub(crate) fn save_checkpoint(
    conn: &Connection,
    stream: &StreamKey,
    position: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO checkpoints (job, partition, position, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (job, partition) DO UPDATE
         SET position = excluded.position, updated_at = excluded.updated_at",
    )
    .and_then(|mut stmt| stmt.execute((&stream.job, &stream.partition, position, now())))
    .map(drop)
    .map_err(|source| StoreError::Stream {
        job: stream.job.clone(),
        partition: stream.partition.clone(),
        action: "save the checkpoint",
        source: Box::new(source),
    })
}

/// The INSERT for one target table and mode.
struct InsertShape<'a> {
    target: &'a str,
    table: &'a TableSpec,
    upsert: bool,
}

impl<'a> InsertShape<'a> {
    fn new(target: &'a str, table: &'a TableSpec) -> Self {
        let upsert = match table.mode {
            WriteMode::Merge => true,
            WriteMode::Append => false,
            WriteMode::Replace => table.has_primary_key,
        };
        InsertShape {
            target,
            table,
            upsert,
        }
    }

    fn width(&self) -> usize {
        FIXED_COLUMNS.len() + self.table.columns.len()
    }

    fn rows_per_statement(&self) -> usize {
        (MAX_PARAMS / self.width()).clamp(1, ROWS_PER_STATEMENT)
    }

    fn column_names(&self) -> impl Iterator<Item = &str> {
        FIXED_COLUMNS
            .iter()
            .copied()
            .chain(self.table.columns.iter().map(String::as_str))
    }

    fn sql(&self, rows: usize) -> String {
        let names: Vec<String> = self.column_names().map(quote_ident).collect();
        let row = format!("({})", vec!["?"; names.len()].join(","));
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote_ident(self.target),
            names.join(","),
            vec![row; rows].join(",")
        );
        if self.upsert {
            let set: Vec<String> = names[1..]
                .iter()
                .map(|n| format!("{n} = excluded.{n}"))
                .collect();
            sql.push_str(&format!(
                " ON CONFLICT (\"_pk\") DO UPDATE SET {}",
                set.join(", ")
            ));
        }
        sql
    }

    /// Full statements of `rows_per_statement` rows, then the remainder one
    /// row at a time: two cached statements per table, whatever the page size.
    fn write_all(
        &self,
        conn: &Connection,
        records: &[Record],
        synced_at: &str,
        run_id: RunId,
    ) -> rusqlite::Result<()> {
        let per_statement = self.rows_per_statement();
        let mut chunks = records.chunks_exact(per_statement);
        if chunks.len() > 0 {
            let mut stmt = conn.prepare_cached(&self.sql(per_statement))?;
            for chunk in chunks.by_ref() {
                self.execute(&mut stmt, chunk, synced_at, run_id)?;
            }
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut stmt = conn.prepare_cached(&self.sql(1))?;
            for record in rest {
                self.execute(&mut stmt, std::slice::from_ref(record), synced_at, run_id)?;
            }
        }
        Ok(())
    }

    fn execute(
        &self,
        stmt: &mut CachedStatement<'_>,
        records: &[Record],
        synced_at: &str,
        run_id: RunId,
    ) -> rusqlite::Result<()> {
        let width = self.width();
        for (i, record) in records.iter().enumerate() {
            let base = i * width;
            stmt.raw_bind_parameter(base + 1, record.pk.as_deref())?;
            stmt.raw_bind_parameter(base + 2, record.json.as_str())?;
            stmt.raw_bind_parameter(base + 3, synced_at)?;
            stmt.raw_bind_parameter(base + 4, run_id.0)?;
            for (j, value) in record.columns.iter().enumerate() {
                stmt.raw_bind_parameter(base + FIXED_COLUMNS.len() + 1 + j, json_to_sql(value))?;
            }
        }
        stmt.raw_execute().map(drop)
    }
}
