//! Runs and the status report.

use serde_json::json;

use super::support::{keyed, spec, stream};
use crate::plan::WriteMode;
use crate::store::test_db::backend_test;
use crate::store::{JobStatus, RunOutcome, RunStatus, StoreError};

fn outcome(status: RunStatus, error: Option<&str>) -> RunOutcome {
    RunOutcome {
        status,
        pages: 2,
        records: 3,
        error: error.map(str::to_string),
    }
}

/// Timestamps differ on every run; the snapshot shows where they are.
fn without_times(mut status: JobStatus) -> JobStatus {
    if let Some(run) = status.last_run.as_mut() {
        run.started_at = "<time>".into();
        run.finished_at = run.finished_at.as_ref().map(|_| "<time>".into());
    }
    status.last_success_started_at = status.last_success_started_at.map(|_| "<time>".into());
    status
}

backend_test! {
fn status_reports_last_run_success_rows_and_state(db) {
    let mut store = db.store();
    let table = spec("orders", WriteMode::Merge, &[], true);
    store.prepare_table(&table).unwrap();

    let first = store.begin_run("orders").unwrap();
    store
        .apply_page(
            &stream("orders", "us"),
            &table,
            first,
            &[keyed(json!(1), "a")],
            "{}",
        )
        .unwrap();
    store
        .finish_stream(&stream("orders", "us"), first, Some("\"m\""))
        .unwrap();
    store
        .finish_run(first, &outcome(RunStatus::Succeeded, None))
        .unwrap();

    let second = store.begin_run("orders").unwrap();
    let eu = stream("orders", "eu");
    store
        .apply_page(
            &eu,
            &table,
            second,
            &[keyed(json!(2), "b")],
            "{\"next\":\"x\"}",
        )
        .unwrap();
    store
        .finish_run(
            second,
            &outcome(RunStatus::Failed, Some("GET /orders returned 500")),
        )
        .unwrap();

    let report: Vec<JobStatus> = store
        .status(&[("orders", "orders"), ("never_ran", "never_ran")])
        .unwrap()
        .into_iter()
        .map(without_times)
        .collect();
    assert_eq!(report[0].last_run.as_ref().map(|r| r.id), Some(second));
    assert!(report[0].last_success_started_at.is_some());
    assert_eq!(report[1].rows, None);
    insta::assert_snapshot!(
        "status_report",
        serde_json::to_string_pretty(&report).unwrap()
    );
}
}

backend_test! {
fn a_run_left_running_stays_running_after_reopen(db) {
    let run = db.store().begin_run("j").unwrap();
    let store = db.store();
    let status = store.status(&[("j", "j")]).unwrap().remove(0);
    let last = status.last_run.unwrap();
    assert_eq!(
        (last.id, last.status, last.finished_at),
        (run, RunStatus::Running, None)
    );
    assert_eq!(status.last_success_started_at, None);
}
}

backend_test! {
fn finishing_an_unknown_run_is_an_error(db) {
    let mut store = db.store();
    let err = store
        .finish_run(
            crate::store::RunId(41),
            &outcome(RunStatus::Succeeded, None),
        )
        .unwrap_err();
    assert!(matches!(err, StoreError::Run { run_id: 41, .. }), "{err}");
}
}
