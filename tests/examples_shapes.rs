//! Four example jobs of jobs/examples/ run end to end against a local
//! server that answers as the API's documentation says it does: GitLab's
//! next page in the `x-next-page` response header, Jira's JQL search paged
//! by `startAt` in the POST body, and Zendesk's time-based export whose
//! last page says `end_of_stream`, and PagerDuty's incidents asked for in
//! windows under its six-month limit. Each test runs the example file as it is
//! shipped, only its origin pointed at the server, then checks the rows
//! written and every request the server saw.

mod common;

use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use common::{Project, describe, serve};
use serde_json::{Value, json};

/// The example job `file` with `origin` (its URL's scheme and host, as
/// written) replaced by the test server's `base`; nothing else changes.
fn example_at(file: &str, origin: &str, base: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("jobs/examples")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("read the example job");
    assert_eq!(
        text.matches(origin).count(),
        1,
        "{file} should name {origin} once, in request.url"
    );
    text.replace(origin, base)
}

/// Query parameters, decoded, in order.
type Query = Vec<(String, String)>;

/// The decoded query parameters of a request, in order.
fn params(request: &Request) -> Query {
    url::form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn header_text(headers: &HeaderMap, name: impl header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// `/id` of every row of `table`, sorted, as text, and the row count.
fn row_ids(project: &Project, table: &str) -> (Vec<String>, usize) {
    let rows = project.rows(table);
    let mut ids: Vec<String> = rows
        .iter()
        .map(|row| match &row["id"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect();
    ids.sort();
    (ids, rows.len())
}

// --- GitLab: the next page in a response header -------------------------

const GITLAB_TOKEN: &str = "glpat-test-7c1e90";

/// The issues of the project, oldest first; the server's pages hold two
/// (standing in for per_page=100).
const GITLAB_ISSUES: [u64; 5] = [901, 902, 903, 904, 905];
const GITLAB_PAGE: usize = 2;

#[derive(Default)]
struct GitLab {
    /// Each request's query parameters and PRIVATE-TOKEN.
    asked: Vec<(Query, Option<String>)>,
}

async fn gitlab_issues(State(api): State<Arc<Mutex<GitLab>>>, request: Request) -> Response {
    let query = params(&request);
    let token = header_text(request.headers(), "private-token");
    api.lock()
        .unwrap()
        .asked
        .push((query.clone(), token.clone()));
    if token.as_deref() != Some(GITLAB_TOKEN) {
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "message": "401 Unauthorized" })),
        )
            .into_response();
    }
    // GitLab: `page` from 1, 1 when absent.
    let page: usize = param(&query, "page").map_or(1, |p| p.parse().expect("page number"));
    let from = (page - 1) * GITLAB_PAGE;
    let issues: Vec<Value> = GITLAB_ISSUES
        .iter()
        .enumerate()
        .skip(from)
        .take(GITLAB_PAGE)
        .map(|(i, id)| {
            json!({
                "id": id,
                "iid": i + 1,
                "state": "opened",
                "title": format!("issue {}", i + 1),
                "created_at": format!("2024-02-0{}T10:00:00.000Z", i + 1),
                "updated_at": format!("2024-03-0{}T10:00:00.000Z", i + 1),
            })
        })
        .collect();
    let total_pages = GITLAB_ISSUES.len().div_ceil(GITLAB_PAGE);
    // The last page's x-next-page is present and empty.
    let next = match page < total_pages {
        true => (page + 1).to_string(),
        false => String::new(),
    };
    (
        [
            ("x-next-page", next),
            ("x-page", page.to_string()),
            ("x-per-page", GITLAB_PAGE.to_string()),
            ("x-total", GITLAB_ISSUES.len().to_string()),
            ("x-total-pages", total_pages.to_string()),
        ],
        Json(Value::Array(issues)),
    )
        .into_response()
}

