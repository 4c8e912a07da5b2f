//! Attacks on incremental windows (reach.md section 2): a hostile server,
//! a hostile job author and a kill -9 at every point, looking for lost or
//! doubled rows, a wrong mark, hangs, panics and unclear errors. Tests of
//! what holds run; a test that shows a finding asserts the right behaviour
//! and is ignored with the finding in one line.

mod common;

use std::process::Stdio;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use chrono::{DateTime, FixedOffset, Utc};
use common::databases::{Backend, TestDatabase};
use common::{Project, describe, text};
use serde_json::{Value, json};

const DAY: i64 = 86_400;
/// 2024-01-01T00:00:00Z.
const FIRST: i64 = 1_704_067_200;
/// `end` of most jobs here: 2024-04-10T00:00:00Z.
const END: &str = "2024-04-10T00:00:00Z";
const INITIAL: &str = "2024-01-01T00:00:00Z";

fn rfc3339(epoch: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch, 0)
        .unwrap()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// The same instant written at +02:00, as some servers spell it.
fn rfc3339_plus_two(epoch: i64) -> String {
    DateTime::<Utc>::from_timestamp(epoch, 0)
        .unwrap()
        .with_timezone(&FixedOffset::east_opt(2 * 3600).unwrap())
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, false)
}

/// 20 events, one every five days from FIRST (ids 0..20).
fn every_five_days() -> Vec<(i64, i64)> {
    (0..20).map(|i| (i, FIRST + i * 5 * DAY)).collect()
}

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq)]
struct Asked {
    path: String,
    start: Option<i64>,
    end: Option<i64>,
    cursor: usize,
    header: Option<String>,
}

/// How the server misbehaves.
#[derive(Debug, Clone, Copy)]
struct Shape {
    /// `end` is included (`at <= end`), as some APIs have it.
    inclusive_end: bool,
    /// Answer 400 to every request after this many: bounds a test of a
    /// run that would otherwise ask forever.
    refuse_after: Option<usize>,
    /// Write timestamps at +02:00 instead of UTC.
    plus_two: bool,
    /// Leave the cursor field out of the records.
    no_cursor_field: bool,
    page: usize,
}

impl Default for Shape {
    fn default() -> Self {
        Shape {
            inclusive_end: false,
            refuse_after: None,
            plus_two: false,
            no_cursor_field: false,
            page: 4,
        }
    }
}

/// An events API: `start` and `end` (epoch seconds for timestamp jobs,
/// the id for integer jobs; from the query or a POST body; each optional,
/// unbounded when absent), `cursor` an offset into the range's events in
/// time order. `/parents` hands out parent rows for partition tests.
#[derive(Clone)]
struct Api {
    /// (id, at): `at` epoch seconds, or the id itself for integer jobs.
    events: Arc<Mutex<Vec<(i64, i64)>>>,
    parents: Arc<Mutex<Vec<Value>>>,
    asked: Arc<Mutex<Vec<Asked>>>,
    shape: Arc<Mutex<Shape>>,
    base: String,
}

struct Hang {
    at: Option<usize>,
    hung: AtomicBool,
    tx: tokio::sync::mpsc::UnboundedSender<()>,
}

impl Api {
    async fn start(events: Vec<(i64, i64)>, shape: Shape) -> Api {
        Self::start_hanging(events, shape, None).await.0
    }

    /// `hang_at`: the request (counted from 0 over the server's life) that
    /// never gets an answer, the first time it is asked; the receiver
    /// hears when it arrives.
    async fn start_hanging(
        events: Vec<(i64, i64)>,
        shape: Shape,
        hang_at: Option<usize>,
    ) -> (Api, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let hang = Arc::new(Hang {
            at: hang_at,
            hung: AtomicBool::new(false),
            tx,
        });
        let api = Api {
            events: Arc::new(Mutex::new(events)),
            parents: Arc::default(),
            asked: Arc::default(),
            shape: Arc::new(Mutex::new(shape)),
            base: String::new(),
        };
        let state = api.clone();
        let app = Router::new().fallback(move |request: Request| {
            let (state, hang) = (state.clone(), hang.clone());
            async move { state.answer(request, &hang).await }
        });
        let base = common::serve(app).await;
        (Api { base, ..api }, rx)
    }

