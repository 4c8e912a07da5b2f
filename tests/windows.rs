//! Incremental windows (reach.md section 2) against an events API that,
//! like Datadog's or Mixpanel's export, refuses a range of more than 30
//! days: `{window.start}`/`{window.end}` cut `[mark, end)` into windows the
//! server accepts, each window paged to its end, the mark moving to its end
//! with its last page; a kill -9 anywhere resumes inside the window.

mod common;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, Utc};
use common::{Project, describe};
use serde_json::{Value, json};

const DAY: i64 = 86_400;
/// 2024-01-01T00:00:00Z.
const FIRST: i64 = 1_704_067_200;
/// Events every five days from FIRST: 20 of them, up to 2024-04-05.
const EVENTS: i64 = 20;
/// `end` of the job: 2024-04-10T00:00:00Z, after the last event.
const END: &str = "2024-04-10T00:00:00Z";
const PAGE: usize = 4;

fn event_time(i: i64) -> i64 {
    FIRST + i * 5 * DAY
}

fn rfc3339(epoch: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// One request as the server saw it: its window and cursor.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    start: i64,
    end: i64,
    cursor: usize,
}

/// The events API: `start`/`end` epoch seconds (end not included), at
/// most 30 days apart, `cursor` an offset into the window's events.
/// `hang_at`: the request (counted from 0 over the server's life) that
/// never gets an answer, the first time it is asked.
#[derive(Clone)]
struct Events {
    asked: Arc<Mutex<Vec<Asked>>>,
    refused: Arc<AtomicUsize>,
    base: String,
}

impl Events {
    async fn start(hang_at: Option<usize>) -> (Events, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (hit_tx, hit_rx) = tokio::sync::mpsc::unbounded_channel::<()>();
        let asked: Arc<Mutex<Vec<Asked>>> = Arc::default();
        let refused = Arc::new(AtomicUsize::new(0));
        let hung = Arc::new(AtomicBool::new(false));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (a, r) = (asked.clone(), refused.clone());
        let app = Router::new().fallback(move |request: Request| {
            let (a, r, hung, tx) = (a.clone(), r.clone(), hung.clone(), hit_tx.clone());
            async move {
                let query = request.uri().query().unwrap_or("").to_string();
                let get = |key: &str| {
                    url::form_urlencoded::parse(query.as_bytes())
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.into_owned())
                };
                let (Some(start), Some(end)) = (
                    get("start").and_then(|v| v.parse::<i64>().ok()),
                    get("end").and_then(|v| v.parse::<i64>().ok()),
                ) else {
                    r.fetch_add(1, Ordering::SeqCst);
                    return (StatusCode::BAD_REQUEST, "start and end are required").into_response();
                };
                if end <= start || end - start > 30 * DAY {
                    r.fetch_add(1, Ordering::SeqCst);
                    return (StatusCode::BAD_REQUEST, "the range must be at most 30 days")
                        .into_response();
                }
                let cursor: usize = get("cursor").and_then(|v| v.parse().ok()).unwrap_or(0);
                let n = {
                    let mut asked = a.lock().unwrap();
                    asked.push(Asked { start, end, cursor });
                    asked.len() - 1
                };
                if Some(n) == hang_at && !hung.swap(true, Ordering::SeqCst) {
                    let _ = tx.send(());
                    std::future::pending::<()>().await; // the client is killed
                }
                let in_window: Vec<Value> = (0..EVENTS)
                    .filter(|i| (start..end).contains(&event_time(*i)))
                    .map(|i| json!({ "id": i, "timestamp": rfc3339(event_time(i)) }))
                    .collect();
                let page: Vec<Value> = in_window.iter().skip(cursor).take(PAGE).cloned().collect();
                let next = (cursor + PAGE < in_window.len()).then_some(cursor + PAGE);
                axum::Json(json!({ "events": page, "next": next })).into_response()
            }
        });
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        (
            Events {
                asked,
                refused,
                base,
            },
            hit_rx,
        )
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }
}

