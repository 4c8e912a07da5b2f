//! Pages and records that are wrong, end to end: an error reported inside a
//! 200 response is never written and keeps the mark where it was (failing
//! at once, or retried when `error_retry = true`); a record without its
//! primary key fails the page naming the record's index and the URL;
//! duplicates within one page keep the last in merge mode; `1` and `"1"`
//! are different keys; hostile table and column names are refused before
//! anything is sent, and names that are SQL keywords work (always quoted).

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Project, TOKEN, describe};
use serde_json::{Value, json};

/// Answers `?page=N` with `pages(N, hit)`, where `hit` counts requests for
/// page N from 1. Records the hits per page.
type Pages = Arc<dyn Fn(u64, usize) -> Value + Send + Sync>;

#[derive(Clone)]
struct Scripted {
    pages: Pages,
    hits: Arc<Mutex<HashMap<u64, usize>>>,
    total: Arc<AtomicUsize>,
}

impl Scripted {
    fn hits(&self, page: u64) -> usize {
        self.hits.lock().unwrap().get(&page).copied().unwrap_or(0)
    }
}

async fn answer(
    State(s): State<Scripted>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    s.total.fetch_add(1, Ordering::SeqCst);
    let bearer = format!("Bearer {TOKEN}");
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&bearer)
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let hit = {
        let mut hits = s.hits.lock().unwrap();
        let n = hits.entry(page).or_default();
        *n += 1;
        *n
    };
    axum::Json((s.pages)(page, hit)).into_response()
}

async fn serve(pages: impl Fn(u64, usize) -> Value + Send + Sync + 'static) -> (String, Scripted) {
    let scripted = Scripted {
        pages: Arc::new(pages),
        hits: Arc::default(),
        total: Arc::default(),
    };
    let app = Router::new()
        .route("/items", get(answer))
        .with_state(scripted.clone());
    let base = common::serve(app).await;
    (base, scripted)
}

/// Five records per page for pages 1..=3, then an empty page.
fn good_page(page: u64) -> Value {
    let data: Vec<Value> = match page {
        1..=3 => (1..=5)
            .map(|i| json!({ "id": (page - 1) * 5 + i }))
            .collect(),
        _ => Vec::new(),
    };
    json!({ "data": data, "error": null })
}

fn error_page() -> Value {
    json!({ "error": { "code": "busy", "message": "try later" }, "data": [{ "id": 999 }] })
}

fn job(base: &str, extra: &str) -> String {
    common::page_job(base, extra, 3)
}

const INCREMENTAL_ERRORS: &str = r#"error_path = "/error"
error_retry = false
[incremental]
cursor_field = "/id"
cursor_type = "integer"
param = "since""#;

fn ids(project: &Project, table: &str) -> Vec<u64> {
    let mut ids: Vec<u64> = project
        .rows(table)
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    ids.sort();
    ids
}

fn stored(project: &Project, sql: &str, job: &str) -> Option<String> {
    project.open().query_row(sql, [job], |row| row.get(0)).ok()
}

