//! Failures end to end: a bad page fails its job with the URL and keeps the
//! pages before it; one failing job never stops the others; the exit code
//! says what happened; no secret reaches the output.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{BEARER, Project, TOKEN, describe};
use serde_json::json;

/// Pages 1 and 2 are good; page 3 is whatever `bad` says.
#[derive(Clone)]
struct Flaky {
    bad: &'static str,
    hits: Arc<AtomicU32>,
}

async fn pages(
    State(flaky): State<Flaky>,
    headers: HeaderMap,
    Query(q): Query<std::collections::HashMap<String, String>>,
) -> Response {
    flaky.hits.fetch_add(1, Ordering::SeqCst);
    if headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(&format!("Bearer {TOKEN}"))
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page: u64 = q.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    if page < 3 {
        let data: Vec<_> = (1..=5)
            .map(|i| json!({ "id": (page - 1) * 5 + i }))
            .collect();
        return axum::Json(json!({ "data": data })).into_response();
    }
    match flaky.bad {
        "html" => (
            [(header::CONTENT_TYPE, "text/html")],
            "<!doctype html><h1>Login</h1>",
        )
            .into_response(),
        "missing" => axum::Json(json!({ "items": [] })).into_response(),
        "object" => axum::Json(json!({ "data": { "id": 1 } })).into_response(),
        _ => (
            [(header::CONTENT_TYPE, "application/json")],
            "{\"data\": [{\"id\": 11}",
        )
            .into_response(),
    }
}

async fn serve(bad: &'static str) -> (String, Arc<AtomicU32>) {
    let hits = Arc::new(AtomicU32::new(0));
    let app = Router::new().route("/items", get(pages)).with_state(Flaky {
        bad,
        hits: hits.clone(),
    });
    let base = common::serve(app).await;
    (base, hits)
}

fn page_job(base: &str) -> String {
    common::page_job(base, "", 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_page_fails_with_its_url_and_keeps_the_pages_before_it() {
    for (bad, expect) in [
        ("html", "text/html"),
        ("missing", "/data"),
        ("object", "/data"),
        ("truncated", "JSON"),
    ] {
        let (base, _) = serve(bad).await;
        let project = Project::new();
        project.job("items", &page_job(&base));
        let output = project.run(&["run"]).await;
        let text = describe(&output);
        assert_eq!(output.status.code(), Some(1), "{bad}: {text}");
        assert!(
            text.contains(&format!("{base}/items?page=3")),
            "{bad}: the error names the page URL: {text}"
        );
        assert!(
            text.contains(expect),
            "{bad}: the error says what was found ({expect}): {text}"
        );
        assert_eq!(
            project.rows("items").len(),
            10,
            "{bad}: pages 1 and 2 stay committed"
        );
        assert!(!text.contains(TOKEN), "no token in the output");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_job_leaves_the_others_complete_and_exits_1() {
    let (bad_base, _) = serve("html").await;
    let (good_base, _) = serve("missing").await;
    let project = Project::new();
    project.job("broken", &page_job(&bad_base));
    // A job without pagination on the good server's first page.
    project.job(
        "single",
        &format!(
            "{BEARER}\n[request]\nurl = \"{good_base}/items\"\n[records]\npath = \"/data\"\nprimary_key = [\"/id\"]\n"
        ),
    );
    let output = project.run(&["run"]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    assert_eq!(project.rows("single").len(), 5, "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains("single") && stdout.contains("succeeded"),
        "{stdout}"
    );
    assert!(
        stdout.contains("broken") && stdout.contains("failed"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_static_token_fails_clearly_without_retrying_or_leaking() {
    let (base, hits) = serve("html").await;
    let project = Project::new();
    project.job("items", &page_job(&base));
    let output = project
        .command(&["run"])
        .env("TEST_TOKEN", "wrong-token-9d2c")
        .output()
        .await
        .unwrap();
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("401"), "{text}");
    assert!(!text.contains("wrong-token-9d2c"), "{text}");
    assert_eq!(
        hits.load(Ordering::SeqCst),
        1,
        "a static token cannot be refreshed: one request"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_project_exits_2_before_sending_anything() {
    let (base, hits) = serve("html").await;
    let project = Project::new();
    project.job("items", &page_job(&base));
    project.job(
        "typo",
        &format!("{BEARER}\n[request]\nurl = \"{base}/items\"\n[paginaton]\ntype = \"page\"\n"),
    );
    let output = project.run(&["run"]).await;
    let text = describe(&output);
    assert_eq!(output.status.code(), Some(2), "{text}");
    assert!(
        text.contains("typo.toml:4"),
        "the error names file and line: {text}"
    );
    assert_eq!(
        hits.load(Ordering::SeqCst),
        0,
        "validation is all or nothing"
    );
}