#[tokio::test]
async fn gitlab_issues_follows_the_next_page_header_to_its_empty_end() {
    let api = Arc::new(Mutex::new(GitLab::default()));
    let base = serve(
        Router::new()
            .route("/api/v4/projects/278964/issues", get(gitlab_issues))
            .with_state(api.clone()),
    )
    .await;
    let project = Project::new();
    project.job(
        "gitlab_issues",
        &example_at("gitlab_issues.toml", "https://gitlab.com", &base),
    );
    let out = project
        .command(&["run"])
        .env("GITLAB_TOKEN", GITLAB_TOKEN)
        .output()
        .await
        .expect("run apisync");
    assert!(out.status.success(), "{}", describe(&out));

    let asked = std::mem::take(&mut api.lock().unwrap().asked);
    // One request per page: the first without `page`, then the header's
    // value sent back as `page`; nothing after the empty header.
    let pages: Vec<Option<&str>> = asked.iter().map(|(q, _)| param(q, "page")).collect();
    assert_eq!(pages, [None, Some("2"), Some("3")], "{asked:?}");
    for (query, token) in &asked {
        assert_eq!(token.as_deref(), Some(GITLAB_TOKEN));
        for (name, value) in [
            ("order_by", "created_at"),
            ("sort", "asc"),
            ("per_page", "100"),
            ("updated_after", "2024-01-01T00:00:00Z"),
        ] {
            assert_eq!(param(query, name), Some(value), "{name} in {query:?}");
        }
    }
    let (ids, rows) = row_ids(&project, "gitlab_issues");
    assert_eq!(ids, ["901", "902", "903", "904", "905"]);
    assert_eq!(rows, GITLAB_ISSUES.len(), "no issue written twice");
}

// --- Jira Data Center: the offset in the POST body ----------------------

const JIRA_TOKEN: &str = "jira-pat-test-5d2b";
const JIRA_ISSUES: usize = 5;
/// Jira's own cap on maxResults (an admin setting), below the job's 100.
const JIRA_CAP: u64 = 2;

#[derive(Default)]
struct Jira {
    /// Each request's JSON body and Authorization header.
    asked: Vec<(Value, Option<String>)>,
}

async fn jira_search(
    State(api): State<Arc<Mutex<Jira>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let authorization = header_text(&headers, header::AUTHORIZATION);
    api.lock()
        .unwrap()
        .asked
        .push((body.clone(), authorization.clone()));
    if authorization != Some(format!("Bearer {JIRA_TOKEN}")) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    // Jira reads both as integers of the body; the test asserts them below.
    let (Some(start), Some(max)) = (body["startAt"].as_u64(), body["maxResults"].as_u64()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errorMessages": ["startAt and maxResults must be integers"] })),
        )
            .into_response();
    };
    let start = start as usize;
    let issues: Vec<Value> = (start..JIRA_ISSUES)
        .take(max.min(JIRA_CAP) as usize)
        .map(|i| {
            json!({
                "id": format!("{}", 10001 + i),
                "key": format!("ABC-{}", i + 1),
                "self": format!("https://jira.example.com/rest/api/2/issue/{}", 10001 + i),
                "fields": {
                    "summary": format!("issue {}", i + 1),
                    "status": { "name": "Open" },
                    "updated": "2024-01-15T10:20:30.000+0000",
                },
            })
        })
        .collect();
    Json(json!({
        "expand": "names,schema",
        "startAt": start,
        "maxResults": max.min(JIRA_CAP),
        "total": JIRA_ISSUES,
        "issues": issues,
    }))
    .into_response()
}

#[tokio::test]
async fn jira_issues_moves_start_at_in_the_body_by_the_issues_received() {
    let api = Arc::new(Mutex::new(Jira::default()));
    let base = serve(
        Router::new()
            .route("/rest/api/2/search", post(jira_search))
            .with_state(api.clone()),
    )
    .await;
    let project = Project::new();
    project.job(
        "jira_issues",
        &example_at("jira_issues.toml", "https://jira.example.com", &base),
    );
    let out = project
        .command(&["run"])
        .env("JIRA_TOKEN", JIRA_TOKEN)
        .output()
        .await
        .expect("run apisync");
    assert!(out.status.success(), "{}", describe(&out));

    let asked = std::mem::take(&mut api.lock().unwrap().asked);
    // Pages after the first may be fetched at once (the total is known),
    // so the order they arrive in is not asserted; the set is exact.
    let mut starts: Vec<u64> = asked
        .iter()
        .map(|(body, _)| body["startAt"].as_u64().expect("startAt"))
        .collect();
    starts.sort();
    assert_eq!(starts, [0, 2, 4], "by the issues received, not by 100");
    for (body, _) in &asked {
        assert_eq!(
            body,
            &json!({
                "jql": "project = ABC ORDER BY key ASC",
                "fields": ["summary", "status", "assignee", "updated"],
                "startAt": body["startAt"],
                "maxResults": 100,
            }),
            "the job's body with the paging integers added, nothing in the query"
        );
    }
    let (ids, rows) = row_ids(&project, "jira_issues");
    assert_eq!(ids, ["10001", "10002", "10003", "10004", "10005"]);
    assert_eq!(rows, JIRA_ISSUES, "no issue written twice");
}

