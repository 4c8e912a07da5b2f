//! `apisync preview`: a job's first pages fetched as `run` fetches them
//! (auth, pagination, incremental window), printed, and nothing written:
//! no database is created, and an existing one keeps its rows.

mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::{Json, Router, routing::get};
use serde_json::{Value, json};

use common::oauth_server::{Behaviour, OAuthServer};
use common::{BEARER, Project, TOKEN, describe, serve};

/// One request as the API saw it: its query and Authorization header.
type SeenRequest = (HashMap<String, String>, Option<String>);

/// What the API saw: each request's query and Authorization header.
#[derive(Clone, Default)]
struct Seen {
    requests: Arc<Mutex<Vec<SeenRequest>>>,
    /// Records served (3 pages of 2).
    records: Arc<Mutex<Vec<Value>>>,
}

impl Seen {
    fn requests(&self) -> Vec<SeenRequest> {
        self.requests.lock().expect("lock").clone()
    }
}

fn record(id: u64) -> Value {
    json!({ "id": id, "updated_at": format!("2024-01-{id:02}T00:00:00Z"), "name": format!("item {id}") })
}

async fn items(
    State((seen, base)): State<(Seen, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Json<Value> {
    let auth = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(String::from);
    seen.requests
        .lock()
        .expect("lock")
        .push((query.clone(), auth));
    let page: usize = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    let records = seen.records.lock().expect("lock").clone();
    let chunk: Vec<Value> = records
        .iter()
        .skip((page - 1) * 2)
        .take(2)
        .cloned()
        .collect();
    let next = (page * 2 < records.len()).then(|| format!("{base}/items?page={}", page + 1));
    Json(json!({ "data": chunk, "next": next }))
}

/// An API of 6 records, 2 per page, linked by `next`.
async fn api() -> (String, Seen) {
    let seen = Seen::default();
    *seen.records.lock().expect("lock") = (1..=6).map(record).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/items", get(items))
        .with_state((seen.clone(), base.clone()));
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, seen)
}

fn job(base: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/items"
[pagination]
type = "next_url"
next_url_path = "/next"
[records]
path = "/data"
primary_key = ["/id"]
[incremental]
cursor_field = "/updated_at"
cursor_type = "timestamp"
param = "since"
initial = "2023-12-01T00:00:00Z"
[output]
columns = {{ name = "/name" }}
"#
    )
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn one_page_is_printed_with_next_stop_and_mark_and_no_database_is_created() {
    let (base, seen) = api().await;
    let project = Project::new();
    project.job("items", &job(&base));
    let output = project.run(&["preview", "items"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let out = stdout(&output);
    // The table: key, cursor field and declared column of the first page only.
    for wanted in ["id", "updated_at", "name", "item 1", "item 2"] {
        assert!(out.contains(wanted), "{wanted:?} missing:\n{out}");
    }
    assert!(!out.contains("item 3"), "{out}");
    assert!(out.contains(&format!("next: {base}/items?page=2")), "{out}");
    assert!(out.contains("stop: --pages 1 reached"), "{out}");
    assert!(
        out.contains("mark: 2024-01-02T00:00:00Z from these pages"),
        "{out}"
    );
    assert!(!project.database().exists(), "preview created the database");
    // Sent as run sends it: the credential and the incremental window.
    let requests = seen.requests();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0].1.as_deref(),
        Some(format!("Bearer {TOKEN}").as_str())
    );
    assert_eq!(
        requests[0].0.get("since").map(String::as_str),
        Some("2023-12-01T00:00:00Z")
    );
}

#[tokio::test]
async fn more_pages_than_the_api_has_stop_at_the_last_with_the_mark_a_run_would_store() {
    let (base, seen) = api().await;
    let project = Project::new();
    project.job("items", &job(&base));
    let output = project.run(&["preview", "items", "--pages", "10"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let out = stdout(&output);
    assert!(out.contains("item 6"), "{out}");
    assert!(out.contains("6 record(s) in 3 page(s)"), "{out}");
    assert!(out.contains("next: none"), "{out}");
    assert!(out.contains("stop: last page"), "{out}");
    assert!(
        out.contains("mark: a run would store 2024-01-06T00:00:00Z"),
        "{out}"
    );
    assert_eq!(seen.requests().len(), 3);
    assert!(!project.database().exists());
}

#[tokio::test]
async fn json_prints_one_record_per_line_and_the_summary_on_stderr() {
    let (base, _seen) = api().await;
    let project = Project::new();
    project.job("items", &job(&base));
    let output = project
        .run(&["preview", "items", "--pages", "2", "--json"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let ids: Vec<u64> = stdout(&output)
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).expect("a JSON line");
            value["id"].as_u64().expect("an id")
        })
        .collect();
    assert_eq!(ids, [1, 2, 3, 4]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("next: {base}/items?page=3")),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_existing_database_gives_the_stored_mark_and_keeps_its_rows() {
    let (base, seen) = api().await;
    let project = Project::new();
    project.job("items", &job(&base));
    let output = project.run(&["run", "items"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), 6);
    // New records arrive; preview shows them but writes none.
    seen.records
        .lock()
        .expect("lock")
        .extend([record(7), record(8)]);
    let output = project.run(&["preview", "items", "--pages", "10"]).await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    // The run sent 3 requests; the preview's first one comes after them.
    let since = seen
        .requests()
        .get(3)
        .and_then(|(q, _)| q.get("since").cloned());
    assert_eq!(
        since.as_deref(),
        Some("2024-01-06T00:00:00Z"),
        "the stored mark"
    );
    assert!(stdout(&output).contains("item 8"), "{}", describe(&output));
    assert_eq!(project.rows("items").len(), 6, "preview wrote rows");
}

#[tokio::test]
async fn a_refused_page_reads_like_run_with_the_secret_redacted() {
    let app = Router::new().route(
        "/items",
        get(|| async { (axum::http::StatusCode::NOT_FOUND, "no such list") }),
    );
    let base = serve(app).await;
    let project = Project::new();
    project.job(
        "items",
        &format!(
            r#"auth = {{ type = "api_key", query = "api_key", key = {{ env = "TEST_TOKEN" }} }}
[request]
url = "{base}/items"
[retry]
max_attempts = 1
"#
        ),
    );
    let output = project.run(&["preview", "items"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("job \"items\""), "{stderr}");
    assert!(stderr.contains(&format!("{base}/items")), "{stderr}");
    assert!(stderr.contains("404"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the key leaked: {stderr}");
    assert!(!project.database().exists());
}

const RT: &str = "oauth2_refresh_token";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresh_token_auth_is_refused_without_a_database_and_spends_nothing() {
    let server = OAuthServer::start(Behaviour {
        rotate: true,
        ..Behaviour::default()
    })
    .await;
    let project = Project::new();
    project.config(&server.auth_table("acme", RT, "basic"));
    project.job("items", &server.job("acme", None));
    let output = server.run(&project, &["preview", "items"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("oauth2_refresh_token"), "{stderr}");
    assert!(stderr.contains("hint: `apisync run items`"), "{stderr}");
    assert!(
        server.token_requests().is_empty(),
        "a refresh token was spent"
    );
    assert!(!project.database().exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_database_a_refresh_token_rotated_by_preview_is_stored_for_the_next_run() {
    let server = OAuthServer::start(Behaviour {
        rotate: true,
        ..Behaviour::default()
    })
    .await;
    let project = Project::new();
    project.config(&server.auth_table("acme", RT, "basic"));
    project.job("items", &server.job("acme", None));
    for args in [&["run"][..], &["preview", "items"], &["run"]] {
        let output = server.run(&project, args).await;
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {}",
            describe(&output)
        );
    }
    // Three grants, each with the token the one before was given: the
    // preview's rotation was stored, or the last run would have been refused.
    let spent: Vec<_> = server
        .token_requests()
        .into_iter()
        .map(|r| (r.refresh_token, r.status))
        .collect();
    let issued = server.refresh_tokens();
    assert_eq!(
        spent,
        [
            (Some(issued[0].clone()), 200),
            (Some(issued[1].clone()), 200),
            (Some(issued[2].clone()), 200),
        ]
    );
}
