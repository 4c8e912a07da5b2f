//! A page's rows and the stream's checkpoint in one transaction.
//!
//! Speed comes from multi-row INSERT statements (up to [`ROWS_PER_STATEMENT`]
//! rows each) prepared once and cached, binding each record's JSON text as
//! received. A page's remainder goes through the one-row form of the same
//! statement, so each table needs only two cached statements. `_synced_at`
//! and `_run_id` (and a partitioned job's `_partition`) are the same for
//! every row of a page: they are bound once per statement (`?1`, `?2`,
//! `?3`) rather than once per row.

use rusqlite::{CachedStatement, Connection, OptionalExtension};

use super::SqliteStore;
use super::errors::stream_err;
use super::guards::{check_claim, check_lease};
use super::sql::json_to_sql;
use super::streams::{delete_stream_row, end_stream};
use crate::record::Record;
use crate::store::backend::Pages;
use crate::store::error::StoreError;
use crate::store::guards::Guard;
use crate::store::rules::{
    FIXED_COLUMNS, PARTITION_COLUMN, check_columns, now, upserts, write_target,
};
use crate::store::sql::quote_ident;
use crate::store::types::{RunId, StreamKey, TableSpec};

/// Rows per INSERT statement: measured sweet spot on the spike.
const ROWS_PER_STATEMENT: usize = 50;

/// SQLite's bound on `?` parameters in one statement (bundled build).
const MAX_PARAMS: usize = 32_766;

/// Parameters shared by every row of a statement: `?1` is `_synced_at`,
/// `?2` is `_run_id`; a partitioned job's tables add `?3`, `_partition`
/// (see [`InsertShape::shared`]).
const SHARED_PARAMS: usize = 2;

/// Columns bound per row: `_pk`, `_data`, then the declared columns.
const ROW_FIXED: usize = 2;

impl Pages for SqliteStore {
    /// Write one page's records and the stream's next position together:
    /// after a crash either both are there or neither is.
    ///
    /// merge: upsert on `_pk` (within a page the last record wins); append:
    /// plain insert; replace: into the staging table, upserting when there is
    /// a primary key. [`crate::store::Tables::prepare_table`] must have run first.
    fn apply_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        self.write_rows_then(stream, guard, table, run_id, records, |tx| {
            save_checkpoint(tx, stream, position)
        })
    }

    fn apply_window_end(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        self.write_rows_then(stream, guard, table, run_id, records, |tx| {
            save_checkpoint(tx, stream, position)?;
            match mark {
                Some(mark) => save_mark(tx, stream, mark),
                None => Ok(()),
            }
        })
    }

    /// The stream's last page: its rows and the end of the stream (cleared
    /// checkpoint, new mark, partition finished) in one transaction. Written
    /// apart, a crash between the two would leave a checkpoint that asks for
    /// the last page again, and append mode would write it twice.
    fn apply_last_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        self.write_rows_then(stream, guard, table, run_id, records, |tx| {
            end_stream(tx, stream, run_id, mark)
        })
    }

    /// The saved position JSON of an unfinished stream.
    fn load_checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.load_value(
            "SELECT position FROM _apisync_checkpoints WHERE job = ?1 AND partition = ?2",
            stream,
            "load the checkpoint",
        )
    }

    /// The incremental high-water mark JSON the stream's last finish stored.
    fn load_mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.load_value(
            "SELECT value FROM _apisync_marks WHERE job = ?1 AND partition = ?2",
            stream,
            "load the mark",
        )
    }

    /// Drop a saved cursor the API refused; the mark stays.
    fn clear_checkpoint(&mut self, stream: &StreamKey) -> Result<(), StoreError> {
        delete_stream_row(&self.conn, "_apisync_checkpoints", stream)
            .map_err(stream_err(stream, "clear the checkpoint"))
    }
}