fn error_line<'a>(text: &'a str, job: &str) -> &'a str {
    let named = format!("job \"{job}\"");
    text.lines()
        .find(|l| l.contains(&named) && l.contains("error"))
        .unwrap_or_else(|| panic!("no error line for {named}:\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_200_fails_the_run_is_never_written_and_keeps_the_mark() {
    let failing = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let switch = failing.clone();
    let (base, server) = serve(move |page, _| match page {
        2 if switch.load(Ordering::SeqCst) => error_page(),
        _ => good_page(page),
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, INCREMENTAL_ERRORS));
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let mark = "SELECT value FROM _apisync_marks WHERE job = ?1";
    assert_eq!(stored(&project, mark, "items").as_deref(), Some("15"));

    failing.store(true, Ordering::SeqCst);
    let before = server.hits(2);
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let line = error_line(&text, "items");
    for piece in [
        &format!("{base}/items?"),
        "page=2",
        "/error",
        "busy",
        "error_retry",
    ] {
        assert!(line.contains(piece), "{piece:?} missing from: {line}");
    }
    assert_eq!(server.hits(2) - before, 1, "error_retry = false: no retry");
    assert_eq!(
        ids(&project, "items"),
        (1..=15).collect::<Vec<_>>(),
        "999 never written"
    );
    assert_eq!(
        stored(&project, mark, "items").as_deref(),
        Some("15"),
        "the mark did not move"
    );
    let checkpoint = "SELECT position FROM _apisync_checkpoints WHERE job = ?1";
    let position: Value =
        serde_json::from_str(&stored(&project, checkpoint, "items").expect("a checkpoint"))
            .unwrap();
    assert_eq!(position["next"], json!({ "type": "page", "page": 2 }));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_inside_a_200_is_retried_when_configured() {
    // Page 2 reports an error on its first two requests, then recovers.
    let (base, server) = serve(|page, hit| match (page, hit) {
        (2, 1 | 2) => error_page(),
        _ => good_page(page),
    })
    .await;
    let project = Project::new();
    let retrying = INCREMENTAL_ERRORS.replace("error_retry = false", "error_retry = true");
    project.job("items", &job(&base, &retrying));
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(server.hits(2), 3, "two errors retried, then the page");
    assert_eq!(ids(&project, "items"), (1..=15).collect::<Vec<_>>());

    // An error that never goes away fails after retry.max_attempts.
    let (base, server) = serve(|page, _| match page {
        2 => error_page(),
        _ => good_page(page),
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, &retrying));
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(error_line(&text, "items").contains("busy"), "{text}");
    assert_eq!(server.hits(2), 3, "retry.max_attempts requests");
    assert_eq!(ids(&project, "items"), (1..=5).collect::<Vec<_>>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_keep_the_last_and_number_and_string_keys_differ() {
    let (base, _) = serve(|page, _| match page {
        1 => json!({ "data": [
            { "id": 1, "v": "number" },
            { "id": "1", "v": "string" },
            { "id": 2, "v": "first" },
            { "id": 2, "v": "last" },
        ] }),
        _ => json!({ "data": [] }),
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, ""));
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let db = project.open();
    let mut statement = db
        .prepare("SELECT _pk, json_extract(_data, '$.v') FROM items ORDER BY _pk")
        .unwrap();
    let rows: Vec<(String, String)> = statement
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [("[\"1\"]", "string"), ("[1]", "number"), ("[2]", "last")];
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(rows, expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_without_its_primary_key_names_its_index_and_the_url() {
    let (base, _) = serve(|page, _| match page {
        1 => good_page(1),
        2 => json!({ "data": [{ "id": 6 }, { "id": 7 }, { "name": "no id" }] }),
        _ => json!({ "data": [] }),
    })
    .await;
    let project = Project::new();
    project.job("items", &job(&base, ""));
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    let line = error_line(&text, "items");
    for piece in [
        "record 2",
        "/id",
        &format!("{base}/items?"),
        "page=2",
        "primary_key",
    ] {
        assert!(line.contains(piece), "{piece:?} missing from: {line}");
    }
    assert_eq!(
        ids(&project, "items"),
        (1..=5).collect::<Vec<_>>(),
        "page 2 not written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_names_are_refused_before_anything_is_sent() {
    let (base, server) = serve(|page, _| good_page(page)).await;
    let project = Project::new();
    let hostile = [
        (
            "quote",
            r#"[output]
table = 'x"; DROP TABLE _apisync_runs; --'"#,
        ),
        ("semicolon", "[output]\ntable = \"a;b\""),
        ("comment", "[output]\ntable = \"t -- c\""),
        (
            "column",
            "[output]\ncolumns = { 'c\" TEXT); DROP TABLE _apisync_checkpoints; --' = \"/id\" }",
        ),
    ];
    for (name, output_table) in hostile {
        project.job(name, &job(&base, &format!("\n{output_table}")));
    }
    let output = project.run(&["validate"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    for needle in [
        r#"x"; DROP TABLE _apisync_runs; --"#,
        "a;b",
        "t -- c",
        "not a valid identifier",
    ] {
        assert!(text.contains(needle), "{needle:?} missing:\n{text}");
    }
    for name in ["quote", "semicolon", "comment", "column"] {
        assert!(
            text.contains(&format!("{name}.toml:")),
            "{name}.toml named:\n{text}"
        );
    }
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    assert_eq!(server.total.load(Ordering::SeqCst), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_that_are_sql_keywords_work_because_identifiers_are_quoted() {
    let (base, _) = serve(|page, _| good_page(page)).await;
    let project = Project::new();
    let output_table =
        "[output]\ntable = \"order\"\ncolumns = { group = \"/id\", select = \"/id\" }";
    project.job("items", &job(&base, &format!("\n{output_table}")));
    let output = project.run(&["run"]).await;
    assert!(output.status.success(), "{}", describe(&output));
    let total: i64 = project
        .open()
        .query_row(
            r#"SELECT sum("group") + sum("select") FROM "order""#,
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(total, 2 * (1..=15).sum::<i64>());
}