    async fn answer(&self, request: Request, hang: &Hang) -> axum::response::Response {
        let path = request.uri().path().to_string();
        if path == "/parents" {
            let parents = self.parents.lock().unwrap().clone();
            return axum::Json(json!({ "parents": parents })).into_response();
        }
        let query = request.uri().query().unwrap_or("").to_string();
        let header = request
            .headers()
            .get("x-window-end")
            .map(|v| v.to_str().unwrap().to_string());
        let body: Value = {
            let bytes = axum::body::to_bytes(request.into_body(), 1 << 20)
                .await
                .unwrap();
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        let get = |key: &str| -> Option<String> {
            url::form_urlencoded::parse(query.as_bytes())
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.into_owned())
                .or_else(|| match &body[key] {
                    Value::String(s) => Some(s.clone()),
                    Value::Number(n) => Some(n.to_string()),
                    _ => None,
                })
        };
        let start = get("start").map(|v| v.parse::<i64>().expect("start is a number"));
        let end = get("end").map(|v| v.parse::<i64>().expect("end is a number"));
        let cursor: usize = get("cursor").and_then(|v| v.parse().ok()).unwrap_or(0);
        let shape = *self.shape.lock().unwrap();
        let n = {
            let mut asked = self.asked.lock().unwrap();
            asked.push(Asked {
                path,
                start,
                end,
                cursor,
                header,
            });
            asked.len() - 1
        };
        if shape.refuse_after.is_some_and(|limit| n >= limit) {
            return (StatusCode::BAD_REQUEST, "too many requests for this test").into_response();
        }
        if Some(n) == hang.at && !hang.hung.swap(true, Ordering::SeqCst) {
            let _ = hang.tx.send(());
            std::future::pending::<()>().await; // the client is killed
        }
        let mut events = self.events.lock().unwrap().clone();
        events.sort_by_key(|(id, at)| (*at, *id));
        let in_range: Vec<Value> = events
            .iter()
            .filter(|(_, at)| start.is_none_or(|s| *at >= s))
            .filter(|(_, at)| match (end, shape.inclusive_end) {
                (None, _) => true,
                (Some(e), false) => *at < e,
                (Some(e), true) => *at <= e,
            })
            .map(|(id, at)| {
                // Integer jobs' `at` (the id) may be no time at all.
                let fits = DateTime::<Utc>::from_timestamp(*at, 0).is_some();
                let stamp = match shape.plus_two {
                    true if fits => rfc3339_plus_two(*at),
                    false if fits => rfc3339(*at),
                    _ => String::new(),
                };
                match shape.no_cursor_field {
                    true => json!({ "id": id }),
                    false => json!({ "id": id, "timestamp": stamp }),
                }
            })
            .collect();
        let page: Vec<Value> = in_range
            .iter()
            .skip(cursor)
            .take(shape.page)
            .cloned()
            .collect();
        let next = (cursor + shape.page < in_range.len()).then_some(cursor + shape.page);
        axum::Json(json!({ "events": page, "next": next })).into_response()
    }

    fn asked(&self) -> Vec<Asked> {
        self.asked.lock().unwrap().clone()
    }

    /// The windows the first pages asked for, in order.
    fn windows(&self) -> Vec<(Option<i64>, Option<i64>)> {
        let mut out = Vec::new();
        for a in self.asked().iter().filter(|a| a.cursor == 0) {
            if out.last() != Some(&(a.start, a.end)) {
                out.push((a.start, a.end));
            }
        }
        out
    }
}

const PAGING: &str = r#"[pagination]
type = "cursor"
cursor_path = "/next"
cursor_param = "cursor"

[records]
path = "/events"
"#;

/// A timestamp job in append mode (a page written twice shows as doubled
/// rows) with `{window.start:epoch}`/`{window.end:epoch}` in the query;
/// `incremental` lines go after `initial`.
fn windowed(base: &str, incremental: &str) -> String {
    format!(
        r#"[request]
url = "{base}/events"
query = {{ start = "{{window.start:epoch}}", end = "{{window.end:epoch}}" }}

{PAGING}
[output]
mode = "append"

[incremental]
cursor_field = "/timestamp"
cursor_type = "timestamp"
initial = "{INITIAL}"
{incremental}
"#
    )
}

/// The same job without windows: `{mark:epoch}` as `start`, no `end`.
fn unwindowed(base: &str) -> String {
    format!(
        r#"[request]
url = "{base}/events"
query = {{ start = "{{mark:epoch}}" }}

{PAGING}
[output]
mode = "append"

[incremental]
cursor_field = "/timestamp"
cursor_type = "timestamp"
initial = "{INITIAL}"
"#
    )
}

/// An integer-cursor job (`/id`) in append mode, windows in the query.
fn integer_windowed(base: &str, incremental: &str) -> String {
    format!(
        r#"[request]
url = "{base}/events"
query = {{ start = "{{window.start}}", end = "{{window.end}}" }}

{PAGING}
[output]
mode = "append"

[incremental]
cursor_field = "/id"
cursor_type = "integer"
{incremental}
"#
    )
}