// --- Zendesk: the time-based export ends at end_of_stream ---------------

const ZENDESK_USER: &str = "agent@example.com/token";
const ZENDESK_TOKEN: &str = "zd-api-token-test-31f4";
/// Organizations a page holds at most (Zendesk: 1000).
const ZENDESK_PAGE: usize = 3;

#[derive(Default)]
struct Zendesk {
    /// Each request's start_time and Authorization header.
    asked: Vec<(Option<String>, Option<String>)>,
    /// The organizations and their updated_at, oldest change first.
    organizations: Vec<(u64, i64)>,
}

fn epoch(rfc3339: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339)
        .expect("RFC 3339")
        .timestamp()
}

fn rfc3339(epoch: i64) -> String {
    chrono::DateTime::from_timestamp(epoch, 0)
        .expect("time")
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// As Zendesk documents it: the organizations changed at or after
/// start_time, a page at a time; next_page starts at the last one's time
/// (so it comes again on the next page) and is there on the last page too,
/// whose end_of_stream is true.
async fn zendesk_organizations(
    State(api): State<Arc<Mutex<Zendesk>>>,
    request: Request,
) -> Response {
    let query = params(&request);
    let start = param(&query, "start_time").map(str::to_string);
    let authorization = header_text(request.headers(), header::AUTHORIZATION);
    let mut api = api.lock().unwrap();
    api.asked.push((start.clone(), authorization.clone()));
    let basic = base64_basic(ZENDESK_USER, ZENDESK_TOKEN);
    if authorization != Some(basic) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let Some(start) = start.and_then(|s| s.parse::<i64>().ok()) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "InvalidValue", "description": "start_time is required" })),
        )
            .into_response();
    };
    let changed: Vec<&(u64, i64)> = api
        .organizations
        .iter()
        .filter(|(_, at)| *at >= start)
        .collect();
    let page: Vec<&(u64, i64)> = changed.iter().copied().take(ZENDESK_PAGE).collect();
    let end_time = page.last().map_or(start, |(_, at)| *at);
    let origin = header_text(request.headers(), header::HOST).expect("Host");
    let organizations: Vec<Value> = page
        .iter()
        .map(
            |(id, at)| json!({ "id": id, "name": format!("org {id}"), "updated_at": rfc3339(*at) }),
        )
        .collect();
    Json(json!({
        "organizations": organizations,
        "next_page": format!("http://{origin}/api/v2/incremental/organizations.json?start_time={end_time}"),
        "end_time": end_time,
        "count": page.len(),
        "end_of_stream": changed.len() <= ZENDESK_PAGE,
    }))
    .into_response()
}

fn base64_basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

