//! `changed_only`'s record of pass starts: recorded when a pass begins,
//! kept as the job's last finished pass start when the pass completes
//! (plain or sharded), untouched by a pass that does not, forgotten by a
//! reset; and the parent rows read since then.

use super::support::{scalar, spec, stream};
use crate::plan::WriteMode;
use crate::store::test_db::{TestDb, backend_test};
use crate::store::{Reset, Store, StoreReader};

fn passes(db: &TestDb) -> &'static str {
    if db.is_postgres() {
        "_apisync.passes"
    } else {
        "_apisync_passes"
    }
}

/// The start `begin_pass` recorded for the pass under way.
fn open_start(db: &TestDb, store: &mut Store, job: &str) -> Option<String> {
    let sql = format!(
        "SELECT open_started_at FROM {} WHERE job = '{job}'",
        passes(db)
    );
    scalar(store, &sql)
}

backend_test! {
fn a_pass_start_is_the_last_finished_one_only_once_the_pass_completes(db) {
    let mut store = db.store();
    let reader = StoreReader::open(&db.database).unwrap();
    let table = spec("child", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    assert_eq!(reader.last_pass_start("child").unwrap(), None);

    store.begin_pass("child", "parent", "parent").unwrap();
    let first = open_start(db, &mut store, "child").expect("a start");
    let run = store.begin_run("child").unwrap();
    store.finish_stream(&stream("child", "1"), run, None).unwrap();
    // The pass failed here; the next run resumes it and keeps its start.
    store.begin_pass("child", "parent", "parent").unwrap();
    assert_eq!(open_start(db, &mut store, "child"), Some(first.clone()));
    assert_eq!(reader.last_pass_start("child").unwrap(), None, "not finished");

    store.complete_job_pass("child", &table).unwrap();
    assert_eq!(reader.last_pass_start("child").unwrap(), Some(first.clone()));
    assert_eq!(open_start(db, &mut store, "child"), None);

    // The next pass has a start of its own; the last finished one stays
    // until it completes.
    store.begin_pass("child", "parent", "parent").unwrap();
    let second = open_start(db, &mut store, "child").expect("a start");
    assert!(second >= first, "{second} < {first}");
    assert_eq!(reader.last_pass_start("child").unwrap(), Some(first.clone()));

    store.reset_job("child", "child", Reset::KeepMarks).unwrap();
    assert_eq!(reader.last_pass_start("child").unwrap(), Some(first));
    store.reset_job("child", "child", Reset::Marks).unwrap();
    assert_eq!(reader.last_pass_start("child").unwrap(), None);
}
}

backend_test! {
/// A pass whose partitions began finishing before any start was recorded
/// (changed_only turned on mid-pass): its start is unknown, so its end
/// leaves none and the next pass lists every parent.
fn a_pass_already_under_way_without_a_start_leaves_none(db) {
    let mut store = db.store();
    let reader = StoreReader::open(&db.database).unwrap();
    let table = spec("child", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    store.begin_pass("child", "parent", "parent").unwrap();
    store.complete_job_pass("child", &table).unwrap();
    assert!(reader.last_pass_start("child").unwrap().is_some());

    let run = store.begin_run("child").unwrap();
    store.finish_stream(&stream("child", "1"), run, None).unwrap();
    store.begin_pass("child", "parent", "parent").unwrap();
    assert_eq!(open_start(db, &mut store, "child"), None);
    store.complete_job_pass("child", &table).unwrap();
    assert_eq!(reader.last_pass_start("child").unwrap(), None);
}
}

backend_test! {
/// A run of the parent still writing when the pass begins may commit a
/// row stamped before the start after the pass read its parents: the
/// start goes back to that run's start. Runs that ended before, and runs
/// of other jobs, do not count.
fn a_parent_run_still_writing_moves_the_start_back(db) {
    let mut store = db.store();
    let runs = if db.is_postgres() { "_apisync.runs" } else { "_apisync_runs" };
    store.exec_sql(&format!(
        "INSERT INTO {runs} (job, started_at, finished_at, status) VALUES
             ('parent', '2000-01-01T00:00:00.000Z', '2000-01-01T00:01:00.000Z', 'succeeded'),
             ('parent', '2000-01-02T00:00:00.000Z', NULL, 'running'),
             ('unrelated', '1999-01-01T00:00:00.000Z', NULL, 'running');"
    ));
    store.begin_pass("child", "parent", "parent").unwrap();
    assert_eq!(
        open_start(db, &mut store, "child").as_deref(),
        Some("2000-01-02T00:00:00.000Z")
    );

    // That run ends; the next pass counts from its own start.
    store.exec_sql(&format!(
        "UPDATE {runs} SET finished_at = '2000-01-02T00:05:00.000Z', status = 'succeeded'
         WHERE started_at = '2000-01-02T00:00:00.000Z'"
    ));
    let table = spec("child", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();
    store.complete_job_pass("child", &table).unwrap();
    let before = crate::store::rules::now();
    store.begin_pass("child", "parent", "parent").unwrap();
    let own = open_start(db, &mut store, "child").expect("a start");
    assert!(own >= before, "{own} < {before}");
}
}

backend_test! {
/// The sharded completion keeps the start too, in its transaction.
fn a_sharded_completion_keeps_the_pass_start(db) {
    let mut store = db.store();
    let reader = StoreReader::open(&db.database).unwrap();
    let table = spec("child", WriteMode::Append, &[], false);
    store.prepare_table(&table).unwrap();
    store.begin_pass("child", "parent", "parent").unwrap();
    let start = open_start(db, &mut store, "child");
    let run = store.begin_shard_run("child", "inv", 0, "a").unwrap();
    store.finish_stream(&stream("child", "1"), run, None).unwrap();
    assert!(store.complete_sharded_pass("inv", "child", &table).unwrap());
    assert_eq!(reader.last_pass_start("child").unwrap(), start);
}
}
