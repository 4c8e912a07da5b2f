//! Each write mode end to end: the built binary, a local API whose records
//! the test changes between runs, and a real SQLite file read the way a
//! dashboard would read it. Replace is watched in the middle of a run: the
//! server holds a page (a gate, not a sleep) while the test reads the table.

mod common;

use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use common::faults::record;
use common::paged::{Api, Seen, by_id, json, window};
use common::{BEARER, Project, describe};
use serde_json::{Value, json};

const PAGE: usize = 5;

fn data(ids: impl IntoIterator<Item = u64>) -> Vec<Value> {
    ids.into_iter().map(record).collect()
}

fn changed(id: u64) -> Value {
    json!({ "id": id, "v": format!("changed-{id}") })
}

async fn run_ok(project: &Project) {
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
}

/// One column of a query, in row order.
fn column<T: rusqlite::types::FromSql>(project: &Project, sql: &str) -> Vec<T> {
    let db = project.open();
    let mut statement = db.prepare(sql).expect("prepare");
    statement
        .query_map([], |row| row.get::<_, T>(0))
        .expect("query")
        .map(|value| value.expect("row"))
        .collect()
}

fn tables(project: &Project) -> Vec<String> {
    column(
        project,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE '%items%' ORDER BY name",
    )
}

/// Pages by `page` from 1, `per_page` records each, with `total_pages`.
fn pages(seen: &Seen, data: &[Value]) -> Response {
    let page = seen.number("page").unwrap_or(1).max(1);
    let size = seen.number("per_page").unwrap_or(PAGE).max(1);
    json(json!({
        "data": window(data, (page - 1) * size, size),
        "total_pages": data.len().div_ceil(size),
    }))
}

