//! Hand-made records and specs for the store's tests.

use serde_json::Value;

use crate::plan::WriteMode;
use crate::record::Record;
use crate::store::test_db::TestDb;
use crate::store::{RunId, Store, StreamKey, TableSpec};

pub(super) fn spec(table: &str, mode: WriteMode, columns: &[&str], pk: bool) -> TableSpec {
    TableSpec {
        table: table.to_string(),
        mode,
        columns: columns.iter().map(|c| c.to_string()).collect(),
        has_primary_key: pk,
        partition: None,
    }
}

/// A record whose JSON is `{"id": <id>, "v": <v>}` and whose pk is `[<id>]`.
pub(super) fn keyed(id: Value, v: &str) -> Record {
    Record {
        json: serde_json::json!({ "id": id, "v": v }).to_string(),
        pk: Some(format!("[{id}]")),
        columns: Vec::new(),
    }
}

pub(super) fn unkeyed(json: &str) -> Record {
    Record {
        json: json.to_string(),
        pk: None,
        columns: Vec::new(),
    }
}

pub(super) fn stream(job: &str, partition: &str) -> StreamKey {
    StreamKey::new(job, partition)
}

/// A store with one run of `job` started.
pub(super) fn store_with_run(db: &TestDb, job: &str) -> (Store, RunId) {
    let mut store = db.store();
    let run = store.begin_run(job).unwrap();
    (store, run)
}

/// The `v` field of every row, in rowid order (physical order on PostgreSQL).
pub(super) fn values(store: &Store, table: &str) -> Vec<String> {
    store
        .table_rows(table)
        .unwrap()
        .iter()
        .map(|row| {
            let row: Value = serde_json::from_str(row).unwrap();
            row["v"].as_str().unwrap_or_default().to_string()
        })
        .collect()
}

/// One value of a one-row query, as text.
pub(super) fn scalar(store: &mut Store, sql: &str) -> Option<String> {
    let rows = store.query_text(sql);
    assert_eq!(rows.len(), 1, "{sql}: {rows:?}");
    rows[0][0].clone()
}