fn ids_of(rows: &[Value]) -> Vec<i64> {
    let mut ids: Vec<i64> = rows.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    ids.sort();
    ids
}

fn ids(project: &Project) -> Vec<i64> {
    ids_of(&project.rows("events"))
}

fn mark(project: &Project) -> Option<String> {
    project
        .open()
        .query_row(
            "SELECT value FROM _apisync_marks WHERE job = 'events' AND partition = ''",
            [],
            |r| r.get(0),
        )
        .ok()
}

fn quoted(text: &str) -> String {
    format!("\"{text}\"")
}

fn no_panic(out: &std::process::Output) {
    assert!(
        !text(out).contains("panicked"),
        "apisync panicked:\n{}",
        describe(out)
    );
}

/// Run `args` killed (SIGKILL) once the request the server hangs on
/// arrives.
async fn killed_at(project: &Project, hits: &mut tokio::sync::mpsc::UnboundedReceiver<()>) {
    let mut child = project
        .command(&["run"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::select! {
        _ = hits.recv() => {}
        status = child.wait() => panic!("the run ended before the kill: {status:?}"),
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
}

// ---------------------------------------------------------------------
// Findings
// ---------------------------------------------------------------------

/// Integer windows without `end` move the mark to the end of every window
/// that brought a record, also the last one, which was only partly
/// filled: ids created in it afterwards (auto-increment ids, the very
/// case `end` absent is for) are below the mark and never asked again.
#[tokio::test]
async fn open_integer_windows_fetch_ids_created_later_in_a_partly_filled_window() {
    let api = Api::start((0..150).map(|i| (i, i)).collect(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &integer_windowed(&api.base, "initial = 0\nwindow = 100"),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&project), (0..150).collect::<Vec<_>>());

    // Ten more ids are created, as an auto-increment table does.
    api.events
        .lock()
        .unwrap()
        .extend((150..160).map(|i| (i, i)));
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        ids(&project),
        (0..160).collect::<Vec<_>>(),
        "mark {:?}, windows asked {:?}",
        mark(&project),
        api.windows()
    );
}

/// `max_pages` ("safety stop") ends a window early, and the window is
/// then taken as complete: the mark moves to its end and the pages it
/// did not fetch are never asked for again. Without windows the mark is
/// the largest cursor seen, so the next run goes on from there.
#[tokio::test]
async fn max_pages_cutting_a_window_short_does_not_lose_the_rest_of_it() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    let project = Project::new();
    let job = windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\""))
        .replace("[records]", "max_pages = 1\n\n[records]");
    project.job("events", &job);
    // One page a run: the seven pages of the four windows take seven
    // runs, each going on inside the window where the last one stopped.
    for _ in 0..7 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_eq!(
        ids(&project),
        (0..20).collect::<Vec<_>>(),
        "after seven runs; mark {:?}",
        mark(&project)
    );
    assert_eq!(mark(&project), Some(format!("\"{END}\"")));
}

/// A windowed stream killed mid-stream while the job had no windows, the
/// job then given windows: the old checkpoint's offset is applied inside
/// the first window, and the pages the old stream wrote past that window
/// are fetched again by the next one.
#[tokio::test]
async fn a_checkpoint_from_before_windows_does_not_double_rows_when_windows_are_added() {
    let (api, mut hits) = Api::start_hanging(every_five_days(), Shape::default(), Some(2)).await;
    let project = Project::new();
    project.job("events", &unwindowed(&api.base));
    killed_at(&project, &mut hits).await;
    // The second page may still have been with the writer at the kill.
    let kept = ids(&project);
    assert!(
        kept == (0..8).collect::<Vec<_>>() || kept == (0..4).collect::<Vec<_>>(),
        "one or two pages kept: {kept:?}"
    );

    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    let out = project.run(&["run"]).await;
    no_panic(&out);
    let ids = ids(&project);
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(ids, distinct, "doubled rows; asked {:?}", api.asked());
    if out.status.success() {
        assert_eq!(ids, (0..20).collect::<Vec<_>>(), "{}", describe(&out));
    }
}

