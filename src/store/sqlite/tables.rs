//! Record tables: creating them from a job's output, adding new declared
//! columns, and the atomic swap of a replace job's staging table.

use rusqlite::{Connection, OptionalExtension};

use super::SqliteStore;
use crate::plan::WriteMode;
use crate::store::backend::Tables;
use crate::store::error::StoreError;
use crate::store::rules::{PARTITION_COLUMN, addable_columns, mode_name, write_target};
use crate::store::sql::{quote_ident, staging_name};
use crate::store::types::TableSpec;

impl Tables for SqliteStore {
    /// Make sure the table `apply_page` will write to exists with every
    /// declared column: the live table, or for replace the staging table
    /// (kept across a crash so a rerun continues filling it).
    fn prepare_table(&mut self, table: &TableSpec) -> Result<(), StoreError> {
        let target = write_target(table);
        let err = |action| {
            let table = target.clone();
            move |source| StoreError::Table {
                table,
                action,
                source: Box::new(source),
            }
        };
        let tx = self.conn.transaction().map_err(err("create it"))?;
        tx.execute_batch(&create_sql(&target, table))
            .map_err(err("create it"))?;
        let existing = table_columns(&tx, &target).map_err(err("read its columns"))?;
        for column in addable_columns(table).filter(|c| !existing.iter().any(|e| e == c)) {
            let sql = format!(
                "ALTER TABLE {} ADD COLUMN {}{}",
                quote_ident(&target),
                quote_ident(column),
                column_type(column)
            );
            tx.execute_batch(&sql).map_err(err("add a column"))?;
        }
        if table.mode != WriteMode::Append
            && !has_unique_pk(&tx, &target).map_err(err("read its indexes"))?
        {
            return Err(StoreError::NotUnique {
                table: target,
                mode: mode_name(table.mode),
            });
        }
        tx.commit().map_err(err("create it"))
    }

    /// Put a replace job's staging table in place of the live table in one
    /// transaction: readers see the old table or the new one, never half.
    ///
    /// Use [`crate::store::Store::complete_job_pass`] from the runner: it swaps and ends the
    /// pass together, so a crash between the two cannot swap an empty
    /// staging table in later.
    fn swap_replace(&mut self, table: &TableSpec) -> Result<(), StoreError> {
        let tx = self.conn.transaction().map_err(swap_err(table))?;
        swap_in(&tx, &table.table)?;
        tx.commit().map_err(swap_err(table))
    }
}

fn swap_err(table: &TableSpec) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    |source| StoreError::Table {
        table: table.table.clone(),
        action: "swap the staging table in",
        source: Box::new(source),
    }
}

/// Drop `table` and rename its staging table to it, inside the caller's
/// transaction. `legacy_alter_table` keeps SQLite from checking (and
/// failing on) user views that name the live table while it is gone.
pub(crate) fn swap_in(conn: &Connection, table: &str) -> Result<(), StoreError> {
    let staging = staging_name(table);
    let err = |source| StoreError::Table {
        table: table.to_string(),
        action: "swap the staging table in",
        source: Box::new(source),
    };
    if !table_exists(conn, &staging).map_err(err)? {
        return Err(StoreError::NoStaging {
            table: table.to_string(),
        });
    }
    conn.pragma_update(None, "legacy_alter_table", "ON")
        .map_err(err)?;
    let sql = format!(
        "DROP TABLE IF EXISTS {live}; ALTER TABLE {staging} RENAME TO {live};",
        live = quote_ident(table),
        staging = quote_ident(&staging),
    );
    let swapped = conn.execute_batch(&sql);
    let reset = conn.pragma_update(None, "legacy_alter_table", "OFF");
    swapped.and(reset).map_err(err)
}

fn create_sql(target: &str, table: &TableSpec) -> String {
    let pk = match (table.mode, table.has_primary_key) {
        (WriteMode::Append, false) => "TEXT",
        (WriteMode::Append, true) => "TEXT NOT NULL",
        (_, false) => "TEXT UNIQUE",
        (_, true) => "TEXT NOT NULL UNIQUE",
    };
    let declared: String = addable_columns(table)
        .map(|c| format!(", {}{}", quote_ident(c), column_type(c)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"_pk\" {pk}, \"_data\" TEXT NOT NULL, \
         \"_synced_at\" TEXT NOT NULL, \"_run_id\" INTEGER NOT NULL{declared})",
        quote_ident(target)
    )
}

/// Declared columns get no type, so SQLite keeps each value's own type;
/// `_partition` is JSON text, like `_data`. Nullable: rows written before
/// a table had it keep NULL.
fn column_type(column: &str) -> &'static str {
    match column == PARTITION_COLUMN {
        true => " TEXT",
        false => "",
    }
}

pub(crate) fn table_exists(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1",
        [table],
        |_| Ok(()),
    )
    .optional()
    .map(|found| found.is_some())
}

fn table_columns(conn: &Connection, table: &str) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare("SELECT name FROM pragma_table_info(?1)")?;
    stmt.query_map([table], |r| r.get(0))?.collect()
}

/// True when some unique index covers exactly `_pk` (needed by ON CONFLICT).
fn has_unique_pk(conn: &Connection, table: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT count(*) FROM pragma_index_list(?1) AS il
         WHERE il.\"unique\" = 1
           AND (SELECT group_concat(name) FROM pragma_index_info(il.name)) = '_pk'",
        [table],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
}