/// The job: append mode, so a page written twice shows as doubled rows.
fn job(base: &str) -> String {
    format!(
        r#"[request]
url = "{base}/events"
query = {{ start = "{{window.start:epoch}}", end = "{{window.end:epoch}}" }}

[pagination]
type = "cursor"
cursor_path = "/next"
cursor_param = "cursor"

[records]
path = "/events"

[output]
mode = "append"

[incremental]
cursor_field = "/timestamp"
cursor_type = "timestamp"
initial = "2024-01-01T00:00:00Z"
window = "30d"
end = "{END}"
"#
    )
}

fn ids(project: &Project) -> Vec<i64> {
    let mut ids: Vec<i64> = project
        .rows("events")
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    ids.sort();
    ids
}

fn mark(project: &Project) -> Option<String> {
    project
        .open()
        .query_row(
            "SELECT value FROM _apisync_marks WHERE job = 'events'",
            [],
            |r| r.get(0),
        )
        .ok()
}

/// The windows the first pages asked for, in order.
fn windows(asked: &[Asked]) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for a in asked.iter().filter(|a| a.cursor == 0) {
        if out.last() != Some(&(a.start, a.end)) {
            out.push((a.start, a.end));
        }
    }
    out
}

#[tokio::test]
async fn thirty_day_windows_sync_every_event_once_and_move_the_mark_to_the_end() {
    let (server, _hits) = Events::start(None).await;
    let project = Project::new();
    project.job("events", &job(&server.base));

    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        server.refused.load(Ordering::SeqCst),
        0,
        "a range was refused"
    );
    assert_eq!(ids(&project), (0..EVENTS).collect::<Vec<_>>());
    // Windows of 30 days from `initial`, each starting where the last
    // ended, the last one cut at `end`.
    let end = DateTime::parse_from_rfc3339(END).unwrap().timestamp();
    let expected: Vec<(i64, i64)> = (0..)
        .map(|k| FIRST + k * 30 * DAY)
        .take_while(|start| *start < end)
        .map(|start| (start, (start + 30 * DAY).min(end)))
        .collect();
    assert_eq!(windows(&server.asked()), expected);
    assert_eq!(
        mark(&project).as_deref(),
        Some(format!("\"{END}\"").as_str())
    );

    // The mark has reached `end`: the next run asks for nothing.
    let before = server.asked().len();
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        server.asked().len(),
        before,
        "{:?}",
        &server.asked()[before..]
    );
    assert_eq!(ids(&project).len(), EVENTS as usize);
}

/// The same sync killed (SIGKILL) while each request in turn is in
/// flight, then run again: every event exactly once (append mode shows a
/// page written twice), the rerun's first request is the one the killed
/// run was waiting on or the start of the window after, never an earlier
/// window, and the mark ends at `end`.
#[tokio::test]
async fn a_kill_at_any_request_resumes_inside_the_window_with_no_gap_or_double() {
    let (reference, _hits) = Events::start(None).await;
    let clean = Project::new();
    clean.job("events", &job(&reference.base));
    let out = clean.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let requests = reference.asked().len();
    assert!(requests >= 7, "too few requests to kill at: {requests}");

    for kill_at in 1..requests {
        let (server, mut hits) = Events::start(Some(kill_at)).await;
        let project = Project::new();
        project.job("events", &job(&server.base));
        let mut child = project.command(&["run"]).spawn().unwrap();
        hits.recv().await.unwrap();
        child.kill().await.unwrap();
        let waited_on = server.asked()[kill_at].clone();

        let out = project.run(&["run"]).await;
        assert!(
            out.status.success(),
            "kill at {kill_at}: {}",
            describe(&out)
        );
        assert_eq!(
            ids(&project),
            (0..EVENTS).collect::<Vec<_>>(),
            "kill at {kill_at}: rows lost or doubled"
        );
        let rerun_first = server.asked()[kill_at + 1].clone();
        assert!(
            rerun_first.start >= waited_on.start,
            "kill at {kill_at}: the rerun went back to an earlier window: {rerun_first:?} after {waited_on:?}"
        );
        assert!(
            rerun_first.start > waited_on.start || rerun_first.cursor <= waited_on.cursor,
            "kill at {kill_at}: the rerun skipped a page: {rerun_first:?} after {waited_on:?}"
        );
        assert_eq!(
            mark(&project).as_deref(),
            Some(format!("\"{END}\"").as_str()),
            "kill at {kill_at}"
        );
        assert_eq!(server.refused.load(Ordering::SeqCst), 0);
    }
}

