//! replace mode: staging table, atomic swap, resume after a crash.

use rusqlite::Connection;
use serde_json::json;

use super::support::{keyed, spec, stream, values};
use crate::plan::WriteMode;
use crate::store::{Store, StoreError, TableSpec};

fn replace_spec() -> TableSpec {
    spec("items", WriteMode::Replace, &[], true)
}

/// One complete pass that leaves `items` holding `vs`.
fn full_pass(store: &mut Store, vs: &[&str]) {
    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    let page: Vec<_> = vs
        .iter()
        .enumerate()
        .map(|(i, v)| keyed(json!(i), v))
        .collect();
    let s = stream("items", "");
    store.apply_page(&s, &table, run, &page, "{}").unwrap();
    store.finish_stream(&s, &table, run, None).unwrap();
    store.complete_job_pass("items", &table).unwrap();
}

fn count(conn: &Connection) -> i64 {
    conn.query_row("SELECT count(*) FROM items", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn readers_see_the_old_table_until_the_swap_and_the_new_one_after() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut store = Store::open(&path).unwrap();
    full_pass(&mut store, &["old1", "old2"]);

    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    let page: Vec<_> = (0..3).map(|i| keyed(json!(i), "new")).collect();
    store
        .apply_page(&stream("items", ""), &table, run, &page, "{}")
        .unwrap();

    let mut reader = Connection::open(&path).unwrap();
    assert_eq!(
        count(&reader),
        2,
        "staging rows are not visible in the live table"
    );
    let snapshot = reader.transaction().unwrap();
    assert_eq!(count(&snapshot), 2);
    store.complete_job_pass("items", &table).unwrap();
    assert_eq!(
        count(&snapshot),
        2,
        "a reader mid-transaction keeps the old table whole"
    );
    snapshot.commit().unwrap();
    assert_eq!(count(&reader), 3, "the next read sees the whole new table");
    assert_eq!(values(&store, "items"), ["new", "new", "new"]);
    assert_eq!(store.count_rows("_apisync_staging_items").ok(), None);
}

#[test]
fn a_user_view_on_the_table_survives_the_swap() {
    let mut store = Store::open_in_memory().unwrap();
    full_pass(&mut store, &["a"]);
    store
        .conn
        .execute_batch("CREATE VIEW item_values AS SELECT _data ->> '$.v' AS v FROM items")
        .unwrap();
    full_pass(&mut store, &["b", "c"]);
    let n: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM item_values WHERE v IN ('b', 'c')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(n, 2);
}

#[test]
fn a_rerun_after_a_crash_keeps_filling_the_staging_table() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.db");
    let table = replace_spec();
    let s = stream("items", "");
    {
        let mut store = Store::open(&path).unwrap();
        full_pass(&mut store, &["old"]);
        let run = store.begin_run("items").unwrap();
        store.prepare_table(&table).unwrap();
        store
            .apply_page(&s, &table, run, &[keyed(json!(1), "p1")], "\"after p1\"")
            .unwrap();
        // The process dies here: no finish, no swap.
    }
    let mut store = Store::open(&path).unwrap();
    assert_eq!(values(&store, "items"), ["old"]);
    assert_eq!(
        store.load_checkpoint(&s).unwrap().as_deref(),
        Some("\"after p1\"")
    );
    let run = store.begin_run("items").unwrap();
    store.prepare_table(&table).unwrap();
    store
        .apply_page(&s, &table, run, &[keyed(json!(2), "p2")], "\"after p2\"")
        .unwrap();
    store.finish_stream(&s, &table, run, None).unwrap();
    store.complete_job_pass("items", &table).unwrap();
    assert_eq!(values(&store, "items"), ["p1", "p2"]);
}

#[test]
fn partitions_fill_one_staging_table_swapped_once() {
    let mut store = Store::open_in_memory().unwrap();
    full_pass(&mut store, &["old"]);
    let run = store.begin_run("items").unwrap();
    let table = replace_spec();
    store.prepare_table(&table).unwrap();
    for (i, partition) in ["us", "eu"].into_iter().enumerate() {
        let s = stream("items", partition);
        store
            .apply_page(&s, &table, run, &[keyed(json!(i), partition)], "{}")
            .unwrap();
        store.finish_stream(&s, &table, run, None).unwrap();
        if i == 0 {
            assert_eq!(
                values(&store, "items"),
                ["old"],
                "no swap before the pass completes"
            );
        }
    }
    store.complete_job_pass("items", &table).unwrap();
    assert_eq!(values(&store, "items"), ["us", "eu"]);
}

#[test]
fn swapping_without_a_staging_table_is_an_error_and_keeps_the_table() {
    let mut store = Store::open_in_memory().unwrap();
    full_pass(&mut store, &["kept"]);
    let err = store.swap_replace(&replace_spec()).unwrap_err();
    assert!(matches!(err, StoreError::NoStaging { .. }), "{err}");
    assert_eq!(values(&store, "items"), ["kept"]);
}