/// The other way: killed inside the third window, then the windows taken
/// out of the job (`{mark}` again). The checkpoint keeps `since` = the
/// run's first start (`initial`), so the resumed stream would ask for
/// everything since `initial` at the window's offset, writing rows of the
/// first windows again: it is refused with a hint instead.
#[tokio::test]
async fn a_window_checkpoint_does_not_double_rows_when_windows_are_removed() {
    let reference = Api::start(every_five_days(), Shape::default()).await;
    let clean = Project::new();
    clean.job(
        "events",
        &windowed(
            &reference.base,
            &format!("window = \"30d\"\nend = \"{END}\""),
        ),
    );
    assert!(clean.run(&["run"]).await.status.success());
    let third = FIRST + 60 * DAY;
    let kill_at = reference
        .asked()
        .iter()
        .position(|a| a.start == Some(third) && a.cursor > 0)
        .unwrap();

    let (api, mut hits) =
        Api::start_hanging(every_five_days(), Shape::default(), Some(kill_at)).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    killed_at(&project, &mut hits).await;
    // The third window's first page may still have been with the writer.
    let before = ids(&project);
    assert!(
        before == (0..16).collect::<Vec<_>>() || before == (0..12).collect::<Vec<_>>(),
        "{before:?}"
    );

    project.job("events", &unwindowed(&api.base));
    let out = project.run(&["run"]).await;
    no_panic(&out);
    assert!(
        describe(&out).contains("the saved checkpoint was written when the job fetched by windows"),
        "{}",
        describe(&out)
    );
    let ids = ids(&project);
    let mut distinct = ids.clone();
    distinct.dedup();
    assert_eq!(
        ids,
        distinct,
        "doubled rows; resumed with {:?}",
        &api.asked()[kill_at + 1..]
    );
    if out.status.success() {
        assert_eq!(ids, (0..20).collect::<Vec<_>>(), "{}", describe(&out));
    }
}

/// A parent table with a column the child names `end`
/// (`fields = { id = "/id", end = "/ends" }`): `{partition.end}` is read
/// as a `dates` slice's end, so the child's windows stop at the parent's
/// value. Nothing after it is ever fetched, and the run says nothing.
#[tokio::test]
async fn a_from_job_field_named_end_does_not_cut_the_childs_windows() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    *api.parents.lock().unwrap() = vec![json!({ "id": 1, "ends": "2024-01-15T00:00:00Z" })];
    let project = Project::new();
    project.job(
        "campaigns",
        &format!(
            "[request]\nurl = \"{}/parents\"\n[records]\npath = \"/parents\"\nprimary_key = [\"/id\"]\n",
            api.base
        ),
    );
    let child = windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\""))
        .replace(
            "query = {",
            "query = { campaign = \"{partition.id}\", campaign_end = \"{partition.end}\", ",
        )
        .replace(
            "[output]",
            "[partitions]\nfrom_job = \"campaigns\"\nfields = { id = \"/id\", end = \"/ends\" }\n\n[output]",
        );
    project.job("events", &format!("depends_on = [\"campaigns\"]\n{child}"));
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        ids(&project),
        (0..20).collect::<Vec<_>>(),
        "windows asked {:?}",
        api.windows()
    );
}

/// The same with a field named `start` that is not a time: the stream
/// fails saying it has "no `initial`", though the job has one.
#[tokio::test]
async fn a_from_job_field_named_start_does_not_replace_initial() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    *api.parents.lock().unwrap() = vec![json!({ "id": 1, "first_page": 7 })];
    let project = Project::new();
    project.job(
        "campaigns",
        &format!(
            "[request]\nurl = \"{}/parents\"\n[records]\npath = \"/parents\"\nprimary_key = [\"/id\"]\n",
            api.base
        ),
    );
    let child = windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\""))
        .replace(
            "query = {",
            "query = { campaign = \"{partition.id}\", from_page = \"{partition.start}\", ",
        )
        .replace(
            "[output]",
            "[partitions]\nfrom_job = \"campaigns\"\nfields = { id = \"/id\", start = \"/first_page\" }\n\n[output]",
        );
    project.job("events", &format!("depends_on = [\"campaigns\"]\n{child}"));
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&project), (0..20).collect::<Vec<_>>());
}

/// `end = "now-300000y"`: a duration humantime reads and chrono holds,
/// but `now` minus it is before chrono's first year.
#[tokio::test]
async fn an_end_before_the_calendar_does_not_panic() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, "window = \"30d\"\nend = \"now-300000y\""),
    );
    let out = project.run(&["validate"]).await;
    no_panic(&out);
    let out = project.run(&["run"]).await;
    no_panic(&out);
    // The end is before `initial`: nothing to fetch (or a refusal).
    assert!(api.asked().is_empty(), "{:?}", api.asked());
    let out = project.run(&["run", "--dry-run"]).await;
    no_panic(&out);
}

