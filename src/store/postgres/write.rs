//! Record tables on PostgreSQL: creating them, writing pages with their
//! checkpoint, and the replace swap.

use std::collections::HashMap;

use postgres::GenericClient;

use super::super::error::StoreError;
use super::super::open::now;
use super::super::sql::{quote_ident, staging_name};
use super::super::tables::{FIXED_COLUMNS, upserts, write_target};
use super::super::types::{RunId, StreamKey, TableSpec};
use super::super::write::check_columns;
use super::conn::Session;
use super::shards::check_claim;
use super::state::{check_lease, end_stream, save_checkpoint};
use super::{PgStore, xact_lock};
use crate::plan::WriteMode;
use crate::record::Record;
use crate::store::shards::HeldClaim;

/// PostgreSQL truncates longer identifiers silently; two long names could
/// then meet in one table.
const MAX_IDENT: usize = 63;

/// A page as one array per column, ready for `unnest`.
struct Columns {
    pk: Vec<Option<String>>,
    data: Vec<String>,
    declared: Vec<Vec<Option<String>>>,
}

impl Columns {
    /// With `upsert`, a key repeated within the page keeps its last record
    /// at the place of its first, as SQLite's row-by-row upsert leaves it.
    fn new(records: &[Record], width: usize, upsert: bool) -> Columns {
        let mut kept: Vec<&Record> = Vec::with_capacity(records.len());
        let mut at: HashMap<&str, usize> = HashMap::new();
        for record in records {
            match record.pk.as_deref().filter(|_| upsert) {
                Some(pk) => match at.get(pk) {
                    Some(&i) => kept[i] = record,
                    None => {
                        at.insert(pk, kept.len());
                        kept.push(record);
                    }
                },
                None => kept.push(record),
            }
        }
        let declared = (0..width)
            .map(|j| kept.iter().map(|r| json_text(&r.columns[j])).collect())
            .collect();
        Columns {
            pk: kept.iter().map(|r| r.pk.clone()).collect(),
            data: kept.iter().map(|r| jsonb_safe(&r.json)).collect(),
            declared,
        }
    }
}

/// A declared column's value as jsonb text; JSON null is SQL NULL (as on
/// SQLite).
fn json_text(value: &serde_json::Value) -> Option<String> {
    (!value.is_null()).then(|| jsonb_safe(&value.to_string()))
}

/// JSON text that jsonb accepts. jsonb refuses the escape `\u0000` (NUL
/// cannot be in PostgreSQL text), so a page holding one could never
/// commit. Each such escape becomes `\\u0000`: the string then holds the
/// six characters `\u0000` where the API sent a NUL (documented in
/// docs/postgres.md). Nothing else changes: an escaped backslash (`\\`)
/// followed by `u0000` is text already and is copied as it is. The text is
/// valid JSON, so a backslash is always the start of an escape.
fn jsonb_safe(json: &str) -> String {
    const NUL: &str = "\\u0000";
    if !json.contains(NUL) {
        return json.to_string();
    }
    let mut out = String::with_capacity(json.len() + 8);
    let mut rest = json;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at..];
        if let Some(after) = escape.strip_prefix(NUL) {
            out.push_str("\\\\u0000");
            rest = after;
        } else {
            // The backslash and the character it escapes (a `\\` too).
            let len = escape[1..].chars().next().map_or(1, |c| 1 + c.len_utf8());
            out.push_str(&escape[..len]);
            rest = &escape[len..];
        }
    }
    out.push_str(rest);
    out
}

/// `INSERT ... SELECT FROM unnest(...)`: `$1` `_synced_at`, `$2` `_run_id`,
/// `$3` the keys, `$4` the records, `$5...` the declared columns.
fn insert_sql(target: &str, table: &TableSpec) -> String {
    let names: Vec<String> = FIXED_COLUMNS
        .iter()
        .copied()
        .chain(table.columns.iter().map(String::as_str))
        .map(quote_ident)
        .collect();
    let n = table.columns.len();
    let arrays: Vec<String> = (0..n + 2).map(|i| format!("${}::text[]", i + 3)).collect();
    let aliases: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let mut select = vec![
        "u.pk".to_string(),
        "u.data::jsonb".to_string(),
        "$1::text::timestamptz".to_string(),
        "$2::bigint".to_string(),
    ];
    select.extend(aliases.iter().map(|a| format!("u.{a}::jsonb")));
    let mut sql = format!(
        "INSERT INTO {} ({}) SELECT {} FROM unnest({}) WITH ORDINALITY AS u(pk, data{}, n) ORDER BY u.n",
        quote_ident(target),
        names.join(", "),
        select.join(", "),
        arrays.join(", "),
        aliases.iter().map(|a| format!(", {a}")).collect::<String>(),
    );
    if upserts(table) {
        let set: Vec<String> = names[1..]
            .iter()
            .map(|c| format!("{c} = excluded.{c}"))
            .collect();
        sql.push_str(&format!(
            " ON CONFLICT (\"_pk\") DO UPDATE SET {}",
            set.join(", ")
        ));
    }
    sql
}

