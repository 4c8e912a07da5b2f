//! Reading record tables back on PostgreSQL: partition values for a
//! `--dry-run` preview, and small helpers for tests.

use super::PgStore;
use super::errors::table_err;
use super::sql::pointer_to_tokens;
use crate::store::backend::Rows;
use crate::store::error::StoreError;
use crate::store::sql::quote_ident;

impl Rows for PgStore {
    /// Distinct non-null values at `pointer`, in order of first appearance
    /// (physical row order: PostgreSQL has no rowid).
    fn distinct_values(&self, table: &str, pointer: &str) -> Result<Vec<String>, StoreError> {
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
    fn table_rows(&self, table: &str) -> Result<Vec<String>, StoreError> {
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

    fn count_rows(&self, table: &str) -> Result<u64, StoreError> {
        let sql = format!("SELECT count(*) FROM {}", quote_ident(table));
        let table = table.to_string();
        self.conn.run(move |s| {
            s.client
                .query_one(&sql, &[])
                .map(|r| r.get::<_, i64>(0).unsigned_abs())
                .map_err(table_err(&table, "count its rows"))
        })?
    }

    /// One row's stored key and record text (`None` for an empty table).
    fn key_sample(&self, table: &str) -> Result<Option<(String, String)>, StoreError> {
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

    #[cfg(test)]
    fn exec_sql(&mut self, sql: &str) {
        let sql = crate::store::sql::state_names_for_postgres(sql);
        self.conn
            .run(move |s| s.client.batch_execute(&sql))
            .expect("connection")
            .expect("test SQL");
    }

    #[cfg(test)]
    fn query_text(&mut self, sql: &str) -> Vec<Vec<Option<String>>> {
        let sql = crate::store::sql::state_names_for_postgres(sql);
        let messages = self
            .conn
            .run(move |s| s.client.simple_query(&sql))
            .expect("connection")
            .expect("test SQL");
        messages
            .iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => Some(
                    (0..row.len())
                        .map(|i| row.get(i).map(str::to_string))
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    }
}