/// Killed inside the third window, the checkpoint holds that window and
/// the mark the end of the second: the window's end moves with its last
/// page, not before.
#[tokio::test]
async fn a_killed_window_keeps_its_bounds_in_the_checkpoint_and_the_mark_at_the_last_window() {
    let (reference, _hits) = Events::start(None).await;
    let clean = Project::new();
    clean.job("events", &job(&reference.base));
    assert!(clean.run(&["run"]).await.status.success());
    let third = FIRST + 60 * DAY;
    let kill_at = reference
        .asked()
        .iter()
        .position(|a| a.start == third && a.cursor > 0)
        .expect("the third window has a second page");

    let (server, mut hits) = Events::start(Some(kill_at)).await;
    let project = Project::new();
    project.job("events", &job(&server.base));
    let mut child = project.command(&["run"]).spawn().unwrap();
    hits.recv().await.unwrap();
    child.kill().await.unwrap();

    let checkpoint: String = project
        .open()
        .query_row(
            "SELECT position FROM _apisync_checkpoints WHERE job = 'events'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let position: Value = serde_json::from_str(&checkpoint).unwrap();
    assert_eq!(
        position["window"],
        json!({ "start": rfc3339(third), "end": rfc3339(third + 30 * DAY) }),
        "{checkpoint}"
    );
    assert_eq!(
        mark(&project),
        Some(format!("\"{}\"", rfc3339(third))),
        "the mark is the second window's end"
    );
}

#[tokio::test]
async fn dry_run_names_the_window_it_would_ask_for() {
    let (server, _hits) = Events::start(None).await;
    let project = Project::new();
    project.job("events", &job(&server.base));
    let out = project.run(&["run", "--dry-run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("window 2024-01-01T00:00:00Z to 2024-01-31T00:00:00Z"),
        "{text}"
    );
    assert!(
        text.contains(&format!("start={FIRST}&end={}", FIRST + 30 * DAY)),
        "{text}"
    );
    assert!(server.asked().is_empty(), "a dry run sent a request");
}

/// A backfill of a windowed job fetches its slice window by window (not
/// the job's whole range per slice) and stores no mark.
#[tokio::test]
async fn a_backfill_slice_is_fetched_in_windows_of_its_own_range() {
    let (server, _hits) = Events::start(None).await;
    let project = Project::new();
    project.job("events", &job(&server.base));
    let out = project
        .run(&[
            "backfill",
            "events",
            "--from",
            "2024-01-15",
            "--to",
            "2024-02-20",
            "--step",
            "40d",
        ])
        .await;
    assert!(out.status.success(), "{}", describe(&out));
    let from = FIRST + 14 * DAY;
    let to = FIRST + 50 * DAY;
    assert_eq!(
        windows(&server.asked()),
        [(from, from + 30 * DAY), (from + 30 * DAY, to)]
    );
    let expected: Vec<i64> = (0..EVENTS)
        .filter(|i| (from..to).contains(&event_time(*i)))
        .collect();
    assert_eq!(ids(&project), expected);
    assert_eq!(mark(&project), None, "a backfill moved the mark");
}