#[tokio::test]
async fn zendesk_organizations_stops_at_end_of_stream_and_resumes_from_the_mark() {
    let first = epoch("2024-02-01T00:00:00Z");
    let api = Arc::new(Mutex::new(Zendesk {
        organizations: (0..6).map(|i| (7001 + i as u64, first + 60 * i)).collect(),
        ..Zendesk::default()
    }));
    let base = serve(
        Router::new()
            .route(
                "/api/v2/incremental/organizations.json",
                get(zendesk_organizations),
            )
            .with_state(api.clone()),
    )
    .await;
    let project = Project::new();
    project.job(
        "zendesk_organizations",
        &example_at(
            "zendesk_organizations.toml",
            "https://example.zendesk.com",
            &base,
        ),
    );
    let run = || {
        let mut command = project.command(&["run"]);
        command
            .env("ZENDESK_USER", ZENDESK_USER)
            .env("ZENDESK_API_TOKEN", ZENDESK_TOKEN);
        command
    };
    let out = run().output().await.expect("run apisync");
    assert!(out.status.success(), "{}", describe(&out));

    let at = |i: i64| (first + 60 * i).to_string();
    let asked = std::mem::take(&mut api.lock().unwrap().asked);
    let starts: Vec<Option<String>> = asked.iter().map(|(s, _)| s.clone()).collect();
    // initial (2024-01-01) as epoch seconds, then each next_page as given;
    // the last page's next_page (start_time = the sixth's time) is never
    // asked for: end_of_stream said stop.
    assert_eq!(
        starts,
        [Some("1704067200".to_string()), Some(at(2)), Some(at(4))],
        "{asked:?}"
    );
    // Organizations 7003 and 7005 came on two pages each; merge keeps one.
    let (ids, rows) = row_ids(&project, "zendesk_organizations");
    assert_eq!(ids, ["7001", "7002", "7003", "7004", "7005", "7006"]);
    assert_eq!(rows, 6);

    // One organization changes; the next run starts at the mark, the
    // newest updated_at seen, as epoch seconds, and one page ends it.
    api.lock().unwrap().organizations.push((7007, first + 600));
    let out = run().output().await.expect("run apisync");
    assert!(out.status.success(), "{}", describe(&out));
    let asked = std::mem::take(&mut api.lock().unwrap().asked);
    let starts: Vec<Option<String>> = asked.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(starts, [Some(at(5))], "{asked:?}");
    let (ids, rows) = row_ids(&project, "zendesk_organizations");
    assert_eq!(
        ids,
        ["7001", "7002", "7003", "7004", "7005", "7006", "7007"]
    );
    assert_eq!(rows, 7);
}

// --- PagerDuty: windows under a six-month limit, offset with `more` -----

const PAGERDUTY_AUTHORIZATION: &str = "Token token=u+pd-test-81aa";
/// One incident every 20 days from 2024-01-01: 40 of them, to mid-March 2026.
const PD_INCIDENTS: i64 = 40;
const PD_FIRST: i64 = 1_704_067_200;
const PD_EVERY: i64 = 20 * 86_400;
/// The server's own page size, below the job's `limit = 100`.
const PD_PAGE: usize = 3;

#[derive(Default)]
struct PagerDuty {
    /// Each request's (since, until, offset) and Authorization header.
    asked: Vec<((i64, i64, usize), Option<String>)>,
    /// Requests refused for a range over six months.
    refused: usize,
}

/// As PagerDuty documents it: incidents created in [since, until), a range
/// of at most six months (here 183 days), paged by offset with `more`.
async fn pagerduty_incidents(
    State(api): State<Arc<Mutex<PagerDuty>>>,
    request: Request,
) -> Response {
    let query = params(&request);
    let auth = header_text(request.headers(), header::AUTHORIZATION);
    let (Some(since), Some(until)) = (param(&query, "since"), param(&query, "until")) else {
        return (StatusCode::BAD_REQUEST, "since and until").into_response();
    };
    let (since, until) = (epoch(since), epoch(until));
    let mut api = api.lock().unwrap();
    if until - since > 183 * 86_400 || until <= since {
        api.refused += 1;
        return (StatusCode::BAD_REQUEST, "Date Range too large").into_response();
    }
    let offset: usize = param(&query, "offset").map_or(0, |o| o.parse().unwrap());
    api.asked.push(((since, until, offset), auth));
    let created: Vec<i64> = (0..PD_INCIDENTS)
        .map(|i| PD_FIRST + i * PD_EVERY)
        .filter(|t| (since..until).contains(t))
        .collect();
    let page: Vec<Value> = created
        .iter()
        .skip(offset)
        .take(PD_PAGE)
        .map(|t| {
            let n = (t - PD_FIRST) / PD_EVERY;
            json!({ "id": format!("P{n:04}"), "incident_number": n, "title": "down",
                    "status": "resolved", "created_at": rfc3339(*t) })
        })
        .collect();
    let more = offset + PD_PAGE < created.len();
    Json(json!({ "incidents": page, "offset": offset, "limit": PD_PAGE, "more": more }))
        .into_response()
}

