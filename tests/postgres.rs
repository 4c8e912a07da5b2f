//! `apisync run` end to end with `database = "postgres://..."`: the built
//! binary, a local API, and a fresh database on the PostgreSQL server named
//! by `APISYNC_TEST_POSTGRES` (`.ci/postgres` starts one). Without it these
//! tests skip with a note, unless `CI` is set: then they fail.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use common::databases::{PASSWORD, PostgresDatabase};
use common::oauth_server::{Behaviour, FIRST_REFRESH, OAuthServer};
use common::{BEARER, Project, TOKEN, describe, text};
use serde_json::json;

const PAGES: u64 = 5;
const PAGE_SIZE: u64 = 10;

/// `/items?page=N`: PAGES pages of PAGE_SIZE records, then an empty page.
/// While `broken`, page 3 answers 500.
#[derive(Default)]
struct Api {
    broken: AtomicBool,
    first_pages: AtomicUsize,
}

async fn items(
    State(api): State<Arc<Api>>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if headers.get("authorization").and_then(|v| v.to_str().ok())
        != Some(format!("Bearer {TOKEN}").as_str())
    {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let page: u64 = query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1);
    if page == 1 {
        api.first_pages.fetch_add(1, Ordering::SeqCst);
    }
    if page == 3 && api.broken.load(Ordering::SeqCst) {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let data: Vec<_> = if page <= PAGES {
        (0..PAGE_SIZE)
            .map(|i| {
                let id = (page - 1) * PAGE_SIZE + i;
                json!({"id": id, "name": format!("item {id}"), "price": {"amount": id * 10}})
            })
            .collect()
    } else {
        Vec::new()
    };
    axum::Json(json!({ "data": data })).into_response()
}

/// `/children/{id}`: one record per parent.
async fn children(axum::extract::Path(id): axum::extract::Path<String>) -> Response {
    axum::Json(json!({ "data": [{ "id": format!("c-{id}"), "parent": id }] })).into_response()
}

/// One partition per distinct `/id` of the items table, read from
/// PostgreSQL in pages while the writer writes.
fn children_job(base: &str) -> String {
    format!(
        r#"{BEARER}
[request]
url = "{base}/children/{{partition}}"
[partitions]
from_job = "items"
field = "/id"
[records]
path = "/data"
[output]
mode = "append"
"#
    )
}

fn items_job(base: &str) -> String {
    common::page_job(
        base,
        "[output]\nmode = \"merge\"\ncolumns = { name = \"/name\" }",
        2,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_into_postgres_resumes_from_its_checkpoint_and_never_shows_the_password() {
    let Some(db) = PostgresDatabase::create() else {
        return;
    };
    let api = Arc::new(Api::default());
    api.broken.store(true, Ordering::SeqCst);
    let base = common::serve(
        axum::Router::new()
            .route("/items", axum::routing::get(items))
            .route("/children/{id}", axum::routing::get(children))
            .with_state(api.clone()),
    )
    .await;
    let project = Project::new();
    project.config(&format!("database = \"{}\"\n", db.url));
    project.job("items", &items_job(&base));

    let mut shown = String::new();
    let first = project.run(&["run"]).await;
    shown.push_str(&text(&first));
    assert_eq!(first.status.code(), Some(1), "{}", describe(&first));
    assert_eq!(
        db.query("SELECT count(*) FROM items"),
        [[Some((2 * PAGE_SIZE).to_string())]],
        "pages 1 and 2 committed"
    );
    let checkpoint = db.query("SELECT position FROM _apisync.checkpoints WHERE job = 'items'");
    assert_eq!(checkpoint.len(), 1, "a checkpoint after page 2");

    api.broken.store(false, Ordering::SeqCst);
    let second = project
        .command(&["run"])
        .env("RUST_LOG", "trace")
        .output()
        .await
        .expect("run apisync");
    shown.push_str(&text(&second));
    assert_eq!(second.status.code(), Some(0), "{}", describe(&second));
    assert_eq!(
        api.first_pages.load(Ordering::SeqCst),
        1,
        "the rerun resumed at page 3 instead of starting over"
    );
    assert_eq!(
        db.query(
            "SELECT count(*), count(DISTINCT _pk), min(pg_typeof(_data)::text),
                    min(pg_typeof(name)::text), sum((_data #>> '{price,amount}')::bigint)
             FROM items"
        ),
        [[
            Some((PAGES * PAGE_SIZE).to_string()),
            Some((PAGES * PAGE_SIZE).to_string()),
            Some("jsonb".to_string()),
            Some("jsonb".to_string()),
            Some(((0..PAGES * PAGE_SIZE).sum::<u64>() * 10).to_string()),
        ]]
    );
    assert_eq!(
        db.query("SELECT name #>> '{}' FROM items WHERE _data->>'id' = '42'"),
        [[Some("item 42".to_string())]]
    );
    assert!(
        db.query("SELECT 1 FROM _apisync.checkpoints").is_empty(),
        "the finished stream's checkpoint is gone"
    );
    let statuses = db.query("SELECT status FROM _apisync.runs ORDER BY id");
    assert_eq!(
        statuses,
        [
            [Some("failed".to_string())],
            [Some("succeeded".to_string())]
        ]
    );

    let status = project.run(&["status"]).await;
    shown.push_str(&text(&status));
    assert_eq!(status.status.code(), Some(0), "{}", describe(&status));
    let report = String::from_utf8_lossy(&status.stdout);
    assert!(report.contains("items"), "{report}");
    assert!(report.contains("succeeded"), "{report}");

    project.job("children", &children_job(&base));
    let children = project.run(&["run", "children"]).await;
    shown.push_str(&text(&children));
    assert_eq!(children.status.code(), Some(0), "{}", describe(&children));
    assert_eq!(
        db.query("SELECT count(DISTINCT _data->>'parent'), count(*) FROM children"),
        [[
            Some((PAGES * PAGE_SIZE).to_string()),
            Some((PAGES * PAGE_SIZE).to_string())
        ]],
        "one partition per parent row, each synced once"
    );

    let validate = project.run(&["validate"]).await;
    shown.push_str(&text(&validate));
    assert!(
        String::from_utf8_lossy(&validate.stdout).contains(":***@"),
        "{}",
        describe(&validate)
    );

    // An unreachable server: the error names the database, password hidden.
    let unreachable = db.url.replace(
        &format!(
            "127.0.0.1:{}",
            url::Url::parse(&db.url).unwrap().port().unwrap()
        ),
        "127.0.0.1:1",
    );
    let failed = project
        .command(&["status"])
        .env("APISYNC_DATABASE", &unreachable)
        .output()
        .await
        .expect("run apisync");
    let failed_text = text(&failed);
    shown.push_str(&failed_text);
    assert_ne!(failed.status.code(), Some(0), "{}", describe(&failed));
    assert!(failed_text.contains("cannot connect"), "{failed_text}");
    assert!(failed_text.contains(":***@127.0.0.1:1/"), "{failed_text}");

    assert!(!shown.contains(PASSWORD), "the password leaked:\n{shown}");
}

/// Two processes, one database, one rotated refresh token: the refresh lock
/// in PostgreSQL makes the second wait and use the token the first stored,
/// so no refresh token is spent twice (the server would refuse it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_racing_to_refresh_a_rotated_token_spend_it_once() {
    let Some(db) = PostgresDatabase::create() else {
        return;
    };
    let server = OAuthServer::start(Behaviour {
        rotate: true,
        ..Behaviour::default()
    })
    .await;
    let project = Project::new();
    project.config(&format!(
        "database = \"{}\"\n{}",
        db.url,
        server.auth_table("acme", "oauth2_refresh_token", "basic")
    ));
    // Two jobs on one auth, one per process, so both need a token at once.
    project.job("items_a", &server.job("acme", None));
    project.job("items_b", &server.job("acme", None));
    // Create the schema first, so the race is about the token alone.
    let ok = server.run(&project, &["status"]).await;
    assert_eq!(ok.status.code(), Some(0), "{}", describe(&ok));

    let (a, b) = tokio::join!(
        server.run(&project, &["run", "items_a"]),
        server.run(&project, &["run", "items_b"]),
    );
    for output in [&a, &b] {
        assert_eq!(output.status.code(), Some(0), "{}", describe(output));
        assert!(!text(output).contains(PASSWORD), "{}", describe(output));
    }
    let spent: Vec<(Option<String>, u16)> = server
        .token_requests()
        .into_iter()
        .filter(|r| r.grant_type == "refresh_token")
        .map(|r| (r.refresh_token, r.status))
        .collect();
    let refresh = server.refresh_tokens();
    assert_eq!(
        spent,
        [
            (Some(FIRST_REFRESH.to_string()), 200),
            (Some(refresh[1].clone()), 200)
        ],
        "the second process refreshed with the token the first one stored"
    );
    assert_eq!(
        db.query("SELECT refresh_token FROM _apisync.refresh_tokens WHERE auth = 'acme'"),
        [[Some(refresh[2].clone())]]
    );
    for table in ["items_a", "items_b"] {
        assert_eq!(
            db.query(&format!("SELECT count(*) FROM {table}")),
            [[Some(server.expected_rows(1).to_string())]]
        );
    }
}
