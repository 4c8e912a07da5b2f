//! Incremental sync end to end: a real local API whose data the test changes
//! between runs, the built binary, a real SQLite file. Asserts what the
//! server was asked for, not only what was stored.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Utc};
use common::{BEARER, Project, describe};
use serde_json::{Value, json};

#[derive(Default)]
struct Data {
    /// id -> updated_at, as the server writes it (offsets vary).
    records: Vec<(u64, String)>,
    newest_first: bool,
    /// Bumped to make saved cursors unknown (a cursor expires).
    generation: u64,
    /// The query of every request, in order.
    seen: Vec<HashMap<String, String>>,
}

#[derive(Clone)]
struct Api {
    data: Arc<Mutex<Data>>,
    /// Requests so far, for "kill after n requests" without sleeping.
    count: tokio::sync::watch::Sender<u64>,
}

const PAGE: usize = 5;

fn instant(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .expect("RFC 3339")
        .with_timezone(&Utc)
}

async fn items(State(api): State<Api>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (body, status) = {
        let mut data = api.data.lock().unwrap();
        data.seen.push(q.clone());
        answer(&data, &q)
    };
    api.count.send_modify(|n| *n += 1);
    // A little latency so a kill can land half way.
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    (status, axum::Json(body)).into_response()
}

fn answer(data: &Data, q: &HashMap<String, String>) -> (Value, StatusCode) {
    let since = q.get("updated_since").map(|s| instant(s));
    let mut rows: Vec<&(u64, String)> = data
        .records
        .iter()
        .filter(|(_, at)| since.is_none_or(|s| instant(at) >= s))
        .collect();
    rows.sort_by_key(|(id, at)| (instant(at), *id));
    if data.newest_first {
        rows.reverse();
    }
    let start = match q.get("cursor") {
        None => 0,
        Some(cursor) => match cursor.split_once(':') {
            Some((generation, offset)) if generation == format!("g{}", data.generation) => {
                offset.parse().unwrap_or(0)
            }
            _ => {
                return (
                    json!({ "error": "unknown cursor" }),
                    StatusCode::BAD_REQUEST,
                );
            }
        },
    };
    let page: Vec<Value> = rows
        .iter()
        .skip(start)
        .take(PAGE)
        .map(|(id, at)| json!({ "id": id, "updated_at": at }))
        .collect();
    let end = start + page.len();
    let next = (end < rows.len()).then(|| format!("g{}:{end}", data.generation));
    (json!({ "data": page, "next": next }), StatusCode::OK)
}

async fn serve(data: Data) -> (String, Api) {
    let api = Api {
        data: Arc::new(Mutex::new(data)),
        count: tokio::sync::watch::Sender::new(0),
    };
    let app = Router::new()
        .route("/items", get(items))
        .with_state(api.clone());
    let base = common::serve(app).await;
    (base, api)
}

fn job(base: &str, lookback: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/items"
[pagination]
type = "cursor"
cursor_path = "/next"
cursor_param = "cursor"
[records]
path = "/data"
primary_key = ["/id"]
[incremental]
cursor_field = "/updated_at"
cursor_type = "timestamp"
param = "updated_since"
initial = "2024-01-01T00:00:00Z"
{lookback}
"#
    )
}

