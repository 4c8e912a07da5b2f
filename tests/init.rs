//! `apisync init` end to end: a local API that pages in each of the five
//! ways, behind a bearer token; init must detect the type, write a file
//! that validates, and `apisync run` with that file must sync every record.

mod common;

use std::collections::{BTreeSet, HashMap};

use axum::Json;
use axum::Router;
use axum::extract::{Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use common::{Project, TOKEN, describe};
use serde_json::{Value, json};

/// Records on the server and the page size of every endpoint.
const RECORDS: u64 = 7;
const SIZE: u64 = 3;

type Params = Query<HashMap<String, String>>;

fn number(params: &HashMap<String, String>, name: &str, default: u64) -> u64 {
    params
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Records `from..` (0-based), at most `SIZE`.
fn slice(from: u64) -> Vec<Value> {
    (from..(from + SIZE).min(RECORDS))
        .map(|i| json!({"id": i + 1, "name": format!("record {}", i + 1)}))
        .collect()
}

async fn link(State(base): State<String>, Query(p): Params) -> Response {
    let page = number(&p, "page", 1);
    let mut headers = HeaderMap::new();
    if page * SIZE < RECORDS {
        let next = format!("<{base}/link?page={}>; rel=\"next\"", page + 1);
        headers.insert(header::LINK, next.parse().expect("header"));
    }
    (headers, Json(Value::from(slice((page - 1) * SIZE)))).into_response()
}

async fn next_url(Query(p): Params) -> Json<Value> {
    let page = number(&p, "page", 1);
    let next = (page * SIZE < RECORDS).then(|| format!("/next?page={}", page + 1));
    Json(json!({"items": slice((page - 1) * SIZE), "links": {"next": next}}))
}

async fn cursor(Query(p): Params) -> Json<Value> {
    let from = p
        .get("cursor")
        .and_then(|c| c.strip_prefix('c'))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let next = (from + SIZE < RECORDS).then(|| format!("c{}", from + SIZE));
    Json(json!({"data": slice(from), "meta": {"next_cursor": next}}))
}

async fn offset(Query(p): Params) -> Json<Value> {
    let from = number(&p, "offset", 0);
    Json(json!({"total": RECORDS, "results": slice(from)}))
}

async fn page(Query(p): Params) -> Json<Value> {
    let page = number(&p, "page", 1);
    Json(
        json!({"entries": slice((page - 1) * SIZE), "page": page, "total_pages": RECORDS.div_ceil(SIZE)}),
    )
}

async fn thing() -> Json<Value> {
    Json(json!({"name": "not a list"}))
}

async fn bearer(request: Request, next: Next) -> Response {
    let expected = format!("Bearer {TOKEN}");
    match request.headers().get(header::AUTHORIZATION) {
        Some(value) if value.as_bytes() == expected.as_bytes() => next.run(request).await,
        _ => (StatusCode::UNAUTHORIZED, "missing or wrong token").into_response(),
    }
}

/// The API on 127.0.0.1; returns its base URL.
async fn api() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let app = Router::new()
        .route("/link", get(link))
        .route("/next", get(next_url))
        .route("/cursor", get(cursor))
        .route("/offset", get(offset))
        .route("/page", get(page))
        .route("/thing", get(thing))
        .layer(middleware::from_fn(bearer))
        .with_state(base.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    base
}

fn project() -> Project {
    let project = Project::new();
    project.config("[auth.api]\ntype = \"bearer\"\ntoken = { env = \"TEST_TOKEN\" }\n");
    project
}

fn job_file(project: &Project, name: &str) -> toml::Table {
    let text = std::fs::read_to_string(project.path().join("jobs").join(format!("{name}.toml")))
        .expect("job file written");
    toml::from_str(&text).expect("job file is TOML")
}

/// init, then the type it wrote, validate, run, and every record synced.
async fn detects_and_syncs(path: &str, expected: &str) {
    let base = api().await;
    let project = project();
    let url = format!("{base}{path}");
    let output = project
        .run(&["init", "items", "--url", &url, "--auth", "api"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        stdout.contains(&format!("pagination {expected}")),
        "{stdout}"
    );
    let job = job_file(&project, "items");
    assert_eq!(
        job["pagination"]["type"].as_str(),
        Some(expected),
        "{job:#?}"
    );
    assert_eq!(
        job["records"]["primary_key"][0].as_str(),
        Some("/id"),
        "{job:#?}"
    );

    let validated = project.run(&["validate"]).await;
    assert_eq!(validated.status.code(), Some(0), "{}", describe(&validated));
    let run = project.run(&["run", "items"]).await;
    assert_eq!(run.status.code(), Some(0), "{}", describe(&run));
    let ids: BTreeSet<u64> = project
        .rows("items")
        .iter()
        .filter_map(|r| r["id"].as_u64())
        .collect();
    assert_eq!(ids, (1..=RECORDS).collect::<BTreeSet<_>>());
}

#[tokio::test]
async fn detects_a_link_header() {
    detects_and_syncs("/link", "link_header").await;
}

#[tokio::test]
async fn detects_a_next_url_field() {
    detects_and_syncs("/next", "next_url").await;
}

#[tokio::test]
async fn detects_a_cursor_field() {
    detects_and_syncs("/cursor", "cursor").await;
}

#[tokio::test]
async fn detects_a_total_with_an_offset_parameter() {
    detects_and_syncs("/offset?offset=0&limit=3", "offset").await;
}

#[tokio::test]
async fn detects_total_pages() {
    detects_and_syncs("/page?page=1&per_page=3", "page").await;
}

#[tokio::test]
async fn never_overwrites_a_job_file() {
    let base = api().await;
    let project = project();
    let mine = "# mine\n[request]\nurl = \"http://127.0.0.1:9/mine\"\n";
    project.job("items", mine);
    let url = format!("{base}/link");
    let output = project
        .run(&["init", "items", "--url", &url, "--auth", "api"])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("already exists"), "{stderr}");
    let kept = std::fs::read_to_string(project.path().join("jobs/items.toml")).expect("read");
    assert_eq!(kept, mine);
}

#[tokio::test]
async fn says_what_it_could_not_detect_and_still_writes_a_valid_file() {
    let base = api().await;
    let project = project();
    let url = format!("{base}/thing");
    let output = project
        .run(&["init", "thing", "--url", &url, "--auth", "api"])
        .await;
    assert_eq!(output.status.code(), Some(0), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not detected: records path"), "{stderr}");
    assert!(stderr.contains("not detected: primary key"), "{stderr}");
    let text = std::fs::read_to_string(project.path().join("jobs/thing.toml")).expect("read");
    assert!(text.contains("# path: not detected"), "{text}");
    let validated = project.run(&["validate"]).await;
    assert_eq!(validated.status.code(), Some(0), "{}", describe(&validated));
}

#[tokio::test]
async fn a_refused_first_page_is_a_clear_error_and_writes_nothing() {
    let base = api().await;
    let project = project();
    let url = format!("{base}/link");
    let output = project.run(&["init", "items", "--url", &url]).await;
    assert_eq!(output.status.code(), Some(1), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("returned 401"), "{stderr}");
    assert!(stderr.contains("--auth"), "{stderr}");
    assert!(!project.path().join("jobs/items.toml").exists());
    let unknown = project
        .run(&["init", "items", "--url", &url, "--auth", "nope"])
        .await;
    assert_eq!(unknown.status.code(), Some(2), "{}", describe(&unknown));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("auth \"nope\" is not defined"));
}

/// A credential never goes over plain http to a host that is not loopback:
/// init refuses before it resolves the secret or opens a connection (the
/// host does not exist, so a connection attempt would fail differently).
#[tokio::test]
async fn auth_over_plain_http_to_a_remote_host_is_refused_before_connecting() {
    let project = Project::new();
    let marker = project.path().join("secret-was-resolved");
    project.config(&format!(
        "[auth.api]\ntype = \"bearer\"\ntoken = {{ command = [\"sh\", \"-c\", \"touch '{}'; echo tok-1234\"] }}\n",
        marker.display()
    ));
    let output = project
        .run(&[
            "init",
            "items",
            "--url",
            "http://example.invalid/items",
            "--auth",
            "api",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("http://example.invalid/items"), "{stderr}");
    assert!(stderr.contains("auth \"api\""), "{stderr}");
    assert!(stderr.contains("plain http only to loopback"), "{stderr}");
    assert!(stderr.contains("hint: use https"), "{stderr}");
    assert!(!marker.exists(), "the secret was resolved: {stderr}");
    assert!(!project.path().join("jobs/items.toml").exists());
}

#[tokio::test]
async fn a_password_in_the_url_is_never_written_into_a_job_file() {
    let project = Project::new();
    let output = project
        .run(&[
            "init",
            "items",
            "--url",
            "http://user:userinfo-pass-444@127.0.0.1:9/items",
        ])
        .await;
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
    let text = describe(&output);
    assert!(!text.contains("userinfo-pass-444"), "{text}");
    assert!(text.contains("http://***@127.0.0.1:9/items"), "{text}");
    assert!(text.contains("type = \"basic\""), "{text}");
    assert!(!project.path().join("jobs/items.toml").exists());
}
