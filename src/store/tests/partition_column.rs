//! The `_partition` column: a partitioned job's tables have it, each row
//! holding its stream's partition object; other tables do not; tables made
//! before it gain it, their old rows NULL; a replace pass swaps it in.

use serde_json::{Value, json};

use super::support::{keyed, spec, store_with_run, stream};
use crate::plan::{Partition, WriteMode};
use crate::record::Record;
use crate::store::sql::staging_name;
use crate::store::test_db::{TestDb, backend_test};
use crate::store::{Store, TableSpec};

/// `spec` of a partitioned job, as [`TableSpec::of_job`] makes it.
fn partitioned(table: &str, mode: WriteMode) -> TableSpec {
    TableSpec {
        partition: Some("{}".to_string()),
        ..spec(table, mode, &[], true)
    }
}

fn partition(key: &str, vars: &[(&str, &str)]) -> Partition {
    Partition {
        key: key.to_string(),
        vars: vars
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect(),
    }
}

/// One partition of each kind, as `run::partitions` builds them (their
/// objects are checked there), with the object each must write.
fn one_of_each_kind() -> Vec<(Partition, Value)> {
    vec![
        // `values`
        (
            partition("eu", &[("partition", "eu")]),
            json!({"partition": "eu"}),
        ),
        // `field`: a number in the parent reads as its text
        (
            partition("42", &[("partition", "42")]),
            json!({"partition": "42"}),
        ),
        // `fields`
        (
            partition(
                r#"{"brand":"7","id":"12"}"#,
                &[("partition.id", "12"), ("partition.brand", "7")],
            ),
            json!({"brand": "7", "id": "12"}),
        ),
        // `dates`
        (
            partition(
                "2024-01-01..2024-01-02",
                &[
                    ("partition.start", "2024-01-01"),
                    ("partition.end", "2024-01-02"),
                ],
            ),
            json!({"start": "2024-01-01", "end": "2024-01-02"}),
        ),
    ]
}

/// Records `from..to`, keyed by their number.
fn page(from: u64, to: u64) -> Vec<Record> {
    (from..to)
        .map(|i| keyed(json!(i), &i.to_string()))
        .collect()
}

/// `(id, _partition)` of every row of `table`, in insertion order, the
/// column's JSON parsed (jsonb prints it its own way).
fn partitions_by_id(store: &mut Store, db: &TestDb, table: &str) -> Vec<(u64, Option<Value>)> {
    let sql = if db.is_postgres() {
        format!("SELECT _data ->> 'id', _partition::text FROM {table} ORDER BY ctid")
    } else {
        format!("SELECT _data ->> 'id', _partition FROM {table} ORDER BY rowid")
    };
    store
        .query_text(&sql)
        .into_iter()
        .map(|row| {
            let id = row[0].as_deref().and_then(|id| id.parse().ok()).unwrap();
            let object = row[1]
                .as_deref()
                .map(|text| serde_json::from_str(text).unwrap_or_else(|e| panic!("{text:?}: {e}")));
            (id, object)
        })
        .collect()
}

/// Whether `table` has a `_partition` column.
fn has_column(store: &mut Store, db: &TestDb, table: &str) -> bool {
    let sql = if db.is_postgres() {
        format!(
            "SELECT count(*) FROM information_schema.columns
             WHERE table_name = '{table}' AND column_name = '_partition'"
        )
    } else {
        format!("SELECT count(*) FROM pragma_table_info('{table}') WHERE name = '_partition'")
    };
    super::support::scalar(store, &sql).as_deref() == Some("1")
}