fn minutes(id: u64) -> String {
    let at = instant("2024-03-01T00:00:00Z") + chrono::Duration::minutes(id as i64);
    at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn records(ids: std::ops::RangeInclusive<u64>) -> Vec<(u64, String)> {
    ids.map(|id| (id, minutes(id))).collect()
}

/// Table rows as (id, updated_at), sorted by id.
fn table(project: &Project) -> Vec<(u64, String)> {
    let mut rows: Vec<(u64, String)> = project
        .rows("items")
        .iter()
        .map(|r| {
            (
                r["id"].as_u64().unwrap(),
                r["updated_at"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    rows.sort();
    rows
}

fn server_rows(api: &Api) -> Vec<(u64, String)> {
    let mut rows = api.data.lock().unwrap().records.clone();
    rows.sort();
    rows
}

fn since_params(api: &Api) -> Vec<Option<String>> {
    let data = api.data.lock().unwrap();
    data.seen
        .iter()
        .filter(|q| !q.contains_key("cursor"))
        .map(|q| q.get("updated_since").cloned())
        .collect()
}

async fn run_ok(project: &Project, args: &[&str]) {
    let output = project.run(args).await;
    assert!(output.status.success(), "{}", describe(&output));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_second_run_asks_only_for_what_changed() {
    for newest_first in [false, true] {
        let (base, api) = serve(Data {
            records: records(1..=12),
            newest_first,
            ..Data::default()
        })
        .await;
        let project = Project::new();
        project.job("items", &job(&base, ""));
        run_ok(&project, &["run"]).await;
        assert_eq!(table(&project), server_rows(&api));

        // Change two records and add one, all later than everything before.
        {
            let mut data = api.data.lock().unwrap();
            data.records[3].1 = minutes(100);
            data.records[7].1 = minutes(101);
            data.records.push((13, minutes(102)));
            data.seen.clear();
        }
        run_ok(&project, &["run"]).await;
        // The mark is the largest updated_at of run 1, whatever the order of pages.
        assert_eq!(
            since_params(&api),
            vec![Some(minutes(12))],
            "newest_first={newest_first}"
        );
        let fetched: usize = {
            let data = api.data.lock().unwrap();
            data.seen.len()
        };
        assert_eq!(
            fetched, 1,
            "one page holds the 4 changed records (12, 4, 8, 13)"
        );
        assert_eq!(
            table(&project),
            server_rows(&api),
            "newest_first={newest_first}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lookback_rereads_late_writes_and_merge_keeps_one_row_each() {
    let (base, api) = serve(Data {
        records: records(1..=10),
        ..Data::default()
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, "lookback = \"3m\""));
    run_ok(&project, &["run"]).await;
    // A late write: record 11 lands with a time before the mark.
    {
        let mut data = api.data.lock().unwrap();
        data.records.push((11, minutes(9)));
        data.seen.clear();
    }
    run_ok(&project, &["run"]).await;
    assert_eq!(
        since_params(&api),
        vec![Some(minutes(7))],
        "mark 10 minus 3 minutes"
    );
    let rows = table(&project);
    assert_eq!(rows, server_rows(&api));
    assert_eq!(
        project.rows("items").len(),
        11,
        "re-read records are not duplicated"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timestamps_with_different_offsets_compare_as_instants() {
    // 10:30+02:00 is 08:30Z: earlier than 09:00Z although it sorts later as text.
    let data = vec![
        (1, "2024-05-01T09:00:00Z".to_string()),
        (2, "2024-05-01T10:30:00+02:00".to_string()),
        (3, "2024-05-01T08:45:00-00:30".to_string()),
    ];
    let (base, api) = serve(Data {
        records: data,
        ..Data::default()
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, ""));
    run_ok(&project, &["run"]).await;
    api.data.lock().unwrap().seen.clear();
    run_ok(&project, &["run"]).await;
    let since = since_params(&api);
    assert_eq!(since.len(), 1);
    let mark = instant(since[0].as_deref().unwrap());
    assert_eq!(
        mark,
        instant("2024-05-01T09:15:00Z"),
        "the largest instant is record 3's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_incremental_stream_resumes_with_the_same_window_and_mark() {
    let (base, api) = serve(Data {
        records: records(1..=60),
        ..Data::default()
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, ""));
    let mut child = project.command(&["run"]).spawn().unwrap();
    let mut count = api.count.subscribe();
    tokio::select! {
        _ = count.wait_for(|n| *n >= 8) => child.kill().await.unwrap(),
        status = child.wait() => panic!("finished before the kill: {status:?}"),
    }
    child.wait().await.unwrap();
    // Where the killed run's last committed page left the stream: the
    // rerun must start exactly there, not from the first page.
    let saved: Option<String> = project
        .open()
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = 'items'",
            [],
            |row| row.get(0),
        )
        .ok();
    let saved_cursor = saved.as_deref().map(|position| {
        let position: Value = serde_json::from_str(position).expect("a checkpoint is JSON");
        position["next"]["cursor"]
            .as_str()
            .unwrap_or_else(|| panic!("a cursor stream saves its cursor: {position}"))
            .to_string()
    });
    api.data.lock().unwrap().seen.clear();
    // New data arrives before the rerun; the resumed stream still finishes
    // the window it started (since = initial), so record 61 is read too.
    api.data.lock().unwrap().records.push((61, minutes(61)));
    run_ok(&project, &["run"]).await;
    assert_eq!(table(&project), server_rows(&api));
    let rerun = api.data.lock().unwrap().seen.clone();
    let initial = Some("2024-01-01T00:00:00Z");
    match &saved_cursor {
        Some(cursor) => {
            assert_eq!(
                rerun[0].get("cursor"),
                Some(cursor),
                "the rerun resumes at the saved cursor: {rerun:?}"
            );
            assert!(
                rerun.iter().all(|q| q.contains_key("cursor")),
                "the rerun never starts the stream over: {rerun:?}"
            );
        }
        None => assert_eq!(rerun[0].get("cursor"), None, "nothing was saved"),
    }
    assert!(
        rerun
            .iter()
            .all(|q| q.get("updated_since").map(String::as_str) == initial),
        "the resumed stream keeps the window it started with: {rerun:?}"
    );
    // The mark covers what the killed run saw before the crash as well.
    api.data.lock().unwrap().seen.clear();
    run_ok(&project, &["run"]).await;
    assert_eq!(since_params(&api), vec![Some(minutes(61))]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_saved_cursor_restarts_the_stream_from_its_mark() {
    let (base, api) = serve(Data {
        records: records(1..=60),
        ..Data::default()
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, ""));
    let mut child = project.command(&["run"]).spawn().unwrap();
    let mut count = api.count.subscribe();
    tokio::select! {
        _ = count.wait_for(|n| *n >= 4) => child.kill().await.unwrap(),
        status = child.wait() => panic!("finished before the kill: {status:?}"),
    }
    api.data.lock().unwrap().generation += 1;
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("rejected the saved position"),
        "a warning says so: {stderr}"
    );
    assert_eq!(table(&project), server_rows(&api));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_refresh_and_reset_ignore_or_forget_the_mark() {
    let (base, api) = serve(Data {
        records: records(1..=7),
        ..Data::default()
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, ""));
    run_ok(&project, &["run"]).await;

    api.data.lock().unwrap().seen.clear();
    run_ok(&project, &["run", "--full-refresh"]).await;
    assert_eq!(
        since_params(&api),
        vec![Some("2024-01-01T00:00:00Z".to_string())],
        "full refresh starts at initial"
    );

    api.data.lock().unwrap().seen.clear();
    run_ok(&project, &["run"]).await;
    assert_eq!(
        since_params(&api),
        vec![Some(minutes(7))],
        "a full refresh still leaves a mark"
    );

    run_ok(&project, &["reset", "items", "--keep-marks"]).await;
    api.data.lock().unwrap().seen.clear();
    run_ok(&project, &["run"]).await;
    assert_eq!(
        since_params(&api),
        vec![Some(minutes(7))],
        "reset --keep-marks keeps the mark"
    );

    run_ok(&project, &["reset", "items"]).await;
    api.data.lock().unwrap().seen.clear();
    run_ok(&project, &["run"]).await;
    assert_eq!(
        since_params(&api),
        vec![Some("2024-01-01T00:00:00Z".to_string())],
        "reset forgets the mark"
    );
}
