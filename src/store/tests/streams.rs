//! Checkpoints, marks, finished partitions, reset and partition values.

use serde_json::json;

use super::support::{keyed, spec, store_with_run, stream, unkeyed};
use crate::plan::WriteMode;
use crate::store::BACKFILL_PREFIX;
use crate::store::test_db::backend_test;

backend_test! {
fn finishing_a_stream_clears_its_checkpoint_and_stores_its_mark(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    let s = stream("j", "");
    store
        .apply_page(&s, &table, run, &[keyed(json!(1), "a")], "{\"pages\":1}")
        .unwrap();
    assert_eq!(store.load_mark(&s).unwrap(), None);

    store
        .finish_stream(&s, run, Some("\"2024-05-01T00:00:00Z\""))
        .unwrap();
    assert_eq!(store.load_checkpoint(&s).unwrap(), None);
    assert_eq!(
        store.load_mark(&s).unwrap().as_deref(),
        Some("\"2024-05-01T00:00:00Z\"")
    );

    // A later stream without records keeps the mark it had.
    store.finish_stream(&s, run, None).unwrap();
    assert_eq!(
        store.load_mark(&s).unwrap().as_deref(),
        Some("\"2024-05-01T00:00:00Z\"")
    );
}
}

backend_test! {
/// semantics.md: a page's rows and what follows them commit together. For
/// the last page that is the end of the stream: if ending it fails, the rows
/// must not stay behind without it (a rerun would fetch and append them
/// again).
fn the_last_page_and_the_end_of_its_stream_commit_together(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    let s = stream("j", "p1");
    store
        .apply_page(&s, &table, run, &[unkeyed(r#"{"n":1}"#)], "{\"pages\":1}")
        .unwrap();
    store
        .apply_last_page(&s, &table, run, &[unkeyed(r#"{"n":2}"#)], Some("2"))
        .unwrap();
    assert_eq!(store.count_rows("j").unwrap(), 2);
    assert_eq!(store.load_checkpoint(&s).unwrap(), None);
    assert_eq!(store.load_mark(&s).unwrap().as_deref(), Some("2"));
    assert_eq!(store.finished_partitions("j").unwrap(), ["p1"]);

    // Ending the next stream fails: its last page's rows roll back with it.
    let t = stream("j", "p2");
    store
        .apply_page(&t, &table, run, &[unkeyed(r#"{"n":3}"#)], "{\"pages\":1}")
        .unwrap();
    store.exec_sql("DROP TABLE _apisync_marks");
    assert!(
        store
            .apply_last_page(&t, &table, run, &[unkeyed(r#"{"n":4}"#)], Some("4"))
            .is_err()
    );
    assert_eq!(
        store.count_rows("j").unwrap(),
        3,
        "page 2 of p2 rolled back"
    );
    assert_eq!(
        store.load_checkpoint(&t).unwrap().as_deref(),
        Some("{\"pages\":1}"),
        "p2 resumes after its first page"
    );
}
}

backend_test! {
fn checkpoints_and_marks_are_per_partition(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    store
        .apply_page(&stream("j", "us"), &table, run, &[], "\"us\"")
        .unwrap();
    store
        .apply_page(&stream("j", "eu"), &table, run, &[], "\"eu\"")
        .unwrap();
    store
        .finish_stream(&stream("j", "eu"), run, Some("5"))
        .unwrap();
    assert_eq!(
        store
            .load_checkpoint(&stream("j", "us"))
            .unwrap()
            .as_deref(),
        Some("\"us\"")
    );
    assert_eq!(store.load_checkpoint(&stream("j", "eu")).unwrap(), None);
    assert_eq!(store.load_mark(&stream("j", "us")).unwrap(), None);
    assert_eq!(
        store.load_mark(&stream("j", "eu")).unwrap().as_deref(),
        Some("5")
    );
    assert_eq!(store.load_checkpoint(&stream("other", "us")).unwrap(), None);
}
}

backend_test! {
fn clearing_a_refused_checkpoint_keeps_the_mark(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    let s = stream("j", "");
    store.finish_stream(&s, run, Some("10")).unwrap();
    store.apply_page(&s, &table, run, &[], "\"stale\"").unwrap();
    store.clear_checkpoint(&s).unwrap();
    assert_eq!(store.load_checkpoint(&s).unwrap(), None);
    assert_eq!(store.load_mark(&s).unwrap().as_deref(), Some("10"));
}
}

backend_test! {
fn a_pass_remembers_finished_partitions_until_it_completes(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    store
        .finish_stream(&stream("j", "us"), run, None)
        .unwrap();
    store
        .finish_stream(&stream("other", "x"), run, None)
        .unwrap();
    // The run crashes here; the next one skips "us".
    let rerun = store.begin_run("j").unwrap();
    assert_eq!(store.finished_partitions("j").unwrap(), ["us"]);
    store
        .finish_stream(&stream("j", "eu"), rerun, None)
        .unwrap();
    assert_eq!(store.finished_partitions("j").unwrap(), ["eu", "us"]);

    store.complete_job_pass("j", &table).unwrap();
    assert!(store.finished_partitions("j").unwrap().is_empty());
    assert_eq!(store.finished_partitions("other").unwrap(), ["x"]);
}
}

backend_test! {
fn a_backfill_and_the_job_pass_keep_separate_finished_sets(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Merge, &[], false);
    store.prepare_table(&table).unwrap();
    let slice = format!("{BACKFILL_PREFIX}2024-01-01..2024-01-02");
    for partition in ["us", slice.as_str()] {
        store
            .finish_stream(&stream("j", partition), run, None)
            .unwrap();
    }
    store.complete_job_pass("j", &table).unwrap();
    assert_eq!(store.finished_partitions("j").unwrap(), [slice]);
    store
        .finish_stream(&stream("j", "us"), run, None)
        .unwrap();
    store.complete_backfill("j").unwrap();
    assert_eq!(store.finished_partitions("j").unwrap(), ["us"]);
}
}

backend_test! {
fn reset_forgets_state_and_staging_but_keeps_rows_and_other_jobs(db) {
    let (mut store, run) = store_with_run(db, "j");
    let merge = spec("j", WriteMode::Merge, &[], true);
    let replace = spec("j", WriteMode::Replace, &[], true);
    store.prepare_table(&merge).unwrap();
    store.prepare_table(&replace).unwrap();
    for partition in ["a", "b"] {
        let s = stream("j", partition);
        store
            .apply_page(&s, &merge, run, &[keyed(json!(partition), "x")], "\"cp\"")
            .unwrap();
    }
    store
        .finish_stream(&stream("j", "a"), run, Some("1"))
        .unwrap();
    let other = stream("k", "");
    store
        .apply_page(&other, &merge, run, &[], "\"k cp\"")
        .unwrap();

    store.reset_job("j", "j", crate::store::Reset::Marks).unwrap();
    for partition in ["a", "b"] {
        assert_eq!(
            store.load_checkpoint(&stream("j", partition)).unwrap(),
            None
        );
        assert_eq!(store.load_mark(&stream("j", partition)).unwrap(), None);
    }
    assert!(store.finished_partitions("j").unwrap().is_empty());
    assert!(
        store.count_rows("_apisync_staging_j").is_err(),
        "staging dropped"
    );
    assert_eq!(store.count_rows("j").unwrap(), 2);
    assert_eq!(
        store.load_checkpoint(&other).unwrap().as_deref(),
        Some("\"k cp\"")
    );
}
}

backend_test! {
fn reset_keeping_marks_forgets_positions_only(db) {
    let (mut store, run) = store_with_run(db, "j");
    let append = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&append).unwrap();
    store
        .apply_page(&stream("j", "a"), &append, run, &[], "\"cp\"")
        .unwrap();
    store
        .finish_stream(&stream("j", "b"), run, Some("7"))
        .unwrap();

    store.reset_job("j", "j", crate::store::Reset::KeepMarks).unwrap();
    assert_eq!(store.load_checkpoint(&stream("j", "a")).unwrap(), None);
    assert_eq!(
        store.load_mark(&stream("j", "b")).unwrap().as_deref(),
        Some("7"),
        "the mark is kept"
    );
    assert!(store.finished_partitions("j").unwrap().is_empty());
}
}

backend_test! {
fn resetting_one_partition_leaves_the_others(db) {
    let (mut store, run) = store_with_run(db, "j");
    let append = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&append).unwrap();
    for partition in ["a", "b"] {
        store
            .apply_page(&stream("j", partition), &append, run, &[], "\"cp\"")
            .unwrap();
        store
            .finish_stream(&stream("j", &format!("{partition}-done")), run, Some("7"))
            .unwrap();
    }

    store
        .reset_stream(&stream("j", "a"), crate::store::Reset::KeepMarks)
        .unwrap();
    store
        .reset_stream(&stream("j", "a-done"), crate::store::Reset::Marks)
        .unwrap();
    assert_eq!(store.load_checkpoint(&stream("j", "a")).unwrap(), None);
    assert_eq!(
        store.load_checkpoint(&stream("j", "b")).unwrap().as_deref(),
        Some("\"cp\"")
    );
    assert_eq!(store.load_mark(&stream("j", "a-done")).unwrap(), None);
    assert_eq!(
        store.load_mark(&stream("j", "b-done")).unwrap().as_deref(),
        Some("7")
    );
    assert_eq!(store.finished_partitions("j").unwrap(), ["b-done"]);
}
}

backend_test! {
fn distinct_values_in_order_of_first_appearance(db) {
    let (mut store, run) = store_with_run(db, "customers");
    let table = spec("customers", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    let page = [
        unkeyed(r#"{"customer":{"id":7}}"#),
        unkeyed(r#"{"customer":{"id":"abc"}}"#),
        unkeyed(r#"{"customer":{"id":7}}"#),
        unkeyed(r#"{"customer":{}}"#),
        unkeyed(r#"{"customer":{"id":null}}"#),
        unkeyed(r#"{"customer":{"id":3}}"#),
    ];
    store
        .apply_page(&stream("customers", ""), &table, run, &page, "{}")
        .unwrap();
    let got = store.distinct_values("customers", "/customer/id").unwrap();
    assert_eq!(got, ["7", "abc", "3"]);

    let page = [unkeyed(r#"{"a/b":{"list":["x","y"]}}"#)];
    store
        .apply_page(&stream("customers", ""), &table, run, &page, "{}")
        .unwrap();
    assert_eq!(
        store.distinct_values("customers", "/a~1b/list/1").unwrap(),
        ["y"]
    );
    // SQLite's JSON paths cannot name a key holding '"'; PostgreSQL's can.
    let quoted = store.distinct_values("customers", "/quo\"te");
    if db.is_postgres() {
        assert_eq!(quoted.unwrap(), Vec::<String>::new());
    } else {
        assert!(quoted.is_err());
    }
}
}

backend_test! {
/// semantics.md: a page's records and the cursor that follows it commit in
/// one transaction. If saving the cursor fails, the page's rows must roll
/// back with it: kept alone, a rerun would fetch and append them again.
fn a_page_whose_checkpoint_cannot_be_saved_leaves_no_rows(db) {
    let (mut store, run) = store_with_run(db, "j");
    let table = spec("j", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    let s = stream("j", "");
    store
        .apply_page(&s, &table, run, &[unkeyed(r#"{"n":1}"#)], "{\"pages\":1}")
        .unwrap();
    store.exec_sql("DROP TABLE _apisync_checkpoints");
    assert!(
        store
            .apply_page(&s, &table, run, &[unkeyed(r#"{"n":2}"#)], "{\"pages\":2}")
            .is_err()
    );
    assert_eq!(store.count_rows("j").unwrap(), 1, "page 2 rolled back");
}
}