backend_test! {
/// Every kind's object lands in each row of its stream, also across
/// SQLite's multi-row statements and their one-row remainder (53 rows).
fn each_row_holds_its_streams_partition_object(db) {
    let (mut store, run) = store_with_run(db, "kids");
    let job_spec = partitioned("kids", WriteMode::Merge);
    store.prepare_table(&job_spec).unwrap();
    let kinds = one_of_each_kind();
    let mut expected = Vec::new();
    for (n, (p, object)) in (0u64..).zip(&kinds) {
        let table = job_spec.for_partition(|| p.object()).unwrap();
        let rows = page(n * 100, n * 100 + 53);
        store
            .apply_page(&stream("kids", &p.key), &table, run, &rows, "{}")
            .unwrap();
        expected.extend((n * 100..n * 100 + 53).map(|id| (id, Some(object.clone()))));
    }
    assert_eq!(partitions_by_id(&mut store, db, "kids"), expected);
    if !db.is_postgres() {
        // On SQLite the text itself: names sorted, so a `fields`
        // partition's object is its key.
        let texts = store.query_text(
            "SELECT _partition FROM kids GROUP BY _partition ORDER BY min(rowid)",
        );
        let texts: Vec<String> = texts.into_iter().filter_map(|row| row[0].clone()).collect();
        assert_eq!(
            texts,
            [
                r#"{"partition":"eu"}"#,
                r#"{"partition":"42"}"#,
                r#"{"brand":"7","id":"12"}"#,
                r#"{"end":"2024-01-02","start":"2024-01-01"}"#,
            ]
        );
        assert_eq!(texts[2], kinds[2].0.key);
    }
}
}

backend_test! {
/// The `has_column` check on a partitioned table is the control: the
/// unpartitioned one is told apart by the column, not by a wrong query.
fn an_unpartitioned_table_has_no_partition_column(db) {
    let (mut store, run) = store_with_run(db, "plain");
    let table = spec("plain", WriteMode::Merge, &[], true);
    assert_eq!(table.for_partition(|| unreachable!("not asked")), None);
    store.prepare_table(&table).unwrap();
    store
        .apply_page(&stream("plain", ""), &table, run, &page(0, 3), "{}")
        .unwrap();
    assert!(!has_column(&mut store, db, "plain"));

    store.prepare_table(&partitioned("kids", WriteMode::Append)).unwrap();
    assert!(has_column(&mut store, db, "kids"));
}
}

backend_test! {
/// A table written before the column existed (or before the job had
/// partitions) gains it; its rows keep NULL, new rows get their object.
fn an_existing_table_gains_the_column_and_its_old_rows_stay_null(db) {
    let (mut store, run) = store_with_run(db, "kids");
    let before = spec("kids", WriteMode::Merge, &[], true);
    store.prepare_table(&before).unwrap();
    store
        .apply_page(&stream("kids", ""), &before, run, &page(1, 3), "{}")
        .unwrap();
    assert!(!has_column(&mut store, db, "kids"));

    let after = partitioned("kids", WriteMode::Merge);
    store.prepare_table(&after).unwrap();
    store.prepare_table(&after).unwrap();
    let eu = partition("eu", &[("partition", "eu")]);
    let table = after.for_partition(|| eu.object()).unwrap();
    store
        .apply_page(&stream("kids", "eu"), &table, run, &page(3, 4), "{}")
        .unwrap();
    assert_eq!(
        partitions_by_id(&mut store, db, "kids"),
        [(1, None), (2, None), (3, Some(json!({"partition": "eu"})))]
    );
}
}

backend_test! {
/// A replace pass writes its staging table with the column and swaps it
/// in: over a live table from an unpartitioned pass too (PostgreSQL copies
/// the rows into the live table, which must gain the column first).
fn a_replace_pass_swaps_in_a_table_with_the_column(db) {
    let (mut store, run) = store_with_run(db, "items");
    let before = spec("items", WriteMode::Replace, &[], true);
    store.prepare_table(&before).unwrap();
    store
        .apply_page(&stream("items", ""), &before, run, &page(0, 2), "{}")
        .unwrap();
    store.finish_stream(&stream("items", ""), run, None).unwrap();
    store.complete_job_pass("items", &before).unwrap();
    assert!(!has_column(&mut store, db, "items"));

    let job_spec = partitioned("items", WriteMode::Replace);
    store.prepare_table(&job_spec).unwrap();
    assert!(has_column(&mut store, db, &staging_name("items")));
    let kinds = one_of_each_kind();
    let mut expected = Vec::new();
    for (n, (p, object)) in (0u64..).zip(&kinds) {
        let table = job_spec.for_partition(|| p.object()).unwrap();
        let s = stream("items", &p.key);
        store
            .apply_page(&s, &table, run, &page(10 + n, 11 + n), "{}")
            .unwrap();
        store.finish_stream(&s, run, None).unwrap();
        expected.push((10 + n, Some(object.clone())));
    }
    store.complete_job_pass("items", &job_spec).unwrap();
    assert_eq!(partitions_by_id(&mut store, db, "items"), expected);
}
}