/// `lookback = "300000y"` beside windows: taken off the stored mark where
/// a run starts, it goes before chrono's first year.
#[tokio::test]
async fn a_huge_lookback_does_not_panic() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    project.job(
        "events",
        &windowed(
            &api.base,
            &format!("window = \"30d\"\nend = \"{END}\"\nlookback = \"300000y\""),
        ),
    );
    let out = project.run(&["run"]).await;
    no_panic(&out);
}

/// `window = "1000000000y"`: humantime reads it, chrono cannot hold it,
/// `unwrap_or_default` makes it zero, and a zero-length first window is
/// "nothing to fetch": the run succeeds having asked for nothing.
#[tokio::test]
async fn a_window_too_long_for_chrono_still_fetches_everything() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(
            &api.base,
            &format!("window = \"1000000000y\"\nend = \"{END}\""),
        ),
    );
    let out = project.run(&["run"]).await;
    no_panic(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        ids(&project),
        (0..20).collect::<Vec<_>>(),
        "asked {:?}",
        api.asked()
    );
}

/// `window = "1s"` from 2000 to 2024: 757 million windows, each at least
/// one request, empty or not. Nothing says so before the first request;
/// the run would go on for years. (The server refuses after 50 requests
/// to end the test.)
#[tokio::test]
async fn a_window_count_in_the_hundreds_of_millions_is_refused_before_any_request() {
    let api = Api::start(
        every_five_days(),
        Shape {
            refuse_after: Some(50),
            ..Shape::default()
        },
    )
    .await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, "window = \"1s\"\nend = \"2023-12-31T00:00:00Z\"")
            .replace(INITIAL, "2000-01-01T00:00:00Z"),
    );
    let out = project.run(&["run"]).await;
    no_panic(&out);
    assert!(!out.status.success(), "{}", describe(&out));
    assert_eq!(api.asked().len(), 0, "requests sent before refusing");
    assert!(text(&out).contains("window"), "{}", describe(&out));
}

/// An API whose `end` is inclusive (many are): the event exactly on a
/// window boundary comes back in both windows and is appended twice.
/// apisync knows the cursor field and the window `[start, end)`: it could
/// keep each record to the window it belongs to.
#[tokio::test]
#[ignore = "decided, not mended: records are written as the server sends them, not filtered to [start, end) (the API may filter on another field than cursor_field); an inclusive-end API doubles boundary records in append mode; docs/jobs.md says to use merge there"]
async fn an_inclusive_end_server_does_not_double_boundary_records() {
    let api = Api::start(
        every_five_days(),
        Shape {
            inclusive_end: true,
            ..Shape::default()
        },
    )
    .await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&project), (0..20).collect::<Vec<_>>());
}

/// Integer windows near `i64::MAX`: the last window is `[MAX-5, MAX)`
/// and the window after it would start at MAX, which is "the end", so the
/// id MAX itself is never in any window.
#[tokio::test]
#[ignore = "open finding (minor): integer windows saturate at i64::MAX with an exclusive end, so the id i64::MAX itself is never fetched"]
async fn integer_windows_reach_the_largest_id() {
    let top = i64::MAX;
    let api = Api::start((top - 15..=top).map(|i| (i, i)).collect(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &integer_windowed(&api.base, &format!("initial = {}\nwindow = 10", top - 15)),
    );
    let out = project.run(&["run"]).await;
    no_panic(&out);
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        ids(&project),
        (top - 15..=top).collect::<Vec<_>>(),
        "windows {:?}",
        api.windows()
    );
}

// ---------------------------------------------------------------------
// What holds
// ---------------------------------------------------------------------

/// Open integer windows stop at the first empty window, the mark just past
/// the largest id seen (ids may still be created above it), as documented; a gap in the ids wider than `window`
/// stops them there, run after run (the ids after it are never reached:
/// a documented limit, reported here because it loses records silently).
#[tokio::test]
async fn open_integer_windows_stop_at_the_first_empty_window() {
    let mut events: Vec<(i64, i64)> = (0..25).map(|i| (i, i)).collect();
    events.extend((250..255).map(|i| (i, i)));
    let api = Api::start(events, Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &integer_windowed(&api.base, "initial = 0\nwindow = 10"),
    );
    for _ in 0..2 {
        let out = project.run(&["run"]).await;
        assert!(out.status.success(), "{}", describe(&out));
    }
    assert_eq!(ids(&project), (0..25).collect::<Vec<_>>());
    assert_eq!(mark(&project).as_deref(), Some("25"));
    assert_eq!(
        api.windows().last(),
        Some(&(Some(25), Some(35))),
        "{:?}",
        api.windows()
    );
}

