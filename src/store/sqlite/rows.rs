//! Reading record tables back: partition values for a `--dry-run`
//! preview, and small helpers tests use to look at what was written.

use super::SqliteStore;
use super::sql::{pointer_to_path, value_to_text};
use crate::store::backend::Rows;
use crate::store::error::StoreError;
use crate::store::sql::quote_ident;

impl Rows for SqliteStore {
    /// Distinct non-null values at `pointer` in the records of `table`, in
    /// order of first appearance, all in memory. Only for small previews
    /// (`--dry-run`); a run reads them in pages with
    /// [`crate::store::Reader::distinct_values_page`].
    fn distinct_values(&self, table: &str, pointer: &str) -> Result<Vec<String>, StoreError> {
        let path = pointer_to_path(pointer)?;
        let sql = format!(
            "SELECT v FROM (SELECT json_extract(\"_data\", ?1) AS v, min(rowid) AS first
                            FROM {} GROUP BY v)
             WHERE v IS NOT NULL ORDER BY first",
            quote_ident(table)
        );
        let err = |source| StoreError::Table {
            table: table.to_string(),
            action: "read partition values",
            source: Box::new(source),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(err)?;
        let mut rows = stmt.query([path]).map_err(err)?;
        let mut values = Vec::new();
        while let Some(row) = rows.next().map_err(err)? {
            values.extend(value_to_text(row.get_ref(0).map_err(err)?));
        }
        Ok(values)
    }

    /// Every `_data` of `table`, in insertion (rowid) order.
    fn table_rows(&self, table: &str) -> Result<Vec<String>, StoreError> {
        let sql = format!(
            "SELECT \"_data\" FROM {} ORDER BY rowid",
            quote_ident(table)
        );
        let err = |source| StoreError::Table {
            table: table.to_string(),
            action: "read its rows",
            source: Box::new(source),
        };
        let mut stmt = self.conn.prepare(&sql).map_err(err)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(err)?;
        rows.collect::<Result<_, _>>().map_err(err)
    }

    fn count_rows(&self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        self.conn
            .query_row(&sql, [], |r| r.get::<_, i64>(0))
            .map(i64::unsigned_abs)
            .map_err(|source| StoreError::Table {
                table: table.to_string(),
                action: "count its rows",
                source: Box::new(source),
            })
    }

    /// One row's stored key and record text (`None` for an empty table):
    /// enough to tell whether the job's primary key still makes that key.
    fn key_sample(&self, table: &str) -> Result<Option<(String, String)>, StoreError> {
        use rusqlite::OptionalExtension;
        let sql = format!(
            "SELECT _pk, _data FROM {} WHERE _pk IS NOT NULL LIMIT 1",
            quote_ident(table)
        );
        self.conn
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()
            .map_err(|source| StoreError::Table {
                table: table.to_string(),
                action: "read a row's key",
                source: Box::new(source),
            })
    }

    #[cfg(test)]
    fn exec_sql(&mut self, sql: &str) {
        self.conn.execute_batch(sql).expect("test SQL");
    }

    #[cfg(test)]
    fn query_text(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let mut stmt = self.conn.prepare(sql).expect("test SQL");
        let width = stmt.column_count();
        let mut rows = stmt.query([]).expect("test SQL");
        let mut out = Vec::new();
        while let Some(row) = rows.next().expect("test SQL") {
            out.push(
                (0..width)
                    .map(|i| value_to_text(row.get_ref(i).expect("column")))
                    .collect(),
            );
        }
        out
    }
}
