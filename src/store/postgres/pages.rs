//! A page's rows and the stream's checkpoint in one transaction on
//! PostgreSQL: rows go in as one `INSERT ... SELECT FROM unnest(...)` per
//! page, one prepared statement per table and mode.

use std::collections::HashMap;

use postgres::GenericClient;

use super::PgStore;
use super::conn::Session;
use super::errors::stream_err;
use super::guards::{check_claim, check_lease};
use super::streams::end_stream;
use crate::record::Record;
use crate::store::backend::Pages;
use crate::store::error::StoreError;
use crate::store::guards::Guard;
use crate::store::rules::{
    FIXED_COLUMNS, PARTITION_COLUMN, check_columns, now, upserts, write_target,
};
use crate::store::sql::quote_ident;
use crate::store::types::{RunId, StreamKey, TableSpec};

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
/// `$3` the keys, `$4` the records, `$5...` the declared columns, then for
/// a partitioned job one `_partition` for every row (bound once, like `$1`).
fn insert_sql(target: &str, table: &TableSpec) -> String {
    let partition = table.partition.as_ref().map(|_| PARTITION_COLUMN);
    let names: Vec<String> = FIXED_COLUMNS
        .iter()
        .copied()
        .chain(partition)
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
    if partition.is_some() {
        select.push(format!("${}::text::jsonb", n + 5));
    }
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

impl Pages for PgStore {
    fn apply_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        position: &str,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        let (key, position) = (stream.clone(), position.to_string());
        self.write_rows_then(
            stream,
            guard,
            table,
            run_id,
            records,
            Box::new(move |tx| save_checkpoint(tx, &key, &position)),
        )
    }

    fn apply_last_page(
        &mut self,
        stream: &StreamKey,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        mark: Option<&str>,
        guard: Guard<'_>,
    ) -> Result<(), StoreError> {
        let (key, mark) = (stream.clone(), mark.map(str::to_string));
        self.write_rows_then(
            stream,
            guard,
            table,
            run_id,
            records,
            Box::new(move |tx| end_stream(tx, &key, run_id, mark.as_deref())),
        )
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
        let (key, position) = (stream.clone(), position.to_string());
        let mark = mark.map(str::to_string);
        self.write_rows_then(
            stream,
            guard,
            table,
            run_id,
            records,
            Box::new(move |tx| {
                save_checkpoint(tx, &key, &position)?;
                match &mark {
                    Some(mark) => save_mark(tx, &key, mark),
                    None => Ok(()),
                }
            }),
        )
    }

    fn load_checkpoint(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.load_value(
            "SELECT position FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
            stream,
            "load the checkpoint",
        )
    }

    fn load_mark(&self, stream: &StreamKey) -> Result<Option<String>, StoreError> {
        self.load_value(
            "SELECT value FROM _apisync.marks WHERE job = $1 AND partition = $2",
            stream,
            "load the mark",
        )
    }

    fn clear_checkpoint(&mut self, stream: &StreamKey) -> Result<(), StoreError> {
        let stream = stream.clone();
        self.conn.run(move |s| {
            s.client
                .execute(
                    "DELETE FROM _apisync.checkpoints WHERE job = $1 AND partition = $2",
                    &[&stream.job, &stream.partition],
                )
                .map(drop)
                .map_err(stream_err(&stream, "clear the checkpoint"))
        })?
    }
}

impl PgStore {
    /// A page's rows, then `after`, in one transaction; first of all, the
    /// stream's claim and the job's lease if it has them (a page of a
    /// stream taken over takes no row lock).
    fn write_rows_then(
        &mut self,
        stream: &StreamKey,
        guard: Guard<'_>,
        table: &TableSpec,
        run_id: RunId,
        records: &[Record],
        after: After,
    ) -> Result<(), StoreError> {
        check_columns(table, records)?;
        let (stream, claim) = (stream.clone(), guard.claim.cloned());
        let lease = guard.lease.map(str::to_string);
        let target = write_target(table);
        let sql = insert_sql(&target, table);
        let rows = Columns::new(records, table.columns.len(), upserts(table));
        let partition = table.partition.as_deref().map(jsonb_safe);
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
                        if let Some(partition) = &partition {
                            params.push(partition);
                        }
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

    fn load_value(
        &self,
        sql: &'static str,
        stream: &StreamKey,
        action: &'static str,
    ) -> Result<Option<String>, StoreError> {
        let stream = stream.clone();
        self.conn.run(move |s| {
            let stmt = s.prepared(sql).map_err(stream_err(&stream, action))?;
            s.client
                .query_opt(&stmt, &[&stream.job, &stream.partition])
                .map(|row| row.map(|r| r.get(0)))
                .map_err(stream_err(&stream, action))
        })?
    }
}

/// Store `stream`'s high-water mark, inside the caller's transaction.
pub(crate) fn save_mark(
    c: &mut impl GenericClient,
    stream: &StreamKey,
    mark: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO _apisync.marks (job, partition, value, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job, partition) DO UPDATE
         SET value = excluded.value, updated_at = excluded.updated_at",
        &[&stream.job, &stream.partition, &mark, &now()],
    )
    .map(drop)
    .map_err(stream_err(stream, "store the mark"))
}

pub(crate) fn save_checkpoint(
    c: &mut impl GenericClient,
    stream: &StreamKey,
    position: &str,
) -> Result<(), StoreError> {
    c.execute(
        "INSERT INTO _apisync.checkpoints (job, partition, position, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (job, partition) DO UPDATE
         SET position = excluded.position, updated_at = excluded.updated_at",
        &[&stream.job, &stream.partition, &position, &now()],
    )
    .map(drop)
    .map_err(stream_err(stream, "save the checkpoint"))
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