/// Open integer windows killed at every request, append mode: every id
/// once, the mark just past the largest id.
#[tokio::test]
async fn open_integer_windows_killed_at_every_request_keep_every_id_once() {
    let events: Vec<(i64, i64)> = (0..25).map(|i| (i, i)).collect();
    let reference = Api::start(events.clone(), Shape::default()).await;
    let clean = Project::new();
    clean.job(
        "events",
        &integer_windowed(&reference.base, "initial = 0\nwindow = 10"),
    );
    assert!(clean.run(&["run"]).await.status.success());
    let requests = reference.asked().len();
    assert!(requests >= 8, "{requests}");
    for kill_at in 0..requests {
        let (api, mut hits) =
            Api::start_hanging(events.clone(), Shape::default(), Some(kill_at)).await;
        let project = Project::new();
        project.job(
            "events",
            &integer_windowed(&api.base, "initial = 0\nwindow = 10"),
        );
        killed_at(&project, &mut hits).await;
        let out = project.run(&["run"]).await;
        assert!(
            out.status.success(),
            "kill at {kill_at}: {}",
            describe(&out)
        );
        assert_eq!(
            ids(&project),
            (0..25).collect::<Vec<_>>(),
            "kill at {kill_at}"
        );
        assert_eq!(mark(&project).as_deref(), Some("25"), "kill at {kill_at}");
    }
}

/// Window bounds in the path (`date`), a header (`rfc3339`) and a POST
/// body (`epoch`), with an empty window in the middle: every event once,
/// every window asked, the mark at `end`.
#[tokio::test]
async fn window_bounds_in_path_header_and_body_with_an_empty_window_between() {
    // No events in [day 30, day 60): the second window is empty.
    let events: Vec<(i64, i64)> = every_five_days()
        .into_iter()
        .filter(|(i, _)| !(6..12).contains(i))
        .collect();
    let expected: Vec<i64> = events.iter().map(|(i, _)| *i).collect();
    let api = Api::start(events, Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &format!(
            r#"[request]
url = "{}/events/{{window.start:date}}"
method = "POST"
headers = {{ "x-window-end" = "{{window.end:rfc3339}}" }}
body = {{ start = "{{window.start:epoch}}", end = "{{window.end:epoch}}" }}

{PAGING}
[output]
mode = "append"

[incremental]
cursor_field = "/timestamp"
cursor_type = "timestamp"
initial = "{INITIAL}"
window = "30d"
end = "{END}"
"#,
            api.base
        ),
    );
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&project), expected);
    assert_eq!(mark(&project), Some(quoted(END)));
    let firsts: Vec<Asked> = api.asked().into_iter().filter(|a| a.cursor == 0).collect();
    let starts: Vec<i64> = firsts.iter().map(|a| a.start.unwrap()).collect();
    assert_eq!(
        starts,
        [FIRST, FIRST + 30 * DAY, FIRST + 60 * DAY, FIRST + 90 * DAY]
    );
    assert_eq!(firsts[1].path, "/events/2024-01-31");
    assert_eq!(firsts[1].header.as_deref(), Some("2024-03-01T00:00:00Z"));
}

/// A mark stored by a non-windowed run in the server's own spelling
/// (+02:00), then the job given windows: the first window starts at that
/// instant. Merge mode: the record at the mark itself is read again, as
/// without windows.
#[tokio::test]
async fn a_v1_mark_in_another_offset_starts_the_first_window_at_the_same_instant() {
    let api = Api::start(
        every_five_days(),
        Shape {
            plus_two: true,
            ..Shape::default()
        },
    )
    .await;
    let project = Project::new();
    let merge = |job: String| {
        job.replace("mode = \"append\"", "mode = \"merge\"")
            .replace(
                "path = \"/events\"",
                "path = \"/events\"\nprimary_key = [\"/id\"]",
            )
    };
    // Only the first ten events exist for the first run.
    let all = api.events.lock().unwrap().clone();
    *api.events.lock().unwrap() = all[..10].to_vec();
    project.job("events", &merge(unwindowed(&api.base)));
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(
        mark(&project),
        Some(quoted(&rfc3339_plus_two(FIRST + 45 * DAY)))
    );

    *api.events.lock().unwrap() = all;
    project.job(
        "events",
        &merge(windowed(
            &api.base,
            &format!("window = \"30d\"\nend = \"{END}\""),
        )),
    );
    let before = api.asked().len();
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(api.asked()[before].start, Some(FIRST + 45 * DAY));
    assert_eq!(ids(&project), (0..20).collect::<Vec<_>>());
    assert_eq!(mark(&project), Some(quoted(END)));
}

