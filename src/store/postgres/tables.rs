//! Record tables on PostgreSQL: creating them, adding new declared
//! columns, and the replace swap.

use postgres::GenericClient;

use super::PgStore;
use super::locks::xact_lock;
use crate::plan::WriteMode;
use crate::store::backend::Tables;
use crate::store::error::StoreError;
use crate::store::rules::{addable_columns, mode_name, write_target};
use crate::store::sql::{quote_ident, staging_name};
use crate::store::types::TableSpec;

/// PostgreSQL truncates longer identifiers silently; two long names could
/// then meet in one table.
const MAX_IDENT: usize = 63;

impl Tables for PgStore {
    fn prepare_table(&mut self, table: &TableSpec) -> Result<(), StoreError> {
        let target = write_target(table);
        if target.len() > MAX_IDENT || table.table.len() > MAX_IDENT {
            return Err(StoreError::NameTooLong {
                table: table.table.clone(),
            });
        }
        let table = table.clone();
        self.conn.run(move |session| {
            let err = |action| {
                let table = target.clone();
                move |source: postgres::Error| StoreError::Table {
                    table,
                    action,
                    source: Box::new(source),
                }
            };
            let mut tx = session.client.transaction().map_err(err("create it"))?;
            // Two processes creating one table at once would collide.
            xact_lock(&mut tx, &format!("table:{target}")).map_err(err("create it"))?;
            // Only when missing: CREATE ... IF NOT EXISTS would still need
            // the CREATE privilege on the schema.
            if !table_exists(&mut tx, &target).map_err(err("look it up"))? {
                tx.batch_execute(&create_sql(&target, &table))
                    .map_err(err("create it"))?;
            }
            let existing = table_columns(&mut tx, &target).map_err(err("read its columns"))?;
            // `_partition` is jsonb too, like `_data`.
            for column in addable_columns(&table).filter(|c| !existing.iter().any(|e| e == c)) {
                let sql = format!(
                    "ALTER TABLE {} ADD COLUMN {} jsonb",
                    quote_ident(&target),
                    quote_ident(column)
                );
                tx.batch_execute(&sql).map_err(err("add a column"))?;
            }
            if table.mode != WriteMode::Append
                && !has_unique_pk(&mut tx, &target).map_err(err("read its indexes"))?
            {
                return Err(StoreError::NotUnique {
                    table: target.clone(),
                    mode: mode_name(table.mode),
                });
            }
            tx.commit().map_err(err("create it"))
        })?
    }

    fn swap_replace(&mut self, table: &TableSpec) -> Result<(), StoreError> {
        let name = table.table.clone();
        self.conn.run(move |session| {
            let err = swap_err(&name);
            let mut tx = session.client.transaction().map_err(err)?;
            swap_in(&mut tx, &name)?;
            tx.commit().map_err(err)
        })?
    }
}

fn swap_err(table: &str) -> impl Fn(postgres::Error) -> StoreError + Copy + '_ {
    move |source| StoreError::Table {
        table: table.to_string(),
        action: "swap the staging table in",
        source: Box::new(source),
    }
}

/// Put the staging table's rows in place of the live table's, inside the
/// caller's transaction: readers see the old rows until it commits. The
/// first time (no live table) the staging table is renamed; after that its
/// rows are copied over so whatever users built on the live table (views,
/// grants, indexes) stays.
pub(crate) fn swap_in(c: &mut impl GenericClient, table: &str) -> Result<(), StoreError> {
    let staging = staging_name(table);
    let err = swap_err(table);
    if !table_exists(c, &staging).map_err(err)? {
        return Err(StoreError::NoStaging {
            table: table.to_string(),
        });
    }
    let (live_q, staging_q) = (quote_ident(table), quote_ident(&staging));
    if !table_exists(c, table).map_err(err)? {
        return c
            .batch_execute(&format!("ALTER TABLE {staging_q} RENAME TO {live_q}"))
            .map_err(err);
    }
    let live_columns = table_columns(c, table).map_err(err)?;
    let columns = table_columns(c, &staging).map_err(err)?;
    for column in columns.iter().filter(|c| !live_columns.contains(c)) {
        c.batch_execute(&format!(
            "ALTER TABLE {live_q} ADD COLUMN {} jsonb",
            quote_ident(column)
        ))
        .map_err(err)?;
    }
    let list: Vec<String> = columns.iter().map(|c| quote_ident(c)).collect();
    let list = list.join(", ");
    c.batch_execute(&format!(
        "DELETE FROM {live_q};
         INSERT INTO {live_q} ({list}) SELECT {list} FROM {staging_q} ORDER BY ctid;
         DROP TABLE {staging_q};"
    ))
    .map_err(err)
}

fn create_sql(target: &str, table: &TableSpec) -> String {
    let pk = match (table.mode, table.has_primary_key) {
        (WriteMode::Append, false) => "text",
        (WriteMode::Append, true) => "text NOT NULL",
        (_, false) => "text UNIQUE",
        (_, true) => "text NOT NULL UNIQUE",
    };
    let declared: String = addable_columns(table)
        .map(|c| format!(", {} jsonb", quote_ident(c)))
        .collect();
    format!(
        "CREATE TABLE IF NOT EXISTS {} (\"_pk\" {pk}, \"_data\" jsonb NOT NULL, \
         \"_synced_at\" timestamptz NOT NULL, \"_run_id\" bigint NOT NULL{declared})",
        quote_ident(target)
    )
}

/// Tables are looked up in the connection's search_path, as they are created.
pub(crate) fn table_exists(
    c: &mut impl GenericClient,
    table: &str,
) -> Result<bool, postgres::Error> {
    c.query_one("SELECT to_regclass($1) IS NOT NULL", &[&quote_ident(table)])
        .map(|r| r.get(0))
}

fn table_columns(c: &mut impl GenericClient, table: &str) -> Result<Vec<String>, postgres::Error> {
    Ok(c.query(
        "SELECT attname::text FROM pg_attribute
         WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
         ORDER BY attnum",
        &[&quote_ident(table)],
    )?
    .iter()
    .map(|r| r.get(0))
    .collect())
}

/// True when a unique index covers exactly `_pk` (needed by ON CONFLICT).
fn has_unique_pk(c: &mut impl GenericClient, table: &str) -> Result<bool, postgres::Error> {
    c.query_one(
        "SELECT EXISTS (
             SELECT 1 FROM pg_index i
             JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
             WHERE i.indrelid = to_regclass($1) AND i.indisunique
               AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = '_pk')",
        &[&quote_ident(table)],
    )
    .map(|r| r.get(0))
}