impl SqliteStore {
    /// A page's rows, then `after` (the checkpoint, or the end of the
    /// stream), in one transaction; first of all, the stream's claim and the
    /// job's lease if it has them (a page of a stream taken over takes no
    /// row lock).
    fn write_rows_then(
        &mut self,
        stream: &StreamKey,
        guard: Guard<'_>,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        after: impl FnOnce(&rusqlite::Transaction<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        check_columns(table, records)?;
        let target = write_target(table);
        let row_err = |source| StoreError::Table {
            table: target.clone(),
            action: "write a page",
            source: Box::new(source),
        };
        // Immediate: the write lock first (waiting out other writers), so
        // reading the claim before the rows cannot leave a read snapshot
        // that a write then fails to upgrade (SQLITE_BUSY_SNAPSHOT).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(row_err)?;
        check_claim(&tx, stream, guard.claim)?;
        check_lease(&tx, &stream.job, guard.lease)?;
        InsertShape::new(&target, table)
            .write_all(&tx, records, &now(), run_id)
            .map_err(row_err)?;
        after(&tx)?;
        tx.commit().map_err(row_err)
    }

    fn load_value(
        &self,
        sql: &str,
        stream: &StreamKey,
        action: &'static str,
    ) -> Result<Option<String>, StoreError> {
        self.conn
            .query_row(sql, (&stream.job, &stream.partition), |r| r.get(0))
            .optional()
            .map_err(stream_err(stream, action))
    }
}

/// Store `stream`'s high-water mark, inside the caller's transaction.
pub(crate) fn save_mark(
    conn: &Connection,
    stream: &StreamKey,
    mark: &str,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT INTO _apisync_marks (job, partition, value, updated_at) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (job, partition) DO UPDATE
         SET value = excluded.value, updated_at = excluded.updated_at",
        (&stream.job, &stream.partition, mark, now()),
    )
    .map(drop)
    .map_err(stream_err(stream, "store the mark"))
}