/// A stored mark that is a number, the job a timestamp one with windows:
/// the run fails before any request, saying what is wrong and how to
/// start over.
#[tokio::test]
async fn a_numeric_mark_under_timestamp_windows_is_a_clear_error() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    assert!(project.run(&["run"]).await.status.success());
    project
        .open()
        .execute(
            "UPDATE _apisync_marks SET value = '1704067200' WHERE job = 'events'",
            [],
        )
        .unwrap();
    let before = api.asked().len();
    let out = project.run(&["run"]).await;
    no_panic(&out);
    assert!(!out.status.success(), "{}", describe(&out));
    let said = text(&out);
    assert!(
        said.contains("\"1704067200\" is not an RFC 3339 time") && said.contains("reset"),
        "{said}"
    );
    assert_eq!(api.asked().len(), before);
}

/// Records without the cursor field: windows do not need it for the
/// mark. Whatever apisync decides, it does not panic, and it either
/// writes every record once or fails naming the field.
#[tokio::test]
async fn records_without_the_cursor_field_are_written_once_or_refused_by_name() {
    let api = Api::start(
        every_five_days(),
        Shape {
            no_cursor_field: true,
            ..Shape::default()
        },
    )
    .await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    let out = project.run(&["run"]).await;
    no_panic(&out);
    if out.status.success() {
        assert_eq!(ids(&project), (0..20).collect::<Vec<_>>());
    } else {
        assert!(text(&out).contains("/timestamp"), "{}", describe(&out));
        assert!(mark(&project).is_none(), "the mark moved past a failure");
    }
}

/// `values` partitions with windows, killed mid-run, rerun: each
/// partition's stream has every event once and its own mark at `end`.
#[tokio::test]
async fn value_partitions_with_windows_survive_a_kill() {
    let (api, mut hits) = Api::start_hanging(every_five_days(), Shape::default(), Some(5)).await;
    let project = Project::new();
    let job = windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\""))
        .replace("query = {", "query = { region = \"{partition}\", ")
        .replace(
            "[output]",
            "[partitions]\nvalues = [\"eu\", \"us\"]\n\n[output]",
        );
    project.job("events", &job);
    killed_at(&project, &mut hits).await;
    let out = project.run(&["run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let rows = project.rows("events");
    let mut all: Vec<i64> = ids_of(&rows);
    all.dedup();
    assert_eq!(rows.len(), 40, "two partitions of 20");
    assert_eq!(all, (0..20).collect::<Vec<_>>());
    let marks: Vec<(String, String)> = project
        .open()
        .prepare("SELECT partition, value FROM _apisync_marks WHERE job = 'events' ORDER BY 1")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        marks,
        [("eu".into(), quoted(END)), ("us".into(), quoted(END))]
    );
}

/// `run --full-refresh` of a windowed job whose mark is at `end`: the
/// windows start at `initial` again, and the mark ends at `end`.
#[tokio::test]
async fn full_refresh_walks_the_windows_from_initial_again() {
    let api = Api::start(every_five_days(), Shape::default()).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    assert!(project.run(&["run"]).await.status.success());
    let windows = api.windows();
    let out = project.run(&["run", "--full-refresh"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let again = &api.windows()[windows.len()..];
    assert_eq!(again, windows.as_slice());
    assert_eq!(project.rows("events").len(), 40, "append: twice");
    assert_eq!(mark(&project), Some(quoted(END)));
}

/// `validate` refuses what the docs say it refuses, each by key.
#[tokio::test]
async fn validate_refuses_window_misuse_by_key() {
    let base = "http://127.0.0.1:9";
    let cases = [
        (
            windowed(base, "window = \"30d\"").replace("mode = \"append\"", "mode = \"replace\""),
            "replace",
        ),
        (windowed(base, "window = 30"), "`window`"),
        (windowed(base, "window = \"0s\""), "`window`"),
        (windowed(base, "end = \"yesterday\""), "`end`"),
        (
            integer_windowed(base, "initial = 0\nwindow = -5"),
            "`window`",
        ),
        (
            integer_windowed(base, "initial = 0\nend = \"now\""),
            "`end`",
        ),
        (
            integer_windowed(base, "initial = 0").replace("{window.start}", "{window.start:epoch}"),
            "window.start",
        ),
        (
            unwindowed(base).replace(
                "initial = \"2024-01-01T00:00:00Z\"",
                "initial = \"2024-01-01T00:00:00Z\"\nwindow = \"1d\"",
            ),
            "`window`",
        ),
    ];
    for (job, expect) in cases {
        let project = Project::new();
        project.job("events", &job);
        let out = project.run(&["validate"]).await;
        no_panic(&out);
        assert!(
            !out.status.success(),
            "accepted:\n{job}\n{}",
            describe(&out)
        );
        assert!(text(&out).contains(expect), "{expect}: {}", describe(&out));
    }
}

/// After a kill inside the third window, `run --dry-run` names the
/// window and the committed pages, `status` and `status --json` work.
#[tokio::test]
async fn dry_run_and_status_after_a_kill_inside_a_window() {
    let reference = Api::start(every_five_days(), Shape::default()).await;
    let clean = Project::new();
    clean.job(
        "events",
        &windowed(
            &reference.base,
            &format!("window = \"30d\"\nend = \"{END}\""),
        ),
    );
    assert!(clean.run(&["run"]).await.status.success());
    let kill_at = reference
        .asked()
        .iter()
        .position(|a| a.start == Some(FIRST + 60 * DAY) && a.cursor > 0)
        .unwrap();
    let (api, mut hits) =
        Api::start_hanging(every_five_days(), Shape::default(), Some(kill_at)).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
    );
    killed_at(&project, &mut hits).await;
    let asked = api.asked().len();
    let out = project.run(&["run", "--dry-run"]).await;
    assert!(out.status.success(), "{}", describe(&out));
    let said = text(&out);
    // The window's first page may still have been with the writer at the
    // kill: then the window starts over, still the third.
    assert!(
        said.contains("resuming after 1 committed page(s), window 2024-03-01T00:00:00Z to 2024-03-31T00:00:00Z")
            || said.contains("from the start, window 2024-03-01T00:00:00Z to 2024-03-31T00:00:00Z"),
        "{said}"
    );
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = project.run(args).await;
        no_panic(&out);
        assert!(out.status.success(), "{args:?}: {}", describe(&out));
    }
    assert_eq!(api.asked().len(), asked, "dry run or status sent a request");
}