/// Step of a page's transaction after its rows; `Fn`, since a transaction
/// PostgreSQL aborts as a deadlock victim is run again.
type After = Box<dyn Fn(&mut postgres::Transaction<'_>) -> Result<(), StoreError> + Send>;

/// Times a page's transaction runs again after PostgreSQL aborted it as a
/// deadlock victim or for a serialization failure. Shards of one job may
/// upsert pages that share keys, in different orders: each waits for a row
/// the other locked, PostgreSQL aborts one after `deadlock_timeout` (1 s by
/// default), and the other goes on. Running the victim's page again then
/// just waits for the survivor's commit; without it the stream failed and
/// needed a rerun.
const CONFLICT_RETRIES: u32 = 3;

/// Whether a store error comes from a deadlock or serialization failure
/// (in the rows, the claim check or the checkpoint alike).
fn caused_by_conflict(err: &StoreError) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(error) = cause {
        if error
            .downcast_ref::<postgres::Error>()
            .is_some_and(is_conflict)
        {
            return true;
        }
        cause = error.source();
    }
    false
}

fn is_conflict(err: &postgres::Error) -> bool {
    use postgres::error::SqlState;
    err.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

impl PgStore {
    // The stream, its table, run and page, plus the claim and the lease
    // checked in its transaction: bundling them would only move the count.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        claim: Option<&HeldClaim>,
        lease: Option<&str>,
    ) -> Result<(), StoreError> {
        let (key, position) = (stream.clone(), position.to_string());
        self.write_rows_then(
            stream,
            claim,
            lease,
            table,
            run_id,
            records,
            Box::new(move |tx| save_checkpoint(tx, &key, &position)),
        )
    }

    // The stream, its table, run and page, plus the claim and the lease
    // checked in its transaction: bundling them would only move the count.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn apply_last_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        mark: Option<&str>,
        claim: Option<&HeldClaim>,
        lease: Option<&str>,
    ) -> Result<(), StoreError> {
        let (key, mark) = (stream.clone(), mark.map(str::to_string));
        self.write_rows_then(
            stream,
            claim,
            lease,
            table,
            run_id,
            records,
            Box::new(move |tx| end_stream(tx, &key, run_id, mark.as_deref())),
        )
    }

    /// A page's rows, then `after`, in one transaction; first of all, the
    /// stream's claim and the job's lease if it has them (a page of a
    /// stream taken over takes no row lock).
    #[allow(clippy::too_many_arguments)]
    fn write_rows_then(
        &mut self,
        stream: &StreamKey,
        claim: Option<&HeldClaim>,
        lease: Option<&str>,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        after: After,
    ) -> Result<(), StoreError> {
        check_columns(table, records)?;
        let (stream, claim) = (stream.clone(), claim.cloned());
        let lease = lease.map(str::to_string);
        let target = write_target(table);
        let sql = insert_sql(&target, table);
        let rows = Columns::new(records, table.columns.len(), upserts(table));
        self.conn.run(move |session| {
            let row_err = |source: postgres::Error| StoreError::Table {
                table: target.clone(),
                action: "write a page",
                source: Box::new(source),
            };
            let insert = session.prepared(&sql).map_err(row_err)?;
            let Session { client, .. } = session;
            let mut retries = 0;
            loop {
                let attempt = (|| {
                    let mut tx = client.transaction().map_err(row_err)?;
                    check_claim(&mut tx, &stream, claim.as_ref())?;
                    check_lease(&mut tx, &stream.job, lease.as_deref())?;
                    if !rows.data.is_empty() {
                        let synced_at = now();
                        let mut params: Vec<&(dyn postgres::types::ToSql + Sync)> =
                            vec![&synced_at, &run_id.0, &rows.pk, &rows.data];
                        params.extend(
                            rows.declared
                                .iter()
                                .map(|c| c as &(dyn postgres::types::ToSql + Sync)),
                        );
                        tx.execute(&insert, &params).map_err(row_err)?;
                    }
                    after(&mut tx)?;
                    tx.commit().map_err(row_err)
                })();
                match attempt {
                    Err(err) if retries < CONFLICT_RETRIES && caused_by_conflict(&err) => {
                        retries += 1;
                        tracing::debug!(table = %target, retry = retries, error = %err,
                            "a page's transaction was aborted by a conflict; writing it again");
                    }
                    done => return done,
                }
            }
        })?
    }

    pub(crate) fn prepare_table(&mut self, table: &TableSpec) -> Result<(), StoreError> {
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
            for column in table.columns.iter().filter(|c| !existing.contains(c)) {
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
                    mode: super::super::tables::mode_name(table.mode),
                });
            }
            tx.commit().map_err(err("create it"))
        })?
    }

    pub(crate) fn swap_replace(&mut self, table: &TableSpec) -> Result<(), StoreError> {
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
    let declared: String = table
        .columns
        .iter()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_key_keeps_its_last_record_at_its_first_place() {
        let record = |pk: Option<&str>, json: &str| Record {
            json: json.into(),
            pk: pk.map(Into::into),
            columns: vec![serde_json::json!(json)],
        };
        let page = [
            record(Some("[1]"), "a1"),
            record(Some("[2]"), "b1"),
            record(None, "n1"),
            record(Some("[1]"), "a2"),
            record(None, "n2"),
        ];
        let merged = Columns::new(&page, 1, true);
        assert_eq!(merged.data, ["a2", "b1", "n1", "n2"]);
        assert_eq!(
            merged.declared[0],
            [
                Some("\"a2\"".into()),
                Some("\"b1\"".into()),
                Some("\"n1\"".into()),
                Some("\"n2\"".into())
            ]
        );
        let appended = Columns::new(&page, 1, false);
        assert_eq!(appended.data, ["a1", "b1", "n1", "a2", "n2"]);
    }
}