pub(crate) fn save_checkpoint(
    conn: &Connection,
    stream: &StreamKey,
    position: &str,
) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT INTO _apisync_checkpoints (job, partition, position, updated_at) VALUES (?1, ?2, ?3, ?4)
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
        let upsert = upserts(table);
        InsertShape {
            target,
            table,
            upsert,
        }
    }

    /// Parameters bound per row (the shared ones are bound once).
    fn width(&self) -> usize {
        ROW_FIXED + self.table.columns.len()
    }

    /// Parameters bound once per statement: [`SHARED_PARAMS`], and
    /// `_partition` when the table has it.
    fn shared(&self) -> usize {
        SHARED_PARAMS + usize::from(self.table.partition.is_some())
    }

    fn rows_per_statement(&self) -> usize {
        ((MAX_PARAMS - self.shared()) / self.width()).clamp(1, ROWS_PER_STATEMENT)
    }

    /// In the order of a row's values (see [`Self::sql`]).
    fn column_names(&self) -> impl Iterator<Item = &str> {
        let partition = self.table.partition.as_ref().map(|_| PARTITION_COLUMN);
        FIXED_COLUMNS
            .iter()
            .copied()
            .chain(partition)
            .chain(self.table.columns.iter().map(String::as_str))
    }

    /// Row `i` reads `(?pk, ?data, ?1, ?2[, ?3], ?col...)` with its own
    /// numbers for `_pk`, `_data` and the declared columns.
    fn sql(&self, rows: usize) -> String {
        let names: Vec<String> = self.column_names().map(quote_ident).collect();
        let width = self.width();
        let shared = self.shared();
        let values: Vec<String> = (0..rows)
            .map(|i| {
                let base = shared + i * width;
                let own = |k: usize| format!("?{}", base + k + 1);
                let mut row = vec![own(0), own(1)];
                row.extend((1..=shared).map(|k| format!("?{k}")));
                row.extend((ROW_FIXED..width).map(own));
                format!("({})", row.join(","))
            })
            .collect();
        let mut sql = format!(
            "INSERT INTO {} ({}) VALUES {}",
            quote_ident(self.target),
            names.join(","),
            values.join(",")
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
        stmt.raw_bind_parameter(1, synced_at)?;
        stmt.raw_bind_parameter(2, run_id.0)?;
        if let Some(partition) = &self.table.partition {
            stmt.raw_bind_parameter(SHARED_PARAMS + 1, partition.as_str())?;
        }
        let shared = self.shared();
        for (i, record) in records.iter().enumerate() {
            let base = shared + i * width;
            stmt.raw_bind_parameter(base + 1, record.pk.as_deref())?;
            stmt.raw_bind_parameter(base + 2, record.json.as_str())?;
            for (j, value) in record.columns.iter().enumerate() {
                stmt.raw_bind_parameter(base + ROW_FIXED + 1 + j, json_to_sql(value))?;
            }
        }
        stmt.raw_execute().map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::WriteMode;
    use crate::store::backend::{Runs, Tables, Wal};

    fn record(i: usize) -> Record {
        Record {
            json: format!("{{\"id\":{i}}}"),
            pk: Some(format!("[{i}]")),
            columns: vec![serde_json::json!(i), serde_json::json!(format!("s{i}"))],
        }
    }

    /// `_synced_at` and `_run_id` are bound once per statement; every row,
    /// in full statements and in the remainder, must still get them, and
    /// its own pk, data and columns must not shift.
    #[test]
    fn shared_parameters_reach_every_row_and_own_ones_stay_in_place() {
        let mut store = SqliteStore::open_in_memory().unwrap();
        let run = store.begin_run("t").unwrap();
        let table = TableSpec {
            table: "t".into(),
            mode: WriteMode::Merge,
            columns: vec!["n".into(), "s".into()],
            has_primary_key: true,
            partition: None,
        };
        store.prepare_table(&table).unwrap();
        // Two full statements of 50 rows and a remainder of 23.
        let page: Vec<Record> = (0..123).map(record).collect();
        store
            .apply_page(
                &StreamKey::new("t", ""),
                &table,
                run,
                &page,
                "{}",
                Guard::unchecked(),
            )
            .unwrap();
        let mut stmt = store
            .conn
            .prepare("SELECT _pk, _data, _synced_at, _run_id, n, s FROM t ORDER BY rowid")
            .unwrap();
        let rows: Vec<(String, String, String, i64, i64, String)> = stmt
            .query_map([], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(rows.len(), 123);
        let synced_at = rows[0].2.clone();
        assert!(synced_at.ends_with('Z'), "{synced_at}");
        for (i, (pk, data, at, run_id, n, s)) in rows.into_iter().enumerate() {
            assert_eq!(pk, format!("[{i}]"));
            assert_eq!(data, format!("{{\"id\":{i}}}"));
            assert_eq!(at, synced_at, "row {i}");
            assert_eq!(run_id, run.0, "row {i}");
            assert_eq!(n, i as i64);
            assert_eq!(s, format!("s{i}"));
        }
    }

    #[test]
    fn the_statement_numbers_own_parameters_after_the_shared_ones() {
        let table = TableSpec {
            table: "t".into(),
            mode: WriteMode::Append,
            columns: vec!["n".into()],
            has_primary_key: false,
            partition: None,
        };
        let sql = InsertShape::new("t", &table).sql(2);
        assert!(
            sql.ends_with("VALUES (?3,?4,?1,?2,?5),(?6,?7,?1,?2,?8)"),
            "{sql}"
        );
    }

    /// A partitioned job's `_partition` is a third shared parameter: the
    /// rows' own numbers start after it.
    #[test]
    fn a_partitioned_table_binds_its_partition_once_per_statement() {
        let table = TableSpec {
            table: "t".into(),
            mode: WriteMode::Append,
            columns: vec!["n".into()],
            has_primary_key: false,
            partition: Some("{}".into()),
        };
        let sql = InsertShape::new("t", &table).sql(2);
        assert!(
            sql.contains(r#"("_pk","_data","_synced_at","_run_id","_partition","n")"#),
            "{sql}"
        );
        assert!(
            sql.ends_with("VALUES (?4,?5,?1,?2,?3,?6),(?7,?8,?1,?2,?3,?9)"),
            "{sql}"
        );
    }

    #[test]
    fn no_checkpointer_for_an_in_memory_database() {
        let store = SqliteStore::open_in_memory().unwrap();
        assert!(store.wal_checkpointer().unwrap().is_none());
    }
}