/// The same kill inside the third window on either store: the mark is
/// the second window's end until the third's last page, the rerun
/// finishes with every event once.
async fn a_kill_inside_a_window_resumes_exactly(backend: Backend) {
    let reference = Api::start(every_five_days(), Shape::default()).await;
    let clean = Project::new();
    clean.job(
        "events",
        &windowed(
            &reference.base,
            &format!("window = \"30d\"\nend = \"{END}\""),
        ),
    );
    assert!(clean.run(&["run"]).await.status.success());
    let requests = reference.asked().len();
    for kill_at in 1..requests {
        let (api, mut hits) =
            Api::start_hanging(every_five_days(), Shape::default(), Some(kill_at)).await;
        let project = Project::new();
        let Some(db) = TestDatabase::new(backend, project.path()) else {
            return;
        };
        project.config(&format!("database = \"{}\"\n", db.setting()));
        project.job(
            "events",
            &windowed(&api.base, &format!("window = \"30d\"\nend = \"{END}\"")),
        );
        killed_at(&project, &mut hits).await;
        let out = project.run(&["run"]).await;
        assert!(
            out.status.success(),
            "kill at {kill_at}: {}",
            describe(&out)
        );
        assert_eq!(
            ids_of(&db.rows("events")),
            (0..20).collect::<Vec<_>>(),
            "kill at {kill_at}"
        );
        assert_eq!(
            db.scalar("SELECT value FROM _apisync_marks WHERE job = 'events'"),
            Some(quoted(END)),
            "kill at {kill_at}"
        );
    }
}

#[tokio::test]
async fn a_kill_inside_a_window_resumes_exactly_on_postgres() {
    a_kill_inside_a_window_resumes_exactly(Backend::Postgres).await;
}

/// `apisync backfill` of a windowed job killed mid-slice, then the same
/// backfill again: the slice is finished without a double, and no mark.
#[tokio::test]
async fn a_killed_backfill_of_a_windowed_job_finishes_without_a_double() {
    let (api, mut hits) = Api::start_hanging(every_five_days(), Shape::default(), Some(2)).await;
    let project = Project::new();
    project.job(
        "events",
        &windowed(&api.base, &format!("window = \"10d\"\nend = \"{END}\"")),
    );
    let args = [
        "backfill",
        "events",
        "--from",
        "2024-01-01",
        "--to",
        "2024-03-01",
        "--step",
        "60d",
    ];
    let mut child = project
        .command(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    tokio::select! {
        _ = hits.recv() => {}
        status = child.wait() => panic!("the backfill ended before the kill: {status:?}"),
    }
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let out = project.run(&args).await;
    assert!(out.status.success(), "{}", describe(&out));
    assert_eq!(ids(&project), (0..12).collect::<Vec<_>>());
    assert_eq!(mark(&project), None);
}