#[tokio::test]
async fn pagerduty_incidents_asks_in_windows_the_api_accepts_and_pages_each() {
    let api = Arc::new(Mutex::new(PagerDuty::default()));
    let base = serve(
        Router::new()
            .route("/incidents", get(pagerduty_incidents))
            .with_state(api.clone()),
    )
    .await;
    let project = Project::new();
    project.job(
        "pagerduty_incidents",
        &example_at(
            "pagerduty_incidents.toml",
            "https://api.pagerduty.com",
            &base,
        ),
    );
    let out = project
        .command(&["run"])
        .env("PAGERDUTY_AUTHORIZATION", PAGERDUTY_AUTHORIZATION)
        .output()
        .await
        .expect("run apisync");
    assert!(out.status.success(), "{}", describe(&out));

    let api = api.lock().unwrap();
    assert_eq!(api.refused, 0, "a range over six months was asked for");
    // Windows of 180 days from `initial`, back to back, each paged from
    // offset 0 by the incidents received.
    let mut expected_since = PD_FIRST;
    let mut last_offset: Option<usize> = None;
    for ((since, until, offset), auth) in &api.asked {
        assert_eq!(auth.as_deref(), Some(PAGERDUTY_AUTHORIZATION));
        if *offset == 0 {
            assert_eq!(*since, expected_since, "{:?}", api.asked);
            expected_since = *until;
        } else {
            assert_eq!(Some(*offset - PD_PAGE), last_offset, "{:?}", api.asked);
        }
        assert!(until - since <= 180 * 86_400);
        last_offset = Some(*offset);
    }
    let windows = api.asked.iter().filter(|((_, _, o), _)| *o == 0).count();
    assert!(windows >= 5, "{windows} windows for two years");
    let (ids, rows) = row_ids(&project, "pagerduty_incidents");
    let expected: Vec<String> = (0..PD_INCIDENTS).map(|n| format!("P{n:04}")).collect();
    assert_eq!(ids, expected);
    assert_eq!(rows, PD_INCIDENTS as usize);
}

// --- Stripe: one object a run, appended --------------------------------

const STRIPE_KEY: &str = "rk_test_balance_51c";

#[tokio::test]
async fn stripe_balance_appends_one_snapshot_per_run() {
    let asked: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
    let seen = asked.clone();
    let base = serve(Router::new().route(
        "/v1/balance",
        get(move |request: Request| {
            let seen = seen.clone();
            async move {
                let auth = header_text(request.headers(), header::AUTHORIZATION);
                let n = {
                    let mut seen = seen.lock().unwrap();
                    seen.push(auth);
                    seen.len()
                };
                Json(json!({
                    "object": "balance",
                    "available": [{ "amount": 1000 * n, "currency": "usd" }],
                    "pending": [{ "amount": 50, "currency": "usd" }],
                    "livemode": false
                }))
            }
        }),
    ))
    .await;
    let project = Project::new();
    project.job(
        "stripe_balance",
        &example_at("stripe_balance.toml", "https://api.stripe.com", &base),
    );
    for _ in 0..2 {
        let out = project
            .command(&["run"])
            .env("STRIPE_API_KEY", STRIPE_KEY)
            .output()
            .await
            .expect("run apisync");
        assert!(out.status.success(), "{}", describe(&out));
    }
    let asked = asked.lock().unwrap().clone();
    assert_eq!(
        asked,
        [
            Some(format!("Bearer {STRIPE_KEY}")),
            Some(format!("Bearer {STRIPE_KEY}"))
        ]
    );
    let rows = project.rows("stripe_balance");
    let amounts: Vec<&Value> = rows.iter().map(|r| &r["available"][0]["amount"]).collect();
    assert_eq!(
        amounts,
        [&json!(1000), &json!(2000)],
        "one snapshot per run"
    );
}