fn paged_job(base: &str, output: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/items"
[pagination]
type = "page"
size_param = "per_page"
size = 5
total_pages_path = "/total_pages"
[records]
path = "/data"
primary_key = ["/id"]
[output]
{output}
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn merge_updates_changed_records_and_keeps_one_row_per_key() {
    // Pages overlap by one record (as offset APIs do when rows shift), so
    // every run sees some records twice.
    let api = Api::start(data(1..=13), |seen, data| {
        let page = seen.number("page").unwrap_or(1).max(1);
        json(json!({ "data": window(data, (page - 1) * 4, PAGE) }))
    })
    .await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "{BEARER}\n[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"page\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n[output]\nmode = \"merge\"\ncolumns = {{ v = \"/v\" }}\n",
            api.base
        ),
    );
    run_ok(&project).await;
    assert_eq!(by_id(project.rows("items")), api.data());

    // Upstream: record 3 changes, record 5 is deleted, record 14 is new.
    let old_five = record(5);
    api.update(|data| {
        data[2] = changed(3);
        data.retain(|r| r["id"] != 5);
        data.push(record(14));
    });
    run_ok(&project).await;
    let mut expected = api.data();
    expected.push(old_five); // merge never deletes
    assert_eq!(by_id(project.rows("items")), by_id(expected));
    let counts: Vec<(i64, i64)> = {
        let db = project.open();
        vec![
            db.query_row("SELECT count(*), count(DISTINCT _pk) FROM items", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap(),
        ]
    };
    assert_eq!(counts, [(14, 14)], "one row per key");
    assert_eq!(
        column::<String>(&project, "SELECT v FROM items WHERE _pk = '[3]'"),
        ["changed-3"],
        "the declared column follows the update"
    );
    // Rows the second run saw carry its run id; the deleted one keeps the first's.
    let runs: Vec<i64> = column(
        &project,
        "SELECT DISTINCT _run_id FROM items WHERE _pk <> '[5]' ORDER BY 1",
    );
    let five: Vec<i64> = column(&project, "SELECT _run_id FROM items WHERE _pk = '[5]'");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(five[0] < runs[0], "{five:?} {runs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn append_writes_each_record_once_per_stream_even_when_pages_are_retried() {
    // The first attempt at cursor 5 gets a 500, the first at cursor 10 a
    // truncated body: both pages are fetched again and written once.
    let failed_500 = Arc::new(AtomicBool::new(false));
    let failed_cut = Arc::new(AtomicBool::new(false));
    let (f500, fcut) = (failed_500.clone(), failed_cut.clone());
    let api = Api::start(data(1..=14), move |seen, data| {
        let start = seen.number("cursor").unwrap_or(0);
        if start == 5 && !f500.swap(true, Ordering::SeqCst) {
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
        let end = start + PAGE;
        let body = json!({ "data": window(data, start, PAGE), "next": (end < data.len()).then(|| end.to_string()) });
        if start == 10 && !fcut.swap(true, Ordering::SeqCst) {
            let text = body.to_string();
            return ([("content-type", "application/json")], text[..text.len() / 2].to_string())
                .into_response();
        }
        json(body)
    })
    .await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            "{BEARER}\n[request]\nurl = \"{}/items\"\n[pagination]\ntype = \"cursor\"\ncursor_path = \"/next\"\ncursor_param = \"cursor\"\n[records]\npath = \"/data\"\n[output]\nmode = \"append\"\n[retry]\ninitial_backoff = \"1ms\"\nmax_backoff = \"5ms\"\n",
            api.base
        ),
    );
    run_ok(&project).await;
    assert!(failed_500.load(Ordering::SeqCst) && failed_cut.load(Ordering::SeqCst));
    assert_eq!(api.lines().len(), 5, "3 pages and 2 retries");
    assert_eq!(
        project.rows("items"),
        api.data(),
        "each record once, in order"
    );
    assert_eq!(
        column::<i64>(&project, "SELECT count(*) FROM items WHERE _pk IS NOT NULL"),
        [0],
        "no primary key: _pk is NULL"
    );

    // A finished stream starts over on the next run and appends again, once.
    run_ok(&project).await;
    let twice: Vec<Value> = api.data().into_iter().chain(api.data()).collect();
    assert_eq!(project.rows("items"), twice);
    let per_run: Vec<i64> = column(
        &project,
        "SELECT count(*) FROM items GROUP BY _run_id ORDER BY _run_id",
    );
    assert_eq!(per_run, [14, 14]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replace_swaps_the_new_table_in_atomically_at_the_end() {
    let api = Api::start(data(1..=17), pages).await;
    let project = Project::new();
    project.job(
        "items",
        &paged_job(&api.base, "mode = \"replace\"\ncolumns = { v = \"/v\" }"),
    );
    run_ok(&project).await;
    let old = api.data();
    assert_eq!(project.rows("items"), old);
    // A dashboard's view over the table must survive the swap.
    project
        .open()
        .execute_batch("CREATE VIEW items_view AS SELECT v FROM items")
        .unwrap();

    // Upstream: three records deleted, one changed, two added.
    api.update(|data| {
        data.retain(|r| ![2, 9, 16].contains(&r["id"].as_u64().unwrap_or(0)));
        data[2] = changed(4);
        data.extend([record(18), record(19)]);
    });
    let new = api.data();
    assert_ne!(new, old);

    let mut held = api.hold(|seen| seen.number("page") == Some(3));
    let mut child = project
        .command(&["run"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn apisync");
    tokio::select! {
        _ = held.reached() => {}
        status = child.wait() => panic!("the run ended before page 3: {status:?}"),
    }
    // Mid-sync (pages 1 and 2 fetched, page 3 on hold): readers see the
    // old table, complete.
    assert_eq!(project.rows("items"), old);
    assert_eq!(
        column::<String>(&project, "SELECT v FROM items_view"),
        old.iter()
            .map(|r| r["v"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    );
    held.release();
    let output = child.wait_with_output().await.expect("wait for apisync");
    assert!(output.status.success(), "{}", describe(&output));

    // After: exactly the new data; deleted rows are gone, no staging left.
    assert_eq!(project.rows("items"), new);
    assert_eq!(tables(&project), ["items"]);
    let values: Vec<String> = column(&project, "SELECT v FROM items_view");
    assert_eq!(values.len(), new.len());
    assert!(values.contains(&"changed-4".to_string()));
    let unique: Vec<i64> = column(&project, "SELECT count(DISTINCT _pk) FROM items");
    assert_eq!(unique, [new.len() as i64]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_replace_run_keeps_the_old_table_and_the_rerun_completes_the_new_one() {
    let broken = Arc::new(AtomicBool::new(false));
    let flag = broken.clone();
    let api = Api::start(data(1..=12), move |seen, data| {
        if flag.load(Ordering::SeqCst) && seen.number("page") == Some(3) {
            return (StatusCode::NOT_FOUND, "gone for now").into_response();
        }
        pages(seen, data)
    })
    .await;
    let project = Project::new();
    project.job("items", &paged_job(&api.base, "mode = \"replace\""));
    run_ok(&project).await;
    let old = api.data();

    api.update(|data| {
        data.retain(|r| r["id"] != 1);
        data.extend((13..=17).map(record));
    });
    broken.store(true, Ordering::SeqCst);
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(project.rows("items"), old, "a failed replace swaps nothing");

    // The rerun continues the staging table from page 3, then swaps.
    broken.store(false, Ordering::SeqCst);
    api.clear_seen();
    run_ok(&project).await;
    assert_eq!(
        api.lines(),
        [
            "GET /items?page=3&per_page=5",
            "GET /items?page=4&per_page=5"
        ]
    );
    assert_eq!(project.rows("items"), api.data());
    assert_eq!(tables(&project), ["items"]);
}
